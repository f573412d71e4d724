"""A short fuzz run of the readers (hypothesis on bytes, derandomised, a fixed budget): truncated and mutated
files give a spatialx error (one line for the user) or read; never another exception, never a hang. A longer run:
``SPATIALX_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_readers.py``."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.windows import Window
from scenes import write_pair

from spatialx.errors import SpatialxError
from spatialx.io.read import open_raster

EXAMPLES = int(os.environ.get("SPATIALX_FUZZ_EXAMPLES", "12"))
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"

mutations = st.tuples(st.floats(0.0, 1.0), st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)),
                                                     max_size=8))


def _mutate(data: bytes, cut: float, flips: list[tuple[float, int]]) -> bytes:
    out = bytearray(data[: max(1, int(len(data) * cut))] if cut < 0.98 else data)
    for where, value in flips:
        out[min(len(out) - 1, int(where * len(out)))] = value
    return bytes(out)


def _open_and_read(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            info = open_raster(path, "input")
            with info.reader() as reader:
                window = Window(0, 0, min(16, info.grid.width), min(16, info.grid.height))
                reader.read(window)
                reader.read_valid(window)
        except SpatialxError:
            pass  # a clear error for the user: what must happen for a broken file


def _fuzz(source: Path, name: str):
    data = source.read_bytes()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(mutations)
    def run(tmp_path_factory, mutation):
        target = tmp_path_factory.mktemp("fuzz") / name
        target.write_bytes(_mutate(data, *mutation))
        _open_and_read(target)

    return run


@pytest.fixture(scope="module")
def geotiff(tmp_path_factory) -> Path:
    _, ms = write_pair(tmp_path_factory.mktemp("gtiff"), pan_size=(64, 64))
    return ms


@pytest.fixture(scope="module")
def prisma(tmp_path_factory) -> Path:
    from spatialx.io.prisma import write_prisma_l2d

    wavelengths = np.linspace(420, 2400, 12)
    cube = np.random.default_rng(0).uniform(0.01, 0.6, (12, 16, 16)).astype(np.float32)
    return write_prisma_l2d(tmp_path_factory.mktemp("prisma") / "PRS_L2D_fuzz.he5", cube, wavelengths,
                            np.full(12, 11.0), 32631, 600000.0, 5000000.0, vnir_count=6)


def test_fuzz_geotiff(geotiff, tmp_path_factory):
    _fuzz(geotiff, "ms.tif")(tmp_path_factory)


def test_fuzz_prisma_he5(prisma, tmp_path_factory):
    _fuzz(prisma, "PRS_L2D_fuzz.he5")(tmp_path_factory)


@pytest.mark.skipif(not (REAL / "stfuse").is_dir(), reason="shared data absent")
def test_fuzz_modis_hdf4(tmp_path_factory):
    _fuzz(REAL / "stfuse" / "MOD11A1.A2021227.h11v05.061.2021228105320.hdf",
          "MOD11A1.A2021227.h11v05.061.2021228105320.hdf")(tmp_path_factory)


@pytest.mark.skipif(not (REAL / "stfuse").is_dir(), reason="shared data absent")
def test_fuzz_landsat_mtl(tmp_path_factory):
    """The MTL mutated inside a copy of the real scene folder (band files intact)."""
    import shutil

    folder = tmp_path_factory.mktemp("landsat-src") / "LC08_L2SP_001062_20201031_20201106_02_T2"
    shutil.copytree(REAL / "stfuse", folder, ignore=lambda d, names: [n for n in names if not n.startswith("LC08")])
    mtl = folder / "LC08_L2SP_001062_20201031_20201106_02_T2_MTL.txt"
    (folder / "LC08_L2SP_001062_20201031_20201106_02_T2_MTL.json").unlink()
    data = mtl.read_bytes()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(mutations)
    def run(mutation):
        mtl.write_bytes(_mutate(data, *mutation))
        _open_and_read(mtl)

    run()
