"""TimeSformer against transformers `TimesformerModel` (REFERENCE decision 5: frame grouping)."""

import functools

import numpy as np
import pytest
import torch
from flax import nnx

from checkpoints_convert import convert, core, families
from jaxbgs import lora as lora_lib
from jaxbgs.errors import InputError
from jaxbgs.models import timesformer
from tests.models.parity import parity, parity_float64, save_twin

TINY = timesformer.Config(
    hidden_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=96,
    image_size=32,
    patch_size=8,
    num_frames=4,
)
FAM = families.get("timesformer")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("timesformer")
    save_twin("timesformer", TINY, path)
    return path


@functools.cache
def _flax(path, grouping="native"):
    return convert.from_torch("timesformer", path, frame_grouping=grouping)[0]


@functools.cache
def _twin(path):
    state, hf, _ = core.read_checkpoint(path)
    return FAM.torch_from_state(hf, state)


@nnx.jit
def _attentions(model, pixels):
    return model(pixels, output_attentions=True).attentions


def _shape(model, shape):
    """Trace a forward pass without compiling it (shape checks and trace-time errors)."""
    return nnx.eval_shape(lambda m, x: m(x), model, np.zeros(shape, np.float32))


def _pixels(shape, seed=1):
    return {"pixels": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}


def _diffs(twin, model, inputs):
    with torch.no_grad():
        t = FAM.torch_forward(twin, inputs)
    result = convert.compare(*t, *FAM.flax_forward(model, inputs))
    return max(result["max_abs_diff"], *result["per_layer_max_abs_diff"]), result


@pytest.mark.parametrize(("frames", "size"), [(None, None), (4, 48)])
def test_parity_float32(tiny_dir, frames, size):
    """The config's frame count, and a larger size (position table interpolated 4x4 -> 6x6)."""
    result = parity("timesformer", tiny_dir, frames=frames, size=size)
    assert len(result["per_layer_max_abs_diff"]) == TINY.num_hidden_layers + 1


def test_parity_float64(tiny_dir):
    assert parity_float64("timesformer", tiny_dir) <= 1e-10


@pytest.mark.parametrize("shape", [(2, 4, 32, 48, 3), (2, 4, 16, 64, 3)])
def test_parity_non_square(tiny_dir, shape):
    """32x48 interpolates the 4x4 position grid to 4x6; 16x64 has the config's 16 patches, so
    transformers adds the table unresized (row-major 4x4 read as 2x8), and so do we."""
    worst, result = _diffs(_twin(tiny_dir), _flax(tiny_dir), _pixels(shape))
    assert worst <= 1e-5, (shape, result)


def test_both_groupings_equal_hf_at_config_frames(tiny_dir):
    inputs = _pixels((2, TINY.num_frames, 32, 32, 3))
    for grouping in ("native", "config"):
        worst, result = _diffs(_twin(tiny_dir), _flax(tiny_dir, grouping), inputs)
        assert worst <= 1e-5, (grouping, result)


def test_double_frames_config_mode_reproduces_hf_regrouping(tiny_dir):
    """The authors' setup (16 frames into the 8-frame checkpoint), here 8 frames into 4."""
    inputs = _pixels((2, 2 * TINY.num_frames, 32, 32, 3))
    worst, result = _diffs(_twin(tiny_dir), _flax(tiny_dir, "config"), inputs)
    assert worst <= 1e-5, result
    assert len(result["per_layer_max_abs_diff"]) == TINY.num_hidden_layers + 1
    _, native = _diffs(_twin(tiny_dir), _flax(tiny_dir, "native"), inputs)
    assert native["per_layer_max_abs_diff"][0] <= 1e-5  # same embeddings (time table interpolated)
    assert min(native["per_layer_max_abs_diff"][1:]) > 1e-2, native  # blocks attend differently


@pytest.mark.parametrize("frames", [2, 3])
def test_config_mode_other_frame_counts(tiny_dir, frames):
    """Fewer frames than configured: transformers groups tokens of neighbouring patches in time."""
    worst, result = _diffs(_twin(tiny_dir), _flax(tiny_dir, "config"), _pixels((2, frames, 32, 32, 3)))
    assert worst <= 1e-5, result


def test_native_other_frame_counts_equal_hf_configured_for_them(tiny_dir):
    """Native grouping over T frames = transformers configured for T frames with the time table
    nearest-interpolated, which is exactly what the embedding does."""
    state, hf, _ = core.read_checkpoint(tiny_dir)
    frames = 6
    twin = FAM.torch_model({**hf, "num_frames": frames})
    sd = {k: torch.from_numpy(v) for k, v in state.items()}
    time = sd["embeddings.time_embeddings"].transpose(1, 2)
    sd["embeddings.time_embeddings"] = torch.nn.functional.interpolate(time, size=frames).transpose(1, 2)
    twin.load_state_dict(sd)
    worst, result = _diffs(twin.eval(), _flax(tiny_dir), _pixels((2, frames, 32, 48, 3)))
    assert worst <= 1e-5, result


def test_attentions_match_twin(tiny_dir):
    for grouping, frames in (("native", 4), ("config", 8)):
        inputs = _pixels((2, frames, 32, 32, 3))
        attentions = _attentions(_flax(tiny_dir, grouping), inputs["pixels"])
        with torch.no_grad():
            x = torch.from_numpy(inputs["pixels"].transpose(0, 1, 4, 2, 3).copy())
            ref = _twin(tiny_dir)(pixel_values=x, output_attentions=True).attentions
        assert len(attentions) == len(ref) == TINY.num_hidden_layers
        groups = 16 * frames // TINY.num_frames if grouping == "config" else 16
        for a, r in zip(attentions, ref, strict=True):
            t = TINY.num_frames if grouping == "config" else frames
            assert a.shape == r.shape == (2 * t, TINY.num_attention_heads, 1 + groups, 1 + groups)
            np.testing.assert_allclose(np.asarray(a), r.numpy(), atol=1e-6)


def test_parity_realistic_width(tmp_path):
    cfg = timesformer.Config.variant("vit_base", num_hidden_layers=2, image_size=32, num_frames=2)
    save_twin("timesformer", cfg, tmp_path)
    parity("timesformer", tmp_path, tol=1e-4)


def test_classification_checkpoint_layout(tmp_path):
    """facebook/timesformer-base-finetuned-k400 is a `TimesformerForVideoClassification`."""
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    torch.manual_seed(0)
    hf = FAM.hf_config(TINY)
    TimesformerForVideoClassification(TimesformerConfig(**{**hf, "num_labels": 3})).save_pretrained(tmp_path)
    state, _, _ = core.read_checkpoint(tmp_path)
    assert any(k.startswith("classifier.") for k in state) and "timesformer.layernorm.weight" in state
    parity("timesformer", tmp_path)


def test_cls_pool_and_head(tiny_dir):
    out = nnx.jit(lambda m, x: m(x))(_flax(tiny_dir), _pixels((2, 4, 32, 32, 3))["pixels"])
    np.testing.assert_array_equal(out.embedding, out.tokens[:, 0])
    head = timesformer.Model(TINY.replace(head_dim=8), rngs=nnx.Rngs(0))
    assert _shape(head, (1, 4, 32, 32, 3)).embedding.shape == (1, 8)


def test_input_errors(tiny_dir):
    with pytest.raises(InputError, match="height 36 is not a positive multiple of 8"):
        _shape(_flax(tiny_dir), (1, 4, 36, 32, 3))
    # 9 patches x 3 frames = 27 tokens cannot form 4-frame groups; native grouping still works
    with pytest.raises(InputError, match="frame_grouping='config' cannot regroup 3 frames x 9 patches"):
        _shape(_flax(tiny_dir, "config"), (1, 3, 24, 24, 3))
    assert _shape(_flax(tiny_dir), (1, 3, 24, 24, 3)).tokens.shape == (1, 28, 48)
    with pytest.raises(InputError, match="expected \\(B, T, H, W, 3\\) pixels"):
        _shape(_flax(tiny_dir), (4, 32, 32, 3))
    with pytest.raises(InputError, match="attention_type='space_only' is not supported"):
        timesformer.Config(attention_type="space_only")
    with pytest.raises(InputError, match="frame_grouping='auto'"):
        timesformer.Config(frame_grouping="auto")


def test_lora_targets():
    all_groups = lora_lib.LoRAConfig(targets=("qkv", "out", "mlp", "temporal_dense"))
    model = timesformer.Model(TINY, lora=all_groups, rngs=nnx.Rngs(0))
    names = {".".join(map(str, p[2:])) for p in lora_lib.adapter_paths(model) if p[1] == 0}
    assert names == {
        "temporal_attention.qkv",
        "temporal_attention.out",
        "temporal_dense",
        "attention.qkv",
        "attention.out",
        "mlp.fc1",
        "mlp.fc2",
    }
    qkv_only = timesformer.Model(TINY, lora=lora_lib.LoRAConfig(targets=("qkv",)), rngs=nnx.Rngs(0))
    assert {p[-1] for p in lora_lib.adapter_paths(qkv_only)} == {"qkv"}
    assert len(lora_lib.adapter_paths(qkv_only)) == 2 * TINY.num_hidden_layers

    real = timesformer.Config.variant("vit_base")
    full = nnx.eval_shape(lambda: timesformer.Model(real, lora=all_groups, rngs=nnx.Rngs(0)))
    s = lora_lib.summary(full)
    assert (s.adapted_layers, s.lora) == (84, 1_769_472)  # the authors' PEFT count
    default = nnx.eval_shape(lambda: timesformer.Model(real, lora=lora_lib.LoRAConfig(), rngs=nnx.Rngs(0)))
    assert lora_lib.summary(default).fraction < 0.02


def test_peft_names_are_torch_modules(tiny_dir):
    model, meta, _ = convert.from_torch(
        "timesformer", tiny_dir, lora=lora_lib.LoRAConfig(targets=("qkv", "out", "mlp", "temporal_dense"))
    )
    config, _ = convert.peft_adapters(model, meta)
    torch_modules = {n for n, m in _twin(tiny_dir).named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(config["target_modules"]) == torch_modules
    assert "encoder.layer.0.temporal_attention.attention.qkv" in torch_modules


@pytest.mark.parametrize("edit", ["missing", "extra", "shape"])
def test_strict_conversion(tiny_dir, tmp_path, edit):
    import shutil

    from safetensors.numpy import load_file, save_file

    shutil.copy(tiny_dir / "config.json", tmp_path / "config.json")
    state = load_file(str(tiny_dir / "model.safetensors"))
    key = "encoder.layer.1.temporal_dense.weight"
    if edit == "missing":
        del state[key]
    elif edit == "extra":
        key = "encoder.layer.1.temporal_gate.weight"
        state[key] = np.zeros((4,), np.float32)
    else:
        state[key] = np.zeros((48, 47), np.float32)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(InputError, match=key.replace(".", "\\.")):
        convert.from_torch("timesformer", tmp_path)


def test_preprocess():
    video = np.random.default_rng(0).integers(0, 256, (10, 48, 64, 3), dtype=np.uint8)
    out = timesformer.preprocess(video, size=32, frames=4)
    assert out.shape == (4, 32, 32, 3) and out.dtype == np.float32
    flat = np.full((2, 40, 30, 3), 0.45 * 255, np.float32)
    np.testing.assert_allclose(timesformer.preprocess(flat, size=32, crop=False), 0.0, atol=1e-5)
