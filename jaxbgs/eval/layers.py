"""Layer selection by 5-fold cross-validation on the training videos (BGS paper §3.2).

The training videos are split into folds; each layer is scored by Spearman rho on the observed
pairs inside each fold; the layer with the highest mean rho is chosen, then scored once on test.
No fitting happens inside a fold, so the folds guard the choice against one lucky subset of pairs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxbgs.data.matrices import PairMatrix
from jaxbgs.eval.rsa import aligned_similarity
from jaxbgs.eval.stats import spearman


@dataclasses.dataclass(frozen=True)
class LayerChoice:
    names: list[str]
    fold_rho: np.ndarray  # (n_layers, n_folds)
    best: str

    @property
    def mean_rho(self) -> np.ndarray:
        return self.fold_rho.mean(axis=1)


def select_layer(
    layers: dict[str, np.ndarray],
    ids: np.ndarray,
    human: PairMatrix,
    *,
    n_folds: int = 5,
    seed: int = 0,
    metric: str = "cosine",
) -> LayerChoice:
    """`layers[name]` is (n_videos, ...) for the videos `ids` (at least the training videos of `human`)."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(human.n, np.int64)
    fold_of[rng.permutation(human.n)] = np.arange(human.n) % n_folds
    rows, cols = human.observed_pairs()
    same = fold_of[rows] == fold_of[cols]
    rows, cols, fold = rows[same], cols[same], fold_of[rows[same]]
    h = human.similarity[rows, cols]
    names = list(layers)
    rho = np.zeros((len(names), n_folds))
    for li, name in enumerate(names):
        m = aligned_similarity(layers[name], ids, human, metric=metric)[rows, cols]
        for f in range(n_folds):
            sel = fold == f
            rho[li, f] = spearman(m[sel], h[sel])
    return LayerChoice(names, rho, names[int(np.argmax(rho.mean(axis=1)))])
