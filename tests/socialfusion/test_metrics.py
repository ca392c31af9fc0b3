"""SocialFusion classification metrics (paper §4.1): AP / mAP against sklearn on tied random scores and
a 3-item case by hand, the Ego4D LAM mAP against a line-by-line port of its evaluation and 2-item cases
by hand, ROC AUC against sklearn, the per-task dicts and their chance levels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score

from jaxbgs.errors import InputError
from jaxbgs.socialfusion import metrics as M


def tied_scores(rng, n, c, decimals=1):
    """Scores rounded to `decimals`, so most of them are tied with others."""
    return np.round(rng.random((n, c)), decimals)


# ------------------------------------------------------------------------------------------- AP


def test_average_precision_three_items_by_hand():
    # Class 1 ranked by its scores 0.9 (positive), 0.8 (negative), 0.7 (positive): precision 1/1 at
    # recall 1/2, then 2/3 at recall 2/2 -> AP = 0.5 * 1 + 0.5 * 2/3 = 5/6. Class 0's one item (score
    # 0.2) ranks second, below 0.3: precision 1/2 at recall 1 -> AP = 1/2.
    scores = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])
    ap = M.average_precision(scores, [1, 0, 1])
    assert ap[1] == pytest.approx(5 / 6, abs=1e-15)
    assert ap[0] == pytest.approx(1 / 2, abs=1e-15)
    assert M.mean_ap(scores, [1, 0, 1]) == pytest.approx((5 / 6 + 1 / 2) / 2, abs=1e-15)


def test_average_precision_matches_sklearn_with_ties_and_an_absent_class():
    rng = np.random.default_rng(0)
    for trial in range(6):
        c = 3 + trial
        scores = tied_scores(rng, 150, c)
        labels = rng.integers(0, c - 1, size=150)  # the last class never occurs
        ap = M.average_precision(scores, labels)
        want = [average_precision_score(labels == k, scores[:, k]) for k in range(c - 1)]
        np.testing.assert_allclose(ap[:-1], want, rtol=0, atol=1e-12)
        assert np.isnan(ap[-1])  # undefined, left out of the mean
        present = np.unique(labels)
        onehot = labels[:, None] == present[None]
        want_map = average_precision_score(onehot, scores[:, present], average="macro")
        assert M.mean_ap(scores, labels) == pytest.approx(want_map, abs=1e-12)


def test_ap_of_equal_scores_is_the_prevalence_and_row_order_is_irrelevant():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, size=60)
    ap = M.average_precision(np.full((60, 4), 0.25), labels)
    np.testing.assert_allclose(ap, np.bincount(labels, minlength=4) / 60, atol=1e-15)
    scores = tied_scores(rng, 60, 4)
    perm = rng.permutation(60)
    np.testing.assert_array_equal(
        M.average_precision(scores, labels), M.average_precision(scores[perm], labels[perm])
    )


def test_accuracy_matches_sklearn_and_ties_go_to_the_first_class():
    rng = np.random.default_rng(2)
    scores = tied_scores(rng, 80, 5)
    labels = rng.integers(0, 5, size=80)
    assert M.accuracy(scores, labels) == accuracy_score(labels, scores.argmax(1))
    assert M.accuracy([[0.5, 0.5], [0.5, 0.5]], [0, 1]) == 0.5


# ------------------------------------------------------------------------------------------ LAM


def ego4d_map(p, y):
    """Ego4D `common/metrics.py run_evaluation`, row by row (the rows in descending score order)."""
    aps = []
    for flip in (True, False):
        lab, sc = (1 - y, 1 - p) if flip else (y, p)
        order = np.argsort(-sc, kind="stable")
        tp = np.cumsum(lab[order] == 1)
        precision = tp / np.arange(1, len(p) + 1)
        recall = tp / (lab == 1).sum()
        recall = np.concatenate([[0], recall, [1]])
        precision = np.concatenate([[0], precision, [0]])
        for i in range(len(precision) - 2, -1, -1):
            precision[i] = max(precision[i], precision[i + 1])
        idx = np.where(recall[1:] != recall[:-1])[0] + 1
        aps.append(np.sum((recall[idx] - recall[idx - 1]) * precision[idx]))
    return float(np.mean(aps))


def test_lam_two_items_by_hand():
    # Right order: each class's single item ranks first -> AP 1 for both, mAP 1; accuracy 1.
    assert M.lam_map([0.9, 0.2], [1, 0]) == 1.0
    assert M.lam_accuracy([0.9, 0.2], [1, 0]) == 1.0
    # Wrong order: each class's item ranks second -> precision 1/2 at recall 1, AP 1/2, mAP 1/2.
    assert M.lam_map([0.3, 0.7], [1, 0]) == 0.5
    assert M.lam_accuracy([0.3, 0.7], [1, 0]) == 0.0
    # Threshold 0.5 counts as looking (Ego4D: score >= 0.5); (n, 2) probabilities read column 1.
    assert M.lam_accuracy([0.5, 0.49], [1, 0]) == 1.0
    assert M.lam_map([[0.1, 0.9], [0.8, 0.2]], [1, 0]) == 1.0


def test_lam_map_matches_ego4d_and_differs_from_sklearn_by_the_envelope():
    rng = np.random.default_rng(3)
    for _ in range(5):
        y = (rng.random(120) < 0.3).astype(np.int64)
        p = rng.random(120)  # distinct scores: Ego4D's row order is then unambiguous
        assert M.lam_map(p, y) == pytest.approx(ego4d_map(p, y), abs=1e-12)
        step = (average_precision_score(y, p) + average_precision_score(1 - y, 1 - p)) / 2
        assert M.lam_map(p, y) >= step - 1e-12  # the envelope never lowers a precision
    # With ties one group is one operating point: independent of the rows' order.
    p = np.round(rng.random(120), 1)
    perm = rng.permutation(120)
    assert M.lam_map(p, y) == M.lam_map(p[perm], y[perm])


def test_roc_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(4)
    for _ in range(8):
        y = rng.random(200) < rng.uniform(0.05, 0.9)
        s = np.round(rng.random(200), 1)
        assert M.roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert M.roc_auc(np.ones(5), [0, 1, 0, 0, 1]) == 0.5  # all tied
    with pytest.raises(InputError, match="both classes"):
        M.roc_auc([0.1, 0.2], [1, 1])


# ---------------------------------------------------------------------------------------- tasks


def test_task_metrics_report_the_papers_columns():
    rng = np.random.default_rng(5)
    for task in M.CLASSIFICATION:
        c = M.N_CLASSES[task]
        labels = np.arange(60) % c
        scores = rng.random((60, c))
        scores /= scores.sum(axis=1, keepdims=True)  # probabilities, as the LM's option softmax
        got = M.task_metrics(task, scores, labels)
        assert set(got) == set(M.REPORTED[task])
        if task == "lam":
            assert got == {
                "map": M.lam_map(scores[:, 1], labels),
                "acc": M.lam_accuracy(scores[:, 1], labels),
            }
        else:
            assert got["map"] == M.mean_ap(scores, labels)
            if "acc" in got:
                assert got["acc"] == M.accuracy(scores, labels)
    got = M.task_metrics("emotion", rng.random((10, 7)), np.arange(10) % 7, n_classes=7)  # 7-way AffectNet
    assert set(got) == {"map", "acc"}


def test_chance_levels():
    labels = np.array([0, 0, 0, 1, 2, 2])
    # majority 3/6, uniform 1/3, constant scores: per-class AP = prevalence -> mAP = 1/3 (3 present).
    assert M.chance("pisc_domain", labels) == {"map": pytest.approx(1 / 3)}
    got = M.chance("emotion", labels)
    assert got == {"map": pytest.approx(1 / 3), "acc": 0.5, "acc_uniform": 1 / 8}
    got = M.chance("lam", [1, 0, 0, 0])
    assert got == {"map": 0.5, "acc": 0.75, "acc_uniform": 0.5}


def test_bad_input_is_an_input_error():
    with pytest.raises(InputError, match="unknown task"):
        M.task_metrics("gaze_direction", np.zeros((2, 2)), [0, 1])
    with pytest.raises(InputError, match="NaN"):
        M.mean_ap([[np.nan, 1.0], [0.0, 1.0]], [0, 1])
    with pytest.raises(InputError, match="class 3"):
        M.accuracy(np.zeros((2, 3)), [0, 3])
    with pytest.raises(InputError, match="6 columns"):
        M.task_metrics("pisc_domain", np.zeros((2, 6)), [0, 1])
    with pytest.raises(InputError, match="rows summing to 1"):
        M.lam_map([[2.0, 3.0]], [1])
    with pytest.raises(InputError, match="points, sizes"):
        M.task_metrics("gaze", np.zeros((1, 64, 64)), [0])


def _looped_null(task, scores, y, n_perm, seed):
    """The same shuffles as `permutation_null`, scored one at a time with the public metrics."""
    shuffled = np.random.default_rng(seed).permuted(np.tile(y, (n_perm, 1)), axis=1)
    rows = [M.task_metrics(task, scores, row) for row in shuffled]
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


@pytest.mark.parametrize("task", ["pisc_relation", "emotion", "lam"])
def test_permutation_null_equals_scoring_each_shuffle(task):
    rng = np.random.default_rng(4)
    c = M.N_CLASSES[task]
    y = np.repeat(np.arange(c), 5)
    scores = rng.random(len(y)) if task == "lam" else rng.normal(size=(len(y), c))
    scores = scores + 0.3 * (y == 1) if task == "lam" else scores + np.eye(c)[y]  # somewhat informative
    got = M.permutation_null(task, scores, y, n_perm=200, seed=7)
    loop = _looped_null(task, scores, y, 200, 7)
    observed = M.task_metrics(task, scores, y)
    assert set(got) == set(observed)
    for k, null in loop.items():
        assert got[k]["null"] == pytest.approx(null.mean(), abs=1e-12)
        assert got[k]["p"] == pytest.approx((1 + np.sum(null >= observed[k] - 1e-12)) / 201)


def test_shuffled_labels_beat_one_over_c_on_small_splits():
    # Why evaluation reports the null: unrelated scores on 6 classes x 24 samples reach mAP ~0.19.
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(6), 24)
    unrelated = M.permutation_null("pisc_relation", rng.random((144, 6)), y, n_perm=500)
    assert 0.18 < unrelated["map"]["null"] < 0.21 and M.chance("pisc_relation", y)["map"] == pytest.approx(
        1 / 6
    )
    assert unrelated["map"]["p"] > 0.05
    informative = M.permutation_null("pisc_relation", np.eye(6)[y] + rng.random((144, 6)), y, n_perm=500)
    assert informative["map"]["p"] == pytest.approx(1 / 501)


def test_permutation_null_rejects_gaze_and_no_shuffles():
    y = np.array([0, 1, 0, 1])
    with pytest.raises(InputError, match="classification"):
        M.permutation_null("gaze", np.zeros((4, 8, 8)), y)
    with pytest.raises(InputError, match="n_perm"):
        M.permutation_null("lam", np.full(4, 0.5), y, n_perm=0)
