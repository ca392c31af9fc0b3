"""Stimulus splits and the seeded validation hold-out.

The paper holds out 20% of the training judgments for validation; the authors' code holds out 20%
of the training *videos* (stimulus-disjoint, like the test set). Video is the default here, judgment
an option (REFERENCE decision 2). Every trial that a split cannot use is counted and reported.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxbgs.data.judgments import Trials
from jaxbgs.errors import InputError


@dataclasses.dataclass(frozen=True)
class Split:
    name: str
    ids: np.ndarray  # sorted video ids
    trials: Trials  # trials whose three distinct videos are all in `ids`
    n_excluded_repeats: int = 0  # trials inside `ids` that showed one video twice
    n_excluded_crossing: int = 0  # trials mixing these videos with others

    def report(self) -> str:
        return (
            f"{self.name}: {len(self.ids)} videos, {len(self.trials)} trials "
            f"({self.n_excluded_repeats} excluded for repeating a video, "
            f"{self.n_excluded_crossing} for crossing the split)"
        )


def make_split(name: str, trials: Trials, ids: np.ndarray) -> Split:
    """Trials fully inside `ids`; repeats and crossing trials are excluded and counted."""
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    inside = trials.within(ids)
    rep = trials.has_repeat
    return Split(
        name,
        ids,
        trials.select(inside & ~rep),
        int((inside & rep).sum()),
        int((np.isin(trials.items, ids).any(axis=1) & ~inside).sum()),
    )


def validation_split(
    trials: Trials, ids: np.ndarray, *, fraction: float = 0.2, by: str = "video", seed: int = 0
) -> tuple[Split, Split]:
    """Hold out `fraction` of the videos (stimulus-disjoint) or of the judgments, seeded."""
    if not 0.0 < fraction < 1.0:
        raise InputError(
            f"validation fraction must be in (0, 1), got {fraction}", fix="e.g. --set data.val_fraction=0.2"
        )
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    rng = np.random.default_rng(seed)
    if by == "video":
        n_val = int(round(fraction * len(ids)))
        if n_val < 3 or len(ids) - n_val < 3:
            raise InputError(
                f"holding out {n_val} of {len(ids)} videos leaves a side with fewer than 3",
                fix="use more videos or another val fraction",
            )
        val_ids = np.sort(rng.permutation(ids)[:n_val])
        train_ids = np.setdiff1d(ids, val_ids)
        return make_split("train", trials, train_ids), make_split("val", trials, val_ids)
    if by == "judgment":
        base = make_split("train", trials, ids)
        n = len(base.trials)
        val = np.zeros(n, bool)
        val[rng.permutation(n)[: int(round(fraction * n))]] = True
        return (
            dataclasses.replace(base, trials=base.trials.select(~val)),
            dataclasses.replace(base, name="val", trials=base.trials.select(val)),
        )
    raise InputError(f"unknown validation split {by!r}", fix="use 'video' (default) or 'judgment'")
