"""The trainer end to end on a tiny world: every experiment runs, resume is exact, signals and NaNs
are handled, missing inputs are named."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import experiments
from jaxbgs import train
from jaxbgs.data.judgments import Trials
from jaxbgs.data.matrices import pair_matrix
from jaxbgs.errors import InputError
from jaxbgs.eval.rsa import rsa, similarity_matrix
from jaxbgs.training.checkpoint import Checkpoints
from jaxbgs.training.loop import TrainingError
from tests.trainer.world import tiny_demo_run

VIDEO_EXPERIMENTS = [n for n in sorted(experiments.EXPERIMENTS) if n != "demo"]


@pytest.mark.parametrize("name", VIDEO_EXPERIMENTS)
def test_every_experiment_runs_two_steps(name, tiny_exp):
    exp = tiny_exp(experiments.get(name), max_steps=2)
    out = train.run(exp)
    assert out == {"stopped_at_step": 2, "signal": None}
    rows = [json.loads(line) for line in open(f"{exp.run_dir}/metrics.jsonl")]
    assert len(rows) == 2 and all(np.isfinite(r["loss"]) for r in rows)
    assert json.load(open(f"{exp.run_dir}/config.json"))["name"] == name


def test_full_run_writes_results_and_exports(tiny_exp, monkeypatch):
    weights = Path(tiny_exp(experiments.get("vjepa")).weights)
    monkeypatch.chdir(weights.parent)
    exp = tiny_exp(experiments.get("vjepa"), epochs=2, weights=weights.name)  # relative to this directory
    res = train.run(exp)
    keys = ("test_r2_pretrained", "test_r2_finetuned", "noise_ceiling", "ooo_accuracy_finetuned",
            "ooo_accuracy_reference_finetuned", "layer_r2_finetuned", "test_r2_ci_finetuned")  # fmt: skip
    assert all(k in res for k in keys)
    assert len(res["layer_r2_finetuned"]) == 3  # embeddings + 2 blocks
    assert json.load(open(f"{exp.run_dir}/results.json"))["test_r2_finetuned"] == res["test_r2_finetuned"]
    assert res["base_weights"] == str(weights)  # absolute: notebooks open it from anywhere
    # The tiny world judges no pair inside its validation split: no selection, the last epoch is kept.
    assert (res["best_epoch"], res["epochs_run"], res["best_val"]) == (2, 2, None)
    epochs = [r for r in map(json.loads, open(f"{exp.run_dir}/metrics.jsonl")) if "val_r2" in r]
    assert [(r["epoch"], r["val_r2"]) for r in epochs] == [(1, None), (2, None)]
    # The embeddings behind the scores, for notebooks: re-scoring them gives the same R^2.
    emb = np.load(f"{exp.run_dir}/embeddings.npz")
    n = len(emb["ids"])
    assert emb["pretrained"].shape[0] == emb["finetuned"].shape[0] == n
    assert emb["layers_finetuned"].shape[:2] == (n, 3) and emb["test_items"].shape[1] == 3
    # Every video, for probes fitted on training videos: the test rows equal the test embeddings.
    split = emb["all_split"]
    assert set(split) == {"train", "val", "test"} and len(emb["all_ids"]) == len(set(emb["all_ids"]))
    test_rows = emb["all_ids"][split == "test"]
    np.testing.assert_array_equal(test_rows, emb["ids"])
    np.testing.assert_allclose(emb["all_finetuned"][split == "test"], emb["finetuned"], atol=1e-6)
    assert "ratings" not in emb  # real data: the ratings are the human annotations, read by the probe
    human = pair_matrix(Trials(emb["test_items"], emb["test_odd"]), emb["ids"])
    assert rsa(similarity_matrix(emb["finetuned"]), human).r2 == pytest.approx(
        res["test_r2_finetuned"], abs=1e-9
    )
    from transformers import AutoModel

    AutoModel.from_pretrained(res["export_torch"])  # the fine-tuned weights back in PyTorch


@pytest.mark.parametrize("mode", ["triplet", "video"])
def test_resume_equals_uninterrupted(mode, tiny_exp, tmp_path):
    kw = dict(epochs=2, patience=10, mode=mode, video_batch=8)
    full = tiny_exp(experiments.get("vjepa"), out=str(tmp_path / "full"), **kw)
    train.run(full)
    part = tiny_exp(experiments.get("vjepa"), out=str(tmp_path / "part"), **kw)
    assert train.run(dataclasses.replace(part, max_steps=5)) == {"stopped_at_step": 5, "signal": None}
    train.run(part, resume=True)

    def latest(run):
        mgr = Checkpoints(tmp_path / run).latest
        return mgr.restore(mgr.latest_step())["state"]

    a, b = latest("full"), latest("part")
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    ra = [json.loads(r) for r in open(tmp_path / "full" / "metrics.jsonl")]
    rb = [json.loads(r) for r in open(tmp_path / "part" / "metrics.jsonl")]
    assert [r.get("loss") for r in ra] == [r.get("loss") for r in rb]


def _leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_sigterm_saves_and_resume_finishes(world, tmp_path):
    root, weights = world
    out = tmp_path / "sig"
    args = [sys.executable, "-m", "jaxbgs.train", "--exp", "vjepa", "--data", str(root / "data"),
            "--videos", str(root / "videos"), "--weights", str(weights["vjepa2"]), "--out", str(out),
            "--set", "frames=4", "--set", "size=32", "--set", "dtype=float32", "--set", "remat=none",
            "--set", "batch_trials=1", "--set", "rsa_videos=6", "--set", "rsa_grad_videos=2",
            "--set", "epochs=50", "--set", f"cache={root / 'cache'}", "--set", "n_boot=50",
            "--set", "val_fraction=0.3"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "metrics.jsonl").is_file():
        time.sleep(0.5)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]  # a scheduler tells it from success
    assert "continue with --exp " in stdout and " --resume --out " in stdout
    assert "stopped by SIGTERM after a checkpoint: exit status 143" in stderr
    mgr = Checkpoints(out).latest
    progress = mgr.restore(mgr.latest_step())["progress"]
    assert progress["global_step"] > 0 and not progress["done"]


def test_nan_guard_stops_with_a_message(tiny_exp):
    exp = tiny_exp(experiments.get("vjepa"), lr=1e30, epochs=1)
    with pytest.raises(TrainingError, match="non-finite loss or gradient"):
        train.run(exp)


def test_missing_inputs_are_named_before_any_work(world, tmp_path, capsys):
    root, _ = world
    assert train.main(["--exp", "vjepa", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "needs --data, --videos" in err and "moments.csail.mit.edu" in err
    given = ["--data", str(root / "data"), "--videos", str(root / "videos"), "--out", str(tmp_path / "x")]
    assert train.main(["--exp", "vjepa", *given]) == 2  # the default Hub id is not in the cache
    assert "huggingface-cli download facebook/vjepa2-vitl-fpc64-256" in capsys.readouterr().err
    assert train.main(["--exp", "vjepa21", *given]) == 2
    assert "--weights: no such checkpoint vjepa2_1_vitb_dist_vitG_384.pt" in capsys.readouterr().err
    absent = ["--data", str(tmp_path / "nodata"), "--videos", str(tmp_path / "novideos")]
    assert train.main(["--exp", "vjepa", *absent, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err  # all three at once
    assert "3 missing input(s)" in err and "nodata is not a directory" in err and "novideos" in err
    assert not (tmp_path / "x").exists()


def test_config_errors(capsys):
    assert train.main(["--exp", "vjepa", "--set", "lrr=1"]) == 2
    assert "unknown config key(s) ['lrr']" in capsys.readouterr().err
    assert train.main(["--exp", "vjepa", "--set", "epochs=many"]) == 2
    assert "epochs expects int" in capsys.readouterr().err
    assert train.main(["--exp", "nope"]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err
    assert train.main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in experiments.EXPERIMENTS)


def test_out_of_memory_says_what_to_turn_down(monkeypatch, capsys):
    def oom(exp, resume=False):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 9.1GiB\nmore")

    monkeypatch.setattr(train, "run", oom)
    assert train.main(["--exp", "vjepa", "--set", "remat=none"]) == 3
    err = capsys.readouterr().err
    assert "out of device memory (RESOURCE_EXHAUSTED: Out of memory allocating 9.1GiB)" in err
    assert "lower batch_trials=4 (x3 clips) or rsa_videos=24; remat=none -> full" in err
    assert "dtype=" not in err  # vjepa computes in bfloat16 already
    video = experiments.override(experiments.get("demo"), {"mode": "video", "video_batch": 8})
    assert train.memory_hint(video).startswith("lower video_batch=8; remat=none -> full; dtype=float32")
    assert train.memory_hint(experiments.get("socialfusion")).startswith("lower batch_size=32; remat=none")

    def other(exp, resume=False):
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")

    monkeypatch.setattr(train, "run", other)
    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):  # not dressed up as memory
        train.main(["--exp", "vjepa"])


def test_rerun_into_existing_directory_needs_resume(tiny_exp):
    exp = tiny_exp(experiments.get("vjepa"), max_steps=1)
    train.run(exp)
    with pytest.raises(InputError, match="already holds a run"):
        train.run(exp)


def test_a_checkpoint_of_another_family_is_refused(world, tmp_path):
    from checkpoints_convert import convert
    from jaxbgs.trainer import setup

    _, weights = world
    flax_dir = convert.to_flax("videomae", weights["videomae"], tmp_path / "videomae")
    exp = dataclasses.replace(experiments.get("timesformer"), weights=str(flax_dir))
    with pytest.raises(InputError, match="holds a videomae model; the experiment trains timesformer"):
        setup.build_model(exp)


def test_the_split_says_what_it_costs_in_trials(tiny_exp, capsys):
    exp = tiny_exp(experiments.get("vjepa"), max_steps=1)
    train.run(exp)
    out = capsys.readouterr().out
    assert "training trials mix training and validation videos and are left out of both" in out


def test_missing_video_is_named(tiny_exp, tmp_path):
    import shutil

    exp = tiny_exp(experiments.get("vjepa"), max_steps=1)
    videos = tmp_path / "videos"
    shutil.copytree(exp.videos, videos)
    os.remove(videos / "demo_0003.mp4")
    with pytest.raises(InputError, match="demo_0003.mp4"):
        train.run(dataclasses.replace(exp, videos=str(videos), cache=str(tmp_path / "cache")))


def test_evaluate_rescores_a_run_without_retraining(tiny_exp, capsys):
    from jaxbgs import evaluate

    exp = tiny_exp(experiments.get("vjepa"), epochs=1)
    res = train.run(exp)
    capsys.readouterr()
    assert evaluate.main(["--run", exp.run_dir, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    for key in ("test_r2_pretrained", "test_r2_finetuned", "noise_ceiling", "ooo_accuracy_finetuned"):
        assert again[key] == pytest.approx(res[key], abs=1e-12)
    assert evaluate.main(["--run", str(exp.run_dir) + "-missing"]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_video_mode_applies_more_constraints_per_clip(tiny_exp, tmp_path):
    rows = {}
    for mode in ("triplet", "video"):
        kw = dict(mode=mode, video_batch=12, max_steps=4, epochs=5, out=str(tmp_path / mode))
        exp = tiny_exp(experiments.get("vjepa"), **kw)
        assert train.run(exp) == {"stopped_at_step": 4, "signal": None}
        rows[mode] = [r for r in map(json.loads, open(f"{exp.run_dir}/metrics.jsonl")) if "step" in r]
    assert all(r["clips"] == 12 and r["rsa_pairs"] > 0 for r in rows["video"])
    per_clip = {m: sum(r["constraints"] for r in rs) / sum(r["clips"] for r in rs) for m, rs in rows.items()}
    assert per_clip["video"] > 3 * per_clip["triplet"]


def test_embed_writes_the_runs_embeddings(tiny_exp, tmp_path, capsys):
    from jaxbgs import embed

    exp = tiny_exp(experiments.get("vjepa"), epochs=1)
    train.run(exp)
    names = ["demo_0000.mp4", "demo_0005.mp4", "demo_0007.mp4"]
    out = tmp_path / "emb.npz"
    args = ["--run", exp.run_dir, "--videos", *[f"{exp.videos}/{n}" for n in names], "--out", str(out)]
    assert embed.main([*args, "--layers", "--batch", "2"]) == 0
    got = np.load(out)
    assert [os.path.basename(n) for n in got["names"]] == names
    data, _, _, trainer = train.prepare(exp)
    ids = np.array([0, 5, 7])  # the demo's video ids follow its file names
    best, _ = Checkpoints(exp.run_dir).load_best(trainer)
    want, layers = trainer.embed(best, data.clips[ids], layers=True)
    np.testing.assert_allclose(got["embeddings"], np.asarray(want), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["layers"], np.asarray(layers), rtol=1e-4, atol=1e-5)
    assert embed.main(["--run", exp.run_dir, "--videos", exp.videos, "--out", str(out)]) == 0
    assert len(np.load(out)["names"]) == len(os.listdir(exp.videos))  # a directory is expanded

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    capsys.readouterr()
    assert embed.main(["--run", exp.run_dir, "--videos", str(bad), "--out", str(tmp_path / "x.npz")]) == 2
    assert "bad.mp4" in capsys.readouterr().err and not (tmp_path / "x.npz").exists()
    assert embed.main(["--run", str(tmp_path), "--videos", str(bad), "--out", str(out)]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_demo_pipeline_at_tiny_size(tmp_path, monkeypatch):
    res = tiny_demo_run(monkeypatch, tmp_path)
    for key in ("test_r2_pretrained", "test_r2_finetuned", "noise_ceiling"):
        assert np.isfinite(res[key])
    assert res["n_test_videos"] == 10
    encoders = list((tmp_path / "cache").glob("demo-encoder-*"))
    assert len(encoders) == 1  # pretrained once, cached for the next run
    assert (tmp_path / "run" / "export" / "torch").is_dir() == (res["export_torch"] is not None)
