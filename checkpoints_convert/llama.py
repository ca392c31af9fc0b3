"""Llama 3: transformers `LlamaForCausalLM` directories (meta-llama/Llama-3.2-1B, the LLM of
SocialFusion) and PEFT LoRA adapters on them, in both directions.

HF safetensors already use the split-halves (`rotate_half`) RoPE layout, so q/k_proj map with a
plain transpose; only Meta's original `consolidated.pth` would need the per-head row permutation,
and it is not read here. With tied embeddings the checkpoint has no `lm_head.weight` and the Flax
model no `lm_head`; an untied checkpoint maps it like any Linear. Both config.json spellings of the
rotary settings are read: transformers 5 `rope_parameters` and the older `rope_theta` plus
`rope_scaling` (what the Hub's Llama-3.2-1B config.json holds).

PEFT adapters load with `from_peft(base, adapter_dir)`: the adapter_config.json becomes a
`LoRAConfig` (its target modules must cover whole jaxbgs LoRA groups: q/k/v_proj -> "qkv",
o_proj -> "out", gate/up/down_proj -> "mlp") and every `lora_A`/`lora_B` tensor fills its Flax
adapter, strictly. Exports (merged HF directory, PEFT adapters) go through `convert.to_torch`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from flax import nnx

from checkpoints_convert.core import LINEAR, KeyMap, Rule, apply_to_flax, assign, flat_params, read_checkpoint
from checkpoints_convert.families import Family
from jaxbgs import lora as lora_lib
from jaxbgs.errors import InputError
from jaxbgs.models import llama

_L = "model.layers.{i}"
_F = "layers.{i}"
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")

KEY_MAP = KeyMap(
    rules=(
        Rule("model.embed_tokens.weight", "embed_tokens"),
        *(Rule(f"{_L}.self_attn.{n}.weight", f"{_F}.self_attn.{n}.kernel", LINEAR) for n in ATTENTION),
        *(Rule(f"{_L}.mlp.{n}.weight", f"{_F}.mlp.{n}.kernel", LINEAR) for n in MLP),
        *(
            Rule(f"{_L}.{n}.weight", f"{_F}.{n}.scale")
            for n in ("input_layernorm", "post_attention_layernorm")
        ),
        Rule("model.norm.weight", "norm.scale"),
        Rule("lm_head.weight", "lm_head.kernel", LINEAR),
    ),
    # RoPE buffers that transformers < 4.31 saved; the frequencies are recomputed from the config.
    ignore=(r"model\.(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq$",),
)

# PEFT target module name -> the jaxbgs LoRA group of that layer.
GROUP_OF = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "o_proj": "out"} | dict.fromkeys(MLP, "mlp")

_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
# transformers `LlamaConfig` defaults of the optional fields (a missing key means these there too).
_HF_DEFAULTS = {"rms_norm_eps": 1e-6, "max_position_embeddings": 2048, "tie_word_embeddings": False}
_SCALING = tuple(f.name for f in dataclasses.fields(llama.RopeScaling))


def config_from_hf(hf: dict | None, state: dict) -> llama.Config:
    if hf is None:
        raise InputError(
            "a Llama checkpoint needs its config.json",
            fix=f"pass the Hugging Face model directory (e.g. {llama.HF_ID})",
        )
    if missing := [k for k in _REQUIRED if k not in hf]:
        raise InputError(
            f"config.json lacks {missing}", where="config.json", fix="use a LlamaConfig config.json"
        )
    for flag in ("attention_bias", "mlp_bias"):
        if hf.get(flag):
            raise InputError(f"{flag}=true is not supported (Llama 3 has no biases)", where="config.json")
    if hf.get("hidden_act", "silu") != "silu":
        raise InputError(
            f"hidden_act {hf['hidden_act']!r} is not supported (Llama uses silu)", where="config.json"
        )
    rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ("default", "llama3"):
        raise InputError(
            f"rope_type {kind!r} is not supported",
            where="config.json",
            fix="use a Llama 3 (llama3) or plain RoPE",
        )
    scaling = None
    if kind == "llama3":
        if missing := [k for k in _SCALING if k not in rope]:
            raise InputError(f"llama3 rope parameters lack {missing}", where="config.json rope_scaling")
        scaling = llama.RopeScaling(**{k: rope[k] for k in _SCALING})
    heads = hf["num_attention_heads"]
    return llama.Config(
        **{k: hf[k] for k in _REQUIRED},
        **{k: hf.get(k, v) for k, v in _HF_DEFAULTS.items()},
        num_key_value_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
        rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        rope_scaling=scaling,
    )


def hf_config(cfg: llama.Config) -> dict:
    from transformers import LlamaConfig

    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if cfg.rope_scaling is not None:
        rope = rope | {"rope_type": "llama3", **dataclasses.asdict(cfg.rope_scaling)}
    fields = _REQUIRED + tuple(_HF_DEFAULTS) + ("num_key_value_heads", "head_dim")
    return LlamaConfig(**{k: getattr(cfg, k) for k in fields}, rope_parameters=rope).to_dict()


def _tied_head_is_not_missing(module, incompatible_keys):
    """A tied `lm_head.weight` is the embedding: checkpoints omit it, as `from_pretrained` expects."""
    if module.config.tie_word_embeddings and "lm_head.weight" in incompatible_keys.missing_keys:
        incompatible_keys.missing_keys.remove("lm_head.weight")


def torch_model(hf: dict):
    """`LlamaForCausalLM` with eager attention (the exact reference; SDPA differs by rounding)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(**hf))
    model.set_attn_implementation("eager")
    model.register_load_state_dict_post_hook(_tied_head_is_not_missing)
    return model.eval()


def example_input(cfg: llama.Config, frames: int | None, size: int | None, seed: int, batch: int = 2) -> dict:
    """Seeded token ids of length `size` (default 16; `frames` is unused); later rows end in padding."""
    n = size or 16
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, n), np.int64)
    for b in range(1, batch):
        mask[b, max(1, n - (n * b) // (batch + 1)) :] = 0
    return {"input_ids": rng.integers(0, cfg.vocab_size, (batch, n)), "attention_mask": mask}


# transformers argument -> `llama.Model` argument, so one input dict drives both twins.
_FLAX_ARGS = {
    "input_ids": "tokens",
    "inputs_embeds": "embeds",
    "attention_mask": "mask",
    "position_ids": "positions",
}


@nnx.jit
def _forward(model, inputs):
    return model(**{_FLAX_ARGS[k]: v for k, v in inputs.items()}, output_hidden_states=True)


def flax_forward(model, inputs: dict):
    out = _forward(model, inputs)
    return np.asarray(out.logits), [np.asarray(h) for h in out.hidden_states]


def torch_forward(model, inputs: dict):
    import torch

    with torch.no_grad():
        out = model(
            **{k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()}, output_hidden_states=True
        )
    return out.logits.numpy(), [h.numpy() for h in out.hidden_states]


# --------------------------------------------------------------------------- PEFT adapters -> Flax


def peft_key_map(key_map: KeyMap = KEY_MAP) -> KeyMap:
    """Adapter tensor names as PEFT saves them (`base_model.model.<module>.lora_A.weight`, (r, in);
    `lora_B`, (out, r)) onto the Flax `lora_a` (in, r) and `lora_b` (r, out) of each Linear."""
    rules = []
    for r in key_map.rules:
        if r.transform is LINEAR and r.torch.endswith(".weight"):
            t, f = r.torch[: -len(".weight")], r.flax[: -len(".kernel")]
            rules += [
                Rule(f"base_model.model.{t}.lora_A.weight", f"{f}.lora_a", LINEAR),
                Rule(f"base_model.model.{t}.lora_B.weight", f"{f}.lora_b", LINEAR),
            ]
    return KeyMap(rules=tuple(rules))


def lora_config_from_peft(config: dict, *, source: object = None) -> lora_lib.LoRAConfig:
    """The `LoRAConfig` of a PEFT adapter_config.json; options jaxbgs does not implement are errors."""
    where = "adapter_config.json"
    if config.get("peft_type", "LORA") != "LORA":
        raise InputError(f"peft_type {config['peft_type']!r} is not LoRA", file=source, where=where)
    for option in (
        "use_rslora",
        "use_dora",
        "fan_in_fan_out",
        "modules_to_save",
        "rank_pattern",
        "alpha_pattern",
    ):
        if config.get(option):
            raise InputError(f"{option}={config[option]!r} is not supported", file=source, where=where)
    if config.get("bias", "none") != "none" or config.get("layers_to_transform") is not None:
        raise InputError("adapter biases and layers_to_transform are not supported", file=source, where=where)
    targets = config.get("target_modules") or []
    if targets == "all-linear":  # PEFT's shorthand: every Linear but the output head
        names = set(GROUP_OF)
    elif isinstance(targets, str):
        raise InputError(
            f"target_modules is a regex ({targets!r})",
            file=source,
            where=where,
            fix="list the module names (q_proj, k_proj, ...) or use all-linear",
        )
    else:
        names = {t.split(".")[-1] for t in targets}
    if unknown := sorted(names - set(GROUP_OF)):
        raise InputError(f"target modules {unknown} are not Llama linear layers", file=source, where=where)
    groups = [g for g in dict.fromkeys(GROUP_OF.values()) if any(GROUP_OF[n] == g for n in names)]
    if partial := sorted(n for n, g in GROUP_OF.items() if g in groups and n not in names):
        raise InputError(
            f"target modules {sorted(names)} leave out {partial} of the same LoRA group",
            file=source,
            where=where,
            fix="jaxbgs adapts whole groups: q/k/v_proj together, o_proj, gate/up/down_proj together",
        )
    return lora_lib.LoRAConfig(
        rank=int(config["r"]),
        alpha=float(config["lora_alpha"]),
        dropout=float(config.get("lora_dropout") or 0.0),
        targets=tuple(groups),
    )


def read_peft(src) -> tuple[dict, dict[str, np.ndarray], Path]:
    """(adapter_config, tensors, directory) of a PEFT adapter directory."""
    src = Path(src).expanduser()
    cfg_file = src / "adapter_config.json"
    if not cfg_file.is_file():
        raise InputError(
            "no adapter_config.json", file=src, fix="pass a PEFT adapter directory (save_pretrained)"
        )
    try:
        config = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"adapter_config.json is not valid JSON ({e})", file=cfg_file) from e
    weights = [src / f for f in ("adapter_model.safetensors", "adapter_model.bin") if (src / f).is_file()]
    if not weights:
        raise InputError("no adapter_model.safetensors or adapter_model.bin", file=src)
    tensors, _, _ = read_checkpoint(weights[0])
    return config, tensors, src


def assign_peft_adapters(model: nnx.Module, tensors: dict[str, np.ndarray], *, source: object = None) -> None:
    """Fill every adapter of `model` from PEFT tensors; unknown, missing or misshapen ones are errors."""
    expected = {k: v.shape for k, v in flat_params(model, lora_lib.LoRAParam).items()}
    params, _ = apply_to_flax(tensors, peft_key_map(), expected, source=source)
    assign(model, params)


def from_peft(base, adapters, *, seed: int = 0, **overrides):
    """A PyTorch base checkpoint plus a PEFT adapter directory -> (Flax model, meta, passthrough)."""
    from checkpoints_convert import convert

    config, tensors, path = read_peft(adapters)
    lora = lora_config_from_peft(config, source=path / "adapter_config.json")
    model, meta, passthrough = convert.from_torch("llama", base, lora=lora, seed=seed, **overrides)
    assign_peft_adapters(model, tensors, source=path)
    return model, meta, passthrough


FAMILY = Family(
    arch="llama",
    key_map=KEY_MAP,
    config_from_hf=config_from_hf,
    hf_config=hf_config,
    torch_model=torch_model,
    torch_forward=torch_forward,
    example_input=example_input,
    flax_forward=flax_forward,
    torch_class="LlamaForCausalLM",
)
