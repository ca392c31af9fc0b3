"""BERT: transformers `BertModel` directories (all-MiniLM-L6-v2 and other sentence-transformers
BERTs), and `BertFor*` task models through the `bert.` prefix, whose heads are dropped."""

from __future__ import annotations

import numpy as np

from checkpoints_convert.core import KeyMap, Rule, linear_rules, norm_rules
from checkpoints_convert.families import Family
from jaxbgs.errors import InputError
from jaxbgs.models import bert

_L = "encoder.layer.{i}"
_B = "blocks.{i}"


KEY_MAP = KeyMap(
    rules=(
        Rule("embeddings.word_embeddings.weight", "embeddings.word.embedding"),
        Rule("embeddings.position_embeddings.weight", "embeddings.position.embedding"),
        Rule("embeddings.token_type_embeddings.weight", "embeddings.token_type.embedding"),
        *norm_rules("embeddings.LayerNorm", "embeddings.norm"),
        *(
            r
            for n in ("query", "key", "value")
            for r in linear_rules(f"{_L}.attention.self.{n}", f"{_B}.attention.{n}")
        ),
        *linear_rules(f"{_L}.attention.output.dense", f"{_B}.attention.out"),
        *norm_rules(f"{_L}.attention.output.LayerNorm", f"{_B}.norm1"),
        *linear_rules(f"{_L}.intermediate.dense", f"{_B}.mlp.fc1"),
        *linear_rules(f"{_L}.output.dense", f"{_B}.mlp.fc2"),
        *norm_rules(f"{_L}.output.LayerNorm", f"{_B}.norm2"),
        *linear_rules("pooler.dense", "pooler"),
    ),
    # Buffers (position ids, default token types) and task heads of BertFor* models.
    ignore=(
        r"embeddings\.position_ids$",
        r"embeddings\.token_type_ids$",
        r"cls\.",
        r"classifier\.",
        r"qa_outputs\.",
    ),
    strip=("bert.",),
)

_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "pad_token_id",
)


def config_from_hf(hf: dict | None, state: dict) -> bert.Config:
    if hf is None:
        raise InputError(
            "a BERT checkpoint needs its config.json (heads cannot be read from the weights)",
            fix="pass the Hugging Face model directory",
        )
    if hf.get("position_embedding_type", "absolute") != "absolute" or hf.get("is_decoder"):
        raise InputError(
            "only encoder BERTs with absolute position embeddings are supported",
            where="config.json",
            fix="use a BertModel encoder checkpoint",
        )
    fields = {f: hf[f] for f in _FIELDS if f in hf}
    return bert.Config(**fields, add_pooling_layer="pooler.dense.weight" in state)


def hf_config(cfg: bert.Config) -> dict:
    from transformers import BertConfig

    d = BertConfig(**{f: getattr(cfg, f) for f in _FIELDS}).to_dict()
    return d if cfg.add_pooling_layer else d | {"add_pooling_layer": False}


def torch_model(hf: dict):
    from transformers import BertConfig, BertModel

    # `add_pooling_layer` is not a BertConfig field; it rides along in the dict (and config.json).
    return BertModel(BertConfig(**hf), add_pooling_layer=hf.get("add_pooling_layer", True)).eval()


def example_input(cfg: bert.Config, frames: int | None, size: int | None, seed: int, batch: int = 2) -> dict:
    """Seeded token ids of length `size` (default 16; `frames` is unused): row 0 is two segments
    (token types 0 then 1), later rows end in padding."""
    n = size or 16
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, cfg.vocab_size, (batch, n))
    mask = np.ones((batch, n), np.int64)
    types = np.zeros((batch, n), np.int64)
    types[0, n // 2 :] = 1 % cfg.type_vocab_size
    for b in range(1, batch):
        keep = max(1, n - (n * b) // (batch + 1))
        mask[b, keep:] = 0
    ids = np.where(mask == 1, ids, cfg.pad_token_id)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def flax_forward(model, inputs: dict):
    out = model(inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids"))
    return np.asarray(out.tokens), [np.asarray(h) for h in out.hidden_states]


def torch_forward(model, inputs: dict):
    import torch

    out = model(**{k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()}, output_hidden_states=True)
    return out.last_hidden_state.numpy(), [h.numpy() for h in out.hidden_states]


FAMILY = Family(
    arch="bert",
    key_map=KEY_MAP,
    config_from_hf=config_from_hf,
    hf_config=hf_config,
    torch_model=torch_model,
    torch_forward=torch_forward,
    example_input=example_input,
    flax_forward=flax_forward,
    torch_class="BertModel",
)
