"""Llama 3 against transformers `LlamaForCausalLM` (eager attention) on tiny random configs: RoPE
frequencies bit for bit (llama3 scaling), logits and every hidden state <= 1e-5 in float32 at
positions up to 9000, with padding and input embeddings, tied and untied heads; LoRA targets,
configs, bad input and the tokenizer loader."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from checkpoints_convert import convert, core
from checkpoints_convert.llama import FAMILY as FAM
from jaxbgs import lora
from jaxbgs.errors import InputError
from jaxbgs.models import llama
from tests.models.parity import parity, save_twin

# The reference's tiny twin: GQA with 2 query heads per KV head, theta 5e5 and the llama3 scaling of
# Llama 3.2; head_dim 16 gives 8 frequencies, 4 kept, 1 blended, 3 divided by the factor.
TINY = llama.Config(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=16384,
)
TOL = 1e-5


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama")
    save_twin("llama", TINY, path)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    """(Flax model, PyTorch twin) of the tiny config, same weights."""
    model, _, _ = convert.from_torch("llama", tiny_dir)
    state, hf, _ = core.read_checkpoint(tiny_dir)
    return model, FAM.torch_from_state(hf, state)


def worst(theirs, ours) -> float:
    result = convert.compare(*theirs, *ours)
    return max(result["max_abs_diff"], *result["per_layer_max_abs_diff"])


def hf_inv_freq(cfg: llama.Config) -> np.ndarray:
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hf = LlamaConfig(**FAM.hf_config(cfg))
    kind = hf.rope_parameters["rope_type"]
    if kind == "default":
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        return LlamaRotaryEmbedding.compute_default_rope_parameters(hf)[0].numpy()
    return ROPE_INIT_FUNCTIONS[kind](hf)[0].numpy()


@pytest.mark.parametrize(
    "cfg",
    [
        llama.Config.llama32_1b(),
        TINY,
        TINY.replace(rope_scaling=None),
        TINY.replace(head_dim=128, rope_theta=10000.0, rope_scaling={"factor": 8.0, "high_freq_factor": 2.0}),
    ],
    ids=["1b", "tiny", "unscaled", "theta1e4"],
)
def test_inv_freq_bit_identical_to_transformers(cfg):
    np.testing.assert_array_equal(llama.inv_freq(cfg), hf_inv_freq(cfg))


def test_llama32_1b_frequency_bands():
    # Reference section 7: 15 frequencies kept, 14 divided by 32, 3 blended (indices 15-17).
    cfg = llama.Config.llama32_1b()
    inv, plain = llama.inv_freq(cfg), llama.inv_freq(cfg.replace(rope_scaling=None))
    kept, divided = inv == plain, np.isclose(inv, plain / 32, rtol=1e-6)
    assert kept.sum() == 15 and divided.sum() == 14
    assert list(np.flatnonzero(~kept & ~divided)) == [15, 16, 17]


def test_parity_through_check(tiny_dir):
    result = parity("llama", tiny_dir, size=12)
    assert len(result["per_layer_max_abs_diff"]) == TINY.num_hidden_layers + 1


def test_parity_far_positions_and_padding(tiny):
    """Positions up to 9000 reach every frequency band; row 1 is left-padded (its padding queries
    see no key and average all values, in both), row 2 right-padded."""
    model, twin = tiny
    n = 12
    inputs = FAM.example_input(TINY, None, n, seed=1, batch=3)
    inputs["attention_mask"][1] = 1
    inputs["attention_mask"][1, :4] = 0
    inputs["position_ids"] = np.stack([np.arange(n) + 3000, np.arange(n) * 800, np.arange(n) + 8100])
    ours = FAM.flax_forward(model, inputs)
    assert worst(FAM.torch_forward(twin, inputs), ours) <= TOL
    # The scaling is exercised: plain RoPE on the same weights gives other logits.
    plain = llama.Model(TINY.replace(rope_scaling=None), rngs=nnx.Rngs(0))
    nnx.update(plain, nnx.state(model))
    assert np.abs(FAM.flax_forward(plain, inputs)[0] - ours[0]).max() > 1e-3


def test_input_embeddings_and_hidden_states(tiny):
    """Image tokens spliced between prompt embeddings: `embeds` matches transformers' inputs_embeds."""
    model, twin = tiny
    tokens = np.random.default_rng(2).integers(0, TINY.vocab_size, (2, 10))
    embeds = np.array(model.embed(tokens))
    np.testing.assert_array_equal(embeds, twin.model.embed_tokens(torch.from_numpy(tokens)).detach().numpy())
    embeds[:, 3:8] = np.random.default_rng(3).standard_normal((2, 5, TINY.hidden_size)).astype(np.float32)
    mask = np.ones((2, 10), bool)
    mask[1, 8:] = False
    out = nnx.jit(lambda m, e, k: m(embeds=e, mask=k, output_hidden_states=True))(model, embeds, mask)
    theirs = FAM.torch_forward(twin, {"inputs_embeds": embeds, "attention_mask": mask.astype(np.int64)})
    assert worst(theirs, (out.logits, out.hidden_states)) <= TOL
    assert len(out.hidden_states) == TINY.num_hidden_layers + 1 and out.logits.shape == (2, 10, 256)
    np.testing.assert_array_equal(out.hidden_states[0], embeds)
    np.testing.assert_array_equal(out.hidden_states[-1], out.hidden)


def _shared_prefix_case(seed=4):
    """3 left-padded prompts shared by 5 rows of 4 embedded tokens each, and the same rows written out
    as full sequences (prompt, then the row's tokens; positions count real tokens from 0)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, TINY.vocab_size, (3, 7))
    pmask = np.ones((3, 7), bool)
    pmask[1, :3] = pmask[2, :6] = False
    index = np.array([1, 0, 2, 1, 0])
    rows = rng.standard_normal((5, 4, TINY.hidden_size)).astype(np.float32)
    mask = np.concatenate([pmask[index], np.ones((5, 4), bool)], axis=1)
    return tokens, pmask, index, rows, mask, np.maximum(np.cumsum(mask, axis=1) - 1, 0)


def test_shared_prefixes_match_full_sequences(tiny):
    """`Model.prefixed` (each prompt run once) against transformers on every row's full sequence."""
    model, twin = tiny
    tokens, pmask, index, rows, mask, positions = _shared_prefix_case()
    out = nnx.jit(lambda m, t, k, i, e: m.prefixed(m.embed(t), k, i, e))(model, tokens, pmask, index, rows)
    embeds = np.concatenate([np.array(model.embed(tokens))[index], rows], axis=1)
    theirs = FAM.torch_forward(
        twin, {"inputs_embeds": embeds, "attention_mask": mask.astype(np.int64), "position_ids": positions}
    )
    assert np.abs(np.asarray(out.logits)[:, 0] - theirs[0][:, -1]).max() <= TOL
    assert np.abs(np.asarray(out.hidden) - theirs[1][-1][:, -4:]).max() <= TOL
    assert out.logits.shape == (5, 1, TINY.vocab_size) and out.hidden.shape == (5, 4, TINY.hidden_size)
    with pytest.raises(InputError, match="Model.prefixed"):
        model.prefixed(model.embed(tokens), pmask[:, 1:], index, rows)


@pytest.mark.parametrize("remat", ["none", "full"])
def test_shared_prefix_gradients_equal_full_sequences(remat):
    """What training differentiates: the LoRA gradients through shared prompts equal those of the
    full sequences (each prompt's gradient gathers over the rows that read it), with and without remat."""
    cfg = TINY.replace(remat=remat)
    model = llama.Model(cfg, lora=lora.LoRAConfig(rank=4, alpha=8.0), rngs=nnx.Rngs(1))
    tokens, pmask, index, rows, mask, positions = _shared_prefix_case(seed=5)
    graphdef, params, rest = nnx.split(model, lora.LoRAParam, ...)
    # B = 0 at init: give the adapters something to pass on
    params = jax.tree.map(lambda x: jax.random.normal(jax.random.key(2), x.shape) * 0.05, params)

    def shared(p):
        m = nnx.merge(graphdef, p, rest)
        out = m.prefixed(m.embed(tokens), pmask, index, rows)
        return (out.logits[:, 0, :8] ** 2).sum() + out.hidden.sum()

    def full(p):
        m = nnx.merge(graphdef, p, rest)
        embeds = jnp.concatenate([m.embed(tokens)[index], rows], axis=1)
        out = m(embeds=embeds, mask=mask, positions=positions)
        return (out.logits[:, -1, :8] ** 2).sum() + out.hidden[:, -4:].sum()

    (a, ga), (b, gb) = jax.value_and_grad(shared)(params), jax.value_and_grad(full)(params)
    assert abs(float(a - b)) <= 1e-4 * abs(float(b))
    worst_grad = max(jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.abs(x - y).max()), ga, gb)))
    scale = max(jax.tree.leaves(jax.tree.map(lambda y: float(jnp.abs(y).max()), gb)))
    assert scale > 0 and worst_grad <= 1e-5 * scale


def test_untied_head_parity_and_export(tmp_path):
    cfg = TINY.replace(tie_word_embeddings=False, rope_scaling=None, rope_theta=50.0)
    twin = save_twin("llama", cfg, tmp_path / "src")
    assert twin.lm_head.weight.data_ptr() != twin.model.embed_tokens.weight.data_ptr()
    parity("llama", tmp_path / "src", size=9)
    model, meta, _ = convert.from_torch("llama", tmp_path / "src")
    assert model.lm_head is not None and model.cfg.rope_scaling is None
    convert.to_torch(core.save(model, tmp_path / "flax", meta), tmp_path / "out")
    state, hf, _ = core.read_checkpoint(tmp_path / "out")
    np.testing.assert_array_equal(state["lm_head.weight"], twin.lm_head.weight.detach().numpy())
    assert hf["architectures"] == ["LlamaForCausalLM"] and hf["tie_word_embeddings"] is False


def test_tied_model_has_no_head(tiny):
    model, _ = tiny
    assert model.lm_head is None
    assert not [k for k in core.flat_params(model) if "lm_head" in k]


def test_bfloat16_compute_with_remat(tiny):
    """bf16 compute on float32 parameters, under a full-remat policy (one compile for both)."""
    model, _ = tiny
    inputs = FAM.example_input(TINY, None, 12, seed=0)
    ref = FAM.flax_forward(model, inputs)[0]
    cfg = TINY.replace(dtype="bfloat16", remat="full")
    other = llama.Model(cfg, rngs=nnx.Rngs(0))
    nnx.update(other, nnx.state(model))
    assert all(v.dtype == np.float32 for v in core.flat_params(other).values())
    logits = FAM.flax_forward(other, inputs)[0]
    assert logits.dtype == cfg.compute_dtype
    np.testing.assert_allclose(logits.astype(np.float32), ref, atol=0.05 * np.abs(ref).max())


def test_bad_inputs(tiny):
    model, _ = tiny
    ids = np.ones((2, 5), np.int32)
    with pytest.raises(InputError, match="exactly one of tokens and embeds"):
        model(ids, embeds=np.zeros((2, 5, 64), np.float32))
    with pytest.raises(InputError, match="exactly one of tokens and embeds"):
        model()
    with pytest.raises(InputError, match="tokens must be integer"):
        model(np.ones((2, 5), np.float32))
    with pytest.raises(InputError, match=r"embeds must be \(batch, length, 64\)"):
        model(embeds=np.zeros((2, 5, 32), np.float32))
    with pytest.raises(InputError, match=r"mask has shape \(2, 4\), the input \(2, 5\)"):
        model(ids, mask=np.ones((2, 4), bool))
    with pytest.raises(InputError, match="positions must be integer"):
        model(ids, positions=np.arange(4))


def test_lora_covers_every_linear_layer():
    targets = ("qkv", "out", "mlp")
    model = llama.Model(
        TINY.replace(tie_word_embeddings=False), lora=lora.LoRAConfig(targets=targets), rngs=nnx.Rngs(0)
    )
    paths = {".".join(map(str, p)) for p in lora.adapter_paths(model)}
    names = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    part = {n: "self_attn" if n.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp" for n in names}
    assert paths == {f"layers.{i}.{part[n]}.{n}" for i in range(2) for n in names}  # never lm_head


def test_lora_summary_of_llama32_1b():
    """SocialFusion's setting: rank 32 on all linear layers of the 1.24B model."""
    cfg = lora.LoRAConfig(rank=32, alpha=64, targets=("qkv", "out", "mlp"))
    model = nnx.eval_shape(lambda: llama.Model(llama.Config.llama32_1b(), lora=cfg, rngs=nnx.Rngs(0)))
    s = lora.summary(model)
    # 128256*2048 embedding + 16 * (q, k, v, o, gate, up, down, 2 norms) + final norm.
    assert s.total - s.lora == 1_235_814_400
    # Per layer r * (in + out): q, o 2048+2048; k, v 2048+512; gate, up, down 2048+8192.
    assert s.lora == 16 * 32 * (2 * 4096 + 2 * 2560 + 3 * 10240) == 22_544_384
    assert s.adapted_layers == 16 * 7


def test_config_json_round_trip_and_validation():
    for cfg in (TINY, TINY.replace(rope_scaling=None, dtype="bfloat16", remat="dots")):
        assert llama.Config.from_json(cfg.to_json()) == cfg
    as_dict = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}
    assert TINY.replace(rope_scaling=as_dict).rope_scaling == llama.RopeScaling(factor=8.0)
    with pytest.raises(InputError, match=r"unknown config key\(s\) \['rope_type'\]"):
        llama.Config.from_json({"rope_type": "llama3"})
    with pytest.raises(InputError, match=r"unknown llama3 rope parameter\(s\) \['rope_theta'\]"):
        TINY.replace(rope_scaling={"rope_type": "llama3", "rope_theta": 10.0})
    with pytest.raises(InputError, match="dtype='float64' is not supported"):
        TINY.replace(dtype="float64")
    with pytest.raises(InputError, match="rope_type 'yarn' is not supported"):
        TINY.replace(rope_scaling={"rope_type": "yarn", "factor": 4.0})
    with pytest.raises(InputError, match="4 query heads do not split into 3"):
        TINY.replace(num_key_value_heads=3)
    with pytest.raises(InputError, match="low < high freq factor"):
        llama.RopeScaling(low_freq_factor=4.0, high_freq_factor=1.0)
    with pytest.raises(InputError, match="attention='flash' is not supported"):
        TINY.replace(attention="flash")


def test_load_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    with pytest.raises(InputError, match=r"missing.*does not exist.*meta-llama/Llama-3.2-1B"):
        llama.load_tokenizer(tmp_path / "missing")
    with pytest.raises(InputError, match=r"cannot load a tokenizer.*meta-llama/Llama-3.2-1B"):
        llama.load_tokenizer(tmp_path)  # an empty directory
    tok = Tokenizer(models.WordLevel({"<unk>": 0, "look": 1, "at": 2, "me": 3}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(tmp_path / "tok")
    assert llama.load_tokenizer(tmp_path / "tok")("look at him")["input_ids"] == [1, 2, 0]
