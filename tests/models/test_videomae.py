"""VideoMAE against transformers `VideoMAEModel`, and its task checkpoints' layouts."""

import json

import numpy as np
import pytest
import torch
from flax import nnx

from checkpoints_convert import convert, core, families
from jaxbgs import lora
from jaxbgs.errors import InputError
from jaxbgs.models import videomae
from tests.models.parity import parity, parity_float64, save_twin

# Pre-trained layout (final layernorm) at square frames; fine-tuned layout (mean pooling, no final
# norm) without q/v biases at non-square frames and another frame count.
TINY = videomae.Config(
    hidden_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=96,
    image_size=32,
    num_frames=4,
)
TINY_POOLED = TINY.replace(image_size=(32, 48), num_frames=6, use_mean_pooling=True, qv_bias=False)
CONFIGS = {"square": TINY, "pooled_non_square": TINY_POOLED}


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    dirs = {}
    for name, cfg in CONFIGS.items():
        dirs[name] = tmp_path_factory.mktemp(name)
        save_twin("videomae", cfg, dirs[name])
    return dirs


def twin_and_model(path, **kw):
    fam = families.get("videomae")
    state, hf, _ = core.read_checkpoint(path)
    model, meta, passthrough = convert.from_torch("videomae", path, **kw)
    return fam.torch_from_state(hf, state), model, meta, passthrough


def torch_tokens(twin, x):
    with torch.no_grad():
        return twin(
            pixel_values=torch.from_numpy(x.transpose(0, 1, 4, 2, 3).copy())
        ).last_hidden_state.numpy()


def clip(cfg, batch=1, seed=1):
    h, w = cfg.frame_size
    return np.random.default_rng(seed).standard_normal((batch, cfg.num_frames, h, w, 3)).astype(np.float32)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_parity_float32(twins, name):
    result = parity("videomae", twins[name])
    assert len(result["per_layer_max_abs_diff"]) == CONFIGS[name].num_hidden_layers + 1


@pytest.mark.parametrize("name", list(CONFIGS))
def test_parity_float64(twins, name):
    parity_float64("videomae", twins[name])


def test_parity_realistic_width(tmp_path):
    cfg = videomae.Config.variant("vit_base").replace(num_hidden_layers=2, image_size=32, num_frames=2)
    save_twin("videomae", cfg, tmp_path)
    parity("videomae", tmp_path, tol=1e-4)


def test_final_norm_and_embedding_follow_use_mean_pooling(twins):
    _, model, _, _ = twin_and_model(twins["square"])
    assert model.layernorm is not None
    out = model(clip(TINY))
    np.testing.assert_allclose(out.embedding, np.asarray(out.tokens).mean(axis=1), rtol=1e-6)
    _, pooled, _, _ = twin_and_model(twins["pooled_non_square"])
    assert pooled.layernorm is None
    out = pooled(clip(TINY_POOLED))
    np.testing.assert_array_equal(out.tokens, out.hidden_states[-1])  # no final norm, as transformers


def test_position_table_matches_transformers():
    from transformers.models.videomae.modeling_videomae import get_sinusoid_encoding_table

    np.testing.assert_array_equal(
        videomae.sinusoid_table(40, 48), get_sinusoid_encoding_table(40, 48)[0].numpy()
    )


def test_other_frame_counts_and_sizes_are_rejected(twins):
    """transformers' fixed table has no interpolation: it fails too, less clearly."""
    twin, model, _, _ = twin_and_model(twins["square"])
    for shape in [(1, 6, 32, 32, 3), (1, 2, 32, 32, 3), (1, 3, 32, 32, 3)]:
        with pytest.raises(InputError, match=rf"exactly 4 frames of 32x32 .* got shape \(1, {shape[1]},"):
            model(np.zeros(shape, np.float32))
    for shape in [(1, 4, 48, 32, 3), (1, 4, 32, 48, 3)]:
        with pytest.raises(InputError, match="exactly 4 frames of 32x32"):
            model(np.zeros(shape, np.float32))
    with pytest.raises(InputError, match="with 3 channels"):
        model(np.zeros((1, 4, 32, 32, 1), np.float32))
    with pytest.raises(RuntimeError):  # position table of 2*2*2 tokens vs 3*2*2
        torch_tokens(twin, np.zeros((1, 6, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="doesn't match model"):
        torch_tokens(twin, np.zeros((1, 4, 48, 32, 3), np.float32))
    _, pooled, _, _ = twin_and_model(twins["pooled_non_square"])
    with pytest.raises(InputError, match="exactly 6 frames of 32x48"):
        pooled(np.zeros((1, 6, 48, 32, 3), np.float32))


def test_output_attentions_match_eager_twin(twins):
    twin, model, _, _ = twin_and_model(twins["pooled_non_square"])
    twin.set_attn_implementation("eager")
    x = clip(TINY_POOLED, batch=2)
    with torch.no_grad():
        ref = twin(pixel_values=torch.from_numpy(x.transpose(0, 1, 4, 2, 3).copy()), output_attentions=True)
    out = model(x, output_attentions=True)
    n = 3 * 2 * 3
    assert len(out.attentions) == TINY.num_hidden_layers
    for a, b in zip(ref.attentions, out.attentions, strict=True):
        assert b.shape == (2, TINY.num_attention_heads, n, n)
        np.testing.assert_allclose(np.asarray(b), a.numpy(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.tokens), ref.last_hidden_state.numpy(), atol=1e-5)


def test_remat_under_jit_keeps_outputs_and_trains_adapters():
    import jax
    import jax.numpy as jnp

    x = clip(TINY)
    ref = videomae.Model(TINY, lora=lora.LoRAConfig(), rngs=nnx.Rngs(0))(x).embedding
    model = videomae.Model(TINY.replace(remat="full"), lora=lora.LoRAConfig(), rngs=nnx.Rngs(0))
    graphdef, trainable, rest = nnx.split(model, lora.Trainable, ...)
    loss = jax.jit(jax.value_and_grad(lambda t: jnp.sum(nnx.merge(graphdef, t, rest)(x).embedding ** 2)))
    value, grads = loss(trainable)
    np.testing.assert_allclose(value, jnp.sum(ref**2), rtol=1e-5)
    assert sum(len(g) for g in jax.tree.leaves(grads)) == 2 * 4 * TINY.num_hidden_layers  # (layers, ...)


@pytest.mark.parametrize(
    ("targets", "names"),
    [
        (
            ("qkv", "out"),
            {
                "attention.attention.query",
                "attention.attention.key",
                "attention.attention.value",
                "attention.output.dense",
            },
        ),
        (("mlp",), {"intermediate.dense", "output.dense"}),
        (("temporal_dense",), set()),
    ],
)
def test_lora_targets(targets, names):
    model = videomae.Model(TINY, lora=lora.LoRAConfig(targets=targets), rngs=nnx.Rngs(0))
    paths = {".".join(map(str, p)) for p in lora.adapter_paths(model)}
    assert paths == {f"blocks.{i}.{n}" for i in range(TINY.num_hidden_layers) for n in names}


def test_lora_summary_of_videomae_base():
    cfg = videomae.Config()
    model = nnx.eval_shape(lambda: videomae.Model(cfg, lora=lora.LoRAConfig(), rngs=nnx.Rngs(0)))
    s = lora.summary(model)
    assert s.adapted_layers == 4 * cfg.num_hidden_layers
    assert s.lora == 4 * cfg.num_hidden_layers * 8 * 2 * cfg.hidden_size
    assert 86_000_000 < s.total < 87_000_000 and s.fraction < 0.02


def test_peft_export_applies_to_transformers_model(twins, tmp_path):
    from peft import PeftModel

    twin, model, meta, _ = twin_and_model(
        twins["square"], lora=lora.LoRAConfig(targets=("qkv", "out", "mlp"))
    )
    rng = np.random.default_rng(0)
    for _, v in nnx.to_flat_state(nnx.state(model, lora.LoRAParam)):
        v[...] = 0.05 * rng.standard_normal(v.shape).astype(np.float32)
    config, tensors = convert.peft_adapters(model, meta)
    assert "encoder.layer.1.attention.attention.key" in config["target_modules"]
    assert len(config["target_modules"]) == 6 * TINY.num_hidden_layers
    from safetensors.numpy import save_file

    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    save_file(tensors, str(tmp_path / "adapter_model.safetensors"))
    x = clip(TINY)
    before = torch_tokens(twin, x)
    after = torch_tokens(PeftModel.from_pretrained(twin, tmp_path).eval(), x)
    np.testing.assert_allclose(after, np.asarray(model(x).tokens), atol=1e-5)
    assert np.abs(after - before).max() > 1e-3


def task_twin(cls_name, cfg, path):
    import transformers

    torch.manual_seed(0)
    hf = families.get("videomae").hf_config(cfg)
    model = getattr(transformers, cls_name)(transformers.VideoMAEConfig(**{**hf, "num_labels": 5})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.save_pretrained(path)
    return model


@pytest.mark.parametrize(
    ("cls_name", "cfg"),
    [("VideoMAEForPreTraining", TINY), ("VideoMAEForVideoClassification", TINY_POOLED)],
)
def test_task_checkpoints_load_their_backbone(cls_name, cfg, tmp_path):
    task = task_twin(cls_name, cfg, tmp_path)
    _, meta, passthrough = convert.from_torch("videomae", tmp_path)
    assert passthrough == {}  # decoder / classifier tensors are dropped on purpose
    parity("videomae", tmp_path)
    model, _, _ = convert.from_torch("videomae", tmp_path)
    x = clip(cfg)
    np.testing.assert_allclose(torch_tokens(task.videomae, x), np.asarray(model(x).tokens), atol=1e-5)


def test_export_round_trip_writes_q_v_bias(twins, tmp_path):
    from safetensors.numpy import load_file
    from transformers import AutoModel

    src = twins["square"]
    convert.to_torch(convert.to_flax("videomae", src, tmp_path / "flax"), tmp_path / "torch")
    a, b = load_file(str(src / "model.safetensors")), load_file(str(tmp_path / "torch" / "model.safetensors"))
    assert a.keys() == b.keys() and "encoder.layer.0.attention.attention.q_bias" in b
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    exported = AutoModel.from_pretrained(tmp_path / "torch").eval()
    assert type(exported).__name__ == "VideoMAEModel"
    x = clip(TINY)
    np.testing.assert_array_equal(torch_tokens(exported, x), torch_tokens(AutoModel.from_pretrained(src), x))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("missing", r"1 missing key\(s\): encoder.layer.1.attention.attention.v_bias"),
        ("extra", r"1 unexpected source key\(s\): encoder.layer.0.attention.attention.k_bias"),
        ("shape", r"encoder.layer.0.intermediate.dense.weight \(48, 95\) -> blocks.0.intermediate"),
    ],
)
def test_strict_conversion(twins, tmp_path, edit, message):
    from safetensors.numpy import load_file, save_file

    src = twins["square"]
    state = load_file(str(src / "model.safetensors"))
    if edit == "missing":
        del state["encoder.layer.1.attention.attention.v_bias"]
    elif edit == "extra":
        state["encoder.layer.0.attention.attention.k_bias"] = np.zeros(48, np.float32)
    else:
        state["encoder.layer.0.intermediate.dense.weight"] = np.zeros((95, 48), np.float32)
    (tmp_path / "config.json").write_text((src / "config.json").read_text())
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(InputError, match=message):
        convert.from_torch("videomae", tmp_path)


def test_config_json_round_trip_keeps_non_square_size():
    assert videomae.Config.from_json(json.loads(json.dumps(TINY_POOLED.to_json()))) == TINY_POOLED
    with pytest.raises(InputError, match="no CLS token"):
        videomae.Config(pool="cls")


def test_preprocess_matches_torch_resize_crop_normalize():
    """`VideoMAEImageProcessor` steps: torchvision's antialiased bilinear resize of the short side (long
    side truncated), centre crop, /255 and ImageNet mean/std; rebuilt here with torch ops."""
    video = np.random.default_rng(0).integers(0, 256, (20, 120, 170, 3), dtype=np.uint8)
    out = np.asarray(videomae.preprocess(video, size=64, frames=16))
    assert out.shape == (16, 64, 64, 3)
    frames = torch.from_numpy(video[np.floor(np.linspace(0, 19, 16)).astype(int)]).permute(0, 3, 1, 2)
    resized = torch.nn.functional.interpolate(
        frames.float(), size=(64, int(64 * 170 / 120)), mode="bilinear", antialias=True, align_corners=False
    )
    left = (resized.shape[-1] - 64) // 2
    ref = resized[..., left : left + 64].permute(0, 2, 3, 1).numpy() / 255.0
    ref = (ref - np.array(videomae.IMAGENET_MEAN)) / np.array(videomae.IMAGENET_STD)
    assert np.abs(out - ref).mean() < 0.01 and np.abs(out - ref).max() < 0.2, np.abs(out - ref).max()
