"""CLIP vision tower: full `CLIPModel` directories (openai/clip-vit-base-patch32: `vision_model.*`,
`visual_projection`, and a text tower carried through untouched so an export is again a full
CLIPModel), `CLIPVisionModelWithProjection`, and `CLIPVisionModel` directories either with the
`vision_model.` prefix (transformers 4) or without it (what transformers 5 writes).

Exports always use the prefixed names: CLIPModel needs them and transformers 5 `CLIPVisionModel`
strips the prefix on load. PEFT adapters are named likewise (`vision_model.encoder.layers.{i}...`),
the module names of CLIPModel and CLIPVisionModelWithProjection.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from checkpoints_convert.core import CONV, LINEAR, KeyMap, Meta, Rule
from checkpoints_convert.families import Family
from jaxbgs.errors import InputError
from jaxbgs.models import clip

_V = "vision_model."


def _tower_rules(p: str) -> tuple[Rule, ...]:
    """Rules for the vision tower whose torch keys start with `p`."""
    lay = p + "encoder.layers.{i}"
    pairs = [
        (f"{lay}.self_attn.{n}", f"layers.{{i}}.self_attn.{n}", LINEAR)
        for n in ("q_proj", "k_proj", "v_proj", "out_proj")
    ]
    pairs += [(f"{lay}.mlp.{n}", f"layers.{{i}}.mlp.{n}", LINEAR) for n in ("fc1", "fc2")]
    norms = [(f"{lay}.{n}", f"layers.{{i}}.{n}") for n in ("layer_norm1", "layer_norm2")]
    norms += [(p + n, n) for n in ("pre_layrnorm", "post_layernorm")]
    return (
        Rule(p + "embeddings.class_embedding", "embeddings.class_embedding"),
        Rule(p + "embeddings.patch_embedding.weight", "embeddings.patch_embedding.kernel", CONV),
        Rule(p + "embeddings.position_embedding.weight", "embeddings.position_embedding"),
        *(
            r
            for t, f, tr in pairs
            for r in (Rule(t + ".weight", f + ".kernel", tr), Rule(t + ".bias", f + ".bias"))
        ),
        *(r for t, f in norms for r in (Rule(t + ".weight", f + ".scale"), Rule(t + ".bias", f + ".bias"))),
    )


KEY_MAP = KeyMap(
    # Prefixed rules first: they win when mapping Flax names back to PyTorch.
    rules=(
        *_tower_rules(_V),
        Rule("visual_projection.weight", "visual_projection.kernel", LINEAR),
        *_tower_rules(""),
    ),
    keep=(r"text_model\.(?!embeddings\.position_ids$)", r"text_projection\.", r"logit_scale$"),
    # Non-persistent buffers that older checkpoints saved.
    ignore=(r"(vision_model\.|text_model\.)?embeddings\.position_ids$",),
)

_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_channels",
    "image_size",
    "patch_size",
    "hidden_act",
    "layer_norm_eps",
)


def config_from_hf(hf: dict | None, state: dict) -> clip.Config:
    """A CLIPConfig (vision fields nested in `vision_config`) or a CLIPVisionConfig; the projection
    width comes from the weights, since a CLIPVisionConfig always names a `projection_dim`."""
    if hf is None:
        raise InputError(
            "CLIP needs a Hugging Face directory with config.json",
            fix="pass a CLIPModel or CLIPVisionModel directory (e.g. openai/clip-vit-base-patch32)",
        )
    prefixed = any(k.startswith(_V) for k in state)
    bare = any(k.startswith(("embeddings.", "encoder.", "pre_layrnorm.")) for k in state)
    if prefixed and bare:
        raise InputError(
            "checkpoint mixes `vision_model.`-prefixed and unprefixed vision keys",
            fix="save the model again with one transformers version",
        )
    vision = hf.get("vision_config") or hf
    proj = state.get("visual_projection.weight")
    return clip.Config(
        **{f: vision[f] for f in _FIELDS if f in vision},
        projection_dim=None if proj is None else int(proj.shape[0]),
    )


_TEXT = dict(  # a tiny text tower for CLIPModel twins; only its presence matters here
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=1,
    num_attention_heads=2,
    vocab_size=99,
    max_position_embeddings=16,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)


def hf_config(cfg: clip.Config) -> dict:
    """A CLIPVisionConfig dict, or a CLIPConfig with a tiny text tower when the config projects."""
    from transformers import CLIPConfig, CLIPVisionConfig

    vision = CLIPVisionConfig(**{f: getattr(cfg, f) for f in _FIELDS}).to_dict()
    if cfg.projection_dim is None:
        return vision | {"architectures": ["CLIPVisionModel"]}
    return CLIPConfig(
        vision_config=vision,
        text_config=_TEXT,
        projection_dim=cfg.projection_dim,
        architectures=["CLIPModel"],
    ).to_dict()


def _strip_vision_prefix(module, state_dict, prefix, *args):
    """Accept transformers-4 `vision_model.` keys, as `CLIPVisionModel.from_pretrained` does."""
    for k in [k for k in state_dict if k.startswith(prefix + _V)]:
        state_dict[prefix + k[len(prefix + _V) :]] = state_dict.pop(k)


def torch_model(hf: dict):
    import transformers as tf

    if hf.get("model_type") == "clip":
        return tf.CLIPModel(tf.CLIPConfig(**hf)).eval()
    cfg = tf.CLIPVisionConfig(**hf)
    if "CLIPVisionModelWithProjection" in (hf.get("architectures") or ()):
        return tf.CLIPVisionModelWithProjection(cfg).eval()
    model = tf.CLIPVisionModel(cfg).eval()
    model.register_load_state_dict_pre_hook(_strip_vision_prefix)
    return model


def vision_tower(model):
    """The `CLIPVisionModel` inside any of the twin classes."""
    return getattr(model, "vision_model", model)


def torch_forward(model, inputs: dict):
    """Per-frame (last_hidden_state, hidden_states): the B*T frames run as one batch of images."""
    import torch

    b, t, h, w, c = inputs["pixels"].shape
    x = inputs["pixels"].reshape(b * t, h, w, c).transpose(0, 3, 1, 2)
    out = vision_tower(model)(
        pixel_values=torch.from_numpy(np.ascontiguousarray(x)),
        interpolate_pos_encoding=True,  # exact at the native size; Flax checks its own flag
        output_hidden_states=True,
    )
    return out.last_hidden_state.numpy(), [s.numpy() for s in out.hidden_states]


def write_torch(dst: Path, state: dict, meta: Meta, family: Family) -> None:
    """`write_hf_dir` with `logit_scale` a 0-d tensor again.

    `np.ascontiguousarray` (core.save's passthrough, write_hf_dir) turns 0-d arrays into shape (1,),
    which CLIPModel rejects on load and silently re-initialises; so this writes the weights itself.
    """
    from safetensors.numpy import save_file

    hf = dict(meta.hf_config or family.hf_config(family.config(meta)))
    (dst / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    if "logit_scale" in state:
        state = state | {"logit_scale": np.reshape(state["logit_scale"], ())}
    save_file(
        {k: np.asarray(v, dtype=np.float32, order="C") for k, v in state.items()},
        str(dst / "model.safetensors"),
    )


FAMILY = Family(
    arch="clip",
    key_map=KEY_MAP,
    config_from_hf=config_from_hf,
    hf_config=hf_config,
    torch_model=torch_model,
    torch_forward=torch_forward,
    write_torch=write_torch,
    torch_class=None,  # keep the source's `architectures` (CLIPModel, CLIPVisionModel, ...)
)
