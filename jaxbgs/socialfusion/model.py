"""SocialFusion (paper §3, Fig. 3): frozen image features -> MLP connector (+ a learned box
embedding on the patches a box touches) -> frozen Llama 3.2 with LoRA on every linear layer, read
out as next-token logits over the option letters, plus a gaze head on the image-token outputs.

The vision encoder is frozen and deterministic, so its penultimate-layer patch features
(`encoder_features`: LLaVA's `hidden_states[-2]`, CLS dropped) are computed once per image and
cached; the trainable part starts from those features. Trainable state: the connector, the box
vector and the gaze head (`TrainableParam`, trained from scratch) and the LLM's adapters
(`LoRAParam`); `nnx.split(model, lora.Trainable, ...)` separates them from the frozen LLM.

Gaze head (our reading of "a linear projection and upscaling", after Gaze-LLE's head): the image
tokens' final hidden states -> Linear(d_llm, C) -> a (grid, grid, C) map -> a 2x2 stride-2 transposed
convolution to one channel at (2 grid)^2 -> bilinear resize (torch `F.interpolate`, align_corners
False) to `heatmap` x `heatmap` logits. With kernel = stride the transposed convolution is a
per-pixel outer product, written as one einsum; the PyTorch twin is `nn.ConvTranspose2d(C, 1, 2, 2)`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from jaxbgs.errors import InputError
from jaxbgs.lora import Dense, LoRAConfig, TrainableParam
from jaxbgs.models import llama
from jaxbgs.socialfusion.gaze import prior_logit, upsample_bilinear


@dataclasses.dataclass(frozen=True)
class Config:
    """Paper defaults: CLIP ViT-L/14-336 features (1024-d, 24x24 patches), connector hidden 4096,
    Llama 3.2 1B with LoRA rank 32 on all linear layers, 64x64 heatmaps."""

    llm: llama.Config = dataclasses.field(default_factory=llama.Config.llama32_1b)
    feature_dim: int = 1024
    grid: int = 24
    connector_hidden: int = 4096
    lora_rank: int = 32
    lora_alpha: float = 64.0
    gaze_channels: int = 256
    heatmap: int = 64

    def __post_init__(self):
        for k in ("feature_dim", "grid", "connector_hidden", "lora_rank", "gaze_channels", "heatmap"):
            if getattr(self, k) < 1:
                raise InputError(f"{k} must be >= 1, got {getattr(self, k)}", where="socialfusion config")

    @property
    def lora(self) -> LoRAConfig:
        return LoRAConfig(rank=self.lora_rank, alpha=self.lora_alpha, targets=("qkv", "out", "mlp"))


@struct.dataclass
class Output:
    logits: jax.Array  # (B, vocab) next-token logits after the last image token
    heatmap: jax.Array  # (B, heatmap, heatmap) gaze logits (sigmoid -> probability)


def box_mask(boxes, valid, grid: int):
    """(B, grid*grid) 1.0 where a patch intersects any valid box; `boxes` (B, K, 4) normalised
    (x1, y1, x2, y2) in the encoder's input square, `valid` (B, K). Patch (i, j) covers
    [j/grid, (j+1)/grid) x [i/grid, (i+1)/grid); a box touching it with positive overlap marks it,
    as does a degenerate (zero-area) box inside it."""
    edges = jnp.arange(grid, dtype=jnp.float32) / grid
    x1, y1, x2, y2 = (boxes[..., k, None] for k in range(4))  # (B, K, 1)
    cols = (x1 < edges + 1.0 / grid) & (x2 >= edges) & (x2 > x1 - 1.0)  # (B, K, grid)
    rows = (y1 < edges + 1.0 / grid) & (y2 >= edges)
    cols = cols & ((x2 > edges) | (x1 == x2))
    rows = rows & ((y2 > edges) | (y1 == y2))
    hit = rows[..., :, None] & cols[..., None, :] & valid[..., None, None].astype(bool)
    return hit.any(axis=1).reshape(boxes.shape[0], grid * grid).astype(jnp.float32)


class Connector(nnx.Module):
    """3-layer MLP d_v -> hidden -> hidden -> d_llm with ReLU (paper §3), trained from scratch."""

    def __init__(self, d_in: int, hidden: int, d_out: int, *, dtype=None, rngs: nnx.Rngs):
        dims = (d_in, hidden, hidden, d_out)
        self.layers = nnx.List(
            [
                Dense(a, b, trainable=True, dtype=dtype, axes=(None, None), rngs=rngs)
                for a, b in zip(dims[:-1], dims[1:], strict=True)
            ]
        )

    def __call__(self, x):
        for k, layer in enumerate(self.layers):
            x = layer(x)
            if k < len(self.layers) - 1:
                x = jax.nn.relu(x)
        return x


class GazeHead(nnx.Module):
    def __init__(self, d_in: int, channels: int, grid: int, out: int, *, dtype=None, rngs: nnx.Rngs):
        self.grid, self.out = grid, out
        self.proj = Dense(d_in, channels, trainable=True, dtype=dtype, axes=(None, None), rngs=rngs)
        bound = 1.0 / np.sqrt(channels * 4)  # torch ConvTranspose2d's default init bound
        key = rngs.params()
        self.up_kernel = TrainableParam(
            jax.random.uniform(key, (2, 2, channels, 1), jnp.float32, -bound, bound)
        )
        # Start at the targets' base rate (a Gaussian blob is ~1% of the map), not at p = 0.5: otherwise
        # the first tens of steps only push every pixel down, through the connector and adapters that
        # the other tasks share (RetinaNet's prior initialisation).
        self.up_bias = TrainableParam(jnp.full((1,), prior_logit(out), jnp.float32))

    def __call__(self, tokens):
        """(B, grid*grid, d) image-token states -> (B, out, out) logits."""
        b, g = tokens.shape[0], self.grid
        x = self.proj(tokens).astype(jnp.float32).reshape(b, g, g, -1)
        y = jnp.einsum("bijc,uvco->biujvo", x, self.up_kernel[...]).reshape(b, 2 * g, 2 * g, -1)
        y = y[..., 0] + self.up_bias[...][0]
        return upsample_bilinear(y, (self.out, self.out))


class SocialFusion(nnx.Module):
    def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, dt = cfg.llm.hidden_size, cfg.llm.compute_dtype
        self.llm = llama.Model(cfg.llm, lora=cfg.lora, rngs=rngs)
        self.connector = Connector(cfg.feature_dim, cfg.connector_hidden, d, dtype=dt, rngs=rngs)
        self.box_embedding = TrainableParam(nnx.initializers.normal(0.02)(rngs.params(), (d,)))
        self.gaze = GazeHead(d, cfg.gaze_channels, cfg.grid, cfg.heatmap, dtype=dt, rngs=rngs)

    def __call__(self, features, tokens, token_mask, boxes, box_valid, prompt=None) -> Output:
        """`features` (B, grid*grid, d_v) frozen patch features; `tokens` the task prompts, left-padded
        (`token_mask` False on padding) so that every sequence ends with its image tokens and the
        answer is the next token: (B, P), one per row, or (T, P) shared, row b reading prompt
        `prompt[b]` (each prompt then runs through the LLM once: `llama.Model.prefixed`); `boxes`
        (B, K, 4) normalised, `box_valid` (B, K)."""
        cfg = self.cfg
        n = cfg.grid * cfg.grid
        if features.ndim != 3 or features.shape[1:] != (n, cfg.feature_dim):
            raise InputError(
                f"features have shape {features.shape}, expected (batch, {n}, {cfg.feature_dim})",
                where="SocialFusion features", fix="encode with the encoder the config was built for",
            )  # fmt: skip
        z = self.connector(jax.lax.stop_gradient(features).astype(cfg.llm.compute_dtype))
        z = z + box_mask(boxes, box_valid, cfg.grid)[..., None].astype(z.dtype) * self.box_embedding[
            ...
        ].astype(z.dtype)
        index = jnp.arange(features.shape[0]) if prompt is None else prompt
        out = self.llm.prefixed(self.llm.embed(tokens), token_mask, index, z.astype(cfg.llm.compute_dtype))
        return Output(logits=out.logits[:, -1].astype(jnp.float32), heatmap=self.gaze(out.hidden))


def encoder_features(encoder, images, *, layer: int = -2, drop_cls: bool = True):
    """LLaVA-style patch features: `hidden_states[layer]` of a frozen image encoder (penultimate by
    default), the CLS token dropped where the encoder has one (CLIP, DINOv2; not SigLIP)."""
    out = encoder(images)
    h = out.hidden_states[layer]
    return h[:, 1:] if drop_cls else h
