"""Atomic writes: a failed run never leaves a half-written file or directory behind; nor does a new
run overwrite an old one."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from jaxbgs.errors import InputError


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike, *, directory: bool = False, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `dst`; rename it onto `dst` only if the block succeeds.

    A directory already at `dst` holding anything is replaced only with `replace` (caches): an output
    path a person names must never delete what is there, their source checkpoint included.
    """
    dst = Path(dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(
            "cannot create the output's directory: a file is in the way", file=dst.parent,
            fix="choose another output path",
        ) from None  # fmt: skip
    if directory and not replace and dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise InputError(
            "the output path already exists" + (" and is not empty" if dst.is_dir() else " (a file)"),
            file=dst, fix="choose another output path, or remove this one first",
        )  # fmt: skip
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory and dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


class DiskFull(RuntimeError):
    """No space left while writing; what was written before is intact and temporaries are gone."""


def no_space(e: BaseException | None) -> bool:
    """Whether `e`, or what caused it, is a full disk (orbax and tensorstore wrap the OS error)."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def disk_full_line(e: BaseException) -> str | None:
    """One line for a full disk, naming what was being written (None: `e` is not a full disk)."""
    if isinstance(e, DiskFull):
        return str(e)
    if not no_space(e):
        return None
    while e is not None and not getattr(e, "filename", None):
        e = e.__cause__ or e.__context__
    where = f" writing {e.filename}" if e is not None else ""
    return f"no space left on the device{where}. Fix: free space on that disk and run the command again"


def write_text_atomic(dst: str | os.PathLike, text: str) -> None:
    with atomic_path(dst) as tmp:
        tmp.write_text(text)


# What --resume may change: where things are (inputs, cache), how many devices share the work
# (checkpoints restore across meshes) and how a step is computed (attention kernel, remat: the same
# function, other memory and speed); the evaluation's resample count; the early stop of a leg.
MAY_CHANGE_ON_RESUME = frozenset(
    {"description", "data", "data_dirs", "videos", "weights", "encoder_weights", "cache", "max_steps",
     "n_boot", "mesh_data", "mesh_fsdp", "mesh_tensor", "attention", "remat"}
)  # fmt: skip


def start_run(run_dir: str | os.PathLike, config: dict, *, resume: bool) -> None:
    """Refuse what would mix two runs in one directory: training over a run's checkpoints, writing
    into a directory that holds no run, or resuming with settings other than the run's (a resumed
    run must equal the uninterrupted one). A run that stopped before its first checkpoint is started
    over, its stale logs removed."""
    from jaxbgs.sharding import is_main_process, main_print

    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError("the run directory is a file", file=run_dir, fix="choose another --out")
    saved = run_dir / "config.json"
    ckpts = run_dir / "checkpoints"
    has_checkpoint = ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())
    if resume:
        if not has_checkpoint:
            raise InputError("no checkpoint to resume from", file=run_dir, fix="start without --resume")
        try:
            old = json.loads(saved.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"unreadable run settings ({e})", file=saved, fix="restore the file") from None
        new = json.loads(json.dumps(config))  # tuples as lists, as saved
        changed = sorted(
            k for k in old.keys() | new.keys() if k not in MAY_CHANGE_ON_RESUME and old.get(k) != new.get(k)
        )
        if changed:
            diff = "; ".join(f"{k}: {old.get(k)!r} in the run, {new.get(k)!r} now" for k in changed)
            raise InputError(
                f"--resume with settings other than the run's ({diff})", file=saved,
                fix="resume with the run's settings (drop those --set), or start anew with another --out",
            )  # fmt: skip
        return
    if has_checkpoint:
        raise InputError(
            "the run directory already holds a run", file=run_dir, fix="pass --resume, or another --out"
        )
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not saved.is_file():
            raise InputError(
                "the directory exists and holds no run", file=run_dir, fix="choose a new or empty --out"
            )
        main_print(f"{run_dir}: the run there stopped before its first checkpoint; starting it over")
        if is_main_process():
            for name in ("metrics.jsonl", "progress.json", "results.json"):
                (run_dir / name).unlink(missing_ok=True)
