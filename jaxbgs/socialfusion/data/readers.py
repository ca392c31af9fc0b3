"""Readers of SocialFusion's five datasets, each from the directory layout its authors distribute.

SocialFusion (`socialfusion.txt`) trains one model on HaGRIDv2 gestures, PISC relations (domain and
relation), Ego4D Looking-At-Me, GazeFollow and AffectNet. One module per dataset holds its layout,
protocol and citations; this one gathers them and maps task names to readers:

    samples = read("pisc_relation", "/data/PISC", "train")   # == read_pisc(root, "train", "relation")
    samples.dropped                                         # {reason: count} the protocol filtered out

Every reader returns a `SampleList` of `Sample`s (samples.py), takes `limit` for quick runs, raises
`InputError` naming the file, row or key for missing or malformed files, and counts what it drops.
"""

from __future__ import annotations

import os

from jaxbgs.errors import InputError
from jaxbgs.socialfusion.data.affectnet import read_affectnet
from jaxbgs.socialfusion.data.gazefollow import read_gazefollow
from jaxbgs.socialfusion.data.hagrid import read_hagrid
from jaxbgs.socialfusion.data.lam import read_lam
from jaxbgs.socialfusion.data.pisc import read_pisc
from jaxbgs.socialfusion.data.samples import TASKS, SampleList

__all__ = ["EVAL_SPLIT", "read", "read_affectnet", "read_gazefollow", "read_hagrid", "read_lam", "read_pisc"]

# The split each task is reported on in the paper's tables (Table 1: validation sets, GazeFollow test).
EVAL_SPLIT = {
    "gesture": "val",
    "pisc_domain": "val",
    "pisc_relation": "val",
    "lam": "val",
    "gaze": "test",
    "emotion": "val",
}


def read(
    task: str, root: str | os.PathLike, split: str, *, limit: int | None = None, **options
) -> SampleList:
    """The reader of `task` (TASKS) on `root`; `options` go to it (e.g. stride for lam)."""
    if task == "gesture":
        return read_hagrid(root, split, limit=limit, **options)
    if task in ("pisc_domain", "pisc_relation"):
        return read_pisc(root, split, task.removeprefix("pisc_"), limit=limit, **options)
    if task == "lam":
        return read_lam(root, split, limit=limit, **options)
    if task == "gaze":
        return read_gazefollow(root, split, limit=limit, **options)
    if task == "emotion":
        return read_affectnet(root, split, limit=limit, **options)
    raise InputError(f"unknown task {task!r}", where="task", fix=f"use one of {TASKS}")
