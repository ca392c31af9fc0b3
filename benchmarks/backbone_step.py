"""LoRA forward+backward per backbone: jaxbgs (jit) against its transformers+peft twin, side by side.

Both sides hold the same weights (the PyTorch twin converted with the family's key map), the same
adapters (rank 8 on the default q/k/v/out targets, B non-zero), the same input and float32; the loss
is the mean square of the final tokens projected on a fixed random direction, and only the
adapters receive gradients. Sizes are reduced
for a CPU (each family's real width and heads, 2 layers, short clips); on a GPU pass larger ones.

    python benchmarks/backbone_step.py [--arch vjepa2 ...] [--steps 10] [--layers 2] [--frames 8]
        [--size 64] [--batch 2] [--json OUT]

On a GPU the PyTorch twin runs on CUDA and JAX on its default device; there, pass the paper's
sizes (e.g. `--layers 24 --frames 16 --size 256` for V-JEPA 2).

Prints median milliseconds per step and the ratio PyTorch / JAX (> 1: JAX is faster). Not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from checkpoints_convert import convert, core, families
from jaxbgs import lora as lora_lib
from jaxbgs.models import family

LORA = lora_lib.LoRAConfig(rank=8, alpha=16)
# BGS's five video backbones and the caption encoder (SocialFusion's image encoders and LLM are not
# LoRA-trained video backbones: their parity lives in tests/models)
BENCHED = ("vjepa2", "vjepa21", "timesformer", "videomae", "clip", "bert")


def bench_config(arch: str, layers: int, frames: int, size: int):
    """Each family's real width and heads, `layers` blocks, `frames` frames of `size` px (CLIP: 7
    frames, the paper's count; BERT: sequences of `size // 4` tokens)."""
    cfg = family(arch).Config
    return {
        "vjepa2": lambda: cfg.variant("vit_large").replace(crop_size=size, frames_per_clip=frames),
        "vjepa21": lambda: cfg.variant("vit_base").replace(crop_size=size, frames_per_clip=frames),
        "timesformer": lambda: cfg.variant("vit_base").replace(image_size=size, num_frames=frames),
        "videomae": lambda: cfg.variant("vit_base").replace(image_size=size, num_frames=frames),
        "clip": lambda: cfg.variant("vit_b32").replace(image_size=size, num_frames=7),
        "bert": lambda: cfg.variant("all-MiniLM-L6-v2"),
    }[arch]().replace(num_hidden_layers=layers)


def torch_tokens(arch: str, model, inputs: dict):
    """Differentiable final tokens of the PyTorch twin."""
    device = next(model.parameters()).device
    t = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in inputs.items()}
    if arch == "bert":
        return model(**t).last_hidden_state
    x = t["pixels"]
    if arch == "vjepa2":
        return model(pixel_values_videos=x.permute(0, 1, 4, 2, 3), skip_predictor=True).last_hidden_state
    if arch == "vjepa21":
        return model(x.permute(0, 4, 1, 2, 3))
    if arch == "clip":
        b, f, h, w, c = x.shape
        tower = getattr(model, "vision_model", model)
        return tower(pixel_values=x.reshape(b * f, h, w, c).permute(0, 3, 1, 2)).last_hidden_state
    return model(pixel_values=x.permute(0, 1, 4, 2, 3)).last_hidden_state


def build_pair(arch: str, layers: int, frames: int = 8, size: int = 64):
    fam = families.get(arch)
    cfg = bench_config(arch, layers, frames, size)
    torch.manual_seed(0)
    twin = fam.torch_model(fam.hf_config(cfg)).float()
    state = {k: v.detach().numpy() for k, v in twin.state_dict().items()}
    model = fam.model_module.Model(cfg, lora=LORA, rngs=nnx.Rngs(0))
    params, _ = core.apply_to_flax(state, fam.key_map, core.base_shapes(model))
    core.assign(model, params)
    key = jax.random.key(1)
    for _, layer in lora_lib.adapters(model):  # non-zero B so both factors get gradients
        key, sub = jax.random.split(key)
        layer.lora_b[...] = 0.01 * jax.random.normal(sub, layer.lora_b.shape)
    meta = core.Meta(arch=arch, config=cfg.to_json(), lora=LORA.to_json())
    peft_config, tensors = convert.peft_adapters(model, meta)
    import peft

    names = dict(twin.named_modules())

    def local(name):  # a bare CLIPVisionModel (transformers 5) has no `vision_model.` level
        return name if name in names else name.split(".", 1)[1]

    targets = [local(m) for m in peft_config["target_modules"]]
    twin = peft.inject_adapter_in_model(
        peft.LoraConfig(r=LORA.rank, lora_alpha=LORA.alpha, target_modules=targets), twin
    )
    adapters = {}
    for k, v in tensors.items():
        module, _, leaf = k.removeprefix("base_model.model.").rpartition(".lora_")
        adapters[f"{local(module)}.lora_{leaf.replace('.weight', '.default.weight')}"] = torch.from_numpy(v)
    missing = set(adapters) - set(twin.state_dict())
    assert not missing, sorted(missing)[:4]
    twin.load_state_dict(adapters, strict=False)
    for name, p in twin.named_parameters():
        p.requires_grad_("lora_" in name)
    return fam, cfg, model, twin.eval()  # no dropout on either side: same function, same gradients


def time_steps(fn, steps: int) -> float:
    fn()  # warm-up (compiles on the JAX side)
    fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def bench(arch: str, steps: int, layers: int, frames: int, size: int, batch: int) -> dict:
    fam, cfg, model, twin = build_pair(arch, layers, frames, size)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    twin = twin.to(device)
    inputs = fam.example_input(cfg, None, size // 4 if arch == "bert" else None, 0, batch=batch)
    graphdef, trainable, rest = nnx.split(model, lora_lib.Trainable, ...)
    args = {k: jnp.asarray(v) for k, v in inputs.items()}
    direction = np.random.default_rng(0).standard_normal(cfg.hidden_size).astype(np.float32)

    def loss(tr, args):
        m = nnx.merge(graphdef, tr, rest)
        out = m(args["pixels"]) if "pixels" in args else m(**args)
        return jnp.mean((out.tokens.astype(jnp.float32) @ direction) ** 2)

    step = jax.jit(jax.value_and_grad(loss))
    value = {}

    def jax_step():
        value["jax"], grads = step(trainable, args)
        jax.block_until_ready(grads)

    def torch_step():
        twin.zero_grad(set_to_none=True)
        out = torch_tokens(arch, twin, inputs)
        loss_t = ((out @ torch.from_numpy(direction).to(out.device)) ** 2).mean()
        loss_t.backward()
        value["torch"] = loss_t.item()  # synchronises a GPU

    jax_ms, torch_ms = time_steps(jax_step, steps), time_steps(torch_step, steps)
    return {
        "arch": arch,
        "input": {k: list(v.shape) for k, v in inputs.items()},
        "layers": layers,
        "hidden": cfg.hidden_size,
        "jax_ms": jax_ms,
        "torch_ms": torch_ms,
        "torch_over_jax": torch_ms / jax_ms,
        "loss_rel_diff": abs(float(value["jax"]) - value["torch"]) / abs(value["torch"]),
        "trainable": lora_lib.summary(model).trainable,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", nargs="+", default=list(BENCHED), choices=BENCHED)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; torch {torch.__version__}; {cpu}, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'arch':<12} {'input':<24} {'jax ms':>9} {'torch ms':>9} {'torch/jax':>9} {'loss rel diff':>13}")
    rows = []
    for arch in args.arch:
        r = bench(arch, args.steps, args.layers, args.frames, args.size, args.batch)
        rows.append(r)
        shape = "x".join(map(str, next(iter(r["input"].values()))))
        print(f"{arch:<12} {shape:<24} {r['jax_ms']:9.1f} {r['torch_ms']:9.1f} "
              f"{r['torch_over_jax']:9.2f} {r['loss_rel_diff']:13.1e}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
