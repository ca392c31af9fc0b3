"""The loop's steady state waits on nothing: no device-to-host transfer between fetches, metrics
fetched every `log_every` steps one step behind; TensorBoard events beside metrics.jsonl."""

from __future__ import annotations

import dataclasses
import json
import struct
import threading

import experiments
from jaxbgs import train
from jaxbgs.trainer import task
from jaxbgs.training import loop
from jaxbgs.training.loop import FitConfig, fit


def test_steady_state_steps_make_no_device_to_host_transfer(tiny_exp, tmp_path, monkeypatch):
    from jax._src.array import ArrayImpl

    exp = tiny_exp(experiments.get("vjepa"), loss="triplet")
    data, _, _, trainer = train.prepare(exp)
    bgs = task.BGSTask(exp, data, trainer)
    main = threading.main_thread()
    reads, fetching, per_step, fetches = [0], [False], [], []
    value = ArrayImpl._value

    def counted(self):  # every host read of a device array goes through ArrayImpl._value
        if threading.current_thread() is main and not fetching[0]:
            reads[0] += 1
        return value.fget(self)

    def fetch(tree):
        fetching[0] = True
        try:
            fetches.append(len(tree))
            return loop.jax.device_get(tree)
        finally:
            fetching[0] = False

    monkeypatch.setattr(ArrayImpl, "_value", property(counted))
    monkeypatch.setattr(loop, "fetch", fetch)
    monkeypatch.setattr(
        loop.faults, "point", lambda name: per_step.append(reads[0]) if name == "step" else None
    )
    cfg = FitConfig(epochs=1, log_every=4, checkpoint_every=0)
    result = fit(trainer, bgs, tmp_path / "run", cfg)
    n = result.progress.global_step
    assert n == len(bgs.plan(0)) >= 8
    assert per_step[1:] == [per_step[1]] * (n - 1)  # after the first step: not one read between steps
    assert fetches[:-1] == [4] * len(fetches[:-1]) and sum(fetches) == n  # every 4 steps, all logged once
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "step" in r] == list(range(n))


def _events(path) -> list:
    """Records of a TensorBoard event file (TFRecord framing), parsed with tensorboardX's protos."""
    from tensorboardX.proto import event_pb2

    data, out, i = path.read_bytes(), [], 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i : i + 8])
        event = event_pb2.Event()
        event.ParseFromString(data[i + 12 : i + 12 + n])
        out.append(event)
        i += 12 + n + 4
    return out


def test_tensorboard_events_beside_the_metrics(tiny_exp, tmp_path):
    exp = tiny_exp(experiments.get("vjepa"), epochs=2, log_every=2, out=str(tmp_path / "run"))
    res = train.run(dataclasses.replace(exp, max_steps=5))
    assert res["stopped_at_step"] == 5
    train.run(exp, resume=True)
    files = sorted((tmp_path / "run").glob("events.out.tfevents.*"))
    assert len(files) == 2  # one per leg
    scalars: dict[str, list[int]] = {}
    purge = []
    for f in files:
        for e in _events(f):
            if e.HasField("session_log"):
                purge.append(e.step)
            for v in e.summary.value:
                scalars.setdefault(v.tag, []).append(e.step)
    steps = [json.loads(r)["step"] for r in open(tmp_path / "run" / "metrics.jsonl") if '"step"' in r]
    assert sorted(scalars["train/loss"]) == steps == list(range(len(steps)))  # each step once
    assert {"train/grad_norm", "train/lr", "train/triplet", "train/input_wait_s"} <= scalars.keys()
    assert 5 in purge  # the resumed leg tells TensorBoard to drop what the first wrote after step 5
