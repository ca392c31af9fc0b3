"""Checkpoints are atomic units of weights, optimiser state and progress; a full disk is one line and
costs nothing already saved."""

from __future__ import annotations

import math
import os
import types

import jax.numpy as jnp
import numpy as np
import pytest

from jaxbgs.errors import InputError
from jaxbgs.training.checkpoint import Checkpoints, DiskFull, Progress, no_space


def _trainer(n: int):
    return types.SimpleNamespace(init=lambda: ({"w": jnp.zeros(n)}, {"m": jnp.zeros(n)}))


def test_a_unit_holds_state_and_progress_together(tmp_path):
    ckpts = Checkpoints(tmp_path)
    assert ckpts.restore(_trainer(3)) is None
    p = Progress(epoch=1, step_in_epoch=2, global_step=7, best=0.25, best_epoch=0)
    ckpts.save(p, {"w": jnp.arange(3.0)}, {"m": jnp.ones(3)})
    ckpts.save_best(p, {"w": jnp.arange(3.0) * 2})
    trainable, opt_state, progress = Checkpoints(tmp_path).restore(_trainer(3))
    assert (
        progress == p
        and np.array_equal(trainable["w"], [0, 1, 2])
        and (np.asarray(opt_state["m"]) == 1).all()
    )
    best, best_progress = ckpts.load_best(_trainer(3))
    assert np.array_equal(best["w"], [0, 2, 4]) and best_progress == p
    assert Progress.from_json(Progress().to_json()).best == -math.inf  # JSON has no infinity: null


def test_an_older_runs_checkpoint_is_named(tmp_path):
    import orbax.checkpoint as ocp

    mgr = ocp.CheckpointManager((tmp_path / "checkpoints").absolute())
    mgr.save(3, args=ocp.args.StandardSave({"trainable": {"w": jnp.zeros(2)}}))
    mgr.wait_until_finished()
    with pytest.raises(InputError, match="written by an older jaxbgs"):
        Checkpoints(tmp_path).restore(_trainer(2))


# orbax's write thread reports into its event loop after the failed save has closed it: noise only
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(small_disk):
    ckpts = Checkpoints(small_disk / "run")
    small = {"w": jnp.full(1000, 1.0)}
    ckpts.save(Progress(global_step=1), small, {"m": jnp.zeros(1000)})
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    with open(small_disk / "filler", "wb") as f:
        f.write(b"\0" * (free - 200_000))  # 200 kB left: less than the next unit
    noise = np.random.default_rng(0).standard_normal((2, 100_000)).astype(np.float32)  # incompressible
    with pytest.raises(DiskFull) as e:
        ckpts.save(Progress(global_step=2), {"w": jnp.asarray(noise[0])}, {"m": jnp.asarray(noise[1])})
    text = str(e.value)
    assert "\n" not in text and str(small_disk / "run" / "checkpoints" / "2") in text
    assert "the last good one (step 1) is intact" in text
    assert not [p for p in (small_disk / "run" / "checkpoints").iterdir() if p.name != "1"]  # no stale tmp
    trainable, _, progress = Checkpoints(small_disk / "run").restore(_trainer(1000))
    assert progress.global_step == 1 and np.array_equal(trainable["w"], small["w"])


def test_no_space_sees_through_wrappers():
    inner = OSError(28, "No space left on device")
    try:
        try:
            raise inner
        except OSError as e:
            raise RuntimeError("tensorstore write failed") from e
    except RuntimeError as outer:
        assert no_space(outer)
    assert not no_space(ValueError("shape mismatch"))
