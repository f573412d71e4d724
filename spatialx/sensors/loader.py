"""Read and validate one sensor YAML file into a :class:`~spatialx.sensors.schema.SensorProfile`.

Validation is strict: unknown keys, wrong types, values outside their dtype and inconsistent parts are errors that
name the file and the key (``bands[3].valid_range``), so a typo never silently becomes a default.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import yaml

from spatialx.errors import SensorConfigError
from spatialx.sensors.schema import (
    DTYPES,
    INTEGER_DTYPES,
    KINDS,
    POLARISATIONS,
    REPRESENTATIONS,
    Band,
    ProductOffset,
    ProductRange,
    QARule,
    SensorProfile,
    SpectralGrid,
    SpectralResponse,
    channel_layout,
)

_RADIOMETRY = ("scale", "offset", "valid_range", "nodata", "units", "offset_from_product", "range_from_product")
_TOP_KEYS = ("name", "description", "kind", "aliases", "dtype", "bit_depth", "max_value", "resolution_m", *_RADIOMETRY,
             "ratio", "ndvi", "frequency_ghz", "polarisations", "representation", "wavelengths_from_file", "pan",
             "bands", "spectral_grid", "ancillary", "qa")
_SPECTRAL_KEYS = ("center_nm", "width_nm", "fwhm_nm", "edges_nm", "response")
_BAND_KEYS = ("name", *_SPECTRAL_KEYS, "mtf_gain", "pan_weight", "resolution_m", *_RADIOMETRY, "dtype",
              "description")
_GRID_KEYS = ("name_format", "start_nm", "stop_nm", "step_nm", "count", "fwhm_nm", "file_keys")
_QA_KEYS = ("name", "band", "bits", "values", "applies_to", "description")
_YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_NAME_FORMAT = re.compile(r"[A-Za-z0-9_.\-]*\{index(:0?[1-9]d)?\}[A-Za-z0-9_.\-]*")


def read_yaml(path: Path) -> dict[str, Any]:
    """The file's top-level mapping, read with ``yaml.safe_load`` (no Python object tags)."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SensorConfigError(f"cannot read sensor profile: {exc}", path=path) from None
    if not isinstance(data, dict):
        raise SensorConfigError("a sensor profile must be a YAML mapping", path=path)
    return data


class _Reader:
    """Typed access to one file's data; every failure names the file and the full key."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str | None, message: str, hint: str | None = None) -> NoReturn:
        raise SensorConfigError(message, path=self.path, key=key or None, hint=hint)

    def mapping(self, value: Any, key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping, found {value!r}")
        for name in value:
            if name not in allowed:
                self.fail(_join(key, str(name)), "unknown key", hint=f"known keys here: {', '.join(allowed)}")
        return value

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"expected text, found {value!r}")
        return value

    def number(self, value: Any, key: str, *, positive: bool = False, nonzero: bool = False,
               allow_nan: bool = False) -> float:
        if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
            self.fail(key, f"expected a number, found the text {value!r}",
                      hint="YAML reads an exponent without a decimal point as text: write e.g. 1.0e-4")
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, f"expected a number, found {value!r}")
        value = float(value)
        if math.isinf(value) or (math.isnan(value) and not allow_nan):
            self.fail(key, f"expected a finite number, found {value!r}")
        if positive and not value > 0:
            self.fail(key, f"must be positive, found {value:g}")
        if nonzero and value == 0:
            self.fail(key, "must not be 0")
        return value

    def integer(self, value: Any, key: str, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, found {value!r}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.fail(key, f"must be in [{lo}, {hi}], found {value}")
        return value

    def flag(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, found {value!r}")
        return value

    def sequence(self, value: Any, key: str, *, nonempty: bool = True) -> list[Any]:
        if not isinstance(value, list):
            self.fail(key, f"expected a list, found {value!r}")
        if nonempty and not value:
            self.fail(key, "must not be empty")
        return value

    def names(self, value: Any, key: str) -> tuple[str, ...]:
        items = tuple(self.text(v, f"{key}[{i}]") for i, v in enumerate(self.sequence(value, key)))
        if len({v.lower() for v in items}) != len(items):
            self.fail(key, "names must be unique")
        return items

    def pair(self, value: Any, key: str) -> tuple[float, float]:
        items = self.sequence(value, key)
        if len(items) != 2:
            self.fail(key, f"expected [lo, hi], found {value!r}")
        lo, hi = (self.number(v, f"{key}[{i}]") for i, v in enumerate(items))
        if not lo <= hi:
            self.fail(key, f"lo must not exceed hi, found [{lo:g}, {hi:g}]")
        return lo, hi

    def dtype(self, value: Any, key: str) -> str:
        if value not in DTYPES:
            self.fail(key, f"unsupported dtype {value!r}", hint=f"one of: {', '.join(DTYPES)}")
        return value

    def fits(self, value: float, dtype: str, key: str) -> None:
        """DN ``value`` must be representable in an integer ``dtype``."""
        if dtype in INTEGER_DTYPES and not math.isnan(value):
            info = np.iinfo(dtype)
            if value != int(value) or not info.min <= value <= info.max:
                self.fail(key, f"{value:g} is not a {dtype} value ({info.min} to {info.max})")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def profile_from_dict(data: Mapping[str, Any], path: Path) -> SensorProfile:
    """Validate ``data`` (one file's top-level mapping) and build the profile; errors name ``path`` and the key."""
    r = _Reader(path)
    data = r.mapping(dict(data), "", _TOP_KEYS)
    if "name" not in data:
        r.fail("name", "missing")
    name = r.text(data["name"], "name")
    kind = data.get("kind", "optical")
    if kind not in KINDS:
        r.fail("kind", f"unknown kind {kind!r}", hint=f"one of: {', '.join(KINDS)}")
    sar = kind == "sar"
    dtype = r.dtype(data.get("dtype", "uint16"), "dtype")
    sensor = _radiometry(r, data, "", dtype, defaults=None)
    sensor["resolution_m"] = (r.number(data["resolution_m"], "resolution_m", positive=True)
                              if data.get("resolution_m") is not None else None)
    sensor["dtype"] = dtype

    bands = [_band(r, b, f"bands[{i}]", sensor, sar) for i, b in enumerate(
        r.sequence(data["bands"], "bands", nonempty="spectral_grid" not in data) if "bands" in data else [])]
    grids = []
    for i, spec in enumerate(r.sequence(data["spectral_grid"], "spectral_grid") if "spectral_grid" in data else []):
        if sar:
            r.fail(f"spectral_grid[{i}]", "SAR channels have no wavelengths; list them under bands")
        grid, grid_bands = _spectral_grid(r, spec, f"spectral_grid[{i}]", sensor)
        grids.append(grid)
        bands.extend(grid_bands)
    if not bands:
        r.fail("bands", "missing" if "bands" not in data else "at least one band is required")
    names = [b.name.lower() for b in bands]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        r.fail("bands", f"band names must be unique ({duplicate!r} repeats)")

    pan = None
    if "pan" in data:
        if sar:
            r.fail("pan", "a SAR profile has no PAN band")
        pan_data = r.mapping(data["pan"], "pan", _BAND_KEYS)
        # The sensor-level resolution is the bands' default; PAN's is its own (or unknown), never the bands'.
        pan = _band(r, {"name": "PAN", **pan_data}, "pan", {**sensor, "resolution_m": None}, sar)
    ratio = _ratio(r, data, pan, bands)

    bit_depth = r.integer(data["bit_depth"], "bit_depth", 1, 64) if data.get("bit_depth") is not None else None
    max_value = r.number(data["max_value"], "max_value", positive=True) if data.get("max_value") is not None else None
    if max_value is None:
        if bit_depth is not None:
            max_value = float(2**bit_depth - 1)
        elif sensor["valid_range"] is not None:
            max_value = sensor["valid_range"][1]
        elif dtype in INTEGER_DTYPES:
            r.fail("bit_depth", "missing", hint="an integer sensor needs bit_depth, max_value or valid_range")

    ndvi_red = ndvi_nir = None
    if "ndvi" in data:
        if sar:
            r.fail("ndvi", "a SAR profile has no NDVI bands")
        ndvi = r.mapping(data["ndvi"], "ndvi", ("red", "nir"))
        for role in ("red", "nir"):
            if role not in ndvi:
                r.fail(f"ndvi.{role}", "missing")
        ndvi_red, ndvi_nir = r.text(ndvi["red"], "ndvi.red"), r.text(ndvi["nir"], "ndvi.nir")
        for role, value in (("red", ndvi_red), ("nir", ndvi_nir)):
            if value.lower() not in names:
                r.fail(f"ndvi.{role}", f"names no band of this sensor: {value!r}")

    polarisations, representation, frequency = _sar_fields(r, data, sar, bands)
    ancillary = [_band(r, a, f"ancillary[{i}]", None, sar=False, default_dtype=dtype) for i, a in
                 enumerate(r.sequence(data["ancillary"], "ancillary") if "ancillary" in data else [])]
    layer_names = [*names, *([pan.name.lower()] if pan else []), *(a.name.lower() for a in ancillary)]
    if len(set(layer_names)) != len(layer_names):
        r.fail("ancillary", "ancillary layer names must differ from each other and from the bands")
    qa = _qa_rules(r, data, names, {a.name.lower() for a in ancillary})

    return SensorProfile(
        key=path.stem.lower(),
        name=name,
        description=str(data.get("description", "")),
        bands=tuple(bands),
        pan=pan,
        bit_depth=bit_depth,
        max_value=max_value,
        dtype=dtype,
        ratio=ratio,
        ndvi_red=ndvi_red,
        ndvi_nir=ndvi_nir,
        nodata=sensor["nodata"],
        path=path,
        kind=kind,
        aliases=r.names(data["aliases"], "aliases") if data.get("aliases") else (),
        resolution_m=sensor["resolution_m"],
        scale=sensor["scale"],
        offset=sensor["offset"],
        valid_range=sensor["valid_range"],
        units=sensor["units"],
        offset_from_product=sensor["offset_from_product"],
        range_from_product=sensor["range_from_product"],
        frequency_ghz=frequency,
        polarisations=polarisations,
        representation=representation,
        wavelengths_from_file=(r.flag(data["wavelengths_from_file"], "wavelengths_from_file")
                               if "wavelengths_from_file" in data else False),
        spectral_grid=tuple(grids),
        ancillary=tuple(ancillary),
        qa=qa,
    )


def _radiometry(r: _Reader, data: Mapping[str, Any], where: str, dtype: str,
                defaults: Mapping[str, Any] | None) -> dict[str, Any]:
    """The radiometric fields of a sensor or band: given ones, else ``defaults`` (the sensor's), else none."""
    out: dict[str, Any] = {"scale": 1.0, "offset": 0.0, "valid_range": None, "nodata": None, "units": None,
                           "offset_from_product": None, "range_from_product": None}
    if defaults is not None:
        out.update({k: defaults[k] for k in out})
    k = lambda name: _join(where, name)  # noqa: E731
    if "scale" in data:
        out["scale"] = r.number(data["scale"], k("scale"), nonzero=True)
    if "offset" in data:
        out["offset"] = r.number(data["offset"], k("offset"))
    if "valid_range" in data:
        out["valid_range"] = None if data["valid_range"] is None else r.pair(data["valid_range"], k("valid_range"))
    if "nodata" in data:
        out["nodata"] = None if data["nodata"] is None else r.number(data["nodata"], k("nodata"), allow_nan=True)
    if "units" in data:
        out["units"] = None if data["units"] is None else r.text(data["units"], k("units"))
    if "offset_from_product" in data:
        out["offset_from_product"] = _product_offset(r, data["offset_from_product"], k("offset_from_product"))
    if "range_from_product" in data:
        out["range_from_product"] = _product_range(r, data["range_from_product"], k("range_from_product"))
    if out["range_from_product"] is not None and ("scale" in data or "offset" in data):
        r.fail(k("range_from_product"), "give range_from_product or scale/offset, not both",
               hint="a band that overrides a sensor-level range_from_product sets range_from_product: null")
    if out["nodata"] is not None:
        r.fits(out["nodata"], dtype, k("nodata"))
    if out["valid_range"] is not None:
        for i, value in enumerate(out["valid_range"]):
            r.fits(value, dtype, f"{k('valid_range')}[{i}]")
    return out


def _product_offset(r: _Reader, value: Any, key: str) -> ProductOffset | None:
    if value is None:
        return None
    spec = r.mapping(value, key, ("key", "default", "baseline_key", "since_baseline", "value_since"))
    if "key" not in spec:
        r.fail(f"{key}.key", "missing")
    since = spec.get("since_baseline")
    if since is not None and not isinstance(since, str):
        r.fail(f"{key}.since_baseline", f"expected text, found {since!r}",
               hint="quote it, e.g. '04.00' (unquoted, YAML reads 04.00 as the number 4.0)")
    if since is not None and ("baseline_key" not in spec or "value_since" not in spec):
        r.fail(f"{key}.since_baseline", "needs baseline_key and value_since")
    return ProductOffset(
        key=r.text(spec["key"], f"{key}.key"),
        default=r.number(spec.get("default", 0.0), f"{key}.default"),
        baseline_key=r.text(spec["baseline_key"], f"{key}.baseline_key") if "baseline_key" in spec else None,
        since_baseline=since,
        value_since=r.number(spec["value_since"], f"{key}.value_since") if "value_since" in spec else None,
    )


def _product_range(r: _Reader, value: Any, key: str) -> ProductRange | None:
    if value is None:
        return None
    spec = r.mapping(value, key, ("min_key", "max_key", "dn_max"))
    for name in ("min_key", "max_key"):
        if name not in spec:
            r.fail(f"{key}.{name}", "missing")
    return ProductRange(min_key=r.text(spec["min_key"], f"{key}.min_key"),
                        max_key=r.text(spec["max_key"], f"{key}.max_key"),
                        dn_max=r.number(spec.get("dn_max", 65535.0), f"{key}.dn_max", positive=True))


def _response(r: _Reader, value: Any, key: str) -> SpectralResponse:
    if isinstance(value, list):  # a short inline table: [[wavelength_nm, value], ...]
        for i, row in enumerate(value):
            if not isinstance(row, list) or len(row) != 2:
                r.fail(f"{key}[{i}]", f"expected [wavelength_nm, value], found {row!r}")
        wavelengths, values = [row[0] for row in value], [row[1] for row in value]
    else:
        spec = r.mapping(value, key, ("wavelengths_nm", "values"))
        for name in ("wavelengths_nm", "values"):
            if name not in spec:
                r.fail(f"{key}.{name}", "missing")
        wavelengths = r.sequence(spec["wavelengths_nm"], f"{key}.wavelengths_nm")
        values = r.sequence(spec["values"], f"{key}.values")
        if len(wavelengths) != len(values):
            r.fail(f"{key}.values", f"{len(values)} values for {len(wavelengths)} wavelengths")
    wl = tuple(r.number(v, f"{key}.wavelengths_nm[{i}]", positive=True) for i, v in enumerate(wavelengths))
    val = tuple(r.number(v, f"{key}.values[{i}]") for i, v in enumerate(values))
    if len(wl) < 2:
        r.fail(key, "a response table needs at least two points")
    if any(b <= a for a, b in itertools.pairwise(wl)):
        r.fail(f"{key}.wavelengths_nm", "wavelengths must increase strictly")
    if min(val) < 0 or max(val) <= 0:
        r.fail(f"{key}.values", "values must be non-negative with a positive peak")
    return SpectralResponse(wl, val)


def _band(r: _Reader, data: Any, where: str, sensor: Mapping[str, Any] | None, sar: bool,
          default_dtype: str = "uint16") -> Band:
    """One band; ``sensor`` holds the sensor-level defaults it inherits (``None``: an ancillary layer, which
    inherits only the dtype: QA bit fields and class maps share nothing else with the bands they describe)."""
    data = r.mapping(data, where, _BAND_KEYS)
    if "name" not in data:
        r.fail(f"{where}.name", "missing")
    name = r.text(data["name"], f"{where}.name")
    center, width, response = _spectral(r, data, where, sar)
    dtype = r.dtype(data["dtype"], f"{where}.dtype") if "dtype" in data else (
        sensor["dtype"] if sensor is not None else default_dtype)
    radiometry = _radiometry(r, data, where, dtype, defaults=sensor)
    gain = None
    if data.get("mtf_gain") is not None:
        gain = r.number(data["mtf_gain"], f"{where}.mtf_gain")
        if not 0.0 < gain < 1.0:
            r.fail(f"{where}.mtf_gain", f"MTF gain must be in (0, 1), found {gain:g}")
    pan_weight = r.number(data.get("pan_weight", 0.0), f"{where}.pan_weight")
    if pan_weight < 0:
        r.fail(f"{where}.pan_weight", f"must not be negative, found {pan_weight:g}")
    resolution = sensor["resolution_m"] if sensor is not None else None
    if data.get("resolution_m") is not None:
        resolution = r.number(data["resolution_m"], f"{where}.resolution_m", positive=True)
    return Band(name=name, center_nm=center, width_nm=width, mtf_gain=gain, pan_weight=pan_weight,
                resolution_m=resolution, response=response, dtype=dtype,
                description=str(data.get("description", "")), **radiometry)


def _spectral(r: _Reader, data: Mapping[str, Any], where: str,
              sar: bool) -> tuple[float | None, float | None, SpectralResponse | None]:
    given = [k for k in _SPECTRAL_KEYS if data.get(k) is not None]
    if sar and given:
        r.fail(f"{where}.{given[0]}", "SAR channels have no wavelength")
    if "width_nm" in given and "fwhm_nm" in given:
        r.fail(f"{where}.fwhm_nm", "give width_nm or fwhm_nm (the same thing), not both")
    if "edges_nm" in given and ({"center_nm", "width_nm", "fwhm_nm"} & set(given)):
        r.fail(f"{where}.edges_nm", "give edges_nm or center_nm with fwhm_nm, not both")
    center = r.number(data["center_nm"], f"{where}.center_nm", positive=True) if "center_nm" in given else None
    width_key = "fwhm_nm" if "fwhm_nm" in given else "width_nm"
    width = r.number(data[width_key], f"{where}.{width_key}", positive=True) if width_key in given else None
    if "edges_nm" in given:
        lo, hi = r.pair(data["edges_nm"], f"{where}.edges_nm")
        if not 0 < lo < hi:
            r.fail(f"{where}.edges_nm", f"expected 0 < lo < hi, found [{lo:g}, {hi:g}]")
        center, width = (lo + hi) / 2.0, hi - lo
    response = _response(r, data["response"], f"{where}.response") if "response" in given else None
    if response is not None:
        center = response.centroid_nm() if center is None else center
        width = response.fwhm_nm() if width is None else width
    elif (center is None) != (width is None):
        missing = "fwhm_nm" if width is None else "center_nm"
        r.fail(f"{where}.{missing}", "missing", hint="a Gaussian band needs center_nm and fwhm_nm (or edges_nm)")
    return center, width, response


def _spectral_grid(r: _Reader, data: Any, where: str, sensor: Mapping[str, Any]) -> tuple[SpectralGrid, list[Band]]:
    template_keys = tuple(k for k in _BAND_KEYS if k not in ("name", *_SPECTRAL_KEYS))
    data = r.mapping(data, where, (*_GRID_KEYS, *template_keys))
    for name in ("name_format", "start_nm", "stop_nm", "fwhm_nm"):
        if name not in data:
            r.fail(f"{where}.{name}", "missing")
    name_format = r.text(data["name_format"], f"{where}.name_format")
    if not _NAME_FORMAT.fullmatch(name_format):
        r.fail(f"{where}.name_format", f"expected letters, digits, _ . - and one {{index}} (e.g. 'VNIR{{index:02d}}'),"
                                       f" found {name_format!r}")
    start = r.number(data["start_nm"], f"{where}.start_nm", positive=True)
    stop = r.number(data["stop_nm"], f"{where}.stop_nm", positive=True)
    fwhm = r.number(data["fwhm_nm"], f"{where}.fwhm_nm", positive=True)
    if not stop > start:
        r.fail(f"{where}.stop_nm", f"must exceed start_nm ({start:g}), found {stop:g}")
    if ("count" in data) == ("step_nm" in data):
        r.fail(f"{where}.count", "give count or step_nm (exactly one)")
    step = None
    if "step_nm" in data:
        step = r.number(data["step_nm"], f"{where}.step_nm", positive=True)
        count = math.floor((stop - start) / step + 1e-9) + 1
    else:
        count = r.integer(data["count"], f"{where}.count", 2, 100000)
    file_keys: tuple[tuple[str, str], ...] = ()
    if "file_keys" in data:
        keys = data["file_keys"]
        if not isinstance(keys, dict) or not keys:
            r.fail(f"{where}.file_keys", f"expected a mapping of what to file attribute, found {keys!r}")
        file_keys = tuple((r.text(k, f"{where}.file_keys"), r.text(v, f"{where}.file_keys.{k}"))
                          for k, v in keys.items())
    grid = SpectralGrid(name_format=name_format, start_nm=start, stop_nm=stop, fwhm_nm=fwhm, count=count,
                        step_nm=step, file_keys=file_keys)
    template = {k: data[k] for k in template_keys if k in data}
    bands = [_band(r, {"name": name, "center_nm": float(centre), "fwhm_nm": fwhm, **template}, where, sensor, False)
             for name, centre in zip(grid.names(), grid.centres_nm(), strict=True)]
    return grid, bands


def _ratio(r: _Reader, data: Mapping[str, Any], pan: Band | None, bands: list[Band]) -> float | None:
    resolutions = {b.resolution_m for b in bands}
    derived = None
    if pan is not None and pan.resolution_m and len(resolutions) == 1 and None not in resolutions:
        derived = resolutions.pop() / pan.resolution_m  # type: ignore[operator]
    if data.get("ratio") is None:
        if pan is not None and derived is None:
            r.fail("ratio", "missing", hint="a profile with a PAN band needs ratio (or resolution_m on PAN and bands)")
        return derived
    ratio = r.number(data["ratio"], "ratio", positive=True)
    if pan is None:
        r.fail("ratio", "ratio is the PAN:MS resolution ratio, and this profile has no pan")
    if derived is not None and not math.isclose(ratio, derived, rel_tol=1e-6):
        r.fail("ratio", f"{ratio:g} disagrees with the resolutions ({derived:g} from bands / pan resolution_m)")
    return ratio


def _sar_fields(r: _Reader, data: Mapping[str, Any], sar: bool,
                bands: list[Band]) -> tuple[tuple[str, ...], str | None, float | None]:
    if not sar:
        for key in ("polarisations", "representation", "frequency_ghz"):
            if key in data:
                r.fail(key, "only SAR profiles (kind: sar) have polarisations, representation and frequency_ghz")
        return (), None, None
    for key in ("polarisations", "representation"):
        if key not in data:
            r.fail(key, "missing", hint="a SAR profile states its polarisations and representation (e.g. C3)")
    pols = r.names(data["polarisations"], "polarisations")
    for i, pol in enumerate(pols):
        if pol not in POLARISATIONS:
            r.fail(f"polarisations[{i}]", f"unknown polarisation {pol!r}", hint=f"one of: {', '.join(POLARISATIONS)}")
    representation = data["representation"]
    if representation not in REPRESENTATIONS:
        r.fail("representation", f"unknown representation {representation!r}",
               hint=f"one of: {', '.join(REPRESENTATIONS)}")
    if representation in ("C3", "T3") and not ({"HH", "VV"} <= set(pols) and {"HV", "VH"} & set(pols)):
        r.fail("representation", f"{representation} needs quad-pol data (HH, VV and HV or VH), found {list(pols)}")
    if representation == "C2" and len(pols) != 2:
        r.fail("representation", f"C2 needs dual-pol data (two polarisations), found {list(pols)}")
    expected = channel_layout(representation, pols)
    found = tuple(b.name for b in bands)
    if (sorted(found) != sorted(expected)) if REPRESENTATIONS[representation] is None else found != expected:
        r.fail("bands", f"{representation} channels must be {', '.join(expected)}, in this order; found "
                        f"{', '.join(found)}")
    frequency = r.number(data["frequency_ghz"], "frequency_ghz", positive=True) if "frequency_ghz" in data else None
    return pols, representation, frequency


def _qa_rules(r: _Reader, data: Mapping[str, Any], bands: list[str], layers: set[str]) -> tuple[QARule, ...]:
    rules: list[QARule] = []
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(r.sequence(data["qa"], "qa") if "qa" in data else []):
        where = f"qa[{i}]"
        spec = r.mapping(item, where, _QA_KEYS)
        for name in ("name", "band"):
            if name not in spec:
                r.fail(f"{where}.{name}", "missing")
        name = r.text(spec["name"], f"{where}.name")
        if not _IDENTIFIER.fullmatch(name):
            r.fail(f"{where}.name", f"expected a word such as cloud or cloud_shadow, found {name!r}")
        band = r.text(spec["band"], f"{where}.band")
        if band.lower() not in layers and band.lower() not in bands:
            r.fail(f"{where}.band", f"names no ancillary layer or band of this sensor: {band!r}",
                   hint="declare the QA layer under ancillary")
        if (name.lower(), band.lower()) in seen:
            r.fail(f"{where}.name", f"{name!r} is already defined on {band!r}")
        seen.add((name.lower(), band.lower()))
        bits = values = None
        if spec.get("bits") is not None:
            items = r.sequence(spec["bits"], f"{where}.bits")
            bits = tuple(sorted(r.integer(b, f"{where}.bits[{j}]", 0, 63) for j, b in enumerate(items)))
            if len(set(bits)) != len(bits):
                r.fail(f"{where}.bits", "bits must be unique")
        if spec.get("values") is not None:
            items = r.sequence(spec["values"], f"{where}.values")
            values = tuple(r.integer(v, f"{where}.values[{j}]") for j, v in enumerate(items))
        if bits is None and values is None:
            r.fail(where, "give bits (flags), values (classes) or both (a bit field's values)")
        if bits is not None and values is not None:
            if bits != tuple(range(bits[0], bits[0] + len(bits))):
                r.fail(f"{where}.bits", f"a bit field's bits must be contiguous, found {list(bits)}")
            for j, v in enumerate(values):
                if not 0 <= v < 2 ** len(bits):
                    r.fail(f"{where}.values[{j}]", f"{v} does not fit in {len(bits)} bit(s)")
        applies_to = r.names(spec["applies_to"], f"{where}.applies_to") if spec.get("applies_to") else ()
        for j, target in enumerate(applies_to):
            if target.lower() not in bands:
                r.fail(f"{where}.applies_to[{j}]", f"names no band of this sensor: {target!r}")
        rules.append(QARule(name=name, band=band, bits=bits, values=values, applies_to=applies_to,
                            description=str(spec.get("description", ""))))
    return tuple(rules)


__all__ = ["profile_from_dict", "read_yaml"]
