"""VideoMAE video encoder (Tong et al. 2022, "VideoMAE: Masked Autoencoders are Data-Efficient Learners
for Self-Supervised Video Pre-Training"), mirroring transformers `VideoMAEModel`.

A pre-norm ViT over (2, 16, 16) tubelets (Conv3d with bias) plus a fixed sinusoidal position table, no
class token. The key projection has no bias; query and value have one when `qv_bias` (the release
files store them as separate `q_bias` / `v_bias` tensors, which transformers loads as the Linear
biases). The final `layernorm` exists only when `use_mean_pooling` is False, exactly as in
`VideoMAEModel`: pre-trained checkpoints (videomae-base) have it, Kinetics/SSv2 fine-tuned ones pool
with the classifier's `fc_norm` instead, which is not part of the backbone. `tokens` is therefore
transformers' `last_hidden_state`; the clip embedding is the mean of the tokens.

The position table covers exactly `num_frames / tubelet_size * (H/16) * (W/16)` tokens and transformers
has no interpolation for it, so only the configured frame count and frame size are accepted.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from flax import nnx

from jaxbgs.errors import InputError
from jaxbgs.lora import Dense, LoRAConfig
from jaxbgs.models import layers
from jaxbgs.models.layers import BackboneConfig, Output

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Config(BackboneConfig):
    """Defaults are `MCG-NJU/videomae-base` (pre-trained only: final layernorm, no mean pooling)."""

    # Released variants: the ViT-S/B/L/H encoders.
    VARIANT_FIELDS = (*layers.WIDTH_DEPTH_HEADS, "intermediate_size")
    VARIANTS = {
        "vit_small": (384, 12, 6, 1536),
        "vit_base": (768, 12, 12, 3072),
        "vit_large": (1024, 24, 16, 4096),
        "vit_huge": (1280, 32, 16, 5120),
    }

    image_size: int | tuple[int, int] = 224
    patch_size: int = 16
    num_channels: int = 3
    num_frames: int = 16
    tubelet_size: int = 2
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    qv_bias: bool = True
    use_mean_pooling: bool = False

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.image_size, int):
            if len(self.image_size) != 2:
                raise InputError(
                    f"image_size={self.image_size!r}", where="Config", fix="use an int or (h, w)"
                )
            object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        if not isinstance(self.patch_size, int):
            raise InputError(f"patch_size={self.patch_size!r}", where="Config", fix="use one int")
        if self.pool == "cls":
            raise InputError("VideoMAE has no CLS token", where="Config.pool", fix="use pool='mean'")

    @property
    def frame_size(self) -> tuple[int, int]:
        s = self.image_size
        return (s, s) if isinstance(s, int) else s

    @property
    def num_patches(self) -> int:
        h, w = self.frame_size
        return (h // self.patch_size) * (w // self.patch_size) * (self.num_frames // self.tubelet_size)


@functools.lru_cache(maxsize=8)
def sinusoid_table(n_position: int, dim: int) -> np.ndarray:
    """(n_position, dim) table as transformers builds it: angles pos / 10000**(2*(j//2)/dim) in float64,
    sin on even and cos on odd dims, then rounded to float32 (so float64 runs see the same values)."""
    j = np.arange(dim)
    table = np.arange(n_position)[:, None] / np.power(10000, 2 * (j // 2) / dim)[None, :]
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return table.astype(np.float32)


class SelfAttention(nnx.Module):
    """transformers `VideoMAESelfAttention`: query/value biased when `qv_bias`, key never."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, dt, qv = cfg.hidden_size, cfg.compute_dtype, cfg.qv_bias
        self.query = Dense(d, d, use_bias=qv, group="qkv", lora=lora, dtype=dt, rngs=rngs)
        self.key = Dense(d, d, use_bias=False, group="qkv", lora=lora, dtype=dt, rngs=rngs)
        self.value = Dense(d, d, use_bias=qv, group="qkv", lora=lora, dtype=dt, rngs=rngs)
        self.heads, self.impl = cfg.num_attention_heads, cfg.attention

    def __call__(self, x, *, output_attentions=False):
        b, n, d = x.shape
        q, k, v = (f(x).reshape(b, n, self.heads, -1) for f in (self.query, self.key, self.value))
        out, weights = layers.attention(q, k, v, implementation=self.impl, return_weights=output_attentions)
        return out.reshape(b, n, d), weights


class DenseOut(nnx.Module):
    """One Linear under the name `dense` (transformers `VideoMAESelfOutput`, `VideoMAEOutput`,
    `VideoMAEIntermediate`), so adapter paths read as the PyTorch module names."""

    def __init__(self, d_in, d_out, *, group, lora, dtype, rngs: nnx.Rngs):
        self.dense = Dense(d_in, d_out, group=group, lora=lora, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.dense(x)


class Attention(nnx.Module):
    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.attention = SelfAttention(cfg, lora=lora, rngs=rngs)
        self.output = DenseOut(d, d, group="out", lora=lora, dtype=dt, rngs=rngs)

    def __call__(self, x, *, output_attentions=False):
        a, weights = self.attention(x, output_attentions=output_attentions)
        return self.output(a), weights


class Layer(nnx.Module):
    """transformers `VideoMAELayer`: pre-norm attention and MLP, each with a residual."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, inter, dt = cfg.hidden_size, cfg.intermediate_size, cfg.compute_dtype
        self.layernorm_before = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.attention = Attention(cfg, lora=lora, rngs=rngs)
        self.layernorm_after = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.intermediate = DenseOut(d, inter, group="mlp", lora=lora, dtype=dt, rngs=rngs)
        self.output = DenseOut(inter, d, group="mlp", lora=lora, dtype=dt, rngs=rngs)
        self.act = layers.activation(cfg.hidden_act)

    def __call__(self, x, *, output_attentions=False):
        a, weights = self.attention(self.layernorm_before(x), output_attentions=output_attentions)
        x = x + a
        return x + self.output(self.act(self.intermediate(self.layernorm_after(x)))), weights


class Model(nnx.Module):
    """VideoMAE encoder on (B, T, H, W, C) clips, ImageNet-normalised, at the configured T, H, W."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None = None, rngs: nnx.Rngs):
        self.cfg, self.lora = cfg, lora
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.patch_embed = layers.PatchEmbed(
            cfg.num_channels, d, patch=cfg.patch_size, tubelet=cfg.tubelet_size, dtype=dt, rngs=rngs
        )
        self.blocks = layers.Stack(lambda r: Layer(cfg, lora=lora, rngs=r), cfg.num_hidden_layers, rngs=rngs)
        self.layernorm = (
            None if cfg.use_mean_pooling else layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        )
        self.head = layers.make_head(cfg, d, rngs=rngs)

    def check_input(self, shape):
        cfg = self.cfg
        (h, w), c = cfg.frame_size, cfg.num_channels
        if len(shape) != 5 or tuple(shape[1:]) != (cfg.num_frames, h, w, c):
            raise InputError(
                f"VideoMAE takes clips of exactly {cfg.num_frames} frames of {h}x{w} with {c} channels "
                f"(B, {cfg.num_frames}, {h}, {w}, {c}); got shape {tuple(shape)}",
                where="input",
                fix=f"sample {cfg.num_frames} frames and resize/crop them to {h}x{w}: the fixed position "
                "table has no interpolation (as in transformers VideoMAEModel)",
            )

    def __call__(self, pixels, *, output_attentions: bool = False) -> Output:
        cfg = self.cfg
        self.check_input(pixels.shape)
        grid = self.patch_embed(pixels)
        x = grid.reshape(grid.shape[0], -1, grid.shape[-1])
        x = x + sinusoid_table(cfg.num_patches, cfg.hidden_size).astype(x.dtype)
        x, hidden, attns = layers.run_blocks(self.blocks, x, cfg, output_attentions=output_attentions)
        tokens = self.layernorm(x) if self.layernorm is not None else x
        emb = layers.pool_tokens(tokens, cfg.pool, has_cls=False)
        if self.head is not None:
            emb = self.head(emb)
        return Output(embedding=emb, tokens=tokens, hidden_states=hidden, attentions=attns)


def preprocess(video, *, size: int = 224, frames: int | None = 16, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """uint8 (T, H, W, 3) -> float32 (frames, size, size, 3): short side to `size` (long side truncated
    as transformers does), centre crop, /255, mean/std, the `VideoMAEImageProcessor` steps. The default
    statistics are ImageNet's, which VideoMAE was pre-trained with (its MAE loss un-normalises with
    them); transformers 5's class default is 0.5/0.5, so pass `mean`/`std` to match a checkpoint whose
    preprocessor_config.json says otherwise. `frames=None` keeps every frame."""
    from jaxbgs.models import preprocess as pp

    video = pp.sample_frames(video, frames) if frames else video
    h, w = video.shape[1:3]
    short, long = min(h, w), max(h, w)
    long = int(size * long / short)
    video = pp.resize(video, size, long) if h <= w else pp.resize(video, long, size)
    video = pp.center_crop(video, size)
    return pp.normalize(video, mean, std)
