"""SocialFusion experiments: every one builds and round-trips, overrides are typed, bad values named."""

import json

import pytest

import experiments
from experiments.socialfusion import SOCIALFUSION, TASKS, SocialFusionExperiment
from jaxbgs.errors import InputError


@pytest.mark.parametrize("name", sorted(SOCIALFUSION))
def test_every_socialfusion_experiment_builds_and_round_trips(name):
    exp = experiments.get(name)
    assert isinstance(exp, SocialFusionExperiment) and exp.name == name and exp.description
    assert SocialFusionExperiment.from_json(json.loads(json.dumps(exp.to_json()))) == exp


def test_the_paper_settings_and_the_variants():
    joint = experiments.get("socialfusion")
    assert (joint.lr, joint.warmup_steps, joint.batch_size, joint.lora_rank, joint.connector_hidden) == (
        2e-4,
        500,
        32,
        32,
        4096,
    )
    assert joint.tasks == TASKS and joint.undersample and joint.lam == pytest.approx(1 / 5)
    assert {f"socialfusion-{t.replace('_', '-')}" for t in TASKS} <= set(SOCIALFUSION)
    assert experiments.get("socialfusion-gaze").lam == 1.0  # alone, the heatmap term is the whole loss
    assert {experiments.get(n).encoder for n in ("socialfusion-dinov2", "socialfusion-siglip")} == {
        "dinov2",
        "siglip",
    }
    assert set(SOCIALFUSION) <= set(experiments.all_names())


def test_overrides_and_bad_values():
    exp = experiments.override(
        experiments.get("socialfusion"), experiments.parse_sets(["tasks=lam,gaze", "lr=1e-4", "mesh.fsdp=2"])
    )
    assert exp.tasks == ("lam", "gaze") and exp.lr == 1e-4 and exp.mesh_fsdp == 2
    with pytest.raises(InputError, match="unknown config key"):
        experiments.override(exp, {"frames": "8"})  # a BGS key
    for sets, message in (
        ({"tasks": "lam,smile"}, "tasks"),
        ({"encoder": "resnet"}, "encoder"),
        ({"batch_size": "0"}, "batch_size"),
        ({"data_dirs": "lam"}, "data_dirs"),
        ({"data_dirs": "lam:/a,lam:/b"}, "names a task twice"),
        ({"lr": "NaN"}, "lr must be > 0, got nan"),
        ({"gaze_weight": "NaN"}, "gaze_weight must be >= 0"),
        ({"lora_alpha": "-5"}, "lora_alpha must be > 0"),
        ({"max_steps": "-1"}, "max_steps must be > 0"),
        ({"seed": "-1"}, "seed must be >= 0"),
        ({"limit": "0"}, "limit must be > 0"),
        ({"out": "runs/{nam}"}, "is not a path template"),
    ):
        with pytest.raises(InputError, match=message):
            experiments.override(exp, sets)
