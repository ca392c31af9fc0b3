"""A finished BGS run directory as one object: what notebooks and scripts read after training.

`python -m jaxbgs.train` writes config.json, metrics.jsonl, results.json and embeddings.npz (the test
videos' embeddings, pretrained and fine-tuned, final and per layer, with the test trials and one
caption per video; and every video's final embeddings with its split, plus per-video ratings when
the data has them, as the demo's latents). Reading them in one place gives one clear error for an
unfinished or old run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from jaxbgs.data.judgments import Trials
from jaxbgs.data.matrices import PairMatrix, pair_matrix
from jaxbgs.errors import InputError

FILES = ("config.json", "results.json", "embeddings.npz")


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    path: Path
    config: dict
    results: dict
    ids: np.ndarray  # test video ids, rows of every embedding
    embeddings: dict[str, np.ndarray]  # pretrained, finetuned (n, d); layers_* (n, layers, d)
    test: Trials
    captions: dict[int, list[str]] | None
    videos: dict[str, np.ndarray] | None = None  # every video: ids, split, pretrained, finetuned
    ratings: tuple[tuple[str, ...], np.ndarray] | None = None  # (names, rows aligned with videos["ids"])

    def split_rows(self, *splits: str) -> np.ndarray:
        """Rows of `videos` in these splits ("train", "val", "test")."""
        if self.videos is None:
            raise InputError(
                "this run saved the test videos only", file=self.path / "embeddings.npz",
                fix="train it again with this version, which also embeds the training videos",
            )  # fmt: skip
        return np.flatnonzero(np.isin(self.videos["split"], splits))

    @property
    def human(self) -> PairMatrix:
        """The test split's human (or simulated-observer) pair matrix the run was scored against."""
        return pair_matrix(self.test, self.ids)

    def metrics(self) -> list[dict]:
        path = self.path / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def load_run(path: str | os.PathLike) -> Run:
    path = Path(path)
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise InputError(
            f"not a finished run: {', '.join(missing)} missing",
            file=path,
            fix="train it to the end with this version (python -m jaxbgs.train --exp NAME --out DIR)",
        )
    with np.load(path / "embeddings.npz") as z:
        arrays = {k: z[k] for k in z.files}
    ids = arrays.pop("ids")
    test = Trials(arrays.pop("test_items"), arrays.pop("test_odd"), source=str(path / "embeddings.npz"))
    captions = arrays.pop("captions", None)
    videos = {k[4:]: arrays.pop(k) for k in [k for k in arrays if k.startswith("all_")]} or None
    names = arrays.pop("rating_names", None)
    ratings = arrays.pop("ratings", None)
    return Run(
        path=path,
        config=json.loads((path / "config.json").read_text()),
        results=json.loads((path / "results.json").read_text()),
        ids=ids,
        embeddings=arrays,
        test=test,
        captions=None if captions is None else {int(i): [str(c)] for i, c in zip(ids, captions, strict=True)},
        videos=videos,
        ratings=None if ratings is None else (tuple(str(n) for n in names), ratings),
    )


def notebook_inputs() -> tuple[Path, list[Path], Path]:
    """(data, runs, figures) for the notebooks, from JAXBGS_DATA, JAXBGS_RUN (several separated by
    os.pathsep) and JAXBGS_FIGURES; relative paths start at the checkout jaxbgs is imported from, so
    a notebook finds them from any working directory. The figures directory is created."""
    import jaxbgs

    root = Path(jaxbgs.__file__).resolve().parents[1]
    env = os.environ
    data = root / env.get("JAXBGS_DATA", "../shared/data/bgs_human")
    runs = [root / p for p in env.get("JAXBGS_RUN", "runs/demo").split(os.pathsep)]
    figures = root / env.get("JAXBGS_FIGURES", "notebooks/figures")
    figures.mkdir(parents=True, exist_ok=True)
    return data, runs, figures
