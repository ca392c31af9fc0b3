"""Tests of jaxbgs.eval.layers: 5-fold layer selection on the training videos (paper §3.2)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from jaxbgs.data.matrices import PairMatrix
from jaxbgs.eval.layers import select_layer
from jaxbgs.eval.rsa import similarity_matrix


def _setup(n=40, seed=0):
    """Human matrix whose similarity follows the cosine of a latent embedding z, and layers built from z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 8))
    p = (similarity_matrix(z) + 1) / 2
    r, c = np.triu_indices(n, k=1)
    cnt = rng.integers(15, 30, size=len(r))
    cnt[rng.random(len(r)) < 0.1] = 0  # some pairs never shown together
    tog = rng.binomial(cnt, p[r, c])
    counts = np.zeros((n, n), np.int64)
    together = np.zeros((n, n), np.int64)
    counts[r, c] = counts[c, r] = cnt
    together[r, c] = together[c, r] = tog
    ids = np.arange(100, 100 + n)
    human = PairMatrix(ids, counts, together)
    layers = {
        "random": rng.normal(size=(n, 8)),
        "good": z + 0.1 * rng.normal(size=(n, 8)),
        "noisy": z + 1.5 * rng.normal(size=(n, 8)),
    }
    return human, ids, layers


def test_selects_layer_that_matches_human():
    human, ids, layers = _setup()
    # rows given in a shuffled id order: alignment by id must not matter
    perm = np.random.default_rng(1).permutation(len(ids))
    choice = select_layer({k: v[perm] for k, v in layers.items()}, ids[perm], human, seed=0)
    assert choice.names == ["random", "good", "noisy"]
    assert choice.fold_rho.shape == (3, 5)
    assert choice.best == "good"
    mean = choice.mean_rho
    np.testing.assert_allclose(mean, choice.fold_rho.mean(axis=1))
    assert mean[1] > 0.6
    assert mean[1] > mean[2] > mean[0]
    assert abs(mean[0]) < 0.3
    assert (choice.fold_rho[1] > choice.fold_rho[0]).all()  # the good layer wins in every fold


def test_fold_values_are_within_fold_spearman():
    # reproduce fold 0 by hand: same fold assignment, pairs with both videos in the fold, scipy Spearman
    human, ids, layers = _setup(n=30, seed=2)
    choice = select_layer(layers, ids, human, seed=7)
    rng = np.random.default_rng(7)
    fold_of = np.empty(human.n, np.int64)
    fold_of[rng.permutation(human.n)] = np.arange(human.n) % 5
    rows, cols = human.observed_pairs()
    for f in (0, 3):
        sel = (fold_of[rows] == f) & (fold_of[cols] == f)
        m = similarity_matrix(layers["noisy"])[rows[sel], cols[sel]]
        h = human.similarity[rows[sel], cols[sel]]
        want = scipy.stats.spearmanr(m, h).statistic
        assert choice.fold_rho[2, f] == pytest.approx(want, abs=1e-12)


def test_deterministic_by_seed():
    human, ids, layers = _setup(seed=3)
    a = select_layer(layers, ids, human, seed=4)
    b = select_layer(layers, ids, human, seed=4)
    np.testing.assert_array_equal(a.fold_rho, b.fold_rho)
    assert a.best == b.best
    c = select_layer(layers, ids, human, seed=5)
    assert not np.array_equal(a.fold_rho, c.fold_rho)  # another fold split
    assert c.best == "good"


def test_n_folds_parameter():
    human, ids, layers = _setup(seed=4)
    choice = select_layer(layers, ids, human, n_folds=3, seed=0, metric="pearson")
    assert choice.fold_rho.shape == (3, 3)
    assert choice.best == "good"
