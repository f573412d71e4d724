"""Shared pytest fixtures.

Reference data live outside the repository, in ``../shared`` next to the repository root; tests that need them
take one of these fixtures and are skipped cleanly (not failed) on checkouts where that folder is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``shared`` folder next to the repository root; skips the test when it is not there."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared reference data not found at {SHARED_DIR}")
    return SHARED_DIR


@pytest.fixture(scope="session")
def toolbox_qb_dir(shared_dir: Path) -> Path:
    """Reference vectors from the MATLAB pansharpening toolbox on the QuickBird Toulouse crop."""
    path = shared_dir / "data" / "reference" / "toolbox_qb"
    if not path.is_dir():
        pytest.skip(f"toolbox reference data not found at {path}")
    return path


@pytest.fixture(scope="module")
def torch_single_thread():
    """Network tests use small tensors, for which intra-op threads only add synchronisation (10-100x slower on a
    loaded 2-core machine); modules opt in with ``pytestmark = pytest.mark.usefixtures("torch_single_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
