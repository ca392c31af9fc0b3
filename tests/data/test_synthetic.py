"""Simulated observers: a release-format directory that loads, with a known best model."""

from __future__ import annotations

import numpy as np

from jaxbgs.data.dataset import load_human_data
from jaxbgs.data.matrices import pair_matrix
from jaxbgs.data.synthetic import answer_trials, simulate_release
from jaxbgs.eval.ceiling import split_half_ceiling
from jaxbgs.eval.rsa import aligned_similarity, rsa


def test_noiseless_observer_picks_the_least_similar():
    # Latents: 0 and 1 point the same way, 2 is orthogonal -> 2 is the odd one whatever the order shown.
    z = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    items = np.array([[0, 1, 2], [2, 0, 1], [1, 2, 0]])
    odd = answer_trials(z, items, temperature=1e-4, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(odd, [2, 2, 2])


def test_simulated_release_loads_and_latents_win(tmp_path):
    out = simulate_release(tmp_path / "ex", n_videos=40, n_test=15, seed=3)
    data = load_human_data(out)
    assert len(data.test_ids) == 15 and len(data.train_ids) == 25
    m = pair_matrix(data.test, data.test_ids)
    # Two rounds of a full cover: every test pair observed at least twice.
    assert m.n_pairs_observed == 15 * 14 // 2 and (m.counts[np.triu_indices(15, 1)] >= 2).all()
    latents = np.load(out / "latents.npy")
    ids = np.arange(40)
    ideal = rsa(aligned_similarity(latents, ids, m), m).r2
    noise = rsa(aligned_similarity(np.random.default_rng(0).normal(size=(40, 6)), ids, m), m).r2
    assert ideal > 0.2 and ideal > 5 * noise
    c = split_half_ceiling(m, iters=200)
    assert 0.0 < c.split_half_r2 < 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ex"]  # no temp directory left behind
