"""The classification metrics SocialFusion reports, and their chance levels (SocialFusion paper, §4.1
"Evaluation metrics", Tables 1, 3, 5).

    m = task_metrics("pisc_relation", probs, labels)     # {"map": 0.885}
    m = task_metrics("lam", p_looking, labels)           # {"map": ..., "acc": ...}
    c = chance("gesture", labels)                        # {"acc": majority, "acc_uniform": 1/34, "map": ...}

Per task (reference notes `../shared/reference/socialfusion.md` §§2-6):

- gesture (HaGRIDv2, 34 targets), emotion (AffectNet, 8 classes): accuracy (argmax; ties go to the
  first class, as numpy and torch argmax) and mAP;
- pisc_domain (3) and pisc_relation (6): mAP only, as Li et al. 2017 and the paper report;
- lam (Ego4D Looking-At-Me): the Ego4D evaluation's mAP (`lam_map`) and accuracy at score >= 0.5;
- gaze: AUC, min and avg L2, computed in `jaxbgs.socialfusion.gaze` (`task_metrics("gaze", heatmaps,
  {"points": ..., "masks": ..., "sizes": ...})` hands over to it).

mAP is the unweighted mean over classes of one-vs-rest average precision, exactly sklearn's
`average_precision_score` per class (step-wise sum of precision times recall increment, one threshold
per distinct score). verlab's PISC evaluation calls sklearn with `average="macro"` on one-hot labels;
that counts a class absent from the test labels as AP 0, where `mean_ap` leaves it out (its AP is
undefined): the two agree whenever every class occurs. All values are fractions in [0, 1], not percent.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from jaxbgs.errors import InputError

TASKS = ("gesture", "pisc_domain", "pisc_relation", "lam", "gaze", "emotion")
CLASSIFICATION = tuple(t for t in TASKS if t != "gaze")
# Class counts of each classification task (reference §3 PISC, §4 HaGRIDv2 incl. no_gesture, §5, §6).
N_CLASSES = {"gesture": 34, "pisc_domain": 3, "pisc_relation": 6, "lam": 2, "emotion": 8}
# The columns of the paper's tables, per task.
REPORTED = {
    "gesture": ("map", "acc"),
    "pisc_domain": ("map",),
    "pisc_relation": ("map",),
    "lam": ("map", "acc"),
    "gaze": ("min_l2", "avg_l2", "auc"),
    "emotion": ("map", "acc"),
}
LOWER_IS_BETTER = frozenset({"min_l2", "avg_l2"})
LAM_THRESHOLD = 0.5  # Ego4D `compute_confusion_matrix`: looking iff score >= 0.5


# ------------------------------------------------------------------------------------------ checks


def _task(task: str) -> str:
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}", where="task", fix=f"use one of {', '.join(TASKS)}")
    return task


def check_labels(
    labels, n: int | None = None, n_classes: int | None = None, where: str = "labels"
) -> np.ndarray:
    """(n,) int64 class indices in 0..n_classes-1, or an InputError naming `where`."""
    y = np.asarray(labels)
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
        raise InputError(f"{where} must be a 1-D integer array, got {y.dtype} {y.shape}", where=where)
    if n is not None and len(y) != n:
        raise InputError(
            f"{where} has {len(y)} rows, the scores {n}", where=where, fix="pass one label a row"
        )
    if len(y) == 0:
        raise InputError(f"{where} is empty", where=where, fix="evaluate at least one example")
    y = y.astype(np.int64)
    hi = n_classes if n_classes is not None else np.iinfo(np.int64).max
    if y.min() < 0 or y.max() >= hi:
        bad = int(y.min() if y.min() < 0 else y.max())
        raise InputError(
            f"{where} holds class {bad}, outside 0..{hi - 1}",
            where=where,
            fix="labels are class indices into the score columns",
        )
    return y


def _class_scores(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, np.float64)
    if s.ndim != 2 or s.shape[1] < 2:
        raise InputError(
            f"scores must be (n, C) with C >= 2 class columns, got shape {s.shape}",
            where="scores",
            fix="pass one score per class (probabilities or logits)",
        )
    if not np.isfinite(s).all():
        raise InputError("scores hold NaN or inf", where="scores", fix="check the model's outputs")
    return s, check_labels(labels, len(s), s.shape[1])


def _binary(scores, labels, where: str) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, np.float64)
    if s.ndim != 1:
        raise InputError(f"{where} must be 1-D, got shape {s.shape}", where=where)
    if not np.isfinite(s).all():
        raise InputError(f"{where} holds NaN or inf", where=where, fix="check the model's outputs")
    return s, check_labels(labels, len(s), 2)


# -------------------------------------------------------------------------------------- classes


def accuracy(scores, labels) -> float:
    """Top-1 accuracy of (n, C) class scores; a tie goes to the first class (numpy / torch argmax)."""
    s, y = _class_scores(scores, labels)
    return float(np.mean(np.argmax(s, axis=1) == y))


def _step_ap(scores: np.ndarray, positive: np.ndarray, *, envelope: bool) -> np.ndarray:
    """AP of every column of (n, K) scores against (n, K) bool positives; NaN for a column with none.

    One threshold per distinct score: only the last row of a tie group (in descending order) is an
    operating point, so the order inside a tie never matters. Without `envelope` this is sklearn's
    sum_k (R_k - R_{k-1}) P_k; with it, P_k is replaced by max_{j >= k} P_j (VOC)."""
    n = scores.shape[0]
    order = np.argsort(-scores, axis=0, kind="stable")
    s = np.take_along_axis(scores, order, axis=0)
    tp = np.cumsum(np.take_along_axis(positive, order, axis=0), axis=0, dtype=np.float64)
    end = np.ones(s.shape, bool)
    end[:-1] = s[1:] != s[:-1]  # last row of each tie group
    precision = tp / np.arange(1, n + 1)[:, None]
    if envelope:  # running max from the bottom over operating points only
        p = np.where(end, precision, 0.0)
        precision = np.flip(np.maximum.accumulate(np.flip(p, axis=0), axis=0), axis=0)
    tp_end = np.where(end, tp, 0.0)
    prev = np.zeros_like(tp_end)
    prev[1:] = np.maximum.accumulate(tp_end, axis=0)[:-1]  # tp at the previous operating point
    total = tp[-1]
    ap = np.where(end, (tp - prev) * precision, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, ap / total, np.nan)


def average_precision(scores, labels) -> np.ndarray:
    """(C,) one-vs-rest AP of each class, exactly sklearn `average_precision_score(labels == c,
    scores[:, c])` (ties included); NaN for a class absent from `labels` (AP undefined)."""
    s, y = _class_scores(scores, labels)
    return _step_ap(s, y[:, None] == np.arange(s.shape[1]), envelope=False)


def mean_ap(scores, labels) -> float:
    """Macro mean of `average_precision` over the classes present in `labels`."""
    return float(np.nanmean(average_precision(scores, labels)))


# -------------------------------------------------------------------------------------------- LAM


def _p_looking(scores) -> np.ndarray:
    """P(looking) from (n,) scores or (n, 2) class probabilities (column 1, as Ego4D's softmax[1])."""
    s = np.asarray(scores, np.float64)
    if s.ndim == 2 and s.shape[1] == 2:
        if not np.allclose(s.sum(axis=1), 1.0, atol=1e-4) or s.min() < 0:
            raise InputError(
                "(n, 2) LAM scores must be class probabilities (rows summing to 1)",
                where="scores",
                fix="apply a softmax to the logits first, or pass P(looking) as (n,)",
            )
        s = s[:, 1]
    if s.ndim != 1:
        raise InputError(f"LAM scores must be (n,) or (n, 2), got shape {s.shape}", where="scores")
    return s


def lam_map(p_looking, labels) -> float:
    """Ego4D Looking-At-Me mAP (`common/metrics.py run_evaluation`): the VOC AP (area under the
    precision envelope) of "looking" ranked by P(looking), and of "not looking" with labels and scores
    flipped (1 - label, 1 - score); their mean. Ego4D walks the rows in pandas' descending sort,
    whose order inside a tie is unspecified; here a tie group is one operating point (equal to Ego4D
    whenever the scores are distinct). A class absent from `labels` is left out of the mean."""
    p, y = _binary(_p_looking(p_looking), labels, "p_looking")
    pos = y[:, None] == np.array([1, 0])
    return float(np.nanmean(_step_ap(np.stack([p, 1.0 - p], axis=1), pos, envelope=True)))


def lam_accuracy(p_looking, labels) -> float:
    """(TP + TN) / N with "looking" predicted where P(looking) >= 0.5 (Ego4D's confusion matrix)."""
    p, y = _binary(_p_looking(p_looking), labels, "p_looking")
    return float(np.mean((p >= LAM_THRESHOLD) == (y == 1)))


# -------------------------------------------------------------------------------------------- AUC


def roc_auc(scores, labels) -> float:
    """ROC AUC of binary `labels` (0/1 or bool) ranked by `scores`, equal to sklearn `roc_auc_score`
    (a tie counts one half: the Mann-Whitney U / (P N)). Each positive's negatives below and tied are
    counted through one search in the sorted positive scores, O(n log P): cheap for gaze maps, where
    a few annotator pixels face hundreds of thousands of negatives."""
    s = np.asarray(scores).ravel()
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    y = np.asarray(labels).ravel()
    if y.shape != s.shape:
        raise InputError(f"labels has {y.size} entries, scores {s.size}", where="labels")
    if not np.isfinite(s).all():
        raise InputError("scores hold NaN or inf", where="scores", fix="check the model's outputs")
    pos = y.astype(bool)
    if not np.array_equal(pos, y):
        raise InputError("labels must be binary (0/1 or bool)", where="labels")
    n_pos = int(pos.sum())
    n_neg = s.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise InputError(
            f"ROC AUC needs both classes, got {n_pos} positives and {n_neg} negatives", where="labels"
        )
    v = np.sort(s[pos])
    j = np.searchsorted(v, s, side="left")  # number of positive scores strictly below each score
    tied = s == v[np.minimum(j, n_pos - 1)]  # equal to v[j], the first of its copies in v
    upto = np.cumsum(np.bincount(j, minlength=n_pos + 1))[:n_pos]  # #scores <= v_p, every p
    first = np.searchsorted(v, v, side="left")
    equal = np.bincount(j[tied], minlength=n_pos)[first]  # #scores == v_p
    pos_equal = np.searchsorted(v, v, side="right") - first
    neg_tied = equal - pos_equal
    neg_below = (upto - equal) - first  # #scores < v_p minus the positives below v_p
    return float((neg_below.sum() + 0.5 * neg_tied.sum()) / (n_pos * n_neg))


# ------------------------------------------------------------------------------------------ tasks


def _gaze_labels(labels) -> dict:
    if not isinstance(labels, Mapping) or not {"points", "sizes"} <= set(labels):
        raise InputError(
            "gaze labels must be a mapping with keys points, sizes (and optionally masks)",
            where="labels",
            fix="pass {'points': (B, K, 2), 'sizes': (B, 2) image width, height, 'masks': (B, K)}",
        )
    unknown = set(labels) - {"points", "sizes", "masks"}
    if unknown:
        raise InputError(
            f"unknown gaze label keys {sorted(unknown)}", where="labels", fix="use points, sizes, masks"
        )
    return {"masks": None, **labels}


def task_metrics(task: str, scores, labels, *, n_classes: int | None = None) -> dict[str, float]:
    """The metrics the paper reports for `task` (keys of `REPORTED[task]`), as fractions.

    Classification: `scores` (n, C) class scores (lam: (n,) P(looking) or (n, 2) probabilities),
    `labels` (n,) class indices; the scores must have a column per class of the task (`N_CLASSES`, or
    `n_classes` for another protocol, e.g. 7-way AffectNet). Gaze: `scores` (B, h, w) heatmaps and
    `labels` a mapping of `gaze.gaze_metrics`' points, masks and sizes."""
    _task(task)
    if task == "gaze":
        from jaxbgs.socialfusion import gaze

        return gaze.gaze_metrics(scores, **_gaze_labels(labels))
    if task == "lam":
        return {"map": lam_map(scores, labels), "acc": lam_accuracy(scores, labels)}
    s, y = _class_scores(scores, labels)
    c = int(n_classes if n_classes is not None else N_CLASSES[task])
    if s.shape[1] != c:
        raise InputError(
            f"{task} scores have {s.shape[1]} columns, the task {c} classes",
            where="scores",
            fix="score every class of the task (see metrics.N_CLASSES), or pass n_classes",
        )
    out = {"map": mean_ap(s, y)}
    if "acc" in REPORTED[task]:
        out["acc"] = accuracy(s, y)
    return out


def chance(task: str, labels, *, n_classes: int | None = None) -> dict[str, float]:
    """Chance level of each reported metric on these labels.

    Classification: "acc" is the majority class's share (always guessing it), "acc_uniform" 1 / C
    (guessing at random), "map" the mAP of constant scores (the base rate: per class AP = its
    prevalence, so the macro mean is 1 / number of classes present; 0.5 for lam). Gaze (labels as in
    `task_metrics`): "auc" 0.5 and the L2s of a uniform heatmap, and the "_centre" metrics of a
    centre-prior heatmap (`gaze.chance`)."""
    _task(task)
    if task == "gaze":
        from jaxbgs.socialfusion import gaze

        base = gaze.chance(**_gaze_labels(labels))
        return {**base["uniform"], **{f"{k}_centre": v for k, v in base["centre"].items()}}
    c = int(n_classes if n_classes is not None else N_CLASSES[task])
    y = check_labels(labels, n_classes=c)
    out = {
        "acc": float(np.bincount(y, minlength=c).max() / len(y)),
        "acc_uniform": 1.0 / c,
        "map": lam_map(np.full(len(y), 0.5), y) if task == "lam" else mean_ap(np.zeros((len(y), c)), y),
    }
    keys = ("map", "acc", "acc_uniform") if "acc" in REPORTED[task] else ("map",)
    return {k: out[k] for k in keys}


def permutation_null(
    task: str, scores, labels, *, n_perm: int = 1000, seed: int = 0, n_classes: int | None = None
) -> dict[str, dict[str, float]]:
    """Each reported classification metric against `n_perm` shuffles of the labels, scores fixed:
    {metric: {"null": mean under the shuffles, "p": (1 + #shuffles >= observed) / (1 + n_perm)}}.

    `chance`'s constant-score mAP understates what scores unrelated to the labels reach on a small
    split (random scores on 6 classes x 24 samples: mAP 0.19, not 1/6), so a model is past chance
    when it beats the shuffles, not 1 / C. All shuffles are scored in one `_step_ap` call."""
    _task(task)
    if task == "gaze":
        raise InputError("the permutation null is for the classification tasks", where="task")
    if n_perm < 1:
        raise InputError(f"n_perm must be >= 1, got {n_perm}", where="n_perm")
    observed = task_metrics(task, scores, labels, n_classes=n_classes)
    rng = np.random.default_rng(seed)
    if task == "lam":
        p, y = _binary(_p_looking(scores), labels, "p_looking")
        yp = rng.permuted(np.tile(y, (n_perm, 1)), axis=1).T  # (n, P)
        ap = _step_ap(np.repeat(np.stack([p, 1.0 - p], 1), n_perm, axis=1),
                      np.concatenate([yp == 1, yp == 0], axis=1), envelope=True)  # fmt: skip
        with np.errstate(all="ignore"):
            null = {"map": np.nanmean(ap.reshape(2, n_perm), axis=0),
                    "acc": np.mean((p >= LAM_THRESHOLD)[:, None] == (yp == 1), axis=0)}  # fmt: skip
    else:
        s, y = _class_scores(scores, labels)
        c = s.shape[1]
        yp = rng.permuted(np.tile(y, (n_perm, 1)), axis=1).T  # (n, P)
        positive = (yp[:, :, None] == np.arange(c)).reshape(len(y), n_perm * c)
        ap = _step_ap(np.tile(s, (1, n_perm)), positive, envelope=False).reshape(n_perm, c)
        null = {"map": np.nanmean(ap, axis=1), "acc": np.mean(np.argmax(s, axis=1)[:, None] == yp, axis=0)}
    return {
        k: {"null": float(null[k].mean()), "p": float((1 + np.sum(null[k] >= v - 1e-12)) / (1 + n_perm))}
        for k, v in observed.items()
    }
