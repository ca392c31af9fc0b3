"""The embedded demo: procedural two-agent clips judged by simulated observers, and a small V-JEPA-style
encoder that the project first pretrains on a non-social task (recovering the scene's colours,
shapes and background), so that BGS has something to correct, exactly as with a real backbone.

The pretrained encoder is cached as a jaxbgs Flax checkpoint (it is also what `to-torch` exports),
keyed by its settings, so a second run skips the pretraining.
"""

from __future__ import annotations

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
PRETRAIN_CLIPS, PRETRAIN_STEPS, PRETRAIN_BATCH, PRETRAIN_LR = 4000, 1200, 32, 1e-3


def encoder_config(exp: Experiment) -> vjepa2.Config:
    return vjepa2.Config(
        hidden_size=64, num_hidden_layers=4, num_attention_heads=4, patch_size=8, tubelet_size=2,
        crop_size=exp.size, frames_per_clip=exp.frames,
    )  # fmt: skip


def demo_data(exp: Experiment) -> tuple[RunData, procedural.DemoData]:
    demo = procedural.make_demo(
        N_VIDEOS, N_TEST, frames=exp.frames, size=exp.size, seed=exp.seed, repeats=(2, 3)
    )
    captions = {i: list(c) for i, c in enumerate(demo.captions)}
    data = split_data(exp, demo.clips, demo.train_ids, demo.test_ids, demo.train, demo.test, captions)
    return data, demo


class _Pretrain(nnx.Module):
    def __init__(self, cfg: vjepa2.Config, n_targets: int, *, rngs: nnx.Rngs):
        self.encoder = vjepa2.Model(cfg, rngs=rngs)
        self.readout = nnx.Linear(cfg.hidden_size, n_targets, rngs=rngs)

    def __call__(self, x):
        return self.readout(self.encoder(x).embedding)


def pretraining_targets(latents: procedural.SceneLatents, frames: int) -> np.ndarray:
    """Appearance plus kinematics: each agent's frame-to-frame speed and the vector from one agent
    to the other in every frame. No interaction type, approach, synchrony or facing label."""
    positions, _ = procedural.trajectories(latents, frames)  # (n, T, 2 agents, xy)
    offset = (positions[:, :, 1] - positions[:, :, 0]).reshape(len(positions), -1)
    speed = np.linalg.norm(np.diff(positions, axis=1), axis=-1).reshape(len(positions), -1)
    return np.concatenate([procedural.nuisance_embedding(latents), offset, speed], axis=1).astype(np.float32)


def pretrain(exp: Experiment, cache: Path) -> Path:
    """Pretrain the whole encoder on fresh clips (not the judged ones) to regress appearance and
    kinematics; cached."""
    cfg = encoder_config(exp)
    settings = {"task": "appearance+kinematics", "clips": PRETRAIN_CLIPS, "steps": PRETRAIN_STEPS}
    key = json.dumps({"cfg": cfg.to_json(), "seed": exp.seed, **settings}, sort_keys=True)
    path = Path(cache) / f"demo-encoder-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (path / core.CONFIG_FILE).is_file():
        return path
    rng = np.random.default_rng([exp.seed, 99])
    latents = procedural.sample_latents(PRETRAIN_CLIPS, rng)
    clips = procedural.render(latents, frames=exp.frames, size=exp.size)
    targets = pretraining_targets(latents, exp.frames)
    targets = (targets - targets.mean(0)) / (targets.std(0) + 1e-6)
    model = _Pretrain(cfg, targets.shape[1], rngs=nnx.Rngs(exp.seed))
    graphdef, params = nnx.split(model, nnx.Param)
    opt = optax.adamw(PRETRAIN_LR, weight_decay=0.01)
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
    return core.save(model.encoder, path, meta)
