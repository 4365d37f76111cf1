"""Shared test fixtures: the ../shared data folder (skipped with a reason when absent)."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs shared data at {path} (absent on this machine)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`, or skip the test when this checkout has no shared data next to it."""
    return _need(SHARED / "data")


@pytest.fixture(scope="session")
def fer2013_dir(shared_data: Path) -> Path:
    return _need(shared_data / "fer2013")


@pytest.fixture(scope="session")
def ferplus_valid_dir(shared_data: Path) -> Path:
    return _need(shared_data / "ferplus" / "FER2013Valid")


@pytest.fixture(scope="session")
def ckplus_dir(shared_data: Path) -> Path:
    return _need(shared_data / "ckplus48")
