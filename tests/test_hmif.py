"""`spatialx hmif` end to end on product files: a PRISMA L2D HE5 at 30 m and a Sentinel-2 band-COG folder at 10 m
(both written here in their real layouts) -> every HS band on the Sentinel-2 grid, as reflectance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from scenes import HMIF_EPSG as EPSG
from scenes import HMIF_ORIGIN, S2_BANDS, write_hmif_pair, write_tif

import spatialx
from spatialx.errors import InputMismatchError, SpatialxError

X0, Y0 = HMIF_ORIGIN
MS_SIZE = 96


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict[str, Path | np.ndarray]:
    return write_hmif_pair(tmp_path_factory.mktemp("hmif"), MS_SIZE)


def read(path: Path) -> tuple[np.ndarray, rasterio.DatasetReader]:
    with rasterio.open(path) as src:
        return src.read().astype(np.float64), src


def sam_degrees(a: np.ndarray, b: np.ndarray) -> float:
    dot = (a * b).sum(axis=0)
    norm = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0)
    return float(np.degrees(np.arccos(np.clip(dot / norm, -1, 1))).mean())


def test_hmif_writes_every_hs_band_on_the_ms_grid(scene, tmp_path):
    result = spatialx.fuse("hmif", {"hs": scene["hs"], "ms": scene["ms"]}, tmp_path / "exp.tif", method="exp",
                           sensor={"hs": "prisma_l2d", "ms": "s2_l2a"})
    fused, src = read(result.output)
    with rasterio.open(scene["ms"] / "B02.tif") as ms:
        assert src.transform == ms.transform and src.crs == ms.crs
    kept = scene["wavelengths"]  # the VNIR bands inside the SWIR range are dropped once
    assert len(kept) == 48 - int(np.sum(np.linspace(420, 980, 24) >= 960))
    assert fused.shape == (len(kept), MS_SIZE, MS_SIZE) and src.dtypes[0] == "float32"
    with rasterio.open(result.output) as src:
        wavelengths = [float(src.tags(i)["wavelength"]) for i in range(1, src.count + 1)]
        assert wavelengths == sorted(wavelengths) and src.descriptions[0] == "VNIR01"
        assert json.loads(src.tags()["SPATIALX_SENSOR"]) == {"HS": "prisma_l2d", "MS": "s2_l2a"}
    # reflectance, not DN: the HS cube's values come back (interpolated) on the MS grid
    assert np.nanmin(fused) > 0.0 and np.nanmax(fused) < 1.0
    assert result.params["ratio"] == 3.0  # PRISMA 30 m over Sentinel-2 10 m
    assert result.output.with_suffix(".qml").exists()  # true colour from the bands nearest 650/550/470 nm


def test_a_sharpening_method_beats_exp(scene, tmp_path):
    inputs = {"hs": scene["hs"], "ms": scene["ms"]}
    sensors = {"hs": "prisma_l2d", "ms": "s2_l2a"}
    exp = read(spatialx.fuse("hmif", inputs, tmp_path / "exp.tif", method="exp", sensor=sensors).output)[0]
    truth = scene["truth"]
    inner = (slice(None), slice(6, -6), slice(6, -6))
    scores = {"exp": sam_degrees(exp[inner], truth[inner])}
    methods = [m.name for m in spatialx.list_methods("hmif") if m.kind == "classical" and m.name != "exp"]
    if not methods:
        pytest.skip("no hmif sharpening method registered yet")
    for name in methods:
        fused = read(spatialx.fuse("hmif", inputs, tmp_path / f"{name}.tif", method=name, sensor=sensors).output)[0]
        scores[name] = sam_degrees(fused[inner], truth[inner])
    assert min(v for k, v in scores.items() if k != "exp") < scores["exp"], scores


def test_tiled_equals_whole(scene, tmp_path):
    inputs, sensors = {"hs": scene["hs"], "ms": scene["ms"]}, {"hs": "prisma_l2d", "ms": "s2_l2a"}
    whole = read(spatialx.fuse("hmif", inputs, tmp_path / "w.tif", method="exp", sensor=sensors, tile=512).output)[0]
    tiled = read(spatialx.fuse("hmif", inputs, tmp_path / "t.tif", method="exp", sensor=sensors, tile=32,
                               workers=2).output)[0]
    np.testing.assert_array_equal(tiled, whole)


def test_uint16_output_stores_scaled_reflectance(scene, tmp_path):
    inputs, sensors = {"hs": scene["hs"], "ms": scene["ms"]}, {"hs": "prisma_l2d", "ms": "s2_l2a"}
    floats = read(spatialx.fuse("hmif", inputs, tmp_path / "f.tif", method="exp", sensor=sensors).output)[0]
    result = spatialx.fuse("hmif", inputs, tmp_path / "u.tif", method="exp", sensor=sensors, dtype="uint16")
    with rasterio.open(result.output) as src:
        assert src.dtypes[0] == "uint16" and src.scales[0] == pytest.approx(1e-4) and src.nodata == 0
        stored = src.read().astype(np.float64)
    np.testing.assert_allclose(stored * 1e-4, floats, atol=0.6e-4)


def test_cli_hmif(scene, tmp_path):
    from typer.testing import CliRunner

    from spatialx.cli.main import app

    out = tmp_path / "cli.tif"
    result = CliRunner().invoke(app, ["hmif", str(scene["hs"]), str(scene["ms"]), str(out), "-m", "exp", "-q",
                                      "--ms-bands", "B02,B03,B04,B08"])
    assert result.exit_code == 0, result.output
    assert out.exists()


def test_an_ms_geotiff_without_its_product_metadata_is_refused(scene, tmp_path):
    """Sentinel-2 L2A DN need the product's BOA_ADD_OFFSET: a bare GeoTIFF of DN cannot say it."""
    stack = np.stack([rasterio.open(scene["ms"] / f"{b}.tif").read(1) for b in S2_BANDS])
    bare = write_tif(tmp_path / "s2.tif", stack, Affine(10.0, 0, X0, 0, -10.0, Y0), f"EPSG:{EPSG}",
                     descriptions=list(S2_BANDS))
    with pytest.raises(SpatialxError, match="BOA_ADD_OFFSET"):
        spatialx.fuse("hmif", {"hs": scene["hs"], "ms": bare}, tmp_path / "o.tif", method="exp",
                      sensor={"hs": "prisma_l2d", "ms": "s2_l2a"})
    assert not (tmp_path / "o.tif").exists()


def test_hs_without_wavelengths_against_a_spectrometer_profile_is_refused(scene, tmp_path):
    cube = write_tif(tmp_path / "cube.tif", np.ones((40, 32, 32), "float32"), Affine(30.0, 0, X0, 0, -30.0, Y0),
                     f"EPSG:{EPSG}")
    with pytest.raises(InputMismatchError, match="HS has 40 bands"):
        spatialx.fuse("hmif", {"hs": cube, "ms": scene["ms"]}, tmp_path / "o.tif", method="exp",
                      sensor={"hs": "prisma_l2d", "ms": "s2_l2a"})


def test_ndvi_of_an_hmif_product_uses_the_bands_nearest_665_and_842_nm(scene, tmp_path):
    result = spatialx.fuse("hmif", {"hs": scene["hs"], "ms": scene["ms"]}, tmp_path / "p.tif", method="exp",
                           sensor={"hs": "prisma_l2d", "ms": "s2_l2a"}, ndvi=tmp_path / "ndvi.tif")
    with rasterio.open(result.products["ndvi"]) as src:
        ndvi = src.read(1)
        params = json.loads(src.tags()["SPATIALX_PARAMS"])
    with rasterio.open(result.output) as src:
        centres = [float(src.tags(b)["wavelength"]) for b in (params["red_band"], params["nir_band"])]
    assert abs(centres[0] - 665) <= 30 and abs(centres[1] - 842) <= 30
    assert ndvi.min() >= -1 and ndvi.max() <= 1 and ndvi.std() > 0.05
