"""BGS's loss on the shared sharded update (`jaxbgs.training.trainer.ShardedTrainer`: split the
trainable state once, merge inside the loss, `jax.value_and_grad`, `jax.jit` with explicit in/out
shardings over the mesh and the states donated).

Two compiled variants share one body: with and without the RSA term (the RSA step embeds 24 more
clips, so it is not paid on the other steps). The `M` gradient-carrying RSA clips and the `K - M`
constant ones are embedded separately, the latter under `stop_gradient`, so no backward pass is
spent on them.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from jaxbgs import losses
from jaxbgs.training.trainer import ShardedTrainer, make_optimizer

__all__ = ["LossWeights", "Trainer", "augment", "make_optimizer", "normalise"]


def normalise(clips, mean, std, dtype=jnp.float32):
    """uint8 clips -> normalised float on device (the cache stays uint8: 4x less host traffic)."""
    x = clips.astype(jnp.float32) / 255.0
    return ((x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)).astype(dtype)


def augment(clips, key):
    """One random symmetry of the square (rotation, flip) and colour-channel order per batch.

    For the demo's scenes these change appearance and layout but not the social relations, so the
    adapters cannot memorise which clip is which by its look. Real experiments leave it off.
    """
    k_dihedral, k_perm = jax.random.split(key)
    ops = [
        lambda x, r=r, f=f: jnp.rot90(x[..., ::-1, :] if f else x, r, axes=(2, 3))
        for r in range(4)
        for f in (0, 1)
    ]
    clips = jax.lax.switch(jax.random.randint(k_dihedral, (), 0, 8), ops, clips)
    return jnp.take(clips, jax.random.permutation(k_perm, clips.shape[-1]), axis=-1)


@dataclasses.dataclass(frozen=True)
class LossWeights:
    alpha: float  # triplet weight (Eq. 4)
    use_triplet: bool
    use_rsa: bool
    video: bool = False  # video-batched step: one embedding per distinct video, trials index into it


class Trainer(ShardedTrainer):
    """BGS: binds normalisation, margin and the RSA split outside the jitted step."""

    def __init__(
        self, model: nnx.Module, optimizer, *, mean, std, margin: float, n_grad: int, augment: bool = False,
        mesh=None, seed: int = 0,
    ):  # fmt: skip
        super().__init__(model, optimizer, mesh=mesh, seed=seed)
        self.augment = augment
        self.mean, self.std, self.margin, self.n_grad = mean, std, margin, n_grad
        self.dtype = model.cfg.compute_dtype

    def _model(self, trainable, rest, key=None, *, train: bool):
        m = nnx.merge(self.graphdef, trainable, rest, copy=True)  # fresh variables at this trace level
        if key is not None:
            nnx.reseed(m, dropout=key, default=key)  # models built with nnx.Rngs(seed): a `default` stream
        m.train() if train else m.eval()
        return m

    def _emb(self, m, clips):
        return m(normalise(clips, self.mean, self.std, self.dtype)).embedding.astype(jnp.float32)

    def _embed_eval(self, trainable, rest, clips, layers: bool):
        out = self._model(trainable, rest, train=False)(normalise(clips, self.mean, self.std, self.dtype))
        emb = out.embedding.astype(jnp.float32)
        if not layers:
            return emb
        pooled = [h.astype(jnp.float32).mean(axis=1) for h in out.hidden_states]
        return emb, jnp.stack(pooled, axis=1)

    def embed(self, trainable, clips, *, layers: bool = False):
        """Eval-mode clip embeddings (and per-layer mean-pooled states), replicated on every process."""
        clips = self.place({"clips": clips})["clips"]
        key = ("embed", layers, clips.shape, clips.sharding)
        if key not in self._steps:
            self._steps[key] = jax.jit(
                functools.partial(self._embed_eval, layers=layers),
                in_shardings=(self.shardings, self.rest_shardings, clips.sharding),
                out_shardings=self.replicated,
            )
        with jax.set_mesh(self.mesh):
            return self._steps[key](trainable, self.rest, clips)

    def loss(self, trainable, rest, batch, key, beta, w: LossWeights):
        """Eq. 4: alpha * triplet + beta * RSA (terms switched by `w`); returns (total, parts)."""
        parts = {"triplet": jnp.float32(0.0), "rsa": jnp.float32(0.0), "rsa_pairs": jnp.int32(0)}
        if w.video:
            return self._video_loss(trainable, rest, batch, key, beta, w, parts)
        total = jnp.float32(0.0)
        if w.use_triplet:
            m = self._model(trainable, rest, jax.random.fold_in(key, 0), train=True)
            b = batch["valid"].shape[0]
            clips = batch["trial_clips"]
            e = self._emb(m, augment(clips, jax.random.fold_in(key, 2)) if self.augment else clips)
            idx = jnp.arange(b)
            parts["triplet"] = losses.triplet_loss(
                e, idx, idx + b, idx + 2 * b, margin=self.margin, valid=batch["valid"]
            )
            total = total + w.alpha * parts["triplet"]
        if w.use_rsa:
            clips, m_grad = batch["rsa_clips"], self.n_grad
            if self.augment:
                clips = augment(clips, jax.random.fold_in(key, 3))
            m = self._model(trainable, rest, jax.random.fold_in(key, 1), train=True)
            e_grad = self._emb(m, clips[:m_grad])
            e_const = jax.lax.stop_gradient(
                self._emb(self._model(trainable, rest, train=False), clips[m_grad:])
            )
            e = jnp.concatenate([e_grad, e_const])
            parts["rsa"], parts["rsa_pairs"] = losses.rsa_loss_with_count(
                e, batch["rsa_dist"], batch["rsa_mask"], n_grad=m_grad
            )
            total = total + beta * parts["rsa"]
        return total, parts

    def _video_loss(self, trainable, rest, batch, key, beta, w: LossWeights, parts):
        """Video-batched: the batch's distinct videos are embedded once (all carry gradients); every
        judged trial among them indexes into those embeddings, and the RSA term covers all their pairs."""
        m = self._model(trainable, rest, jax.random.fold_in(key, 0), train=True)
        clips = batch["clips"]
        e = self._emb(m, augment(clips, jax.random.fold_in(key, 2)) if self.augment else clips)
        total = jnp.float32(0.0)
        if w.use_triplet:
            parts["triplet"] = losses.triplet_loss(
                e, batch["a"], batch["p"], batch["n"], margin=self.margin, valid=batch["valid"]
            )
            total = total + w.alpha * parts["triplet"]
        if w.use_rsa:
            parts["rsa"], parts["rsa_pairs"] = losses.rsa_loss_with_count(
                e, batch["rsa_dist"], batch["rsa_mask"], n_grad=e.shape[0]
            )
            total = total + beta * parts["rsa"]
        return total, parts

    def step(self, trainable, opt_state, batch, step, beta, w: LossWeights):
        """One BGS update at global step `step`; `w` picks the compiled variant (with or without the
        RSA term). Returns a `StepOut` (states, device metrics, the next step's counter)."""
        return self.update(trainable, opt_state, batch, step, beta, static=w)
