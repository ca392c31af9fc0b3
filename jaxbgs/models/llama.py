"""Llama 3 decoder (Grattafiori et al. 2024, "The Llama 3 Herd of Models"), mirroring transformers
`LlamaForCausalLM`. SocialFusion feeds a frozen Llama 3.2 1B with LoRA (rank 32) on all of its
linear layers the sequence [embedded task prompt, connector image tokens] and reads the next-token
logits, so the model takes either token ids or (B, L, D) input embeddings, and `Model.prefixed`
runs each task prompt once for all the rows of a batch that continue it.

Pre-RMSNorm blocks with grouped-query attention (query head h reads KV head h // groups, the
contiguous `repeat_kv` of transformers), rotary positions in the split-halves (`rotate_half`)
convention of HF checkpoints, SiLU-gated MLPs and, for Llama 3.2, input and output embeddings tied.
RoPE frequencies follow transformers' `_compute_llama3_parameters` in float32 operation by
operation, so they are bit-identical to the PyTorch buffer: at positions in the thousands one ulp
of a frequency already moves the logits by more than 1e-5.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from jaxbgs.errors import InputError
from jaxbgs.lora import Dense, LoRAConfig
from jaxbgs.models import layers

HF_ID = "meta-llama/Llama-3.2-1B"
# No float64: the fused attention takes its softmax in float32, so it would not be a reference.
DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """transformers' `rope_parameters` of `rope_type` "llama3" (HF config.json of Llama 3.1/3.2):
    wavelengths above original_max / low_freq_factor are stretched by `factor`, those below
    original_max / high_freq_factor are kept, and the band between is blended."""

    factor: float = 32.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192

    def __post_init__(self):
        if self.factor <= 0 or not 0 < self.low_freq_factor < self.high_freq_factor:
            raise InputError(
                f"llama3 rope scaling needs factor > 0 and 0 < low < high freq factor, got {self}",
                where="Config.rope_scaling",
            )


@dataclasses.dataclass(frozen=True)
class Config:
    """Architecture fields named as in transformers `LlamaConfig`; defaults are Llama-3.2-1B's
    config.json. `dtype` is the compute dtype (parameters stay float32), `remat` a per-block
    `jax.checkpoint` policy, `scan` whether the stacked layers run as one `jax.lax.scan` (False:
    unrolled, as `layers.BackboneConfig.scan`) and `attention` the kernel choice of
    `layers.attention_kernel`."""

    vocab_size: int = 128256
    hidden_size: int = 2048
    intermediate_size: int = 8192
    num_hidden_layers: int = 16
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    head_dim: int = 64
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    rope_scaling: RopeScaling | None = RopeScaling()
    max_position_embeddings: int = 131072
    tie_word_embeddings: bool = True
    dtype: str = "float32"
    remat: str = "none"
    scan: bool = True
    attention: str = "auto"

    def __post_init__(self):
        for name, allowed in (
            ("dtype", DTYPES),
            ("remat", tuple(layers.REMAT_POLICIES)),
            ("attention", layers.ATTENTION),
        ):
            if getattr(self, name) not in allowed:
                raise InputError(
                    f"{name}={getattr(self, name)!r} is not supported",
                    where=f"Config.{name}",
                    fix=f"choose from {list(allowed)}",
                )
        layers.check_attention(self.attention, self.dtype, "Config.attention")
        if self.num_attention_heads % self.num_key_value_heads:
            raise InputError(
                f"{self.num_attention_heads} query heads do not split into "
                f"{self.num_key_value_heads} key/value groups",
                where="Config.num_key_value_heads",
            )
        if self.head_dim % 2:
            raise InputError(f"head_dim {self.head_dim} is odd; RoPE rotates pairs", where="Config.head_dim")
        if isinstance(self.rope_scaling, dict):
            fields = dict(self.rope_scaling)
            kind = fields.pop("rope_type", "llama3")
            if kind != "llama3":
                raise InputError(
                    f"rope_type {kind!r} is not supported",
                    where="Config.rope_scaling",
                    fix="use None (plain RoPE) or the llama3 parameters",
                )
            if unknown := sorted(set(fields) - {f.name for f in dataclasses.fields(RopeScaling)}):
                raise InputError(
                    f"unknown llama3 rope parameter(s) {unknown}",
                    where="Config.rope_scaling",
                    fix="rope_theta is a Config field of its own",
                )
            object.__setattr__(self, "rope_scaling", RopeScaling(**fields))

    @classmethod
    def llama32_1b(cls, **kw) -> Config:
        """meta-llama/Llama-3.2-1B (1.24B parameters), the LLM of SocialFusion."""
        return cls(**kw)

    @property
    def compute_dtype(self):
        return jnp.dtype(self.dtype)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Config:
        names = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(d) - names):
            raise InputError(f"unknown config key(s) {unknown}", where=cls.__name__)
        return cls(**d)

    def replace(self, **kw) -> Config:
        return dataclasses.replace(self, **kw)

    def __str__(self) -> str:
        return json.dumps(self.to_json())


def inv_freq(cfg: Config) -> np.ndarray:
    """(head_dim / 2,) float32 RoPE frequencies, bit-identical to transformers' buffer.

    Same float32 operations in the same order as `_compute_llama3_parameters`: torch rounds
    `theta ** e` from double precision and evaluates `c / t` as `reciprocal(t) * c`.
    """
    f32 = np.float32
    d = cfg.head_dim
    exponent = np.arange(0, d, 2).astype(f32) / f32(d)
    inv = f32(1) / np.power(np.float64(cfg.rope_theta), exponent.astype(np.float64)).astype(f32)
    s = cfg.rope_scaling
    if s is None:
        return inv
    old = s.original_max_position_embeddings
    low_wavelen, high_wavelen = old / s.low_freq_factor, old / s.high_freq_factor
    wavelen = (f32(1) / inv) * f32(2 * math.pi)
    scaled = np.where(wavelen > low_wavelen, inv / f32(s.factor), inv)
    smooth = ((f32(1) / wavelen) * f32(old) - f32(s.low_freq_factor)) / f32(
        s.high_freq_factor - s.low_freq_factor
    )
    blended = (f32(1) - smooth) * scaled / f32(s.factor) + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(medium, blended, scaled).astype(f32)


def rope_tables(positions, cfg: Config, dtype):
    """cos and sin (B, L, 1, head_dim) for integer positions (B, L), formed in float32."""
    freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq(cfg))
    emb = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]
    return jnp.cos(emb).astype(dtype), jnp.sin(emb).astype(dtype)


def apply_rope(x, cos, sin):
    """x * cos + rotate_half(x) * sin on (B, L, heads, head_dim)."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


class RMSNorm(nnx.Module):
    """`LlamaRMSNorm`: normalise in float32, cast back to the input dtype, then scale (no bias)."""

    def __init__(self, dim: int, eps: float):
        self.scale = nnx.Param(jnp.ones((dim,)), axes=("embed",))
        self.eps = eps

    def __call__(self, x):
        h = x.astype(jnp.float32)
        h = h * jax.lax.rsqrt(jnp.mean(h * h, axis=-1, keepdims=True) + self.eps)
        return self.scale[...].astype(x.dtype) * h.astype(x.dtype)


class Attention(nnx.Module):
    """`LlamaAttention` without biases; keys and values have `num_key_value_heads` heads."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, hd, dt = cfg.hidden_size, cfg.head_dim, cfg.compute_dtype
        nq, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
        kw = dict(use_bias=False, lora=lora, dtype=dt, rngs=rngs)
        self.q_proj = Dense(d, nq * hd, group="qkv", **kw)
        self.k_proj = Dense(d, nkv * hd, group="qkv", **kw)
        self.v_proj = Dense(d, nkv * hd, group="qkv", **kw)
        self.o_proj = Dense(nq * hd, d, group="out", **kw)
        self.head_dim, self.impl = hd, cfg.attention

    def qkv(self, x, cos, sin):
        b, n, _ = x.shape
        q, k, v = (f(x).reshape(b, n, -1, self.head_dim) for f in (self.q_proj, self.k_proj, self.v_proj))
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def __call__(self, x, cos, sin, mask):
        q, k, v = self.qkv(x, cos, sin)
        # A query whose keys are all padding (left padding) gets uniform weights, as in transformers.
        out = layers.fused_attention(q, k, v, mask=mask, is_causal=True, implementation=self.impl)
        return self.o_proj(out.reshape(*x.shape[:2], -1))

    def prefixed(self, xp, xs, *, rope_p, rope_s, mask_p, mask_s, index):
        """Prefixes `xp` (T, P, D) attend causally among themselves; row b of `xs` (B, N, D) attends
        to prefix `index[b]`'s keys and values, then to its own ones causally (`mask_s` holds both)."""
        qp, kp, vp = self.qkv(xp, *rope_p)
        qs, ks, vs = self.qkv(xs, *rope_s)
        op = layers.fused_attention(qp, kp, vp, mask=mask_p, is_causal=True, implementation=self.impl)
        k = jnp.concatenate([kp[index], ks], axis=1)
        v = jnp.concatenate([vp[index], vs], axis=1)
        os_ = layers.fused_attention(qs, k, v, mask=mask_s, implementation=self.impl)
        return self.o_proj(op.reshape(*xp.shape[:2], -1)), self.o_proj(os_.reshape(*xs.shape[:2], -1))


class Mlp(nnx.Module):
    """`LlamaMLP`: down(silu(gate(x)) * up(x)), all three in the `mlp` LoRA group."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        d, h = cfg.hidden_size, cfg.intermediate_size
        kw = dict(use_bias=False, group="mlp", lora=lora, dtype=cfg.compute_dtype, rngs=rngs)
        self.gate_proj = Dense(d, h, **kw)
        self.up_proj = Dense(d, h, **kw)
        self.down_proj = Dense(h, d, **kw)

    def __call__(self, x):
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
    """`LlamaDecoderLayer`: x += attn(norm(x)); x += mlp(norm(x))."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, lora=lora, rngs=rngs)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = Mlp(cfg, lora=lora, rngs=rngs)

    def __call__(self, x, *, cos, sin, mask, output_attentions=False):
        # `layers.run_blocks` protocol: (output, attention weights); the fused kernel keeps no weights.
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x)), None

    def prefixed(self, x, **kw):
        """`Model.prefixed`'s block: x = (prefixes, rows), as in `__call__` but with shared prefixes."""
        xp, xs = x
        ap, as_ = self.self_attn.prefixed(self.input_layernorm(xp), self.input_layernorm(xs), **kw)
        xp, xs = xp + ap, xs + as_
        return (
            xp + self.mlp(self.post_attention_layernorm(xp)),
            xs + self.mlp(self.post_attention_layernorm(xs)),
        ), None


@struct.dataclass
class CausalLMOutput:
    """`logits` (B, L, vocab) in the compute dtype; `hidden` the final normed states (B, L, D);
    `hidden_states` on request as transformers gives them: the input embeddings, each layer's
    output, the last one replaced by the normed `hidden` (num_hidden_layers + 1 entries)."""

    logits: jax.Array
    hidden: jax.Array
    hidden_states: tuple[jax.Array, ...] | None = None


class Model(nnx.Module):
    """`LlamaForCausalLM` on token ids (B, L) or input embeddings (B, L, D)."""

    def __init__(self, cfg: Config, *, lora: LoRAConfig | None = None, rngs: nnx.Rngs):
        self.cfg, self.lora = cfg, lora
        d = cfg.hidden_size
        init = nnx.initializers.normal(0.02)  # transformers' initializer_range
        self.embed_tokens = nnx.Param(init(rngs.params(), (cfg.vocab_size, d)), axes=("vocab", "embed"))
        self.layers = layers.Stack(
            lambda r: DecoderLayer(cfg, lora=lora, rngs=r), cfg.num_hidden_layers, rngs=rngs
        )
        self.norm = RMSNorm(d, cfg.rms_norm_eps)
        # Tied (Llama 3.2): the logits reuse `embed_tokens` and, as in the checkpoint, no head exists.
        self.lm_head = (
            None
            if cfg.tie_word_embeddings
            else Dense(
                d, cfg.vocab_size, use_bias=False, dtype=cfg.compute_dtype, axes=("embed", "vocab"), rngs=rngs
            )
        )

    def embed(self, tokens):
        """Token embeddings (B, L, D) in the compute dtype, to splice other embeddings in between."""
        tokens = jnp.asarray(tokens)
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise InputError(
                f"tokens must be integer (batch, length), got {tokens.dtype} {tokens.shape}",
                where="tokens",
                fix="tokenize with the checkpoint's tokenizer (llama.load_tokenizer)",
            )
        return jnp.take(self.embed_tokens[...], tokens, axis=0).astype(self.cfg.compute_dtype)

    def logits(self, hidden):
        if self.lm_head is not None:
            return self.lm_head(hidden)
        return hidden @ self.embed_tokens[...].astype(hidden.dtype).T

    def __call__(
        self, tokens=None, *, embeds=None, mask=None, positions=None, output_hidden_states: bool = False
    ) -> CausalLMOutput:
        """`mask` (B, L): True (or 1) for real tokens, False for padding, on top of the causal mask;
        `positions` (L,) or (B, L) integer RoPE positions, arange(L) by default."""
        cfg = self.cfg
        if (tokens is None) == (embeds is None):
            raise InputError("pass exactly one of tokens and embeds", where="Model.__call__")
        if embeds is None:
            x = self.embed(tokens)
        else:
            x = jnp.asarray(embeds)
            if x.ndim != 3 or x.shape[-1] != cfg.hidden_size:
                raise InputError(
                    f"embeds must be (batch, length, {cfg.hidden_size}), got {x.shape}", where="embeds"
                )
            x = x.astype(cfg.compute_dtype)
        b, n, _ = x.shape
        positions = jnp.arange(n) if positions is None else jnp.asarray(positions)
        if positions.shape not in ((n,), (1, n), (b, n)) or not jnp.issubdtype(positions.dtype, jnp.integer):
            raise InputError(
                f"positions must be integer ({n},) or ({b}, {n}), got {positions.dtype} {positions.shape}",
                where="positions",
            )
        cos, sin = rope_tables(jnp.broadcast_to(positions, (b, n)), cfg, x.dtype)
        if mask is not None:
            mask = jnp.asarray(mask)
            if mask.shape != (b, n):
                raise InputError(f"mask has shape {mask.shape}, the input ({b}, {n})", where="mask")
            mask = mask.astype(bool)[:, None, None, :]
        x, hidden, _ = layers.run_blocks(
            self.layers, x, cfg, collect=output_hidden_states, cos=cos, sin=sin, mask=mask
        )
        h = self.norm(x)
        states = hidden[:-1] + (h,) if output_hidden_states else None
        return CausalLMOutput(logits=self.logits(h), hidden=h, hidden_states=states)

    def prefixed(self, prefix, prefix_mask, index, embeds) -> CausalLMOutput:
        """Rows that continue shared prefixes: row b of `embeds` (B, N, D) follows prefix `index[b]`
        of `prefix` (T, P, D), left-padded (`prefix_mask` (T, P) False on padding).

        The same numbers as `__call__` on each concatenated, left-padded sequence (positions count
        real tokens from 0): causal attention leaves a prefix's states independent of what follows,
        so each prefix runs once, not once per row that uses it. SocialFusion's rows are a task prompt
        (up to 546 tokens for HaGRID) and 64-576 image tokens, so a batch mixing tasks costs about its
        image tokens instead of B full sequences. Returns the rows' states only, and the logits at
        their last position (B, 1, vocab): all a next-token read needs, without a (B, N, vocab) array.
        """
        cfg = self.cfg
        dt = cfg.compute_dtype
        xp, xs = jnp.asarray(prefix).astype(dt), jnp.asarray(embeds).astype(dt)
        (t, p, d), (b, n, d2) = xp.shape, xs.shape
        index = jnp.asarray(index)
        if d != cfg.hidden_size or d2 != d or jnp.asarray(prefix_mask).shape != (t, p) or index.shape != (b,):
            raise InputError(
                f"prefix {xp.shape}, prefix_mask {jnp.asarray(prefix_mask).shape}, index {index.shape}, "
                f"embeds {xs.shape}: need (T, P, {cfg.hidden_size}), (T, P), (B,), (B, N, {cfg.hidden_size})",
                where="Model.prefixed",
            )
        pmask = jnp.asarray(prefix_mask).astype(bool)
        rope_p = rope_tables(jnp.maximum(jnp.cumsum(pmask, axis=1) - 1, 0), cfg, dt)
        rope_s = rope_tables(pmask.sum(axis=1)[index][:, None] + jnp.arange(n), cfg, dt)
        causal = jnp.broadcast_to(jnp.tril(jnp.ones((n, n), bool)), (b, 1, n, n))
        mask_s = jnp.concatenate([jnp.broadcast_to(pmask[index][:, None, None, :], (b, 1, n, p)), causal], -1)
        kw = dict(rope_p=rope_p, rope_s=rope_s, mask_p=pmask[:, None, None, :], mask_s=mask_s, index=index)
        (_, xs), _, _ = layers.run_blocks(self.layers, (xp, xs), cfg, method="prefixed", collect=False, **kw)
        h = self.norm(xs)
        return CausalLMOutput(logits=self.logits(h[:, -1:]), hidden=h)


def load_tokenizer(path):
    """The Llama 3 tokenizer (tokenizer.json, tokenizer_config.json) from a local directory."""
    path = Path(path).expanduser()
    fix = (
        f"download {HF_ID} (gated: accept the licence on the Hub, then "
        f"`huggingface-cli download {HF_ID} --local-dir {path}`)"
    )
    if not path.is_dir():
        raise InputError("tokenizer directory does not exist", file=path, fix=fix)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        detail = " ".join(str(e).split())[:200]
        raise InputError(f"cannot load a tokenizer ({type(e).__name__}: {detail})", file=path, fix=fix) from e
