"""jaxbgs.analysis.runs: a run directory read back as the trainer wrote it, and clear errors otherwise."""

import json

import numpy as np
import pytest

from jaxbgs.analysis.runs import load_run
from jaxbgs.errors import InputError


def test_load_run_reads_what_the_trainer_writes(tmp_path):
    rng = np.random.default_rng(0)
    ids = np.array([2, 5, 7, 9])
    items = np.array([[2, 5, 7], [5, 7, 9], [2, 7, 9]])
    (tmp_path / "config.json").write_text(json.dumps({"name": "demo"}))
    (tmp_path / "results.json").write_text(json.dumps({"test_r2_finetuned": 0.5}))
    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n{"step": 1}\n')
    np.savez(tmp_path / "embeddings.npz", ids=ids, pretrained=rng.normal(size=(4, 3)),
             finetuned=rng.normal(size=(4, 3)), test_items=items, test_odd=items[:, 0],
             captions=np.array(["a", "b", "c", "d"]))  # fmt: skip
    run = load_run(tmp_path)
    assert run.config["name"] == "demo" and run.results["test_r2_finetuned"] == 0.5
    assert set(run.embeddings) == {"pretrained", "finetuned"}
    assert run.captions == {2: ["a"], 5: ["b"], 7: ["c"], 9: ["d"]}
    assert run.human.counts[0, 1] == 1 and run.human.counts[1, 2] == 2  # pairs (2,5) once, (5,7) twice
    assert [m["step"] for m in run.metrics()] == [0, 1]


def test_unfinished_run_names_what_is_missing(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match="results.json, embeddings.npz missing"):
        load_run(tmp_path)
