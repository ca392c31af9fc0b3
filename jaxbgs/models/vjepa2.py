"""V-JEPA 2 video encoder (Assran et al. 2025, "V-JEPA 2: Self-Supervised Video Models Enable
Understanding, Prediction and Planning"), mirroring transformers `VJEPA2Model.encoder`.

A ViT over (2, 16, 16) tubelets with 3D rotary position embeddings and no absolute positions,
class token or registers. Two quirks of the released model are kept because the weights expect
them (REFERENCE decision 6, reference/vjepa.md §1.4, §1.7):
- RoPE pairs adjacent dims but repeats the angle table end to end ("tiled" layout);
- token positions are decomposed on the configured grid (crop_size / patch_size), as transformers
  does; `rope_grid="input"` uses the input's own grid instead (the original repo's behaviour,
  which differs only for inputs that are not square at the crop size).

The BGS paper fine-tunes ViT-L at 64 frames of 256 px; the clip embedding is the mean of the
final normalised tokens.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx

from jaxbgs.errors import InputError
from jaxbgs.lora import Dense, LoRAConfig
from jaxbgs.models import layers
from jaxbgs.models.layers import BackboneConfig, Output

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Config(BackboneConfig):
    # Released variants: paper Table 9 / the official `vit_*` constructors.
    VARIANT_FIELDS = (*layers.WIDTH_DEPTH_HEADS, "mlp_ratio")
    VARIANTS = {
        "vit_large": (1024, 24, 16, 4.0),
        "vit_huge": (1280, 32, 16, 4.0),
        "vit_giant": (1408, 40, 22, 48 / 11),
    }

    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    mlp_ratio: float = 4.0
    patch_size: int = 16
    tubelet_size: int = 2
    crop_size: int = 256
    frames_per_clip: int = 64
    in_chans: int = 3
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu"
    rope_grid: str = "config"

    def __post_init__(self):
        super().__post_init__()
        if self.rope_grid not in ("config", "input"):
            raise InputError(f"rope_grid={self.rope_grid!r}", where="Config", fix="use 'config' or 'input'")
        if self.pool == "cls":
            raise InputError("V-JEPA 2 has no CLS token", where="Config.pool", fix="use pool='mean'")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)


def rope_angles(pos, dim: int, dtype):
    """Angles pos * 10000**(-j / (dim/2)) for j < dim/2, shape (..., dim/2)."""
    omega = 1.0 / 10000 ** (jnp.arange(dim // 2, dtype=dtype) / (dim / 2.0))
    return pos[..., None].astype(dtype) * omega


def rotate(x, angles, layout: str):
    """Rotate adjacent pairs (x[2k], x[2k+1]) of x (..., N, d) by angles (N, d/2).

    `tiled` repeats the table end to end (V-JEPA 2's kept bug: a pair's two members get different
    angles); `interleaved` repeats each angle twice (V-JEPA 2.1, a true rotation).
    """
    if layout == "tiled":
        angles = jnp.concatenate([angles, angles], axis=-1)
    else:
        angles = jnp.repeat(angles, 2, axis=-1)
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    partner = jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)
    return x * jnp.cos(angles) + partner * jnp.sin(angles)


def apply_rope_3d(x, positions, layout: str):
    """Rotate head dims [0,s), [s,2s), [2s,3s) by the t, h, w positions; leave the tail as is.

    x: (B, N, heads, head_dim); positions: three (N,) arrays; s = 2 * floor(head_dim / 3 / 2).
    """
    hd = x.shape[-1]
    s = 2 * ((hd // 3) // 2)
    x = jnp.swapaxes(x, 1, 2)  # (B, heads, N, hd)
    parts = [
        rotate(x[..., i * s : (i + 1) * s], rope_angles(p, s, x.dtype), layout)
        for i, p in enumerate(positions)
    ]
    out = jnp.concatenate([*parts, x[..., 3 * s :]], axis=-1)
    return jnp.swapaxes(out, 1, 2)


def grid_positions(n_tokens: int, rows: int, cols: int):
    """(t, h, w) integer positions of tokens flattened t-major on a rows x cols grid."""
    ids = jnp.arange(n_tokens)
    per_frame = rows * cols
    t = ids // per_frame
    h = (ids - t * per_frame) // cols
    w = ids - t * per_frame - h * cols
    return t, h, w


class Attention(nnx.Module):
    """Separate query/key/value projections (as transformers splits the original fused qkv)."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.query = Dense(d, d, use_bias=cfg.qkv_bias, group="qkv", lora=lora, dtype=dt, rngs=rngs)
        self.key = Dense(d, d, use_bias=cfg.qkv_bias, group="qkv", lora=lora, dtype=dt, rngs=rngs)
        self.value = Dense(d, d, use_bias=cfg.qkv_bias, group="qkv", lora=lora, dtype=dt, rngs=rngs)
        self.proj = Dense(d, d, group="out", lora=lora, dtype=dt, rngs=rngs)
        self.heads, self.impl = cfg.num_attention_heads, cfg.attention

    def __call__(self, x, positions, *, layout="tiled", output_attentions=False):
        b, n, d = x.shape
        q, k, v = (f(x).reshape(b, n, self.heads, -1) for f in (self.query, self.key, self.value))
        q, k = apply_rope_3d(q, positions, layout), apply_rope_3d(k, positions, layout)
        out, weights = layers.attention(q, k, v, implementation=self.impl, return_weights=output_attentions)
        return self.proj(out.reshape(b, n, d)), weights


class Block(nnx.Module):
    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.norm1 = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.attention = Attention(cfg, lora=lora, rngs=rngs)
        self.norm2 = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.mlp = layers.Mlp(d, cfg.mlp_hidden, act=cfg.hidden_act, lora=lora, dtype=dt, rngs=rngs)

    def __call__(self, x, *, positions, layout="tiled", output_attentions=False):
        a, weights = self.attention(
            self.norm1(x), positions, layout=layout, output_attentions=output_attentions
        )
        x = x + a
        return x + self.mlp(self.norm2(x)), weights


class Model(nnx.Module):
    """V-JEPA 2 encoder on (B, T, H, W, C) clips in [ImageNet-normalised] float."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None = None, rngs: nnx.Rngs):
        self.cfg, self.lora = cfg, lora
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.patch_embed = layers.PatchEmbed(
            cfg.in_chans, d, patch=cfg.patch_size, tubelet=cfg.tubelet_size, dtype=dt, rngs=rngs
        )
        self.blocks = layers.Stack(lambda r: Block(cfg, lora=lora, rngs=r), cfg.num_hidden_layers, rngs=rngs)
        self.norm = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.head = layers.make_head(cfg, d, rngs=rngs)

    def __call__(self, pixels, *, output_attentions: bool = False) -> Output:
        cfg = self.cfg
        if pixels.shape[1] < cfg.tubelet_size:  # an image: repeat it to one tubelet, as transformers does
            pixels = jnp.repeat(pixels, cfg.tubelet_size, axis=1)
        grid = self.patch_embed(pixels)
        b, _, rows, cols, d = grid.shape
        x = grid.reshape(b, -1, d)
        if cfg.rope_grid == "config":
            rows = cols = cfg.crop_size // cfg.patch_size
        positions = grid_positions(x.shape[1], rows, cols)
        x, hidden, attns = layers.run_blocks(
            self.blocks, x, cfg, output_attentions=output_attentions, positions=positions
        )
        tokens = self.norm(x)
        emb = layers.pool_tokens(tokens, cfg.pool, has_cls=False)
        if self.head is not None:
            emb = self.head(emb)
        return Output(embedding=emb, tokens=tokens, hidden_states=hidden, attentions=attns)


def preprocess(video, *, size: int = 256, frames: int | None = None):
    """uint8 (T, H, W, 3) -> float32 (T, size, size, 3): short side to int(size*256/224), centre
    crop, /255, ImageNet mean/std (transformers `VJEPA2VideoProcessor`)."""
    from jaxbgs.models import preprocess as pp

    video = pp.sample_frames(video, frames) if frames else video
    video = pp.resize_short_side(video, int(size * 256 / 224))
    video = pp.center_crop(video, size)
    return pp.normalize(video, IMAGENET_MEAN, IMAGENET_STD)
