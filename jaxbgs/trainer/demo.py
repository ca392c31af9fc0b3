"""The embedded demo: procedural two-agent clips judged by simulated observers, and a small V-JEPA-style
encoder that the project first pretrains on a non-social task (regressing the scene's appearance,
layout and low-level motion statistics, `pretraining_targets`): its embedding carries the motion
that the observers judge, but its geometry is about looks and layout, so BGS has something to
correct, as with a real backbone. 16 px tubelets on 32 px clips keep it cheap enough to learn
the agents' relations in two CPU minutes (8 px patches did not, in four times the time).

The pretrained encoder is cached as a jaxbgs Flax checkpoint (it is also what `to-torch` exports),
keyed by its settings, so a second run skips the pretraining.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from checkpoints_convert import core
from experiments import Experiment
from jaxbgs.data import procedural
from jaxbgs.models import vjepa2
from jaxbgs.trainer.setup import IMAGENET, RunData, split_data
from jaxbgs.trainer.step import normalise

N_VIDEOS, N_TEST = 240, 48
VAL_REPEATS = 3  # set covers judged on the validation videos (38 videos: ~750 trials)
PRETRAIN_CLIPS, PRETRAIN_STEPS, PRETRAIN_BATCH, PRETRAIN_LR = 10_000, 3000, 32, 1e-3


def encoder_config(exp: Experiment) -> vjepa2.Config:
    return vjepa2.Config(
        hidden_size=64, num_hidden_layers=4, num_attention_heads=4, patch_size=16, tubelet_size=2,
        crop_size=exp.size, frames_per_clip=exp.frames,
    )  # fmt: skip


def demo_data(exp: Experiment) -> tuple[RunData, procedural.DemoData]:
    demo = procedural.make_demo(
        N_VIDEOS, N_TEST, frames=exp.frames, size=exp.size, seed=exp.seed, repeats=(2, 3)
    )
    captions = {i: list(c) for i, c in enumerate(demo.captions)}
    data = split_data(exp, demo.clips, demo.train_ids, demo.test_ids, demo.train, demo.test, captions)
    # The stimulus-disjoint carve keeps only the ~90 training trials whose three videos are all
    # validation videos (about one judgment per pair): a validation R^2 that swings by +-0.03
    # between evaluations. The observers also judge their own design on those videos, as on the
    # test videos, so early stopping (and benchmarks/video_batched.py) select on a measurement.
    val = demo.judge(data.val_ids, VAL_REPEATS, "val", seed=[exp.seed, 21])
    ratings = procedural.latent_ratings(demo.latents)
    return dataclasses.replace(data, val=val, ratings=ratings), demo


class _Pretrain(nnx.Module):
    def __init__(self, cfg: vjepa2.Config, n_targets: int, *, rngs: nnx.Rngs):
        self.encoder = vjepa2.Model(cfg, rngs=rngs)
        self.readout = nnx.Linear(cfg.hidden_size, n_targets, rngs=rngs)

    def __call__(self, x):
        return self.readout(self.encoder(x).embedding)


def _angle(v):
    return np.arctan2(v[..., 1], v[..., 0])


def kinematics(latents: procedural.SceneLatents, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Low-level motion statistics, none of them a social label: (layout (n, 8), motion (n, 9)).

    Layout: the direction each agent travels and the orientation of the line between them, first and
    last frame (what a camera or a mirror changes). Motion: the agents' distance and how it changes,
    speeds and their difference, turning of the pair's axis, velocity alignment, relative speed,
    speed variation. Not the agents' headings: how much each points at the other is the observers'
    facing scale itself (r 0.99), a social label."""
    pos, _ = procedural.trajectories(latents, frames)  # (n, T, agent, xy), (n, T, agent)
    off = pos[:, :, 1] - pos[:, :, 0]
    dist = np.linalg.norm(off, axis=-1)
    vel = np.diff(pos, axis=1)
    speed = np.linalg.norm(vel, axis=-1)  # (n, T - 1, agent)
    va, vb = vel[:, :, 0], vel[:, :, 1]
    th0, th1 = _angle(off[:, 0]), _angle(off[:, -1])
    travel_a, travel_b = _angle(va.sum(1)), _angle(vb.sum(1))
    layout = np.stack([np.cos(travel_a), np.sin(travel_a), np.cos(travel_b), np.sin(travel_b),
                       np.cos(2 * th0), np.sin(2 * th0), np.cos(2 * th1), np.sin(2 * th1)], 1)  # fmt: skip
    turn = np.abs(np.diff(np.unwrap(_angle(off), axis=1), axis=1))
    align = (va * vb).sum(-1) / (speed[..., 0] * speed[..., 1] + 1e-6)
    motion = np.stack([
        dist[:, 0], dist[:, -1] - dist[:, 0], dist[:, frames // 2] - dist[:, 0], speed.mean((1, 2)),
        np.abs(speed[..., 0] - speed[..., 1]).mean(1), turn.mean(1), align.mean(1),
        np.linalg.norm(va - vb, axis=-1).mean(1), speed.std(1).mean(1),
    ], 1)  # fmt: skip
    return layout, motion


# Weights of the standardised target groups: appearance and layout outweigh motion, so that the
# pretrained embedding's geometry is about looks and layout (as a generic video model's is), while
# motion is still learned well enough for BGS to bring it forward.
TARGET_WEIGHTS = {"appearance": 2.0, "layout": 3.0, "motion": 2.0}


def pretraining_targets(latents: procedural.SceneLatents, frames: int) -> np.ndarray:
    """Appearance (colours, shapes, background, texture, size, brightness), layout and low-level motion,
    each standardised and weighted (TARGET_WEIGHTS). No interaction type, approach or synchrony
    label, and nothing about where the agents face."""
    layout, motion = kinematics(latents, frames)
    groups = {"appearance": procedural.nuisance_embedding(latents), "layout": layout, "motion": motion}
    z = [w * (groups[k] - groups[k].mean(0)) / (groups[k].std(0) + 1e-6) for k, w in TARGET_WEIGHTS.items()]
    return np.concatenate(z, axis=1).astype(np.float32)


def pretrain(exp: Experiment, cache: Path) -> Path:
    """Pretrain the whole encoder on fresh clips (not the judged ones) to regress appearance and
    kinematics; cached."""
    cfg = encoder_config(exp)
    settings = {"targets": TARGET_WEIGHTS, "clips": PRETRAIN_CLIPS, "steps": PRETRAIN_STEPS, "version": 3}
    key = json.dumps({"cfg": cfg.to_json(), "seed": exp.seed, **settings}, sort_keys=True)
    path = Path(cache) / f"demo-encoder-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (path / core.CONFIG_FILE).is_file():
        return path
    rng = np.random.default_rng([exp.seed, 99])
    latents = procedural.sample_latents(PRETRAIN_CLIPS, rng)
    clips = procedural.render(latents, frames=exp.frames, size=exp.size)
    targets = pretraining_targets(latents, exp.frames)
    model = _Pretrain(cfg, targets.shape[1], rngs=nnx.Rngs(exp.seed))
    graphdef, params = nnx.split(model, nnx.Param)
    warmup = min(100, PRETRAIN_STEPS // 10)
    schedule = optax.warmup_cosine_decay_schedule(0.0, PRETRAIN_LR, warmup, PRETRAIN_STEPS)
    opt = optax.adamw(schedule, weight_decay=0.01)
    opt_state = opt.init(params)
    mean, std = IMAGENET

    @jax.jit
    def step(params, opt_state, clips, y):
        def loss(p):
            return jnp.mean((nnx.merge(graphdef, p)(normalise(clips, mean, std)) - y) ** 2)

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    bar = tqdm(
        range(PRETRAIN_STEPS),
        desc="pretraining the demo encoder (non-social task)",
        leave=False,
        disable=None,
    )
    for _ in bar:
        batch = rng.choice(PRETRAIN_CLIPS, PRETRAIN_BATCH, replace=False)
        params, opt_state, value = step(params, opt_state, clips[batch], targets[batch])
        bar.set_postfix(mse=f"{float(value):.3f}")
    nnx.update(model, params)
    meta = core.Meta(
        arch="vjepa2", config=cfg.to_json(), source="jaxbgs demo pretraining (appearance, kinematics)"
    )
    return core.save(model.encoder, path, meta, replace=True)  # a cache
