"""Shared pytest fixtures.

Reference data live outside the repository, in ``../shared`` next to the repository root; tests that need them
take one of these fixtures and are skipped cleanly (not failed) on checkouts where that folder is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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


def _chw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, -1, 0), dtype=np.float64)


@pytest.fixture(scope="session")
def toolbox_qb(toolbox_qb_dir: Path) -> dict:
    """The toolbox's QuickBird arrays as float64 (bands, rows, cols), its metrics and its configuration;
    ``fused`` maps the upper-case method name (``"GSA"``, ``"MTF-GLP"``, ...) to that method's output."""
    meta = json.loads((toolbox_qb_dir / "metrics.json").read_text())
    inputs = np.load(toolbox_qb_dir / "inputs.npz")
    fused = np.load(toolbox_qb_dir / "fused.npz")
    return {
        "config": meta["config"],
        "metrics": meta["metrics"],
        "gt": _chw(inputs["gt"]),
        "ms_lr": _chw(inputs["ms_lr"]),
        "ms_up": _chw(inputs["ms_up"]),
        "pan": inputs["pan"].astype(np.float64),
        "fused": {name.upper(): _chw(fused[name]) for name in fused.files},
    }


@pytest.fixture(scope="module")
def torch_single_thread():
    """Network tests use small tensors, for which intra-op threads only add synchronisation (10-100x slower on a
    loaded 2-core machine); modules opt in with ``pytestmark = pytest.mark.usefixtures("torch_single_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def spatialx(capfd, monkeypatch):
    """The console entry point (``spatialx.cli.main.run``, with its signal guard) in-process: ``spatialx(*args,
    cwd=...)`` returns a CompletedProcess with the exit status and the captured stdout/stderr."""
    import subprocess
    import sys

    from spatialx.cli.main import run

    def invoke(*args, cwd: Path) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["spatialx", *map(str, args)])
        capfd.readouterr()
        code = 0
        try:
            run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return invoke
