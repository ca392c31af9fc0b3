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


def test_every_video_and_ratings_come_back_by_split(tmp_path):
    rng = np.random.default_rng(1)
    ids = np.array([3, 1, 4, 0])
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "results.json").write_text("{}")
    np.savez(tmp_path / "embeddings.npz", ids=ids[2:], pretrained=rng.normal(size=(2, 3)),
             finetuned=rng.normal(size=(2, 3)), test_items=np.zeros((0, 3), int), test_odd=np.zeros(0, int),
             all_ids=ids, all_split=np.array(["train", "val", "test", "test"]),
             all_pretrained=rng.normal(size=(4, 3)), all_finetuned=rng.normal(size=(4, 3)),
             rating_names=np.array(["approach", "energy"]), ratings=rng.normal(size=(4, 2)))  # fmt: skip
    run = load_run(tmp_path)
    assert set(run.embeddings) == {"pretrained", "finetuned"}
    assert set(run.videos) == {"ids", "split", "pretrained", "finetuned"}
    np.testing.assert_array_equal(run.split_rows("train", "val"), [0, 1])
    np.testing.assert_array_equal(run.videos["ids"][run.split_rows("test")], [4, 0])
    assert run.ratings[0] == ("approach", "energy") and run.ratings[1].shape == (4, 2)


def test_test_only_run_says_it_cannot_probe(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "results.json").write_text("{}")
    empty = {"test_items": np.zeros((0, 3), int), "test_odd": np.zeros(0, int)}
    zeros = np.zeros((2, 3))
    np.savez(tmp_path / "embeddings.npz", ids=np.arange(2), pretrained=zeros, finetuned=zeros, **empty)
    run = load_run(tmp_path)
    assert run.videos is None and run.ratings is None
    with pytest.raises(InputError, match="test videos only"):
        run.split_rows("train")
