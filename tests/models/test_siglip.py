"""SigLIP vision tower against transformers `SiglipVisionModel` / `SiglipModel` (tiny random
configs, fp32 <= 1e-5): with and without the attention-pooling head, a full SiglipModel checkpoint
(vision tower only, text tower carried through), position interpolation, export, strictness."""

import json

import jax
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file, save_file

from checkpoints_convert import convert, core, families
from checkpoints_convert.dinov2 import images_nchw
from checkpoints_convert.siglip import vision_tower
from jaxbgs.errors import InputError
from jaxbgs.models import siglip
from tests.models.parity import parity, save_twin

TINY = siglip.Config(
    image_size=28,
    patch_size=14,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
)
TEXT = dict(  # a tiny text tower: only its presence and round trip matter here
    hidden_size=16,
    intermediate_size=24,
    num_hidden_layers=1,
    num_attention_heads=2,
    vocab_size=50,
    max_position_embeddings=8,
)


@pytest.fixture(scope="module")
def vision_dir(tmp_path_factory):
    """A transformers-5 `SiglipVisionModel` directory (unprefixed keys) with the pooling head."""
    path = tmp_path_factory.mktemp("siglip_vision")
    save_twin("siglip", TINY, path)
    return path


@pytest.fixture(scope="module")
def headless_dir(tmp_path_factory):
    """No pooling head, and 32 px at patch 14 (2 px beyond the last patch each way), as so400m's 384 px."""
    path = tmp_path_factory.mktemp("siglip_headless")
    save_twin("siglip", TINY.replace(vision_use_head=False, pool="mean", image_size=32), path, seed=1)
    return path


def save_full(cfg: siglip.Config, path, *, seed: int = 2):
    """A full `SiglipModel` directory, as google/siglip-* on the hub: `vision_model.*`,
    `text_model.*`, `logit_scale`, `logit_bias`."""
    from transformers import SiglipConfig, SiglipModel

    torch.manual_seed(seed)
    vision = families.get("siglip").hf_config(cfg)
    model = SiglipModel(SiglipConfig(vision_config=vision, text_config=TEXT)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.save_pretrained(path)
    return model


@pytest.fixture(scope="module")
def full_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("siglip_full")
    save_full(TINY, path)
    return path


@nnx.jit
def _flax(model, pixels):
    return model(pixels)


def run_both(src, pixels, **overrides):
    """The Flax Output (numpy) and the twin's vision-tower output on the same images."""
    fam = families.get("siglip")
    model, _, _ = convert.from_torch("siglip", src, **overrides)
    out = jax.tree.map(np.asarray, _flax(model, pixels))
    state, hf, _ = core.read_checkpoint(src)
    with torch.no_grad():
        ref = vision_tower(fam.torch_from_state(hf, state))(
            pixel_values=images_nchw(pixels), interpolate_pos_encoding=True, output_hidden_states=True
        )
    return out, ref


def worst(out, ref) -> float:
    """Largest |diff| over last_hidden_state and every hidden state (and pooler_output if any)."""
    pairs = [(out.tokens, ref.last_hidden_state), *zip(out.hidden_states, ref.hidden_states, strict=True)]
    if ref.pooler_output is not None:
        frames = out.tokens.shape[0] // out.embedding.shape[0]
        pairs.append((out.embedding, ref.pooler_output.reshape(out.embedding.shape[0], frames, -1).mean(1)))
    return float(max(np.abs(a - b.numpy()).max() for a, b in pairs))


@pytest.mark.parametrize("layout", ["vision", "headless", "full"])
def test_parity(request, layout):
    src = request.getfixturevalue(f"{layout}_dir")
    size = 32 if layout == "headless" else 28
    pixels = np.random.default_rng(1).standard_normal((2, size, size, 3)).astype(np.float32)
    out, ref = run_both(src, pixels)
    assert out.tokens.shape == (2, 4, 32) and len(out.hidden_states) == TINY.num_hidden_layers + 1
    assert worst(out, ref) <= 1e-5
    if layout == "headless":  # no pooler_output: the embedding is the mean post-normalised token
        assert ref.pooler_output is None
        np.testing.assert_allclose(out.embedding, ref.last_hidden_state.mean(1).numpy(), atol=1e-5)
    else:
        assert np.abs(out.embedding - out.tokens.mean(1)).max() > 1e-2  # the head, not a mean


def test_check_path_on_a_full_siglipmodel(full_dir):
    model, _, passthrough = convert.from_torch("siglip", full_dir)
    assert "logit_bias" in passthrough and "text_model.head.weight" in passthrough
    assert model.cfg.pool == "map" and model.cfg == TINY
    result = parity("siglip", full_dir)  # `check`, the CLI's path
    assert result["input_shapes"]["pixels"] == [2, 28, 28, 3]


def test_position_interpolation(vision_dir):
    """transformers' bicubic `interpolate_pos_encoding` on a non-square clip (2x2 -> 3x2 grid)."""
    pixels = np.random.default_rng(2).standard_normal((1, 2, 42, 28, 3)).astype(np.float32)
    out, ref = run_both(vision_dir, pixels, interpolate_pos_encoding=True)
    assert out.tokens.shape == (2, 6, 32) and out.embedding.shape == (1, 32)
    assert worst(out, ref) <= 1e-5
    model = siglip.Model(TINY, rngs=nnx.Rngs(0))
    with pytest.raises(InputError, match="images are 42x28, the model takes 28x28"):
        model(pixels)
    model = siglip.Model(TINY.replace(interpolate_pos_encoding=True), rngs=nnx.Rngs(0))
    with pytest.raises(InputError, match="width 30 is not a positive multiple of 14"):
        model(np.zeros((1, 42, 30, 3), np.float32))  # only the native size may overhang


@pytest.mark.parametrize("layout", ["vision", "full"])
def test_export_is_the_source_model_again(request, layout, tmp_path):
    from transformers import SiglipModel, SiglipVisionModel

    src = request.getfixturevalue(f"{layout}_dir")
    cls = SiglipModel if layout == "full" else SiglipVisionModel
    dst = convert.to_torch(convert.to_flax("siglip", src, tmp_path / "flax"), tmp_path / "hf")
    assert json.loads((dst / "config.json").read_text()) == json.loads((src / "config.json").read_text())
    a, b = load_file(str(src / "model.safetensors")), load_file(str(dst / "model.safetensors"))
    if layout == "vision":  # exports use the prefixed names, which SiglipVisionModel strips
        b = {k.removeprefix("vision_model."): v for k, v in b.items()}
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    loaded, info = cls.from_pretrained(dst, output_loading_info=True)
    assert not any(info.values()), info
    pixels = np.random.default_rng(3).standard_normal((2, 28, 28, 3)).astype(np.float32)
    out, _ = run_both(src, pixels)
    with torch.no_grad():
        ref = vision_tower(loaded.eval())(pixel_values=images_nchw(pixels), output_hidden_states=True)
    assert worst(out, ref) <= 1e-5


def test_transformers4_prefixed_vision_layout(vision_dir, tmp_path):
    state = load_file(str(vision_dir / "model.safetensors"))
    save_file({"vision_model." + k: v for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((vision_dir / "config.json").read_text())
    a, b = (core.flat_params(convert.from_torch("siglip", d)[0]) for d in (vision_dir, tmp_path))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    state["vision_model.post_layernorm.bias"] = state["post_layernorm.bias"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(InputError, match="mixes `vision_model.`-prefixed and unprefixed"):
        convert.from_torch("siglip", tmp_path)


def test_strict_conversion_names_the_key(vision_dir):
    fam = families.get("siglip")
    state = load_file(str(vision_dir / "model.safetensors"))
    expected = core.base_shapes(siglip.Model(TINY, rngs=nnx.Rngs(0)))
    core.apply_to_flax(state, fam.key_map, expected)  # the untouched twin converts
    missing = {k: v for k, v in state.items() if k != "head.attention.in_proj_bias"}
    with pytest.raises(InputError, match=r"1 missing key\(s\): vision_model.head.attention.in_proj_bias"):
        core.apply_to_flax(missing, fam.key_map, expected)
    bad = state | {"embeddings.position_embedding.weight": np.zeros((9, 32), np.float32)}
    with pytest.raises(InputError, match=r"embeddings.position_embedding.weight \(9, 32\)"):
        core.apply_to_flax(bad, fam.key_map, expected)
    headless = core.base_shapes(
        siglip.Model(TINY.replace(vision_use_head=False, pool="mean"), rngs=nnx.Rngs(0))
    )
    with pytest.raises(InputError, match=r"unexpected source key\(s\): head.attention.in_proj_bias"):
        core.apply_to_flax(state, fam.key_map, headless)


def test_config_pools_and_variants():
    from transformers import SiglipConfig

    hf = json.loads(json.dumps(SiglipConfig().to_dict()))  # base-patch16-224 vision defaults
    cfg = families.get("siglip").config_from_hf(hf, {"vision_model.head.probe": None})
    assert cfg == siglip.Config.variant("base_p16_224") and cfg.hidden_act == "gelu_pytorch_tanh"
    assert families.get("siglip").config_from_hf(hf, {}).pool == "mean"  # no head in the weights
    with pytest.raises(InputError, match="SigLIP has no CLS token"):
        TINY.replace(pool="cls")
    with pytest.raises(InputError, match="needs the attention-pooling head"):
        TINY.replace(vision_use_head=False)
    with pytest.raises(InputError, match="dtype='float8'"):
        TINY.replace(dtype="float8")  # the shared checks still run under pool='map'
    so400m = siglip.Config.variant("so400m_p14_384", num_hidden_layers=1)  # 27x27 patches of 14 px
    out = jax.eval_shape(
        lambda x: siglip.Model(so400m, rngs=nnx.Rngs(0))(x),
        jax.ShapeDtypeStruct((1, 384, 384, 3), np.float32),
    )
    assert out.tokens.shape == (1, 729, 1152) and out.embedding.shape == (1, 1152)


def test_preprocess_resizes_the_whole_frame_to_minus_one_one():
    image = np.zeros((120, 160, 3), np.uint8)
    image[:, 80:] = 255
    out = np.asarray(siglip.preprocess(image))
    assert out.shape == (224, 224, 3)  # no crop: both halves survive
    assert out[:, 0].max() == -1.0 and out[:, -1].min() == 1.0
