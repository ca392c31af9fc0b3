"""HaGRIDv2 (Nuzhdin et al. 2024; github.com/hukenovs/hagrid), full frames labelled by the official rule.

SocialFusion classifies the gesture in the image (`socialfusion.txt` Sec. 3, App. D). Layout:

    hagrid_annotations/{train,val,test}/<target>.json   one JSON per target per split
    hagrid_dataset/<target>/<name>.jpg                  images, one folder per target, all splits

Each JSON maps an image name (no extension) to `bboxes` (normalised COCO [x, y, w, h] per hand),
`labels` (per hand, including no_gesture), `united_bbox` / `united_label` (per hand: the union box
of a two-handed gesture, else null), `user_id` and more. The label follows the official
`ClassificationDataset`: no_gesture for the no_gesture folder, else the first hand label that is not
no_gesture; images whose hands are all no_gesture outside that folder are dropped (counted), and so
are images absent from disk (the official loader drops them too). HaGRID has no person boxes, and
the paper does not say how it prompts HaGRID, so the box prompt is the gesture hand's box, or its
united box for a two-handed gesture (the reference notes' proposal). Absent target files are
skipped (log line), as the official loader does; an unknown target file is an error. `size` is left
None: it would take a header read per image (1M files) and no HaGRID metric needs it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from jaxbgs.errors import InputError
from jaxbgs.socialfusion.data.native import (
    Drops,
    check_limit,
    check_split,
    listing,
    load_json,
    number,
    require,
)
from jaxbgs.socialfusion.data.samples import HAGRID_TARGETS, Sample, SampleList

log = logging.getLogger("jaxbgs.socialfusion.data")

SPLITS = ("train", "val", "test")
NO_GESTURE = "no_gesture"


def _coco_box(box, file: Path, where: str):
    if not isinstance(box, list) or len(box) != 4:
        raise InputError(f"box {box!r} is not [x, y, w, h]", file=file, where=where)
    x, y, w, h = (number(v, file, where, "bbox") for v in box)
    x1, x2 = sorted((x, x + w))
    y1, y2 = sorted((y, y + h))
    return (min(max(x1, 0.0), 1.0), min(max(y1, 0.0), 1.0), min(max(x2, 0.0), 1.0), min(max(y2, 0.0), 1.0))


def _entries(file: Path, target: str, images: Path, drops: Drops, cache: dict):
    data = load_json(file, "hagrid")
    if not isinstance(data, dict):
        raise InputError("expected {image name: annotation}", file=file)
    names = listing(images / target, cache)
    for name, ann in data.items():
        where = f"image {name}"
        if not isinstance(ann, dict) or not isinstance(ann.get("bboxes"), list):
            raise InputError("annotation lacks a bboxes list", file=file, where=where)
        hands, boxes = ann.get("labels"), ann["bboxes"]
        if not isinstance(hands, list) or len(hands) != len(boxes):
            raise InputError("labels must be a list with one entry per box", file=file, where=where)
        for hand in hands:
            if hand not in HAGRID_TARGETS:
                raise InputError(
                    f"unknown hand label {hand!r}", file=file, where=where, fix="use HaGRIDv2 files"
                )
        if target == NO_GESTURE:
            label, hand = NO_GESTURE, 0
        else:
            hand = next((i for i, lab in enumerate(hands) if lab != NO_GESTURE), None)
            if hand is None:
                drops.add("images whose hands are all no_gesture (outside the no_gesture folder)")
                continue
            label = hands[hand]
        if f"{name}.jpg" not in names:
            drops.add("images missing on disk", str(images / target / f"{name}.jpg"), warn=True)
            continue
        united = ann.get("united_bbox")
        if isinstance(united, list) and hand < len(united) and united[hand] is not None:
            box = _coco_box(united[hand], file, f"{where} united_bbox")
        else:
            box = _coco_box(boxes[hand], file, where) if boxes else None
        yield Sample(
            task="gesture",
            image=str(images / target / f"{name}.jpg"),
            label=HAGRID_TARGETS.index(label),
            boxes=(box,) if box is not None else (),
            key=f"{file.parent.name}/{file.name}:{name}",
        )


def read_hagrid(root: str | os.PathLike, split: str, *, limit: int | None = None) -> SampleList:
    """HaGRIDv2 images of one split as gesture Samples, interleaved across targets (so `limit` keeps
    every class), each in its file's order."""
    check_split(split, SPLITS, "HaGRID")
    check_limit(limit)
    root = require(Path(root), "hagrid", directory=True)
    annotations = require(root / "hagrid_annotations" / split, "hagrid", directory=True)
    images = require(root / "hagrid_dataset", "hagrid", directory=True)
    present = {p.stem: p for p in annotations.glob("*.json")}
    unknown = sorted(set(present) - set(HAGRID_TARGETS))
    if unknown:
        raise InputError(
            f"annotation files for unknown targets {unknown}",
            file=annotations,
            fix=f"keep only HaGRIDv2 targets ({', '.join(HAGRID_TARGETS)})",
        )
    if not present:
        raise InputError(
            "no <target>.json annotation files", file=annotations, fix="download the annotations"
        )
    absent = [t for t in HAGRID_TARGETS if t not in present]
    if absent:
        log.info(
            "read_hagrid(%s): no annotation file for %d targets: %s", split, len(absent), ", ".join(absent)
        )
    drops, cache = Drops(f"read_hagrid({split})"), {}
    per_target = []
    for target in HAGRID_TARGETS:
        if target in present:
            require(
                images / target,
                "hagrid",
                directory=True,
                fix=f"download and unzip {target}.zip from github.com/hukenovs/hagrid into {images}",
            )
            per_target.append(list(_entries(present[target], target, images, drops, cache)))
    samples = []
    for rank in range(max(len(s) for s in per_target)):
        samples.extend(s[rank] for s in per_target if rank < len(s))
    return drops.finish(samples[:limit], fix=f"check {root} against the HaGRIDv2 release")
