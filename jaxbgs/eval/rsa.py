"""Representational similarity analysis of model embeddings against the human matrix.

Model similarity is cosine (the paper, §3.2) or Pearson correlation between feature vectors (the
authors' evaluation code: 1 - correlation distance). Optionally a sparse random projection first
standardises the dimensionality (paper App. F.3: Johnson-Lindenstrauss with eps = 0.1, giving 3,353
dims for 50 videos and 4,732 for 250). The score is Spearman rho over the observed pairs of the
human similarity matrix; R^2 = rho^2.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse

from jaxbgs.data.matrices import PairMatrix
from jaxbgs.errors import InputError
from jaxbgs.eval import stats

METRICS = ("cosine", "pearson")
MIN_PAIRS = 3  # fewer observed pairs leave Spearman's rho undefined (or trivially +-1)


def similarity_matrix(x: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """(n, n) similarity of the rows of x (features flattened); zero-norm rows get similarity 0."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    if metric == "pearson":
        x = x - x.mean(axis=1, keepdims=True)
    elif metric != "cosine":
        raise InputError(f"unknown similarity {metric!r}", fix=f"use one of {', '.join(METRICS)}")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    return x @ x.T


def jl_min_dim(n_samples: int, eps: float = 0.1) -> int:
    """Johnson-Lindenstrauss dimension that keeps pairwise distances within 1 +- eps (Achlioptas bound)."""
    return int(4 * np.log(n_samples) / (eps**2 / 2 - eps**3 / 3))


def projection_target(
    dim: int, n_samples: int, *, eps: float = 0.1, n_components: int | None = None
) -> int | None:
    """The dimension `sparse_random_projection` reduces `dim` features to, or None: it only reduces."""
    k = n_components or jl_min_dim(n_samples, eps)
    return k if dim > k else None


def sparse_random_projection(
    x: np.ndarray, *, eps: float = 0.1, n_components: int | None = None, seed: int = 0
) -> np.ndarray:
    """Project rows of x with a sparse random matrix (Li et al. 2006, density 1/sqrt(d)).

    Only reduces: when the features already have no more dimensions than the target, x is returned.
    """
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    if n_components is not None and n_components < 1:
        raise InputError(
            f"n_components must be >= 1 (got {n_components})", fix="leave it unset for the JL dimension"
        )
    k = projection_target(x.shape[1], len(x), eps=eps, n_components=n_components)
    if k is None:
        return x
    d = x.shape[1]
    density = 1 / np.sqrt(d)
    rng = np.random.default_rng(seed)
    nnz = rng.binomial(d * k, density)
    flat = rng.choice(d * k, size=nnz, replace=False)
    signs = np.where(rng.random(nnz) < 0.5, -1.0, 1.0) * np.sqrt(1 / density) / np.sqrt(k)
    rows, cols = np.divmod(flat, k)
    proj = scipy.sparse.csr_matrix((signs, (rows, cols)), shape=(d, k))
    return np.asarray((proj.T @ x.T).T)


@dataclasses.dataclass(frozen=True)
class RSAResult:
    rho: float
    r2: float
    n_pairs: int
    r2_ci: list[float] | None = None
    p_permutation: float | None = None


def aligned_similarity(
    embeddings: np.ndarray,
    ids: np.ndarray,
    human: PairMatrix,
    *,
    metric: str = "cosine",
    project: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """Model similarity over the human matrix's videos, in its order; rows of `embeddings` are `ids`."""
    ids = np.asarray(ids)
    if len(ids) != len(embeddings):
        raise InputError(
            f"{len(embeddings)} embeddings but {len(ids)} ids", fix="give one id per embedding row"
        )
    if len(np.unique(ids)) != len(ids):
        raise InputError("duplicate ids", fix="each embedding row must be a different video")
    missing = np.setdiff1d(human.ids, ids)
    if len(missing):
        raise InputError(
            f"no embedding for {len(missing)} of the split's videos, e.g. id {missing[0]}",
            fix="embed every video of the split",
        )
    x = np.asarray(embeddings)[np.argsort(ids)][np.searchsorted(np.sort(ids), human.ids)]
    if project:
        x = sparse_random_projection(x, seed=seed)
    return similarity_matrix(x, metric)


def rsa(
    model_similarity: np.ndarray, human: PairMatrix, *, n_boot: int = 0, n_perm: int = 0, seed: int = 0
) -> RSAResult:
    """Spearman of model vs human similarity over observed pairs; optional bootstrap CI and permutation p."""
    rows, cols = human.observed_pairs()
    if len(rows) < MIN_PAIRS:
        raise InputError(
            f"the split has {len(rows)} judged pair(s) among its {len(human.ids)} videos; "
            f"a rank correlation needs at least {MIN_PAIRS}",
            fix="use a split whose videos were judged together (its trials' three videos all in it)",
        )
    h = human.similarity[rows, cols]
    m = np.asarray(model_similarity)[rows, cols]
    rho = float(stats.spearman(m, h))
    ci = stats.bootstrap_r2(h, m, n_boot=n_boot, seed=seed).as_list() if n_boot else None
    p = (
        stats.permutation_spearman(h, model_similarity, rows, cols, n_perm=n_perm, seed=seed)[1]
        if n_perm
        else None
    )
    return RSAResult(rho, rho**2, len(rows), ci, p)
