"""Named kill points, so the crash tests can SIGKILL a real training process at an exact instant.

`JAXBGS_KILL_AT=NAME[@N]` makes the process kill itself (SIGKILL: no handler, no cleanup, as a
cluster's OOM killer or a pre-empted node does) the N-th time (default: the first) it reaches point
NAME. `commit_checkpoints` and `commit_best` are the renames that put a written checkpoint unit into
place: a kill there leaves every file of the new unit written but not committed. Without the
variable (as in every normal run) a point costs one comparison.
"""

from __future__ import annotations

import collections
import os
import signal
from pathlib import Path

_TARGET = os.environ.get("JAXBGS_KILL_AT")
_NAME, _, _NTH = (_TARGET or "").partition("@")
_seen: collections.Counter = collections.Counter()


def point(name: str) -> None:
    if _TARGET is None or name != _NAME:
        return
    _seen[name] += 1
    if _seen[name] == int(_NTH or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def arm_commit(directory) -> None:
    """With a `commit_*` target, make the rename that commits a unit under `directory` a kill point."""
    if not _NAME.startswith("commit_") or getattr(os.rename, "_jaxbgs_fault", False):
        return
    rename = os.rename

    def checked(src, dst, *args, **kw):
        src_path = Path(os.fspath(src))
        if src_path.name.endswith(".orbax-checkpoint-tmp") and Path(os.fspath(dst)).name.isdigit():
            point(f"commit_{src_path.parent.name}")
        return rename(src, dst, *args, **kw)

    checked._jaxbgs_fault = True
    os.rename = checked
