"""PISC (People in Social Context; Li et al., ICCV 2017, Zenodo record 1059155), one sample per pair.

SocialFusion classifies the relation of two boxed people at two granularities, each with its own
official split (`socialfusion.txt` Sec. 3; prompts in App. D). Layout, root = the unpacked record:

    annotation_image_info.json           list of {id, imgW, imgH, bbox: [[x1, y1, x2, y2] px, ...]}
    domain.json, relationship.json       {image id: {"i j": label}}, i, j 1-based into bbox, label 1-based
    domain_split/domain_{train,val,test}idx.json           lists of image ids (coarse task)
    relationship_split/relation_{train,val,test}idx.json   lists of image ids (fine task)
    image/<id>.jpg                       zero-padded to 5 digits in the release; <id>.jpg also accepted

The relationship split names are confirmed by several loaders; the domain names by analogy only,
so `valid` for `val` is accepted too. Boxes are swapped if inverted, clipped to the image (verlab's
Structural_Reasoning_SRR does the clipping) and normalised by imgW, imgH. Labels: domain 1 intimate,
2 non-intimate, 3 no relation; relation 1 friends, 2 family, 3 couple, 4 professional,
5 commercial, 6 no relation (CLASSES, 0-based). Split ids without any pair label are dropped and
counted; a split id missing from annotation_image_info.json is an error.
"""

from __future__ import annotations

import os
from pathlib import Path

from jaxbgs.errors import InputError
from jaxbgs.socialfusion.data.native import (
    Drops,
    check_limit,
    check_split,
    integer,
    listing,
    load_json,
    number,
    pixel_box,
    require,
)
from jaxbgs.socialfusion.data.samples import CLASSES, Sample, SampleList

SPLITS = ("train", "val", "test")
SUBTASKS = ("domain", "relation")
LABEL_FILES = {"domain": "domain.json", "relation": "relationship.json"}
SPLIT_DIRS = {"domain": ("domain_split", "domain"), "relation": ("relationship_split", "relation")}
SPLIT_ALIASES = {"train": ("train",), "val": ("val", "valid"), "test": ("test",)}


def split_file(root: Path, subtask: str, split: str) -> Path:
    """The official split list, e.g. relationship_split/relation_validx.json."""
    folder, prefix = SPLIT_DIRS[subtask]
    candidates = [root / folder / f"{prefix}_{alias}idx.json" for alias in SPLIT_ALIASES[split]]
    for path in candidates:
        if path.is_file():
            return path
    present = sorted(p.name for p in (root / folder).glob("*.json")) if (root / folder).is_dir() else []
    raise InputError(
        f"PISC {subtask} split file not found (found {present or 'no JSON files'} in {folder}/)",
        file=candidates[0],
        fix=f"unzip {folder}.zip from zenodo.org/record/1059155 into {root}",
    )


def _infos(path: Path) -> dict[str, dict]:
    data = load_json(path, "pisc")
    if not isinstance(data, list):
        raise InputError("expected a list of per-image objects", file=path, fix="re-download the annotation")
    out = {}
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not {"id", "imgW", "imgH", "bbox"} <= item.keys():
            raise InputError("entry lacks id, imgW, imgH or bbox", file=path, where=f"entry {i}")
        out[str(item["id"])] = item
    return out


def _image(root: Path, image_id: str, cache: dict) -> Path | None:
    names = listing(root / "image", cache)
    candidates = [f"{image_id}.jpg"]
    if image_id.isdigit():
        candidates.insert(0, f"{int(image_id):05d}.jpg")
    for name in candidates:
        if name in names:
            return root / "image" / name
    return None


def read_pisc(root: str | os.PathLike, split: str, subtask: str, *, limit: int | None = None) -> SampleList:
    """Person pairs of one PISC split as pisc_domain or pisc_relation Samples: the two person boxes in
    pair-key order, 0-based label, (imgW, imgH)."""
    check_split(split, SPLITS, "PISC")
    if subtask not in SUBTASKS:
        raise InputError(f"unknown PISC subtask {subtask!r}", where="subtask", fix=f"use one of {SUBTASKS}")
    check_limit(limit)
    root = require(Path(root), "pisc", directory=True)
    info_path = root / "annotation_image_info.json"
    label_path = root / LABEL_FILES[subtask]
    infos = _infos(info_path)
    labels = load_json(label_path, "pisc")
    if not isinstance(labels, dict):
        raise InputError("expected {image id: {pair key: label}}", file=label_path)
    ids_path = split_file(root, subtask, split)
    ids = load_json(ids_path, "pisc")
    if not isinstance(ids, list):
        raise InputError("expected a JSON list of image ids", file=ids_path)
    require(root / "image", "pisc", directory=True)

    task = f"pisc_{subtask}"
    n_classes = len(CLASSES[task])
    drops, cache, samples = Drops(f"read_pisc({split}, {subtask})"), {}, []
    for raw_id in ids:
        image_id = str(raw_id)
        if image_id not in infos:
            raise InputError(
                f"image id {image_id} of the split has no entry in {info_path.name}",
                file=ids_path,
                where=f"id {image_id}",
                fix="use the split files and annotations of one PISC release",
            )
        pairs = labels.get(image_id)
        if not pairs:
            drops.add(f"split images without {subtask} labels", image_id)
            continue
        if not isinstance(pairs, dict):
            raise InputError("expected {pair key: label}", file=label_path, where=f"image {image_id}")
        info = infos[image_id]
        where = f"image {image_id}"
        w = number(info["imgW"], info_path, where, "imgW")
        h = number(info["imgH"], info_path, where, "imgH")
        people = info["bbox"]
        if w <= 0 or h <= 0 or not isinstance(people, list):
            raise InputError("bad imgW/imgH or bbox list", file=info_path, where=where)
        file = _image(root, image_id, cache)
        if file is None:
            drops.add(
                "pairs whose image is missing on disk", f"image/{image_id}.jpg", n=len(pairs), warn=True
            )
            continue
        for pair, value in pairs.items():
            at = f"image {image_id} pair {pair!r}"
            parts = str(pair).split()
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                raise InputError(
                    "pair key is not two 1-based person indices 'i j'", file=label_path, where=at
                )
            i, j = (int(p) for p in parts)
            if not (1 <= i <= len(people) and 1 <= j <= len(people)) or i == j:
                raise InputError(
                    f"person indices must be two different numbers in 1..{len(people)} (the image's boxes)",
                    file=label_path,
                    where=at,
                )
            label = integer(value, label_path, at, "label")
            if not 1 <= label <= n_classes:
                raise InputError(f"label {label} outside 1..{n_classes}", file=label_path, where=at)
            boxes = []
            for k in (i, j):
                box = people[k - 1]
                if not isinstance(box, list) or len(box) != 4:
                    raise InputError(f"box {k} is not [x1, y1, x2, y2]", file=info_path, where=where)
                px = [number(v, info_path, f"{where} box {k}", "bbox") for v in box]
                boxes.append(pixel_box(*px, w, h))
            samples.append(
                Sample(
                    task=task,
                    image=str(file),
                    label=label - 1,
                    boxes=tuple(boxes),
                    size=(round(w), round(h)),
                    key=f"{label_path.name}:{at}",
                )
            )
            if limit is not None and len(samples) >= limit:
                return drops.finish(samples)
    return drops.finish(samples, fix=f"check {root} against the PISC release")
