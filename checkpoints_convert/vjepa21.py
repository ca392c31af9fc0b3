"""V-JEPA 2.1: the official release files (`vjepa2_1_vitb_dist_vitG_384.pt`, `..._vitl_dist_vitG_384.pt`,
`vjepa2_1_vitg_384.pt`, `vjepa2_1_vitG_384.pt`) or a plain encoder state dict (.pt/.safetensors) in
the official layout (reference/vjepa.md §2.3). There is no transformers class or config.json: the
PyTorch twin is the reimplementation in `torch_vjepa21.py`, the config is inferred from tensor shapes,
and an export is written back in the release layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from checkpoints_convert.core import CONV, LINEAR, KeyMap, Rule, strip_prefixes
from checkpoints_convert.families import Family
from jaxbgs.errors import InputError
from jaxbgs.models import vjepa21

_B = "blocks.{i}"
KEY_MAP = KeyMap(
    rules=(
        *(
            r
            for name in ("patch_embed", "patch_embed_img")
            for r in (
                Rule(f"{name}.proj.weight", f"{name}.kernel", CONV),
                Rule(f"{name}.proj.bias", f"{name}.bias"),
            )
        ),
        Rule("img_mod_embed", "img_mod_embed"),
        Rule("video_mod_embed", "video_mod_embed"),
        *(
            r
            for name in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
            for r in (
                Rule(f"{_B}.{name}.weight", f"{_B}.{name}.kernel", LINEAR),
                Rule(f"{_B}.{name}.bias", f"{_B}.{name}.bias"),
            )
        ),
        *(
            r
            for name in (f"{_B}.norm1", f"{_B}.norm2", "norms_block.{j}")
            for r in (Rule(f"{name}.weight", f"{name}.scale"), Rule(f"{name}.bias", f"{name}.bias"))
        ),
    ),
)

ENCODER_KEYS = ("ema_encoder", "target_encoder")  # B/L keep the EMA encoder, g/G the target encoder
EXPORT_FILE = "vjepa2_1_encoder.pt"


def unwrap_release(obj: dict, path: Path) -> dict:
    """The encoder of a release file (prefixes `module.`/`backbone.` removed, predictor dropped), or
    a plain encoder state dict as it is."""
    for key in ENCODER_KEYS:
        if isinstance(obj.get(key), dict):
            return strip_prefixes(obj[key])
    state = strip_prefixes(obj)
    if "patch_embed.proj.weight" in state:
        return state
    raise InputError(
        f"no V-JEPA 2.1 encoder weights (top-level keys: {sorted(map(str, obj))[:10]})",
        file=path,
        fix="pass a V-JEPA 2.1 release file (with 'ema_encoder' or 'target_encoder') or a state dict",
    )


# (Config field, `torch_vjepa21.VisionTransformer` argument): the reference's constructor is the config.
_FIELDS = (
    ("hidden_size", "embed_dim"),
    ("num_hidden_layers", "depth"),
    ("num_attention_heads", "num_heads"),
    ("mlp_ratio", "mlp_ratio"),
    ("patch_size", "patch_size"),
    ("tubelet_size", "tubelet_size"),
    ("crop_size", "img_size"),
    ("frames_per_clip", "num_frames"),
    ("in_chans", "in_chans"),
    ("qkv_bias", "qkv_bias"),
    ("layer_norm_eps", "layer_norm_eps"),
    ("img_temporal_dim_size", "img_temporal_dim_size"),
    ("interpolate_rope", "interpolate_rope"),
)


def variant_name(cfg: vjepa21.Config) -> str | None:
    arch = (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.mlp_hidden)
    for name, (d, depth, heads, ratio) in vjepa21.Config.VARIANTS.items():
        if arch == (d, depth, heads, int(d * ratio)):
            return name
    return None


def config_from_hf(hf: dict | None, state: dict) -> vjepa21.Config:
    """From a dict of reference constructor arguments, or (release files) from the tensor shapes:
    width -> variant heads (every release has head_dim 64, the rule used for other widths), depth
    from the blocks, MLP ratio from fc1."""
    if hf is not None:
        cfg = {f: hf[a] for f, a in _FIELDS if a in hf}
        if hf.get("hierarchical_layers") is not None:
            cfg["hierarchical_layers"] = tuple(hf["hierarchical_layers"])
        return vjepa21.Config(**cfg, output="hierarchical" if hf.get("return_hierarchical") else "last")
    if "patch_embed.proj.weight" not in state or "blocks.0.mlp.fc1.weight" not in state:
        raise InputError("not a V-JEPA 2.1 encoder: no patch_embed.proj.weight or blocks.0.mlp.fc1.weight")
    d, chans, tubelet, patch, _ = state["patch_embed.proj.weight"].shape
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    known = {v[0]: v for v in vjepa21.Config.VARIANTS.values()}.get(d)
    heads = known[2] if known else d // 64
    ratio = known[3] if known and int(d * known[3]) == hidden else hidden / d
    if d % 64 and not known:
        raise InputError(f"cannot infer the heads of width {d} (not a multiple of head_dim 64)")
    return vjepa21.Config(
        hidden_size=d,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        mlp_ratio=ratio,
        patch_size=patch,
        tubelet_size=tubelet,
        in_chans=chans,
    )


def hf_config(cfg: vjepa21.Config) -> dict:
    """The reference module's constructor arguments (there is no HF config for V-JEPA 2.1)."""
    return {a: getattr(cfg, f) for f, a in _FIELDS} | {
        "hierarchical_layers": list(cfg.levels),
        "return_hierarchical": cfg.output == "hierarchical",
    }


def torch_model(kwargs: dict):
    from checkpoints_convert.torch_vjepa21 import VisionTransformer

    return VisionTransformer(**kwargs).eval()


def torch_forward(model, inputs: dict):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(inputs["pixels"].transpose(0, 4, 1, 2, 3)))
    out, hidden, _ = model(x, output_hidden_states=True)
    return out.numpy(), [h.numpy() for h in hidden]


def write_release(dst: Path, state: dict[str, np.ndarray], meta, family: Family) -> None:
    """The release layout `{"ema_encoder": {"module.backbone.<key>": tensor}}` in `vjepa2_1_encoder.pt`,
    plus `jaxbgs_export.json` naming the variant and the reference constructor arguments."""
    import torch

    cfg = family.config(meta)
    tensors = {
        "module.backbone." + k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()
    }
    torch.save({"ema_encoder": tensors}, dst / EXPORT_FILE)
    info = {
        "arch": "vjepa21",
        "variant": variant_name(cfg),
        "file": EXPORT_FILE,
        "encoder_key": "ema_encoder",
        "reference_kwargs": hf_config(cfg),
        "source": meta.source,
    }
    (dst / "jaxbgs_export.json").write_text(json.dumps(info, indent=2) + "\n")


FAMILY = Family(
    arch="vjepa21",
    key_map=KEY_MAP,
    config_from_hf=config_from_hf,
    hf_config=hf_config,
    torch_model=torch_model,
    torch_forward=torch_forward,
    unwrap=unwrap_release,
    write_torch=write_release,
    torch_class=None,
)
