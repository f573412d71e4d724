"""The synthetic scene generator: determinism, physics of the products, strips, files."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from spatialx.errors import OutputError
from spatialx.filters import decimate_centred, mtf_filter
from spatialx.sample import (
    DEFAULT_CRS,
    DEFAULT_ORIGIN,
    GSD_PAN_M,
    PAN_NOISE,
    REFLECTANCE_SCALE,
    LandCover,
    SyntheticScene,
    generate_scene,
    iter_strips,
    write_sample,
)
from spatialx.sensors import get_sensor


@pytest.fixture(scope="module")
def wv3_scene() -> SyntheticScene:
    return generate_scene("wv3", size=256, seed=0)


@pytest.fixture(scope="module")
def qb_scene() -> SyntheticScene:
    return generate_scene("qb", size=128, seed=3)


def _ndvi(scene: SyntheticScene) -> np.ndarray:
    profile = get_sensor(scene.sensor)
    red = scene.reference[profile.band_index(profile.ndvi_red)].astype(np.float64)
    nir = scene.reference[profile.band_index(profile.ndvi_nir)].astype(np.float64)
    return (nir - red) / (nir + red)


def test_same_seed_same_scene_other_seed_other_scene(qb_scene: SyntheticScene) -> None:
    again = generate_scene("qb", size=128, seed=3)
    for name in ("pan", "ms", "reference", "labels"):
        np.testing.assert_array_equal(getattr(again, name), getattr(qb_scene, name), err_msg=name)
    other = generate_scene("qb", size=128, seed=4)
    assert not np.array_equal(other.pan, qb_scene.pan)
    assert np.mean(np.abs(other.reference - qb_scene.reference)) > 10


@pytest.mark.parametrize("sensor,size", [("wv3", 256), ("qb", 128)])
def test_shapes_dtypes_georeferencing(sensor: str, size: int, wv3_scene: SyntheticScene,
                                      qb_scene: SyntheticScene) -> None:
    scene = wv3_scene if sensor == "wv3" else qb_scene
    profile = get_sensor(sensor)
    bands = len(profile.bands)
    assert scene.sensor == sensor
    assert scene.pan.shape == (size, size) and scene.pan.dtype == np.float32
    assert scene.ms.shape == (bands, size // 4, size // 4) and scene.ms.dtype == np.float32
    assert scene.reference.shape == (bands, size, size) and scene.reference.dtype == np.float32
    assert scene.labels is not None and scene.labels.shape == (size, size) and scene.labels.dtype == np.uint8
    assert scene.ratio == 4 and scene.band_names == profile.band_names
    # DN range: never nodata (0), never above what reflectance 1 maps to
    top = 1 + REFLECTANCE_SCALE * profile.max_value
    for arr in (scene.pan, scene.ms, scene.reference):
        assert np.isfinite(arr).all()
        assert arr.min() >= 1 and arr.max() <= top + 1
    gsd = GSD_PAN_M[sensor]
    assert scene.crs == DEFAULT_CRS
    assert scene.pan_transform.a == pytest.approx(gsd) and scene.pan_transform.e == pytest.approx(-gsd)
    assert scene.ms_transform.a == pytest.approx(4 * gsd) and scene.ms_transform.e == pytest.approx(-4 * gsd)
    assert (scene.pan_transform.c, scene.pan_transform.f) == DEFAULT_ORIGIN
    assert (scene.ms_transform.c, scene.ms_transform.f) == DEFAULT_ORIGIN  # same footprint


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="multiple of the sensor's ratio"):
        generate_scene("wv3", size=130)
    with pytest.raises(ValueError, match="multiple of the sensor's ratio"):
        generate_scene("wv3", size=8)
    with pytest.raises(ValueError, match="strip_rows"):
        generate_scene("wv3", size=64, strip_rows=6)


def test_pan_is_the_weighted_sum_of_the_reference(wv3_scene: SyntheticScene) -> None:
    profile = get_sensor("wv3")
    weights = np.asarray(profile.pan_weights, dtype=np.float64)
    expected = np.tensordot(weights / weights.sum(), wv3_scene.reference.astype(np.float64), axes=1)
    diff = wv3_scene.pan - expected
    assert np.abs(diff).max() <= PAN_NOISE * profile.max_value + 0.01  # the tiny noise, nothing else
    assert 0 < np.std(diff) < 0.05 * np.std(expected)


@pytest.mark.parametrize("sensor", ["wv3", "qb"])
def test_ms_is_the_mtf_blurred_reference_at_block_centres(sensor: str, wv3_scene: SyntheticScene,
                                          qb_scene: SyntheticScene) -> None:
    scene = wv3_scene if sensor == "wv3" else qb_scene
    expected = decimate_centred(mtf_filter(scene.reference, get_sensor(sensor).mtf_gains, 4), 4)
    np.testing.assert_allclose(scene.ms, expected, rtol=1e-5, atol=1e-3)


def test_strips_reproduce_the_whole_scene() -> None:
    whole = generate_scene("qb", size=192, seed=5)
    strips = generate_scene("qb", size=192, seed=5, strip_rows=32)
    np.testing.assert_array_equal(strips.reference, whole.reference)
    np.testing.assert_array_equal(strips.pan, whole.pan)
    np.testing.assert_array_equal(strips.labels, whole.labels)
    # the MTF filter works by FFT, whose round-off depends on the array size
    np.testing.assert_allclose(strips.ms, whole.ms, rtol=1e-6, atol=1e-3)
    rows = [(s.row0, s.row1, s.ms.shape[1]) for s in iter_strips("qb", size=192, seed=5, strip_rows=40)]
    assert rows == [(0, 40, 10), (40, 80, 10), (80, 120, 10), (120, 160, 10), (160, 192, 8)]


def _pure(ndvi: np.ndarray, labels: np.ndarray, cover: LandCover) -> np.ndarray:
    """NDVI of the pixels of a class away from its edges, where pixels are mixtures."""
    return ndvi[ndimage.binary_erosion(labels == cover)]


def test_spectra_are_plausible(wv3_scene: SyntheticScene, qb_scene: SyntheticScene) -> None:
    for scene in (wv3_scene, qb_scene):
        ndvi, labels = _ndvi(scene), scene.labels
        for cover in (LandCover.WATER, LandCover.VEGETATION, LandCover.TREES, LandCover.ROAD,
                      LandCover.BARE_SOIL):
            assert (labels == cover).mean() > 0.01, cover.name

        vegetation = _pure(ndvi, labels, LandCover.VEGETATION)
        assert vegetation.mean() > 0.5 and np.percentile(vegetation, 5) > 0.45
        assert _pure(ndvi, labels, LandCover.TREES).mean() > 0.6
        water = _pure(ndvi, labels, LandCover.WATER)
        assert water.mean() < -0.2 and water.max() < 0
        assert abs(np.median(ndvi[labels == LandCover.ROAD])) < 0.2


def test_write_sample_files(tmp_path) -> None:
    profile = get_sensor("wv3")
    paths = write_sample(tmp_path / "scene", sensor="wv3", size=128, seed=2, strip_rows=32)
    assert set(paths) == {"pan", "ms", "reference"}
    scene = generate_scene("wv3", size=128, seed=2)
    expected = {"pan": scene.pan[None], "ms": scene.ms, "reference": scene.reference}
    for role, path in paths.items():
        assert path == tmp_path / "scene" / f"{role}.tif" and path.is_file()
        with rasterio.open(path) as src:
            assert src.crs.to_string() == DEFAULT_CRS
            transform = scene.ms_transform if role == "ms" else scene.pan_transform
            assert src.transform.almost_equals(transform)
            assert src.nodata == profile.nodata
            assert src.dtypes == (profile.dtype,) * src.count
            assert src.profile["tiled"] and src.compression.name == "deflate"
            names = ("PAN",) if role == "pan" else profile.band_names
            assert src.descriptions == names
            center = profile.pan.center_nm if role == "pan" else profile.bands[0].center_nm
            assert float(src.tags(1)["wavelength"]) == center and src.tags(1)["wavelength_units"] == "nm"
            data = src.read()
        assert data.min() >= 1 and data.max() <= profile.max_value
        # the strip-wise writer wrote the same pixels as the in-memory generator, rounded
        np.testing.assert_array_less(np.abs(data - expected[role]), 0.5 + 1e-3)
    assert not list((tmp_path / "scene").glob(".*partial"))


def test_existing_output_is_refused_without_overwrite(tmp_path) -> None:
    paths = write_sample(tmp_path, sensor="qb", size=64, seed=0)
    before = paths["ms"].stat().st_mtime_ns
    with pytest.raises(OutputError) as info:
        write_sample(tmp_path, sensor="qb", size=64, seed=1)
    assert info.value.path == str(paths["pan"]) and "--overwrite" in (info.value.hint or "")
    assert paths["ms"].stat().st_mtime_ns == before
    write_sample(tmp_path, sensor="qb", size=64, seed=1, overwrite=True)
    with rasterio.open(paths["pan"]) as src:
        np.testing.assert_array_less(np.abs(src.read(1) - generate_scene("qb", 64, seed=1).pan), 0.5 + 1e-3)
