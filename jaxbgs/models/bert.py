"""BERT text encoder (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding"), mirroring transformers `BertModel`.

The BGS paper's language baselines (§3.2, Table 2) embed each video's caption with a
sentence-transformers model; all-MiniLM-L6-v2 is a 6-layer, 384-wide BERT. Its sentence embedding is
the attention-masked mean of the last hidden states (sentence-transformers' mean pooling), not the
`[CLS]`-based pooler, so `Output.embedding` is that masked mean, un-normalised (the analysis
normalises). The pooler (dense + tanh on the first token) is kept when the checkpoint has one so
conversions stay lossless, and is available as `Model.pooled`.

Post-LayerNorm blocks with exact GELU; padding is masked with an additive bias on the attention
logits (0 for tokens, the dtype's minimum for padding), as transformers' eager path does, so padded
keys get exactly zero weight.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx

from jaxbgs.errors import InputError
from jaxbgs.lora import Dense, LoRAConfig
from jaxbgs.models import layers
from jaxbgs.models.layers import BackboneConfig, Output


@dataclasses.dataclass(frozen=True)
class Config(BackboneConfig):
    """Architecture fields named as in transformers `BertConfig`; defaults are all-MiniLM-L6-v2."""

    # Released variants (BERT paper §3; MiniLM-L6-H384).
    VARIANT_FIELDS = (*layers.WIDTH_DEPTH_HEADS, "intermediate_size")
    VARIANTS = {
        "all-MiniLM-L6-v2": (384, 6, 12, 1536),
        "bert-base": (768, 12, 12, 3072),
        "bert-large": (1024, 24, 16, 4096),
    }

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    add_pooling_layer: bool = True

    def __post_init__(self):
        super().__post_init__()
        layers.activation(self.hidden_act)


def padding_bias(attention_mask, dtype):
    """(B, N) 0/1 mask -> additive (B, 1, 1, N) bias: 0 where attended, the dtype's minimum elsewhere."""
    keep = attention_mask.astype(bool)[:, None, None, :]
    return jnp.where(keep, jnp.zeros((), dtype), jnp.asarray(jnp.finfo(dtype).min, dtype))


class Embeddings(nnx.Module):
    """Word + position + token-type embeddings, then LayerNorm (`BertEmbeddings`)."""

    def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.word = nnx.Embed(cfg.vocab_size, d, dtype=dt, rngs=rngs)
        self.position = nnx.Embed(cfg.max_position_embeddings, d, dtype=dt, rngs=rngs)
        self.token_type = nnx.Embed(cfg.type_vocab_size, d, dtype=dt, rngs=rngs)
        self.norm = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)

    def __call__(self, input_ids, token_type_ids):
        positions = jnp.arange(input_ids.shape[1])[None]
        x = self.word(input_ids) + self.token_type(token_type_ids)
        return self.norm(x + self.position(positions))


class Attention(nnx.Module):
    """Separate query/key/value projections and the output dense (`BertSelfAttention` + `.dense`)."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.query = Dense(d, d, group="qkv", lora=lora, dtype=dt, rngs=rngs)
        self.key = Dense(d, d, group="qkv", lora=lora, dtype=dt, rngs=rngs)
        self.value = Dense(d, d, group="qkv", lora=lora, dtype=dt, rngs=rngs)
        self.out = Dense(d, d, group="out", lora=lora, dtype=dt, rngs=rngs)
        self.heads, self.impl = cfg.num_attention_heads, cfg.attention

    def __call__(self, x, bias, *, output_attentions=False):
        b, n, d = x.shape
        q, k, v = (f(x).reshape(b, n, self.heads, -1) for f in (self.query, self.key, self.value))
        out, weights = layers.attention(
            q, k, v, bias=bias.astype(q.dtype), implementation=self.impl, return_weights=output_attentions
        )
        return self.out(out.reshape(b, n, d)), weights


class Block(nnx.Module):
    """Post-LN block (`BertLayer`): x = LN(x + attn(x)); x = LN(x + mlp(x))."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, dt = cfg.hidden_size, cfg.compute_dtype
        self.attention = Attention(cfg, lora=lora, rngs=rngs)
        self.norm1 = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)
        self.mlp = layers.Mlp(d, cfg.intermediate_size, act=cfg.hidden_act, lora=lora, dtype=dt, rngs=rngs)
        self.norm2 = layers.layer_norm(d, cfg.layer_norm_eps, dtype=dt, rngs=rngs)

    def __call__(self, x, *, bias, output_attentions=False):
        a, weights = self.attention(x, bias, output_attentions=output_attentions)
        x = self.norm1(x + a)
        return self.norm2(x + self.mlp(x)), weights


class Model(nnx.Module):
    """BERT encoder on integer token ids (B, N) with a 0/1 attention mask (B, N)."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None = None, rngs: nnx.Rngs):
        self.cfg, self.lora = cfg, lora
        self.embeddings = Embeddings(cfg, rngs=rngs)
        self.blocks = layers.Stack(lambda r: Block(cfg, lora=lora, rngs=r), cfg.num_hidden_layers, rngs=rngs)
        d = cfg.hidden_size
        self.pooler = Dense(d, d, dtype=cfg.compute_dtype, rngs=rngs) if cfg.add_pooling_layer else None
        self.head = layers.make_head(cfg, d, rngs=rngs)

    def __call__(
        self, input_ids, attention_mask=None, token_type_ids=None, *, output_attentions: bool = False
    ) -> Output:
        cfg = self.cfg
        input_ids = jnp.asarray(input_ids)
        if input_ids.ndim != 2 or not jnp.issubdtype(input_ids.dtype, jnp.integer):
            raise InputError(
                f"input_ids must be integer (batch, tokens), got {input_ids.dtype} {input_ids.shape}",
                where="input",
                fix="tokenize with the checkpoint's tokenizer",
            )
        n = input_ids.shape[1]
        if not 0 < n <= cfg.max_position_embeddings:
            raise InputError(
                f"sequence length {n} is outside 1..{cfg.max_position_embeddings}",
                where="input",
                fix=f"truncate to at most {cfg.max_position_embeddings} tokens",
            )
        mask = jnp.ones(input_ids.shape, jnp.int32) if attention_mask is None else jnp.asarray(attention_mask)
        types = jnp.zeros_like(input_ids) if token_type_ids is None else jnp.asarray(token_type_ids)
        for name, arr in (("attention_mask", mask), ("token_type_ids", types)):
            if arr.shape != input_ids.shape:
                raise InputError(f"{name} has shape {arr.shape}, input_ids {input_ids.shape}", where="input")
        x = self.embeddings(input_ids, types)
        x, hidden, attns = layers.run_blocks(
            self.blocks, x, cfg, output_attentions=output_attentions, bias=padding_bias(mask, x.dtype)
        )
        emb = x[:, 0] if cfg.pool == "cls" else mean_pool(x, mask)
        if self.head is not None:
            emb = self.head(emb)
        return Output(embedding=emb, tokens=x, hidden_states=hidden, attentions=attns)

    def pooled(self, tokens):
        """`BertPooler`: tanh(dense(first token)), the next-sentence head's input."""
        if self.pooler is None:
            raise InputError("this checkpoint has no pooler", where="Model.pooled")
        return jnp.tanh(self.pooler(tokens[:, 0]))


def mean_pool(tokens, attention_mask):
    """sentence-transformers' mean pooling: sum of attended tokens / max(count, 1e-9)."""
    m = attention_mask.astype(tokens.dtype)[..., None]
    return (tokens * m).sum(1) / jnp.maximum(m.sum(1), jnp.asarray(1e-9, tokens.dtype))


def preprocess(texts, tokenizer, *, max_length: int = 256) -> dict:
    """Strings -> numpy `input_ids`, `attention_mask`, `token_type_ids` padded to the longest text,
    truncated at `max_length` (256: all-MiniLM-L6-v2's `max_seq_length`), with a HF tokenizer."""
    tok = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np")
    return {k: tok[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in tok}
