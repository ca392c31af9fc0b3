"""A tiny real-format world for trainer tests: judgments in the released format, mp4 videos, and a
PyTorch twin checkpoint per architecture, all written under a session temp directory."""

import dataclasses

import pytest

import experiments
from jaxbgs.data import procedural, video
from tests.models import test_clip, test_timesformer, test_videomae, test_vjepa2, test_vjepa21
from tests.models.parity import save_twin

TINY = {
    "vjepa2": (test_vjepa2.TINY, dict(frames=4, size=32)),
    "vjepa21": (test_vjepa21.TINY, dict(frames=4, size=64)),
    "timesformer": (test_timesformer.TINY, dict(frames=4, size=32)),
    "videomae": (test_videomae.TINY, dict(frames=4, size=32)),
    "clip": (test_clip.TINY, dict(frames=2, size=32)),
}


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    demo = procedural.make_demo(30, 10, frames=8, size=64, seed=1, repeats=(1, 2))
    procedural.write_release(demo, root / "data")
    for i, name in enumerate(demo.video_names):
        video.write_test_video(root / "videos" / name, demo.clips[i])
    weights = {}
    for arch, (cfg, _) in TINY.items():
        path = root / "weights" / arch
        if arch == "vjepa21":
            path.mkdir(parents=True)
            test_vjepa21.save_release(cfg, path / "release.pt")
            path = path / "release.pt"
        else:
            save_twin(arch, cfg, path)
        weights[arch] = path
    return root, weights


def tiny(exp: experiments.Experiment, world, tmp_path, **kw) -> experiments.Experiment:
    """`exp` pointed at the tiny world, at the tiny model's clip size, a few steps long."""
    root, weights = world
    if exp.arch == "bert":
        raise ValueError("no video experiment uses bert")
    small = dict(
        data=str(root / "data"), videos=str(root / "videos"), weights=str(weights[exp.arch]),
        out=str(tmp_path / "run"), cache=str(root / "cache"), batch_trials=2, rsa_videos=6, rsa_grad_videos=2,
        epochs=1, n_boot=50, dtype="float32", remat="none", distill_model="all-MiniLM-L6-v2",
        head_dim=8 if exp.head_dim else None, val_fraction=0.3,
    )  # fmt: skip
    if exp.arch == "timesformer" and exp.frame_grouping == "config":
        small["frames"] = 8  # twice the tiny config's 4 frames: the regrouping mode
    return dataclasses.replace(exp, **(TINY[exp.arch][1] | small | kw))


@pytest.fixture
def tiny_exp(world, tmp_path):
    return lambda exp, **kw: tiny(exp, world, tmp_path, **kw)


def tiny_demo_run(mp: pytest.MonkeyPatch, root) -> dict:
    """The embedded demo end to end at test size (40 videos, 2 pretraining steps, 1 epoch) into
    root/run with its encoder cache in root/cache; returns the run's results."""
    from jaxbgs import train
    from jaxbgs.trainer import demo

    for name, value in (("N_VIDEOS", 40), ("N_TEST", 10), ("PRETRAIN_CLIPS", 64), ("PRETRAIN_STEPS", 2)):
        mp.setattr(demo, name, value)
    exp = dataclasses.replace(
        experiments.get("demo"), epochs=1, n_boot=20, out=str(root / "run"), cache=str(root / "cache")
    )
    return train.run(exp)
