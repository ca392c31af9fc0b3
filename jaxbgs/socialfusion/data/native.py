"""Shared plumbing of SocialFusion's five dataset readers: checks that say where to download a missing
file, typed fields that name the file and row when they are malformed, and counted drops.

Readers raise `InputError` for anything that means the files are not the dataset they should be
(missing annotation file, wrong column count, non-numeric field, label out of range, unknown class)
and drop, count and log what the protocol itself filters out (GazeFollow inout, AffectNet ids 8-10,
HaGRID hands that are all no_gesture) or a partly extracted archive leaves out (missing images).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from jaxbgs.errors import InputError
from jaxbgs.socialfusion.data.samples import Sample, SampleList

log = logging.getLogger("jaxbgs.socialfusion.data")

DOWNLOAD = {
    "gazefollow": "the extended GazeFollow release (directory data_new) linked from "
    "github.com/ejcgt/attention-target-detection (images from gazefollow.csail.mit.edu)",
    "pisc": "zenodo.org/record/1059155 (images-00..03 concatenated and untarred into image/, plus the "
    "annotation JSONs and the domain_split / relationship_split archives)",
    "hagrid": "github.com/hukenovs/hagrid (`python download.py --annotations --dataset`, unzipped into "
    "hagrid_annotations/ and hagrid_dataset/)",
    "lam": "the Ego4D CLI (`ego4d --output_directory ... --datasets annotations --benchmarks av` for "
    "av_train.json / av_val.json), then github.com/EGO4D/social-interactions branch lam: "
    "data/split/*.list, scripts/download_clips.py and scripts/extract_frame.sh",
    "affectnet": "mohammadmahoor.com/affectnet (access on request; the classic release with "
    "Manually_Annotated_file_lists/ and Manually_Annotated_Images/)",
}


def require(path: Path, dataset: str, *, directory: bool = False, fix: str | None = None) -> Path:
    """`path` if it exists, else an InputError naming it and where the dataset comes from."""
    if path.is_dir() if directory else path.is_file():
        return path
    kind = "directory" if directory else "file"
    raise InputError(f"{dataset} {kind} not found", file=path, fix=fix or f"download {DOWNLOAD[dataset]}")


def check_split(split: str, allowed: Sequence[str], dataset: str, note: str = "") -> None:
    if split not in allowed:
        raise InputError(
            f"unknown {dataset} split {split!r}{note}", where="split", fix=f"use one of {tuple(allowed)}"
        )


def load_json(path: Path, dataset: str):
    require(path, dataset)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(
            f"not valid JSON ({e.msg})",
            file=path,
            where=f"line {e.lineno}",
            fix=f"re-download {DOWNLOAD[dataset]}",
        ) from None
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text ({e})", file=path, fix=f"re-download {DOWNLOAD[dataset]}") from None


def number(value, file: Path, where: str, field: str) -> float:
    """A finite float from a CSV cell or JSON value, or an InputError naming the row and field."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(value, bool) or not math.isfinite(x):
        raise InputError(f"field {field} is {value!r}, not a finite number", file=file, where=where)
    return x


def integer(value, file: Path, where: str, field: str) -> int:
    x = number(value, file, where, field)
    if x != int(x):
        raise InputError(f"field {field} is {value!r}, not an integer", file=file, where=where)
    return int(x)


def pixel_box(x1: float, y1: float, x2: float, y2: float, width: float, height: float):
    """Pixel corners -> normalised (x1, y1, x2, y2): inverted corners swapped, then clipped to the image
    (Gaze-LLE's rule for GazeFollow heads; verlab's clipping for PISC)."""
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    return (x1 / width, y1 / height, x2 / width, y2 / height)


def header_size(path: Path, key: str | None = None) -> tuple[int, int] | None:
    """(W, H) from the image header (no pixel decode), or None when the file is absent."""
    if not path.is_file():
        return None
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(
            f"cannot read the image header ({e})",
            file=path,
            where=key,
            fix="the file is corrupt or not an image; re-download or re-extract it",
        ) from e


def listing(directory: Path, cache: dict[Path, frozenset[str]]) -> frozenset[str]:
    """File names in `directory` (empty if absent), listed once: one listdir beats a stat per image."""
    if directory not in cache:
        cache[directory] = frozenset(os.listdir(directory)) if directory.is_dir() else frozenset()
    return cache[directory]


class Drops:
    """Counts what a reader leaves out and why; `finish` logs it and attaches it to the SampleList.

    Protocol filters log at INFO; `warn=True` reasons (files the annotations name but the disk lacks)
    at WARNING, with a few examples."""

    def __init__(self, name: str):
        self.name = name
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}
        self.warn: set[str] = set()

    def add(self, reason: str, example: str | None = None, *, n: int = 1, warn: bool = False) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n
        if warn:
            self.warn.add(reason)
        if example is not None and len(self.examples.setdefault(reason, [])) < 3:
            self.examples[reason].append(example)

    def finish(self, samples: list[Sample], fix: str | None = None) -> SampleList:
        parts = "; ".join(
            f"{reason}: {n}"
            + (f" (e.g. {', '.join(self.examples[reason])})" if self.examples.get(reason) else "")
            for reason, n in self.counts.items()
        )
        if not samples:
            raise InputError(
                f"no usable samples{'; dropped ' + parts if parts else ''}", where=self.name, fix=fix
            )
        if parts:
            level = logging.WARNING if self.warn else logging.INFO
            log.log(level, "%s: %d samples; dropped %s", self.name, len(samples), parts)
        return SampleList(samples, self.counts)


def check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"limit must be a positive integer or None, got {limit!r}", where="limit")
