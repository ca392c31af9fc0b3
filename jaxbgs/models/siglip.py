"""SigLIP image tower (Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training"), mirroring
transformers `SiglipVisionModel` (the `vision_model` of `SiglipModel`): a further frozen encoder for
SocialFusion's encoder swaps, besides its default CLIP (`jaxbgs.models.clip`) and DINOv2
(`jaxbgs.models.dinov2`, the swap the paper reports in Table 8).

A pre-LN ViT without a class token: patch conv with bias, learned positions, CLIP's encoder layer
(q/k/v/out projections with bias) with a tanh-approximated GELU MLP, and `post_layernorm` on every
token (transformers' `last_hidden_state`, unlike CLIP's pooled-only norm). The optional
attention-pooling head (`vision_use_head`; big_vision's MAPHead) lets one learned probe attend
over the tokens and gives `pooler_output`.

Inputs are (B, H, W, C) images or (B, T, H, W, C) clips (B*T images; `embedding` is the mean over
frames), as for DINOv2. At the configured image_size, trailing pixels that fill no patch are
ignored as by transformers' `padding="valid"` conv (so400m: 384 px at patch 14); at any other
size they are an error, as in the other families.
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
from jaxbgs.models.clip import Attention
from jaxbgs.models.dinov2 import resample_positions
from jaxbgs.models.layers import BackboneConfig, Output

SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


@dataclasses.dataclass(frozen=True)
class Config(BackboneConfig):
    """Defaults are `SiglipVisionConfig()` (= base-patch16-224). `pool="map"` makes the embedding
    the attention-pooling head's output (transformers' pooler_output); `"mean"` the mean
    post-normalised token (the only choice without a head). `interpolate_pos_encoding` is
    transformers' flag: resample the position table bicubically for other input sizes."""

    # Released variants: the vision towers of google/siglip-base-patch16-224, google/siglip-large-patch16-384
    # and google/siglip-so400m-patch14-384 (the shape-optimised ViT of Alabdulmohsin et al. 2023).
    VARIANT_FIELDS = (*layers.WIDTH_DEPTH_HEADS, "intermediate_size", "patch_size", "image_size")
    VARIANTS = {
        "base_p16_224": (768, 12, 12, 3072, 16, 224),
        "large_p16_384": (1024, 24, 16, 4096, 16, 384),
        "so400m_p14_384": (1152, 27, 16, 4304, 14, 384),
    }

    pool: str = "map"
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 16
    hidden_act: str = "gelu_pytorch_tanh"
    layer_norm_eps: float = 1e-6
    vision_use_head: bool = True
    interpolate_pos_encoding: bool = False

    def __post_init__(self):
        if self.pool == "map":
            if not self.vision_use_head:
                raise InputError(
                    "pool='map' needs the attention-pooling head", where="Config.pool", fix="use pool='mean'"
                )
            self.replace(pool="mean")  # runs every other check; BackboneConfig knows only cls/mean pools
            return
        if self.pool != "mean":
            fix = "use pool='map' (the pooling head) or 'mean'"
            raise InputError(f"pool={self.pool!r}: SigLIP has no CLS token", where="Config.pool", fix=fix)
        super().__post_init__()
        layers.activation(self.hidden_act)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class Embeddings(nnx.Module):
    """`SiglipVisionEmbeddings`: patch conv with bias plus learned positions, no class token."""

    def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.cfg = cfg
        self.patch_embedding = layers.PatchEmbed(
            cfg.num_channels, d, patch=cfg.patch_size, use_bias=True, dtype=cfg.compute_dtype, rngs=rngs
        )
        init = nnx.initializers.normal(d**-0.5)
        self.position_embedding = nnx.Param(init(rngs.params(), (cfg.num_patches, d)))

    def positions(self, height: int, width: int, dtype):
        """The (N, D) table, resampled like transformers' `interpolate_pos_encoding` when needed."""
        table = self.position_embedding[...]
        rows, cols = height // self.cfg.patch_size, width // self.cfg.patch_size
        if rows * cols == table.shape[0] and height == width:
            return table.astype(dtype)
        g = math.isqrt(table.shape[0])
        return resample_positions(table.reshape(g, g, -1), rows, cols).reshape(rows * cols, -1).astype(dtype)

    def __call__(self, pixels):
        cfg = self.cfg
        b, t, h, w, _ = pixels.shape
        if not cfg.interpolate_pos_encoding and (h, w) != (cfg.image_size, cfg.image_size):
            raise InputError(
                f"images are {h}x{w}, the model takes {cfg.image_size}x{cfg.image_size}",
                where="input",
                fix="resize the images, or set interpolate_pos_encoding=True to resample positions",
            )
        if (h, w) == (cfg.image_size, cfg.image_size):
            # transformers' conv has padding="valid": so400m-patch14-384 reads 378 of its 384 px
            p = cfg.patch_size
            pixels = pixels[:, :, : h // p * p, : w // p * p]
        x = self.patch_embedding(pixels)
        x = x.reshape(b * t, -1, x.shape[-1])
        return x + self.positions(h, w, x.dtype)


class EncoderLayer(nnx.Module):
    """`SiglipEncoderLayer` (CLIP's layer): LN -> attention -> residual, LN -> MLP -> residual."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, dt = cfg.hidden_size, cfg.compute_dtype
        act = cfg.hidden_act
        self.layer_norm1 = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.self_attn = Attention(cfg, lora=lora, rngs=rngs)
        self.layer_norm2 = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.mlp = layers.Mlp(d, cfg.intermediate_size, act=act, lora=lora, dtype=dt, rngs=rngs)

    def __call__(self, x, *, output_attentions=False):
        a, weights = self.self_attn(self.layer_norm1(x), output_attentions=output_attentions)
        x = x + a
        return x + self.mlp(self.layer_norm2(x)), weights


class ProbeAttention(nnx.Module):
    """torch `nn.MultiheadAttention` for one query: the packed in-projection (q, k, v blocks, as
    `in_proj_weight` stores them, here transposed to (D, 3D)) and `out_proj`."""

    def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.in_proj_kernel = nnx.Param(
            nnx.initializers.xavier_uniform()(rngs.params(), (d, 3 * d)), axes=("embed", None)
        )
        self.in_proj_bias = nnx.Param(jnp.zeros((3 * d,)), axes=(None,))
        self.out_proj = Dense(d, d, dtype=cfg.compute_dtype, rngs=rngs)
        self.heads, self.impl, self.dtype = cfg.num_attention_heads, cfg.attention, cfg.compute_dtype

    def __call__(self, query, x):
        (b, m, d), n = query.shape, x.shape[1]
        w, bias = self.in_proj_kernel[...].astype(self.dtype), self.in_proj_bias[...].astype(self.dtype)
        q = query.astype(self.dtype) @ w[:, :d] + bias[:d]
        k = x @ w[:, d : 2 * d] + bias[d : 2 * d]
        v = x @ w[:, 2 * d :] + bias[2 * d :]
        q, k, v = (
            q.reshape(b, m, self.heads, -1),
            k.reshape(b, n, self.heads, -1),
            v.reshape(b, n, self.heads, -1),
        )
        out, _ = layers.attention(q, k, v, implementation=self.impl)
        return self.out_proj(out.reshape(b, m, d))


class PoolingHead(nnx.Module):
    """`SiglipMultiheadAttentionPoolingHead`: probe attends over the tokens, then a residual
    LN -> MLP; part of the pretrained tower, so never LoRA-adapted."""

    def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.probe = nnx.Param(nnx.initializers.xavier_uniform()(rngs.params(), (1, 1, d)))
        self.attention = ProbeAttention(cfg, rngs=rngs)
        self.layernorm = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.mlp = layers.Mlp(d, cfg.intermediate_size, act=cfg.hidden_act, dtype=dt, rngs=rngs)

    def __call__(self, x):
        probe = jnp.broadcast_to(self.probe[...].astype(x.dtype), (x.shape[0], 1, x.shape[-1]))
        h = self.attention(probe, x)
        return (h + self.mlp(self.layernorm(h)))[:, 0]


class Model(nnx.Module):
    """SigLIP vision tower on (B, H, W, C) images or (B, T, H, W, C) clips scaled to [-1, 1].

    `tokens` is transformers' `last_hidden_state` (after `post_layernorm`); `hidden_states` the
    embedding output and each layer's raw output (depth + 1 entries); `embedding` the pooling
    head's output (`pooler_output`) or the mean token, per `pool`, averaged over frames.
    """

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None = None, rngs: nnx.Rngs):
        self.cfg, self.lora = cfg, lora
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.embeddings = Embeddings(cfg, rngs=rngs)
        self.layers = layers.Stack(
            lambda r: EncoderLayer(cfg, lora=lora, rngs=r), cfg.num_hidden_layers, rngs=rngs
        )
        self.post_layernorm = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        # transformers calls it `head`; here `head` is the trainable projection every family has.
        self.map_head = PoolingHead(cfg, rngs=rngs) if cfg.vision_use_head else None
        self.head = layers.make_head(cfg, d, rngs=rngs)

    def __call__(self, pixels, *, output_attentions: bool = False) -> Output:
        cfg = self.cfg
        clips = layers.as_clips(pixels)
        b, t = clips.shape[:2]
        x = self.embeddings(clips)
        x, hidden, attns = layers.run_blocks(self.layers, x, cfg, output_attentions=output_attentions)
        tokens = self.post_layernorm(x)
        frame_emb = self.map_head(tokens) if cfg.pool == "map" else tokens.mean(axis=1)
        emb = frame_emb.reshape(b, t, -1).mean(axis=1)
        if self.head is not None:
            emb = self.head(emb)
        return Output(embedding=emb, tokens=tokens, hidden_states=hidden, attentions=attns)


def preprocess(images, *, size: int = 224):
    """uint8 (H, W, 3) image or (T, H, W, 3) frames -> float32 of the same rank: the whole frame
    resized to size x size (as `SiglipImageProcessor`, no crop), /255, mean/std 0.5 (so [-1, 1]).

    Antialiased bilinear instead of the processor's bicubic, as for the other families."""
    from jaxbgs.models import preprocess as pp

    frames = np.asarray(images)[None] if np.ndim(images) == 3 else images
    out = pp.normalize(pp.resize(frames, size, size), SIGLIP_MEAN, SIGLIP_STD)
    return out[0] if np.ndim(images) == 3 else out
