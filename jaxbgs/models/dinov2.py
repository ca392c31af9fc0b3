"""DINOv2 image encoder (Oquab et al. 2023, "DINOv2: Learning Robust Visual Features without
Supervision"), mirroring transformers `Dinov2Model`: the frozen encoder SocialFusion swaps in for
its default CLIP ViT-L/14-336 (`jaxbgs.models.clip`) in Appendix A / Table 8 of the paper.

A pre-LN ViT: patch conv with bias, a CLS token, a mask token (used only by DINOv2's masked-image
pre-training, kept so checkpoints convert strictly and export whole), learned absolute positions,
LayerScale on both residual branches, a GELU (or, for ViT-g, SwiGLU) MLP, and a final `layernorm`
that transformers applies to `last_hidden_state`; `pooler_output` is the normalised CLS token.

The hub checkpoints store a 37x37 position grid (image_size 518); other input sizes, such as
SocialFusion's 336 px (24x24 patches), resample it bicubically as transformers 5.23's
`Dinov2Embeddings.interpolate_pos_encoding` does (float32, `size=` rather than the `scale_factor=`
of older versions), down to ATen's float32 sampling coordinates (`bicubic_matrix`).

Inputs are (B, H, W, C) images or (B, T, H, W, C) clips; a clip runs as B*T images, so `tokens`,
`hidden_states` and `attentions` are per image (row b*T + t is frame t of clip b) and only
`embedding` is per clip: the mean over frames of the pooled token.
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

DINOV2_MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics, as `BitImageProcessor` for facebook/dinov2-*
DINOV2_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Config(BackboneConfig):
    """Defaults are facebook/dinov2-base. `image_size` is the size the position table was trained
    at (518 on the hub, although `Dinov2Config()` says 224); any multiple of the patch size runs.
    `pool="cls"` gives transformers' pooler_output, `"mean"` the mean normalised patch token."""

    # Released variants: the paper's ViT-S/B/L/g at patch 14, as the hub configs
    # facebook/dinov2-{small,base,large,giant} give them (all image_size 518, mlp_ratio 4).
    VARIANT_FIELDS = (*layers.WIDTH_DEPTH_HEADS, "use_swiglu_ffn")
    VARIANTS = {
        "vit_s14": (384, 12, 6, False),
        "vit_b14": (768, 12, 12, False),
        "vit_l14": (1024, 24, 16, False),
        "vit_g14": (1536, 40, 24, True),
    }

    pool: str = "cls"
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    mlp_ratio: int = 4
    num_channels: int = 3
    image_size: int = 518
    patch_size: int = 14
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    layerscale_value: float = 1.0
    use_swiglu_ffn: bool = False
    use_mask_token: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.image_size % self.patch_size:
            raise InputError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}",
                where="Config.image_size",
                fix="use the checkpoint's own image_size (518 for the hub models)",
            )

    @property
    def num_positions(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1

    @property
    def mlp_hidden(self) -> int:
        """fc1 width; SwiGLU keeps two thirds of it per branch, rounded up to a multiple of 8."""
        hidden = int(self.hidden_size * self.mlp_ratio)
        return (int(hidden * 2 / 3) + 7) // 8 * 8 if self.use_swiglu_ffn else hidden


def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of PyTorch's `interpolate(mode="bicubic", align_corners=False)` along
    one axis, with its float32 source coordinates.

    Keys cubic (A = -0.75), border taps clamped, as `jaxbgs.models.clip.bicubic_matrix`; but ATen
    computes `scale * (i + 0.5) - 0.5` in float32 (scale = float32(n_in) / n_out, one fused
    multiply-add), which on the hub's 37-wide grid moves the weights by ~3e-6 from the exact
    ones. Reproducing that keeps the 518 -> 336 px resampling within ~1e-6 of transformers.
    """
    scale = np.float32(n_in) / np.float32(n_out)
    real = (np.float64(scale) * (np.arange(n_out) + 0.5) - 0.5).astype(np.float32)
    base = np.minimum(np.floor(real).astype(np.int64), n_in - 1)
    t = np.clip(real - base, 0, 1).astype(np.float64)
    a = -0.75
    w = np.stack(
        [
            ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
            ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a,
        ],
        axis=1,
    ).astype(np.float32)
    m = np.zeros((n_out, n_in))
    for k in range(4):
        np.add.at(m, (np.arange(n_out), np.clip(base - 1 + k, 0, n_in - 1)), w[:, k])
    return m


def resample_positions(grid, rows: int, cols: int):
    """(g, g, D) position grid -> (rows, cols, D) as PyTorch's bicubic `interpolate`
    (align_corners=False), in float32 as transformers does for DINOv2."""
    g = grid.shape[0]
    mh, mw = (jnp.asarray(bicubic_matrix(g, n), jnp.float32) for n in (rows, cols))
    return jnp.einsum("hi,wj,ijd->hwd", mh, mw, grid.astype(jnp.float32))


class Embeddings(nnx.Module):
    """`Dinov2Embeddings`: patch conv with bias, CLS token, (unused) mask token, positions."""

    def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
        d = cfg.hidden_size
        init = nnx.initializers.truncated_normal(0.02)
        self.cfg = cfg
        self.cls_token = nnx.Param(init(rngs.params(), (1, 1, d)))
        self.mask_token = nnx.Param(jnp.zeros((1, d))) if cfg.use_mask_token else None
        self.patch_embeddings = layers.PatchEmbed(
            cfg.num_channels, d, patch=cfg.patch_size, use_bias=True, dtype=cfg.compute_dtype, rngs=rngs
        )
        self.position_embeddings = nnx.Param(init(rngs.params(), (1, cfg.num_positions, d)))

    def positions(self, height: int, width: int, dtype):
        """The (N, D) table for a height x width input; unchanged only for a square input with
        the trained patch count (transformers' condition), resampled otherwise."""
        table = self.position_embeddings[...][0]
        rows, cols = height // self.cfg.patch_size, width // self.cfg.patch_size
        if rows * cols + 1 == table.shape[0] and height == width:
            return table.astype(dtype)
        g = math.isqrt(table.shape[0] - 1)
        grid = resample_positions(table[1:].reshape(g, g, -1), rows, cols)
        return jnp.concatenate([table[:1].astype(dtype), grid.reshape(rows * cols, -1).astype(dtype)])

    def __call__(self, pixels):
        b, t, h, w, _ = pixels.shape
        x = self.patch_embeddings(pixels)
        x = x.reshape(b * t, -1, x.shape[-1])
        cls = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (b * t, 1, x.shape[-1]))
        return jnp.concatenate([cls, x], axis=1) + self.positions(h, w, x.dtype)


class Attention(nnx.Module):
    """`Dinov2Attention`: q/k/v (bias per `qkv_bias`) and o_proj, scale head_dim**-0.5."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, dt, bias = cfg.hidden_size, cfg.compute_dtype, cfg.qkv_bias
        self.q_proj = Dense(d, d, use_bias=bias, group="qkv", lora=lora, dtype=dt, rngs=rngs)
        self.k_proj = Dense(d, d, use_bias=bias, group="qkv", lora=lora, dtype=dt, rngs=rngs)
        self.v_proj = Dense(d, d, use_bias=bias, group="qkv", lora=lora, dtype=dt, rngs=rngs)
        self.o_proj = Dense(d, d, group="out", lora=lora, dtype=dt, rngs=rngs)
        self.heads, self.impl = cfg.num_attention_heads, cfg.attention

    def __call__(self, x, *, output_attentions=False):
        b, n, d = x.shape
        q, k, v = (f(x).reshape(b, n, self.heads, -1) for f in (self.q_proj, self.k_proj, self.v_proj))
        out, weights = layers.attention(q, k, v, implementation=self.impl, return_weights=output_attentions)
        return self.o_proj(out.reshape(b, n, d)), weights


class LayerScale(nnx.Module):
    """Per-channel residual-branch scale (Touvron et al. 2021, CaiT), `Dinov2LayerScale`."""

    def __init__(self, dim: int, value: float):
        self.lambda1 = nnx.Param(jnp.full((dim,), value, jnp.float32))

    def __call__(self, x):
        return x * self.lambda1[...].astype(x.dtype)


class SwiGLU(nnx.Module):
    """The ViT-g MLP in its on-disk layout (`mlp.weights_in`, `mlp.weights_out`): `weights_in`
    holds the gate rows then the up rows, which transformers 5 splits into gate_proj/up_proj at
    load time; keeping them fused lets hub checkpoints convert one tensor to one parameter.

    For the same reason it takes no LoRA: PEFT would look for a `weights_in` module that
    transformers 5 no longer has and drop the adapter without a word.
    """

    def __init__(self, dim: int, hidden: int, *, lora: LoRAConfig | None, dtype, rngs: nnx.Rngs):
        if lora is not None and "mlp" in lora.targets:
            raise InputError(
                "LoRA on the SwiGLU MLP (ViT-g) cannot be exported to PEFT: transformers 5 splits "
                "its fused `weights_in` into gate_proj/up_proj",
                where="lora.targets",
                fix="adapt the attention only, e.g. targets=('qkv', 'out')",
            )
        self.weights_in = Dense(dim, 2 * hidden, group="mlp", lora=lora, dtype=dtype, rngs=rngs)
        self.weights_out = Dense(hidden, dim, group="mlp", lora=lora, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        gate, up = jnp.split(self.weights_in(x), 2, axis=-1)
        return self.weights_out(jax.nn.silu(gate) * up)


class Layer(nnx.Module):
    """`Dinov2Layer`: x + ls1(attn(norm1(x))), then + ls2(mlp(norm2(x)))."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.norm1 = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.attention = Attention(cfg, lora=lora, rngs=rngs)
        self.layer_scale1 = LayerScale(d, cfg.layerscale_value)
        self.norm2 = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        if cfg.use_swiglu_ffn:
            self.mlp = SwiGLU(d, cfg.mlp_hidden, lora=lora, dtype=dt, rngs=rngs)
        else:
            self.mlp = layers.Mlp(d, cfg.mlp_hidden, act=cfg.hidden_act, lora=lora, dtype=dt, rngs=rngs)
        self.layer_scale2 = LayerScale(d, cfg.layerscale_value)

    def __call__(self, x, *, output_attentions=False):
        a, weights = self.attention(self.norm1(x), output_attentions=output_attentions)
        x = x + self.layer_scale1(a)
        return x + self.layer_scale2(self.mlp(self.norm2(x))), weights


class Model(nnx.Module):
    """DINOv2 on (B, H, W, C) images or (B, T, H, W, C) clips of ImageNet-normalised pixels.

    `tokens` is transformers' `last_hidden_state` (after the final layernorm); `hidden_states`
    the embedding output and each layer's raw output (depth + 1 entries, so `hidden_states[-2]`
    is the penultimate layer).
    """

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None = None, rngs: nnx.Rngs):
        self.cfg, self.lora = cfg, lora
        self.embeddings = Embeddings(cfg, rngs=rngs)
        self.layers = layers.Stack(lambda r: Layer(cfg, lora=lora, rngs=r), cfg.num_hidden_layers, rngs=rngs)
        self.layernorm = layers.layer_norm(
            cfg.hidden_size, cfg.layer_norm_eps, dtype=cfg.compute_dtype, rngs=rngs
        )
        self.head = layers.make_head(cfg, cfg.hidden_size, rngs=rngs)

    def __call__(self, pixels, *, output_attentions: bool = False) -> Output:
        cfg = self.cfg
        clips = layers.as_clips(pixels)
        b, t = clips.shape[:2]
        x = self.embeddings(clips)
        x, hidden, attns = layers.run_blocks(self.layers, x, cfg, output_attentions=output_attentions)
        tokens = self.layernorm(x)
        emb = layers.pool_tokens(tokens, cfg.pool, has_cls=True).reshape(b, t, -1).mean(axis=1)
        if self.head is not None:
            emb = self.head(emb)
        return Output(embedding=emb, tokens=tokens, hidden_states=hidden, attentions=attns)


def preprocess(images, *, size: int = 224, crop: bool = True):
    """uint8 (H, W, 3) image or (T, H, W, 3) frames -> float32 of the same rank, size x size,
    /255 and ImageNet mean/std.

    `crop=True` follows `BitImageProcessor` (short side to size * 256 / 224, centre crop);
    `crop=False` resizes the whole frame to size x size, so person boxes and gaze targets stay in
    view (map them with the same scale). Resizing is antialiased bilinear rather than the
    processor's bicubic, as for the other families: pixel values move slightly, geometry does not.
    """
    from jaxbgs.models import preprocess as pp

    frames = np.asarray(images)[None] if np.ndim(images) == 3 else images
    if crop:
        frames = pp.center_crop(pp.resize_short_side(frames, size * 256 // 224), size)
    else:
        frames = pp.resize(frames, size, size)
    out = pp.normalize(frames, DINOV2_MEAN, DINOV2_STD)
    return out[0] if np.ndim(images) == 3 else out
