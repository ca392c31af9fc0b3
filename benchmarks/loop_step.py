"""The real training loop against the pure step it dispatches: `train_throughput.py --loop`.

Loop: `jaxbgs.training.fit` as `python -m jaxbgs.train` runs it (input threads building and placing
batches, metrics fetched every `log_every` steps, the progress bar, metrics.jsonl and TensorBoard);
its time is the wall time of the steps after the warm-up, read from the step windows it logs
(`step_s`: the interval between two metric fetches over the steps fetched). Step: the same trainer's
compiled steps on the same batches, placed on the device beforehand, dispatched back to back and
timed until the device is idle. Their ratio (loop steps/s over step steps/s; 1.0: the loop costs
nothing) shows what the host adds to every step.

Cases: `demo` (the embedded demo's data, encoder and settings: what `--exp demo` trains) and
`vjepa2` (V-JEPA 2 ViT-L at `--layers` blocks, random weights, triplet steps on random clips of
`--frames` x `--size` px; the paper's trial design).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

import experiments
from jaxbgs import sharding
from jaxbgs.data import procedural
from jaxbgs.models import vjepa2
from jaxbgs.trainer import setup
from jaxbgs.trainer.step import Trainer, make_optimizer
from jaxbgs.trainer.task import BGSTask
from jaxbgs.training.loop import FitConfig, fit


def demo_case():
    from jaxbgs import train

    exp = experiments.get("demo")
    data, _, _, trainer = train.prepare(exp)
    return exp, data, trainer


def vjepa2_case(layers: int, frames: int, size: int, batch: int, dtype: str, remat: str):
    exp = dataclasses.replace(
        experiments.get("vjepa"), frames=frames, size=size, batch_trials=batch, dtype=dtype, remat=remat,
        loss="triplet",
    )  # fmt: skip
    demo = procedural.make_demo(120, 24, frames=2, size=16, seed=0, repeats=(2, 3))
    clips = np.random.default_rng(0).integers(0, 256, (120, frames, size, size, 3), dtype=np.uint8)
    data = setup.split_data(exp, clips, demo.train_ids, demo.test_ids, demo.train, demo.test)
    cfg = vjepa2.Config.variant(
        "vit_large",
        num_hidden_layers=layers,
        crop_size=size,
        frames_per_clip=frames,
        dtype=dtype,
        remat=remat,
    )
    model = vjepa2.Model(cfg, lora=setup.lora_config(exp), rngs=nnx.Rngs(0))
    mean, std = setup.NORMALISATION["vjepa2"]
    trainer = Trainer(model, make_optimizer(exp.lr, exp.weight_decay), mean=mean, std=std, margin=exp.margin,
                      n_grad=exp.rsa_grad_videos, mesh=sharding.make_mesh(exp.mesh))  # fmt: skip
    return exp, data, trainer


def measure(exp, data, trainer, *, warmup: int, steps: int, log_every: int, reps: int = 3) -> dict:
    """Step and loop times of the same `steps` steps after `warmup` (a multiple of `log_every`, so
    the timed steps are whole fetch windows), alternated `reps` times; medians. Every compiled
    variant is built before anything is timed."""
    task = BGSTask(exp, data, trainer)
    plan = task.plan(0)
    steps = min(steps, len(plan) - warmup)
    batches = [task.load(spec) for spec in plan[warmup : warmup + steps]]
    placed = [(trainer.place(b.arrays), b.static) for b in batches]
    beta = trainer.replicate(task.scalars(0)[0], np.float32)
    variants = {}
    for arrays, static in placed:
        variants.setdefault(
            (static, tuple((k, v.shape) for k, v in sorted(arrays.items()))), (arrays, static)
        )

    def pure(runs) -> float:
        trainable, opt_state = trainer.init()
        counter = trainer.counter(warmup)
        for arrays, static in runs:
            trainable, opt_state, metrics, counter = trainer.update(
                trainable, opt_state, arrays, counter, beta, static=static
            )
        jax.block_until_ready((trainable, metrics))

    pure(list(variants.values()) * 2)  # compile each variant, then run it warm once
    step_s, loop_s, wait_s, fit_s = [], [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        pure(placed)
        step_s.append(time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as tmp:
            cfg = FitConfig(epochs=1, max_steps=warmup + steps, log_every=log_every, checkpoint_every=0)
            t0 = time.perf_counter()
            fit(trainer, task, Path(tmp) / "run", cfg)
            fit_s.append(time.perf_counter() - t0)
            rows = [json.loads(x) for x in open(Path(tmp) / "run" / "metrics.jsonl")]
        timed = [r for r in rows if "step" in r and r["step"] >= warmup]
        loop_s.append(sum(r["step_s"] for r in timed))
        wait_s.append(sum(r["input_wait_s"] for r in timed))
    clips = sum(b.info["clips"] for b in batches)
    med = statistics.median
    ratio = med(a / b for a, b in zip(step_s, loop_s, strict=True))
    return {
        "steps": steps, "warmup": warmup, "log_every": log_every, "clips": clips, "variants": len(variants),
        "reps": reps, "loop_s": med(loop_s), "step_s": med(step_s), "loop_clips_per_s": clips / med(loop_s),
        "step_clips_per_s": clips / med(step_s), "loop_over_step": ratio,
        "input_wait_s": med(wait_s), "fit_wall_s": med(fit_s), "all": {"step_s": step_s, "loop_s": loop_s},
    }  # fmt: skip


def run(case: str, args) -> dict:
    if case == "demo":
        exp, data, trainer = demo_case()
    else:
        layers, frames, size = args.shape["vjepa2"]
        dtype = args.dtype or ("bfloat16" if jax.default_backend() == "gpu" else "float32")
        exp, data, trainer = vjepa2_case(layers, frames, size, args.batch, dtype, args.remat)
    exp_info = {"frames": exp.frames, "size": exp.size, "batch_trials": exp.batch_trials, "dtype": exp.dtype}
    warmup, steps = args.loop_warmup, args.loop_steps
    row = measure(exp, data, trainer, warmup=warmup, steps=steps, log_every=exp.log_every, reps=args.reps)
    return {"case": case, **exp_info, "device": jax.devices()[0].device_kind, **row}


def table(rows: list[dict]) -> str:
    lines = [
        "| case | clips (T x S^2) | steps | loop clips/s | step clips/s | loop / step | idle for input |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['frames']} x {r['size']}^2 | {r['steps']} | {r['loop_clips_per_s']:.1f} "
            f"| {r['step_clips_per_s']:.1f} | {r['loop_over_step']:.3f} "
            f"| {100 * r['input_wait_s'] / r['loop_s']:.1f} % |"
        )
    return "\n".join(lines)
