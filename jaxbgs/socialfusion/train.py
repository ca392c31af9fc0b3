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

Joint training draws every task down to the smallest task's size afresh each epoch; the epoch's
batches are a pure function of (seed, epoch), and `--resume` replays them from the checkpointed
position, so a resumed run equals an uninterrupted one. Class scores for mAP are the softmax of the
next-token logits over the task's answer tokens.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from experiments.socialfusion import SocialFusionExperiment
from jaxbgs import sharding
from jaxbgs.errors import InputError
from jaxbgs.files import start_run, write_text_atomic
from jaxbgs.models import llama
from jaxbgs.socialfusion import features, gaze, metrics, prompts
from jaxbgs.socialfusion.data.readers import EVAL_SPLIT, read

# DEMO_DIRS: the sub-directory names of real layouts too
from jaxbgs.socialfusion.data.synthetic import DEMO_DIRS, VERSION, write_demo_datasets
from jaxbgs.socialfusion.model import Config, SocialFusion
from jaxbgs.trainer.loop import Progress, TrainingError, _ckpt_manager, _save, _Stop, restore
from jaxbgs.trainer.step import ShardedTrainer, make_optimizer

DEMO_EMBED_STD = 0.5
WHERE = {
    "data": "a directory holding the datasets in their native layouts: hagrid/ (HaGRIDv2), pisc/ (PISC), "
    "ego4d_lam/ (Ego4D Looking-At-Me), gazefollow/ (GazeFollow), affectnet/ (AffectNet)",
    "weights": f"Llama 3.2 1B with its tokenizer (gated: huggingface-cli download {llama.HF_ID} "
    "--local-dir DIR)",
}


# ---------------------------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True, eq=False)
class RunData:
    """Pools per task (train and eval split), each task's prompt tokens and answer token ids."""

    tasks: tuple[str, ...]
    train: dict[str, features.Pool]
    eval: dict[str, features.Pool]
    tokens: np.ndarray  # (tasks, L) left-padded prompts, row = position in `tasks`
    token_mask: np.ndarray
    answer_ids: dict[str, np.ndarray]  # task -> (options,) first token of each answer
    option_of_class: dict[str, np.ndarray]  # task -> (classes,) option index, -1 if not an option
    dropped: dict[str, dict[str, int]]  # task -> reason -> count (readers' protocol and ours)


def data_dir(exp: SocialFusionExperiment, task: str) -> Path:
    for entry in exp.data_dirs:
        t, _, path = entry.partition(":")
        if t == task:
            return Path(path).expanduser()
    if exp.data is None:
        raise InputError(
            f"experiment {exp.name!r} needs --data", fix=f"provide {WHERE['data']}. Nothing was run"
        )
    return Path(exp.data).expanduser() / DEMO_DIRS[task]


def demo_root(exp: SocialFusionExperiment) -> Path:
    """The demo's generated datasets (written once per seed into the cache)."""
    root = Path(exp.cache) / f"socialfusion-demo-data-v{VERSION}-seed{exp.seed}-n{exp.demo_per_class}"
    if not (root / ".complete").is_file():
        write_demo_datasets(root, seed=exp.seed, image_size=96, per_class=exp.demo_per_class)
        (root / ".complete").write_text("ok\n")
    return root


def check_inputs(exp: SocialFusionExperiment) -> None:
    """Stop before any work when an input is missing, naming every one of them."""
    if exp.demo:
        return
    missing = []
    if exp.data is None and not all(any(e.startswith(t + ":") for e in exp.data_dirs) for t in exp.tasks):
        missing.append(f"--data: {WHERE['data']}")
    if exp.weights is None:
        missing.append(f"--weights: {WHERE['weights']}")
    if exp.encoder_weights is None:
        missing.append(f"--set encoder_weights=DIR: {features.DEFAULT_WEIGHTS[exp.encoder]}")
    if missing:
        raise InputError(
            f"experiment {exp.name!r} needs inputs", fix="provide " + "; ".join(missing) + ". Nothing was run"
        )
    dirs = {data_dir(exp, t): t for t in exp.tasks}  # the two PISC tasks share one directory
    problems = [f"--data: no {t} dataset directory {d}" for d, t in dirs.items() if not d.is_dir()]
    for flag, value in (("--weights", exp.weights), ("--set encoder_weights", exp.encoder_weights)):
        if (why := _absent(value)) is not None:
            problems.append(f"{flag}: {why}")
    if problems:
        raise InputError(
            f"{len(problems)} missing input(s): " + "; ".join(problems),
            fix=f"provide each of them ({WHERE['data']} for the datasets). Nothing was run",
        )


def _absent(value: str) -> str | None:
    """Why a path or Hub id cannot be found here, or None when it can (its contents are read later)."""
    if Path(value).expanduser().exists():
        return None
    from jaxbgs.eval.language import resolve_model_dir

    try:
        resolve_model_dir(value)
    except InputError as e:
        return str(e)
    return None


def load_tokenizer(exp: SocialFusionExperiment):
    if exp.demo:
        return prompts.demo_tokenizer()
    return llama.load_tokenizer(llm_dir(exp))


def llm_dir(exp: SocialFusionExperiment) -> Path:
    """`--weights` as given, or the HF cache's copy of a Hub id."""
    path = Path(exp.weights).expanduser()
    if path.exists():
        return path
    from jaxbgs.eval.language import resolve_model_dir

    return resolve_model_dir(exp.weights)


def load_data(exp: SocialFusionExperiment, encoder: features.Encoder, tokenizer) -> RunData:
    root = demo_root(exp) if exp.demo else None
    train, evals, dropped = {}, {}, {}
    for task in exp.tasks:
        where = root / DEMO_DIRS[task] if root is not None else data_dir(exp, task)
        pools = []
        for split in ("train", EVAL_SPLIT[task]):
            samples = read(task, where, split, limit=exp.limit)
            keep = [s for s in samples if task == "gaze" or prompts.option_index(task)[s.label] >= 0]
            drops = dict(samples.dropped)
            if len(keep) < len(samples):  # HaGRID no_gesture hands are not an option of the prompt
                drops["class is not an answer option"] = len(samples) - len(keep)
            dropped[f"{task}/{split}"] = drops
            pools.append(
                features.build_pool(
                    task, keep, encoder, size=exp.image_size, mode=exp.image_mode, cache=exp.cache
                )
            )
        train[task], evals[task] = pools
    tokens, mask = prompts.encode_prompts(tokenizer, exp.tasks)
    answer = {t: prompts.answer_token_ids(tokenizer, t) for t in exp.tasks if t != "gaze"}
    options = {t: prompts.option_index(t) for t in exp.tasks if t != "gaze"}
    return RunData(exp.tasks, train, evals, tokens, mask, answer, options, dropped)


def epoch_plan(exp: SocialFusionExperiment, data: RunData, epoch: int) -> list[np.ndarray]:
    """The epoch's batches as (B, 2) rows of (task position, row in that task's train pool); -1 pads
    a short batch. Joint runs draw each task down to the smallest (paper §3.2) afresh each epoch;
    `batch_by_task` keeps each batch to one task (an ablation: in the demo it left gesture near chance)."""
    rng = np.random.default_rng([exp.seed, epoch, 17])
    sizes = [len(data.train[t]) for t in data.tasks]
    n = min(sizes) if exp.undersample and len(sizes) > 1 else None
    rows = []
    for k, size in enumerate(sizes):
        pick = rng.permutation(size)[:n] if n is not None else rng.permutation(size)
        rows.append(np.stack([np.full(len(pick), k), pick], axis=1))
    b = exp.batch_size

    def chunks(r: np.ndarray) -> list[np.ndarray]:
        r = np.concatenate([r, np.full((-len(r) % b, 2), -1)])
        return [r[i : i + b] for i in range(0, len(r), b)]

    if exp.batch_by_task:
        batches = [c for r in rows for c in chunks(r)]
        return [batches[i] for i in rng.permutation(len(batches))]
    rows = np.concatenate(rows)
    return chunks(rows[rng.permutation(len(rows))])


def _bucket(n: int, quantum: int = 64) -> int:
    return -(-n // quantum) * quantum


def make_batch(data: RunData, rows: np.ndarray, pools: dict[str, features.Pool]) -> dict:
    """Host arrays of one batch; padded rows (-1) take the first row of the first task, weight 0."""
    valid = rows[:, 0] >= 0
    task_pos = np.where(valid, rows[:, 0], 0)
    idx = np.where(valid, rows[:, 1], 0)
    first = pools[data.tasks[0]]
    b = len(rows)
    out = {
        "features": np.zeros((b, *first.features.shape[1:]), np.float16),
        "boxes": np.zeros((b, features.MAX_BOXES, 4), np.float32),
        "box_valid": np.zeros((b, features.MAX_BOXES), bool),
        "answer": np.zeros(b, np.int32),
        "is_cls": np.zeros(b, np.float32),
        "is_gaze": np.zeros(b, np.float32),
        "heat": np.zeros((b, gaze.SIZE, gaze.SIZE), np.float32),
    }
    for k, task in enumerate(data.tasks):
        sel = np.flatnonzero(task_pos == k)
        if not len(sel):
            continue
        pool, r = pools[task], idx[sel]
        out["features"][sel] = pool.features[np.sort(r)][np.argsort(np.argsort(r))]  # sorted reads: mmap
        out["boxes"][sel], out["box_valid"][sel] = pool.boxes[r], pool.box_valid[r]
        if task == "gaze":
            out["is_gaze"][sel] = valid[sel]
            first_point = np.where(pool.point_mask[r, :1, None], pool.points[r, :1], -1.0)[:, 0]
            out["heat"][sel] = gaze.target_heatmap(first_point)
        else:
            out["is_cls"][sel] = valid[sel]
            out["answer"][sel] = data.answer_ids[task][data.option_of_class[task][pool.labels[r]]]
    # The prompts go in once each (rows point at theirs: the LLM runs each prompt once, not per row):
    # the one task's prompt, or all of them when rows mix tasks, so a run compiles a few shapes. Left
    # padding: drop the pad columns no row needs (lengths bucketed to multiples of 64).
    present = np.unique(task_pos)
    table = present if len(present) == 1 else np.arange(len(data.tasks))
    need = int(data.token_mask[present].sum(axis=1).max())
    keep = min(data.tokens.shape[1], _bucket(need))
    out["tokens"] = data.tokens[table, -keep:]
    out["token_mask"] = data.token_mask[table, -keep:]
    out["prompt"] = np.searchsorted(table, task_pos).astype(np.int32)
    return out


# ------------------------------------------------------------------------------------------- trainer


class Trainer(ShardedTrainer):
    """SocialFusion's loss on BGS's sharded update; `lam` weighs the heatmap BCE (paper §3.4)."""

    def __init__(self, model: SocialFusion, optimizer, *, lam: float, mesh=None):
        super().__init__(model, optimizer, mesh=mesh)
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

    def step(self, trainable, opt_state, batch, key):
        return self.update(trainable, opt_state, batch, key)

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
    return data, Trainer(model, optimizer, lam=exp.lam, mesh=sharding.make_mesh(exp.mesh))


# ----------------------------------------------------------------------------------------------- fit


def fit(exp: SocialFusionExperiment, trainer: Trainer, data: RunData, run_dir: Path, *, resume: bool = False):
    """Train `epochs` (or to `max_steps`, or a stop signal); returns (trainable, progress)."""
    mgr = _ckpt_manager(run_dir)
    if resume:
        trainable, opt_state, progress = restore(run_dir, trainer)
    else:
        trainable, opt_state = trainer.init()
        progress = Progress()
    key = jax.random.key(exp.seed)
    main = sharding.is_main_process()
    log = (run_dir / "metrics.jsonl").open("a") if main else open(os.devnull, "w")
    with _Stop() as stop, log:
        while progress.epoch < exp.epochs and not progress.done:
            plan = epoch_plan(exp, data, progress.epoch)
            bar = tqdm(
                total=len(plan),
                initial=progress.step_in_epoch,
                unit="step",
                leave=False,
                desc=f"epoch {progress.epoch + 1}/{exp.epochs}",
                disable=None if main else True,
            )
            for s in range(progress.step_in_epoch, len(plan)):
                if stop.requested or (exp.max_steps is not None and progress.global_step >= exp.max_steps):
                    _save(mgr, progress, trainable, opt_state, run_dir)
                    bar.close()
                    return trainable, progress
                t0 = time.perf_counter()
                batch = make_batch(data, plan[s], data.train)
                trainable, opt_state, out = trainer.step(
                    trainable, opt_state, batch, jax.random.fold_in(key, progress.global_step)
                )
                out = {k: float(v) for k, v in out.items()}
                if not all(math.isfinite(v) for v in out.values()):
                    raise TrainingError(
                        f"non-finite loss or gradient at epoch {progress.epoch + 1} step {s} ({out}); "
                        f"the last good checkpoint is in {run_dir / 'checkpoints'}"
                    )
                record = {
                    "step": progress.global_step,
                    "epoch": progress.epoch + 1,
                    "step_in_epoch": s,
                    **out,
                    "lr": float(opt_state.hyperparams["learning_rate"]),
                    "rows": int((plan[s][:, 0] >= 0).sum()),
                    "s": time.perf_counter() - t0,
                }
                log.write(json.dumps(record) + "\n")
                progress.global_step += 1
                progress.step_in_epoch = s + 1
                bar.set_postfix(loss=f"{out['loss']:.3f}")
                bar.update(1)
            bar.close()
            log.flush()
            progress.epoch += 1
            progress.step_in_epoch = 0
            progress.done = progress.epoch >= exp.epochs
            _save(mgr, progress, trainable, opt_state, run_dir)
    return trainable, progress


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
    from jaxbgs.lora import summary as lora_summary

    run_dir = Path(exp.run_dir)
    start_run(run_dir, exp.to_json(), resume=resume)
    t0 = time.perf_counter()
    data, trainer = prepare(exp)
    main = sharding.is_main_process()
    log = sharding.main_print
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.json", json.dumps(exp.to_json(), indent=2) + "\n")
    log(f"{exp.name}: {lora_summary(trainer.merged_model(trainer.init_trainable))}")
    log(
        "train "
        + ", ".join(f"{t} {len(data.train[t])}" for t in data.tasks)
        + "; eval "
        + ", ".join(f"{t} {len(data.eval[t])}" for t in data.tasks)
    )
    t_data = time.perf_counter() - t0
    trainable, progress = fit(exp, trainer, data, run_dir, resume=resume)
    if not progress.done:
        log(
            f"stopped at step {progress.global_step}; continue with --exp {exp.name} --resume --out {run_dir}"
        )
        return {"stopped_at_step": progress.global_step}
    res = {"tasks": evaluate(trainer, trainable, data, batch=exp.batch_size)}
    res["margin_over_chance"] = margins(res["tasks"])
    res |= {
        "steps": progress.global_step,
        "epochs": progress.epoch,
        "dropped": data.dropped,
        "seconds_data": t_data,
        "seconds_total": time.perf_counter() - t0,
    }
    merged = trainer.merged_model(trainable)
    if main:
        from jaxbgs.socialfusion import export

        res["export_torch"] = str(export.to_torch(merged, run_dir / "export" / "torch"))
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
