"""The synthetic polsar scene (`spatialx sample DIR --task polsar`): a quad-pol SLC folder at 20 m and the HH SLC at
10 m read back through the PolSAR reader, the designed covariances recovered after multilooking, determinism, the
output policy, and fusion runs (library and CLI) whose C3 is positive semidefinite."""

from __future__ import annotations

import json
import math
import os
import shlex
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from scipy.ndimage import binary_erosion

from spatialx.errors import OutputError, SpatialxError
from spatialx.io.read import open_raster
from spatialx.metrics.polsar import is_psd
from spatialx.sample import POLSAR_C3_BANDS, POLSAR_MECHANISMS, PolsarRegion, write_polsar_sample
from spatialx.tasks.polsar import polsar

SIZE, SEED = 128, 3
ROLES = {"quad", "single", "reference", "regions", "summary"}
SLC_NAMES = ["slc_HH.tif", "slc_HV.tif", "slc_VH.tif", "slc_VV.tif"]
LOOKS = 5


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict[str, Path]:
    return write_polsar_sample(tmp_path_factory.mktemp("polsar") / "scene", size=SIZE, seed=SEED)


def read_all(info) -> np.ndarray:
    with info.reader() as reader:
        return reader.read(Window(0, 0, info.grid.width, info.grid.height)).astype(np.float64)


def read_tif(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def test_files_and_grids(scene):
    assert set(scene) == ROLES
    out = scene["summary"].parent
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in scene.values())
    assert sorted(p.name for p in scene["quad"].iterdir()) == SLC_NAMES
    with rasterio.open(scene["single"]) as single:
        assert single.count == 2 and single.dtypes == ("float32", "float32")
        assert single.crs.to_epsg() == 32631 and (single.width, single.height) == (SIZE, SIZE)
        fine = single.transform
        fine_bounds = single.bounds
    assert fine.a == 10.0 and fine.e == -10.0
    for name in SLC_NAMES:
        with rasterio.open(scene["quad"] / name) as src:
            assert src.count == 2 and src.dtypes == ("float32", "float32") and src.crs.to_epsg() == 32631
            assert (src.width, src.height) == (SIZE // 2, SIZE // 2)
            assert (src.transform.a, src.transform.e) == (2 * fine.a, 2 * fine.e)
            assert (src.transform.c, src.transform.f) == (fine.c, fine.f)
            assert src.bounds == fine_bounds
    with rasterio.open(scene["reference"]) as ref:
        assert ref.count == 9 and ref.transform == fine and ref.descriptions == POLSAR_C3_BANDS
    with rasterio.open(scene["regions"]) as reg:
        assert reg.transform == fine and set(np.unique(reg.read(1))) == {r.value for r in PolsarRegion}
    summary = json.loads(scene["summary"].read_text(encoding="utf-8"))
    assert summary["task"] == "polsar" and summary["ratio"] == 2 and summary["quad"] == "quad"
    assert summary["command"].startswith("spatialx polsar quad single_hh.tif ")
    assert all(f > 0.05 for f in summary["region_fractions"].values())


def test_readers(scene):
    quad = open_raster(scene["quad"], "quad-pol")
    assert quad.count == 9 and quad.metadata["representation"] == "C3"
    assert quad.descriptions == POLSAR_C3_BANDS and quad.grid.shape == (SIZE // 2, SIZE // 2)
    single = open_raster(scene["single"], "single-pol")
    assert single.count == 1 and single.metadata["representation"] == "intensity"
    assert single.grid.shape == (SIZE, SIZE)
    # the intensity is |S_HH|^2 of the file, the expected value C11 of the reference (over the scene)
    slc = read_tif(scene["single"]).astype(np.float64)
    np.testing.assert_allclose(read_all(single)[0], slc[0] ** 2 + slc[1] ** 2, rtol=1e-5)
    ratio = read_all(single)[0].mean() / read_tif(scene["reference"])[0].astype(np.float64).mean()
    assert 0.9 < ratio < 1.1


def test_region_covariances(scene):
    """Multilooked C3 of the quad folder against the expected C3 (the reference averaged onto the 20 m grid), per
    region, away from the boundaries, within 4 standard errors of the speckle: single-look intensities are
    exponential (standard deviation = mean), so the relative standard error of a region's mean is
    sqrt(sum e^2) / sum e over its pixels' expected values e (conservative: the boxcar brings in more pixels)."""
    c3 = read_all(open_raster(scene["quad"], "quad-pol", options={"looks": LOOKS}))
    n = SIZE // 2
    expected = read_tif(scene["reference"]).astype(np.float64).reshape(9, n, 2, n, 2).mean(axis=(2, 4))
    labels = read_tif(scene["regions"])[0][::2, ::2]
    c11, c13, c22, c33 = (POLSAR_C3_BANDS.index(b) for b in ("C11", "C13_re", "C22", "C33"))
    for region in PolsarRegion:
        inside = binary_erosion(labels == region, np.ones((LOOKS + 2, LOOKS + 2)), border_value=1)
        assert inside.sum() > 100, region
        for band in (c11, c22, c33):
            e = expected[band][inside]
            tolerance = 4 * math.sqrt(np.sum(e**2)) / np.sum(e)
            assert c3[band][inside].mean() == pytest.approx(e.mean(), rel=tolerance), (region, POLSAR_C3_BANDS[band])
        mech = POLSAR_MECHANISMS[region]
        # the HH/VV correlation: in phase for surface and volume, 180 degrees for double bounce
        rho = c3[c13][inside].mean() / math.sqrt(c3[c11][inside].mean() * c3[c33][inside].mean())
        assert rho == pytest.approx(mech.rho * math.cos(math.radians(mech.phase_deg)), abs=0.15), region
        # the cross-pol ratio: C22 / C11 = (1 + coherence) |HV|^2 / |HH|^2
        hv_hh = c3[c22][inside].mean() / c3[c11][inside].mean() / 1.9
        assert 10 * math.log10(hv_hh) == pytest.approx(10 * math.log10(mech.hv / mech.hh), abs=1.5), region
    surface = binary_erosion(labels == PolsarRegion.SURFACE, np.ones((7, 7)))
    double = binary_erosion(labels == PolsarRegion.DOUBLE_BOUNCE, np.ones((7, 7)))
    assert c3[c13][surface].mean() > 0 > c3[c13][double].mean()


def test_reciprocity(scene):
    def slc(pol: str) -> np.ndarray:
        iq = read_tif(scene["quad"] / f"slc_{pol}.tif").astype(np.float64)
        return iq[0] + 1j * iq[1]

    hv, vh = slc("HV"), slc("VH")
    coherence = abs(np.mean(hv * np.conj(vh))) / math.sqrt(np.mean(abs(hv) ** 2) * np.mean(abs(vh) ** 2))
    assert coherence == pytest.approx(0.9, abs=0.03)


def test_deterministic(scene, tmp_path):
    again = write_polsar_sample(tmp_path / "again", size=SIZE, seed=SEED)
    for path in [*(scene["quad"] / n for n in SLC_NAMES), scene["single"], scene["reference"], scene["regions"]]:
        twin = again["summary"].parent / path.relative_to(scene["summary"].parent)
        np.testing.assert_array_equal(read_tif(path), read_tif(twin))
    assert again["summary"].read_text() == scene["summary"].read_text()
    other = write_polsar_sample(tmp_path / "other", size=SIZE, seed=SEED + 1)
    assert not np.array_equal(read_tif(other["single"]), read_tif(scene["single"]))


def test_output_policy(tmp_path):
    paths = write_polsar_sample(tmp_path / "s", size=64)
    before = read_tif(paths["quad"] / "slc_HH.tif")
    with pytest.raises(OutputError, match="output exists"):
        write_polsar_sample(tmp_path / "s", size=64, seed=1)
    np.testing.assert_array_equal(read_tif(paths["quad"] / "slc_HH.tif"), before)
    write_polsar_sample(tmp_path / "s", size=64, seed=1, overwrite=True)
    assert not np.array_equal(read_tif(paths["quad"] / "slc_HH.tif"), before)
    assert not [p for p in tmp_path.rglob(".sx-*")]  # no temporaries left
    (paths["quad"] / "extra_HH.tif").write_bytes(b"")
    with pytest.raises(OutputError, match="other files"):
        write_polsar_sample(tmp_path / "s", size=64, overwrite=True)
    for size in (32, 63, 4096):
        with pytest.raises(SpatialxError, match="64 to 2048"):
            write_polsar_sample(tmp_path / "small", size=size)
    with pytest.raises(SpatialxError, match="integer"):
        write_polsar_sample(tmp_path / "small", size=64.0)
    assert not (tmp_path / "small").exists()


def test_odd_size(tmp_path):
    paths = write_polsar_sample(tmp_path / "odd", size=65)
    quad, single = open_raster(paths["quad"], "quad-pol"), open_raster(paths["single"], "single-pol")
    assert quad.grid.shape == (33, 33) and single.grid.shape == (65, 65)
    assert quad.grid.transform.a == 2 * single.grid.transform.a


def test_polsar_bilinear_psd(scene, tmp_path):
    output = tmp_path / "bilinear.tif"
    result = polsar(scene["quad"], scene["single"], output, method="bilinear", pauli=tmp_path / "pauli.tif")
    assert result.output == output
    with rasterio.open(output) as src:
        assert src.count == 9 and (src.width, src.height) == (SIZE, SIZE)
        assert src.transform == open_raster(scene["single"], "single-pol").grid.transform
        c3 = src.read()
    valid = np.isfinite(c3).all(axis=0)
    assert valid.mean() > 0.99
    assert is_psd(c3)[valid].all()
    with rasterio.open(tmp_path / "pauli.tif") as src:
        assert src.count == 3 and src.dtypes[0] == "uint8"


def test_cli(tmp_path):
    from typer.testing import CliRunner

    from spatialx.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["sample", str(tmp_path / "s"), "--task", "polsar", "--size", "64"])
    assert result.exit_code == 0, result.output
    assert "wrote quad" in result.output and "spatialx polsar" in result.output
    summary = json.loads((tmp_path / "s" / "sample.json").read_text(encoding="utf-8"))
    command = shlex.split(summary["command"])
    assert command[:2] == ["spatialx", "polsar"]
    cwd = os.getcwd()
    try:  # the summary's command, run in the scene directory as it says
        os.chdir(tmp_path / "s")
        ran = runner.invoke(app, [*command[1:], "--quiet"])
    finally:
        os.chdir(cwd)
    assert ran.exit_code == 0, ran.output
    for name in ("polsar_bicubic.tif", "pauli.tif", "haalpha.tif"):
        assert (tmp_path / "s" / name).is_file()
    refused = runner.invoke(app, ["sample", str(tmp_path / "x"), "--task", "polsar", "--sensor", "qb"])
    assert isinstance(refused.exception, SpatialxError) and "--sensor" in str(refused.exception)
    refused = runner.invoke(app, ["sample", str(tmp_path / "x"), "--task", "polsar", "--size", "32"])
    assert isinstance(refused.exception, SpatialxError) and "64 to 2048" in str(refused.exception)
    assert not (tmp_path / "x").exists()
