"""SocialFusion's common record, class tables and square-image geometry, shared by its five datasets.

SocialFusion (the second paper, `socialfusion.txt`) gives every task one image for a frozen CLIP
ViT-L/14-336, plus a box prompt for PISC (the pair), GazeFollow (the head) and our HaGRID input (the
gesture box), and GazeFollow's target points. Every reader returns `Sample`s in normalised
coordinates of the image as read (after `crop`), so one transform serves all tasks:

    samples = read_pisc(root, "train", "relation")          # SampleList of Sample
    batch = stack([prepare(s, 336) for s in samples[:32]])  # fixed-shape numpy arrays

The paper does not say how an image becomes a square. We pad it (LLaVA's `expand2square`, filled
with the CLIP mean colour) instead of centre-cropping, so no box or gaze point is ever cut off, and
map boxes and points through exactly the same affine map as the pixels (`content_box`).
Coordinates: x right, y down, (0, 0) the image's top-left corner and (1, 1) its bottom-right one,
so pixel column c covers [c / W, (c + 1) / W].
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from jaxbgs.errors import InputError

__all__ = [
    "CLASSES",
    "CLIP_MEAN_RGB",
    "HAGRID_TARGETS",
    "MODES",
    "RELATION_DOMAIN",
    "TASKS",
    "Prepared",
    "Sample",
    "SampleList",
    "content_box",
    "load_image",
    "prepare",
    "stack",
    "to_output",
    "to_source",
]

TASKS = ("gesture", "pisc_domain", "pisc_relation", "lam", "gaze", "emotion")

# HaGRIDv2 targets in the official order (hukenovs/hagrid constants.py); no_gesture is index 33.
HAGRID_TARGETS = (
    "grabbing", "grip", "holy", "point", "call", "three3", "timeout", "xsign", "hand_heart", "hand_heart2",
    "little_finger", "middle_finger", "take_picture", "dislike", "fist", "four", "like", "mute", "ok", "one",
    "palm", "peace", "peace_inverted", "rock", "stop", "stop_inverted", "three", "three2", "two_up",
    "two_up_inverted", "three_gun", "thumb_index", "thumb_index2", "no_gesture",
)  # fmt: skip

CLASSES: dict[str, tuple[str, ...]] = {
    "gesture": HAGRID_TARGETS,
    # PISC's 1-based label ids minus one (Li et al. 2017; the GRM and PGR-SRR tables).
    "pisc_domain": ("intimate", "non-intimate", "no relation"),
    "pisc_relation": ("friends", "family", "couple", "professional", "commercial", "no relation"),
    # Ego4D LAM: 1 when the frame lies in a social_segments_looking interval of that person.
    "lam": ("not looking", "looking"),
    "gaze": (),  # a heatmap target, no classes: Sample.label is -1
    # AffectNet expression ids 0..7; ids 8 (None), 9 (Uncertain), 10 (No-Face) are dropped by the reader.
    "emotion": ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"),
}

# PISC's hierarchy: friends, family, couple are intimate; professional, commercial non-intimate.
RELATION_DOMAIN = (0, 0, 0, 1, 1, 2)

# LLaVA-1.5's pad colour: tuple(int(255 * m) for m in the CLIP image mean).
CLIP_MEAN_RGB = (122, 116, 104)
MODES = ("pad", "resize")

Box = tuple[float, float, float, float]
Point = tuple[float, float]


# ----------------------------------------------------------------------------------------------- record


@dataclasses.dataclass(frozen=True)
class Sample:
    """One input of one task, as a reader found it in the dataset's files.

    `image` is the file; `crop` a pixel box (x1, y1, x2, y2) cut out first (Ego4D face tracks,
    AffectNet faces; parts outside the image are black, PIL's rule), or None. `boxes` are
    normalised (x1, y1, x2, y2) box prompts in the image after the crop (PISC: the pair in key
    order; GazeFollow: the head; HaGRID: the gesture or united box); `points` normalised (x, y) gaze
    targets (one for GazeFollow train, every annotator's at test, none for an out-of-frame head or
    another task). `label` indexes CLASSES[task] (-1 for gaze). `size` is (W, H) after the crop when
    the annotations give it (gaze AUC is computed at that size), None where the reader would have to
    open every image to learn it (HaGRID); `key` names the file and row for messages."""

    task: str
    image: str
    label: int
    boxes: tuple[Box, ...] = ()
    crop: tuple[int, int, int, int] | None = None
    points: tuple[Point, ...] = ()
    size: tuple[int, int] | None = None
    key: str = ""

    def __post_init__(self) -> None:
        def bad(problem: str) -> InputError:
            return InputError(
                problem, where=self.key or self.image, fix="this is a reader bug or a bad record"
            )

        if self.task not in TASKS:
            raise bad(f"unknown task {self.task!r} (tasks: {TASKS})")
        n = len(CLASSES[self.task])
        if not (self.label == -1 if n == 0 else 0 <= self.label < n):
            raise bad(f"label {self.label} out of range for task {self.task!r} ({n} classes)")
        for b in self.boxes:
            if len(b) != 4 or not (0 <= b[0] <= b[2] <= 1 and 0 <= b[1] <= b[3] <= 1):
                raise bad(f"box {b} is not a normalised (x1, y1, x2, y2) with x1 <= x2, y1 <= y2 in [0, 1]")
        for p in self.points:
            if len(p) != 2 or not all(np.isfinite(p)):
                raise bad(f"point {p} is not a finite (x, y)")
        if self.crop is not None and (
            len(self.crop) != 4 or self.crop[2] <= self.crop[0] or self.crop[3] <= self.crop[1]
        ):
            raise bad(f"crop {self.crop} is not a non-empty pixel box (x1, y1, x2, y2)")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise bad(f"size {self.size} is not a positive (W, H)")


class SampleList(list):
    """A reader's samples, plus `dropped`: reason -> count of what the protocol or the data ruled out."""

    def __init__(self, samples: Iterable[Sample] = (), dropped: dict[str, int] | None = None):
        super().__init__(samples)
        self.dropped: dict[str, int] = dict(dropped or {})


# ---------------------------------------------------------------------------------------------- images


def _open(path: str | os.PathLike, crop=None, key: str | None = None) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise InputError(
            "image file not found",
            file=path,
            where=key,
            fix="check the dataset root and that its image archives are fully extracted",
        )
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")  # forces the full decode inside the try
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(
            f"cannot decode the image ({e})",
            file=path,
            where=key,
            fix="the file is corrupt, truncated or not an image; re-download or re-extract it",
        ) from e
    return im.crop(tuple(int(v) for v in crop)) if crop is not None else im


def load_image(path: str | os.PathLike, crop: Sequence[int] | None = None) -> np.ndarray:
    """uint8 (H, W, 3) RGB of the file, cut to `crop` (pixel x1, y1, x2, y2) if given."""
    return np.asarray(_open(path, crop))


# -------------------------------------------------------------------------------------------- geometry


def _layout(width: int, height: int, size: int, mode: str) -> tuple[int, int, int, int]:
    """(new W, new H, left, top) in output pixels: the long side to `size`, centred (LLaVA's offsets)."""
    if mode == "resize":
        return size, size, 0, 0
    if mode != "pad":
        raise InputError(f"unknown mode {mode!r}", where="prepare(mode=...)", fix=f"use one of {MODES}")
    long = max(width, height)
    nw, nh = max(1, round(width * size / long)), max(1, round(height * size / long))
    return nw, nh, (size - nw) // 2, (size - nh) // 2


def content_box(width: int, height: int, size: int, mode: str = "pad") -> tuple[float, float, float, float]:
    """Where a (width x height) image lands in the `size` square, as normalised (x0, y0, x1, y1).

    The map of a normalised source point is then x_out = x0 + x * (x1 - x0), likewise y; exact for
    pixel edges, because the resized image is pasted at whole-pixel offsets."""
    nw, nh, left, top = _layout(width, height, size, mode)
    return left / size, top / size, (left + nw) / size, (top + nh) / size


def to_output(xy, content) -> np.ndarray:
    """Normalised source points (..., 2) -> normalised points of the output square (boxes: as (..., 2, 2))."""
    x0, y0, x1, y1 = content
    xy = np.asarray(xy, np.float64)
    return np.stack([x0 + xy[..., 0] * (x1 - x0), y0 + xy[..., 1] * (y1 - y0)], -1)


def to_source(xy, content) -> np.ndarray:
    """Inverse of `to_output`: e.g. a heatmap argmax in the square back to the image's own [0, 1] frame."""
    x0, y0, x1, y1 = content
    xy = np.asarray(xy, np.float64)
    return np.stack([(xy[..., 0] - x0) / (x1 - x0), (xy[..., 1] - y0) / (y1 - y0)], -1)


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: array fields
class Prepared:
    """A sample ready for the encoder: uint8 (size, size, 3) `image`, `boxes` (n, 4) and `points` (m, 2)
    float32 in normalised output coordinates, `content` (x0, y0, x1, y1) where the image lies in the
    square, `size` the true (W, H) after the crop (from the decoded file)."""

    task: str
    image: np.ndarray
    label: int
    boxes: np.ndarray
    points: np.ndarray
    content: tuple[float, float, float, float]
    size: tuple[int, int]
    key: str


def prepare(sample: Sample, size: int, *, mode: str = "pad", fill: Sequence[int] = CLIP_MEAN_RGB) -> Prepared:
    """Decode, crop and square one sample; boxes and points go through the same map as the pixels.

    mode "pad": the long side is resized (bicubic, antialiased) to `size` and the image centred on a
    `fill` square; "resize": stretched to the square, aspect ratio not kept. A file whose aspect
    ratio differs from the annotated `size` by more than 2 % is an error (its boxes would not line up);
    a uniformly rescaled copy (e.g. a 512-px release) is fine, since boxes are normalised. EXIF
    orientation is ignored, as the datasets' own loaders ignore it: annotations refer to stored pixels."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise InputError(f"size must be a positive integer, got {size!r}", where="prepare(size=...)")
    key = sample.key or None
    im = _open(sample.image, sample.crop, key)
    w, h = im.size
    if sample.size is not None:
        aw, ah = sample.size
        if abs((w / h) / (aw / ah) - 1) > 0.02:
            raise InputError(
                f"the image is {w}x{h} but the annotations say {aw}x{ah}",
                file=sample.image,
                where=key,
                fix="use the image files the annotations were made for (boxes would not line up)",
            )
    nw, nh, left, top = _layout(w, h, size, mode)
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (size, size), tuple(int(c) for c in fill))
    canvas.paste(im, (left, top))
    content = (left / size, top / size, (left + nw) / size, (top + nh) / size)
    boxes = to_output(np.asarray(sample.boxes, np.float64).reshape(-1, 2, 2), content).reshape(-1, 4)
    points = to_output(np.asarray(sample.points, np.float64).reshape(-1, 2), content)
    return Prepared(
        task=sample.task,
        image=np.asarray(canvas),
        label=sample.label,
        boxes=boxes.astype(np.float32),
        points=points.astype(np.float32),
        content=content,
        size=(w, h),
        key=sample.key,
    )


def stack(prepared: Sequence[Prepared], *, max_boxes: int = 2, max_points: int = 20) -> dict[str, np.ndarray]:
    """Fixed-shape batch arrays, so one jit compile serves every batch of every task.

    image uint8 (B, S, S, 3); label, task (index into TASKS) int32 (B,); boxes float32 (B, max_boxes, 4)
    with box_mask bool (B, max_boxes); points float32 (B, max_points, 2), padded with -1 (the gaze
    metrics' and Chong's convention), with point_mask; content
    float32 (B, 4); size int32 (B, 2) as (W, H). GazeFollow test heads have about 10 annotators
    (Chong et al. pad to 20, hence the default)."""
    if not prepared:
        raise InputError("cannot stack an empty list of samples", where="stack")
    shapes = {p.image.shape for p in prepared}
    if len(shapes) != 1:
        raise InputError(
            f"images of different shapes {sorted(shapes)}", where="stack", fix="prepare all at one size"
        )
    b = len(prepared)
    boxes = np.zeros((b, max_boxes, 4), np.float32)
    box_mask = np.zeros((b, max_boxes), bool)
    points = np.full((b, max_points, 2), -1.0, np.float32)  # GazeFollow pads absent points with -1
    point_mask = np.zeros((b, max_points), bool)
    for i, p in enumerate(prepared):
        for arr, mask, src, cap, what in (
            (boxes, box_mask, p.boxes, max_boxes, "boxes"),
            (points, point_mask, p.points, max_points, "points"),
        ):
            if len(src) > cap:
                raise InputError(
                    f"{len(src)} {what}, more than max_{what}={cap}",
                    where=p.key or "stack",
                    fix=f"raise max_{what}",
                )
            arr[i, : len(src)] = src
            mask[i, : len(src)] = True
    return {
        "image": np.stack([p.image for p in prepared]),
        "label": np.array([p.label for p in prepared], np.int32),
        "task": np.array([TASKS.index(p.task) for p in prepared], np.int32),
        "boxes": boxes,
        "box_mask": box_mask,
        "points": points,
        "point_mask": point_mask,
        "content": np.array([p.content for p in prepared], np.float32),
        "size": np.array([p.size for p in prepared], np.int32),
    }
