"""SIGKILL at every instant that matters, then `--resume`: the run ends where an uninterrupted one
ends, bitwise (parameters, optimiser state, best weights, results and exports), and logs each step
once. One chain of real `python -m jaxbgs.train` processes per paper, each killed at the next point
(`jaxbgs.training.faults`), the last resumed to the end; then `--resume` of the finished run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np

from jaxbgs.training.checkpoint import Checkpoints

# Where each link of a chain dies, in order (NAME@N: the N-th time that process reaches NAME).
BGS_KILLS = (
    "step@3",  # mid-step, before the first checkpoint: the resume starts from the first step
    "commit_checkpoints@1",  # a checkpoint fully written, not yet renamed into place
    "checkpoint_saved@1",  # just after a checkpoint is in place
    "commit_best@1",  # while best/ is written
    "validating@1",  # during an epoch's validation
    "evaluating",  # during the final evaluation
    "exporting",  # between the Flax and the PyTorch export
)
SF_KILLS = ("step@2", "commit_checkpoints@1", "commit_best@1", "evaluating", "exporting")
TIMING = ("step_s", "clips_per_s", "input_wait_s", "seconds_data", "seconds_total")


def _env(tmp_path, kill: str | None) -> dict:
    env = dict(os.environ, TQDM_DISABLE="1", JAX_PLATFORMS="cpu")
    env |= {  # later links reuse the first one's compiled steps
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    env.pop("JAXBGS_KILL_AT", None)
    if kill:
        env["JAXBGS_KILL_AT"] = kill
    return env


def _train(args: list[str], tmp_path, kill: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "jaxbgs.train", *args]
    return subprocess.run(cmd, env=_env(tmp_path, kill), capture_output=True, text=True, timeout=600)


def _chain(args: list[str], kills, tmp_path) -> list[subprocess.CompletedProcess]:
    out = []
    for i, kill in enumerate(kills):
        proc = _train(args + (["--resume"] if i else []), tmp_path, kill)
        assert proc.returncode == -signal.SIGKILL, f"{kill}: rc {proc.returncode}\n{proc.stderr[-3000:]}"
        out.append(proc)
    return out


def _tree(mgr, item="state"):
    return mgr.restore(mgr.latest_step())[item]


def _same_tree(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) and la
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _steps(run) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _results(run) -> dict:
    res = json.loads((run / "results.json").read_text())
    return {k: v for k, v in res.items() if not k.startswith("export") and k not in TIMING}


def _safetensors(path) -> dict:
    from safetensors.numpy import load_file

    return {p.name: load_file(p) for p in sorted(path.rglob("*.safetensors"))}


def _compare_runs(ref, got):
    _same_tree(_tree(Checkpoints(ref).latest), _tree(Checkpoints(got).latest))
    _same_tree(_tree(Checkpoints(ref).best), _tree(Checkpoints(got).best))
    assert _tree(Checkpoints(ref).latest, "progress") == _tree(Checkpoints(got).latest, "progress")
    assert _results(ref) == _results(got)
    assert _steps(ref) == _steps(got)  # the same losses, each step and epoch logged once
    a, b = _safetensors(ref / "export"), _safetensors(got / "export")
    assert a.keys() == b.keys() and a
    for name in a:
        _same_tree(a[name], b[name])
    assert not list(got.rglob("*.tmp")) and not list(got.rglob("*orbax-checkpoint-tmp*"))  # nothing stale


def _finished_again(args, run, tmp_path):
    before = (run / "results.json").read_text()
    proc = _train(args + ["--resume"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "the run is finished" in proc.stdout and (run / "results.json").read_text() == before


def test_bgs_survives_sigkill_anywhere(world, tmp_path):
    root, weights = world
    common = ["--exp", "vjepa", "--data", str(root / "data"), "--videos", str(root / "videos"),
              "--weights", str(weights["vjepa2"])]  # fmt: skip
    sets = dict(frames=4, size=32, dtype="float32", remat="none", batch_trials=2, rsa_videos=6,
                rsa_grad_videos=2, epochs=3, patience=10, n_boot=50, val_split="judgment", checkpoint_every=5,
                log_every=3, cache=str(root / "cache"))  # fmt: skip
    flags = [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]  # judgment split: a real selection
    ref, got = tmp_path / "ref", tmp_path / "got"
    proc = _train(common + flags + ["--out", str(ref)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    args = common + flags + ["--out", str(got)]
    links = _chain(args, BGS_KILLS, tmp_path)
    assert "no checkpoint yet; training from the first step" in links[1].stdout  # killed before any
    last = _train(args + ["--resume"], tmp_path)
    assert last.returncode == 0, last.stderr[-3000:]
    _compare_runs(ref, got)
    _finished_again(args, got, tmp_path)


def test_socialfusion_survives_sigkill_anywhere(tmp_path):
    sets = dict(demo_per_class=3, image_size=32, connector_hidden=16, lora_rank=2, lora_alpha=4.0,
                gaze_channels=4, epochs=2, batch_size=8, warmup_steps=2, checkpoint_every=4, log_every=2,
                cache=str(tmp_path / "cache"))  # fmt: skip
    flags = ["--exp", "socialfusion-demo"] + [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]
    ref, got = tmp_path / "ref", tmp_path / "got"
    proc = _train(flags + ["--out", str(ref)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    args = flags + ["--out", str(got)]
    _chain(args, SF_KILLS, tmp_path)
    last = _train(args + ["--resume"], tmp_path)
    assert last.returncode == 0, last.stderr[-3000:]
    _compare_runs(ref, got)
    _finished_again(args, got, tmp_path)
