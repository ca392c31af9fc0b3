"""Every family: PyTorch -> Flax -> one LoRA step -> PyTorch (merged, and PEFT adapters applied by
`peft` to the original base) reproduces the trained Flax model (<= 1e-5)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

from checkpoints_convert import convert, core, families
from jaxbgs import lora
from tests.models import test_bert, test_clip, test_timesformer, test_videomae, test_vjepa2, test_vjepa21
from tests.models.parity import save_twin

CONFIGS = {
    "vjepa2": test_vjepa2.TINY,
    "vjepa21": test_vjepa21.TINY,
    "timesformer": test_timesformer.TINY,
    "videomae": test_videomae.TINY,
    "clip": test_clip.TINY.replace(projection_dim=16),  # a full CLIPModel, the paper's checkpoint
    "bert": test_bert.TINY,
}
LORA = lora.LoRAConfig(rank=4, alpha=8, targets=("qkv", "out", "mlp", "temporal_dense"))


def make_source(arch, path):
    if arch == "vjepa21":
        path.mkdir()
        test_vjepa21.save_release(CONFIGS[arch], path / "release.pt")
        return path / "release.pt"
    save_twin(arch, CONFIGS[arch], path)
    return path


def call(model, inputs):
    return model(inputs["pixels"]) if "pixels" in inputs else model(**inputs)


def lora_step(model, inputs):
    """One Adam step on the adapters (the trainer's job, reduced to its core)."""
    graphdef, trainable, rest = nnx.split(model, lora.Trainable, ...)
    opt = optax.adam(1e-2)
    direction = jnp.asarray(np.random.default_rng(0).standard_normal(model.cfg.hidden_size), jnp.float32)

    def loss(tr):
        return jnp.mean((call(nnx.merge(graphdef, tr, rest), inputs).tokens @ direction) ** 2)

    grads = jax.jit(jax.grad(loss))(trainable)
    updates, _ = opt.update(grads, opt.init(trainable), trainable)
    nnx.update(model, optax.apply_updates(trainable, updates))


def torch_outputs(fam, twin, inputs):
    with torch.no_grad():
        return fam.torch_forward(twin, inputs)


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_round_trip_after_a_lora_step(arch, tmp_path):
    fam = families.get(arch)
    src = make_source(arch, tmp_path / "src")
    model, meta, passthrough = convert.from_torch(arch, src, lora=LORA)
    model.eval()
    inputs = fam.example_input(fam.config(meta), None, None, 3)
    before = fam.flax_forward(model, inputs)[0]
    lora_step(model, inputs)
    flax_final, flax_hidden = fam.flax_forward(model, inputs)
    assert np.abs(flax_final - before).max() > 1e-4, "the step must change the model"
    flax_dir = core.save(model, tmp_path / "flax", meta, passthrough=passthrough)

    # (a) merged weights, read back through the same reader users point at a checkpoint
    convert.to_torch(flax_dir, tmp_path / "merged")
    exported = tmp_path / "merged" / "vjepa2_1_encoder.pt" if arch == "vjepa21" else tmp_path / "merged"
    state, hf, _ = core.read_checkpoint(exported, unwrap=fam.unwrap)
    twin = fam.torch_from_state(hf or fam.hf_config(fam.config(meta)), state)
    result = convert.compare(*torch_outputs(fam, twin, inputs), flax_final, flax_hidden)
    assert max(result["max_abs_diff"], *result["per_layer_max_abs_diff"]) <= 1e-5, result

    # (b) the adapters alone, applied by peft to the original base model
    from peft import PeftModel

    convert.to_torch(flax_dir, tmp_path / "peft", peft=True)
    state, hf, _ = core.read_checkpoint(src, unwrap=fam.unwrap)
    base = fam.torch_from_state(hf or fam.hf_config(fam.config(meta)), state)
    original = torch_outputs(fam, base, inputs)[0]
    peft_model = PeftModel.from_pretrained(base, tmp_path / "peft").eval()
    final, hidden = torch_outputs(fam, peft_model.base_model.model, inputs)
    result = convert.compare(final, hidden, flax_final, flax_hidden)
    assert max(result["max_abs_diff"], *result["per_layer_max_abs_diff"]) <= 1e-5, result
    assert np.abs(final - original).max() > 1e-4  # the adapters were applied
