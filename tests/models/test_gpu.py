"""GPU-only paths: cuDNN flash attention and bfloat16 compute against the XLA float32 path.

Run on a GPU machine: `python -m pytest -q tests/models/test_gpu.py`. Elsewhere these skip, saying
why: the cuDNN kernel exists only on NVIDIA GPUs.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from checkpoints_convert.families import video_input
from jaxbgs import lora
from jaxbgs.models import family, vjepa2

pytestmark = pytest.mark.skipif(
    jax.default_backend() != "gpu", reason="needs an NVIDIA GPU (cuDNN attention)"
)

CFG = vjepa2.Config(
    hidden_size=128, num_hidden_layers=2, num_attention_heads=2, crop_size=64, frames_per_clip=8
)


def loss_and_grads(cfg, x):
    model = vjepa2.Model(cfg, lora=lora.LoRAConfig(), rngs=nnx.Rngs(0))
    for _, layer in lora.adapters(model):
        layer.lora_b[...] = jnp.full(layer.lora_b.shape, 0.01)
    graphdef, tr, rest = nnx.split(model, lora.Trainable, ...)

    def loss(t):
        return jnp.mean(nnx.merge(graphdef, t, rest)(x).tokens.astype(jnp.float32) ** 2)

    return jax.jit(jax.value_and_grad(loss))(tr)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_cudnn_matches_xla(dtype):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 64, 64, 3)), jnp.float32)
    with jax.default_matmul_precision("highest"):
        ref_loss, ref_grads = loss_and_grads(CFG, x)
    loss, grads = loss_and_grads(CFG.replace(dtype=dtype, attention="cudnn"), x)
    np.testing.assert_allclose(loss, ref_loss, rtol=2e-2)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
        scale = float(jnp.abs(b).max()) + 1e-12
        assert float(jnp.abs(a.astype(jnp.float32) - b).max()) / scale < 5e-2


# Each BGS backbone as the paper trains it (its variant, one block), attention left at "auto", and
# its attention calls per block (TimeSformer: temporal, then spatial).
PAPER = {"vjepa2": "vit_large", "vjepa21": "vit_base", "timesformer": "vit_base", "videomae": "vit_base",
         "clip": "vit_b32"}  # fmt: skip
CALLS = {"timesformer": 2}


@pytest.mark.parametrize("arch", list(PAPER))
def test_auto_attention_is_cudnn_in_every_backbone(arch):
    """`attention=auto` falls back to XLA where cuDNN lacks a shape; the paper's shapes must not."""
    cfg = family(arch).Config.variant(PAPER[arch], num_hidden_layers=1, dtype="bfloat16")
    model = family(arch).Model(cfg, lora=lora.LoRAConfig(), rngs=nnx.Rngs(0))
    graphdef, tr, rest = nnx.split(model, lora.Trainable, ...)
    x = jnp.asarray(video_input(cfg, None, None, seed=0, batch=1)["pixels"])

    def loss(t, rest, x):  # weights and input as arguments: no constants in the text
        return jnp.mean(nnx.merge(graphdef, t, rest)(x).embedding.astype(jnp.float32) ** 2)

    hlo = jax.jit(jax.value_and_grad(loss)).lower(tr, rest, x).as_text()
    calls = CALLS.get(arch, 1)
    assert len(re.findall(r"__cudnn\$fmhaSoftmax(?!Backward)", hlo)) >= calls
    assert len(re.findall(r"__cudnn\$fmhaSoftmaxBackward", hlo)) >= calls


def test_attention_remat_keeps_cudnn_forward():
    """remat=attention saves cuDNN's forward (output and softmax statistics): the backward holds no
    second forward kernel, where full remat runs it again."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 8, 64, 64, 3)), jnp.float32)
    counts = {}
    for remat in ("none", "full", "attention"):
        cfg = CFG.replace(dtype="bfloat16", attention="cudnn", remat=remat)
        model = vjepa2.Model(cfg, lora=lora.LoRAConfig(), rngs=nnx.Rngs(0))
        graphdef, tr, rest = nnx.split(model, lora.Trainable, ...)

        def loss(t, rest, x, graphdef=graphdef):
            return jnp.mean(nnx.merge(graphdef, t, rest)(x).embedding.astype(jnp.float32) ** 2)

        hlo = jax.jit(jax.value_and_grad(loss)).lower(tr, rest, x).as_text()
        counts[remat] = len(re.findall(r"__cudnn\$fmhaSoftmax(?!Backward)", hlo))
    assert counts["full"] > counts["none"] == counts["attention"] > 0, counts
