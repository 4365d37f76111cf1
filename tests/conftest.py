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



@pytest.fixture(autouse=True, scope="module")
def emotune_cache(tmp_path_factory):
    """ONNX exports go to a temporary cache per test module, never ~/.cache (a module may override this fixture)."""
    path = tmp_path_factory.mktemp("emotune_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMOTUNE_CACHE", str(path))
        yield path


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests run tiny tensors: with 2 OpenMP threads on a busy 2-core box each small op waits on a busy core and the
    same forward takes up to ~100x longer (2 s vs 20 ms for MobileNetV2 at 32 px). One thread for the whole run,
    module-scoped fixtures included."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _repin_one_thread(one_torch_thread):
    """Training with --threads N changes torch's thread count process-wide: put it back after every test."""
    yield
    import torch

    torch.set_num_threads(1)
