"""Clip forward passes to reach the demo's triplet-mode validation R^2: the paper's triplet steps
against video-batched steps, side by side on the embedded demo (same data, same pretrained
encoder, same adapters, same learning rate unless --video-lr).

Triplet mode runs the demo's epochs; validation R^2 is measured every `--every` clip forward passes
in both modes, and at every triplet epoch's end. Two targets, each reached when a mode's curve
first gets there:
- "epoch": the best epoch-end value, i.e. the validation R^2 the demo's early stopping records;
- "peak": the best value anywhere on triplet mode's fine grid (the demo's ~90 validation trials
  make single evaluations noisy, so this is the luckiest of many draws: a stricter bar).

    python benchmarks/video_batched.py [--epochs 4] [--every 1000] [--video-batch 32] [--json OUT]

Prints clip forward passes to the target for both modes and their ratio (> 1: video mode needs
fewer). Not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import experiments
from jaxbgs.train import prepare
from jaxbgs.trainer import loop


def train_curve(exp, data, trainer, *, every: int, budget: int, target: float | None = None) -> list[dict]:
    """(clip forwards, validation R^2) every `every` clips and at each epoch's end (`epoch_end`),
    up to `budget` clips or the target."""
    trainable, opt_state = trainer.init()
    key = jax.random.key(exp.seed)
    clips = step = 0
    next_eval = every
    curve = []
    t0 = time.perf_counter()
    for epoch in range(exp.epochs * 100):
        beta = jnp.float32(loop.beta_at(exp, min(epoch, exp.epochs - 1)))
        for spec in loop.epoch_plan(exp, data, epoch):
            batch, w, n = loop.make_batch(exp, data, spec, epoch)
            trainable, opt_state, _ = trainer.step(
                trainable, opt_state, batch, jax.random.fold_in(key, step), beta, w
            )
            clips += n
            step += 1
            if clips >= next_eval:
                next_eval += every
                r2 = loop.validate(exp, trainer, trainable, data)["val_r2"]
                curve.append({"clips": clips, "steps": step, "val_r2": r2, "s": time.perf_counter() - t0})
                print(f"  {exp.mode:>7}: {clips:>7} clips, step {step:>5}: val R^2 {r2:.4f}", flush=True)
                if (target is not None and r2 >= target) or clips >= budget:
                    return curve
        if clips >= budget:
            return curve
        if not curve or curve[-1]["clips"] != clips:
            r2 = loop.validate(exp, trainer, trainable, data)["val_r2"]
            curve.append({"clips": clips, "steps": step, "val_r2": r2, "s": time.perf_counter() - t0})
        curve[-1]["epoch_end"] = epoch
    return curve


def first_reaching(curve: list[dict], target: float) -> int | None:
    return next((r["clips"] for r in curve if r["val_r2"] >= target), None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--every", type=int, default=1000, help="validate every this many clip forward passes")
    p.add_argument("--video-batch", type=int, default=32)
    p.add_argument("--epochs", type=int, help="triplet-mode epochs (default: the demo's)")
    p.add_argument("--video-lr", type=float, help="video mode's learning rate (default: the demo's)")
    p.add_argument(
        "--video-schedule",
        default="constant",
        choices=("constant", "cosine"),
        help="video mode's lr schedule; cosine decays to 0 over --video-decay-clips",
    )
    p.add_argument(
        "--video-decay-clips", type=int, help="cosine horizon in clips (default: triplet clips / 5)"
    )
    p.add_argument(
        "--video-budget", type=int, help="stop video mode after this many clips (default: triplet's)"
    )
    p.add_argument("--video-wd", type=float, help="video mode's weight decay (default: the demo's)")
    p.add_argument("--target", type=float, help="skip the triplet run: this validation R^2 is the target")
    p.add_argument("--target-clips", type=int, help="with --target: clips triplet mode needed to reach it")
    p.add_argument("--json", help="write the curves and the ratio here")
    args = p.parse_args()

    base = experiments.get("demo")
    if args.epochs:
        base = dataclasses.replace(base, epochs=args.epochs)
    data, _, _, trainer = prepare(base)
    triplet_exp = dataclasses.replace(base, mode="triplet")
    budget = sum(loop.make_batch(triplet_exp, data, s, e)[2] for e in range(base.epochs)
                 for s in loop.epoch_plan(triplet_exp, data, e))  # fmt: skip
    print(f"triplet mode: {base.epochs} epochs = {budget} clip forward passes")
    if args.target is not None:
        tri = []
        targets = {"given": (args.target, args.target_clips or budget)}
    else:
        tri = train_curve(triplet_exp, data, trainer, every=args.every, budget=budget)
        ends = [r for r in tri if "epoch_end" in r]
        targets = {}
        for name, pool in (("epoch", ends), ("peak", tri)):
            best = max(r["val_r2"] for r in pool)
            targets[name] = (best, first_reaching(tri, best))
    for name, (t, c) in targets.items():
        print(f"target {name}: val R^2 {t:.4f}, first reached by triplet mode after {c} clips")
    longest = max(c for _, c in targets.values())
    decay_clips = args.video_decay_clips or longest // 5
    video_exp = dataclasses.replace(
        base, mode="video", video_batch=args.video_batch, lr=args.video_lr or base.lr,
        weight_decay=base.weight_decay if args.video_wd is None else args.video_wd,
        lr_schedule=args.video_schedule,
        decay_steps=-(-decay_clips // args.video_batch) if args.video_schedule != "constant" else 0,
    )  # fmt: skip
    if (video_exp.lr, video_exp.weight_decay, video_exp.lr_schedule) != (
        base.lr,
        base.weight_decay,
        "constant",
    ):
        trainer = prepare(video_exp)[3]  # same encoder and initial adapters, the video mode's optimiser
    highest = max(t for t, _ in targets.values())
    vid = train_curve(
        video_exp, data, trainer, every=args.every, budget=args.video_budget or longest, target=highest
    )
    result = {"targets": {}}
    for name, (t, c) in targets.items():
        v = first_reaching(vid, t)
        result["targets"][name] = {"val_r2": t, "triplet_clips": c, "video_clips": v,
                                   "ratio": c / v if v else None}  # fmt: skip
        if v:
            print(f"{name}: video mode reached {t:.4f} after {v} clips (triplet {c}): {c / v:.1f}x fewer")
        else:
            print(f"{name}: video mode did not reach {t:.4f} within {vid[-1]['clips'] if vid else 0} clips")
    result |= {
        "video_batch": args.video_batch, "video_lr": video_exp.lr, "lr": base.lr, "every": args.every,
        "video_schedule": video_exp.lr_schedule, "video_decay_steps": video_exp.decay_steps,
        "video_weight_decay": video_exp.weight_decay, "epochs": base.epochs,
        "device": jax.devices()[0].device_kind,
        "curves": {"triplet": tri, "video": vid},
    }  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
