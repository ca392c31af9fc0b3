"""TimeSformer: transformers `TimesformerModel` directories, and `TimesformerForVideoClassification`
ones such as facebook/timesformer-base-finetuned-k400 (prefix `timesformer.` removed, the K400
classifier dropped)."""

from __future__ import annotations

import numpy as np
from flax import nnx

from checkpoints_convert.core import CONV, LINEAR, KeyMap, Rule
from checkpoints_convert.families import Family
from jaxbgs.models import timesformer

_L = "encoder.layer.{i}"
_B = "blocks.{i}"


def _linear(torch: str, flax: str) -> tuple[Rule, Rule]:
    return Rule(f"{torch}.weight", f"{flax}.kernel", LINEAR), Rule(f"{torch}.bias", f"{flax}.bias")


def _norm(torch: str, flax: str) -> tuple[Rule, Rule]:
    return Rule(f"{torch}.weight", f"{flax}.scale"), Rule(f"{torch}.bias", f"{flax}.bias")


KEY_MAP = KeyMap(
    rules=(
        Rule("embeddings.patch_embeddings.projection.weight", "patch_embed.kernel", CONV),
        Rule("embeddings.patch_embeddings.projection.bias", "patch_embed.bias"),
        Rule("embeddings.cls_token", "cls_token"),
        Rule("embeddings.position_embeddings", "pos_embed"),
        Rule("embeddings.time_embeddings", "time_embed"),
        *_norm(f"{_L}.temporal_layernorm", f"{_B}.temporal_norm"),
        *_linear(f"{_L}.temporal_attention.attention.qkv", f"{_B}.temporal_attention.qkv"),
        *_linear(f"{_L}.temporal_attention.output.dense", f"{_B}.temporal_attention.out"),
        *_linear(f"{_L}.temporal_dense", f"{_B}.temporal_dense"),
        *_norm(f"{_L}.layernorm_before", f"{_B}.norm1"),
        *_linear(f"{_L}.attention.attention.qkv", f"{_B}.attention.qkv"),
        *_linear(f"{_L}.attention.output.dense", f"{_B}.attention.out"),
        *_norm(f"{_L}.layernorm_after", f"{_B}.norm2"),
        *_linear(f"{_L}.intermediate.dense", f"{_B}.mlp.fc1"),
        *_linear(f"{_L}.output.dense", f"{_B}.mlp.fc2"),
        *_norm("layernorm", "norm"),
    ),
    ignore=(r"classifier\.",),
    strip=("timesformer.",),
)

_HF_FIELDS = (
    "image_size",
    "patch_size",
    "num_channels",
    "num_frames",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "layer_norm_eps",
    "qkv_bias",
    "attention_type",
)


def config_from_hf(hf: dict | None, state: dict) -> timesformer.Config:
    hf = hf or {}  # no config: the K400 ViT-B/16 defaults (transformers' own)
    return timesformer.Config(**{f: hf[f] for f in _HF_FIELDS if f in hf})


def hf_config(cfg: timesformer.Config) -> dict:
    from transformers import TimesformerConfig

    return TimesformerConfig(**{f: getattr(cfg, f) for f in _HF_FIELDS}).to_dict()


def torch_model(hf: dict):
    from transformers import TimesformerConfig, TimesformerModel

    return TimesformerModel(TimesformerConfig(**hf)).eval()


def torch_forward(model, inputs: dict):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(inputs["pixels"].transpose(0, 1, 4, 2, 3)))
    out = model(pixel_values=x, output_hidden_states=True)
    return out.last_hidden_state.numpy(), [h.numpy() for h in out.hidden_states]


def flax_forward(model, inputs: dict):
    """(final tokens, hidden states), jitted: one compile per input shape instead of one per op."""
    out = _jit_forward(model, inputs["pixels"])
    return np.asarray(out.tokens), [np.asarray(h) for h in out.hidden_states]


@nnx.jit
def _jit_forward(model, pixels):
    return model(pixels)


FAMILY = Family(
    arch="timesformer",
    key_map=KEY_MAP,
    config_from_hf=config_from_hf,
    hf_config=hf_config,
    torch_model=torch_model,
    torch_forward=torch_forward,
    flax_forward=flax_forward,
    torch_class="TimesformerModel",
)
