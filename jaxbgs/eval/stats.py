"""Vectorised statistics for RSA: tie-aware ranks, Spearman, bootstrap, permutation, variance partitioning.

No per-resample Python loops. The bootstrap never re-sorts: a resample is counted into a vector of
multiplicities over the observed pairs, and the average rank of a value inside a multiset is
(weight of the smaller values) + (weight of its tie group + 1) / 2, a cumulative sum over an
order computed once. That gives exactly what `scipy.stats.spearmanr(x[idx], y[idx])` gives for
the same resample indices `idx`, for a fraction of the cost.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

_BLOCK = 512  # resamples per block: a few block x n float32 temporaries stay in cache
_PERM_BLOCK = 256  # permutations per block: block x n_cells temporaries stay in cache


def rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) along the last axis, like scipy's default."""
    x = np.asarray(x)
    order = np.argsort(x, axis=-1, kind="stable")
    xs = np.take_along_axis(x, order, axis=-1)
    n = x.shape[-1]
    idx = np.broadcast_to(np.arange(n), xs.shape)
    start = np.ones(xs.shape, bool)
    start[..., 1:] = xs[..., 1:] != xs[..., :-1]
    end = np.ones(xs.shape, bool)
    end[..., :-1] = start[..., 1:]
    first = np.maximum.accumulate(np.where(start, idx, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(end, idx, n), axis=-1), axis=-1), axis=-1)
    ranks = np.empty(xs.shape, np.float64)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=-1)
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis (broadcasting); 0 where either side is constant."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    den = np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
    num = (xc * yc).sum(-1)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho along the last axis (ties averaged), vectorised over leading axes."""
    return pearson(rankdata(x), rankdata(y))


class _TieGroups:
    """The sort order and tie groups of one vector, computed once and reused by every resample."""

    def __init__(self, values: np.ndarray):
        values = np.asarray(values, np.float64)
        self.order = np.argsort(values, kind="stable")
        vs = values[self.order]
        new = np.ones(len(vs), bool)
        new[1:] = vs[1:] != vs[:-1]
        self.n_groups = int(new.sum())
        self.ends = np.append(np.flatnonzero(new)[1:], len(vs)) - 1  # last sorted position of each group
        self.gid_sorted = np.cumsum(new) - 1
        self.gid = np.empty(len(vs), np.int64)
        self.gid[self.order] = self.gid_sorted

    @property
    def distinct(self) -> bool:
        return self.n_groups == len(self.order)

    def ranks(self, w: np.ndarray) -> np.ndarray:
        """(B, n) average ranks of every item inside the multisets with multiplicities `w` (B, n)."""
        cum = np.cumsum(w[:, self.order], axis=1)[:, self.ends]
        group = np.diff(cum, axis=1, prepend=0.0)
        rank_of_group = cum - group + (group + 1.0) / 2.0
        return rank_of_group[:, self.gid]


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    sw = w.sum(1, keepdims=True)
    xc = x - (w * x).sum(1, keepdims=True) / sw
    yc = y - (w * y).sum(1, keepdims=True) / sw
    num = (w * xc * yc).sum(1)
    den = np.sqrt((w * xc * xc).sum(1) * (w * yc * yc).sum(1))
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _sum_sq_ranks(n: int, tie_sizes: np.ndarray) -> np.ndarray:
    """Sum of squared average ranks of a multiset of n items: n(n+1)(2n+1)/6 - sum (t^3 - t)/12."""
    t = tie_sizes.astype(np.float64)
    return n * (n + 1) * (2 * n + 1) / 6 - ((t * t * t - t).sum(1)) / 12


def _fast_bootstrap(gx: _TieGroups, gy: _TieGroups, ws: np.ndarray) -> np.ndarray:
    """Spearman per resample when x has no ties and y has few levels (the human side of RSA).

    `ws` (B, n) are the multiplicities with items already in x order. Works on doubled ranks, which
    are integers: in float32 every sum stays below 2^24, so it is exact. With the mean rank fixed at
    (n+1)/2, rho needs only sum(w rx ry) and the tie sizes.
    """
    n = ws.shape[1]
    rx2 = 2 * np.cumsum(ws, axis=1) - ws + 1  # doubled average rank of each item's copies
    onehot = np.zeros((n, gy.n_groups), np.float32)
    onehot[np.arange(n), gy.gid[gx.order]] = 1
    wy = (ws @ onehot).astype(np.float64)  # multiset size of each y level
    ry2 = 2 * np.cumsum(wy, axis=1) - wy + 1
    cross = ((ws * rx2) @ onehot).astype(np.float64)
    sxy = (cross * ry2).sum(1) / 4
    mean_sq = n * ((n + 1) / 2) ** 2
    vx = _sum_sq_ranks(n, ws) - mean_sq
    vy = _sum_sq_ranks(n, wy) - mean_sq
    den = np.sqrt(vx * vy)
    return np.divide(sxy - mean_sq, den, out=np.zeros_like(den), where=den > 0)


def resample_indices(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """The (n_boot, n) indices of each bootstrap resample; a scipy loop over them gives the same rhos."""
    return rng.integers(0, n, size=(n_boot, n), dtype=np.uint16 if n < 2**16 else np.int64)


def resample_counts(idx: np.ndarray, relabel: np.ndarray | None = None) -> np.ndarray:
    """Multiplicities (B, n) of each item in each resample; `relabel` renumbers the items first."""
    b, n = idx.shape
    flat = idx.astype(np.int64) if relabel is None else np.asarray(relabel, np.int64)[idx]
    flat += (np.arange(b, dtype=np.int64) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=b * n).reshape(b, n).astype(np.float32)


def bootstrap_spearman(y: np.ndarray, xs: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Spearman rho of `y` with each row of `xs` (m, n) under each resample `idx` (B, n) -> (m, B).

    Equals `scipy.stats.spearmanr(x[i], y[i])` for every row i of idx (0 where a side is constant).
    """
    y = np.asarray(y, np.float64)
    xs = np.atleast_2d(np.asarray(xs, np.float64))
    gy = _TieGroups(y)
    out = np.empty((len(xs), len(idx)))
    for m, x in enumerate(xs):
        gx = _TieGroups(x)
        a, b = (gx, gy) if gy.n_groups <= gx.n_groups else (gy, gx)
        fast = a.distinct and b.n_groups <= 256 and len(y) < 2**11
        sorted_pos = np.empty(len(y), np.int64)
        sorted_pos[a.order] = np.arange(len(y))
        for s in range(0, len(idx), _BLOCK):
            blk = idx[s : s + _BLOCK]
            if fast:
                out[m, s : s + _BLOCK] = _fast_bootstrap(a, b, resample_counts(blk, sorted_pos))
            else:
                w = resample_counts(blk).astype(np.float64)
                out[m, s : s + _BLOCK] = _weighted_pearson(gx.ranks(w), gy.ranks(w), w)
    return out


@dataclasses.dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def as_list(self) -> list[float]:
        return [self.low, self.high]


def _ci(samples: np.ndarray, estimate: float, level: float) -> Interval:
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(estimate), float(lo), float(hi))


def bootstrap_r2(y, x, *, n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> Interval:
    """R^2 = rho^2 over the observed pairs, with a percentile CI over pair resamples."""
    idx = resample_indices(len(y), n_boot, np.random.default_rng(seed))
    rho = bootstrap_spearman(y, x, idx)[0]
    return _ci(rho**2, float(spearman(x, y)) ** 2, level)


@dataclasses.dataclass(frozen=True)
class PairedDelta:
    delta: Interval  # R^2(a) - R^2(b)
    p_value: float  # two-sided bootstrap p for delta == 0
    r2_a: Interval
    r2_b: Interval


def paired_bootstrap_delta_r2(
    y, a, b, *, n_boot: int = 10_000, seed: int = 0, level: float = 0.95
) -> PairedDelta:
    """Compare two models on the same resampled pairs, as the paper's paired Delta R^2."""
    idx = resample_indices(len(y), n_boot, np.random.default_rng(seed))
    ra, rb = bootstrap_spearman(y, np.stack([a, b]), idx) ** 2
    d = ra - rb
    est_a, est_b = float(spearman(a, y)) ** 2, float(spearman(b, y)) ** 2
    tail = min((d <= 0).sum(), (d >= 0).sum())
    p = min(1.0, 2.0 * (tail + 1) / (n_boot + 1))
    return PairedDelta(_ci(d, est_a - est_b, level), p, _ci(ra, est_a, level), _ci(rb, est_b, level))


def permutation_spearman(
    human: np.ndarray,
    model_matrix: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    n_perm: int = 5_000,
    seed: int = 0,
) -> tuple[float, float, np.ndarray]:
    """Permutation test that shuffles the stimulus labels of the model matrix.

    `human[k]` is the human value of pair (rows[k], cols[k]). Returns (rho, one-sided p, null rhos);
    p = (1 + #{null >= rho}) / (1 + n_perm). A permutation only chooses which cells of the model
    matrix face the human pairs, so with untied model values the cells are sorted once and each
    permutation's ranks are a cumulative count of the chosen cells in that order: no sort per draw.
    """
    human = np.asarray(human, np.float64)
    m = np.asarray(model_matrix, np.float64)
    rho = float(spearman(m[rows, cols], human))
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_perm, m.shape[0])), axis=1)
    rh = rankdata(human)
    k = len(human)
    iu, ju = np.triu_indices(m.shape[0], k=1)
    cells = _TieGroups(m[iu, ju])
    null = np.empty(n_perm)
    if cells.distinct:
        where = np.empty((m.shape[0], m.shape[0]), np.int64)  # sorted position of each cell
        pos = np.empty(len(iu), np.int64)
        pos[cells.order] = np.arange(len(iu))
        where[iu, ju] = where[ju, iu] = pos
        rh_c = rh - rh.mean()
        den = np.sqrt((rh_c**2).sum() * (k**3 - k) / 12)
        # Narrow integers halve the memory traffic: running counts reach k, indices reach the video count.
        small = np.int16 if k < 2**15 else np.int64
        if m.shape[0] < 2**15:
            perms = perms.astype(np.int16)
        for s in range(0, n_perm, _PERM_BLOCK):
            p = perms[s : s + _PERM_BLOCK]
            at = where[p[:, rows], p[:, cols]]
            chosen = np.zeros((len(p), len(iu)), small)
            np.put_along_axis(chosen, at, 1, axis=1)
            rank = np.take_along_axis(np.cumsum(chosen, axis=1, dtype=small), at, axis=1)  # rank among chosen
            null[s : s + _PERM_BLOCK] = (rank.astype(np.float64) @ rh_c) / den
    else:
        for s in range(0, n_perm, _PERM_BLOCK):
            p = perms[s : s + _PERM_BLOCK]
            null[s : s + _PERM_BLOCK] = pearson(rankdata(m[p[:, rows], p[:, cols]]), rh)
    return rho, float((1 + (null >= rho).sum()) / (1 + n_perm)), null


def r2_ols(y: np.ndarray, xs: np.ndarray) -> float:
    """R^2 of least squares of y on the columns of xs (with an intercept)."""
    y = np.asarray(y, np.float64)
    design = np.column_stack([np.ones(len(y)), np.asarray(xs, np.float64).reshape(len(y), -1)])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    tot = ((y - y.mean()) ** 2).sum()
    return float(1.0 - (resid @ resid) / tot) if tot > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class Partition:
    """Commonality analysis: `parts[S]` is the variance explained jointly and only by the set S."""

    names: tuple[str, ...]
    r2: dict[tuple[str, ...], float]  # R^2 of every non-empty subset model
    parts: dict[tuple[str, ...], float]

    @property
    def total(self) -> float:
        return self.r2[self.names]

    def unique(self, name: str) -> float:
        return self.parts[(name,)]

    def shared(self) -> float:
        """Everything explained by more than one predictor."""
        return float(sum(v for k, v in self.parts.items() if len(k) > 1))

    def as_dict(self) -> dict[str, float]:
        return {"+".join(k): v for k, v in self.parts.items()} | {"total": self.total}


def variance_partition(y: np.ndarray, predictors: dict[str, np.ndarray]) -> Partition:
    """Unique and shared R^2 of 2-3 predictors by nested least squares (paper App. F.4).

    parts(S) = sum over T subset of S of (-1)^(|T|+1) R^2(all minus (S minus T)); for two
    predictors: unique(a) = R^2(a, b) - R^2(b), shared = R^2(a) + R^2(b) - R^2(a, b).
    """
    names = tuple(predictors)
    if not 2 <= len(names) <= 3:
        raise ValueError(f"variance partitioning takes 2 or 3 predictors, got {len(names)}")
    cols = {k: np.asarray(v, np.float64).ravel() for k, v in predictors.items()}
    r2 = {(): 0.0}
    for size in range(1, len(names) + 1):
        for sub in itertools.combinations(names, size):
            r2[sub] = r2_ols(y, np.column_stack([cols[k] for k in sub]))
    full = set(names)

    def r2_of(s: set[str]) -> float:
        return r2[tuple(k for k in names if k in s)]

    parts = {}
    for size in range(1, len(names) + 1):
        for sub in itertools.combinations(names, size):
            total = 0.0
            for tsize in range(len(sub) + 1):
                for t in itertools.combinations(sub, tsize):
                    total += (-1) ** (tsize + 1) * r2_of(full - (set(sub) - set(t)))
            parts[sub] = total
    return Partition(names, {k: v for k, v in r2.items() if k}, parts)
