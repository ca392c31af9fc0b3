"""Synthetic demo data for SocialFusion's five tasks, written in each dataset's native layout.

The SocialFusion demo must run on a fresh CPU machine with no download, and must go through the
same readers as the real data, so `write_demo_datasets` renders small procedural images with numpy
(no fonts) and writes them exactly the way HaGRIDv2, PISC, Ego4D LAM, GazeFollow and AffectNet
ship theirs. Every label is drawn into the pixels (and, where the task has boxes, into the boxed
region only), so a small model beats chance after a few minutes of CPU training:

- gesture: a person raising one hand whose extended fingers encode one of DEMO_CLASSES["gesture"]
  (fist: none, one: index up, peace: a V, palm: five spread); a third of the images add a relaxed
  no_gesture hand (fingers down), listed first half of the time, so the official "first hand that
  is not no_gesture" rule and the gesture box both matter;
- PISC: a pair of boxed people in the foreground whose relation sets distance, facing, size and
  clothes (friends: same shirt, side by side; family: adult and child; couple: touching, facing
  each other; professional: suits with ties, facing; commercial: one behind a counter; no relation:
  far apart, facing away), the domain following PISC's hierarchy, and 1-2 unboxed background people;
- LAM: two tracked faces in egocentric frames; looking at the camera wearer = frontal face with
  centred pupils, else the face turned and the pupils shifted;
- GazeFollow: a head (hair at the back, eyes toward the gaze) and the bright target it looks at,
  often with an identical distractor elsewhere; test heads get 3-5 noisy annotators;
- AffectNet: a face inside a larger image (the face box is the crop) whose mouth and brows encode
  one of DEMO_CLASSES["emotion"].

Each evaluation split holds `per_class` samples per demo class (GazeFollow: 4 * per_class heads),
each train split TRAIN_SCALE times as many. "val" is written as each dataset's evaluation split
(`readers.EVAL_SPLIT`: GazeFollow's is "test"). LAM tracks are annotated every 13th frame (the
reader interpolates between) and only the frames the baseline's stride 13 samples are written.
Output is a pure function of the arguments (seeded numpy, fixed JPEG settings).
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from jaxbgs.errors import InputError
from jaxbgs.files import atomic_path
from jaxbgs.socialfusion.data.lam import STRIDE
from jaxbgs.socialfusion.data.readers import EVAL_SPLIT
from jaxbgs.socialfusion.data.samples import CLASSES, RELATION_DOMAIN

__all__ = ["DEMO_CLASSES", "DEMO_DIRS", "TRAIN_SCALE", "VERSION", "write_demo_datasets"]

VERSION = 3  # of what the writers draw: part of the demo cache's name, so a change is never read stale

# Train split sizes as multiples of `per_class`. The real datasets differ by orders of magnitude
# (HaGRIDv2 1M images, PISC 22k) and joint training draws every task down to the smallest each
# epoch, so the larger ones show the model fresh images from epoch to epoch instead of the same few
# (with equal splits the demo's gesture task memorised its 96 training images).
TRAIN_SCALE = {"hagrid": 4, "affectnet": 2, "gazefollow": 2, "pisc": 2, "ego4d_lam": 1}

DEMO_CLASSES: dict[str, tuple[str, ...]] = {
    "gesture": ("fist", "one", "peace", "palm"),
    "pisc_domain": CLASSES["pisc_domain"],
    "pisc_relation": CLASSES["pisc_relation"],
    "lam": CLASSES["lam"],
    "emotion": ("neutral", "happy", "sad", "surprise"),
}
DEMO_DIRS = {  # task -> sub-directory of the demo root
    "gesture": "hagrid",
    "pisc_domain": "pisc",
    "pisc_relation": "pisc",
    "lam": "ego4d_lam",
    "gaze": "gazefollow",
    "emotion": "affectnet",
}
SPLITS = ("train", "val")

# Finger directions in degrees (0 = right, -90 = up): the hand's form is the gesture.
FINGERS = {"fist": (), "one": (-90,), "peace": (-110, -70), "palm": (-160, -122, -98, -74, -50)}
RELAXED = (70, 90, 110)  # the no_gesture hand: fingers hanging down
SKIN = np.array([[0.96, 0.80, 0.67], [0.84, 0.63, 0.47], [0.60, 0.42, 0.29], [0.99, 0.87, 0.76]], np.float32)
BACKGROUNDS = np.array(
    [[0.10, 0.12, 0.32], [0.06, 0.27, 0.27], [0.22, 0.26, 0.31], [0.26, 0.30, 0.12], [0.32, 0.06, 0.12]],
    np.float32,
)
SHIRTS = np.array(
    [[0.85, 0.15, 0.15], [0.20, 0.70, 0.25], [0.95, 0.85, 0.20], [0.60, 0.30, 0.85], [0.95, 0.55, 0.10],
     [0.20, 0.85, 0.90], [0.95, 0.95, 0.95], [0.95, 0.45, 0.70]],
    np.float32,
)  # fmt: skip
SUIT, TIE, COUNTER = (0.08, 0.08, 0.12), (0.95, 0.95, 0.95), (0.55, 0.33, 0.12)
DARK, WHITE, TARGET = (0.05, 0.04, 0.04), (0.97, 0.97, 0.97), (1.0, 0.92, 0.10)


# --------------------------------------------------------------------------------------------- drawing


class _Canvas:
    """A float RGB image with shape painters; pixel (r, c) is centred at (c + 0.5, r + 0.5)."""

    def __init__(self, width: int, height: int, color, rng):
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
        self.xs, self.ys, self.rng = xs, ys, rng
        self.img = np.empty((height, width, 3), np.float32)
        self.img[:] = color
        self.img += rng.normal(0, 0.04, (height, width, 1)).astype(np.float32)  # texture, not signal

    @property
    def size(self) -> tuple[int, int]:
        return self.img.shape[1], self.img.shape[0]

    def ellipse(self, cx, cy, rx, ry, color) -> None:
        self.img[((self.xs - cx) / rx) ** 2 + ((self.ys - cy) / ry) ** 2 <= 1] = color

    def disc(self, cx, cy, r, color) -> None:
        self.ellipse(cx, cy, r, r, color)

    def rect(self, x1, y1, x2, y2, color) -> None:
        self.img[(self.xs >= x1) & (self.xs < x2) & (self.ys >= y1) & (self.ys < y2)] = color

    def segment(self, x0, y0, x1, y1, width, color) -> None:
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((self.xs - x0) * dx + (self.ys - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
        self.img[np.hypot(self.xs - x0 - t * dx, self.ys - y0 - t * dy) <= width / 2] = color

    def arc(self, cx, cy, r, width, start, end, color) -> None:
        """Ring sector between angles `start`..`end` degrees (y down: 90 is straight below)."""
        angle = np.degrees(np.arctan2(self.ys - cy, self.xs - cx)) % 360
        ring = np.abs(np.hypot(self.xs - cx, self.ys - cy) - r) <= width / 2
        self.img[ring & (angle >= start % 360) & (angle <= end % 360)] = color

    def jpeg(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        gain = self.rng.uniform(0.85, 1.15)
        pixels = np.clip(np.rint(self.img * gain * 255), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, format="JPEG", quality=95, subsampling=0)


def _pick(rng, table: np.ndarray, exclude=()) -> np.ndarray:
    choices = [i for i in range(len(table)) if i not in exclude]
    return table[choices[int(rng.integers(len(choices)))]]


def _hand(c: _Canvas, cx, cy, s, angles, skin, tilt) -> tuple[float, float, float, float]:
    """A palm of radius s with fingers along `angles` (+ tilt); returns its pixel box (x1, y1, x2, y2)."""
    c.disc(cx, cy, s, skin)
    xs, ys = [cx - s, cx + s], [cy - s, cy + s]
    for a in np.radians(np.asarray(angles, np.float64) + tilt):
        x0, y0 = cx + 0.6 * s * np.cos(a), cy + 0.6 * s * np.sin(a)
        x1, y1 = cx + 2.1 * s * np.cos(a), cy + 2.1 * s * np.sin(a)
        c.segment(x0, y0, x1, y1, 0.55 * s, skin)
        xs += [x1 - 0.3 * s, x1 + 0.3 * s]
        ys += [y1 - 0.3 * s, y1 + 0.3 * s]
    if not len(angles):  # fist: knuckle creases so it reads as a closed hand
        for k in (-0.45, 0.0, 0.45):
            c.segment(cx + k * s, cy - 0.6 * s, cx + k * s, cy - 0.1 * s, 0.12 * s, skin * 0.7)
    w, h = c.size
    return max(min(xs), 0), max(min(ys), 0), min(max(xs), w), min(max(ys), h)


def _person(c: _Canvas, x, foot, height, shirt, facing: int, *, suit=False) -> list[int]:
    """Head over body, feet at y=`foot`; facing -1 left, 0 front, 1 right; returns its pixel box."""
    r, half = 0.14 * height, 0.22 * height
    top = foot - height
    c.rect(x - half, top + 1.8 * r, x + half, foot, SUIT if suit else shirt)
    c.rect(x - half, foot - 0.3 * height, x + half, foot, (0.18, 0.18, 0.2))  # trousers
    if suit:
        c.rect(x - 0.05 * height, top + 1.9 * r, x + 0.05 * height, top + 4.2 * r, TIE)
    skin = _pick(c.rng, SKIN)
    c.disc(x, top + r, r, skin)
    if facing == 0:
        for ex in (-0.4, 0.4):
            c.disc(x + ex * r, top + 0.9 * r, 0.18 * r, DARK)
    else:
        c.disc(x + facing * 1.0 * r, top + 1.1 * r, 0.3 * r, skin)  # nose in profile
        c.disc(x + facing * 0.45 * r, top + 0.85 * r, 0.2 * r, DARK)
        c.ellipse(x - facing * 0.5 * r, top + 0.8 * r, 0.55 * r, 0.8 * r, DARK)  # hair at the back
    return [round(x - half), round(top), round(x + half), round(foot)]


def _face(c: _Canvas, cx, cy, r, skin, *, turn=0.0, look=(0.0, 0.0), mouth="flat", brows="flat") -> None:
    """A face of half-width r; `turn` in [-1, 1] shifts the features (head yaw), `look` the pupils."""
    c.ellipse(cx, cy - 0.25 * r, 1.05 * r, 1.0 * r, DARK)  # hair
    c.ellipse(cx, cy + 0.1 * r, r, 1.15 * r, skin)
    fx = cx + turn * 0.35 * r
    wide = 1.4 if brows == "raised" else 1.0
    for side in (-1, 1):
        ex, ey = fx + side * 0.4 * r, cy - 0.1 * r
        c.ellipse(ex, ey, 0.24 * r, 0.15 * r * wide, WHITE)
        c.disc(ex + look[0] * 0.13 * r, ey + look[1] * 0.07 * r, 0.11 * r, DARK)
        inner, outer = ex - side * 0.18 * r, ex + side * 0.22 * r
        lift = {"flat": (0.0, 0.0), "raised": (-0.18, -0.18), "sad": (-0.16, 0.08)}[brows]
        c.segment(inner, ey - 0.3 * r + lift[0] * r, outer, ey - 0.3 * r + lift[1] * r, 0.08 * r, DARK)
    c.disc(fx + turn * 0.15 * r, cy + 0.25 * r, 0.1 * r, skin * 0.8)  # nose
    my, mc = cy + 0.62 * r, (0.55, 0.1, 0.12)
    if mouth == "flat":
        c.segment(fx - 0.3 * r, my, fx + 0.3 * r, my, 0.09 * r, mc)
    elif mouth == "smile":
        c.arc(fx, my - 0.3 * r, 0.38 * r, 0.1 * r, 20, 160, mc)
    elif mouth == "frown":
        c.arc(fx, my + 0.3 * r, 0.34 * r, 0.1 * r, 200, 340, mc)
    else:  # open
        c.ellipse(fx, my, 0.17 * r, 0.24 * r, mc)


def _uid(rng) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


# -------------------------------------------------------------------------------------------- datasets


def _hagrid(out: Path, splits, n_for, size: int, rng_for) -> None:
    w, h = size * 4 // 3, size
    for split in splits:
        rng, n = rng_for(split), n_for(split)
        for target in DEMO_CLASSES["gesture"]:
            entries = {}
            for _ in range(n):
                c = _Canvas(w, h, _pick(rng, BACKGROUNDS), rng)
                px = rng.uniform(0.35, 0.65) * w
                c.rect(px - 0.17 * w, 0.45 * h, px + 0.17 * w, h, _pick(rng, SHIRTS))  # the person
                c.disc(px, 0.3 * h, 0.12 * h, _pick(rng, SKIN))
                # A large raised hand: the finger count must survive a 12 px patch grid at 96 px.
                side, skin, s = rng.choice([-1, 1]), _pick(rng, SKIN), rng.uniform(0.19, 0.21) * h
                hx = np.clip(px + side * rng.uniform(0.24, 0.3) * w, 2.2 * s, w - 2.2 * s)
                box = _hand(c, hx, rng.uniform(0.42, 0.6) * h, s, FINGERS[target], skin, rng.uniform(-15, 15))
                hands = [(box, target)]
                if rng.random() < 1 / 3:
                    fx = np.clip(px - side * 0.28 * w, 1.2 * s, w - 1.2 * s)
                    free = _hand(c, fx, rng.uniform(0.55, 0.65) * h, s, RELAXED, skin, 0)
                    hands.insert(int(rng.integers(2)), (free, "no_gesture"))
                name = _uid(rng)  # HaGRID names its images by uuid
                c.jpeg(out / "hagrid_dataset" / target / f"{name}.jpg")
                entries[name] = {
                    "bboxes": [
                        [x1 / w, y1 / h, (x2 - x1) / w, (y2 - y1) / h] for (x1, y1, x2, y2), _ in hands
                    ],
                    "labels": [label for _, label in hands],
                    "united_bbox": [None] * len(hands),
                    "united_label": [None] * len(hands),
                    "user_id": _uid(rng),
                    "hand_landmarks": [[] for _ in hands],
                    "meta": {"age": [30.0], "gender": ["unknown"], "race": ["unknown"]},
                }
            _write_json(out / "hagrid_annotations" / split / f"{target}.json", entries)


def _pisc_image(rng, w: int, h: int, relation: int):
    """One PISC scene: (image, all person boxes, 1-based pair key)."""
    c = _Canvas(w, h, _pick(rng, BACKGROUNDS), rng)
    people = []
    for _ in range(int(rng.integers(1, 3))):  # background people, drawn first (further away)
        people.append(
            _person(
                c, rng.uniform(0.1, 0.9) * w, 0.6 * h, 0.4 * h, _pick(rng, SHIRTS), int(rng.integers(-1, 2))
            )
        )
    adult = rng.uniform(0.58, 0.66) * h
    gap = {0: 0.55, 1: 0.5, 2: 0.42, 3: 0.8, 4: 0.85, 5: 1.4}[relation] * adult * rng.uniform(0.92, 1.08)
    left = rng.uniform(0.25 * adult, w - gap - 0.25 * adult)
    foot = rng.uniform(0.9, 0.97) * h
    colours = [_pick(rng, SHIRTS), _pick(rng, SHIRTS)]
    if relation == 0:  # friends: matching shirts, side by side
        pair = [(left, adult, colours[0], 0, False), (left + gap, adult, colours[0], 0, False)]
    elif relation == 1:  # family: an adult and a child, on either side
        sizes = (adult, 0.6 * adult) if rng.random() < 0.5 else (0.6 * adult, adult)
        pair = [(left, sizes[0], colours[0], 0, False), (left + gap, sizes[1], colours[1], 0, False)]
    elif relation == 2:  # couple: touching, facing each other
        pair = [(left, adult, colours[0], 1, False), (left + gap, adult, colours[1], -1, False)]
    elif relation == 3:  # professional: suits, facing each other
        pair = [(left, adult, None, 1, True), (left + gap, adult, None, -1, True)]
    elif relation == 4:  # commercial: the seller behind a counter faces the customer
        pair = [(left, adult, colours[0], 1, False), (left + gap, adult, colours[1], -1, False)]
    else:  # no relation: far apart, facing away
        pair = [(left, adult, colours[0], -1, False), (left + gap, adult, colours[1], 1, False)]
    boxes = [_person(c, x, foot, height, shirt, facing, suit=suit) for x, height, shirt, facing, suit in pair]
    if relation == 4:
        seller = int(rng.integers(2))
        sx = pair[seller][0]
        c.rect(sx - 0.35 * adult, foot - 0.45 * adult, sx + 0.35 * adult, foot, COUNTER)
    order = rng.permutation(len(people) + 2)  # where each person lands in the bbox list
    listed = [None] * len(order)
    for k, box in enumerate(people + boxes):
        listed[order[k]] = box
    i, j = int(order[len(people)]) + 1, int(order[len(people) + 1]) + 1
    key = f"{i} {j}" if rng.random() < 0.5 else f"{j} {i}"
    return c, listed, key


def _pisc(out: Path, splits, n_for, size: int, rng_for) -> None:
    w, h = size * 4 // 3, size  # 4:3 like most photos: a 2:1 frame padded to a square halves the people
    infos, domain, relationship = [], {}, {}
    next_id = 1
    for split in splits:
        rng, n = rng_for(split), n_for(split)
        # The two subtasks have their own official splits: each gets images balanced over its classes.
        plans = {
            "relation": [r for r in range(6) for _ in range(n)],
            "domain": [
                int(rng.choice([r for r in range(6) if RELATION_DOMAIN[r] == d]))
                for d in range(3)
                for _ in range(n)
            ],
        }
        for subtask, relations in plans.items():
            ids = []
            for relation in relations:
                c, boxes, key = _pisc_image(rng, w, h, relation)
                c.jpeg(out / "image" / f"{next_id:05d}.jpg")
                infos.append({"id": next_id, "imgW": w, "imgH": h, "bbox": boxes})
                relationship[str(next_id)] = {key: relation + 1}
                domain[str(next_id)] = {key: RELATION_DOMAIN[relation] + 1}
                ids.append(str(next_id))
                next_id += 1
            folder, prefix = (
                ("relationship_split", "relation") if subtask == "relation" else ("domain_split", "domain")
            )
            _write_json(out / folder / f"{prefix}_{split}idx.json", ids)
    _write_json(out / "annotation_image_info.json", infos)
    _write_json(out / "domain.json", domain)
    _write_json(out / "relationship.json", relationship)


def _lam(out: Path, splits, n_for, size: int, rng_for) -> None:
    w, h = size * 2, size * 3 // 2
    frames = (1, 1 + STRIDE)  # the frames stride 13 samples from a track starting at frame 1
    for split in splits:
        rng, n = rng_for(split), n_for(split)
        clips, uids = [], []
        for k in range((n + 1) // 2):  # each person: one looking and one not-looking sample
            uid = _uid(rng)
            persons, looking = [{"person_id": "0", "tracking_paths": []}], []  # 0: the camera wearer
            layout = []
            for p, cx in ((1, 0.3), (2, 0.7)) if 2 * k + 2 <= n else ((1, 0.5),):
                looks_first = bool(rng.integers(2))
                start, end = (1, 7) if looks_first else (10, 2 * STRIDE)
                looking.append({"person": str(p), "start_frame": start, "end_frame": end, "is_at_me": True})
                r = rng.uniform(0.13, 0.16) * h
                x0, y0 = cx * w + rng.uniform(-4, 4), rng.uniform(0.4, 0.55) * h
                layout.append((p, r, x0, y0, _pick(rng, SKIN), looks_first))
                persons.append(
                    {"person_id": str(p), "tracking_paths": [{"track_id": f"{uid[:8]}-{p}", "track": []}]}
                )
            for k, frame in enumerate(frames):
                c = _Canvas(w, h, _pick(rng, BACKGROUNDS), rng)
                for p, r, x0, y0, skin, looks_first in layout:
                    x, y = x0 + 2 * k, y0 + rng.uniform(-2, 2)
                    at_me = looks_first == (k == 0)
                    turn = 0.0 if at_me else float(rng.choice([-1, 1]) * rng.uniform(0.7, 1.0))
                    look = (0.0, 0.0) if at_me else (turn, float(rng.uniform(-0.5, 0.5)))
                    _face(c, x, y, r, skin, turn=turn, look=look)
                    persons[p]["tracking_paths"][0]["track"].append(
                        {"frame": frame, "x": round(x - 1.2 * r, 1), "y": round(y - 1.35 * r, 1),
                         "width": round(2.4 * r, 1), "height": round(2.7 * r, 1)}
                    )  # fmt: skip
                c.jpeg(out / "video_imgs" / uid / f"img_{frame:05d}.jpg")
            clips.append({"clip_uid": uid, "video_start_sec": 0.0, "video_end_sec": 1.0, "persons": persons,
                          "social_segments_looking": looking, "social_segments_talking": []})  # fmt: skip
            uids.append(uid)
        _write_json(out / "json" / f"av_{split}.json", {"videos": [{"video_uid": _uid(rng), "clips": clips}]})
        (out / "split").mkdir(parents=True, exist_ok=True)
        (out / "split" / f"{split}.list").write_text("".join(u + "\n" for u in uids))


def _gaze_scene(rng, w: int, h: int):
    """(canvas, head pixel box, head centre, target) with the head turned toward the target."""
    c = _Canvas(w, h, _pick(rng, BACKGROUNDS), rng)
    r = rng.uniform(0.1, 0.12) * h
    while True:
        hx, hy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.25, 0.6) * h
        a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.6) * w
        tx, ty = hx + d * np.cos(a), hy + d * np.sin(a)
        on_body = abs(tx - hx) < 1.8 * r and ty > hy
        if 0.08 * w < tx < 0.92 * w and 0.08 * h < ty < 0.92 * h and not on_body:
            break
    c.rect(hx - 1.1 * r, hy + 0.8 * r, hx + 1.1 * r, h, _pick(rng, SHIRTS))
    c.disc(hx, hy, r, DARK)  # hair all round; the face shows toward the gaze
    ux, uy = np.cos(a), np.sin(a)
    c.disc(hx + 0.35 * r * ux, hy + 0.35 * r * uy, 0.72 * r, _pick(rng, SKIN))
    for side in (-1, 1):
        c.disc(
            hx + 0.6 * r * ux - side * 0.3 * r * uy, hy + 0.6 * r * uy + side * 0.3 * r * ux, 0.13 * r, DARK
        )
    targets = [(tx, ty)]
    if rng.random() < 0.5:  # an identical distractor away from the gaze line: only the head disambiguates
        for _ in range(20):
            ox, oy = rng.uniform(0.08, 0.92) * w, rng.uniform(0.08, 0.92) * h
            v = np.array([ox - hx, oy - hy])
            if np.hypot(*v) > 2 * r and np.dot(v, (ux, uy)) / np.hypot(*v) < 0.5:
                targets.append((ox, oy))
                break
    for ox, oy in targets:
        c.disc(ox, oy, 0.065 * h, DARK)
        c.disc(ox, oy, 0.05 * h, TARGET)
    return c, (hx - r, hy - r, hx + r, hy + r), (hx, hy), (tx, ty)


def _gazefollow(out: Path, splits, n_for, size: int, rng_for) -> None:
    w, h = size * 3 // 2, size
    for split in splits:
        native = EVAL_SPLIT["gaze"] if split == "val" else split
        folder = "train" if native == "train" else "test2"
        rng, n = rng_for(split), n_for(split)
        lines = io.StringIO()
        rows = csv.writer(lines, lineterminator="\n")
        for i in range(4 * n):
            c, (x1, y1, x2, y2), (hx, hy), (tx, ty) = _gaze_scene(rng, w, h)
            path = f"{folder}/{i // 1000:08d}/{i:08d}.jpg"
            c.jpeg(out / path)
            r = (y2 - y1) / 2
            body = [
                round((hx - 1.1 * r) / w, 4),
                round(y1 / h, 4),
                round(2.2 * r / w, 4),
                round(1 - y1 / h, 4),
            ]
            head = [path, i, *body, round(hx / w, 4), round(hy / h, 4)]
            box = [round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2)]
            if native == "train":
                rows.writerow([*head, round(tx / w, 4), round(ty / h, 4), *box, 1, "synthetic", ""])
            else:
                for _ in range(int(rng.integers(3, 6))):
                    gx = float(np.clip(tx / w + rng.normal(0, 0.02), 0, 1))
                    gy = float(np.clip(ty / h + rng.normal(0, 0.02), 0, 1))
                    rows.writerow([*head, round(gx, 4), round(gy, 4), *box, "synthetic", ""])
        (out / f"{native}_annotations_release.txt").write_text(lines.getvalue())


EXPRESSIONS = {  # AffectNet id -> (mouth, brows, valence, arousal)
    0: ("flat", "flat", 0.0, 0.1),
    1: ("smile", "flat", 0.8, 0.4),
    2: ("frown", "sad", -0.7, 0.2),
    3: ("open", "raised", 0.2, 0.8),
}


def _affectnet(out: Path, splits, n_for, size: int, rng_for) -> None:
    side = size * 5 // 4
    ids = [CLASSES["emotion"].index(name) for name in DEMO_CLASSES["emotion"]]
    for split in splits:
        rng, n = rng_for(split), n_for(split)
        lines = io.StringIO()
        rows = csv.writer(lines, lineterminator="\n")
        rows.writerow(
            ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
             "expression", "valence", "arousal"]
        )  # fmt: skip
        for i in range(n * len(ids)):
            expression = ids[i % len(ids)]
            mouth, brows, valence, arousal = EXPRESSIONS[expression]
            c = _Canvas(side, side, _pick(rng, BACKGROUNDS), rng)
            fw = int(rng.uniform(0.62, 0.75) * side)
            fx, fy = int(rng.integers(0, side - fw + 1)), int(rng.integers(0, side - fw + 1))
            r = 0.4 * fw
            _face(c, fx + fw / 2, fy + fw / 2, r, _pick(rng, SKIN), mouth=mouth, brows=brows)
            rel = f"{1 + i % 3}/{split}_{i:05d}.jpg"
            c.jpeg(out / "Manually_Annotated_Images" / rel)
            marks = ";".join(
                f"{v:.1f}" for v in (fx + 0.3 * fw, fy + 0.45 * fw, fx + 0.7 * fw, fy + 0.45 * fw)
            )
            rows.writerow([rel, fx, fy, fw, fw, marks, expression, valence, arousal])
        name = "training.csv" if split == "train" else "validation.csv"
        (out / "Manually_Annotated_file_lists").mkdir(parents=True, exist_ok=True)
        (out / "Manually_Annotated_file_lists" / name).write_text(lines.getvalue())


WRITERS = {
    "hagrid": _hagrid,
    "pisc": _pisc,
    "ego4d_lam": _lam,
    "gazefollow": _gazefollow,
    "affectnet": _affectnet,
}


def write_demo_datasets(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    image_size: int = 64,
    per_class: int = 12,
    splits: Sequence[str] = SPLITS,
) -> dict[str, Path]:
    """Write the five demo datasets under `root` (one sub-directory each, replaced atomically) and
    return {task: dataset root} for `readers.read(task, root, split)`.

    `image_size` is the short side of most images (HaGRID 4:3, PISC 4:3, GazeFollow 3:2, LAM frames
    4:3 at 1.5x, AffectNet square at 1.25x); `per_class` samples per demo class in an evaluation
    split (train: TRAIN_SCALE times as many); `splits` from ("train", "val"), "val" written as each
    dataset's evaluation split (readers.EVAL_SPLIT)."""
    for name, value, low in (("image_size", image_size, 32), ("per_class", per_class, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(
                f"{name} must be an integer >= {low}, got {value!r}", where=f"write_demo_datasets({name})"
            )
    splits = tuple(splits)
    if not splits or any(s not in SPLITS for s in splits) or len(set(splits)) != len(splits):
        raise InputError(
            f"splits must be distinct names from {SPLITS}, got {splits!r}", where="write_demo_datasets"
        )
    root = Path(root)
    for k, (name, write) in enumerate(WRITERS.items()):

        def rng_for(split: str, k=k) -> np.random.Generator:
            return np.random.default_rng([seed, k, SPLITS.index(split)])

        def n_for(split: str, name=name) -> int:
            return per_class * (TRAIN_SCALE[name] if split == "train" else 1)

        with atomic_path(root / name, directory=True, replace=True) as tmp:
            write(tmp, splits, n_for, image_size, rng_for)
    return {task: root / name for task, name in DEMO_DIRS.items()}
