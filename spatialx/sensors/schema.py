"""The sensor description: bands, radiometry, QA rules, SAR polarimetry, as frozen values.

Everything here is built by :mod:`spatialx.sensors.loader` from one YAML file and compares by value, so a profile
written back with :meth:`SensorProfile.to_yaml` loads to an equal profile. Nothing here knows about fusion tasks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from spatialx.errors import SensorConfigError, SpatialxError

KINDS = ("optical", "sar")
POLARISATIONS = ("HH", "HV", "VH", "VV")
#: Channel layouts of the polarimetric representations, in the order this project stores them (data notes:
#: C11, Re C12, Im C12, Re C13, Im C13, C22, Re C23, Im C23, C33). ``intensity`` means one band per polarisation.
REPRESENTATIONS: dict[str, tuple[str, ...] | None] = {
    "C3": ("C11", "C12_re", "C12_im", "C13_re", "C13_im", "C22", "C23_re", "C23_im", "C33"),
    "T3": ("T11", "T12_re", "T12_im", "T13_re", "T13_im", "T22", "T23_re", "T23_im", "T33"),
    "C2": ("C11", "C12_re", "C12_im", "C22"),
    "intensity": None,
}
INTEGER_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32")
DTYPES = (*INTEGER_DTYPES, "float32", "float64")
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


class ProductMetadataError(SpatialxError):
    """DN cannot become physical values without a number that only the product's own metadata holds."""


def _integral(y: np.ndarray, x: np.ndarray) -> float:
    # The trapezoid rule by hand: numpy renamed trapz to trapezoid in 2.0 and this package supports 1.26.
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def _parse_version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(text).split("."))
    except ValueError:
        raise ProductMetadataError(f"cannot read processing baseline {text!r}",
                                   hint="give it as digits and dots, e.g. '05.10'") from None


@dataclass(frozen=True)
class ProductOffset:
    """A DN offset that each product states in its metadata, e.g. Sentinel-2 L2A ``BOA_ADD_OFFSET``.

    Physical = (DN + offset_dn) * scale + offset. A product whose metadata holds ``key`` gives the value (a number,
    or a ``{band name: number}`` mapping); otherwise, when it states its processing baseline under
    ``baseline_key``, products at or after ``since_baseline`` use ``value_since`` and older ones ``default``;
    metadata with neither field is an old product and uses ``default``.
    """

    key: str
    default: float = 0.0
    baseline_key: str | None = None
    since_baseline: str | None = None
    value_since: float | None = None

    def resolve(self, metadata: Mapping[str, Any] | None, band: str) -> float:
        if metadata is None:
            needs = f"{self.key!r}" + (f" or {self.baseline_key!r}" if self.baseline_key else "")
            raise ProductMetadataError(
                f"band {band!r}: converting DN needs the product's {needs}, which changes between products",
                hint=f"pass metadata={{{self.key!r}: ...}} read from the product's metadata file")
        if self.key in metadata:
            value = metadata[self.key]
            if isinstance(value, Mapping):
                if band not in value:
                    raise ProductMetadataError(f"band {band!r}: the product's {self.key} lists no value for it",
                                               hint=f"{self.key} lists: {', '.join(map(str, value))}")
                value = value[band]
            return float(value)
        if self.baseline_key and self.baseline_key in metadata and self.since_baseline is not None:
            newer = _parse_version(metadata[self.baseline_key]) >= _parse_version(self.since_baseline)
            return float(self.value_since if newer and self.value_since is not None else self.default)
        return float(self.default)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "default": self.default}
        for name in ("baseline_key", "since_baseline", "value_since"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@dataclass(frozen=True)
class ProductRange:
    """A DN scaling whose end points each product states, e.g. PRISMA L2 ``L2ScaleVnirMin``/``L2ScaleVnirMax``.

    Physical = min + DN * (max - min) / dn_max.
    """

    min_key: str
    max_key: str
    dn_max: float = 65535.0

    def resolve(self, metadata: Mapping[str, Any] | None, band: str) -> tuple[float, float]:
        missing = [k for k in (self.min_key, self.max_key) if metadata is None or k not in metadata]
        if missing:
            raise ProductMetadataError(
                f"band {band!r}: converting DN needs the product's {' and '.join(missing)}",
                hint=f"pass metadata={{{self.min_key!r}: ..., {self.max_key!r}: ...}} from the file's attributes")
        lo, hi = float(metadata[self.min_key]), float(metadata[self.max_key])  # type: ignore[index]
        return (hi - lo) / self.dn_max, lo

    def to_dict(self) -> dict[str, Any]:
        return {"min_key": self.min_key, "max_key": self.max_key, "dn_max": self.dn_max}


@dataclass(frozen=True)
class SpectralResponse:
    """A tabulated relative spectral response: strictly increasing wavelengths (nm) and non-negative values."""

    wavelengths_nm: tuple[float, ...]
    values: tuple[float, ...]

    def __call__(self, wavelengths_nm: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(wavelengths_nm, dtype=np.float64), self.wavelengths_nm, self.values,
                         left=0.0, right=0.0)

    def centroid_nm(self) -> float:
        wl, val = np.asarray(self.wavelengths_nm), np.asarray(self.values)
        return _integral(wl * val, wl) / _integral(val, wl)

    def fwhm_nm(self) -> float:
        """Distance between the outermost half-maximum crossings, linearly interpolated."""
        wl, val = np.asarray(self.wavelengths_nm), np.asarray(self.values)
        half = val.max() / 2.0
        above = np.flatnonzero(val >= half)
        first, last = above[0], above[-1]
        left = wl[first] if first == 0 else np.interp(half, [val[first - 1], val[first]], [wl[first - 1], wl[first]])
        right = wl[last] if last == len(wl) - 1 else \
            np.interp(half, [val[last + 1], val[last]], [wl[last + 1], wl[last]])
        return float(right - left)

    def to_dict(self) -> dict[str, list[float]]:
        return {"wavelengths_nm": list(self.wavelengths_nm), "values": list(self.values)}


@dataclass(frozen=True)
class Band:
    """One band (or one channel of a SAR representation, or one ancillary/QA layer).

    Spectral: ``center_nm`` and ``width_nm`` (the FWHM), optionally a tabulated ``response``; both absent for SAR
    channels and derived products such as LST. Radiometry, resolved against the sensor-level defaults at load:
    physical = DN * ``scale`` + ``offset`` (after any product-stated DN offset, see :meth:`linear`), with
    ``valid_range`` and ``nodata`` in DN. ``mtf_gain`` is the MTF at the Nyquist frequency of the band's own grid,
    when published.
    """

    name: str
    center_nm: float | None = None
    width_nm: float | None = None
    mtf_gain: float | None = None
    pan_weight: float = 0.0
    resolution_m: float | None = None
    response: SpectralResponse | None = None
    scale: float = 1.0
    offset: float = 0.0
    valid_range: tuple[float, float] | None = None
    nodata: float | None = None
    units: str | None = None
    dtype: str | None = None
    offset_from_product: ProductOffset | None = None
    range_from_product: ProductRange | None = None
    description: str = ""

    @property
    def fwhm_nm(self) -> float | None:
        return self.width_nm

    @property
    def needs_product_metadata(self) -> bool:
        """Whether DN -> physical depends on numbers stated by each product (see :meth:`linear`)."""
        return self.offset_from_product is not None or self.range_from_product is not None

    def response_curve(self, wavelengths_nm: np.ndarray) -> np.ndarray:
        """Relative response at ``wavelengths_nm``: the table, linearly interpolated and 0 outside it, or else a
        Gaussian of the band's centre and FWHM with peak 1."""
        wl = np.asarray(wavelengths_nm, dtype=np.float64)
        if self.response is not None:
            return self.response(wl)
        if self.center_nm is None or not self.width_nm:
            raise SensorConfigError(f"band {self.name!r} has no spectral response (no centre/FWHM, no table)",
                                    hint="SAR channels and derived products have none; give center_nm and "
                                         "fwhm_nm or a response table in the YAML")
        sigma = self.width_nm * _FWHM_TO_SIGMA
        return np.exp(-0.5 * ((wl - self.center_nm) / sigma) ** 2)

    def linear(self, metadata: Mapping[str, Any] | None = None) -> tuple[float, float]:
        """``(scale, offset)`` such that physical = DN * scale + offset for this product.

        ``metadata`` holds the product-stated numbers the profile points to (``offset_from_product`` /
        ``range_from_product`` keys); bands that need none ignore it.
        """
        scale, offset = self.scale, self.offset
        if self.range_from_product is not None:
            scale, offset = self.range_from_product.resolve(metadata, self.name)
        if self.offset_from_product is not None:
            offset = offset + self.offset_from_product.resolve(metadata, self.name) * scale
        return scale, offset

    def valid_mask(self, dn: np.ndarray) -> np.ndarray:
        """True where ``dn`` is neither nodata nor outside ``valid_range``."""
        dn = np.asarray(dn)
        ok = np.ones(dn.shape, dtype=bool)
        if self.nodata is not None:
            ok &= ~np.isnan(dn) if math.isnan(self.nodata) else dn != self.nodata
        if self.valid_range is not None:
            ok &= (dn >= self.valid_range[0]) & (dn <= self.valid_range[1])
        return ok

    def to_physical(self, dn: np.ndarray, metadata: Mapping[str, Any] | None = None, *,
                    mask: bool = True) -> np.ndarray:
        """DN to physical units (:attr:`units`); nodata and out-of-range DN become NaN unless ``mask=False``.

        The result is float64 for float64 input, float32 otherwise (computed in float64).
        """
        dn = np.asarray(dn)
        scale, offset = self.linear(metadata)
        out = dn.astype(np.float64) * scale + offset
        if mask:
            out[~self.valid_mask(dn)] = np.nan
        return out if dn.dtype == np.float64 else out.astype(np.float32)


@dataclass(frozen=True)
class QARule:
    """Which values of a QA layer mean a condition (``cloud``, ``shadow``, ``fill``, ``snow``, ``water``, ...).

    ``bits`` alone: the condition holds where any of those bits is set. ``bits`` and ``values``: the bits form one
    field (contiguous, least significant first) and the condition holds where the field's value is in ``values``.
    ``values`` alone: the whole QA value is compared (class maps such as Sentinel-2 SCL). ``applies_to`` names the
    data bands this QA layer describes (empty: all of them).
    """

    name: str
    band: str
    bits: tuple[int, ...] | None = None
    values: tuple[int, ...] | None = None
    applies_to: tuple[str, ...] = ()
    description: str = ""

    def mask(self, qa: np.ndarray) -> np.ndarray:
        """Boolean mask of the condition over a QA array (non-finite float QA values never match)."""
        qa = np.asarray(qa)
        finite = np.ones(qa.shape, dtype=bool)
        if not np.issubdtype(qa.dtype, np.integer):
            finite = np.isfinite(qa)
            qa = np.where(finite, qa, 0)
        qa = qa.astype(np.int64)
        if self.bits is None:
            hit = np.isin(qa, self.values)
        elif self.values is None:
            hit = (qa & sum(1 << b for b in self.bits)) != 0
        else:
            lo = min(self.bits)
            hit = np.isin((qa >> lo) & ((1 << len(self.bits)) - 1), self.values)
        return hit & finite

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "band": self.band}
        if self.bits is not None:
            out["bits"] = list(self.bits)
        if self.values is not None:
            out["values"] = list(self.values)
        if self.applies_to:
            out["applies_to"] = list(self.applies_to)
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class SpectralGrid:
    """A regular run of bands for an imaging spectrometer: ``count`` centres from ``start_nm`` to ``stop_nm``
    (or every ``step_nm``), one FWHM, names from ``name_format`` (``{index}``, 1-based, e.g. ``VNIR{index:02d}``).

    It is nominal when the profile says ``wavelengths_from_file``: the file's own lists (``file_keys``) win.
    """

    name_format: str
    start_nm: float
    stop_nm: float
    fwhm_nm: float
    count: int
    step_nm: float | None = None
    file_keys: tuple[tuple[str, str], ...] = ()

    def centres_nm(self) -> np.ndarray:
        if self.step_nm is not None:
            return self.start_nm + self.step_nm * np.arange(self.count)
        return np.linspace(self.start_nm, self.stop_nm, self.count)

    def names(self) -> list[str]:
        return [self.name_format.format(index=i) for i in range(1, self.count + 1)]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name_format": self.name_format, "start_nm": self.start_nm, "stop_nm": self.stop_nm}
        out.update({"step_nm": self.step_nm} if self.step_nm is not None else {"count": self.count})
        out["fwhm_nm"] = self.fwhm_nm
        if self.file_keys:
            out["file_keys"] = dict(self.file_keys)
        return out


#: Radiometric fields a band inherits from the sensor level (band-level values override).
INHERITED = ("resolution_m", "scale", "offset", "valid_range", "nodata", "units", "dtype", "offset_from_product",
             "range_from_product")
_BAND_DEFAULTS = {f: Band.__dataclass_fields__[f].default for f in Band.__dataclass_fields__}


@dataclass(frozen=True)
class SensorProfile:
    """A sensor (or a product of it) as data: bands, optional PAN, radiometry, QA rules, SAR polarimetry.

    Optional parts are ``None`` when the file has none: ``pan``, ``ratio`` (the PAN:MS resolution ratio, only with
    a PAN), ``ndvi_red``/``ndvi_nir``, ``bit_depth``. ``max_value`` is the file's, else ``2**bit_depth - 1``, else
    the top of ``valid_range``, else ``None`` (float data).
    """

    key: str
    name: str
    bands: tuple[Band, ...]
    pan: Band | None
    bit_depth: int | None
    max_value: float | None
    dtype: str
    ratio: float | None
    ndvi_red: str | None
    ndvi_nir: str | None
    nodata: float | None
    path: Path
    description: str = ""
    kind: str = "optical"
    aliases: tuple[str, ...] = ()
    resolution_m: float | None = None
    scale: float = 1.0
    offset: float = 0.0
    valid_range: tuple[float, float] | None = None
    units: str | None = None
    offset_from_product: ProductOffset | None = None
    range_from_product: ProductRange | None = None
    frequency_ghz: float | None = None
    polarisations: tuple[str, ...] = ()
    representation: str | None = None
    wavelengths_from_file: bool = False
    #: The last ``sum(g.count for g in spectral_grid)`` bands were expanded from these grids, in order.
    spectral_grid: tuple[SpectralGrid, ...] = ()
    #: Layers shipped with the product that are not bands to fuse: QA bit fields, class maps, AOT, water vapour.
    ancillary: tuple[Band, ...] = ()
    qa: tuple[QARule, ...] = ()

    @property
    def is_sar(self) -> bool:
        return self.kind == "sar"

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)

    @property
    def mtf_gains(self) -> tuple[float, ...]:
        """MTF gain at Nyquist of every band; a band without one is an error (MTF-matched methods need them all)."""
        for i, band in enumerate(self.bands):
            if band.mtf_gain is None:
                raise SensorConfigError(
                    f"band {band.name!r} of sensor {self.key!r} has no MTF gain; MTF-matched methods need one for "
                    f"every band", path=self.path, key=f"bands[{i}].mtf_gain",
                    hint="add mtf_gain to the band in the YAML")
        return tuple(b.mtf_gain for b in self.bands)  # type: ignore[misc]

    @property
    def pan_weights(self) -> tuple[float, ...]:
        return tuple(b.pan_weight for b in self.bands)

    @property
    def value_range(self) -> tuple[float, float]:
        """DN range a network scales this sensor's data by: ``valid_range``, else ``(0, max_value)``, else the
        union of the bands' valid ranges."""
        if self.valid_range is not None:
            return self.valid_range
        if self.max_value is not None:
            return (0.0, self.max_value)
        ranges = [b.valid_range for b in self.bands]
        if all(r is not None for r in ranges):
            return (min(r[0] for r in ranges), max(r[1] for r in ranges))  # type: ignore[index]
        raise SensorConfigError(f"sensor {self.key!r} states no DN range (float data without valid_range)",
                                path=self.path, key="valid_range",
                                hint="add valid_range: [lo, hi] to the YAML, or normalise the data per scene")

    @property
    def qa_conditions(self) -> tuple[str, ...]:
        return tuple(sorted({r.name for r in self.qa}))

    def band_index(self, name: str) -> int:
        """Position of a band given by name (case-insensitive)."""
        for i, band in enumerate(self.bands):
            if band.name.lower() == name.lower():
                return i
        raise SensorConfigError(f"sensor {self.key!r} has no band {name!r}; bands are {', '.join(self.band_names)}",
                                path=self.path)

    def layer(self, name: str) -> Band:
        """A band, the PAN band or an ancillary layer, by name (case-insensitive)."""
        for band in (*self.bands, *((self.pan,) if self.pan else ()), *self.ancillary):
            if band.name.lower() == name.lower():
                return band
        names = [*self.band_names, *([self.pan.name] if self.pan else []), *(a.name for a in self.ancillary)]
        raise SensorConfigError(f"sensor {self.key!r} has no layer {name!r}; layers are {', '.join(names)}",
                                path=self.path)

    def select(self, names: list[str]) -> SensorProfile:
        """A copy restricted to, and ordered like, ``names`` (for ``--bands``)."""
        bands = tuple(self.bands[self.band_index(n)] for n in names)
        return replace(self, bands=bands, spectral_grid=())

    def qa_rules(self, condition: str, band: str | None = None) -> tuple[QARule, ...]:
        """The rules for ``condition``; ``band`` (a QA layer or a data band it applies to) picks among layers."""
        rules = [r for r in self.qa if r.name.lower() == condition.lower()]
        if not rules:
            raise SensorConfigError(f"sensor {self.key!r} has no QA rule {condition!r}", path=self.path,
                                    hint=f"its QA conditions are: {', '.join(self.qa_conditions) or 'none'}")
        if band is not None:
            wanted = band.lower()
            rules = [r for r in rules if r.band.lower() == wanted or wanted in (a.lower() for a in r.applies_to)]
            if not rules:
                raise SensorConfigError(f"sensor {self.key!r} has no QA rule {condition!r} for {band!r}",
                                        path=self.path)
        if len({r.band for r in rules}) > 1:
            raise SensorConfigError(
                f"sensor {self.key!r}: {condition!r} is defined on several QA layers "
                f"({', '.join(sorted({r.band for r in rules}))})", path=self.path,
                hint="pass band= (the QA layer, or the data band it describes)")
        return tuple(rules)

    def qa_mask(self, qa: np.ndarray, *conditions: str, band: str | None = None) -> np.ndarray:
        """True where any of ``conditions`` holds in the QA array ``qa`` (e.g. ``qa_mask(qa, "cloud", "shadow")``)."""
        if not conditions:
            raise SensorConfigError("qa_mask needs at least one condition", path=self.path,
                                    hint=f"conditions: {', '.join(self.qa_conditions) or 'none'}")
        qa = np.asarray(qa)
        out = np.zeros(qa.shape, dtype=bool)
        for condition in conditions:
            for rule in self.qa_rules(condition, band):
                out |= rule.mask(qa)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain YAML-ready data; :func:`spatialx.sensors.loader.profile_from_dict` reads it back to
        an equal profile (except ``path``)."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        if self.kind != "optical":
            out["kind"] = self.kind
        if self.aliases:
            out["aliases"] = list(self.aliases)
        out["dtype"] = self.dtype
        if self.bit_depth is not None:
            out["bit_depth"] = self.bit_depth
        if self.max_value is not None and self.max_value != _derived_max(self.bit_depth, self.valid_range):
            out["max_value"] = self.max_value
        sensor_defaults = self._sensor_defaults()
        for name in INHERITED:
            if name == "dtype":
                continue
            value = sensor_defaults[name]
            if value != _BAND_DEFAULTS[name]:
                out[name] = _plain(value)
        if self.ratio is not None:
            out["ratio"] = self.ratio
        if self.ndvi_red is not None:
            out["ndvi"] = {"red": self.ndvi_red, "nir": self.ndvi_nir}
        if self.frequency_ghz is not None:
            out["frequency_ghz"] = self.frequency_ghz
        if self.polarisations:
            out["polarisations"] = list(self.polarisations)
        if self.representation is not None:
            out["representation"] = self.representation
        if self.wavelengths_from_file:
            out["wavelengths_from_file"] = True
        if self.pan is not None:
            out["pan"] = _band_dict(self.pan, {**sensor_defaults, "resolution_m": None})  # PAN's is never inherited
        generated = sum(g.count for g in self.spectral_grid)
        explicit = self.bands[:len(self.bands) - generated]
        if explicit:
            out["bands"] = [_band_dict(b, sensor_defaults) for b in explicit]
        if self.spectral_grid:
            grids, start = [], len(explicit)
            for grid in self.spectral_grid:
                template = _band_dict(self.bands[start], sensor_defaults)
                for spectral in ("name", "center_nm", "fwhm_nm", "width_nm", "response"):
                    template.pop(spectral, None)
                grids.append({**grid.to_dict(), **template})
                start += grid.count
            out["spectral_grid"] = grids
        if self.ancillary:
            plain = {**_BAND_DEFAULTS, "dtype": self.dtype}
            out["ancillary"] = [_band_dict(b, plain) for b in self.ancillary]
        if self.qa:
            out["qa"] = [r.to_dict() for r in self.qa]
        return out

    def to_yaml(self) -> str:
        header = f"# {self.name}: written by `spatialx sensors {self.key} --yaml` from {self.path}\n"
        return header + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=120,
                                       allow_unicode=True)

    def _sensor_defaults(self) -> dict[str, Any]:
        return {"resolution_m": self.resolution_m, "scale": self.scale, "offset": self.offset,
                "valid_range": self.valid_range, "nodata": self.nodata, "units": self.units, "dtype": self.dtype,
                "offset_from_product": self.offset_from_product, "range_from_product": self.range_from_product}


def _derived_max(bit_depth: int | None, valid_range: tuple[float, float] | None) -> float | None:
    if bit_depth is not None:
        return float(2**bit_depth - 1)
    return None if valid_range is None else float(valid_range[1])


def _plain(value: Any) -> Any:
    if isinstance(value, ProductOffset | ProductRange | SpectralResponse):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # DN such as nodata 0 or valid_range [7273, 43636] read better as integers
    return value


def _band_dict(band: Band, defaults: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": band.name}
    if band.center_nm is not None:
        out["center_nm"] = band.center_nm
    if band.width_nm is not None:
        out["fwhm_nm"] = band.width_nm
    if band.response is not None:
        out["response"] = band.response.to_dict()
    if band.mtf_gain is not None:
        out["mtf_gain"] = band.mtf_gain
    if band.pan_weight:
        out["pan_weight"] = band.pan_weight
    for name in INHERITED:
        value = getattr(band, name)
        if value != defaults[name] and not (name == "nodata" and _both_nan(value, defaults[name])):
            out[name] = _plain(value)
    if band.description:
        out["description"] = band.description
    return out


def _both_nan(a: Any, b: Any) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


def channel_layout(representation: str, polarisations: Sequence[str]) -> tuple[str, ...]:
    """Band names a polarimetric representation requires, in order."""
    layout = REPRESENTATIONS[representation]
    return tuple(polarisations) if layout is None else layout


__all__ = ["Band", "ProductMetadataError", "ProductOffset", "ProductRange", "QARule", "SensorProfile",
           "SpectralGrid", "SpectralResponse", "channel_layout"]
