"""LoRA (Hu et al. 2021) as a linear layer with its own variable type, as PEFT applies it.

The BGS paper fine-tunes every backbone with low-rank adapters on a frozen base. Trainable state is
a type filter: adapters are `LoRAParam`, other trainable weights (projection heads) are
`TrainableParam`, frozen base weights stay plain `nnx.Param`, so `nnx.split(model, Trainable, ...)`
separates what the optimiser sees. The adapter output is `dropout(x) @ A @ B * alpha / rank` with A
initialised like PEFT (Kaiming-uniform, a=sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in))) and B zero, so
a fresh adapter leaves the model unchanged.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxbgs import stacked
from jaxbgs.errors import InputError

# Groups of linear layers an adapter may target; each model tags its layers with one of these.
GROUPS = ("qkv", "out", "mlp", "temporal_dense")


class TrainableParam(nnx.Param):
    """A parameter the optimiser updates (projection heads, adapters)."""


class LoRAParam(TrainableParam):
    """A low-rank adapter factor."""


Trainable = TrainableParam  # the filter for `nnx.split(model, Trainable, ...)`


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    """Adapter hyper-parameters; the paper's default is rank 8, alpha 16 on attention projections."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ("qkv", "out")

    def __post_init__(self):
        if self.rank < 1:
            raise InputError(f"LoRA rank must be >= 1, got {self.rank}", where="lora.rank")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"LoRA dropout must be in [0, 1), got {self.dropout}", where="lora.dropout")
        unknown = sorted(set(self.targets) - set(GROUPS))
        if unknown:
            raise InputError(
                f"unknown LoRA target(s) {unknown}", where="lora.targets", fix=f"choose from {list(GROUPS)}"
            )
        object.__setattr__(self, "targets", tuple(self.targets))

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_json(cls, d: dict | None) -> LoRAConfig | None:
        return None if d is None else cls(**{**d, "targets": tuple(d["targets"])})


def peft_uniform_init(key, shape, dtype=jnp.float32):
    """PEFT's `kaiming_uniform_(a=sqrt(5))` on an (r, in) weight, stored here transposed as (in, r)."""
    bound = 1.0 / math.sqrt(shape[0])
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def default_axes(group: str | None, d_in: int, d_out: int) -> tuple[str | None, str | None]:
    """Logical names of a (d_in, d_out) kernel: Megatron's column/row split, by role."""
    if group == "qkv":
        return ("embed", "heads")
    if group in ("out", "temporal_dense"):
        return ("heads", "embed")
    if group == "mlp":
        return ("embed", "mlp") if d_out >= d_in else ("mlp", "embed")
    return ("embed", None)  # heads, poolers, projections: small, replicated across `tensor`


class Dense(nnx.Module):
    """`y = x @ kernel + bias`, plus a LoRA branch when the layer's group is targeted.

    Kernels are (in, out): a PyTorch Linear weight transposed. Compute happens in `dtype` (None keeps
    the input dtype) while parameters stay in their stored dtype. `axes` names the kernel's
    dimensions for `jaxbgs.sharding` (default from the group: projections into heads or the MLP are
    ("embed", "heads"/"mlp"), projections back are the reverse).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        group: str | None = None,
        lora: LoRAConfig | None = None,
        trainable: bool = False,
        dtype=None,
        axes: tuple[str | None, str | None] | None = None,
        rngs: nnx.Rngs,
    ):
        kind = TrainableParam if trainable else nnx.Param
        a_in, a_out = axes or default_axes(group, in_features, out_features)
        init = nnx.initializers.lecun_normal()(rngs.params(), (in_features, out_features))
        self.kernel = kind(init, axes=(a_in, a_out))
        self.bias = kind(jnp.zeros((out_features,)), axes=(a_out,)) if use_bias else None
        self.dtype = dtype
        self.merged = False
        self.scale = 0.0
        if lora is not None and group in lora.targets:
            self.lora_a = LoRAParam(
                peft_uniform_init(rngs.params(), (in_features, lora.rank)), axes=(a_in, "lora")
            )
            self.lora_b = LoRAParam(jnp.zeros((lora.rank, out_features)), axes=("lora", a_out))
            self.scale = lora.scale
            self.lora_dropout = nnx.Dropout(lora.dropout, rngs=rngs) if lora.dropout > 0 else None
        else:
            self.lora_a = self.lora_b = self.lora_dropout = None

    @property
    def has_lora(self) -> bool:
        return self.lora_a is not None

    def __call__(self, x):
        dtype = self.dtype or x.dtype
        x = x.astype(dtype)
        y = x @ self.kernel[...].astype(dtype)
        if self.bias is not None:
            y = y + self.bias[...].astype(dtype)
        if self.has_lora and not self.merged:
            h = self.lora_dropout(x) if self.lora_dropout is not None else x
            y = y + (h @ self.lora_a[...].astype(dtype)) @ self.lora_b[...].astype(dtype) * self.scale
        return y

    def delta(self):
        """A @ B * scale: (in, out), or (L, in, out) for stacked layers ((L, in, r) @ (L, r, out))."""
        return self.lora_a[...] @ self.lora_b[...] * self.scale

    def merge(self):
        if self.has_lora and not self.merged:
            self.kernel[...] = self.kernel[...] + self.delta()
            self.merged = True

    def unmerge(self):
        if self.has_lora and self.merged:
            self.kernel[...] = self.kernel[...] - self.delta()
            self.merged = False


class _Rows:
    """Layer `index` of a stacked variable: `[...]` reads and writes that layer only."""

    def __init__(self, var: nnx.Variable, index: int):
        self.var, self.index = var, index

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.var.shape[1:])

    @property
    def dtype(self):
        return self.var.dtype

    def __getitem__(self, idx):
        return self.var[...][self.index][idx]

    def __setitem__(self, idx, value):
        idx = (self.index, *(idx if isinstance(idx, tuple) else (idx,)))
        whole = jnp.asarray(self.var[...])
        self.var[...] = whole.at[idx].set(jnp.asarray(value, whole.dtype))


class LayerView:
    """One layer of a `Dense` whose parameters are stacked over layers (`jaxbgs.stacked.Stack`),
    with the attributes of a `Dense` that PEFT export and per-layer edits use."""

    def __init__(self, dense: Dense, index: int):
        self.dense, self.index = dense, index
        self.kernel, self.lora_a, self.lora_b = (
            _Rows(v, index) for v in (dense.kernel, dense.lora_a, dense.lora_b)
        )
        self.bias = _Rows(dense.bias, index) if dense.bias is not None else None
        self.scale, self.merged, self.has_lora = dense.scale, dense.merged, dense.has_lora

    def delta(self):
        return self.lora_a[...] @ self.lora_b[...] * self.scale


def adapters(model: nnx.Module) -> list[tuple[tuple, Dense | LayerView]]:
    """(graph path, layer) of every adapted linear layer, in model order. A stacked `Dense` counts
    once per layer, at the path a list of blocks would give it (`blocks.3.attn.qkv`), as a
    `LayerView`: PEFT names and tools address adapters one layer at a time."""
    found = stacked.stacks(model)
    out, per_stack = [], {}
    for path, m in nnx.iter_graph(model):
        if isinstance(m, Dense) and m.has_lora:
            hit = stacked.locate(tuple(path), found)
            if hit is None:
                out.append((tuple(path), m))
            else:
                per_stack.setdefault(hit[0], []).append((hit[1], m))
    for root, layers in per_stack.items():
        for i in range(found[root].depth):
            out += [((*root, i, *rest), LayerView(m, i)) for rest, m in layers]
    return out


def _dense_layers(model: nnx.Module) -> list[Dense]:
    """Every adapted `Dense` once (a stacked one merges all its layers at once)."""
    return [m for _, m in nnx.iter_graph(model) if isinstance(m, Dense) and m.has_lora]


def merge(model: nnx.Module) -> nnx.Module:
    """Fold every adapter into its base kernel in place (outputs unchanged up to rounding)."""
    for layer in _dense_layers(model):
        layer.merge()
    return model


def unmerge(model: nnx.Module) -> nnx.Module:
    """Undo `merge`, restoring the separate base and adapter weights."""
    for layer in _dense_layers(model):
        layer.unmerge()
    return model


def adapter_paths(model: nnx.Module) -> list[tuple]:
    """Graph paths of the adapted layers, one per layer (see `adapters`), in model order."""
    return [path for path, _ in adapters(model)]


@dataclasses.dataclass(frozen=True)
class Summary:
    total: int
    trainable: int
    lora: int
    adapted_layers: int

    @property
    def fraction(self) -> float:
        return self.trainable / self.total

    def __str__(self) -> str:
        return (
            f"parameters: {self.total:,} total, {self.trainable:,} trainable "
            f"({100 * self.fraction:.3f}%: {self.lora:,} in {self.adapted_layers} LoRA adapters, "
            f"{self.trainable - self.lora:,} in heads), {self.total - self.trainable:,} frozen"
        )


def summary(model: nnx.Module) -> Summary:
    """Counts of total, trainable and adapter parameters."""

    def count(f):
        return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, f)))

    return Summary(
        total=count(nnx.Param),
        trainable=count(TrainableParam),
        lora=count(LoRAParam),
        adapted_layers=len(adapter_paths(model)),
    )
