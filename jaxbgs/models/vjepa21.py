"""V-JEPA 2.1 video encoder (Mur-Labadia et al. 2026, "V-JEPA 2.1: Unlocking Dense Features in Video
Self-Supervised Learning"), mirroring the official `app/vjepa_2_1/models/vision_transformer.py`
`VisionTransformer` of facebookresearch/vjepa2 as its hub loader builds it (transformers has no 2.1).

The V-JEPA 2 backbone (reference/vjepa.md §1) with every 2.1 difference (§2.1):
- RoPE angles are *interleaved* (a true rotation of adjacent pairs), not V-JEPA 2's tiled quirk;
- spatial RoPE positions are rescaled onto the 16 x 16 pretraining grid, `h * 15 / (rows - 1)` in
  float32 (multiply first), temporal ones are not, so a 1-patch-high or -wide input is rejected;
- a learned modality vector is added after patch embedding, and a single frame (T == 1) goes
  through its own (1, 16, 16) image tokenizer instead of the (2, 16, 16) tubelet;
- no final norm: four LayerNorms `norms_block` belong to fixed blocks; the default output is
  `norms_block[3]` on the last block, `output="hierarchical"` the channel concat of all four levels
  (B, N, 4D), shallow to deep.

The BGS paper fine-tunes the distilled ViT-B (`vjepa2_1_vitb_dist_vitG_384.pt`) and embeds a clip
as the mean of the default output tokens (its UCF101 probe mean-pools patch tokens).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxbgs.errors import InputError
from jaxbgs.lora import Dense, LoRAConfig
from jaxbgs.models import layers
from jaxbgs.models.layers import BackboneConfig, Output
from jaxbgs.models.vjepa2 import apply_rope_3d, grid_positions

# Blocks whose outputs `norms_block[0..3]` normalise, fixed per depth by the official class.
HIERARCHICAL_LAYERS = {12: (2, 5, 8, 11), 24: (5, 11, 17, 23), 40: (9, 19, 29, 39), 48: (11, 23, 37, 47)}
# Patch grid of the 256-px pretraining crop (252 px for patch 14) that RoPE positions are mapped onto.
PRETRAINED_GRID = {16: 16, 14: 18}
ROPE_LAYOUT = "interleaved"  # module-level so a test can show that V-JEPA 2's tiled layout differs


@dataclasses.dataclass(frozen=True)
class Config(BackboneConfig):
    """Architecture fields named like the official constructor arguments (a ViT-B by default).

    `hierarchical_layers=None` takes the official table for depths 12/24/40/48 and the quartile
    blocks ceil(depth*k/4)-1, k=1..4, otherwise (the table's own rule except for 48; the official
    class knows only the four depths, so this only matters for small test models; level j always
    uses `norms_block[j]`, even where indices repeat).
    """

    # Released variants: the official `vit_*` constructors the 2.1 hub functions use.
    VARIANT_FIELDS = (*layers.WIDTH_DEPTH_HEADS, "mlp_ratio")
    VARIANTS = {
        "vit_base": (768, 12, 12, 4.0),
        "vit_large": (1024, 24, 16, 4.0),
        "vit_giant": (1408, 40, 22, 48 / 11),
        "vit_gigantic": (1664, 48, 26, 64 / 13),
    }

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    tubelet_size: int = 2
    crop_size: int = 384
    frames_per_clip: int = 16  # the B/L eval clips (16 frames, stride 4); any even count works
    in_chans: int = 3
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu"
    img_temporal_dim_size: int = 1
    interpolate_rope: bool = True
    hierarchical_layers: tuple[int, ...] | None = None
    output: str = "last"

    def __post_init__(self):
        super().__post_init__()
        if self.pool == "cls":
            raise InputError("V-JEPA 2.1 has no CLS token", where="Config.pool", fix="use pool='mean'")
        if self.output not in ("last", "hierarchical"):
            raise InputError(
                f"output={self.output!r}", where="Config.output", fix="use 'last' or 'hierarchical'"
            )
        if self.interpolate_rope and self.patch_size not in PRETRAINED_GRID:
            raise InputError(
                f"RoPE rescaling is defined for patch sizes {sorted(PRETRAINED_GRID)}, not {self.patch_size}",
                where="Config.patch_size",
                fix="use patch 16 or 14, or interpolate_rope=False",
            )
        if self.hierarchical_layers is not None:
            layers_ = tuple(int(i) for i in self.hierarchical_layers)
            object.__setattr__(self, "hierarchical_layers", layers_)
            if len(layers_) != 4 or not all(0 <= i < self.num_hidden_layers for i in layers_):
                raise InputError(
                    f"hierarchical_layers {list(layers_)} must be 4 block indices < {self.num_hidden_layers}",
                    where="Config.hierarchical_layers",
                )

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def levels(self) -> tuple[int, ...]:
        """The block index each of `norms_block[0..3]` normalises."""
        if self.hierarchical_layers is not None:
            return self.hierarchical_layers
        depth = self.num_hidden_layers
        return HIERARCHICAL_LAYERS.get(depth) or tuple(math.ceil(depth * k / 4) - 1 for k in range(1, 5))

    @property
    def output_dim(self) -> int:
        return self.hidden_size * (4 if self.output == "hierarchical" else 1)


def rope_positions(cfg: Config, frames: int, rows: int, cols: int):
    """Float32 (t, h, w) per token (t-major), h and w rescaled onto the pretraining grid.

    Computed in numpy at trace time, as the reference does in float32: multiply by (G - 1), then
    divide by (rows - 1), each rounded once, so the angles match the PyTorch model to the last bit.
    """
    if cfg.interpolate_rope and (rows == 1 or cols == 1):
        raise InputError(
            f"a {rows}x{cols} patch grid cannot be rescaled: V-JEPA 2.1 maps positions by "
            f"(G-1)/(rows-1) and (G-1)/(cols-1)",
            where="input",
            fix=f"use frames at least {2 * cfg.patch_size} px high and wide",
        )
    with jax.ensure_compile_time_eval():
        t, h, w = (np.asarray(p).astype(np.float32) for p in grid_positions(frames * rows * cols, rows, cols))
    if cfg.interpolate_rope:
        g = np.float32(PRETRAINED_GRID[cfg.patch_size] - 1)
        h = h * g / np.float32(rows - 1)
        w = w * g / np.float32(cols - 1)
    return t, h, w


class Attention(nnx.Module):
    """The official fused `qkv` projection (rows q | k | v, head-major) and `proj`."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.qkv = Dense(d, 3 * d, use_bias=cfg.qkv_bias, group="qkv", lora=lora, dtype=dt, rngs=rngs)
        self.proj = Dense(d, d, group="out", lora=lora, dtype=dt, rngs=rngs)
        self.heads, self.impl = cfg.num_attention_heads, cfg.attention

    def __call__(self, x, positions, *, output_attentions=False):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, -1)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        q, k = apply_rope_3d(q, positions, ROPE_LAYOUT), apply_rope_3d(k, positions, ROPE_LAYOUT)
        out, weights = layers.attention(q, k, v, implementation=self.impl, return_weights=output_attentions)
        return self.proj(out.reshape(b, n, d)), weights


class Block(nnx.Module):
    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.norm1 = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.attn = Attention(cfg, lora=lora, rngs=rngs)
        self.norm2 = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.mlp = layers.Mlp(d, cfg.mlp_hidden, act=cfg.hidden_act, lora=lora, dtype=dt, rngs=rngs)

    def __call__(self, x, *, positions, output_attentions=False):
        a, weights = self.attn(self.norm1(x), positions, output_attentions=output_attentions)
        x = x + a
        return x + self.mlp(self.norm2(x)), weights


class Model(nnx.Module):
    """V-JEPA 2.1 encoder on (B, T, H, W, C) ImageNet-normalised clips; T == 1 is an image."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None = None, rngs: nnx.Rngs):
        self.cfg, self.lora = cfg, lora
        d, dt = cfg.hidden_size, cfg.compute_dtype
        embed = dict(patch=cfg.patch_size, dtype=dt, rngs=rngs)
        self.patch_embed = layers.PatchEmbed(cfg.in_chans, d, tubelet=cfg.tubelet_size, **embed)
        self.patch_embed_img = layers.PatchEmbed(cfg.in_chans, d, tubelet=1, **embed)
        self.img_mod_embed = nnx.Param(jnp.zeros((1, 1, d)))
        self.video_mod_embed = nnx.Param(jnp.zeros((1, 1, d)))
        self.blocks = layers.Stack(lambda r: Block(cfg, lora=lora, rngs=r), cfg.num_hidden_layers, rngs=rngs)
        self.norms_block = nnx.List(
            [layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs) for _ in range(4)]
        )
        self.head = layers.make_head(cfg, cfg.output_dim, rngs=rngs)

    def __call__(self, pixels, *, output_attentions: bool = False) -> Output:
        cfg = self.cfg
        image = pixels.shape[1] == cfg.img_temporal_dim_size
        grid = (self.patch_embed_img if image else self.patch_embed)(pixels)
        b, frames, rows, cols, d = grid.shape
        positions = rope_positions(cfg, frames, rows, cols)
        mod = self.img_mod_embed if image else self.video_mod_embed
        x = grid.reshape(b, -1, d) + mod[...].astype(grid.dtype)
        x, hidden, attns = layers.run_blocks(
            self.blocks, x, cfg, output_attentions=output_attentions, positions=positions
        )
        if cfg.output == "hierarchical":
            tokens = jnp.concatenate(
                [norm(hidden[i + 1]) for norm, i in zip(self.norms_block, cfg.levels, strict=True)], axis=-1
            )
        else:
            tokens = self.norms_block[3](x)
        emb = layers.pool_tokens(tokens, cfg.pool, has_cls=False)
        if self.head is not None:
            emb = self.head(emb)
        return Output(embedding=emb, tokens=tokens, hidden_states=hidden, attentions=attns)


def preprocess(video, *, size: int = 384, frames: int | None = None):
    """uint8 (T, H, W, 3) -> float32 (T, size, size, 3) exactly as V-JEPA 2 (short side to
    int(size*256/224), centre crop, /255, ImageNet mean/std); every 2.1 release is 384 px."""
    from jaxbgs.models import vjepa2

    return vjepa2.preprocess(video, size=size, frames=frames)
