"""`fit`: the one training loop both papers run.

A paper describes its training as a `Task` (the steps of each epoch, a pure function of the seed and
the epoch; the host batch of a step; per-epoch scalars; an epoch-end evaluation) and its loss as a
`ShardedTrainer`. `fit` does the rest: input threads that build and place batches on the device
ahead of the step that needs them, updates dispatched without waiting on the host, metrics fetched
every `log_every` steps one step behind the newest (so the device always has the next step queued),
checkpoints as atomic units, early stopping, SIGTERM/SIGINT, a progress bar with ETA, metrics.jsonl
and TensorBoard. A resumed run replays exactly what an uninterrupted one does (bitwise on CPU).
"""

from __future__ import annotations

import abc
import dataclasses
import math
import queue
import signal
import threading
import time
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import grain
import jax
import numpy as np
from tqdm.auto import tqdm

from jaxbgs import sharding
from jaxbgs.training import faults
from jaxbgs.training.checkpoint import Checkpoints, Progress
from jaxbgs.training.metrics import MetricsLog
from jaxbgs.training.trainer import ShardedTrainer


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite loss or gradients); the last good checkpoint is kept."""


class Batch(NamedTuple):
    """One step's input: `arrays` (host numpy or `sharding.local_batch` output; global arrays once
    placed), `static` (the compiled variant) and `info` (host numbers logged with the step)."""

    arrays: dict
    static: Hashable = None
    info: dict = {}


class Task(abc.ABC):
    """What a paper gives `fit`."""

    @abc.abstractmethod
    def plan(self, epoch: int) -> Sequence[Any]:
        """The epoch's steps; a pure function of (seed, epoch), so a resume replays them."""

    @abc.abstractmethod
    def load(self, step) -> Batch:
        """The batch of one planned step. Runs in input threads: numpy only, no device work."""

    def scalars(self, epoch: int) -> tuple[float, ...]:
        """Per-epoch scalars passed to the loss after the key (BGS: beta)."""
        return ()

    def validate(self, trainable) -> tuple[float | None, dict]:
        """(score to maximise, record to log) at an epoch's end. A score of None: nothing to select
        on, so every epoch is the newest best and the run goes on to `epochs`."""
        return None, {}

    def record(self, info: dict, metrics: dict, step_s: float) -> dict:
        """A step's log entry from its host `info` and fetched device `metrics`."""
        return {**metrics, **info}

    def epoch_line(self, record: dict, progress: Progress) -> str | None:
        """The line printed after an epoch's validation."""
        return None


@dataclasses.dataclass(frozen=True)
class FitConfig:
    epochs: int
    patience: int | None = None  # epochs without a better validation score before stopping
    max_steps: int | None = None  # stop (resumably) at this global step
    checkpoint_every: int = 0  # also checkpoint every N steps (0: epoch ends and stops only)
    log_every: int = 10  # fetch metrics every N steps (one step behind the newest)
    lr_plateau: bool = False  # ReduceLROnPlateau(x0.5, patience 3), as the BGS authors' code
    prefetch: int = 2  # batches placed on the device ahead of the step


class FitResult(NamedTuple):
    trainable: Any
    opt_state: Any
    progress: Progress
    signal: int | None  # the signal that stopped the run, if one did


class Stop:
    """SIGTERM/SIGINT set a flag; the loop checkpoints at the next step boundary and returns."""

    def __init__(self):
        self.signum = None

    def __enter__(self):
        self.old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)


_END = object()


class DevicePrefetch:
    """The input pipeline: grain threads build host batches (`task.load`), a placing thread puts them
    on the device, `depth` ahead of the step that consumes them."""

    def __init__(self, task: Task, steps: Sequence, trainer: ShardedTrainer, depth: int):
        self.queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self.stopped = threading.Event()
        options = grain.ReadOptions(num_threads=2, prefetch_buffer_size=max(depth, 1))
        self.host = iter(grain.MapDataset.source(list(steps)).map(task.load).to_iter_dataset(options))
        self.trainer = trainer
        self.thread = threading.Thread(target=self._run, daemon=True, name="jaxbgs-device-prefetch")
        self.thread.start()

    def _put(self, item) -> None:
        while not self.stopped.is_set():
            try:
                return self.queue.put(item, timeout=0.1)
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            for b in self.host:
                if self.stopped.is_set():
                    return
                self._put(Batch(self.trainer.place(b.arrays), b.static, b.info))
            self._put(_END)
        except BaseException as e:  # re-raised in the training thread
            self._put(e)

    def get(self, previous: jax.Array | None):
        """(next placed batch or None at the end, seconds the device sat idle waiting for it): the
        wait counts from when the previous step finished, not from when the host asked."""
        t0 = time.perf_counter()
        idle_from = t0 if previous is None or previous.is_ready() else None
        while True:
            try:
                item = self.queue.get(timeout=0.002)
                break
            except queue.Empty:
                if idle_from is None and previous.is_ready():
                    idle_from = time.perf_counter()
        wait = 0.0 if idle_from is None else time.perf_counter() - idle_from
        if isinstance(item, BaseException):
            raise item
        return (None if item is _END else item), wait

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)


def fetch(tree):
    """The loop's only device-to-host transfer: metrics of steps already behind the newest one."""
    return jax.device_get(tree)


def fit(
    trainer: ShardedTrainer, task: Task, run_dir: str | Path, cfg: FitConfig, *, resume: bool = False
) -> FitResult:
    """Train to `cfg.epochs`, early stopping, `max_steps` or a stop signal, checkpointing in
    `run_dir` (`checkpoints/`, `best/`, metrics.jsonl, TensorBoard events)."""
    return _Loop(trainer, task, Path(run_dir), cfg).run(resume)


class _Loop:
    """`fit`'s state: the device states and counter, the progress, the metrics not yet fetched."""

    def __init__(self, trainer: ShardedTrainer, task: Task, run_dir: Path, cfg: FitConfig):
        self.trainer, self.task, self.run_dir, self.cfg = trainer, task, run_dir, cfg
        self.ckpts = Checkpoints(run_dir)
        self.main = sharding.is_main_process()
        self.pending: list = []  # ((host record, host info), device metrics) not yet fetched
        self.bar = None

    def run(self, resume: bool) -> FitResult:
        restored = self.ckpts.restore(self.trainer) if resume else None
        if restored is not None:
            self.trainable, self.opt_state, self.progress = restored
        else:
            (self.trainable, self.opt_state), self.progress = self.trainer.init(), Progress()
        if self.progress.done:
            return self._result(None)
        self.log = MetricsLog(self.run_dir, self.progress, main=self.main)
        self.counter = self.trainer.counter(self.progress.global_step)
        self.fetched_at = time.perf_counter()
        try:
            with Stop() as stop:
                while not self.progress.done:
                    if not self._epoch(stop):
                        self.save()
                        return self._result(stop.signum)
                    self._epoch_end()
        finally:
            if self.bar is not None:
                self.bar.close()
            self.log.close()
        return self._result(None)

    def _result(self, signum) -> FitResult:
        return FitResult(self.trainable, self.opt_state, self.progress, signum)

    def _epoch(self, stop: Stop) -> bool:
        """Run the rest of the current epoch; False when a signal or `max_steps` stops it."""
        cfg, progress, trainer = self.cfg, self.progress, self.trainer
        plan = self.task.plan(progress.epoch)
        scalars = tuple(trainer.replicate(s, np.float32) for s in self.task.scalars(progress.epoch))
        self.bar = tqdm(
            total=len(plan), initial=progress.step_in_epoch, unit="step", leave=False,
            desc=f"epoch {progress.epoch + 1}/{cfg.epochs}", disable=None if self.main else True,
        )  # fmt: skip
        batches = DevicePrefetch(self.task, plan[progress.step_in_epoch :], trainer, cfg.prefetch)
        last = None  # the newest step's loss: the device is idle once it is ready
        try:
            while True:
                if stop.signum is not None or (
                    cfg.max_steps is not None and progress.global_step >= cfg.max_steps
                ):
                    return False
                batch, wait = batches.get(last)
                if batch is None:
                    return True
                head = {"step": progress.global_step, "epoch": progress.epoch + 1,
                        "step_in_epoch": progress.step_in_epoch}  # fmt: skip
                with jax.transfer_guard_device_to_host("disallow"):  # no hidden sync inside a step
                    out = trainer.update(self.trainable, self.opt_state, batch.arrays, self.counter, *scalars,
                                         static=batch.static)  # fmt: skip
                self.trainable, self.opt_state, self.counter = out.trainable, out.opt_state, out.step
                last = out.metrics["loss"]
                faults.point("step")
                self.pending.append(((head, {**batch.info, "input_wait_s": wait}), out.metrics))
                progress.global_step += 1
                progress.step_in_epoch += 1
                if len(self.pending) > cfg.log_every:
                    self.drain(keep=1)
                if cfg.checkpoint_every and progress.global_step % cfg.checkpoint_every == 0:
                    self.save()
        finally:
            batches.close()

    def drain(self, keep: int = 0) -> None:
        """Fetch and log the pending steps but the newest `keep` (still running: no wait for it)."""
        n = len(self.pending) - keep
        take, self.pending = self.pending[:n], self.pending[n:]
        if not take:
            return
        values = fetch([m for _, m in take])
        now = time.perf_counter()
        step_s = (now - self.fetched_at) / len(take)  # the device's pace over the window
        self.fetched_at = now
        for ((head, info), _), m in zip(take, values, strict=True):
            m = {k: np.asarray(v).item() for k, v in m.items()}
            if not (math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])):
                raise TrainingError(
                    f"non-finite loss or gradient at epoch {head['epoch']} step {head['step_in_epoch']} "
                    f"({m}); the last good checkpoint is in {self.run_dir / 'checkpoints'}. "
                    "Lower lr or compute in float32"
                )
            self.log.step({**head, **self.task.record(info, m, step_s), "step_s": step_s})
            self.bar.set_postfix(loss=f"{m['loss']:.4f}", refresh=False)
        self.bar.update(len(take))

    def save(self) -> None:
        """A checkpoint of the current state, after every earlier step is checked and logged."""
        self.drain()
        self.log.flush()
        self.ckpts.save(self.progress, self.trainable, self.opt_state)

    def _epoch_end(self) -> None:
        """Validation, early stopping, `best/` (written before the epoch's checkpoint), the plateau
        schedule, then the checkpoint that records all of it."""
        self.drain()
        self.bar.close()
        cfg, progress = self.cfg, self.progress
        faults.point("validating")
        score, record = self.task.validate(self.trainable)
        improved = score is None or score > progress.best
        if improved:
            progress.best_epoch, progress.bad_epochs = progress.epoch, 0
            progress.best = progress.best if score is None else score
        else:
            progress.bad_epochs += 1
        progress.plateau_bad = 0 if improved else progress.plateau_bad + 1
        progress.epoch += 1
        progress.step_in_epoch = 0
        stopped_early = cfg.patience is not None and progress.bad_epochs >= cfg.patience
        progress.done = stopped_early or progress.epoch >= cfg.epochs
        best = progress.best if math.isfinite(progress.best) else None
        self.log.epoch({"epoch": progress.epoch, **record, "best": best}, progress.global_step)
        if self.main and score is not None and (line := self.task.epoch_line(record, progress)):
            tqdm.write(line)
        if improved:
            self.ckpts.save_best(progress, self.trainable)
        if cfg.lr_plateau and progress.plateau_bad > 3:  # ReduceLROnPlateau(factor 0.5, patience 3)
            self.opt_state.hyperparams["learning_rate"] = self.opt_state.hyperparams["learning_rate"] * 0.5
            progress.plateau_bad = 0
        self.log.flush()
        self.ckpts.save(progress, self.trainable, self.opt_state)
