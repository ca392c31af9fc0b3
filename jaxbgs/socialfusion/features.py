"""SocialFusion's frozen image side (paper §3): the vision encoder, its LLaVA-style patch features, and
the per-split pools the trainer reads.

The encoder never trains, so each image is decoded, squared (`samples.prepare`) and encoded exactly
once; a pool is the stacked result for one task and split, cached on disk as one `.npz` keyed by the
encoder, the image geometry and the sample list, so epochs and reruns read arrays, not JPEGs:

    encoder = load_encoder("clip", "openai/clip-vit-large-patch14-336")
    pool = build_pool("pisc_relation", samples, encoder, size=336, cache="runs/cache")

Encoders: CLIP ViT-L/14-336 (the paper's), DINOv2 and SigLIP (its encoder swaps), each converted
from the user's local PyTorch checkpoint by `checkpoints_convert`; `demo_encoder` is a small
seeded random CLIP for the embedded demo (random frozen patch features keep the pixels' layout,
which is what the demo's drawn labels need).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from jaxbgs.errors import InputError
from jaxbgs.files import atomic_path
from jaxbgs.socialfusion.data.samples import Sample, prepare, stack
from jaxbgs.socialfusion.model import encoder_features

# name -> (arch in jaxbgs.models, mean, std, has a CLS token to drop)
ENCODERS = {
    "clip": ("clip", (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711), True),
    "dinov2": ("dinov2", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True),
    "siglip": ("siglip", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), False),
}
DEFAULT_WEIGHTS = {
    "clip": "openai/clip-vit-large-patch14-336",
    "dinov2": "facebook/dinov2-large",
    "siglip": "google/siglip-so400m-patch14-384",
}
MAX_BOXES, MAX_POINTS = 2, 20


@dataclasses.dataclass(frozen=True)
class Encoder:
    """A frozen image encoder and how to feed it; `name` keys the feature cache."""

    name: str
    model: nnx.Module
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    drop_cls: bool

    @property
    def feature_dim(self) -> int:
        return self.model.cfg.hidden_size


def _check_name(name: str) -> tuple:
    if name not in ENCODERS:
        raise InputError(f"unknown encoder {name!r}", where="encoder", fix=f"use one of {sorted(ENCODERS)}")
    return ENCODERS[name]


def load_encoder(name: str, weights: str | os.PathLike | None) -> Encoder:
    """The encoder `name` from a local HF directory, a Hub id in the local HF cache, or a checkpoint file."""
    arch, mean, std, drop_cls = _check_name(name)
    if weights is None:
        raise InputError(
            f"the {name} encoder needs weights",
            where="encoder_weights",
            fix=f"--set encoder_weights=DIR (e.g. huggingface-cli download {DEFAULT_WEIGHTS[name]})",
        )
    src = Path(weights).expanduser()
    if not src.exists():
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", str(weights)):
            raise InputError(
                "no such encoder checkpoint",
                file=src,
                where="encoder_weights",
                fix=f"download {DEFAULT_WEIGHTS[name]} and pass its directory",
            )
        from jaxbgs.eval.language import resolve_model_dir

        src = resolve_model_dir(str(weights))
    from checkpoints_convert import convert

    model, _, _ = convert.from_torch(arch, src)
    return Encoder(f"{name}:{src.resolve()}", model, mean, std, drop_cls)


def demo_encoder(size: int = 96, *, grid: int = 8, width: int = 128, seed: int = 0) -> Encoder:
    """A small CLIP vision tower (grid x grid patches, 2 layers) with seeded random weights."""
    from jaxbgs.models import clip

    if size % grid:
        raise InputError(f"image size {size} is not a multiple of the grid {grid}", where="demo encoder")
    cfg = clip.Config(
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=size,
        patch_size=size // grid,
        hidden_act="quick_gelu",
    )
    _, mean, std, _ = ENCODERS["clip"]
    name = f"demo-clip-{size}-{grid}-{width}-seed{seed}"
    return Encoder(name, clip.Model(cfg, rngs=nnx.Rngs(seed)), mean, std, True)


def extract(encoder: Encoder, images: np.ndarray, *, batch: int = 32, desc: str = "features") -> np.ndarray:
    """float16 (N, grid^2, d) penultimate patch features of uint8 (N, S, S, 3) images."""
    mean, std = jnp.asarray(encoder.mean, jnp.float32), jnp.asarray(encoder.std, jnp.float32)

    @nnx.jit
    def run(model, x):
        x = (x.astype(jnp.float32) / 255.0 - mean) / std
        # (B, 1, S, S, 3): one-frame clips, the input every jaxbgs backbone takes
        return encoder_features(model, x[:, None], drop_cls=encoder.drop_cls).astype(jnp.float16)

    out = []
    for a in tqdm(range(0, len(images), batch), desc=desc, unit="batch", leave=False):
        chunk = images[a : a + batch]
        pad = batch - len(chunk)  # one compiled shape
        x = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)]) if pad else chunk
        out.append(np.asarray(run(encoder.model, jnp.asarray(x)))[: len(chunk)])
    return np.concatenate(out)


@dataclasses.dataclass(frozen=True, eq=False)
class Pool:
    """One task's split, ready to train or score. `boxes`, `points` in the encoder's square; `source_points`
    in the image's own [0, 1] frame (what the gaze metrics compare against), `content` where the image
    lies in the square, `sizes` (W, H) of the image for gaze AUC."""

    task: str
    features: np.ndarray  # (N, grid^2, d) float16
    labels: np.ndarray  # (N,) class index into CLASSES[task]; -1 for gaze
    boxes: np.ndarray
    box_valid: np.ndarray
    points: np.ndarray
    point_mask: np.ndarray
    source_points: np.ndarray
    content: np.ndarray
    sizes: np.ndarray
    keys: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx) -> Pool:
        idx = np.asarray(idx)
        arrays = {
            f.name: getattr(self, f.name)[idx]
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }
        return dataclasses.replace(self, **arrays, keys=tuple(self.keys[i] for i in idx))


def _cache_dir(
    cache: Path, task: str, samples: Sequence[Sample], encoder: Encoder, size: int, mode: str
) -> Path:
    h = hashlib.sha256(json.dumps([encoder.name, size, mode, task]).encode())
    for s in samples:
        # size and mtime: a file rewritten in place (same name, new pixels) is never read stale; a
        # missing one is left for `prepare` to report
        st = os.stat(s.image) if os.path.isfile(s.image) else None
        h.update(repr((dataclasses.astuple(s), st and (st.st_size, st.st_mtime_ns))).encode())
    return cache / "socialfusion" / f"{task}-{h.hexdigest()[:16]}"


def build_pool(
    task: str,
    samples: Sequence[Sample],
    encoder: Encoder,
    *,
    size: int,
    mode: str = "pad",
    cache: str | os.PathLike | None = None,
    batch: int = 32,
) -> Pool:
    """Decode, square and encode `samples` once, or read the cached result. The cache is a directory
    per pool: `features.npy` (memory-mapped on read: CLIP-L/336 features take 1.2 MB an image, so a
    large dataset stays on disk) and `meta.npz`; it is written to a temporary name and renamed."""
    if not samples:
        raise InputError(
            f"no {task} samples to build a pool from", where=task, fix="check the dataset directory and split"
        )
    where = _cache_dir(Path(cache), task, samples, encoder, size, mode) if cache is not None else None
    if where is None or not (where / "meta.npz").is_file():
        prepared = [prepare(s, size, mode=mode) for s in tqdm(samples, desc=f"{task} images", leave=False)]
        st = stack(prepared, max_boxes=MAX_BOXES, max_points=MAX_POINTS)
        src = np.full((len(samples), MAX_POINTS, 2), -1.0, np.float32)
        for i, s in enumerate(samples):
            if s.points:
                src[i, : len(s.points)] = s.points
        meta = {
            "labels": st["label"],
            "boxes": st["boxes"],
            "box_valid": st["box_mask"],
            "points": st["points"],
            "point_mask": st["point_mask"],
            "source_points": src,
            "content": st["content"],
            "sizes": st["size"],
        }
        features = extract(encoder, st["image"], batch=batch, desc=f"{task} features")
        if where is None:
            return Pool(task=task, keys=tuple(s.key or s.image for s in samples), features=features, **meta)
        with atomic_path(where, directory=True, replace=True) as tmp:
            tmp.mkdir(parents=True, exist_ok=True)
            np.save(tmp / "features.npy", features)
            np.savez(tmp / "meta.npz", **meta)
    with np.load(where / "meta.npz") as z:
        meta = {k: z[k] for k in z.files}
    features = np.load(where / "features.npy", mmap_mode="r")
    if len(features) != len(samples) or len(meta["labels"]) != len(samples):
        raise InputError(
            f"cached pool has {len(features)} rows, the split {len(samples)} samples",
            file=where,
            fix="delete this cache directory; it is rebuilt on the next run",
        )
    return Pool(task=task, keys=tuple(s.key or s.image for s in samples), features=features, **meta)


def content_heatmap(heatmaps: np.ndarray, content: np.ndarray, out: int | None = None) -> np.ndarray:
    """(B, h, w) heatmaps over the encoder's square -> (B, out, out) over the image alone (the padding
    cut off, bilinear), the frame the GazeFollow protocol scores in."""
    b, h, w = heatmaps.shape
    out = out or h
    g = (np.arange(out) + 0.5) / out
    x0, y0, x1, y1 = (content[:, k, None] for k in range(4))
    xs = np.clip((x0 + g * (x1 - x0)) * w - 0.5, 0, w - 1)  # (B, out) source pixel coordinates
    ys = np.clip((y0 + g * (y1 - y0)) * h - 0.5, 0, h - 1)
    xi, yi = np.minimum(xs.astype(int), w - 2), np.minimum(ys.astype(int), h - 2)
    fx, fy = (xs - xi)[:, None, :], (ys - yi)[:, :, None]
    rows = np.arange(b)[:, None, None]

    def at(dy, dx):
        return heatmaps[rows, (yi + dy)[:, :, None], (xi + dx)[:, None, :]]

    top = at(0, 0) * (1 - fx) + at(0, 1) * fx
    bottom = at(1, 0) * (1 - fx) + at(1, 1) * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)
