"""Llama conversion: config.json in both rope spellings, LoRA adapters both ways (PEFT directory ->
Flax, Flax -> PEFT directory and merged HF directory, each equal to the other side <= 1e-5 on logits
and every hidden state), strict checkpoints and adapter configs."""

import json

import numpy as np
import pytest
import torch
from flax import nnx

from checkpoints_convert import convert, core
from checkpoints_convert import llama as llama_convert
from checkpoints_convert.llama import FAMILY as FAM
from jaxbgs import lora
from jaxbgs.errors import InputError
from jaxbgs.models import llama
from tests.models.parity import save_twin
from tests.models.test_llama import TINY, TOL, worst

LINEAR_NAMES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# meta-llama/Llama-3.2-1B config.json as published (transformers 4.45 spelling: rope_theta and
# rope_scaling side by side), trimmed of generation-only fields.
HUB_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "vocab_size": 128256,
}


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama_src")
    save_twin("llama", TINY, path)
    return path


def base_twin(src):
    state, hf, _ = core.read_checkpoint(src)
    return FAM.torch_from_state(hf, state)


def inputs(seed=4):
    out = FAM.example_input(TINY, None, 11, seed=seed)
    out["position_ids"] = np.stack([np.arange(11) + 5000, np.arange(11) * 700])
    return out


def test_config_from_both_rope_spellings():
    assert FAM.config_from_hf(HUB_CONFIG, {}) == llama.Config.llama32_1b()
    for cfg in (llama.Config.llama32_1b(), TINY, TINY.replace(rope_scaling=None, tie_word_embeddings=False)):
        hf = FAM.hf_config(cfg)  # transformers 5: rope_parameters
        assert "rope_parameters" in hf and "rope_scaling" not in hf
        assert FAM.config_from_hf(hf, {}) == cfg


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"attention_bias": True}, "attention_bias=true is not supported"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_type 'yarn' is not supported"),
        ({"rope_scaling": {"rope_type": "llama3", "factor": 4.0}}, "llama3 rope parameters lack"),
        ({"hidden_act": "gelu"}, "hidden_act 'gelu' is not supported"),
        ({"vocab_size": None}, r"config.json lacks \['vocab_size'\]"),
    ],
)
def test_config_errors(change, message):
    hf = {k: v for k, v in (HUB_CONFIG | change).items() if v is not None}
    with pytest.raises(InputError, match=message):
        FAM.config_from_hf(hf, {})
    with pytest.raises(InputError, match="needs its config.json"):
        FAM.config_from_hf(None, {})


def test_peft_directory_loads_into_flax(src, tmp_path):
    """A PEFT LoRA on all 7 linear layers with random non-zero B: the Flax model with the adapters
    loaded gives PEFT's logits and hidden states, and exports the same tensors back."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    peft_model = get_peft_model(base_twin(src), LoraConfig(r=4, lora_alpha=8, target_modules=LINEAR_NAMES))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    peft_model.save_pretrained(tmp_path / "adapter")
    model, meta, _ = llama_convert.from_peft(src, tmp_path / "adapter")
    assert meta.lora == lora.LoRAConfig(rank=4, alpha=8, targets=("qkv", "out", "mlp")).to_json()
    assert lora.summary(model).adapted_layers == 7 * TINY.num_hidden_layers
    x = inputs()
    theirs = FAM.torch_forward(peft_model.eval().base_model.model, x)
    assert worst(theirs, FAM.flax_forward(model, x)) <= TOL
    assert np.abs(theirs[0] - FAM.torch_forward(base_twin(src), x)[0]).max() > 1e-3  # adapters matter
    # Both ways: the export reproduces PEFT's own file tensor for tensor.
    from safetensors.numpy import load_file

    config, tensors = convert.peft_adapters(model, meta)
    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert tensors.keys() == saved.keys()
    for k in saved:
        np.testing.assert_array_equal(tensors[k], saved[k])
    assert {m.split(".")[-1] for m in config["target_modules"]} == set(LINEAR_NAMES)


def test_flax_adapters_export_merged_and_peft(src, tmp_path):
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    cfg = lora.LoRAConfig(rank=4, alpha=8, targets=("qkv", "out", "mlp"))
    model, meta, passthrough = convert.from_torch("llama", src, lora=cfg)
    rng = np.random.default_rng(0)
    for _, layer in lora.adapters(model):
        layer.lora_b[...] = 0.1 * rng.standard_normal(layer.lora_b.shape).astype(np.float32)
    x = inputs(seed=5)
    ours = FAM.flax_forward(model, x)
    flax_dir = core.save(model, tmp_path / "flax", meta, passthrough=passthrough)

    convert.to_torch(flax_dir, tmp_path / "merged")
    state, _, _ = core.read_checkpoint(tmp_path / "merged")
    assert "lm_head.weight" not in state  # tied, as in the Hub checkpoint
    merged = LlamaForCausalLM.from_pretrained(tmp_path / "merged", attn_implementation="eager").eval()
    assert worst(FAM.torch_forward(merged, x), ours) <= TOL

    convert.to_torch(flax_dir, tmp_path / "peft", peft=True)
    peft_model = PeftModel.from_pretrained(base_twin(src), tmp_path / "peft").eval()
    assert worst(FAM.torch_forward(peft_model.base_model.model, x), ours) <= TOL


@pytest.mark.parametrize(
    ("case", "key"),
    [
        ("missing", "model.layers.1.self_attn.k_proj.weight"),
        ("shape", "model.layers.0.mlp.down_proj.weight"),
        ("extra", "lm_head.weight"),  # a tied config with a separate head: which one would be meant?
    ],
)
def test_strict_checkpoint(src, tmp_path, case, key):
    from safetensors.numpy import save_file

    state, hf, _ = core.read_checkpoint(src)
    if case == "missing":
        del state[key]
    elif case == "shape":
        state[key] = np.zeros((64, 127), np.float32)
    else:
        state[key] = state["model.embed_tokens.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(hf))
    with pytest.raises(InputError, match=key.replace(".", r"\.")):
        convert.from_torch("llama", tmp_path)


def test_strict_adapters(src, tmp_path):
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    with pytest.raises(InputError, match=r"leave out \['k_proj'\]"):
        llama_convert.lora_config_from_peft(config)
    with pytest.raises(InputError, match="use_rslora=True is not supported"):
        llama_convert.lora_config_from_peft(config | {"use_rslora": True})
    with pytest.raises(InputError, match=r"\['lm_head'\] are not Llama linear layers"):
        llama_convert.lora_config_from_peft(config | {"target_modules": ["lm_head"]})
    cfg = llama_convert.lora_config_from_peft(config | {"target_modules": "all-linear"})
    assert cfg.targets == ("qkv", "out", "mlp")

    model = llama.Model(TINY, lora=lora.LoRAConfig(rank=4, targets=("out",)), rngs=nnx.Rngs(0))
    _, tensors = convert.peft_adapters(model, core.Meta(arch="llama", config={}, lora=model.lora.to_json()))
    missing = "base_model.model.model.layers.1.self_attn.o_proj.lora_B.weight"
    with pytest.raises(InputError, match=missing.replace(".", r"\.")):
        llama_convert.assign_peft_adapters(model, {k: v for k, v in tensors.items() if k != missing})
    wrong = {k: v[:, :3] if k.endswith("lora_A.weight") else v for k, v in tensors.items()}
    with pytest.raises(InputError, match="shape mismatch"):
        llama_convert.assign_peft_adapters(model, wrong)
    with pytest.raises(InputError, match="no adapter_config.json"):
        llama_convert.from_peft(src, tmp_path)
