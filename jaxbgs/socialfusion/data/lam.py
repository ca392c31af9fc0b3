"""Ego4D Looking-At-Me (Grauman et al. 2022), face crops of the annotated tracks, one frame per sample.

SocialFusion answers "is this face looking at the camera wearer?" from a single face crop
(`socialfusion.txt` Sec. 3, App. D). We read the layout of the official baseline's `data/` directory
(github.com/EGO4D/social-interactions, branch `lam`) after its download steps, without its
`preprocessing.py` (we read the tracks and looking segments straight from the Ego4D JSON):

    json/av_{train,val}.json              Ego4D audio-visual annotations (Ego4D CLI, benchmark av)
    split/{train,val}.list                clip uids, one per line (from the repository's data/split)
    video_imgs/<clip_uid>/img_%05d.jpg    frames of scripts/extract_frame.sh (ffmpeg -vf fps=30)

As the baseline's `data_loader.make_dataset`: tracks come from clips -> persons[1:] (person 0 is
the camera wearer) -> tracking_paths -> track; frames with a non-positive width or height or frame
number 0 are skipped, x and y clamped at 0, and gaps inside a track filled by linear interpolation
of the box; a frame is positive when it lies in a social_segments_looking interval
[start_frame, end_frame] of the same person; every `stride`-th frame of a track is a sample
(the baseline's 13 for train and val); frame f is read from img_{f:05d}.jpg. The baseline feeds 7
frames around f; SocialFusion takes one image, so we keep only the centre frame f. The crop is
the face box truncated to integers and clipped to the frame (numpy slicing in the baseline).
Dropped and counted: frames not extracted (the baseline zero-pads them), boxes empty after
clipping, tracks of clips that have no looking annotation at all. The public test split is a
challenge set with hidden labels, so papers report val.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxbgs.errors import InputError
from jaxbgs.socialfusion.data.native import (
    DOWNLOAD,
    Drops,
    check_limit,
    check_split,
    header_size,
    integer,
    listing,
    load_json,
    number,
    require,
)
from jaxbgs.socialfusion.data.samples import Sample, SampleList

SPLITS = ("train", "val")
STRIDE = 13  # the baseline's train_stride and val_stride


def _clips(path: Path) -> dict[str, dict]:
    data = load_json(path, "lam")
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise InputError("expected {'videos': [...]}", file=path, fix=f"download {DOWNLOAD['lam']}")
    clips = {}
    for v, video in enumerate(data["videos"]):
        if not isinstance(video, dict):
            raise InputError("video is not an object", file=path, where=f"videos[{v}]")
        for c, clip in enumerate(video.get("clips") or []):
            if not isinstance(clip, dict) or "clip_uid" not in clip:
                raise InputError("clip without clip_uid", file=path, where=f"videos[{v}].clips[{c}]")
            clips[str(clip["clip_uid"])] = clip
    return clips


def _track(frames, path: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(frame numbers, (n, 4) x1 y1 x2 y2 boxes) after the baseline's `check`: filter, clamp, interpolate."""
    rows = []
    if not isinstance(frames, list):
        raise InputError("track is not a list of frames", file=path, where=where)
    for k, fr in enumerate(frames):
        at = f"{where}.track[{k}]"
        if not isinstance(fr, dict):
            raise InputError("track entry is not an object", file=path, where=at)
        f = integer(fr.get("frame"), path, at, "frame")
        x, y, w, h = (number(fr.get(n), path, at, n) for n in ("x", "y", "width", "height"))
        if w <= 0 or h <= 0 or f == 0:
            continue
        x, y = max(x, 0.0), max(y, 0.0)
        rows.append((f, x, y, x + w, y + h))
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 4))
    rows.sort(key=lambda r: r[0])
    arr = np.array(rows, np.float64)
    num, boxes = arr[:, 0].astype(np.int64), arr[:, 1:]
    if num[-1] - num[0] + 1 > len(num):  # gaps: interpolate every frame in between
        full = np.arange(num[0], num[-1] + 1)
        boxes = np.stack([np.interp(full, num, boxes[:, j]) for j in range(4)], 1)
        num = full
    return num, boxes


def _looking(clip: dict, path: Path, uid: str) -> dict[str, list[tuple[int, int]]] | None:
    segments = clip.get("social_segments_looking")
    if not segments:
        return None
    out: dict[str, list[tuple[int, int]]] = {}
    for k, seg in enumerate(segments):
        at = f"clip {uid} social_segments_looking[{k}]"
        if not isinstance(seg, dict):
            raise InputError("segment is not an object", file=path, where=at)
        if seg.get("person") is None:  # the baseline skips segments with no person
            continue
        start = integer(seg.get("start_frame"), path, at, "start_frame")
        end = integer(seg.get("end_frame"), path, at, "end_frame")
        out.setdefault(str(seg["person"]), []).append((start, end))
    return out


def read_lam(
    root: str | os.PathLike, split: str, *, stride: int = STRIDE, limit: int | None = None
) -> SampleList:
    """Face-track frames of the clips in split/{split}.list as lam Samples (crop = the face box)."""
    check_split(split, SPLITS, "Ego4D LAM", " (the test challenge set has hidden labels; papers report val)")
    check_limit(limit)
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise InputError(f"stride must be a positive integer, got {stride!r}", where="stride")
    root = require(Path(root), "lam", directory=True)
    list_path = require(root / "split" / f"{split}.list", "lam")
    ann_path = root / "json" / f"av_{split}.json"
    frames_dir = require(
        root / "video_imgs", "lam", directory=True, fix="extract the frames with scripts/extract_frame.sh"
    )
    clips = _clips(ann_path)
    drops, cache, samples = Drops(f"read_lam({split})"), {}, []
    seen = set()
    for n, line in enumerate(list_path.read_text().splitlines(), 1):
        uid = line.strip()
        if not uid:
            continue
        if uid in seen:
            raise InputError(f"clip {uid} listed twice", file=list_path, where=f"line {n}")
        seen.add(uid)
        if uid not in clips:
            raise InputError(
                f"clip {uid} is not in {ann_path.name}",
                file=list_path,
                where=f"line {n}",
                fix="use the split lists and annotations of one Ego4D release",
            )
        clip = clips[uid]
        looking = _looking(clip, ann_path, uid)
        clip_dir = require(
            frames_dir / uid,
            "lam",
            directory=True,
            fix=f"extract the frames of clip {uid} with scripts/extract_frame.sh",
        )
        names = listing(clip_dir, cache)
        jpgs = sorted(x for x in names if x.startswith("img_") and x.endswith(".jpg"))
        if not jpgs:
            raise InputError("no img_%05d.jpg frames", file=clip_dir, fix="run scripts/extract_frame.sh")
        width, height = header_size(clip_dir / jpgs[0])
        persons = clip.get("persons") or []
        for p, person in enumerate(persons[1:], 1):
            if not isinstance(person, dict):
                raise InputError("person is not an object", file=ann_path, where=f"clip {uid} persons[{p}]")
            pid = str(person.get("person_id") or "")
            tracks = person.get("tracking_paths") or []
            if not pid:  # the baseline skips frames without a Person ID
                drops.add("tracks of persons without person_id", f"{uid} persons[{p}]", n=len(tracks))
                continue
            for t, track in enumerate(tracks):
                where = f"clip {uid} persons[{p}].tracking_paths[{t}]"
                if not isinstance(track, dict) or "track_id" not in track:
                    raise InputError("tracking path without track_id", file=ann_path, where=where)
                num, boxes = _track(track.get("track"), ann_path, where)
                keep = np.arange(len(num)) % stride == 0
                if looking is None:
                    drops.add("frames of clips without social_segments_looking", uid, n=int(keep.sum()))
                    continue
                spans = looking.get(pid, [])
                for f, box in zip(num[keep].tolist(), boxes[keep], strict=True):
                    name = f"img_{f:05d}.jpg"
                    if name not in names:
                        drops.add("frames not extracted", f"{uid}/{name}", warn=True)
                        continue
                    x1, y1 = int(box[0]), int(box[1])
                    x2, y2 = min(int(box[2]), width), min(int(box[3]), height)
                    if x2 <= x1 or y2 <= y1:
                        drops.add("face boxes empty after clipping to the frame", f"{uid}:{f}")
                        continue
                    samples.append(
                        Sample(
                            task="lam",
                            image=str(clip_dir / name),
                            label=int(any(s <= f <= e for s, e in spans)),
                            crop=(x1, y1, x2, y2),
                            size=(x2 - x1, y2 - y1),
                            key=f"{uid}/{track['track_id']}:frame {f}",
                        )
                    )
                    if limit is not None and len(samples) >= limit:
                        return drops.finish(samples)
    return drops.finish(samples, fix=f"check {root} against the social-interactions (lam) data layout")
