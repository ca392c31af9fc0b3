"""Atomic writes: a failed run never leaves a half-written file or directory behind; nor does a new
run overwrite an old one."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from jaxbgs.errors import InputError


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `dst`; rename it onto `dst` only if the block succeeds."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
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


def write_text_atomic(dst: str | os.PathLike, text: str) -> None:
    with atomic_path(dst) as tmp:
        tmp.write_text(text)


def refuse_existing_run(run_dir: str | os.PathLike, *, resume: bool) -> None:
    """A run directory with checkpoints is continued with --resume, never trained over."""
    if not resume and (Path(run_dir) / "checkpoints").exists():
        raise InputError(
            "the run directory already holds a run", file=run_dir, fix="pass --resume, or another --out"
        )
