"""Odd-one-out accuracy of a model similarity matrix on human trials, under two labelled protocols.

- `three_way` (standard): the model's odd one is the item outside its most similar pair; correct
  when it equals the human choice. Chance 1/3.
- `anchor` (the authors' code): the two non-chosen items are anchor then positive in shown order,
  the human odd one is the negative; correct when sim(anchor, positive) > sim(anchor, negative).
  Chance 1/2. This is the protocol behind the paper's reported OOO percentages.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxbgs.data.judgments import Trials
from jaxbgs.errors import InputError


@dataclasses.dataclass(frozen=True)
class OOOResult:
    three_way: float
    anchor: float
    n_trials: int
    three_way_correct: np.ndarray  # (T,) bool per trial, for agreement tables
    anchor_correct: np.ndarray


def _positions(ids: np.ndarray, query: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids)
    order = np.argsort(ids)
    at = np.searchsorted(ids[order], query).clip(0, len(ids) - 1)
    pos = order[at]
    if (ids[pos] != query).any():
        missing = np.unique(np.asarray(query)[ids[pos] != query])
        raise InputError(
            f"trials use video id(s) {missing[:5].tolist()} that have no row in the similarity matrix",
            fix="score trials on the split whose videos were embedded",
        )
    return pos


def ooo_accuracy(similarity: np.ndarray, ids: np.ndarray, trials: Trials) -> OOOResult:
    """Score `trials` with `similarity` (n, n), whose rows are the videos `ids`."""
    s = np.asarray(similarity)
    a, b, c = _positions(ids, trials.items).T
    # Column q holds the similarity of the pair that leaves out item q: argmax names the model's odd one.
    pair_sims = np.stack([s[b, c], s[a, c], s[a, b]], axis=1)
    three = trials.items[np.arange(len(trials)), np.argmax(pair_sims, axis=1)] == trials.odd
    anchor, positive = _positions(ids, trials.kept_pair()).T
    negative = _positions(ids, trials.odd)
    anchor_ok = s[anchor, positive] > s[anchor, negative]
    return OOOResult(float(three.mean()), float(anchor_ok.mean()), len(trials), three, anchor_ok)
