"""Landsat Collection 2 Level-2 reader: synthetic scene folders in the real layout (band TIFFs, an ODL MTL holding
both the Level-1 and the Level-2 groups, QA_PIXEL with every masked bit), and the real 5 % fixture scene
(data/real/README.md, stfuse rows)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from spatialx.errors import ReadError
from spatialx.io.landsat import FORMAT, LandsatReader, open_landsat, parse_mtl, probe_landsat
from spatialx.io.read import open_raster, product_format_name
from spatialx.scene import profile_for_file
from spatialx.sensors import get_sensor

REAL = Path(__file__).resolve().parents[1].parent / "shared/data/real/stfuse"
REAL_ID = "LC08_L2SP_001062_20201031_20201106_02_T2"
PRODUCT_ID = "LC09_L2SP_002063_20230415_20230417_02_T1"
WIDTH, HEIGHT = 40, 30
ORIGIN = (143685.0, -204285.0)
SR = tuple(f"SR_B{n}" for n in range(1, 8))
#: Level-2 scaling of the synthetic MTL: a different value per band, so that a band mix-up shows.
L2_MULT = {n: 2.75e-05 + n * 1e-07 for n in range(1, 8)}
L2_ADD = {n: -0.2 + n * 0.001 for n in range(1, 8)}
ST_MULT, ST_ADD = 0.00341802, 149.0
#: Level-1 TOA rescaling in the same MTL, with the same key names: never to be used for Level-2 pixels.
L1_MULT, L1_ADD = 2.0e-05, -0.1

# QA_PIXEL values (CFMask bits: 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud, 4 shadow, 5 snow, 6 clear, 7 water).
CLEAR = 21824  # bit 6 + low confidences
WATER = 21952  # bits 6 and 7: valid
FILL = 1
DILATED = 21890  # bit 1 (+ bit 6 and confidences)
CIRRUS = 55052  # bits 2 and 3, cirrus confidence high (real fixture value)
CLOUD = 22280  # bit 3, cloud confidence high (real fixture value)
SHADOW = 23888  # bits 4 and 6 (real fixture value)
SNOW = 30048  # bit 5, snow confidence high
#: Where each special pixel is: (row, col).
AT = {"fill": (0, 0), "fill_sr": (0, 3), "dilated": (5, 5), "cirrus": (6, 7), "cloud": (7, 9), "shadow": (8, 11),
      "snow": (9, 13), "water": (10, 15), "zero_dn": (12, 2), "high_dn": (13, 4)}


# ----------------------------------------------------------------------------------------------- synthetic data


def _write_tif(path: Path, data: np.ndarray, *, origin: tuple[float, float] = ORIGIN, res: float = 30.0,
               nodata: float | None = 0) -> None:
    transform = rasterio.Affine(res, 0, origin[0], 0, -res, origin[1])
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype, crs="EPSG:32620", transform=transform, nodata=nodata) as dst:
        dst.write(data, 1)


def _qa() -> np.ndarray:
    qa = np.full((HEIGHT, WIDTH), CLEAR, dtype=np.uint16)
    qa[0, :4] = FILL  # scene edge: fill, SR 0 in cols 0-2 and SR > 0 in col 3
    for name, value in (("dilated", DILATED), ("cirrus", CIRRUS), ("cloud", CLOUD), ("shadow", SHADOW),
                        ("snow", SNOW), ("water", WATER)):
        qa[AT[name]] = value
    return qa


def _sr(n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    dn = rng.integers(7273, 43637, size=(HEIGHT, WIDTH)).astype(np.uint16)
    dn[0, :3] = 0  # fill
    dn[AT["zero_dn"]] = 0  # no data under a clear QA
    dn[AT["high_dn"]] = 50000  # above the valid range 7273-43636
    return dn


def _st() -> np.ndarray:
    rng = np.random.default_rng(10)
    dn = rng.integers(30000, 45000, size=(HEIGHT, WIDTH)).astype(np.uint16)
    dn[0, :4] = 0
    dn[AT["cloud"]] = 0  # ST has no retrieval under some clouds
    return dn


def _groups(level2: bool = True) -> dict[str, dict[str, str]]:
    contents = {"ORIGIN": "Image courtesy of the U.S. Geological Survey", "LANDSAT_PRODUCT_ID": PRODUCT_ID,
                "PROCESSING_LEVEL": "L2SP" if level2 else "L1TP", "COLLECTION_NUMBER": "02",
                "COLLECTION_CATEGORY": "T1", "OUTPUT_FORMAT": "GEOTIFF"}
    if level2:
        contents.update({f"FILE_NAME_BAND_{n}": f"{PRODUCT_ID}_SR_B{n}.TIF" for n in range(1, 8)})
        contents["FILE_NAME_BAND_ST_B10"] = f"{PRODUCT_ID}_ST_B10.TIF"
        contents["FILE_NAME_QUALITY_L1_PIXEL"] = f"{PRODUCT_ID}_QA_PIXEL.TIF"
    groups: dict[str, dict[str, str]] = {
        "PRODUCT_CONTENTS": contents,
        "IMAGE_ATTRIBUTES": {"SPACECRAFT_ID": "LANDSAT_9", "SENSOR_ID": "OLI_TIRS", "WRS_PATH": "2", "WRS_ROW": "63",
                             "DATE_ACQUIRED": "2023-04-15", "SCENE_CENTER_TIME": "14:25:11.1234560Z",
                             "CLOUD_COVER": "12.34", "SUN_ELEVATION": "58.1"},
    }
    if level2:
        sr = {}
        for n in range(1, 8):
            sr[f"REFLECTANCE_MAXIMUM_BAND_{n}"] = "1.602213"
            sr[f"REFLECTANCE_MINIMUM_BAND_{n}"] = "-0.199972"
        sr.update({f"REFLECTANCE_MULT_BAND_{n}": f"{L2_MULT[n]:.6e}" for n in range(1, 8)})
        sr.update({f"REFLECTANCE_ADD_BAND_{n}": f"{L2_ADD[n]:.3f}" for n in range(1, 8)})
        groups["LEVEL2_SURFACE_REFLECTANCE_PARAMETERS"] = sr
        groups["LEVEL2_SURFACE_TEMPERATURE_PARAMETERS"] = {
            "TEMPERATURE_MAXIMUM_BAND_ST_B10": "372.999941", "TEMPERATURE_MULT_BAND_ST_B10": f"{ST_MULT}",
            "TEMPERATURE_ADD_BAND_ST_B10": f"{ST_ADD}"}
    rescaling = {f"RADIANCE_MULT_BAND_{n}": "1.2744E-02" for n in range(1, 12)}
    rescaling.update({f"REFLECTANCE_MULT_BAND_{n}": f"{L1_MULT:.4E}" for n in range(1, 10)})
    rescaling.update({f"REFLECTANCE_ADD_BAND_{n}": f"{L1_ADD:.6f}" for n in range(1, 10)})
    groups["LEVEL1_RADIOMETRIC_RESCALING"] = rescaling
    groups["LEVEL1_THERMAL_CONSTANTS"] = {"K1_CONSTANT_BAND_10": "774.8853", "K2_CONSTANT_BAND_10": "1321.0789"}
    return groups


#: Values the real ODL writes unquoted (numbers, dates); every other value is a quoted string.
_UNQUOTED = ("COLLECTION_NUMBER", "WRS_", "DATE_ACQUIRED", "CLOUD_COVER", "SUN_", "REFLECTANCE_", "TEMPERATURE_",
             "RADIANCE_", "K1_", "K2_")


def _odl(groups: dict[str, dict[str, str]]) -> str:
    lines = ["GROUP = LANDSAT_METADATA_FILE"]
    for name, group in groups.items():
        lines.append(f"  GROUP = {name}")
        for key, value in group.items():
            text = value if key.startswith(_UNQUOTED) else f'"{value}"'
            lines.append(f"    {key} = {text}")
        lines.append(f"  END_GROUP = {name}")
    lines += ["END_GROUP = LANDSAT_METADATA_FILE", "END", ""]
    return "\n".join(lines)


def make_scene(root: Path, *, mtl: tuple[str, ...] = ("txt",), level2: bool = True, qa: bool = True,
               bands: tuple[str, ...] = (*SR, "ST_B10")) -> tuple[Path, dict[str, np.ndarray]]:
    """A C2 L2 scene folder: band TIFFs, QA_PIXEL and the MTL as ODL text and/or JSON; returns it and the DN."""
    folder = root / PRODUCT_ID
    folder.mkdir(parents=True)
    dns: dict[str, np.ndarray] = {}
    for band in bands:
        dns[band] = _st() if band == "ST_B10" else _sr(int(band[-1]))
        _write_tif(folder / f"{PRODUCT_ID}_{band}.TIF", dns[band])
    if qa:
        dns["QA_PIXEL"] = _qa()
        _write_tif(folder / f"{PRODUCT_ID}_QA_PIXEL.TIF", dns["QA_PIXEL"], nodata=None)
    groups = _groups(level2)
    if "txt" in mtl:
        (folder / f"{PRODUCT_ID}_MTL.txt").write_text(_odl(groups), encoding="utf-8")
    if "json" in mtl:
        (folder / f"{PRODUCT_ID}_MTL.json").write_text(json.dumps({"LANDSAT_METADATA_FILE": groups}),
                                                       encoding="utf-8")
    return folder, dns


def _all(info) -> Window:
    return Window(0, 0, info.grid.width, info.grid.height)


def _read(info, window: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
    with info.reader() as reader:
        return reader.read(window or _all(info)), reader.read_valid(window or _all(info))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.fixture()
def scene(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    return make_scene(tmp_path)


# ------------------------------------------------------------------------------------------ synthetic: values


def test_reflectance_is_dn_times_the_level2_scaling_not_level1(scene):
    folder, dns = scene
    info = open_landsat(folder)
    assert info.descriptions == SR and (info.count, info.dtype, info.nodata, info.has_mask) == (7, "float32",
                                                                                                 None, True)
    assert isinstance(info.reader(), LandsatReader)
    values, _ = _read(info)
    assert values.dtype == np.float32 and values.shape == (7, HEIGHT, WIDTH)
    layer = get_sensor("landsat_c2l2").layer("SR_B1")
    for k, n in enumerate(range(1, 8)):
        dn = dns[f"SR_B{n}"]
        ok = layer.valid_mask(dn)
        expected = np.where(ok, dn * float(f"{L2_MULT[n]:.6e}") + float(f"{L2_ADD[n]:.3f}"), 0.0)
        np.testing.assert_allclose(values[k], expected.astype(np.float32), rtol=1e-6, atol=1e-7)
        level1 = dn[ok] * L1_MULT + L1_ADD
        assert not np.allclose(values[k][ok], level1, atol=0.01)  # not what the Level-1 group gives
    meta = info.metadata
    assert meta["scale"] == {f"SR_B{n}": pytest.approx(L2_MULT[n], rel=1e-6) for n in range(1, 8)}
    assert meta["offset"] == {f"SR_B{n}": pytest.approx(L2_ADD[n]) for n in range(1, 8)}
    assert (meta["units"], meta["value_range"], meta["variable"]) == ("reflectance", (0.0, 1.0),
                                                                      "surface_reflectance")


def test_fill_and_out_of_range_dn_read_zero_and_are_invalid(scene):
    folder, _ = scene
    values, valid = _read(open_landsat(folder))
    for where in ((0, 0), (0, 1), (0, 2), AT["zero_dn"], AT["high_dn"]):
        assert (values[(slice(None), *where)] == 0).all() and not valid[where]


def test_qa_pixel_masks_every_invalid_bit(scene):
    folder, dns = scene
    values, valid = _read(open_landsat(folder))
    for name in ("fill", "fill_sr", "dilated", "cirrus", "cloud", "shadow", "snow"):
        assert not valid[AT[name]], name
    assert valid[AT["water"]]
    # The fill-flagged pixel with SR > 0 is invalid by its QA bit 0, though its DN is valid.
    assert dns["SR_B4"][AT["fill_sr"]] > 0 and values[(3, *AT["fill_sr"])] > 0
    # Cloudy pixels keep their reflectance in read(): only read_valid says they are unusable.
    assert values[(3, *AT["cloud"])] > 0
    special = {AT[n] for n in AT} | {(0, 1), (0, 2)}
    expected = np.ones((HEIGHT, WIDTH), bool)
    for where in special - {AT["water"]}:
        expected[where] = False
    np.testing.assert_array_equal(valid, expected)


def test_snow_is_invalid_by_default_and_can_be_kept(scene):
    folder, _ = scene
    default, kept = open_landsat(folder), open_landsat(folder, mask_snow=False)
    assert default.metadata["mask_snow"] is True and "snow" in default.metadata["invalid_qa_conditions"]
    assert kept.metadata["invalid_qa_conditions"] == ["fill", "dilated_cloud", "cirrus", "cloud", "shadow"]
    _, valid_default = _read(default)
    _, valid_kept = _read(kept)
    assert not valid_default[AT["snow"]] and valid_kept[AT["snow"]]
    changed = valid_default != valid_kept
    assert changed.sum() == 1 and changed[AT["snow"]]


def test_surface_temperature_in_kelvin(scene):
    folder, dns = scene
    for selection in ("ST", "st_b10", "B10", ["10"]):
        info = open_landsat(folder, bands=selection)
        assert info.descriptions == ("ST_B10",) and info.count == 1
    assert info.metadata["units"] == "K" and info.metadata["value_range"] == (150.0, 350.0)
    assert info.metadata["variable"] == "surface_temperature"
    assert info.metadata["scale"] == {"ST_B10": ST_MULT} and info.metadata["offset"] == {"ST_B10": ST_ADD}
    assert info.wavelengths_nm == (pytest.approx(10895.0),) and info.fwhm_nm == (pytest.approx(590.0),)
    values, valid = _read(info)
    dn = dns["ST_B10"]
    expected = np.where(dn > 0, dn * ST_MULT + ST_ADD, 0.0).astype(np.float32)
    np.testing.assert_allclose(values[0], expected, rtol=1e-6)
    assert values[0][dn > 0].min() > 250.0 and values[0].max() < 305.0
    assert not valid[AT["cloud"]] and not valid[AT["shadow"]] and valid[AT["water"]]


def test_band_names_are_case_insensitive_with_short_forms(scene):
    folder, _ = scene
    info = open_landsat(folder, bands="b4, 5,SR_b3")
    assert info.descriptions == ("SR_B4", "SR_B5", "SR_B3")
    assert info.wavelengths_nm == (654.5, 865.0, 561.5) and info.fwhm_nm == (37, 28, 57)
    assert open_landsat(folder, bands=["SR_B7", "04"]).descriptions == ("SR_B7", "SR_B4")
    values, _ = _read(open_landsat(folder, bands="B5,B4"))
    full, _ = _read(open_landsat(folder))
    np.testing.assert_array_equal(values, full[[4, 3]])


def test_mixing_reflectance_and_temperature_is_refused(scene):
    folder, _ = scene
    with pytest.raises(ReadError, match="different variables") as exc:
        open_landsat(folder, bands="SR_B4,ST_B10")
    assert "SR_B4 and ST_B10" in _one_line(exc)


@pytest.mark.parametrize("bands, message", [("B8", "has no band B8"), ("QA_PIXEL", "has no band QA_PIXEL"),
                                            ("B4,sr_b4", "SR_B4 selected twice"), (" , ", "no Landsat band")])
def test_bad_band_selections_are_refused(scene, bands, message):
    folder, _ = scene
    with pytest.raises(ReadError, match=message) as exc:
        open_landsat(folder, bands=bands)
    _one_line(exc)


# ------------------------------------------------------------------------------------ synthetic: MTL and paths


def test_level1_mtl_is_refused(tmp_path):
    folder, _ = make_scene(tmp_path, level2=False, bands=("SR_B4",))
    mtl = folder / f"{PRODUCT_ID}_MTL.txt"
    for path in (folder, mtl):
        with pytest.raises(ReadError) as exc:
            open_landsat(path)
        text = _one_line(exc)
        assert f"{PRODUCT_ID}_MTL.txt is a Level-1 product (no LEVEL2_SURFACE_REFLECTANCE_PARAMETERS group)" in text
        assert exc.value.path == str(mtl) and "L2SP" in exc.value.hint


def test_mtl_json_equals_mtl_txt(tmp_path):
    txt_folder, _ = make_scene(tmp_path / "txt", mtl=("txt",))
    json_folder, _ = make_scene(tmp_path / "json", mtl=("json",))
    txt_mtl, json_mtl = txt_folder / f"{PRODUCT_ID}_MTL.txt", json_folder / f"{PRODUCT_ID}_MTL.json"
    assert parse_mtl(txt_mtl) == parse_mtl(json_mtl)
    for bands in (None, "ST"):
        a, b = open_landsat(txt_folder, bands=bands), open_landsat(json_folder, bands=bands)
        assert a.grid == b.grid and a.descriptions == b.descriptions
        skip = ("mtl", "band_files", "qa_pixel")
        assert {k: v for k, v in a.metadata.items() if k not in skip} == \
            {k: v for k, v in b.metadata.items() if k not in skip}
        for x, y in zip(_read(a), _read(b), strict=True):
            np.testing.assert_array_equal(x, y)


def test_folder_with_both_mtls_reads_the_text_one(tmp_path):
    folder, _ = make_scene(tmp_path, mtl=("txt", "json"))
    assert open_landsat(folder).metadata["mtl"] == str(folder / f"{PRODUCT_ID}_MTL.txt")
    assert open_landsat(folder / f"{PRODUCT_ID}_MTL.json").metadata["mtl"].endswith("_MTL.json")


def test_opening_the_folder_or_the_mtl_gives_the_same_raster(scene):
    folder, _ = scene
    by_folder, by_file = open_landsat(folder), open_landsat(folder / f"{PRODUCT_ID}_MTL.txt")
    assert by_folder.grid == by_file.grid and by_folder.metadata == by_file.metadata
    for x, y in zip(_read(by_folder), _read(by_file), strict=True):
        np.testing.assert_array_equal(x, y)


def test_metadata(scene):
    folder, _ = scene
    info = open_landsat(folder)
    meta = info.metadata
    assert meta["acquired"] == "2023-04-15" and meta["scene_center_time"] == "14:25:11.1234560Z"
    assert (meta["product_id"], meta["spacecraft"], meta["processing_level"]) == (PRODUCT_ID, "LANDSAT_9", "L2SP")
    assert meta["cloud_cover"] == pytest.approx(12.34) and (meta["wrs_path"], meta["wrs_row"]) == (2, 63)
    assert meta["band_files"] == {b: str(folder / f"{PRODUCT_ID}_{b}.TIF") for b in SR}
    assert meta["qa_pixel"] == str(folder / f"{PRODUCT_ID}_QA_PIXEL.TIF")
    grid = info.grid
    assert grid.crs.to_epsg() == 32620 and grid.shape == (HEIGHT, WIDTH) and grid.res == (30.0, 30.0)
    assert (grid.transform.c, grid.transform.f) == ORIGIN


def test_open_raster_routes_the_mtl_to_the_landsat_reader(scene):
    folder, _ = scene
    mtl = folder / f"{PRODUCT_ID}_MTL.txt"
    assert product_format_name(mtl) == FORMAT.name == "Landsat C2 L2"
    info = open_raster(mtl, "fine")
    assert info.opener is LandsatReader and info.descriptions == SR
    info = open_raster(mtl, "fine", options={"bands": "ST", "mask_snow": False})
    assert info.descriptions == ("ST_B10",) and info.metadata["mask_snow"] is False
    # The pipeline then treats the values as physical: reflectance in 0-1, not DN.
    profile = profile_for_file(open_raster(mtl, "fine", options={"bands": "B4,B5"}), get_sensor("landsat9"))
    assert profile.band_names == ("SR_B4", "SR_B5") and profile.value_range == (0.0, 1.0)
    assert profile.bands[0].scale == 1.0 and profile.bands[0].units == "reflectance"


def test_open_raster_routes_the_scene_folder_to_the_landsat_reader(scene):
    folder, _ = scene
    assert product_format_name(folder) == "Landsat C2 L2"
    assert open_raster(folder, "fine").opener is LandsatReader


def test_windowed_read_equals_slice_of_full_read(scene):
    folder, _ = scene
    info = open_landsat(folder)
    window = Window(3, 5, 21, 11)
    rows, cols = slice(5, 16), slice(3, 24)
    with info.reader() as reader:
        full, full_valid = reader.read(_all(info)), reader.read_valid(_all(info))
        np.testing.assert_array_equal(reader.read(window), full[:, rows, cols])
        np.testing.assert_array_equal(reader.read(window, [2, 5]), full[[1, 4], rows, cols])
        np.testing.assert_array_equal(reader.read_valid(window), full_valid[rows, cols])
        with pytest.raises(IndexError):
            reader.read(window, [8])


def test_reads_from_many_threads_match(scene):
    folder, _ = scene
    info = open_landsat(folder)
    windows = [Window(c, r, 10, 10) for r in (0, 10, 20) for c in (0, 10, 20, 30)]
    results: dict[int, np.ndarray] = {}
    with info.reader() as reader:
        full = reader.read(_all(info))

        def work(k: int) -> None:
            results[k] = reader.read(windows[k])

        threads = [threading.Thread(target=work, args=(k,)) for k in range(len(windows))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for k, w in enumerate(windows):
        np.testing.assert_array_equal(results[k], full[:, w.row_off:w.row_off + 10, w.col_off:w.col_off + 10])


def test_missing_band_files(tmp_path):
    folder, _ = make_scene(tmp_path, bands=("SR_B2", "SR_B3", "SR_B4"))
    assert open_landsat(folder).descriptions == ("SR_B2", "SR_B3", "SR_B4")  # default: the SR bands present
    with pytest.raises(ReadError) as exc:
        open_landsat(folder, bands="B4,B5,B6")
    text = _one_line(exc)
    assert f"no SR_B5 ({PRODUCT_ID}_SR_B5.TIF), SR_B6 ({PRODUCT_ID}_SR_B6.TIF)" in text
    assert "it has SR_B2, SR_B3, SR_B4" in exc.value.hint
    with pytest.raises(ReadError, match="ST_B10"):
        open_landsat(folder, bands="ST")


def test_no_band_files_at_all(tmp_path):
    folder, _ = make_scene(tmp_path, bands=(), qa=False)
    with pytest.raises(ReadError, match="no surface reflectance band file") as exc:
        open_landsat(folder)
    _one_line(exc)


def test_without_qa_pixel_it_warns_and_masks_by_dn(tmp_path):
    folder, _ = make_scene(tmp_path, qa=False)
    with pytest.warns(UserWarning, match="no QA_PIXEL"):
        info = open_landsat(folder)
    assert info.metadata["qa_pixel"] is None and info.metadata["invalid_qa_conditions"] == []
    _, valid = _read(info)
    assert not valid[0, 0] and not valid[AT["zero_dn"]] and not valid[AT["high_dn"]]
    assert valid[AT["cloud"]] and valid[AT["fill_sr"]]  # nothing tells these apart without QA_PIXEL


def test_band_files_off_one_grid_are_refused(tmp_path):
    folder, _ = make_scene(tmp_path)
    _write_tif(folder / f"{PRODUCT_ID}_SR_B5.TIF", _sr(5), origin=(ORIGIN[0] + 30.0, ORIGIN[1]))
    with pytest.raises(ReadError, match="not on one grid") as exc:
        open_landsat(folder)
    assert "SR_B5" in _one_line(exc)
    assert open_landsat(folder, bands="B4").count == 1  # the other bands are fine
    _write_tif(folder / f"{PRODUCT_ID}_QA_PIXEL.TIF", _qa()[:-1], nodata=None)
    with pytest.raises(ReadError, match="QA_PIXEL"):
        open_landsat(folder, bands="B4")


def test_a_folder_without_mtl_or_with_two_products_is_refused(tmp_path):
    folder, _ = make_scene(tmp_path / "a")
    (folder / f"{PRODUCT_ID}_MTL.txt").unlink()
    with pytest.raises(ReadError, match="no Landsat MTL file") as exc:
        open_landsat(folder)
    assert "_MTL.txt" in exc.value.hint
    other, _ = make_scene(tmp_path / "b")
    (other / "LC08_L2SP_001062_20201031_20201106_02_T2_MTL.txt").write_text(_odl(_groups()), encoding="utf-8")
    with pytest.raises(ReadError, match="2 Landsat products"):
        open_landsat(other)


@pytest.mark.parametrize("text, message", [
    ("GROUP = LANDSAT_METADATA_FILE\n  GROUP = A\n    X = 1\nEND_GROUP = LANDSAT_METADATA_FILE\n", "closes no"),
    ("GROUP = LANDSAT_METADATA_FILE\n  what is this\n", "not KEY = value"),
    ("GROUP = L1_METADATA_FILE\nEND_GROUP = L1_METADATA_FILE\nEND\n", "Collection 1"),
])
def test_damaged_or_foreign_mtl_is_refused(tmp_path, text, message):
    mtl = tmp_path / "X_MTL.txt"
    mtl.write_text(text, encoding="utf-8")
    with pytest.raises(ReadError, match=message) as exc:
        open_landsat(mtl)
    assert exc.value.path == str(mtl)
    _one_line(exc)


def test_a_level2_mtl_without_surface_temperature_refuses_st(tmp_path):
    folder, _ = make_scene(tmp_path)
    mtl = folder / f"{PRODUCT_ID}_MTL.txt"
    groups = _groups()
    del groups["LEVEL2_SURFACE_TEMPERATURE_PARAMETERS"]
    mtl.write_text(_odl(groups), encoding="utf-8")
    assert open_landsat(mtl).count == 7
    with pytest.raises(ReadError, match="no LEVEL2_SURFACE_TEMPERATURE_PARAMETERS"):
        open_landsat(mtl, bands="ST")


def test_probe(tmp_path, scene):
    folder, _ = scene
    assert probe_landsat(folder) and probe_landsat(folder / f"{PRODUCT_ID}_MTL.txt")
    assert not probe_landsat(folder / f"{PRODUCT_ID}_SR_B4.TIF")  # a single band file is a plain GeoTIFF
    assert not probe_landsat(tmp_path / "missing") and not probe_landsat(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    assert not probe_landsat(tmp_path / "empty")
    bands_only = tmp_path / "bands"
    bands_only.mkdir()
    (bands_only / f"{PRODUCT_ID}_SR_B4.TIF").write_bytes(b"")
    assert probe_landsat(bands_only)  # opened, it then says what is missing
    assert not probe_landsat("\0bad")


# --------------------------------------------------------------------------------------------- the real fixture


@pytest.fixture(scope="module")
def real() -> Path:
    if not (REAL / f"{REAL_ID}_MTL.txt").is_file():
        pytest.skip(f"Landsat fixture not found at {REAL}")
    return REAL


def _real_dn(band: str) -> np.ndarray:
    with rasterio.open(REAL / f"{REAL_ID}_{band}.TIF") as src:
        return src.read(1)


def test_real_mtl_text_and_json_agree(real):
    txt, js = parse_mtl(real / f"{REAL_ID}_MTL.txt"), parse_mtl(real / f"{REAL_ID}_MTL.json")
    for group in ("LEVEL2_SURFACE_REFLECTANCE_PARAMETERS", "LEVEL2_SURFACE_TEMPERATURE_PARAMETERS",
                  "IMAGE_ATTRIBUTES", "PRODUCT_CONTENTS"):
        assert txt["LANDSAT_METADATA_FILE"][group] == js["LANDSAT_METADATA_FILE"][group], group
    assert txt["LANDSAT_METADATA_FILE"]["LEVEL1_RADIOMETRIC_RESCALING"]["REFLECTANCE_MULT_BAND_4"] == "2.0000E-05"
    for name in (f"{REAL_ID}_MTL.txt", f"{REAL_ID}_MTL.json"):
        meta = open_landsat(real / name).metadata
        assert meta["scale"] == dict.fromkeys(SR, 2.75e-05) and meta["offset"] == dict.fromkeys(SR, -0.2)
        assert meta["acquired"] == "2020-10-31" and meta["scene_center_time"] == "14:31:47.8083990Z"


def test_real_fixture_grid_and_metadata(real):
    info = open_landsat(real / f"{REAL_ID}_MTL.txt")
    assert info.descriptions == SR and info.grid.shape == (386, 379) and info.grid.crs.to_epsg() == 32620
    assert (info.grid.transform.c, info.grid.transform.f) == (143685.0, -204285.0)
    meta = info.metadata
    assert (meta["product_id"], meta["spacecraft"], meta["processing_level"]) == (REAL_ID, "LANDSAT_8", "L2SP")
    assert meta["cloud_cover"] == pytest.approx(99.94) and meta["acquired"] == "2020-10-31"
    st = open_landsat(real / f"{REAL_ID}_MTL.txt", bands="ST").metadata
    assert st["scale"] == {"ST_B10": 0.00341802} and st["offset"] == {"ST_B10": 149.0}
    # The folder also holds the MODIS fixture: the MTL picks this product's files.
    assert open_landsat(real).metadata["band_files"] == meta["band_files"]


def test_real_fixture_reflectance(real):
    info = open_landsat(real / f"{REAL_ID}_MTL.txt", bands="B4")
    values, _ = _read(info)
    dn = _real_dn("SR_B4")
    ok = get_sensor("landsat8").layer("SR_B4").valid_mask(dn)
    np.testing.assert_allclose(values[0][ok], (dn[ok] * 2.75e-05 - 0.2).astype(np.float32), rtol=1e-6)
    assert (values[0][~ok] == 0).all() and int((dn > 0).sum()) == 101724


def test_real_fixture_qa_masks(real):
    qa, red = _real_dn("QA_PIXEL"), _real_dn("SR_B4")
    assert {int(v): int((qa == v).sum()) for v in np.unique(qa)} == {1: 44854, 22280: 24286, 23888: 62,
                                                                     55052: 77092}
    for mask_snow in (True, False):
        _, valid = _read(open_landsat(real, mask_snow=mask_snow))
        assert not valid[qa == 22280].any()  # bit 3, cloud
        assert not valid[qa == 23888].any()  # bit 4, cloud shadow (with bit 6 clear)
        fill_with_data = (qa == 1) & (red > 0)
        assert int(fill_with_data.sum()) == 284 and not valid[fill_with_data].any()  # QA bit 0, whatever the DN
        assert not valid.any()  # every pixel of this 99.94 % cloudy scene is fill, cloud or shadow


def test_real_fixture_surface_temperature(real):
    info = open_landsat(real / f"{REAL_ID}_MTL.json", bands="ST")
    values, _ = _read(info)
    dn = _real_dn("ST_B10")
    kelvin = values[0][dn > 0]
    assert kelvin.size == 74678
    assert kelvin.min() == pytest.approx(150.0, abs=0.01) and kelvin.max() == pytest.approx(306.0, abs=0.01)
    np.testing.assert_allclose(kelvin, (dn[dn > 0] * 0.00341802 + 149.0).astype(np.float32), rtol=1e-6)
