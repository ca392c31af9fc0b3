"""Attention rollout (Abnar & Zuidema 2020) for every video backbone, per-frame saliency maps, and the
BGS attention-divergence statistic (paper App. N.3, Fig. 12: 1 - mean Pearson r between baseline and
fine-tuned per-frame saliency maps, averaged over the model's temporal slices; top five stimuli shown).

Each attention sublayer mixes tokens by `M = (I + A) / rowsum`, A the head-averaged softmax weights:
the identity stands for the residual stream. The rollout of a depth-L model is `M_L ... M_1`; row q
says how much of each input token reaches output token q. Only one row (or the mean row) of it is
needed for a saliency map, so the models are read out by pulling that row vector down through the
blocks (`v <- v M_l`, l = L..1), which is exact and costs O(L N^2) instead of O(L N^3).

The readout row follows what the clip embedding is (`cfg.pool`), so the map attributes the very vector
BGS scores: the CLS row for CLS-pooled TimeSformer and CLIP; the mean over (patch) query rows for
mean-pooled models, V-JEPA 2 / 2.1 and VideoMAE (no CLS token), i.e. column sums, the share of each
input token in the mean-pooled output. The paper does not say which readout it used; CLS columns are
dropped from the maps. Maps are raw rollout mass (not renormalised): Pearson r ignores scale.

TimeSformer (divided space-time attention) is composed exactly: per block the temporal operator (each
patch's frames, CLS untouched) and the spatial operator (each frame's patches plus the CLS copy, whose
updates the model averages over frames) are each residual-mixed and multiplied, `M = R_space R_time`,
over the model's own token grouping (`frame_grouping="config"` included). `Output.attentions` of the
model holds only the spatial weights (as transformers does), so the temporal weights are recomputed
from `hidden_states` with the block's own temporal norm and attention.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxbgs.errors import InputError
from jaxbgs.models import clip, timesformer, videomae, vjepa2, vjepa21

_FAMILIES = (vjepa2.Model, vjepa21.Model, timesformer.Model, videomae.Model, clip.Model)


# ---------------------------------------------------------------- pure rollout on attention arrays


def attention_mixing(weights):
    """(B, heads, N, N) softmax weights -> (B, N, N) residual mixing (I + mean_h A) / rowsum."""
    a = jnp.asarray(weights, jnp.float32).mean(axis=1)
    a = a + jnp.eye(a.shape[-1], dtype=a.dtype)
    return a / a.sum(axis=-1, keepdims=True)


def rollout_matrix(mixings: Sequence) -> jax.Array:
    """`M_L ... M_1` of per-block (B, N, N) mixing matrices, first block first in `mixings`."""
    out = mixings[0]
    for m in mixings[1:]:
        out = jnp.einsum("bij,bjk->bik", m, out)
    return out


def timesformer_mixing(temporal, spatial):
    """Dense (B, N, N) mixing of one divided space-time block, N = 1 + Q * G, tokens 1 + q * G + s.

    `temporal`: (B*Q, heads, G, G) over each group of G consecutive patch tokens (a patch's frames);
    `spatial`: (B*G, heads, 1+Q, 1+Q) per frame slot s over [CLS, the Q tokens at slot s], the
    model's layout. The CLS row of the spatial operator is the frame-mean of the per-slot CLS rows,
    as the block averages the CLS updates. Dense, so for tests and small inputs only.
    """
    tm = jnp.asarray(temporal, jnp.float32).mean(axis=1)
    sm = jnp.asarray(spatial, jnp.float32).mean(axis=1)
    g = tm.shape[-1]
    b = sm.shape[0] // g
    tm, sm = tm.reshape(b, -1, g, g), sm.reshape(b, g, *sm.shape[1:])
    q = tm.shape[1]
    p = q * g
    t_pp = jnp.einsum("bqst,qr->bqsrt", tm, jnp.eye(q)).reshape(b, p, p)
    r_time = jnp.zeros((b, p + 1, p + 1)).at[:, 0, 0].set(1.0).at[:, 1:, 1:].set(t_pp)
    s_full = jnp.zeros((b, p + 1, p + 1))
    s_full = s_full.at[:, 0, 0].set(sm[:, :, 0, 0].mean(axis=1))
    s_full = s_full.at[:, 0, 1:].set(sm[:, :, 0, 1:].transpose(0, 2, 1).reshape(b, p) / g)
    s_full = s_full.at[:, 1:, 0].set(sm[:, :, 1:, 0].transpose(0, 2, 1).reshape(b, p))
    s_pp = jnp.einsum("bsqr,st->bqsrt", sm[:, :, 1:, 1:], jnp.eye(g)).reshape(b, p, p)
    s_full = s_full.at[:, 1:, 1:].set(s_pp)
    eye = jnp.eye(p + 1)
    r_time = r_time + eye
    r_space = s_full + eye
    r_time = r_time / r_time.sum(-1, keepdims=True)
    r_space = r_space / r_space.sum(-1, keepdims=True)
    return jnp.einsum("bij,bjk->bik", r_space, r_time)


def pull(v, attentions: Sequence):
    """Row vector(s) v (B, N) times the rollout of ViT blocks' (B, heads, N, N) weights: v M_L ... M_1."""
    v = jnp.asarray(v, jnp.float32)
    for w in reversed(attentions):
        a = jnp.asarray(w, jnp.float32).mean(axis=1)
        u = v / (1.0 + a.sum(axis=-1))
        v = jnp.einsum("bi,bij->bj", u, a) + u
    return v


def pull_timesformer(v, temporal: Sequence, spatial: Sequence):
    """`pull` through TimeSformer blocks without forming N x N matrices (same argument layouts as
    `timesformer_mixing`): v R_space applies each slot's (1+Q)^2 weights to [v_cls / G, v at slot s]."""
    v = jnp.asarray(v, jnp.float32)
    b = v.shape[0]
    for tw, sw in zip(reversed(temporal), reversed(spatial), strict=True):
        tm = jnp.asarray(tw, jnp.float32).mean(axis=1)
        sm = jnp.asarray(sw, jnp.float32).mean(axis=1)
        g = tm.shape[-1]
        tm, sm = tm.reshape(b, -1, g, g), sm.reshape(b, g, *sm.shape[1:])
        q = tm.shape[1]
        # space: rows normalised by 1 + their sums; CLS row = frame-mean of the per-slot CLS rows
        d_cls = 1.0 + sm[:, :, 0, :].sum(-1).mean(axis=1)
        d_tok = 1.0 + sm[:, :, 1:, :].sum(-1).transpose(0, 2, 1)  # (B, Q, G)
        u_cls, u_tok = v[:, 0] / d_cls, v[:, 1:].reshape(b, q, g) / d_tok
        aug = jnp.concatenate(
            [jnp.broadcast_to(u_cls[:, None, None] / g, (b, g, 1)), u_tok.swapaxes(1, 2)], 2
        )
        y = jnp.einsum("bsi,bsij->bsj", aug, sm)  # (B, G, 1+Q)
        v_cls = u_cls + y[:, :, 0].sum(axis=1)
        v_tok = u_tok + y[:, :, 1:].swapaxes(1, 2)
        # time: CLS untouched, each group of G tokens mixed by its own (G, G) weights
        u_tok = v_tok / (1.0 + tm.sum(-1))
        v_tok = u_tok + jnp.einsum("bqs,bqst->bqt", u_tok, tm)
        v = jnp.concatenate([v_cls[:, None], v_tok.reshape(b, q * g)], axis=1)
    return v


def readout(n_tokens: int, batch: int, *, cls: bool, pool: str):
    """The row vector whose rollout is the saliency: the CLS row, or the mean over (patch) query rows."""
    v = np.zeros((batch, n_tokens), np.float32)
    if cls and pool == "cls":
        v[:, 0] = 1.0
    elif cls:
        v[:, 1:] = 1.0 / (n_tokens - 1)
    else:
        v[:] = 1.0 / n_tokens
    return jnp.asarray(v)


# ---------------------------------------------------------------- models


def _family(model):
    if not isinstance(model, _FAMILIES):
        raise InputError(
            f"attention rollout is not defined for {type(model).__module__}.{type(model).__name__}",
            where="model",
            fix="pass a video backbone: vjepa2, vjepa21, timesformer, videomae or clip",
        )
    return model


def _token_saliency(model, pixels):
    """(B, frames', rows, cols) saliency on the token grid of one batch of clips (traced under jit)."""
    cfg = model.cfg
    b, t, h, w, _ = pixels.shape
    rows, cols = h // cfg.patch_size, w // cfg.patch_size
    out = model(pixels, output_attentions=True)
    attns = out.attentions
    if isinstance(model, timesformer.Model):
        group = model.group_size(t, rows * cols)
        temporal = []
        for block, x in zip(model.blocks, out.hidden_states[:-1], strict=True):
            tok = x[:, 1:]
            tok = block.temporal_norm(tok.reshape(-1, group, tok.shape[-1]))
            temporal.append(block.temporal_attention(tok, output_attentions=True)[1])
        n_tok = 1 + rows * cols * t
        sal = pull_timesformer(readout(n_tok, b, cls=True, pool=cfg.pool), temporal, attns)
        return sal[:, 1:].reshape(b, rows, cols, t).transpose(0, 3, 1, 2)
    if isinstance(model, clip.Model):  # per frame: B*T images
        n_tok = attns[0].shape[-1]
        sal = pull(readout(n_tok, b * t, cls=True, pool=cfg.pool), attns)
        return sal[:, 1:].reshape(b, t, rows, cols)
    n_tok = attns[0].shape[-1]
    sal = pull(readout(n_tok, b, cls=False, pool="mean"), attns)
    return sal.reshape(b, n_tok // (rows * cols), rows, cols)  # tokens t-major, as the grid is flattened


@functools.partial(jax.jit, static_argnums=0)
def _saliency_batch(graphdef, state, pixels):
    model = nnx.merge(graphdef, state, copy=True)
    model.eval()
    return _token_saliency(model, pixels)


def rollout(model, clips, *, batch: int = 8) -> np.ndarray:
    """Rollout saliency on the token grid, (n, frames', H', W') float32, for n normalised float clips
    (n, T, H, W, 3) as the model takes them. frames' is T for TimeSformer and CLIP, T / tubelet for
    V-JEPA 2 / 2.1 and VideoMAE. Batches are padded to `batch` so one compiled program serves all.

    Memory: every block's head-averaged (N, N) map is kept for the backward pull, L * N^2 floats per
    clip plus one block's (heads, N, N) weights (V-JEPA 2 ViT-L at 64 frames of 256 px: N = 8192,
    about 11 GB per clip in float32), so large video models want batch 1-2."""
    _family(model)
    clips = np.asarray(clips)
    if clips.ndim != 5 or len(clips) == 0:
        raise InputError(f"expected clips (n, T, H, W, C), got shape {clips.shape}", where="clips")
    if not np.issubdtype(clips.dtype, np.floating):
        raise InputError(
            f"clips are {clips.dtype}", where="clips", fix="normalise them first (the model's preprocess)"
        )
    graphdef, state = nnx.split(model)
    batch = min(batch, len(clips))
    out = []
    for i in range(0, len(clips), batch):
        chunk = clips[i : i + batch]
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
        out.append(np.asarray(_saliency_batch(graphdef, state, jnp.asarray(chunk)))[: batch - pad])
    return np.concatenate(out)


def upsample(maps, frames: int, height: int, width: int, *, method: str = "bilinear") -> np.ndarray:
    """(n, frames', H', W') token-grid maps -> (n, frames, height, width): each frame takes its
    tubelet's slice (frame t -> slice t * frames' // frames), then a spatial `jax.image.resize`."""
    maps = jnp.asarray(maps, jnp.float32)
    n, f = maps.shape[:2]
    if frames % f:
        raise InputError(f"{frames} frames do not split into {f} temporal slices", where="upsample")
    maps = jnp.repeat(maps, frames // f, axis=1)
    return np.asarray(jax.image.resize(maps, (n, frames, height, width), method))


def saliency_maps(model, clips, *, batch: int = 8, method: str = "bilinear") -> np.ndarray:
    """Per-frame saliency upsampled to the clips' pixels, (n, T, H, W) (for display: the divergence
    is best taken on `rollout`'s token grid, where App. N.3's temporal slices live)."""
    clips = np.asarray(clips)
    grid = rollout(model, clips, batch=batch)
    return upsample(grid, clips.shape[1], clips.shape[2], clips.shape[3], method=method)


# ---------------------------------------------------------------- divergence


def divergence(maps_a, maps_b) -> np.ndarray:
    """1 - r-bar per stimulus, (n,): r is the Pearson correlation of two models' maps of one temporal
    slice (flattened H x W), r-bar its mean over the slices (App. N.3: "averaged over the model's 8
    temporal slices"). Maps are (n, slices, H, W); a slice constant in either map has no r and is left
    out of the mean (NaN if every slice is). Range [0, 2]: 0 same maps, 2 negated ones."""
    a = np.asarray(maps_a, np.float64)
    b = np.asarray(maps_b, np.float64)
    if a.shape != b.shape or a.ndim != 4:
        raise InputError(
            f"maps must both be (n, slices, H, W); got {a.shape} and {b.shape}", where="divergence"
        )
    a = a.reshape(*a.shape[:2], -1)
    b = b.reshape(*b.shape[:2], -1)
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    ok = den > 0
    r = np.where(ok, (a * b).sum(-1) / np.where(ok, den, 1.0), np.nan)
    counts = ok.sum(axis=1)
    mean_r = np.where(counts > 0, np.nansum(r, axis=1) / np.maximum(counts, 1), np.nan)
    return 1.0 - mean_r


def top_divergent(div, names: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
    """The k most divergent stimuli, largest first (ties in input order; NaN never chosen)."""
    div = np.asarray(div, np.float64)
    if len(div) != len(names):
        raise InputError(f"{len(div)} divergences for {len(names)} names", where="top_divergent")
    order = [i for i in np.argsort(-div, kind="stable") if np.isfinite(div[i])]
    return [(names[i], float(div[i])) for i in order[:k]]
