"""Does the input pipeline keep the accelerator fed? Clips/s the cached-array grain pipeline delivers
against clips/s the train step consumes, and the stall fraction that follows.

The trainer reads clips from a uint8 cache (decoded once), assembles each step's batch in grain
worker threads (this process's rows only) and places it on the mesh ahead of the step that needs it
(`jaxbgs.training.loop.DevicePrefetch`, which this script runs as the trainer does).
With full overlap the device waits a fraction max(0, 1 - delivered / needed) of the time. This
script measures `delivered` at a chosen clip shape (the pipeline alone: assembly, per-process row
gather and placement, with nothing else running), and takes `needed` from
`benchmarks/train_throughput.py` (`--need CLIPS_PER_S`) or from a run directory
(`--run DIR`, whose metrics.jsonl also records the measured stall: `input_wait_s` per step).

    python benchmarks/input_pipeline.py --frames 16 --size 256 --need 49    # V-JEPA 2.1 ViT-B rate
    python benchmarks/input_pipeline.py --run runs/demo                      # a run's own stall

Not a test: prints a table, `--json OUT` writes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
import types

import jax
import numpy as np

import experiments
from jaxbgs import sharding
from jaxbgs.data import procedural
from jaxbgs.trainer.setup import split_data
from jaxbgs.trainer.task import BGSTask
from jaxbgs.training.loop import DevicePrefetch


def synthetic_data(exp: experiments.Experiment, n_videos: int):
    """The demo's trial design over `n_videos` videos, with random clips at the benchmark's shape."""
    demo = procedural.make_demo(n_videos, n_videos // 5, frames=4, size=16, seed=0, repeats=(2, 3))
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (n_videos, exp.frames, exp.size, exp.size, 3), dtype=np.uint8)
    return split_data(exp, clips, demo.train_ids, demo.test_ids, demo.train, demo.test)


def delivered(exp, data, steps: int) -> tuple[float, float]:
    """(clips/s, batches/s) of the pipeline alone, batches placed on the mesh and ready."""
    mesh = sharding.make_mesh(exp.mesh)
    placer = types.SimpleNamespace(mesh=mesh, place=lambda b: sharding.global_batch(b, mesh))
    task = BGSTask(exp, data, placer)
    plan = task.plan(0)[:steps]
    clips = 0
    t0 = time.perf_counter()
    pipeline = DevicePrefetch(task, plan, placer, depth=2)
    try:
        while (got := pipeline.get(None)[0]) is not None:
            jax.block_until_ready(got.arrays)
            clips += got.info["clips"]
    finally:
        pipeline.close()
    dt = time.perf_counter() - t0
    return clips / dt, len(plan) / dt


def run_stats(run_dir: str) -> dict:
    """Clips/s the step consumed and the measured stall, from a run's metrics.jsonl (first step,
    which compiles, left out)."""
    rows = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl"))]
    steps = [r for r in rows if "clips_per_s" in r][1:]
    if not steps:
        raise SystemExit(f"{run_dir}/metrics.jsonl has no step records beyond the first")
    busy = sum(r["clips"] / r["clips_per_s"] for r in steps)
    wait = sum(r.get("input_wait_s", 0.0) for r in steps)
    return {"need": sum(r["clips"] for r in steps) / busy, "measured_stall": wait / (wait + busy)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--videos", type=int, default=250, help="cache size (the human set has 250)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-trials", type=int, default=4)
    p.add_argument("--mode", default="triplet", choices=("triplet", "video"))
    p.add_argument("--need", type=float, help="clips/s the train step consumes (train_throughput.py)")
    p.add_argument("--run", help="a run directory: its step rate and measured stall")
    p.add_argument("--json")
    a = p.parse_args()
    exp = dataclasses.replace(
        experiments.get("demo"), frames=a.frames, size=a.size, batch_trials=a.batch_trials, mode=a.mode
    )
    out = {"device": jax.devices()[0].device_kind, "clip": [a.frames, a.size, a.size, 3], "mode": a.mode}
    if a.run:
        out |= run_stats(a.run)
        cfg = json.load(open(os.path.join(a.run, "config.json")))
        exp = dataclasses.replace(
            exp, frames=cfg["frames"], size=cfg["size"], batch_trials=cfg["batch_trials"]
        )
        out["clip"] = [exp.frames, exp.size, exp.size, 3]
    elif a.need:
        out["need"] = a.need
    data = synthetic_data(exp, a.videos)
    delivered(exp, data, 3)  # warm-up: threads, allocator
    out["delivered"], out["batches_per_s"] = delivered(exp, data, a.steps)
    if "need" in out:
        out["headroom"] = out["delivered"] / out["need"]
        out["projected_stall"] = max(0.0, 1.0 - out["headroom"])
    print("| " + " | ".join(out) + " |")
    print("|" + "---|" * len(out))
    print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in out.values()) + " |")
    if a.json:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(a.json)) or ".")
        with os.fdopen(fd, "w") as f:
            json.dump(out, f, indent=2)
        os.replace(tmp, a.json)


if __name__ == "__main__":
    main()
