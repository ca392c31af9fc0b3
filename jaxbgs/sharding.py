"""SPMD over accelerators with `jax.sharding`: one mesh, one rules table, jit with explicit shardings.

Users train on one GPU, a node of eight or several hosts with the same code. The mesh has three
axes: `data` (batch only), `fsdp` (batch, and the frozen base weights split along their model width)
and `tensor` (attention heads and MLP width). Parameters carry logical axis names as metadata
(`axes`, set by `jaxbgs.lora.Dense` and the patch embedding); activations are constrained at block
boundaries with `constrain`. `RULES` maps logical names to mesh axes; a dimension a mesh axis does
not divide, or an axis already used by the same array, stays replicated, so any config runs on any
mesh and only its speed changes.
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxbgs.errors import InputError

AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axes (a tuple shards over their product). Activations: "batch"; weights: the
# rest. LoRA rank stays whole: adapters are tiny and their optimiser state follows them. "layers",
# the leading axis of stacked blocks (`jaxbgs.stacked`), stays whole: the scan reads one layer per
# step, and the layer's own dimensions are sharded as an unstacked layer's would be.
RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("lora", None),
    ("layers", None),
)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Mesh axis sizes; -1 takes the devices the other axes leave (at most one -1)."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1

    def shape(self, n_devices: int) -> tuple[int, int, int]:
        sizes = [self.data, self.fsdp, self.tensor]
        if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
            raise InputError(
                f"mesh {dict(zip(AXES, sizes, strict=True))} is invalid",
                where="mesh",
                fix="give positive sizes, at most one of them -1 (the rest of the devices)",
            )
        known = math.prod(s for s in sizes if s != -1)
        if -1 in sizes:
            if n_devices % known:
                raise InputError(
                    f"{n_devices} devices do not split into a mesh with fixed axes of product {known}",
                    where="mesh",
                )
            sizes[sizes.index(-1)] = n_devices // known
        if math.prod(sizes) != n_devices:
            raise InputError(
                f"mesh {dict(zip(AXES, sizes, strict=True))} needs {math.prod(sizes)} devices, "
                f"there are {n_devices}",
                where="mesh",
                fix="make mesh.data * mesh.fsdp * mesh.tensor equal the device count (or use -1)",
            )
        return tuple(sizes)


def make_mesh(cfg: MeshConfig = MeshConfig(), devices=None) -> Mesh:
    """All (global) devices by default; `jax.make_mesh` orders them so that each host's devices are
    contiguous, which makes every process's batch rows one block."""
    devices = jax.devices() if devices is None else list(devices)
    shape = cfg.shape(len(devices))
    return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def spec(names, shape, axis_sizes: dict[str, int], rules=RULES) -> PartitionSpec:
    """PartitionSpec for logical `names` (one per dimension, None = replicated) of an array `shape`."""
    table = dict(rules)
    used: set[str] = set()
    out = []
    for name, dim in zip(names, shape, strict=True):
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        axes = tuple(a for a in axes if a in axis_sizes and axis_sizes[a] > 1 and a not in used)
        if not axes or dim % math.prod(axis_sizes[a] for a in axes):
            out.append(None)
            continue
        used.update(axes)
        out.append(axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*out)


def _sizes(mesh) -> dict[str, int]:
    return dict(zip(mesh.axis_names, mesh.axis_sizes, strict=True))


def logical_sharding(names, shape, mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, spec(names, shape, _sizes(mesh)))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def _is_var(x) -> bool:
    return isinstance(x, nnx.Variable)


def state_shardings(state, mesh: Mesh):
    """A sharding per variable of an `nnx.State`, from its `axes` metadata (none: replicated)."""

    def one(v):
        if not _is_var(v):
            return replicated(mesh)
        axes = v.get_metadata().get("axes")
        value = v.get_value()
        if axes is None or not hasattr(value, "shape"):
            return replicated(mesh)
        return logical_sharding(axes, value.shape, mesh)

    return jax.tree.map(one, state, is_leaf=_is_var)


def optimizer_shardings(opt_state, params, param_shardings, mesh: Mesh):
    """Optimiser moments shard like the parameters they follow (any subtree shaped like `params`);
    counters and hyper-parameters are replicated."""
    ref = jax.tree.structure(params)

    def like_params(x):
        return isinstance(x, nnx.State) and jax.tree.structure(x) == ref

    return jax.tree.map(
        lambda x: param_shardings if like_params(x) else replicated(mesh), opt_state, is_leaf=like_params
    )


def batch_sharding(shape, mesh: Mesh) -> NamedSharding:
    """Leading dimension over the batch axes when they divide it, else replicated."""
    return logical_sharding(("batch",) + (None,) * (len(shape) - 1), shape, mesh)


def constrain(x, names):
    """`with_sharding_constraint` by logical names under the mesh set by `jax.set_mesh`; a no-op
    without one (single-device code paths and the converters)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    return jax.lax.with_sharding_constraint(x, spec(names, x.shape, _sizes(mesh)))


def local_rows(sharding: NamedSharding, shape) -> slice:
    """The block of leading-dimension rows this process holds (what its input pipeline reads)."""
    n = shape[0]
    ranges = sorted({(idx[0] if idx else slice(None)).indices(n)[:2]
                     for idx in sharding.addressable_devices_indices_map(tuple(shape)).values()})  # fmt: skip
    hi = ranges[0][0]
    for a, b in ranges:
        if a > hi:
            raise RuntimeError(
                f"this process's rows of a {shape} batch are not one block; use sharding.make_mesh"
            )
        hi = max(hi, b)
    return slice(ranges[0][0], hi)


def local_batch(batch: dict, mesh: Mesh, sources: dict | None = None) -> dict:
    """This process's rows of every entry: {key: (global shape, local array)}. An entry named in
    `sources` holds ids into that array (the uint8 clip cache), and only the local ids are read, so
    each host reads its own shard. Pure numpy: runs in the input pipeline's threads."""
    out = {}
    for k, v in batch.items():
        v = np.asarray(v)
        src = (sources or {}).get(k)
        shape = (len(v), *src.shape[1:]) if src is not None else v.shape
        rows = local_rows(batch_sharding(shape, mesh), shape) if shape else slice(None)
        out[k] = (shape, src[v[rows]] if src is not None else v[rows])
    return out


def global_batch(local: dict, mesh: Mesh) -> dict:
    """{key: (global shape, local rows)} -> global `jax.Array`s, leading dimension over the batch axes."""
    return {
        k: jax.make_array_from_process_local_data(batch_sharding(shape, mesh), arr, shape)
        for k, (shape, arr) in local.items()
    }


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:  # fmt: skip
    """`jax.distributed.initialize` when this is one of several processes: from the arguments, else
    JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, else the cluster JAX detects
    (SLURM, Open MPI, TPU pods). A lone process with none of these is left alone."""
    env = os.environ
    coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and "JAX_NUM_PROCESSES" in env:
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and "JAX_PROCESS_ID" in env:
        process_id = int(env["JAX_PROCESS_ID"])
    cluster = (
        any(k in env for k in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"))
        and int(env.get("SLURM_NTASKS", env.get("OMPI_COMM_WORLD_SIZE", "1"))) > 1
    )
    if coordinator is None and not cluster:
        return
    if jax.distributed.is_initialized():
        return
    jax.distributed.initialize(coordinator, num_processes, process_id)


def is_main_process() -> bool:
    return jax.process_index() == 0


def main_print(*args, **kw) -> None:
    """`print` on process 0 only: every host runs the same program and one voice is enough."""
    if is_main_process():
        print(*args, **kw)


def to_host(tree):
    """Numpy copies of (possibly cross-host sharded) arrays, on every process."""
    from jax.experimental import multihost_utils

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)
