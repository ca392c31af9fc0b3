"""Social-affective linear probes (BGS paper §3.3.2, Appendix H, Fig. 4).

A ridge probe per rated attribute, fitted on the training videos and scored on the test videos (the
same stimulus split as the judgments), so a probe result says what a representation makes linearly
readable about videos it never saw during fine-tuning. The paper leaves the probe details open
(the authors' code hides them in DeepJuice); the choices here, all overridable:

- features standardised with training statistics (constant features stay 0), targets centred: the
  ridge penalty then means the same thing for every backbone. Pearson r and the chosen alpha do not
  change when the ratings are z-scored first, as the paper does;
- alpha per attribute by k-fold cross-validation on the training videos only (pooled out-of-fold
  squared error; a tie goes to the larger alpha), from `ALPHAS`;
- score: Pearson r on the test videos; p from a permutation test that shuffles the held-out ratings
  5,000 times (paper: "5,000 shuffled held-out ratings").

A missing rating (NaN) drops that video for that attribute only; the counts are in the result.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxbgs.errors import InputError

ALPHAS = np.logspace(-3, 5, 17)
# The five attributes of paper §3.3.2 / Fig. 4 (annotations.csv also rates scene and action features).
SOCIAL_AFFECTIVE = ("communication", "valence", "arousal", "intimacy", "dominance")
_TIE = 1e-12  # a null r this close to the observed one counts as reaching it (rounding, not evidence)


@dataclasses.dataclass(frozen=True, eq=False)
class ProbeResult:
    names: tuple[str, ...]
    r: np.ndarray  # (m,) Pearson r on the test videos
    p: np.ndarray  # (m,) two-sided permutation p
    alpha: np.ndarray  # (m,) ridge penalty chosen by cross-validation
    n_train: np.ndarray  # (m,) training videos with a rating for the attribute
    n_test: np.ndarray  # (m,) test videos with a rating
    n_missing_train: np.ndarray  # (m,) training videos dropped for a missing rating
    n_missing_test: np.ndarray
    cv_mse: np.ndarray  # (m, n_alphas) out-of-fold mean squared error per alpha
    alphas: np.ndarray
    predictions: tuple[np.ndarray, ...]  # per attribute, test predictions on its rated test videos
    targets: tuple[np.ndarray, ...]  # the matching held-out ratings
    folds: int
    n_perm: int
    seed: int

    def table(self) -> list[dict]:
        """One plain row per attribute; `alpha_at_edge` flags a choice the grid may have cut short."""
        edge = (self.alpha == self.alphas[0]) | (self.alpha == self.alphas[-1])
        return [
            {
                "attribute": n,
                "r": float(self.r[j]),
                "p": float(self.p[j]),
                "alpha": float(self.alpha[j]),
                "n_train": int(self.n_train[j]),
                "n_test": int(self.n_test[j]),
                "n_missing": int(self.n_missing_train[j] + self.n_missing_test[j]),
                "alpha_at_edge": bool(edge[j]),
            }
            for j, n in enumerate(self.names)
        ]

    def row(self, name: str) -> dict:
        if name not in self.names:
            raise InputError(f"no attribute {name!r}", fix=f"use one of {', '.join(self.names)}")
        return self.table()[self.names.index(name)]


def permutations(n: int, n_perm: int, seed: int) -> np.ndarray:
    """(n_perm, n) shuffles of the n held-out ratings: public so a reference loop can use the same ones."""
    return np.random.default_rng(seed).permuted(np.tile(np.arange(n), (n_perm, 1)), axis=1)


def ridge_path(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, alphas) -> np.ndarray:
    """Ridge predictions (n_alphas, n_eval, m) for every alpha and target from one SVD.

    Minimises ||y - b0 - Z b||^2 + alpha ||b||^2 with Z the features standardised by x_train's mean
    and standard deviation; with Z = U S V^T, b = V diag(s / (s^2 + alpha)) U^T (y - mean y).
    """
    mu = x_train.mean(0)
    sd = x_train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    z = (x_train - mu) / sd
    y_mean = y_train.mean(0)
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    uty = u.T @ (y_train - y_mean)  # (r, m)
    ze = ((x_eval - mu) / sd) @ vt.T  # (n_eval, r)
    shrink = s / (s * s + np.asarray(alphas, np.float64)[:, None])  # (A, r)
    return (ze[None] * shrink[:, None, :]) @ uty + y_mean


def _cv_mse(x: np.ndarray, y: np.ndarray, alphas: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(m, A) pooled out-of-fold mean squared error; fold membership depends only on (len(x), seed)."""
    fold_of = np.empty(len(x), np.int64)
    for f, part in enumerate(np.array_split(np.random.default_rng(seed).permutation(len(x)), folds)):
        fold_of[part] = f
    sse = np.zeros((len(alphas), y.shape[1]))
    for f in range(folds):  # a handful of folds; alphas and attributes are vectorised inside
        ev = fold_of == f
        err = ridge_path(x[~ev], y[~ev], x[ev], alphas) - y[ev]
        sse += (err * err).sum(1)
    return (sse / len(x)).T


def _unit(v: np.ndarray) -> np.ndarray | None:
    """Centred to unit norm, so a dot product of two is their Pearson r; None when constant."""
    c = v - v.mean(-1, keepdims=True)
    norm = np.linalg.norm(c, axis=-1, keepdims=True)
    return None if not np.all(norm > 1e-12 * max(1.0, float(np.abs(v).max()))) else c / norm


def _pearson_and_p(pred: np.ndarray, y: np.ndarray, perms: np.ndarray) -> tuple[float, float]:
    """r and two-sided p = (1 + #{|r_perm| >= |r|}) / (1 + n_perm), all shuffles in one product."""
    zp, zy = _unit(pred), _unit(y)
    if zp is None or zy is None:
        return 0.0, 1.0
    r = float(zp @ zy)
    null = zy[perms] @ zp  # a shuffle keeps the mean and norm, so shuffled unit targets stay unit
    return r, float((1 + np.count_nonzero(np.abs(null) >= abs(r) - _TIE)) / (1 + len(perms)))


def _index(name: str, idx, n: int) -> np.ndarray:
    idx = np.asarray(idx)
    if idx.ndim != 1 or len(idx) == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise InputError(
            f"{name} must be a non-empty 1-D integer array (got shape {idx.shape}, dtype {idx.dtype})",
            fix=f"pass the row numbers of the {name.removesuffix('_idx')} videos in `features`",
        )
    if idx.min() < 0 or idx.max() >= n:
        raise InputError(
            f"{name} holds row {int(idx.min() if idx.min() < 0 else idx.max())}, outside 0..{n - 1}",
            fix="indices are rows of `features` and `ratings`",
        )
    if len(np.unique(idx)) != len(idx):
        raise InputError(f"{name} repeats a row", fix="list each video once")
    return idx.astype(np.int64)


def _check(features, ratings, names, train_idx, test_idx, alphas, folds, n_perm):
    x = np.asarray(features, np.float64)
    if x.ndim != 2:
        raise InputError(
            f"features must be 2-D (n_videos, d), got shape {x.shape}",
            fix="flatten each video's embedding to one row",
        )
    if not np.isfinite(x).all():
        raise InputError("features hold NaN or inf values", fix="embed every video used by the probe")
    y = np.asarray(ratings, np.float64)
    y = y[:, None] if y.ndim == 1 else y
    if y.ndim != 2 or len(y) != len(x):
        raise InputError(
            f"ratings must be (n_videos, n_attributes) with n_videos = {len(x)} rows like features, "
            f"got shape {np.shape(ratings)}",
            fix="give one ratings row per features row (NaN where a rating is missing)",
        )
    names = (names,) if isinstance(names, str) else tuple(str(n) for n in names)
    if len(names) != y.shape[1] or len(set(names)) != len(names):
        raise InputError(
            f"names has {len(names)} entries ({len(set(names))} distinct) for {y.shape[1]} ratings columns",
            fix="give one distinct name per ratings column",
        )
    tr, te = _index("train_idx", train_idx, len(x)), _index("test_idx", test_idx, len(x))
    both = np.intersect1d(tr, te)
    if len(both):
        raise InputError(
            f"train_idx and test_idx share {len(both)} row(s), e.g. {int(both[0])}",
            fix="the probe is scored on held-out videos: make the splits disjoint",
        )
    a = np.asarray(alphas, np.float64)
    if a.ndim != 1 or len(a) == 0 or not (np.isfinite(a) & (a > 0)).all():
        raise InputError("alphas must be a non-empty 1-D array of positive numbers", fix="e.g. ALPHAS")
    if int(folds) != folds or folds < 2:
        raise InputError(f"folds must be an integer >= 2, got {folds}", fix="e.g. folds=5")
    if int(n_perm) != n_perm or n_perm < 1:
        raise InputError(f"n_perm must be a positive integer, got {n_perm}", fix="e.g. n_perm=5000")
    return x, y, names, tr, te, np.sort(a)


def probe(
    features: np.ndarray,
    ratings: np.ndarray,
    names: Sequence[str],
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    *,
    alphas=ALPHAS,
    folds: int = 5,
    n_perm: int = 5_000,
    seed: int = 0,
) -> ProbeResult:
    """Ridge-probe every ratings column from `features`, fit on `train_idx` rows, scored on `test_idx`.

    features (n, d) and ratings (n, m) share rows; NaN ratings drop that video for that attribute.
    Attributes with the same training rows are solved together (one SVD per fold for all alphas and
    attributes). p is two-sided: (1 + #{|r_perm| >= |r|}) / (1 + n_perm), shuffling the held-out
    ratings against fixed predictions; its floor is 1 / (1 + n_perm). The same shuffles (from `seed`)
    serve every attribute with the same number of test videos.
    """
    x, y, names, tr, te, alphas = _check(features, ratings, names, train_idx, test_idx, alphas, folds, n_perm)
    m = y.shape[1]
    have_tr, have_te = ~np.isnan(y[tr]), ~np.isnan(y[te])
    for j in range(m):
        if have_tr[:, j].sum() < max(folds, 3) or have_te[:, j].sum() < 3:
            raise InputError(
                f"attribute {names[j]!r} has {int(have_tr[:, j].sum())} rated training and "
                f"{int(have_te[:, j].sum())} rated test videos",
                fix=f"a probe needs at least max(folds, 3) = {max(folds, 3)} training and 3 test ratings",
            )
    alpha = np.empty(m)
    cv = np.empty((m, len(alphas)))
    pred_te = np.empty((len(te), m))
    patterns, group = np.unique(have_tr.T, axis=0, return_inverse=True)
    for g, rows in enumerate(patterns):  # usually one group: every attribute rated for every video
        cols = np.flatnonzero(group.ravel() == g)
        xg, yg = x[tr[rows]], y[tr[rows]][:, cols]
        cv[cols] = _cv_mse(xg, yg, alphas, folds, seed)
        best = len(alphas) - 1 - np.argmin(cv[cols][:, ::-1], axis=1)  # ties -> more shrinkage
        alpha[cols] = alphas[best]
        path = ridge_path(xg, yg, x[te], alphas)  # (A, n_test, len(cols))
        pred_te[:, cols] = path[best, :, np.arange(len(cols))].T
    r, p, preds, targets, perms = np.empty(m), np.empty(m), [], [], {}
    for j in range(m):
        keep = have_te[:, j]
        n = int(keep.sum())
        if n not in perms:
            perms[n] = permutations(n, int(n_perm), seed)
        preds.append(pred_te[keep, j])
        targets.append(y[te[keep], j])
        r[j], p[j] = _pearson_and_p(preds[-1], targets[-1], perms[n])
    n_train, n_test = have_tr.sum(0), have_te.sum(0)
    return ProbeResult(
        names=names,
        r=r,
        p=p,
        alpha=alpha,
        n_train=n_train,
        n_test=n_test,
        n_missing_train=len(tr) - n_train,
        n_missing_test=len(te) - n_test,
        cv_mse=cv,
        alphas=alphas,
        predictions=tuple(preds),
        targets=tuple(targets),
        folds=int(folds),
        n_perm=int(n_perm),
        seed=int(seed),
    )


def _by_id(embeddings, ids: np.ndarray, n_videos: int, emb_ids) -> np.ndarray:
    """Rows of `embeddings` for `ids`, from a {id: vector} mapping or an array (rows = emb_ids)."""
    if isinstance(embeddings, Mapping):
        missing = [int(i) for i in ids if int(i) not in embeddings]
        if missing:
            raise InputError(
                f"embeddings_by_id has no entry for video id(s) {missing[:5]} ({len(missing)} in all)",
                fix="embed every train and test video",
            )
        return np.stack([np.asarray(embeddings[int(i)], np.float64).ravel() for i in ids])
    e = np.asarray(embeddings, np.float64)
    row_ids = np.arange(n_videos) if emb_ids is None else np.asarray(emb_ids)
    if e.ndim < 2 or len(e) != len(row_ids):
        raise InputError(
            f"embeddings_by_id has shape {e.shape}; expected ({len(row_ids)}, d): "
            + ("one row per video id" if emb_ids is None else "one row per entry of ids"),
            fix="pass a {id: vector} mapping, an array in id order, or an array with ids=",
        )
    pos = {int(i): k for k, i in enumerate(row_ids)}
    missing = [int(i) for i in ids if int(i) not in pos]
    if missing:
        raise InputError(
            f"embeddings_by_id has no row for video id(s) {missing[:5]} ({len(missing)} in all)",
            fix="embed every train and test video",
        )
    return e[[pos[int(i)] for i in ids]].reshape(len(ids), -1)


def probe_human(
    root: str | os.PathLike,
    embeddings_by_id,
    *,
    ids=None,
    attributes: Sequence[str] | None = None,
    **kwargs,
) -> ProbeResult:
    """Probe the released ratings (`annotations.csv`) with the judgments' 200/50 train/test videos.

    `embeddings_by_id`: a {video id: vector} mapping, an (n_videos, ...) array in id order, or an
    array whose rows are the videos `ids`. `attributes` picks rating columns (default: all of them;
    `SOCIAL_AFFECTIVE` is the paper's five). Other keywords go to `probe`.
    """
    from jaxbgs.data.dataset import load_human_data

    data = load_human_data(Path(root))
    ratings, names = data.ratings()
    if attributes is not None:
        unknown = [a for a in attributes if a not in names]
        if unknown:
            raise InputError(
                f"attribute(s) {unknown} not rated in annotations.csv", fix=f"use {', '.join(names)}"
            )
        ratings = ratings[:, [names.index(a) for a in attributes]]
        names = list(attributes)
    use = np.concatenate([data.train_ids, data.test_ids])
    x = _by_id(embeddings_by_id, use, len(data.video_names), ids)
    n_tr = len(data.train_ids)
    return probe(x, ratings[use], names, np.arange(n_tr), np.arange(n_tr, len(use)), **kwargs)
