"""BGS training as a `jaxbgs.training.Task`: the steps of each epoch, their batches, beta, and the
epoch-end validation R^2 that early stopping selects on (BGS paper §3.3).

Everything random is a pure function of (seed, epoch, step): the trial order of an epoch, the RSA
videos of a step, the dropout keys (folded in the compiled step). So a checkpoint's position (epoch,
step in epoch) is all a resume needs to replay exactly what an uninterrupted run does.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from experiments import Experiment
from jaxbgs import losses, sharding
from jaxbgs.eval.rsa import MIN_PAIRS, rsa, similarity_matrix
from jaxbgs.trainer.setup import RunData
from jaxbgs.trainer.step import LossWeights, Trainer
from jaxbgs.training.loop import Batch, FitConfig, Task

CLIP_KEYS = ("clips", "trial_clips", "rsa_clips")


def fit_config(exp: Experiment) -> FitConfig:
    return FitConfig(
        epochs=exp.epochs, patience=exp.patience, max_steps=exp.max_steps, lr_plateau=exp.lr_plateau,
        checkpoint_every=exp.checkpoint_every, log_every=exp.log_every,
    )  # fmt: skip


def beta_at(exp: Experiment, epoch: int) -> float:
    if exp.loss == "rsa":  # authors' RSA-only schedule: 0.5 + 0.1 per epoch, capped at 1
        return float(min(1.0, 0.5 + 0.1 * epoch))
    if exp.beta_schedule == "capped":
        return float(losses.beta_capped(epoch, start=exp.beta_start, cap=exp.beta_end))
    return float(losses.beta_linear(epoch, exp.epochs, start=exp.beta_start, end=exp.beta_end))


def all_roles(trials) -> np.ndarray:
    """(T, 3) anchor/positive/negative video ids of every trial."""
    return np.stack(losses.trial_roles(trials.items, trials.odd), axis=1)


def epoch_trials(exp: Experiment, data: RunData, epoch: int) -> np.ndarray:
    """Roles (T, 3) as anchor/positive/negative video ids, in this epoch's seeded order."""
    trials = data.train
    roles = all_roles(trials)
    rng = np.random.default_rng([exp.seed, epoch, 7])
    if exp.loss == "budget_matched":  # as many extra triplets as the hybrid's RSA pairs (App. L)
        steps = math.ceil(len(trials) / exp.batch_trials)
        n_extra = losses.budget_matched_extra(
            steps, n_per_epoch=exp.rsa_per_epoch, k=exp.rsa_videos, n_grad=exp.rsa_grad_videos
        )
        roles = np.concatenate([roles, all_roles(losses.extra_triplets(trials, n_extra, rng))])
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

    epoch: int
    index: int  # position in the epoch's full plan (seeds the step's RSA videos)
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
        roles = all_roles(data.train)
        member = np.zeros(int(max(data.train_ids.max(), roles.max())) + 1, bool)
        plan = []
        for s, ids in enumerate(video_batches(exp, data, epoch)):
            member[:] = False
            member[ids] = True
            inside = member[roles].all(axis=1)
            plan.append(StepSpec(epoch, s, np.searchsorted(ids, roles[inside]), rsa=True, videos=ids))
        return plan
    roles = epoch_trials(exp, data, epoch)
    b = exp.batch_trials
    steps = math.ceil(len(roles) / b)
    fires = set(losses.rsa_steps(steps, exp.rsa_per_epoch).tolist())
    plan = [StepSpec(epoch, s, roles[s * b : (s + 1) * b], rsa=s in fires) for s in range(steps)]
    return [p for p in plan if p.rsa] if exp.loss == "rsa" else plan  # RSA-only updates on RSA steps


def video_pad(exp: Experiment, data: RunData) -> int:
    """Video mode's trials per batch, padded to one count for the whole run: the most any batch of
    any epoch holds (a pure function of the seed), rounded up to 16. One shape, one compile."""
    most = max(len(p.roles) for e in range(exp.epochs) for p in epoch_plan(exp, data, e))
    return max(16, -(-most // 16) * 16)


def make_batch(
    exp: Experiment, data: RunData, spec: StepSpec, *, clip_ids: bool = False, pad: int | None = None
) -> tuple[dict, LossWeights, int]:
    """(host batch, loss switches, clip forward passes) for one step. With `clip_ids` the clip
    entries (CLIP_KEYS) hold video ids, for the pipeline to read only this process's rows; `pad`:
    video mode's trial count per batch (`video_pad`, computed when not given)."""
    clips = (lambda ids: ids) if clip_ids else (lambda ids: data.clips[ids])
    w = loss_weights(exp, spec.rsa)
    if spec.videos is not None:
        r, pad = len(spec.roles), pad or video_pad(exp, data)
        if r > pad:
            raise ValueError(f"{r} trials in a video batch, padded for at most {pad}: pass video_pad's count")
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
        batch |= rsa_batch(exp, data, spec.epoch, spec.index, clip_ids=clip_ids)
    return batch, w, (3 * b if w.use_triplet else 0) + (exp.rsa_videos if w.use_rsa else 0)


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


def validate(trainer: Trainer, trainable, data: RunData) -> dict:
    emb = embed_all(trainer, trainable, data.clips, data.val_matrix.ids)
    result = rsa(similarity_matrix(emb), data.val_matrix)
    return {"val_rho": result.rho, "val_r2": result.r2}


def n_validation_pairs(data: RunData) -> int:
    return len(data.val_matrix.observed_pairs()[0])


class BGSTask(Task):
    """One BGS run's steps, batches (this process's rows of the clips, read from the uint8 cache in
    the input threads), beta per epoch and validation."""

    def __init__(self, exp: Experiment, data: RunData, trainer: Trainer):
        self.exp, self.data, self.trainer = exp, data, trainer
        self.validates = n_validation_pairs(data) >= MIN_PAIRS
        self.pad = video_pad(exp, data) if exp.mode == "video" else None

    def plan(self, epoch: int) -> list[StepSpec]:
        return epoch_plan(self.exp, self.data, epoch)

    def load(self, spec: StepSpec) -> Batch:
        batch, w, n_clips = make_batch(self.exp, self.data, spec, clip_ids=True, pad=self.pad)
        sources = {k: self.data.clips for k in CLIP_KEYS if k in batch}
        info = {"beta": beta_at(self.exp, spec.epoch), "clips": n_clips,
                "trials": len(spec.roles) if w.use_triplet else 0}  # fmt: skip
        return Batch(sharding.local_batch(batch, self.trainer.mesh, sources), w, info)

    def scalars(self, epoch: int) -> tuple[float]:
        return (beta_at(self.exp, epoch),)

    def record(self, info: dict, metrics: dict, step_s: float) -> dict:
        info = dict(info)
        constraints = info.pop("trials") + int(metrics["rsa_pairs"])
        return {
            **metrics, **info, "constraints": constraints, "clips_per_s": info["clips"] / step_s,
            "constraints_per_clip": constraints / max(info["clips"], 1),
        }  # fmt: skip

    def validate(self, trainable):
        if not self.validates:
            return None, {"val_rho": None, "val_r2": None}
        val = validate(self.trainer, trainable, self.data)
        return (val["val_r2"] if self.exp.select_on == "r2" else val["val_rho"]), val

    def epoch_line(self, record: dict, progress) -> str:
        return (
            f"epoch {progress.epoch}: val R^2 {record['val_r2']:.4f}, rho {record['val_rho']:.4f} "
            f"(best {self.exp.select_on} {progress.best:.4f}, epoch {progress.best_epoch + 1})"
        )
