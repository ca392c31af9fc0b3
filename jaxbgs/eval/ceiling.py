"""Split-half noise ceiling of a human similarity matrix (BGS paper, Appendix F.5).

Per iteration: keep pairs with at least two votes; rebuild each pair's binary votes from its
proportion and count, shuffle, split into halves; Spearman across pairs between the halves'
proportions. Average over iterations, Spearman-Brown correct, square.

Shuffling k "kept together" votes among n and taking the first floor(n/2) puts a hypergeometric
number of them in the first half, so the halves are drawn directly from that distribution: every
iteration and pair at once, with the same law as an explicit shuffle.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxbgs.data.matrices import PairMatrix
from jaxbgs.eval.stats import spearman


@dataclasses.dataclass(frozen=True)
class Ceiling:
    split_half_r2: float  # (Spearman-Brown corrected r)^2: the ceiling on R^2
    split_half_r: float  # Spearman-Brown corrected mean split-half Spearman
    mean_half_r: float  # mean uncorrected split-half Spearman
    n_pairs_used: int  # pairs with >= 2 votes
    iters: int
    seed: int
    half_r: np.ndarray | None = dataclasses.field(
        default=None, compare=False, repr=False
    )  # (iters,) per split

    @property
    def corrected(self) -> np.ndarray:
        """Spearman-Brown corrected r of every single split (the spread behind the mean estimate)."""
        return 2 * self.half_r / (1 + self.half_r)


def split_half_ceiling(
    matrix: PairMatrix, *, iters: int = 1000, seed: int = 0, min_votes: int = 2
) -> Ceiling:
    if iters < 1:
        raise ValueError(f"iters must be >= 1 (got {iters}): the ceiling averages over random splits")
    if min_votes < 2:
        raise ValueError(
            f"min_votes must be >= 2 (got {min_votes}): a pair's votes are split into two halves"
        )
    rows, cols = matrix.observed_pairs()
    n = matrix.counts[rows, cols]
    k = matrix.together[rows, cols]
    keep = n >= min_votes
    n, k = n[keep], k[keep]
    if len(n) < 3:
        raise ValueError(f"only {len(n)} pairs have >= {min_votes} votes: too few for a split-half ceiling")
    h = n // 2
    rng = np.random.default_rng(seed)
    a = rng.hypergeometric(k, n - k, h, size=(iters, len(n)))
    r = spearman(a / h, (k - a) / (n - h))
    mean_r = float(r.mean())
    sb = 2 * mean_r / (1 + mean_r) if mean_r > -1 else -1.0
    return Ceiling(sb**2, sb, mean_r, int(len(n)), iters, seed, np.asarray(r))
