"""Sensor profiles are data: schema checks, lookup, and a new sensor from a YAML file alone."""

from __future__ import annotations

import pytest

from spatialx.errors import SensorConfigError
from spatialx.sensors import get_sensor, list_sensors

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
