"""Why VLM pre-training hurts social tasks: linear decodability and gradient conflict of frozen encoders
(SocialFusion paper, §3.3 "Investigating VLM social degradation" and §4.3, Tables 4 and 5).

    probes = decodability({"pisc_domain": (x_tr, x_te), ...}, {"pisc_domain": (y_tr, y_te), ...})
    probes["pisc_domain"].metrics                   # {"map": ...}, as Table 5 reports it
    cm = conflict_matrix({"gesture": g1, "lam": g2, "emotion": g3})   # g: gradient pytrees
    cm.gcd, cm.mean()                               # pairwise 1 - cos, their mean over pairs

Decodability (paper, the equation after "we train a linear classifier", line 121 of the text): per
task t, W_t* = argmin CE(W_t flatten(f(X_t)) + b_t, Y_t) on frozen features, scored on held-out rows.
The probe is `jaxbgs.analysis.transfer`'s multinomial logistic regression (standardised features, L2
strength chosen on a stratified validation split of the training rows, then refitted on all of them);
its softmax probabilities are scored with `metrics.task_metrics`, so a probe's mAP is the same
quantity as the model's. Gaze is not a classification task and is not probed (the paper probes its
T = 5 classification tasks).

Compatibility (paper line 134, after Chai et al. 2024): GCD(g_i, g_j) = 1 - cos(phi_ij), in [0, 2],
with g_t the gradient of task t's loss over the model's active parameters; GCD > 1 means conflicting
(§4.3). Gradients are flattened over every pytree leaf and compared in float32.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence

import numpy as np

from jaxbgs.analysis import transfer
from jaxbgs.errors import InputError
from jaxbgs.socialfusion import metrics

# ---------------------------------------------------------------------------------- decodability


@dataclasses.dataclass(frozen=True, eq=False)
class ProbeResult:
    """One task's linear probe, scored on its test rows."""

    task: str
    metrics: dict[str, float]  # `metrics.task_metrics` of the probe's probabilities
    chance: dict[str, float]  # `metrics.chance` of the test labels
    lam: float  # the chosen L2 strength
    val_accuracy: np.ndarray  # (L,) validation accuracy of each lam tried
    converged: bool
    probabilities: np.ndarray  # (n_test, C) softmax of the probe's logits
    n_train: int
    n_test: int

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "metrics": self.metrics,
            "chance": self.chance,
            "lam": self.lam,
            "converged": self.converged,
            "n_train": self.n_train,
            "n_test": self.n_test,
        }


def _pair(task: str, value, what: str) -> tuple:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise InputError(
            f"{what} of task {task!r} must be a (train, test) pair",
            where=f"{what}[{task!r}]",
            fix="pass (train array, test array) per task",
        )
    return tuple(value)


def _flat_features(task: str, x, split: str) -> np.ndarray:
    """(n, prod(rest)) float64: flatten(f(X_t)) as in the paper's probe equation."""
    x = np.asarray(x, np.float64)
    where = f"features[{task!r}] {split}"
    if x.ndim < 2 or len(x) == 0:
        raise InputError(f"need (n, ...) features with n >= 1, got shape {x.shape}", where=where)
    if not np.isfinite(x).all():
        raise InputError("features hold NaN or inf", where=where, fix="check the encoder's outputs")
    return x.reshape(len(x), -1)


def decodability(
    features_by_task: Mapping[str, Sequence],
    labels_by_task: Mapping[str, Sequence],
    *,
    n_classes: Mapping[str, int] | None = None,
    lams=transfer.LAMBDAS,
    val_fraction: float = 0.2,
    seed: int = 0,
    backend: str = "auto",
) -> dict[str, ProbeResult]:
    """Linear-probe decodability of frozen encoder features, per task (Table 5).

    `features_by_task[t]` = (train (n, ...), test (m, ...)) features, flattened per row;
    `labels_by_task[t]` = (train (n,), test (m,)) class indices. Classes per task default to
    `metrics.N_CLASSES` (override with `n_classes`, e.g. 7 for AffectNet without Contempt). `seed`
    draws the validation split that picks lam from `lams`; the objective is convex, so it changes
    nothing else."""
    if set(features_by_task) != set(labels_by_task):
        raise InputError(
            f"features name tasks {sorted(features_by_task)}, labels {sorted(labels_by_task)}",
            where="labels_by_task",
            fix="give features and labels for the same tasks",
        )
    if not features_by_task:
        raise InputError("no tasks to probe", where="features_by_task")
    grid = np.sort(np.asarray(lams, np.float64))
    if grid.ndim != 1 or not len(grid) or not (np.isfinite(grid) & (grid > 0)).all():
        raise InputError("lams must be a non-empty 1-D array of positive numbers", where="lams")
    n_classes = dict(n_classes or {})
    data = {  # every task checked before any probe is fitted
        task: _task_data(task, features_by_task[task], labels_by_task[task], n_classes)
        for task in features_by_task
    }
    out: dict[str, ProbeResult] = {}
    for task, (x_tr, y_tr, x_te, y_te, c) in data.items():
        j, val_acc, fit = transfer.select_lambda(
            x_tr, y_tr, n_classes=c, lams=grid, val_fraction=val_fraction, seed=seed, backend=backend
        )
        final = transfer.fit_softmax(x_tr, y_tr, grid[j], n_classes=c, init=fit, backend=backend)
        logits = final.logits(x_te)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = e / e.sum(axis=1, keepdims=True)
        out[task] = ProbeResult(
            task=task,
            metrics=metrics.task_metrics(task, probs, y_te, n_classes=c),
            chance=metrics.chance(task, y_te, n_classes=c),
            lam=float(grid[j]),
            val_accuracy=val_acc,
            converged=bool(fit.converged and final.converged),
            probabilities=probs,
            n_train=len(y_tr),
            n_test=len(y_te),
        )
    return out


def _task_data(task: str, features, labels, n_classes: Mapping[str, int]) -> tuple:
    """(x_train, y_train, x_test, y_test, C) of one task, checked."""
    if task not in metrics.CLASSIFICATION:
        raise InputError(
            f"cannot probe task {task!r}",
            where="features_by_task",
            fix=f"probe the classification tasks: {', '.join(metrics.CLASSIFICATION)}",
        )
    c = int(n_classes.get(task, metrics.N_CLASSES[task]))
    splits = ("train", "test")
    x_tr, x_te = (
        _flat_features(task, x, s) for x, s in zip(_pair(task, features, "features"), splits, strict=True)
    )
    if x_tr.shape[1] != x_te.shape[1]:
        raise InputError(
            f"train rows have {x_tr.shape[1]} features, test rows {x_te.shape[1]}",
            where=f"features[{task!r}]",
        )
    y_tr, y_te = (
        metrics.check_labels(y, len(x), c, where=f"labels[{task!r}] {s}")
        for y, x, s in zip(_pair(task, labels, "labels"), (x_tr, x_te), splits, strict=True)
    )
    if len(np.unique(y_tr)) < 2:
        raise InputError("the training labels hold fewer than two classes", where=f"labels[{task!r}] train")
    return x_tr, y_tr, x_te, y_te, c


# ------------------------------------------------------------------------------ gradient conflict


@functools.cache
def _gram_fn():
    """The jitted (T, T) Gram matrix of T lists of leaves (compiled once per tree shape)."""
    import jax
    import jax.numpy as jnp

    def gram(leaves):  # pairwise dot products: no (T, n) stack of a large leaf is materialised
        t = len(leaves)
        acc = {(i, j): jnp.float32(0) for i in range(t) for j in range(i, t)}
        for parts in zip(*leaves, strict=True):
            flat = [jnp.ravel(a).astype(jnp.float32) for a in parts]
            for i, j in acc:
                acc[i, j] = acc[i, j] + jnp.vdot(flat[i], flat[j], precision=jax.lax.Precision.HIGHEST)
        return jnp.stack([jnp.stack([acc[min(i, j), max(i, j)] for j in range(t)]) for i in range(t)])

    return jax.jit(gram)


def _gram(grads: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """(T, T) inner products of T same-structured gradient pytrees, and their (T,) norms: float32
    dot products leaf by leaf, summed (no flat copy of the whole gradient is ever built)."""
    import jax
    import jax.numpy as jnp

    leaves, structs = zip(*(jax.tree_util.tree_flatten(g) for g in grads), strict=True)
    for t, s in enumerate(structs[1:], start=1):
        if s != structs[0]:
            raise InputError(
                f"gradient {t} has a different tree structure from gradient 0",
                where="grads",
                fix="take every task's gradient with respect to the same parameters",
            )
    if not leaves[0]:
        raise InputError("the gradients hold no arrays", where="grads")
    for k, parts in enumerate(zip(*leaves, strict=True)):
        shapes = {jnp.shape(a) for a in parts}
        if len(shapes) != 1:
            raise InputError(f"leaf {k} has shapes {sorted(shapes)} across tasks", where="grads")

    g = np.asarray(_gram_fn()(leaves), np.float64)
    if not np.isfinite(g).all():
        raise InputError("the gradients hold NaN or inf (or overflow float32)", where="grads")
    return g, np.sqrt(np.maximum(np.diag(g), 0.0))


def _gcd(g: np.ndarray, norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cos, GCD); where either gradient is zero the angle is undefined: cos := 0, GCD := 1 (treated
    as orthogonal, on the conflict threshold but not past it)."""
    den = np.outer(norm, norm)
    cos = np.divide(g, den, out=np.zeros_like(g), where=den > 0)
    cos = np.clip(cos, -1.0, 1.0)
    return cos, 1.0 - cos


def gradient_conflict(grads_a, grads_b) -> float:
    """GCD(g_a, g_b) = 1 - cos(g_a, g_b) in [0, 2] over all leaves of two gradient pytrees (paper
    line 134); 1 where either gradient is all zero."""
    g, norm = _gram([grads_a, grads_b])
    return float(_gcd(g, norm)[1][0, 1])


@dataclasses.dataclass(frozen=True, eq=False)
class ConflictMatrix:
    """Pairwise gradient conflict of the tasks' gradients (Table 4)."""

    tasks: tuple[str, ...]
    cosine: np.ndarray  # (T, T)
    gcd: np.ndarray  # (T, T) = 1 - cosine
    norms: np.ndarray  # (T,) gradient norms (0 flags an undefined row)

    def mean(self) -> float:
        """Mean GCD over the T (T - 1) / 2 distinct task pairs."""
        i, j = np.triu_indices(len(self.tasks), k=1)
        return float(self.gcd[i, j].mean())

    def conflicting(self) -> list[tuple[str, str]]:
        """The task pairs with GCD > 1 (Chai et al.'s conflict criterion, paper §4.3)."""
        i, j = np.triu_indices(len(self.tasks), k=1)
        return [(self.tasks[a], self.tasks[b]) for a, b in zip(i, j, strict=True) if self.gcd[a, b] > 1]

    def to_dict(self) -> dict:
        return {
            "tasks": list(self.tasks),
            "gcd": self.gcd.tolist(),
            "cosine": self.cosine.tolist(),
            "norms": self.norms.tolist(),
            "mean_gcd": self.mean(),
        }


def conflict_matrix(grads_by_task: Mapping[str, object]) -> ConflictMatrix:
    """GCD between every pair of task gradients (pytrees of the same structure), in one pass over the
    leaves. The diagonal is 0 (1 for a zero gradient, by the convention of `gradient_conflict`)."""
    tasks = tuple(grads_by_task)
    if len(tasks) < 2:
        raise InputError(f"need at least two tasks, got {tasks}", where="grads_by_task")
    g, norm = _gram([grads_by_task[t] for t in tasks])
    cos, gcd = _gcd(g, norm)
    return ConflictMatrix(tasks=tasks, cosine=cos, gcd=gcd, norms=norm)
