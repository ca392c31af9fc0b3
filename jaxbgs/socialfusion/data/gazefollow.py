"""GazeFollow (Recasens et al. 2015) in Chong et al.'s extended release, read the way Gaze-LLE reads it.

SocialFusion (`socialfusion.txt`, Sec. 3-4) scores gaze on the GazeFollow test set, which has no
validation split, with Gaze-LLE's (`fkryan/gazelle`) protocol. Layout, root = the `data_new` dir:

    train_annotations_release.txt    header-less CSV, one row per head
    test_annotations_release.txt     header-less CSV, one row per (head, annotator)
    train/..., test2/...             images, at the relative path in the first column

Columns: path, idx, body_bbox_x, body_bbox_y, body_bbox_w, body_bbox_h, eye_x, eye_y, gaze_x, gaze_y,
bbox_x_min, bbox_y_min, bbox_x_max, bbox_y_max, inout (train only), source, meta. Chong's loader has
no `source`, so a train row has 16 or 17 fields and a test row 15 or 16. Eye and gaze are
normalised; the head box is in pixels and is normalised here by the size in the image header, after
swapping inverted corners and clipping to the image (gazelle's `data_prep/preprocess_gazefollow.py`).

Train: rows with inout -1 (invalid) are dropped, and with `in_frame_only` (Gaze-LLE's GazeFollow
training) also inout 0 (target out of frame); an out-of-frame head that is kept has no points.
Test: rows are grouped by (path, eye_x) into one head holding every annotator's point; points
with a negative coordinate are skipped (as the AUC code skips them); all test heads are in frame.
A gaze point beyond [0, 1] (an in-frame train target, a test point above 1) is dropped and counted
with a warning: normalised coordinates outside the image are annotation errors.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from jaxbgs.errors import InputError
from jaxbgs.socialfusion.data.native import (
    Drops,
    check_limit,
    check_split,
    header_size,
    integer,
    number,
    pixel_box,
    require,
)
from jaxbgs.socialfusion.data.samples import Sample, SampleList

SPLITS = ("train", "test")
COLUMNS = (
    "path", "idx", "body_bbox_x", "body_bbox_y", "body_bbox_w", "body_bbox_h", "eye_x", "eye_y", "gaze_x",
    "gaze_y", "bbox_x_min", "bbox_y_min", "bbox_x_max", "bbox_y_max", "inout",
)  # fmt: skip
FIELD_COUNTS = {"train": (16, 17), "test": (15, 16)}  # Chong's release / Gaze-LLE's column names
INOUT = 14


def _rows(path: Path, split: str):
    """(line number, fields) of every non-blank row, the field count checked."""
    expected = FIELD_COUNTS[split]
    with open(path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not any(c.strip() for c in row):
                continue
            if len(row) not in expected:
                raise InputError(
                    f"{len(row)} fields, expected {expected[0]} or {expected[1]} for a {split} row",
                    file=path,
                    where=f"line {n}",
                    fix=f"use the extended release's {path.name} (columns: {', '.join(COLUMNS)}, ...)",
                )
            yield n, row


def _head(path: Path, n: int, row: list[str]):
    where = f"line {n}"
    box = tuple(number(row[i], path, where, COLUMNS[i]) for i in range(10, 14))
    eye_x = number(row[6], path, where, "eye_x")
    number(row[7], path, where, "eye_y")
    gaze = (number(row[8], path, where, "gaze_x"), number(row[9], path, where, "gaze_y"))
    if not row[0].strip():
        raise InputError("empty image path", file=path, where=where)
    return row[0].strip(), eye_x, box, gaze


def _inside(point: tuple[float, float]) -> bool:
    return all(0.0 <= c <= 1.0 for c in point)


def read_gazefollow(
    root: str | os.PathLike, split: str, *, in_frame_only: bool = True, limit: int | None = None
) -> SampleList:
    """GazeFollow heads as gaze Samples: one head box, the target point(s), the image size."""
    check_split(split, SPLITS, "GazeFollow", " (it has no validation split; the paper evaluates on test)")
    check_limit(limit)
    root = require(Path(root), "gazefollow", directory=True)
    path = require(root / f"{split}_annotations_release.txt", "gazefollow")
    drops = Drops(f"read_gazefollow({split})")
    # (first line, last line, image, pixel box, points): train heads now, test heads once grouped
    heads: list[tuple[int, int, str, tuple, tuple]] = []
    if split == "train":
        for n, row in _rows(path, split):
            image, _, box, gaze = _head(path, n, row)
            inout = integer(row[INOUT], path, f"line {n}", "inout")
            if inout not in (-1, 0, 1):
                raise InputError(f"inout is {inout}, not -1, 0 or 1", file=path, where=f"line {n}")
            if inout == -1:
                drops.add("inout=-1 (invalid annotation)")
            elif inout == 0 and in_frame_only:
                drops.add("inout=0 (target out of frame; in_frame_only)")
            elif inout == 1 and not _inside(gaze):
                drops.add("in-frame targets outside the image (gaze not in [0, 1])", f"line {n}", warn=True)
            else:
                heads.append((n, n, image, box, (gaze,) if inout == 1 else ()))
    else:
        groups: dict[tuple[str, float], list] = {}
        for n, row in _rows(path, split):
            image, eye_x, box, gaze = _head(path, n, row)
            group = groups.setdefault((image, eye_x), [n, n, image, box, []])
            if box != group[3]:
                raise InputError(
                    f"head box {box} differs from {group[3]} on line {group[0]}, the same head (path, eye_x)",
                    file=path,
                    where=f"line {n}",
                    fix="every annotator row of a test head must repeat its head box",
                )
            group[1] = n
            if gaze[0] < 0 or gaze[1] < 0:
                drops.add("test annotator points with a negative coordinate (skipped)")
            elif not _inside(gaze):
                drops.add("test annotator points beyond the image (> 1)", f"line {n}", warn=True)
            else:
                group[4].append(gaze)
        for first, last, image, box, points in groups.values():
            if points:
                heads.append((first, last, image, box, tuple(points)))
            else:
                drops.add("test heads without any valid annotator point", f"line {first}")

    sizes: dict[str, tuple[int, int] | None] = {}
    samples = []
    for first, last, image, box, points in heads:
        file = root / image
        lines = f"line {first}" if first == last else f"lines {first}-{last}"
        if image not in sizes:
            sizes[image] = header_size(file, f"{path.name}:{lines}")
        if sizes[image] is None:
            drops.add("image missing on disk", str(file), warn=True)
            continue
        w, h = sizes[image]
        samples.append(
            Sample(
                task="gaze",
                image=str(file),
                label=-1,
                boxes=(pixel_box(*box, w, h),),
                points=points,
                size=(w, h),
                key=f"{path.name}:{lines}",
            )
        )
        if limit is not None and len(samples) >= limit:
            break
    return drops.finish(samples, fix=f"check {root} against the extended GazeFollow release")
