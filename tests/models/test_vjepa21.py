"""V-JEPA 2.1 against the PyTorch reimplementation of the official `app/vjepa_2_1` encoder
(`checkpoints_convert/torch_vjepa21.py`), loaded from release-layout `.pt` files."""

import dataclasses
import json
import types

import numpy as np
import pytest
import torch
from flax import nnx

from checkpoints_convert import convert, core, families
from checkpoints_convert import vjepa21 as conv21
from jaxbgs import lora as lora_lib
from jaxbgs.errors import InputError
from jaxbgs.models import vjepa21
from tests.models.parity import parity, parity_float64

# head_dim 64 like every release (the width -> heads rule of config inference); depth 4 gives the
# hierarchical levels [0, 1, 2, 3].
TINY = vjepa21.Config(
    hidden_size=128, num_hidden_layers=4, num_attention_heads=2, crop_size=64, frames_per_clip=4
)


def save_release(cfg, path, *, seed=0, key="ema_encoder"):
    """A random reference twin saved like an official release file; returns the twin."""
    fam = families.get("vjepa21")
    torch.manual_seed(seed)
    model = fam.torch_model(fam.hf_config(cfg))
    with torch.no_grad():  # LayerNorms start at (1, 0) and biases at 0: make every tensor informative
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    encoder = {"module.backbone." + k: v for k, v in model.state_dict().items()}
    torch.save({key: encoder, "predictor": {"module.backbone.mask_tokens.0": torch.zeros(1, 1, 8)}}, path)
    return model


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vjepa21") / "vjepa2_1_tiny.pt"
    save_release(TINY, path)
    return path


@pytest.fixture
def shaped(monkeypatch):
    """Make `convert.check`/`parity_float64` feed pixels of a given (B, T, H, W, C) shape."""

    def use(shape):
        def example_input(cfg, frames, size, seed):
            return {"pixels": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}

        monkeypatch.setattr(conv21, "FAMILY", dataclasses.replace(conv21.FAMILY, example_input=example_input))

    return use


@pytest.mark.parametrize(("frames", "size"), [(4, 64), (1, 64), (6, 32)])  # video, image tokenizer, 3 t-steps
def test_parity_float32(tiny_file, frames, size):
    result = parity("vjepa21", tiny_file, frames=frames, size=size)
    assert len(result["per_layer_max_abs_diff"]) == TINY.num_hidden_layers + 1


@pytest.mark.parametrize("shape", [(2, 4, 32, 48, 3), (1, 2, 64, 96, 3), (1, 1, 48, 80, 3)])
def test_parity_non_square_and_rescaled_grid(tiny_file, shaped, shape):
    """Non-square clips and images; a 4x6 patch grid rescales positions by 15/3 and 15/5."""
    shaped(shape)
    parity("vjepa21", tiny_file)


@pytest.mark.parametrize("shape", [(2, 4, 64, 64, 3), (1, 1, 64, 96, 3)])
def test_parity_float64(tiny_file, shaped, shape):
    shaped(shape)
    parity_float64("vjepa21", tiny_file)


def test_parity_realistic_width(tmp_path):
    cfg = vjepa21.Config.variant("vit_base").replace(num_hidden_layers=2, crop_size=48, frames_per_clip=4)
    save_release(cfg, tmp_path / "vitb.pt")
    parity("vjepa21", tmp_path / "vitb.pt", frames=4, size=32, tol=1e-4)


def run(model, pixels, **kw):
    """One jitted forward (eager JAX compiles every op separately, which dominates these tests)."""
    return nnx.jit(lambda m, x: m(x, **kw))(model, pixels)


def _both(path, pixels, **overrides):
    """(Flax output, twin output, twin hidden, twin attentions) on the same pixels."""
    fam = families.get("vjepa21")
    model, meta, _ = convert.from_torch("vjepa21", path, **overrides)
    state, _, _ = core.read_checkpoint(path, unwrap=fam.unwrap)
    twin = fam.torch_from_state(fam.hf_config(fam.config(meta)), state)
    x = torch.from_numpy(pixels.transpose(0, 4, 1, 2, 3).copy())
    with torch.no_grad():
        out, hidden, attns = twin(x, output_attentions=True)
    return model, out.numpy(), hidden, attns


def test_hierarchical_output(tiny_file):
    pixels = np.random.default_rng(2).standard_normal((2, 2, 32, 48, 3)).astype(np.float32)
    model, t_out, _, _ = _both(tiny_file, pixels, output="hierarchical")
    out = run(model, pixels)
    d = TINY.hidden_size
    assert out.tokens.shape == (2, 6, 4 * d) and out.embedding.shape == (2, 4 * d)
    np.testing.assert_allclose(np.asarray(out.tokens), t_out, atol=1e-5)
    default, _, _ = convert.from_torch("vjepa21", tiny_file)
    np.testing.assert_allclose(
        np.asarray(out.tokens[..., -d:]), np.asarray(run(default, pixels).tokens), atol=1e-6
    )


def test_output_attentions_match_twin(tiny_file):
    pixels = np.random.default_rng(3).standard_normal((1, 2, 32, 48, 3)).astype(np.float32)
    model, _, _, t_attns = _both(tiny_file, pixels)
    attns = run(model, pixels, output_attentions=True).attentions
    assert len(attns) == TINY.num_hidden_layers and attns[0].shape == (1, 2, 6, 6)
    for a, b in zip(attns, t_attns, strict=True):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), atol=1e-6)


def test_tiled_rope_and_missing_rescaling_differ(tiny_file, monkeypatch):
    """V-JEPA 2's tiled angles, or positions left unscaled, give a clearly different output."""
    pixels = np.random.default_rng(4).standard_normal((1, 2, 64, 96, 3)).astype(np.float32)
    model, t_out, _, _ = _both(tiny_file, pixels)
    np.testing.assert_allclose(np.asarray(run(model, pixels).tokens), t_out, atol=1e-5)
    unscaled, _, _ = convert.from_torch("vjepa21", tiny_file, interpolate_rope=False)
    assert np.abs(np.asarray(run(unscaled, pixels).tokens) - t_out).max() > 1e-3
    monkeypatch.setattr(vjepa21, "ROPE_LAYOUT", "tiled")
    assert np.abs(np.asarray(run(model, pixels).tokens) - t_out).max() > 1e-3


def test_rope_positions():
    t, h, w = vjepa21.rope_positions(vjepa21.Config(), 2, 24, 24)  # the 384-px grid
    assert t.dtype == h.dtype == np.float32 and t.max() == 1  # temporal positions are not rescaled
    assert h[0] == h[23] == 0 and h[24 * 23] == 15 and w[23] == 15
    assert h[24] == np.float32(np.float32(15) / np.float32(23))
    _, h, w = vjepa21.rope_positions(vjepa21.Config(), 1, 16, 16)  # the 256-px grid is the identity
    np.testing.assert_array_equal(h, np.repeat(np.arange(16), 16))
    np.testing.assert_array_equal(w, np.tile(np.arange(16), 16))


def test_bad_inputs():
    model = vjepa21.Model(TINY, rngs=nnx.Rngs(0))
    with pytest.raises(InputError, match="frame count 3 is not a positive multiple of 2"):
        model(np.zeros((1, 3, 32, 32, 3), np.float32))
    with pytest.raises(InputError, match="height 40 is not a positive multiple of 16"):
        model(np.zeros((1, 2, 40, 32, 3), np.float32))
    with pytest.raises(InputError, match="a 1x2 patch grid cannot be rescaled"):
        model(np.zeros((1, 2, 16, 32, 3), np.float32))
    with pytest.raises(InputError, match="output='tokens'"):
        TINY.replace(output="tokens")
    with pytest.raises(InputError, match="must be 4 block indices < 4"):
        TINY.replace(hierarchical_layers=(0, 1, 2, 4))
    with pytest.raises(InputError, match="no CLS token"):
        TINY.replace(pool="cls")


def test_config_inference_and_hierarchical_table():
    shapes = lambda d, depth, mlp: {  # noqa: E731
        "patch_embed.proj.weight": types.SimpleNamespace(shape=(d, 3, 2, 16, 16)),
        "blocks.0.mlp.fc1.weight": types.SimpleNamespace(shape=(mlp, d)),
        **{f"blocks.{i}.norm1.weight": None for i in range(depth)},
    }
    for name, levels in [
        ("vit_base", (2, 5, 8, 11)),
        ("vit_large", (5, 11, 17, 23)),
        ("vit_giant", (9, 19, 29, 39)),
        ("vit_gigantic", (11, 23, 37, 47)),
    ]:
        d, depth, heads, ratio = vjepa21.Config.VARIANTS[name]
        cfg = conv21.config_from_hf(None, shapes(d, depth, int(d * ratio)))
        assert conv21.variant_name(cfg) == name and cfg.num_attention_heads == heads
        assert cfg.levels == levels and cfg.mlp_hidden == {768: 3072, 1024: 4096, 1408: 6144, 1664: 8192}[d]
    assert vjepa21.Config(num_hidden_layers=2).levels == (0, 0, 1, 1)  # quartile rule outside the table
    assert conv21.config_from_hf(conv21.hf_config(TINY), {}) == TINY.replace(hierarchical_layers=TINY.levels)


def test_remat_keeps_outputs_and_lora_gradients(tiny_file):
    import jax
    import jax.numpy as jnp

    pixels = np.random.default_rng(5).standard_normal((1, 2, 32, 32, 3)).astype(np.float32)
    ref = run(convert.from_torch("vjepa21", tiny_file)[0], pixels).tokens
    model, _, _ = convert.from_torch("vjepa21", tiny_file, remat="full", lora=lora_lib.LoRAConfig())
    np.testing.assert_allclose(np.asarray(run(model, pixels).tokens), np.asarray(ref), atol=1e-6)
    graphdef, trainable, rest = nnx.split(model, lora_lib.Trainable, ...)
    loss = lambda tr: jnp.mean(nnx.merge(graphdef, tr, rest)(pixels).embedding ** 2)  # noqa: E731
    grads = jax.jit(jax.grad(loss))(trainable)
    norms = {  # per layer: the adapters are stacked, (layers, ...)
        (".".join(map(str, k)), i): float(jnp.abs(v[...][i]).sum())
        for k, v in nnx.to_flat_state(grads)
        for i in range(TINY.num_hidden_layers)
    }
    assert len(norms) == 4 * TINY.num_hidden_layers and all(
        norms[k] > 0 for k in norms if k[0].endswith("lora_b")
    )


def test_lora_targets_and_peft_names(tiny_file):
    def paths(targets):
        model = vjepa21.Model(TINY, lora=lora_lib.LoRAConfig(targets=targets), rngs=nnx.Rngs(0))
        return [".".join(map(str, p)) for p in lora_lib.adapter_paths(model)]

    assert sorted(paths(("qkv", "out"))) == sorted(
        f"blocks.{i}.attn.{n}" for i in range(4) for n in ("qkv", "proj")
    )
    assert sorted(paths(("mlp",))) == sorted(f"blocks.{i}.mlp.{n}" for i in range(4) for n in ("fc1", "fc2"))
    real = nnx.eval_shape(
        lambda: vjepa21.Model(vjepa21.Config(), lora=lora_lib.LoRAConfig(), rngs=nnx.Rngs(0))
    )
    s = lora_lib.summary(real)
    assert s.total - s.lora == 86_833_152 and s.fraction < 0.02 and s.adapted_layers == 24
    model, meta, _ = convert.from_torch("vjepa21", tiny_file, lora=lora_lib.LoRAConfig())
    config, tensors = convert.peft_adapters(model, meta)
    names = dict(families.get("vjepa21").torch_model(conv21.hf_config(TINY)).named_modules())
    assert all(m in names for m in config["target_modules"]) and len(config["target_modules"]) == 8
    assert tensors["base_model.model.blocks.0.attn.qkv.lora_B.weight"].shape == (3 * 128, 8)


def test_strict_conversion_names_the_key(tiny_file, tmp_path):
    state = torch.load(tiny_file)["ema_encoder"]
    cases = {
        "missing": ({k: v for k, v in state.items() if "norms_block.2.bias" not in k}, "norms_block.2.bias"),
        "extra": ({**state, "module.backbone.norm.weight": torch.ones(128)}, "norm.weight"),
        "shape": (
            {**state, "module.backbone.blocks.1.attn.proj.bias": torch.ones(64)},
            "blocks.1.attn.proj.bias",
        ),
    }
    for name, (bad, key) in cases.items():
        torch.save(bad, tmp_path / f"{name}.pt")  # a plain state dict, no release wrapper
        with pytest.raises(InputError, match=key.replace(".", r"\.")):
            convert.from_torch("vjepa21", tmp_path / f"{name}.pt")


def test_release_keys_and_plain_safetensors(tiny_file, tmp_path):
    from safetensors.torch import save_file

    state = torch.load(tiny_file)["ema_encoder"]
    garbage = {k: torch.zeros_like(v) for k, v in state.items()}
    torch.save({"target_encoder": garbage, "ema_encoder": state}, tmp_path / "both.pt")  # ema preferred
    torch.save({"target_encoder": state, "predictor": {}}, tmp_path / "vitg.pt")
    save_file(core.strip_prefixes(state), str(tmp_path / "enc.safetensors"))
    ref = core.flat_params(convert.from_torch("vjepa21", tiny_file)[0])
    for src in ("both.pt", "vitg.pt", "enc.safetensors"):
        got = core.flat_params(convert.from_torch("vjepa21", tmp_path / src)[0])
        assert got.keys() == ref.keys() and all(np.array_equal(got[k], ref[k]) for k in ref)
    torch.save({"encoder": state, "predictor": {}}, tmp_path / "ctx.pt")
    with pytest.raises(InputError, match=r"top-level keys: \['encoder', 'predictor'\]"):
        convert.from_torch("vjepa21", tmp_path / "ctx.pt")


def test_export_loads_strictly_into_reference(tiny_file, tmp_path):
    flax_dir = convert.to_flax("vjepa21", tiny_file, tmp_path / "flax")
    out = convert.to_torch(flax_dir, tmp_path / "torch")
    exported = torch.load(out / conv21.EXPORT_FILE)
    info = json.loads((out / "jaxbgs_export.json").read_text())
    assert set(exported) == {"ema_encoder"} and info["variant"] is None
    twin = conv21.torch_model(info["reference_kwargs"])
    twin.load_state_dict(core.strip_prefixes(exported["ema_encoder"]), strict=True)
    original = torch.load(tiny_file)["ema_encoder"]
    for k, v in exported["ema_encoder"].items():
        torch.testing.assert_close(v, original[k], rtol=0, atol=0)
    parity("vjepa21", out / conv21.EXPORT_FILE, frames=2, size=32)


def test_preprocess_defaults_to_384():
    video = np.random.default_rng(0).integers(0, 255, (2, 60, 80, 3), dtype=np.uint8)
    assert vjepa21.preprocess(video, size=32).shape == (2, 32, 32, 3)
    assert vjepa21.preprocess.__kwdefaults__["size"] == 384
