"""Shared fixtures. The real released judgments live beside the checkout in ../shared/data/bgs_human."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bgs_human"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "video_mapping.csv").is_file():
        pytest.skip(f"real BGS judgments not found at {DATA} (CI provides them there)")
    return DATA


@pytest.fixture(scope="session")
def human(data_dir):
    from jaxbgs.data.dataset import load_human_data

    return load_human_data(data_dir)


from tests.trainer.world import tiny_exp, world  # noqa: E402, F401  (trainer fixtures)
