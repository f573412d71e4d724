"""Sensors described as data.

Each sensor (or product of a sensor) is one YAML file: the built-in ones live in ``spatialx/sensors/profiles/``, and
any directory listed in ``SPATIALX_SENSOR_PATH`` (``os.pathsep``-separated) is searched first, so adding a sensor
needs only a new file. Files are read with ``yaml.safe_load`` and checked strictly (:mod:`spatialx.sensors.loader`);
errors name the file and the key. The values themselves are :mod:`spatialx.sensors.schema`.

A profile describes optical sensors with or without PAN (multispectral, imaging spectrometers with a nominal
``spectral_grid``) and SAR (``kind: sar``, polarisations and a polarimetric representation such as C3): per-band
centre/FWHM or a response table, resolution, radiometric scaling (``scale``/``offset``, or numbers each product
states), valid range, nodata, units, ancillary layers and declarative QA rules.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from spatialx.errors import SensorConfigError
from spatialx.sensors.loader import profile_from_dict, read_yaml
from spatialx.sensors.schema import (
    Band,
    ProductMetadataError,
    ProductOffset,
    ProductRange,
    QARule,
    SensorProfile,
    SpectralGrid,
    SpectralResponse,
)

BUILTIN_DIR = Path(__file__).parent / "profiles"


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
    aliases = read_yaml(path).get("aliases", [])
    # Only looked up here; load_profile reports a malformed list with its key.
    return tuple(str(a).lower() for a in aliases) if isinstance(aliases, list) else ()


@cache
def load_profile(path: Path) -> SensorProfile:
    """Read and validate one sensor YAML file."""
    return profile_from_dict(read_yaml(path), path)


__all__ = ["BUILTIN_DIR", "Band", "ProductMetadataError", "ProductOffset", "ProductRange", "QARule",
           "SensorConfigError", "SensorProfile", "SpectralGrid", "SpectralResponse", "get_sensor", "list_sensors",
           "load_profile", "search_path"]
