"""Shared layers: attention paths agree, patch embedding equals a strided convolution, remat keeps
values and gradients, configs validate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxbgs import lora
from jaxbgs.errors import InputError
from jaxbgs.models import bert, clip, dinov2, layers, siglip, timesformer, videomae, vjepa2, vjepa21

RNG = np.random.default_rng(0)


def test_explicit_and_fused_attention_agree():
    q, k, v = (jnp.asarray(RNG.standard_normal((2, 7, 3, 8)), jnp.float32) for _ in range(3))
    fused, none = layers.attention(q, k, v)
    explicit, weights = layers.attention(q, k, v, return_weights=True)
    assert none is None and weights.shape == (2, 3, 7, 7)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(fused, explicit, atol=1e-6)


def test_attention_kernel_is_cudnn_only_on_a_gpu_in_half_precision():
    assert layers.attention_kernel("auto", jnp.bfloat16, "gpu") == "cudnn"
    assert layers.attention_kernel("auto", jnp.float16, "gpu") == "cudnn"
    assert layers.attention_kernel("auto", jnp.float32, "gpu") == "xla"
    assert layers.attention_kernel("auto", jnp.bfloat16, "cpu") == "xla"
    assert layers.attention_kernel("xla", jnp.bfloat16, "gpu") == "xla"
    with pytest.raises(InputError, match="needs an NVIDIA GPU; this process runs on cpu"):
        layers.attention_kernel("cudnn", jnp.bfloat16, "cpu")
    with pytest.raises(InputError, match="computes in bfloat16 or float16"):
        vjepa2.Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, attention="cudnn")


def test_auto_attention_falls_back_to_xla_for_a_shape_cudnn_lacks(monkeypatch):
    fused, calls = jax.nn.dot_product_attention, []

    def cudnn_lacking_odd_lengths(q, k, v, *, implementation, **kw):
        calls.append(implementation)
        if implementation == "cudnn":  # what jax raises while tracing, e.g. odd lengths with a mask
            raise NotImplementedError("Unsupported sequence length Q 7, KV 7.")
        return fused(q, k, v, implementation=implementation, **kw)

    q, k, v = (jnp.asarray(RNG.standard_normal((2, 7, 3, 8)), jnp.bfloat16) for _ in range(3))
    monkeypatch.setattr(jax.nn, "dot_product_attention", cudnn_lacking_odd_lengths)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    out = jax.jit(lambda q, k, v: layers.attention(q, k, v)[0])(q, k, v)
    assert calls == ["cudnn", "xla"]
    np.testing.assert_array_equal(out, fused(q, k, v, implementation="xla"))
    with pytest.raises(NotImplementedError):  # asked for by name, cuDNN's refusal is the user's to see
        layers.fused_attention(q, k, v, implementation="cudnn")


def test_patch_embed_equals_strided_conv():
    embed = layers.PatchEmbed(3, 5, patch=4, tubelet=2, rngs=nnx.Rngs(0))
    x = jnp.asarray(RNG.standard_normal((1, 4, 8, 12, 3)), jnp.float32)
    conv = jax.lax.conv_general_dilated(
        x,
        embed.kernel[...],
        window_strides=(2, 4, 4),
        padding="VALID",
        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
    )
    np.testing.assert_allclose(embed(x), conv + embed.bias[...], atol=1e-5)
    assert embed(x).shape == (1, 2, 2, 3, 5)


@pytest.mark.parametrize("policy", ["full", "dots", "dots_no_batch"])
def test_remat_keeps_values_and_gradients(policy):
    cfg = vjepa2.Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, crop_size=32, frames_per_clip=2
    )
    x = jnp.asarray(RNG.standard_normal((1, 2, 32, 32, 3)), jnp.float32)
    grads = []
    for remat in ("none", policy):
        model = vjepa2.Model(cfg.replace(remat=remat), lora=lora.LoRAConfig(), rngs=nnx.Rngs(0))
        for _, layer in lora.adapters(model):  # give B a value so A receives gradient too
            layer.lora_b[...] = jnp.full(layer.lora_b.shape, 0.01)
        graphdef, tr, rest = nnx.split(model, lora.Trainable, ...)
        loss = jax.jit(
            jax.value_and_grad(lambda t, g=graphdef, r=rest: jnp.sum(nnx.merge(g, t, r)(x).embedding ** 2))
        )
        grads.append(loss(tr))
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads[0][1]), jax.tree.leaves(grads[1][1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params():
    cfg = vjepa2.Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, crop_size=32, frames_per_clip=2
    )
    model = vjepa2.Model(cfg.replace(dtype="bfloat16"), lora=lora.LoRAConfig(), rngs=nnx.Rngs(0))
    out = model(jnp.zeros((1, 2, 32, 32, 3)))
    assert out.tokens.dtype == jnp.bfloat16
    assert {v.dtype for v in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype("float32")}


def test_config_validation_and_json_round_trip():
    cfg = vjepa2.Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    assert vjepa2.Config.from_json(cfg.to_json()) == cfg
    with pytest.raises(InputError, match=r"unknown config key\(s\) \['depth'\]"):
        vjepa2.Config.from_json({**cfg.to_json(), "depth": 3})
    with pytest.raises(InputError, match="remat='some' is not supported"):
        cfg.replace(remat="some")
    with pytest.raises(InputError, match="not divisible by 5 heads"):
        cfg.replace(num_attention_heads=5)
    with pytest.raises(InputError, match="no CLS token"):
        cfg.replace(pool="cls")


@pytest.mark.parametrize("family", [bert, clip, dinov2, siglip, timesformer, videomae, vjepa2, vjepa21])
def test_every_variant_builds_with_overrides(family):
    for name, values in family.Config.VARIANTS.items():
        cfg = family.Config.variant(name, num_hidden_layers=1)
        assert [getattr(cfg, f) for f in family.Config.VARIANT_FIELDS[1:3]] == [1, values[2]]
        assert cfg.hidden_size == values[0] and cfg.hidden_size % cfg.num_attention_heads == 0
    with pytest.raises(
        InputError, match=rf"{family.__name__}\.Config: unknown variant 'vit_tiny'.*choose from"
    ):
        family.Config.variant("vit_tiny")


def test_head_is_trainable_and_sized():
    cfg = vjepa2.Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, crop_size=32, head_dim=7)
    model = vjepa2.Model(cfg, rngs=nnx.Rngs(0))
    assert model(jnp.zeros((2, 2, 32, 32, 3))).embedding.shape == (2, 7)
    assert lora.summary(model).trainable == 32 * 7 + 7


def test_attention_maps_are_returned_per_block():
    cfg = vjepa2.Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, crop_size=32, frames_per_clip=2
    )
    model = vjepa2.Model(cfg, rngs=nnx.Rngs(0))
    x = jnp.asarray(RNG.standard_normal((1, 2, 32, 32, 3)), jnp.float32)
    out = model(x, output_attentions=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (1, 2, 4, 4)
    np.testing.assert_allclose(out.tokens, model(x).tokens, atol=1e-5)
