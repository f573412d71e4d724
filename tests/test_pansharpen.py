"""The spine end to end: georeferencing, tiling invariance, alignment, nodata, metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from scenes import write_pair, write_tif

from spatialx.methods import list_methods
from spatialx.tasks.pansharpen import pansharpen

CLASSICAL = [m.name for m in list_methods("pansharpen") if m.kind == "classical"]


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read().astype(np.float64)


@pytest.fixture(scope="module")
def offset_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """MS shifted by 3.5 MS pixels east and 2 south, and smaller: the footprints overlap only partly."""
    directory = tmp_path_factory.mktemp("offset")
    return write_pair(directory, pan_size=(200, 232), ms_size=(46, 52), ms_offset=(7.0, -4.0))


def test_output_is_the_pan_grid_over_the_common_footprint(offset_pair, tmp_path):
    pan, ms = offset_pair
    out = pansharpen(pan, ms, tmp_path / "out.tif", "qb", "brovey").output
    with rasterio.open(pan) as p, rasterio.open(ms) as m, rasterio.open(out) as o:
        left = max(p.bounds.left, m.bounds.left)
        top = min(p.bounds.top, m.bounds.top)
        right = min(p.bounds.right, m.bounds.right)
        bottom = max(p.bounds.bottom, m.bounds.bottom)
        assert o.crs == p.crs
        assert o.transform.a == p.transform.a and o.transform.e == p.transform.e
        # the output origin is on the PAN pixel lattice, inside the MS footprint
        col = (o.transform.c - p.transform.c) / p.transform.a
        row = (o.transform.f - p.transform.f) / p.transform.e
        assert col == int(col) and row == int(row)
        assert o.bounds.left >= left - 1e-6 and o.bounds.top <= top + 1e-6
        assert o.bounds.right <= right + 1e-6 and o.bounds.bottom >= bottom - 1e-6
        assert o.bounds.right > right - p.transform.a and o.bounds.bottom < bottom + p.transform.a
        assert o.width == int((right - o.bounds.left) / 0.5 + 1e-9)
        assert o.height == int((o.bounds.top - bottom) / 0.5 + 1e-9)
        assert o.nodata == 0 and o.dtypes[0] == "uint16"


@pytest.mark.parametrize("method", CLASSICAL)
def test_tiled_equals_whole_image(method, offset_pair, tmp_path):
    pan, ms = offset_pair
    whole = read(pansharpen(pan, ms, tmp_path / "whole.tif", "qb", method, tile=1024).output)
    for tile, workers in ((64, 2), (48, 1)):
        tiled = read(pansharpen(pan, ms, tmp_path / f"t{tile}.tif", "qb", method, tile=tile, overlap=8,
                                workers=workers).output)
        assert np.abs(tiled - whole).max() <= 1.0, (method, tile)
    assert whole.std() > 0


def test_float_output_tiling_is_exact_to_float_precision(offset_pair, tmp_path):
    pan, ms = offset_pair
    whole = read(pansharpen(pan, ms, tmp_path / "w.tif", "qb", "mtf-glp-hpm", dtype="float32").output)
    tiled = read(pansharpen(pan, ms, tmp_path / "t.tif", "qb", "mtf-glp-hpm", dtype="float32", tile=40,
                            overlap=12, workers=2).output)
    assert np.abs(tiled - whole).max() < 1e-2


def test_exp_resamples_the_ms_geometrically(tmp_path):
    """Non-integer ratio (1.7 / 0.5 = 3.4) and a sub-pixel MS offset: a linear ramp in the MS stays a linear
    ramp on the PAN grid, at the right place."""
    ms_res, x0, y0 = 1.7, 500000.0 + 0.3, 4800000.0 - 0.2
    rows, cols = 40, 50
    _, xx = np.mgrid[0:rows, 0:cols]
    # value = easting in metres (of the MS pixel centre) relative to 500000, times 10
    east = x0 + (xx + 0.5) * ms_res - 500000.0
    ms = np.repeat((100 + 10 * east)[None], 4, axis=0).astype("float32")
    write_tif(tmp_path / "ms.tif", ms, rasterio.Affine(ms_res, 0, x0, 0, -ms_res, y0), "EPSG:32631", nodata=None)
    pan = np.full((1, 160, 160), 500, dtype="float32")
    write_tif(tmp_path / "pan.tif", pan, rasterio.Affine(0.5, 0, 500000, 0, -0.5, 4800000), "EPSG:32631",
              nodata=None)
    result = pansharpen(tmp_path / "pan.tif", tmp_path / "ms.tif", tmp_path / "out.tif", "qb", "exp", tile=64)
    assert result.params["grid_ratio"] == pytest.approx(3.4) and result.params["ratio"] == 4
    with rasterio.open(result.output) as out:
        data = out.read(1)
        centres_x = out.transform.c + (np.arange(out.width) + 0.5) * out.transform.a - 500000.0
    expected = 100 + 10 * centres_x
    # away from the MS edges (replicate boundary) the cubic kernel reproduces a linear ramp exactly
    inner = slice(8, -8)
    assert np.allclose(data[5:-5, inner], expected[inner], atol=1e-3)


def test_nodata_of_either_input_is_masked(tmp_path):
    pan, ms = write_pair(tmp_path, pan_size=(128, 128))
    with rasterio.open(pan, "r+") as src:
        src.write(np.zeros((1, 20, 30), dtype="uint16"), window=Window(10, 10, 30, 20))
    with rasterio.open(ms, "r+") as src:
        src.write(np.zeros((4, 4, 4), dtype="uint16"), window=Window(20, 20, 4, 4))
    out = read(pansharpen(pan, ms, tmp_path / "out.tif", "qb", "gsa", tile=48).output)
    masked = np.all(out == 0, axis=0)
    assert masked[10:30, 10:40].all()  # PAN hole
    assert masked[80:96, 80:96].all()  # MS hole (4 MS pixels = 16 PAN pixels), plus the kernel's reach
    assert not masked[60:70, 0:60].any()
    assert (out[:, ~masked] >= 1).all()  # valid pixels never collide with nodata 0


def test_band_metadata_and_provenance(tmp_path):
    pan, ms = write_pair(tmp_path, sensor="wv3", pan_size=(96, 96))
    out = pansharpen(pan, ms, tmp_path / "out.tif", "wv3", "gsa").output
    with rasterio.open(out) as src:
        assert src.descriptions == ("Coastal", "Blue", "Green", "Yellow", "Red", "RedEdge", "NIR1", "NIR2")
        assert src.tags(5)["wavelength"] == "660" and src.tags(5)["wavelength_units"] == "nm"
        assert src.tags(5, ns="IMAGERY")["CENTRAL_WAVELENGTH_UM"] == "0.66"
        tags = src.tags()
        assert tags["SPATIALX_METHOD"] == "gsa" and tags["SPATIALX_SENSOR"] == "wv3"
        assert json.loads(tags["SPATIALX_INPUTS"]) == {"PAN": "pan.tif", "MS": "ms.tif"}
        assert "alpha" in json.loads(tags["SPATIALX_PARAMS"])
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"


def test_cog_has_internal_overviews(tmp_path):
    pan, ms = write_pair(tmp_path, pan_size=(1200, 1100))
    out = pansharpen(pan, ms, tmp_path / "out.tif", "qb", "brovey", workers=2).output
    with rasterio.open(out) as src:
        assert src.overviews(1) == [2, 4]
        assert src.block_shapes[0] == (512, 512)
        assert src.compression.name.lower() == "deflate"


def test_band_selection_by_number_and_name(tmp_path):
    pan, ms = write_pair(tmp_path, pan_size=(64, 64))
    reordered = read(pansharpen(pan, ms, tmp_path / "a.tif", "qb", "exp", bands="4,3,2,1").output)
    plain = read(pansharpen(pan, ms, tmp_path / "b.tif", "qb", "exp").output)
    assert np.array_equal(reordered, plain[::-1])
    subset_ms = write_tif(tmp_path / "rgb.tif", rasterio.open(ms).read([3, 2, 1]),
                          rasterio.open(ms).transform, "EPSG:32631", descriptions=["Red", "Green", "Blue"])
    out = pansharpen(pan, subset_ms, tmp_path / "c.tif", "qb", "exp", bands="Red,Green,Blue").output
    with rasterio.open(out) as src:
        assert src.descriptions == ("Red", "Green", "Blue")
        assert np.array_equal(src.read().astype(float), plain[[2, 1, 0]])


def test_inputs_are_not_modified_and_no_temporary_files_remain(tmp_path):
    pan, ms = write_pair(tmp_path, pan_size=(64, 64))
    before = {p: p.read_bytes() for p in (pan, ms)}
    pansharpen(pan, ms, tmp_path / "out.tif", "qb", "mtf-glp-hpm", ndvi=tmp_path / "ndvi.tif")
    assert {p: p.read_bytes() for p in (pan, ms)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ms.tif", "ndvi.qml", "ndvi.tif", "out.qml", "out.tif",
                                                          "pan.tif"]


def test_sample_ms_sits_where_its_geotransform_says(tmp_path):
    """End to end geometry: the MS resampled onto the PAN grid lines up with the (blurred) truth, not a pixel off."""
    from spatialx.filters import mtf_filter
    from spatialx.sample import write_sample
    from spatialx.sensors import get_sensor

    paths = write_sample(tmp_path, sensor="qb", size=256, seed=3)
    exp = read(pansharpen(paths["pan"], paths["ms"], tmp_path / "exp.tif", "qb", "exp", dtype="float32").output)
    truth = mtf_filter(read(paths["reference"]), get_sensor("qb").mtf_gains, 4)
    inner = (slice(None), slice(16, -16), slice(16, -16))

    def error(dy: int, dx: int) -> float:
        return float(np.sqrt(np.mean((exp[inner] - np.roll(truth, (dy, dx), axis=(1, 2))[inner]) ** 2)))

    centred = error(0, 0)
    assert all(centred < error(dy, dx) for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)))


def test_tiles_batched_per_call_give_the_same_result(offset_pair, tmp_path, monkeypatch):
    from spatialx.methods.classical.mtf_glp import MTFGLPHPM

    pan, ms = offset_pair
    single = read(pansharpen(pan, ms, tmp_path / "a.tif", "qb", "mtf-glp-hpm", tile=64, dtype="float32").output)
    calls = []
    original = MTFGLPHPM.fuse_batch

    def spy(self, batch):
        calls.append(len(batch))
        return original(self, batch)

    monkeypatch.setattr(MTFGLPHPM, "batch_tiles", 3)
    monkeypatch.setattr(MTFGLPHPM, "fuse_batch", spy)
    batched = read(pansharpen(pan, ms, tmp_path / "b.tif", "qb", "mtf-glp-hpm", tile=64, dtype="float32",
                              workers=2).output)
    assert max(calls) == 3 and np.array_equal(batched, single)
