"""BGS losses (Eq. 1-4), schedules, budget matching and the language-distillation control."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxbgs import losses as L
from jaxbgs.data.judgments import Trials
from jaxbgs.data.matrices import pair_matrix
from jaxbgs.eval import stats


def unit(deg: float) -> list[float]:
    r = math.radians(deg)
    return [math.cos(r), math.sin(r)]


def random_batch(seed: int, k: int = 24, e: int = 8):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(k, e)).astype(np.float32)
    h = rng.random((k, k))
    h = ((h + h.T) / 2).astype(np.float32)
    np.fill_diagonal(h, 0)
    return emb, h


def selected_pairs(mask: np.ndarray, n_grad: int) -> tuple[np.ndarray, np.ndarray]:
    r, c = np.triu_indices(len(mask), k=1)
    keep = ((r < n_grad) | (c < n_grad)) & mask[r, c]
    return r[keep], c[keep]


_rsa = jax.jit(L.rsa_loss_with_count, static_argnames=("n_grad", "ddof"))
_rsa_grad = jax.jit(jax.grad(L.rsa_loss), static_argnames=("n_grad",))
_triplet = jax.jit(L.triplet_loss)
_hinge = jax.jit(L.triplet_hinge)
_hard = jax.jit(L.hard_extra_triplet_loss)

# ------------------------------------------------------------------------------------------ distances


def test_cosine_distance_known_values_and_scale():
    a = jnp.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    b = jnp.array([[0.0, 3.0], [-1.0, 0.0], unit(60), [5.0, 0.0]])
    np.testing.assert_allclose(L.cosine_distance(a, b), [1.0, 2.0, 0.5, 0.0], atol=1e-6)


def test_cosine_distance_zero_vector_is_finite():
    f = lambda x: L.cosine_distance(x, jnp.array([1.0, 0.0]))  # noqa: E731
    assert float(f(jnp.zeros(2))) == 1.0
    assert np.isfinite(np.asarray(jax.jit(jax.grad(f))(jnp.zeros(2)))).all()


def test_pairwise_cosine_distance():
    emb = jnp.array([unit(0), unit(90), unit(180), [0.0, 5.0]])
    d = np.asarray(L.pairwise_cosine_distance(emb))
    expect = np.array([[0, 1, 2, 1], [1, 0, 1, 0], [2, 1, 0, 1], [1, 0, 1, 0]], float)
    np.testing.assert_allclose(d, expect, atol=1e-6)
    assert (np.diag(d) == 0).all()


# -------------------------------------------------------------------------------------------- triplet


def test_trial_roles_shown_order():
    items = np.array([[5, 6, 7], [5, 6, 7], [9, 3, 4]])
    odd = np.array([6, 5, 4])
    a, p, n = L.trial_roles(items, odd)
    assert a.tolist() == [5, 6, 9] and p.tolist() == [7, 7, 3] and n.tolist() == [6, 5, 4]


# rows: 0 anchor (1,0); 1 (0,1) d=1; 2 at 60 deg d=0.5; 3 (-1,0) d=2; 4 (0,-1) d=1
TRI_EMB = jnp.array([unit(0), unit(90), unit(60), unit(180), unit(270)])
TRI = (jnp.array([0, 0, 0]), jnp.array([1, 0, 1]), jnp.array([2, 3, 4]))  # hinges 0.7, 0, 0.2


def test_triplet_hand_values():
    h = _hinge(TRI_EMB, *TRI)
    np.testing.assert_allclose(h, [0.7, 0.0, 0.2], atol=1e-6)
    assert float(_triplet(TRI_EMB, *TRI)) == pytest.approx(0.3, abs=1e-6)


@pytest.mark.parametrize(("margin", "expect"), [(0.0, [0.5, 0.0, 0.0]), (1.0, [1.5, 0.0, 1.0])])
def test_triplet_margin(margin, expect):
    np.testing.assert_allclose(_hinge(TRI_EMB, *TRI, margin=margin), expect, atol=1e-6)
    assert float(_triplet(TRI_EMB, *TRI, margin=margin)) == pytest.approx(np.mean(expect), abs=1e-6)


def test_triplet_valid_mask():
    assert float(_triplet(TRI_EMB, *TRI, valid=jnp.array([True, False, True]))) == pytest.approx(0.45)
    assert float(_triplet(TRI_EMB, *TRI, valid=jnp.array([False, True, False]))) == 0.0
    none = _triplet(TRI_EMB, *TRI, valid=jnp.zeros(3, bool))
    assert float(none) == 0.0
    g = jax.jit(jax.grad(L.triplet_loss))(TRI_EMB, *TRI, valid=jnp.zeros(3, bool))
    assert np.isfinite(np.asarray(g)).all() and not np.asarray(g).any()


def test_triplet_padding_rows_do_not_leak():
    emb = jnp.concatenate([TRI_EMB, jnp.full((1, 2), jnp.nan)])
    pad = tuple(jnp.concatenate([x, jnp.array([5])]) for x in TRI)
    valid = jnp.array([True, True, True, False])
    assert float(_triplet(emb, *pad, valid=valid)) == pytest.approx(0.3, abs=1e-6)


def test_triplet_gradient_direction():
    # a violated triplet: descending the loss pulls the positive towards the anchor
    emb = jnp.array([unit(0), unit(90), unit(60)])
    idx = (jnp.array([0]), jnp.array([1]), jnp.array([2]))
    g = jax.jit(jax.grad(L.triplet_loss))(emb, *idx)
    step = emb - 0.1 * g
    assert float(L.cosine_distance(step[0], step[1])) < 1.0


def test_hard_extra_triplet_reference():
    # trial 0 violates most; the negative closest to a_0 among the others is trial 1's (n = row 5)
    emb = jnp.array([unit(0), unit(90), unit(60), unit(0), unit(10), unit(20), unit(200)])
    a, p, n = jnp.array([0, 3, 3]), jnp.array([1, 4, 4]), jnp.array([2, 5, 6])
    got = float(_hard(emb, a, p, n))
    want = float(_hinge(emb, a[:1], p[:1], jnp.array([5]))[0])
    assert got == pytest.approx(want, abs=1e-6) and want > 0
    assert float(_hard(emb, a, p, n, valid=jnp.array([True, False, False]))) == 0.0


# ------------------------------------------------------------------------------------------------ RSA


def test_rsa_candidate_pairs_123():
    assert L.rsa_candidate_pairs(24, 6) == 15 + 108 == 123
    full = jnp.ones((24, 24), bool)
    assert int(L.rsa_pair_selection(full, 6).sum()) == 123
    emb, h = random_batch(0)
    _, n = _rsa(jnp.asarray(emb), jnp.asarray(h), full, n_grad=6)
    assert int(n) == 123
    assert L.rsa_candidate_pairs(24, 24) == 276 and L.rsa_candidate_pairs(24, 0) == 0


def test_rsa_perfect_and_anti_correlation():
    emb = jnp.array([unit(0), unit(30), unit(100), unit(170), unit(250)])
    d = L.pairwise_cosine_distance(emb)
    mask = jnp.ones((5, 5), bool)
    assert float(_rsa(emb, d, mask, n_grad=5)[0]) == pytest.approx(-1.0, abs=1e-5)
    assert float(_rsa(emb, 3.0 * d + 1.0, mask, n_grad=5)[0]) == pytest.approx(-1.0, abs=1e-5)
    assert float(_rsa(emb, 2.0 - d, mask, n_grad=5)[0]) == pytest.approx(1.0, abs=1e-5)


def test_rsa_equals_negative_pearson_and_masking_changes_pairs():
    emb, h = random_batch(1)
    rng = np.random.default_rng(2)
    m = rng.random((24, 24)) < 0.7
    m = np.triu(m, 1)
    m = m | m.T
    d = np.asarray(L.pairwise_cosine_distance(jnp.asarray(emb)))
    for mask in (np.ones((24, 24), bool), m):
        r, c = selected_pairs(mask, 6)
        loss, n = _rsa(jnp.asarray(emb), jnp.asarray(h), jnp.asarray(mask), n_grad=6)
        assert int(n) == len(r)
        assert float(loss) == pytest.approx(-float(stats.pearson(d[r, c], h[r, c])), abs=1e-5)
    assert len(selected_pairs(m, 6)[0]) < 123
    # unobserved cells may hold anything, even NaN
    h_nan = np.where(m, h, np.nan).astype(np.float32)
    loss_nan, _ = _rsa(jnp.asarray(emb), jnp.asarray(h_nan), jnp.asarray(m), n_grad=6)
    assert float(loss_nan) == pytest.approx(
        float(_rsa(jnp.asarray(emb), jnp.asarray(h), jnp.asarray(m), n_grad=6)[0])
    )
    assert np.isfinite(
        np.asarray(_rsa_grad(jnp.asarray(emb), jnp.asarray(h_nan), jnp.asarray(m), n_grad=6))
    ).all()
    # the authors' unbiased std gives -r (n - 1) / n
    loss, n = _rsa(jnp.asarray(emb), jnp.asarray(h), jnp.asarray(m), n_grad=6)
    loss1, _ = _rsa(jnp.asarray(emb), jnp.asarray(h), jnp.asarray(m), n_grad=6, ddof=1)
    assert float(loss1) == pytest.approx(float(loss) * (int(n) - 1) / int(n), abs=1e-6)


def test_rsa_reads_upper_triangle_only():
    emb, h = random_batch(3)
    full = np.ones((24, 24), bool)
    a = float(_rsa(jnp.asarray(emb), jnp.asarray(h), jnp.asarray(full), n_grad=6)[0])
    b = float(_rsa(jnp.asarray(emb), jnp.asarray(h), jnp.asarray(np.triu(full, 1)), n_grad=6)[0])
    assert a == b


def test_rsa_stop_gradient_rows():
    emb, h = random_batch(4)
    g = np.asarray(_rsa_grad(jnp.asarray(emb), jnp.asarray(h), jnp.ones((24, 24), bool), n_grad=6))
    assert (g[6:] == 0).all()
    assert (np.linalg.norm(g[:6], axis=1) > 0).all()
    # grad-const pairs move only the grad end: same gradient as with the const rows as true constants
    const = jnp.asarray(emb[6:])

    pairs = L.rsa_pair_selection(jnp.ones((24, 24), bool), 6)  # no const-const pair

    def split(x):
        return L.rsa_loss(jnp.concatenate([x, const]), jnp.asarray(h), pairs, n_grad=24)

    np.testing.assert_allclose(jax.jit(jax.grad(split))(jnp.asarray(emb[:6])), g[:6], atol=1e-6)


def test_rsa_traced_n_grad():
    emb, h = random_batch(5)
    f = jax.jit(lambda e, m: L.rsa_loss_with_count(e, jnp.asarray(h), jnp.ones((24, 24), bool), n_grad=m))
    loss, n = f(jnp.asarray(emb), jnp.int32(6))
    ref, n_ref = _rsa(jnp.asarray(emb), jnp.asarray(h), jnp.ones((24, 24), bool), n_grad=6)
    assert int(n) == int(n_ref) == 123 and float(loss) == pytest.approx(float(ref), abs=1e-6)
    g = jax.jit(jax.grad(lambda e, m: L.rsa_loss(e, jnp.asarray(h), jnp.ones((24, 24), bool), n_grad=m)))
    assert (np.asarray(g(jnp.asarray(emb), jnp.int32(6)))[6:] == 0).all()


def _degenerate_cases():
    emb, h = random_batch(6)
    full = np.ones((24, 24), bool)
    one = np.zeros((24, 24), bool)
    one[0, 9] = one[9, 0] = True
    same = np.tile(emb[:1], (24, 1))
    return {
        "empty mask": (emb, h, np.zeros((24, 24), bool)),
        "one pair": (emb, h, one),
        "constant embeddings": (same, h, full),
        "constant human": (emb, np.ones_like(h), full),
        "zero embeddings": (np.zeros_like(emb), h, full),
    }


@pytest.mark.parametrize("case", list(_degenerate_cases()))
def test_rsa_degenerate_is_zero_with_finite_grads(case):
    emb, h, mask = (jnp.asarray(x) for x in _degenerate_cases()[case])
    loss, _ = _rsa(emb, h, mask, n_grad=6)
    assert float(loss) == 0.0
    g = np.asarray(_rsa_grad(emb, h, mask, n_grad=6))
    assert np.isfinite(g).all()


def test_rsa_bf16_embeddings_reduce_in_float32():
    emb, h = random_batch(7)
    loss = L.rsa_loss(jnp.asarray(emb, jnp.bfloat16), jnp.asarray(h), jnp.ones((24, 24), bool))
    assert loss.dtype == jnp.float32 and np.isfinite(float(loss))


def test_rsa_targets_from_pair_matrix():
    trials = Trials(np.array([[0, 1, 2], [0, 1, 3], [1, 2, 3]]), np.array([2, 3, 1]))
    pm = pair_matrix(trials)
    d, m = L.rsa_targets(pm, np.array([3, 0, 1]))
    # (0, 1) kept together twice out of 2; (3, 0) seen once, not kept; (3, 1) seen twice, never kept
    assert d[1, 2] == 0.0 and d[0, 1] == 1.0 and d[0, 2] == 1.0
    np.testing.assert_array_equal(m, ~np.eye(3, dtype=bool))
    ids = L.sample_rsa_ids(np.arange(200), np.random.default_rng(0))
    assert len(np.unique(ids)) == 24


# ------------------------------------------------------------------------------------------ schedules


def test_beta_linear():
    vals = [float(L.beta_linear(e, 5)) for e in range(7)]
    np.testing.assert_allclose(vals, [0.3, 0.4, 0.5, 0.6, 0.7, 0.7, 0.7], atol=1e-6)
    assert float(L.beta_linear(49, 50)) == pytest.approx(0.7)
    assert float(L.beta_linear(0, 50)) == pytest.approx(0.3)
    assert float(L.beta_linear(0, 1)) == pytest.approx(0.3)
    assert float(L.beta_linear(0.5, 3)) == pytest.approx(0.4)  # fractional epoch: per-step ramp
    assert float(jax.jit(L.beta_linear)(jnp.int32(2), jnp.int32(5))) == pytest.approx(0.5)


def test_beta_capped():
    vals = [float(L.beta_capped(e)) for e in range(7)]
    np.testing.assert_allclose(vals, [0.3, 0.4, 0.5, 0.6, 0.7, 0.7, 0.7], atol=1e-6)
    rsa_only = [float(L.beta_capped(e, start=0.5, cap=1.0)) for e in range(7)]
    np.testing.assert_allclose(rsa_only, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0], atol=1e-6)
    assert float(jax.jit(L.beta_capped)(jnp.int32(1))) == pytest.approx(0.4)


def test_rsa_fires_exact_counts():
    # one compiled program: S is traced, steps >= S never fire
    fires = jax.jit(lambda s: jax.vmap(L.rsa_fires, in_axes=(0, None))(jnp.arange(3100), s))
    for s in [*range(1, 40), 97, 510, 3059, 3060, 3061]:
        got = np.flatnonzero(np.asarray(fires(s)))
        assert len(got) == min(s, 6), s
        np.testing.assert_array_equal(got, L.rsa_steps(s))
        np.testing.assert_array_equal(got, (np.arange(6) * s // 6)[: len(got)] if s >= 6 else np.arange(s))
        if s >= 6:  # evenly spaced: gaps differ by at most one step
            gaps = np.diff(np.append(got, got[0] + s))
            assert gaps.max() - gaps.min() <= 1
    assert L.rsa_steps(3060).tolist() == [0, 510, 1020, 1530, 2040, 2550]
    assert bool(L.rsa_fires(0, 3060)) and not bool(L.rsa_fires(1, 3060)) and bool(L.rsa_fires(2550, 3060))
    assert not bool(L.rsa_fires(3060, 3060)) and not bool(L.rsa_fires(-1, 3060))
    assert int(np.asarray(fires(100)).sum()) == 6
    assert len(L.rsa_steps(100, 3)) == 3


def test_rsa_fires_reference_cadence():
    ref = jax.vmap(L.rsa_fires_reference, in_axes=(0, None))
    got = np.flatnonzero(np.asarray(ref(jnp.arange(3060), 3060)))
    assert got.tolist() == L.rsa_steps(3060).tolist()
    assert int(np.asarray(ref(jnp.arange(20), 20)).sum()) == 7  # the code's 7-per-epoch case


def test_hybrid_loss():
    assert float(L.hybrid_loss(1.0, -0.5, beta=0.4, fire=True)) == pytest.approx(0.7 - 0.2)
    assert float(L.hybrid_loss(1.0, -0.5, beta=0.4, fire=False)) == pytest.approx(0.7)
    assert float(L.hybrid_loss(1.0, jnp.nan, beta=0.4, fire=False)) == pytest.approx(0.7)
    assert float(L.hybrid_loss(2.0, 1.0, alpha=1.0, beta=0.0, fire=True)) == pytest.approx(2.0)

    @jax.jit
    def step(tri, rsa, epoch, t):
        return L.hybrid_loss(tri, rsa, beta=L.beta_linear(epoch, 5), fire=L.rsa_fires(t, 3060))

    assert float(step(1.0, -1.0, 4, 510)) == pytest.approx(0.0, abs=1e-6)
    assert float(step(1.0, -1.0, 4, 511)) == pytest.approx(0.7)


# ------------------------------------------------------------------------------------- budget matched


def test_budget_matched_counts():
    assert L.budget_matched_extra(3060) == 6 * 123 == 738
    assert 12240 + L.budget_matched_extra(3060) == 12978  # paper Table 2, constraints/epoch
    assert L.budget_matched_extra(4) == 4 * 123
    assert L.budget_matched_extra(3060, pairs_per_step=113) == 678
    assert L.budget_matched_extra(3060, k=10, n_grad=2) == 6 * (1 + 16)


def test_extra_triplets_draws_from_training_trials():
    rng = np.random.default_rng(0)
    items = rng.permuted(np.tile(np.arange(30), (50, 1)), axis=1)[:, :3]
    trials = Trials(items, items[:, 1])
    extra = L.extra_triplets(trials, 738, np.random.default_rng(1))
    assert len(extra) == 738
    rows = {tuple(r) + (o,) for r, o in zip(trials.items.tolist(), trials.odd.tolist(), strict=True)}
    assert all(tuple(r) + (o,) in rows for r, o in zip(extra.items.tolist(), extra.odd.tolist(), strict=True))
    again = L.extra_triplets(trials, 738, np.random.default_rng(1))
    np.testing.assert_array_equal(extra.items, again.items)
    assert len(L.extra_triplets(trials, 0, rng)) == 0
    more = L.extra_triplets(trials, 200, rng)  # with replacement: more than there are trials
    assert len(more) == 200


def test_extra_at_step_spreads_budget():
    per = jax.vmap(L.extra_at_step, in_axes=(0, None, None))
    for s, e in [(3060, 738), (10, 738), (7, 3), (5, 0)]:
        counts = np.asarray(per(jnp.arange(s), s, e))
        assert counts.sum() == e and counts.max() <= -(-e // s) and counts.min() >= 0
    ref = np.flatnonzero(
        np.asarray(jax.vmap(L.reference_extra_fires, in_axes=(0, None, None))(jnp.arange(3060), 3060, 738))
    )
    assert len(ref) == 738 and ref[-1] == 2948


# ------------------------------------------------------------------------------ language distillation


CAPS = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.0, 2.0]])


def test_caption_odd_one_out_hand_example():
    items = np.array([[0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 3, 0]])
    assert L.caption_odd_one_out(CAPS, items).tolist() == [2, 2, 2, 0]
    ids = np.array([10, 11, 12, 13])
    assert L.caption_odd_one_out(CAPS, items + 10, ids).tolist() == [12, 12, 12, 10]
    trials = L.caption_trials(Trials(items, items[:, 0]), CAPS)
    np.testing.assert_array_equal(trials.items, items)
    assert trials.odd.tolist() == [2, 2, 2, 0]


def test_caption_distance_matrix_and_mask():
    d = L.caption_distance_matrix(CAPS)
    assert d.shape == (4, 4) and (np.diag(d) == 0).all()
    np.testing.assert_allclose(d, d.T)
    assert d[0, 2] == pytest.approx(1.0) and d[2, 3] == pytest.approx(0.0)
    dist, mask = L.caption_rsa_targets(CAPS)
    assert mask.sum() == 12 and not mask.diagonal().any()
    # used as RSA targets, the caption embeddings themselves fit perfectly
    loss = L.rsa_loss(jnp.asarray(CAPS[:3]), jnp.asarray(dist[:3, :3]), jnp.asarray(mask[:3, :3]), n_grad=3)
    assert float(loss) == pytest.approx(-1.0, abs=1e-5)


# -------------------------------------------------------------------------------------- properties


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    scale=st.floats(0.01, 100.0),
    shift=st.floats(-5.0, 5.0),
)
def test_rsa_invariant_to_affine_human_distances(seed, scale, shift):
    emb, h = random_batch(seed)
    mask = jnp.ones((24, 24), bool)
    a = float(_rsa(jnp.asarray(emb), jnp.asarray(h), mask, n_grad=6)[0])
    b = float(_rsa(jnp.asarray(emb), jnp.asarray(scale * h + shift), mask, n_grad=6)[0])
    assert -1.0 - 1e-5 <= a <= 1.0 + 1e-5
    assert b == pytest.approx(a, abs=2e-4)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), log_scales=st.lists(st.floats(-2.0, 2.0), min_size=9, max_size=9))
def test_triplet_invariant_to_embedding_norm(seed, log_scales):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(9, 5)).astype(np.float32)
    idx = (jnp.array([0, 3, 6]), jnp.array([1, 4, 7]), jnp.array([2, 5, 8]))
    scaled = emb * np.exp(np.array(log_scales, np.float32))[:, None]
    assert float(_triplet(jnp.asarray(scaled), *idx)) == pytest.approx(
        float(_triplet(jnp.asarray(emb), *idx)), abs=1e-5
    )
