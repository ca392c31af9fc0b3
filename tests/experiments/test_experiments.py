"""Experiment configs: every one builds and validates; overrides are typed; unknown keys are errors."""

import json

import pytest

import experiments
from jaxbgs.errors import InputError


@pytest.mark.parametrize("name", sorted(experiments.EXPERIMENTS))
def test_every_experiment_builds_and_round_trips(name):
    exp = experiments.get(name)
    assert exp.name == name and exp.description
    assert experiments.Experiment.from_json(json.loads(json.dumps(exp.to_json()))) == exp


def test_table2_rows_are_all_there():
    expected = {
        "vjepa", "vjepa21", "vjepa21-triplet", "vjepa21-rsa", "vjepa21-mpnet-distilled", "timesformer",
        "timesformer-triplet", "timesformer-rsa", "timesformer-budget-matched", "timesformer-reference",
        "videomae", "clip", "demo",
    }  # fmt: skip
    assert set(experiments.EXPERIMENTS) == expected


def test_overrides_are_parsed_by_type():
    exp = experiments.override(
        experiments.get("vjepa"),
        experiments.parse_sets(
            ["lr=3e-4", "epochs=7", "lora_targets=qkv,mlp", "head_dim=null", "lora_alpha=8"]
        ),
    )
    assert exp.lr == 3e-4 and exp.epochs == 7 and exp.lora_targets == ("qkv", "mlp")
    assert exp.head_dim is None and exp.lora_alpha == 8.0 and isinstance(exp.lora_alpha, float)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["lrr=1"], r"unknown config key\(s\) \['lrr'\]"),
        (["epochs=many"], "epochs expects int"),
        (["loss=contrastive"], "loss='contrastive'"),
        (["rsa_grad_videos=30"], "rsa_grad_videos <= rsa_videos"),
        (["val_fraction=1.5"], "val_fraction must be in"),
        (["lr"], "is not key=value"),
        (["lr=NaN"], "lr must be > 0, got nan"),
        (["lr=-1"], "lr must be > 0"),
        (["patience=0"], "patience must be > 0"),
        (["max_steps=0"], "max_steps must be > 0"),
        (["head_dim=0"], "head_dim must be > 0"),
        (["seed=-1"], "seed must be >= 0"),
        (["alpha=1.5"], r"alpha must be in \[0, 1\]"),
        (["head_dropout=1"], r"head_dropout must be in \[0, 1\)"),
        (["arch=resnet"], "arch='resnet'"),
        (["dtype=null"], "dtype='None'"),
        (["remat=some"], "remat='some'"),
        (["frame_grouping=config"], "frame_grouping is a TimeSformer option"),
        (["out={nam}"], "out='{nam}' is not a path template"),
        (["out="], "out is empty"),
        (["lr=1e-3", "lr=5"], "lr is set twice"),
        (["name=demo"], "use --exp NAME"),
        (["lora_targets=qkv,ffn"], "vjepa2 has no 'ffn' layers"),
        (["lora_targets=qkv,temporal_dense"], "vjepa2 has no 'temporal_dense' layers"),
        (["lora_targets=[]"], r"lora_targets=\(none\): each target once"),
        (["lora_targets=qkv,qkv"], "each target once"),
        (["attention=cudnn", "dtype=float32"], "cuDNN's fused attention computes in bfloat16 or float16"),
    ],
)
def test_bad_overrides(sets, message):
    with pytest.raises(InputError, match=message):
        experiments.override(experiments.get("vjepa"), experiments.parse_sets(sets))


def test_reference_experiment_carries_the_authors_choices():
    ref = experiments.get("timesformer-reference")
    assert (ref.lora_rank, ref.lora_alpha, ref.head_dim, ref.frames) == (8, 16.0, 128, 16)
    assert ref.lora_targets == ("qkv", "out", "mlp", "temporal_dense") and ref.frame_grouping == "config"
    assert ref.beta_schedule == "capped" and ref.select_on == "rho" and ref.lr_plateau
