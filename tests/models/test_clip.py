"""CLIP vision tower against transformers `CLIPVisionModel` / `CLIPModel`, one frame at a time."""

import json

import jax
import numpy as np
import pytest
import torch
from flax import nnx

from checkpoints_convert import convert, core, families
from checkpoints_convert.clip import vision_tower
from jaxbgs import lora as lora_lib
from jaxbgs.errors import InputError
from jaxbgs.models import clip
from tests.models.parity import parity, parity_float64, save_twin

TINY = clip.Config(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=32,
    patch_size=8,
)
FAM = families.get("clip")


@pytest.fixture(scope="module")
def vision_dir(tmp_path_factory):
    """A transformers-5 `CLIPVisionModel` directory (unprefixed keys)."""
    path = tmp_path_factory.mktemp("clip_vision")
    save_twin("clip", TINY, path)
    return path


@pytest.fixture(scope="module")
def full_dir(tmp_path_factory):
    """A full `CLIPModel` directory (vision_model.*, text_model.*, projections, logit_scale)."""
    path = tmp_path_factory.mktemp("clip_full")
    save_twin("clip", TINY.replace(projection_dim=16), path, seed=1)
    return path


def run_both(src, pixels, *, x64=False, eager=False, **overrides):
    """Flax Output and the twin's per-frame vision output (and projection) on the same pixels.

    The Flax side is jitted: one compile per shape is much cheaper than eager op-by-op compiles."""
    state, hf, _ = core.read_checkpoint(src)
    dtype = np.float64 if x64 else np.float32
    with jax.enable_x64(x64):
        model, _, _ = convert.from_torch("clip", src, dtype="float64" if x64 else "float32", **overrides)
        if x64:
            st = nnx.state(model)
            nnx.update(model, jax.tree.map(lambda x: x.astype(np.float64), st))
        out = jax.tree.map(
            np.asarray, nnx.jit(lambda m, x: m(x, output_attentions=eager))(model, pixels.astype(dtype))
        )
    twin = FAM.torch_from_state(hf, state)
    twin = twin.double() if x64 else twin
    if eager:
        twin.set_attn_implementation("eager")
    b, t, h, w, c = pixels.shape
    x = torch.from_numpy(np.ascontiguousarray(pixels.reshape(b * t, h, w, c).transpose(0, 3, 1, 2))).to(
        torch.float64 if x64 else torch.float32
    )
    with torch.no_grad():
        ref = vision_tower(twin)(
            pixel_values=x, interpolate_pos_encoding=True, output_hidden_states=True, output_attentions=eager
        )
        proj = (
            twin.visual_projection(ref.pooler_output).numpy() if hasattr(twin, "visual_projection") else None
        )
    return out, ref, proj


def worst(out, ref) -> float:
    pairs = [(out.tokens, ref.last_hidden_state), *zip(out.hidden_states, ref.hidden_states, strict=True)]
    return max(float(np.abs(np.asarray(a, np.float64) - b.double().numpy()).max()) for a, b in pairs)


@pytest.mark.parametrize("layout", ["vision", "full"])
def test_parity_float32(request, layout):
    result = parity("clip", request.getfixturevalue(f"{layout}_dir"))
    assert len(result["per_layer_max_abs_diff"]) == TINY.num_hidden_layers + 1
    assert result["input_shapes"]["pixels"] == [2, 7, 32, 32, 3]  # the paper's 7 frames per clip


@pytest.mark.parametrize("layout", ["vision", "full"])
def test_parity_float64(request, layout):
    parity_float64("clip", request.getfixturevalue(f"{layout}_dir"))


@pytest.mark.parametrize(
    "shape", [(1, 3, 32, 48, 3), (2, 1, 48, 48, 3), (1, 2, 16, 24, 3), (1, 1, 40, 16, 3)]
)
def test_interpolated_positions_non_square_and_other_sizes(full_dir, shape):
    """transformers' bicubic `interpolate_pos_encoding` (up- and down-sampling), fp32 and fp64."""
    pixels = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    out, ref, _ = run_both(full_dir, pixels, interpolate_pos_encoding=True)
    assert out.tokens.shape == (shape[0] * shape[1], shape[2] // 8 * shape[3] // 8 + 1, 32)
    assert worst(out, ref) <= 1e-5
    out, ref, _ = run_both(full_dir, pixels, x64=True, interpolate_pos_encoding=True)
    assert worst(out, ref) <= 1e-10


def test_bicubic_matrix_matches_torch():
    grid = torch.randn(1, 3, 7, 7, dtype=torch.float64)
    for size in [(4, 9), (7, 7), (12, 2)]:
        ref = torch.nn.functional.interpolate(grid, size=size, mode="bicubic", align_corners=False)[0].numpy()
        mh, mw = clip.bicubic_matrix(7, size[0]), clip.bicubic_matrix(7, size[1])
        np.testing.assert_allclose(np.einsum("hi,wj,cij->chw", mh, mw, grid[0].numpy()), ref, atol=1e-12)


@pytest.mark.parametrize("layout", ["vision", "full"])
def test_embedding_is_frame_mean_of_pooled_output(request, layout):
    """CLIPModel: mean of visual_projection(pooler_output); CLIPVisionModel: mean of pooler_output."""
    src = request.getfixturevalue(f"{layout}_dir")
    pixels = np.random.default_rng(3).standard_normal((2, 3, 32, 32, 3)).astype(np.float32)
    out, ref, proj = run_both(src, pixels, use_projection=True)
    per_frame = proj if layout == "full" else ref.pooler_output.numpy()
    assert out.embedding.shape == (2, 16 if layout == "full" else 32)
    np.testing.assert_allclose(out.embedding, per_frame.reshape(2, 3, -1).mean(1), atol=1e-5)
    out, ref, _ = run_both(src, pixels)  # the default: the paper's "vision encoder only"
    np.testing.assert_allclose(out.embedding, ref.pooler_output.numpy().reshape(2, 3, -1).mean(1), atol=1e-5)


def test_mean_pool_normalises_the_mean_patch_token(vision_dir):
    pixels = np.random.default_rng(3).standard_normal((2, 3, 32, 32, 3)).astype(np.float32)
    out, ref, _ = run_both(vision_dir, pixels, pool="mean")
    state, hf, _ = core.read_checkpoint(vision_dir)
    with torch.no_grad():
        per_frame = FAM.torch_from_state(hf, state).post_layernorm(ref.last_hidden_state[:, 1:].mean(1))
    np.testing.assert_allclose(out.embedding, per_frame.numpy().reshape(2, 3, -1).mean(1), atol=1e-5)


@pytest.mark.parametrize(
    ("kw", "width"),
    [({}, 32), ({"projection_dim": 16, "use_projection": True}, 16), ({"projection_dim": 16}, 32)],
)
def test_embedding_and_head_widths(kw, width):
    pixels = jax.ShapeDtypeStruct((2, 3, 32, 32, 3), np.float32)
    for head, remat in ((None, "none"), (8, "full")):
        cfg = TINY.replace(head_dim=head, remat=remat, **kw)
        out = jax.eval_shape(lambda x, c=cfg: clip.Model(c, rngs=nnx.Rngs(0))(x), pixels)
        assert out.embedding.shape == (2, head or width) and out.tokens.shape == (6, 17, 32)


def test_output_attentions_match_eager_twin(vision_dir):
    pixels = np.random.default_rng(4).standard_normal((1, 2, 32, 32, 3)).astype(np.float32)
    out, ref, _ = run_both(vision_dir, pixels, eager=True)
    assert len(out.attentions) == TINY.num_hidden_layers
    for a, b in zip(out.attentions, ref.attentions, strict=True):
        assert a.shape == (2, 4, 17, 17)
        np.testing.assert_allclose(a, b.numpy(), atol=1e-6)


def test_parity_realistic_width(tmp_path):
    cfg = clip.Config.variant("vit_b32", num_hidden_layers=2, image_size=64, projection_dim=512)
    save_twin("clip", cfg, tmp_path)
    pixels = np.random.default_rng(6).standard_normal((2, 2, 64, 64, 3)).astype(np.float32)
    out, ref, proj = run_both(tmp_path, pixels, use_projection=True)
    assert worst(out, ref) <= 1e-4
    np.testing.assert_allclose(out.embedding, proj.reshape(2, 2, -1).mean(1), atol=1e-4)


def test_config_from_openai_clipmodel_config():
    from transformers import CLIPConfig

    hf = json.loads(json.dumps(CLIPConfig().to_dict()))  # ViT-B/32 vision defaults, projection 512
    cfg = FAM.config_from_hf(hf, {"visual_projection.weight": np.zeros((512, 768))})
    assert cfg == clip.Config.variant("vit_b32", projection_dim=512)
    assert cfg.pool == "cls" and cfg.hidden_act == "quick_gelu"


def test_transformers4_vision_layout_converts(vision_dir, tmp_path):
    """`vision_model.`-prefixed CLIPVisionModel keys load to the same weights and still check."""
    from safetensors.numpy import load_file, save_file

    state = load_file(str(vision_dir / "model.safetensors"))
    save_file({"vision_model." + k: v for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((vision_dir / "config.json").read_text())
    a, b = (core.flat_params(convert.from_torch("clip", d)[0]) for d in (vision_dir, tmp_path))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    parity("clip", tmp_path)
    state["vision_model.post_layernorm.bias"] = state["post_layernorm.bias"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(InputError, match="mixes `vision_model.`-prefixed and unprefixed"):
        convert.from_torch("clip", tmp_path)


def test_export_is_the_source_model_again(full_dir, vision_dir, tmp_path):
    """A CLIPModel export keeps the text tower and config; a CLIPVisionModel export loads too."""
    from safetensors.numpy import load_file
    from transformers import CLIPModel, CLIPVisionModel

    for src, cls in ((full_dir, CLIPModel), (vision_dir, CLIPVisionModel)):
        dst = tmp_path / cls.__name__
        convert.to_torch(convert.to_flax("clip", src, tmp_path / f"{cls.__name__}_flax"), dst)
        assert json.loads((dst / "config.json").read_text()) == json.loads((src / "config.json").read_text())
        _, info = cls.from_pretrained(dst, output_loading_info=True)
        assert not any(info.values()), info
        a, b = load_file(str(src / "model.safetensors")), load_file(str(dst / "model.safetensors"))
        if cls is CLIPVisionModel:
            b = {k.removeprefix("vision_model."): v for k, v in b.items()}
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_peft_export_matches_flax_lora(full_dir, tmp_path):
    from peft import PeftModel

    model, meta, passthrough = convert.from_torch("clip", full_dir, lora=lora_lib.LoRAConfig(rank=2))
    rng = np.random.default_rng(5)
    for _, layer in lora_lib.adapters(model):
        layer.lora_b[...] = 0.1 * rng.standard_normal(layer.lora_b.shape).astype(np.float32)
    config, _ = convert.peft_adapters(model, meta)
    assert "vision_model.encoder.layers.0.self_attn.q_proj" in config["target_modules"]
    assert len(config["target_modules"]) == 4 * TINY.num_hidden_layers
    flax_dir = core.save(model, tmp_path / "flax", meta, passthrough=passthrough)
    convert.to_torch(flax_dir, tmp_path / "peft", peft=True)
    state, hf, _ = core.read_checkpoint(full_dir)
    twin = PeftModel.from_pretrained(FAM.torch_from_state(hf, state), tmp_path / "peft").eval()
    pixels = rng.standard_normal((1, 2, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        t_final, _ = FAM.torch_forward(twin.base_model.model, {"pixels": pixels})
    np.testing.assert_allclose(np.asarray(model(pixels).tokens), t_final, atol=1e-5)


def test_lora_targets():
    def adapted(targets):
        model = clip.Model(
            TINY.replace(projection_dim=16), lora=lora_lib.LoRAConfig(targets=targets), rngs=nnx.Rngs(0)
        )
        return {".".join(map(str, p)) for p in lora_lib.adapter_paths(model)}

    layer = [f"layers.{i}" for i in range(TINY.num_hidden_layers)]
    assert adapted(("qkv", "out")) == {
        f"{s}.self_attn.{n}_proj" for s in layer for n in ("q", "k", "v", "out")
    }
    assert adapted(("mlp",)) == {f"{s}.mlp.{n}" for s in layer for n in ("fc1", "fc2")}
    assert adapted(("temporal_dense",)) == set()  # per-frame model; the projection is never adapted


def test_trainable_fraction_of_vit_b32():
    cfg = clip.Config.variant("vit_b32", projection_dim=512)
    model = nnx.eval_shape(lambda: clip.Model(cfg, lora=lora_lib.LoRAConfig(), rngs=nnx.Rngs(0)))
    s = lora_lib.summary(model)
    assert s.adapted_layers == 48 and s.lora == 48 * 2 * 8 * 768
    assert s.fraction < 0.02


def test_strict_conversion_names_the_key(vision_dir):
    from safetensors.numpy import load_file

    state = load_file(str(vision_dir / "model.safetensors"))
    expected = core.base_shapes(clip.Model(TINY, rngs=nnx.Rngs(0)))
    core.apply_to_flax(state, FAM.key_map, expected)  # the untouched twin converts
    missing = {k: v for k, v in state.items() if k != "encoder.layers.1.mlp.fc2.bias"}
    with pytest.raises(InputError, match=r"1 missing key\(s\): vision_model.encoder.layers.1.mlp.fc2.bias"):
        core.apply_to_flax(missing, FAM.key_map, expected)
    with pytest.raises(InputError, match=r"unexpected source key\(s\): encoder.layers.2.mlp.fc1.weight"):
        core.apply_to_flax(
            state | {"encoder.layers.2.mlp.fc1.weight": np.zeros((64, 32))}, FAM.key_map, expected
        )
    bad = state | {"embeddings.position_embedding.weight": np.zeros((16, 32))}
    with pytest.raises(InputError, match=r"embeddings.position_embedding.weight \(16, 32\)"):
        core.apply_to_flax(bad, FAM.key_map, expected)


def test_bad_input_sizes():
    model = clip.Model(TINY, rngs=nnx.Rngs(0))
    with pytest.raises(InputError, match="frames are 32x48, the model takes 32x32"):
        model(np.zeros((1, 2, 32, 48, 3), np.float32))
    model = clip.Model(TINY.replace(interpolate_pos_encoding=True), rngs=nnx.Rngs(0))
    with pytest.raises(InputError, match="width 44 is not a positive multiple of 8"):
        model(np.zeros((1, 2, 32, 44, 3), np.float32))


def test_preprocess_samples_seven_frames_and_normalises():
    video = np.broadcast_to(np.round(np.array(clip.CLIP_MEAN) * 255).astype(np.uint8), (30, 120, 160, 3))
    out = clip.preprocess(video)
    assert out.shape == (7, 224, 224, 3)
    assert float(np.abs(out).max()) < 0.01  # the mean colour normalises to ~0
