"""Sensors described as data.

Each sensor is one YAML file: the built-in ones live in ``spatialx/sensors/profiles/``, and any directory listed in
``SPATIALX_SENSOR_PATH`` (``os.pathsep``-separated) is searched first, so adding a sensor needs only a new file.
Files are read with ``yaml.safe_load`` and checked against a small schema; errors name the file and the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from spatialx.errors import SensorConfigError

BUILTIN_DIR = Path(__file__).parent / "profiles"
_INTEGER_DTYPES = {"uint8", "uint16", "int16", "uint32", "int32"}
_DTYPES = _INTEGER_DTYPES | {"float32", "float64"}


@dataclass(frozen=True)
class Band:
    """One spectral band: name, centre wavelength and width (nm), MTF gain at the MS Nyquist frequency."""

    name: str
    center_nm: float
    width_nm: float
    mtf_gain: float
    pan_weight: float = 0.0

    @property
    def fwhm_nm(self) -> float:
        return self.width_nm


@dataclass(frozen=True)
class SensorProfile:
    key: str
    name: str
    bands: tuple[Band, ...]
    pan: Band
    bit_depth: int
    max_value: float
    dtype: str
    ratio: float
    ndvi_red: str
    ndvi_nir: str
    nodata: float | None
    path: Path
    description: str = ""

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)

    @property
    def mtf_gains(self) -> tuple[float, ...]:
        return tuple(b.mtf_gain for b in self.bands)

    @property
    def pan_weights(self) -> tuple[float, ...]:
        return tuple(b.pan_weight for b in self.bands)

    def band_index(self, name: str) -> int:
        """Position of a band given by name (case-insensitive)."""
        for i, band in enumerate(self.bands):
            if band.name.lower() == name.lower():
                return i
        raise SensorConfigError(f"sensor {self.key!r} has no band {name!r}; bands are {', '.join(self.band_names)}",
                                path=self.path)

    def select(self, names: list[str]) -> SensorProfile:
        """A copy restricted to, and ordered like, ``names`` (for ``--bands``)."""
        bands = tuple(self.bands[self.band_index(n)] for n in names)
        return _replace(self, bands=bands)


def _replace(profile: SensorProfile, **changes: Any) -> SensorProfile:
    from dataclasses import replace

    return replace(profile, **changes)


def search_path() -> list[Path]:
    """Directories searched for sensor YAML files, user directories first."""
    extra = [Path(p) for p in os.environ.get("SPATIALX_SENSOR_PATH", "").split(os.pathsep) if p]
    return [*extra, BUILTIN_DIR]


def _profile_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for directory in reversed(search_path()):  # later (user) directories override built-ins
        if directory.is_dir():
            for path in sorted(directory.glob("*.yaml")):
                files[path.stem.lower()] = path
    return files


def list_sensors() -> list[SensorProfile]:
    """Every sensor found on the search path, sorted by key."""
    return [get_sensor(key) for key in sorted(_profile_files())]


def get_sensor(key: str) -> SensorProfile:
    """Load a sensor profile by key (file stem, case-insensitive) or alias."""
    files = _profile_files()
    wanted = key.lower()
    if wanted not in files:
        for stem, path in files.items():
            if wanted in _aliases(path):
                wanted = stem
                break
        else:
            raise SensorConfigError(f"unknown sensor {key!r}", hint=f"choose one of: {', '.join(sorted(files))}")
    return load_profile(files[wanted])


@cache
def _aliases(path: Path) -> tuple[str, ...]:
    data = _read_yaml(path)
    return tuple(str(a).lower() for a in data.get("aliases", []))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SensorConfigError(f"cannot read sensor profile: {exc}", path=path) from None
    if not isinstance(data, dict):
        raise SensorConfigError("a sensor profile must be a YAML mapping", path=path)
    return data


def _require(data: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path, where: str = "") -> Any:
    full_key = f"{where}{key}"
    if key not in data:
        raise SensorConfigError("missing", path=path, key=full_key)
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise SensorConfigError(f"expected {getattr(kind, '__name__', kind)}, found {value!r}", path=path,
                                key=full_key)
    return value


def _band(data: Any, path: Path, where: str) -> Band:
    if not isinstance(data, dict):
        raise SensorConfigError("each band must be a mapping", path=path, key=where.rstrip("."))
    number = (int, float)
    gain = float(_require(data, "mtf_gain", number, path, where))
    if not 0.0 < gain < 1.0:
        raise SensorConfigError(f"MTF gain must be in (0, 1), found {gain}", path=path, key=f"{where}mtf_gain")
    return Band(
        name=str(_require(data, "name", str, path, where)),
        center_nm=float(_require(data, "center_nm", number, path, where)),
        width_nm=float(_require(data, "width_nm", number, path, where)),
        mtf_gain=gain,
        pan_weight=float(data.get("pan_weight", 0.0)),
    )


@cache
def load_profile(path: Path) -> SensorProfile:
    """Read and validate one sensor YAML file."""
    data = _read_yaml(path)
    bands_data = _require(data, "bands", list, path)
    if not bands_data:
        raise SensorConfigError("at least one band is required", path=path, key="bands")
    bands = tuple(_band(b, path, f"bands[{i}].") for i, b in enumerate(bands_data))
    names = [b.name.lower() for b in bands]
    if len(set(names)) != len(names):
        raise SensorConfigError("band names must be unique", path=path, key="bands")
    pan = _band({"name": "PAN", **_require(data, "pan", dict, path)}, path, "pan.")
    dtype = str(data.get("dtype", "uint16"))
    if dtype not in _DTYPES:
        raise SensorConfigError(f"unsupported dtype {dtype!r}", path=path, key="dtype")
    bit_depth = int(_require(data, "bit_depth", int, path))
    max_value = float(data.get("max_value", 2**bit_depth - 1))
    ndvi = _require(data, "ndvi", dict, path)
    profile = SensorProfile(
        key=path.stem.lower(),
        name=str(_require(data, "name", str, path)),
        description=str(data.get("description", "")),
        bands=bands,
        pan=pan,
        bit_depth=bit_depth,
        max_value=max_value,
        dtype=dtype,
        ratio=float(_require(data, "ratio", (int, float), path)),
        ndvi_red=str(_require(ndvi, "red", str, path, "ndvi.")),
        ndvi_nir=str(_require(ndvi, "nir", str, path, "ndvi.")),
        nodata=None if data.get("nodata") is None else float(data["nodata"]),
        path=path,
    )
    for role in ("ndvi_red", "ndvi_nir"):
        if getattr(profile, role).lower() not in names:
            raise SensorConfigError(f"names no band of this sensor: {getattr(profile, role)!r}", path=path,
                                    key=role.replace("_", "."))
    return profile


__all__ = ["Band", "SensorProfile", "get_sensor", "list_sensors", "load_profile", "search_path"]
