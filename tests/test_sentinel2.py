"""Sentinel-2 L2A reader: the real COG fixture (baseline 02.14, STAC item), synthetic SAFE products in the real
folder layout (band JP2s + MTD_MSIL2A.xml), the BOA_ADD_OFFSET rules, SCL masking and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from spatialx.errors import ReadError
from spatialx.io.read import open_raster
from spatialx.io.sentinel2 import Sentinel2Reader, open_sentinel2, probe_sentinel2

FIXTURE = Path("data/real/hmif/S2A_29RKH_20200219_0_L2A")
ORIGIN = (300000.0, 5000040.0)
SIZE_10M = 12  # 10 m pixels per side; the 20 m files are 6 x 6
TILE = "T21JUK_20231217T135659"
GRANULE = "L2A_T21JUK_A035414_20231217T140918"
PHYSICAL = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")


@pytest.fixture(scope="module")
def fixture_dir(shared_dir: Path) -> Path:
    path = shared_dir / FIXTURE
    if not path.is_dir():
        pytest.skip(f"Sentinel-2 fixture not found at {path}")
    return path


# ----------------------------------------------------------------------------------------------- synthetic data


def _write(path: Path, data: np.ndarray, res: float, *, origin: tuple[float, float] = ORIGIN) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    driver = "JP2OpenJPEG" if path.suffix == ".jp2" else "GTiff"
    options = {"QUALITY": 100, "REVERSIBLE": "YES"} if driver == "JP2OpenJPEG" else {}
    transform = rasterio.Affine(res, 0, origin[0], 0, -res, origin[1])
    with rasterio.open(path, "w", driver=driver, width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype, crs="EPSG:32721", transform=transform, **options) as dst:
        dst.write(data, 1)
    return path


def _dn(seed: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dn = rng.integers(1, 9000, size=(size, size)).astype("uint16")
    dn[0, seed % size] = 0  # a no-data pixel per band, in a different place in each
    return dn


#: SCL classes of the synthetic 6 x 6 scene: vegetation, with cloud shadow, both clouds, cirrus, snow and no data.
SCL_CLASSES = np.array([[4, 4, 4, 5, 5, 6],
                        [4, 3, 4, 5, 8, 6],
                        [4, 4, 9, 5, 5, 6],
                        [10, 4, 4, 11, 5, 6],
                        [4, 4, 4, 5, 0, 6],
                        [1, 4, 2, 5, 5, 7]], dtype="uint8")


def _mtd(level: str, baseline: str, offsets: dict[int, float] | None, quantification: float = 10000) -> str:
    offset_list = ""
    if offsets is not None:
        items = "".join(f'<BOA_ADD_OFFSET band_id="{i}">{v:g}</BOA_ADD_OFFSET>' for i, v in offsets.items())
        offset_list = f"<BOA_ADD_OFFSET_VALUES_LIST>{items}</BOA_ADD_OFFSET_VALUES_LIST>"
    spectral = "".join(f'<Spectral_Information bandId="{i}" physicalBand="{b}"><RESOLUTION>10</RESOLUTION>'
                       f"</Spectral_Information>" for i, b in enumerate(PHYSICAL))
    kind = "L2A" if level == "2A" else "L1C"
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-{level}_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{level}.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>2023-12-17T13:56:59.024Z</PRODUCT_START_TIME>
      <PRODUCT_URI>S2B_MSI{kind}_20231217T135659_N{baseline.replace('.', '')}_R067_T21JUK.SAFE</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-{level}</PROCESSING_LEVEL>
      <PRODUCT_TYPE>S2MSI{level}</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values><SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX></Special_Values>
      <QUANTIFICATION_VALUES_LIST>
        <BOA_QUANTIFICATION_VALUE unit="none">{quantification:g}</BOA_QUANTIFICATION_VALUE>
        <AOT_QUANTIFICATION_VALUE unit="none">1000.0</AOT_QUANTIFICATION_VALUE>
      </QUANTIFICATION_VALUES_LIST>
      {offset_list}
      <Spectral_Information_List>{spectral}</Spectral_Information_List>
    </Product_Image_Characteristics>
  </n1:General_Info>
  <n1:Quality_Indicators_Info><Cloud_Coverage_Assessment>12.69</Cloud_Coverage_Assessment></n1:Quality_Indicators_Info>
</n1:Level-{level}_User_Product>
"""


def make_safe(root: Path, *, baseline: str = "04.00", offsets: dict[int, float] | None = None,
              level: str = "2A", bands_10m: tuple[str, ...] = ("B02", "B03", "B04", "B08"),
              bands_20m: tuple[str, ...] = ("B02", "B05", "B8A"),
              scl: bool = True) -> tuple[Path, dict[str, np.ndarray]]:
    """A one-granule SAFE in the real layout; returns it and the DN written per band (native resolution)."""
    kind = "L2A" if level == "2A" else "L1C"
    safe = root / f"S2B_MSI{kind}_20231217T135659_N{baseline.replace('.', '')}_R067_T21JUK_20231217T175625.SAFE"
    img = safe / "GRANULE" / GRANULE / "IMG_DATA"
    dns: dict[str, np.ndarray] = {}
    for seed, band in enumerate(bands_10m, start=1):
        dns[band] = _dn(seed, SIZE_10M)
        _write(img / "R10m" / f"{TILE}_{band}_10m.jp2", dns[band], 10)
    for seed, band in enumerate(bands_20m, start=20):
        data = _dn(seed, SIZE_10M // 2)
        _write(img / "R20m" / f"{TILE}_{band}_20m.jp2", data, 20)
        dns.setdefault(band, data)  # B02 at 20 m is a resampled copy: the native 10 m file is the one to read
    if scl:
        _write(img / "R20m" / f"{TILE}_SCL_20m.jp2", SCL_CLASSES, 20)
    name = "MTD_MSIL2A.xml" if level == "2A" else "MTD_MSIL1C.xml"
    (safe / name).write_text(_mtd(level, baseline, offsets), encoding="utf-8")
    return safe, dns


def _all(info) -> Window:
    return Window(0, 0, info.grid.width, info.grid.height)


# --------------------------------------------------------------------------------------------- the real fixture


def test_real_fixture_grid_and_metadata(fixture_dir):
    info = open_sentinel2(fixture_dir)
    assert info.descriptions == ("B02", "B03", "B04", "B08")
    assert (info.count, info.dtype, info.nodata, info.has_mask) == (4, "float32", None, True)
    grid = info.grid
    assert grid.crs.to_epsg() == 32629
    assert grid.res == (100.0, 100.0)
    assert (grid.transform.c, grid.transform.f) == (199980.0, 2800020.0)
    assert grid.shape == (1098, 1098)
    assert info.wavelengths_nm == (492.4, 559.8, 664.6, 832.8)  # the s2_l2a profile's S2A centres
    assert info.fwhm_nm == (66, 36, 31, 106)
    meta = info.metadata
    assert meta["processing_baseline"] == "02.14"
    assert meta["boa_add_offset"] == {"B02": 0.0, "B03": 0.0, "B04": 0.0, "B08": 0.0}
    assert meta["boa_quantification_value"] == pytest.approx(10000.0)
    assert meta["acquisition_date"] == "2020-02-19"
    assert meta["cloud_cover"] == pytest.approx(4.051854)
    assert meta["invalid_scl_classes"] == [0, 1, 3, 8, 9, 10]


def test_real_fixture_reflectance_is_dn_times_1e4(fixture_dir):
    info = open_sentinel2(fixture_dir)
    with info.reader() as reader:
        values = reader.read(_all(info))
    assert values.dtype == np.float32 and values.shape == (4, 1098, 1098)
    lows, highs = values.min(axis=(1, 2)), values.max(axis=(1, 2))
    # README ranges in DN: B02 427-7335, B03 670-7438, B04 951-7818, B08 1066-8530; no nodata pixels.
    np.testing.assert_allclose(lows, [0.0427, 0.0670, 0.0951, 0.1066], rtol=1e-6)
    np.testing.assert_allclose(highs, [0.7335, 0.7438, 0.7818, 0.8530], rtol=1e-6)
    with rasterio.open(fixture_dir / "B03.tif") as src:
        dn = src.read(1)
    np.testing.assert_array_equal(values[1], (dn / 10000.0).astype(np.float32))


def test_real_fixture_scl_masks_clouds_by_nearest_neighbour(fixture_dir):
    info = open_sentinel2(fixture_dir)
    with rasterio.open(fixture_dir / "SCL.tif") as src:
        scl = src.read(1)
    with info.reader() as reader:
        classes = reader.read_scl(_all(info))
        valid = reader.read_valid(_all(info))
    # Each SCL pixel (200 m) holds the centres of 2 x 2 band pixels (100 m).
    np.testing.assert_array_equal(classes, scl.repeat(2, axis=0).repeat(2, axis=1))
    counts = {c: int(np.count_nonzero(classes == c)) for c in (8, 9, 10)}
    assert counts == {8: 967 * 4, 9: 837 * 4, 10: 10434 * 4}  # README counts, in SCL pixels
    assert int(np.count_nonzero(~valid)) == (967 + 837 + 10434) * 4
    assert not valid[np.isin(classes, (8, 9, 10))].any() and valid[classes == 5].all()


def test_real_fixture_red_nir_give_a_desert_ndvi(fixture_dir):
    info = open_sentinel2(fixture_dir, bands=("B04", "B08"))
    assert info.descriptions == ("B04", "B08") and info.wavelengths_nm == (664.6, 832.8)
    with info.reader() as reader:
        red, nir = reader.read(_all(info))
        valid = reader.read_valid(_all(info))
    ndvi = (nir - red) / (nir + red)
    # Saharan bare soil (95.9 % not vegetated): low positive NDVI, never vegetation-like.
    assert 0.03 < float(np.median(ndvi[valid])) < 0.12
    assert float(ndvi[valid].max()) < 0.3 and float(ndvi[valid].min()) > -0.1


def test_real_fixture_windowed_read_equals_slice_of_full_read(fixture_dir):
    info = open_sentinel2(fixture_dir)
    window = Window(301, 517, 257, 131)  # odd offsets: the SCL lookup starts mid-way through an SCL pixel
    rows, cols = slice(517, 517 + 131), slice(301, 301 + 257)
    with info.reader() as reader:
        full, full_valid = reader.read(_all(info)), reader.read_valid(_all(info))
        np.testing.assert_array_equal(reader.read(window), full[:, rows, cols])
        np.testing.assert_array_equal(reader.read(window, [2, 4]), full[[1, 3], rows, cols])
        np.testing.assert_array_equal(reader.read_valid(window), full_valid[rows, cols])


def test_open_raster_dispatches_the_fixture_folder(fixture_dir):
    assert probe_sentinel2(fixture_dir)
    info = open_raster(fixture_dir, role="MS")
    assert info.opener is Sentinel2Reader
    reader = info.reader()
    assert isinstance(reader, Sentinel2Reader)
    reader.close()


# ------------------------------------------------------------------------------------------- synthetic products


def test_baseline_04_offset_from_the_xml(tmp_path):
    safe, dns = make_safe(tmp_path, baseline="04.00", offsets=dict.fromkeys(range(13), -1000))
    for path in (safe, safe / "MTD_MSIL2A.xml"):
        info = open_sentinel2(path)
        assert info.metadata["boa_add_offset"] == dict.fromkeys(("B02", "B03", "B04", "B08"), -1000.0)
        assert info.metadata["processing_baseline"] == "04.00"
        assert info.metadata["cloud_cover"] == pytest.approx(12.69)
        assert info.grid.res == (10.0, 10.0) and info.grid.shape == (SIZE_10M, SIZE_10M)
        with info.reader() as reader:
            values, valid = reader.read(_all(info)), reader.read_valid(_all(info))
        for k, band in enumerate(info.descriptions):
            dn = dns[band]
            expected = ((dn.astype(np.float64) - 1000) / 10000).astype(np.float32)
            np.testing.assert_array_equal(values[k][dn != 0], expected[dn != 0])
            assert (values[k][dn == 0] == 0).all()
            assert not valid[dn == 0].any()


def test_per_band_offsets_are_read_by_band_id(tmp_path):
    # band_id 1 is B2, 3 is B4 (Spectral_Information_List); the values are per band, not one constant.
    offsets = {i: -1000 - i for i in range(13)}
    safe, dns = make_safe(tmp_path, offsets=offsets)
    info = open_sentinel2(safe, bands=("B04", "B02"))
    assert info.metadata["boa_add_offset"] == {"B04": -1003.0, "B02": -1001.0}
    with info.reader() as reader:
        b04 = reader.read(_all(info), [1])[0]
    dn = dns["B04"]
    np.testing.assert_array_equal(b04[dn != 0], ((dn[dn != 0].astype(np.float64) - 1003) / 10000).astype(np.float32))


def test_reprocessed_baseline_05_stating_zero_offset_gets_none(tmp_path):
    safe, dns = make_safe(tmp_path, baseline="05.10", offsets=dict.fromkeys(range(13), 0))
    info = open_sentinel2(safe)
    assert info.metadata["boa_add_offset"]["B08"] == 0.0  # the XML wins over the baseline rule
    with info.reader() as reader:
        b08 = reader.read(_all(info), [4])[0]
    dn = dns["B08"]
    np.testing.assert_array_equal(b08, (dn / 10000.0).astype(np.float32))


@pytest.mark.parametrize(("baseline", "offset"), [("02.14", 0.0), ("04.00", -1000.0), ("05.10", -1000.0)])
def test_without_an_offset_list_the_profile_decides_by_baseline(tmp_path, baseline, offset):
    safe, _ = make_safe(tmp_path, baseline=baseline, offsets=None)
    assert open_sentinel2(safe).metadata["boa_add_offset"]["B02"] == offset


def test_scl_classes_mask_on_the_10m_grid(tmp_path):
    safe, dns = make_safe(tmp_path, offsets=dict.fromkeys(range(13), -1000))
    expected_classes = SCL_CLASSES.repeat(2, axis=0).repeat(2, axis=1)
    data_ok = np.all([dns[b] != 0 for b in ("B02", "B03", "B04", "B08")], axis=0)
    for mask_snow, invalid in ((False, [0, 1, 3, 8, 9, 10]), (True, [0, 1, 3, 8, 9, 10, 11])):
        info = open_sentinel2(safe, mask_snow=mask_snow)
        assert info.metadata["invalid_scl_classes"] == invalid
        with info.reader() as reader:
            np.testing.assert_array_equal(reader.read_scl(_all(info)), expected_classes)
            valid = reader.read_valid(_all(info))
        np.testing.assert_array_equal(valid, data_ok & ~np.isin(expected_classes, invalid))
    assert valid[expected_classes == 4].any() and not valid[expected_classes == 11].any()


def test_20m_bands_are_read_from_r20m_with_the_scl_one_to_one(tmp_path):
    safe, dns = make_safe(tmp_path, offsets=dict.fromkeys(range(13), -1000))
    info = open_sentinel2(safe, bands="B05,B8A")
    assert info.grid.res == (20.0, 20.0) and info.descriptions == ("B05", "B8A")
    with info.reader() as reader:
        np.testing.assert_array_equal(reader.read_scl(_all(info)), SCL_CLASSES)
        values = reader.read(_all(info))
    dn = dns["B8A"]
    np.testing.assert_array_equal(values[1][dn != 0], ((dn[dn != 0] - 1000.0) / 10000).astype(np.float32))


def test_synthetic_windowed_read_equals_slice(tmp_path):
    safe, _ = make_safe(tmp_path, offsets=dict.fromkeys(range(13), -1000))
    info = open_sentinel2(safe)
    with info.reader() as reader:
        full, full_valid = reader.read(_all(info)), reader.read_valid(_all(info))
        for window in (Window(3, 5, 7, 4), Window(0, 11, 12, 1), Window(11, 0, 1, 12)):
            rows = slice(window.row_off, window.row_off + window.height)
            cols = slice(window.col_off, window.col_off + window.width)
            np.testing.assert_array_equal(reader.read(window), full[:, rows, cols])
            np.testing.assert_array_equal(reader.read_valid(window), full_valid[rows, cols])


def test_reads_from_many_threads_match(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    safe, _ = make_safe(tmp_path, offsets=dict.fromkeys(range(13), -1000))
    info = open_sentinel2(safe)
    windows = [Window(c, r, 4, 4) for r in range(0, 12, 4) for c in range(0, 12, 4)]
    with info.reader() as reader:
        full = reader.read(_all(info))
        with ThreadPoolExecutor(4) as pool:
            parts = list(pool.map(reader.read, windows))
    for window, part in zip(windows, parts, strict=True):
        r, c = window.row_off, window.col_off
        np.testing.assert_array_equal(part, full[:, r:r + 4, c:c + 4])


def test_open_raster_dispatches_a_safe(tmp_path):
    safe, _ = make_safe(tmp_path, offsets=dict.fromkeys(range(13), -1000))
    info = open_raster(safe, role="MS")
    assert info.opener is Sentinel2Reader and info.metadata["boa_add_offset"]["B03"] == -1000.0
    assert open_raster(safe / "MTD_MSIL2A.xml").descriptions == ("B02", "B03", "B04", "B08")


def test_probe(tmp_path, fixture_dir):
    safe, _ = make_safe(tmp_path / "a", offsets=None)
    assert probe_sentinel2(safe) and probe_sentinel2(safe / "MTD_MSIL2A.xml") and probe_sentinel2(fixture_dir)
    r10m = safe / "GRANULE" / GRANULE / "IMG_DATA" / "R10m"
    assert probe_sentinel2(r10m)  # a folder of band JP2s
    tif = _write(tmp_path / "ms.tif", np.ones((4, 4), dtype="uint16"), 10)
    (tmp_path / "empty").mkdir()
    assert not probe_sentinel2(tif)
    assert not probe_sentinel2(tmp_path / "empty")
    assert not probe_sentinel2(tmp_path / "missing.SAFE")


# ---------------------------------------------------------------------------------------------------- refusals


def test_l1c_is_refused(tmp_path):
    safe, _ = make_safe(tmp_path, level="1C")
    for path in (safe, safe / "MTD_MSIL1C.xml"):
        with pytest.raises(ReadError, match="Level-1C product") as err:
            open_raster(path, role="MS")
        assert "Sen2Cor" in err.value.hint and err.value.path == str(path)


def test_a_product_without_its_10m_bands_is_refused(tmp_path):
    safe, _ = make_safe(tmp_path, bands_10m=(), offsets=None)
    with pytest.raises(ReadError, match=r"has no B02 \(only at 20 m, not 10 m\), B03, B04, B08 at 10 m") as err:
        open_sentinel2(safe)
    assert "B05" in err.value.hint and "bands=" in err.value.hint and err.value.path == str(safe)


def test_a_requested_band_the_product_lacks_is_refused(tmp_path):
    safe, _ = make_safe(tmp_path, offsets=None)
    with pytest.raises(ReadError, match="has no B11 at 20 m"):
        open_sentinel2(safe, bands=("B05", "B11"))
    with pytest.raises(ReadError, match="no band B10"):
        open_sentinel2(safe, bands=("B10",))


def test_mixed_resolutions_are_refused(tmp_path):
    safe, _ = make_safe(tmp_path, offsets=None)
    with pytest.raises(ReadError, match=r"different resolutions: B02 \(10 m\), B05 \(20 m\)") as err:
        open_sentinel2(safe, bands=("B02", "B05"))
    assert "B05,B06,B07,B8A,B11,B12 for 20 m" in err.value.hint


def _cog_folder(root: Path, item: dict | None, shift_b03: bool = False) -> dict[str, np.ndarray]:
    dns = {}
    for seed, band in enumerate(("B02", "B03", "B04", "B08"), start=1):
        dns[band] = _dn(seed, SIZE_10M)
        origin = (ORIGIN[0] + 10, ORIGIN[1]) if shift_b03 and band == "B03" else ORIGIN
        _write(root / f"{band}.tif", dns[band], 10, origin=origin)
    if item is not None:
        (root / "item.json").write_text(json.dumps(item), encoding="utf-8")
    return dns


def _item(offset: float, applied: bool) -> dict:
    raster = [{"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": offset}]
    return {"type": "Feature", "stac_version": "1.0.0", "id": "S2B_21JUK_20231217_0_L2A",
            "properties": {"datetime": "2023-12-17T13:56:59Z", "s2:processing_baseline": "05.10",
                           "s2:product_type": "S2MSI2A", "earthsearch:boa_offset_applied": applied},
            "assets": {name: {"href": f"https://example.invalid/{band}.tif", "raster:bands": raster}
                       for name, band in (("blue", "B02"), ("green", "B03"), ("red", "B04"), ("nir", "B08"))}}


def test_stac_raster_bands_scale_and_offset(tmp_path):
    dns = _cog_folder(tmp_path, _item(-0.1, applied=False))
    info = open_sentinel2(tmp_path)
    assert info.metadata["boa_add_offset"]["B04"] == -1000.0 and info.metadata["processing_baseline"] == "05.10"
    assert info.metadata["scl"] is None
    with info.reader() as reader:
        red = reader.read(_all(info), [3])[0]
        valid = reader.read_valid(_all(info))
    dn = dns["B04"]
    np.testing.assert_allclose(red[dn != 0], (dn[dn != 0] - 1000.0) / 10000, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(valid, np.all([d != 0 for d in dns.values()], axis=0))


def test_stac_item_contradicting_itself_is_refused(tmp_path):
    _cog_folder(tmp_path, _item(-0.1, applied=True))
    with pytest.raises(ReadError, match="already applied"):
        open_sentinel2(tmp_path)


def test_band_files_without_any_radiometry_statement_are_refused(tmp_path):
    _cog_folder(tmp_path, None)
    with pytest.raises(ReadError, match="nothing states the radiometry of B02") as err:
        open_sentinel2(tmp_path)
    assert "MTD_MSIL2A.xml" in err.value.hint


def test_band_files_off_one_grid_are_refused(tmp_path):
    _cog_folder(tmp_path, _item(0.0, applied=False), shift_b03=True)
    with pytest.raises(ReadError, match=r"not on one grid: B02 \(.*\) vs B03"):
        open_sentinel2(tmp_path)
