"""Clip forward passes to reach the demo's triplet-mode validation R^2: the paper's triplet steps
against video-batched steps, side by side on the embedded demo (same data, same pretrained
encoder, same adapters, same learning rate).

Triplet mode runs the demo's epochs and its best validation R^2 is the target; video mode then
trains until it first reaches that target (or spends as many clip forward passes as triplet mode
did). Validation R^2 is measured every `--every` clip forward passes in both modes.

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
    """(clip forwards, validation R^2) every `every` clips, up to `budget` clips or the target."""
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
    return curve


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--every", type=int, default=1000, help="validate every this many clip forward passes")
    p.add_argument("--video-batch", type=int, default=32)
    p.add_argument("--epochs", type=int, help="triplet-mode epochs (default: the demo's)")
    p.add_argument("--video-lr", type=float, help="video mode's learning rate (default: the demo's)")
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
        tri, best = [], {"val_r2": args.target, "clips": args.target_clips or budget}
    else:
        tri = train_curve(triplet_exp, data, trainer, every=args.every, budget=budget)
        best = max(tri, key=lambda r: r["val_r2"])
    target = best["val_r2"]
    print(f"target: val R^2 {target:.4f}, reached by triplet mode after {best['clips']} clips")
    video_exp = dataclasses.replace(
        base, mode="video", video_batch=args.video_batch, lr=args.video_lr or base.lr
    )
    if video_exp.lr != base.lr:
        trainer = prepare(video_exp)[3]  # same encoder and initial adapters, the video mode's optimiser
    vid = train_curve(video_exp, data, trainer, every=args.every, budget=best["clips"], target=target)
    hit = next((r for r in vid if r["val_r2"] >= target), None)
    result = {
        "target_val_r2": target, "triplet_clips": best["clips"],
        "video_clips": hit["clips"] if hit else None,
        "ratio": best["clips"] / hit["clips"] if hit else None,
        "video_batch": args.video_batch, "video_lr": video_exp.lr, "lr": base.lr, "every": args.every,
        "device": jax.devices()[0].device_kind,
        "curves": {"triplet": tri, "video": vid},
    }  # fmt: skip
    if hit:
        print(f"video mode reached {target:.4f} after {hit['clips']} clips: {result['ratio']:.1f}x fewer")
    else:
        print(f"video mode did not reach {target:.4f} within {best['clips']} clips")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
