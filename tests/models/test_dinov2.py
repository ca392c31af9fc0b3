"""DINOv2 against transformers `Dinov2Model` (tiny random configs, fp32 <= 1e-5): native size, the
bicubic position resampling at other sizes (and the hub's 37x37 grid at SocialFusion's 336 px),
SwiGLU, export back to a loadable HF directory, PEFT adapters, strict conversion."""

import json

import jax
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file, save_file

from checkpoints_convert import convert, core, families
from checkpoints_convert.dinov2 import images_nchw
from jaxbgs import lora as lora_lib
from jaxbgs.errors import InputError
from jaxbgs.models import clip, dinov2
from tests.models.parity import parity, save_twin

TINY = dinov2.Config(image_size=28, patch_size=14, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("dinov2")
    save_twin("dinov2", TINY, path)
    return path


@nnx.jit
def _flax(model, pixels):
    return model(pixels)


def run_both(src, pixels, **overrides):
    """The Flax Output (numpy) and the PyTorch twin's output on the same images (or clip frames)."""
    fam = families.get("dinov2")
    model, _, _ = convert.from_torch("dinov2", src, **overrides)
    out = jax.tree.map(np.asarray, _flax(model, pixels))
    state, hf, _ = core.read_checkpoint(src)
    with torch.no_grad():
        ref = fam.torch_from_state(hf, state)(pixel_values=images_nchw(pixels), output_hidden_states=True)
    return out, ref


def worst(out, ref) -> float:
    """Largest |diff| over last_hidden_state, every hidden state and pooler_output."""
    pairs = [(out.tokens, ref.last_hidden_state), *zip(out.hidden_states, ref.hidden_states, strict=True)]
    diffs = [np.abs(a - b.numpy()).max() for a, b in pairs]
    frames = out.tokens.shape[0] // out.embedding.shape[0]
    pooled = ref.pooler_output.numpy().reshape(out.embedding.shape[0], frames, -1).mean(1)
    return float(max(*diffs, np.abs(out.embedding - pooled).max()))


def test_parity_at_the_native_size(hf_dir):
    pixels = np.random.default_rng(1).standard_normal((2, 28, 28, 3)).astype(np.float32)
    out, ref = run_both(hf_dir, pixels)
    assert out.tokens.shape == (2, 5, 32) and out.embedding.shape == (2, 32)
    assert len(out.hidden_states) == TINY.num_hidden_layers + 1
    assert worst(out, ref) <= 1e-5
    # hidden_states follow transformers: the last one is the raw last layer, `tokens` is normalised
    assert np.abs(out.hidden_states[-1] - out.tokens).max() > 0.1


@pytest.mark.parametrize("shape", [(2, 42, 42, 3), (1, 2, 14, 42, 3)])
def test_position_interpolation_at_other_sizes(hf_dir, shape):
    """Up-sampling (2x2 -> 3x3 grid) and a non-square clip (2x2 -> 1x3): transformers' bicubic
    `interpolate_pos_encoding`; a clip's embedding is the mean of its frames' pooler_output."""
    pixels = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    out, ref = run_both(hf_dir, pixels)
    assert out.tokens.shape[1] == shape[-3] // 14 * (shape[-2] // 14) + 1
    assert worst(out, ref) <= 1e-5


def test_hub_grid_resampled_to_socialfusion_336():
    """The hub's 518 px table (37x37 + CLS) at SocialFusion's 336 px input (24x24 patches)."""
    from transformers import Dinov2Config
    from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings

    torch.manual_seed(0)
    ref = Dinov2Embeddings(Dinov2Config(hidden_size=8, image_size=518, patch_size=14)).eval()
    torch.nn.init.normal_(ref.position_embeddings)
    with torch.no_grad():
        expected = ref.interpolate_pos_encoding(torch.zeros(1, 24 * 24 + 1, 8), 336, 336)[0].numpy()
    table = ref.position_embeddings[0].detach().numpy()
    grid = np.asarray(dinov2.resample_positions(table[1:].reshape(37, 37, 8), 24, 24))
    np.testing.assert_array_equal(expected[0], table[0])  # the CLS position is not resampled
    np.testing.assert_allclose(grid.reshape(576, 8), expected[1:], atol=1e-5)
    # exact weights (jaxbgs.models.clip.bicubic_matrix) miss ATen's float32 coordinates by ~1e-5 here
    assert np.abs(dinov2.bicubic_matrix(37, 24) - clip.bicubic_matrix(37, 24)).max() > 1e-6


def test_swiglu_mlp(tmp_path):
    """ViT-g's SwiGLU: fused `weights_in` on disk, gate/up split by transformers at load time."""
    cfg = TINY.replace(use_swiglu_ffn=True, num_hidden_layers=1)
    save_twin("dinov2", cfg, tmp_path)
    assert "encoder.layer.0.mlp.weights_in.weight" in load_file(str(tmp_path / "model.safetensors"))
    assert cfg.mlp_hidden == 88  # int(128 * 2 / 3) = 85, rounded up to a multiple of 8
    result = parity("dinov2", tmp_path)  # through `check`, the CLI's path: (2, 28, 28, 3) images
    assert result["input_shapes"]["pixels"] == [2, 28, 28, 3]
    assert len(result["per_layer_max_abs_diff"]) == 2
    with pytest.raises(InputError, match="SwiGLU MLP .* cannot be exported to PEFT"):
        dinov2.Model(cfg, lora=lora_lib.LoRAConfig(targets=("qkv", "mlp")), rngs=nnx.Rngs(0))


def test_export_loads_in_transformers_with_the_same_outputs(hf_dir, tmp_path):
    from transformers import Dinov2Model

    dst = convert.to_torch(convert.to_flax("dinov2", hf_dir, tmp_path / "flax"), tmp_path / "hf")
    a, b = load_file(str(hf_dir / "model.safetensors")), load_file(str(dst / "model.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)  # the hub spelling
    assert json.loads((dst / "config.json").read_text()) == json.loads((hf_dir / "config.json").read_text())
    model, info = Dinov2Model.from_pretrained(dst, output_loading_info=True)
    assert not any(info.values()), info
    pixels = np.random.default_rng(3).standard_normal((2, 28, 28, 3)).astype(np.float32)
    out, _ = run_both(hf_dir, pixels)
    with torch.no_grad():
        ref = model.eval()(pixel_values=images_nchw(pixels), output_hidden_states=True)
    assert worst(out, ref) <= 1e-5


def test_peft_adapters_name_transformers5_modules(hf_dir, tmp_path):
    from peft import PeftModel

    model, meta, _ = convert.from_torch("dinov2", hf_dir, lora=lora_lib.LoRAConfig(rank=2))
    rng = np.random.default_rng(4)
    for _, layer in lora_lib.adapters(model):
        layer.lora_b[...] = 0.1 * rng.standard_normal(layer.lora_b.shape).astype(np.float32)
    config, _ = convert.peft_adapters(model, meta)
    assert "encoder.layer.0.attention.q_proj" in config["target_modules"]
    assert len(config["target_modules"]) == 4 * TINY.num_hidden_layers
    convert.to_torch(core.save(model, tmp_path / "flax", meta), tmp_path / "peft", peft=True)
    state, hf, _ = core.read_checkpoint(hf_dir)
    twin = PeftModel.from_pretrained(families.get("dinov2").torch_from_state(hf, state), tmp_path / "peft")
    pixels = rng.standard_normal((1, 28, 28, 3)).astype(np.float32)
    with torch.no_grad():
        ref = twin.eval()(pixel_values=images_nchw(pixels))
    np.testing.assert_allclose(np.asarray(_flax(model, pixels).tokens), ref.last_hidden_state, atol=1e-5)


def test_module_spelling_and_classifier_checkpoints_convert(hf_dir, tmp_path):
    """transformers-5 module names (`attention.q_proj`) and `Dinov2ForImageClassification` keys
    (`dinov2.` prefix, classifier dropped) give the same weights."""
    state = load_file(str(hf_dir / "model.safetensors"))
    spelled = {
        k.replace("attention.attention.query", "attention.q_proj").replace("output.dense", "o_proj"): v
        for k, v in state.items()
    }
    classifier = {"dinov2." + k: v for k, v in state.items()} | {
        "classifier.weight": np.zeros((3, 64), np.float32),
        "classifier.bias": np.zeros(3, np.float32),
    }
    reference = core.flat_params(convert.from_torch("dinov2", hf_dir)[0])
    for name, tensors in (("spelled", spelled), ("classifier", classifier)):
        (tmp_path / name).mkdir()
        save_file(tensors, str(tmp_path / name / "model.safetensors"))
        (tmp_path / name / "config.json").write_text((hf_dir / "config.json").read_text())
        params = core.flat_params(convert.from_torch("dinov2", tmp_path / name)[0])
        assert params.keys() == reference.keys()
        assert all(np.array_equal(params[k], reference[k]) for k in params), name


def test_strict_conversion_names_the_key(hf_dir):
    fam = families.get("dinov2")
    state = load_file(str(hf_dir / "model.safetensors"))
    expected = core.base_shapes(dinov2.Model(TINY, rngs=nnx.Rngs(0)))
    core.apply_to_flax(state, fam.key_map, expected)  # the untouched twin converts
    missing = {k: v for k, v in state.items() if k != "encoder.layer.1.layer_scale2.lambda1"}
    with pytest.raises(InputError, match=r"1 missing key\(s\): encoder.layer.1.layer_scale2.lambda1"):
        core.apply_to_flax(missing, fam.key_map, expected)
    bad = state | {"embeddings.position_embeddings": np.zeros((1, 17, 32), np.float32)}
    with pytest.raises(InputError, match=r"embeddings.position_embeddings \(1, 17, 32\)"):
        core.apply_to_flax(bad, fam.key_map, expected)
    extra = state | {"encoder.layer.2.norm1.weight": np.zeros(32, np.float32)}
    with pytest.raises(InputError, match=r"unexpected source key\(s\): encoder.layer.2.norm1.weight"):
        core.apply_to_flax(extra, fam.key_map, expected)


def test_config_from_the_hub_config_and_variants():
    from transformers import Dinov2Config

    hub = Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, image_size=518)
    cfg = families.get("dinov2").config_from_hf(hub.to_dict(), {"embeddings.mask_token": None})
    assert cfg == dinov2.Config.variant("vit_l14")
    assert cfg.num_positions == 37 * 37 + 1 and cfg.mlp_hidden == 4096 and cfg.pool == "cls"
    small = cfg.replace(num_hidden_layers=2)
    out = jax.eval_shape(
        lambda x: dinov2.Model(small, rngs=nnx.Rngs(0))(x), jax.ShapeDtypeStruct((1, 336, 336, 3), np.float32)
    )
    assert out.tokens.shape == (1, 577, 1024) and out.hidden_states[-2].shape == (1, 577, 1024)
    with pytest.raises(InputError, match="not divisible by 5 heads"):
        TINY.replace(num_attention_heads=5)


def test_bad_inputs():
    model = dinov2.Model(TINY, rngs=nnx.Rngs(0))
    with pytest.raises(InputError, match=r"pixels have shape \(28, 28, 3\)"):
        model(np.zeros((28, 28, 3), np.float32))
    with pytest.raises(InputError, match="width 30 is not a positive multiple of 14"):
        model(np.zeros((1, 28, 30, 3), np.float32))


def test_preprocess_crops_like_bit_processor_or_keeps_the_frame():
    image = np.broadcast_to(np.round(np.array(dinov2.DINOV2_MEAN) * 255).astype(np.uint8), (120, 160, 3))
    out = dinov2.preprocess(image)
    assert out.shape == (224, 224, 3) and float(np.abs(out).max()) < 0.01  # the mean colour -> ~0
    assert dinov2.preprocess(np.stack([image] * 2), size=336, crop=False).shape == (2, 336, 336, 3)
