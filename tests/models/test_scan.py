"""Stacked blocks: scanned and unrolled runs agree in every family (outputs, hidden states, attention
maps, gradients with LoRA dropout and remat), dropout draws per-layer keys reproducibly, adapters
are addressed per layer, and the `attention` remat policy does not recompute attention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.extend import core as jex

from jaxbgs import lora, stacked
from jaxbgs.models import bert, clip, dinov2, layers, llama, siglip, timesformer, videomae, vjepa2, vjepa21

RNG = np.random.default_rng(0)
LORA = lora.LoRAConfig(rank=2, dropout=0.25, targets=("qkv", "out", "mlp", "temporal_dense"))
PIXELS = {  # (config, input shape (B, T, H, W)); three blocks each
    vjepa2: (vjepa2.Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, crop_size=32,
                           frames_per_clip=4), (2, 4, 32, 32)),
    vjepa21: (vjepa21.Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, crop_size=32,
                             output="hierarchical"), (2, 4, 32, 32)),
    timesformer: (timesformer.Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                     intermediate_size=64, image_size=32, patch_size=8, num_frames=2),
                  (2, 2, 32, 32)),
    videomae: (videomae.Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                               intermediate_size=64, image_size=32, num_frames=4), (2, 4, 32, 32)),
    clip: (clip.Config(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                       image_size=32, patch_size=8), (2, 2, 32, 32)),
    dinov2: (dinov2.Config(image_size=28, patch_size=14, hidden_size=32, num_hidden_layers=3,
                           num_attention_heads=2), (2, 1, 28, 28)),
    siglip: (siglip.Config(image_size=28, patch_size=14, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=3, num_attention_heads=2), (2, 1, 28, 28)),
}  # fmt: skip
BERT = bert.Config(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                   intermediate_size=64, max_position_embeddings=40)  # fmt: skip
LLAMA = llama.Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=8, rope_scaling=None)  # fmt: skip


def close(a, b, tol=1e-5):
    """Scan and unroll compile the same body in two programs (XLA fuses and orders them its own way
    in each): equal up to float32 rounding, relative to each array's largest value."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape and np.abs(x - y).max() <= tol * max(1.0, np.abs(y).max())


def build(family, cfg, **kw):
    model = family.Model(cfg.replace(**kw), lora=LORA, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    for _, layer in lora.adapters(model):  # B away from zero, so outputs and A's gradients see it
        layer.lora_b[...] = 0.1 * rng.standard_normal(layer.lora_b.shape).astype(np.float32)
    return model


def inputs(family):
    if family is bert:
        mask = np.ones((2, 9), np.int32)
        mask[1, 6:] = 0
        return (RNG.integers(1, 99, (2, 9)), mask)
    return (jnp.asarray(np.random.default_rng(2).standard_normal((*PIXELS[family][1], 3)), jnp.float32),)


def outputs_and_grads(family, cfg, args, **kw):
    model = build(family, cfg, **kw)
    model.eval()
    out = nnx.jit(lambda m, *a: m(*a, output_attentions=True))(model, *args)
    graphdef, trainable, rest = nnx.split(model, lora.Trainable, ...)

    def loss(t, key):
        m = nnx.merge(graphdef, t, rest, copy=True)
        nnx.reseed(m, dropout=key)  # as the trainer does: each step's masks from its own key
        m.train()
        return jnp.sum(m(*args).embedding[:, ::2] ** 2)  # half the dims: a layer norm fixes the sum

    return out, jax.jit(jax.value_and_grad(loss))(trainable, jax.random.key(3))


@pytest.mark.parametrize("family", [*PIXELS, bert], ids=lambda f: f.__name__.split(".")[-1])
def test_scanned_and_unrolled_blocks_agree(family):
    cfg = BERT if family is bert else PIXELS[family][0]
    args = inputs(family)
    (out, grads), (out_u, grads_u) = (
        outputs_and_grads(family, cfg, args, scan=s, remat="full") for s in (True, False)
    )
    assert len(out.hidden_states) == cfg.num_hidden_layers + 1 == len(out.attentions) + 1
    close((out.embedding, out.tokens, out.hidden_states, out.attentions), (out_u.embedding, out_u.tokens,
          out_u.hidden_states, out_u.attentions))  # fmt: skip
    close(grads, grads_u)
    stacked_grads = [g for g in jax.tree.leaves(grads[1]) if g.ndim == 3]  # LoRA factors (L, in, r)
    assert stacked_grads and all(float(jnp.abs(g[i]).max()) > 0 for g in stacked_grads for i in range(3))


def test_llama_scanned_and_unrolled_agree_in_call_and_prefixed():
    tokens = RNG.integers(0, 64, (2, 7))
    prefix, pmask = RNG.standard_normal((2, 5, 32)).astype(np.float32), np.ones((2, 5), bool)
    pmask[1, :2] = False
    embeds = RNG.standard_normal((3, 4, 32)).astype(np.float32)
    results = []
    for scan in (True, False):
        model = build(llama, LLAMA, scan=scan, remat="attention")
        out = model(tokens, output_hidden_states=True)
        graphdef, trainable, rest = nnx.split(model, lora.Trainable, ...)

        def loss(t, model=model, graphdef=graphdef, rest=rest):
            m = nnx.merge(graphdef, t, rest, copy=True)
            return jnp.sum(m.prefixed(prefix, pmask, jnp.array([0, 1, 1]), embeds).logits ** 2)

        results.append((out.logits, out.hidden_states, jax.jit(jax.value_and_grad(loss))(trainable)))
    assert len(results[0][1]) == LLAMA.num_hidden_layers + 1
    close(results[0], results[1])


class Noise(nnx.Module):
    """A block that adds its dropout mask of ones: each layer's mask shows in its hidden state."""

    def __init__(self, rngs: nnx.Rngs):
        self.w = nnx.Param(jnp.zeros(()))
        self.dropout = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return x + self.dropout(jnp.ones_like(x)) + self.w[...], None


@pytest.mark.parametrize("scan", [True, False])
def test_dropout_draws_per_layer_keys_reproducibly(scan):
    cfg = vjepa2.Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, scan=scan)
    blocks = stacked.Stack(Noise, 4, rngs=nnx.Rngs(0, dropout=1))

    def masks(key):
        nnx.reseed(blocks, dropout=key)  # scalar streams: what the trainer does every step
        _, hidden, _ = layers.run_blocks(blocks, jnp.zeros((1, 64)), cfg)
        return np.diff(np.stack(hidden), axis=0)

    a, b, c = masks(1), masks(1), masks(2)
    assert len({m.tobytes() for m in a}) == 4  # every layer its own mask
    np.testing.assert_array_equal(a, b)  # the same key, the same masks
    assert not np.array_equal(a, c)
    assert a.shape == (4, 1, 64) and set(np.unique(a)) == {0.0, 2.0}


def test_adapters_and_merge_address_layers():
    cfg = PIXELS[vjepa2][0]
    model = build(vjepa2, cfg)
    names = ("key", "proj", "query", "value")
    paths = [".".join(map(str, p)) for p in lora.adapter_paths(model)]
    assert paths[:4] == [f"blocks.0.attention.{n}" for n in names]
    mlp = [f"blocks.{i}.mlp.{n}" for i in range(3) for n in ("fc1", "fc2")]
    assert sorted(paths) == sorted([f"blocks.{i}.attention.{n}" for i in range(3) for n in names] + mlp)
    s = lora.summary(model)
    assert s.adapted_layers == 6 * 3 and s.lora == 3 * (4 * (32 * 2 + 2 * 32) + 2 * (32 * 2 + 2 * 128))
    query = model.blocks.layer.attention.query
    before = np.asarray(query.kernel[...])
    views = {".".join(map(str, p)): v for p, v in lora.adapters(model)}
    view = views["blocks.1.attention.query"]
    assert view.lora_a.shape == (32, 2) and view.kernel.shape == (32, 32)
    np.testing.assert_allclose(view.delta(), query.delta()[1], rtol=1e-6)
    lora.merge(model)
    for i in range(3):
        np.testing.assert_allclose(
            query.kernel[...][i],
            before[i] + query.lora_a[...][i] @ query.lora_b[...][i] * query.scale,
            rtol=1e-6,
        )
    lora.unmerge(model)
    np.testing.assert_allclose(query.kernel[...], before, atol=1e-6)
    view.lora_b[...] = np.ones((2, 32), np.float32)  # a write reaches that layer only
    assert np.all(query.lora_b[...][1] == 1) and not np.any(query.lora_b[...][0] == 1)


def test_a_layer_of_the_stack_is_that_block():
    model = build(vjepa2, PIXELS[vjepa2][0])
    model.eval()
    out = model(inputs(vjepa2)[0])
    block, (t, h, w) = model.blocks[2], vjepa2.grid_positions(out.tokens.shape[1], 2, 2)
    assert len(model.blocks) == 3 and block.attention.query.kernel.shape == (32, 32)
    close(block(out.hidden_states[2], positions=(t, h, w))[0], out.hidden_states[3])


def _sub_jaxprs(eqn):
    for p in eqn.params.values():
        for x in p if isinstance(p, (list, tuple)) else (p,):
            if isinstance(x, jex.ClosedJaxpr):
                yield x.jaxpr
            elif isinstance(x, jex.Jaxpr):
                yield x


def attention_dots(jaxpr, n: int) -> int:
    """dot_generals with an N x N operand or result (q k^T, weights v and their transposes)."""
    count = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            shapes = [v.aval.shape for v in (*eqn.invars, *eqn.outvars)]
            count += any(list(s).count(n) >= 2 for s in shapes)
        count += sum(attention_dots(j, n) for j in _sub_jaxprs(eqn))
    return count


@pytest.mark.parametrize("scan", [True, False])
def test_attention_policy_does_not_recompute_attention(scan):
    # 3 frames of 2 x 2 tubelets: N = 12 tokens, a size no other dimension has.
    cfg = vjepa2.Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, crop_size=32,
                        frames_per_clip=6, scan=scan)  # fmt: skip
    x = jnp.asarray(RNG.standard_normal((1, 6, 32, 32, 3)), jnp.float32)
    counts, grads = {}, {}
    for remat in ("none", "full", "dots", "dots_no_batch", "attention"):
        model = build(vjepa2, cfg, remat=remat)
        graphdef, trainable, rest = nnx.split(model, lora.Trainable, ...)
        loss = lambda t, g=graphdef, r=rest: jnp.sum(nnx.merge(g, t, r, copy=True)(x).embedding ** 2)  # noqa: E731
        counts[remat] = attention_dots(jax.make_jaxpr(jax.grad(loss))(trainable).jaxpr, 12)
        grads[remat] = jax.jit(jax.grad(loss))(trainable)
    per_block = 1 if scan else cfg.num_hidden_layers  # a scan traces one block body
    # forward q k^T and weights v, backward their four transposes; full remat runs the forward twice
    assert counts["none"] == 6 * per_block and counts["full"] == 8 * per_block
    assert counts["dots_no_batch"] == counts["full"]
    assert counts["attention"] == counts["dots"] == counts["none"]
    for remat in ("full", "attention"):
        close(grads[remat], grads["none"])


def test_attention_policy_saves_cudnn_forward():
    policy = layers.REMAT_POLICIES["attention"]
    assert policy(jex.Primitive("dot_product_attention_fwd_wrapper"))
    assert not policy(jex.Primitive("dot_product_attention_bwd_wrapper"))
    assert not policy(jax.lax.dot_general_p, dimension_numbers=(((2,), (0,)), ((), ())))  # a projection
    assert policy(jax.lax.dot_general_p, dimension_numbers=(((3,), (3,)), ((0, 2), (0, 2))))  # q k^T
