"""TimeSformer: transformers `TimesformerModel` directories, and `TimesformerForVideoClassification`
ones such as facebook/timesformer-base-finetuned-k400 (prefix `timesformer.` removed, the K400
classifier dropped)."""

from __future__ import annotations

from checkpoints_convert.core import CONV, KeyMap, Rule, linear_rules, norm_rules
from checkpoints_convert.families import Family, hf_video_forward
from jaxbgs.models import timesformer

_L = "encoder.layer.{i}"
_B = "blocks.{i}"


KEY_MAP = KeyMap(
    rules=(
        Rule("embeddings.patch_embeddings.projection.weight", "patch_embed.kernel", CONV),
        Rule("embeddings.patch_embeddings.projection.bias", "patch_embed.bias"),
        Rule("embeddings.cls_token", "cls_token"),
        Rule("embeddings.position_embeddings", "pos_embed"),
        Rule("embeddings.time_embeddings", "time_embed"),
        *norm_rules(f"{_L}.temporal_layernorm", f"{_B}.temporal_norm"),
        *linear_rules(f"{_L}.temporal_attention.attention.qkv", f"{_B}.temporal_attention.qkv"),
        *linear_rules(f"{_L}.temporal_attention.output.dense", f"{_B}.temporal_attention.out"),
        *linear_rules(f"{_L}.temporal_dense", f"{_B}.temporal_dense"),
        *norm_rules(f"{_L}.layernorm_before", f"{_B}.norm1"),
        *linear_rules(f"{_L}.attention.attention.qkv", f"{_B}.attention.qkv"),
        *linear_rules(f"{_L}.attention.output.dense", f"{_B}.attention.out"),
        *norm_rules(f"{_L}.layernorm_after", f"{_B}.norm2"),
        *linear_rules(f"{_L}.intermediate.dense", f"{_B}.mlp.fc1"),
        *linear_rules(f"{_L}.output.dense", f"{_B}.mlp.fc2"),
        *norm_rules("layernorm", "norm"),
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


FAMILY = Family(
    arch="timesformer",
    key_map=KEY_MAP,
    config_from_hf=config_from_hf,
    hf_config=hf_config,
    torch_model=torch_model,
    torch_forward=hf_video_forward,
    torch_class="TimesformerModel",
)
