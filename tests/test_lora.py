"""LoRA layer: PEFT's forward and init, merge/unmerge, trainable filter, summary."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

from checkpoints_convert import core
from jaxbgs import lora
from jaxbgs.errors import InputError
from jaxbgs.models import vjepa2

TINY = vjepa2.Config(
    hidden_size=48, num_hidden_layers=2, num_attention_heads=4, crop_size=32, frames_per_clip=4
)
CLIP = np.random.default_rng(0).standard_normal((2, 4, 32, 32, 3)).astype(np.float32)


def nonzero_adapters(model, seed=1):
    key = jax.random.key(seed)
    for _, layer in lora.adapters(model):
        key, sub = jax.random.split(key)
        layer.lora_b[...] = 0.05 * jax.random.normal(sub, layer.lora_b.shape)
    return model


def test_dense_matches_peft_forward():
    """Same weights in a PEFT-wrapped torch Linear and in Dense give the same output (scale alpha/r)."""
    import peft

    base = torch.nn.Sequential(torch.nn.Linear(6, 5))
    model = peft.get_peft_model(base, peft.LoraConfig(r=2, lora_alpha=6, target_modules=["0"]))
    with torch.no_grad():
        model.base_model.model[0].lora_B["default"].weight.normal_()
    layer = model.base_model.model[0]
    dense = lora.Dense(
        6, 5, group="qkv", lora=lora.LoRAConfig(rank=2, alpha=6, targets=("qkv",)), rngs=nnx.Rngs(0)
    )
    dense.kernel[...] = layer.base_layer.weight.detach().numpy().T
    dense.bias[...] = layer.base_layer.bias.detach().numpy()
    dense.lora_a[...] = layer.lora_A["default"].weight.detach().numpy().T
    dense.lora_b[...] = layer.lora_B["default"].weight.detach().numpy().T
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(dense(x), expected, atol=1e-6)
    assert dense.scale == 3.0


def test_peft_like_init():
    dense = lora.Dense(
        400, 30, group="out", lora=lora.LoRAConfig(rank=64, targets=("out",)), rngs=nnx.Rngs(0)
    )
    a = np.asarray(dense.lora_a[...])
    bound = 1 / np.sqrt(400)  # kaiming_uniform(a=sqrt(5)) on (r, in)
    assert a.shape == (400, 64) and np.abs(a).max() <= bound
    assert abs(a.std() - bound / np.sqrt(3)) < 0.05 * bound
    assert not np.asarray(dense.lora_b[...]).any()


def test_zero_b_leaves_model_unchanged_and_merge_equals_unmerged():
    plain = vjepa2.Model(TINY, rngs=nnx.Rngs(0))
    adapted = vjepa2.Model(TINY, lora=lora.LoRAConfig(targets=("qkv", "out", "mlp")), rngs=nnx.Rngs(0))
    base = {
        k: v for k, v in nnx.to_flat_state(nnx.state(adapted, nnx.Param)) if not isinstance(v, lora.LoRAParam)
    }
    nnx.update(plain, nnx.from_flat_state(base))
    np.testing.assert_array_equal(plain(CLIP).tokens, adapted(CLIP).tokens)

    nonzero_adapters(adapted)
    before = np.asarray(adapted(CLIP).tokens)
    assert np.abs(before - np.asarray(plain(CLIP).tokens)).max() > 1e-3  # the adapters do something
    lora.merge(adapted)
    np.testing.assert_allclose(adapted(CLIP).tokens, before, atol=1e-5)
    lora.merge(adapted)  # idempotent
    np.testing.assert_allclose(adapted(CLIP).tokens, before, atol=1e-5)
    lora.unmerge(adapted)
    np.testing.assert_allclose(adapted(CLIP).tokens, before, atol=1e-5)


def test_dropout_only_in_training_mode():
    model = vjepa2.Model(TINY, lora=lora.LoRAConfig(dropout=0.5), rngs=nnx.Rngs(0))
    nonzero_adapters(model)
    model.eval()
    a, b = model(CLIP).tokens, model(CLIP).tokens
    np.testing.assert_array_equal(a, b)
    model.train()
    c = model(CLIP).tokens
    assert np.abs(np.asarray(c) - np.asarray(a)).max() > 1e-4


def test_one_step_updates_only_adapters():
    model = vjepa2.Model(TINY, lora=lora.LoRAConfig(), rngs=nnx.Rngs(0))
    model.eval()
    before = core.flat_params(model)  # per layer: blocks.0.attention.query.lora_b, ...
    graphdef, trainable, rest = nnx.split(model, lora.Trainable, ...)
    opt = optax.adam(1e-2)

    def loss(tr, x):
        return jnp.mean(nnx.merge(graphdef, tr, rest)(x).embedding ** 2)

    @jax.jit
    def step(tr, state, x):
        value, grads = jax.value_and_grad(loss)(tr, x)
        updates, state = opt.update(grads, state, tr)
        return optax.apply_updates(tr, updates), state, value

    trainable, _, _ = step(trainable, opt.init(trainable), CLIP)
    nnx.update(model, trainable)
    after = core.flat_params(model)
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed and all(k.endswith("lora_b") for k in changed), changed
    assert len(changed) == 4 * TINY.num_hidden_layers  # query, key, value, proj per block


def test_targets_select_layers():
    model = vjepa2.Model(TINY, lora=lora.LoRAConfig(targets=("mlp",)), rngs=nnx.Rngs(0))
    names = {".".join(map(str, p[2:])) for p in lora.adapter_paths(model)}
    assert names == {"mlp.fc1", "mlp.fc2"}
    with pytest.raises(InputError, match=r"unknown LoRA target\(s\) \['attn'\]"):
        lora.LoRAConfig(targets=("attn",))
    with pytest.raises(InputError, match="rank must be >= 1"):
        lora.LoRAConfig(rank=0)


def test_summary_paper_config_under_two_percent():
    model = nnx.eval_shape(lambda: vjepa2.Model(vjepa2.Config(), lora=lora.LoRAConfig(), rngs=nnx.Rngs(0)))
    s = lora.summary(model)
    # ViT-L, rank 8 on q, k, v, proj: 24 blocks x 4 x 8 x (1024 + 1024)
    assert s.lora == 24 * 4 * 8 * 2048 and s.adapted_layers == 96
    assert s.total == 303_885_312 + s.lora  # the encoder's published parameter count
    assert s.fraction < 0.02
    assert "trainable (0.51" in str(s)
