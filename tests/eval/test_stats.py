"""Tests of jaxbgs.eval.stats: ranks, Spearman, bootstrap, permutation test, variance partitioning."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from jaxbgs.eval import stats

# ---------------------------------------------------------------- rankdata / pearson / spearman


def test_rankdata_matches_scipy_with_ties_1d():
    # scipy.stats.rankdata(method="average") is the reference: ties share their mean rank.
    x = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5])
    np.testing.assert_array_equal(stats.rankdata(x), scipy.stats.rankdata(x))
    # hand computation: [10, 20, 10, 30, 20] -> 10s share ranks 1,2 (1.5), 20s share 3,4 (3.5), 30 is 5
    np.testing.assert_array_equal(stats.rankdata([10, 20, 10, 30, 20]), [1.5, 3.5, 1.5, 5.0, 3.5])
    # all tied -> every rank is (1 + n) / 2
    np.testing.assert_array_equal(stats.rankdata(np.full(4, 7.0)), np.full(4, 2.5))


def test_rankdata_matches_scipy_batched():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=(3, 4, 25)).astype(float)  # many ties in every row
    np.testing.assert_array_equal(stats.rankdata(x), scipy.stats.rankdata(x, axis=-1))
    y = rng.normal(size=(7, 13))  # no ties
    np.testing.assert_array_equal(stats.rankdata(y), scipy.stats.rankdata(y, axis=-1))


def test_spearman_matches_scipy():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, size=40)
    y = x + rng.integers(0, 4, size=40)  # ties on both sides
    assert float(stats.spearman(x, y)) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)
    xs = rng.normal(size=(6, 30))
    ys = xs + rng.normal(size=(6, 30))
    got = stats.spearman(xs, ys)
    assert got.shape == (6,)
    want = [scipy.stats.spearmanr(a, b).statistic for a, b in zip(xs, ys, strict=True)]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_pearson_constant_side_is_zero_not_nan():
    assert float(stats.pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])) == 0.0
    assert float(stats.pearson([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])) == 0.0
    assert float(stats.spearman([2, 2, 2, 2], [4, 1, 3, 2])) == 0.0
    # batched: one constant row among normal ones; the others are ordinary Pearson r
    x = np.array([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]])
    y = np.array([[1.0, 2.0, 4.0], [1.0, 2.0, 3.0]])
    got = stats.pearson(x, y)
    assert not np.isnan(got).any()
    assert got[1] == 0.0
    assert got[0] == pytest.approx(np.corrcoef(x[0], y[0])[0, 1], abs=1e-12)


# ---------------------------------------------------------------- bootstrap


def _scipy_bootstrap_loop(y, xs, n_boot, seed):
    """The slow reference: the same resample indices, one scipy call per resample."""
    idx = stats.resample_indices(len(y), n_boot, np.random.default_rng(seed))
    return np.array([[scipy.stats.spearmanr(x[i], y[i]).statistic for i in idx] for x in xs])


@pytest.mark.parametrize("ties", [False, True, "human_levels", "model_levels"])
def test_bootstrap_spearman_equals_scipy_loop_on_same_indices(ties):
    # Module docstring: the weighted-rank trick gives exactly spearmanr(x[idx], y[idx]) for the same idx.
    # "human_levels": y has few levels, x is continuous (the RSA case, the float32 fast path); and swapped.
    rng = np.random.default_rng(2)
    n, n_boot, seed = 35, 300, 11
    if ties == "human_levels":
        y = rng.integers(0, 6, size=n) / 5
        xs = np.stack([y + rng.normal(size=n), rng.normal(size=n)])
    elif ties == "model_levels":
        y = rng.normal(size=n)
        xs = np.stack([np.round(y), rng.integers(0, 3, size=n)]).astype(float)
    elif ties:
        y = rng.integers(0, 4, size=n).astype(float)
        xs = np.stack([y + rng.integers(0, 3, size=n), rng.integers(0, 5, size=n)]).astype(float)
    else:
        y = rng.normal(size=n)
        xs = np.stack([y + rng.normal(size=n), rng.normal(size=n)])
    idx = stats.resample_indices(n, n_boot, np.random.default_rng(seed))
    counts = stats.resample_counts(idx)
    assert counts.shape == (n_boot, n)
    assert (counts.sum(axis=1) == n).all()  # each resample draws n items
    assert (counts[0] == np.bincount(idx[0], minlength=n)).all()
    got = stats.bootstrap_spearman(y, xs, idx)
    want = _scipy_bootstrap_loop(y, xs, n_boot, seed)
    assert not np.isnan(want).any()
    assert got.shape == (2, n_boot)
    np.testing.assert_allclose(got, want, atol=1e-12, rtol=0)


def test_bootstrap_spearman_more_than_one_block():
    # more resamples than one internal block: blocks must be stitched in order
    rng = np.random.default_rng(3)
    n, n_boot, seed = 12, stats._BLOCK + 37, 5
    y = rng.integers(0, 6, size=n).astype(float)
    x = y + rng.integers(0, 3, size=n)
    idx = stats.resample_indices(n, n_boot, np.random.default_rng(seed))
    got = stats.bootstrap_spearman(y, x, idx)[0]
    for b in (0, 1, stats._BLOCK - 1, stats._BLOCK, n_boot - 1):
        want = scipy.stats.spearmanr(x[idx[b]], y[idx[b]]).statistic
        if np.isnan(want):  # a constant resample: the package reports 0
            want = 0.0
        assert got[b] == pytest.approx(want, abs=1e-12)


def test_bootstrap_r2_interval_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(4)
    y = rng.normal(size=80)
    x = y + rng.normal(size=80)
    a = stats.bootstrap_r2(y, x, n_boot=1000, seed=3)
    # estimate is rho^2 on the full data
    assert a.estimate == pytest.approx(scipy.stats.spearmanr(x, y).statistic ** 2, abs=1e-12)
    assert 0.0 <= a.low <= a.estimate <= a.high <= 1.0
    assert a.high - a.low > 0.01  # a real interval, not a point
    assert a.as_list() == [a.low, a.high]
    b = stats.bootstrap_r2(y, x, n_boot=1000, seed=3)
    assert a == b  # same seed -> identical interval
    c = stats.bootstrap_r2(y, x, n_boot=1000, seed=4)
    assert (c.low, c.high) != (a.low, a.high)


def test_paired_delta_identical_models():
    # identical models: every resample has delta exactly 0 -> CI [0, 0], two-sided p = 1
    rng = np.random.default_rng(5)
    y = rng.normal(size=50)
    a = y + rng.normal(size=50)
    res = stats.paired_bootstrap_delta_r2(y, a, a.copy(), n_boot=500, seed=1)
    assert res.delta.estimate == 0.0
    assert res.delta.as_list() == [0.0, 0.0]
    assert res.p_value == 1.0
    assert res.r2_a == res.r2_b


def test_paired_delta_better_model():
    rng = np.random.default_rng(6)
    y = rng.normal(size=120)
    good = y + 0.2 * rng.normal(size=120)
    bad = y + 3.0 * rng.normal(size=120)
    n_boot = 999
    res = stats.paired_bootstrap_delta_r2(y, good, bad, n_boot=n_boot, seed=2)
    est = scipy.stats.spearmanr(good, y).statistic ** 2 - scipy.stats.spearmanr(bad, y).statistic ** 2
    assert res.delta.estimate == pytest.approx(est, abs=1e-12)
    assert res.delta.estimate > 0.3
    assert res.delta.low > 0
    # no resample has delta <= 0 -> p = 2 (0 + 1) / (n_boot + 1)
    assert res.p_value == pytest.approx(2 / (n_boot + 1))
    # swapping the models flips the sign of delta, keeps p
    rev = stats.paired_bootstrap_delta_r2(y, bad, good, n_boot=n_boot, seed=2)
    assert rev.delta.estimate == pytest.approx(-res.delta.estimate, abs=1e-12)
    assert rev.delta.high < 0
    assert rev.p_value == res.p_value


# ---------------------------------------------------------------- permutation test


def _model_and_pairs(n=12, seed=7, frac=0.7):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    m = z @ z.T
    r, c = np.triu_indices(n, k=1)
    keep = rng.random(len(r)) < frac
    return rng, m, r[keep], c[keep]


def test_permutation_spearman_formula_and_slow_loop():
    rng, m, rows, cols = _model_and_pairs()
    n = len(m)
    human = m[rows, cols] + 3.0 * rng.normal(size=len(rows))
    n_perm, seed = 400, 9
    rho, p, null = stats.permutation_spearman(human, m, rows, cols, n_perm=n_perm, seed=seed)
    assert rho == pytest.approx(scipy.stats.spearmanr(m[rows, cols], human).statistic, abs=1e-12)
    assert null.shape == (n_perm,)
    # p = (1 + #{null >= rho}) / (1 + n_perm)   (docstring formula)
    assert p == (1 + (null >= rho).sum()) / (1 + n_perm)
    # slow explicit loop: relabel the stimuli of the model matrix with the same permutations
    perms = np.argsort(np.random.default_rng(seed).random((n_perm, n)), axis=1)
    iu = np.triu_indices(n, k=1)
    for k in range(5):
        mp = m[np.ix_(perms[k], perms[k])]
        # relabelling never changes the set of model values, only which pair holds which
        np.testing.assert_array_equal(np.sort(mp[iu]), np.sort(m[iu]))
        np.testing.assert_array_equal(np.sort(np.diag(mp)), np.sort(np.diag(m)))
        assert null[k] == pytest.approx(scipy.stats.spearmanr(mp[rows, cols], human).statistic, abs=1e-12)


def test_permutation_null_centred_and_real_effect_significant():
    rng, m, rows, cols = _model_and_pairs(n=14, seed=8)
    human = m[rows, cols] + 0.3 * rng.normal(size=len(rows))
    n_perm = 1000
    rho, p, null = stats.permutation_spearman(human, m, rows, cols, n_perm=n_perm, seed=0)
    assert abs(null.mean()) < 0.05  # the null of relabelled stimuli is centred near 0
    assert null.std() > 0.02
    assert rho > 0.8
    assert p == pytest.approx(1 / (1 + n_perm))  # no relabelling beats the true labels
    # same seed -> same null; another seed -> another null
    again = stats.permutation_spearman(human, m, rows, cols, n_perm=n_perm, seed=0)[2]
    other = stats.permutation_spearman(human, m, rows, cols, n_perm=n_perm, seed=1)[2]
    np.testing.assert_array_equal(again, null)
    assert not np.array_equal(other, null)


# ---------------------------------------------------------------- OLS and variance partitioning


def test_r2_ols_hand_computed():
    # x = [0,1,2,3], y = [0,1,1,3]: Sxy = 4.5, Sxx = 5, Syy = 4.75 -> R^2 = 4.5^2 / (5 * 4.75) = 81/95
    got = stats.r2_ols(np.array([0.0, 1, 1, 3]), np.array([0.0, 1, 2, 3]))
    assert got == pytest.approx(81 / 95, abs=1e-12)
    # exact linear relation -> 1; constant y -> 0 (no variance to explain)
    x = np.arange(6.0)
    assert stats.r2_ols(2 * x + 1, x) == pytest.approx(1.0, abs=1e-12)
    assert stats.r2_ols(np.full(6, 3.0), x) == 0.0
    # two columns: compare with the normal equations solved by hand
    rng = np.random.default_rng(10)
    X = rng.normal(size=(30, 2))
    y = X @ [1.0, -2.0] + rng.normal(size=30)
    D = np.column_stack([np.ones(30), X])
    beta = np.linalg.solve(D.T @ D, D.T @ y)
    res = y - D @ beta
    want = 1 - res @ res / ((y - y.mean()) @ (y - y.mean()))
    assert stats.r2_ols(y, X) == pytest.approx(want, abs=1e-12)


# rows of a 4 x 4 Hadamard matrix: mutually orthogonal; rows 1-3 have zero mean
_H = np.array([[1.0, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]])


def test_variance_partition_two_orthogonal_predictors():
    # y = x1 + x2 with orthogonal, zero-mean x1, x2: R2(x1) = R2(x2) = 1/2, R2(both) = 1, nothing shared
    x1, x2 = _H[1], _H[2]
    part = stats.variance_partition(x1 + x2, {"a": x1, "b": x2})
    assert part.total == pytest.approx(1.0)
    assert part.unique("a") == pytest.approx(0.5)
    assert part.unique("b") == pytest.approx(0.5)
    assert part.shared() == pytest.approx(0.0, abs=1e-12)
    assert part.as_dict() == pytest.approx({"a": 0.5, "b": 0.5, "a+b": 0.0, "total": 1.0})


def test_variance_partition_identical_predictors_all_shared():
    # x2 == x1; y = x1 + 0.5 e with e orthogonal -> R2 = 1 / (1 + 0.25) = 0.8, all of it shared
    x1 = _H[1]
    y = x1 + 0.5 * _H[2]
    part = stats.variance_partition(y, {"a": x1, "b": x1.copy()})
    assert part.total == pytest.approx(0.8)
    assert part.unique("a") == pytest.approx(0.0, abs=1e-12)
    assert part.unique("b") == pytest.approx(0.0, abs=1e-12)
    assert part.shared() == pytest.approx(0.8)


def test_variance_partition_three_orthogonal_predictors():
    # y = x1 + 2 x2 + 3 x3 (orthogonal): unique parts 1/14, 4/14, 9/14, no shared variance
    x1, x2, x3 = _H[1], _H[2], _H[3]
    part = stats.variance_partition(x1 + 2 * x2 + 3 * x3, {"a": x1, "b": x2, "c": x3})
    assert part.total == pytest.approx(1.0)
    assert [part.unique(k) for k in "abc"] == pytest.approx([1 / 14, 4 / 14, 9 / 14])
    assert part.shared() == pytest.approx(0.0, abs=1e-12)
    assert set(part.parts) == {("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c")}


@pytest.mark.parametrize("k", [2, 3])
def test_variance_partition_identities_on_random_data(k):
    rng = np.random.default_rng(20 + k)
    common = rng.normal(size=60)
    preds = {name: common + rng.normal(size=60) for name in "abc"[:k]}
    y = sum(preds.values()) + rng.normal(size=60)
    part = stats.variance_partition(y, preds)
    names = tuple(preds)
    # the parts add up to the full model's R^2
    assert sum(part.parts.values()) == pytest.approx(part.total, abs=1e-12)
    assert part.total == pytest.approx(stats.r2_ols(y, np.column_stack(list(preds.values()))), abs=1e-12)
    assert part.shared() > 0  # correlated predictors share variance
    for name in names:
        others = [v for kk, v in preds.items() if kk != name]
        # unique(a) = R2(all) - R2(all but a)   (for two predictors: R2(a, b) - R2(b))
        want = part.total - stats.r2_ols(y, np.column_stack(others))
        assert part.unique(name) == pytest.approx(want, abs=1e-12)
    if k == 2:
        a, b = preds["a"], preds["b"]
        # shared = R2(a) + R2(b) - R2(a, b)
        want = stats.r2_ols(y, a) + stats.r2_ols(y, b) - part.total
        assert part.parts[("a", "b")] == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("k", [1, 4])
def test_variance_partition_rejects_1_or_4_predictors(k):
    x = np.arange(8.0)
    with pytest.raises(ValueError, match="2 or 3 predictors"):
        stats.variance_partition(x, {f"p{i}": x + i for i in range(k)})
