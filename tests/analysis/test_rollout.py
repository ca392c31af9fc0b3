"""Attention rollout (Abnar & Zuidema 2020), TimeSformer's divided composition, and the BGS divergence
1 - r-bar (paper App. N.3), checked against hand derivations and explicit loops."""

import functools

import jax
import numpy as np
import pytest
from flax import nnx

from jaxbgs.analysis import rollout as ro
from jaxbgs.errors import InputError
from jaxbgs.models import clip, timesformer, videomae, vjepa2, vjepa21

SMALL = dict(num_hidden_layers=2, num_attention_heads=2)
# (config, clip shape (T, H, W), token grid (frames', H', W'))
FAMILIES = {
    "timesformer": (
        timesformer.Config(
            hidden_size=16, intermediate_size=32, image_size=32, patch_size=8, num_frames=4, **SMALL
        ),
        (4, 32, 32),
        (4, 4, 4),
    ),
    "clip": (
        clip.Config(hidden_size=16, intermediate_size=32, image_size=32, patch_size=8, **SMALL),
        (3, 32, 32),
        (3, 4, 4),
    ),
    "videomae": (
        videomae.Config(
            hidden_size=16, intermediate_size=32, image_size=32, patch_size=8, num_frames=4, **SMALL
        ),
        (4, 32, 32),
        (2, 4, 4),
    ),
    "vjepa2": (
        vjepa2.Config(hidden_size=24, patch_size=8, crop_size=32, frames_per_clip=4, **SMALL),
        (4, 32, 24),
        (2, 4, 3),
    ),
    "vjepa21": (
        vjepa21.Config(hidden_size=24, crop_size=32, frames_per_clip=4, **SMALL),
        (4, 32, 32),
        (2, 2, 2),
    ),
}
MODULES = {
    "timesformer": timesformer,
    "clip": clip,
    "videomae": videomae,
    "vjepa2": vjepa2,
    "vjepa21": vjepa21,
}


@functools.cache
def _model(name, **kw):
    cfg = FAMILIES[name][0].replace(**kw)
    return MODULES[name].Model(cfg, rngs=nnx.Rngs(0))


def _softmax_weights(rng, shape):
    return np.asarray(jax.nn.softmax(3 * rng.standard_normal(shape), axis=-1))


def _clips(n, shape, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *shape, 3)).astype(np.float32)


# ---------------------------------------------------------------- ViT rollout


def test_rollout_rows_are_distributions():
    rng = np.random.default_rng(0)
    attns = [_softmax_weights(rng, (2, 3, 7, 7)) for _ in range(4)]
    r = np.asarray(ro.rollout_matrix([ro.attention_mixing(a) for a in attns]))
    assert r.shape == (2, 7, 7)
    assert (r >= 0).all()
    np.testing.assert_allclose(r.sum(-1), 1.0, atol=1e-6)


def test_identity_and_uniform_attention_by_hand():
    """A = I: every block mixes by (I + I)/2 = I, so the rollout is I and the mean row is uniform.
    A = U = 11^T/N: M = (I + U)/2 and U^2 = U, so M^L = I/2^L + (1 - 2^-L) U."""
    n, depth = 6, 3
    eye = np.broadcast_to(np.eye(n), (1, 2, n, n))
    uni = np.full((1, 2, n, n), 1.0 / n)
    r = ro.rollout_matrix([ro.attention_mixing(eye)] * depth)
    np.testing.assert_allclose(r[0], np.eye(n), atol=1e-7)
    np.testing.assert_allclose(
        ro.pull(ro.readout(n, 1, cls=False, pool="mean"), [eye] * depth), 1.0 / n, atol=1e-7
    )
    expected = np.eye(n) / 2**depth + (1 - 2.0**-depth) / n
    np.testing.assert_allclose(ro.rollout_matrix([ro.attention_mixing(uni)] * depth)[0], expected, atol=1e-6)
    np.testing.assert_allclose(
        ro.pull(ro.readout(n, 1, cls=True, pool="cls"), [uni] * depth)[0], expected[0], atol=1e-6
    )


def test_two_blocks_against_numpy_loop():
    rng = np.random.default_rng(1)
    b, h, n = 2, 3, 5
    attns = [_softmax_weights(rng, (b, h, n, n)) for _ in range(2)]
    expected = np.zeros((b, n, n))
    for bi in range(b):
        mixes = []
        for a in attns:
            m = np.zeros((n, n))
            for i in range(n):
                for j in range(n):
                    m[i, j] = sum(a[bi, k, i, j] for k in range(h)) / h + (i == j)
                m[i] /= m[i].sum()
            mixes.append(m)
        for i in range(n):  # rollout = M_2 @ M_1
            for j in range(n):
                expected[bi, i, j] = sum(mixes[1][i, k] * mixes[0][k, j] for k in range(n))
    np.testing.assert_allclose(
        ro.rollout_matrix([ro.attention_mixing(a) for a in attns]), expected, atol=1e-6
    )
    np.testing.assert_allclose(
        ro.pull(ro.readout(n, b, cls=True, pool="cls"), attns), expected[:, 0], atol=1e-6
    )
    np.testing.assert_allclose(
        ro.pull(ro.readout(n, b, cls=False, pool="mean"), attns), expected.mean(axis=1), atol=1e-6
    )


# ---------------------------------------------------------------- TimeSformer divided attention


def _dense_divided(temporal, spatial, b, q, g):
    """Explicit per-token construction of one divided block's (B, N, N) mixing, tokens 1 + qi * g + s."""
    n = 1 + q * g
    t_heads, s_heads = temporal.mean(axis=1), spatial.mean(axis=1)
    out = np.zeros((b, n, n))
    for bi in range(b):
        tm = np.zeros((n, n))
        tm[0, 0] = 1.0  # temporal attention leaves CLS alone
        for qi in range(q):
            for s in range(g):
                for s2 in range(g):
                    tm[1 + qi * g + s, 1 + qi * g + s2] = t_heads[bi * q + qi, s, s2]
        sp = np.zeros((n, n))
        for s in range(g):
            idx = [0] + [1 + qi * g + s for qi in range(q)]  # CLS copy + the tokens at slot s
            w = s_heads[bi * g + s]
            for i in range(q + 1):
                for j in range(q + 1):
                    if i == 0:
                        sp[0, idx[j]] += w[0, j] / g  # the block averages the CLS updates over slots
                    else:
                        sp[idx[i], idx[j]] = w[i, j]
        rt, rs = tm + np.eye(n), sp + np.eye(n)
        rt /= rt.sum(1, keepdims=True)
        rs /= rs.sum(1, keepdims=True)
        out[bi] = rs @ rt
    return out


@pytest.mark.parametrize(("q", "g"), [(4, 3), (6, 2)])  # the native grouping and a config-style regrouping
def test_timesformer_divided_matches_dense(q, g):
    rng = np.random.default_rng(2)
    b, h, depth = 2, 3, 3
    temporal = [_softmax_weights(rng, (b * q, h, g, g)) for _ in range(depth)]
    spatial = [_softmax_weights(rng, (b * g, h, q + 1, q + 1)) for _ in range(depth)]
    dense = [_dense_divided(t, s, b, q, g) for t, s in zip(temporal, spatial, strict=True)]
    for t, s, d in zip(temporal, spatial, dense, strict=True):
        np.testing.assert_allclose(ro.timesformer_mixing(t, s), d, atol=1e-6)
    full = dense[0]
    for d in dense[1:]:
        full = d @ full
    assert (full >= 0).all()
    np.testing.assert_allclose(full.sum(-1), 1.0, atol=1e-6)
    n = 1 + q * g
    for cls, pool, row in ((True, "cls", full[:, 0]), (True, "mean", full[:, 1:].mean(1))):
        got = ro.pull_timesformer(ro.readout(n, b, cls=cls, pool=pool), temporal, spatial)
        np.testing.assert_allclose(got, row, atol=1e-6)


def _numpy_temporal_weights(block, x, group, heads):
    """Temporal softmax weights recomputed from the block's parameters in numpy."""
    tok = np.asarray(block.temporal_norm(x[:, 1:].reshape(-1, group, x.shape[-1])))
    qkv = tok @ np.asarray(block.temporal_attention.qkv.kernel[...]) + np.asarray(
        block.temporal_attention.qkv.bias[...]
    )
    qkv = qkv.reshape(*tok.shape[:2], 3, heads, -1)
    qh, kh = qkv[:, :, 0], qkv[:, :, 1]
    logits = np.einsum("bqhd,bkhd->bhqk", qh, kh) / np.sqrt(qh.shape[-1])
    return np.asarray(jax.nn.softmax(logits, axis=-1))


@pytest.mark.parametrize("grouping", ["native", "config"])
def test_timesformer_model_rollout_is_dense_cls_row(grouping):
    """Model-level: the saliency equals the CLS row of the dense rollout built from the model's spatial
    weights and independently recomputed temporal weights (config grouping: 4 frames in groups of 2)."""
    model = (
        _model("timesformer")
        if grouping == "native"
        else _model("timesformer", frame_grouping="config", num_frames=2)
    )
    x = _clips(2, (4, 32, 32))
    out = model(x, output_attentions=True)
    group = 4 if grouping == "native" else 2
    q = (out.tokens.shape[1] - 1) // group
    full = np.eye(1 + q * group)
    for blk, hs, s in zip(model.blocks, out.hidden_states[:-1], out.attentions, strict=True):
        temporal = _numpy_temporal_weights(blk, np.asarray(hs), group, 2)
        full = _dense_divided(temporal, np.asarray(s), 2, q, group) @ full
    cls_row = full[:, 0, 1:]
    expected = cls_row.reshape(2, 4, 4, 4).transpose(0, 3, 1, 2)  # patch-major, frame-minor tokens
    np.testing.assert_allclose(ro.rollout(model, x, batch=2), expected, atol=1e-5)


# ---------------------------------------------------------------- every family


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_maps(name):
    _, shape, grid = FAMILIES[name]
    model = _model(name)
    x = _clips(3, shape)
    maps = ro.rollout(model, x, batch=2)  # 3 clips in batches of 2: padding is dropped
    assert maps.shape == (3, *grid)
    assert np.isfinite(maps).all() and (maps >= 0).all()
    np.testing.assert_allclose(ro.rollout(model, x[1:], batch=2), maps[1:], atol=1e-5)  # other batching
    attns = model(x, output_attentions=True).attentions
    if name != "timesformer":  # plain ViT blocks: compare with the dense rollout's readout row
        full = np.asarray(ro.rollout_matrix([ro.attention_mixing(a) for a in attns]))
        row = full[:, 0, 1:] if name == "clip" else full.mean(axis=1)
        np.testing.assert_allclose(maps.reshape(-1), row.reshape(-1), atol=1e-5)
    if name in ("videomae", "vjepa2", "vjepa21"):  # the mean row of a row-stochastic matrix sums to 1
        np.testing.assert_allclose(maps.sum(axis=(1, 2, 3)), 1.0, atol=1e-5)
    per_frame = ro.saliency_maps(model, x, batch=2, method="nearest")
    assert per_frame.shape == (3, *shape)
    tubelet = shape[0] // grid[0]
    np.testing.assert_allclose(per_frame[:, ::tubelet], per_frame[:, tubelet - 1 :: tubelet])


def test_rejects_non_video_models_and_uint8():
    with pytest.raises(InputError):
        ro.rollout(object(), _clips(1, (4, 32, 32)))
    with pytest.raises(InputError):
        ro.rollout(_model("videomae"), np.zeros((1, 4, 32, 32, 3), np.uint8))


# ---------------------------------------------------------------- divergence


def test_divergence_identity_negation_independence():
    rng = np.random.default_rng(3)
    maps = rng.random((200, 8, 16, 16))
    np.testing.assert_allclose(ro.divergence(maps, maps), 0.0, atol=1e-12)
    np.testing.assert_allclose(ro.divergence(maps, 5 * maps + 2), 0.0, atol=1e-12)  # Pearson: scale-free
    np.testing.assert_allclose(ro.divergence(maps, -maps), 2.0, atol=1e-12)
    d = ro.divergence(maps, rng.random(maps.shape))
    assert abs(d.mean() - 1.0) < 0.01 and d.std() < 0.05


def test_divergence_is_one_minus_mean_slice_r():
    rng = np.random.default_rng(4)
    a, b = rng.random((2, 3, 4, 5)), rng.random((2, 3, 4, 5))
    r = [[np.corrcoef(a[i, s].ravel(), b[i, s].ravel())[0, 1] for s in range(3)] for i in range(2)]
    np.testing.assert_allclose(ro.divergence(a, b), 1 - np.mean(r, axis=1), atol=1e-12)
    b[0, 1] = 7.0  # a constant slice has no r: left out of the mean
    np.testing.assert_allclose(ro.divergence(a, b)[0], 1 - np.mean([r[0][0], r[0][2]]), atol=1e-12)
    b[0] = 7.0
    assert np.isnan(ro.divergence(a, b)[0])


def test_top_divergent_order():
    div = np.array([0.1, 0.5, np.nan, 0.3, 0.5, 0.2])
    names = ["a", "b", "c", "d", "e", "f"]
    assert ro.top_divergent(div, names, 3) == [("b", 0.5), ("e", 0.5), ("d", 0.3)]
    assert [n for n, _ in ro.top_divergent(div, names, 10)] == ["b", "e", "d", "f", "a"]
