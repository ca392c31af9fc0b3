"""Atomic outputs and run directories: nothing a person put at an output path is deleted, and one
run directory never mixes two runs."""

import json

import pytest

from jaxbgs import files
from jaxbgs.errors import InputError


def test_atomic_directory_never_deletes_what_is_there(tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "precious.txt").write_text("mine")
    with pytest.raises(InputError, match="already exists and is not empty"):
        with files.atomic_path(dst, directory=True):
            pass
    assert (dst / "precious.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary sibling left
    with files.atomic_path(dst, directory=True, replace=True) as tmp:  # a cache is rebuilt in place
        (tmp / "new.txt").write_text("x")
    assert [p.name for p in dst.iterdir()] == ["new.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with files.atomic_path(empty, directory=True) as tmp:  # an empty directory is fair game
        (tmp / "a").write_text("a")
    assert (empty / "a").is_file()


def _config(**kw):
    return {"name": "demo", "lr": 1e-4, "lora_targets": ["qkv", "out"], "max_steps": None, "data": "/a", **kw}


def _with_checkpoint(run):
    (run / "checkpoints" / "5").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(_config()))


def test_start_run_refuses_a_directory_that_holds_no_run(tmp_path):
    files.start_run(tmp_path / "new", _config(), resume=False)  # absent: fine
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="holds no run"):
        files.start_run(tmp_path / "mine", _config(), resume=False)
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        files.start_run(tmp_path / "f", _config(), resume=False)


def test_a_run_stopped_before_its_first_checkpoint_starts_over(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)  # created empty by the checkpoint manager
    (run / "checkpoints" / "3.orbax-checkpoint-tmp-1").mkdir()  # a save that never finished
    (run / "config.json").write_text(json.dumps(_config()))
    (run / "metrics.jsonl").write_text('{"step": 0}\n')
    with pytest.raises(InputError, match="no checkpoint to resume from"):
        files.start_run(run, _config(), resume=True)
    files.start_run(run, _config(), resume=False)
    assert "starting it over" in capsys.readouterr().out
    assert not (run / "metrics.jsonl").exists()  # no stale steps in the new run's log


def test_resume_needs_the_runs_settings(tmp_path):
    run = tmp_path / "run"
    _with_checkpoint(run)
    with pytest.raises(InputError, match="already holds a run"):
        files.start_run(run, _config(), resume=False)
    with pytest.raises(InputError, match=r"lr: 0\.0001 in the run, 5 now"):
        files.start_run(run, _config(lr=5), resume=True)
    with pytest.raises(InputError, match="lora_targets"):
        files.start_run(run, _config(lora_targets=("qkv",)), resume=True)
    files.start_run(run, _config(lora_targets=("qkv", "out")), resume=True)  # tuples as saved lists
    files.start_run(run, _config(max_steps=3, data="/moved"), resume=True)  # a leg's stop; moved inputs
    files.start_run(run, _config(attention="xla", remat="full"), resume=True)  # how, not what, is computed
