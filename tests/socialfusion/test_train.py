"""SocialFusion training: undersampled epochs, batches, the loss against a hand computation, resume
equivalence, the missing-input messages and one tiny end-to-end demo run (results, export)."""

from __future__ import annotations

import dataclasses
import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import experiments
from jaxbgs.errors import InputError
from jaxbgs.socialfusion import gaze
from jaxbgs.socialfusion import train as sft


def tiny(tmp, **kw):
    small = dict(
        demo_per_class=3,
        image_size=32,
        connector_hidden=16,
        lora_rank=2,
        lora_alpha=4.0,
        gaze_channels=4,
        epochs=2,
        batch_size=8,
        warmup_steps=2,
        out=str(tmp / "run"),
        cache=str(tmp / "cache"),
    )
    return dataclasses.replace(experiments.get("socialfusion-demo"), **(small | kw))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sf")
    exp = tiny(tmp)
    data, trainer = sft.prepare(exp)
    return exp, data, trainer


def _fake(sizes: dict[str, int]):
    return types.SimpleNamespace(tasks=tuple(sizes), train={t: range(n) for t, n in sizes.items()})


@pytest.mark.parametrize("by_task", [False, True])
def test_joint_epochs_undersample_every_task_to_the_smallest(by_task):
    exp = dataclasses.replace(experiments.get("socialfusion"), batch_size=4, batch_by_task=by_task)
    data = _fake({"gesture": 10, "lam": 6, "gaze": 9})
    plans = [sft.epoch_plan(exp, data, e) for e in (0, 1)]
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
    assert np.array_equal(first, np.concatenate(sft.epoch_plan(exp, data, 0)))  # a pure function
    single = dataclasses.replace(exp, tasks=("gesture",))
    assert sum((b[:, 0] >= 0).sum() for b in sft.epoch_plan(single, _fake({"gesture": 10}), 0)) == 10


def test_batches_carry_answers_heatmaps_and_trimmed_prompts(prepared):
    exp, data, _ = prepared
    plan = sft.epoch_plan(exp, data, 0)
    for rows in plan[:6]:
        b = sft.make_batch(data, rows, data.train)
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


def test_loss_is_answer_cross_entropy_plus_lambda_heatmap_bce(prepared):
    exp, data, trainer = prepared
    rows = np.concatenate(
        [b for b in sft.epoch_plan(dataclasses.replace(exp, batch_by_task=False), data, 0)]
    )[:8]
    batch = sft.make_batch(data, rows, data.train)
    trainable, _ = trainer.init()
    placed = trainer.place(batch)
    total, parts = trainer.loss(trainable, trainer.rest, placed, jax.random.key(0))
    out = trainer._forward(trainable, trainer.rest, placed)
    logits, heat = np.asarray(out.logits, np.float64), np.asarray(out.heatmap, np.float64)
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    ce = lse - logits[np.arange(8), batch["answer"]]
    cls = batch["is_cls"] > 0
    t = batch["heat"].astype(np.float64)
    bce = (np.maximum(heat, 0) - heat * t + np.log1p(np.exp(-np.abs(heat)))).mean((1, 2))
    g = batch["is_gaze"] > 0
    lm = ce[cls].mean() if cls.any() else 0.0
    hm = bce[g].mean() if g.any() else 0.0
    assert cls.any() and g.any(), "the batch should mix both kinds of row"
    np.testing.assert_allclose([float(parts["lm"]), float(parts["heatmap"])], [lm, hm], rtol=1e-5)
    np.testing.assert_allclose(float(total), lm + trainer.lam * hm, rtol=1e-5)


def test_resumed_run_equals_uninterrupted(prepared, tmp_path):
    exp, data, trainer = prepared
    full_dir, part_dir = tmp_path / "full", tmp_path / "part"
    full_dir.mkdir(), part_dir.mkdir()
    full, progress = sft.fit(exp, trainer, data, full_dir)
    assert progress.done and progress.global_step == 2 * len(sft.epoch_plan(exp, data, 0))
    stop = progress.global_step // 2 + 1  # mid-epoch
    _, part = sft.fit(dataclasses.replace(exp, max_steps=stop), trainer, data, part_dir)
    assert not part.done and part.global_step == stop
    resumed, progress2 = sft.fit(exp, trainer, data, part_dir, resume=True)
    assert progress2.done
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    init, _ = trainer.init()
    assert any(
        not np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(init), jax.tree.leaves(full), strict=True)
    )
    steps = [json.loads(line)["step"] for line in (part_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(progress.global_step))  # every step logged once across the two legs


def test_missing_inputs_are_named_before_any_work(tmp_path):
    exp = dataclasses.replace(experiments.get("socialfusion"), out=str(tmp_path / "run"))
    with pytest.raises(InputError) as e:
        sft.prepare(exp)
    assert "--data" in str(e.value) and "--weights" in str(e.value)
    exp = dataclasses.replace(exp, data=str(tmp_path), weights=str(tmp_path / "llama"))
    with pytest.raises(InputError) as e:
        sft.prepare(exp)
    for absent in ("hagrid", "affectnet", "--weights: ", "llama: no such model directory", "encoder_weights"):
        assert absent in str(e.value)  # every missing input at once, not the first one found
    assert not (tmp_path / "run").exists()


def test_tiny_demo_runs_end_to_end(tmp_path):
    exp = tiny(tmp_path, epochs=1, tasks=("lam", "gaze", "emotion"))
    res = sft.run(exp)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(saved["tasks"]) == {"lam", "gaze", "emotion"}
    for r in saved["tasks"].values():
        assert set(r["metrics"]) <= set(r["chance"]) and r["n"] > 0
        assert all(np.isfinite(v) for v in r["metrics"].values())
    assert saved["margin_over_chance"]["gaze"]["auc"] == pytest.approx(
        saved["tasks"]["gaze"]["metrics"]["auc"] - 0.5
    )
    assert (tmp_path / "run" / "export" / "torch" / "socialfusion.safetensors").is_file()
    assert res["steps"] == len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
    with pytest.raises(InputError, match="already holds a run"):
        sft.run(exp)


def test_class_scores_are_option_softmax_in_class_order(prepared):
    _, data, _ = prepared
    logits = jnp.asarray(np.random.default_rng(0).standard_normal((3, len(data.answer_ids["emotion"]))))
    s = sft.class_scores(data, "emotion", np.asarray(logits))
    assert s.shape == (3, 8)
    np.testing.assert_allclose(s.sum(1), 1.0, rtol=1e-6)
    gesture = sft.class_scores(data, "gesture", np.zeros((2, 33))) if "gesture" in data.tasks else None
    if gesture is not None:
        assert gesture.shape == (2, 34) and (gesture[:, 33] == 0).all()  # no_gesture is no option
