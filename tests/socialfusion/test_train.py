"""SocialFusion training: undersampled epochs, batches, the loss against a hand computation, resume
equivalence, the missing-input messages and one tiny end-to-end demo run (results, export)."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import experiments
from jaxbgs.errors import InputError
from jaxbgs.socialfusion import batches as sfb
from jaxbgs.socialfusion import train as sft
from jaxbgs.training.checkpoint import Checkpoints
from jaxbgs.training.loop import fit
from tests.socialfusion.conftest import tiny


def test_loss_is_answer_cross_entropy_plus_lambda_heatmap_bce(prepared):
    exp, data, trainer = prepared
    rows = np.concatenate(
        [b for b in sfb.epoch_plan(dataclasses.replace(exp, batch_by_task=False), data, 0)]
    )[:8]
    batch = sfb.make_batch(data, rows, data.train)
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
    task = sft.SocialFusionTask(exp, data, trainer)
    cfg = sft.fit_config(dataclasses.replace(exp, log_every=3))
    full = fit(trainer, task, full_dir, cfg)
    progress = full.progress
    assert progress.done and progress.global_step == 2 * len(sfb.epoch_plan(exp, data, 0))
    stop = progress.global_step // 2 + 1  # mid-epoch
    part = fit(trainer, task, part_dir, dataclasses.replace(cfg, max_steps=stop))
    assert not part.progress.done and part.progress.global_step == stop
    resumed = fit(trainer, task, part_dir, cfg, resume=True)
    assert resumed.progress.done
    for a, b in zip(jax.tree.leaves(full.trainable), jax.tree.leaves(resumed.trainable), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    init, _ = trainer.init()
    assert any(
        not np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(init), jax.tree.leaves(full.trainable), strict=True)
    )
    rows = [json.loads(line) for line in (part_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "step" in r] == list(range(progress.global_step))  # each once
    assert [r["epoch"] for r in rows if "step" not in r] == [1, 2]
    best, best_progress = Checkpoints(part_dir).load_best(trainer)  # no validation: the last epoch
    assert best_progress.epoch == 2 and best_progress.best_epoch == 1
    for a, b in zip(jax.tree.leaves(best), jax.tree.leaves(full.trainable), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


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
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert res["steps"] == sum("step" in r for r in rows)
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
