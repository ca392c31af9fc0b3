"""Odd-one-out trial design: which triplets of items human raters are shown.

Implements Appendix E, Algorithm 1 ("Triplet Selection Algorithm") of the BGS paper (Behavioral
Geometric Supervision): a greedy randomised set cover over item pairs. The pairwise similarity
matrix is estimated from how often two items stay together when a third is picked as the odd one
out, so every pair must appear in at least one triplet or the matrix has holes. Covering all
pairs with as few triplets as possible keeps the number of human ratings (and their cost) down;
the design is then padded to whole participant sets (the paper: 11 sets of 20 trials = 220).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import os

import numpy as np

from jaxbgs.files import atomic_path

__all__ = ["TripletDesign", "greedy_triplet_design"]


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: comparing array fields with == is ambiguous
class TripletDesign:
    """A finished design; arrays are read-only so a design cannot drift after it was made."""

    triplets: np.ndarray  # (T, 3) int64: three distinct item ids per trial, in display order
    set_index: np.ndarray  # (T,) int64: participant set of each trial, arange(T) // set_size
    n_items: int
    set_size: int
    n_cover: int  # triplets the greedy cover needed before padding to whole sets

    def __post_init__(self) -> None:
        triplets = np.array(self.triplets, dtype=np.int64)
        set_index = np.array(self.set_index, dtype=np.int64)
        if triplets.ndim != 2 or triplets.shape[1] != 3:
            raise ValueError(f"triplets must have shape (T, 3) (got {triplets.shape})")
        if set_index.shape != (triplets.shape[0],):
            raise ValueError(
                f"set_index must have shape ({triplets.shape[0]},) to match triplets (got {set_index.shape})"
            )
        triplets.setflags(write=False)
        set_index.setflags(write=False)
        object.__setattr__(self, "triplets", triplets)
        object.__setattr__(self, "set_index", set_index)

    def pair_coverage(self) -> np.ndarray:
        """(n_items, n_items) symmetric count of trials showing each pair; zero diagonal.

        A zero off the diagonal is a hole in the similarity matrix this design would give.
        """
        n, t = self.n_items, self.triplets
        rows = np.concatenate([t[:, 0], t[:, 0], t[:, 1]])
        cols = np.concatenate([t[:, 1], t[:, 2], t[:, 2]])
        counts = np.bincount(rows * n + cols, minlength=n * n).reshape(n, n)
        return (counts + counts.T).astype(np.int64)

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write columns set,trial,i,j,k (trial = 0-based position within its set).

        Atomic (temp sibling + os.replace) so a crash never leaves a truncated design that a
        survey tool could silently serve.
        """
        trial = np.arange(self.triplets.shape[0], dtype=np.int64) % self.set_size
        columns = (self.set_index, trial, self.triplets[:, 0], self.triplets[:, 1], self.triplets[:, 2])
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["set", "trial", "i", "j", "k"])
            writer.writerows(zip(*(c.tolist() for c in columns), strict=True))


def _check_int(name: str, value: object, minimum: int, why: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r}): {why}")
    return int(value)


def _random_triplets(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, ...]:
    """Columns (a, b, c) of `size` uniformly random triplets of distinct items, without rejection.

    Draw a from n values, b from the n-1 others and c from the n-2 others, shifting indices past
    the ones already taken; every ordered triple of distinct items is equally likely.
    """
    a = rng.integers(0, n, size)
    b = rng.integers(0, n - 1, size)
    c = rng.integers(0, n - 2, size)
    b += b >= a
    c += c >= np.minimum(a, b)
    c += c >= np.maximum(a, b)
    return a, b, c


def _greedy_cover(rng: np.random.Generator, n: int, pool_size: int) -> np.ndarray:
    uncovered = np.ones((n, n), dtype=np.uint8)  # symmetric; 1 = pair not yet in any triplet
    np.fill_diagonal(uncovered, 0)
    flat = uncovered.reshape(-1)  # a view: writes through to `uncovered`
    n_uncovered = n * (n - 1) // 2
    chosen: list[tuple[int, int, int]] = []
    while n_uncovered > 0:
        a, b, c = _random_triplets(rng, n, pool_size)
        an, bn = a * n, b * n
        coverage = flat[an + b] + flat[an + c] + flat[bn + c]
        best = int(np.argmax(coverage))
        if coverage[best] > 0:
            i, j, k = int(a[best]), int(b[best]), int(c[best])
        else:  # pool missed every uncovered pair: build a triplet around one instead of a useless one
            i, j = divmod(int(rng.choice(np.flatnonzero(np.triu(uncovered, 1)))), n)
            score = uncovered[i].astype(np.int64) + uncovered[j]
            score[[i, j]] = -1
            k = int(rng.choice(np.flatnonzero(score == score.max())))
        n_uncovered -= int(uncovered[i, j]) + int(uncovered[i, k]) + int(uncovered[j, k])
        uncovered[[i, j, i, k, j, k], [j, i, k, i, k, j]] = 0
        chosen.append((i, j, k))
    return np.array(chosen, dtype=np.int64).reshape(-1, 3)


def _pad(rng: np.random.Generator, n: int, existing: np.ndarray, needed: int) -> np.ndarray:
    """`needed` random triplets, avoiding ones already in the design while any are left.

    Repeats add no new pair information, so they are only used once every one of the C(n, 3)
    triplets is already in the design (tiny n only).
    """
    if needed == 0:
        return np.empty((0, 3), dtype=np.int64)

    def key(t: np.ndarray) -> np.ndarray:
        s = np.sort(t, axis=1)
        return (s[:, 0] * n + s[:, 1]) * n + s[:, 2]

    taken = np.unique(key(existing))
    n_unused = math.comb(n, 3) - taken.size
    if n_unused >= 2 * needed:  # rejection sampling accepts at least about half of each draw
        out = np.empty((0, 3), dtype=np.int64)
        while out.shape[0] < needed:
            cand = np.stack(_random_triplets(rng, n, 2 * (needed - out.shape[0]) + 8), axis=1)
            keys = key(cand)
            fresh = ~np.isin(keys, taken)
            cand, keys = cand[fresh], keys[fresh]
            _, first = np.unique(keys, return_index=True)
            first = np.sort(first)[: needed - out.shape[0]]  # keep the random draw order
            out = np.concatenate([out, cand[first]])
            taken = np.union1d(taken, keys[first])
        return out
    # Few unused triplets left, so C(n, 3) is small (< design size + 2 * needed): enumerate them.
    everything = np.array(list(itertools.combinations(range(n), 3)), dtype=np.int64)
    unused = rng.permutation(everything[~np.isin(key(everything), taken)])[:needed]
    repeats = np.stack(_random_triplets(rng, n, needed - unused.shape[0]), axis=1)
    return np.concatenate([unused, repeats])


def greedy_triplet_design(
    n_items: int, set_size: int = 220, *, seed: int = 0, pool_size: int = 10_000
) -> TripletDesign:
    """Greedy pair-covering odd-one-out design, padded to whole sets of `set_size` trials.

    Each step scores `pool_size` uniformly random candidate triplets (drawn with replacement) by
    how many of their three pairs are still uncovered and keeps the best. Departure from the
    paper: when no candidate covers a new pair (late in the run, when few pairs remain) the step
    instead picks a random uncovered pair and the third item covering most further pairs, so no
    zero-coverage triplet is ever added; every kept triplet covers at least one new pair.

    Padding uses triplets not yet in the design where possible. The trial order and the order of
    items within each triplet are then shuffled so position carries no information about the
    cover's construction. Deterministic for a given `seed`.
    """
    n = _check_int("n_items", n_items, 3, "a triplet needs three distinct items")
    set_size = _check_int("set_size", set_size, 1, "the design is padded to whole participant sets")
    pool_size = _check_int("pool_size", pool_size, 1, "each greedy step needs at least one candidate")
    seed = _check_int("seed", seed, 0, "numpy.random.default_rng needs a non-negative seed")

    rng = np.random.default_rng(seed)
    cover = _greedy_cover(rng, n, pool_size)
    padding = _pad(rng, n, cover, -cover.shape[0] % set_size)
    triplets = rng.permutation(np.concatenate([cover, padding]))
    triplets = rng.permuted(triplets, axis=1)
    set_index = np.arange(triplets.shape[0], dtype=np.int64) // set_size
    return TripletDesign(triplets, set_index, n_items=n, set_size=set_size, n_cover=cover.shape[0])
