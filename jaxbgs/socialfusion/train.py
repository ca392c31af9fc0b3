"""SocialFusion training and evaluation (second paper, §3.4 objective, §4 protocol).

    python -m jaxbgs.train --exp socialfusion-demo       # generated data, CPU minutes
    python -m jaxbgs.train --exp socialfusion --data DIR --weights LLAMA_DIR

Every step mixes tasks in one batch (the paper shuffles them within batches): each row is a task
prompt (App. D) followed by the image tokens, and each prompt runs through the LLM once per step,
shared by the rows that read it (`llama.Model.prefixed`: exact, as attention is causal).
Classification rows are trained with the LM cross-entropy of their answer token (an option letter,
or Yes/No), gaze rows with the pixel-wise BCE of the heatmap head against the sigma=3 Gaussian; loss
= mean CE over classification rows + lambda * mean BCE over gaze rows. The update is BGS's: the
trainable state (connector, box vector, gaze head, LoRA) split from the frozen LLM,
`jax.value_and_grad`, one jit with explicit shardings over `jaxbgs.sharding`'s mesh and donation
(`ShardedTrainer`).

The data, prompts and epoch plans are `jaxbgs.socialfusion.batches`; the loop is the engine both
papers share (`jaxbgs.training.fit`), so `--resume` replays a run exactly whatever stopped it.
Class scores for mAP are the softmax of the next-token logits over the task's answer tokens.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments.socialfusion import SocialFusionExperiment
from jaxbgs import sharding
from jaxbgs.errors import InputError
from jaxbgs.files import write_text_atomic
from jaxbgs.models import llama
from jaxbgs.socialfusion import features, metrics
from jaxbgs.socialfusion.batches import (
    RunData,
    check_inputs,
    epoch_plan,
    llm_dir,
    load_data,
    load_tokenizer,
    make_batch,
)
from jaxbgs.socialfusion.model import Config, SocialFusion
from jaxbgs.training.loop import Batch, FitConfig, Task, fit
from jaxbgs.training.trainer import ShardedTrainer, make_optimizer

DEMO_EMBED_STD = 0.5


# ------------------------------------------------------------------------------------------- trainer


class Trainer(ShardedTrainer):
    """SocialFusion's loss on BGS's sharded update; `lam` weighs the heatmap BCE (paper §3.4)."""

    def __init__(self, model: SocialFusion, optimizer, *, lam: float, mesh=None, seed: int = 0):
        super().__init__(model, optimizer, mesh=mesh, seed=seed)
        self.lam = lam

    def _forward(self, trainable, rest, batch):
        m = nnx.merge(self.graphdef, trainable, rest, copy=True)
        return m(
            batch["features"], batch["tokens"], batch["token_mask"], batch["boxes"], batch["box_valid"],
            prompt=batch["prompt"],
        )  # fmt: skip

    def loss(self, trainable, rest, batch, key, static=None):
        out = self._forward(trainable, rest, batch)
        logp = jax.nn.log_softmax(out.logits.astype(jnp.float32))
        ce = -jnp.take_along_axis(logp, batch["answer"][:, None], axis=1)[:, 0]
        lm = (ce * batch["is_cls"]).sum() / jnp.maximum(batch["is_cls"].sum(), 1.0)
        bce = optax.sigmoid_binary_cross_entropy(out.heatmap.astype(jnp.float32), batch["heat"]).mean((1, 2))
        heat = (bce * batch["is_gaze"]).sum() / jnp.maximum(batch["is_gaze"].sum(), 1.0)
        return lm + self.lam * heat, {"lm": lm, "heatmap": heat}

    def step(self, trainable, opt_state, batch, step):
        """One update at global step `step`; returns a `StepOut` (device metrics, next counter)."""
        return self.update(trainable, opt_state, batch, step)

    def predict(self, trainable, batch: dict, ids: np.ndarray):
        """(logits at `ids` (B, len(ids)), sigmoid heatmaps (B, 64, 64)) on host, for any mesh."""
        batch = self.place(batch)
        sig = ("predict", tuple((k, v.shape, v.sharding) for k, v in sorted(batch.items())), len(ids))
        if sig not in self._steps:

            def run(trainable, rest, batch, ids):
                out = self._forward(trainable, rest, batch)
                return out.logits[:, ids], jax.nn.sigmoid(out.heatmap)

            bs = {k: v.sharding for k, v in batch.items()}
            rep = self.replicated
            self._steps[sig] = jax.jit(
                run, in_shardings=(self.shardings, self.rest_shardings, bs, rep), out_shardings=rep
            )
        with jax.set_mesh(self.mesh):
            ids = jax.device_put(np.asarray(ids, np.int32), self.replicated)
            return sharding.to_host(self._steps[sig](trainable, self.rest, batch, ids))


def model_config(exp: SocialFusionExperiment, encoder: features.Encoder, vocab: int) -> Config:
    grid = encoder.model.cfg.image_size // encoder.model.cfg.patch_size
    if exp.demo:
        llm = llama.Config(
            vocab_size=vocab,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            rope_theta=10000.0,
            dtype=exp.dtype,
            remat=exp.remat,
            rope_scaling=llama.RopeScaling(factor=8.0, original_max_position_embeddings=256),
        )
    else:
        llm = llama.Config.llama32_1b(dtype=exp.dtype, remat=exp.remat)
    return Config(
        llm=llm,
        feature_dim=encoder.feature_dim,
        grid=grid,
        connector_hidden=exp.connector_hidden,
        lora_rank=exp.lora_rank,
        lora_alpha=exp.lora_alpha,
        gaze_channels=exp.gaze_channels,
    )


def build_model(exp: SocialFusionExperiment, cfg: Config) -> SocialFusion:
    """Connector, box vector and head from the seed; the LLM random (demo) or from `exp.weights`."""
    model = SocialFusion(cfg, rngs=nnx.Rngs(exp.seed))
    if exp.demo:
        # The demo's LLM is random and frozen. At transformers' init (std 0.02) a tied head caps every
        # logit near +-1 for width 64, so no answer could become likely; unit-scale embeddings (a
        # trained LLM's are far from 0.02 too) leave the head room to answer.
        emb = model.llm.embed_tokens
        emb.set_value(emb[...] * (DEMO_EMBED_STD / 0.02))
    else:
        from checkpoints_convert import convert

        llm, _, _ = convert.from_torch(
            "llama", llm_dir(exp), lora=cfg.lora, seed=exp.seed, dtype=exp.dtype, remat=exp.remat
        )
        if llm.cfg.hidden_size != cfg.llm.hidden_size or llm.cfg.vocab_size != cfg.llm.vocab_size:
            cfg = dataclasses.replace(cfg, llm=llm.cfg)
            model = SocialFusion(cfg, rngs=nnx.Rngs(exp.seed))
        model.llm = llm
    return model


def encoder_for(exp: SocialFusionExperiment) -> features.Encoder:
    if exp.demo:
        return features.demo_encoder(exp.image_size, seed=exp.seed)
    return features.load_encoder(exp.encoder, exp.encoder_weights)


def prepare(exp: SocialFusionExperiment):
    """(data, trainer) for `exp`: inputs checked, pools built or read from the cache, model built."""
    check_inputs(exp)
    encoder = encoder_for(exp)
    if encoder.model.cfg.image_size != exp.image_size:
        raise InputError(
            f"the {exp.encoder} encoder takes {encoder.model.cfg.image_size} px images, "
            f"the run {exp.image_size}",
            where="image_size",
            fix=f"--set image_size={encoder.model.cfg.image_size}",
        )
    tokenizer = load_tokenizer(exp)
    data = load_data(exp, encoder, tokenizer)
    cfg = model_config(exp, encoder, len(tokenizer))
    model = build_model(exp, cfg)
    steps = exp.epochs * len(epoch_plan(exp, data, 0))
    optimizer = make_optimizer(
        exp.lr, exp.weight_decay, schedule="cosine", warmup_steps=exp.warmup_steps, total_steps=steps
    )
    return data, Trainer(model, optimizer, lam=exp.lam, mesh=sharding.make_mesh(exp.mesh), seed=exp.seed)


# ----------------------------------------------------------------------------------------------- fit


class SocialFusionTask(Task):
    """Joint (or single-task) epochs as `jaxbgs.training.fit` runs them; no validation split: the
    last epoch is kept, as the paper reports."""

    def __init__(self, exp: SocialFusionExperiment, data: RunData, trainer: Trainer):
        self.exp, self.data, self.trainer = exp, data, trainer

    def plan(self, epoch: int) -> list[np.ndarray]:
        return epoch_plan(self.exp, self.data, epoch)

    def load(self, rows: np.ndarray) -> Batch:
        batch = sharding.local_batch(make_batch(self.data, rows, self.data.train), self.trainer.mesh)
        return Batch(batch, None, {"rows": int((rows[:, 0] >= 0).sum())})


def fit_config(exp: SocialFusionExperiment) -> FitConfig:
    return FitConfig(
        epochs=exp.epochs,
        max_steps=exp.max_steps,
        checkpoint_every=exp.checkpoint_every,
        log_every=exp.log_every,
    )


# ------------------------------------------------------------------------------------------ evaluate


def predict_pool(trainer: Trainer, trainable, data: RunData, task: str, pool: features.Pool, batch: int):
    """(logits at the task's answer tokens (N, options), heatmaps (N, 64, 64)) for every row of `pool`."""
    k = data.tasks.index(task)
    ids = data.answer_ids.get(task, np.zeros(1, np.int32))
    logits, maps = [], []
    for a in range(0, len(pool), batch):
        rows = np.full((batch, 2), -1)
        n = min(batch, len(pool) - a)
        rows[:n, 0], rows[:n, 1] = k, np.arange(a, a + n)
        lg, hm = trainer.predict(trainable, make_batch(data, rows, {**data.eval, task: pool}), ids)
        logits.append(lg[:n])
        maps.append(hm[:n])
    return np.concatenate(logits), np.concatenate(maps)


def class_scores(data: RunData, task: str, logits: np.ndarray) -> np.ndarray:
    """Softmax over the answer options, laid out per dataset class (a class that is no option: 0)."""
    p = np.asarray(jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1))
    opt = data.option_of_class[task]
    return np.where(opt >= 0, p[:, np.maximum(opt, 0)], 0.0)


def evaluate(trainer: Trainer, trainable, data: RunData, *, batch: int = 32, n_perm: int = 2000) -> dict:
    """Per task: the paper's metrics on its evaluation split, their chance levels and, for the
    classification tasks, the label-shuffle null (its mean and the permutation p)."""
    out = {}
    for task in data.tasks:
        pool = data.eval[task]
        logits, maps = predict_pool(trainer, trainable, data, task, pool, batch)
        if task == "gaze":
            inside = pool.point_mask.any(axis=1)  # heads with a target in frame (the protocol's test set)
            labels = {
                "points": pool.source_points[inside],
                "masks": pool.point_mask[inside],
                "sizes": pool.sizes[inside],
            }
            scores = features.content_heatmap(maps[inside], pool.content[inside])
        elif task == "lam":
            scores, labels = class_scores(data, task, logits)[:, 1], pool.labels
        else:
            scores, labels = class_scores(data, task, logits), pool.labels
        out[task] = {
            "metrics": metrics.task_metrics(task, scores, labels),
            "chance": metrics.chance(task, labels),
            "n": int(len(scores)),
        }
        if task != "gaze":  # what scores unrelated to the labels reach here, and how often
            null = metrics.permutation_null(task, scores, labels, n_perm=n_perm, seed=0)
            out[task] |= {
                "null": {k: v["null"] for k, v in null.items()},
                "p": {k: v["p"] for k, v in null.items()},
            }
    return out


def margins(results: dict) -> dict:
    """Per task and metric: how far the model is past chance (positive = better; L2s: chance minus ours);
    for classification the chance is the label-shuffle null's mean where it is higher than 1 / C."""
    out = {}
    for task, r in results.items():
        out[task] = {}
        for k, v in r["metrics"].items():
            c = r["chance"][k]
            if k in r.get("null", {}):
                c = max(c, r["null"][k])
            out[task][k] = float(c - v if k in metrics.LOWER_IS_BETTER else v - c)
    return out


def run(exp: SocialFusionExperiment, *, resume: bool = False) -> dict:
    """Train `exp` into its run directory, evaluate and export (`jaxbgs.train.run`'s lifecycle)."""
    from jaxbgs.lora import summary as lora_summary
    from jaxbgs.training.checkpoint import Checkpoints
    from jaxbgs.training.run import RunDir

    log = sharding.main_print
    with RunDir(exp.run_dir, exp.to_json(), resume=resume) as run_dir:
        if run_dir.finished:
            log(f"{run_dir.path}: the run is finished (results.json); nothing to do")
            return run_dir.results()
        t0 = time.perf_counter()
        data, trainer = prepare(exp)
        run_dir.write_config()
        log(f"{exp.name}: {lora_summary(trainer.merged_model(trainer.init_trainable))}")
        log(
            "train "
            + ", ".join(f"{t} {len(data.train[t])}" for t in data.tasks)
            + "; eval "
            + ", ".join(f"{t} {len(data.eval[t])}" for t in data.tasks)
        )
        t_data = time.perf_counter() - t0
        fitted = fit(trainer, SocialFusionTask(exp, data, trainer), run_dir.path, fit_config(exp),
                     resume=run_dir.resume)  # fmt: skip
        progress = fitted.progress
        if not progress.done:
            log(
                f"stopped at step {progress.global_step}; continue with --exp {exp.name} --resume "
                f"--out {exp.run_dir}"
            )
            return {"stopped_at_step": progress.global_step, "signal": fitted.signal}
        trainable, _ = Checkpoints(run_dir.path).load_best(trainer)  # the last epoch: no validation
        return finish(exp, run_dir.path, data, trainer, trainable, progress, time.perf_counter() - t0, t_data)


def finish(exp, run_dir: Path, data: RunData, trainer: Trainer, trainable, progress, seconds: float, t_data):
    """Evaluation and the PyTorch export; results.json last, so `--resume` redoes an interrupted one."""
    from jaxbgs.files import atomic_path
    from jaxbgs.training import faults

    faults.point("evaluating")
    t0 = time.perf_counter()
    res = {"tasks": evaluate(trainer, trainable, data, batch=exp.batch_size)}
    res["margin_over_chance"] = margins(res["tasks"])
    res |= {
        "steps": progress.global_step,
        "epochs": progress.epoch,
        "dropped": data.dropped,
        "seconds_data": t_data,
        "seconds_total": seconds + time.perf_counter() - t0,
    }
    merged = trainer.merged_model(trainable)
    if sharding.is_main_process():
        from jaxbgs.socialfusion import export

        with atomic_path(run_dir / "export", directory=True, replace=True) as tmp:
            faults.point("exporting")
            export.to_torch(merged, tmp / "torch")
        res["export_torch"] = str(run_dir / "export" / "torch")
        write_text_atomic(run_dir / "results.json", json.dumps(res, indent=2) + "\n")
    return res


def summary(res: dict) -> str:
    if "tasks" not in res:
        return json.dumps(res)
    lines = []
    for task, r in res["tasks"].items():
        parts = []
        for k, v in r["metrics"].items():
            ref = f"chance {r['chance'][k]:.3f}"
            if k in r.get("null", {}):
                ref += f", shuffled {r['null'][k]:.3f}, p {r['p'][k]:.4f}"
            parts.append(f"{k} {v:.3f} ({ref})")
        lines.append(f"{task:>14}: " + ", ".join(parts))
    return "\n".join(lines)
