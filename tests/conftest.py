"""Shared fixtures. The real released judgments live beside the checkout in ../shared/data/bgs_human."""

from __future__ import annotations

import os
import subprocess
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


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs: needs root and the right to mount (else skipped, saying so)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


from tests.trainer.world import tiny_exp, world  # noqa: E402, F401  (trainer fixtures)
