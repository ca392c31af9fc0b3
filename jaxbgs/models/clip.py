"""CLIP image tower (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision"), mirroring transformers `CLIPVisionModel` (plus the `visual_projection` of `CLIPModel` /
`CLIPVisionModelWithProjection`), applied to every frame of a clip.

A pre-LN ViT: bias-free patch conv, a learned class embedding and learned absolute positions, a
`pre_layrnorm` before the encoder, quick-GELU MLPs, and `post_layernorm` on the pooled CLS token only.
The BGS paper embeds 7 equally spaced frames with ViT-B/32 ("vision encoder only") and averages the
per-frame embeddings. Here a (B, T, H, W, C) clip runs as B*T independent images, so `Output.tokens`,
`hidden_states` and `attentions` are per frame, (B*T, N, ...) with row b*T + t frame t of clip b, and
`tokens` is transformers' `last_hidden_state` (not post-normalised, as there); only `embedding`
is per clip: the mean over frames of post_layernorm(pooled token), projected only when the
checkpoint has `visual_projection` and `use_projection` is on (off by default: the paper uses the
vision encoder alone).
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxbgs.errors import InputError
from jaxbgs.lora import Dense, LoRAConfig
from jaxbgs.models import layers
from jaxbgs.models.layers import BackboneConfig, Output

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass(frozen=True)
class Config(BackboneConfig):
    """Defaults are ViT-B/32 (= `CLIPVisionConfig()`); `projection_dim` is None for a bare
    `CLIPVisionModel`. A loaded projection is always kept (for export) but only applied with
    `use_projection=True`; by default the embedding is the pooled hidden_size vector, as
    `CLIPVisionModel` on a full CLIP checkpoint gives (the paper's "vision encoder only").
    `interpolate_pos_encoding` is transformers' flag: resample the position table bicubically
    for frames other than image_size x image_size, which are otherwise rejected."""

    # Released variants: the vision configs of the OpenAI releases.
    VARIANT_FIELDS = (*layers.WIDTH_DEPTH_HEADS, "intermediate_size", "patch_size", "image_size")
    VARIANTS = {
        "vit_b32": (768, 12, 12, 3072, 32, 224),
        "vit_b16": (768, 12, 12, 3072, 16, 224),
        "vit_l14": (1024, 24, 16, 4096, 14, 224),
        "vit_l14_336": (1024, 24, 16, 4096, 14, 336),
    }

    pool: str = "cls"
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 32
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    projection_dim: int | None = None
    use_projection: bool = False
    interpolate_pos_encoding: bool = False
    num_frames: int = 7  # frames the paper embeds per clip; any count runs

    @property
    def num_positions(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1

    @property
    def embed_dim(self) -> int:
        return self.projection_dim if self.projection_dim and self.use_projection else self.hidden_size


def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of PyTorch's `interpolate(mode="bicubic", align_corners=False)` along one
    axis: Keys cubic with A=-0.75, source index (i + 0.5) * n_in / n_out - 0.5, border taps clamped."""
    a = -0.75
    real = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    base = np.floor(real)
    t = real - base
    w = np.stack(
        [
            ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
            ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a,
        ],
        axis=1,
    )
    m = np.zeros((n_out, n_in))
    for k in range(4):
        np.add.at(m, (np.arange(n_out), np.clip(base.astype(int) - 1 + k, 0, n_in - 1)), w[:, k])
    return m


class Embeddings(nnx.Module):
    """Patch conv (no bias), class embedding, learned positions (`CLIPVisionEmbeddings`)."""

    def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.cfg = cfg
        self.class_embedding = nnx.Param(nnx.initializers.normal(d**-0.5)(rngs.params(), (d,)))
        self.patch_embedding = layers.PatchEmbed(
            cfg.num_channels, d, patch=cfg.patch_size, use_bias=False, dtype=dt, rngs=rngs
        )
        init = nnx.initializers.normal(0.02)
        self.position_embedding = nnx.Param(init(rngs.params(), (cfg.num_positions, d)))

    def positions(self, height: int, width: int, dtype):
        """The (N, D) table, resampled like transformers' `interpolate_pos_encoding` when needed."""
        cfg = self.cfg
        table = self.position_embedding[...].astype(dtype)
        rows, cols = height // cfg.patch_size, width // cfg.patch_size
        if rows * cols + 1 == cfg.num_positions and height == width:
            return table
        g = math.isqrt(cfg.num_positions - 1)
        grid = table[1:].reshape(g, g, -1)
        mh, mw = (jnp.asarray(bicubic_matrix(g, n), dtype) for n in (rows, cols))
        grid = jnp.einsum("hi,wj,ijd->hwd", mh, mw, grid)
        return jnp.concatenate([table[:1], grid.reshape(rows * cols, -1)])

    def __call__(self, pixels):
        cfg = self.cfg
        b, t, h, w, _ = pixels.shape
        if not cfg.interpolate_pos_encoding and (h, w) != (cfg.image_size, cfg.image_size):
            raise InputError(
                f"frames are {h}x{w}, the model takes {cfg.image_size}x{cfg.image_size}",
                where="input",
                fix="resize the frames, or set interpolate_pos_encoding=True to resample positions",
            )
        x = self.patch_embedding(pixels)
        x = x.reshape(b * t, -1, x.shape[-1])
        cls = jnp.broadcast_to(self.class_embedding[...].astype(x.dtype), (b * t, 1, x.shape[-1]))
        return jnp.concatenate([cls, x], axis=1) + self.positions(h, w, x.dtype)


class Attention(nnx.Module):
    """Separate q/k/v/out projections with bias (`CLIPAttention`), scale head_dim**-0.5."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.q_proj = Dense(d, d, group="qkv", lora=lora, dtype=dt, rngs=rngs)
        self.k_proj = Dense(d, d, group="qkv", lora=lora, dtype=dt, rngs=rngs)
        self.v_proj = Dense(d, d, group="qkv", lora=lora, dtype=dt, rngs=rngs)
        self.out_proj = Dense(d, d, group="out", lora=lora, dtype=dt, rngs=rngs)
        self.heads, self.impl = cfg.num_attention_heads, cfg.attention

    def __call__(self, x, *, output_attentions=False):
        b, n, d = x.shape
        q, k, v = (f(x).reshape(b, n, self.heads, -1) for f in (self.q_proj, self.k_proj, self.v_proj))
        out, weights = layers.attention(q, k, v, implementation=self.impl, return_weights=output_attentions)
        return self.out_proj(out.reshape(b, n, d)), weights


class EncoderLayer(nnx.Module):
    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.layer_norm1 = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.self_attn = Attention(cfg, lora=lora, rngs=rngs)
        self.layer_norm2 = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.mlp = layers.Mlp(d, cfg.intermediate_size, act=cfg.hidden_act, lora=lora, dtype=dt, rngs=rngs)

    def __call__(self, x, *, output_attentions=False):
        a, weights = self.self_attn(self.layer_norm1(x), output_attentions=output_attentions)
        x = x + a
        return x + self.mlp(self.layer_norm2(x)), weights


class Model(nnx.Module):
    """CLIP vision tower on (B, T, H, W, C) clips of CLIP-normalised frames."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None = None, rngs: nnx.Rngs):
        self.cfg, self.lora = cfg, lora
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.embeddings = Embeddings(cfg, rngs=rngs)
        self.pre_layrnorm = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.layers = layers.Stack(
            lambda r: EncoderLayer(cfg, lora=lora, rngs=r), cfg.num_hidden_layers, rngs=rngs
        )
        self.post_layernorm = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.visual_projection = (
            Dense(d, cfg.projection_dim, use_bias=False, dtype=dt, rngs=rngs) if cfg.projection_dim else None
        )
        self.head = layers.make_head(cfg, cfg.embed_dim, rngs=rngs)

    def __call__(self, pixels, *, output_attentions: bool = False) -> Output:
        cfg = self.cfg
        b, t = pixels.shape[:2]
        x = self.pre_layrnorm(self.embeddings(pixels))
        x, hidden, attns = layers.run_blocks(self.layers, x, cfg, output_attentions=output_attentions)
        # pool "cls" is transformers' pooler_output; "mean" normalises the mean patch token instead.
        frame_emb = self.post_layernorm(layers.pool_tokens(x, cfg.pool, has_cls=True))
        if self.visual_projection is not None and cfg.use_projection:
            frame_emb = self.visual_projection(frame_emb)
        emb = frame_emb.reshape(b, t, -1).mean(axis=1)
        if self.head is not None:
            emb = self.head(emb)
        return Output(embedding=emb, tokens=x, hidden_states=hidden, attentions=attns)


def preprocess(video, *, size: int = 224, frames: int | None = 7):
    """uint8 (T, H, W, 3) -> float32 (frames, size, size, 3): `frames` equally spaced frames (the
    paper's 7; None keeps all), short side to `size`, centre crop, /255, CLIP mean/std.

    `CLIPImageProcessor` resizes bicubically; this uses antialiased bilinear (shared with the other
    families), which moves pixel values slightly but keeps the geometry identical.
    """
    from jaxbgs.models import preprocess as pp

    video = pp.sample_frames(video, frames) if frames else video
    video = pp.resize_short_side(video, size)
    video = pp.center_crop(video, size)
    return pp.normalize(video, CLIP_MEAN, CLIP_STD)
