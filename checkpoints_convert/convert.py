"""PyTorch -> Flax, Flax -> PyTorch (merged HF directory or PEFT adapters) and parity checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flax import nnx

from checkpoints_convert import core, families
from jaxbgs import lora as lora_lib
from jaxbgs.errors import InputError
from jaxbgs.files import atomic_path


def from_torch(arch: str, src, *, lora: lora_lib.LoRAConfig | None = None, seed: int = 0, **overrides):
    """Load a PyTorch checkpoint into a Flax model in memory: (model, meta, passthrough tensors).

    `overrides` set run-time config fields (dtype, remat, attention, pool, head_dim, ...).
    """
    fam = families.get(arch)
    state, hf_config, path = core.read_checkpoint(src, unwrap=fam.unwrap)
    cfg = fam.config_from_hf(hf_config, fam.key_map.prepare(state))
    if overrides:
        cfg = cfg.replace(**overrides)
    model = fam.model_module.Model(cfg, lora=lora, rngs=nnx.Rngs(seed))
    params, passthrough = core.apply_to_flax(state, fam.key_map, core.base_shapes(model), source=path)
    core.assign(model, params)
    meta = core.Meta(
        arch=arch,
        config=cfg.to_json(),
        lora=lora.to_json() if lora else None,
        hf_config=hf_config,
        source=str(path),
    )
    return model, meta, passthrough


def to_flax(arch: str, src, dst, **kw) -> Path:
    """Convert a PyTorch checkpoint into a Flax checkpoint directory (see `core.save`)."""
    model, meta, passthrough = from_torch(arch, src, **kw)
    return core.save(model, dst, meta, passthrough=passthrough)


def torch_state(model: nnx.Module, meta: core.Meta) -> dict[str, np.ndarray]:
    """The merged base weights under PyTorch names (adapters folded in; the model is left unmerged)."""
    fam = families.get(meta.arch)
    lora_lib.merge(model)
    try:
        base = {k: v for k, v in core.flat_params(model).items() if k in core.base_shapes(model)}
        return core.apply_to_torch(base, fam.key_map)
    finally:
        lora_lib.unmerge(model)


def peft_adapters(model: nnx.Module, meta: core.Meta) -> tuple[dict, dict]:
    """(adapter_config, tensors) in PEFT's LoRA format for the adapters of `model`."""
    fam = families.get(meta.arch)
    lcfg = lora_lib.LoRAConfig.from_json(meta.lora)
    if lcfg is None or not lora_lib.adapter_paths(model):
        raise InputError("the checkpoint has no LoRA adapters", fix="export merged weights without --peft")
    tensors, modules = {}, []
    for path, layer in lora_lib.adapters(model):
        dotted = ".".join(str(p) for p in path)
        hit = fam.key_map.flax_to_torch(dotted + ".kernel")
        if hit is None or not hit[0].endswith(".weight"):
            raise InputError(f"no PyTorch module for adapter {dotted}", fix="extend the family's key map")
        module = hit[0][: -len(".weight")]
        modules.append(module)
        tensors[f"base_model.model.{module}.lora_A.weight"] = np.asarray(
            np.asarray(layer.lora_a[...]).T, order="C"
        )
        tensors[f"base_model.model.{module}.lora_B.weight"] = np.asarray(
            np.asarray(layer.lora_b[...]).T, order="C"
        )
    config = {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": meta.source,
        "r": lcfg.rank,
        "lora_alpha": lcfg.alpha,
        "lora_dropout": lcfg.dropout,
        "target_modules": sorted(modules),
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
    }
    return config, tensors


def head_tensors(model: nnx.Module) -> dict[str, np.ndarray]:
    """Trainable non-adapter weights (projection heads), which no PyTorch base model holds."""
    lora_keys = set(core.flat_params(model, lora_lib.LoRAParam))
    return {k: v for k, v in core.flat_params(model, lora_lib.TrainableParam).items() if k not in lora_keys}


def to_torch(src, dst, *, peft: bool = False) -> Path:
    """Export a Flax checkpoint directory: merged weights as a PyTorch model, or PEFT adapters."""
    from safetensors.numpy import save_file

    model, meta = core.load(src)
    fam = families.get(meta.arch)
    dst = Path(dst).absolute()
    with atomic_path(dst, directory=True) as tmp:
        if peft:
            config, tensors = peft_adapters(model, meta)
            (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
            save_file(tensors, str(tmp / "adapter_model.safetensors"))
        else:
            state = {**core.read_passthrough(src), **torch_state(model, meta)}
            fam.write_torch(tmp, state, meta, fam)
        if heads := head_tensors(model):
            save_file(
                {k: np.asarray(v, order="C") for k, v in heads.items()}, str(tmp / "jaxbgs_head.safetensors")
            )
    return dst


def check(arch: str, src, *, frames: int | None = None, size: int | None = None, seed: int = 0) -> dict:
    """Run the PyTorch model and the converted Flax model on the same seeded input in float32."""
    import torch

    fam = families.get(arch)
    model, meta, _ = from_torch(arch, src)
    state, hf_config, _ = core.read_checkpoint(src, unwrap=fam.unwrap)
    twin = fam.torch_from_state(hf_config or fam.hf_config(fam.config(meta)), state)
    inputs = fam.example_input(fam.config(meta), frames, size, seed)
    with torch.no_grad():
        t_final, t_hidden = fam.torch_forward(twin, inputs)
    f_final, f_hidden = fam.flax_forward(model, inputs)
    return compare(t_final, t_hidden, f_final, f_hidden) | {
        "arch": arch,
        "input_shapes": {k: list(v.shape) for k, v in inputs.items()},
    }


def compare(t_final, t_hidden, f_final, f_hidden) -> dict:
    if len(t_hidden) != len(f_hidden):
        raise AssertionError(f"{len(t_hidden)} PyTorch hidden states vs {len(f_hidden)} Flax")

    def diff(a, b):
        if np.shape(a) != np.shape(b):
            raise AssertionError(f"shape {np.shape(a)} (PyTorch) vs {np.shape(b)} (Flax)")
        return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))

    return {
        "max_abs_diff": diff(t_final, f_final),
        "per_layer_max_abs_diff": [diff(a, b) for a, b in zip(t_hidden, f_hidden, strict=True)],
        "output_max_abs": float(np.max(np.abs(t_final))),
    }
