"""Linear-probe transfer of frozen video features (BGS paper §3.3.2, §4.4, Appendices I and J).

Two benchmarks, one probe:

- **UCF101 split 1** (action recognition, 101 classes; Appendix I, Table 1): read through TensorFlow
  Datasets, scored as top-1 accuracy, mean +- sd over three seeds (paper: V-JEPA 2.1 78.17 +- 0.03 %
  pretrained, 80.31 +- 0.06 % after BGS; TimeSformer 95.75 +- 0.18 %, 95.70 +- 0.14 %).
- **PHASE 3-way** (friendly / neutral / adversarial abstract two-agent interactions; §4.4, App. J,
  Fig. 6): 400 training videos, the 100-video held-out generalization set, accuracy with a Wilson
  95 % interval (paper: 0.81, CI 0.72-0.87, after BGS; 0.55 pretrained; chance 1/3).

    embed = model_embed(model, "vjepa21")          # or any callable: uint8 (B, T, S, S, 3) -> (B, d)
    spec = ClipSpec(frames=16, size=384)           # the backbone's own frame count and geometry
    ucf = ucf101_probe("~/tensorflow_datasets", embed, spec)            # seeds 0, 1, 2
    print(ucf.summary())                           # "ucf101_1: top-1 NN.NN +- N.NN % (3 seeds) ..."
    phase = phase_probe("data/phase", embed, spec)
    print(phase.summary(), phase.wilson())         # accuracy and its Wilson 95 % interval

    python -m jaxbgs.analysis.transfer ucf101 --data-dir ~/tensorflow_datasets --run runs/vjepa21
    python -m jaxbgs.analysis.transfer phase --data-dir data/phase --run runs/vjepa21 --json

The paper names the protocol but not the probe; the choices here, all arguments:

- features: the backbone's own embedding of one clip per video (`jaxbgs.data.video.ClipSpec`: frames
  spread evenly over the whole video, the backbone's resize / centre crop; the model's pooled output:
  CLS for TimeSformer, mean-pooled tokens for V-JEPA, as Appendix I describes);
- probe: multinomial logistic regression on features standardised with the training rows' mean and
  sd (a constant feature stays 0), loss = mean cross-entropy + lam / 2 * ||W||^2 (bias not
  penalised), solved to tolerance with scipy's L-BFGS, the loss and gradient in float64 (JAX on an
  accelerator, NumPy on a CPU: about 0.3 s an iteration for UCF101's 9.5k x 768 x 101 on 2 cores);
- lam from `LAMBDAS` by accuracy on a stratified validation split of the training set (`val_fraction`
  of every class, drawn from the seed; ties go to the larger lam), then refitted on the whole training
  set (`refit=True`). The objective is convex, so a seed changes only the validation split: seeds
  that pick the same lam agree (sd 0, up to the solver's tolerance). `refit=False` keeps the probe
  fitted on the seed's training part, so the seed also changes the rows the probe learns from;
- sd over seeds is the sample sd (ddof 1). UCF101 clips of one source video ("group") can fall on both
  sides of the validation split (the TFDS records hold no file names); only the choice of lam can
  be biased by it.

UCF101 is never downloaded here (except by an explicit `prepare_ucf101`): pass the TFDS data directory
holding a prepared `ucf101/<config>/<version>`. Reading needs `tensorflow-datasets` and TensorFlow
(TFDS defines its video feature with TensorFlow); a dataset prepared as array_record is read without
running TensorFlow, a tfrecord one through `tf.data` on the CPU. Only the sampled frames are decoded.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from jaxbgs.data import video
from jaxbgs.errors import InputError
from jaxbgs.models import preprocess as pp

log = logging.getLogger(__name__)

LAMBDAS = np.logspace(-6, 1, 15)  # L2 strength on standardised features, per-sample mean loss
SEEDS = (0, 1, 2)
MAX_ITER = 2000
TOL = 1e-6  # L-BFGS: stop when every gradient entry is below this

Embed = Callable[[np.ndarray], object]  # uint8 (B, T, S, S, 3) -> (B, d) array-like

# ------------------------------------------------------------------------------------------ statistics


def wilson_interval(k, n, level: float = 0.95):
    """Wilson score interval for a binomial proportion k / n at confidence `level`.

    centre = (p + z^2 / 2n) / (1 + z^2 / n), half width = z / (1 + z^2 / n) * sqrt(p (1 - p) / n +
    z^2 / 4n^2), z the two-sided normal quantile. Scalars give (lo, hi) floats; arrays give arrays."""
    from scipy.stats import norm

    k_arr, n_arr = np.asarray(k, np.float64), np.asarray(n, np.float64)
    if np.any(n_arr < 1) or np.any(k_arr < 0) or np.any(k_arr > n_arr) or np.any(k_arr != np.round(k_arr)):
        raise InputError(f"need whole counts 0 <= k <= n with n >= 1, got k={k}, n={n}", where="wilson")
    if not 0 < level < 1:
        raise InputError(f"level must lie in (0, 1), got {level}", where="wilson", fix="e.g. 0.95")
    z = norm.ppf(0.5 + level / 2)
    p = k_arr / n_arr
    denom = 1 + z * z / n_arr
    centre = (p + z * z / (2 * n_arr)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / n_arr + z * z / (4 * n_arr * n_arr))
    lo = np.where(k_arr == 0, 0.0, np.clip(centre - half, 0.0, 1.0))  # exact at the edges
    hi = np.where(k_arr == n_arr, 1.0, np.clip(centre + half, 0.0, 1.0))
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


# ------------------------------------------------------------------------------- the softmax probe


def softmax_objective(theta: np.ndarray, z: np.ndarray, y: np.ndarray, lam: float, n_classes: int):
    """(loss, gradient) of L2-regularised multinomial logistic regression at the flat parameters
    theta = [W (d, C) row-major, b (C,)]: mean_i [logsumexp(a_i) - a_i,y_i] + lam / 2 ||W||^2 with
    a = z W + b. The gradient is Z^T (P - Y) / n + lam W and mean(P - Y) for b."""
    n, d = z.shape
    w = theta[: d * n_classes].reshape(d, n_classes)
    a = z @ w + theta[d * n_classes :]
    top = a.max(axis=1, keepdims=True)
    e = np.exp(a - top)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = float(np.mean(top[:, 0] + np.log(s[:, 0]) - a[rows, y]) + 0.5 * lam * np.sum(w * w))
    r = e / s
    r[rows, y] -= 1.0
    r /= n
    return loss, np.concatenate([(z.T @ r + lam * w).ravel(), r.sum(axis=0)])


@dataclasses.dataclass(frozen=True, eq=False)
class SoftmaxProbe:
    """A fitted probe: logits = ((x - mean) / scale) @ weights + bias."""

    weights: np.ndarray  # (d, C) on standardised features
    bias: np.ndarray  # (C,)
    mean: np.ndarray  # (d,) training-row statistics
    scale: np.ndarray  # (d,)
    lam: float
    n_iter: int
    converged: bool

    @property
    def theta(self) -> np.ndarray:
        return np.concatenate([self.weights.ravel(), self.bias])

    def logits(self, x) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.scale) @ self.weights + self.bias

    def predict(self, x) -> np.ndarray:
        return np.argmax(self.logits(x), axis=1)


def standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and sd of `x`; a constant column gets sd 1 (so it standardises to 0)."""
    mean, sd = x.mean(axis=0), x.std(axis=0)
    return mean, np.where(sd > 1e-12 * np.maximum(1.0, np.abs(mean)), sd, 1.0)


@functools.cache
def _jax_value_and_grad():
    """`softmax_objective` in JAX: jitted, float64 (traced under `jax.enable_x64`), on the default device."""
    import jax
    import jax.numpy as jnp

    def loss(theta, z, y, lam, n_classes):
        d = z.shape[1]
        w = theta[: d * n_classes].reshape(d, n_classes)
        a = z @ w + theta[d * n_classes :]
        picked = jnp.take_along_axis(a, y[:, None], axis=1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(a, axis=1) - picked) + 0.5 * lam * jnp.sum(w * w)

    return jax.jit(jax.value_and_grad(loss), static_argnums=4)


@contextlib.contextmanager
def _objective(backend: str, z: np.ndarray, y: np.ndarray, lam: float, n_classes: int):
    """fun(theta) -> (loss, grad) as float64 numpy, for scipy; "jax" keeps z on the device. "auto" is
    JAX on an accelerator, NumPy on a CPU (as fast there, without JAX's per-call dispatch)."""
    if backend == "auto":
        import jax

        backend = "numpy" if jax.default_backend() == "cpu" else "jax"
    if backend == "numpy":
        yield lambda theta: softmax_objective(theta, z, y, lam, n_classes)
        return
    if backend != "jax":
        raise InputError(f"unknown backend {backend!r}", where="backend", fix="use 'auto', 'jax' or 'numpy'")
    import jax
    import jax.numpy as jnp

    vg = _jax_value_and_grad()
    with jax.enable_x64(True):
        zj, yj, lj = jnp.asarray(z, jnp.float64), jnp.asarray(y, jnp.int32), jnp.float64(lam)

        def fun(theta):
            v, g = vg(jnp.asarray(theta, jnp.float64), zj, yj, lj, n_classes)
            return float(v), np.asarray(g, np.float64)

        yield fun


def fit_softmax(
    x,
    y,
    lam: float,
    *,
    n_classes: int | None = None,
    init: np.ndarray | SoftmaxProbe | None = None,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
    backend: str = "auto",
) -> SoftmaxProbe:
    """Minimise `softmax_objective` on `x` standardised by its own rows, from zeros or `init` (flat
    theta or a probe: a warm start). The objective and its gradient run in float64, in JAX on the
    default device (`backend="jax"`) or in NumPy (`"numpy"`; `"auto"`: JAX only on an accelerator);
    L-BFGS itself is scipy's. Not converging within `max_iter` is logged and flagged."""
    from scipy.optimize import minimize

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.int64)
    c = int(n_classes if n_classes is not None else y.max() + 1)
    mean, scale = standardiser(x)
    z = (x - mean) / scale
    d = x.shape[1]
    theta0 = np.zeros(d * c + c) if init is None else np.array(getattr(init, "theta", init), np.float64)
    if theta0.shape != (d * c + c,):
        raise InputError(f"init has {theta0.size} parameters, expected {d * c + c}", where="fit_softmax")
    with _objective(backend, z, y, float(lam), c) as fun:
        res = minimize(
            fun,
            theta0,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": int(max_iter), "gtol": float(tol), "ftol": 1e-12, "maxcor": 20},
        )
    converged = bool(res.success) or float(np.abs(res.jac).max()) <= tol
    if not converged:
        log.warning("softmax probe (lam=%.3g) stopped after %d iterations: %s", lam, res.nit, res.message)
    return SoftmaxProbe(
        weights=res.x[: d * c].reshape(d, c),
        bias=res.x[d * c :],
        mean=mean,
        scale=scale,
        lam=float(lam),
        n_iter=int(res.nit),
        converged=converged,
    )


def stratified_split(y, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): round(fraction * n_c) of every class c, at random from `seed`;
    a class keeps at least one training row (a class seen once stays all in training)."""
    y = np.asarray(y, np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    rows = perm[np.argsort(y[perm], kind="stable")]  # grouped by class, random within a class
    counts = np.bincount(y)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(y)) - starts[y[rows]]
    n_val = np.minimum(np.floor(fraction * counts + 0.5), np.maximum(counts - 1, 0))
    is_val = rank < n_val[y[rows]]
    return np.sort(rows[~is_val]), np.sort(rows[is_val])


def select_lambda(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_classes: int,
    lams=LAMBDAS,
    val_fraction: float = 0.2,
    seed: int = 0,
    backend: str = "auto",
) -> tuple[int, np.ndarray, SoftmaxProbe]:
    """(index of the chosen lam, validation accuracy per lam, the probe fitted at it) on a stratified
    split of (x, y). The path runs from the largest lam down, each fit warm-started from the last."""
    lams = np.asarray(lams, np.float64)
    tr, va = stratified_split(y, val_fraction, seed)
    if len(va) == 0:
        raise InputError(
            f"the validation split is empty ({len(y)} training rows, val_fraction={val_fraction})",
            where="val_fraction",
            fix="use more training videos (at least two per class) or a larger val_fraction",
        )
    acc = np.empty(len(lams))
    fits: list[SoftmaxProbe | None] = [None] * len(lams)
    prev = None
    for j in np.argsort(lams)[::-1]:
        prev = fit_softmax(x[tr], y[tr], lams[j], n_classes=n_classes, init=prev, backend=backend)
        fits[j] = prev
        acc[j] = np.mean(prev.predict(x[va]) == y[va])
    ties = np.flatnonzero(acc == acc.max())
    best = int(ties[np.argmax(lams[ties])])  # a tie goes to the larger lam
    return best, acc, fits[best]


# ------------------------------------------------------------------------------------------ results


@dataclasses.dataclass(frozen=True, eq=False)
class TransferResult:
    """One probe per seed, scored on the same test videos."""

    name: str
    classes: tuple[str, ...]
    seeds: tuple[int, ...]
    accuracy: np.ndarray  # (S,) top-1 on the test videos
    n_correct: np.ndarray  # (S,)
    n_train: int
    n_test: int
    lam: np.ndarray  # (S,) chosen L2 strength
    lams: np.ndarray  # (L,) the grid
    val_accuracy: np.ndarray  # (S, L)
    predictions: np.ndarray  # (S, n_test) class indices
    labels: np.ndarray  # (n_test,)
    converged: np.ndarray  # (S,) every fit behind the seed's probe converged
    refit: bool
    val_fraction: float

    @property
    def mean(self) -> float:
        return float(self.accuracy.mean())

    @property
    def sd(self) -> float:
        """Sample sd over seeds (ddof 1); 0 for one seed."""
        return float(self.accuracy.std(ddof=1)) if len(self.accuracy) > 1 else 0.0

    def wilson(self, level: float = 0.95) -> np.ndarray:
        """(S, 2) Wilson interval of each seed's accuracy (k correct of n_test)."""
        lo, hi = wilson_interval(self.n_correct, np.full_like(self.n_correct, self.n_test), level)
        return np.stack([lo, hi], axis=1)

    def confusion(self) -> np.ndarray:
        """(S, C, C) counts, rows = true class, columns = predicted class."""
        c = len(self.classes)
        flat = self.labels[None] * c + self.predictions
        return np.stack([np.bincount(f, minlength=c * c).reshape(c, c) for f in flat])

    def f1(self) -> np.ndarray:
        """(S, C) per-class F1 = 2 TP / (2 TP + FP + FN) (Fig. 6, right); NaN for a class never
        present nor predicted."""
        m = self.confusion().astype(np.float64)
        tp = np.diagonal(m, axis1=1, axis2=2)
        denom = m.sum(axis=2) + m.sum(axis=1)  # (TP + FN) + (TP + FP)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, 2 * tp / denom, np.nan)

    def summary(self, level: float = 0.95) -> str:
        if len(self.seeds) > 1:
            head = f"top-1 {100 * self.mean:.2f} +- {100 * self.sd:.2f} % ({len(self.seeds)} seeds)"
        else:
            lo, hi = self.wilson(level)[0]
            head = (
                f"accuracy {self.mean:.3f} ({int(self.n_correct[0])}/{self.n_test}, Wilson "
                f"{100 * level:g}% CI {lo:.3f}-{hi:.3f})"
            )
        lams = ", ".join(f"{v:.3g}" for v in self.lam)
        return f"{self.name}: {head}; {self.n_train} train / {self.n_test} test videos; lam {lams}"

    def to_dict(self, level: float = 0.95) -> dict:
        ci, f1 = self.wilson(level), self.f1()
        return {
            "name": self.name,
            "classes": list(self.classes),
            "seeds": list(self.seeds),
            "accuracy": self.accuracy.tolist(),
            "accuracy_mean": self.mean,
            "accuracy_sd": self.sd,
            "n_correct": self.n_correct.tolist(),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "wilson_level": level,
            "wilson_ci": ci.tolist(),
            "f1": np.where(np.isnan(f1), None, f1).tolist(),
            "lam": self.lam.tolist(),
            "lams": self.lams.tolist(),
            "val_accuracy": self.val_accuracy.tolist(),
            "converged": self.converged.tolist(),
            "refit": self.refit,
            "val_fraction": self.val_fraction,
        }


def _features(name: str, x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise InputError(f"{name} must be a non-empty (n, d) array, got shape {x.shape}", where=name)
    if not np.isfinite(x).all():
        raise InputError(f"{name} holds NaN or inf", where=name, fix="check the backbone's output")
    return x


def _labels(name: str, y, n: int, n_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"{name} must be ({n},) integers, got {y.dtype} {y.shape}", where=name)
    if n and (y.min() < 0 or y.max() >= n_classes):
        bad = int(y.min() if y.min() < 0 else y.max())
        raise InputError(
            f"{name} holds class {bad}, outside 0..{n_classes - 1}",
            where=name,
            fix="pass classes= naming all",
        )
    return y.astype(np.int64)


def linear_probe(
    x_train,
    y_train,
    x_test,
    y_test,
    *,
    classes: Sequence[str] | None = None,
    seeds: Sequence[int] = SEEDS,
    lams=LAMBDAS,
    val_fraction: float = 0.2,
    refit: bool = True,
    name: str = "probe",
    backend: str = "auto",
) -> TransferResult:
    """Fit a softmax probe per seed on (x_train, y_train) (lam by a stratified validation split of
    the training rows) and score top-1 on (x_test, y_test). Labels are class indices into `classes`
    (default: 0..max label)."""
    xtr, xte = _features("x_train", x_train), _features("x_test", x_test)
    if xtr.shape[1] != xte.shape[1]:
        raise InputError(f"x_train has {xtr.shape[1]} features, x_test {xte.shape[1]}", where="x_test")
    if classes is None:
        n_classes = int(max(np.max(y_train), np.max(y_test))) + 1
        classes = tuple(str(i) for i in range(n_classes))
    classes = tuple(str(c) for c in classes)
    ytr = _labels("y_train", y_train, len(xtr), len(classes))
    yte = _labels("y_test", y_test, len(xte), len(classes))
    if len(np.unique(ytr)) < 2:
        raise InputError("the training labels hold fewer than two classes", where="y_train")
    seeds = tuple(int(s) for s in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds must be distinct and at least one, got {seeds}", where="seeds")
    lams = np.sort(np.asarray(lams, np.float64))
    if lams.ndim != 1 or not len(lams) or not (np.isfinite(lams) & (lams > 0)).all():
        raise InputError("lams must be a non-empty 1-D array of positive numbers", where="lams")
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must lie in (0, 1), got {val_fraction}", where="val_fraction")
    c = len(classes)
    preds, chosen, val_acc, converged = [], [], [], []
    for seed in seeds:
        j, acc, fit = select_lambda(
            xtr, ytr, n_classes=c, lams=lams, val_fraction=val_fraction, seed=seed, backend=backend
        )
        ok = fit.converged
        if refit:
            fit = fit_softmax(xtr, ytr, lams[j], n_classes=c, init=fit, backend=backend)
            ok = ok and fit.converged
        preds.append(fit.predict(xte))
        chosen.append(lams[j])
        val_acc.append(acc)
        converged.append(ok)
    preds = np.stack(preds)
    correct = (preds == yte[None]).sum(axis=1)
    return TransferResult(
        name=name,
        classes=classes,
        seeds=seeds,
        accuracy=correct / len(yte),
        n_correct=correct,
        n_train=len(ytr),
        n_test=len(yte),
        lam=np.asarray(chosen),
        lams=lams,
        val_accuracy=np.stack(val_acc),
        predictions=preds,
        labels=yte,
        converged=np.asarray(converged),
        refit=bool(refit),
        val_fraction=float(val_fraction),
    )


# --------------------------------------------------------------------------------- frozen features


def model_embed(model, arch: str, *, mesh=None) -> Embed:
    """The embedding callable of a jaxbgs backbone, through the trainer's eval path (the arch's
    normalisation, compute dtype, eval mode): uint8 (B, T, S, S, 3) -> float32 (B, d). B must divide
    evenly over the mesh's data axis (any B on one device)."""
    import optax

    from jaxbgs.trainer.setup import NORMALISATION
    from jaxbgs.trainer.step import Trainer

    if arch not in NORMALISATION:
        raise InputError(f"unknown arch {arch!r}", where="arch", fix=f"use one of {sorted(NORMALISATION)}")
    mean, std = NORMALISATION[arch]
    trainer = Trainer(model, optax.identity(), mean=mean, std=std, margin=0.0, n_grad=1, mesh=mesh)
    params = trainer.init_trainable
    return lambda clips: np.asarray(trainer.embed(params, clips), np.float32)


def run_embed(run_dir: str | os.PathLike) -> tuple[Embed, video.ClipSpec]:
    """(embed, clip spec) of a finished training run: its exported fine-tuned backbone, its clips."""
    from jaxbgs.embed import load_run

    model, arch, spec = load_run(run_dir)
    return model_embed(model, arch), spec


def extract_features(
    clips: Iterable[np.ndarray],
    embed: Embed,
    spec: video.ClipSpec,
    *,
    n: int | None = None,
    batch: int = 16,
    desc: str = "features",
    progress: bool = True,
) -> np.ndarray:
    """float32 (n, d): every clip (uint8 (T, H, W, 3), any T / H / W) brought to `spec` by
    `video.prepare`, embedded `batch` clips at a time (the last batch padded by repeating its last
    clip, so the backbone compiles once)."""
    from tqdm.auto import tqdm

    batch = int(batch)
    if batch < 1:
        raise InputError(f"batch must be >= 1, got {batch}", where="batch")
    out: list[np.ndarray] = []
    buf: list[np.ndarray] = []

    def flush():
        k = len(buf)
        stacked = np.stack(buf + [buf[-1]] * (batch - k))
        e = np.asarray(embed(stacked))
        if e.ndim != 2 or e.shape[0] != batch:
            raise InputError(
                f"embed returned shape {e.shape} for {batch} clips, expected ({batch}, d)",
                where="embed",
                fix="return one pooled vector per clip (e.g. the model's `embedding`)",
            )
        if not np.isfinite(e[:k]).all():
            raise InputError("embed returned NaN or inf", where="embed", fix="check the backbone's weights")
        out.append(e[:k].astype(np.float32))
        buf.clear()

    quiet = {} if progress else {"disable": True}  # left unset, TQDM_DISABLE still applies
    with tqdm(clips, total=n, desc=desc, unit="video", **quiet) as bar:
        for clip in bar:
            buf.append(video.prepare(clip, spec))
            if len(buf) == batch:
                flush()
    if buf:
        flush()
    if not out:
        raise InputError("no clips to embed", where=desc)
    return np.concatenate(out)


# ------------------------------------------------------------------------------------------- UCF101


UCF101_CONFIG = "ucf101_1"  # split 1 at the videos' own 320x240 (`ucf101_1_256` squashes to 256x256)
UCF101_CONFIGS = ("ucf101_1", "ucf101_1_256", "ucf101_2", "ucf101_3")


def ucf101_how(data_dir, config: str = UCF101_CONFIG) -> str:
    return (
        "UCF101 is not distributed with jaxbgs; download and prepare it once with TensorFlow Datasets "
        "(a download of several GB; needs `pip install tensorflow-datasets tensorflow-cpu` and an `ffmpeg` "
        "binary on PATH): `python -m jaxbgs.analysis.transfer prepare-ucf101 --data-dir "
        f"{data_dir} --config {config}`, i.e. `tfds.builder('ucf101/{config}', data_dir='{data_dir}', "
        "file_format='array_record').download_and_prepare()`; then pass that data_dir"
    )


def _tfds():
    """tensorflow_datasets, with TensorFlow kept quiet and off the GPU (it would claim its memory)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise InputError(
            f"reading UCF101 needs tensorflow-datasets ({e})",
            where="ucf101",
            fix="pip install tensorflow-datasets tensorflow-cpu",
        ) from None
    try:
        import tensorflow as tf
    except ImportError as e:
        raise InputError(
            f"reading UCF101 through TFDS needs TensorFlow, which defines TFDS's video feature ({e})",
            where="ucf101",
            fix="pip install tensorflow-cpu (or tensorflow)",
        ) from None
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TensorFlow already initialised its devices: leave them
        pass
    return tfds


def _ucf101_builder(data_dir, config: str):
    if config not in UCF101_CONFIGS:
        raise InputError(
            f"unknown UCF101 config {config!r}", where="config", fix=f"use one of {UCF101_CONFIGS}"
        )
    if data_dir is None or not Path(data_dir).expanduser().is_dir():
        raise InputError(
            "TFDS data directory not found", file=data_dir, where="data_dir", fix=ucf101_how(data_dir, config)
        )
    data_dir = Path(data_dir).expanduser()
    tfds = _tfds()
    try:
        builder = tfds.builder(f"ucf101/{config}", data_dir=str(data_dir))
    except ModuleNotFoundError as e:
        raise InputError(
            f"TFDS cannot build the UCF101 reader ({e}): its video feature is defined with TensorFlow",
            where="ucf101",
            fix="pip install tensorflow-cpu (or tensorflow)",
        ) from None
    return tfds, builder, data_dir


def _prepared(data_dir: Path) -> list[str]:
    return sorted(str(p.parent.relative_to(data_dir)) for p in data_dir.glob("ucf101/*/*/dataset_info.json"))


def _keep_encoded(tfds):
    """A TFDS decoder that leaves the video's frames as encoded images (decoded only when sampled).
    TFDS's own SkipDecoding lacks the NumPy method for sequences that array_record reading calls."""

    class KeepEncoded(tfds.decode.SkipDecoding):
        def decode_batch_example_np(self, example):
            return example

    return KeepEncoded()


@dataclasses.dataclass(frozen=True, eq=False)
class UCF101Split:
    """One prepared split, read in its stored order: `examples(spec)` yields (clip, label) with the
    clip's `spec.frames` frames sampled (and only those decoded) but not yet resized."""

    split: str
    config: str
    data_dir: Path
    classes: tuple[str, ...]
    n: int
    source: object  # TFDS data source (array_record) or a re-iterable of numpy examples (tfrecord)
    image: object  # the TFDS Image feature of one frame (decodes encoded frames)

    def __len__(self) -> int:
        return self.n

    def _iter(self) -> Iterator[dict]:
        if hasattr(self.source, "__getitem__") and hasattr(self.source, "__len__"):
            for i in range(len(self.source)):
                yield self.source[i]
        else:
            yield from self.source

    def examples(self, spec: video.ClipSpec) -> Iterator[tuple[np.ndarray, int]]:
        for i, ex in enumerate(self._iter()):
            frames = ex["video"]
            where = f"{self.split} example {i}"
            try:
                if isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4:
                    clip = pp.sample_frames(frames, spec.frames, stride=spec.stride)  # already decoded
                else:
                    encoded = list(frames)
                    idx = pp.frame_indices(len(encoded), spec.frames, stride=spec.stride)
                    decoded = {int(j): self.image.decode_example_np(encoded[int(j)]) for j in np.unique(idx)}
                    clip = np.stack([decoded[int(j)] for j in idx])
            except InputError as e:
                raise InputError(e.problem, file=self.data_dir, where=where, fix=e.fix) from None
            if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8:
                raise InputError(
                    f"frames decode to {clip.dtype} {clip.shape}, expected uint8 (T, H, W, 3)",
                    file=self.data_dir,
                    where=where,
                )
            yield clip, int(ex["label"])


def open_ucf101(data_dir, split: str, *, config: str = UCF101_CONFIG) -> UCF101Split:
    """A prepared UCF101 split ("train" or "test") under the TFDS `data_dir`; nothing is downloaded.
    A missing directory, package or preparation is an InputError saying how to get it."""
    tfds, builder, data_dir = _ucf101_builder(data_dir, config)
    if not builder.is_prepared():
        found = _prepared(data_dir)
        seen = f"; prepared here: {', '.join(found)}" if found else ""
        how = ucf101_how(data_dir, config)
        raise InputError(
            f"UCF101 ({config}, version {builder.version}) is not prepared in this TFDS data directory{seen}",
            file=builder.data_dir,
            fix=f"pass config= one of those, or: {how}" if found else how,
        )
    info = builder.info
    if split not in info.splits:
        raise InputError(
            f"no split {split!r} (prepared: {', '.join(info.splits)})", file=builder.data_dir, where="split"
        )
    decoders = {"video": _keep_encoded(tfds)}
    fmt = str(getattr(info.file_format, "value", info.file_format))
    if fmt == "array_record":
        source = builder.as_data_source(split, decoders=decoders)
    else:

        class _Reiterable:
            def __iter__(self):
                ds = builder.as_dataset(split=split, decoders=decoders, shuffle_files=False)
                return iter(tfds.as_numpy(ds))

        source = _Reiterable()
    return UCF101Split(
        split=split,
        config=config,
        data_dir=Path(builder.data_dir),
        classes=tuple(info.features["label"].names),
        n=int(info.splits[split].num_examples),
        source=source,
        image=info.features["video"].feature,
    )


def prepare_ucf101(data_dir, *, config: str = UCF101_CONFIG, file_format: str = "array_record") -> Path:
    """Download (several GB) and prepare UCF101 with TFDS under `data_dir`; the only function here
    that downloads. array_record is read later without running TensorFlow."""
    Path(data_dir).expanduser().mkdir(parents=True, exist_ok=True)
    tfds = _tfds()
    builder = tfds.builder(
        f"ucf101/{config}", data_dir=str(Path(data_dir).expanduser()), file_format=file_format
    )
    builder.download_and_prepare()
    return Path(builder.data_dir)


def ucf101_features(
    data_dir,
    embed: Embed,
    spec: video.ClipSpec,
    *,
    config: str = UCF101_CONFIG,
    splits: Sequence[str] = ("train", "test"),
    batch: int = 16,
    progress: bool = True,
) -> dict:
    """{split: (features (n, d) float32, labels (n,) int64)} and "classes": the frozen features of
    every video of each split (both splits are opened before any work, so a missing one fails fast)."""
    opened = {s: open_ucf101(data_dir, s, config=config) for s in splits}
    out: dict = {"classes": next(iter(opened.values())).classes}
    for s, src in opened.items():
        labels: list[int] = []

        def clips(src=src, labels=labels):
            for clip, label in src.examples(spec):
                labels.append(label)
                yield clip

        x = extract_features(
            clips(), embed, spec, n=len(src), batch=batch, desc=f"UCF101 {config} {s}", progress=progress
        )
        out[s] = (x, np.asarray(labels, np.int64))
    return out


def ucf101_probe(
    data_dir,
    embed: Embed,
    spec: video.ClipSpec,
    *,
    config: str = UCF101_CONFIG,
    seeds: Sequence[int] = SEEDS,
    batch: int = 16,
    progress: bool = True,
    features: dict | None = None,
    **probe_kw,
) -> TransferResult:
    """Top-1 of a softmax probe on frozen UCF101 features, one probe per seed (Appendix I). Pass
    `features` (from `ucf101_features`) to skip extraction; other keywords go to `linear_probe`."""
    f = features
    if f is None:
        f = ucf101_features(data_dir, embed, spec, config=config, batch=batch, progress=progress)
    (xtr, ytr), (xte, yte) = f["train"], f["test"]
    return linear_probe(xtr, ytr, xte, yte, classes=f["classes"], seeds=seeds, name=config, **probe_kw)


# -------------------------------------------------------------------------------------------- PHASE


PHASE_CLASSES = ("friendly", "neutral", "adversarial")
PHASE_SPLITS = ("train", "test")
PHASE_COUNTS = {"train": 400, "test": 100}  # paper §4.4: 400 training, 100 held-out generalization
PHASE_LABELS = "labels.csv"
PHASE_VIDEOS = "videos"
PHASE_LAYOUT = (
    f"a PHASE directory holds {PHASE_LABELS} (header `video,label,split`; label one of "
    f"{'/'.join(PHASE_CLASSES)}, split train or test; other columns ignored) and {PHASE_VIDEOS}/ with "
    f"the files the `video` column names (an extension may be left off: {', '.join(video.VIDEO_EXTENSIONS)})"
)


@dataclasses.dataclass(frozen=True, eq=False)
class PhaseData:
    """The PHASE videos in `labels.csv` order."""

    root: Path
    names: tuple[str, ...]  # the `video` column
    paths: tuple[Path, ...]
    labels: np.ndarray  # (n,) index into PHASE_CLASSES
    is_test: np.ndarray  # (n,) bool

    @property
    def train_idx(self) -> np.ndarray:
        return np.flatnonzero(~self.is_test)

    @property
    def test_idx(self) -> np.ndarray:
        return np.flatnonzero(self.is_test)


def _find_video(videos_dir: Path, name: str) -> Path | None:
    path = videos_dir / name
    if path.suffix.lower() in video.VIDEO_EXTENSIONS:
        return path if path.is_file() else None
    for cand in [path] + [path.with_name(path.name + ext) for ext in video.VIDEO_EXTENSIONS]:
        if cand.is_file():
            return cand
    return None


def read_phase(root, *, videos_dir=None) -> PhaseData:
    """Read `root/labels.csv` and find every video under `root/videos` (or `videos_dir`).

    Layout (assembled by the user from the PHASE release, Netanyahu et al. 2021, arXiv:2103.01933):

        root/labels.csv    video,label,split
                           train_0001.mp4,friendly,train
                           gen_0001,adversarial,test        (an extension may be left off)
        root/videos/       train_0001.mp4  gen_0001.mp4 ...

    A malformed CSV (missing column, unknown label or split, empty or repeated video name, a row with
    too many or too few fields) and missing videos are InputErrors naming the file and its rows.
    Counts other than the paper's 400 / 100 are logged, not refused."""
    root = Path(root).expanduser()
    csv_path = root / PHASE_LABELS
    if not csv_path.is_file():
        raise InputError("PHASE labels file not found", file=csv_path, fix=PHASE_LAYOUT)
    videos_dir = Path(videos_dir).expanduser() if videos_dir is not None else root / PHASE_VIDEOS
    if not videos_dir.is_dir():
        raise InputError("PHASE videos directory not found", file=videos_dir, fix=PHASE_LAYOUT)
    rows: list[tuple[int, str, int, bool]] = []  # (line, name, label, is_test)
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, restkey="\0extra", restval=None)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        missing = [c for c in ("video", "label", "split") if c not in header]
        if missing:
            raise InputError(
                f"the header lacks column(s) {', '.join(missing)} (found: {', '.join(header) or 'nothing'})",
                file=csv_path,
                where="line 1",
                fix=PHASE_LAYOUT,
            )
        reader.fieldnames = header
        for k, rec in enumerate(reader, start=1):
            where = f"row {k} (line {reader.line_num})"
            if "\0extra" in rec or any(v is None for v in rec.values()):
                n_fields = len(header) + len(rec.get("\0extra", [])) - sum(v is None for v in rec.values())
                raise InputError(
                    f"{n_fields} fields, the header has {len(header)}",
                    file=csv_path,
                    where=where,
                    fix=PHASE_LAYOUT,
                )
            name, label, split = (
                rec["video"].strip(),
                rec["label"].strip().lower(),
                rec["split"].strip().lower(),
            )
            if not name:
                raise InputError("empty video name", file=csv_path, where=where, fix=PHASE_LAYOUT)
            if label not in PHASE_CLASSES:
                raise InputError(
                    f"unknown label {rec['label']!r}",
                    file=csv_path,
                    where=where,
                    fix=f"use one of {', '.join(PHASE_CLASSES)}",
                )
            if split not in PHASE_SPLITS:
                raise InputError(
                    f"unknown split {rec['split']!r}",
                    file=csv_path,
                    where=where,
                    fix=f"use one of {', '.join(PHASE_SPLITS)}",
                )
            rows.append((reader.line_num, name, PHASE_CLASSES.index(label), split == "test"))
    seen: dict[str, int] = {}
    for k, (line, name, _, _) in enumerate(rows, start=1):
        if name in seen:
            raise InputError(
                f"video {name!r} is listed twice (also row {seen[name]})",
                file=csv_path,
                where=f"row {k} (line {line})",
                fix="list every video once",
            )
        seen[name] = k
    for split in PHASE_SPLITS:
        if not any(t == (split == "test") for *_, t in rows):
            raise InputError(f"no {split} rows", file=csv_path, fix=PHASE_LAYOUT)
    paths, missing_rows = [], []
    for k, (line, name, _, _) in enumerate(rows, start=1):
        hit = _find_video(videos_dir, name)
        if hit is None:
            missing_rows.append(f"row {k} (line {line}) {name!r}")
        paths.append(hit)
    if missing_rows:
        more = f" and {len(missing_rows) - 5} more" if len(missing_rows) > 5 else ""
        raise InputError(
            f"{len(missing_rows)} of {len(rows)} videos not found in {videos_dir}: "
            + "; ".join(missing_rows[:5])
            + more,
            file=csv_path,
            fix="put the PHASE videos the labels file names in the videos directory (or fix their names)",
        )
    is_test = np.array([t for *_, t in rows])
    counts = {"train": int((~is_test).sum()), "test": int(is_test.sum())}
    if counts != PHASE_COUNTS:
        log.warning("PHASE at %s has %s videos; the paper uses %s", root, counts, PHASE_COUNTS)
    return PhaseData(
        root=root,
        names=tuple(r[1] for r in rows),
        paths=tuple(paths),
        labels=np.array([r[2] for r in rows], np.int64),
        is_test=is_test,
    )


def phase_features(
    data: PhaseData, embed: Embed, spec: video.ClipSpec, *, batch: int = 16, progress: bool = True
) -> np.ndarray:
    """float32 (n, d) frozen features of every PHASE video, in `data` order (decoded with
    `video.decode` at the spec's frame sampling, shaped by `video.prepare`)."""
    clips = (video.decode(p, spec.frames, stride=spec.stride) for p in data.paths)
    return extract_features(
        clips, embed, spec, n=len(data.paths), batch=batch, desc="PHASE", progress=progress
    )


def phase_probe(
    root,
    embed: Embed,
    spec: video.ClipSpec,
    *,
    seeds: Sequence[int] = (0,),
    batch: int = 16,
    progress: bool = True,
    videos_dir=None,
    features: np.ndarray | None = None,
    **probe_kw,
) -> TransferResult:
    """3-way PHASE accuracy of a softmax probe fitted on the training videos, scored on the test
    videos (§4.4); `result.wilson()` is the Wilson interval, `result.f1()` the per-class F1. Pass
    `features` ((n, d) in `read_phase` order) to skip extraction; other keywords go to `linear_probe`.
    `root` may also be the `PhaseData` already read."""
    data = root if isinstance(root, PhaseData) else read_phase(root, videos_dir=videos_dir)
    x = features
    if x is None:
        x = phase_features(data, embed, spec, batch=batch, progress=progress)
    x = np.asarray(x)
    if len(x) != len(data.labels):
        raise InputError(f"features has {len(x)} rows for {len(data.labels)} PHASE videos", where="features")
    tr, te = data.train_idx, data.test_idx
    return linear_probe(
        x[tr],
        data.labels[tr],
        x[te],
        data.labels[te],
        classes=PHASE_CLASSES,
        seeds=seeds,
        name="PHASE",
        **probe_kw,
    )


# ---------------------------------------------------------------------------------------------- CLI


def _backbone(args) -> tuple[Embed, video.ClipSpec]:
    if args.run:
        embed, spec = run_embed(args.run)
    else:
        from checkpoints_convert import core

        if args.frames is None or args.size is None:
            raise InputError("--checkpoint needs --frames and --size", fix="or pass --run DIR")
        model, meta = core.load(args.checkpoint)
        embed, spec = model_embed(model, meta.arch), None
    if args.frames is not None or args.size is not None or args.mode is not None:
        base = spec or video.ClipSpec(frames=args.frames, size=args.size)
        spec = video.ClipSpec(
            frames=args.frames or base.frames, size=args.size or base.size, mode=args.mode or base.mode
        )
    return embed, spec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m jaxbgs.analysis.transfer", description=__doc__.split("\n\n")[0]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("ucf101", "phase"):
        s = sub.add_parser(name, help=f"{name} linear probe on frozen features")
        s.add_argument("--data-dir", required=True, help="TFDS data dir (ucf101) or PHASE directory (phase)")
        src = s.add_mutually_exclusive_group(required=True)
        src.add_argument("--run", help="run directory of python -m jaxbgs.train (its export/flax backbone)")
        src.add_argument("--checkpoint", help="a jaxbgs Flax checkpoint directory (give --frames, --size)")
        s.add_argument("--frames", type=int, help="frames per clip (default: the run's)")
        s.add_argument("--size", type=int, help="clip size (default: the run's)")
        s.add_argument("--mode", choices=video.MODES, help="crop or resize (default: the run's, else crop)")
        s.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS if name == "ucf101" else (0,)))
        s.add_argument("--batch", type=int, default=16)
        s.add_argument("--val-fraction", type=float, default=0.2)
        s.add_argument(
            "--no-refit", action="store_true", help="keep each seed's probe fitted without its val part"
        )
        s.add_argument("--save-features", help="also write the features to this .npz")
        s.add_argument("--json", action="store_true", help="print one JSON object")
        s.add_argument("--debug", action="store_true", help="show tracebacks")
        if name == "ucf101":
            s.add_argument("--config", default=UCF101_CONFIG, choices=UCF101_CONFIGS)
    s = sub.add_parser("prepare-ucf101", help="download (several GB) and prepare UCF101 with TFDS")
    s.add_argument("--data-dir", required=True)
    s.add_argument("--config", default=UCF101_CONFIG, choices=UCF101_CONFIGS)
    s.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.cmd == "prepare-ucf101":
            print(f"prepared {prepare_ucf101(args.data_dir, config=args.config)}")
            return 0
        kw = dict(seeds=args.seeds, val_fraction=args.val_fraction, refit=not args.no_refit)
        if args.cmd == "ucf101":
            for split in ("train", "test"):  # fail on missing data before loading a model
                open_ucf101(args.data_dir, split, config=args.config)
            embed, spec = _backbone(args)
            feats = ucf101_features(args.data_dir, embed, spec, config=args.config, batch=args.batch)
            if args.save_features:
                (xtr, ytr), (xte, yte) = feats["train"], feats["test"]
                np.savez(
                    args.save_features,
                    x_train=xtr,
                    y_train=ytr,
                    x_test=xte,
                    y_test=yte,
                    classes=np.asarray(feats["classes"]),
                )
            result = ucf101_probe(args.data_dir, embed, spec, config=args.config, features=feats, **kw)
        else:
            data = read_phase(args.data_dir)
            embed, spec = _backbone(args)
            x = phase_features(data, embed, spec, batch=args.batch)
            if args.save_features:
                np.savez(
                    args.save_features,
                    features=x,
                    labels=data.labels,
                    is_test=data.is_test,
                    names=np.asarray(data.names),
                )
            result = phase_probe(data, embed, spec, features=x, **kw)
    except InputError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict()) if args.json else result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
