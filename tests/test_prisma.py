"""PRISMA L2D HE5 reader: layout, scaling, grid convention, windowed reads, validity and refusals.

Real products are large and not redistributable, so every file here is written by ``write_prisma_l2d``.
"""

from __future__ import annotations

import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
from rasterio.windows import Window

from spatialx.errors import ReadError
from spatialx.io.prisma import PrismaReader, open_prisma, probe, write_prisma_l2d
from spatialx.io.read import open_raster

FIELDS = "HDFEOS/SWATHS/PRS_L2D_HCO/Data Fields"
VNIR_WL = [400.0, 480.0, 560.0, 640.0, 720.0, 800.0, 900.0, 1000.0]
SWIR_WL = [950.0, 1200.0, 1500.0, 1800.0, 2100.0, 2400.0]
WL = VNIR_WL + SWIR_WL
FWHM = [10.5] * len(VNIR_WL) + [11.25] * len(SWIR_WL)
ROWS, COLS = 10, 12
UL = (500015.0, 4000015.0)
RANGES = {"VNIR": (0.0, 1.2), "SWIR": (-0.05, 1.0)}
# Ascending, VNIR 1000 nm (at or above the first SWIR centre, 950 nm) dropped: input band positions kept.
KEPT = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13]


def _reflectance(rows: int = ROWS, cols: int = COLS, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.01, 0.9, (len(WL), rows, cols))


def _write(path: Path, reflectance: np.ndarray | None = None, **kwargs) -> Path:
    kwargs.setdefault("scale_ranges", RANGES)
    kwargs.setdefault("unused_slots", (2, 1))
    return write_prisma_l2d(path, _reflectance() if reflectance is None else reflectance, WL, FWHM, 32632, *UL,
                            vnir_count=len(VNIR_WL), **kwargs)


def _full(info) -> Window:
    return Window(0, 0, info.grid.width, info.grid.height)


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = _reflectance()
    return _write(tmp_path / "PRS_L2D_STD_20200524103704_20200524103708_0001.he5", data), data


def test_file_layout_matches_prisma(scene):
    path, _ = scene
    with h5py.File(path, "r") as f:
        assert f[f"{FIELDS}/VNIR_Cube"].shape == (ROWS, len(VNIR_WL) + 2, COLS)
        assert f[f"{FIELDS}/SWIR_Cube"].shape == (ROWS, len(SWIR_WL) + 1, COLS)
        assert f[f"{FIELDS}/VNIR_PIXEL_L2_ERR_MATRIX"].shape == (ROWS, len(VNIR_WL) + 2, COLS)
        cw = f.attrs["List_Cw_Vnir"]
        assert list(cw) == [*VNIR_WL[::-1], 0.0, 0.0]
        assert f.attrs["Processing_Level"] == b"2D"


def test_round_trip_sorted_zeros_and_overlap_dropped(scene):
    path, data = scene
    info = open_prisma(path)
    assert info.count == len(KEPT) and info.dtype == "float32" and info.nodata is None and info.has_mask
    assert info.wavelengths_nm == tuple(WL[i] for i in KEPT)
    assert info.fwhm_nm == tuple(FWHM[i] for i in KEPT)
    assert list(info.wavelengths_nm) == sorted(info.wavelengths_nm) and 0.0 not in info.wavelengths_nm
    assert info.descriptions[:2] == ("VNIR01", "VNIR02") and info.descriptions[7] == "SWIR001"
    with PrismaReader(info) as reader:
        out = reader.read(_full(info))
    assert out.dtype == np.float32 and out.shape == (len(KEPT), ROWS, COLS)
    step = max(hi - lo for lo, hi in RANGES.values()) / 65535
    np.testing.assert_allclose(out, data[KEPT], atol=step)


def test_keep_overlap_keeps_both_cameras(scene):
    path, data = scene
    info = open_prisma(path, keep_overlap=True)
    assert info.count == len(WL)
    assert info.wavelengths_nm == tuple(sorted(WL))
    band = info.wavelengths_nm.index(1000.0) + 1
    assert info.descriptions[band - 1] == "VNIR08"  # the name is the same whether the overlap is kept or not
    with PrismaReader(info) as reader:
        np.testing.assert_allclose(reader.read(_full(info), [band])[0], data[7], atol=1.2 / 65535)


def test_reflectance_is_the_l2scale_formula_of_the_stored_dn(scene):
    path, _ = scene
    info = open_prisma(path)
    with h5py.File(path, "r") as f:
        dn_swir = f[f"{FIELDS}/SWIR_Cube"][:, 3, :].astype(np.float64)  # stored descending: 3 -> 1500 nm
        lo, hi = float(f.attrs["L2ScaleSwirMin"]), float(f.attrs["L2ScaleSwirMax"])
        dn_vnir = f[f"{FIELDS}/VNIR_Cube"][:, 7, :].astype(np.float64)  # 400 nm
        vlo, vhi = float(f.attrs["L2ScaleVnirMin"]), float(f.attrs["L2ScaleVnirMax"])
    assert (lo, hi) == pytest.approx(RANGES["SWIR"]) and info.metadata["L2ScaleSwirMin"] == lo
    band = info.wavelengths_nm.index(1500.0) + 1
    with PrismaReader(info) as reader:
        swir, vnir = reader.read(_full(info), [band, 1])
    np.testing.assert_allclose(swir, lo + dn_swir / 65535 * (hi - lo), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(vnir, vlo + dn_vnir / 65535 * (vhi - vlo), rtol=1e-6, atol=1e-7)


def test_ul_corner_is_the_centre_of_the_first_pixel(scene):
    path, _ = scene
    grid = open_prisma(path).grid
    assert grid.crs.to_epsg() == 32632 and grid.res == (30.0, 30.0)
    assert grid.transform @ (0.5, 0.5) == pytest.approx(UL)
    with h5py.File(path, "r") as f:
        lr = (f.attrs["Product_LRcorner_easting"], f.attrs["Product_LRcorner_northing"])
    assert grid.transform @ (COLS - 0.5, ROWS - 0.5) == pytest.approx(lr)
    # The grid's outer edge lies half a pixel outside the corner attributes.
    assert grid.bounds == pytest.approx((UL[0] - 15, lr[1] - 15, lr[0] + 15, UL[1] + 15))


def test_pixel_size_comes_from_the_corners_else_nominal(tmp_path):
    path = _write(tmp_path / "p60.he5", pixel_size=60.0)
    info = open_prisma(path)
    assert info.grid.res == (60.0, 60.0) and info.metadata["pixel_size_source"] == "corners"
    assert info.grid.transform @ (3.5, 2.5) == pytest.approx((UL[0] + 3 * 60, UL[1] - 2 * 60))
    with h5py.File(path, "r+") as f:
        del f.attrs["Product_LRcorner_easting"], f.attrs["Product_LRcorner_northing"]
    info = open_prisma(path)
    assert info.grid.res == (30.0, 30.0) and info.metadata["pixel_size_source"] == "nominal"


def test_metadata_has_date_and_level(scene):
    meta = open_prisma(scene[0]).metadata
    assert meta["date"] == "2020-05-24" and meta["start_time"] == "2020-05-24T10:37:04.529"
    assert meta["processing_level"] == "2D" and meta["epsg"] == 32632 and meta["overlap"] == "SWIR"


def test_windowed_read_equals_slice_of_whole_read(scene):
    path, _ = scene
    info = open_prisma(path)
    bands = [13, 2, 9, 2, 7, 8]  # unordered, repeated, both cameras, non-contiguous in the file
    with PrismaReader(info) as reader:
        whole = reader.read(_full(info))
        window = Window(3, 2, 5, 4)
        part = reader.read(window, bands)
        np.testing.assert_array_equal(part, whole[[b - 1 for b in bands], 2:6, 3:8])
        np.testing.assert_array_equal(reader.read_valid(window, bands), reader.read_valid(_full(info))[2:6, 3:8])
        with pytest.raises(ValueError, match="not inside"):
            reader.read(Window(10, 0, 5, 5))
        with pytest.raises(IndexError):
            reader.read(window, [len(KEPT) + 1])


def test_read_touches_only_the_window(tmp_path, monkeypatch):
    # A 2048 x 2048 cube (about 140 MB of DN if loaded) whose chunks are never written: a windowed read must
    # cost kilobytes, and every h5py selection must be the window.
    path = _write(tmp_path / "big.he5")
    size = 2048
    with h5py.File(path, "r+") as f:
        for camera in ("VNIR", "SWIR"):
            for name, dtype, fill in ((f"{camera}_Cube", "u2", 1000), (f"{camera}_PIXEL_L2_ERR_MATRIX", "u1", 0)):
                slots = f[f"{FIELDS}/{name}"].shape[1]
                del f[f"{FIELDS}/{name}"]
                f.create_dataset(f"{FIELDS}/{name}", shape=(size, slots, size), dtype=dtype, chunks=(64, slots, 64),
                                 fillvalue=fill)
        f.attrs["Product_LRcorner_easting"] = UL[0] + (size - 1) * 30.0
        f.attrs["Product_LRcorner_northing"] = UL[1] - (size - 1) * 30.0
    info = open_raster(path, role="HS")
    assert (info.grid.width, info.grid.height) == (size, size)
    selections = []
    original = h5py.Dataset.__getitem__

    def recording(self, args, *more):
        selections.append(args)
        return original(self, args, *more)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording)
    window = Window(1000, 1200, 32, 16)
    reader = info.reader()
    tracemalloc.start()
    try:
        values = reader.read(window, [1, 5, 12])
        valid = reader.read_valid(window)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        reader.close()
    assert values.shape == (3, 16, 32) and np.allclose(values[0], 1000 / 65535 * 1.2) and valid.all()
    assert peak < 4 * 2**20
    assert selections and all(s[0] == slice(1200, 1216) and s[2] == slice(1000, 1032) for s in selections)


def test_error_matrix_and_fill_make_pixels_invalid(tmp_path):
    data = _reflectance()
    data[:, 1, 1] = np.nan  # outside the swath: DN 0 in every band
    data[3, 8, 8] = 0.0  # one band at the bottom of its range is still a valid pixel
    err = np.zeros((len(WL), ROWS, COLS), np.uint8)
    err[:, 3, 4] = 2
    err[WL.index(1200.0), 5, 6] = 1
    err[WL.index(1000.0), 7, 7] = 4  # a band the reader drops (overlap) does not invalidate the pixel
    info = open_prisma(_write(tmp_path / "err.he5", data, err_mask=err))
    swir_1200 = info.wavelengths_nm.index(1200.0) + 1
    with PrismaReader(info) as reader:
        valid = reader.read_valid(_full(info))
        vnir_only = reader.read_valid(_full(info), [1, 2, 3])
        just_1200 = reader.read_valid(_full(info), [swir_1200])
    expected = np.ones((ROWS, COLS), bool)
    expected[[1, 3, 5], [1, 4, 6]] = False
    np.testing.assert_array_equal(valid, expected)
    assert vnir_only[5, 6] and not vnir_only[3, 4] and not vnir_only[1, 1]
    assert not just_1200[5, 6] and just_1200.sum() == ROWS * COLS - 3


def test_two_dimensional_err_mask_flags_every_band(tmp_path):
    mask = np.zeros((ROWS, COLS), bool)
    mask[0, 0] = True
    info = open_prisma(_write(tmp_path / "mask.he5", err_mask=mask))
    with PrismaReader(info) as reader:
        assert not reader.read_valid(_full(info), [1])[0, 0]
        assert not reader.read_valid(_full(info), [info.count])[0, 0]
        assert reader.read_valid(_full(info)).sum() == ROWS * COLS - 1


def test_open_raster_dispatches_to_the_prisma_reader(scene, tmp_path):
    path, data = scene
    info = open_raster(path, role="HS")
    assert info.opener is PrismaReader and info.count == len(KEPT)
    reader = info.reader()
    try:
        assert isinstance(reader, PrismaReader)
        np.testing.assert_allclose(reader.read(Window(0, 0, 2, 2), [1])[0], data[0, :2, :2], atol=1.2 / 65535)
    finally:
        reader.close()
    assert open_raster(path, options={"keep_overlap": True}).count == len(WL)
    h5 = _write(tmp_path / "renamed.h5")  # a PRISMA file with the other HDF5 suffix
    assert probe(h5) and open_raster(h5).opener is PrismaReader
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.zeros((2, 2))
    assert not probe(other)  # other HDF5 files stay with GDAL
    assert not probe(tmp_path / "missing.he5") and not probe(tmp_path)


@pytest.mark.parametrize(("level", "hint"), [("2C", "not geocoded"), ("1", "radiance"), ("2B", "radiance")])
def test_other_processing_levels_are_refused(tmp_path, level, hint):
    path = _write(tmp_path / f"PRS_L{level}.he5", processing_level=level)
    with pytest.raises(ReadError) as caught:
        open_raster(path, role="HS")
    text = str(caught.value)
    assert f"not a PRISMA L2D product (Processing_Level '{level}')" in text
    assert str(path) in text and hint in text and "\n" not in text


def test_another_missions_he5_is_refused(tmp_path):
    path = tmp_path / "OMI-Aura_L2.he5"
    with h5py.File(path, "w") as f:
        f["HDFEOS/SWATHS/ColumnAmountO3/Data Fields/O3"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ReadError, match=r"not a PRISMA L2D product \(no Processing_Level attribute\)") as caught:
        open_raster(path)
    assert str(path) in str(caught.value) and caught.value.hint


def test_truncated_and_corrupt_files_are_one_read_error(scene, tmp_path):
    path, _ = scene
    raw = path.read_bytes()
    truncated = tmp_path / "truncated.he5"
    truncated.write_bytes(raw[: len(raw) // 2])
    garbage = tmp_path / "garbage.he5"
    garbage.write_bytes(raw[:8] + bytes(range(256)) * 8)  # an HDF5 signature and nothing valid after it
    not_hdf5 = tmp_path / "not_hdf5.he5"
    not_hdf5.write_bytes(b"this is not a PRISMA product\n" * 10)
    for broken in (truncated, garbage, not_hdf5):
        with pytest.raises(ReadError) as caught:
            open_raster(broken, role="HS")
        assert str(broken) in str(caught.value) and "\n" not in str(caught.value)


def test_damaged_chunk_fails_the_read_with_the_path(tmp_path):
    path = _write(tmp_path / "damaged.he5", _reflectance(130, 130))  # 64 x 64 chunks: 9 per cube
    with h5py.File(path, "r") as f:
        chunk = f[f"{FIELDS}/VNIR_Cube"].id.get_chunk_info(0)  # the top-left chunk; the last one stays intact
    with open(path, "r+b") as fh:
        fh.seek(chunk.byte_offset)
        fh.write(b"\xff" * chunk.size)
    info = open_raster(path)  # the last pixel still reads
    with PrismaReader(info) as reader:
        with pytest.raises(ReadError, match="read failed") as caught:
            reader.read(Window(0, 0, 8, 8), [1])
        assert str(path) in str(caught.value)
        assert reader.read(Window(100, 100, 8, 8), [1]).shape == (1, 8, 8)


def test_reads_from_two_threads_at_once(tmp_path):
    data = _reflectance(64, 64, seed=3)
    info = open_prisma(_write(tmp_path / "threads.he5", data))
    reader = PrismaReader(info)
    whole = reader.read(_full(info))
    barrier = threading.Barrier(2)
    windows = [Window(c, r, 16, 16) for r in range(0, 64, 16) for c in range(0, 64, 16)]

    def work(start: int) -> bool:
        barrier.wait()
        ok = True
        for w in windows[start::2]:
            r, c = int(w.row_off), int(w.col_off)
            ok &= np.array_equal(reader.read(w), whole[:, r:r + 16, c:c + 16])
            ok &= bool(reader.read_valid(w, [1, info.count]).all())
        return ok

    with ThreadPoolExecutor(2) as pool:
        assert all(pool.map(work, [0, 1]))
    handles = list(reader._handles)
    assert len(handles) >= 2  # the main thread's and at least one worker's
    reader.close()
    assert not reader._handles and not any(h.id.valid for h in handles)
