"""Social-degradation analyses (SocialFusion §3.3, §4.3): linear-probe decodability on synthetic features
with a known answer (and against `transfer.linear_probe`, whose probe it reuses), and the gradient
conflict degree GCD = 1 - cos (paper line 134) on vectors by hand and on pytrees against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from jaxbgs.analysis import transfer
from jaxbgs.errors import InputError
from jaxbgs.socialfusion import analysis as A
from jaxbgs.socialfusion import metrics as M

LAMS = (1e-3, 1e-1, 10.0)  # a short grid keeps the probes fast


def synthetic(rng, n, c, d, signal):
    """Features whose first c dimensions carry the class (scaled by `signal`) plus unit noise."""
    y = np.arange(n) % c
    x = rng.normal(size=(n, d))
    x[np.arange(n), y] += signal
    return x, y


@pytest.fixture(scope="module")
def probes():
    rng = np.random.default_rng(0)
    feats, labels = {}, {}
    for task, signal in (("pisc_domain", 3.0), ("lam", 3.0), ("pisc_relation", 0.0)):
        c = M.N_CLASSES[task]
        (xtr, ytr), (xte, yte) = synthetic(rng, 90, c, 8, signal), synthetic(rng, 60, c, 8, signal)
        feats[task], labels[task] = (xtr, xte), (ytr, yte)
    return feats, labels, A.decodability(feats, labels, lams=LAMS, seed=0)


def test_decodability_finds_the_signal_and_not_the_noise(probes):
    _, labels, res = probes
    assert set(res) == {"pisc_domain", "lam", "pisc_relation"}
    for task, r in res.items():
        assert set(r.metrics) == set(M.REPORTED[task]) and r.converged
        assert r.chance == M.chance(task, labels[task][1])
        assert r.probabilities.shape == (60, M.N_CLASSES[task])
        np.testing.assert_allclose(r.probabilities.sum(axis=1), 1.0, atol=1e-12)
        assert r.metrics == M.task_metrics(task, r.probabilities, labels[task][1])
    assert res["pisc_domain"].metrics["map"] > 0.9  # 3 sd class shifts: linearly decodable
    assert res["lam"].metrics["acc"] > 0.9 and res["lam"].metrics["map"] > 0.9
    assert res["pisc_relation"].metrics["map"] < 0.45  # pure noise: near the base rate 1/6


def test_decodability_is_the_transfer_probe(probes):
    feats, labels, res = probes
    (xtr, xte), (ytr, yte) = feats["pisc_domain"], labels["pisc_domain"]
    ref = transfer.linear_probe(xtr, ytr, xte, yte, classes=("a", "b", "c"), seeds=(0,), lams=LAMS)
    np.testing.assert_array_equal(res["pisc_domain"].probabilities.argmax(1), ref.predictions[0])
    assert res["pisc_domain"].lam == ref.lam[0]


def test_decodability_flattens_token_features_and_takes_other_class_counts():
    rng = np.random.default_rng(1)
    (xtr, ytr), (xte, yte) = synthetic(rng, 70, 7, 12, 3.0), synthetic(rng, 35, 7, 12, 3.0)
    flat = A.decodability(
        {"emotion": (xtr, xte)}, {"emotion": (ytr, yte)}, n_classes={"emotion": 7}, lams=LAMS
    )
    tokens = A.decodability(
        {"emotion": (xtr.reshape(70, 3, 4), xte.reshape(35, 3, 4))},
        {"emotion": (ytr, yte)},
        n_classes={"emotion": 7},
        lams=LAMS,
    )
    assert tokens["emotion"].metrics == flat["emotion"].metrics  # flatten(f(X)), as the paper's probe
    assert flat["emotion"].chance["acc_uniform"] == 1 / 7


def test_decodability_refuses_bad_input():
    x, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(InputError, match="cannot probe task 'gaze'"):
        A.decodability({"gaze": (x, x)}, {"gaze": (y, y)})
    with pytest.raises(InputError, match="same tasks"):
        A.decodability({"lam": (x, x)}, {"emotion": (y, y)})
    with pytest.raises(InputError, match="class 2"):
        A.decodability({"lam": (x, x)}, {"lam": (y, y + 1)})
    with pytest.raises(InputError, match="pair"):
        A.decodability({"lam": x}, {"lam": (y, y)})


# ------------------------------------------------------------------------------ gradient conflict


def test_gradient_conflict_by_hand():
    e1, e2 = {"w": np.array([1.0, 0.0])}, {"w": np.array([0.0, 2.0])}
    assert A.gradient_conflict(e1, e2) == pytest.approx(1.0)  # orthogonal
    assert A.gradient_conflict(e1, {"w": np.array([3.0, 0.0])}) == pytest.approx(0.0)  # aligned
    assert A.gradient_conflict(e1, {"w": np.array([-0.5, 0.0])}) == pytest.approx(2.0)  # opposed
    # 60 degrees: cos = 1/2 -> GCD = 1/2
    assert A.gradient_conflict(e1, {"w": np.array([0.5, np.sqrt(3) / 2])}) == pytest.approx(0.5, abs=1e-6)
    assert A.gradient_conflict(e1, {"w": np.zeros(2)}) == 1.0  # zero gradient: defined as orthogonal


def test_gradient_conflict_matches_numpy_over_pytree_leaves():
    import jax.numpy as jnp

    rng = np.random.default_rng(2)

    def tree():
        return {
            "a": rng.normal(size=(3, 4)).astype(np.float32),
            "b": [rng.normal(size=5).astype(np.float32), jnp.asarray(rng.normal(size=(2, 2)), jnp.bfloat16)],
        }

    grads = {t: tree() for t in ("gesture", "lam", "emotion")}
    flat = {
        t: np.concatenate([np.ravel(np.asarray(v, np.float32)) for v in (g["a"], *g["b"])])
        for t, g in grads.items()
    }
    cm = A.conflict_matrix(grads)
    assert cm.tasks == ("gesture", "lam", "emotion")
    for i, ti in enumerate(cm.tasks):
        for j, tj in enumerate(cm.tasks):
            a, b = flat[ti], flat[tj]
            cos = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
            assert cm.gcd[i, j] == pytest.approx(1 - cos, abs=1e-5)
    np.testing.assert_allclose(cm.gcd, cm.gcd.T, atol=0)
    np.testing.assert_allclose(np.diag(cm.gcd), 0.0, atol=1e-6)
    assert cm.mean() == pytest.approx((cm.gcd[0, 1] + cm.gcd[0, 2] + cm.gcd[1, 2]) / 3)
    assert A.gradient_conflict(grads["gesture"], grads["lam"]) == pytest.approx(cm.gcd[0, 1], abs=1e-6)
    assert cm.conflicting() == [
        (cm.tasks[i], cm.tasks[j]) for i, j in [(0, 1), (0, 2), (1, 2)] if cm.gcd[i, j] > 1
    ]
    assert cm.to_dict()["mean_gcd"] == cm.mean()


def test_conflict_needs_matching_trees():
    with pytest.raises(InputError, match="tree structure"):
        A.gradient_conflict({"w": np.ones(2)}, {"v": np.ones(2)})
    with pytest.raises(InputError, match="shapes"):
        A.gradient_conflict({"w": np.ones(2)}, {"w": np.ones(3)})
    with pytest.raises(InputError, match="two tasks"):
        A.conflict_matrix({"lam": {"w": np.ones(2)}})
