"""Sharded training steps against the single-device step, on 8 simulated CPU devices.

Run by tests/test_sharding.py in a subprocess (the device count is fixed when JAX starts):
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tests.sharding_cases OUT_DIR
Writes OUT_DIR/results.json: per backbone and mesh, the largest differences to one device.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from jaxbgs import sharding
from jaxbgs.lora import LoRAConfig
from jaxbgs.models import build, timesformer, vjepa2
from jaxbgs.trainer.step import LossWeights, Trainer, make_optimizer

CONFIGS = {  # hidden 48 and MLP 96 split evenly over 2, 4 and 8 devices along fsdp or tensor
    "vjepa2": vjepa2.Config(
        hidden_size=48, num_hidden_layers=2, num_attention_heads=4, crop_size=32, frames_per_clip=4
    ),
    "timesformer": timesformer.Config(
        hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
        image_size=32, patch_size=8, num_frames=4,
    ),
}  # fmt: skip
MESHES = {"8x1": (8, 1, 1), "4x2": (4, 2, 1), "2x4": (2, 4, 1), "2x2x2": (2, 2, 2)}
HYBRID = LossWeights(alpha=0.7, use_triplet=True, use_rsa=True)


def trainer(arch: str, shape: tuple[int, int, int] | None) -> Trainer:
    model = build(arch, CONFIGS[arch], lora=LoRAConfig(rank=4, targets=("qkv", "out", "mlp")), seed=0)
    devices = jax.devices()[:1] if shape is None else jax.devices()
    mesh = sharding.make_mesh(sharding.MeshConfig(*(shape or (1, 1, 1))), devices)
    return Trainer(model, make_optimizer(1e-2, 0.01), mean=(0.45,) * 3, std=(0.25,) * 3, margin=0.2, n_grad=8,
                   mesh=mesh)  # fmt: skip


def batch(rng: np.random.Generator, frames: int = 4, size: int = 32) -> dict:
    """8 trials (24 clips) and 24 RSA clips with a partly observed human matrix."""
    d = rng.random((24, 24)).astype(np.float32)
    mask = rng.random((24, 24)) < 0.6
    mask = np.triu(mask, 1)
    return {
        "trial_clips": rng.integers(0, 256, (24, frames, size, size, 3), dtype=np.uint8),
        "valid": np.arange(8) < 7,  # one padded trial
        "rsa_clips": rng.integers(0, 256, (24, frames, size, size, 3), dtype=np.uint8),
        "rsa_dist": (d + d.T) / 2,
        "rsa_mask": mask | mask.T,
    }


def run(t: Trainer, batches: list[dict]):
    trainable, opt_state = t.init()
    losses = []
    for i, b in enumerate(batches):
        trainable, opt_state, out, _ = t.step(trainable, opt_state, b, i, 0.5, HYBRID)
        losses.append(float(out["loss"]))
    return losses, trainable, opt_state


def socialfusion_trainer(shape: tuple[int, int, int] | None):
    """Joint SocialFusion on a tiny Llama (widths split evenly over 2, 4 and 8 devices)."""
    from jaxbgs.models import llama
    from jaxbgs.socialfusion import model as sf
    from jaxbgs.socialfusion import train as sft

    llm = llama.Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=8)  # fmt: skip
    cfg = sf.Config(llm=llm, feature_dim=16, grid=4, connector_hidden=32, lora_rank=4, gaze_channels=8)
    devices = jax.devices()[:1] if shape is None else jax.devices()
    mesh = sharding.make_mesh(sharding.MeshConfig(*(shape or (1, 1, 1))), devices)
    return sft.Trainer(sf.SocialFusion(cfg, rngs=nnx.Rngs(0)), make_optimizer(1e-2, 0.0),
                       lam=0.2, mesh=mesh)  # fmt: skip


def socialfusion_batch(rng: np.random.Generator) -> dict:
    """16 rows of mixed tasks reading 6 shared prompts: classification rows with answer tokens,
    gaze rows with heatmaps, padding."""
    from jaxbgs.socialfusion import gaze

    kind = np.arange(16) % 4  # 0, 1: classification, 2: gaze, 3: one padded row
    points = rng.random((16, 2))
    return {
        "features": rng.standard_normal((16, 16, 16)).astype(np.float16),
        "tokens": rng.integers(1, 64, (6, 8)).astype(np.int32),  # 6 task prompts shared by the rows
        "token_mask": np.arange(8)[None] >= rng.integers(0, 4, (6, 1)),  # left padding
        "prompt": rng.integers(0, 6, 16).astype(np.int32),
        "boxes": np.tile(np.array([[0.1, 0.1, 0.5, 0.6], [0.4, 0.2, 0.9, 0.9]], np.float32), (16, 1, 1)),
        "box_valid": rng.random((16, 2)) < 0.7,
        "answer": rng.integers(0, 64, 16).astype(np.int32),
        "is_cls": (kind < 2).astype(np.float32),
        "is_gaze": (kind == 2).astype(np.float32),
        "heat": gaze.target_heatmap(points) * (kind == 2)[:, None, None],
    }


def max_diff(a, b) -> float:
    return max(float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in zip(jax.tree.leaves(a),
               jax.tree.leaves(b), strict=True))  # fmt: skip


def main(out: Path) -> None:
    assert jax.device_count() == 8, jax.devices()
    rng = np.random.default_rng(0)
    batches = [batch(rng) for _ in range(2)]
    results = {"steps": {}, "restore": {}, "placement": {}}
    for arch in CONFIGS:
        ref_losses, ref_params, _ = run(trainer(arch, None), batches)
        for name, shape in MESHES.items():
            t = trainer(arch, shape)
            losses, params, opt_state = run(t, batches)
            results["steps"][f"{arch}/{name}"] = {
                "loss_diff": max(abs(a - b) for a, b in zip(losses, ref_losses, strict=True)),
                "param_diff": max_diff(params, ref_params),
                "losses": losses,
            }
            if arch == "vjepa2" and name == "8x1":
                saved = {"trainable": params, "opt_state": opt_state}
                with ocp.StandardCheckpointer() as ckpt:
                    ckpt.save((out / "ckpt").absolute(), saved)
    # SocialFusion joint training: the same sharded update machinery, on every mesh.
    sf_batches = [socialfusion_batch(rng) for _ in range(2)]

    def sf_run(t):
        trainable, opt_state = t.init()
        losses = []
        for i, b in enumerate(sf_batches):
            trainable, opt_state, out, _ = t.step(trainable, opt_state, b, i)
            losses.append([float(out["loss"]), float(out["lm"]), float(out["heatmap"])])
        return losses, trainable

    ref_losses, ref_params = sf_run(socialfusion_trainer(None))
    results["socialfusion"] = {}
    for name, shape in MESHES.items():
        losses, params = sf_run(socialfusion_trainer(shape))
        results["socialfusion"][name] = {
            "loss_diff": float(np.abs(np.array(losses) - np.array(ref_losses)).max()),
            "param_diff": max_diff(params, ref_params),
            "losses": losses,
        }
    # A checkpoint written on the 8x1 mesh restored onto 2x4: same values, the new mesh's layout.
    target = trainer("vjepa2", MESHES["2x4"])
    trainable, opt_state = target.init()
    with ocp.StandardCheckpointer() as ckpt:
        restored = ckpt.restore((out / "ckpt").absolute(), {"trainable": trainable, "opt_state": opt_state})
    results["restore"] = {
        "value_diff": max_diff(restored["trainable"], saved["trainable"]),
        "same_shardings": all(
            a.sharding == b.sharding
            for a, b in zip(jax.tree.leaves(restored["trainable"]), jax.tree.leaves(trainable), strict=True)
        ),
    }
    # Where things live on 2x4x1: the frozen fc1 kernels (stacked over layers) split by fsdp, a batch
    # split 8 ways.
    fc1 = target.rest["blocks"]["layer"]["mlp"]["fc1"]["kernel"].get_value()
    placed = target.place({"trial_clips": batches[0]["trial_clips"]})["trial_clips"]
    results["placement"] = {
        "fc1_spec": str(fc1.sharding.spec),
        "fc1_shard": list(fc1.addressable_shards[0].data.shape),
        "fc1_shape": list(fc1.shape),
        "batch_spec": str(placed.sharding.spec),
        "batch_shard": list(placed.addressable_shards[0].data.shape),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
