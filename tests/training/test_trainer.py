"""The sharded update: the dropout key comes from (seed, step) inside the compiled step, and a cuDNN
attention that fails to compile falls back to XLA's with one line naming the shape."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxbgs.models import layers
from jaxbgs.training import trainer as trainer_lib


def _attend(q):
    return layers.attention(q, q, q, implementation="auto")[0].sum()


def _make():
    """A fresh jit of a fresh callable, as the trainer makes (a jit cache hit would skip the retrace)."""
    return jax.jit(functools.partial(_attend))


def test_a_cudnn_compile_failure_falls_back_to_xla(monkeypatch):
    """cuDNN cannot run on this CPU, so its part is simulated: 'auto' resolves to cuDNN, the traced
    call runs XLA's kernel, and the first compile fails as cuDNN does for a shape it lacks."""
    real = jax.nn.dot_product_attention
    monkeypatch.setattr(layers, "attention_kernel", lambda impl, dtype, backend=None: "cudnn")
    monkeypatch.setattr(
        jax.nn,
        "dot_product_attention",
        lambda *a, implementation=None, **kw: real(*a, implementation="xla", **kw),
    )
    compiles = []
    compile_real = jax.stages.Lowered.compile

    def compile_once_failing(self, *a, **kw):
        compiles.append(1)
        if len(compiles) == 1:
            raise RuntimeError("INTERNAL: cuDNN: No valid execution plans built for this graph")
        return compile_real(self, *a, **kw)

    monkeypatch.setattr(jax.stages.Lowered, "compile", compile_once_failing)
    q = jnp.asarray(np.random.default_rng(0).standard_normal((2, 5, 4, 8)), jnp.bfloat16)
    lines = []
    with layers.record_attention() as seen:
        compiled = trainer_lib.compile_with_fallback(_make, (q,), log=lines.append)
    assert [c.kernel for c in seen] == ["xla"]  # the retrace forced XLA's kernel
    assert len(lines) == 1 and "cuDNN failed to compile q (2, 5, 4, 8) bfloat16" in lines[0]
    assert "this step uses XLA's attention" in lines[0]
    np.testing.assert_array_equal(np.asarray(compiled(q)), np.asarray(jax.jit(_attend)(q)))


def test_other_compile_errors_are_not_hidden(monkeypatch):
    def broken(self, *a, **kw):
        raise RuntimeError("INTERNAL: something else")

    monkeypatch.setattr(jax.stages.Lowered, "compile", broken)
    q = jnp.ones((1, 3, 2, 4), jnp.float32)
    try:
        trainer_lib.compile_with_fallback(_make, (q,), log=print)
    except RuntimeError as e:
        assert "something else" in str(e)
    else:
        raise AssertionError("the error was swallowed")
