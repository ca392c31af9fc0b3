"""The GazeFollow protocol for SocialFusion's gaze head (SocialFusion paper, §3.4 "Training objective"
and §4.1 "Evaluation metrics"; reference notes `../shared/reference/socialfusion.md` §2).

Mirrors Gaze-LLE (fkryan/gazelle `gazelle/utils.py`, `scripts/eval_gazefollow.py`), which follows
Chong et al. (ejcgt/attention-target-detection):

- `target_heatmap`: the training target, Gaze-LLE `get_heatmap` (Newell's `draw_labelmap`): an
  un-normalised sigma=3 Gaussian over a 6*sigma+1 window centred on (int(x*64), int(y*64)), clipped at
  the borders, divided by its max; an empty map for a point with x < 0 or y < 0.
- `upsample_bilinear`: torch `F.interpolate(mode="bilinear", align_corners=False)` (no antialias), for
  up- and down-sampling alike; in numpy, or in JAX when given a JAX array (usable inside a model).
- `auc`: Gaze-LLE `gazefollow_auc`: the annotators' points as single pixels (int(x*W), int(y*H)),
  clamped to the image, on a map of the original H x W; the 64x64 prediction bilinearly upsampled to
  H x W; sklearn `roc_auc_score` of the two, flattened.
- `l2_errors`: Gaze-LLE `gazefollow_l2`: the argmax of the 64x64 map (first on ties) as (col/64,
  row/64); min L2 to any annotator's point and avg L2 to the annotators' *mean* point (x and y each
  normalised by their own side).
- `gaze_metrics`: means over heads; `chance`: the same metrics of uninformative heatmaps.

Heads hold up to K annotator points padded with x < 0 (GazeFollow test: about 10 each); `masks`
(default: x >= 0) names the real ones.
"""

from __future__ import annotations

import functools

import numpy as np

from jaxbgs.errors import InputError
from jaxbgs.socialfusion.metrics import roc_auc

SIZE = 64  # heatmap side (Gaze-LLE out_size; SocialFusion interpolates its head to it)
SIGMA = 3.0  # target Gaussian, in heatmap pixels (paper §3.4)
_CHUNK = 64  # heads per block when averaging distances over every heatmap cell


# ------------------------------------------------------------------------------------ target map


def prior_logit(size: int = SIZE, sigma: float = SIGMA) -> float:
    """The logit of a target map's mean pixel (one blob in the middle of the map)."""
    p = float(target_heatmap(np.array([0.5, 0.5]), size, sigma).mean())
    return float(np.log(p / (1 - p)))


def target_heatmap(points, size: int = SIZE, sigma: float = SIGMA) -> np.ndarray:
    """float32 (..., size, size) training targets of normalised (x, y) `points` (..., 2).

    Reproduces `get_heatmap` pixel for pixel, quirks included: the window is [trunc(c - 3 sigma),
    trunc(c + 3 sigma + 1)) around c = trunc(x * size), indexed into a Gaussian of ceil(6 sigma + 1)
    taps centred at tap (6 sigma + 1) // 2 (for a sigma with 3 sigma not whole, the peak can sit a
    pixel off c near the border, as in the original). A map with nothing in frame stays all zero."""
    p = np.asarray(points, np.float64)
    if p.shape[-1:] != (2,):
        raise InputError(f"points must have a trailing axis of 2 (x, y), got shape {p.shape}", where="points")
    if not np.isfinite(p).all():
        raise InputError("points hold NaN or inf", where="points", fix="mark missing points with x = -1")
    if size < 1 or not sigma > 0:
        raise InputError(f"need size >= 1 and sigma > 0, got {size}, {sigma}", where="target_heatmap")
    lead, flat = p.shape[:-1], p.reshape(-1, 2)
    taps = 6 * sigma + 1
    n_taps, centre = len(np.arange(0, taps, 1)), taps // 2
    c = np.trunc(flat * size)  # (N, 2): int(gazex * width), int(gazey * height)
    ul, br = np.trunc(c - 3 * sigma), np.trunc(c + 3 * sigma + 1)
    pix = np.arange(size, dtype=np.float64)
    k = pix - ul[:, :, None]  # (N, 2, size): tap index of every pixel along x and y
    inside = (pix >= ul[:, :, None]) & (pix < br[:, :, None]) & (k >= 0) & (k < n_taps)
    inside &= (flat >= 0).all(axis=1)[:, None, None]  # x < 0 or y < 0: out of frame, empty map
    d2 = (k - centre) ** 2
    g = np.exp(-(d2[:, 1, :, None] + d2[:, 0, None, :]) / (2 * sigma**2))  # rows y, columns x
    maps = np.where(inside[:, 1, :, None] & inside[:, 0, None, :], g, 0.0).astype(np.float32)
    peak = maps.max(axis=(1, 2), keepdims=True)
    maps = np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)
    return maps.reshape(*lead, size, size)


# ------------------------------------------------------------------------------------- resampling


@functools.lru_cache(maxsize=64)
def _interp_taps(n_in: int, n_out: int, dtype: str) -> tuple[np.ndarray, ...]:
    """(i0, i1, w0, w1) of torch's align_corners=False linear resampling along one axis, in torch's
    own arithmetic (`area_pixel_compute_scale`, `area_pixel_compute_source_index`,
    `guard_index_and_lambda`): scale = n_in / n_out in the compute dtype, source = scale * (i + 0.5) -
    0.5 in float64 rounded to it, clamped at 0; i0 = floor(source) (at most n_in - 1), i1 = i0 + 1 not
    past the edge, w1 = source - i0 in [0, 1], w0 = 1 - w1 (torch's CPU weights to the bit)."""
    dt = np.dtype(dtype).type
    scale = np.float64(dt(n_in) / dt(n_out))
    src = np.maximum((scale * (np.arange(n_out) + 0.5) - 0.5).astype(dt), dt(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = np.clip(src - i0.astype(dt), dt(0), dt(1))
    taps = (i0, i1, dt(1) - w1, w1)
    for t in taps:
        t.setflags(write=False)
    return taps


def upsample_bilinear(h, out_hw: tuple[int, int]):
    """Resize the last two axes of `h` (..., h, w) to `out_hw` = (H, W) as torch
    `F.interpolate(mode="bilinear", align_corners=False)` does (no antialias, also when shrinking).

    torch's weights (to the bit) and order: along W, then along H, w0 x0 + w1 x1 per axis, computed in
    float32 for float32 input (float64 for float64; float32 for integer and half inputs). That is
    torch's CPU output to an ulp or two (its kernel fuses the multiply-adds), so the AUC's ties fall
    as in Gaze-LLE. Two gathers and blends, O(H W). A JAX array (also a tracer under jit) stays in
    JAX; anything else comes back as numpy."""
    out_h, out_w = (int(v) for v in out_hw)
    if out_h < 1 or out_w < 1:
        raise InputError(f"out_hw must be positive, got {out_hw}", where="upsample_bilinear")
    if getattr(h, "ndim", 0) < 2:
        raise InputError(f"need (..., h, w), got shape {np.shape(h)}", where="upsample_bilinear")
    import jax
    import jax.numpy as jnp

    xp = jnp if isinstance(h, jax.Array) else np
    h = h if xp is jnp else np.asarray(h)
    work = "float64" if h.dtype == np.float64 else "float32"
    c0, c1, cw0, cw1 = _interp_taps(h.shape[-1], out_w, work)
    r0, r1, rw0, rw1 = _interp_taps(h.shape[-2], out_h, work)
    x = h.astype(work)
    x = xp.asarray(cw0) * x[..., c0] + xp.asarray(cw1) * x[..., c1]
    return xp.asarray(rw0)[:, None] * x[..., r0, :] + xp.asarray(rw1)[:, None] * x[..., r1, :]


# ---------------------------------------------------------------------------------------- metrics


def _head_points(points, masks, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(B, K, 2) points and (B, K) bool masks; every head needs a valid point, valid means x >= 0."""
    p = np.asarray(points, np.float64)
    if p.ndim != 3 or p.shape[-1] != 2:
        raise InputError(f"points must be (B, K, 2), got shape {p.shape}", where=where)
    m = p[..., 0] >= 0 if masks is None else np.asarray(masks)
    if m.shape != p.shape[:2] or m.dtype != bool:
        raise InputError(f"masks must be bool {p.shape[:2]}, got {m.dtype} {m.shape}", where=where)
    if not np.isfinite(p[m]).all():
        raise InputError("a valid point holds NaN or inf", where=where)
    bad = m & (p < 0).any(axis=-1)
    if bad.any():
        b, k = np.argwhere(bad)[0]
        raise InputError(
            f"head {b} point {k} is marked valid but lies at {tuple(p[b, k])} (negative)",
            where=where,
            fix="mark padded points invalid in masks (GazeFollow pads with -1)",
        )
    empty = np.flatnonzero(~m.any(axis=1))
    if len(empty):
        raise InputError(
            f"{len(empty)} head(s) without a valid annotator point (first: head {empty[0]})",
            where=where,
            fix="drop heads without annotations before evaluating (GazeFollow test heads all have some)",
        )
    return p, m


def _heatmaps(heatmaps, n: int | None, where: str) -> np.ndarray:
    h = np.asarray(heatmaps)
    if h.ndim != 3 or (n is not None and len(h) != n):
        raise InputError(f"heatmaps must be ({n or 'B'}, h, w), got shape {h.shape}", where=where)
    if not np.isfinite(h).all():
        raise InputError("heatmaps hold NaN or inf", where=where, fix="check the gaze head's outputs")
    return h


def auc(heatmap64, points, image_wh) -> float:
    """GazeFollow AUC of one head: `heatmap64` (h, w), its annotators' normalised `points` (K, 2)
    (those with x < 0 skipped), the image's (width, height) in pixels."""
    h = _heatmaps(np.asarray(heatmap64)[None], 1, "heatmap64")[0]
    p = np.asarray(points, np.float64).reshape(-1, 2)
    p = p[p[:, 0] >= 0]
    w_img, h_img = (int(v) for v in image_wh)
    if w_img < 1 or h_img < 1 or w_img * h_img < 2:
        raise InputError(f"image_wh must be a positive (width, height), got {image_wh}", where="image_wh")
    if len(p) == 0:
        raise InputError("no annotator point with x >= 0", where="points", fix="AUC needs a gaze target")
    if (p[:, 1] < 0).any() or not np.isfinite(p).all():
        raise InputError(f"points with x >= 0 need a finite y >= 0, got {p.tolist()}", where="points")
    x = np.minimum((p[:, 0] * float(w_img)).astype(np.int64), w_img - 1)
    y = np.minimum((p[:, 1] * float(h_img)).astype(np.int64), h_img - 1)
    target = np.zeros(h_img * w_img, bool)
    target[y * w_img + x] = True
    if target.all():
        raise InputError("every pixel is a gaze target", where="points", fix="AUC needs a negative pixel")
    return roc_auc(upsample_bilinear(h, (h_img, w_img)).ravel(), target)


def l2_errors(heatmap64, points, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """(min L2, avg L2) per head of `heatmap64` (B, h, w) against `points` (B, K, 2) with `mask`
    (B, K) naming the real annotators (default x >= 0). Unbatched (h, w), (K, 2) gives floats."""
    single = np.ndim(heatmap64) == 2
    if single:
        heatmap64, points = np.asarray(heatmap64)[None], np.asarray(points)[None]
        mask = None if mask is None else np.asarray(mask)[None]
    p, m = _head_points(points, mask, "points")
    h = _heatmaps(heatmap64, len(p), "heatmap64")
    rows, cols = np.divmod(np.argmax(h.reshape(len(h), -1), axis=1), h.shape[2])
    pred = np.stack([cols / h.shape[2], rows / h.shape[1]], axis=1)  # (B, 2) as (x, y)
    dist = np.linalg.norm(p - pred[:, None], axis=-1)
    min_l2 = np.where(m, dist, np.inf).min(axis=1)
    mean = (p * m[..., None]).sum(axis=1) / m.sum(axis=1, keepdims=True)
    avg_l2 = np.linalg.norm(mean - pred, axis=-1)
    return (float(min_l2[0]), float(avg_l2[0])) if single else (min_l2, avg_l2)


def _sizes(sizes, n: int) -> np.ndarray:
    s = np.asarray(sizes)
    if s.shape != (n, 2) or not np.issubdtype(s.dtype, np.number) or (s < 1).any():
        raise InputError(
            f"sizes must be ({n}, 2) positive image (width, height), got {s.dtype} {s.shape}", where="sizes"
        )
    return s.astype(np.int64)


def gaze_metrics(heatmaps, points, masks, sizes, *, per_head: bool = False) -> dict:
    """{"auc", "min_l2", "avg_l2"}: means over heads of `auc` and `l2_errors`, for `heatmaps`
    (B, h, w), `points` (B, K, 2), `masks` (B, K) bool or None (then x >= 0), image `sizes` (B, 2) as
    (width, height) in pixels.
    `per_head=True` gives the (B,) arrays instead (e.g. for a bootstrap). Each head is upsampled to
    its own image size, so the AUC runs head by head; the L2s are one vectorised pass."""
    p, m = _head_points(points, masks, "points")
    h = _heatmaps(heatmaps, len(p), "heatmaps")
    s = _sizes(sizes, len(p))
    min_l2, avg_l2 = l2_errors(h, p, m)
    aucs = np.array([auc(h[b], p[b][m[b]], s[b]) for b in range(len(p))])
    out = {"auc": aucs, "min_l2": min_l2, "avg_l2": avg_l2}
    return out if per_head else {k: float(v.mean()) for k, v in out.items()}


# ----------------------------------------------------------------------------------------- chance


def prior_heatmap(points, masks=None, size: int = SIZE, sigma: float = SIGMA) -> np.ndarray:
    """(size, size) mean training target over every valid annotator point: the data's spatial prior
    (compute it on training heads, then score it on test heads with `chance(prior=...)`)."""
    p, m = _head_points(points, masks, "points")
    return target_heatmap(p[m], size, sigma).mean(axis=0)


def _uniform_l2(p: np.ndarray, m: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(min L2, avg L2) per head averaged over every cell of a size x size map: the expected errors
    of an argmax drawn uniformly at random (a flat map's actual argmax, cell 0, is arbitrary)."""
    g = np.arange(size) / size
    cells = np.stack(np.meshgrid(g, g, indexing="xy"), axis=-1).reshape(-1, 2)  # (size^2, 2) as (x, y)
    mean = (p * m[..., None]).sum(axis=1) / m.sum(axis=1, keepdims=True)
    mins, avgs = [], []
    for a in range(0, len(p), _CHUNK):  # blocks bound the (heads, cells, K) distances in memory
        blk = slice(a, a + _CHUNK)
        d = np.linalg.norm(p[blk, None] - cells[None, :, None], axis=-1)
        mins.append(np.where(m[blk, None], d, np.inf).min(axis=2).mean(axis=1))
        avgs.append(np.linalg.norm(mean[blk, None] - cells[None], axis=-1).mean(axis=1))
    return np.concatenate(mins), np.concatenate(avgs)


def chance(points, masks, sizes, *, prior=None, size: int = SIZE) -> dict[str, dict[str, float]]:
    """The metrics of uninformative heatmaps on these heads: {"uniform": a flat map (AUC exactly 0.5;
    L2s expected over a uniformly random argmax cell), "centre": the target Gaussian at the image
    centre (argmax at (0.5, 0.5)), "prior": `prior` (h, w) shown to every head, if given}."""
    p, m = _head_points(points, masks, "points")
    s = _sizes(sizes, len(p))
    mins, avgs = _uniform_l2(p, m, size)
    out = {"uniform": {"auc": 0.5, "min_l2": float(mins.mean()), "avg_l2": float(avgs.mean())}}
    maps = {"centre": target_heatmap(np.array([0.5, 0.5]), size)}
    if prior is not None:
        maps["prior"] = _heatmaps(np.asarray(prior)[None], 1, "prior")[0]
    for name, hm in maps.items():
        out[name] = gaze_metrics(np.broadcast_to(hm, (len(p), *hm.shape)), p, m, s)
    return out
