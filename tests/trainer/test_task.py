"""Step plans of both modes: the paper's triplet steps and the video-batched steps."""

import dataclasses

import numpy as np
import pytest

import experiments
from jaxbgs import losses
from jaxbgs.data import procedural
from jaxbgs.trainer import task
from jaxbgs.trainer.setup import split_data


@pytest.fixture(scope="module")
def data():
    demo = procedural.make_demo(60, 12, frames=2, size=16, seed=3, repeats=(2, 2))
    exp = dataclasses.replace(experiments.get("demo"), frames=2, size=16)
    return split_data(exp, demo.clips, demo.train_ids, demo.test_ids, demo.train, demo.test)


def video_exp(**kw):
    return dataclasses.replace(experiments.get("demo"), mode="video", video_batch=12, **kw)


def test_video_batches_hold_every_trial_whole(data):
    exp = video_exp()
    batches = task.video_batches(exp, data, epoch=0)
    assert all(len(b) == 12 and len(np.unique(b)) == 12 for b in batches)
    assert all(np.isin(b, data.train_ids).all() for b in batches)
    whole = np.zeros(len(data.train), bool)
    for b in batches:
        whole |= np.isin(data.train.items, b).all(axis=1)
    assert whole.all()  # no trial is dropped


def test_video_plan_is_seeded_per_epoch(data):
    exp = video_exp()
    a, b = task.video_batches(exp, data, 0), task.video_batches(exp, data, 0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = task.video_batches(exp, data, 1)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=False))
    d = task.video_batches(dataclasses.replace(exp, seed=1), data, 0)
    assert not all(np.array_equal(x, y) for x, y in zip(a, d, strict=False))


def test_video_plan_roles_index_the_batch(data):
    exp = video_exp()
    a, p, n = losses.trial_roles(data.train.items, data.train.odd)
    all_roles = {tuple(r) for r in np.stack([a, p, n], 1).tolist()}
    for spec in task.epoch_plan(exp, data, 0):
        ids = spec.videos
        roles = ids[spec.roles]  # positions back to video ids
        assert {tuple(r) for r in roles.tolist()} <= all_roles
        inside = np.isin(np.stack([a, p, n], 1), ids).all(axis=1)
        assert len(roles) == inside.sum()  # every judged trial among the batch's videos, once
        batch, w, n_clips = task.make_batch(exp, data, spec)
        assert n_clips == 12 and w.video and w.use_rsa and w.use_triplet
        assert batch["valid"].sum() == len(roles) and len(batch["valid"]) % 16 == 0
        assert batch["rsa_dist"].shape == (12, 12)


def test_video_mode_has_one_batch_shape_for_the_whole_run(data):
    exp = video_exp(epochs=4)
    pad = task.video_pad(exp, data)
    shapes = set()
    most = 0
    for epoch in range(exp.epochs):
        for spec in task.epoch_plan(exp, data, epoch):
            batch, _, _ = task.make_batch(exp, data, spec, pad=pad)
            shapes.add(tuple((k, v.shape) for k, v in sorted(batch.items())))
            most = max(most, len(spec.roles))
    assert len(shapes) == 1  # one compile per run
    assert pad % 16 == 0 and most <= pad < most + 16  # the fullest batch of any epoch, rounded up


def test_triplet_plan_matches_the_paper(data):
    exp = dataclasses.replace(experiments.get("demo"), batch_trials=4)
    plan = task.epoch_plan(exp, data, 0)
    assert len(plan) == -(-len(data.train) // 4)
    assert sum(s.rsa for s in plan) == exp.rsa_per_epoch
    _, w, n_clips = task.make_batch(exp, data, next(s for s in plan if s.rsa))
    assert n_clips == 3 * 4 + exp.rsa_videos and not w.video
    rsa_only = task.epoch_plan(dataclasses.replace(exp, loss="rsa"), data, 0)
    assert len(rsa_only) == exp.rsa_per_epoch and all(s.rsa for s in rsa_only)


def test_video_mode_config_errors():
    with pytest.raises(Exception, match="triplet-mode"):
        video_exp(loss="budget_matched")
    with pytest.raises(Exception, match="video_batch"):
        dataclasses.replace(video_exp(), video_batch=2)
    with pytest.raises(Exception, match="mode"):
        dataclasses.replace(experiments.get("demo"), mode="videos")
