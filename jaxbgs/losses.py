"""BGS training losses (paper §3.3.1, Eq. 1-4) and the schedules and controls around them.

Everything on embeddings is pure JAX without Python control flow on traced values, so it runs under
`jax.jit`, `jax.grad` and `jax.vmap`; degenerate inputs give a zero loss with finite gradients rather
than NaN. Data-side helpers (trial roles, budget-matched extras, the caption rater) are numpy.

Choices where the paper leaves room (REFERENCE.md decisions 1-2; reference code = bgs_reference_code.md):
- Anchor/positive are the two kept items in shown order, negative = the human odd one (§1.3 of the
  reference: the authors' order is set-hash dependent, i.e. arbitrary; shown order matches `Trials.kept_pair`
  and the anchor protocol of `jaxbgs.eval.ooo`).
- RSA loss = -Pearson r exactly (Eq. 3 corr of z-scores, population std). `ddof=1` gives the authors'
  -r (n-1)/n (unbiased `torch.std`, reference §4.2 step 8).
- RSA pairs: i < j, at least one of i, j < n_grad, and observed (15 + 108 = 123 candidates for K=24, M=6;
  paper §3.3.1 "123 pairs involving at least one gradient carrying video", reference §4.2 step 5).
- RSA fires at steps floor(k S / n), k = 0..n-1: exactly n distinct steps when S >= n, every step when
  S < n; on the authors' data (S = 3060) that is 0, 510, ..., 2550, the code's steps (reference §4.2).
- beta ramps linearly over the configured epochs (decision 2); `beta_capped` is the code's +0.1/epoch.
- Budget-matched control: extras per epoch = RSA steps x candidate pairs before masking = 6 x 123 = 738,
  the paper's number (App. L: "~738 pairwise constraints per epoch"; Table 2: 12,978 - 12,240 = 738)
  and the code's `target_budget` (reference §4.3). Extras are human trials drawn with replacement (the
  paper's "extra triplet constraints"); the code's in-batch hard-negative extra is `hard_extra_triplet_loss`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxbgs.data.judgments import Trials
from jaxbgs.data.matrices import PairMatrix
from jaxbgs.errors import InputError

MARGIN = 0.2  # gamma, Eq. 2
ALPHA = 0.7  # Eq. 4
RSA_K = 24  # videos per RSA step
RSA_M = 6  # of which carry gradients
RSA_PER_EPOCH = 6


def _float(x: jax.Array) -> jax.Array:
    """At least float32: losses are reduced in float32 even when activations are bf16."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def l2_normalize(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """z = x / max(|x|, eps) along the last axis; finite gradients even for a zero vector."""
    x = _float(x)
    sq = jnp.sum(x * x, axis=-1, keepdims=True)
    return x / jnp.sqrt(jnp.maximum(sq, eps * eps))


def cosine_distance(a: jax.Array, b: jax.Array, eps: float = 1e-8) -> jax.Array:
    """d = 1 - <a/|a|, b/|b|> over the last axis (Eq. 1), broadcasting the leading axes; in [0, 2]."""
    return 1.0 - jnp.sum(l2_normalize(a, eps) * l2_normalize(b, eps), axis=-1)


def pairwise_cosine_distance(emb: jax.Array, eps: float = 1e-8) -> jax.Array:
    """(K, K) Eq. 1 distances between the rows of `emb` (K, E); the diagonal is exactly 0."""
    z = l2_normalize(emb, eps)
    d = 1.0 - z @ z.T
    return jnp.where(jnp.eye(z.shape[0], dtype=bool), 0.0, d)


# ----------------------------------------------------------------------------------------- triplet term


def trial_roles(items: np.ndarray, odd: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(anchor, positive, negative) video ids of odd-one-out trials `items` (T, 3), `odd` (T,).

    negative = the human odd one; anchor, positive = the two kept items in the order shown. The
    authors take them from a Python set (order fixed by the string-hash seed, i.e. arbitrary); shown
    order is the deterministic equivalent and matches the anchor protocol of `jaxbgs.eval.ooo`.
    """
    trials = Trials(items, odd)
    kept = trials.kept_pair()
    return kept[:, 0].copy(), kept[:, 1].copy(), trials.odd.copy()


def triplet_hinge(
    emb: jax.Array,
    anchor: jax.Array,
    positive: jax.Array,
    negative: jax.Array,
    *,
    margin: float = MARGIN,
) -> jax.Array:
    """(T,) per-trial Eq. 2: relu(d(a, p) - d(a, n) + margin); indices are rows of `emb`."""
    a = emb[anchor]
    return jax.nn.relu(cosine_distance(a, emb[positive]) - cosine_distance(a, emb[negative]) + margin)


def triplet_loss(
    emb: jax.Array,
    anchor: jax.Array,
    positive: jax.Array,
    negative: jax.Array,
    *,
    margin: float = MARGIN,
    valid: jax.Array | None = None,
) -> jax.Array:
    """Mean Eq. 2 hinge over the valid trials (the human odd one is the negative).

    `anchor`, `positive`, `negative` (T,) index rows of `emb` (N, E); e.g. for a batch embedded as
    [anchors; positives; negatives] they are arange(B), B + arange(B), 2B + arange(B). `valid` (T,) bool
    lets a fixed-size padded batch carry fewer trials; no valid trial gives 0.
    """
    h = triplet_hinge(emb, anchor, positive, negative, margin=margin)
    if h.shape[0] == 0:  # static shape: an empty batch
        return jnp.zeros((), h.dtype)
    if valid is None:
        return jnp.mean(h)
    valid = jnp.asarray(valid, bool)
    n = jnp.sum(valid)
    return jnp.sum(jnp.where(valid, h, 0.0)) / jnp.maximum(n, 1).astype(h.dtype)


def hard_extra_triplet_loss(
    emb: jax.Array,
    anchor: jax.Array,
    positive: jax.Array,
    negative: jax.Array,
    *,
    margin: float = MARGIN,
    valid: jax.Array | None = None,
) -> jax.Array:
    """The authors' budget-matched extra constraint (reference §4.3, `extra_neg_indices`): an option.

    On detached embeddings, take the trial i with the largest margin violation and the other trial j
    whose negative is closest to a_i; return the hinge on (a_i, p_i, n_j) (weight 1). The in-batch
    negative n_j is not a human label. Fewer than two valid trials gives 0.
    """
    t = anchor.shape[0]
    valid = jnp.ones((t,), bool) if valid is None else jnp.asarray(valid, bool)
    e = jax.lax.stop_gradient(emb)
    viol = cosine_distance(e[anchor], e[positive]) - cosine_distance(e[anchor], e[negative]) + margin
    i = jnp.argmax(jnp.where(valid, viol, -jnp.inf))
    d_an = cosine_distance(e[anchor[i]][None, :], e[negative])
    other = valid & (jnp.arange(t) != i)
    j = jnp.argmin(jnp.where(other, d_an, jnp.inf))
    h = triplet_hinge(emb, anchor[i][None], positive[i][None], negative[j][None], margin=margin)[0]
    return jnp.where(jnp.sum(valid) >= 2, h, 0.0)


# --------------------------------------------------------------------------------------------- RSA term


def rsa_candidate_pairs(k: int = RSA_K, n_grad: int = RSA_M) -> int:
    """Pairs with at least one gradient-carrying item, before masking: C(M, 2) + M (K - M) (123)."""
    m = min(max(n_grad, 0), k)
    return m * (m - 1) // 2 + m * (k - m)


def rsa_pair_selection(human_mask: jax.Array, n_grad: int | jax.Array = RSA_M) -> jax.Array:
    """(K, K) bool: pairs i < j with i or j < n_grad, observed in `human_mask` (upper triangle read)."""
    k = human_mask.shape[0]
    idx = jnp.arange(k)
    upper = idx[:, None] < idx[None, :]
    grad = idx < n_grad
    return upper & (grad[:, None] | grad[None, :]) & jnp.asarray(human_mask, bool)


def _masked_pearson(
    x: jax.Array, y: jax.Array, w: jax.Array, *, ddof: int, eps: float
) -> tuple[jax.Array, jax.Array]:
    """Mean product of z-scores of x and y over the cells where `w`; (0, False) when undefined."""
    n = jnp.sum(w).astype(x.dtype)

    def z(v):
        mean = jnp.sum(jnp.where(w, v, 0.0)) / jnp.maximum(n, 1.0)
        c = jnp.where(w, v - mean, 0.0)
        var = jnp.sum(c * c) / jnp.maximum(n - ddof, 1.0)
        ok = var > eps * eps
        std = jnp.sqrt(jnp.where(ok, var, 1.0))  # never sqrt(0): its gradient is inf
        return c / std, ok

    zx, okx = z(x)
    zy, oky = z(y)
    ok = okx & oky & (n >= 2)
    r = jnp.sum(zx * zy) / jnp.maximum(n, 1.0)
    return jnp.where(ok, r, 0.0), ok


def rsa_loss_with_count(
    emb: jax.Array,
    human_dist: jax.Array,
    human_mask: jax.Array,
    *,
    n_grad: int | jax.Array = RSA_M,
    ddof: int = 0,
    eps: float = 1e-6,
) -> tuple[jax.Array, jax.Array]:
    """(Eq. 3 loss, number of pairs used). See `rsa_loss`."""
    k = emb.shape[0]
    carries = (jnp.arange(k) < n_grad)[:, None]
    emb = jnp.where(carries, emb, jax.lax.stop_gradient(emb))
    d = pairwise_cosine_distance(emb)
    sel = rsa_pair_selection(human_mask, n_grad)
    r, _ = _masked_pearson(d, _float(human_dist).astype(d.dtype), sel, ddof=ddof, eps=eps)
    return -r, jnp.sum(sel)


def rsa_loss(
    emb: jax.Array,
    human_dist: jax.Array,
    human_mask: jax.Array,
    *,
    n_grad: int | jax.Array = RSA_M,
    ddof: int = 0,
    eps: float = 1e-6,
) -> jax.Array:
    """Eq. 3: -corr(z(model distances), z(human distances)) over the selected pairs of a K-video batch.

    `emb` (K, E): rows < n_grad carry gradients, the rest are constants (stop_gradient), as in the paper
    (M = 6 of K = 24, for memory). Pairs: i < j with at least one of i, j < n_grad, observed in
    `human_mask` (K, K); `human_dist` (K, K) = 1 - p. Model distances are Eq. 1, so both sides are
    distances and a good fit gives -1. Pearson keeps it differentiable (App. F.1). Fewer than two pairs or
    a (near-)constant side (std <= eps) gives 0 with finite gradients. `ddof=1` reproduces the authors'
    unbiased std, i.e. -r (n - 1) / n.
    """
    return rsa_loss_with_count(emb, human_dist, human_mask, n_grad=n_grad, ddof=ddof, eps=eps)[0]


def rsa_targets(human: PairMatrix, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, K) human distances 1 - p and observed mask for the batch videos `ids`, in that order."""
    pos = human.positions(np.asarray(ids))
    sub = np.ix_(pos, pos)
    return human.distance[sub], human.mask[sub]


def sample_rsa_ids(ids: np.ndarray, rng: np.random.Generator, k: int = RSA_K) -> np.ndarray:
    """K distinct training videos, uniformly; the first n_grad of them will carry gradients."""
    ids = np.asarray(ids)
    if len(ids) < k:
        raise InputError(f"an RSA step needs {k} videos but the split has {len(ids)}", fix="lower rsa K")
    return rng.choice(ids, size=k, replace=False)


# ------------------------------------------------------------------------------------ schedules, Eq. 4


def beta_linear(epoch, n_epochs, start: float = 0.3, end: float = 0.7) -> jax.Array:
    """beta for 0-based `epoch`: start at epoch 0, end at epoch n_epochs - 1, linear between (decision 2).

    A fractional epoch (epoch + step / S) gives a per-step ramp. Clipped outside the run.
    """
    e = jnp.asarray(epoch, jnp.float32)
    span = jnp.maximum(jnp.asarray(n_epochs, jnp.float32) - 1.0, 1.0)
    frac = jnp.clip(e / span, 0.0, 1.0)
    return start + (end - start) * frac


def beta_capped(epoch, start: float = 0.3, step: float = 0.1, cap: float = 0.7) -> jax.Array:
    """The authors' beta: min(cap, start + step * epoch), 0-based (0.3, 0.4, ... 0.7 from epoch 4 on).

    Their RSA-only ablation uses start=0.5, cap=1.0.
    """
    return jnp.minimum(cap, start + step * jnp.asarray(epoch, jnp.float32))


def rsa_fires(step_in_epoch, steps_per_epoch, n_per_epoch: int = RSA_PER_EPOCH) -> jax.Array:
    """I_RSA(t) of Eq. 4: True at the steps floor(k S / n), k = 0..n-1, of an epoch of S steps.

    Exactly n distinct steps when S >= n (S = 3060 gives 0, 510, ..., 2550, the authors' steps); every
    step when S < n (one RSA term per step at most). Integer arithmetic, jit-safe.
    """
    t = jnp.asarray(step_in_epoch, jnp.int32)
    s = jnp.asarray(steps_per_epoch, jnp.int32)
    n = jnp.asarray(n_per_epoch, jnp.int32)
    k = (t * n + s - 1) // s  # smallest k with k S / n >= t
    return (t >= 0) & (t < s) & (k < n) & (k * s < (t + 1) * n)


def rsa_steps(steps_per_epoch: int, n_per_epoch: int = RSA_PER_EPOCH) -> np.ndarray:
    """The steps of an epoch where `rsa_fires` is True (sorted)."""
    return np.unique(np.arange(n_per_epoch, dtype=np.int64) * steps_per_epoch // n_per_epoch)


def rsa_fires_reference(step_in_epoch, steps_per_epoch, n_per_epoch: int = RSA_PER_EPOCH) -> jax.Array:
    """The authors' cadence: step % max(1, S // n) == 0 (6 on their data, up to 2n - 1 otherwise)."""
    every = jnp.maximum(jnp.asarray(steps_per_epoch, jnp.int32) // n_per_epoch, 1)
    return jnp.asarray(step_in_epoch, jnp.int32) % every == 0


def hybrid_loss(triplet, rsa, *, alpha=ALPHA, beta, fire) -> jax.Array:
    """Eq. 4: alpha * L_triplet + I_RSA * beta * L_RSA (a `where`, so an unused RSA value never leaks NaN)."""
    return alpha * jnp.asarray(triplet) + jnp.where(jnp.asarray(fire, bool), beta * jnp.asarray(rsa), 0.0)


# ------------------------------------------------------------------------------ budget-matched control


def budget_matched_extra(
    steps_per_epoch: int,
    *,
    n_per_epoch: int = RSA_PER_EPOCH,
    k: int = RSA_K,
    n_grad: int = RSA_M,
    pairs_per_step: int | None = None,
) -> int:
    """Extra triplets per epoch for the triplet budget-matched control: the hybrid's RSA pairs per epoch.

    RSA steps actually taken (`rsa_steps`) x candidate pairs before masking (123), = 6 x 123 = 738 as in
    the paper (App. L) and the authors' code. Give `pairs_per_step` (e.g. the mean masked count, ~113)
    to match the pairs after masking instead.
    """
    pairs = rsa_candidate_pairs(k, n_grad) if pairs_per_step is None else int(pairs_per_step)
    return len(rsa_steps(steps_per_epoch, n_per_epoch)) * pairs


def extra_at_step(step_in_epoch, steps_per_epoch, n_extra) -> jax.Array:
    """How many of an epoch's `n_extra` extras go to this step: spread evenly, summing to n_extra.

    floor((t + 1) E / S) - floor(t E / S), at most ceil(E / S): the size to pad the extra slots of a
    fixed-shape batch to (use `valid` in `triplet_loss`).
    """
    t = jnp.asarray(step_in_epoch, jnp.int32)
    s = jnp.asarray(steps_per_epoch, jnp.int32)
    e = jnp.asarray(n_extra, jnp.int32)
    return jnp.where((t >= 0) & (t < s), (t + 1) * e // s - t * e // s, 0)


def extra_triplets(trials: Trials, n: int, rng: np.random.Generator) -> Trials:
    """`n` additional training trials drawn uniformly with replacement from `trials` (human labels kept)."""
    if n > 0 and len(trials) == 0:
        raise InputError("no training trials to draw extra triplets from", fix="check the split")
    idx = rng.integers(0, len(trials), size=int(n))
    return trials.select(idx)


def reference_extra_fires(step_in_epoch, steps_per_epoch, n_extra) -> jax.Array:
    """The authors' extra-constraint steps: every max(1, S // E)-th step until E are added (0, 4, .. 2948)."""
    every = jnp.maximum(jnp.asarray(steps_per_epoch, jnp.int32) // jnp.maximum(n_extra, 1), 1)
    t = jnp.asarray(step_in_epoch, jnp.int32)
    return (t % every == 0) & (t // every < n_extra)


# ------------------------------------------------------------------------ language-distillation control


def _rows(ids: np.ndarray | None, query: np.ndarray) -> np.ndarray:
    query = np.asarray(query)
    if ids is None:
        return query
    ids = np.asarray(ids)
    order = np.argsort(ids)
    pos = order[np.searchsorted(ids[order], query).clip(0, len(ids) - 1)]
    if (ids[pos] != query).any():
        missing = np.unique(query[ids[pos] != query])
        raise InputError(f"no caption embedding for video id(s) {missing[:5].tolist()}", fix="embed them")
    return pos


def caption_distance_matrix(caption_emb: np.ndarray) -> np.ndarray:
    """(N, N) D^MPNet = 1 - z_i.z_j of L2-normalised captions (§3.3.1), zero diagonal, float64.

    The RSA target of the language-distillation control; its mask is every off-diagonal pair
    (`caption_rsa_targets`).
    """
    x = np.asarray(caption_emb, np.float64)
    z = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    d = 1.0 - z @ z.T
    np.fill_diagonal(d, 0.0)
    return d


def caption_rsa_targets(caption_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance, mask) for the control's RSA term: MPNet distances, all off-diagonal pairs observed."""
    d = caption_distance_matrix(caption_emb)
    return d, ~np.eye(len(d), dtype=bool)


def caption_odd_one_out(
    caption_emb: np.ndarray, items: np.ndarray, ids: np.ndarray | None = None
) -> np.ndarray:
    """(T,) the odd one of each trial `items` (T, 3) with the caption model as the rater.

    The odd one is the item whose removal leaves the most similar (cosine) pair, as the standard
    three-way rule. Rows of `caption_emb` are `ids` (default: row = video id). Ties go to the first item.
    """
    items = np.asarray(items).reshape(-1, 3)
    d = caption_distance_matrix(caption_emb)
    a, b, c = _rows(ids, items).T
    # column q: distance of the pair that leaves item q out; the closest pair names the odd one
    pair_d = np.stack([d[b, c], d[a, c], d[a, b]], axis=1)
    return items[np.arange(len(items)), np.argmin(pair_d, axis=1)]


def caption_trials(trials: Trials, caption_emb: np.ndarray, ids: np.ndarray | None = None) -> Trials:
    """The same trials (videos, order) with the odd one chosen in caption space."""
    odd = caption_odd_one_out(caption_emb, trials.items, ids)
    return Trials(trials.items, odd, trials.participant, trials.response_time, f"{trials.source} (captions)")
