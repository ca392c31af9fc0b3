"""A run directory's lifecycle, shared by both papers: one writer at a time (a lock the kernel drops
when its process dies, however it dies), no training over another run, a resume only with the
run's own settings, and nothing stale left by a killed predecessor.

Exit statuses of `python -m jaxbgs.train` (for schedulers): 0 finished (or stopped at `max_steps`);
2 bad input or settings; 3 out of device memory; 4 no space left on the disk; 128 + N stopped by
signal N (143: SIGTERM, 130: SIGINT) after writing a checkpoint, so `--resume` continues.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path

from jaxbgs.errors import InputError
from jaxbgs.sharding import is_main_process, main_print

EXIT_ERROR, EXIT_OOM, EXIT_DISK = 2, 3, 4
LOCK = ".lock"
RESULTS = "results.json"
# What a start over removes: everything a run writes but its settings (checked or rewritten).
RUN_OUTPUTS = ("metrics.jsonl", "progress.json", RESULTS, "embeddings.npz", "export", "checkpoints", "best")
# What --resume may change: where things are (inputs, cache, the run directory's spelling), how many
# devices share the work (checkpoints restore across meshes) and how a step is computed (attention
# kernel, remat: the same function, other memory and speed); the evaluation's resample count;
# the early stop of a leg; how often metrics are fetched and checkpoints written.
MAY_CHANGE_ON_RESUME = frozenset(
    {"description", "data", "data_dirs", "videos", "weights", "encoder_weights", "cache", "out", "max_steps",
     "n_boot", "mesh_data", "mesh_fsdp", "mesh_tensor", "attention", "remat", "log_every", "checkpoint_every"}
)  # fmt: skip


def exit_status(signum: int) -> int:
    return 128 + signum


class RunDir:
    """`with RunDir(path, config, resume=...) as run:` holds the directory's lock for the block.

    After entering: `run.finished` (a `--resume` of a run whose results are written), `run.resume`
    (whether there is a checkpoint to continue from). On an error inside the block a directory this
    call created and nothing else wrote is removed again.
    """

    def __init__(self, path: str | os.PathLike, config: dict, *, resume: bool):
        self.path = Path(path).expanduser().absolute()  # `runs/x` and `/abs/runs/x`: one run, one lock
        self.config, self.asked_resume = config, resume
        self.finished = self.resume = False
        self._fd = None
        self._created = False

    def __enter__(self) -> RunDir:
        if self.path.exists() and not self.path.is_dir():
            raise InputError("the run directory is a file", file=self.path, fix="choose another --out")
        if is_main_process():
            self._created = not self.path.exists()
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock()
        try:
            self._check()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._created and self.path.is_dir() and not self._holds_anything():
            shutil.rmtree(self.path, ignore_errors=True)  # a start that failed leaves nothing behind

    def _holds_anything(self) -> bool:
        return any(p.name != LOCK for p in self.path.iterdir())

    def _lock(self) -> None:
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise InputError(
                f"another run is training in this directory ({holder})", file=self.path,
                fix="wait for it to finish or stop it, or choose another --out",
            ) from None  # fmt: skip
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%F %T')}\n".encode())
        self._fd = fd

    def _has_checkpoint(self) -> bool:
        ckpts = self.path / "checkpoints"
        return ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())

    def _check(self) -> None:
        saved = self.path / "config.json"
        has_run = saved.is_file()
        if self.asked_resume:
            if not has_run:
                raise InputError("no run to resume here (no config.json)", file=self.path,
                                 fix="start without --resume")  # fmt: skip
            self._same_settings(saved)
            self.finished = (self.path / RESULTS).is_file()
            self.resume = self._has_checkpoint()
            if not self.resume:
                main_print(f"{self.path}: no checkpoint yet; training from the first step")
                self._clear()
            self._remove_temporaries()
            return
        if self._has_checkpoint():
            raise InputError("the run directory already holds a run", file=self.path,
                             fix="pass --resume, or another --out")  # fmt: skip
        if self.path.is_dir() and self._holds_anything():
            if not has_run:
                raise InputError("the directory exists and holds no run", file=self.path,
                                 fix="choose a new or empty --out")  # fmt: skip
            main_print(f"{self.path}: the run there stopped before its first checkpoint; starting it over")
            self._clear()
        self._remove_temporaries()

    def _same_settings(self, saved: Path) -> None:
        try:
            old = json.loads(saved.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"unreadable run settings ({e})", file=saved, fix="restore the file") from None
        new = json.loads(json.dumps(self.config))  # tuples as lists, as saved
        changed = sorted(
            k for k in old.keys() | new.keys() if k not in MAY_CHANGE_ON_RESUME and old.get(k) != new.get(k)
        )
        if changed:
            diff = "; ".join(f"{k}: {old.get(k)!r} in the run, {new.get(k)!r} now" for k in changed)
            raise InputError(
                f"--resume with settings other than the run's ({diff})", file=saved,
                fix="resume with the run's settings (drop those --set), or start anew with another --out",
            )  # fmt: skip

    def _clear(self) -> None:
        """Remove what a run that never reached a checkpoint wrote (its logs, event files)."""
        if not is_main_process():
            return
        for p in self.path.iterdir():
            if p.name in RUN_OUTPUTS or p.name.startswith("events.out.tfevents."):
                shutil.rmtree(p) if p.is_dir() else p.unlink()

    def _remove_temporaries(self) -> None:
        """Half-written files a kill left (`jaxbgs.files.atomic_path` names them `.NAME.*.tmp`)."""
        if not is_main_process():
            return
        for d in (self.path, self.path / "export"):
            for p in d.glob(".*.tmp") if d.is_dir() else ():
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    def write_config(self) -> None:
        from jaxbgs.files import write_text_atomic

        if is_main_process():
            write_text_atomic(self.path / "config.json", json.dumps(self.config, indent=2) + "\n")

    def results(self) -> dict:
        return json.loads((self.path / RESULTS).read_text())
