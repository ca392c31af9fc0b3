"""AffectNet (Mollahosseini et al. 2017), the classic manually annotated release, 8 expressions.

SocialFusion reports AffectNet accuracy and mAP on the official validation set, which the field
uses as its test set since the test set is unreleased (`socialfusion.txt` Sec. 4). Layout:

    Manually_Annotated_file_lists/training.csv     split "train"
    Manually_Annotated_file_lists/validation.csv   split "val"
    Manually_Annotated_Images/<subDirectory_filePath>

Each CSV has a header: subDirectory_filePath, face_x, face_y, face_width, face_height,
facial_landmarks (';'-separated), expression, valence, arousal. The face box (pixels) is the crop.
Expression ids 0-7 are the classes (CLASSES["emotion"]); 8 None, 9 Uncertain and 10 No-Face are
dropped and counted, as every 8-way protocol does; any other id is an error.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from jaxbgs.errors import InputError
from jaxbgs.socialfusion.data.native import Drops, check_limit, check_split, integer, listing, require
from jaxbgs.socialfusion.data.samples import CLASSES, Sample, SampleList

SPLITS = {"train": "training.csv", "val": "validation.csv"}
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "expression")
DROPPED_IDS = {8: "None", 9: "Uncertain", 10: "No-Face"}


def read_affectnet(root: str | os.PathLike, split: str, *, limit: int | None = None) -> SampleList:
    """AffectNet faces of one split as emotion Samples (crop = the face box, size = its size)."""
    check_split(split, tuple(SPLITS), "AffectNet", " (the official test set is unreleased; report on val)")
    check_limit(limit)
    root = require(Path(root), "affectnet", directory=True)
    path = require(root / "Manually_Annotated_file_lists" / SPLITS[split], "affectnet")
    images = require(root / "Manually_Annotated_Images", "affectnet", directory=True)
    drops, cache, samples = Drops(f"read_affectnet({split})"), {}, []
    n_classes = len(CLASSES["emotion"])
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = [c.strip() for c in next(rows, [])]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise InputError(
                f"header lacks columns {missing}",
                file=path,
                where="line 1",
                fix=f"expected {', '.join(COLUMNS)}",
            )
        col = {c: header.index(c) for c in COLUMNS}
        for n, row in enumerate(rows, 2):
            if not any(c.strip() for c in row):
                continue
            where = f"line {n}"
            if len(row) != len(header):
                raise InputError(f"{len(row)} fields, the header has {len(header)}", file=path, where=where)
            expression = integer(row[col["expression"]], path, where, "expression")
            if expression in DROPPED_IDS:
                drops.add(f"expression {expression} ({DROPPED_IDS[expression]})")
                continue
            if not 0 <= expression < n_classes:
                raise InputError(f"expression {expression} outside 0..10", file=path, where=where)
            x, y, w, h = (integer(row[col[c]], path, where, c) for c in COLUMNS[1:5])
            if w <= 0 or h <= 0:
                raise InputError(f"face box {w}x{h} is empty", file=path, where=where)
            rel = row[col["subDirectory_filePath"]].strip()
            file = images / rel
            if file.name not in listing(file.parent, cache):
                drops.add("images missing on disk", str(file), warn=True)
                continue
            samples.append(
                Sample(
                    task="emotion",
                    image=str(file),
                    label=expression,
                    crop=(x, y, x + w, y + h),
                    size=(w, h),
                    key=f"{path.name}:{where}",
                )
            )
            if limit is not None and len(samples) >= limit:
                break
    return drops.finish(samples, fix=f"check {root} against the AffectNet release")
