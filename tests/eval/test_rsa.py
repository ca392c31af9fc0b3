"""Tests of jaxbgs.eval.rsa: similarity, JL projection, alignment by id, and RSA over observed pairs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats
from sklearn.random_projection import johnson_lindenstrauss_min_dim

from jaxbgs.data.judgments import Trials
from jaxbgs.data.matrices import PairMatrix, pair_matrix
from jaxbgs.errors import InputError
from jaxbgs.eval import rsa

X3 = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 2.0]])

# ---------------------------------------------------------------- similarity_matrix


def test_cosine_hand_computed():
    # rows 0,1: 1 / (1 * sqrt 2); row 2 is orthogonal to both
    s = 1 / np.sqrt(2)
    want = np.array([[1, s, 0], [s, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(rsa.similarity_matrix(X3, "cosine"), want, atol=1e-12)
    np.testing.assert_allclose(rsa.similarity_matrix(X3), want, atol=1e-12)  # cosine is the default


def test_pearson_hand_computed_and_equals_corrcoef():
    # centred rows: [2,-1,-1]/3, [1,1,-2]/3, [-2,-2,4]/3 -> r01 = 3/6 = 0.5, r02 = -6/12 = -0.5, r12 = -1
    want = np.array([[1, 0.5, -0.5], [0.5, 1, -1], [-0.5, -1, 1]])
    got = rsa.similarity_matrix(X3, "pearson")
    np.testing.assert_allclose(got, want, atol=1e-12)
    x = np.random.default_rng(0).normal(size=(6, 9))
    np.testing.assert_allclose(rsa.similarity_matrix(x, "pearson"), np.corrcoef(x), atol=1e-12)


def test_features_are_flattened():
    x = np.random.default_rng(1).normal(size=(4, 2, 3))
    np.testing.assert_allclose(rsa.similarity_matrix(x), rsa.similarity_matrix(x.reshape(4, 6)), atol=1e-12)


def test_zero_rows_give_zero_not_nan():
    x = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [2.0, 1.0, 0.0]])
    s = rsa.similarity_matrix(x, "cosine")
    assert not np.isnan(s).any()
    np.testing.assert_array_equal(s[0], 0.0)
    np.testing.assert_array_equal(s[:, 0], 0.0)
    # a constant row has zero norm once centred: Pearson similarity 0 too
    p = rsa.similarity_matrix(np.array([[5.0, 5.0, 5.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]]), "pearson")
    assert not np.isnan(p).any()
    np.testing.assert_array_equal(p[0], 0.0)
    assert p[1, 2] == pytest.approx(-0.5)  # centred [-1,0,1].[1,-1,0] = -1 over 2 = -0.5


def test_unknown_metric_raises_input_error():
    with pytest.raises(InputError, match="unknown similarity 'euclidean'"):
        rsa.similarity_matrix(X3, "euclidean")


# ---------------------------------------------------------------- JL and sparse projection


def test_jl_min_dim_paper_numbers():
    # paper App. F.3: eps = 0.1 gives 3,353 dims for 50 videos and 4,732 for 250 (as sklearn computes)
    assert rsa.jl_min_dim(50) == 3353
    assert rsa.jl_min_dim(250) == 4732
    for n in (10, 50, 100, 250, 1000):
        assert rsa.jl_min_dim(n) == int(johnson_lindenstrauss_min_dim(n, eps=0.1))


def test_projection_shape_and_determinism():
    x = np.random.default_rng(2).normal(size=(5, 600))
    y = rsa.sparse_random_projection(x, n_components=40, seed=3)
    assert y.shape == (5, 40)
    np.testing.assert_array_equal(y, rsa.sparse_random_projection(x, n_components=40, seed=3))
    assert not np.allclose(y, rsa.sparse_random_projection(x, n_components=40, seed=4))
    # the default target is the JL dimension for n = 5 rows; 600 features is already below it
    assert rsa.jl_min_dim(5) > 600
    np.testing.assert_array_equal(rsa.sparse_random_projection(x), x)


def test_projection_returns_input_when_not_larger():
    x = np.random.default_rng(3).normal(size=(4, 30))
    np.testing.assert_array_equal(rsa.sparse_random_projection(x, n_components=30), x)
    np.testing.assert_array_equal(rsa.sparse_random_projection(x, n_components=100), x)
    # features beyond 2-D are flattened first
    x3 = x.reshape(4, 5, 6)
    np.testing.assert_array_equal(rsa.sparse_random_projection(x3, n_components=30), x)


def test_projection_preserves_distances():
    # JL: a 20 x 20000 matrix projected to k = 2000 keeps every pairwise distance within ~ +-30%
    x = np.random.default_rng(4).normal(size=(20, 20000))
    y = rsa.sparse_random_projection(x, n_components=2000, seed=0)
    assert y.shape == (20, 2000)
    ratio = scipy.spatial.distance.pdist(y) / scipy.spatial.distance.pdist(x)
    assert np.all(np.abs(ratio - 1) < 0.3), (ratio.min(), ratio.max())
    assert abs(ratio.mean() - 1) < 0.05  # unbiased scaling: 1/sqrt(density)/sqrt(k)


# ---------------------------------------------------------------- aligned_similarity


def _human_from_trials() -> PairMatrix:
    # videos 10, 20, 30, 40. Hand counts: pair (10,20) 5 shown / 2 kept; (10,30) 3/1; (20,30) 3/1;
    # (10,40) 2/1; (20,40) 2/0; (30,40) never shown together.
    trials = Trials(
        items=[[10, 20, 30], [10, 20, 30], [10, 20, 40], [20, 10, 40], [10, 30, 20]],
        odd=[30, 10, 40, 20, 20],
    )
    return pair_matrix(trials)


def test_hand_built_pair_matrix():
    h = _human_from_trials()
    np.testing.assert_array_equal(h.ids, [10, 20, 30, 40])
    np.testing.assert_array_equal(h.counts, [[0, 5, 3, 2], [5, 0, 3, 2], [3, 3, 0, 0], [2, 2, 0, 0]])
    np.testing.assert_array_equal(h.together, [[0, 2, 1, 1], [2, 0, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]])
    rows, cols = h.observed_pairs()
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)]


def test_aligned_similarity_reorders_by_id():
    human = _human_from_trials()
    rng = np.random.default_rng(5)
    all_ids = np.array([10, 20, 30, 40, 99])  # 99 is an extra video outside the split: ignored
    emb = rng.normal(size=(5, 7))
    perm = rng.permutation(5)
    got = rsa.aligned_similarity(emb[perm], all_ids[perm], human)
    want = rsa.similarity_matrix(emb[:4])  # rows of human.ids = 10, 20, 30, 40 in order
    np.testing.assert_allclose(got, want, atol=1e-12)
    got_p = rsa.aligned_similarity(emb[perm], all_ids[perm], human, metric="pearson")
    np.testing.assert_allclose(got_p, np.corrcoef(emb[:4]), atol=1e-12)


def test_aligned_similarity_with_projection_is_seeded():
    human = _human_from_trials()
    emb = np.random.default_rng(6).normal(size=(4, 5000))
    ids = np.array([40, 30, 20, 10])
    a = rsa.aligned_similarity(emb, ids, human, project=True, seed=1)
    b = rsa.aligned_similarity(emb, ids, human, project=True, seed=1)
    np.testing.assert_array_equal(a, b)
    # projection keeps angles roughly (JL): close to the unprojected cosine
    np.testing.assert_allclose(a, rsa.aligned_similarity(emb, ids, human), atol=0.15)


def test_aligned_similarity_errors():
    human = _human_from_trials()
    emb = np.zeros((4, 3))
    with pytest.raises(InputError, match="4 embeddings but 3 ids"):
        rsa.aligned_similarity(emb, [10, 20, 30], human)
    with pytest.raises(InputError, match="duplicate ids"):
        rsa.aligned_similarity(emb, [10, 20, 20, 40], human)
    with pytest.raises(InputError, match="no embedding for 1 of the split's videos, e.g. id 30"):
        rsa.aligned_similarity(emb, [10, 20, 50, 40], human)


# ---------------------------------------------------------------- rsa


def _model():
    # model similarity over videos 10, 20, 30, 40; the (30, 40) pair is unobserved by humans
    m = np.eye(4)
    for (i, j), v in {(0, 1): 0.9, (0, 2): 0.2, (0, 3): 0.8, (1, 2): 0.3, (1, 3): 0.1, (2, 3): 0.7}.items():
        m[i, j] = m[j, i] = v
    return m


def test_rsa_hand_computed_over_observed_pairs():
    human = _human_from_trials()
    m = _model()
    res = rsa.rsa(m, human)
    # observed pairs (10,20) (10,30) (10,40) (20,30) (20,40):
    #   human p = [2/5, 1/3, 1/2, 1/3, 0] -> ranks [4, 2.5, 5, 2.5, 1]
    #   model   = [.9, .2, .8, .3, .1]     -> ranks [5, 2, 4, 3, 1]
    #   centred [1, -.5, 2, -.5, -2] . [2, -1, 1, 0, -2] = 8.5; |h|^2 = 9.5, |m|^2 = 10
    rho = 8.5 / np.sqrt(9.5 * 10)
    assert res.n_pairs == 5
    assert res.rho == pytest.approx(rho, abs=1e-12)
    assert res.r2 == pytest.approx(rho**2, abs=1e-12)
    h = [0.4, 1 / 3, 0.5, 1 / 3, 0.0]
    assert res.rho == pytest.approx(scipy.stats.spearmanr([0.9, 0.2, 0.8, 0.3, 0.1], h).statistic, abs=1e-12)
    assert res.r2_ci is None and res.p_permutation is None


def test_rsa_ignores_unobserved_pairs():
    human = _human_from_trials()
    m = _model()
    base = rsa.rsa(m, human)
    for v in (-5.0, 0.0, 0.55, 100.0):
        m2 = m.copy()
        m2[2, 3] = m2[3, 2] = v  # (30, 40) was never shown together
        assert rsa.rsa(m2, human).rho == base.rho
    # control: changing an observed pair does change the result
    m3 = m.copy()
    m3[1, 3] = m3[3, 1] = 0.95
    assert rsa.rsa(m3, human).rho != base.rho
    # including the unobserved pair (human similarity 0 there) would give a different answer
    r, c = np.triu_indices(4, k=1)
    wrong = scipy.stats.spearmanr(m[r, c], human.similarity[r, c]).statistic
    assert abs(wrong - base.rho) > 1e-3


def test_rsa_needs_three_observed_pairs():
    human = _human_from_trials()
    one_trial = pair_matrix(Trials(np.array([[10, 20, 30]]), np.array([30])), np.array([10, 20, 30, 40]))
    assert rsa.rsa(_model(), one_trial).n_pairs == 3  # a trial judges its three pairs
    none = pair_matrix(Trials(np.zeros((0, 3), int), np.zeros(0, int)), human.ids)
    with pytest.raises(InputError, match="0 judged pair.*among its 4 videos.*at least 3"):
        rsa.rsa(_model(), none)


def test_rsa_bootstrap_and_permutation_options():
    rng = np.random.default_rng(7)
    z = rng.normal(size=(12, 3))
    items, odd = [], []
    for _ in range(300):
        t = rng.choice(12, size=3, replace=False)
        s = z[t] @ z[t].T
        pair_sims = [s[1, 2], s[0, 2], s[0, 1]]
        items.append(t)
        odd.append(t[int(np.argmax(pair_sims))])
    human = pair_matrix(Trials(items, odd))
    model = rsa.similarity_matrix(z)
    res = rsa.rsa(model, human, n_boot=300, n_perm=300, seed=1)
    assert res.rho > 0.3
    lo, hi = res.r2_ci
    assert lo <= res.r2 <= hi
    assert res.p_permutation == pytest.approx(1 / 301)  # the true labels beat every relabelling
    again = rsa.rsa(model, human, n_boot=300, n_perm=300, seed=1)
    assert again == res
