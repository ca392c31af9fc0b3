"""Repeated blocks as one module with stacked parameters, and per-layer views of them.

A depth-L encoder holds its blocks as a `Stack`: one block whose parameters carry a leading layer
axis (logical name `AXIS`, replicated by `jaxbgs.sharding`), which `jaxbgs.models.layers.run_blocks`
applies with one `jax.lax.scan`, so the compiled program holds one block body instead of L copies.

PyTorch checkpoints, PEFT adapters and jaxbgs' first checkpoint format name layers one at a time
(`blocks.3.attn.qkv.kernel`). `flat` lists a model's variables under those per-layer paths, each
stacked variable once per layer, so converters, exports and old checkpoints address a stacked model
exactly as they addressed a list of blocks; only the arrays in memory (and FORMAT 2 files) are stacked.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

AXIS = "layers"  # logical name of the leading axis of stacked parameters
LAYER = "layer"  # the attribute of a `Stack` that holds the stacked block


def _stack_axes(var: nnx.Variable) -> None:
    axes = var.get_metadata().get("axes")
    if axes is not None:
        var.set_metadata(axes=(AXIS, *axes))


class Stack(nnx.Module):
    """`depth` blocks made by `make(rngs)`, held as one block (`layer`) with stacked parameters.

    The blocks are built one after another from the same `rngs`, so parameters start exactly as a
    list of them would. RNG streams (LoRA dropout) stay per block position, not per layer: they are
    carried through the layers by `run_blocks`, which advances them once per layer, so each layer
    draws different keys and `nnx.reseed` (scalar keys) keeps working.

    Indexing gives layer i as a block of its own (a copy, for reading: attention rollout).
    """

    def __init__(self, make: Callable[[nnx.Rngs], nnx.Module], depth: int, *, rngs: nnx.Rngs):
        blocks = [make(rngs) for _ in range(depth)]
        params = [nnx.state(b, nnx.Not(nnx.RngState)) for b in blocks]
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *params)
        layer = blocks[0]
        nnx.update(layer, stacked)
        for _, var in nnx.iter_graph(layer):
            if isinstance(var, nnx.Variable) and not isinstance(var, nnx.RngState):
                _stack_axes(var)
        self.depth = depth
        self.layer = layer

    def __len__(self) -> int:
        return self.depth

    def __getitem__(self, i: int) -> nnx.Module:
        if not -self.depth <= i < self.depth:
            raise IndexError(f"layer {i} of {self.depth}")
        graphdef, rng, params = nnx.split(self.layer, nnx.RngState, ...)
        block = nnx.merge(graphdef, rng, jax.tree.map(lambda a: a[i], params), copy=True)
        for _, var in nnx.iter_graph(block):
            axes = var.get_metadata().get("axes") if isinstance(var, nnx.Variable) else None
            if axes and axes[0] == AXIS:
                var.set_metadata(axes=axes[1:])
        return block

    def __iter__(self):
        return (self[i] for i in range(self.depth))


def stacks(model: nnx.Module) -> dict[tuple, Stack]:
    """Graph path -> `Stack` for every stack in `model`."""
    return {tuple(p): m for p, m in nnx.iter_graph(model) if isinstance(m, Stack)}


def locate(path: tuple, found: dict[tuple, Stack]) -> tuple[tuple, tuple] | None:
    """(stack path, path inside one layer) of a path under a stacked block, else None."""
    for root in found:
        n = len(root)
        if path[:n] == root and len(path) > n and path[n] == LAYER:
            return root, tuple(path[n + 1 :])
    return None


def flat(model: nnx.Module, kind=nnx.Param) -> list[tuple[tuple, nnx.Variable, int | None]]:
    """(per-layer path, variable, layer or None) for every variable of `kind`: a stacked variable
    once per layer, at `stack path + (i,) + path in the block`, as a list of blocks was named."""
    found = stacks(model)
    out = []
    for path, var in nnx.to_flat_state(nnx.state(model, kind)):
        hit = locate(tuple(path), found)
        if hit is None:
            out.append((tuple(path), var, None))
        else:
            root, rest = hit
            out += [((*root, i, *rest), var, i) for i in range(found[root].depth)]
    return out
