"""LoRA training throughput per backbone: the jaxbgs trainer against its PyTorch peer, in one run.

What is measured, per family (vjepa2, vjepa21, timesformer, videomae, clip):
- JAX: the real training step, `jaxbgs.trainer.step.Trainer.step` (triplet term only, AdamW 1e-4,
  weight decay 0.01) on a uint8 triplet batch of B trials = 3B clips already on the device.
  `--loop demo vjepa2` instead times the real loop (`jaxbgs.training.fit`: input pipeline, metrics,
  logs) beside that pure step on the same batches (`benchmarks/loop_step.py`).
- PyTorch: the transformers class the family mirrors (V-JEPA 2.1: the repository's reference module)
  with identical weights and peft LoRA adapters (rank 8, alpha 16, same targets), built by
  `benchmarks/backbone_step.py`; same batch, same clip embedding and triplet loss (cosine distance of
  L2-normalised embeddings, margin 0.2, `jaxbgs.losses`), torch AdamW; bf16 autocast with
  `--dtype bfloat16` (float32 matmuls in TF32, as XLA's default on GPU), per-block gradient
  checkpointing for any `--remat` other than `none` (torch has no selective policy).
  The first-step losses of both sides are printed: equal in float32, they show the same function.
- Both sides alternate in one process (JAX, PyTorch, JAX, ...), `--reps` timed blocks of `--steps`
  steps each after warm-up; a block ends only when the device is idle (`jax.block_until_ready`,
  `torch.cuda.synchronize`). Reported: median step time, clips/s, the ratio JAX / PyTorch (> 1: JAX
  is faster), peak device memory, model FLOPs per clip and MFU, the attention kernel each side used,
  and the GPU's name, SM clock and power draw (nvidia-smi, sampled just after the timed blocks).
  FLOPs count the backbone only, not the attentive pooler jaxbgs does not train (ViT-L 64x256: 29.8 TF).
- Each family runs in its own child process so that peak-memory counters (JAX's cannot be reset)
  and allocator pools belong to that family alone. `--find-batch` first searches, per side in its
  own process and for each remat policy the side has (JAX: `none`, the one that keeps attention's
  results, `full`; PyTorch: none or per-block checkpointing), the largest batch that fits (doubling,
  then bisection) and the clips/s it runs at, and keeps each side's fastest policy that fits; then
  both sides are measured at the smaller of their batches (halved while out of memory).

CPU (reduced: 2 blocks, 8 frames of 64 px, 2 trials = 6 clips, float32, XLA attention, 5 steps):

    python benchmarks/train_throughput.py --reps 3 --json /tmp/tt.json [--arch clip videomae]

One H100 (paper shapes at full depth, cuDNN attention, 10 steps per block):

    python benchmarks/train_throughput.py --paper --dtype bfloat16 --remat full --reps 5 \
        --json docs/train_throughput_h100.json

Not a test; numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX and PyTorch share one GPU
os.environ.setdefault("TQDM_DISABLE", "1")

import jax
import numpy as np
import torch
import transformers
from backbone_step import LORA, build_pair  # the PyTorch twin with identical weights
from flax import nnx
from torch_peer import SDPA_OPS, Remat, torch_embedding, torch_triplet

from experiments import ARCHS  # the five BGS backbones
from jaxbgs import lora as lora_lib
from jaxbgs import losses
from jaxbgs.models.layers import REMAT_POLICIES, attention_kernel
from jaxbgs.trainer.setup import NORMALISATION
from jaxbgs.trainer.step import LossWeights, Trainer, make_optimizer

# (blocks, frames, px) of the paper's inputs (performance.md §1.3); the reduced CPU shape is below.
PAPER = {
    "vjepa2": (24, 64, 256),
    "vjepa21": (12, 16, 256),
    "timesformer": (12, 8, 224),
    "videomae": (12, 16, 224),
    "clip": (12, 8, 224),
}
REDUCED = (2, 8, 64)
ATTENTION_REMAT = "attention"  # the policy that keeps attention's results (no attention recompute)
# Dense bf16 tensor peaks (performance.md §1.4), most specific name first; fp32 (TF32) is half.
PEAKS = (("H200", 989.4e12), ("H100 PCIe", 756e12), ("H100", 989.4e12), ("A100", 312e12))
WEIGHTS = LossWeights(alpha=1.0, use_triplet=True, use_rsa=False)


def model_flops_per_clip(arch: str, cfg, frames: int, size: int, adapters) -> float:
    """Model FLOPs of one clip's LoRA training step, performance.md §1.2.

    The base is frozen, so per token: 4 N_lin (forward 2N plus the activation gradient 2N; no weight
    gradients) + 3 F_att (F_att = 4 T d per block: QK^T and PV forward, twice that backward), plus
    6 r (d_in + d_out) per adapted matrix. TimeSformer's divided attention adds a temporal qkv/out set
    and `temporal_dense` (17 d^2 per block with the MLP) and attends over T = patches + 1 in space and
    T = frames in time. Remat and flash-attention recompute are hardware, not model, FLOPs.
    """
    d, depth = cfg.hidden_size, cfg.num_hidden_layers
    mlp = getattr(cfg, "intermediate_size", None) or int(d * cfg.mlp_ratio)
    grid = (size // cfg.patch_size) ** 2
    if arch == "clip":  # every frame an image: patches + CLS
        tokens, attended = frames * (grid + 1), grid + 1
    elif arch == "timesformer":
        tokens, attended = frames * grid, grid + 1 + frames
    else:  # 2-frame tubelets, every token attends to every token
        tokens = frames // cfg.tubelet_size * grid
        attended = tokens
    n_lin = depth * (4 * d * d + 2 * d * mlp + (5 * d * d if arch == "timesformer" else 0))
    f_att = 4 * attended * d * depth
    lora = sum(6 * r * (d_in + d_out) for d_in, d_out, r in adapters)
    return float(tokens * (4 * n_lin + 3 * f_att + lora))


def peak_flops(device: str, dtype: str) -> float | None:
    for name, bf16 in PEAKS:
        if all(part in device for part in name.split()):
            return bf16 if dtype in ("bfloat16", "float16") else bf16 / 2
    return None  # CPU or an unlisted GPU: MFU n/a


def nvidia_smi() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,clocks.sm,power.draw", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        )  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def is_oom(e: Exception) -> bool:
    text = str(e)
    return isinstance(e, torch.OutOfMemoryError) or "RESOURCE_EXHAUSTED" in text or "out of memory" in text


class Bench:
    """One family on the requested sides: identical weights and adapters, one uint8 triplet batch."""

    def __init__(self, arch: str, args, remat: str, sides=("jax", "torch"), torch_remat: str | None = None):
        self.arch, self.args, self.sides, self.remat = arch, args, sides, remat
        self.torch_remat = remat if torch_remat is None else torch_remat
        self.layers, self.frames, self.size = args.shape[arch]
        with jax.default_device(jax.devices("cpu")[0]):  # built on the host: one device copy below
            fam, cfg, host_model, twin = build_pair(arch, self.layers, self.frames, self.size)
        self.cfg = cfg.replace(dtype=args.dtype, remat=remat, attention=args.attention)
        adapters = lora_lib.adapters(host_model)
        self.adapters = [(a.lora_a.shape[0], a.lora_b.shape[1], LORA.rank) for _, a in adapters]
        mean, std = NORMALISATION[arch]
        if "jax" in sides:  # the family model at this run's dtype, remat and attention, same weights
            model = nnx.eval_shape(lambda: fam.model_module.Model(self.cfg, lora=LORA, rngs=nnx.Rngs(0)))
            nnx.update(model, jax.device_put(nnx.state(host_model), jax.devices()[0]))
            opt = make_optimizer(1e-4, 0.01)
            self.trainer = Trainer(model, opt, mean=mean, std=std, margin=losses.MARGIN, n_grad=losses.RSA_M)
            self.step_index = 0
        self.dev = "cuda" if torch.cuda.is_available() else "cpu"
        if "torch" in sides:
            self.twin = twin.to(self.dev).train()  # no dropout in these configs; train() for checkpointing
            if self.torch_remat != "none":  # transformers' per-layer checkpointing, else ours (V-JEPA 2.1)
                if getattr(self.twin, "supports_gradient_checkpointing", False):
                    self.twin.activation_checkpointing_enable({"use_reentrant": False})
                else:
                    self.twin.blocks = torch.nn.ModuleList(Remat(b) for b in self.twin.blocks)
            params = [p for p in self.twin.parameters() if p.requires_grad]
            self.opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
            self.norm = [torch.tensor(v, device=self.dev) for v in (mean, std)]

    def set_batch(self, b: int):
        """B trials of random uint8 clips, put on the device once (the trainer's own input format)."""
        self.release()
        self.b = b
        shape = (3 * b, self.frames, self.size, self.size, 3)
        clips = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        if "jax" in self.sides:
            host = {"trial_clips": clips, "valid": np.ones(b, bool)}
            place = getattr(self.trainer, "place", None)  # the sharded trainer places its own batch
            self.batch = place(host) if place else jax.device_put(host)
            self.state = self.trainer.init()
            self.step_index = 0
        if "torch" in self.sides:
            self.clips = torch.from_numpy(clips).to(self.dev)

    def release(self):
        self.batch = self.state = self.clips = None
        if "torch" in self.sides:
            self.opt.zero_grad(set_to_none=True)
        gc.collect()
        if self.dev == "cuda":
            torch.cuda.empty_cache()

    def jax_step(self):
        trainable, opt_state, metrics, self.step_index = self.trainer.step(
            *self.state, self.batch, self.step_index, 0.0, WEIGHTS
        )
        self.state = (trainable, opt_state)
        return metrics["loss"]

    def torch_step(self):
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.dev, torch.bfloat16, enabled=self.args.dtype == "bfloat16"):
            x = (self.clips.float() / 255.0 - self.norm[0]) / self.norm[1]
            loss = torch_triplet(torch_embedding(self.arch, self.twin, x), self.b)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def run(self, side: str, steps: int) -> tuple[float, float]:
        """(seconds per step, last loss) for `steps` steps, timed until the device is idle."""
        step = self.jax_step if side == "jax" else self.torch_step
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step()
        if side == "jax":
            jax.block_until_ready((self.state, loss))
        elif self.dev == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / steps, float(loss)

    def torch_kernel(self) -> str:
        """The SDPA kernel(s) seen by the profiler in one step, plus the backends enabled on CUDA."""
        acts = [torch.profiler.ProfilerActivity.CPU] + (
            [torch.profiler.ProfilerActivity.CUDA] if self.dev == "cuda" else []
        )
        with torch.profiler.profile(activities=acts) as prof:
            self.run("torch", 1)
        names = {e.key for e in prof.key_averages()}
        used = {next((k for frag, k in SDPA_OPS if frag in n), None) for n in names} - {None}
        kernel = "+".join(sorted(used)) or "eager matmul+softmax (no SDPA)"
        if self.dev == "cuda":
            b = torch.backends.cuda
            on = [n for n in ("flash", "mem_efficient", "cudnn", "math") if getattr(b, f"{n}_sdp_enabled")()]
            kernel += f" (enabled: {','.join(on)})"
        return kernel


def measure(arch: str, args, batch: int, remat: str, torch_remat: str | None = None) -> dict:
    """Compile, warm up, then alternate timed blocks; one progress line per block."""
    bench = Bench(arch, args, remat, torch_remat=torch_remat)
    bench.set_batch(batch)
    clips = 3 * batch
    if bench.dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    _, loss_jax = bench.run("jax", 1)  # the loss before the first update, as PyTorch's below
    compile_s = time.perf_counter() - t0
    _, loss_torch = bench.run("torch", 1)
    print(
        f"[{arch}] compiled in {compile_s:.1f} s; first-step loss jax {loss_jax:.5f} torch {loss_torch:.5f}"
    )
    for side in ("jax", "torch"):
        bench.run(side, args.warmup)
    times = {"jax": [], "torch": []}
    for rep in range(args.reps):
        for side in ("jax", "torch"):
            sec, _ = bench.run(side, args.steps)
            times[side].append(sec)
            rate = f"{1e3 * sec:9.1f} ms/step {clips / sec:9.2f} clips/s"
            print(f"[{arch}] rep {rep + 1}/{args.reps} {side:<5} {rate}")
    smi = nvidia_smi()  # while the GPU is still warm
    device = jax.devices()[0].device_kind
    flops = model_flops_per_clip(arch, bench.cfg, bench.frames, bench.size, bench.adapters)
    peak = peak_flops(device, args.dtype)
    impl = "cuDNN fused" if bench.cfg.attention == "cudnn" else "XLA"
    row = {
        "arch": arch,
        "input": [clips, bench.frames, bench.size, bench.size, 3],
        "blocks": bench.layers,
        "batch_trials": batch,
        "dtype": args.dtype,
        "remat": remat,
        "torch_remat": bench.torch_remat,
        "device": device,
        "nvidia_smi": smi,
        "flops_per_clip": flops,
        "peak_flops": peak,
        "compile_s": compile_s,
        "first_loss": {"jax": loss_jax, "torch": loss_torch},
        "attention": {"jax": f"{impl} (jax.nn.dot_product_attention)", "torch": bench.torch_kernel()},
        "peak_bytes": {
            "jax": (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use"),
            "torch": torch.cuda.max_memory_allocated() if bench.dev == "cuda" else None,
        },
        "max_rss_bytes": 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # both sides, CPU
    }
    for side, secs in times.items():
        step = statistics.median(secs)
        row[side] = {"step_s": step, "step_s_all": secs, "clips_per_s": clips / step}
        row[side]["mfu"] = flops * clips / step / peak if peak else None
    row["jax_over_torch"] = row["jax"]["clips_per_s"] / row["torch"]["clips_per_s"]
    return row


def largest_batch(fits, start: int, cap: int) -> int:
    """Doubling from `start` until a failure (or `cap`), then bisection; 0 when not even 1 fits."""
    lo, hi, b = 0, None, start
    while hi is None:
        if not fits(b):
            hi = b
        elif b >= cap:
            return b
        else:
            lo, b = b, min(2 * b, cap)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def fits(bench: Bench, side: str, b: int) -> bool:
    """Whether two steps of batch `b` run; only out-of-memory counts as a "no"."""
    try:
        bench.set_batch(b)
        bench.run(side, 2)
        ok = True
    except Exception as e:
        if not is_oom(e):
            raise
        ok = False
    bench.release()
    print(f"[{bench.arch}] {side:<5} batch {b:4d} remat {bench.remat}: {'fits' if ok else 'out of memory'}")
    return ok


def remat_policies(side: str) -> tuple[str, ...]:
    """What each side can choose: PyTorch recomputes a whole block or nothing."""
    if side == "torch":
        return ("none", "full")
    return tuple(p for p in ("none", ATTENTION_REMAT, "full") if p in REMAT_POLICIES)


def find_batch(arch: str, args, side: str) -> dict:
    """Per remat policy, the largest batch (trials) this side fits and its clips/s there; the
    fastest policy that fits is the side's choice (less recompute can beat a larger batch)."""
    policies = {}
    for remat in remat_policies(side):
        bench = Bench(arch, args, remat, sides=(side,))
        best = largest_batch(functools.partial(fits, bench, side), args.batch, args.max_batch)
        rate = None
        if best:
            bench.set_batch(best)
            bench.run(side, 1)
            sec, _ = bench.run(side, 3)
            rate = 3 * best / sec
            bench.release()
            print(f"[{arch}] {side:<5} remat {remat}: batch {best} at {rate:.2f} clips/s")
        policies[remat] = {"max_batch": best, "clips_per_s": rate}
        del bench
        gc.collect()
    fitting = [r for r, v in policies.items() if v["max_batch"]]
    if not fitting:
        return {"max_batch": 0, "remat": "full", "policies": policies}
    fastest = max(fitting, key=lambda r: policies[r]["clips_per_s"])
    return {"max_batch": policies[fastest]["max_batch"], "remat": fastest, "policies": policies}


def child(spec: dict) -> None:
    """Runs one family (or one side's batch search) and writes its result to `spec['out']`."""
    args = argparse.Namespace(**spec["args"])
    gpu = jax.devices()[0].platform == "gpu"
    args.dtype = args.dtype or ("bfloat16" if gpu else "float32")
    args.attention = args.attention or attention_kernel("auto", args.dtype)  # what the trainer takes
    args.steps = args.steps or (10 if gpu else 5)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32, as XLA's default precision on GPU
    try:
        if spec["mode"] == "find":
            result = find_batch(spec["arch"], args, spec["side"])
        else:
            result = measure(spec["arch"], args, spec["batch"], spec["remat"], spec.get("torch_remat"))
    except Exception as e:
        if not is_oom(e):
            raise
        result = {"arch": spec["arch"], "error": f"out of memory at batch {spec.get('batch')}", "oom": True}
    with open(spec["out"], "w") as f:
        json.dump(result, f)


def run_child(mode: str, arch: str, args, **kw) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec = {"mode": mode, "arch": arch, "args": vars(args), "out": os.path.join(tmp, "r.json"), **kw}
        rc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
        ).returncode
        if rc or not os.path.exists(spec["out"]):
            return {"arch": arch, "error": f"{mode} process exited with status {rc}"}
        with open(spec["out"]) as f:
            return json.load(f)


def write_json(path: str, doc: dict) -> None:
    """Atomically: a reader (or an interrupted run) sees the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, path)


def table(rows: list[dict]) -> str:
    def gib(x):
        return "n/a" if x is None else f"{x / 2**30:.2f}"

    lines = [
        "| arch | side | input (clips x T x S^2) | blocks | dtype / remat | step ms | clips/s | JAX/PT "
        "| peak mem GiB | GFLOP/clip | MFU | attention |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['arch']} | error: {r['error']} |" + " |" * 10)
            continue
        shape = f"{r['input'][0]} x {r['input'][1]} x {r['input'][2]}^2"
        for side, name in (("jax", "JAX"), ("torch", "PyTorch")):
            s = r[side]
            mfu = "n/a" if s["mfu"] is None else f"{100 * s['mfu']:.1f} %"
            ratio = f"{r['jax_over_torch']:.2f}" if side == "jax" else ""
            lines.append(
                f"| {r['arch']} | {name} | {shape} | {r['blocks']} "
                f"| {r['dtype']} / {r['remat'] if side == 'jax' else r.get('torch_remat', r['remat'])} "
                f"| {1e3 * s['step_s']:.1f} | {s['clips_per_s']:.2f} | {ratio} "
                f"| {gib(r['peak_bytes'][side])} "
                f"| {r['flops_per_clip'] / 1e9:.1f} | {mfu} | {r['attention'][side]} |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", nargs="+", default=list(ARCHS), choices=ARCHS)
    p.add_argument("--paper", action="store_true", help="paper inputs at full depth (default: reduced)")
    p.add_argument("--layers", type=int, help="override the number of blocks")
    p.add_argument("--batch", type=int, default=2, help="trials per step (3 clips each)")
    p.add_argument("--dtype", choices=("bfloat16", "float32"), help="default: bfloat16 on GPU, else float32")
    p.add_argument("--remat", choices=tuple(REMAT_POLICIES), default="none", help="JAX side (PyTorch: full)")
    p.add_argument("--attention", choices=("xla", "cudnn"), help="JAX side; default: cudnn on GPU with bf16")
    p.add_argument("--reps", type=int, default=3, help="timed blocks per side (>= 3)")
    p.add_argument("--steps", type=int, help="steps per timed block (default: 10 on GPU, 5 on CPU)")
    p.add_argument("--warmup", type=int, help="untimed steps per side after compiling (5 GPU, 1 CPU)")
    p.add_argument("--find-batch", action="store_true", help="search the largest batch per side first")
    p.add_argument("--max-batch", type=int, default=512, help="upper bound of --find-batch (trials)")
    p.add_argument("--json", help="write all results here (atomically, after every family)")
    p.add_argument("--loop", nargs="+", choices=("demo", "vjepa2"), help="time the fit loop beside the step")
    p.add_argument("--loop-steps", type=int, default=60, help="--loop: timed steps")
    p.add_argument(
        "--loop-warmup", type=int, default=10, help="--loop: untimed first steps (log_every's multiple)"
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress lines through a pipe, in order with children
    if args.child:
        return child(json.loads(args.child))
    shapes = PAPER if args.paper else dict.fromkeys(ARCHS, REDUCED)
    args.shape = {a: (args.layers or s[0], *s[1:]) for a, s in shapes.items()}
    if args.loop:
        import loop_step

        rows = [loop_step.run(case, args) for case in args.loop]
        print(loop_step.table(rows))
        if args.json:
            write_json(
                args.json, {"command": " ".join(sys.argv), "versions": jax.__version__, "results": rows}
            )
        return None
    meta = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host_cpu": platform.processor() or platform.machine(),
        "nvidia_smi_at_start": nvidia_smi(),
        "versions": {m.__name__: m.__version__ for m in (jax, torch, transformers)},
        "lora": LORA.to_json(),
    }
    print(f"{meta['command']}\n{meta['versions']}; GPU: {meta['nvidia_smi_at_start'] or 'none'}")
    rows = []
    for arch in args.arch:
        batch, remat, torch_remat, found = args.batch, args.remat, args.remat, None
        if args.find_batch:
            found = {side: run_child("find", arch, args, side=side) for side in ("jax", "torch")}
            if any("error" in f for f in found.values()):
                rows.append({"arch": arch, "error": "batch search failed", "find_batch": found})
                continue
            batch = min(f["max_batch"] for f in found.values())
            remat, torch_remat = found["jax"]["remat"], found["torch"]["remat"]
            sizes = ", ".join(f"{k} {v['max_batch']} (remat {v['remat']})" for k, v in found.items())
            print(f"[{arch}] fastest that fits (trials): {sizes}; measuring both at {batch}")
        kw = dict(batch=batch, remat=remat, torch_remat=torch_remat)
        row = run_child("measure", arch, args, **kw) if batch else {"error": "nothing fits"}
        while args.find_batch and row.get("oom") and kw["batch"] > 1:  # both sides' pools share the GPU
            kw["batch"] //= 2
            row = run_child("measure", arch, args, **kw)
        rows.append({"arch": arch, **row, "find_batch": found})
        if args.json:
            write_json(args.json, {"meta": meta, "results": rows})
    print()
    print(table(rows))
    if any("error" in r for r in rows):
        sys.exit(1)  # the table above names each failure


if __name__ == "__main__":
    main()
