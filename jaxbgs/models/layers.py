"""Pieces shared by every backbone: the common config fields, output type, attention, norms, MLP,
projection head, remat policies and the scan over stacked blocks. Each family file composes these
into its own encoder."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx, struct
from jax.ad_checkpoint import checkpoint_name

from jaxbgs.errors import InputError
from jaxbgs.lora import Dense, TrainableParam
from jaxbgs.sharding import constrain
from jaxbgs.stacked import Stack

# Names `attention` gives its inputs (q, k, v) and its output, for `jax.checkpoint` policies.
ATTENTION_INPUTS, ATTENTION_OUT = "attention_inputs", "attention_out"
# cuDNN's fused forward as JAX traces it; its outputs are the attention and the softmax statistics.
CUDNN_FORWARD = ("dot_product_attention_fwd_wrapper", "dot_product_attention_fwd")


def _attention_saveable(prim, *_, **params) -> bool:
    """What attention computes in its forward: the batched matmuls of the XLA path (q k^T, weights v:
    the only dot_generals with batch dimensions in these models; projections have none), cuDNN's
    fused forward, and the named output. The backward then recomputes the linear-cost rest of the
    block (norms, projections, MLP) but no O(N^2) matmul or fused kernel. On the XLA path this keeps
    the (B, heads, N, N) logits per block; cuDNN keeps only its output and (B, heads, N) statistics."""
    if prim.name in CUDNN_FORWARD:
        return True
    if prim.name == "dot_general":
        (_, _), (lhs_batch, rhs_batch) = params["dimension_numbers"]
        return bool(lhs_batch or rhs_batch)
    return False


REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "attention": jax.checkpoint_policies.save_from_both_policies(
        jax.checkpoint_policies.save_only_these_names(ATTENTION_OUT), _attention_saveable
    ),
}
DTYPES = ("float32", "bfloat16", "float16", "float64")
# "auto": cuDNN's fused flash kernel where it runs (an NVIDIA GPU, half-precision compute, a shape it
# supports), XLA's attention elsewhere; "cudnn" insists on it, "xla" never uses it.
ATTENTION = ("auto", "xla", "cudnn")
HALF = ("bfloat16", "float16")
POOLS = ("cls", "mean")
# The first fields of every family's variant table.
WIDTH_DEPTH_HEADS = ("hidden_size", "num_hidden_layers", "num_attention_heads")


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """Run-time options shared by all families (architecture fields live in each subclass).

    `dtype` is the compute dtype (parameters stay float32); `remat` picks a per-block
    `jax.checkpoint` policy (`attention`: recompute all but attention); `scan` runs the stacked
    blocks as one `jax.lax.scan` (False: unrolled, same numbers, compile time growing with depth);
    `attention` picks the `jax.nn.dot_product_attention` kernel (`auto`: cuDNN on a GPU in half
    precision); `pool` picks the clip embedding; `head_dim` adds a trainable linear head.
    """

    dtype: str = "float32"
    remat: str = "none"
    scan: bool = True
    attention: str = "auto"
    pool: str = "mean"
    head_dim: int | None = None
    head_norm: bool = False  # LayerNorm + ReLU after the head's Linear (the authors' TimeSformer head)
    head_dropout: float = 0.0

    # A family's released architectures: name -> values of VARIANT_FIELDS, for `variant(name)`.
    VARIANT_FIELDS: ClassVar[tuple[str, ...]] = ()
    VARIANTS: ClassVar[dict[str, tuple]] = {}

    def __post_init__(self):
        for name, allowed in (
            ("dtype", DTYPES),
            ("remat", tuple(REMAT_POLICIES)),
            ("attention", ATTENTION),
            ("pool", POOLS),
        ):
            if getattr(self, name) not in allowed:
                raise InputError(
                    f"{name}={getattr(self, name)!r} is not supported",
                    where=f"{type(self).__name__}.{name}",
                    fix=f"choose from {list(allowed)}",
                )
        check_attention(self.attention, self.dtype, f"{type(self).__name__}.attention")
        heads = getattr(self, "num_attention_heads", None)
        if heads and self.hidden_size % heads:
            raise InputError(
                f"hidden_size {self.hidden_size} is not divisible by {heads} heads",
                where=f"{type(self).__name__}.num_attention_heads",
            )

    @classmethod
    def variant(cls, name: str, **kw):
        """A released architecture by name, with `kw` overriding any field (e.g. fewer layers)."""
        if name not in cls.VARIANTS:
            raise InputError(
                f"unknown variant {name!r}",
                where=f"{cls.__module__}.Config",
                fix=f"choose from {list(cls.VARIANTS)}",
            )
        return cls(**(dict(zip(cls.VARIANT_FIELDS, cls.VARIANTS[name], strict=True)) | kw))

    @property
    def compute_dtype(self):
        return jnp.dtype(self.dtype)

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise InputError(f"unknown config key(s) {unknown}", where=cls.__name__)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def replace(self, **kw):
        return dataclasses.replace(self, **kw)

    def __str__(self) -> str:
        return json.dumps(self.to_json())


@struct.dataclass
class Output:
    """What every backbone returns.

    `embedding`: the clip embedding used by BGS (pooled, then the head if configured), (B, E).
    `tokens`: final normalised token states (B, N, D).
    `hidden_states`: the embedding output then every block's output, as transformers'
    `output_hidden_states` (depth + 1 entries).
    `attentions`: per block, the softmax weights when requested, else None: (B, heads, N, N), or
    per frame for the families that attend within frames (TimeSformer's spatial attention:
    (B * frames, heads, 1 + P, 1 + P); CLIP: (B * T, heads, N, N)).
    """

    embedding: jax.Array
    tokens: jax.Array
    hidden_states: tuple[jax.Array, ...]
    attentions: tuple[Any, ...] | None = None


def check_attention(attention: str, dtype: str, where: str) -> None:
    """cuDNN's fused kernel computes in bfloat16 or float16 only; say so before anything is traced."""
    if attention == "cudnn" and dtype not in HALF:
        raise InputError(
            f"attention='cudnn' with dtype={dtype!r}: cuDNN's fused attention computes in "
            + " or ".join(HALF),
            where=where, fix="use dtype=bfloat16, or attention=auto (XLA for float32)",
        )  # fmt: skip


def attention_kernel(attention: str, dtype, backend: str | None = None) -> str:
    """The `jax.nn.dot_product_attention` implementation `attention` asks for on `backend`."""
    backend = backend or jax.default_backend()
    if attention == "cudnn" and backend != "gpu":
        raise InputError(
            f"attention='cudnn' needs an NVIDIA GPU; this process runs on {backend}",
            where="attention", fix="use attention=auto (cuDNN where it runs, XLA elsewhere) or xla",
        )  # fmt: skip
    if attention != "auto":
        return attention
    return "cudnn" if backend == "gpu" and jnp.dtype(dtype).name in HALF else "xla"


@dataclasses.dataclass(frozen=True)
class AttentionCall:
    """One traced attention: the query's shape and dtype, the kernel taken and the one asked for."""

    shape: tuple[int, ...]
    dtype: str
    kernel: str
    requested: str


_FORCE_XLA = contextvars.ContextVar("jaxbgs_force_xla", default=False)
_RECORD: contextvars.ContextVar[list | None] = contextvars.ContextVar("jaxbgs_attention_calls", default=None)


@contextlib.contextmanager
def xla_attention():
    """Trace `attention=auto` as XLA's kernel: the fallback when cuDNN fails at compile time, which
    no trace-time check can foresee (`jaxbgs.training.trainer.compile_with_fallback`)."""
    token = _FORCE_XLA.set(True)
    try:
        yield
    finally:
        _FORCE_XLA.reset(token)


@contextlib.contextmanager
def record_attention():
    """Collect an `AttentionCall` for every attention traced inside the block."""
    calls: list[AttentionCall] = []
    token = _RECORD.set(calls)
    try:
        yield calls
    finally:
        _RECORD.reset(token)


def fused_attention(q, k, v, *, implementation: str = "auto", **kw):
    """`jax.nn.dot_product_attention` with `implementation` resolved by `attention_kernel`. Under
    "auto" what cuDNN refuses while tracing (e.g. odd lengths with a mask in training, a bias layout)
    falls back to XLA, so the compiled step holds one kernel or the other; an input error the XLA
    path shares is raised there."""
    kernel = attention_kernel(implementation, q.dtype)
    if implementation == "auto" and _FORCE_XLA.get():
        kernel = "xla"
    q, k, v = (checkpoint_name(t, ATTENTION_INPUTS) for t in (q, k, v))
    out = None
    if kernel == "cudnn" and implementation == "auto":
        try:
            out = jax.nn.dot_product_attention(q, k, v, implementation="cudnn", **kw)
        except (NotImplementedError, ValueError):
            kernel = "xla"
    if out is None:
        out = jax.nn.dot_product_attention(q, k, v, implementation=kernel, **kw)
    if (calls := _RECORD.get()) is not None:
        calls.append(AttentionCall(tuple(q.shape), jnp.dtype(q.dtype).name, kernel, implementation))
    return checkpoint_name(out, ATTENTION_OUT)


def attention(q, k, v, *, bias=None, implementation: str = "auto", return_weights: bool = False):
    """Softmax attention on (B, N, heads, head_dim) inputs, scaled by head_dim**-0.5, with an optional
    additive `bias` broadcast to (B, heads, N, N) (BERT's padding mask).

    With `return_weights` (for rollout) or in float64 (the fused op takes its softmax in float32)
    the weights are formed explicitly; otherwise the fused `jax.nn.dot_product_attention` runs,
    with cuDNN's flash kernel where `implementation` asks for it (see `attention_kernel`).
    """
    if return_weights or q.dtype == jnp.float64:
        q, k, v = (checkpoint_name(t, ATTENTION_INPUTS) for t in (q, k, v))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * jnp.asarray(q.shape[-1] ** -0.5, q.dtype)
        if bias is not None:
            logits = logits + bias
        weights = jax.nn.softmax(logits.astype(jnp.promote_types(q.dtype, jnp.float32)), axis=-1)
        weights = weights.astype(q.dtype)
        out = checkpoint_name(jnp.einsum("bhqk,bkhd->bqhd", weights, v), ATTENTION_OUT)
        return out, (weights if return_weights else None)
    return fused_attention(q, k, v, bias=bias, implementation=implementation), None


def layer_norm(dim: int, eps: float, *, dtype=None, rngs: nnx.Rngs) -> nnx.LayerNorm:
    """LayerNorm with PyTorch's two-pass variance (the fast E[x^2]-E[x]^2 form drifts by ~1e-6)."""
    return nnx.LayerNorm(dim, epsilon=eps, use_fast_variance=False, dtype=dtype, rngs=rngs)


def gelu(x):
    return jax.nn.gelu(x, approximate=False)


def quick_gelu(x):
    return x * jax.nn.sigmoid(1.702 * x)


_tanh_gelu = lambda x: jax.nn.gelu(x, approximate=True)  # noqa: E731
# gelu_new and gelu_pytorch_tanh are transformers' two names for the tanh approximation.
ACTIVATIONS = {
    "gelu": gelu,
    "quick_gelu": quick_gelu,
    "gelu_new": _tanh_gelu,
    "gelu_pytorch_tanh": _tanh_gelu,
}


def as_clips(pixels):
    """(B, H, W, C) images become one-frame clips; (B, T, H, W, C) clips pass through."""
    if pixels.ndim == 4:
        return pixels[:, None]
    if pixels.ndim != 5:
        raise InputError(
            f"pixels have shape {tuple(pixels.shape)}",
            where="input",
            fix="pass (B, H, W, C) images or (B, T, H, W, C) clips, channels last",
        )
    return pixels


def activation(name: str):
    if name not in ACTIVATIONS:
        raise InputError(f"activation {name!r} is not supported", fix=f"choose from {list(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class Mlp(nnx.Module):
    """fc1 -> activation -> fc2, both adapted as the `mlp` LoRA group."""

    def __init__(self, dim, hidden, *, act="gelu", lora=None, dtype=None, rngs: nnx.Rngs):
        self.fc1 = Dense(dim, hidden, group="mlp", lora=lora, dtype=dtype, rngs=rngs)
        self.fc2 = Dense(hidden, dim, group="mlp", lora=lora, dtype=dtype, rngs=rngs)
        self.act = activation(act)

    def __call__(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ProjectionHead(nnx.Module):
    """Trainable head on the pooled embedding: Linear, then optionally LayerNorm, ReLU and dropout
    (the authors' TimeSformer head is Linear(768, 128), LayerNorm, ReLU, Dropout(0.3))."""

    def __init__(self, dim, out, *, norm=False, relu=False, dropout=0.0, rngs: nnx.Rngs):
        self.proj = Dense(dim, out, trainable=True, rngs=rngs)
        if norm:
            self.norm = nnx.LayerNorm(
                out, epsilon=1e-5, use_fast_variance=False, rngs=rngs, scale_init=nnx.initializers.ones
            )
            self.norm.scale = TrainableParam(self.norm.scale[...])
            self.norm.bias = TrainableParam(self.norm.bias[...])
        else:
            self.norm = None
        self.relu = relu
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None

    def __call__(self, x):
        x = self.proj(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.relu:
            x = jax.nn.relu(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return x


def make_head(cfg: BackboneConfig, dim: int, *, rngs: nnx.Rngs) -> ProjectionHead | None:
    if not cfg.head_dim:
        return None
    return ProjectionHead(
        dim, cfg.head_dim, norm=cfg.head_norm, relu=cfg.head_norm, dropout=cfg.head_dropout, rngs=rngs
    )


def run_blocks(
    blocks: Stack, x, cfg, *, output_attentions: bool = False, method: str = "__call__",
    collect: bool = True, **kw,
):  # fmt: skip
    """Apply stacked blocks in order: one `jax.lax.scan` over the layer axis, or (`cfg.scan=False`) a
    Python loop over layer slices, for debugging and the compile-time benchmark; both run the same
    body and agree up to float32 rounding (XLA fuses a loop body and its unrolled copies each its own
    way). Under `cfg.remat` the body is a `jax.checkpoint` with that policy
    (not with `output_attentions`: the maps are for analysis, not training). The blocks' RNG state
    (dropout streams) is carried from layer to layer, so each layer draws its own keys.

    `x` may be a pytree (`llama.Model.prefixed`: prefixes and rows); `method` names the block's
    method, called as `method(x, **kw)` -> (x, attention weights or None). Returns (x, hidden states:
    the input then every block's output, or None without `collect`, per-block attentions or None).
    """
    graphdef, rng, params = nnx.split(blocks.layer, nnx.RngState, ...)
    extra = {"output_attentions": True} if output_attentions else {}

    def body(carry, layer_params):
        h, rng = carry
        block = nnx.merge(graphdef, rng, layer_params)
        y, weights = getattr(block, method)(h, **extra, **kw)
        y = jax.tree.map(lambda v: constrain(v, ("batch",) + (None,) * (v.ndim - 1)), y)
        return (y, nnx.state(block, nnx.RngState)), (y if collect else None, weights)

    if cfg.remat != "none" and not output_attentions:
        body = jax.checkpoint(body, policy=REMAT_POLICIES[cfg.remat], prevent_cse=not cfg.scan)
    if cfg.scan:
        (y, rng), ys = jax.lax.scan(body, (x, rng), params)
        per_layer = [jax.tree.map(lambda v, i=i: v[i], ys) for i in range(blocks.depth)]
    else:
        y, per_layer = x, []
        for i in range(blocks.depth):
            (y, rng), out = body((y, rng), jax.tree.map(lambda v, i=i: v[i], params))
            per_layer.append(out)
    nnx.update(blocks.layer, rng)
    hidden = (x, *(o[0] for o in per_layer)) if collect else None
    return y, hidden, (tuple(o[1] for o in per_layer) if output_attentions else None)


def pool_tokens(tokens, pool: str, *, has_cls: bool):
    if pool == "cls":
        if not has_cls:
            raise InputError("this backbone has no CLS token", where="pool", fix="use pool='mean'")
        return tokens[:, 0]
    return tokens[:, 1:].mean(axis=1) if has_cls else tokens.mean(axis=1)


def check_multiple(name: str, value: int, multiple: int, what: str):
    if value % multiple or value <= 0:
        raise InputError(
            f"{name} {value} is not a positive multiple of {multiple}",
            where="input",
            fix=f"resize or sample the clip so that {what}",
        )


class PatchEmbed(nnx.Module):
    """A strided Conv2d/Conv3d patch embedding computed as one matmul over flattened patches.

    `kernel` keeps PyTorch's spatial layout moved channels-last: (kt, ph, pw, C, D) for a tubelet
    conv, (ph, pw, C, D) for a per-frame conv. Input (B, T, H, W, C) gives a (B, T/kt, H/ph, W/pw, D)
    grid; trailing frames or pixels that do not fill a patch are rejected, not dropped.
    """

    def __init__(self, channels, dim, *, patch, tubelet=None, use_bias=True, dtype=None, rngs: nnx.Rngs):
        self.patch, self.tubelet = patch, tubelet
        shape = ((tubelet,) if tubelet else ()) + (patch, patch, channels, dim)
        names = (None,) * (len(shape) - 1) + ("embed",)
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), shape), axes=names)
        self.bias = nnx.Param(jnp.zeros((dim,)), axes=("embed",)) if use_bias else None
        self.dtype = dtype

    def __call__(self, x):
        b, t, h, w, c = x.shape
        kt, p = self.tubelet or 1, self.patch
        check_multiple("frame count", t, kt, f"it is a multiple of the tubelet size {kt}")
        check_multiple("height", h, p, f"height and width are multiples of the patch size {p}")
        check_multiple("width", w, p, f"height and width are multiples of the patch size {p}")
        dtype = self.dtype or x.dtype
        x = x.reshape(b, t // kt, kt, h // p, p, w // p, p, c).transpose(0, 1, 3, 5, 2, 4, 6, 7)
        x = x.reshape(b, t // kt, h // p, w // p, kt * p * p * c).astype(dtype)
        y = x @ self.kernel[...].reshape(-1, self.kernel.shape[-1]).astype(dtype)
        return y + self.bias[...].astype(dtype) if self.bias is not None else y
