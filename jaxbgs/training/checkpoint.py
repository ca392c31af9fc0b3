"""Checkpoints as atomic units: the trainable state, the optimiser state and the run's progress
(step, epoch, position in the epoch's data order, early-stopping record) in ONE orbax checkpoint, so
a kill at any instant leaves the previous unit or the new one, never weights of one step with the
progress of another. `best/` is the same kind of unit (best weights with the progress that chose
them) and is written before the regular checkpoint of the same step, so a resume never sees a
progress whose best is not on disk.

Orbax writes each unit into a temporary directory and renames it into place; temporaries a kill
left behind are removed when the managers open. The dropout keys are a function of (seed, step), so
the step is the only RNG state there is to save.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import orbax.checkpoint as ocp

from jaxbgs.errors import InputError
from jaxbgs.files import DiskFull, no_space

__all__ = ["Checkpoints", "DiskFull", "Progress"]
from jaxbgs.training import faults

TMP_MARK = ".orbax-checkpoint-tmp"


@dataclasses.dataclass
class Progress:
    """Where a run stands. `epoch` counts finished epochs, `step_in_epoch` the finished steps of the
    current epoch's plan; `best_epoch` is 0-based here (users read epochs from 1)."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    plateau_bad: int = 0
    done: bool = False

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["best"] = self.best if math.isfinite(self.best) else None  # JSON has no infinities
        return d

    @classmethod
    def from_json(cls, d: dict) -> Progress:
        d = dict(d)
        d["best"] = -math.inf if d.get("best") is None else float(d["best"])
        return cls(**d)


def remove_temporaries(directory: Path) -> None:
    if directory.is_dir():
        for p in directory.iterdir():
            if TMP_MARK in p.name:
                shutil.rmtree(p, ignore_errors=True)


def _manager(directory: Path, keep: int) -> ocp.CheckpointManager:
    """Orbax managers save from every process (sharded arrays) and finalise by renaming."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=False, cleanup_tmp_directories=True
    )
    return ocp.CheckpointManager(directory.absolute(), options=options)


class Checkpoints:
    """`checkpoints/` (the last two units: resume) and `best/` (one unit: evaluation and export)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir).absolute()
        self.latest = _manager(self.run_dir / "checkpoints", keep=2)
        self.best = _manager(self.run_dir / "best", keep=1)

    def _write(self, mgr, name: str, step: int, args) -> None:
        if mgr.latest_step() == step:  # written already (a resume replaying to the same step)
            return
        faults.arm_commit(mgr.directory)
        try:
            mgr.save(step, args=args, force=True)
            mgr.wait_until_finished()
        except Exception as e:
            if not no_space(e):
                raise
            remove_temporaries(Path(mgr.directory))
            last = mgr.latest_step()
            kept = f"the last good one (step {last}) is intact" if last is not None else "none was written"
            raise DiskFull(
                f"no space left on the device writing {Path(mgr.directory) / str(step)}; {kept}. "
                "Fix: free space on that disk, then --resume"
            ) from None
        faults.point(f"{name}_saved")

    def save(self, progress: Progress, trainable, opt_state) -> None:
        state = ocp.args.StandardSave({"trainable": trainable, "opt_state": opt_state})
        args = ocp.args.Composite(state=state, progress=ocp.args.JsonSave(progress.to_json()))
        self._write(self.latest, "checkpoint", progress.global_step, args)

    def save_best(self, progress: Progress, trainable) -> None:
        state = ocp.args.StandardSave({"trainable": trainable})
        args = ocp.args.Composite(state=state, progress=ocp.args.JsonSave(progress.to_json()))
        self._write(self.best, "best", progress.global_step, args)

    def has_checkpoint(self) -> bool:
        return self.latest.latest_step() is not None

    def _read(self, mgr, target: dict):
        step = mgr.latest_step()
        if step is None:
            return None
        path = Path(mgr.directory) / str(step)
        if not (path / "progress").exists():
            raise InputError(
                "this checkpoint was written by an older jaxbgs (no progress inside it)", file=path,
                fix="start the run anew with another --out (older runs cannot be resumed by this version)",
            )  # fmt: skip
        args = ocp.args.Composite(state=ocp.args.StandardRestore(target), progress=ocp.args.JsonRestore())
        out = mgr.restore(step, args=args)
        return out["state"], Progress.from_json(out["progress"])

    def restore(self, trainer):
        """(trainable, opt_state, progress) of the latest unit, placed on the trainer's mesh (which
        may differ from the mesh that wrote it), or None when there is none."""
        trainable, opt_state = trainer.init()
        got = self._read(self.latest, {"trainable": trainable, "opt_state": opt_state})
        if got is None:
            return None
        state, progress = got
        return state["trainable"], state["opt_state"], progress

    def load_best(self, trainer):
        """(trainable, progress) of the best unit."""
        trainable, _ = trainer.init()
        got = self._read(self.best, {"trainable": trainable})
        if got is None:
            raise InputError(
                "no best checkpoint", file=self.run_dir / "best", fix="train the run to its first epoch end"
            )
        state, progress = got
        return state["trainable"], progress
