"""The BGS training loop: seeded, resumable, checkpointed, stopped early on validation R^2.

Everything random is a pure function of (seed, epoch, step): the trial order of an epoch, the RSA
videos of a step, the dropout keys. A checkpoint holds the trainable state, the optimizer state
(with its learning rate), the position (epoch, step in epoch) and the early-stopping record, so a
resumed run replays exactly what an uninterrupted one does (bitwise on CPU).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from pathlib import Path

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from experiments import Experiment
from jaxbgs import losses, sharding
from jaxbgs.errors import InputError
from jaxbgs.eval.rsa import MIN_PAIRS, rsa, similarity_matrix
from jaxbgs.files import write_text_atomic
from jaxbgs.trainer.setup import RunData
from jaxbgs.trainer.step import LossWeights, Trainer


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite loss or gradients); the last good checkpoint is kept."""


@dataclasses.dataclass
class Progress:
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    plateau_bad: int = 0
    done: bool = False

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def beta_at(exp: Experiment, epoch: int) -> float:
    if exp.loss == "rsa":  # authors' RSA-only schedule: 0.5 + 0.1 per epoch, capped at 1
        return float(min(1.0, 0.5 + 0.1 * epoch))
    if exp.beta_schedule == "capped":
        return float(losses.beta_capped(epoch, start=exp.beta_start, cap=exp.beta_end))
    return float(losses.beta_linear(epoch, exp.epochs, start=exp.beta_start, end=exp.beta_end))


def epoch_trials(exp: Experiment, data: RunData, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(roles (T, 3) as anchor/positive/negative video ids, in this epoch's seeded order)."""
    trials = data.train
    a, p, n = losses.trial_roles(trials.items, trials.odd)
    roles = np.stack([a, p, n], axis=1)
    rng = np.random.default_rng([exp.seed, epoch, 7])
    if exp.loss == "budget_matched":  # as many extra triplets as the hybrid's RSA pairs (App. L)
        steps = math.ceil(len(trials) / exp.batch_trials)
        n_extra = losses.budget_matched_extra(
            steps, n_per_epoch=exp.rsa_per_epoch, k=exp.rsa_videos, n_grad=exp.rsa_grad_videos
        )
        extra = losses.extra_triplets(trials, n_extra, rng)
        ea, ep, en = losses.trial_roles(extra.items, extra.odd)
        roles = np.concatenate([roles, np.stack([ea, ep, en], axis=1)])
    return roles[rng.permutation(len(roles))]


def loss_weights(exp: Experiment, fire: bool) -> LossWeights:
    video = exp.mode == "video"
    if exp.loss == "rsa":
        return LossWeights(alpha=0.0, use_triplet=False, use_rsa=True, video=video)
    if exp.loss in ("triplet", "budget_matched"):
        return LossWeights(alpha=1.0, use_triplet=True, use_rsa=False, video=video)
    return LossWeights(
        alpha=exp.alpha, use_triplet=True, use_rsa=fire or video, video=video
    )  # hybrid, distill


def rsa_batch(exp: Experiment, data: RunData, epoch: int, step: int, *, clip_ids: bool = False) -> dict:
    rng = np.random.default_rng([exp.seed, epoch, step, 11])
    ids = rng.choice(data.train_ids, size=min(exp.rsa_videos, len(data.train_ids)), replace=False)
    return {"rsa_clips": ids if clip_ids else data.clips[ids], **_human_block(data, ids)}


def _human_block(data: RunData, ids: np.ndarray) -> dict:
    pos = np.searchsorted(data.train_matrix.ids, ids)
    return {
        "rsa_dist": data.train_matrix.distance[np.ix_(pos, pos)].astype(np.float32),
        "rsa_mask": data.train_matrix.mask[np.ix_(pos, pos)],
    }


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """One step of an epoch. Triplet mode: `roles` (b, 3) video ids. Video mode: `videos` (B,) distinct
    ids and `roles` (R, 3) positions into them (every judged trial whose three videos are all in)."""

    index: int  # position in the epoch (what a checkpoint records)
    roles: np.ndarray
    rsa: bool = False
    videos: np.ndarray | None = None


def video_batches(exp: Experiment, data: RunData, epoch: int) -> list[np.ndarray]:
    """The epoch's batches of `video_batch` distinct training videos, packed trial by trial in a seeded
    order so that every trial lands whole in at least one batch; the last slots of a batch are filled
    with other training videos (more RSA pairs, and any trial they complete)."""
    rng = np.random.default_rng([exp.seed, epoch, 13])
    size = min(exp.video_batch, len(data.train_ids))
    batches, current = [], []
    members: set[int] = set()
    for t in rng.permutation(len(data.train)):
        new = [int(v) for v in dict.fromkeys(data.train.items[t].tolist()) if int(v) not in members]
        if len(members) + len(new) > size:
            batches.append(current)
            current, members = [], set()
            new = list(dict.fromkeys(int(v) for v in data.train.items[t]))
        current += new
        members.update(new)
    if current:
        batches.append(current)
    out = []
    for b in batches:
        rest = np.setdiff1d(data.train_ids, b)
        fill = rng.choice(rest, size - len(b), replace=False) if size > len(b) else np.zeros(0, np.int64)
        out.append(np.sort(np.concatenate([np.asarray(b, np.int64), fill.astype(np.int64)])))
    return out


def epoch_plan(exp: Experiment, data: RunData, epoch: int) -> list[StepSpec]:
    """The epoch's steps, a pure function of (seed, epoch): what `fit` runs and a resume replays."""
    if exp.mode == "video":
        a, p, n = losses.trial_roles(data.train.items, data.train.odd)
        roles = np.stack([a, p, n], axis=1)
        plan = []
        for s, ids in enumerate(video_batches(exp, data, epoch)):
            inside = np.isin(roles, ids).all(axis=1)
            plan.append(StepSpec(s, np.searchsorted(ids, roles[inside]), rsa=True, videos=ids))
        return plan
    roles = epoch_trials(exp, data, epoch)
    b = exp.batch_trials
    steps = math.ceil(len(roles) / b)
    fires = set(losses.rsa_steps(steps, exp.rsa_per_epoch).tolist())
    plan = [StepSpec(s, roles[s * b : (s + 1) * b], rsa=s in fires) for s in range(steps)]
    return [p for p in plan if p.rsa] if exp.loss == "rsa" else plan  # RSA-only updates on RSA steps


def _bucket(n: int, quantum: int = 16) -> int:
    """Pad trial counts to a multiple of `quantum`: a few compiled shapes instead of one per count."""
    return max(quantum, -(-n // quantum) * quantum)


CLIP_KEYS = ("clips", "trial_clips", "rsa_clips")


def make_batch(
    exp: Experiment, data: RunData, spec: StepSpec, epoch: int, *, clip_ids: bool = False
) -> tuple[dict, LossWeights, int]:
    """(host batch, loss switches, clip forward passes) for one step. With `clip_ids` the clip
    entries (CLIP_KEYS) hold video ids, for the pipeline to read only this process's rows."""
    clips = (lambda ids: ids) if clip_ids else (lambda ids: data.clips[ids])
    w = loss_weights(exp, spec.rsa)
    if spec.videos is not None:
        r = len(spec.roles)
        pad = _bucket(r)
        roles = np.concatenate([spec.roles, np.zeros((pad - r, 3), np.int64)]).astype(np.int32)
        batch = {
            "clips": clips(spec.videos), "a": roles[:, 0], "p": roles[:, 1], "n": roles[:, 2],
            "valid": np.arange(pad) < r, **_human_block(data, spec.videos),
        }  # fmt: skip
        return batch, w, len(spec.videos)
    b = exp.batch_trials
    chunk = spec.roles
    valid = np.arange(b) < len(chunk)
    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - len(chunk), axis=0)])
    batch = {"trial_clips": clips(chunk.T.reshape(-1)), "valid": valid}
    if w.use_rsa:
        batch |= rsa_batch(exp, data, epoch, spec.index, clip_ids=clip_ids)
    return batch, w, (3 * b if w.use_triplet else 0) + (exp.rsa_videos if w.use_rsa else 0)


def host_batches(exp: Experiment, data: RunData, plan: list[StepSpec], epoch: int, mesh):
    """The epoch's remaining steps as a grain pipeline: each batch assembled (and this process's
    rows of its clips read from the uint8 cache) by worker threads while the device runs the
    previous step. Order is the plan's, so a resumed epoch replays the same batches."""

    def load(spec: StepSpec):
        batch, w, n_clips = make_batch(exp, data, spec, epoch, clip_ids=True)
        sources = {k: data.clips for k in CLIP_KEYS if k in batch}
        return spec, sharding.local_batch(batch, mesh, sources), w, n_clips

    options = grain.ReadOptions(num_threads=2, prefetch_buffer_size=2)
    return iter(grain.MapDataset.source(plan).map(load).to_iter_dataset(options))


def embed_all(
    trainer: Trainer, trainable, clips: np.ndarray, ids: np.ndarray, *, batch: int = 16, layers=False
):
    """Embeddings of `ids` in fixed-size padded batches (one compile), eval mode."""
    outs, lay = [], []
    for s in range(0, len(ids), batch):
        chunk = ids[s : s + batch]
        x = clips[np.pad(chunk, (0, batch - len(chunk)), mode="edge")]
        out = trainer.embed(trainable, x, layers=layers)
        if layers:
            outs.append(np.asarray(out[0])[: len(chunk)])
            lay.append(np.asarray(out[1])[: len(chunk)])
        else:
            outs.append(np.asarray(out)[: len(chunk)])
    emb = np.concatenate(outs)
    return (emb, np.concatenate(lay)) if layers else emb


def validate(exp: Experiment, trainer: Trainer, trainable, data: RunData) -> dict:
    emb = embed_all(trainer, trainable, data.clips, data.val_matrix.ids)
    result = rsa(similarity_matrix(emb), data.val_matrix)
    return {"val_rho": result.rho, "val_r2": result.r2}


def finite_or_none(x: float) -> float | None:
    """JSON has no infinities: the best score before any validation is null."""
    return x if math.isfinite(x) else None


class _Stop:
    """SIGTERM/SIGINT set a flag; the loop saves a checkpoint at the next step boundary and returns."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self.old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)


def _ckpt_manager(run_dir: Path, name: str = "checkpoints", keep: int = 2) -> ocp.CheckpointManager:
    """Orbax managers save from every process (sharded arrays) and finalise atomically."""
    return ocp.CheckpointManager(
        (run_dir / name).absolute(), options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    )


def _save(mgr, progress: Progress, trainable, opt_state, run_dir: Path, *, best: bool = False):
    if mgr.latest_step() != progress.global_step:  # else saved at this step already (an epoch's end)
        state = {"trainable": trainable, "opt_state": opt_state}
        mgr.save(progress.global_step, args=ocp.args.StandardSave(state), force=True)
        mgr.wait_until_finished()
    if sharding.is_main_process():
        write_text_atomic(run_dir / "progress.json", json.dumps(progress.to_json(), indent=2) + "\n")
    if best:  # the new best is finalised before the old one is deleted
        best_mgr = _ckpt_manager(run_dir, "best", keep=1)
        best_mgr.save(progress.global_step, args=ocp.args.StandardSave(trainable), force=True)
        best_mgr.wait_until_finished()


def restore(run_dir: Path, trainer: Trainer):
    """(trainable, opt_state, progress) from the latest checkpoint of `run_dir`, placed on the
    trainer's mesh (which may differ from the mesh that wrote it)."""
    mgr = _ckpt_manager(run_dir)
    step = mgr.latest_step()
    if step is None or not (run_dir / "progress.json").is_file():
        raise InputError("no checkpoint to resume from", file=run_dir, fix="start without --resume")
    trainable, opt_state = trainer.init()
    state = mgr.restore(step, args=ocp.args.StandardRestore({"trainable": trainable, "opt_state": opt_state}))
    progress = Progress(**json.loads((run_dir / "progress.json").read_text()))
    return state["trainable"], state["opt_state"], progress


def load_best(run_dir: Path, trainer: Trainer):
    trainable, _ = trainer.init()
    mgr = _ckpt_manager(run_dir, "best", keep=1)
    if mgr.latest_step() is None:
        raise InputError(
            "no best checkpoint", file=run_dir / "best", fix="train the run to its first epoch end"
        )
    return mgr.restore(mgr.latest_step(), args=ocp.args.StandardRestore(trainable))


def fit(exp: Experiment, trainer: Trainer, data: RunData, run_dir: Path, *, resume: bool = False) -> Progress:
    """Train until `epochs`, early stopping, `max_steps` or a stop signal; returns where it ended."""
    mgr = _ckpt_manager(run_dir)
    if resume:
        trainable, opt_state, progress = restore(run_dir, trainer)
        if progress.done:
            return progress
    else:
        trainable, opt_state = trainer.init()
        progress = Progress()
    key = jax.random.key(exp.seed)
    main = sharding.is_main_process()  # logs and progress from process 0; checkpoints from all
    metrics = (run_dir / "metrics.jsonl").open("a") if main else open(os.devnull, "w")
    n_val = len(data.val_matrix.observed_pairs()[0])
    if n_val < MIN_PAIRS and main:
        tqdm.write(
            f"validation split has {n_val} judged pair(s) (< {MIN_PAIRS}): no validation, no early stopping, "
            "no plateau LR; the last epoch is kept as the best"
        )
    with _Stop() as stop:
        while progress.epoch < exp.epochs:
            plan = epoch_plan(exp, data, progress.epoch)
            beta = beta_at(exp, progress.epoch)
            done_steps = sum(p.index < progress.step_in_epoch for p in plan)
            bar = tqdm(total=len(plan), initial=done_steps, desc=f"epoch {progress.epoch + 1}/{exp.epochs}",
                       unit="step", leave=False, disable=None if main else True)  # fmt: skip
            todo = [p for p in plan if p.index >= progress.step_in_epoch]
            batches = host_batches(exp, data, todo, progress.epoch, trainer.mesh)
            t_wait = time.perf_counter()
            for spec, batch, w, n_clips in batches:
                t0 = time.perf_counter()
                input_wait = t0 - t_wait  # the device idled this long for input (stall, if large)
                if stop.requested or (exp.max_steps is not None and progress.global_step >= exp.max_steps):
                    _save(mgr, progress, trainable, opt_state, run_dir)
                    bar.close()
                    metrics.close()
                    return progress
                step_key = jax.random.fold_in(key, progress.global_step)
                trainable, opt_state, out = trainer.step(trainable, opt_state, batch, step_key, beta, w)
                out = {k: float(v) for k, v in out.items()}
                if not (math.isfinite(out["loss"]) and math.isfinite(out["grad_norm"])):
                    raise TrainingError(
                        f"non-finite loss or gradient at epoch {progress.epoch + 1} step {spec.index} "
                        f"({out}); "
                        f"the last good checkpoint is in {run_dir / 'checkpoints'}. Lower lr or use float32"
                    )
                dt = time.perf_counter() - t0
                n_constraints = (len(spec.roles) if w.use_triplet else 0) + int(out["rsa_pairs"])
                record = {
                    "step": progress.global_step, "epoch": progress.epoch + 1, "step_in_epoch": spec.index,
                    **out,
                    "beta": beta, "lr": float(opt_state.hyperparams["learning_rate"]), "clips": n_clips,
                    "constraints": n_constraints, "clips_per_s": n_clips / dt,
                    "constraints_per_clip": n_constraints / max(n_clips, 1), "input_wait_s": input_wait,
                }  # fmt: skip
                metrics.write(json.dumps(record) + "\n")
                progress.global_step += 1
                progress.step_in_epoch = spec.index + 1
                bar.set_postfix(loss=f"{out['loss']:.4f}")
                bar.update(1)
                t_wait = time.perf_counter()
            bar.close()
            if n_val >= MIN_PAIRS:
                val = validate(exp, trainer, trainable, data)
                score = val["val_r2"] if exp.select_on == "r2" else val["val_rho"]
                improved = score > progress.best
            else:  # nothing to select on: every epoch is the newest best, the run goes to `epochs`
                val, score, improved = {"val_rho": None, "val_r2": None}, None, True
            if improved:
                progress.best_epoch, progress.bad_epochs = progress.epoch, 0
                progress.best = progress.best if score is None else score
            else:
                progress.bad_epochs += 1
            if exp.lr_plateau:  # authors' ReduceLROnPlateau(x0.5, patience 3)
                progress.plateau_bad = 0 if improved else progress.plateau_bad + 1
                if progress.plateau_bad > 3:
                    opt_state.hyperparams["learning_rate"] = opt_state.hyperparams["learning_rate"] * 0.5
                    progress.plateau_bad = 0
            metrics.write(
                json.dumps({"epoch": progress.epoch + 1, **val, "best": finite_or_none(progress.best)}) + "\n"
            )
            metrics.flush()
            if main and score is not None:
                tqdm.write(
                    f"epoch {progress.epoch + 1}: val R^2 {val['val_r2']:.4f}, rho {val['val_rho']:.4f} "
                    f"(best {exp.select_on} {progress.best:.4f}, epoch {progress.best_epoch + 1})"
                )
            progress.epoch += 1
            progress.step_in_epoch = 0
            progress.done = progress.bad_epochs >= exp.patience or progress.epoch >= exp.epochs
            _save(mgr, progress, trainable, opt_state, run_dir, best=improved)
            if progress.done:
                break
    metrics.close()
    return progress
