"""SocialFusion fixtures: a tiny demo experiment and its prepared data and trainer."""

from __future__ import annotations

import dataclasses

import pytest

import experiments
from jaxbgs.socialfusion import train as sft


def tiny(tmp, **kw):
    small = dict(
        demo_per_class=3,
        image_size=32,
        connector_hidden=16,
        lora_rank=2,
        lora_alpha=4.0,
        gaze_channels=4,
        epochs=2,
        batch_size=8,
        warmup_steps=2,
        out=str(tmp / "run"),
        cache=str(tmp / "cache"),
    )
    return dataclasses.replace(experiments.get("socialfusion-demo"), **(small | kw))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sf")
    exp = tiny(tmp)
    data, trainer = sft.prepare(exp)
    return exp, data, trainer
