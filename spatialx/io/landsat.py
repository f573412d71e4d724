"""Landsat 8/9 Collection 2 Level-2 science products (surface reflectance, surface temperature) as one raster: a
scene folder holding ``<product_id>_MTL.txt`` and/or ``_MTL.json`` and the band files ``<product_id>_SR_B1.TIF`` to
``_SR_B7.TIF``, ``_ST_B10.TIF`` and ``_QA_PIXEL.TIF``, or the MTL file itself.

Radiometry is what the MTL states in its Level-2 groups: reflectance = DN x REFLECTANCE_MULT_BAND_n +
REFLECTANCE_ADD_BAND_n (``LEVEL2_SURFACE_REFLECTANCE_PARAMETERS``), kelvin = DN x TEMPERATURE_MULT_BAND_ST_B10 +
TEMPERATURE_ADD_BAND_ST_B10 (``LEVEL2_SURFACE_TEMPERATURE_PARAMETERS``). The same MTL repeats the Level-1 rescaling
of the scene it was made from (``LEVEL1_RADIOMETRIC_RESCALING``), whose REFLECTANCE_MULT_BAND_n is top-of-atmosphere
reflectance of the Level-1 DN: it never applies to Level-2 pixels and is never read here. The band TIFFs carry no
scale/offset tags.

The reader delivers physical values as float32: surface reflectance (``units`` "reflectance", ``value_range``
(0, 1)) or surface temperature (``units`` "K", ``value_range`` (150, 350): 150 K is the product's lowest valid value,
DN 293; 350 K lies above the hottest land surfaces measured from orbit, about 344 K; hotter values are kept, not
clipped). Reflectance and temperature are different variables, so one raster holds SR bands or ST_B10, never both.
DN 0 (fill) and DN outside the band's valid range (the ``landsat_c2l2`` profile) read 0 and are invalid; QA_PIXEL
(CFMask) marks fill, dilated cloud, cirrus, cloud, cloud shadow and (unless ``mask_snow=False``) snow as invalid.
Fill is taken from QA bit 0, not only from DN 0: resampled products have fill-flagged pixels with DN > 0.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.errors import RasterioError
from rasterio.windows import Window

from spatialx.errors import ReadError
from spatialx.grid import Grid
from spatialx.io.read import (
    PerThreadHandles,
    ProductFormat,
    RasterInfo,
    band_file_grid,
    first_line,
    metadata_number,
    open_band_file,
)
from spatialx.sensors import Band, SensorProfile, get_sensor

__all__ = ["FORMAT", "LandsatProduct", "LandsatReader", "open_landsat", "parse_mtl", "probe_landsat"]

SENSOR_KEY = "landsat_c2l2"
QA_PIXEL = "QA_PIXEL"
SR_BANDS = tuple(f"SR_B{n}" for n in range(1, 8))
ST_BAND = "ST_B10"
#: QA_PIXEL conditions (QA rule names of the profile) that make a pixel unusable for fusion.
INVALID_CONDITIONS = ("fill", "dilated_cloud", "cirrus", "cloud", "shadow")
SNOW_CONDITION = "snow"
ROOT_GROUP = "LANDSAT_METADATA_FILE"
SR_GROUP = "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS"
ST_GROUP = "LEVEL2_SURFACE_TEMPERATURE_PARAMETERS"
#: What the reader delivers, per variable: units and the nominal range networks scale the values by.
SR_UNITS, SR_VALUE_RANGE = "reflectance", (0.0, 1.0)
ST_UNITS, ST_VALUE_RANGE = "K", (150.0, 350.0)

_MTL = re.compile(r"_MTL\.(txt|json)$", re.IGNORECASE)
# ``LC08_L2SP_001062_20201031_20201106_02_T2_SR_B4.TIF``: sensor, level, path/row, dates, collection, category.
_L2_FILE = re.compile(r"^L[COTEM]\d{2}_L2S[PR]_\d{6}_\d{8}_\d{8}_\d{2}_[A-Z0-9]{2}_(SR_B\d|ST_B10|QA_PIXEL)\.TIF$",
                      re.IGNORECASE)
_BAND_NAME = re.compile(r"(SR_|ST_)?B?0*(\d{1,2})")
_ODL_LINE = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=\s*(.*?)\s*$")
_PROBE_ENTRIES = 2000  # a folder listing is cut short here: probing must stay cheap on huge directories


@dataclass(frozen=True)
class LandsatProduct:
    """What :class:`LandsatReader` needs: one file per selected band, its DN conversion, and QA_PIXEL."""

    bands: tuple[str, ...]
    files: tuple[Path, ...]
    mult: tuple[float, ...]
    add: tuple[float, ...]
    layers: tuple[Band, ...]  # the profile's bands: nodata and valid DN range
    grid: Grid
    qa: Path | None
    qa_conditions: tuple[str, ...]
    profile: SensorProfile


# --------------------------------------------------------------------------------------------------------- probe


def probe_landsat(path: Path) -> bool:
    """An ``*_MTL.txt``/``*_MTL.json`` file, or a folder holding one or Landsat Level-2 band files. Never raises."""
    try:
        path = Path(path)
        if path.is_file():
            return bool(_MTL.search(path.name))
        if not path.is_dir():
            return False
        with os.scandir(path) as entries:
            for i, entry in enumerate(entries):
                if i >= _PROBE_ENTRIES:
                    break
                if (_MTL.search(entry.name) or _L2_FILE.match(entry.name)) and entry.is_file():
                    return True
    except (OSError, ValueError):
        return False
    return False


# ----------------------------------------------------------------------------------------------------------- MTL


def parse_mtl(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The MTL file as nested dicts of strings, ``{"LANDSAT_METADATA_FILE": {group: {key: value}}}``.

    ODL text (``GROUP = ...``/``END_GROUP = ...``, ``KEY = value``, quoted strings, a final ``END``) and the JSON
    version give the same result: every value is the text the file holds, without quotes. Raises
    :class:`ReadError` for a file that cannot be read or parsed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReadError(f"cannot read the MTL file ({exc})", path=path,
                        hint="the file may be damaged; re-download the product") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ReadError(f"cannot parse the MTL file as JSON ({exc})", path=path,
                            hint="the file may be truncated; re-download it or use the product's _MTL.txt") from None
        if not isinstance(data, dict):
            raise ReadError("the MTL JSON is not an object", path=path, hint="re-download the product's _MTL.json")
        return _strings(data)
    return _parse_odl(text, path)


def _strings(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strings(v) for v in value]
    return "" if value is None else str(value)


def _parse_odl(text: str, path: Path) -> dict[str, Any]:
    root: dict[str, Any] = {}
    stack: list[tuple[str, dict[str, Any]]] = [("", root)]
    ended = False
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if ended:
            raise _odl_error(path, number, "text after END")
        if line.strip() == "END":
            ended = True
            continue
        match = _ODL_LINE.match(line)
        if match is None:
            raise _odl_error(path, number, f"not KEY = value: {line.strip()[:60]!r}")
        key, value = match.group(1), _unquote(match.group(2))
        if key in ("GROUP", "OBJECT"):
            group: dict[str, Any] = {}
            stack[-1][1][value] = group
            stack.append((value, group))
        elif key in ("END_GROUP", "END_OBJECT"):
            if len(stack) == 1 or (value and value != stack[-1][0]):
                raise _odl_error(path, number, f"END_GROUP = {value} closes no open group")
            stack.pop()
        else:
            stack[-1][1][key] = value
    if len(stack) > 1:
        raise _odl_error(path, len(text.splitlines()), f"group {stack[-1][0]} is never closed")
    return root


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _odl_error(path: Path, line: int, what: str) -> ReadError:
    return ReadError(f"cannot parse the MTL file, line {line}: {what}", path=path,
                     hint="the file may be truncated or edited; re-download it or use the product's _MTL.json")


# ---------------------------------------------------------------------------------------------------------- open


def open_landsat(path: str | os.PathLike[str], role: str = "input", bands: Sequence[str] | str | None = None,
                 mask_snow: bool = True) -> RasterInfo:
    """Describe a Landsat Collection 2 Level-2 product as a float32 raster of the selected ``bands``.

    ``bands`` (a comma-separated string or a sequence; case-insensitive; ``B4``/``4`` mean SR_B4, ``ST``/``B10``
    mean ST_B10) defaults to every SR band the product holds; SR and ST bands cannot be mixed. ``mask_snow`` (on by
    default) treats QA_PIXEL snow as invalid. Raises :class:`ReadError` for Level-1 or Collection 1 metadata, a
    missing MTL or band file, band files off one grid, and metadata without the selected bands' scaling.
    """
    path = Path(path)
    profile = get_sensor(SENSOR_KEY)
    if not path.exists():
        raise ReadError(f"{role} does not exist", path=path, hint="check the path")
    mtl = _find_mtl(path, role)
    groups = _groups(parse_mtl(mtl), mtl, role)
    contents = groups.get("PRODUCT_CONTENTS", {})
    attributes = groups.get("IMAGE_ATTRIBUTES", {})
    product_id = contents.get("LANDSAT_PRODUCT_ID") or _MTL.sub("", mtl.name)
    if SR_GROUP not in groups:
        raise ReadError(f"{role}: {mtl.name} is a Level-1 product (no {SR_GROUP} group)", path=mtl,
                        hint="download the Level-2 science product (L2SP) of this scene: its _MTL.txt, SR_B*.TIF, "
                             "ST_B10.TIF and QA_PIXEL.TIF")

    present = _band_files(mtl, contents, product_id)
    wanted = _select_bands(bands, present, role, mtl)
    missing = [b for b in wanted if b not in present]
    if missing:
        have = [b for b in (*SR_BANDS, ST_BAND) if b in present]
        listing = ", ".join(f"{b} ({_expected_name(contents, product_id, b)})" for b in missing)
        raise ReadError(f"{role}: the Landsat product has no {listing} in {mtl.parent}", path=mtl,
                        hint=(f"it has {', '.join(have)}: select bands it has (bands=...), or download the "
                              "complete product" if have else "download the band files next to the MTL file"))
    is_st = wanted[0] == ST_BAND
    mult, add = _scaling(groups, wanted, mtl, role)

    files = {b: present[b] for b in wanted}
    qa_path = present.get(QA_PIXEL)
    grids = {b: _file_grid(files[b], role) for b in wanted}
    if qa_path is not None:
        grids[QA_PIXEL] = _file_grid(qa_path, role)
    _check_one_grid(grids, role, mtl)
    grid = grids[wanted[0]]
    if qa_path is None:
        warnings.warn(f"{mtl.parent}: the Landsat product has no QA_PIXEL file ({product_id}_QA_PIXEL.TIF): clouds, "
                      "cloud shadow and snow are not masked, only fill and out-of-range DN", stacklevel=2)

    conditions = INVALID_CONDITIONS + ((SNOW_CONDITION,) if mask_snow else ())
    for condition in conditions:
        profile.qa_rules(condition, QA_PIXEL)  # a profile without the rule is a broken install: fail at open time
    layers = tuple(profile.layer(b) for b in wanted)
    product = LandsatProduct(bands=wanted, files=tuple(files[b] for b in wanted),
                             mult=tuple(mult[b] for b in wanted), add=tuple(add[b] for b in wanted), layers=layers,
                             grid=grid, qa=qa_path, qa_conditions=conditions if qa_path is not None else (),
                             profile=profile)
    metadata = {
        **_facts(contents, attributes, groups, mtl, role),
        "product_id": product_id,
        "mtl": str(mtl),
        "variable": "surface_temperature" if is_st else "surface_reflectance",
        "scale": dict(mult),
        "offset": dict(add),
        "band_files": {b: str(files[b]) for b in wanted},
        "qa_pixel": None if qa_path is None else str(qa_path),
        "invalid_qa_conditions": list(product.qa_conditions),
        "mask_snow": mask_snow,
        # The reader delivers physical values; networks scale them by the nominal range.
        "units": ST_UNITS if is_st else SR_UNITS,
        "value_range": ST_VALUE_RANGE if is_st else SR_VALUE_RANGE,
    }
    return RasterInfo(
        path=path, count=len(wanted), dtype="float32", grid=grid, nodata=None, descriptions=wanted,
        has_gcps=False, has_mask=True, source=product, opener=LandsatReader,
        wavelengths_nm=tuple(layer.center_nm for layer in layers), fwhm_nm=tuple(layer.fwhm_nm for layer in layers),
        metadata=metadata)


def _find_mtl(path: Path, role: str) -> Path:
    """The MTL file: ``path`` itself, or the one product's MTL in the folder (the ODL text when both are there)."""
    if path.is_file():
        if not _MTL.search(path.name):
            raise ReadError(f"{role} is not a Landsat MTL file", path=path,
                            hint="give the product's _MTL.txt or _MTL.json, or its scene folder")
        return path
    try:
        names = sorted(p.name for p in path.iterdir() if p.is_file())
    except OSError as exc:
        raise ReadError(f"{role}: cannot list the folder ({exc})", path=path, hint="check its permissions") from None
    mtls = [n for n in names if _MTL.search(n)]
    products = sorted({_MTL.sub("", n) for n in mtls})
    if len(products) > 1:
        shown = ", ".join(products[:3]) + (", ..." if len(products) > 3 else "")
        raise ReadError(f"{role}: the folder holds {len(products)} Landsat products ({shown})", path=path,
                        hint="give the _MTL.txt of the product to read")
    if not products:
        hint = ("put the product's _MTL.txt (or _MTL.json) next to the band files: it states the scaling and the "
                "acquisition date" if any(_L2_FILE.match(n) for n in names) else
                "give a Landsat Collection 2 Level-2 scene folder or its _MTL.txt")
        raise ReadError(f"{role}: the folder has no Landsat MTL file (*_MTL.txt or *_MTL.json)", path=path,
                        hint=hint)
    text = [n for n in mtls if n.lower().endswith(".txt")]
    return path / (text or mtls)[0]


def _groups(data: Mapping[str, Any], mtl: Path, role: str) -> dict[str, dict[str, str]]:
    root = data.get(ROOT_GROUP)
    if not isinstance(root, dict):
        if "L1_METADATA_FILE" in data:
            raise ReadError(f"{role}: {mtl.name} is Collection 1 metadata (L1_METADATA_FILE)", path=mtl,
                            hint="download the Collection 2 Level-2 product of this scene")
        raise ReadError(f"{role}: {mtl.name} is not Landsat Collection 2 metadata (no {ROOT_GROUP} group)",
                        path=mtl, hint="give the product's _MTL.txt or _MTL.json")
    return {name: group for name, group in root.items() if isinstance(group, dict)}


def _select_bands(bands: Sequence[str] | str | None, present: Mapping[str, Path], role: str,
                  mtl: Path) -> tuple[str, ...]:
    if bands is None:
        wanted = tuple(b for b in SR_BANDS if b in present)
        if not wanted:
            raise ReadError(f"{role}: the Landsat product has no surface reflectance band file "
                            f"({', '.join(SR_BANDS)}) in {mtl.parent}", path=mtl,
                            hint=("select bands=ST_B10 for surface temperature, or download the SR band files"
                                  if ST_BAND in present else "download the band files next to the MTL file"))
        return wanted
    names = bands.split(",") if isinstance(bands, str) else list(bands)
    wanted = tuple(_normalise(str(n)) for n in names if str(n).strip())
    if not wanted:
        raise ReadError(f"{role}: no Landsat band selected", path=mtl,
                        hint=f"select some of {', '.join(SR_BANDS)}, or {ST_BAND}")
    known = (*SR_BANDS, ST_BAND)
    unknown = [b for b in wanted if b not in known]
    if unknown:
        raise ReadError(f"{role}: Landsat Collection 2 Level-2 has no band {', '.join(unknown)}", path=mtl,
                        hint=f"its bands are {', '.join(known)} (B8, B9 and B11 are Level-1 only; QA_PIXEL is "
                             "read as the mask)")
    duplicated = sorted({b for b in wanted if wanted.count(b) > 1})
    if duplicated:
        raise ReadError(f"{role}: band {', '.join(duplicated)} selected twice", path=mtl, hint="select each band once")
    if ST_BAND in wanted and len(wanted) > 1:
        raise ReadError(f"{role}: {', '.join(b for b in wanted if b != ST_BAND)} and {ST_BAND} cannot be read as "
                        "one raster: surface reflectance and surface temperature (K) are different variables",
                        path=mtl, hint=f"open the product twice: once with SR bands, once with bands={ST_BAND}")
    return wanted


def _normalise(name: str) -> str:
    text = name.strip().upper()
    if text in ("ST", "LST"):
        return ST_BAND
    match = _BAND_NAME.fullmatch(text)
    if match is None:
        return text
    prefix, number = match.group(1), int(match.group(2))
    if number == 10 and prefix != "SR_":
        return ST_BAND
    if 1 <= number <= 7 and prefix != "ST_":
        return f"SR_B{number}"
    return f"{prefix or ''}B{number}"


def _file_keys(band: str) -> tuple[str, ...]:
    """PRODUCT_CONTENTS keys naming a band's file."""
    if band == QA_PIXEL:
        return ("FILE_NAME_QUALITY_L1_PIXEL",)
    if band == ST_BAND:
        return ("FILE_NAME_BAND_ST_B10",)
    return (f"FILE_NAME_BAND_{band.removeprefix('SR_B')}",)


def _expected_name(contents: Mapping[str, str], product_id: str, band: str) -> str:
    return next((contents[k] for k in _file_keys(band) if contents.get(k)), f"{product_id}_{band}.TIF")


def _band_files(mtl: Path, contents: Mapping[str, str], product_id: str) -> dict[str, Path]:
    """The band and QA_PIXEL files next to the MTL: named as PRODUCT_CONTENTS says, else ``<product_id>_<band>.TIF``
    (any case)."""
    folder = mtl.parent
    try:
        listing = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
    except OSError:
        listing = {}
    found: dict[str, Path] = {}
    for band in (*SR_BANDS, ST_BAND, QA_PIXEL):
        names = [contents[k] for k in _file_keys(band) if contents.get(k)]
        names += [f"{product_id}_{band}.TIF", f"{_MTL.sub('', mtl.name)}_{band}.TIF"]
        for name in names:
            file = listing.get(Path(name).name.lower())
            if file is not None:
                found[band] = file
                break
    return found


def _scaling(groups: Mapping[str, Mapping[str, str]], wanted: tuple[str, ...], mtl: Path,
             role: str) -> tuple[dict[str, float], dict[str, float]]:
    """Per band (mult, add) from the Level-2 groups of the MTL, never from LEVEL1_RADIOMETRIC_RESCALING."""
    mult: dict[str, float] = {}
    add: dict[str, float] = {}
    for band in wanted:
        if band == ST_BAND:
            group_name, keys = ST_GROUP, ("TEMPERATURE_MULT_BAND_ST_B10", "TEMPERATURE_ADD_BAND_ST_B10")
        else:
            n = band.removeprefix("SR_B")
            group_name, keys = SR_GROUP, (f"REFLECTANCE_MULT_BAND_{n}", f"REFLECTANCE_ADD_BAND_{n}")
        group = groups.get(group_name)
        if group is None:
            raise ReadError(f"{role}: {mtl.name} has no {group_name} group, so {band} cannot be scaled (an L2SR "
                            "product has no surface temperature)", path=mtl,
                            hint="select SR bands, or download the L2SP product of this scene")
        absent = [k for k in keys if k not in group]
        if absent:
            raise ReadError(f"{role}: {mtl.name} states no {' and '.join(absent)} in {group_name}", path=mtl,
                            hint="the metadata file is incomplete; re-download the product")
        mult[band] = metadata_number(group[keys[0]], keys[0], mtl, role)
        add[band] = metadata_number(group[keys[1]], keys[1], mtl, role)
        if not mult[band] > 0:
            raise ReadError(f"{role}: {mtl.name} states {keys[0]} = {group[keys[0]]}; it must be positive", path=mtl,
                            hint="the metadata file is damaged; re-download the product")
    return mult, add


def _facts(contents: Mapping[str, str], attributes: Mapping[str, str], groups: Mapping[str, Mapping[str, str]],
           mtl: Path, role: str) -> dict[str, Any]:
    date = attributes.get("DATE_ACQUIRED", "").strip()
    try:
        acquired = dt.date.fromisoformat(date).isoformat()
    except ValueError:
        stated = f"states DATE_ACQUIRED {date!r}, not a date YYYY-MM-DD" if date else \
            "states no DATE_ACQUIRED (IMAGE_ATTRIBUTES)"
        raise ReadError(f"{role}: {mtl.name} {stated}", path=mtl,
                        hint="the metadata file is damaged; re-download the product") from None
    level = contents.get("PROCESSING_LEVEL") or groups.get("LEVEL2_PROCESSING_RECORD", {}).get("PROCESSING_LEVEL")
    facts: dict[str, Any] = {
        "acquired": acquired,
        "scene_center_time": attributes.get("SCENE_CENTER_TIME"),
        "sensor": SENSOR_KEY,
        "spacecraft": attributes.get("SPACECRAFT_ID"),
        "sensor_id": attributes.get("SENSOR_ID"),
        "processing_level": level,
        "collection_number": contents.get("COLLECTION_NUMBER"),
        "collection_category": contents.get("COLLECTION_CATEGORY"),
        "cloud_cover": None,
    }
    # Unparsable estimates and angles are provenance only, not worth refusing the product for.
    for key, name in (("cloud_cover", "CLOUD_COVER"), ("sun_elevation", "SUN_ELEVATION"),
                      ("sun_azimuth", "SUN_AZIMUTH")):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            facts[key] = float(attributes[name])
    for key, name in (("wrs_path", "WRS_PATH"), ("wrs_row", "WRS_ROW")):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            facts[key] = int(attributes[name])
    return facts





def _file_grid(path: Path, role: str) -> Grid:
    return band_file_grid(path, role, "Landsat band files carry their UTM (or polar stereographic) georeferencing")


def _describe(grid: Grid) -> str:
    x, y = grid.transform.c, grid.transform.f
    return f"{grid.crs}, {grid.width}x{grid.height}, {grid.res[0]:g} m, origin ({x:g}, {y:g})"


def _check_one_grid(grids: Mapping[str, Grid], role: str, mtl: Path) -> None:
    (first_band, first), *others = grids.items()
    for band, grid in others:
        same = (grid.crs == first.crs and grid.shape == first.shape
                and grid.transform.almost_equals(first.transform, precision=1e-6 * max(first.res)))
        if not same:
            raise ReadError(f"{role}: the band files are not on one grid: {first_band} ({_describe(first)}) vs "
                            f"{band} ({_describe(grid)})", path=mtl,
                            hint="the band files must all come from this product, unresampled")


# -------------------------------------------------------------------------------------------------------- reader


class LandsatReader(PerThreadHandles):
    """Windowed reads of physical values (reflectance or kelvin) of a Landsat product, one dataset handle per file
    per thread."""

    def __init__(self, info: RasterInfo):
        if not isinstance(info.source, LandsatProduct):
            raise TypeError("LandsatReader reads RasterInfo from open_landsat")
        super().__init__(info)
        self.product: LandsatProduct = info.source

    def _read(self, path: Path, window: Window) -> np.ndarray:
        try:
            with self.reading():
                return self.handle(path, lambda: open_band_file(path, "input")).read(1, window=window)
        except RasterioError as exc:
            raise ReadError(f"read failed at {window} ({first_line(str(exc))})", path=path,
                            hint="the file may be truncated or corrupt") from None

    def read(self, window: Window, bands: list[int] | None = None) -> np.ndarray:
        """Physical values of ``window`` as float32 (bands, rows, cols); pixels without data (DN 0 or outside the
        valid DN range) read 0, so that resampling does not spread a -0.2 offset into valid neighbours."""
        indexes = self.band_indexes(bands)
        product = self.product
        out = np.empty((len(indexes), int(window.height), int(window.width)), dtype=np.float32)
        for k, i in enumerate(indexes):
            dn = self._read(product.files[i], window)
            values = dn.astype(np.float64) * product.mult[i] + product.add[i]
            out[k] = np.where(product.layers[i].valid_mask(dn), values, 0.0)
        return out

    def read_valid(self, window: Window, bands: list[int] | None = None) -> np.ndarray:
        """True where every selected band holds a valid DN and QA_PIXEL (when the product has it) flags none of the
        invalid conditions (fill, dilated cloud, cirrus, cloud, cloud shadow, snow unless ``mask_snow=False``)."""
        valid = np.ones((int(window.height), int(window.width)), dtype=bool)
        for i in self.band_indexes(bands):
            valid &= self.product.layers[i].valid_mask(self._read(self.product.files[i], window))
        if self.product.qa is not None and self.product.qa_conditions:
            valid &= ~self.product.profile.qa_mask(self.read_qa(window), *self.product.qa_conditions, band=QA_PIXEL)
        return valid

    def read_qa(self, window: Window) -> np.ndarray:
        """The QA_PIXEL bit field of ``window`` (uint16)."""
        if self.product.qa is None:
            raise ReadError("the product has no QA_PIXEL file", path=self.info.path)
        return self._read(self.product.qa, window)


FORMAT = ProductFormat(name="Landsat C2 L2", probe=probe_landsat, open=open_landsat)
