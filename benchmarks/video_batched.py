"""Clip forward passes to reach the demo's triplet-mode validation R^2: the paper's triplet steps
against video-batched steps, side by side on the embedded demo (same data, same pretrained
encoder, same initial adapters).

Both modes run with `--order-seeds` training-order seeds (batch order, RSA videos, augmentation
and dropout; the data and the adapters stay the same), and validation R^2 is measured every
`--every` clip forward passes and at every triplet epoch's end. A single run's curve moves by
+-0.02 from one evaluation to the next, so the targets come from triplet mode's curve averaged
over the seeds, and video mode's averaged curve has to reach them:
- "epoch": the best epoch-end value, what the demo's early stopping records (the acceptance bar:
  reached with >= 5x fewer clips);
- "peak": the best value anywhere on the fine grid (a stricter bar).
Video mode gets a fifth of the clips triplet mode needed for "epoch", with its own learning rate
and a cosine schedule over that budget if asked.

    python benchmarks/video_batched.py --order-seeds 6 --video-batch 64 --video-lr 5e-3 \
        --video-schedule cosine --video-budget 16012 --json OUT

(about 35 minutes on 2 CPU cores; docs/benchmarks.md). Seeds can also run in parts (`--first-seed`,
`--target`) and be pooled afterwards without training: `--pool-triplet A.json --pool-video B.json`.

Prints clip forward passes to each target for both modes and their ratio (> 1: video mode needs
fewer), also per seed. Not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax
import numpy as np

import experiments
from jaxbgs.train import prepare
from jaxbgs.trainer import task


def train_curve(exp, data, trainer, *, every: int, budget: int, order_seed: int | None = None) -> list[dict]:
    """(clip forwards, validation R^2) every `every` clips and at each triplet-mode epoch's end,
    up to `budget` clips. `order_seed` replaces the seed of everything drawn during
    training (batch order, RSA videos, augmentation, dropout), not of the data or the adapters."""
    trainable, opt_state = trainer.init()
    if order_seed is not None:
        exp = dataclasses.replace(exp, seed=order_seed)
    trainer.reseed(exp.seed)  # dropout keys from the order seed too
    clips = step = pad = 0
    next_eval = every
    curve = []
    t0 = time.perf_counter()
    for epoch in range(exp.epochs * 100):
        beta = task.beta_at(exp, min(epoch, exp.epochs - 1))
        for spec in task.epoch_plan(exp, data, epoch):
            pad = max(pad, -(-len(spec.roles) // 16) * 16)  # grows with the open-ended epochs it runs
            batch, w, n = task.make_batch(exp, data, spec, pad=pad or None)
            trainable, opt_state, _, _ = trainer.step(trainable, opt_state, batch, step, beta, w)
            clips += n
            step += 1
            if clips >= next_eval:
                next_eval += every
                r2 = task.validate(trainer, trainable, data)["val_r2"]
                curve.append({"clips": clips, "steps": step, "val_r2": r2, "s": time.perf_counter() - t0})
                print(f"  {exp.mode:>7}: {clips:>7} clips, step {step:>5}: val R^2 {r2:.4f}", flush=True)
                if clips >= budget:
                    return curve
        if clips >= budget:
            return curve
        if exp.mode == "video":  # its epochs' lengths depend on the seed; the grid is what it is measured on
            continue
        if not curve or curve[-1]["clips"] != clips:
            r2 = task.validate(trainer, trainable, data)["val_r2"]
            curve.append({"clips": clips, "steps": step, "val_r2": r2, "s": time.perf_counter() - t0})
        curve[-1]["epoch_end"] = epoch
    return curve


def first_reaching(curve: list[dict], target: float) -> int | None:
    return next((r["clips"] for r in curve if r["val_r2"] >= target), None)


def mean_curve(curves: list[list[dict]]) -> list[dict]:
    """Average over seeds; evaluation points fall at the same clip counts in every seed (the step
    sizes do not depend on it)."""
    assert len({tuple(r["clips"] for r in c) for c in curves}) == 1, "curves evaluated at different clips"
    return [
        {**rows[0], "val_r2": float(np.mean([r["val_r2"] for r in rows]))}
        for rows in zip(*curves, strict=True)
    ]


def targets_of(curve: list[dict]) -> dict[str, tuple[float, int]]:
    out = {}
    for name, pool in (("epoch", [r for r in curve if "epoch_end" in r]), ("peak", curve)):
        best = max(r["val_r2"] for r in pool)
        out[name] = (best, first_reaching(curve, best))
    return out


def report(tri: dict, vids: dict, targets: dict, budget_v: int) -> dict:
    """Print and return clips to each target for video mode's mean curve and per seed."""
    vid_mean = mean_curve(list(vids.values()))
    result = {"targets": {}, "curves": {"triplet": tri, "video": vids, "video_mean": vid_mean}}
    for name, (t, c) in targets.items():
        v = first_reaching(vid_mean, t)
        per_seed = [first_reaching(curve, t) for curve in vids.values()]
        result["targets"][name] = {"val_r2": t, "triplet_clips": c, "video_clips": v,
                                   "ratio": c / v if v else None, "per_seed": per_seed}  # fmt: skip
        verdict = f"after {v} clips: {c / v:.1f}x fewer" if v else f"not within {budget_v} clips"
        print(
            f"{name} ({t:.4f}, triplet mode {c} clips): video mode's mean curve {verdict}; seeds {per_seed}"
        )
    for mode, curves in (("triplet", tri), ("video", vids)):
        for seed, curve in curves.items():
            r2 = [r["val_r2"] for r in curve]
            print(f"{mode} seed {seed}: best {max(r2):.4f}, last 4 evaluations {np.mean(r2[-4:]):.4f}")
    return result


SETTINGS = (
    "video_batch",
    "video_lr",
    "video_schedule",
    "video_weight_decay",
    "video_loss",
    "video_budget",
    "every",
)


def pool(triplet_paths: list[str], video_paths: list[str]) -> dict:
    """Pool runs made in parts (e.g. order seeds 0-2 and 3-5): the targets from the triplet curves of
    `triplet_paths`, video mode's mean over the video curves of `video_paths` (same settings), cut
    at the pooled target's budget (a fifth of its clips) where they run past it."""
    runs = {}
    for path in dict.fromkeys(triplet_paths + video_paths):
        with open(path) as f:
            runs[path] = json.load(f)
    curves = {}
    for mode, paths in (("triplet", triplet_paths), ("video", video_paths)):
        curves[mode] = {}
        for path in paths:
            for seed, curve in runs[path]["curves"][mode].items():
                if seed in curves[mode]:
                    raise SystemExit(f"{path}: {mode} order seed {seed} is also in another file")
                curves[mode][seed] = curve
        if not curves[mode]:
            raise SystemExit(f"no {mode} curves in {paths}")
    settings = [{k: runs[path].get(k) for k in SETTINGS} for path in video_paths]
    if any(s != settings[0] for s in settings):
        raise SystemExit(f"video curves made with different settings: {settings}")
    targets = targets_of(mean_curve(list(curves["triplet"].values())))
    budget_v = targets["epoch"][1] // 5
    for seed, curve in curves["video"].items():  # cut at the budget (a curve may also end before it)
        end = next((r["clips"] for r in curve if r["clips"] >= budget_v), curve[-1]["clips"])
        curves["video"][seed] = [r for r in curve if r["clips"] <= end]
    budget_v = min(budget_v, max(c[-1]["clips"] for c in curves["video"].values()))
    n = len(curves["triplet"])
    for name, (t, c) in targets.items():
        print(f"target {name}: val R^2 {t:.4f} (mean of {n} seeds), first reached after {c} clips")
    return report(curves["triplet"], curves["video"], targets, budget_v) | settings[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--every", type=int, default=1000, help="validate every this many clip forward passes")
    p.add_argument("--order-seeds", type=int, default=3, help="training-order seeds per mode")
    p.add_argument("--first-seed", type=int, default=0, help="order seeds start here (fresh draws: 3, 6...)")
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
        "--video-decay-clips", type=int, help="cosine horizon in clips (default: the video budget)"
    )
    p.add_argument(
        "--video-budget", type=int, help="video mode's clips (default: a fifth of triplet's to the target)"
    )
    p.add_argument("--video-wd", type=float, help="video mode's weight decay (default: the demo's)")
    p.add_argument(
        "--video-loss", choices=("hybrid", "triplet", "rsa"), help="video mode's loss (default: the demo's)"
    )
    p.add_argument("--target", type=float, help="skip triplet mode: this validation R^2 is the target")
    p.add_argument("--target-clips", type=int, help="with --target: clips triplet mode needed to reach it")
    p.add_argument("--json", help="write the curves and the ratios here")
    p.add_argument(
        "--pool-triplet", nargs="+", metavar="JSON", help="no training: triplet curves of --json files"
    )
    p.add_argument("--pool-video", nargs="+", metavar="JSON", help="with --pool-triplet: their video curves")
    args = p.parse_args()
    if args.pool_triplet or args.pool_video:
        result = pool(args.pool_triplet or [], args.pool_video or [])
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
        return

    base = experiments.get("demo")
    if args.epochs:
        base = dataclasses.replace(base, epochs=args.epochs)
    data, _, _, trainer = prepare(base)
    seeds = range(args.first_seed, args.first_seed + args.order_seeds)
    triplet_exp = dataclasses.replace(base, mode="triplet")
    budget = sum(task.make_batch(triplet_exp, data, s)[2] for e in range(base.epochs)
                 for s in task.epoch_plan(triplet_exp, data, e))  # fmt: skip
    print(f"triplet mode: {base.epochs} epochs = {budget} clip forward passes")
    tri = {}
    if args.target is not None:
        targets = {"given": (args.target, args.target_clips or budget)}
    else:
        for seed in seeds:
            print(f"triplet mode, order seed {seed}")
            tri[seed] = train_curve(
                triplet_exp, data, trainer, every=args.every, budget=budget, order_seed=seed
            )
        targets = targets_of(mean_curve(list(tri.values())))
    for name, (t, c) in targets.items():
        print(f"target {name}: val R^2 {t:.4f}, first reached by triplet mode after {c} clips")
    bar = targets.get("epoch", targets.get("given"))[1]
    budget_v = args.video_budget or bar // 5
    decay_clips = args.video_decay_clips or budget_v
    video_exp = dataclasses.replace(
        base, mode="video", video_batch=args.video_batch, lr=args.video_lr or base.lr,
        weight_decay=base.weight_decay if args.video_wd is None else args.video_wd,
        lr_schedule=args.video_schedule, loss=args.video_loss or base.loss,
        decay_steps=-(-decay_clips // args.video_batch) if args.video_schedule != "constant" else 0,
    )  # fmt: skip
    trainer = prepare(video_exp)[3]  # same encoder and initial adapters, the video mode's optimiser
    vids = {}
    for seed in seeds:
        print(f"video mode, order seed {seed}: batch {args.video_batch}, lr {video_exp.lr}, {budget_v} clips")
        vids[seed] = train_curve(video_exp, data, trainer, every=args.every, budget=budget_v, order_seed=seed)
    result = report(tri, vids, targets, budget_v)
    result |= {
        "video_batch": args.video_batch, "video_lr": video_exp.lr, "lr": base.lr, "every": args.every,
        "video_schedule": video_exp.lr_schedule, "video_decay_steps": video_exp.decay_steps,
        "video_weight_decay": video_exp.weight_decay, "video_loss": video_exp.loss, "video_budget": budget_v,
        "epochs": base.epochs, "order_seeds": args.order_seeds, "device": jax.devices()[0].device_kind,
    }  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
