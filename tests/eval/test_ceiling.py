"""Tests of jaxbgs.eval.ceiling: split-half noise ceiling (paper App. F.5)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxbgs.data.matrices import PairMatrix
from jaxbgs.eval.ceiling import split_half_ceiling
from jaxbgs.eval.stats import spearman


def _matrix(counts_upper: dict, together_upper: dict, n: int) -> PairMatrix:
    counts = np.zeros((n, n), np.int64)
    together = np.zeros((n, n), np.int64)
    for (i, j), c in counts_upper.items():
        counts[i, j] = counts[j, i] = c
        together[i, j] = together[j, i] = together_upper[(i, j)]
    return PairMatrix(np.arange(n) * 10, counts, together)


def _random_matrix(n_videos: int, seed: int, lo: int = 2, hi: int = 12) -> PairMatrix:
    rng = np.random.default_rng(seed)
    r, c = np.triu_indices(n_videos, k=1)
    cnt = rng.integers(lo, hi, size=len(r))
    tog = rng.binomial(cnt, rng.uniform(0.05, 0.95, size=len(r)))
    return _matrix(
        {(i, j): v for i, j, v in zip(r, c, cnt, strict=True)},
        {(i, j): v for i, j, v in zip(r, c, tog, strict=True)},
        n_videos,
    )


def test_perfectly_consistent_votes_give_ceiling_one():
    # every voter agrees on every pair (kept together by all, or by none): each half reproduces the
    # other exactly -> split-half r = 1 every iteration -> Spearman-Brown 1 -> r2 = 1
    counts = {(0, 1): 4, (0, 2): 3, (0, 3): 5, (1, 2): 2, (1, 3): 6, (2, 3): 3, (0, 4): 1}
    together = {(0, 1): 4, (0, 2): 0, (0, 3): 5, (1, 2): 0, (1, 3): 0, (2, 3): 3, (0, 4): 0}
    ceil = split_half_ceiling(_matrix(counts, together, 5), iters=50, seed=0)
    assert ceil.mean_half_r == pytest.approx(1.0, abs=1e-12)
    assert ceil.split_half_r == pytest.approx(1.0, abs=1e-12)
    assert ceil.split_half_r2 == pytest.approx(1.0, abs=1e-12)
    assert ceil.n_pairs_used == 6  # (0, 4) has a single vote; pairs (1,4) (2,4) (3,4) are unobserved
    assert (ceil.iters, ceil.seed) == (50, 0)


def test_single_vote_pairs_are_excluded():
    m = _random_matrix(8, seed=1)  # 28 pairs, all with >= 2 votes
    counts, together = m.counts.copy(), m.together.copy()
    r, c = np.triu_indices(8, k=1)
    single = [0, 5, 9, 17]
    counts[r[single], c[single]] = counts[c[single], r[single]] = 1
    together[r[single], c[single]] = together[c[single], r[single]] = [0, 1, 1, 0]
    m1 = PairMatrix(m.ids, counts, together)
    assert split_half_ceiling(m, iters=20).n_pairs_used == 28
    assert split_half_ceiling(m1, iters=20).n_pairs_used == 28 - len(single)
    # min_votes raises the bar: pairs with 2 votes are dropped too
    n_ge3 = int((m.counts[r, c] >= 3).sum())
    assert split_half_ceiling(m, iters=20, min_votes=3).n_pairs_used == n_ge3


def test_seeded_determinism():
    m = _random_matrix(8, seed=2)
    a = split_half_ceiling(m, iters=200, seed=5)
    assert a == split_half_ceiling(m, iters=200, seed=5)
    assert a.mean_half_r != split_half_ceiling(m, iters=200, seed=6).mean_half_r


def test_too_few_pairs_raises():
    counts = {(0, 1): 4, (0, 2): 3, (1, 2): 1}
    together = {(0, 1): 2, (0, 2): 1, (1, 2): 0}
    with pytest.raises(ValueError, match="only 2 pairs have >= 2 votes"):
        split_half_ceiling(_matrix(counts, together, 3))


def test_spearman_brown_relation():
    m = _random_matrix(9, seed=3)
    ceil = split_half_ceiling(m, iters=300, seed=1)
    r = ceil.mean_half_r
    assert 0 < r < 1
    # Spearman-Brown: r_full = 2 r_half / (1 + r_half); the ceiling on R^2 is its square
    assert ceil.split_half_r == pytest.approx(2 * r / (1 + r), abs=1e-12)
    assert ceil.split_half_r2 == pytest.approx(ceil.split_half_r**2, abs=1e-12)
    assert ceil.split_half_r > r


def _explicit_split_half(m: PairMatrix, iters: int, seed: int) -> float:
    """Slow reference of App. F.5: rebuild each pair's 0/1 votes, shuffle, split, Spearman across pairs."""
    rng = np.random.default_rng(seed)
    rows, cols = m.observed_pairs()
    n = m.counts[rows, cols]
    k = m.together[rows, cols]
    keep = n >= 2
    n, k = n[keep], k[keep]
    rs = []
    for _ in range(iters):
        first, second = [], []
        for nn, kk in zip(n, k, strict=True):
            votes = np.r_[np.ones(kk), np.zeros(nn - kk)]
            rng.shuffle(votes)
            h = nn // 2
            first.append(votes[:h].mean())
            second.append(votes[h:].mean())
        rs.append(float(spearman(np.array(first), np.array(second))))
    return float(np.mean(rs))


def test_hypergeometric_shortcut_matches_explicit_shuffle():
    # ~30 pairs (8 videos -> 28 pairs) with 2-15 votes each, 400 iterations of both methods
    m = _random_matrix(8, seed=4, lo=2, hi=16)
    fast = split_half_ceiling(m, iters=400, seed=0).mean_half_r
    slow = _explicit_split_half(m, iters=400, seed=123)
    assert 0.2 < fast < 0.95
    assert fast == pytest.approx(slow, abs=0.03)


def test_per_split_values_give_the_mean_estimate():
    rng = np.random.default_rng(3)
    n = 12
    counts = np.triu(rng.integers(2, 9, (n, n)), 1)
    counts = counts + counts.T
    together = np.triu(rng.binomial(counts, 0.4), 1)
    m = PairMatrix(np.arange(n), counts, together + together.T)
    c = split_half_ceiling(m, iters=50, seed=1)
    assert c.half_r.shape == (50,) and np.isclose(c.half_r.mean(), c.mean_half_r)
    np.testing.assert_allclose(c.corrected, 2 * c.half_r / (1 + c.half_r))
