"""jaxbgs.sharding: the rules table, and training on simulated meshes and two processes equal to one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import experiments
from jaxbgs import sharding
from jaxbgs.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"data": 2, "fsdp": 4, "tensor": 2}


def test_rules_map_logical_names_and_fall_back_to_replicated():
    P = jax.sharding.PartitionSpec
    assert sharding.spec(("embed", "mlp"), (48, 96), SIZES) == P("fsdp", "tensor")
    assert sharding.spec(("batch", None), (16, 3), SIZES) == P(("data", "fsdp"), None)
    # 12 rows do not split 8 ways over (data, fsdp): replicated rather than an error.
    assert sharding.spec(("batch", None), (12, 3), SIZES) == P(None, None)
    assert sharding.spec(("embed", "lora"), (6, 4), SIZES) == P(None, None)  # 6 % 4 != 0; rank whole
    # A mesh axis is used once per array: the second "embed" stays whole.
    assert sharding.spec(("embed", "embed"), (48, 48), SIZES) == P("fsdp", None)
    assert sharding.spec(("embed", "mlp"), (48, 96), {"data": 8, "fsdp": 1, "tensor": 1}) == P(None, None)
    # Stacked blocks: the layer axis stays whole, a layer's own dimensions shard as before.
    assert sharding.spec(("layers", "embed", "mlp"), (4, 48, 96), SIZES) == P(None, "fsdp", "tensor")


def test_mesh_config_resolves_the_rest_and_names_bad_shapes():
    assert sharding.MeshConfig().shape(8) == (8, 1, 1)
    assert sharding.MeshConfig(data=2, fsdp=-1).shape(8) == (2, 4, 1)
    for bad, n in (((3, 1, 1), 8), ((-1, -1, 1), 8), ((0, 1, 1), 8), ((-1, 3, 1), 8)):
        with pytest.raises(InputError, match="mesh|devices"):
            sharding.MeshConfig(*bad).shape(n)


def test_mesh_is_set_from_the_experiment():
    exp = experiments.override(experiments.get("demo"), {"mesh.data": "2", "mesh.fsdp": "-1"})
    assert exp.mesh == sharding.MeshConfig(2, -1, 1)
    with pytest.raises(InputError, match="mesh"):
        experiments.override(experiments.get("demo"), {"mesh.data": "-1", "mesh.fsdp": "-1"})
    with pytest.raises(InputError, match="unknown config key"):
        experiments.override(experiments.get("demo"), {"mesh.pipeline": "2"})


def _env(**kw):
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)
    return env | kw


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("mesh8")
    env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=8")
    proc = subprocess.run([sys.executable, "-m", "tests.sharding_cases", str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def test_sharded_steps_equal_the_single_device_step(eight_devices):
    steps = eight_devices["steps"]
    assert {k.split("/")[0] for k in steps} == {"vjepa2", "timesformer"}
    assert {k.split("/")[1] for k in steps} == {"8x1", "4x2", "2x4", "2x2x2"}
    for case, r in steps.items():
        assert r["loss_diff"] < 1e-6 and r["param_diff"] < 1e-6, (case, r)
        assert r["losses"][1] != r["losses"][0]  # the first step changed the adapters


def test_socialfusion_joint_training_is_the_same_on_every_mesh(eight_devices):
    sf = eight_devices["socialfusion"]
    assert set(sf) == {"8x1", "4x2", "2x4", "2x2x2"}
    for mesh, r in sf.items():
        assert r["loss_diff"] < 1e-5 and r["param_diff"] < 1e-5, (mesh, r)
        (lm0, lm1), (h0, h1) = (r["losses"][0][1], r["losses"][1][1]), (r["losses"][0][2], r["losses"][1][2])
        assert lm0 > 0 and h0 > 0 and (lm0, h0) != (lm1, h1)  # both terms present, and the step trained


def test_frozen_weights_and_batches_are_split(eight_devices):
    p = eight_devices["placement"]  # mesh data 2 x fsdp 4; fc1 kernels stacked (layers, embed, mlp)
    assert p["fc1_spec"] == "P(None, 'fsdp', None)"
    assert p["fc1_shard"] == [p["fc1_shape"][0], p["fc1_shape"][1] // 4, p["fc1_shape"][2]]
    assert p["batch_shard"][0] == 24 // 8


def test_checkpoint_restores_onto_another_mesh(eight_devices):
    assert eight_devices["restore"] == {"value_diff": 0.0, "same_shardings": True}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one(tmp_path):
    """3 demo steps data-parallel over two processes (one CPU device each, gloo collectives) end
    bitwise where one process over the same two-device mesh ends."""
    cache, cmd = tmp_path / "cache", [sys.executable, "-m", "tests.distributed_demo"]
    one = subprocess.run(cmd + [str(tmp_path / "one"), str(cache), "0", "1", "0"], cwd=ROOT, timeout=600,
                         env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"),
                         capture_output=True, text=True)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    port = str(_free_port())
    two = [str(tmp_path / "two"), str(cache)]
    procs = [subprocess.Popen(cmd + two + [str(i), "2", port], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]  # fmt: skip
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        outs.append(out)
    assert "mesh {'data': 2, 'fsdp': 1, 'tensor': 1} over 2 device(s), 2 process(es)" in outs[0]
    assert "demo:" not in outs[1] and "mesh" not in outs[1]  # logs from process 0 only
    ckpt, here = ocp.StandardCheckpointer(), jax.sharding.SingleDeviceSharding(jax.devices()[0])
    path = {k: (tmp_path / k / "checkpoints" / "3" / "state").absolute() for k in ("one", "two")}
    target = jax.tree.map(  # both written over two devices; read onto this process's one
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here),
        ckpt.metadata(path["one"]).item_metadata,
    )
    ref, got = ckpt.restore(path["one"], target), ckpt.restore(path["two"], target)
    leaves = list(zip(jax.tree.leaves(ref["trainable"]), jax.tree.leaves(got["trainable"]), strict=True))
    assert sum(len(a) for a, _ in leaves) == 48  # 4 layers of 12 adapter factors, stacked (layers, ...)
    for a, b in leaves:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert any(np.abs(np.asarray(a)).max() > 0 for a, _ in leaves[1::2])  # lora_b moved from zero
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # logged once, by process 0
