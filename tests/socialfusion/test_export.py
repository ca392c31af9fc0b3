"""SocialFusion -> PyTorch export (paper §3): the torch twin loaded from the directory reproduces the JAX
connector, box embedding and gaze head (<= 1e-5, fp32); transformers `LlamaForCausalLM` with the
exported PEFT adapters reproduces the JAX LLM with its LoRA, and the whole model end to end (<= 1e-4);
a corrupted export names the file and key."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import types

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from checkpoints_convert import core
from checkpoints_convert import llama as llama_convert
from jaxbgs.errors import InputError
from jaxbgs.lora import LoRAParam, TrainableParam
from jaxbgs.models import llama
from jaxbgs.socialfusion import export
from jaxbgs.socialfusion.model import SocialFusion, box_mask
from tests.socialfusion.test_model import TINY as MODEL_TINY

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

# The model test's tiny config, with llama3 RoPE scaling so the exported LlamaConfig carries it too.
TINY = dataclasses.replace(
    MODEL_TINY,
    llm=MODEL_TINY.llm.replace(
        rope_scaling=llama.RopeScaling(factor=8.0, original_max_position_embeddings=8)
    ),
)
EXPECTED_KEYS = {
    *(f"connector.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")),
    "box_embedding",
    *(f"gaze.{m}.{p}" for m in ("proj", "up") for p in ("weight", "bias")),
}


@pytest.fixture(scope="module")
def model():
    m = SocialFusion(TINY, rngs=nnx.Rngs(0))
    # Every trainable tensor random and non-zero (adapters' B and the biases start at zero), so that a
    # dropped, transposed or swapped tensor changes the outputs being compared.
    rng = np.random.default_rng(1)
    for _, v in nnx.iter_graph(m):
        if isinstance(v, TrainableParam):
            scale = 0.1 if isinstance(v, LoRAParam) else 0.3
            v.set_value(jnp.asarray(scale * rng.standard_normal(v.shape), jnp.float32))
    return m


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    return export.to_torch(model, tmp_path_factory.mktemp("export") / "sf", source=llama.HF_ID)


def _inputs(seed=0, b=2, p=5):
    rng = np.random.default_rng(seed)
    token_mask = np.ones((b, p), bool)
    token_mask[1, :2] = False  # the second prompt is left-padded
    return dict(
        features=rng.standard_normal((b, TINY.grid**2, TINY.feature_dim)).astype(np.float32),
        tokens=rng.integers(1, TINY.llm.vocab_size, (b, p)),
        token_mask=token_mask,
        boxes=np.array([[[0.1, 0.2, 0.6, 0.5]], [[0.5, 0.0, 1.0, 0.3]]], np.float32),
        box_valid=np.ones((b, 1), bool),
    )


def test_export_layout(model, exported):
    from safetensors.numpy import load_file

    assert sorted(p.name for p in exported.iterdir()) == [
        "adapter",
        "config.json",
        "socialfusion.safetensors",
    ]
    assert not list(exported.parent.glob(".*.tmp"))  # the temporary directory was renamed, not left
    state = load_file(str(exported / export.WEIGHTS))
    assert set(state) == EXPECTED_KEYS
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in state.values())
    np.testing.assert_array_equal(state["connector.2.weight"], np.asarray(model.connector.layers[1].kernel).T)
    assert state["gaze.up.weight"].shape == (TINY.gaze_channels, 1, 2, 2)
    config = json.loads((exported / export.CONFIG).read_text())
    assert {k: config[k] for k in ("grid", "heatmap", "lora_rank", "lora_alpha")} == {
        "grid": 4, "heatmap": 10, "lora_rank": 4, "lora_alpha": 64.0
    }  # fmt: skip
    assert llama_convert.config_from_hf(config["llm"], {}) == TINY.llm  # the LlamaConfig round-trips
    adapter = json.loads((exported / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == llama.HF_ID and adapter["r"] == 4
    assert len(load_file(str(exported / "adapter" / "adapter_model.safetensors"))) == 2 * 7 * 2


def test_heads_match_jax(model, exported):
    heads = export.torch_heads(exported)
    x = _inputs()
    mask = np.array(box_mask(jnp.asarray(x["boxes"]), jnp.asarray(x["box_valid"]), TINY.grid))
    assert 0 < mask.sum() < mask.size
    ours = model.connector(jnp.asarray(x["features"])) + mask[..., None] * model.box_embedding[...]
    tokens = (
        np.random.default_rng(2).standard_normal((2, TINY.grid**2, TINY.llm.hidden_size)).astype(np.float32)
    )
    with torch.no_grad():
        theirs = heads(torch.from_numpy(x["features"]), torch.from_numpy(mask)).numpy()
        gaze = heads.gaze(torch.from_numpy(tokens)).numpy()
    np.testing.assert_allclose(theirs, np.asarray(ours), atol=1e-5, rtol=0)
    assert gaze.shape == (2, TINY.heatmap, TINY.heatmap)
    np.testing.assert_allclose(gaze, np.asarray(model.gaze(jnp.asarray(tokens))), atol=1e-5, rtol=0)


def _base_twin(model, exported):
    """A transformers Llama from the exported config.json holding the JAX LLM's frozen base weights."""
    llm = model.llm
    base = {k: v for k, v in core.flat_params(llm).items() if k in core.base_shapes(llm)}
    state = {k: np.array(v) for k, v in core.apply_to_torch(base, llama_convert.KEY_MAP).items()}  # writable
    config = json.loads((exported / export.CONFIG).read_text())["llm"]
    return llama_convert.FAMILY.torch_from_state(config, state)


def test_peft_llm_and_whole_model_match_jax(model, exported):
    twin = _base_twin(model, exported)
    x = _inputs(seed=3)
    ids = torch.from_numpy(x["tokens"])
    with torch.no_grad():
        base_logits = twin(input_ids=ids).logits.numpy()
    llm = export.load_peft_llm(twin, exported)
    with torch.no_grad():
        peft_logits = llm(input_ids=ids).logits.numpy()
    ours = np.asarray(model.llm(jnp.asarray(x["tokens"])).logits)
    np.testing.assert_allclose(peft_logits, ours, atol=1e-4, rtol=0)
    assert np.abs(base_logits - ours).max() > 1e-2  # the adapters take part

    heads = export.torch_heads(exported)
    mask = box_mask(jnp.asarray(x["boxes"]), jnp.asarray(x["box_valid"]), TINY.grid)
    with torch.no_grad():
        logits, heatmap = export.torch_forward(
            heads, llm, *(torch.from_numpy(np.asarray(x[k])) for k in ("features", "tokens", "token_mask")),
            torch.from_numpy(np.array(mask)),
        )  # fmt: skip
    out = model(**{k: jnp.asarray(v) for k, v in x.items()})
    np.testing.assert_allclose(logits.numpy(), np.asarray(out.logits), atol=1e-4, rtol=0)
    np.testing.assert_allclose(heatmap.numpy(), np.asarray(out.heatmap), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("case", "key"),
    [("missing", "gaze.up.bias"), ("shape", "connector.2.weight"), ("extra", "gaze.up.scale")],
)
def test_corrupted_export_names_file_and_key(exported, tmp_path, case, key):
    from safetensors.numpy import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    state = load_file(str(broken / export.WEIGHTS))
    if case == "missing":
        del state[key]
    elif case == "shape":
        state[key] = state[key][:, :-1].copy()
    else:
        state[key] = np.ones(1, np.float32)
    save_file(state, str(broken / export.WEIGHTS))
    with pytest.raises(InputError, match=r"socialfusion\.safetensors: .*" + re.escape(key)):
        export.torch_heads(broken)


def test_missing_pieces_and_failed_export_leave_nothing(model, exported, tmp_path):
    with pytest.raises(InputError, match="no such export directory"):
        export.torch_heads(tmp_path / "nowhere")
    other = types.SimpleNamespace(config=llama_convert.torch_model(llama_convert.hf_config(TINY.llm)).config)
    other.config.num_hidden_layers = 3
    with pytest.raises(InputError, match=r"config\.json: llm\.num_hidden_layers: the base model has"):
        export.load_peft_llm(other, exported)
    partial = tmp_path / "partial"
    shutil.copytree(exported, partial)
    (partial / "adapter" / "adapter_model.safetensors").unlink()
    with pytest.raises(InputError, match=r"adapter: missing adapter_model\.safetensors"):
        export.load_peft_llm(None, partial)
    (partial / export.WEIGHTS).unlink()
    with pytest.raises(InputError, match=r"partial: missing socialfusion\.safetensors"):
        export.torch_heads(partial)
    # An LLM without adapters cannot be exported, and the failed export writes nothing.
    bare = SocialFusion(TINY, rngs=nnx.Rngs(0))
    bare.llm = llama.Model(TINY.llm, rngs=nnx.Rngs(0))
    with pytest.raises(InputError, match="no LoRA adapters"):
        export.to_torch(bare, tmp_path / "bare")
    assert not (tmp_path / "bare").exists() and not list(tmp_path.glob(".bare.*"))
