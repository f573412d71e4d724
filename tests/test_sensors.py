"""Sensor profiles are data: schema checks, lookup, a new sensor from a YAML file alone, and the generalised schema
(optional PAN/MTF/NDVI, spectral responses, radiometric scaling, QA rules, SAR, YAML round trip)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from spatialx.errors import SensorConfigError
from spatialx.sensors import BUILTIN_DIR, ProductMetadataError, get_sensor, list_sensors, load_profile

NOTES_MTF = {  # IMPLEMENTATION_NOTES.md: MTF gains at Nyquist (MS bands; PAN)
    "qb": ([0.34, 0.32, 0.30, 0.22], 0.15),
    "wv2": ([0.35] * 7 + [0.27], 0.11),
    "wv3": ([0.325, 0.355, 0.360, 0.350, 0.365, 0.360, 0.335, 0.315], 0.14),
    "gf2": ([0.3] * 4, 0.15),
    "ikonos": ([0.26, 0.28, 0.29, 0.28], 0.17),
    "geoeye1": ([0.23] * 4, 0.16),
}


@pytest.mark.parametrize("key", sorted(NOTES_MTF))
def test_builtin_profiles_carry_the_reference_values(key):
    profile = get_sensor(key)
    gains, pan_gain = NOTES_MTF[key]
    assert list(profile.mtf_gains) == pytest.approx(gains)
    assert profile.pan.mtf_gain == pytest.approx(pan_gain)
    assert profile.ratio == 4
    assert profile.max_value == (1023 if key == "gf2" else 2047)
    assert sum(profile.pan_weights) == pytest.approx(1.0, abs=1e-6)
    assert profile.band_index(profile.ndvi_red) < profile.band_index(profile.ndvi_nir)


def test_lookup_by_alias_and_case():
    assert get_sensor("WorldView-3").key == "wv3"
    assert get_sensor("QB").key == "qb"
    with pytest.raises(SensorConfigError, match="unknown sensor"):
        get_sensor("sentinel-9")


def test_new_sensor_needs_only_a_yaml_file(tmp_path, monkeypatch):
    (tmp_path / "pleiades.yaml").write_text(
        "name: Pleiades\nbit_depth: 12\nratio: 4\nndvi: {red: R, nir: NIR}\n"
        "pan: {center_nm: 650, width_nm: 400, mtf_gain: 0.15}\n"
        "bands:\n"
        "  - {name: B, center_nm: 490, width_nm: 60, mtf_gain: 0.29, pan_weight: 0.25}\n"
        "  - {name: G, center_nm: 560, width_nm: 60, mtf_gain: 0.30, pan_weight: 0.25}\n"
        "  - {name: R, center_nm: 650, width_nm: 60, mtf_gain: 0.28, pan_weight: 0.25}\n"
        "  - {name: NIR, center_nm: 840, width_nm: 100, mtf_gain: 0.26, pan_weight: 0.25}\n")
    monkeypatch.setenv("SPATIALX_SENSOR_PATH", str(tmp_path))
    profile = get_sensor("pleiades")
    assert profile.band_names == ("B", "G", "R", "NIR") and profile.max_value == 4095
    assert "pleiades" in [p.key for p in list_sensors()]


@pytest.mark.parametrize(("text", "key"), [
    ("name: X\nbit_depth: 11\nratio: 4\nndvi: {red: R, nir: N}\npan: {center_nm: 1, width_nm: 1, mtf_gain: 0.1}\n"
     "bands:\n  - {name: R, center_nm: 1, width_nm: 1, mtf_gain: 1.5}\n", "bands[0].mtf_gain"),
    ("name: X\nbit_depth: 11\nratio: 4\nndvi: {red: R, nir: N}\npan: {center_nm: 1, width_nm: 1, mtf_gain: 0.1}\n"
     "bands:\n  - {name: R, center_nm: 1, width_nm: 1, mtf_gain: 0.3}\n", "ndvi.nir"),
    ("name: X\nratio: 4\nndvi: {red: R, nir: R}\npan: {center_nm: 1, width_nm: 1, mtf_gain: 0.1}\n"
     "bands:\n  - {name: R, center_nm: 1, width_nm: 1, mtf_gain: 0.3}\n", "bit_depth"),
    ("- just\n- a list\n", None),
    ("name: !!python/object:os.system x\n", None),
])
def test_malformed_profiles_name_the_file_and_key(tmp_path, monkeypatch, text, key):
    (tmp_path / "broken.yaml").write_text(text)
    monkeypatch.setenv("SPATIALX_SENSOR_PATH", str(tmp_path))
    with pytest.raises(SensorConfigError) as info:
        get_sensor("broken")
    assert info.value.path and info.value.path.endswith("broken.yaml")
    if key:
        assert info.value.key == key


# --- the generalised schema: new profiles, optional parts, spectral responses, radiometry, QA, SAR, round trip ---

BUILTIN = sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))
NEW = ["landsat_c2l2", "mcd43a4", "mod09ga", "mod11a1", "prisma_l2d", "radarsat2_quad", "s2_l2a"]
C3 = ["C11", "C12_re", "C12_im", "C13_re", "C13_im", "C22", "C23_re", "C23_im", "C33"]


def _user_profile(tmp_path, monkeypatch, text: str, key: str = "user"):
    (tmp_path / f"{key}.yaml").write_text(text)
    monkeypatch.setenv("SPATIALX_SENSOR_PATH", str(tmp_path))
    return get_sensor(key)


def test_every_builtin_profile_loads_including_the_new_ones():
    assert set(NEW) <= set(BUILTIN) and set(NOTES_MTF) <= set(BUILTIN)
    for key in BUILTIN:
        profile = get_sensor(key)
        assert profile.key == key and profile.bands
        assert len({b.name.lower() for b in profile.bands}) == len(profile.bands)


def test_sentinel2_l2a_documented_values():
    s2 = get_sensor("sentinel-2")
    assert s2.key == "s2_l2a" and "B10" not in s2.band_names and len(s2.bands) == 12  # L2A drops B10
    b08 = s2.layer("B08")
    assert (b08.center_nm, b08.fwhm_nm, b08.resolution_m) == (832.8, 106.0, 10.0)
    assert {b.name: b.resolution_m for b in s2.bands if b.resolution_m == 60} == {"B01": 60.0, "B09": 60.0}
    assert (s2.ndvi_red, s2.ndvi_nir, s2.nodata, s2.value_range) == ("B04", "B08", 0.0, (1.0, 32767.0))
    assert b08.scale == pytest.approx(1e-4) and b08.units == "reflectance"
    assert [a.name for a in s2.ancillary] == ["SCL", "AOT", "WVP"] and s2.layer("WVP").units == "cm"


def test_landsat_c2_l2_documented_values_for_landsat_8_and_9():
    assert get_sensor("landsat8") is get_sensor("landsat9") is get_sensor("landsat_c2l2")
    landsat = get_sensor("landsat9")
    sr, st = landsat.layer("SR_B4"), landsat.layer("ST_B10")
    assert (sr.scale, sr.offset, sr.valid_range) == (2.75e-05, -0.2, (7273.0, 43636.0))
    assert (st.scale, st.offset, st.valid_range, st.units) == (0.00341802, 149.0, (293.0, 65535.0), "K")
    # The USGS scale-factor FAQ's own examples: SR DN 18639 -> 0.313, ST DN 44947 -> 302.6 K.
    assert float(sr.to_physical(np.array([18639], np.uint16))[0]) == pytest.approx(0.313, abs=5e-4)
    assert float(st.to_physical(np.array([44947], np.uint16))[0]) == pytest.approx(302.6, abs=0.05)
    assert np.isnan(sr.to_physical(np.array([0, 7272, 43637], np.uint16))).all()  # fill and out of range
    assert {b.resolution_m for b in landsat.bands} == {30.0} and (landsat.ndvi_red, landsat.ndvi_nir) == ("SR_B4",
                                                                                                      "SR_B5")


def test_modis_documented_values():
    mod09, mod11, mcd43 = get_sensor("mod09ga"), get_sensor("mod11a1"), get_sensor("mcd43a4")
    b1 = mod09.layer("sur_refl_b01_1")
    assert (b1.dtype, b1.nodata, b1.valid_range, b1.scale, b1.resolution_m) == ("int16", -28672.0, (-100.0, 16000.0),
                                                                              1e-4, 500.0)
    assert (b1.center_nm, b1.fwhm_nm) == (645.0, 50.0)  # band 1: 620-670 nm
    lst = mod11.layer("LST_Day_1km")
    assert (lst.scale, lst.nodata, lst.valid_range, lst.units, lst.center_nm) == (0.02, 0.0, (7500.0, 65535.0), "K",
                                                                                None)
    assert lst.to_physical(np.array([15000, 7499, 0], np.uint16)).tolist()[0] == pytest.approx(300.0)
    nbar = mcd43.layer("Nadir_Reflectance_Band2")
    assert (nbar.nodata, nbar.valid_range, nbar.scale, nbar.resolution_m) == (32767.0, (0.0, 32766.0), 1e-4, 500.0)


def test_prisma_grid_is_nominal_and_pan_is_5_m():
    prisma = get_sensor("prisma")
    vnir = [b for b in prisma.bands if b.name.startswith("VNIR")]
    swir = [b for b in prisma.bands if b.name.startswith("SWIR")]
    assert (len(vnir), len(swir), vnir[0].name, swir[-1].name) == (66, 173, "VNIR01", "SWIR173")
    assert (vnir[0].center_nm, vnir[-1].center_nm, swir[0].center_nm, swir[-1].center_nm) == pytest.approx(
        (400.0, 1010.0, 920.0, 2505.0))
    assert prisma.wavelengths_from_file and {b.fwhm_nm for b in prisma.bands} == {12.0}
    assert (prisma.pan.resolution_m, prisma.ratio, prisma.pan.center_nm, prisma.pan.fwhm_nm) == (5.0, 6.0, 550.0,
                                                                                                300.0)
    assert set(prisma.mtf_gains) == {0.3} and prisma.bit_depth is None and prisma.ndvi_red is None


def test_radarsat2_is_sar_with_the_c3_channels_and_no_optical_parts():
    rs2 = get_sensor("rs2")
    assert (rs2.kind, rs2.is_sar, rs2.representation, rs2.frequency_ghz) == ("sar", True, "C3", 5.405)
    assert rs2.polarisations == ("HH", "HV", "VH", "VV") and list(rs2.band_names) == C3
    assert (rs2.pan, rs2.ratio, rs2.ndvi_red, rs2.ndvi_nir, rs2.bit_depth, rs2.max_value, rs2.nodata) == (None,) * 7
    assert rs2.dtype == "float32" and all(b.center_nm is None and b.mtf_gain is None for b in rs2.bands)
    with pytest.raises(SensorConfigError) as info:
        _ = rs2.mtf_gains
    assert info.value.path.endswith("radarsat2_quad.yaml") and info.value.key == "bands[0].mtf_gain"
    assert "'C11'" in str(info.value) and "MTF-matched methods need" in str(info.value)
    assert "add mtf_gain to the band" in info.value.hint
    with pytest.raises(SensorConfigError, match="no spectral response"):
        rs2.bands[0].response_curve(np.array([500.0]))
    with pytest.raises(SensorConfigError, match="no DN range"):
        _ = rs2.value_range


def test_mtf_gains_name_the_first_band_without_one():
    s2 = get_sensor("s2_l2a")
    with pytest.raises(SensorConfigError) as info:
        _ = s2.mtf_gains
    assert info.value.path.endswith("s2_l2a.yaml") and info.value.key == "bands[0].mtf_gain" and "'B01'" in str(
        info.value)
    ten_m = s2.select(["B02", "B03", "B04", "B08"])  # the 10 m bands all have the toolbox's gains
    assert ten_m.mtf_gains == (0.275, 0.28, 0.25, 0.24) and ten_m.pan_weights == (0.0,) * 4


def test_existing_profiles_keep_their_dn_range():
    for key in NOTES_MTF:
        profile = get_sensor(key)
        assert profile.value_range == (0.0, profile.max_value)
        assert profile.kind == "optical" and profile.qa == () and profile.pan.name == "PAN"


def test_gaussian_response_from_centre_and_fwhm():
    b08 = get_sensor("s2").layer("B08")
    curve = b08.response_curve(np.array([832.8, 832.8 - 53.0, 832.8 + 53.0, 500.0]))
    assert curve[0] == pytest.approx(1.0) and curve[1:3] == pytest.approx([0.5, 0.5]) and curve[3] < 1e-9
    red = get_sensor("qb").bands[2]  # legacy width_nm is the FWHM
    assert red.response_curve(np.array([630.0, 690.0])) == pytest.approx([0.5, 0.5])


def test_tabulated_response_interpolates_and_is_zero_outside(tmp_path, monkeypatch):
    profile = _user_profile(tmp_path, monkeypatch, (
        "name: T\ndtype: float32\nbands:\n"
        "  - {name: A, response: [[500, 0], [510, 1], [520, 1], [530, 0]]}\n"
        "  - name: B\n    response: {wavelengths_nm: [600, 610, 620], values: [0.0, 0.8, 0.0]}\n"))
    a, b = profile.bands
    assert (a.center_nm, a.fwhm_nm) == pytest.approx((515.0, 20.0))  # centroid and half-maximum width
    assert a.response_curve(np.array([499.0, 505.0, 515.0, 525.0, 531.0])) == pytest.approx([0, 0.5, 1, 0.5, 0])
    assert b.response_curve(np.array([605.0, 610.0, 640.0])) == pytest.approx([0.4, 0.8, 0.0])


def test_sentinel2_offset_follows_the_processing_baseline():
    b04 = get_sensor("s2").layer("B04")
    dn = np.array([2000, 0], np.uint16)
    assert b04.needs_product_metadata
    with pytest.raises(ProductMetadataError, match="BOA_ADD_OFFSET"):
        b04.to_physical(dn)
    old = b04.to_physical(dn, {"PROCESSING_BASELINE": "02.14"})
    new = b04.to_physical(dn, {"PROCESSING_BASELINE": "05.10"})
    assert old[0] == pytest.approx(0.2) and new[0] == pytest.approx(0.1) and np.isnan(old[1])
    assert b04.to_physical(dn, {"BOA_ADD_OFFSET": {"B04": -1000}})[0] == pytest.approx(0.1)  # the stated value wins
    assert b04.to_physical(dn, {})[0] == pytest.approx(0.2)  # no such field: a product from before 04.00
    assert b04.linear({"PROCESSING_BASELINE": "04.00"}) == pytest.approx((1e-4, -0.1))


def test_prisma_scaling_comes_from_the_file():
    prisma = get_sensor("prisma_l2d")
    vnir, pan = prisma.layer("VNIR10"), prisma.pan
    with pytest.raises(ProductMetadataError, match="L2ScaleVnirMin and L2ScaleVnirMax"):
        vnir.to_physical(np.array([1], np.uint16))
    meta = {"L2ScaleVnirMin": 0.0, "L2ScaleVnirMax": 1.0, "L2ScalePanMin": 0.1, "L2ScalePanMax": 0.9}
    assert vnir.to_physical(np.array([0, 65535], np.uint16), meta) == pytest.approx([0.0, 1.0])
    assert pan.linear(meta) == pytest.approx((0.8 / 65535, 0.1))


# Landsat QA_PIXEL values of the shared fixture scene (data/real/README.md): 1 fill; 22280 cloud, high cloud
# confidence; 55052 cirrus + cloud, high cirrus confidence; 23888 cloud shadow + clear.
LANDSAT_QA = np.array([[1, 22280], [55052, 23888]], np.uint16)


def test_landsat_qa_mask_from_bits_and_bit_fields():
    landsat = get_sensor("landsat8")
    assert landsat.qa_mask(LANDSAT_QA, "fill").tolist() == [[True, False], [False, False]]
    assert landsat.qa_mask(LANDSAT_QA, "cloud").tolist() == [[False, True], [True, False]]
    assert landsat.qa_mask(LANDSAT_QA, "cirrus").tolist() == [[False, False], [True, False]]
    assert landsat.qa_mask(LANDSAT_QA, "shadow", "fill").tolist() == [[True, False], [False, True]]
    assert landsat.qa_mask(LANDSAT_QA, "cloud_confidence_high").tolist() == [[False, True], [True, False]]
    assert landsat.qa_mask(LANDSAT_QA, "cirrus_confidence_high").tolist() == [[False, False], [True, False]]
    assert not landsat.qa_mask(LANDSAT_QA, "water", "snow").any()


def test_class_map_and_field_qa_masks():
    s2 = get_sensor("s2")
    scl = np.arange(12, dtype=np.uint8)
    assert np.flatnonzero(s2.qa_mask(scl, "cloud")).tolist() == [8, 9]
    assert np.flatnonzero(s2.qa_mask(scl, "cloud", "cirrus", "shadow", "fill")).tolist() == [0, 3, 8, 9, 10]
    mod09 = get_sensor("mod09ga")
    # cloud state is bits 0-1 (1 = cloudy); the land/water field sits in bits 3-5 and must not disturb it
    state = np.array([0b01, 0b10, 0b01 | (1 << 3), (6 << 3), (1 << 15), 65535], np.uint16)
    assert mod09.qa_mask(state, "cloud").tolist() == [True, False, True, False, False, False]  # 65535: state 3
    assert mod09.qa_mask(state, "water").tolist() == [True, True, False, True, True, True]
    assert mod09.qa_mask(state, "snow").tolist() == [False, False, False, False, True, True]
    assert mod09.qa_mask(state, "fill").tolist() == [False] * 5 + [True]
    assert not mod09.qa_mask(np.array([np.nan, 1.0]), "cloud")[0]  # non-finite QA never matches


def test_per_band_qa_layers_need_the_band():
    mcd43, mod11 = get_sensor("mcd43a4"), get_sensor("mod11a1")
    with pytest.raises(SensorConfigError, match="several QA layers"):
        mcd43.qa_mask(np.zeros(2, np.uint8), "full_inversion")
    qa = np.array([0, 1, 255], np.uint8)
    assert mcd43.qa_mask(qa, "full_inversion", band="Nadir_Reflectance_Band3").tolist() == [True, False, False]
    assert mcd43.qa_mask(qa, "magnitude_inversion", band="BRDF_Albedo_Band_Mandatory_Quality_Band3").tolist() == [
        False, True, False]
    qc = np.array([0b00, 0b01, 0b10, 0b11, 0b11110110], np.uint8)  # mandatory QA is bits 0-1 only
    assert mod11.qa_mask(qc, "cloud", band="LST_Night_1km").tolist() == [False, False, True, False, True]
    assert mod11.qa_mask(qc, "fill", band="QC_Day").tolist() == [False, False, True, True, True]
    with pytest.raises(SensorConfigError, match="no QA rule 'snow'") as info:
        mod11.qa_mask(qc, "snow")
    assert info.value.path.endswith("mod11a1.yaml") and "cloud, fill, good" in info.value.hint


def test_spectral_grid_expands_and_a_selection_keeps_only_named_bands(tmp_path, monkeypatch):
    profile = _user_profile(tmp_path, monkeypatch, (
        "name: G\ndtype: float32\nwavelengths_from_file: true\n"
        "bands:\n  - {name: Broad, edges_nm: [400, 700]}\n"
        "spectral_grid:\n  - {name_format: 'HS{index:03d}', start_nm: 400, stop_nm: 500, step_nm: 25, fwhm_nm: 10,"
        " resolution_m: 30, mtf_gain: 0.3}\n"))
    assert profile.band_names == ("Broad", "HS001", "HS002", "HS003", "HS004", "HS005")
    assert [b.center_nm for b in profile.bands[1:]] == [400.0, 425.0, 450.0, 475.0, 500.0]
    assert profile.layer("Broad").center_nm == 550.0 and profile.layer("HS003").mtf_gain == 0.3
    picked = profile.select(["HS002", "Broad"])
    assert picked.band_names == ("HS002", "Broad") and picked.spectral_grid == ()
    (tmp_path / "picked.yaml").write_text(picked.to_yaml())
    assert load_profile(tmp_path / "picked.yaml").bands == picked.bands


def _cli(*args: str):
    from typer.testing import CliRunner

    from spatialx.cli.main import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("key", BUILTIN)
def test_yaml_printed_by_the_cli_loads_back_to_an_equal_profile(key, tmp_path, monkeypatch):
    original = get_sensor(key)
    (tmp_path / f"{key}.yaml").write_text(_cli("sensors", key, "--yaml"))
    monkeypatch.setenv("SPATIALX_SENSOR_PATH", str(tmp_path))
    loaded = get_sensor(key)
    assert loaded.path == tmp_path / f"{key}.yaml"
    assert loaded == dataclasses.replace(original, path=loaded.path)


def test_cli_table_lists_every_profile_with_columns_that_fit_it():
    text = _cli("sensors")
    for key in BUILTIN:
        assert key in text
    sar = _cli("sensors", "rs2")
    assert "channel" in sar and "centre nm" not in sar and "C12_re" in sar and "5.405 GHz" in sar
    prisma = _cli("sensors", "prisma")
    assert "VNIR01..VNIR66" in prisma and "nominal" in prisma and "L2ScaleVnirMin" in prisma
    assert "2.75e-05 / -0.2" in _cli("sensors", "landsat9")


BASE = "name: X\ndtype: float32\nbands:\n  - {name: A, center_nm: 500, fwhm_nm: 10}\n"
SAR = "name: R\nkind: sar\ndtype: float32\npolarisations: [HH, HV, VH, VV]\nrepresentation: C3\n"
SAR_BANDS = "bands:\n" + "".join(f"  - {{name: {c}}}\n" for c in C3)


@pytest.mark.parametrize(("text", "key"), [
    (BASE + "kind: lidar\n", "kind"),
    ("name: X\ndtype: float32\nbands:\n  - {name: A, center_nm: 500, fwhm_nm: 10, valid_range: [10, 5]}\n",
     "bands[0].valid_range"),
    ("name: X\ndtype: uint16\nnodata: -1\nvalid_range: [0, 100]\nbands:\n  - {name: A}\n", "nodata"),
    ("name: X\ndtype: uint8\nvalid_range: [0, 300]\nbands:\n  - {name: A}\n", "valid_range[1]"),
    ("name: X\ndtype: float32\nbands:\n  - {name: A, center_nm: 500, fwhm: 10}\n", "bands[0].fwhm"),
    ("name: X\ndtype: float32\nbands:\n  - {name: A, center_nm: 500, width_nm: 9, fwhm_nm: 10}\n",
     "bands[0].fwhm_nm"),
    ("name: X\ndtype: float32\nbands:\n  - {name: A, center_nm: 500}\n", "bands[0].fwhm_nm"),
    ("name: X\ndtype: float32\nbands:\n  - {name: A, response: [[500, 0], [490, 1]]}\n",
     "bands[0].response.wavelengths_nm"),
    ("name: X\ndtype: float32\nbands:\n  - {name: A, response: {wavelengths_nm: [1, 2], values: [-1, 1]}}\n",
     "bands[0].response.values"),
    (BASE + "resolution_m: -30\n", "resolution_m"),
    (BASE + "scale: 1e-4\n", "scale"),
    ("name: X\ndtype: float32\nbands:\n  - {name: A, scale: 0.5, range_from_product: {min_key: a, max_key: b}}\n",
     "bands[0].range_from_product"),
    (BASE + "offset_from_product: {key: K, baseline_key: B, since_baseline: 04.00, value_since: -1000}\n",
     "offset_from_product.since_baseline"),
    (BASE + "spectral_grid:\n  - {name_format: 'G{index}', start_nm: 1, stop_nm: 9, count: 3, step_nm: 4,"
            " fwhm_nm: 1}\n", "spectral_grid[0].count"),
    (BASE + "spectral_grid:\n  - {name_format: 'G{i}', start_nm: 1, stop_nm: 9, count: 3, fwhm_nm: 1}\n",
     "spectral_grid[0].name_format"),
    (BASE + "qa:\n  - {name: cloud, band: QA, bits: [3]}\n", "qa[0].band"),
    (BASE + "ancillary:\n  - {name: QA}\nqa:\n  - {name: cloud, band: QA, bits: [0, 2], values: [1]}\n",
     "qa[0].bits"),
    (BASE + "ancillary:\n  - {name: QA}\nqa:\n  - {name: cloud, band: QA, bits: [0, 1], values: [4]}\n",
     "qa[0].values[0]"),
    (BASE + "ancillary:\n  - {name: QA}\nqa:\n  - {name: cloud, band: QA}\n", "qa[0]"),
    (BASE + "ancillary:\n  - {name: QA}\nqa:\n  - {name: cloud, band: QA, bits: [1], applies_to: [Z]}\n",
     "qa[0].applies_to[0]"),
    (BASE + "ancillary:\n  - {name: A}\n", "ancillary"),
    (BASE + "ratio: 4\n", "ratio"),
    (BASE + "pan: {center_nm: 600, fwhm_nm: 300}\n", "ratio"),
    ("name: X\ndtype: float32\nratio: 4\npan: {center_nm: 600, fwhm_nm: 300, resolution_m: 5}\n"
     "bands:\n  - {name: A, center_nm: 500, fwhm_nm: 10, resolution_m: 30}\n", "ratio"),
    (BASE + "polarisations: [HH]\n", "polarisations"),
    (SAR + "bands:\n  - {name: C11, center_nm: 500, fwhm_nm: 1}\n", "bands[0].center_nm"),
    (SAR + SAR_BANDS.replace("C12_re}\n  - {name: C12_im", "C12_im}\n  - {name: C12_re"), "bands"),
    (SAR.replace("representation: C3\n", "") + SAR_BANDS, "representation"),
    (SAR.replace("[HH, HV, VH, VV]", "[HH, HV]") + SAR_BANDS, "representation"),
    (SAR.replace("[HH, HV, VH, VV]", "[HH, XX]") + SAR_BANDS, "polarisations[1]"),
    (SAR + SAR_BANDS + "ndvi: {red: C11, nir: C22}\n", "ndvi"),
    ("name: X\ndtype: float32\nbands:\n  - {name: A}\n  - {name: a}\n", "bands"),
])
def test_malformed_new_fields_name_the_file_and_key(tmp_path, monkeypatch, text, key):
    (tmp_path / "broken.yaml").write_text(text)
    monkeypatch.setenv("SPATIALX_SENSOR_PATH", str(tmp_path))
    with pytest.raises(SensorConfigError) as info:
        get_sensor("broken")
    assert info.value.path and info.value.path.endswith("broken.yaml")
    assert info.value.key == key, str(info.value)


def test_yaml_exponent_without_a_dot_gets_a_hint(tmp_path, monkeypatch):
    with pytest.raises(SensorConfigError) as info:
        _user_profile(tmp_path, monkeypatch, BASE + "scale: 1e-4\n")
    assert "1.0e-4" in info.value.hint
    assert _user_profile(tmp_path, monkeypatch, BASE + "scale: 1.0e-4\n", "fixed").scale == 1e-4


def test_a_valid_sar_profile_from_a_file(tmp_path, monkeypatch):
    profile = _user_profile(tmp_path, monkeypatch, SAR + SAR_BANDS + "valid_range: [0, 10]\n")
    assert profile.is_sar and profile.band_names == tuple(C3) and profile.value_range == (0.0, 10.0)


# Real bytes: the shared fixtures (data/real/README.md states the numbers checked here).

def test_landsat_fixture_qa_and_temperature(shared_dir):
    rasterio = pytest.importorskip("rasterio")
    stem = shared_dir / "data" / "real" / "stfuse" / "LC08_L2SP_001062_20201031_20201106_02_T2"
    landsat = get_sensor("landsat8")
    with rasterio.open(f"{stem}_QA_PIXEL.TIF") as src:
        qa = src.read(1)
    assert int(landsat.qa_mask(qa, "cloud").sum()) == 24286 + 77092 and int(landsat.qa_mask(qa, "fill").sum()) == 44854
    with rasterio.open(f"{stem}_ST_B10.TIF") as src:
        kelvin = landsat.layer("ST_B10").to_physical(src.read(1))
    assert int(np.isfinite(kelvin).sum()) == 74678
    assert (np.nanmin(kelvin), np.nanmax(kelvin)) == pytest.approx((150.0, 306.0), abs=0.01)
    with rasterio.open(f"{stem}_SR_B4.TIF") as src:
        red = landsat.layer("SR_B4").to_physical(src.read(1), mask=False)[~landsat.qa_mask(qa, "fill")]
    assert (red.min(), red.max()) == pytest.approx((-0.036, 1.201), abs=5e-4)


def test_sentinel2_and_mcd43a4_fixture_qa(shared_dir):
    rasterio = pytest.importorskip("rasterio")
    real = shared_dir / "data" / "real"
    with rasterio.open(real / "hmif" / "S2A_29RKH_20200219_0_L2A" / "SCL.tif") as src:
        scl = src.read(1)
    s2 = get_sensor("s2")
    assert int(s2.qa_mask(scl, "cloud").sum()) == 967 + 837 and int(s2.qa_mask(scl, "cirrus").sum()) == 10434
    mcd43 = get_sensor("mcd43a4")
    stem = real / "stfuse" / "MCD43A4.A2017006.h21v11.006.2017018074804"
    for i in (1, 7):
        with rasterio.open(f"{stem}_B0{i}.TIF") as data, rasterio.open(f"{stem}_B0{i}qa.TIF") as quality:
            dn, qa = data.read(1), quality.read(1)
        band = f"Nadir_Reflectance_Band{i}"
        # the quality layer's fill is exactly the band's nodata
        assert np.array_equal(mcd43.qa_mask(qa, "fill", band=band), ~mcd43.layer(band).valid_mask(dn))


def test_every_builtin_round_trips_without_the_cli(tmp_path):
    for key in BUILTIN:
        profile = get_sensor(key)
        path = Path(tmp_path) / f"{key}.yaml"
        path.write_text(profile.to_yaml())
        assert load_profile(path) == dataclasses.replace(profile, path=path)


def test_pan_keeps_its_own_resolution_and_ratio_can_come_from_resolutions(tmp_path, monkeypatch):
    given = _user_profile(tmp_path, monkeypatch, (
        "name: P\nbit_depth: 12\nresolution_m: 2\nratio: 4\npan: {center_nm: 650, fwhm_nm: 400}\n"
        "bands:\n  - {name: R, center_nm: 650, fwhm_nm: 60}\n"), "given")
    assert (given.ratio, given.pan.resolution_m, given.bands[0].resolution_m) == (4.0, None, 2.0)
    derived = _user_profile(tmp_path, monkeypatch, (
        "name: D\nbit_depth: 12\nresolution_m: 2\npan: {center_nm: 650, fwhm_nm: 400, resolution_m: 0.5}\n"
        "bands:\n  - {name: R, center_nm: 650, fwhm_nm: 60}\n"), "derived")
    assert derived.ratio == 4.0
    for profile in (given, derived):
        path = tmp_path / "again" / f"{profile.key}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(profile.to_yaml())
        assert load_profile(path) == dataclasses.replace(profile, path=path)
