"""The optimizer's learning-rate schedules: constant (the paper), or warm-up + cosine, kept in the state."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import experiments
from jaxbgs.errors import InputError
from jaxbgs.trainer.step import make_optimizer


def _lrs(opt, n):
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    out = []
    for _ in range(n):
        _, state = opt.update({"w": jnp.ones(3)}, state, params)
        out.append(float(state.hyperparams["learning_rate"]))
    return np.array(out)


def test_constant_and_cosine_schedules():
    np.testing.assert_allclose(_lrs(make_optimizer(1e-3, 0.01), 4), 1e-3)
    lrs = _lrs(make_optimizer(1e-3, 0.01, schedule="cosine", warmup_steps=4, total_steps=12), 12)
    # The state holds the rate each step used (what metrics.jsonl logs): warm-up from 0 to lr over 4
    # steps, then half a cosine towards 0 at step 12.
    expected = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 4, 12)
    np.testing.assert_allclose(lrs, [float(expected(k)) for k in range(12)], rtol=1e-6)
    assert lrs[0] == 0.0 and lrs.argmax() == 4 and lrs[4] == pytest.approx(1e-3) and lrs[-1] < 5e-5
    with pytest.raises(InputError, match="unknown lr schedule"):
        make_optimizer(1e-3, 0.0, schedule="linear")


def test_schedule_settings_are_checked():
    base = experiments.get("demo")
    with pytest.raises(InputError, match="lr_schedule"):
        experiments.override(base, experiments.parse_sets(["lr_schedule=step"]))
    with pytest.raises(InputError, match="cannot be combined"):
        experiments.override(base, experiments.parse_sets(["lr_schedule=cosine", "lr_plateau=true"]))
    exp = experiments.override(base, experiments.parse_sets(["lr_schedule=cosine", "warmup_steps=10"]))
    assert exp.lr_schedule == "cosine" and exp.warmup_steps == 10


def test_dropout_masks_follow_the_step_key():
    """LoRA and head dropout draw from the step's key: another step, other masks; the same key, the
    same masks (models are built with one `default` stream, which the step reseeds too)."""
    import jax
    from flax import nnx

    from jaxbgs import lora
    from jaxbgs.models import vjepa2
    from jaxbgs.trainer.step import Trainer

    cfg = vjepa2.Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, crop_size=32,
                        frames_per_clip=2, head_dim=8, head_dropout=0.5)  # fmt: skip
    model = vjepa2.Model(cfg, lora=lora.LoRAConfig(rank=2, dropout=0.5), rngs=nnx.Rngs(0))
    trainer = Trainer(model, make_optimizer(1e-3, 0.0), mean=(0.5,) * 3, std=(0.2,) * 3, margin=0.2, n_grad=1)
    trainable, _ = trainer.init()
    trainable = jax.tree.map(lambda x: x + 0.1, trainable)  # B != 0: the adapters' dropout shows
    clips = np.random.default_rng(0).integers(0, 256, (2, 2, 32, 32, 3), dtype=np.uint8)

    def emb(seed):
        m = trainer._model(trainable, trainer.rest, jax.random.key(seed), train=True)
        return np.asarray(trainer._emb(m, clips))

    assert np.array_equal(emb(1), emb(1))
    assert not np.allclose(emb(1), emb(2))
