"""DINOv2: `Dinov2Model` directories (facebook/dinov2-*), and `Dinov2ForImageClassification` ones
(the same keys under `dinov2.`; the linear classifier is dropped on purpose).

Two spellings of the attention weights exist: the on-disk one (`attention.attention.query`,
`attention.output.dense`: the hub files, and what transformers 5 `save_pretrained` still writes)
and transformers 5's module names (`attention.q_proj`, `attention.o_proj`), which it renames to at
load time. Both read; the rules use the module names, so PEFT adapters name modules that exist,
and merged exports are written in the on-disk spelling that every transformers version loads.
The ViT-g SwiGLU MLP stays fused (`mlp.weights_in`) as stored on disk, and so takes no LoRA
(`jaxbgs.models.dinov2.SwiGLU`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from checkpoints_convert.core import CONV, KeyMap, Meta, Rule, linear_rules, norm_rules
from checkpoints_convert.families import Family, write_hf_dir
from jaxbgs.errors import InputError
from jaxbgs.models import dinov2

# (on disk, transformers 5 module) attention names.
_SPELLINGS = (
    ("attention.attention.query", "attention.q_proj"),
    ("attention.attention.key", "attention.k_proj"),
    ("attention.attention.value", "attention.v_proj"),
    ("attention.output.dense", "attention.o_proj"),
)
_LAYER = "encoder.layer.{i}"


def _rules() -> tuple[Rule, ...]:
    lay, flax = _LAYER, "layers.{i}"
    linears = [f"attention.{n}" for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
    linears += [f"mlp.{n}" for n in ("fc1", "fc2", "weights_in", "weights_out")]
    return (
        Rule("embeddings.cls_token", "embeddings.cls_token"),
        Rule("embeddings.mask_token", "embeddings.mask_token"),
        Rule("embeddings.position_embeddings", "embeddings.position_embeddings"),
        Rule("embeddings.patch_embeddings.projection.weight", "embeddings.patch_embeddings.kernel", CONV),
        Rule("embeddings.patch_embeddings.projection.bias", "embeddings.patch_embeddings.bias"),
        *(r for n in linears for r in linear_rules(f"{lay}.{n}", f"{flax}.{n}")),
        *(r for n in ("norm1", "norm2") for r in norm_rules(f"{lay}.{n}", f"{flax}.{n}")),
        *(Rule(f"{lay}.{n}.lambda1", f"{flax}.{n}.lambda1") for n in ("layer_scale1", "layer_scale2")),
        *norm_rules("layernorm", "layernorm"),
    )


KEY_MAP = KeyMap(
    rules=_rules(),
    strip=("dinov2.",),
    rename=tuple((rf"\.{re.escape(disk)}\.", f".{module}.") for disk, module in _SPELLINGS),
    ignore=(r"classifier\.",),
)

_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "mlp_ratio",
    "num_channels",
    "image_size",
    "patch_size",
    "hidden_act",
    "layer_norm_eps",
    "qkv_bias",
    "layerscale_value",
    "use_swiglu_ffn",
)


def config_from_hf(hf: dict | None, state: dict) -> dinov2.Config:
    """A Dinov2Config dict; whether a mask token exists comes from the weights (older configs
    have no `use_mask_token`)."""
    if hf is None:
        raise InputError(
            "DINOv2 needs a Hugging Face directory with config.json",
            fix="pass a Dinov2Model directory (e.g. facebook/dinov2-base)",
        )
    for name in ("image_size", "patch_size"):
        if not isinstance(hf.get(name, 0), int):
            raise InputError(
                f"{name} {hf[name]!r} is not one integer",
                where=f"config.json {name}",
                fix="only square images and patches are supported",
            )
    return dinov2.Config(
        **{f: hf[f] for f in _FIELDS if f in hf}, use_mask_token="embeddings.mask_token" in state
    )


def hf_config(cfg: dinov2.Config) -> dict:
    from transformers import Dinov2Config

    fields = {f: getattr(cfg, f) for f in _FIELDS} | {"use_mask_token": cfg.use_mask_token}
    return Dinov2Config(**fields).to_dict() | {"architectures": ["Dinov2Model"]}


def _unfuse_swiglu(module, state_dict, prefix, *args):
    """The on-disk SwiGLU (`weights_in` = gate rows then up rows) onto transformers 5's
    gate_proj/up_proj/down_proj, as its own loader does."""
    for k in [k for k in state_dict if re.search(r"\.mlp\.weights_(in|out)\.", k)]:
        v = state_dict.pop(k)
        if ".weights_out." in k:
            state_dict[k.replace(".weights_out.", ".down_proj.")] = v
        else:
            gate, up = v.chunk(2, dim=0)
            state_dict[k.replace(".weights_in.", ".gate_proj.")] = gate
            state_dict[k.replace(".weights_in.", ".up_proj.")] = up


def torch_model(hf: dict):
    import transformers as tf

    model = tf.Dinov2Model(tf.Dinov2Config(**hf)).eval()
    model.register_load_state_dict_pre_hook(_unfuse_swiglu)
    return model


def image_input(cfg, frames: int | None, size: int | None, seed: int, batch: int = 2) -> dict:
    """Seeded normal pixels: (B, H, W, C) images at the config's size, or (B, T, H, W, C) clips
    when `frames` is given."""
    size = size or cfg.image_size
    shape = (batch, size, size, 3) if frames is None else (batch, frames, size, size, 3)
    return {"pixels": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}


def images_nchw(pixels: np.ndarray):
    """(B, [T,] H, W, C) numpy -> a (B*T, C, H, W) torch tensor, the images as transformers takes them."""
    import torch

    x = pixels.reshape(-1, *pixels.shape[-3:]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x))


def torch_forward(model, inputs: dict):
    """Per-image (last_hidden_state, hidden_states), the clips' frames run as one batch."""
    out = model(pixel_values=images_nchw(inputs["pixels"]), output_hidden_states=True)
    return out.last_hidden_state.numpy(), [s.numpy() for s in out.hidden_states]


def _on_disk(key: str) -> str:
    for disk, module in _SPELLINGS:
        key = key.replace(f".{module}.", f".{disk}.")
    return key


def write_torch(dst: Path, state: dict, meta: Meta, family: Family) -> None:
    """`write_hf_dir` with the attention weights spelled as on the hub."""
    write_hf_dir(dst, {_on_disk(k): v for k, v in state.items()}, meta, family)


FAMILY = Family(
    arch="dinov2",
    key_map=KEY_MAP,
    config_from_hf=config_from_hf,
    hf_config=hf_config,
    torch_model=torch_model,
    torch_forward=torch_forward,
    example_input=image_input,
    write_torch=write_torch,
    torch_class="Dinov2Model",
)
