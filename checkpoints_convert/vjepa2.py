"""V-JEPA 2: transformers `VJEPA2Model` directories (and task models with the `vjepa2.` prefix), or
the original release files (`vitl.pt`, ...), whose encoder is renamed to the transformers layout
with the fused qkv split into query/key/value (reference/vjepa.md §1.6)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from checkpoints_convert.core import CONV, KeyMap, Rule, linear_rules, norm_rules, strip_prefixes
from checkpoints_convert.families import Family
from jaxbgs.errors import InputError
from jaxbgs.models import vjepa2

_L, _B = "encoder.layer.{i}", "blocks.{i}"
KEY_MAP = KeyMap(
    rules=(
        Rule("encoder.embeddings.patch_embeddings.proj.weight", "patch_embed.kernel", CONV),
        Rule("encoder.embeddings.patch_embeddings.proj.bias", "patch_embed.bias"),
        *(
            r
            for n in ("query", "key", "value", "proj")
            for r in linear_rules(f"{_L}.attention.{n}", f"{_B}.attention.{n}")
        ),
        *linear_rules(f"{_L}.mlp.fc1", f"{_B}.mlp.fc1"),
        *linear_rules(f"{_L}.mlp.fc2", f"{_B}.mlp.fc2"),
        *norm_rules(f"{_L}.norm1", f"{_B}.norm1"),
        *norm_rules(f"{_L}.norm2", f"{_B}.norm2"),
        *norm_rules("encoder.layernorm", "norm"),
    ),
    keep=(r"predictor\.",),
    ignore=(r"pooler\.", r"classifier\."),
    strip=("vjepa2.",),
)

_ORIGINAL = (
    (r"^patch_embed\.", "encoder.embeddings.patch_embeddings."),
    (r"^blocks\.(\d+)\.attn\.", r"encoder.layer.\1.attention."),
    (r"^blocks\.", "encoder.layer."),
    (r"^norm\.", "encoder.layernorm."),
)


def unwrap_release(obj: dict, path: Path) -> dict:
    """The encoder of an original release file, in transformers names."""
    for key in ("target_encoder", "encoder", "ema_encoder"):
        if isinstance(obj.get(key), dict):
            state = strip_prefixes(obj[key])
            break
    else:
        if any(k.endswith("attn.qkv.weight") for k in obj):
            state = strip_prefixes(obj)
        else:
            raise InputError(
                "no encoder weights (expected a 'target_encoder' or 'encoder' entry)",
                file=path,
                fix="pass the V-JEPA 2 release file (vitl.pt, vith.pt, vitg.pt) or a transformers directory",
            )
    out = {}
    for k, v in state.items():
        if k == "pos_embed":  # unused by RoPE models; the hub loader drops it too
            continue
        for pat, rep in _ORIGINAL:
            k = re.sub(pat, rep, k)
        if ".attention.qkv." in k:
            q, kk, vv = np.split(v.numpy() if hasattr(v, "numpy") else v, 3, axis=0)
            import torch

            for name, part in zip(("query", "key", "value"), (q, kk, vv), strict=True):
                out[k.replace(".qkv.", f".{name}.")] = torch.from_numpy(np.ascontiguousarray(part))
        else:
            out[k] = v
    return out


def config_from_hf(hf: dict | None, state: dict) -> vjepa2.Config:
    if hf is None:  # a release file: infer the size from the weights
        d = state["encoder.embeddings.patch_embeddings.proj.weight"].shape[0]
        depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
        name = {1024: "vit_large", 1280: "vit_huge", 1408: "vit_giant"}.get(d)
        if name is None:
            raise InputError(
                f"unknown V-JEPA 2 width {d}", fix="pass a transformers directory with config.json"
            )
        # Release files carry no config: crop 256 unless overridden (vitg-384: --set crop_size=384).
        return vjepa2.Config.variant(name).replace(num_hidden_layers=depth)
    fields = (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "mlp_ratio",
        "patch_size",
        "tubelet_size",
        "crop_size",
        "frames_per_clip",
        "in_chans",
        "qkv_bias",
        "layer_norm_eps",
        "hidden_act",
    )
    return vjepa2.Config(**{f: hf[f] for f in fields if f in hf})


def hf_config(cfg: vjepa2.Config) -> dict:
    from transformers import VJEPA2Config

    d = {k: v for k, v in cfg.to_json().items() if k in VJEPA2Config().to_dict()}
    return VJEPA2Config(
        **d, pred_num_hidden_layers=1, pred_hidden_size=32, pred_num_attention_heads=2
    ).to_dict()


def torch_model(hf: dict):
    from transformers import VJEPA2Config, VJEPA2Model

    return VJEPA2Model(VJEPA2Config(**hf)).eval()


def torch_forward(model, inputs: dict):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(inputs["pixels"].transpose(0, 1, 4, 2, 3)))
    out = model(pixel_values_videos=x, skip_predictor=True, output_hidden_states=True)
    return out.last_hidden_state.numpy(), [h.numpy() for h in out.hidden_states]


FAMILY = Family(
    arch="vjepa2",
    key_map=KEY_MAP,
    config_from_hf=config_from_hf,
    hf_config=hf_config,
    torch_model=torch_model,
    torch_forward=torch_forward,
    unwrap=unwrap_release,
    torch_class="VJEPA2Model",
)
