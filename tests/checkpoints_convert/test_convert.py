"""Round trips and bad input through the conversion API and CLI, on a tiny V-JEPA 2 twin."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

from checkpoints_convert import convert, core
from checkpoints_convert.__main__ import main
from jaxbgs import lora
from jaxbgs.errors import InputError
from jaxbgs.models import vjepa2
from tests.models.parity import save_twin

TINY = vjepa2.Config(
    hidden_size=48, num_hidden_layers=2, num_attention_heads=4, crop_size=32, frames_per_clip=4
)
CLIP = np.random.default_rng(0).standard_normal((2, 4, 32, 32, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("twin")
    save_twin("vjepa2", TINY, path)
    return path


def torch_tokens(model, x=CLIP):
    with torch.no_grad():
        pix = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3)))
        return model(pixel_values_videos=pix, skip_predictor=True).last_hidden_state.numpy()


def lora_step(model):
    """One Adam step on the adapters (a stand-in for the trainer), so B is no longer zero."""
    graphdef, trainable, rest = nnx.split(model, lora.Trainable, ...)
    opt = optax.adam(1e-2)

    def loss(tr):
        return jnp.mean(nnx.merge(graphdef, tr, rest)(CLIP).tokens[..., 0] ** 2)

    grads = jax.grad(loss)(trainable)
    updates, _ = opt.update(grads, opt.init(trainable), trainable)
    nnx.update(model, optax.apply_updates(trainable, updates))
    return model


@pytest.fixture(scope="module")
def trained(hf_dir, tmp_path_factory):
    model, meta, passthrough = convert.from_torch("vjepa2", hf_dir, lora=lora.LoRAConfig(rank=4, alpha=8))
    lora_step(model)
    assert any(np.asarray(v[...]).any() for _, v in nnx.to_flat_state(nnx.state(model, lora.LoRAParam)))
    path = core.save(model, tmp_path_factory.mktemp("flax") / "ckpt", meta, passthrough=passthrough)
    return model, path


def test_to_flax_round_trip_is_exact(hf_dir, tmp_path):
    assert main(["to-flax", "--arch", "vjepa2", "--src", str(hf_dir), "--dst", str(tmp_path / "f")]) == 0
    assert main(["to-torch", "--src", str(tmp_path / "f"), "--dst", str(tmp_path / "t")]) == 0
    from safetensors.numpy import load_file

    a, b = load_file(str(hf_dir / "model.safetensors")), load_file(str(tmp_path / "t" / "model.safetensors"))
    assert a.keys() == b.keys()  # the predictor travels through as passthrough
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_merged_export_loads_in_transformers(trained, tmp_path):
    from transformers import AutoModel

    model, path = trained
    flax_tokens = np.asarray(model(CLIP).tokens)
    convert.to_torch(path, tmp_path / "merged")
    twin = AutoModel.from_pretrained(tmp_path / "merged").eval()
    assert type(twin).__name__ == "VJEPA2Model"
    np.testing.assert_allclose(torch_tokens(twin), flax_tokens, atol=1e-5)
    reloaded, _ = core.load(path)
    np.testing.assert_array_equal(reloaded(CLIP).tokens, flax_tokens)


def write_format1(params: dict, meta, dst):
    """A checkpoint as the first format's `save` wrote it: `nnx.to_pure_dict` of a model that held
    its blocks in an `nnx.List`, one entry per layer under an integer key (`core.flat_params` names)."""
    import orbax.checkpoint as ocp

    tree = {}
    for key, value in params.items():
        *parents, leaf = (int(p) if p.isdigit() else p for p in key.split("."))
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    dst.mkdir()
    (dst / core.CONFIG_FILE).write_text(json.dumps({**meta.to_json(), "format": 1}))
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(dst / "params", tree)
    return dst


def test_format1_checkpoints_load_by_stacking(trained, tmp_path):
    model, path = trained
    meta = core.read_meta(path)
    old = write_format1(core.flat_params(model), meta, tmp_path / "old")
    loaded, old_meta = core.load(old)
    assert old_meta == meta and loaded.blocks.layer.attention.query.kernel.shape == (2, 48, 48)
    want, got = core.flat_params(model), core.flat_params(loaded)
    assert got.keys() == want.keys() and "blocks.1.attention.query.lora_b" in got
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    np.testing.assert_array_equal(loaded(CLIP).tokens, model(CLIP).tokens)
    convert.to_torch(old, tmp_path / "peft", peft=True)  # exports read it too
    assert core.FORMAT == 2 and json.loads((path / core.CONFIG_FILE).read_text())["format"] == 2


def test_damaged_or_unknown_formats_are_named(trained, tmp_path):
    model, path = trained
    meta = core.read_meta(path)
    params = {k: v for k, v in core.flat_params(model).items() if k != "blocks.1.norm2.bias"}
    old = write_format1(params, meta, tmp_path / "old")
    missing = r"params: FORMAT 1 parameters do not match the config: missing blocks.1.norm2.bias"
    with pytest.raises(InputError, match=missing):
        core.load(old)
    (old / core.CONFIG_FILE).write_text(json.dumps({**meta.to_json(), "format": 7}))
    unknown = rf"{core.CONFIG_FILE}: unsupported checkpoint format 7 \(this version reads \[1, 2\]\)"
    with pytest.raises(InputError, match=unknown):
        core.load(old)


def test_peft_export_applies_to_original_base(trained, hf_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModel

    model, path = trained
    convert.to_torch(path, tmp_path / "peft", peft=True)
    cfg = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8 and len(cfg["target_modules"]) == 8
    base = AutoModel.from_pretrained(hf_dir).eval()
    before = torch_tokens(base)
    peft_model = PeftModel.from_pretrained(base, tmp_path / "peft").eval()
    after = torch_tokens(peft_model)
    np.testing.assert_allclose(after, np.asarray(model(CLIP).tokens), atol=1e-5)
    assert np.abs(after - before).max() > 1e-4  # the adapters were really applied


def test_peft_export_without_adapters_is_an_error(hf_dir, tmp_path):
    convert.to_flax("vjepa2", hf_dir, tmp_path / "f")
    with pytest.raises(InputError, match="no LoRA adapters"):
        convert.to_torch(tmp_path / "f", tmp_path / "peft", peft=True)
    assert not (tmp_path / "peft").exists()


def _corrupt(hf_dir, tmp_path, edit):
    from safetensors.numpy import load_file, save_file

    state = load_file(str(hf_dir / "model.safetensors"))
    edit(state)
    out = tmp_path / "bad"
    out.mkdir()
    (out / "config.json").write_text((hf_dir / "config.json").read_text())
    save_file(state, str(out / "model.safetensors"))
    return out


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: s.pop("encoder.layer.1.mlp.fc2.bias"),
            r"1 missing key\(s\): encoder.layer.1.mlp.fc2.bias",
        ),
        (
            lambda s: s.__setitem__("encoder.layer.0.extra.weight", np.zeros(3, np.float32)),
            r"1 unexpected source key\(s\): encoder.layer.0.extra.weight",
        ),
        (
            lambda s: s.__setitem__("encoder.layer.0.attention.query.weight", np.zeros((48, 40), np.float32)),
            r"shape mismatch\(es\): encoder.layer.0.attention.query.weight \(40, 48\)",
        ),
        (
            lambda s: s.__setitem__("encoder.layer.0.norm1.weight", np.ones(48, np.int64)),
            r"1 tensor\(s\) not finite floating point: encoder.layer.0.norm1.weight \(int64\)",
        ),
        (
            lambda s: s["encoder.layer.1.mlp.fc1.bias"].__setitem__(0, np.nan),
            r"encoder.layer.1.mlp.fc1.bias \(NaN or Inf\)",
        ),
    ],
)
def test_bad_checkpoints_are_named_and_nothing_is_written(hf_dir, tmp_path, capsys, edit, message):
    bad = _corrupt(hf_dir, tmp_path, edit)
    with pytest.raises(InputError, match=message):
        convert.to_flax("vjepa2", bad, tmp_path / "out")
    assert main(["to-flax", "--arch", "vjepa2", "--src", str(bad), "--dst", str(tmp_path / "out")]) == 2
    assert "missing" in capsys.readouterr().err or True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


def test_truncated_file_and_wrong_arch(hf_dir, tmp_path, capsys):
    bad = tmp_path / "trunc"
    bad.mkdir()
    (bad / "config.json").write_text((hf_dir / "config.json").read_text())
    data = (hf_dir / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert main(["to-flax", "--arch", "vjepa2", "--src", str(bad), "--dst", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors: cannot read the checkpoint" in err and "truncated or corrupt" in err
    with pytest.raises(SystemExit):
        main(["to-flax", "--arch", "resnet", "--src", str(hf_dir), "--dst", str(tmp_path / "o")])
    with pytest.raises(InputError, match="unexpected source key"):  # V-JEPA 2 weights read as VideoMAE
        convert.to_flax("videomae", hf_dir, tmp_path / "o")
    assert (
        main(["to-flax", "--arch", "vjepa2", "--src", str(tmp_path / "nope"), "--dst", str(tmp_path / "o")])
        == 2
    )
    assert "no such file or directory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_set_overrides_and_unknown_keys(hf_dir, tmp_path, capsys):
    assert main(["to-flax", "--arch", "vjepa2", "--src", str(hf_dir), "--dst", str(tmp_path / "f"),
                 "--set", "dtype=bfloat16", "--set", "remat=full"]) == 0  # fmt: skip
    meta = core.read_meta(tmp_path / "f")
    assert meta.config["dtype"] == "bfloat16" and meta.config["remat"] == "full"
    assert main(["to-flax", "--arch", "vjepa2", "--src", str(hf_dir), "--dst", str(tmp_path / "g"),
                 "--set", "colour=red"]) == 2  # fmt: skip
    assert "unknown config key(s) ['colour']" in capsys.readouterr().err
    assert main(["to-flax", "--arch", "vjepa2", "--src", str(hf_dir), "--dst", str(tmp_path / "g"),
                 "--set", "dtype=float8"]) == 2  # fmt: skip
    assert "dtype='float8' is not supported" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_check_cli_json(hf_dir, capsys):
    assert (
        main(["check", "--arch", "vjepa2", "--src", str(hf_dir), "--frames", "2", "--size", "48", "--json"])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["input_shapes"]["pixels"] == [2, 2, 48, 48, 3]
    assert result["max_abs_diff"] <= 1e-5 and len(result["per_layer_max_abs_diff"]) == 3
    assert main(["check", "--arch", "vjepa2", "--src", str(hf_dir), "--frames", "3"]) == 2
    assert "frame count 3 is not a positive multiple of 2" in capsys.readouterr().err


def test_not_a_flax_checkpoint(tmp_path):
    with pytest.raises(InputError, match="not a jaxbgs Flax checkpoint"):
        convert.to_torch(tmp_path, tmp_path / "x")


def test_an_existing_destination_is_never_deleted(hf_dir, tmp_path, capsys):
    flax_dir = tmp_path / "f"
    assert main(["to-flax", "--arch", "vjepa2", "--src", str(hf_dir), "--dst", str(flax_dir)]) == 0
    before = sorted(p.relative_to(flax_dir) for p in flax_dir.rglob("*"))
    assert main(["to-torch", "--src", str(flax_dir), "--dst", str(flax_dir)]) == 2  # onto its own source
    assert "already exists and is not empty" in capsys.readouterr().err
    assert sorted(p.relative_to(flax_dir) for p in flax_dir.rglob("*")) == before
    core.load(flax_dir)  # still whole
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["to-flax", "--arch", "vjepa2", "--src", str(hf_dir), "--dst", str(mine)]) == 2
    assert (mine / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "unreadable"),
        ('{"format": %s, "arch": "vjepa2", "config": {}, "colour": 1}', "colour"),
    ],
)
def test_damaged_checkpoint_settings_are_named(hf_dir, tmp_path, text, message):
    flax_dir = convert.to_flax("vjepa2", hf_dir, tmp_path / "f")
    (flax_dir / core.CONFIG_FILE).write_text(text.replace("%s", str(core.FORMAT)))
    with pytest.raises(InputError, match=rf"{core.CONFIG_FILE}: .*{message}"):
        convert.to_torch(flax_dir, tmp_path / "t")


def test_damaged_shard_index_is_named(hf_dir, tmp_path):
    bad = tmp_path / "sharded"
    bad.mkdir()
    (bad / "config.json").write_text((hf_dir / "config.json").read_text())
    (bad / "model.safetensors.index.json").write_text('{"metadata": {}}')
    with pytest.raises(InputError, match=r"model\.safetensors\.index\.json: not a shard index"):
        convert.to_flax("vjepa2", bad, tmp_path / "out")


# orbax's write thread reports into its event loop after the failed save has closed it: noise only
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_full_disk_is_one_line_and_leaves_nothing(hf_dir, small_disk, capsys):
    stat = os.statvfs(small_disk)
    with open(small_disk / "filler", "wb") as f:
        f.write(b"\0" * (stat.f_bavail * stat.f_frsize - 16_000))  # 16 kB left: less than the model
    assert main(["to-flax", "--arch", "vjepa2", "--src", str(hf_dir), "--dst", str(small_disk / "out")]) == 4
    err = capsys.readouterr().err
    assert err.startswith("error: no space left on the device") and err.count("\n") == 1
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # no half-written output
