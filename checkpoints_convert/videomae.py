"""VideoMAE: transformers `VideoMAEModel` directories, and the task models that wrap it under the
`videomae.` prefix: `VideoMAEForPreTraining` (MCG-NJU/videomae-base; its MAE decoder, `encoder_to_decoder`
and `mask_token` are dropped, since an export is a `VideoMAEModel`) and `VideoMAEForVideoClassification`
(its `fc_norm` and `classifier` head are dropped).

Query/value biases are stored on disk as `attention.attention.q_bias` / `v_bias` (the original layout,
which transformers still writes and renames on load to `query.bias` / `value.bias`). Source keys are
normalised to the in-memory names first, so the PyTorch twin loads them, and exports write them back
under the on-disk names, which every transformers version reads.
"""

from __future__ import annotations

import numpy as np

from checkpoints_convert.core import CONV, LINEAR, KeyMap, Rule
from checkpoints_convert.families import Family, hf_video_forward
from jaxbgs.errors import InputError
from jaxbgs.models import videomae

_BIAS_RENAMES = (
    (r"\.attention\.attention\.q_bias$", ".attention.attention.query.bias"),
    (r"\.attention\.attention\.v_bias$", ".attention.attention.value.bias"),
)


_L = "encoder.layer.{i}"
_B = "blocks.{i}"
KEY_MAP = KeyMap(
    rules=(
        Rule("embeddings.patch_embeddings.projection.weight", "patch_embed.kernel", CONV),
        Rule("embeddings.patch_embeddings.projection.bias", "patch_embed.bias"),
        *(
            Rule(f"{_L}.attention.attention.{name}.weight", f"{_B}.attention.attention.{name}.kernel", LINEAR)
            for name in ("query", "key", "value")
        ),
        # Export names first (flax -> torch takes the first match); sources arrive as `query.bias`.
        Rule(f"{_L}.attention.attention.q_bias", f"{_B}.attention.attention.query.bias"),
        Rule(f"{_L}.attention.attention.v_bias", f"{_B}.attention.attention.value.bias"),
        Rule(f"{_L}.attention.attention.query.bias", f"{_B}.attention.attention.query.bias"),
        Rule(f"{_L}.attention.attention.value.bias", f"{_B}.attention.attention.value.bias"),
        *(
            r
            for name in ("attention.output.dense", "intermediate.dense", "output.dense")
            for r in (
                Rule(f"{_L}.{name}.weight", f"{_B}.{name}.kernel", LINEAR),
                Rule(f"{_L}.{name}.bias", f"{_B}.{name}.bias"),
            )
        ),
        *(
            r
            for name in ("layernorm_before", "layernorm_after")
            for r in (
                Rule(f"{_L}.{name}.weight", f"{_B}.{name}.scale"),
                Rule(f"{_L}.{name}.bias", f"{_B}.{name}.bias"),
            )
        ),
        Rule("layernorm.weight", "layernorm.scale"),
        Rule("layernorm.bias", "layernorm.bias"),
    ),
    ignore=(r"decoder\.", r"encoder_to_decoder\.", r"mask_token$", r"fc_norm\.", r"classifier\."),
    strip=("videomae.",),
    rename=_BIAS_RENAMES,
)

_FIELDS = (
    "image_size",
    "patch_size",
    "num_channels",
    "num_frames",
    "tubelet_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "layer_norm_eps",
    "qv_bias",
    "use_mean_pooling",
)


def config_from_hf(hf: dict | None, state: dict) -> videomae.Config:
    if hf is None:
        raise InputError(
            "VideoMAE needs its config.json (frame count, size and pooling are not in the weights)",
            fix="pass a transformers model directory such as MCG-NJU/videomae-base",
        )
    hf = dict(hf)
    if "qkv_bias" in hf and "qv_bias" not in hf:  # the old config name, as transformers accepts it
        hf["qv_bias"] = hf.pop("qkv_bias")
    d = {f: hf[f] for f in _FIELDS if f in hf}
    if isinstance(d.get("image_size"), list):
        d["image_size"] = tuple(d["image_size"])
    if isinstance(d.get("patch_size"), list):
        sizes = set(d["patch_size"])
        if len(sizes) != 1:
            raise InputError(f"non-square patch_size {d['patch_size']} is not supported", where="config.json")
        d["patch_size"] = sizes.pop()
    return videomae.Config(**d)


def hf_config(cfg: videomae.Config) -> dict:
    from transformers import VideoMAEConfig

    d = {f: getattr(cfg, f) for f in _FIELDS}
    if isinstance(d["image_size"], tuple):
        d["image_size"] = list(d["image_size"])
    # A small decoder: only task models build it, and exports are `VideoMAEModel`.
    return VideoMAEConfig(
        **d,
        decoder_hidden_size=32,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=64,
    ).to_dict()


def torch_model(hf: dict):
    from transformers import VideoMAEConfig, VideoMAEModel

    return VideoMAEModel(VideoMAEConfig(**hf)).eval()


def example_input(cfg: videomae.Config, frames: int | None, size, seed: int, batch: int = 2) -> dict:
    """Seeded normal pixels at the config's frame count and (possibly non-square) frame size."""
    h, w = cfg.frame_size if size is None else (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    return {"pixels": rng.standard_normal((batch, frames or cfg.num_frames, h, w, 3)).astype(np.float32)}


FAMILY = Family(
    arch="videomae",
    key_map=KEY_MAP,
    config_from_hf=config_from_hf,
    hf_config=hf_config,
    torch_model=torch_model,
    torch_forward=hf_video_forward,
    example_input=example_input,
    torch_class="VideoMAEModel",
)
