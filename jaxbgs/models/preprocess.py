"""Pure preprocessing steps shared by the backbones; each family composes them with its checkpoint's
constants (`jaxbgs.models.<family>.preprocess`). Videos are (T, H, W, C) uint8 or float arrays."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxbgs.errors import InputError


def frame_indices(n_total: int, n: int, *, stride: int | None = None) -> np.ndarray:
    """`n` frame indices: evenly spaced over the whole clip including both ends (the authors'
    `floor(linspace(0, n_total-1, n))`), or every `stride`-th frame from the start."""
    if n_total < 1 or n < 1:
        raise InputError(f"cannot sample {n} frames from a clip of {n_total}", where="frames")
    if stride is None:
        return np.floor(np.linspace(0, n_total - 1, n)).astype(np.int64)
    idx = np.arange(n) * stride
    if idx[-1] >= n_total:
        raise InputError(
            f"{n} frames at stride {stride} need {idx[-1] + 1} frames, the clip has {n_total}",
            where="frames",
            fix="use a smaller stride or fewer frames",
        )
    return idx


def sample_frames(video, n: int, *, stride: int | None = None):
    return video[frame_indices(video.shape[0], n, stride=stride)]


def resize(video, height: int, width: int, *, antialias: bool = True):
    """Bilinear resize of every frame (antialiased like torchvision's tensor resize)."""
    video = jnp.asarray(video, jnp.float32)
    t, _, _, c = video.shape
    return jax.image.resize(video, (t, height, width, c), "bilinear", antialias=antialias)


def resize_short_side(video, size: int, *, antialias: bool = True):
    """Short side to `size`, long side scaled and truncated to an integer (as transformers does)."""
    h, w = video.shape[1:3]
    if h <= w:
        return resize(video, size, int(w * size / h), antialias=antialias)
    return resize(video, int(h * size / w), size, antialias=antialias)


def center_crop(video, size: int):
    h, w = video.shape[1:3]
    if h < size or w < size:
        raise InputError(f"cannot crop {size}x{size} from {h}x{w} frames", fix="resize first")
    top, left = (h - size) // 2, (w - size) // 2
    return video[:, top : top + size, left : left + size]


def normalize(video, mean, std, *, scale: float = 1 / 255.0):
    """uint8-range values -> (x * scale - mean) / std per channel, float32."""
    video = jnp.asarray(video, jnp.float32) * scale
    return (video - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
