"""SocialFusion's own modules: the box mask, the gaze head against its PyTorch twin, and the assembled
model (left-padded prompts, which state trains, what the box embedding changes)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxbgs.lora import LoRAParam, Trainable
from jaxbgs.models import llama
from jaxbgs.socialfusion import gaze as G
from jaxbgs.socialfusion.model import Config, GazeHead, SocialFusion, box_mask

TINY_LLM = llama.Config(
    vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=8, rope_scaling=None,
)  # fmt: skip
TINY = Config(
    llm=TINY_LLM, feature_dim=12, grid=4, connector_hidden=24, lora_rank=4, gaze_channels=6, heatmap=10
)


def test_box_mask_marks_the_patches_a_box_touches():
    boxes = jnp.array([[[0.0, 0.0, 0.3, 0.2], [0.6, 0.6, 0.6, 0.6]], [[0.1, 0.1, 0.9, 0.9], [0, 0, 1, 1]]])
    valid = jnp.array([[True, True], [True, False]])
    m = np.asarray(box_mask(boxes, valid, 4)).reshape(2, 4, 4)
    expected0 = np.zeros((4, 4))
    expected0[0, :2] = 1  # x in [0, 0.3) covers columns 0 and 1, y in [0, 0.2) row 0
    expected0[2, 2] = 1  # a point box marks the patch it lies in
    np.testing.assert_array_equal(m[0], expected0)
    np.testing.assert_array_equal(m[1], np.ones((4, 4)))  # 0.1..0.9 touches every patch; box 2 invalid
    assert not np.asarray(box_mask(boxes, jnp.zeros((2, 2), bool), 4)).any()
    edge = box_mask(jnp.array([[[0.25, 0.0, 0.5, 0.25]]]), jnp.array([[True]]), 4)
    assert np.asarray(edge).reshape(4, 4)[0].tolist() == [0, 1, 0, 0]  # edges on patch borders: one patch


def test_gaze_head_matches_pytorch():
    torch = pytest.importorskip("torch")
    head = GazeHead(8, 5, 3, 10, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).standard_normal((2, 9, 8)).astype(np.float32)
    ours = np.asarray(head(jnp.asarray(x)))
    lin = torch.nn.Linear(8, 5)
    up = torch.nn.ConvTranspose2d(5, 1, kernel_size=2, stride=2)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(np.array(head.proj.kernel[...]).T))
        lin.bias.copy_(torch.from_numpy(np.array(head.proj.bias[...])))
        # Flax (kh, kw, in, out) -> torch ConvTranspose2d (in, out, kh, kw)
        up.weight.copy_(torch.from_numpy(np.array(head.up_kernel[...]).transpose(2, 3, 0, 1)))
        up.bias.copy_(torch.from_numpy(np.array(head.up_bias[...])))
        y = lin(torch.from_numpy(x)).reshape(2, 3, 3, 5).permute(0, 3, 1, 2)
        y = torch.nn.functional.interpolate(up(y), size=(10, 10), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(ours, y[:, 0].numpy(), atol=1e-5)


@pytest.fixture(scope="module")
def model():
    m = SocialFusion(TINY, rngs=nnx.Rngs(0))
    # Non-zero adapters so LoRA takes part in the outputs being compared.
    for _, v in nnx.iter_graph(m):
        if isinstance(v, LoRAParam):
            v.set_value(jax.random.normal(jax.random.key(1), v.shape) * 0.1)
    return m


def _inputs(seed=0, b=2, p=5):
    rng = np.random.default_rng(seed)
    return dict(
        features=jnp.asarray(rng.standard_normal((b, 16, 12)), jnp.float32),
        tokens=jnp.asarray(rng.integers(1, 64, (b, p))),
        token_mask=jnp.ones((b, p), bool),
        boxes=jnp.asarray([[[0.0, 0.0, 0.5, 0.5]]] * b, jnp.float32),
        box_valid=jnp.ones((b, 1), bool),
    )


def test_left_padding_leaves_the_answer_unchanged(model):
    x = _inputs()
    out = model(**x)
    assert out.logits.shape == (2, 64) and out.heatmap.shape == (2, 10, 10)
    padded = dict(
        x,
        tokens=jnp.pad(x["tokens"], ((0, 0), (3, 0))),
        token_mask=jnp.pad(x["token_mask"], ((0, 0), (3, 0))),
    )
    again = model(**padded)
    np.testing.assert_allclose(again.logits, out.logits, atol=1e-5)
    np.testing.assert_allclose(again.heatmap, out.heatmap, atol=1e-5)


def test_boxes_change_the_answer_and_an_invalid_box_is_no_box(model):
    x = _inputs()
    base = model(**x).logits
    moved = model(**dict(x, boxes=jnp.asarray([[[0.5, 0.5, 1.0, 1.0]]] * 2, jnp.float32))).logits
    assert float(jnp.abs(moved - base).max()) > 1e-4
    off = model(**dict(x, box_valid=jnp.zeros((2, 1), bool))).logits
    nobox = model(**dict(x, boxes=jnp.zeros((2, 0, 4)), box_valid=jnp.zeros((2, 0), bool))).logits
    np.testing.assert_allclose(off, nobox, atol=1e-6)


def test_only_connector_box_gaze_and_adapters_train(model):
    trainable, rest = nnx.split(model, Trainable, ...)[1:]
    names = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(trainable)}
    assert any(n.startswith("connector/") for n in names) and "box_embedding" in names
    assert any(n.startswith("gaze/") for n in names) and any("lora_a" in n for n in names)
    assert not any("embed_tokens" in n or n.endswith("q_proj/kernel") for n in names)
    graph = nnx.split(model, Trainable, ...)[0]
    x = _inputs()

    def loss(t):
        m = nnx.merge(graph, t, rest)
        out = m(**x)
        return out.logits[:, 3].sum() + out.heatmap.mean()

    grads = jax.grad(loss)(trainable)
    norms = {
        "/".join(map(str, p)): float(jnp.linalg.norm(v.get_value())) for p, v in nnx.to_flat_state(grads)
    }
    assert all(np.isfinite(v) for v in norms.values())
    assert norms["box_embedding"] > 0 and norms["gaze/up_kernel"] > 0
    assert any(v > 0 for k, v in norms.items() if "lora_b" in k)


def test_a_fresh_gaze_head_predicts_the_targets_base_rate():
    # Zero image-token states leave only the bias: sigmoid of it is a target map's mean pixel, so the
    # first steps learn where, not to push every pixel from 0.5 down through the shared connector.
    head = GazeHead(8, 5, 3, 64, rngs=nnx.Rngs(0))
    logits = np.asarray(head(jnp.zeros((2, 9, 8))))
    target = G.target_heatmap(np.array([0.5, 0.5]), 64)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), target.mean(), rtol=1e-5)
    assert G.prior_logit(64) < -4  # a sigma-3 blob is ~1% of a 64 x 64 map
