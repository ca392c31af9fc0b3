"""Property tests (hypothesis) of Spearman, similarity, RSA masking/relabelling and pair_matrix."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxbgs.data.judgments import Trials
from jaxbgs.data.matrices import PairMatrix, pair_matrix
from jaxbgs.eval import rsa, stats

FAST = settings(max_examples=40, deadline=None)

# integer vectors: exact ties are fine (ranks are exact), no float-tie flakiness
int_vec = st.integers(3, 30).flatmap(
    lambda n: st.tuples(
        hnp.arrays(np.int64, n, elements=st.integers(-20, 20)),
        hnp.arrays(np.int64, n, elements=st.integers(-20, 20)),
    )
)


@FAST
@given(int_vec)
def test_spearman_symmetric(xy):
    x, y = xy
    assert float(stats.spearman(x, y)) == float(stats.spearman(y, x))


@FAST
@given(int_vec, st.sampled_from(["cube", "exp", "shift"]), st.booleans())
def test_spearman_rank_invariant(xy, kind, first):
    # a strictly increasing f keeps every order and tie -> identical ranks -> identical rho
    x, y = xy
    f = {
        "cube": lambda v: v.astype(float) ** 3 + 7,
        "exp": lambda v: np.exp(v / 5.0),
        "shift": lambda v: 3 * v - 100,
    }[kind]
    x2, y2 = (f(x), y) if first else (x, f(y))
    assert float(stats.spearman(x2, y2)) == float(stats.spearman(x, y))


@FAST
@given(int_vec, st.randoms(use_true_random=False))
def test_spearman_invariant_to_joint_permutation(xy, rnd):
    x, y = xy
    perm = np.array(rnd.sample(range(len(x)), len(x)))
    assert abs(float(stats.spearman(x[perm], y[perm])) - float(stats.spearman(x, y))) < 1e-12


# exact zeros or magnitudes in [1e-3, 100]: tiny values would underflow when squared and distort norms
_feature = st.one_of(st.just(0.0), st.floats(1e-3, 100), st.floats(-100, -1e-3))


@FAST
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 6)), elements=_feature),
    st.sampled_from(rsa.METRICS),
)
def test_similarity_matrix_symmetric_and_bounded(x, metric):
    s = rsa.similarity_matrix(x, metric)
    assert s.shape == (len(x), len(x))
    assert not np.isnan(s).any()
    np.testing.assert_allclose(s, s.T, atol=1e-12)
    assert (np.abs(s) <= 1 + 1e-9).all()


@st.composite
def trials_strategy(draw, allow_repeats=False):
    n_videos = draw(st.integers(4, 8))
    n_trials = draw(st.integers(3, 25))
    items, odd = [], []
    for _ in range(n_trials):
        if allow_repeats:
            t = draw(st.lists(st.integers(0, n_videos - 1), min_size=3, max_size=3))
        else:
            t = draw(st.permutations(range(n_videos)))[:3]
        items.append(t)
        odd.append(t[draw(st.integers(0, 2))])
    return n_videos, Trials(items, odd)


@FAST
@given(trials_strategy(), st.integers(0, 2**31), st.randoms(use_true_random=False))
def test_rsa_invariant_under_relabelling(nt, seed, rnd):
    # give every video a new, arbitrary id (a bijection), rebuild the human matrix from the relabelled
    # trials and relabel the embedding rows too: the RSA score must not change
    n_videos, trials = nt
    emb = np.random.default_rng(seed).normal(size=(n_videos, 5))
    ids = np.arange(n_videos)
    new = np.array(rnd.sample(range(1000), n_videos))
    human = pair_matrix(trials)
    trials2 = Trials(new[trials.items], new[trials.odd])
    human2 = pair_matrix(trials2)
    base = rsa.rsa(rsa.aligned_similarity(emb, ids, human), human)
    other = rsa.rsa(rsa.aligned_similarity(emb, new, human2), human2)
    assert other.n_pairs == base.n_pairs
    assert abs(other.rho - base.rho) < 1e-12


@FAST
@given(trials_strategy(), st.integers(0, 2**31))
def test_rsa_ignores_unobserved_pairs(nt, seed):
    # changing model similarity or the human kept-together numbers where a pair was never shown
    # must not change rsa()
    _, trials = nt
    human = pair_matrix(trials)
    rng = np.random.default_rng(seed)
    model = rsa.similarity_matrix(rng.normal(size=(human.n, 4)))
    base = rsa.rsa(model, human)
    unobserved = ~human.mask
    np.fill_diagonal(unobserved, False)
    junk = rng.normal(size=model.shape) * 10
    junk = junk + junk.T
    model2 = np.where(unobserved, junk, model)
    junk_int = rng.integers(0, 50, size=model.shape)
    human2 = PairMatrix(human.ids, human.counts, np.where(unobserved, junk_int + junk_int.T, human.together))
    np.testing.assert_array_equal(human2.similarity, human.similarity)
    assert rsa.rsa(model2, human) == base
    assert rsa.rsa(model, human2) == base
    assert rsa.rsa(model2, human2) == base


@FAST
@given(trials_strategy(allow_repeats=True))
def test_pair_matrix_symmetric_and_consistent(nt):
    _, trials = nt
    h = pair_matrix(trials)
    np.testing.assert_array_equal(h.counts, h.counts.T)
    np.testing.assert_array_equal(h.together, h.together.T)
    assert (np.diag(h.counts) == 0).all() and (np.diag(h.together) == 0).all()
    assert (h.together <= h.counts).all() and (h.together >= 0).all()
    # each trial shows its distinct position pairs once; each keeps one pair when its two kept videos differ
    a, b, c = trials.items.T
    n_shown = int((a != b).sum() + (a != c).sum() + (b != c).sum())
    assert h.counts.sum() == 2 * n_shown
    kept = trials.kept_pair()
    assert h.together.sum() == 2 * int((kept[:, 0] != kept[:, 1]).sum())
    s = h.similarity
    assert ((s >= 0) & (s <= 1)).all()
