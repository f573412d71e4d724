"""`spatialx hmif` end to end on product files: a PRISMA L2D HE5 at 30 m and a Sentinel-2 band-COG folder at 10 m
(both written here in their real layouts) -> every HS band on the Sentinel-2 grid, as reflectance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from scenes import smooth_field, write_tif

import spatialx
from spatialx.errors import InputMismatchError, SpatialxError
from spatialx.io.prisma import write_prisma_l2d
from spatialx.sensors import get_sensor

X0, Y0, EPSG = 600000.0, 5000000.0, 32631
MS_SIZE, RATIO = 96, 3
S2_BANDS = ("B02", "B03", "B04", "B08")


def _spectra(wavelengths: np.ndarray) -> np.ndarray:
    """Three materials: vegetation (red edge), soil (rising), water (dark, falling)."""
    wl = wavelengths / 1000.0
    vegetation = 0.05 + 0.4 / (1 + np.exp(-(wl - 0.72) * 60)) - 0.25 * (wl > 1.4) * (wl - 1.4)
    soil = 0.1 + 0.2 * wl
    water = 0.08 * np.exp(-(wl - 0.4) * 4)
    return np.stack([vegetation, soil, water]).clip(0.01, 0.9)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict[str, Path | np.ndarray]:
    directory = tmp_path_factory.mktemp("hmif")
    vnir = np.linspace(420, 980, 24)
    swir = np.linspace(960, 2400, 24)  # overlaps the VNIR above 960 nm, as in real files
    wavelengths = np.concatenate([vnir, swir])
    abundances = smooth_field((3, MS_SIZE, MS_SIZE), 5, sigma=4.0) + 0.05
    abundances /= abundances.sum(axis=0, keepdims=True)
    truth = np.einsum("mk,myx->kyx", _spectra(wavelengths), abundances).astype(np.float32)
    hs = truth.reshape(len(wavelengths), MS_SIZE // RATIO, RATIO, MS_SIZE // RATIO, RATIO).mean(axis=(2, 4))
    he5 = write_prisma_l2d(directory / "PRS_L2D_test.he5", hs, wavelengths, np.full(len(wavelengths), 11.0), EPSG,
                           X0 + 15.0, Y0 - 15.0, pixel_size=30.0, vnir_count=len(vnir))
    s2 = get_sensor("s2_l2a")
    fine = np.linspace(400, 2500, 2101)
    spectra_fine = np.einsum("mk,myx->kyx", _spectra(fine), abundances)
    ms_dir = directory / "S2A_TEST_L2A"
    ms_dir.mkdir()
    ms = []
    for band in S2_BANDS:
        response = s2.layer(band).response_curve(fine)
        reflectance = np.tensordot(response / response.sum(), spectra_fine, axes=1)
        ms.append(reflectance)
        write_tif(ms_dir / f"{band}.tif", np.rint(reflectance * 10000)[None].astype("uint16"),
                  Affine(10.0, 0, X0, 0, -10.0, Y0), f"EPSG:{EPSG}")
    raster = [{"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": 0.0}]
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "S2A_TEST_L2A",
            "properties": {"datetime": "2021-06-01T10:50:00Z", "s2:processing_baseline": "03.01"},
            "assets": {band: {"href": f"{band}.tif", "raster:bands": raster} for band in S2_BANDS}}
    (ms_dir / "item.json").write_text(json.dumps(item))
    return {"hs": he5, "ms": ms_dir, "truth": truth, "wavelengths": wavelengths, "dir": directory}


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
    kept = _kept(scene)  # the VNIR bands inside the SWIR range are dropped once
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
    kept = np.abs(scene["wavelengths"][:, None] - _kept(scene)[None]).argmin(axis=0)
    truth = scene["truth"][kept]
    inner = (slice(None), slice(6, -6), slice(6, -6))
    scores = {"exp": sam_degrees(exp[inner], truth[inner])}
    methods = [m.name for m in spatialx.list_methods("hmif") if m.kind == "classical" and m.name != "exp"]
    if not methods:
        pytest.skip("no hmif sharpening method registered yet")
    for name in methods:
        fused = read(spatialx.fuse("hmif", inputs, tmp_path / f"{name}.tif", method=name, sensor=sensors).output)[0]
        scores[name] = sam_degrees(fused[inner], truth[inner])
    assert min(v for k, v in scores.items() if k != "exp") < scores["exp"], scores


def _kept(scene) -> np.ndarray:
    from spatialx.io.read import open_raster

    return np.array(open_raster(scene["hs"]).wavelengths_nm)


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
