"""TimeSformer video encoder (Bertasius et al. 2021, "Is Space-Time Attention All You Need for Video
Understanding?"), mirroring transformers `TimesformerModel` with divided space-time attention.

A ViT over per-frame 16x16 patches with a CLS token, learned space and time embeddings, and blocks
that run temporal attention (over each patch's frames, then `temporal_dense`), spatial attention
(over each frame's patches plus a copy of the CLS token, whose updates are averaged over frames),
then the MLP. Tokens are ordered patch-major, frame-minor after the CLS token, as in transformers.

Other input sizes and frame counts nearest-interpolate the position and time tables, as
transformers does. The transformers layer regroups tokens by the CONFIG's `num_frames` whatever the
clip length (REFERENCE decision 5, reference/bgs_reference_code.md §2): fed 16 frames, the 8-frame
K400 checkpoint attends over frames 0-7 and 8-15 separately in time and over two frames at once in
space. `frame_grouping="native"` (default) attends over the frames actually given;
`frame_grouping="config"` reproduces the transformers regrouping (the BGS authors' 16-frame setup).

The BGS paper fine-tunes the K400 ViT-B/16 (8 frames at 224) and embeds a clip by its final CLS token.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxbgs.errors import InputError
from jaxbgs.lora import Dense, LoRAConfig
from jaxbgs.models import layers
from jaxbgs.models.layers import BackboneConfig, Output

K400_MEAN = (0.45, 0.45, 0.45)
K400_STD = (0.225, 0.225, 0.225)
GROUPINGS = ("native", "config")


@dataclasses.dataclass(frozen=True)
class Config(BackboneConfig):
    # Released variant: facebook/timesformer-base-finetuned-k400 (ViT-B/16).
    VARIANT_FIELDS = (*layers.WIDTH_DEPTH_HEADS, "intermediate_size")
    VARIANTS = {"vit_base": (768, 12, 12, 3072)}

    pool: str = "cls"
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    num_frames: int = 8
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    attention_type: str = "divided_space_time"
    frame_grouping: str = "native"

    def __post_init__(self):
        super().__post_init__()
        if self.attention_type != "divided_space_time":
            raise InputError(
                f"attention_type={self.attention_type!r} is not supported",
                where="Config.attention_type",
                fix="only 'divided_space_time' (every released TimeSformer checkpoint) is implemented",
            )
        if self.frame_grouping not in GROUPINGS:
            raise InputError(
                f"frame_grouping={self.frame_grouping!r}",
                where="Config",
                fix=f"choose from {list(GROUPINGS)}",
            )

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source rows of PyTorch's `interpolate(mode="nearest")`: floor(i * (in/out)) in float32."""
    if n_in == n_out:
        return np.arange(n_out)
    scale = np.float32(n_in) / np.float32(n_out)
    idx = np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, n_in - 1)


class Attention(nnx.Module):
    """Fused qkv (transformers' `attention.qkv`, as PEFT targets it) and the output projection."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.qkv = Dense(d, 3 * d, use_bias=cfg.qkv_bias, group="qkv", lora=lora, dtype=dt, rngs=rngs)
        self.out = Dense(d, d, group="out", lora=lora, dtype=dt, rngs=rngs)
        self.heads, self.impl = cfg.num_attention_heads, cfg.attention

    def __call__(self, x, *, output_attentions=False):
        b, n, d = x.shape
        q, k, v = jnp.moveaxis(self.qkv(x).reshape(b, n, 3, self.heads, -1), 2, 0)
        out, weights = layers.attention(q, k, v, implementation=self.impl, return_weights=output_attentions)
        return self.out(out.reshape(b, n, d)), weights


class Block(nnx.Module):
    """Divided space-time block (transformers `TimesformerLayer`, divided_space_time branch)."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.temporal_norm = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.temporal_attention = Attention(cfg, lora=lora, rngs=rngs)
        self.temporal_dense = Dense(d, d, group="temporal_dense", lora=lora, dtype=dt, rngs=rngs)
        self.norm1 = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.attention = Attention(cfg, lora=lora, rngs=rngs)
        self.norm2 = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.mlp = layers.Mlp(d, cfg.intermediate_size, act=cfg.hidden_act, lora=lora, dtype=dt, rngs=rngs)

    def __call__(self, x, *, frames: int, output_attentions=False):
        """x: (B, 1 + G*frames, D), patch-major; `frames` is the temporal group size."""
        b, n, d = x.shape
        groups = (n - 1) // frames
        cls, tok = x[:, :1], x[:, 1:]
        t = self.temporal_attention(self.temporal_norm(tok.reshape(b * groups, frames, d)))[0]
        tok = tok + self.temporal_dense(t.reshape(b, n - 1, d))

        s = tok.reshape(b, groups, frames, d).transpose(0, 2, 1, 3).reshape(b * frames, groups, d)
        s = jnp.concatenate([jnp.repeat(cls, frames, axis=0), s], axis=1)  # batch-major, frame-minor
        s, weights = self.attention(self.norm1(s), output_attentions=output_attentions)
        cls_res = s[:, 0].reshape(b, frames, d).mean(axis=1, keepdims=True)
        res = s[:, 1:].reshape(b, frames, groups, d).transpose(0, 2, 1, 3).reshape(b, n - 1, d)

        h = jnp.concatenate([cls, tok], axis=1) + jnp.concatenate([cls_res, res], axis=1)
        return h + self.mlp(self.norm2(h)), weights


class Model(nnx.Module):
    """TimeSformer encoder on (B, T, H, W, C) clips (normalised with mean/std 0.45/0.225).

    `attentions` are the spatial attention weights per block in transformers' layout,
    (B * frames, heads, 1 + patches, 1 + patches), rows batch-major then frame.
    """

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None = None, rngs: nnx.Rngs):
        self.cfg, self.lora = cfg, lora
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.patch_embed = layers.PatchEmbed(cfg.num_channels, d, patch=cfg.patch_size, dtype=dt, rngs=rngs)
        init = nnx.initializers.truncated_normal(0.02)
        self.cls_token = nnx.Param(init(rngs.params(), (1, 1, d)))
        self.pos_embed = nnx.Param(init(rngs.params(), (1, cfg.grid**2 + 1, d)))
        self.time_embed = nnx.Param(jnp.zeros((1, cfg.num_frames, d)))
        self.blocks = layers.Stack(lambda r: Block(cfg, lora=lora, rngs=r), cfg.num_hidden_layers, rngs=rngs)
        self.norm = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.head = layers.make_head(cfg, d, rngs=rngs)

    def group_size(self, frames: int, n_patches: int) -> int:
        """Frames per temporal group: the clip's own, or the config's (transformers' regrouping)."""
        cfg = self.cfg
        if cfg.frame_grouping == "native":
            return frames
        tokens, tc, wc = frames * n_patches, cfg.num_frames, cfg.grid
        if ((tokens // tc) // wc) * wc * tc != tokens:  # where transformers' reshape fails
            raise InputError(
                f"frame_grouping='config' cannot regroup {frames} frames x {n_patches} patches into "
                f"{tc}-frame groups on a {wc}-patch-wide grid (transformers fails here too)",
                where="input",
                fix="use frame_grouping='native' or a frame count and size transformers accepts",
            )
        return tc

    def embed(self, pixels):
        """Patch, position and time embeddings: (B, 1 + P*T, D), patch-major, frame-minor."""
        cfg = self.cfg
        grid = self.patch_embed(pixels)
        b, t, rows, cols, d = grid.shape
        dtype = grid.dtype
        pos = self.pos_embed[...].astype(dtype)
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        if rows * cols != cfg.grid**2:  # transformers resizes only when the patch count differs
            patch_pos = patch_pos.reshape(cfg.grid, cfg.grid, d)
            patch_pos = patch_pos[nearest_indices(cfg.grid, rows)][:, nearest_indices(cfg.grid, cols)]
            patch_pos = patch_pos.reshape(1, rows * cols, d)
        x = grid.reshape(b, t, rows * cols, d) + patch_pos[:, None]
        time = self.time_embed[...].astype(dtype)[:, nearest_indices(cfg.num_frames, t)]
        x = x.transpose(0, 2, 1, 3) + time[:, None]
        cls = jnp.broadcast_to(self.cls_token[...].astype(dtype) + cls_pos, (b, 1, d))
        return jnp.concatenate([cls, x.reshape(b, -1, d)], axis=1), t, rows * cols

    def __call__(self, pixels, *, output_attentions: bool = False) -> Output:
        cfg = self.cfg
        if pixels.ndim != 5 or pixels.shape[-1] != cfg.num_channels:
            raise InputError(
                f"expected (B, T, H, W, {cfg.num_channels}) pixels, got shape {tuple(pixels.shape)}",
                where="input",
            )
        x, frames, n_patches = self.embed(pixels)
        x, hidden, attns = layers.run_blocks(
            self.blocks,
            x,
            cfg,
            output_attentions=output_attentions,
            frames=self.group_size(frames, n_patches),
        )
        tokens = self.norm(x)
        emb = layers.pool_tokens(tokens, cfg.pool, has_cls=True)
        if self.head is not None:
            emb = self.head(emb)
        return Output(embedding=emb, tokens=tokens, hidden_states=hidden, attentions=attns)


def preprocess(video, *, size: int = 224, frames: int | None = None, crop: bool = True):
    """uint8 (T, H, W, 3) -> float32 (T, size, size, 3), /255 then mean/std 0.45/0.225.

    `crop=True` follows the checkpoint's `VideoMAEImageProcessor`: short side to `size` (long side
    truncated to int, as transformers does), centre crop. `crop=False` resizes straight to
    size x size, as the BGS training code does (aspect ratio not kept).
    """
    from jaxbgs.models import preprocess as pp

    video = pp.sample_frames(video, frames) if frames else video
    if crop:
        video = pp.center_crop(pp.resize_short_side(video, size), size)
    else:
        video = pp.resize(video, size, size)
    return pp.normalize(video, K400_MEAN, K400_STD)
