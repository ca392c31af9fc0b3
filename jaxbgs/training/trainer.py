"""The sharded update both papers train with: split the trainable state from the frozen rest once,
place both on a mesh by `jaxbgs.sharding`'s rules, and compile one pure step per static variant
(`jax.value_and_grad`, `jax.jit` with explicit in/out shardings, the trainable state, the optimiser
state and the step counter donated).

Nothing in a step waits on the host: the dropout key is folded from the seed and the step counter
inside the compiled step (the counter lives on the device and comes back incremented), the metrics
(learning rate included) come back as device arrays for the loop to fetch when it chooses, and
scalars that change per epoch are placed once by the caller.
"""

from __future__ import annotations

import abc
import functools
from typing import NamedTuple

import jax
import numpy as np
import optax
from flax import nnx

from jaxbgs import sharding
from jaxbgs.errors import InputError
from jaxbgs.lora import Trainable
from jaxbgs.models import layers


def make_optimizer(
    lr: float, weight_decay: float, *, schedule: str = "constant", warmup_steps: int = 0, total_steps: int = 0
) -> optax.GradientTransformation:
    """AdamW with the learning rate kept in the optimizer state, so a plateau schedule resumes exactly
    (and a step-indexed schedule too: its count is part of the state)."""
    if schedule == "constant":
        return optax.inject_hyperparams(optax.adamw)(learning_rate=lr, weight_decay=weight_decay)
    if schedule != "cosine":
        raise InputError(
            f"unknown lr schedule {schedule!r}", where="lr_schedule", fix="use constant or cosine"
        )
    total = max(total_steps, warmup_steps + 1)
    fn = optax.warmup_cosine_decay_schedule(0.0 if warmup_steps else lr, lr, warmup_steps, total)
    return optax.inject_hyperparams(optax.adamw)(learning_rate=fn, weight_decay=weight_decay)


class StepOut(NamedTuple):
    """What one update returns, all on the device: the new states, the metrics and the next step."""

    trainable: nnx.State
    opt_state: optax.OptState
    metrics: dict
    step: jax.Array


def learning_rate(opt_state):
    """The rate the last update used, where the optimiser keeps it (`inject_hyperparams`)."""
    hyper = getattr(opt_state, "hyperparams", None)
    return None if hyper is None else hyper.get("learning_rate")


def compile_with_fallback(make_jitted, args, *, log=print):
    """Lower and compile `make_jitted()` on `args`. Where cuDNN's attention, chosen by
    `attention=auto`, fails to compile (a shape or version it lacks: a refusal JAX cannot see while
    tracing), say so in one line naming the shape and compile again with XLA's attention.
    `make_jitted` must return a jit of a fresh callable each time, so the retrace misses the cache."""
    with layers.record_attention() as seen:
        lowered = make_jitted().lower(*args)
    try:
        return lowered.compile()
    except Exception as e:  # noqa: BLE001 - XLA raises runtime errors of several types
        auto = [s for s in seen if s.kernel == "cudnn" and s.requested == "auto"]
        if not auto or "cudnn" not in str(e).lower():
            raise
        shapes = ", ".join(sorted({f"{s.shape} {s.dtype}" for s in auto}))
        log(
            f"attention: cuDNN failed to compile q {shapes} ({str(e).splitlines()[0][:160]}); "
            "this step uses XLA's attention"
        )
    with layers.xla_attention():
        return make_jitted().lower(*args).compile()


class ShardedTrainer(abc.ABC):
    """The model-independent half of a trainer. Subclasses define `loss(trainable, rest, batch, key,
    *scalars, static) -> (total, parts)`; BGS and SocialFusion both train through this, on one
    device, a node or several hosts."""

    def __init__(self, model: nnx.Module, optimizer, *, mesh=None, seed: int = 0):
        self.mesh = mesh if mesh is not None else sharding.make_mesh()
        self.seed = int(seed)
        self.graphdef, trainable, rest = nnx.split(model, Trainable, ...)
        self.shardings = sharding.state_shardings(trainable, self.mesh)
        self.rest_shardings = sharding.state_shardings(rest, self.mesh)
        self.rest = jax.device_put(rest, self.rest_shardings)
        self.init_trainable = jax.device_put(trainable, self.shardings)
        self.optimizer = optimizer
        opt_shape = jax.eval_shape(optimizer.init, trainable)
        self.opt_shardings = sharding.optimizer_shardings(opt_shape, trainable, self.shardings, self.mesh)
        self.replicated = sharding.replicated(self.mesh)
        self._steps = {}

    def init(self):
        """Fresh copies (the step donates its inputs; the initial adapters must survive as 'pretrained')."""
        trainable = jax.device_put(jax.tree.map(jax.numpy.copy, self.init_trainable), self.shardings)
        with jax.set_mesh(self.mesh):
            opt_state = jax.jit(self.optimizer.init, out_shardings=self.opt_shardings)(trainable)
        return trainable, opt_state

    def reseed(self, seed: int) -> None:
        """Draw dropout keys from another seed (compiled steps bake the seed in: they are dropped)."""
        self.seed = int(seed)
        self._steps.clear()

    def replicate(self, value, dtype) -> jax.Array:
        """A host scalar as a replicated device array, on every process (an explicit transfer)."""
        return jax.make_array_from_process_local_data(self.replicated, np.asarray(value, dtype))

    def counter(self, step: int) -> jax.Array:
        """The device step counter for global step `step` (each update returns the next one)."""
        return self.replicate(step, np.int32)

    def place(self, batch: dict) -> dict:
        """A host batch (numpy arrays, or `sharding.local_batch` output) -> global arrays."""
        if all(isinstance(v, jax.Array) for v in batch.values()):
            return batch
        if not all(isinstance(v, tuple) for v in batch.values()):
            batch = sharding.local_batch(batch, self.mesh)
        return sharding.global_batch(batch, self.mesh)

    @abc.abstractmethod
    def loss(self, trainable, rest, batch, key, *scalars):
        """(total, parts) of one batch; the subclass's objective."""

    def _step(self, trainable, opt_state, rest, batch, step, *scalars, static):
        """Frozen weights (`rest`) are an argument, not constants baked into the program."""
        key = jax.random.fold_in(jax.random.key(self.seed), step)
        loss = jax.value_and_grad(self.loss, has_aux=True)
        (total, parts), grads = loss(trainable, rest, batch, key, *scalars, static)
        updates, opt_state = self.optimizer.update(grads, opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        metrics = {"loss": total, "grad_norm": optax.tree.norm(grads), **parts}
        if (lr := learning_rate(opt_state)) is not None:
            metrics["lr"] = lr
        return trainable, opt_state, metrics, step + 1

    def update(self, trainable, opt_state, batch, step, *scalars, static=None) -> StepOut:
        """One update. `batch`: host arrays, `sharding.local_batch` output, or global arrays; `step`:
        the global step (an int, or the counter the previous update returned); `scalars`: floats or
        replicated device arrays; `static` (hashable) selects a compiled variant."""
        batch = self.place(batch)
        step = step if isinstance(step, jax.Array) else self.counter(step)
        scalars = tuple(s if isinstance(s, jax.Array) else self.replicate(s, np.float32) for s in scalars)
        args = (trainable, opt_state, self.rest, batch, step, *scalars)
        sig = (
            static,
            len(scalars),
            tuple((k, v.shape, v.dtype, v.sharding) for k, v in sorted(batch.items())),
        )
        if sig not in self._steps:
            rep = self.replicated
            batch_shardings = {k: v.sharding for k, v in batch.items()}
            in_shardings = (self.shardings, self.opt_shardings, self.rest_shardings, batch_shardings, rep)
            make = functools.partial(
                jax.jit,
                functools.partial(self._step, static=static),
                in_shardings=in_shardings + (rep,) * len(scalars),
                out_shardings=(self.shardings, self.opt_shardings, rep, rep),
                donate_argnums=(0, 1, 4),
            )
            with jax.set_mesh(self.mesh):
                self._steps[sig] = compile_with_fallback(make, args, log=sharding.main_print)
        return StepOut(*self._steps[sig](*args))

    def merged_model(self, trainable) -> nnx.Module:
        """The full model on this host (what export and analysis want), whatever the mesh."""
        local = jax.tree.map(jax.numpy.asarray, sharding.to_host((trainable, self.rest)))
        return nnx.merge(self.graphdef, *local)
