"""V-JEPA 2 against transformers `VJEPA2Model` (REFERENCE decision 6: tiled RoPE, config grid)."""

import numpy as np
import pytest

from jaxbgs.errors import InputError
from jaxbgs.models import vjepa2
from tests.models.parity import parity, parity_float64, save_twin

TINY = vjepa2.Config(
    hidden_size=48, num_hidden_layers=2, num_attention_heads=4, crop_size=32, frames_per_clip=4
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("vjepa2")
    save_twin("vjepa2", TINY, path)
    return path


@pytest.mark.parametrize(("frames", "size"), [(None, None), (6, 32), (2, 48)])
def test_parity_float32(tiny_dir, frames, size):
    result = parity("vjepa2", tiny_dir, frames=frames, size=size)
    assert len(result["per_layer_max_abs_diff"]) == TINY.num_hidden_layers + 1


def test_parity_float64(tiny_dir):
    parity_float64("vjepa2", tiny_dir, frames=4, size=32)


def test_parity_non_square_and_image(tiny_dir):
    from checkpoints_convert import convert, families

    fam = families.get("vjepa2")
    rng = np.random.default_rng(1)
    for shape in [
        (1, 4, 32, 48, 3),
        (1, 1, 32, 32, 3),
    ]:  # HF positions use the config grid; 1 frame is repeated
        inputs = {"pixels": rng.standard_normal(shape).astype(np.float32)}
        model, meta, _ = convert.from_torch("vjepa2", tiny_dir)
        from checkpoints_convert import core

        state, hf, _ = core.read_checkpoint(tiny_dir)
        twin = fam.torch_from_state(hf, state)
        import torch

        with torch.no_grad():
            t = fam.torch_forward(twin, inputs)
        f = fam.flax_forward(model, inputs)
        result = convert.compare(*t, *f)
        assert max(result["max_abs_diff"], *result["per_layer_max_abs_diff"]) <= 1e-5, (shape, result)


def test_parity_realistic_width(tmp_path):
    cfg = vjepa2.Config.variant("vit_large").replace(num_hidden_layers=2, crop_size=32, frames_per_clip=2)
    save_twin("vjepa2", cfg, tmp_path)
    parity("vjepa2", tmp_path, tol=1e-4)


def test_rope_layouts_differ_only_in_angle_order():
    import jax.numpy as jnp

    x = jnp.arange(8.0).reshape(1, 8)
    angles = jnp.array([[0.1, 0.2, 0.3, 0.4]])
    tiled = vjepa2.rotate(x, angles, "tiled")
    inter = vjepa2.rotate(x, angles, "interleaved")
    # pair 0 = (x0, x1): interleaved rotates both by 0.1; tiled gives x1 the angle of index 1 (0.2)
    np.testing.assert_allclose(
        inter[0, :2], [0 * np.cos(0.1) - 1 * np.sin(0.1), 1 * np.cos(0.1) + 0 * np.sin(0.1)], rtol=1e-6
    )
    np.testing.assert_allclose(tiled[0, 1], 1 * np.cos(0.2) + 0 * np.sin(0.2), rtol=1e-6)
    # a true rotation keeps each pair's norm; the tiled quirk does not
    norms = lambda y: np.linalg.norm(np.asarray(y).reshape(-1, 2), axis=1)  # noqa: E731
    np.testing.assert_allclose(norms(inter), norms(x), rtol=1e-6)
    assert not np.allclose(norms(tiled), norms(x))


def test_bad_frame_count_and_size():
    from flax import nnx

    model = vjepa2.Model(TINY, rngs=nnx.Rngs(0))
    with pytest.raises(InputError, match="frame count 3 is not a positive multiple of 2"):
        model(np.zeros((1, 3, 32, 32, 3), np.float32))
    with pytest.raises(InputError, match="height 40 is not a positive multiple of 16"):
        model(np.zeros((1, 2, 40, 32, 3), np.float32))


def test_release_file_is_renamed_and_split(tmp_path):
    """An original-layout .pt (fused qkv, module.backbone. prefix) loads to the same model."""
    import torch

    from checkpoints_convert import convert

    cfg = vjepa2.Config.variant("vit_large").replace(num_hidden_layers=1, crop_size=32)
    hf_dir = tmp_path / "hf"
    twin = save_twin("vjepa2", cfg, hf_dir)
    sd = {k: v for k, v in twin.state_dict().items() if k.startswith("encoder.")}
    orig = {}
    for k, v in sd.items():
        k = k.replace("encoder.embeddings.patch_embeddings.", "patch_embed.").replace(
            "encoder.layernorm.", "norm."
        )
        k = k.replace("encoder.layer.", "blocks.").replace(".attention.", ".attn.")
        orig["module.backbone." + k] = v
    for i in range(cfg.num_hidden_layers):
        p = f"module.backbone.blocks.{i}.attn."
        for t in ("weight", "bias"):
            orig[p + "qkv." + t] = torch.cat([orig.pop(p + n + "." + t) for n in ("query", "key", "value")])
    torch.save({"target_encoder": orig, "predictor": {}}, tmp_path / "vitl.pt")
    a, _, _ = convert.from_torch("vjepa2", hf_dir)
    b, meta, _ = convert.from_torch("vjepa2", tmp_path / "vitl.pt")
    from checkpoints_convert import core

    fa, fb = core.flat_params(a), core.flat_params(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k])
