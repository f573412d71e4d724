"""MODIS reader: synthetic HDF4-EOS granules written with pyhdf in the real layout (MOD11A1 LST, MOD09GA 500 m
reflectance with the 1 km state QA), a synthetic MCD43A4 GeoTIFF set, reprojection onto UTM and EPSG:4326, the
refusals, and the real MOD11A1 and MCD43A4 fixtures."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as transform_points
from rasterio.windows import Window

from spatialx.errors import ReadError
from spatialx.io.modis import SINUSOIDAL, ModisReader, open_modis, probe_modis
from spatialx.io.read import open_raster, product_format_name

REAL = Path(__file__).resolve().parents[1].parent / "shared/data/real/stfuse"
REAL_MOD11A1 = REAL / "MOD11A1.A2021227.h11v05.061.2021228105320.hdf"
REAL_MCD43A4 = "MCD43A4.A2017006.h21v11.006.2017018074804"
#: Tile h11v05: the real granule's upper-left corner and 1 km cell (StructMetadata.0).
UL = (-7783653.638366, 4447802.079066)
PIXEL_1KM = 926.6254331383334
MOD11A1_NAME = "MOD11A1.A2021227.h11v05.061.2021228105320.hdf"
MOD09GA_NAME = "MOD09GA.A2021227.h11v05.061.2021229033110.hdf"
H, W = 12, 16  # 1 km pixels of the synthetic tiles

pytestmark = [pytest.mark.filterwarnings("error::UserWarning"),
              # rasterio 1.4's calculate_default_transform still multiplies Affine with *
              pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")]


# ------------------------------------------------------------------------------------------- HDF4-EOS writer


def _struct_metadata(grids: list[tuple[str, int, int, float, dict[str, np.ndarray]]]) -> str:
    types = {"uint8": "DFNT_UINT8", "uint16": "DFNT_UINT16", "int16": "DFNT_INT16", "int8": "DFNT_INT8"}
    lines = ["GROUP=SwathStructure", "END_GROUP=SwathStructure", "GROUP=GridStructure"]
    for n, (name, width, height, pixel, fields) in enumerate(grids, start=1):
        lr = (UL[0] + width * pixel, UL[1] - height * pixel)
        lines += [f"\tGROUP=GRID_{n}", f'\t\tGridName="{name}"', f"\t\tXDim={width}", f"\t\tYDim={height}",
                  f"\t\tUpperLeftPointMtrs=({UL[0]:.6f},{UL[1]:.6f})", f"\t\tLowerRightMtrs=({lr[0]:.6f},{lr[1]:.6f})",
                  "\t\tProjection=GCTP_SNSOID", "\t\tProjParams=(6371007.181000,0,0,0,0,0,0,0,0,0,0,0,0)",
                  "\t\tSphereCode=-1", "\t\tGridOrigin=HDFE_GD_UL", "\t\tGROUP=Dimension", "\t\tEND_GROUP=Dimension",
                  "\t\tGROUP=DataField"]
        for k, (field, data) in enumerate(fields.items(), start=1):
            lines += [f"\t\t\tOBJECT=DataField_{k}", f'\t\t\t\tDataFieldName="{field}"',
                      f"\t\t\t\tDataType={types[str(data.dtype)]}", '\t\t\t\tDimList=("YDim","XDim")',
                      f"\t\t\tEND_OBJECT=DataField_{k}"]
        lines += ["\t\tEND_GROUP=DataField", "\t\tGROUP=MergedFields", "\t\tEND_GROUP=MergedFields",
                  f"\tEND_GROUP=GRID_{n}"]
    lines += ["END_GROUP=GridStructure", "GROUP=PointStructure", "END_GROUP=PointStructure", "END", ""]
    return "\n".join(lines)


def _odl_object(name: str, value: str) -> str:
    return (f"    OBJECT                 = {name}\n      NUM_VAL              = 1\n"
            f"      VALUE                = {value}\n    END_OBJECT             = {name}\n\n")


def _core_metadata(shortname: str | None, begin: str, end: str, granule: str) -> str:
    text = "\nGROUP                  = INVENTORYMETADATA\n  GROUPTYPE            = MASTERGROUP\n\n"
    text += "  GROUP                  = ECSDATAGRANULE\n\n" + _odl_object("LOCALGRANULEID", f'"{granule}"')
    text += "  END_GROUP              = ECSDATAGRANULE\n\n  GROUP                  = COLLECTIONDESCRIPTIONCLASS\n\n"
    text += _odl_object("VERSIONID", "61")
    if shortname is not None:
        text += _odl_object("SHORTNAME", f'"{shortname}"')
    text += "  END_GROUP              = COLLECTIONDESCRIPTIONCLASS\n\n  GROUP                  = RANGEDATETIME\n\n"
    text += _odl_object("RANGEENDINGDATE", f'"{end}"') + _odl_object("RANGEBEGINNINGDATE", f'"{begin}"')
    text += "  END_GROUP              = RANGEDATETIME\n\nEND_GROUP              = INVENTORYMETADATA\n\nEND\n"
    return text


def write_hdf_eos(path: Path, grids: list[tuple[str, int, int, float, dict[str, np.ndarray]]],
                  attrs: Mapping[str, Mapping[str, object]], shortname: str | None = "MOD11A1",
                  begin: str = "2021-08-15", end: str | None = None, core: bool = True) -> Path:
    """An HDF4-EOS grid file like an LP DAAC granule: one SDS per field (dimensions named ``YDim:<grid>``), SDS
    attributes (scale_factor, add_offset, _FillValue, valid_range ...) and the StructMetadata.0 / CoreMetadata.0
    global ODL attributes."""
    from pyhdf.SD import SD, SDC

    sdc = {"uint8": SDC.UINT8, "uint16": SDC.UINT16, "int16": SDC.INT16, "int8": SDC.INT8}
    sd = SD(str(path), SDC.WRITE | SDC.CREATE)
    sd.attr("HDFEOSVersion").set(SDC.CHAR, "HDFEOS_V2.19")
    sd.attr("StructMetadata.0").set(SDC.CHAR, _struct_metadata(grids))
    if core:
        sd.attr("CoreMetadata.0").set(SDC.CHAR, _core_metadata(shortname, begin, end or begin, path.name))
    for name, _width, _height, _pixel, fields in grids:
        for field, data in fields.items():
            kind = sdc[str(data.dtype)]
            sds = sd.create(field, kind, data.shape)
            sds.dim(0).setname(f"YDim:{name}")
            sds.dim(1).setname(f"XDim:{name}")
            for key, value in attrs.get(field, {}).items():
                if key in ("_FillValue", "valid_range"):
                    sds.attr(key).set(kind, value)
                elif isinstance(value, str):
                    sds.attr(key).set(SDC.CHAR, value)
                else:
                    sds.attr(key).set(SDC.FLOAT64, float(value))
            sds[:] = data
            sds.endaccess()
    sd.end()
    return path


LST_ATTRS = {"units": "K", "valid_range": [7500, 65535], "_FillValue": 0, "scale_factor": 0.02}


def lst_fields(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    day = rng.integers(14000, 15500, size=(H, W)).astype("uint16")
    night = rng.integers(13500, 15000, size=(H, W)).astype("uint16")
    qc_day = np.zeros((H, W), dtype="uint8")
    qc_day[1, :4] = [1, 0b01000001, 0b00010000, 0b11000001]  # LST produced (0, 1), other bits set
    day[2, 3] = 0  # fill, with QC 2 (not produced, cloud)
    qc_day[2, 3] = 2
    day[3, 5] = 0  # fill, QC 3 (not produced, other reasons)
    qc_day[3, 5] = 3
    qc_day[4, 6] = 2  # flagged not produced although the DN looks valid: the QA wins
    day[5, 7] = 7000  # below valid_range
    qc_night = np.zeros((H, W), dtype="uint8")
    qc_night[0, 0] = 3
    night[0, 0] = 0
    return {"LST_Day_1km": day, "QC_Day": qc_day, "LST_Night_1km": night, "QC_Night": qc_night}


def write_mod11a1(path: Path, fields: dict[str, np.ndarray] | None = None, lst_attrs: Mapping | None = None,
                  **kwargs) -> Path:
    fields = lst_fields() if fields is None else fields
    view = np.full((H, W), 70, dtype="uint8")  # 5 degrees
    attrs = {"LST_Day_1km": lst_attrs or LST_ATTRS, "LST_Night_1km": LST_ATTRS,
             "QC_Day": {"valid_range": [0, 255]}, "QC_Night": {"valid_range": [0, 255]},
             "Day_view_angl": {"valid_range": [0, 130], "_FillValue": 255, "scale_factor": 1.0,
                               "add_offset": -65.0}}
    grids = [("MODIS_Grid_Daily_1km_LST", W, H, PIXEL_1KM, {**fields, "Day_view_angl": view})]
    return write_hdf_eos(path, grids, attrs, **kwargs)


REFL_ATTRS = {"units": "reflectance", "valid_range": [-100, 16000], "_FillValue": -28672, "scale_factor": 0.0001,
              "add_offset": 0.0}
MOD09GA_BANDS = tuple(f"sur_refl_b0{i}_1" for i in range(1, 8))


def write_mod09ga(path: Path, state: np.ndarray | None = None, misplaced: bool = False) -> Path:
    rng = np.random.default_rng(3)
    refl = {name: rng.integers(200, 6000, size=(2 * H, 2 * W)).astype("int16") for name in MOD09GA_BANDS}
    refl["sur_refl_b01_1"][0, 0] = -28672
    refl["sur_refl_b03_1"][0, 1] = 20000  # above valid_range
    if state is None:
        state = np.full((H, W), 0b1000, dtype="uint16")  # clear, land
    fine = dict(refl)
    coarse = {"state_1km_1": state}
    if misplaced:  # a file that puts a reflectance band on the 1 km grid (for the mixed-grid refusal)
        coarse["sur_refl_b02_1"] = refl["sur_refl_b02_1"][::2, ::2].copy()
        del fine["sur_refl_b02_1"]
    grids = [("MODIS_Grid_1km_2D", W, H, PIXEL_1KM, coarse),
             ("MODIS_Grid_500m_2D", 2 * W, 2 * H, PIXEL_1KM / 2, fine)]
    attrs = {**dict.fromkeys(MOD09GA_BANDS, REFL_ATTRS),
             "state_1km_1": {"valid_range": [0, 57335], "_FillValue": 65535}}
    write_hdf_eos(path, grids, attrs, shortname="MOD09GA")
    return path


@pytest.fixture(scope="module")
def pyhdf():
    return pytest.importorskip("pyhdf")


@pytest.fixture(scope="module")
def mod11a1(pyhdf, tmp_path_factory) -> Path:
    return write_mod11a1(tmp_path_factory.mktemp("mod11a1") / MOD11A1_NAME)


@pytest.fixture(scope="module")
def mod09ga(pyhdf, tmp_path_factory) -> tuple[Path, np.ndarray]:
    state = np.full((H, W), 0b1000, dtype="uint16")
    state[1, 1] = 0b1001  # cloudy
    state[2, 2] = 0b1010  # mixed
    state[3, 3] = 0b1100  # cloud shadow
    state[4, 4] = 65535  # fill
    state[5, 5] = 0b1011  # "not set, assumed clear"
    state[6, 6] = 0b01_0000_1000  # cirrus small: valid by default
    return write_mod09ga(tmp_path_factory.mktemp("mod09ga") / MOD09GA_NAME, state), state


def full(info) -> Window:
    return Window(0, 0, info.grid.width, info.grid.height)


# ------------------------------------------------------------------------------------------------- MOD11A1


def test_mod11a1_grid_crs_and_metadata(mod11a1: Path) -> None:
    info = open_modis(mod11a1, "coarse")
    assert (info.count, info.dtype, info.descriptions) == (1, "float32", ("LST_Day_1km",))
    assert (info.grid.width, info.grid.height) == (W, H)
    assert info.grid.crs == SINUSOIDAL and info.grid.crs.to_epsg() is None
    t = info.grid.transform
    assert (t.c, t.f) == pytest.approx(UL, abs=1e-6)
    assert info.grid.res == pytest.approx((PIXEL_1KM, PIXEL_1KM), abs=1e-6)
    meta = info.metadata
    assert meta["acquired"] == "2021-08-15"
    assert (meta["product"], meta["tile"], meta["collection"]) == ("MOD11A1", "h11v05", "061")
    assert meta["units"] == "K" and meta["value_range"] == (150.0, 350.0)
    assert meta["scale_factor"] == {"LST_Day_1km": 0.02} and meta["add_offset"] == {"LST_Day_1km": 0.0}
    assert meta["grid_name"] == "MODIS_Grid_Daily_1km_LST"
    assert info.has_mask and info.nodata is None and info.warp_crs is None


def test_mod11a1_values_fill_and_qc(mod11a1: Path) -> None:
    fields = lst_fields()
    day = fields["LST_Day_1km"].astype(np.float64)
    info = open_modis(mod11a1, "coarse")
    with info.reader() as reader:
        values, valid = reader.read(full(info))[0], reader.read_valid(full(info))
    expected_invalid = {(2, 3), (3, 5), (4, 6), (5, 7)}
    assert {tuple(map(int, p)) for p in np.argwhere(~valid)} == expected_invalid
    assert np.allclose(values[valid], day[valid] * 0.02, atol=1e-4)  # K
    assert all(values[p] == 0 for p in expected_invalid)
    assert valid[1, :4].all()  # mandatory QA 0 and 1 are kept whatever the other bits


def test_mod11a1_band_selection(mod11a1: Path) -> None:
    info = open_modis(mod11a1, bands="lst_night_1km, LST_Day_1km")
    assert info.descriptions == ("LST_Night_1km", "LST_Day_1km")
    with info.reader() as reader:
        per_band = reader.read_band_valid(full(info))
        night = reader.read(full(info), [1])[0]
    assert not per_band[0, 0, 0] and per_band[0].sum() == H * W - 1  # QC_Night applies to the night band only
    assert per_band[1, 0, 0] and per_band[1].sum() == H * W - 4
    assert night[1, 1] == pytest.approx(lst_fields()["LST_Night_1km"][1, 1] * 0.02, abs=1e-4)
    for bad in ("Day_view_angl", "LST"):
        with pytest.raises(ReadError, match="has no band"):
            open_modis(mod11a1, bands=bad)
    with pytest.raises(ReadError, match="twice"):
        open_modis(mod11a1, bands=["LST_Day_1km", "lst_day_1km"])


def test_windowed_reads_equal_the_full_read_also_from_threads(mod11a1: Path) -> None:
    info = open_modis(mod11a1, bands="LST_Day_1km,LST_Night_1km")
    windows = [Window(c, r, w, h) for c, r, w, h in
               [(0, 0, 5, 4), (3, 2, 7, 9), (15, 11, 1, 1), (0, 6, 16, 6), (8, 0, 8, 12), (2, 3, 0, 4)]]
    with info.reader() as reader:
        values, valid = reader.read(full(info)), reader.read_valid(full(info))

        def check(window: Window) -> bool:
            r0, c0 = window.row_off, window.col_off
            rows, cols = slice(r0, r0 + window.height), slice(c0, c0 + window.width)
            return (np.array_equal(reader.read(window), values[:, rows, cols])
                    and np.array_equal(reader.read_valid(window), valid[rows, cols])
                    and np.array_equal(reader.read(window, [2])[0], values[1, rows, cols]))

        with ThreadPoolExecutor(4) as pool:
            assert all(pool.map(check, windows * 4))
        with pytest.raises(ValueError, match="not inside"):
            reader.read(Window(10, 0, 7, 2))
        with pytest.raises(IndexError):
            reader.read(Window(0, 0, 2, 2), [3])


def test_add_offset_is_additive_and_the_file_wins_with_a_warning(pyhdf, tmp_path: Path) -> None:
    path = write_mod11a1(tmp_path / MOD11A1_NAME, lst_attrs={**LST_ATTRS, "add_offset": 10.0})
    with pytest.warns(UserWarning, match="differ from the mod11a1 profile"):
        info = open_modis(path)
    assert info.metadata["add_offset"] == {"LST_Day_1km": 10.0}
    with info.reader() as reader:
        values = reader.read(Window(0, 0, 2, 1))[0]
    dn = lst_fields()["LST_Day_1km"][0, :2].astype(np.float64)
    assert np.allclose(values, dn * 0.02 + 10.0, atol=1e-3)  # not 0.02 * (DN - 10)


def test_date_and_product_from_the_file_name_without_core_metadata(pyhdf, tmp_path: Path) -> None:
    path = write_mod11a1(tmp_path / "MYD11A1.A2020060.h11v05.061.2020061000000.hdf", core=False)
    info = open_modis(path, product="mod11a1")
    assert info.metadata["acquired"] == "2020-02-29" and info.metadata["product"] == "MYD11A1"


def test_open_raster_reads_modis(mod11a1: Path) -> None:
    assert probe_modis(mod11a1) and product_format_name(mod11a1) == "MODIS"
    info = open_raster(mod11a1, "coarse")
    assert isinstance(info.reader(), ModisReader)
    assert info.metadata["acquired"] == "2021-08-15"
    with pytest.raises(ReadError, match="options"):
        open_raster(mod11a1, "coarse", options={"no_such_option": 1})
    info = open_raster(mod11a1, "coarse", options={"bands": "LST_Night_1km"})
    assert info.descriptions == ("LST_Night_1km",)


# ------------------------------------------------------------------------------------------------- refusals


def test_product_type_refusals(pyhdf, mod11a1: Path, mod09ga, tmp_path: Path) -> None:
    path, _ = mod09ga
    with pytest.raises(ReadError, match="MOD09GA product, not mod11a1") as err:
        open_modis(path, "coarse", product="mod11a1")
    assert path.name in str(err.value) and "\n" not in str(err.value)
    assert open_modis(mod11a1, product="MYD11A1").count == 1  # Aqua and Terra share the profile
    with pytest.raises(ReadError, match="unknown MODIS product"):
        open_modis(mod11a1, product="s2_l2a")
    other = write_mod11a1(tmp_path / "MOD13A2.A2021225.h11v05.061.2021242000000.hdf", shortname="MOD13A2")
    with pytest.raises(ReadError, match="a MOD13A2 product; the MODIS reader supports MOD11A1, MYD11A1, MOD09GA"):
        open_raster(other, "coarse")
    anonymous = write_mod11a1(tmp_path / "some.hdf", core=False)
    with pytest.raises(ReadError, match="not a MODIS product"):
        open_raster(anonymous, "coarse")


def test_non_hdf4_files_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.hdf"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))  # an HDF5 signature
    assert not probe_modis(junk)
    with pytest.raises(ReadError, match="not an HDF4 file"):
        open_modis(junk)
    named = tmp_path / MOD11A1_NAME
    named.write_bytes(b"not an hdf file at all")
    assert probe_modis(named)
    with pytest.raises(ReadError, match="not an HDF4 file") as err:
        open_raster(named, "coarse")
    assert str(named) in str(err.value)
    assert not probe_modis(tmp_path) and not probe_modis(tmp_path / "missing.hdf")


def test_truncated_file_is_refused_at_open(pyhdf, mod11a1: Path, tmp_path: Path) -> None:
    data = mod11a1.read_bytes()
    cut = tmp_path / MOD11A1_NAME
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(ReadError):
        open_modis(cut)


# ------------------------------------------------------------------------------------------------- MOD09GA


def test_mod09ga_reflectance_and_state_qa_by_pixel_centre(mod09ga) -> None:
    path, _state = mod09ga
    info = open_modis(path)
    assert info.descriptions == MOD09GA_BANDS
    assert (info.grid.width, info.grid.height) == (2 * W, 2 * H)
    assert info.grid.res == pytest.approx((PIXEL_1KM / 2,) * 2, abs=1e-6)
    assert info.metadata["units"] == "reflectance" and info.metadata["value_range"] == (0.0, 1.0)
    assert info.wavelengths_nm[0] == 645.0
    with info.reader() as reader:
        values = reader.read(full(info))
        per_band = reader.read_band_valid(full(info))
        valid = reader.read_valid(full(info))
    flagged = np.zeros((H, W), dtype=bool)
    flagged[[1, 2, 3, 4], [1, 2, 3, 4]] = True  # cloudy, mixed, shadow, fill; "not set" and cirrus stay valid
    qa_invalid = np.repeat(np.repeat(flagged, 2, axis=0), 2, axis=1)
    expected = ~qa_invalid
    expected[0, :2] = False  # b01 fill and b03 above valid_range
    assert np.array_equal(valid, expected)
    assert not per_band[0, 0, 0] and per_band[1, 0, 0] and not per_band[2, 0, 1] and per_band[0, 0, 1]
    rng = np.random.default_rng(3)
    b01 = rng.integers(200, 6000, size=(2 * H, 2 * W)).astype("int16")
    assert np.allclose(values[0][per_band[0]], b01[per_band[0]] * 1e-4, atol=1e-6)
    assert values[0, 0, 0] == 0 and values[0, 2, 2] == 0

    window = Window(3, 1, 5, 7)  # odd offsets: the 1 km state is mapped by each 500 m pixel's centre
    with info.reader() as reader:
        assert np.array_equal(reader.read_valid(window), valid[1:8, 3:8])
        assert np.array_equal(reader.read(window, [1, 4]), values[[0, 3], 1:8, 3:8])

    no_qa = open_modis(path, bands="B01", qa_invalid=[])
    assert no_qa.descriptions == ("sur_refl_b01_1",)
    with no_qa.reader() as reader:
        assert reader.read_valid(full(no_qa)).sum() == 4 * H * W - 1
    cirrus = open_modis(path, bands=["1"], qa_invalid="fill,cirrus")
    with cirrus.reader() as reader:
        ok = reader.read_valid(full(cirrus))
    assert not ok[12:14, 12:14].any() and ok[2:4, 2:4].all() and not ok[8:10, 8:10].any()
    with pytest.raises(ReadError, match="no QA condition"):
        open_modis(path, qa_invalid=["clouds"])


def test_bands_of_different_grids_are_refused(pyhdf, tmp_path: Path) -> None:
    path = write_mod09ga(tmp_path / MOD09GA_NAME, misplaced=True)
    with pytest.raises(ReadError, match="different grids"):
        open_modis(path, bands="sur_refl_b01_1,sur_refl_b02_1")
    assert open_modis(path, bands="sur_refl_b02_1").grid.width == W


# --------------------------------------------------------------------------------------------- reprojection


def constant_lst(path: Path) -> Path:
    day = np.full((H, W), 15000, dtype="uint16")  # 300 K
    qc = np.zeros((H, W), dtype="uint8")
    day[4:7, 5:8] = 0  # a hole of fill
    qc[4:7, 5:8] = 2
    day[9, 12] = 100  # one pixel below valid_range
    return write_mod11a1(path, {"LST_Day_1km": day, "QC_Day": qc, "LST_Night_1km": day, "QC_Night": qc})


@pytest.mark.parametrize(("epsg", "resampling"), [(32617, "cubic"), (4326, "bilinear"), (32617, "nearest")])
def test_warp_keeps_constants_and_invalid_pixels(pyhdf, tmp_path: Path, epsg: int, resampling: str) -> None:
    path = constant_lst(tmp_path / MOD11A1_NAME)
    native = open_modis(path)
    target = CRS.from_epsg(epsg)
    info = open_raster(path, "coarse", warp_to=target, warp_resampling=resampling)
    assert info.grid.crs == target and info.warp_crs == target and info.native_crs == SINUSOIDAL
    assert info.warp_resampling == resampling and info.has_mask and info.metadata["acquired"] == "2021-08-15"
    # Grid: about the native resolution, and covering the tile.
    centre = native.grid.transform @ (W / 2, H / 2)
    (cx,), (cy,) = transform_points(SINUSOIDAL, target, [centre[0]], [centre[1]])
    left, bottom, right, top = info.grid.bounds
    assert left < cx < right and bottom < cy < top
    if epsg == 4326:
        # The native pixel's ground area at 40 N: 926.6 m / (R sqrt(cos 40)) = 0.00952 degrees.
        assert info.grid.res[0] == pytest.approx(0.00952, rel=0.02)
    else:  # UTM 17 at 91 W, 10 degrees off its central meridian: scale factor about 1.008
        assert info.grid.res[0] == pytest.approx(PIXEL_1KM, rel=0.02)
    with info.reader() as reader:
        values, valid = reader.read(full(info))[0], reader.read_valid(full(info))
        window = Window(1, 2, 5, 4)
        assert np.array_equal(reader.read(window)[0], values[2:6, 1:6])
        assert np.array_equal(reader.read_valid(window), valid[2:6, 1:6])
    assert valid.sum() > 0.4 * valid.size
    assert np.allclose(values[valid], 300.0, atol=1e-3)  # no fill (0 K) leaked into valid pixels
    assert np.all(values[~valid] == 0)
    # Destination pixels whose centre falls in the hole, on the invalid pixel, or outside the tile are invalid.
    inv = ~native.grid.transform
    rows, cols = np.mgrid[0:info.grid.height, 0:info.grid.width]
    xs, ys = info.grid.transform @ (cols.ravel() + 0.5, rows.ravel() + 0.5)
    sx, sy = transform_points(target, SINUSOIDAL, xs, ys)
    src_c, src_r = inv @ (np.asarray(sx), np.asarray(sy))
    src_c, src_r = np.floor(src_c).reshape(rows.shape), np.floor(src_r).reshape(rows.shape)
    in_hole = (src_r >= 4) & (src_r < 7) & (src_c >= 5) & (src_c < 8)
    on_bad = (src_r == 9) & (src_c == 12)
    outside = (src_r < 0) | (src_r >= H) | (src_c < 0) | (src_c >= W)
    assert in_hole.any() and on_bad.any() and outside.any()
    assert not valid[in_hole | on_bad | outside].any()


def test_warp_bounds_and_same_crs(pyhdf, tmp_path: Path) -> None:
    path = constant_lst(tmp_path / MOD11A1_NAME)
    whole = open_modis(path, warp_to=CRS.from_epsg(4326))
    left, bottom, right, top = whole.grid.bounds
    part = open_modis(path, warp_to="EPSG:4326", warp_bounds=(left, bottom, (left + right) / 2, top))
    assert part.grid.height == whole.grid.height and part.grid.width < whole.grid.width
    assert part.grid.transform.c == pytest.approx(left)
    with part.reader() as a, whole.reader() as b:
        w = Window(0, 0, part.grid.width, part.grid.height)
        assert np.array_equal(a.read_valid(w), b.read_valid(w))
    with pytest.raises(ReadError, match="do not overlap"):
        open_modis(path, warp_to="EPSG:4326", warp_bounds=(100, 10, 101, 11))
    with pytest.raises(ReadError, match="unknown resampling"):
        open_modis(path, warp_to="EPSG:4326", warp_resampling="smooth")
    same = open_modis(path, warp_to=SINUSOIDAL)
    assert same.warp_crs is None and same.grid == open_modis(path).grid


def test_concurrent_first_reads_of_a_warped_product(pyhdf, tmp_path: Path) -> None:
    path = constant_lst(tmp_path / MOD11A1_NAME)
    info = open_modis(path, warp_to=CRS.from_epsg(32617))
    with info.reader() as reference:
        values, valid = reference.read(full(info)), reference.read_valid(full(info))
    windows = [Window(c, r, 4, 3) for r in range(0, info.grid.height - 3, 3) for c in range(0, info.grid.width - 4, 4)]
    with info.reader() as reader, ThreadPoolExecutor(4) as pool:
        def check(w: Window) -> bool:
            rows, cols = slice(w.row_off, w.row_off + 3), slice(w.col_off, w.col_off + 4)
            return (np.array_equal(reader.read(w), values[:, rows, cols])
                    and np.array_equal(reader.read_valid(w), valid[rows, cols]))

        assert all(pool.map(check, windows))
    with pytest.raises(ReadError, match="after the run stopped"):
        reader.read(windows[0])


def test_mcd43a4_hdf(pyhdf, tmp_path: Path) -> None:
    size = 8
    fields, attrs = {}, {}
    for n in range(1, 8):
        data = np.full((size, size), 500 * n, dtype="int16")
        data[n, 0] = 32767
        quality = np.where(data == 32767, 255, 1).astype("uint8")
        quality[0, 0] = 0
        fields[f"Nadir_Reflectance_Band{n}"] = data
        fields[f"BRDF_Albedo_Band_Mandatory_Quality_Band{n}"] = quality
        attrs[f"Nadir_Reflectance_Band{n}"] = {"valid_range": [0, 32766], "_FillValue": 32767,
                                               "scale_factor": 0.0001, "add_offset": 0.0}
        attrs[f"BRDF_Albedo_Band_Mandatory_Quality_Band{n}"] = {"valid_range": [0, 254], "_FillValue": 255}
    path = write_hdf_eos(tmp_path / "MCD43A4.A2021233.h11v05.061.2021242034521.hdf",
                         [("MOD_Grid_BRDF", size, size, PIXEL_1KM / 2, fields)], attrs, shortname="MCD43A4",
                         begin="2021-08-13", end="2021-08-29")
    info = open_raster(path, "coarse")
    assert info.count == 7 and info.metadata["acquired"] == "2021-08-21"  # the window's centre (file name date)
    assert info.metadata["range_beginning"] == "2021-08-13"
    with info.reader() as reader:
        per_band = reader.read_band_valid(full(info))
        values = reader.read(full(info))
    for n in range(1, 8):
        assert not per_band[n - 1, n, 0] and per_band[n - 1].sum() == size * size - 1
        assert np.allclose(values[n - 1][per_band[n - 1]], 0.05 * n)
    renamed = tmp_path / "nbar.hdf"
    shutil.copy(path, renamed)
    assert open_modis(renamed).metadata["acquired"] == "2021-08-21"  # from LOCALGRANULEID


# ------------------------------------------------------------------------------------- MCD43A4 GeoTIFF sets


def write_mcd43a4_set(folder: Path, granule: str = "MCD43A4.A2021233.h11v05.061.2021242034521",
                      bands: tuple[int, ...] = tuple(range(1, 8)), qa: bool = True, size: int = 10) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    transform = Affine(PIXEL_1KM / 2, 0, UL[0], 0, -PIXEL_1KM / 2, UL[1])
    common = {"driver": "GTiff", "width": size, "height": size, "count": 1, "crs": SINUSOIDAL,
              "transform": transform}
    for n in bands:
        data = np.full((size, size), 1000 * n, dtype="int16")
        data[0, n - 1] = 32767
        with rasterio.open(folder / f"{granule}_B{n:02d}.TIF", "w", dtype="int16", nodata=32767, **common) as dst:
            dst.write(data, 1)
            dst.scales, dst.offsets = (0.0001,), (0.0,)
            dst.update_tags(RANGEBEGINNINGDATE="2021-08-13", RANGEENDINGDATE="2021-08-29", SHORTNAME="MCD43A4")
        if qa:
            flags = np.where(data == 32767, 255, n % 2).astype("uint8")
            with rasterio.open(folder / f"{granule}_B{n:02d}qa.TIF", "w", dtype="uint8", nodata=255,
                               **common) as dst:
                dst.write(flags, 1)
    return folder


def test_mcd43a4_geotiff_set(tmp_path: Path) -> None:
    folder = write_mcd43a4_set(tmp_path / "nbar")
    assert probe_modis(folder) and product_format_name(folder) == "MODIS"
    info = open_raster(folder, "coarse")
    assert info.count == 7 and info.descriptions[0] == "Nadir_Reflectance_Band1"
    assert info.metadata["acquired"] == "2021-08-21" and info.metadata["tile"] == "h11v05"
    assert info.metadata["collection"] == "061" and info.metadata["product"] == "MCD43A4"
    with info.reader() as reader:
        values, per_band = reader.read(full(info)), reader.read_band_valid(full(info))
    for n in range(1, 8):
        assert not per_band[n - 1, 0, n - 1] and per_band[n - 1].sum() == 99
        assert np.allclose(values[n - 1][per_band[n - 1]], 0.1 * n)
    one = open_raster(folder / "MCD43A4.A2021233.h11v05.061.2021242034521_B04.TIF", "coarse")
    assert one.descriptions == ("Nadir_Reflectance_Band4",)
    assert open_modis(folder / "MCD43A4.A2021233.h11v05.061.2021242034521_B04.TIF", bands="B1,b7").count == 2
    warped = open_modis(folder, warp_to=CRS.from_epsg(32617), bands=["B2"])
    with warped.reader() as reader:
        ok = reader.read_valid(full(warped))
        assert ok.any() and np.allclose(reader.read(full(warped))[0][ok], 0.2, atol=1e-5)


def test_mcd43a4_set_refusals(tmp_path: Path) -> None:
    partial = write_mcd43a4_set(tmp_path / "partial", bands=(1, 2))
    with pytest.raises(ReadError, match="has no B03, B04, B05, B06, B07"):
        open_modis(partial)
    assert open_modis(partial, bands="B1,B2").count == 2
    no_qa = write_mcd43a4_set(tmp_path / "noqa", qa=False)
    with pytest.raises(ReadError, match="no quality file"):
        open_modis(no_qa)
    assert open_modis(no_qa, qa_invalid=[]).count == 7
    two = write_mcd43a4_set(tmp_path / "two")
    write_mcd43a4_set(two, granule="MCD43A4.A2021234.h11v05.061.2021243034521", bands=(1,))
    with pytest.raises(ReadError, match="2 MCD43A4 granules"):
        open_modis(two)
    with pytest.raises(ReadError, match="not mod09ga"):
        open_modis(partial, product="mod09ga", bands="B1")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReadError, match="no MCD43A4 band GeoTIFF"):
        open_modis(empty)


# -------------------------------------------------------------------------------------------- real fixtures


@pytest.fixture(scope="module")
def real() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real MODIS fixtures not found at {REAL}")
    return REAL


def test_real_mod11a1(pyhdf, real: Path) -> None:
    info = open_raster(REAL_MOD11A1, "coarse")
    assert (info.grid.width, info.grid.height) == (1200, 1200)
    t = info.grid.transform
    assert (t.c, t.f) == pytest.approx((-7783653.638, 4447802.079), abs=1e-3)
    assert info.grid.res == pytest.approx((926.625, 926.625), abs=1e-3)
    assert info.grid.crs == SINUSOIDAL
    assert info.metadata["acquired"] == "2021-08-15" and info.metadata["tile"] == "h11v05"
    assert info.metadata["collection"] == "061" and info.metadata["product"] == "MOD11A1"
    with info.reader() as reader:
        values, valid = reader.read(full(info))[0], reader.read_valid(full(info))
        assert np.array_equal(reader.read(Window(600, 500, 40, 30))[0], values[500:530, 600:640])
    assert valid.sum() == 63129
    assert values[valid].min() == pytest.approx(283.22, abs=1e-3)
    assert values[valid].max() == pytest.approx(310.60, abs=1e-3)
    night = open_modis(REAL_MOD11A1, bands="LST_Night_1km")
    with night.reader() as reader:
        assert reader.read_valid(full(night)).sum() == 60453


def test_real_mod11a1_qc_agrees_with_fill(pyhdf, real: Path) -> None:
    """QC bits 0-1 are 2 or 3 exactly where LST is fill: QA alone and DN alone give the same mask."""
    with_qa = open_modis(REAL_MOD11A1)
    without = open_modis(REAL_MOD11A1, qa_invalid=[])
    with with_qa.reader() as a, without.reader() as b:
        assert np.array_equal(a.read_valid(full(with_qa)), b.read_valid(full(without)))


def test_real_mcd43a4_set(real: Path, tmp_path: Path) -> None:
    info = open_modis(real)  # the folder also holds Landsat and MOD11A1 files: only the MCD43A4 set is read
    assert (info.grid.width, info.grid.height, info.count) == (240, 240, 7)
    assert info.grid.crs == SINUSOIDAL and info.grid.crs.to_epsg() is None
    assert info.grid.res[0] == pytest.approx(4633.127, abs=1e-3)
    assert info.metadata["scale_factor"] == dict.fromkeys(info.descriptions, 0.0001)
    assert info.metadata["acquired"] == "2017-01-06" and info.metadata["tile"] == "h21v11"
    with info.reader() as reader:
        per_band = reader.read_band_valid(full(info))
        values = reader.read(full(info))
    counts = per_band.sum(axis=(1, 2))
    assert counts.min() == 5988 and counts.max() == 7583 and per_band[0].size == 57600
    for n in range(1, 8):
        with rasterio.open(real / f"{REAL_MCD43A4}_B{n:02d}.TIF") as src:
            dn = src.read(1)
        with rasterio.open(real / f"{REAL_MCD43A4}_B{n:02d}qa.TIF") as src:
            qa = src.read(1)
        assert np.array_equal(qa == 255, dn == 32767)
        assert np.array_equal(per_band[n - 1], dn != 32767)
        assert np.allclose(values[n - 1][per_band[n - 1]], dn[dn != 32767] * 1e-4, atol=1e-6)
    band_file = tmp_path / f"{REAL_MCD43A4}_B01.TIF"
    for name in (f"{REAL_MCD43A4}_B01.TIF", f"{REAL_MCD43A4}_B01qa.TIF"):
        shutil.copy(real / name, tmp_path / name)
    one = open_raster(band_file, "coarse", warp_to=CRS.from_epsg(4326))  # no warning: the tags match the profile
    assert one.count == 1 and one.warp_crs == CRS.from_epsg(4326)
    with one.reader() as reader:
        ok = reader.read_valid(full(one))
        refl = reader.read(full(one))[0]
    # Cubic may overshoot a little near edges; the native reflectance is 0 to 0.5224.
    assert ok.sum() > 0.5 * 7570 and refl[ok].min() > -0.05 and refl[ok].max() < 0.6
