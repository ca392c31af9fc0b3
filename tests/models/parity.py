"""Parity helpers: build a PyTorch twin from a tiny random config, save it as a HF directory,
convert it, and compare outputs and every layer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from checkpoints_convert import convert, families


def save_twin(arch: str, cfg, path, *, seed: int = 0):
    """A randomly initialised PyTorch twin of `cfg`, saved as a HF directory; returns the model."""
    fam = families.get(arch)
    torch.manual_seed(seed)
    model = fam.torch_model(fam.hf_config(cfg))
    with torch.no_grad():  # HF inits LayerNorms to (1, 0) and some biases to 0: make every tensor informative
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.save_pretrained(path)
    return model


def parity(arch: str, src, *, frames=None, size=None, tol=1e-5, seed=0) -> dict:
    """Float32 check through the public `check` path; asserts output and every layer <= tol."""
    result = convert.check(arch, src, frames=frames, size=size, seed=seed)
    assert result["max_abs_diff"] <= tol, result
    assert max(result["per_layer_max_abs_diff"]) <= tol, result
    return result


def parity_float64(arch: str, src, *, frames=None, size=None, tol=1e-10, seed=0) -> float:
    """The same comparison with both sides in float64; returns the largest difference."""
    fam = families.get(arch)
    with jax.enable_x64(True):
        model, meta, _ = convert.from_torch(arch, src, dtype="float64")
        state = nnx.state(model)
        nnx.update(
            model,
            jax.tree.map(
                lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, state
            ),
        )
        from checkpoints_convert import core

        st, hf, _ = core.read_checkpoint(src, unwrap=fam.unwrap)
        twin = fam.torch_from_state(hf or fam.hf_config(fam.config(meta)), st).double()
        inputs = fam.example_input(fam.config(meta), frames, size, seed)
        inputs = {
            k: v.astype(np.float64) if np.issubdtype(v.dtype, np.floating) else v for k, v in inputs.items()
        }
        with torch.no_grad():
            t_final, t_hidden = fam.torch_forward(twin, inputs)
        f_final, f_hidden = fam.flax_forward(model, inputs)
        assert f_final.dtype == np.float64 and t_final.dtype == np.float64
        result = convert.compare(t_final, t_hidden, f_final, f_hidden)
    worst = max(result["max_abs_diff"], *result["per_layer_max_abs_diff"])
    assert worst <= tol, result
    return worst
