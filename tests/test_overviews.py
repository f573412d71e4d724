"""Overview pyramids: nodata-aware means, agreement with GDAL's AVERAGE, and the COG that carries them."""

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin

from spatialx.grid import Grid
from spatialx.io.overviews import downsample_mean, overview_sizes
from spatialx.io.write import TMP_MARK, BandInfo, write_array

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def test_overview_sizes_follow_gdal_cog_levels():
    assert overview_sizes(1200, 1100, 512) == [(600, 550), (300, 275)]
    assert overview_sizes(512, 300, 512) == []
    assert overview_sizes(1025, 10, 512) == [(513, 5), (257, 3)]


def test_mean_skips_nodata_and_averages_partial_edge_cells():
    block = np.array([[[1, 2, 9], [3, 0, 5], [7, 0, 0]]], dtype=np.uint16)
    out = downsample_mean(block, nodata=0)
    # (1+2+3)/3 = 2; (9+5)/2 = 7; 7/1 = 7; the last cell has no valid pixel.
    assert out.dtype == np.uint16
    assert out.tolist() == [[[2, 7], [7, 0]]]


def test_integer_means_round_half_up_and_floats_keep_nan_nodata():
    assert downsample_mean(np.array([[[1, 2], [2, 2]]], dtype=np.uint8), None).item() == 2  # 1.75
    assert downsample_mean(np.array([[[1, 2], [1, 2]]], dtype=np.uint8), None).item() == 2  # 1.5
    floats = np.array([[[np.nan, 1.0, np.nan, np.nan], [3.0, np.nan, np.nan, np.nan]]], dtype=np.float32)
    out = downsample_mean(floats, float("nan"))
    assert out[0, 0, 0] == 2.0 and np.isnan(out[0, 0, 1])


def test_mean_matches_gdal_average_overviews(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 2048, size=(3, 96, 128), dtype=np.uint16).astype(np.float32)
    path = tmp_path / "gdal.tif"
    with rasterio.open(path, "w", driver="GTiff", width=128, height=96, count=3, dtype="float32") as dst:
        dst.write(data)
        dst.build_overviews([2], Resampling.average)
    with rasterio.open(path, overview_level=0) as ovr:
        gdal_level = ovr.read()
    np.testing.assert_allclose(downsample_mean(data, None), gdal_level, rtol=0, atol=1e-3)


def test_cog_carries_our_overviews_and_every_metadata_domain(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(1, 4000, size=(2, 1100, 1200), dtype=np.uint16)
    data[:, :40, :] = 0
    grid = Grid(crs=rasterio.crs.CRS.from_epsg(32631), transform=from_origin(500000, 4800000, 0.5, 0.5),
                width=1200, height=1100)
    bands = [BandInfo("Red", 660.0, 60.0), BandInfo("NIR1", 832.0, 120.0)]
    out = write_array(tmp_path / "out.tif", data, grid, bands, nodata=0, tags={"SPATIALX_METHOD": "test"})
    with rasterio.open(out) as src:
        assert src.overviews(1) == [2, 4] and src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.crs == grid.crs and src.transform == grid.transform and src.nodata == 0
        assert src.descriptions == ("Red", "NIR1") and src.tags()["SPATIALX_METHOD"] == "test"
        assert src.tags(2, ns="IMAGERY")["CENTRAL_WAVELENGTH_UM"] == "0.832"
        assert np.array_equal(src.read(), data)
    level1 = downsample_mean(data, 0)
    with rasterio.open(out, overview_level=0) as ovr:
        assert np.array_equal(ovr.read(), level1)
    with rasterio.open(out, overview_level=1) as ovr:
        assert np.array_equal(ovr.read(), downsample_mean(level1, 0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]
    assert not any(TMP_MARK in p.name for p in tmp_path.iterdir())


def test_small_outputs_have_no_overviews(tmp_path):
    grid = Grid(crs=None, transform=rasterio.Affine.identity(), width=90, height=100)
    out = write_array(tmp_path / "small.tif", np.ones((1, 100, 90), np.float32), grid, [BandInfo("NDVI")])
    with rasterio.open(out) as src:
        assert src.overviews(1) == []


@pytest.mark.parametrize(("height", "width", "nodata", "dtype"), [
    (1100, 1300, 0, "uint16"), (1537, 1025, None, "int16"), (700, 2100, float("nan"), "float32")])
def test_levels_built_while_writing_equal_levels_read_back_from_the_file(tmp_path, height, width, nodata, dtype):
    """The streamed pyramid (blocks averaged as they complete, windows arriving in any order) holds the pixels the
    read-back pyramid computes from the finished file, level by level, odd edges and nodata included."""
    from spatialx.io.overviews import build_overviews
    from spatialx.io.write import OverviewPyramid, compression_options

    rng = np.random.default_rng(5)
    data = rng.integers(1, 3000, size=(2, height, width)).astype(dtype)
    if nodata is not None:
        data[:, rng.random((height, width)) < 0.2] = nodata
        data[:, 200:260, :] = nodata
    creation = compression_options(dtype)
    base = {"driver": "GTiff", "width": width, "height": height, "count": 2, "dtype": dtype, "nodata": nodata,
            "tiled": True, "blockxsize": 512, "blockysize": 512, "interleave": "pixel", **creation}
    with rasterio.open(tmp_path / "base.tif", "w", **base) as dst:
        dst.write(data)
    levels = len(overview_sizes(width, height, 512))
    read_back = [tmp_path / f"read{n}.tif" for n in range(levels)]
    build_overviews(tmp_path / "base.tif", read_back, nodata, 512, creation)

    streamed = [tmp_path / f"stream{n}.tif" for n in range(levels)]
    pyramid = OverviewPyramid(base, nodata, 512, creation, streamed)
    blocks = [(r, c) for r in range(0, height, 512) for c in range(0, width, 512)]
    for index in rng.permutation(len(blocks)):
        r, c = blocks[index]
        window = rasterio.windows.Window(c, r, min(512, width - c), min(512, height - r))
        pyramid.add(data[:, r: r + int(window.height), c: c + int(window.width)], window)
    assert pyramid.finish() == streamed
    for ours, theirs in zip(streamed, read_back, strict=True):
        with rasterio.open(ours) as a, rasterio.open(theirs) as b:
            assert (a.width, a.height) == (b.width, b.height)
            np.testing.assert_array_equal(a.read(), b.read())


@pytest.mark.parametrize("budget", [None, 0])
def test_a_cog_written_tile_by_tile_has_the_levels_of_its_pixels(tmp_path, monkeypatch, budget):
    """RasterWriter streams the levels of a COG written in small windows out of order, or, for an output too wide
    for its budget, reads them back from the file: the same COG."""
    from spatialx.io import write
    from spatialx.io.write import OutputSpec, RasterWriter

    if budget is not None:
        monkeypatch.setattr(write, "PYRAMID_BUDGET", budget)

    rng = np.random.default_rng(2)
    data = rng.integers(1, 4000, size=(3, 1300, 1100), dtype=np.uint16)
    data[:, :, :70] = 0
    grid = Grid(crs=rasterio.crs.CRS.from_epsg(32631), transform=from_origin(500000, 4800000, 0.5, 0.5),
                width=1100, height=1300)
    spec = OutputSpec(tmp_path / "out.tif", grid, "uint16", [BandInfo(f"B{i}") for i in range(3)], nodata=0)
    windows = [rasterio.windows.Window(c, r, min(300, 1100 - c), min(260, 1300 - r))
               for r in range(0, 1300, 260) for c in range(0, 1100, 300)]
    with RasterWriter(spec, workers=2) as writer:
        for index in rng.permutation(len(windows)):
            w = windows[index]
            writer.write(data[:, w.row_off: w.row_off + w.height, w.col_off: w.col_off + w.width], w)
    level = data
    with rasterio.open(spec.path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and src.overviews(1) == [2, 4]
        np.testing.assert_array_equal(src.read(), data)
    for n in range(2):
        level = downsample_mean(level, 0)
        with rasterio.open(spec.path, overview_level=n) as ovr:
            np.testing.assert_array_equal(ovr.read(), level)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]
