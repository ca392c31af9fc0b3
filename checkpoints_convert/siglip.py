"""SigLIP vision tower: full `SiglipModel` directories (google/siglip-*: `vision_model.*`, and a
text tower plus `logit_scale`/`logit_bias` carried through untouched so an export is again a full
SiglipModel), and `SiglipVisionModel` directories with the `vision_model.` prefix (transformers 4)
or without it (what transformers 5 writes).

As for CLIP, exports and PEFT adapters use the prefixed names: SiglipModel needs them and
transformers 5 `SiglipVisionModel` strips the prefix on load. The pooling head, transformers'
`head`, is `map_head` on the Flax side.
"""

from __future__ import annotations

from checkpoints_convert.core import CONV, LINEAR, KeyMap, Rule, linear_rules, norm_rules
from checkpoints_convert.dinov2 import image_input, images_nchw
from checkpoints_convert.families import Family
from jaxbgs.errors import InputError
from jaxbgs.models import siglip

_V = "vision_model."


def _tower_rules(p: str) -> tuple[Rule, ...]:
    """Rules for the vision tower whose torch keys start with `p`."""
    lay, flax = p + "encoder.layers.{i}", "layers.{i}"
    linears = [f"self_attn.{n}" for n in ("q_proj", "k_proj", "v_proj", "out_proj")] + ["mlp.fc1", "mlp.fc2"]
    head = p + "head."
    return (
        Rule(p + "embeddings.patch_embedding.weight", "embeddings.patch_embedding.kernel", CONV),
        Rule(p + "embeddings.patch_embedding.bias", "embeddings.patch_embedding.bias"),
        Rule(p + "embeddings.position_embedding.weight", "embeddings.position_embedding"),
        *(r for n in linears for r in linear_rules(f"{lay}.{n}", f"{flax}.{n}")),
        *(r for n in ("layer_norm1", "layer_norm2") for r in norm_rules(f"{lay}.{n}", f"{flax}.{n}")),
        *norm_rules(p + "post_layernorm", "post_layernorm"),
        Rule(head + "probe", "map_head.probe"),
        Rule(head + "attention.in_proj_weight", "map_head.attention.in_proj_kernel", LINEAR),
        Rule(head + "attention.in_proj_bias", "map_head.attention.in_proj_bias"),
        *linear_rules(head + "attention.out_proj", "map_head.attention.out_proj"),
        *norm_rules(head + "layernorm", "map_head.layernorm"),
        *(r for n in ("fc1", "fc2") for r in linear_rules(f"{head}mlp.{n}", f"map_head.mlp.{n}")),
    )


KEY_MAP = KeyMap(
    # Prefixed rules first: they win when mapping Flax names back to PyTorch.
    rules=(*_tower_rules(_V), *_tower_rules("")),
    keep=(r"text_model\.(?!embeddings\.position_ids$)", r"logit_scale$", r"logit_bias$"),
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


def config_from_hf(hf: dict | None, state: dict) -> siglip.Config:
    """A SiglipConfig (vision fields nested in `vision_config`) or a SiglipVisionConfig; whether
    the pooling head exists comes from the weights (older configs have no `vision_use_head`)."""
    if hf is None:
        raise InputError(
            "SigLIP needs a Hugging Face directory with config.json",
            fix="pass a SiglipModel or SiglipVisionModel directory (e.g. google/siglip-base-patch16-224)",
        )
    prefixed = any(k.startswith(_V) for k in state)
    bare = any(k.startswith(("embeddings.", "encoder.", "post_layernorm.", "head.")) for k in state)
    if prefixed and bare:
        raise InputError(
            "checkpoint mixes `vision_model.`-prefixed and unprefixed vision keys",
            fix="save the model again with one transformers version",
        )
    vision = hf.get("vision_config") or hf
    use_head = (_V if prefixed else "") + "head.probe" in state
    return siglip.Config(
        **{f: vision[f] for f in _FIELDS if f in vision},
        vision_use_head=use_head,
        pool="map" if use_head else "mean",
    )


def hf_config(cfg: siglip.Config) -> dict:
    from transformers import SiglipVisionConfig

    fields = {f: getattr(cfg, f) for f in _FIELDS} | {"vision_use_head": cfg.vision_use_head}
    return SiglipVisionConfig(**fields).to_dict() | {"architectures": ["SiglipVisionModel"]}


def _strip_vision_prefix(module, state_dict, prefix, *args):
    """Accept `vision_model.` keys, as `SiglipVisionModel.from_pretrained` does."""
    for k in [k for k in state_dict if k.startswith(prefix + _V)]:
        state_dict[prefix + k[len(prefix + _V) :]] = state_dict.pop(k)


def torch_model(hf: dict):
    import transformers as tf

    if hf.get("model_type") == "siglip":
        return tf.SiglipModel(tf.SiglipConfig(**hf)).eval()
    model = tf.SiglipVisionModel(tf.SiglipVisionConfig(**hf)).eval()
    model.register_load_state_dict_pre_hook(_strip_vision_prefix)
    return model


def vision_tower(model):
    """The `SiglipVisionModel` inside a `SiglipModel` (or the model itself)."""
    return getattr(model, "vision_model", model)


def torch_forward(model, inputs: dict):
    """Per-image (last_hidden_state, hidden_states), the clips' frames run as one batch."""
    out = vision_tower(model)(
        pixel_values=images_nchw(inputs["pixels"]),
        interpolate_pos_encoding=True,  # exact at the native size; Flax checks its own flag
        output_hidden_states=True,
    )
    return out.last_hidden_state.numpy(), [s.numpy() for s in out.hidden_states]


FAMILY = Family(
    arch="siglip",
    key_map=KEY_MAP,
    config_from_hf=config_from_hf,
    hf_config=hf_config,
    torch_model=torch_model,
    torch_forward=torch_forward,
    example_input=image_input,
    torch_class=None,  # keep the source's `architectures` (SiglipModel, SiglipVisionModel)
)
