"""The COG assembled from compressed tiles (spatialx/io/cog.py) and the block gathering that feeds it."""

from __future__ import annotations

import shutil
import subprocess
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin
from rasterio.windows import Window

import spatialx.io.cog as cog
from spatialx.grid import Grid
from spatialx.io.write import BandInfo, BlockGather, write_array

GRID = Grid(from_origin(300000, 5000000, 0.5, 0.5), 1300, 1100, "EPSG:32631")
VALIDATOR = Path("/usr/lib/python3/dist-packages/osgeo_utils/samples/validate_cloud_optimized_geotiff.py")


def _scene(dtype: str = "uint16") -> np.ndarray:
    rng = np.random.default_rng(3)
    data = rng.integers(1, 2000, (4, GRID.height, GRID.width)).astype(dtype)
    data[:, :600, :600] = 0  # a whole nodata block: not stored (sparse)
    return data


def _bands() -> list[BandInfo]:
    return [BandInfo(name, center_nm=nm, color=color)
            for name, nm, color in (("Blue", 480, "blue"), ("Green", 545, "green"), ("Red", 660, "red"),
                                    ("NIR", 830, None))]


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_assembled_cog_matches_gdals_cog_driver(tmp_path, dtype):
    data = _scene(dtype)
    out = write_array(tmp_path / "ours.tif", data, GRID, _bands(), nodata=0, tags={"SPATIALX_METHOD": "test"})
    gdal_cog = tmp_path / "gdal.tif"
    rasterio.shutil.copy(out, gdal_cog, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES", OVERVIEWS="AUTO",
                         OVERVIEW_RESAMPLING="AVERAGE")
    with rasterio.open(out) as ours, rasterio.open(gdal_cog) as theirs:
        structure = ours.tags(ns="IMAGE_STRUCTURE")
        assert structure["LAYOUT"] == "COG" and structure["COMPRESSION"] == "DEFLATE"
        assert structure["PREDICTOR"] == ("3" if dtype == "float32" else "2")
        assert ours.overviews(1) == theirs.overviews(1) == [2, 4]
        assert (ours.crs, ours.transform, ours.nodata) == (theirs.crs, theirs.transform, theirs.nodata)
        assert ours.descriptions == ("Blue", "Green", "Red", "NIR") and ours.tags() == theirs.tags()
        assert ours.tags(4, ns="IMAGERY") == {"CENTRAL_WAVELENGTH_UM": "0.83"}
        assert [c.name for c in ours.colorinterp] == ["blue", "green", "red", "undefined"]
        assert np.array_equal(ours.read(), data)
        overview = ours.read(out_shape=(4, *theirs.read(out_shape=(4, 550, 650)).shape[1:]))
        assert np.array_equal(overview, theirs.read(out_shape=overview.shape))
        assert ours.block_shapes == theirs.block_shapes == [(512, 512)] * 4
    main = cog.read_directory(out)
    assert 0 in main.byte_counts  # the nodata block is sparse, and reads as nodata above
    if VALIDATOR.exists() and shutil.which("/usr/bin/python3"):
        check = subprocess.run(["/usr/bin/python3", str(VALIDATOR), "--full-check=yes", str(out)],
                               capture_output=True, text=True)
        if "No module named" not in check.stderr:
            assert check.returncode == 0, check.stdout + check.stderr


def test_bigtiff_when_the_classic_offsets_would_overflow(tmp_path, monkeypatch):
    monkeypatch.setattr(cog, "_CLASSIC_LIMIT", 1000)
    data = _scene()
    out = write_array(tmp_path / "big.tif", data, GRID, _bands(), nodata=0)
    assert out.read_bytes()[2] == 43  # BigTIFF
    with rasterio.open(out) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and src.overviews(1) == [2, 4]
        assert np.array_equal(src.read(), data)


def test_not_a_tiled_tiff_is_refused(tmp_path):
    striped = tmp_path / "strips.tif"
    with rasterio.open(striped, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as dst:
        dst.write(np.ones((1, 8, 8), "uint8"))
    with pytest.raises(cog.TiffLayoutError, match="not a tiled TIFF"):
        cog.read_directory(striped)


def test_block_gather_hands_on_each_block_once_whatever_the_window_order():
    height, width, block = 300, 250, 128
    data = np.arange(2 * height * width, dtype=np.int32).reshape(2, height, width)
    gather = BlockGather(2, height, width, block, "int32", fill=-1)
    cuts_r, cuts_c = [0, 50, 131, 200, 300], [0, 17, 128, 140, 250]
    windows = [Window(c0, r0, c1 - c0, r1 - r0) for r0, r1 in pairwise(cuts_r)
               for c0, c1 in pairwise(cuts_c)]
    order = np.random.default_rng(0).permutation(len(windows))
    out = np.full_like(data, -1)
    handed = []
    for index in order:
        w = windows[index]
        piece = data[:, w.row_off: w.row_off + w.height, w.col_off: w.col_off + w.width]
        for values, target in gather.add(piece, w, read=lambda _: pytest.fail("nothing to read back")):
            handed.append((target.row_off, target.col_off))
            out[:, target.row_off: target.row_off + target.height,
                target.col_off: target.col_off + target.width] = values
    assert sorted(handed) == sorted({(r, c) for r in range(0, height, block) for c in range(0, width, block)})
    assert np.array_equal(out, data) and gather.partial() == []


def _tile_windows(height: int, width: int, tile: int) -> list[Window]:
    """Row-major windows of ``tile`` px that do not coincide with the blocks (as network tiles do)."""
    return [Window(c, r, min(tile, width - c), min(tile, height - r))
            for r in range(0, height, tile) for c in range(0, width, tile)]


def test_block_gather_spills_beyond_its_budget_and_completes_spilled_blocks_from_the_file():
    """A strip of blocks across a wide scene does not stay in memory: beyond the budget the oldest waiting blocks
    go to the file as they are and are read back when their next pixels arrive; every pixel ends up right and
    each block is handed on complete exactly once."""
    height, width, block, tile = 300, 1000, 64, 96
    data = np.arange(height * width, dtype=np.int32).reshape(1, height, width)
    budget = 3 * block * block * 4  # three int32 blocks of a 16-block-wide strip
    gather = BlockGather(1, height, width, block, "int32", fill=-1, budget=budget)
    file = np.full_like(data, -7)

    def read(w: Window) -> np.ndarray:
        return file[:, w.row_off: w.row_off + w.height, w.col_off: w.col_off + w.width].copy()

    def put(values: np.ndarray, w: Window) -> None:
        file[:, w.row_off: w.row_off + w.height, w.col_off: w.col_off + w.width] = values

    complete, most_waiting = [], 0
    for w in _tile_windows(height, width, tile):
        piece = data[:, w.row_off: w.row_off + w.height, w.col_off: w.col_off + w.width]
        for values, target in gather.add(piece, w, read):
            complete.append((target.row_off, target.col_off))
            put(values, target)
        for values, target in gather.spill():
            assert (values == -1).any()  # a partial block, its missing pixels as the fill
            put(values, target)
        most_waiting = max(most_waiting, gather.waiting_bytes)
    assert most_waiting <= budget and gather.spills > 0
    assert sorted(complete) == sorted({(r, c) for r in range(0, height, block) for c in range(0, width, block)})
    assert np.array_equal(file, data) and gather.partial() == []


def test_writer_output_is_the_same_with_spilled_blocks(tmp_path, monkeypatch):
    """Through GDAL (a compressed block written partial, read back from the open file, completed): the product's
    pixels and overviews do not depend on the gather budget."""
    import spatialx.io.write as write

    height, width = 700, 1500
    rng = np.random.default_rng(3)
    data = rng.integers(0, 2047, size=(3, height, width), dtype=np.uint16)
    grid = Grid(from_origin(300000, 5000000, 0.5, 0.5), width, height, "EPSG:32631")
    bands = [BandInfo(f"b{i}") for i in range(3)]
    outputs = {}
    for budget in (None, 2 * 512 * 512 * 3 * 2):
        monkeypatch.setattr(write, "GATHER_BUDGET", budget)
        spec = write.OutputSpec(path=tmp_path / f"out_{budget}.tif", grid=grid, dtype="uint16", bands=bands,
                                nodata=0)
        with write.gdal_env(), write.RasterWriter(spec) as writer:
            for w in _tile_windows(height, width, 384):
                writer.write(data[:, w.row_off: w.row_off + w.height, w.col_off: w.col_off + w.width], w)
            spills = writer._blocks.spills
        with rasterio.open(writer.path) as src:
            outputs[budget] = (src.read(), src.read(out_shape=(3, height // 4, width // 4)), spills)
    (full, over, none_spilled), (full_b, over_b, spilled) = outputs.values()
    assert none_spilled == 0 and spilled > 0
    assert np.array_equal(full, data) and np.array_equal(full_b, data) and np.array_equal(over, over_b)


def test_block_gather_resumes_from_the_rows_already_in_the_file():
    data = np.arange(100 * 64, dtype=np.uint16).reshape(1, 100, 64)
    gather = BlockGather(1, 100, 64, 64, "uint16", fill=0)
    gather.kept_above = 40  # rows 0-39 were written by an interrupted run
    blocks = list(gather.add(data[:, 40:64], Window(0, 40, 64, 24), read=lambda w: data[:, :64, :64] * (
        np.arange(64)[None, :, None] < 40)))
    assert len(blocks) == 1 and np.array_equal(blocks[0][0], data[:, :64])
