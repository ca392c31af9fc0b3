"""SocialFusion's epochs and batches: undersampling to the smallest task, answers, heatmaps and the
shared prompt table."""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest

import experiments
from jaxbgs.socialfusion import batches as sfb
from jaxbgs.socialfusion import gaze


def _fake(sizes: dict[str, int]):
    return types.SimpleNamespace(tasks=tuple(sizes), train={t: range(n) for t, n in sizes.items()})


@pytest.mark.parametrize("by_task", [False, True])
def test_joint_epochs_undersample_every_task_to_the_smallest(by_task):
    exp = dataclasses.replace(experiments.get("socialfusion"), batch_size=4, batch_by_task=by_task)
    data = _fake({"gesture": 10, "lam": 6, "gaze": 9})
    plans = [sfb.epoch_plan(exp, data, e) for e in (0, 1)]
    for plan in plans:
        rows = np.concatenate(plan)
        real = rows[rows[:, 0] >= 0]
        assert np.bincount(real[:, 0]).tolist() == [6, 6, 6]  # each task drawn down to lam's 6
        for k in range(3):  # without repeats, inside the task's pool
            r = real[real[:, 0] == k, 1]
            assert len(set(r.tolist())) == 6 and r.max() < [10, 6, 9][k]
        if by_task:
            assert all(len(set(b[b[:, 0] >= 0, 0].tolist())) == 1 for b in plan)
    first = np.concatenate(plans[0])
    assert not np.array_equal(first, np.concatenate(plans[1]))  # a fresh draw each epoch
    assert np.array_equal(first, np.concatenate(sfb.epoch_plan(exp, data, 0)))  # a pure function
    single = dataclasses.replace(exp, tasks=("gesture",))
    assert sum((b[:, 0] >= 0).sum() for b in sfb.epoch_plan(single, _fake({"gesture": 10}), 0)) == 10


def test_batches_carry_answers_heatmaps_and_trimmed_prompts(prepared):
    exp, data, _ = prepared
    plan = sfb.epoch_plan(exp, data, 0)
    for rows in plan[:6]:
        b = sfb.make_batch(data, rows, data.train)
        valid = rows[:, 0] >= 0
        assert (b["is_cls"] + b["is_gaze"] == valid).all()
        for i in np.flatnonzero(valid):
            task = data.tasks[rows[i, 0]]
            pool = data.train[task]
            if task == "gaze":
                p = pool.points[rows[i, 1], 0]
                y, x = np.unravel_index(b["heat"][i].argmax(), b["heat"][i].shape)
                assert (x, y) == (int(p[0] * gaze.SIZE), int(p[1] * gaze.SIZE)) and b["answer"][i] == 0
            else:
                option = data.option_of_class[task][pool.labels[rows[i, 1]]]
                assert b["answer"][i] == data.answer_ids[task][option] and not b["heat"][i].any()
            full = data.tokens[rows[i, 0]][data.token_mask[rows[i, 0]]]
            mine = b["prompt"][i]  # the row's entry in the batch's prompt table (each prompt once)
            assert np.array_equal(b["tokens"][mine][b["token_mask"][mine]], full)  # trimming kept it
        assert len(b["tokens"]) == (1 if len(np.unique(rows[valid, 0])) == 1 else len(data.tasks))
        assert b["tokens"].shape[1] % 64 == 0 or b["tokens"].shape[1] == data.tokens.shape[1]
