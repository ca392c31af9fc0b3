"""Human similarity structure rebuilt from trials: counts, kept-together counts, p and 1 - p.

Each trial shows three pairs; the two videos not chosen as odd were "kept together". Similarity
p(i, j) = kept together / appeared together. Pairs never shown together are unobserved: they sit
at 0 in `similarity` (as in the authors' CSVs) and are excluded by `mask` everywhere downstream.
A trial that repeats a video contributes its distinct pairs only (the self-pair is skipped), which
reproduces the authors' test matrix exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxbgs.data.judgments import Trials
from jaxbgs.errors import InputError

_POSITION_PAIRS = ((0, 1), (0, 2), (1, 2))


@dataclasses.dataclass(frozen=True)
class PairMatrix:
    """Pair statistics over `ids` (sorted); row/column r of every matrix is video `ids[r]`."""

    ids: np.ndarray  # (n,) int64
    counts: np.ndarray  # (n, n) int64, times the pair appeared in one trial; zero diagonal
    together: np.ndarray  # (n, n) int64, times the pair was kept together

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def similarity(self) -> np.ndarray:
        p = np.divide(self.together, self.counts, out=np.zeros(self.counts.shape), where=self.counts > 0)
        np.fill_diagonal(p, 1.0)
        return p

    @property
    def distance(self) -> np.ndarray:
        d = 1.0 - self.similarity
        np.fill_diagonal(d, 0.0)
        return d

    @property
    def mask(self) -> np.ndarray:
        """Observed pairs (symmetric, False on the diagonal)."""
        return self.counts > 0

    def observed_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column positions (r < c) of the observed pairs, in row-major order."""
        r, c = np.triu_indices(self.n, k=1)
        keep = self.counts[r, c] > 0
        return r[keep], c[keep]

    @property
    def n_pairs_observed(self) -> int:
        return len(self.observed_pairs()[0])

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """Positions of global video ids in this matrix (error if one is missing)."""
        ids = np.asarray(ids)
        pos = np.searchsorted(self.ids, ids)
        pos = np.clip(pos, 0, self.n - 1)
        missing = self.ids[pos] != ids
        if missing.any():
            raise InputError(
                f"video id(s) {ids[missing][:5].tolist()} are not in this split's matrix",
                fix=f"use ids of the split ({self.n} videos, {self.ids[0]}-{self.ids[-1]})",
            )
        return pos

    def restrict(self, ids: np.ndarray) -> PairMatrix:
        pos = self.positions(np.sort(np.asarray(ids)))
        sub = np.ix_(pos, pos)
        return PairMatrix(self.ids[pos], self.counts[sub], self.together[sub])


def pair_matrix(trials: Trials, ids: np.ndarray | None = None) -> PairMatrix:
    """Build the pair statistics of `trials` over `ids` (default: every id the trials use).

    Trials with a video outside `ids` are an error: restrict them first (`Trials.within`), so that
    nothing is dropped silently.
    """
    ids = np.unique(trials.items) if ids is None else np.unique(np.asarray(ids, dtype=np.int64))
    inside = trials.within(ids)
    if not inside.all():
        i = int(np.flatnonzero(~inside)[0])
        raise InputError(
            f"{int((~inside).sum())} trial(s) use videos outside the {len(ids)} given ids, "
            f"e.g. {trials.items[i].tolist()}",
            file=trials.source,
            fix="restrict the trials to the split first (trials.select(trials.within(ids)))",
        )
    n = len(ids)
    pos = np.searchsorted(ids, trials.items)
    counts = np.zeros((n, n), np.int64)
    for a, b in _POSITION_PAIRS:
        x, y = pos[:, a], pos[:, b]
        keep = x != y
        np.add.at(counts, (x[keep], y[keep]), 1)
        np.add.at(counts, (y[keep], x[keep]), 1)
    kept = np.searchsorted(ids, trials.kept_pair())
    keep = kept[:, 0] != kept[:, 1]
    together = np.zeros((n, n), np.int64)
    np.add.at(together, (kept[keep, 0], kept[keep, 1]), 1)
    np.add.at(together, (kept[keep, 1], kept[keep, 0]), 1)
    return PairMatrix(ids, counts, together)
