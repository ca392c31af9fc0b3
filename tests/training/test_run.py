"""The run directory: one run at a time (however `--out` is spelled), resumes only with the run's own
settings, nothing stale or half-made left behind, exit statuses a scheduler can read."""

from __future__ import annotations

import dataclasses
import json
import os
import signal

import pytest

import experiments
from jaxbgs import train
from jaxbgs.errors import InputError
from jaxbgs.training.checkpoint import DiskFull
from jaxbgs.training.run import RunDir


def test_a_second_run_on_one_directory_is_refused(tiny_exp, tmp_path, monkeypatch):
    exp = tiny_exp(experiments.get("vjepa"), max_steps=1, out=str(tmp_path / "runs" / "a"))
    with RunDir(exp.run_dir, exp.to_json(), resume=False):  # a run training there now
        with pytest.raises(InputError, match=r"another run is training in this directory \(pid \d+ on "):
            train.run(exp)
        monkeypatch.chdir(tmp_path)  # the same directory spelled relative to here
        with pytest.raises(InputError, match="another run is training"):
            train.run(dataclasses.replace(exp, out="runs/./a"))
    assert not (tmp_path / "runs" / "a" / "config.json").exists()  # the refused runs wrote nothing
    assert train.run(exp)["stopped_at_step"] == 1  # the lock went with its holder
    res = train.run(dataclasses.replace(exp, out="runs/a", max_steps=2), resume=True)
    assert res["stopped_at_step"] == 2  # resumed under the other spelling: one run


def test_a_failed_start_leaves_no_directory(tmp_path):
    exp = dataclasses.replace(
        experiments.get("vjepa"), out=str(tmp_path / "new"), data=str(tmp_path / "nodata")
    )
    with pytest.raises(InputError):
        train.run(exp)
    assert not (tmp_path / "new").exists()


def test_resume_refuses_other_settings_and_allows_locations(tiny_exp, tmp_path):
    exp = tiny_exp(experiments.get("vjepa"), max_steps=1)
    train.run(exp)
    with pytest.raises(InputError, match=r"lr: 0.0001 in the run, 0.5 now"):
        train.run(dataclasses.replace(exp, lr=0.5, max_steps=2), resume=True)
    moved = dataclasses.replace(exp, max_steps=2, log_every=1, checkpoint_every=0)
    assert train.run(moved, resume=True)["stopped_at_step"] == 2


def test_stale_temporaries_of_a_killed_run_are_removed(tiny_exp):
    exp = tiny_exp(experiments.get("vjepa"), max_steps=1)
    train.run(exp)
    run = exp.run_dir
    stale = [f"{run}/.results.json.abc.tmp", f"{run}/checkpoints/9.orbax-checkpoint-tmp"]
    open(stale[0], "w").close()
    os.makedirs(stale[1])
    train.run(dataclasses.replace(exp, max_steps=2), resume=True)
    assert not any(os.path.exists(p) for p in stale)


def test_exit_statuses(monkeypatch, capsys):
    def stopped(exp, resume=False):
        return {"stopped_at_step": 7, "signal": signal.SIGTERM}

    monkeypatch.setattr(train, "run", stopped)
    assert train.main(["--exp", "vjepa"]) == 143
    assert "stopped by SIGTERM after a checkpoint" in capsys.readouterr().err

    def full(exp, resume=False):
        raise DiskFull(
            "no space left on the device writing /x/checkpoints/12; the last good one (step 10) is intact"
        )

    monkeypatch.setattr(train, "run", full)
    assert train.main(["--exp", "vjepa"]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "step 10) is intact" in err

    def enospc(exp, resume=False):
        raise OSError(28, "No space left on device", "/x/results.json")

    monkeypatch.setattr(train, "run", enospc)
    assert train.main(["--exp", "vjepa"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("error: no space left on the device writing /x/results.json. Fix: free space")


def test_finished_run_is_left_as_is(tiny_exp):
    exp = tiny_exp(experiments.get("vjepa"))
    res = train.run(exp)
    saved = json.load(open(f"{exp.run_dir}/results.json"))
    assert train.run(exp, resume=True) == saved == json.loads(json.dumps(res))
