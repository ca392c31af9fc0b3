"""Compile time of a V-JEPA 2 ViT-L LoRA training step, scanned blocks against unrolled ones.

The step is the BGS update without the trainer's data plumbing: `jax.value_and_grad` of the triplet
loss (`jaxbgs.losses.triplet_loss`) over the LoRA parameters (`nnx.split(model, lora.Trainable,
...)`), then the trainer's AdamW (`jaxbgs.trainer.step.make_optimizer`) update. The model is the
paper's: 24 blocks of width 1024 with 16 heads, LoRA rank 16 (alpha 32) on q/k/v and the output
projection, remat `full` as the GPU experiments set it; only the tokens are few (2 frames of 64 px,
batch 2 triplets = 6 clips, 16 tokens each), which barely changes compile time. Everything is
abstract (`nnx.eval_shape`, `jax.ShapeDtypeStruct`): nothing is allocated, only lowered and
compiled for the default backend.

    python benchmarks/compile_time.py [--layers 24] [--frames 2] [--size 64] [--batch 2]
        [--remat full] [--dtype float32] [--json OUT]

Prints, for `scan=True` and `scan=False`, the seconds to trace and lower, to compile, their sum,
the dot_general ops in the lowered StableHLO, and the unrolled / scanned ratio. Not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxbgs import lora, losses
from jaxbgs.models import vjepa2
from jaxbgs.trainer.step import make_optimizer

LORA = lora.LoRAConfig(rank=16, alpha=32.0, targets=("qkv", "out"))


def lowered_step(cfg: vjepa2.Config, batch: int):
    """The jitted update lowered on abstract state and inputs."""
    model = nnx.eval_shape(lambda: vjepa2.Model(cfg, lora=LORA, rngs=nnx.Rngs(0)))
    graphdef, trainable, rest = nnx.split(model, lora.Trainable, ...)
    opt = make_optimizer(1e-4, 0.05)
    opt_state = jax.eval_shape(opt.init, trainable)
    clips = jax.ShapeDtypeStruct(
        (3 * batch, cfg.frames_per_clip, cfg.crop_size, cfg.crop_size, 3), jnp.float32
    )

    def step(trainable, opt_state, rest, clips):
        def loss(t):
            m = nnx.merge(graphdef, t, rest, copy=True)
            m.train()
            e = m(clips).embedding.astype(jnp.float32)
            idx = jnp.arange(batch)
            return losses.triplet_loss(e, idx, idx + batch, idx + 2 * batch, margin=0.2)

        value, grads = jax.value_and_grad(loss)(trainable)
        updates, opt_state = opt.update(grads, opt_state, trainable)
        return optax.apply_updates(trainable, updates), opt_state, value

    return jax.jit(step, donate_argnums=(0, 1)).lower(trainable, opt_state, rest, clips)


def measure(cfg: vjepa2.Config, batch: int) -> dict:
    t0 = time.perf_counter()
    lowered = lowered_step(cfg, batch)
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    return {
        "lower_s": t1 - t0,
        "compile_s": t2 - t1,
        "total_s": t2 - t0,
        "dot_generals": lowered.as_text().count("stablehlo.dot_general"),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--frames", type=int, default=2)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=2, help="triplets per step (3x clips)")
    p.add_argument("--remat", default="full")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    base = vjepa2.Config.variant("vit_large", num_hidden_layers=args.layers).replace(
        crop_size=args.size, frames_per_clip=args.frames, remat=args.remat, dtype=args.dtype
    )
    results = {"scan": measure(base.replace(scan=True), args.batch)}
    results["unrolled"] = measure(base.replace(scan=False), args.batch)
    ratio = results["unrolled"]["total_s"] / results["scan"]["total_s"]
    versions = f"jax {jax.__version__}, flax {flax.__version__}"
    print(f"V-JEPA 2 ViT-L, {args.layers} blocks, LoRA rank {LORA.rank} on q/k/v/out, remat {args.remat}, "
          f"{args.dtype}, {3 * args.batch} clips of {args.frames}x{args.size}x{args.size}, {versions}, "
          f"{jax.default_backend()} ({platform.processor() or platform.machine()})")  # fmt: skip
    print(f"{'':10} {'lower s':>9} {'compile s':>10} {'total s':>9} {'dot_generals':>13}")
    for name, r in results.items():
        row = f"{r['lower_s']:9.2f} {r['compile_s']:10.2f} {r['total_s']:9.2f} {r['dot_generals']:13d}"
        print(f"{name:10} {row}")
    print(f"unrolled / scanned compile+lower time: {ratio:.1f}x")
    out = {
        "args": vars(args),
        "results": results,
        "ratio": ratio,
        "jax": jax.__version__,
        "flax": flax.__version__,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
