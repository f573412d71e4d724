"""MODIS land products as one physical-valued raster: HDF4-EOS granules (MOD11A1/MYD11A1 land-surface temperature,
MOD09GA/MYD09GA surface reflectance, MCD43A4 NBAR) and MCD43A4 per-band GeoTIFF sets.

HDF4-EOS (``MOD11A1.A2021227.h11v05.061.2021228105320.hdf``): rasterio's wheel has no HDF4 driver, so the file is
read with ``pyhdf.SD``. The grid comes from the ``StructMetadata.0`` ODL (``GridName``, ``XDim``/``YDim``,
``UpperLeftPointMtrs``/``LowerRightMtrs``, which are the outer pixel edges, ``Projection=GCTP_SNSOID``): the MODIS
sinusoidal projection on a sphere of radius 6371007.181 m, pixel size ``(LR - UL) / dims`` (926.625 m for the
"1 km" grids, 463.313 m for "500 m"). The product type is ``SHORTNAME`` of ``CoreMetadata.0`` (else the file name
prefix); the date is ``RANGEBEGINNINGDATE`` (else the file name's ``AYYYYDDD``). MCD43A4 is dated by ``AYYYYDDD``,
the centre of its 16-day retrieval window (else the middle of RANGEBEGINNINGDATE..RANGEENDINGDATE).

MCD43A4 GeoTIFF sets (``MCD43A4.A2017006.h21v11.006.2017018074804_B01.TIF`` .. ``_B07.TIF``, quality in
``_B01qa.TIF`` ..): a folder holding one granule's files, or one band file of it (then that band is the default
selection). Scale and offset come from the GeoTIFF's scale/offset (rasterio ``scales``/``offsets``), nodata from
the file.

Radiometry is the MODIS land convention, taken from each SDS's attributes: value = DN * scale_factor + add_offset
(the HDF4 "calibrated" convention scale * (DN - offset) gives impossible values for these products, e.g. a view
angle DN - 65 read as DN + 65). The attributes are checked against the sensor profile (``mod11a1``, ``mod09ga``,
``mcd43a4``); when they disagree the file wins, with a warning. DN equal to ``_FillValue`` or outside
``valid_range`` are invalid, and so are pixels flagged by the product's QA rules (profile ``qa``, by ``applies_to``):
MOD11A1 QC_Day/QC_Night bits 0-1 in {2, 3} (LST not produced); MOD09GA state_1km fill, cloudy, mixed cloud and
cloud shadow (the 1 km state is mapped onto the 500 m bands by pixel centre); MCD43A4 mandatory quality fill (255;
full and magnitude inversions are both kept). Invalid pixels read 0 in ``read`` and False in ``read_valid``.

Reprojection (``warp_to``, a CRS other than the sinusoidal one): the raster is described on a grid from
``rasterio.warp.calculate_default_transform`` (about the native resolution). On its first read a reader reads the
selected bands of the whole tile (a MODIS tile is at most 2400 x 2400 per band; only the part under ``warp_bounds``
when given), reprojects them once with ``rasterio.warp.reproject`` and keeps the result in memory until it is
closed. Invalid pixels are NaN (source and destination nodata) so that they do not enter the resampling kernel of
valid ones, and the validity mask is reprojected too (bilinear, invalid where it is below 1, i.e. wherever any
invalid source pixel has weight; nearest when the data is resampled nearest).

The HDF4 library is not thread-safe: every pyhdf call holds one module-level lock, and each thread reads through
its own SD handle (:class:`ModisReader`).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError, NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from spatialx.errors import ReadError, SpatialxError
from spatialx.grid import Grid
from spatialx.io.read import PerThreadHandles, ProductFormat, RasterInfo, first_line
from spatialx.sensors import Band, QARule, SensorProfile, get_sensor

__all__ = ["FORMAT", "SINUSOIDAL", "ModisProduct", "ModisReader", "open_modis", "probe_modis"]

#: The MODIS sinusoidal grid's sphere radius (m) and CRS.
MODIS_SPHERE_RADIUS_M = 6371007.181
SINUSOIDAL = CRS.from_proj4(f"+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R={MODIS_SPHERE_RADIUS_M} +units=m +no_defs")
#: Product short name -> sensor profile key.
PRODUCTS: dict[str, str] = {"MOD11A1": "mod11a1", "MYD11A1": "mod11a1", "MOD09GA": "mod09ga", "MYD09GA": "mod09ga",
                            "MCD43A4": "mcd43a4"}
#: QA conditions (profile rule names) that make a pixel invalid, by default, per profile.
DEFAULT_QA_INVALID: dict[str, tuple[str, ...]] = {
    "mod11a1": ("fill",),
    "mod09ga": ("fill", "cloud", "cloud_mixed", "shadow"),
    "mcd43a4": ("fill",),
}
#: What the delivered values are: units and the nominal physical range a network scales them by.
PHYSICAL: dict[str, tuple[str, tuple[float, float]]] = {
    "mod11a1": ("K", (150.0, 350.0)),
    "mod09ga": ("reflectance", (0.0, 1.0)),
    "mcd43a4": ("reflectance", (0.0, 1.0)),
}
_HDF4_MAGIC = b"\x0e\x03\x13\x01"
#: Every pyhdf call holds this lock: the HDF4 library keeps global state and is not thread-safe.
_HDF4_LOCK = threading.RLock()
_GRANULE = re.compile(r"^(?P<short>[A-Z0-9]+)\.A(?P<year>\d{4})(?P<doy>\d{3})\.(?P<tile>h\d{2}v\d{2})\."
                      r"(?P<collection>\d{3})(?:\.(?P<production>\d{13}))?", re.IGNORECASE)
_TIF_FILE = re.compile(r"^(?P<granule>MCD43A4\.A\d{7}\.h\d{2}v\d{2}\.\d{3}(?:\.\d{13})?)_B(?P<band>\d{2})"
                       r"(?P<qa>qa)?\.tiff?$", re.IGNORECASE)
_PROBE_ENTRIES = 2000  # a folder listing is cut short here: probing must stay cheap on huge directories
_RELATIVE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class _Layer:
    """One raster layer of the product: an SDS of the HDF file, or a GeoTIFF of a set."""

    name: str  # the profile's name (band or QA layer)
    grid: Grid
    band: Band  # the profile's layer with the file's radiometry: scale, offset, nodata, valid_range
    sds: str | None = None
    file: Path | None = None

    @property
    def key(self) -> str:
        return self.sds if self.sds is not None else str(self.file)


@dataclass(frozen=True)
class ModisProduct:
    """What :class:`ModisReader` needs, found once by :func:`open_modis` (kept in ``RasterInfo.source``)."""

    path: Path  # the HDF file, or the folder of a GeoTIFF set
    kind: str  # "hdf" or "tif"
    short_name: str
    sensor: str  # profile key
    bands: tuple[_Layer, ...]
    #: Per selected band: (QA layer key, the rules whose hit makes the pixel invalid).
    qa: tuple[tuple[tuple[str, tuple[QARule, ...]], ...], ...]
    qa_layers: Mapping[str, _Layer]
    grid: Grid  # native (sinusoidal)
    warp_grid: Grid | None = None
    warp_resampling: str = "cubic"
    facts: Mapping[str, Any] = field(default_factory=dict, compare=False)  # for RasterInfo.metadata


# --------------------------------------------------------------------------------------------------------- probe


def _is_hdf4(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == _HDF4_MAGIC


def probe_modis(path: Path) -> bool:
    """An ``.hdf`` file with the HDF4 signature (or a MODIS granule name), an MCD43A4 band GeoTIFF, or a folder
    holding MCD43A4 band GeoTIFFs. Never raises."""
    try:
        path = Path(path)
        if path.is_file():
            if path.suffix.lower() == ".hdf":
                return _is_hdf4(path) or bool(_GRANULE.match(path.name))
            return bool(_TIF_FILE.match(path.name))
        if path.is_dir():
            with os.scandir(path) as entries:
                for i, entry in enumerate(entries):
                    if i >= _PROBE_ENTRIES:
                        break
                    match = _TIF_FILE.match(entry.name)
                    if match and not match.group("qa") and entry.is_file():
                        return True
    except (OSError, ValueError):
        return False
    return False


# ---------------------------------------------------------------------------------------------------------- open


def open_modis(path: str | os.PathLike[str], role: str = "coarse", warp_to: CRS | None = None,
               warp_resampling: str = "cubic", bands: Sequence[str] | str | None = None, product: str | None = None,
               qa_invalid: Sequence[str] | str | None = None,
               warp_bounds: Sequence[float] | None = None) -> RasterInfo:
    """Describe a MODIS product as a float32 raster of physical values (K for LST, reflectance otherwise).

    ``bands``: names from the product's sensor profile, case-insensitive (``LST_Day_1km``, ``sur_refl_b01_1``,
    ``Nadir_Reflectance_Band1``; reflectance bands also as ``B01``/``1``), a list or a comma-separated string;
    default MOD11A1 LST_Day_1km, MOD09GA and MCD43A4 their 7 reflectance bands (an MCD43A4 band file alone: that
    band). ``product``: the product the caller expects (``MOD11A1``, a profile key such as ``mod11a1``); another
    one is refused. ``qa_invalid``: the profile's QA conditions that make a pixel invalid (default
    :data:`DEFAULT_QA_INVALID`; ``[]`` reads without QA). ``warp_to``: a CRS to reproject onto (held in memory, see
    the module notes), with ``warp_resampling`` (a GDAL name) and optionally ``warp_bounds`` (left, bottom, right,
    top in that CRS; only when reprojecting) to keep only that part of the tile. Raises
    :class:`~spatialx.errors.ReadError`, one line naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise ReadError(f"{role} does not exist", path=path, hint="check the path")
    if path.is_dir() or _TIF_FILE.match(path.name):
        native = _open_tif_set(path, role, bands, product, qa_invalid)
    else:
        native = _open_hdf(path, role, bands, product, qa_invalid)
    target = _crs(warp_to, role, path) if warp_to is not None else None
    if target is None or target == native.grid.crs:
        return _describe(path, native, None)
    try:
        Resampling[warp_resampling]
    except KeyError:
        names = ", ".join(r.name for r in Resampling if r.value < 8)
        raise ReadError(f"{role}: unknown resampling {warp_resampling!r} for the reprojection", path=path,
                        hint=f"use a GDAL resampling name: {names}") from None
    grid = _warp_grid(native.grid, target, warp_bounds, role, path)
    warped = replace(native, warp_grid=grid, warp_resampling=warp_resampling)
    return _describe(path, warped, target)


def _crs(value: Any, role: str, path: Path) -> CRS:
    try:
        return value if isinstance(value, CRS) else CRS.from_user_input(value)
    except CRSError as exc:
        raise ReadError(f"{role}: cannot reproject onto {value!r} ({exc})", path=path,
                        hint="give an EPSG code or a WKT/PROJ CRS") from None


def _describe(path: Path, product: ModisProduct, target: CRS | None) -> RasterInfo:
    profile = get_sensor(product.sensor)
    units, value_range = PHYSICAL[product.sensor]
    layers = [profile.layer(b.name) for b in product.bands]
    metadata = {**product.facts, "units": units, "value_range": value_range}
    grid = product.grid if product.warp_grid is None else product.warp_grid
    extra: dict[str, Any] = {}
    if target is not None:
        extra = {"warp_crs": target, "warp_resampling": product.warp_resampling, "native_crs": product.grid.crs}
        metadata["warp"] = (f"reprojected in memory from MODIS sinusoidal onto {target.to_string()} "
                            f"({product.warp_resampling}; validity mask {_mask_resampling(product.warp_resampling)})")
    return RasterInfo(
        path=path, count=len(product.bands), dtype="float32", grid=grid, nodata=None,
        descriptions=tuple(b.name for b in product.bands), has_gcps=False, has_mask=True, source=product,
        opener=ModisReader, wavelengths_nm=tuple(layer.center_nm for layer in layers),
        fwhm_nm=tuple(layer.fwhm_nm for layer in layers), metadata=metadata, **extra)


def _equal_area_resolution(native: Grid, target: CRS) -> tuple[float, float] | None:
    """The square pixel size in ``target`` units that has the native pixel's ground area at the tile centre.

    The sinusoidal projection is equal-area, but its pixels are sheared far from the central meridian (tile h11
    spans 69-91 W), and GDAL's default (the same pixel count along the diagonal of the reprojected bounding box) then
    gives pixels up to twice as coarse as the native ones.
    """
    from rasterio.warp import transform as transform_points

    n = min(10, native.width, native.height)
    c0, r0 = (native.width - n) / 2, (native.height - n) / 2
    corners = [native.transform @ (c0 + dc, r0 + dr) for dc, dr in ((0, 0), (n, 0), (n, n), (0, n))]
    try:
        xs, ys = transform_points(native.crs, target, [x for x, _ in corners], [y for _, y in corners])
    except (RasterioError, CRSError, ValueError):
        return None
    area = 0.5 * abs(sum(xs[i] * ys[(i + 1) % 4] - xs[(i + 1) % 4] * ys[i] for i in range(4)))
    if not math.isfinite(area) or area <= 0:
        return None
    res = math.sqrt(area) / n
    return res, res


def _warp_grid(native: Grid, target: CRS, bounds: Sequence[float] | None, role: str, path: Path) -> Grid:
    from rasterio.warp import calculate_default_transform

    try:
        resolution = _equal_area_resolution(native, target)
        transform, width, height = calculate_default_transform(native.crs, target, native.width, native.height,
                                                               *native.bounds, resolution=resolution)
    except (RasterioError, CRSError, ValueError) as exc:
        raise ReadError(f"{role}: cannot reproject the MODIS tile onto {target.to_string()} ({first_line(str(exc))})",
                        path=path, hint="choose a CRS that covers the tile (UTM of its zone, or EPSG:4326)") from None
    grid = Grid(transform=transform, width=int(width), height=int(height), crs=target)
    if bounds is None:
        return grid
    try:
        left, bottom, right, top = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise ReadError(f"{role}: warp_bounds must be (left, bottom, right, top), not {bounds!r}", path=path) from None
    inv = ~transform
    cols = sorted([(inv @ (left, top))[0], (inv @ (right, bottom))[0]])
    rows = sorted([(inv @ (left, top))[1], (inv @ (right, bottom))[1]])
    c0, c1 = max(0, math.floor(cols[0] + 1e-6)), min(grid.width, math.ceil(cols[1] - 1e-6))
    r0, r1 = max(0, math.floor(rows[0] + 1e-6)), min(grid.height, math.ceil(rows[1] - 1e-6))
    if c1 <= c0 or r1 <= r0:
        raise ReadError(f"{role}: warp_bounds {tuple(bounds)} do not overlap the MODIS tile", path=path,
                        hint=f"the tile covers {tuple(round(v, 6) for v in grid.bounds)} in {target.to_string()}")
    return grid.crop(Window(c0, r0, c1 - c0, r1 - r0))


# ------------------------------------------------------------------------------------------- product and bands


def _product_key(name: str | None) -> str | None:
    """A product short name, a profile key or an alias -> the profile key, or None when it is not a MODIS one."""
    if name is None:
        return None
    text = str(name).strip()
    short = text.upper().split(".")[0]
    if short in PRODUCTS:
        return PRODUCTS[short]
    try:
        key = get_sensor(text).key
    except SpatialxError:
        return None
    return key if key in PRODUCTS.values() else None


def _supported() -> str:
    return ", ".join(PRODUCTS)


def _check_product(found: str | None, insisted: str | None, role: str, path: Path) -> str:
    key = _product_key(found)
    if key is None:
        what = f"a {found} product" if found else "not a MODIS product this reader knows (no SHORTNAME)"
        raise ReadError(f"{role} is {what}; the MODIS reader supports {_supported()}", path=path,
                        hint="give one of those products, or convert this one to a GeoTIFF")
    if insisted is not None:
        wanted = _product_key(insisted)
        if wanted is None:
            raise ReadError(f"{role}: unknown MODIS product {insisted!r}", path=path,
                            hint=f"the reader supports {_supported()}")
        if wanted != key:
            raise ReadError(f"{role} is a {found} product, not {insisted}", path=path,
                            hint=f"give a {insisted} file, or the sensor of this file ({key})")
    return key


def _band_number(name: str) -> int | None:
    match = re.fullmatch(r"(?:B|BAND)?_?0?(\d)", name.strip().upper())
    return int(match.group(1)) if match else None


def _profile_band_number(band: Band) -> int | None:
    match = re.search(r"(?:b|Band)0?(\d)(?:_1)?$", band.name)
    return int(match.group(1)) if match else None


def _select_bands(profile: SensorProfile, bands: Sequence[str] | str | None, default: tuple[str, ...], role: str,
                  path: Path) -> tuple[str, ...]:
    if bands is None:
        return default
    names = bands.split(",") if isinstance(bands, str) else [str(b) for b in bands]
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise ReadError(f"{role}: no MODIS band selected", path=path,
                        hint=f"select some of {', '.join(profile.band_names)}")
    numbered = {_profile_band_number(b): b.name for b in profile.bands if profile.units == "reflectance"}
    wanted, unknown = [], []
    for name in names:
        match = next((b.name for b in profile.bands if b.name.lower() == name.lower()), None)
        if match is None and _band_number(name) in numbered:
            match = numbered[_band_number(name)]
        if match is None:
            unknown.append(name)
        else:
            wanted.append(match)
    if unknown:
        raise ReadError(f"{role}: {profile.name} has no band {', '.join(unknown)}", path=path,
                        hint=f"its bands are {', '.join(profile.band_names)}")
    duplicated = sorted({b for b in wanted if wanted.count(b) > 1})
    if duplicated:
        raise ReadError(f"{role}: band {', '.join(duplicated)} selected twice", path=path, hint="select each band once")
    return tuple(wanted)


def _default_bands(profile: SensorProfile) -> tuple[str, ...]:
    if profile.key == "mod11a1":
        return ("LST_Day_1km",)
    return profile.band_names


def _qa_conditions(profile: SensorProfile, qa_invalid: Sequence[str] | str | None, role: str,
                   path: Path) -> tuple[str, ...]:
    if qa_invalid is None:
        return DEFAULT_QA_INVALID[profile.key]
    names = qa_invalid.split(",") if isinstance(qa_invalid, str) else [str(c) for c in qa_invalid]
    names = [n.strip().lower() for n in names if n.strip()]
    known = {c.lower() for c in profile.qa_conditions}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ReadError(f"{role}: {profile.name} has no QA condition {', '.join(unknown)}", path=path,
                        hint=f"its QA conditions are {', '.join(profile.qa_conditions)}")
    return tuple(dict.fromkeys(names))


def _qa_rules(profile: SensorProfile, band: str, conditions: tuple[str, ...]) -> dict[str, tuple[QARule, ...]]:
    """QA layer name -> the rules among ``conditions`` that apply to ``band``."""
    out: dict[str, list[QARule]] = {}
    for rule in profile.qa:
        if rule.name.lower() in conditions and (not rule.applies_to
                                                or band.lower() in (a.lower() for a in rule.applies_to)):
            out.setdefault(rule.band, []).append(rule)
    return {layer: tuple(rules) for layer, rules in out.items()}


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_RELATIVE_TOLERANCE, abs_tol=1e-12)


def _with_radiometry(band: Band, scale: float | None, offset: float | None, fill: float | None,
                     valid_range: tuple[float, float] | None, where: str, sensor: str) -> Band:
    """The profile's layer with the file's scale, offset, fill and valid range (the file wins, with a warning
    when its scale or offset differs from the profile's)."""
    if scale is not None and offset is None:
        offset = 0.0  # a scale_factor without add_offset: value = DN * scale_factor
    if scale is not None and (not _close(scale, band.scale) or not _close(offset or 0.0, band.offset)):
        warnings.warn(f"{where}: scale_factor {scale} and add_offset {offset} differ from the {sensor} profile's "
                      f"{band.scale} and {band.offset}; using the file's", UserWarning, stacklevel=4)
    return replace(band, scale=band.scale if scale is None else scale,
                   offset=band.offset if scale is None and offset is None else float(offset or 0.0),
                   nodata=band.nodata if fill is None else fill,
                   valid_range=band.valid_range if valid_range is None else valid_range)


# ---------------------------------------------------------------------------------------------------- HDF4-EOS


def _pyhdf(role: str, path: Path) -> Any:
    try:
        from pyhdf import SD as pyhdf_sd
        from pyhdf.error import HDF4Error
    except ImportError:
        raise ReadError(f"{role} is an HDF4 file and pyhdf is not installed", path=path,
                        hint="pip install pyhdf, or convert the product to GeoTIFF") from None
    return pyhdf_sd, HDF4Error


@dataclass(frozen=True)
class _Sds:
    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    attrs: Mapping[str, Any]


@dataclass(frozen=True)
class _EosGrid:
    name: str
    grid: Grid
    fields: tuple[str, ...]


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).replace("\x00", "")


def _global(attrs: Mapping[str, Any], name: str) -> str | None:
    """A global ODL attribute, joined from its ``name.0``, ``name.1``, ... parts (case-insensitive)."""
    lower = {k.lower(): v for k, v in attrs.items()}
    parts = []
    for i in range(100):
        part = lower.get(f"{name.lower()}.{i}")
        if part is None:
            break
        parts.append(_text(part))
    return "".join(parts) if parts else None


def _inventory(path: Path, role: str) -> tuple[dict[str, Any], dict[str, _Sds]]:
    pyhdf_sd, hdf4_error = _pyhdf(role, path)
    with _HDF4_LOCK:
        try:
            sd = pyhdf_sd.SD(str(path), pyhdf_sd.SDC.READ)
        except hdf4_error as exc:
            raise ReadError(f"{role} cannot be read as HDF4 ({first_line(str(exc))})", path=path,
                            hint="the file may be truncated or corrupt; re-download it") from None
        try:
            attrs = dict(sd.attributes())
            datasets = {}
            for name, (dims, shape, _type, index) in sd.datasets().items():
                sds = sd.select(index)
                try:
                    datasets[name] = _Sds(name=name, dims=tuple(dims), shape=tuple(int(s) for s in shape),
                                          attrs=dict(sds.attributes()))
                finally:
                    sds.endaccess()
        except hdf4_error as exc:
            raise ReadError(f"{role}: the HDF4 file cannot be read ({first_line(str(exc))})", path=path,
                            hint="the file may be truncated or corrupt; re-download it") from None
        finally:
            sd.end()
    return attrs, datasets


def _check_readable(path: Path, role: str, names: Sequence[str]) -> None:
    """The last row of each SDS: a truncated file fails here, at open time, not half-way through a run."""
    pyhdf_sd, hdf4_error = _pyhdf(role, path)
    name = "the file"
    with _HDF4_LOCK:
        try:
            sd = pyhdf_sd.SD(str(path), pyhdf_sd.SDC.READ)
            try:
                for name in names:
                    sds = sd.select(name)
                    try:
                        height = sds.info()[2][0]
                        sds[height - 1:height, :]
                    finally:
                        sds.endaccess()
            finally:
                sd.end()
        except (hdf4_error, ValueError) as exc:  # pyhdf reports some read failures as ValueError
            raise ReadError(f"{role}: {name} cannot be read ({first_line(str(exc))})", path=path,
                            hint="the file may be truncated or corrupt; re-download it") from None


def _odl_value(text: str | None, name: str) -> str | None:
    """VALUE of ``OBJECT = name`` in an ECS ODL block (quotes stripped)."""
    if not text:
        return None
    block = re.search(rf"\bOBJECT\s*=\s*{name}\b(.*?)\bEND_OBJECT\s*=\s*{name}\b", text, re.S)
    if block is None:
        return None
    value = re.search(r"\bVALUE\s*=\s*(\"[^\"]*\"|[^\r\n]*)", block.group(1))
    return None if value is None else value.group(1).strip().strip('"').strip()


def _odl_field(block: str, key: str) -> str | None:
    match = re.search(rf"\b{key}\s*=\s*(\"[^\"]*\"|\([^)]*\)|[^\r\n]*)", block)
    return None if match is None else match.group(1).strip().strip('"').strip()


def _numbers(text: str | None) -> list[float]:
    if text is None:
        return []
    try:
        return [float(v) for v in text.strip("()").split(",") if v.strip()]
    except ValueError:
        return []


def _eos_grids(struct: str, role: str, path: Path) -> list[_EosGrid]:
    grids = []
    for match in re.finditer(r"\bGROUP\s*=\s*(GRID_\d+)\b(.*?)\bEND_GROUP\s*=\s*\1\b", struct, re.S):
        block = match.group(2)
        name = _odl_field(block, "GridName") or match.group(1)
        projection = _odl_field(block, "Projection")
        if projection != "GCTP_SNSOID":
            raise ReadError(f"{role}: grid {name} is in projection {projection}, not the MODIS sinusoidal "
                            f"(GCTP_SNSOID)", path=path, hint="the reader reads MODIS sinusoidal tiles only")
        ul, lr = _numbers(_odl_field(block, "UpperLeftPointMtrs")), _numbers(_odl_field(block, "LowerRightMtrs"))
        dims = _numbers(_odl_field(block, "XDim")), _numbers(_odl_field(block, "YDim"))
        if len(ul) != 2 or len(lr) != 2 or len(dims[0]) != 1 or len(dims[1]) != 1:
            raise ReadError(f"{role}: StructMetadata.0 grid {name} lacks XDim, YDim, UpperLeftPointMtrs or "
                            f"LowerRightMtrs", path=path, hint="the file is damaged; re-download it")
        width, height = int(dims[0][0]), int(dims[1][0])
        if width <= 0 or height <= 0 or lr[0] <= ul[0] or ul[1] <= lr[1]:
            raise ReadError(f"{role}: StructMetadata.0 grid {name} is not a north-up grid (UL {ul}, LR {lr}, "
                            f"{width}x{height})", path=path, hint="the file is damaged; re-download it")
        params = _numbers(_odl_field(block, "ProjParams"))
        radius = params[0] if params and params[0] > 0 else MODIS_SPHERE_RADIUS_M
        crs = SINUSOIDAL if _close(radius, MODIS_SPHERE_RADIUS_M) else CRS.from_proj4(
            f"+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R={radius} +units=m +no_defs")
        transform = Affine((lr[0] - ul[0]) / width, 0.0, ul[0], 0.0, -(ul[1] - lr[1]) / height, ul[1])
        fields = tuple(re.findall(r"\bDataFieldName\s*=\s*\"?([^\"\r\n]+)\"?", block))
        grids.append(_EosGrid(name=name, grid=Grid(transform=transform, width=width, height=height, crs=crs),
                              fields=fields))
    return grids


def _sds_grid(sds: _Sds, grids: list[_EosGrid], role: str, path: Path) -> _EosGrid:
    by_field = [g for g in grids if sds.name in g.fields]
    by_dim = [g for g in grids if any(d.endswith(f":{g.name}") for d in sds.dims)]
    by_shape = [g for g in grids if (g.grid.height, g.grid.width) == sds.shape]
    found = by_field or by_dim or (by_shape if len(by_shape) == 1 else [])
    if not found:
        raise ReadError(f"{role}: StructMetadata.0 places {sds.name} on no grid", path=path,
                        hint="the file is damaged or not an HDF-EOS grid product; re-download it")
    grid = found[0]
    if sds.shape != (grid.grid.height, grid.grid.width):
        raise ReadError(f"{role}: {sds.name} is {sds.shape}, its grid {grid.name} {grid.grid.height}x"
                        f"{grid.grid.width}", path=path, hint="the file is damaged; re-download it")
    return grid


def _attr_number(attrs: Mapping[str, Any], key: str) -> float | None:
    value = attrs.get(key)
    if isinstance(value, list | tuple | np.ndarray):
        value = value[0] if len(value) == 1 else None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None  # e.g. QC_Day's _FillValue "NA"
    return number if math.isfinite(number) else None


def _attr_range(attrs: Mapping[str, Any], key: str) -> tuple[float, float] | None:
    value = attrs.get(key)
    if isinstance(value, str):
        values = _numbers(value)
    elif isinstance(value, list | tuple | np.ndarray):
        try:
            values = [float(v) for v in value]
        except (TypeError, ValueError):
            return None
    else:
        return None
    return (values[0], values[1]) if len(values) == 2 and values[0] <= values[1] else None


def _date(year: int, doy: int) -> str | None:
    try:
        return (dt.date(year, 1, 1) + dt.timedelta(days=doy - 1)).isoformat() if 1 <= doy <= 366 else None
    except (OverflowError, ValueError):
        return None


def _iso(text: str | None) -> str | None:
    if not text:
        return None
    match = re.match(r"\s*(\d{4})-(\d{2})-(\d{2})", text)
    return f"{match[1]}-{match[2]}-{match[3]}" if match else None


def _facts(short: str, name_match: re.Match[str] | None, begin: str | None, end: str | None,
           version: str | None, tile: str | None, granule: str) -> dict[str, Any]:
    named = None if name_match is None else _date(int(name_match["year"]), int(name_match["doy"]))
    if short.upper() == "MCD43A4":
        # The NBAR date is the centre of the 16-day retrieval window, which the granule name states.
        acquired = named
        if acquired is None and begin and end:
            first, last = dt.date.fromisoformat(begin), dt.date.fromisoformat(end)
            acquired = (first + (last - first) / 2).isoformat()
        acquired = acquired or begin
    else:
        acquired = begin or named
    collection = None if name_match is None else name_match["collection"]
    if collection is None and version and version.strip().isdigit():
        collection = f"{int(version):03d}"
    facts: dict[str, Any] = {"product": short.upper(), "acquired": acquired, "tile": tile, "collection": collection,
                             "granule": granule}
    if begin:
        facts["range_beginning"] = begin
    if end:
        facts["range_ending"] = end
    if version:
        facts["version_id"] = version
    return facts


def _open_hdf(path: Path, role: str, bands: Sequence[str] | str | None, insisted: str | None,
              qa_invalid: Sequence[str] | str | None) -> ModisProduct:
    if path.suffix.lower() != ".hdf":
        raise ReadError(f"{role} is not a MODIS product file (.hdf, or an MCD43A4 band GeoTIFF)", path=path,
                        hint="give the granule's .hdf file or its MCD43A4 GeoTIFF folder")
    try:
        hdf4 = _is_hdf4(path)
    except OSError as exc:
        raise ReadError(f"{role} cannot be read ({exc.strerror})", path=path) from None
    if not hdf4:
        raise ReadError(f"{role} is not an HDF4 file (no HDF4 signature)", path=path,
                        hint="MODIS .hdf granules are HDF4-EOS; the file may be truncated, or another format "
                             "renamed .hdf: re-download it")
    attrs, datasets = _inventory(path, role)
    core = _global(attrs, "CoreMetadata")
    local_id = _odl_value(core, "LOCALGRANULEID")
    name_match = _GRANULE.match(path.name) or (_GRANULE.match(local_id) if local_id else None)
    short = _odl_value(core, "SHORTNAME") or (name_match["short"].upper() if name_match else None)
    key = _check_product(short, insisted, role, path)
    assert short is not None
    struct = _global(attrs, "StructMetadata")
    if struct is None:
        raise ReadError(f"{role}: the {short} file has no StructMetadata.0 (not an HDF-EOS grid file)", path=path,
                        hint="give the granule as distributed by LP DAAC; the file may have been rewritten")
    grids = _eos_grids(struct, role, path)
    profile = get_sensor(key)
    wanted = _select_bands(profile, bands, _default_bands(profile), role, path)
    by_lower = {name.lower(): sds for name, sds in datasets.items()}

    def layer(name: str, band: Band) -> _Layer:
        sds = by_lower.get(name.lower())
        if sds is None:
            raise ReadError(f"{role}: the {short} file has no SDS {name}", path=path,
                            hint=f"its SDS are {', '.join(datasets)}; select others (bands=...)")
        if len(sds.shape) != 2:
            raise ReadError(f"{role}: SDS {sds.name} is {len(sds.shape)}-D, not an image", path=path)
        grid = _sds_grid(sds, grids, role, path).grid
        fitted = _with_radiometry(band, _attr_number(sds.attrs, "scale_factor"), _attr_number(sds.attrs, "add_offset"),
                                  _attr_number(sds.attrs, "_FillValue"), _attr_range(sds.attrs, "valid_range"),
                                  f"{path.name} {sds.name}", key)
        return _Layer(name=band.name, grid=grid, band=fitted, sds=sds.name)

    layers = tuple(layer(name, profile.layer(name)) for name in wanted)
    _check_one_grid(layers, role, path)
    conditions = _qa_conditions(profile, qa_invalid, role, path)
    qa_layers: dict[str, _Layer] = {}
    qa = []
    for band in layers:
        per_band = []
        for qa_name, rules in _qa_rules(profile, band.name, conditions).items():
            if qa_name not in qa_layers:
                ancillary = profile.layer(qa_name)
                sds = by_lower.get(qa_name.lower())
                if sds is None:
                    raise ReadError(f"{role}: the {short} file has no QA layer {qa_name}", path=path,
                                    hint="re-download the granule, or read it without QA (qa_invalid=[])")
                qa_layers[qa_name] = _Layer(name=ancillary.name, grid=_sds_grid(sds, grids, role, path).grid,
                                            band=ancillary, sds=sds.name)
            _check_qa_grid(qa_layers[qa_name], band, role, path)
            per_band.append((qa_name, rules))
        qa.append(tuple(per_band))
    _check_readable(path, role, [b.key for b in layers] + [q.key for q in qa_layers.values()])

    archive = _global(attrs, "ArchiveMetadata")
    tile = name_match["tile"].lower() if name_match else None
    if tile is None:
        h, v = _odl_value(archive, "HORIZONTALTILENUMBER"), _odl_value(archive, "VERTICALTILENUMBER")
        tile = f"h{int(h):02d}v{int(v):02d}" if h and v and h.isdigit() and v.isdigit() else None
    facts = _facts(short, name_match, _iso(_odl_value(core, "RANGEBEGINNINGDATE")),
                   _iso(_odl_value(core, "RANGEENDINGDATE")), _odl_value(core, "VERSIONID"), tile,
                   local_id or path.name)
    grid_names = {g.name for b in layers for g in grids if g.grid == b.grid and (b.sds in g.fields or len(grids) == 1)}
    facts["grid_name"] = sorted(grid_names)[0] if grid_names else None
    product = ModisProduct(path=path, kind="hdf", short_name=short.upper(), sensor=key, bands=layers, qa=tuple(qa),
                           qa_layers=qa_layers, grid=layers[0].grid)
    return _with_facts(product, facts, conditions)


def _with_facts(product: ModisProduct, facts: dict[str, Any], conditions: tuple[str, ...]) -> ModisProduct:
    facts = {**facts, "sensor": product.sensor, "format": "HDF4-EOS" if product.kind == "hdf" else "GeoTIFF set",
             "pixel_size_m": product.grid.res[0],
             "radiometry": "value = DN * scale_factor + add_offset",
             "scale_factor": {b.name: b.band.scale for b in product.bands},
             "add_offset": {b.name: b.band.offset for b in product.bands},
             "fill_value": {b.name: b.band.nodata for b in product.bands},
             "dn_valid_range": {b.name: b.band.valid_range for b in product.bands},
             "qa_invalid": list(conditions),
             "qa_layers": {b.name: [name for name, _ in rules] for b, rules in zip(product.bands, product.qa,
                                                                                    strict=True)}}
    if product.kind == "tif":
        facts["band_files"] = {b.name: str(b.file) for b in product.bands}
    return replace(product, facts=facts)


def _check_one_grid(layers: Sequence[_Layer], role: str, path: Path) -> None:
    grids = {layer.grid for layer in layers}
    if len(grids) > 1:
        sizes = ", ".join(f"{layer.name} {layer.grid.res[0]:.1f} m" for layer in layers)
        raise ReadError(f"{role}: the selected MODIS bands lie on different grids ({sizes})", path=path,
                        hint="select bands of one resolution")


def _check_qa_grid(qa: _Layer, band: _Layer, role: str, path: Path) -> None:
    if qa.grid.crs != band.grid.crs or not _covers(qa.grid, band.grid):
        raise ReadError(f"{role}: QA layer {qa.name} does not cover the grid of {band.name}", path=path,
                        hint="the file is damaged; re-download it")


def _covers(outer: Grid, inner: Grid) -> bool:
    a, b = outer.bounds, inner.bounds
    tol = 1e-3 * max(outer.res)
    return a[0] <= b[0] + tol and a[1] <= b[1] + tol and a[2] >= b[2] - tol and a[3] >= b[3] - tol


# -------------------------------------------------------------------------------------------- MCD43A4 GeoTIFFs


def _open_tif(path: Path, role: str) -> rasterio.DatasetReader:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioError as exc:
        raise ReadError(f"{role} cannot be read ({first_line(str(exc))})", path=path,
                        hint="the file may be truncated or corrupt; re-download it") from None


def _tif_files(folder: Path) -> dict[str, dict[tuple[int, bool], Path]]:
    """granule -> {(band number, is qa): file} of every MCD43A4 band file in ``folder``."""
    found: dict[str, dict[tuple[int, bool], Path]] = {}
    for file in sorted(folder.iterdir()):
        match = _TIF_FILE.match(file.name)
        if match and file.is_file():
            found.setdefault(match["granule"], {})[(int(match["band"]), bool(match["qa"]))] = file
    return found


def _open_tif_set(path: Path, role: str, bands: Sequence[str] | str | None, insisted: str | None,
                  qa_invalid: Sequence[str] | str | None) -> ModisProduct:
    folder = path if path.is_dir() else path.parent
    sets = _tif_files(folder)
    if path.is_dir():
        if not sets:
            raise ReadError(f"{role}: the folder holds no MCD43A4 band GeoTIFF (MCD43A4.AYYYYDDD.hNNvNN.CCC.*_B01.TIF)",
                            path=path, hint="give the folder of one granule's band files, or one band file")
        if len(sets) > 1:
            names = ", ".join(sorted(sets)[:3]) + (", ..." if len(sets) > 3 else "")
            raise ReadError(f"{role}: the folder holds {len(sets)} MCD43A4 granules ({names})", path=path,
                            hint="give one band file of the granule you mean, or a folder holding one granule")
        granule, named = next(iter(sets)), None
    else:
        match = _TIF_FILE.match(path.name)
        assert match is not None
        granule, named = match["granule"], int(match["band"])
    files = sets[granule]
    key = _check_product("MCD43A4", insisted, role, path)
    profile = get_sensor(key)
    numbers = {_profile_band_number(b): b.name for b in profile.bands}
    if named is not None and named not in numbers:
        raise ReadError(f"{role}: MCD43A4 has no band B{named:02d}", path=path,
                        hint=f"its bands are B01 to B{len(numbers):02d}")
    default = profile.band_names if named is None else (numbers[named],)
    wanted = _select_bands(profile, bands, default, role, path)
    number_of = {name: n for n, name in numbers.items()}
    missing = [f"B{number_of[name]:02d}" for name in wanted if (number_of[name], False) not in files]
    if missing:
        present = sorted(f"B{n:02d}" for n, qa in files if not qa)
        raise ReadError(f"{role}: MCD43A4 granule {granule} has no {', '.join(missing)} file in {folder}", path=path,
                        hint=f"it has {', '.join(present) or 'no band file'}: select those (bands=...) or add the "
                             f"missing files")
    layers = []
    facts_tags: dict[str, str] = {}
    for name in wanted:
        file = files[(number_of[name], False)]
        layers.append(_tif_layer(file, profile.layer(name), role, key))
        if not facts_tags:
            with _open_tif(file, role) as src:
                facts_tags = dict(src.tags())
    _check_one_grid(layers, role, path)
    conditions = _qa_conditions(profile, qa_invalid, role, path)
    qa_layers: dict[str, _Layer] = {}
    qa = []
    for band in layers:
        per_band = []
        for qa_name, rules in _qa_rules(profile, band.name, conditions).items():
            number = number_of[band.name]
            if (number, True) not in files:
                raise ReadError(f"{role}: MCD43A4 granule {granule} has no quality file _B{number:02d}qa.TIF for "
                                f"{band.name}", path=path,
                                hint="add the band's qa file, or read without QA (qa_invalid=[])")
            qa_file = files[(number, True)]
            if qa_name not in qa_layers:
                qa_layers[qa_name] = _tif_qa_layer(qa_file, profile.layer(qa_name), role)
            _check_qa_grid(qa_layers[qa_name], band, role, path)
            per_band.append((qa_name, rules))
        qa.append(tuple(per_band))
    name_match = _GRANULE.match(granule)
    facts = _facts("MCD43A4", name_match, _iso(facts_tags.get("RANGEBEGINNINGDATE")),
                   _iso(facts_tags.get("RANGEENDINGDATE")), facts_tags.get("VERSIONID"),
                   name_match["tile"].lower() if name_match else None,
                   facts_tags.get("LOCALGRANULEID") or granule)
    product = ModisProduct(path=path, kind="tif", short_name="MCD43A4", sensor=key, bands=tuple(layers),
                           qa=tuple(qa), qa_layers=qa_layers, grid=layers[0].grid)
    return _with_facts(product, facts, conditions)


def _file_grid(src: rasterio.DatasetReader, role: str, path: Path) -> Grid:
    if not src.crs:
        raise ReadError(f"{role}: {path.name} has no CRS", path=path,
                        hint="MCD43A4 GeoTIFFs are in the MODIS sinusoidal CRS; re-download or re-export the file")
    if src.transform.b != 0 or src.transform.d != 0:
        raise ReadError(f"{role}: {path.name} is not a north-up grid", path=path)
    return Grid(transform=src.transform, width=src.width, height=src.height, crs=src.crs)


def _check_last_block(src: rasterio.DatasetReader, role: str, path: Path) -> None:
    try:
        block_h, block_w = src.block_shapes[0]
        src.read(1, window=Window(max(0, src.width - block_w), max(0, src.height - block_h),
                                  min(block_w, src.width), min(block_h, src.height)))
    except RasterioError as exc:
        raise ReadError(f"{role}: {path.name} cannot be read ({first_line(str(exc))})", path=path,
                        hint="the file may be truncated or corrupt; re-download it") from None


def _tif_layer(file: Path, band: Band, role: str, key: str) -> _Layer:
    with _open_tif(file, role) as src:
        grid = _file_grid(src, role, file)
        tags = src.tags()
        _check_last_block(src, role, file)
        scale, offset = float(src.scales[0]), float(src.offsets[0])
        stated = "scale_factor" in tags or not (scale == 1.0 and offset == 0.0)
        fill = src.nodata if src.nodata is not None else _attr_number(tags, "_FillValue")
        fitted = _with_radiometry(band, scale if stated else None, offset if stated else None,
                                  None if fill is None else float(fill), _attr_range(tags, "valid_range"),
                                  file.name, key)
    return _Layer(name=band.name, grid=grid, band=fitted, file=file)


def _tif_qa_layer(file: Path, band: Band, role: str) -> _Layer:
    with _open_tif(file, role) as src:
        grid = _file_grid(src, role, file)
        _check_last_block(src, role, file)
    return _Layer(name=band.name, grid=grid, band=band, file=file)


# -------------------------------------------------------------------------------------------------------- reader



def _mask_resampling(resampling: str) -> str:
    return "nearest" if resampling == "nearest" else "bilinear"


class _SDHandle:
    """One pyhdf SD file and the SDS selected from it, closed under the HDF4 lock."""

    def __init__(self, path: Path):
        pyhdf_sd, hdf4_error = _pyhdf("input", path)
        self.error = hdf4_error
        with _HDF4_LOCK:
            try:
                self.sd = pyhdf_sd.SD(str(path), pyhdf_sd.SDC.READ)
            except hdf4_error as exc:
                raise ReadError(f"cannot reopen ({first_line(str(exc))})", path=path,
                                hint="the file may have been moved, truncated or replaced") from None
        self.selected: dict[str, Any] = {}

    def read(self, name: str, rows: slice, cols: slice) -> np.ndarray:
        with _HDF4_LOCK:
            sds = self.selected.get(name)
            if sds is None:
                sds = self.selected[name] = self.sd.select(name)
            return np.asarray(sds[rows, cols])

    def close(self) -> None:
        with _HDF4_LOCK:
            for sds in self.selected.values():
                sds.endaccess()
            self.selected.clear()
            self.sd.end()


class ModisReader(PerThreadHandles):
    """Windowed reads of a MODIS product as float32 physical values, safe to call from many threads.

    Each thread reads through its own pyhdf SD handle (or rasterio dataset, for GeoTIFF sets), every pyhdf call
    under one module-level lock. A reprojected product (``RasterInfo.warp_crs``) is read and reprojected once, on
    the first read, and held in memory until :meth:`close`.
    """

    def __init__(self, info: RasterInfo):
        if not isinstance(info.source, ModisProduct):
            raise TypeError("ModisReader reads a RasterInfo made by open_modis")
        super().__init__(info)
        self.product: ModisProduct = info.source
        self._cache = threading.local()  # the last window's (values, valid) of this thread
        self._warp_lock = threading.Lock()
        self._warped: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------------------------------------ raw layers

    def _layer_dn(self, layer: _Layer, rows: slice, cols: slice) -> np.ndarray:
        if layer.sds is not None:
            handle: _SDHandle = self.handle("sd", lambda: _SDHandle(self.product.path))
            try:
                return handle.read(layer.sds, rows, cols)
            except (handle.error, ValueError) as exc:  # pyhdf reports some read failures as ValueError
                raise ReadError(f"read of {layer.sds} failed ({first_line(str(exc))})", path=self.product.path,
                                hint="the file may be truncated or corrupt") from None
        assert layer.file is not None
        file = layer.file
        src = self.handle(file, lambda: _open_tif(file, "input"))
        try:
            return src.read(1, window=Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start))
        except RasterioError as exc:
            raise ReadError(f"read failed ({first_line(str(exc))})", path=file,
                            hint="the file may be truncated or corrupt") from None

    def _qa_on(self, qa: _Layer, grid: Grid, rows: slice, cols: slice) -> np.ndarray:
        """QA values of the ``grid`` pixels ``rows`` x ``cols``: those of the QA pixel holding each pixel's centre
        (its nodata, or 0, where the QA layer does not cover it)."""
        if qa.grid == grid:
            return self._layer_dn(qa, rows, cols)
        band, q = grid.transform, qa.grid.transform
        y = band.f + (np.arange(rows.start, rows.stop, dtype=np.float64) + 0.5) * band.e
        x = band.c + (np.arange(cols.start, cols.stop, dtype=np.float64) + 0.5) * band.a
        qa_rows = np.floor((y - q.f) / q.e).astype(np.int64)
        qa_cols = np.floor((x - q.c) / q.a).astype(np.int64)
        row_in = (qa_rows >= 0) & (qa_rows < qa.grid.height)
        col_in = (qa_cols >= 0) & (qa_cols < qa.grid.width)
        fill = qa.band.nodata if qa.band.nodata is not None else 0
        out = np.full((y.size, x.size), fill, dtype=np.float64)
        if row_in.any() and col_in.any():
            r0, r1 = int(qa_rows[row_in].min()), int(qa_rows[row_in].max()) + 1
            c0, c1 = int(qa_cols[col_in].min()), int(qa_cols[col_in].max()) + 1
            block = self._layer_dn(qa, slice(r0, r1), slice(c0, c1))
            out[np.ix_(row_in, col_in)] = block[np.ix_(qa_rows[row_in] - r0, qa_cols[col_in] - c0)]
            return out.astype(block.dtype)
        return out.astype(np.int64)

    def _native(self, rows: slice, cols: slice, indexes: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Physical values (NaN where invalid) and per-band validity of native pixels ``rows`` x ``cols``."""
        product = self.product
        shape = (len(indexes), rows.stop - rows.start, cols.stop - cols.start)
        values = np.full(shape, np.nan, dtype=np.float32)
        valid = np.zeros(shape, dtype=bool)
        if shape[1] == 0 or shape[2] == 0:
            return values, valid
        qa_values: dict[str, np.ndarray] = {}
        with self.reading():
            for k, i in enumerate(indexes):
                layer = product.bands[i]
                dn = self._layer_dn(layer, rows, cols)
                ok = layer.band.valid_mask(dn)
                for qa_name, rules in product.qa[i]:
                    if qa_name not in qa_values:
                        qa_values[qa_name] = self._qa_on(product.qa_layers[qa_name], product.grid, rows, cols)
                    for rule in rules:
                        ok &= ~rule.mask(qa_values[qa_name])
                physical = dn.astype(np.float64) * layer.band.scale + layer.band.offset
                values[k] = np.where(ok, physical, np.nan)
                valid[k] = ok
        return values, valid

    # ---------------------------------------------------------------------------------------------- reprojection

    def _warp(self) -> tuple[np.ndarray, np.ndarray]:
        """Every band reprojected onto the warp grid: (values with 0 where invalid, per-band validity)."""
        with self._warp_lock:
            if self._warped is not None:
                return self._warped
            from rasterio.warp import reproject

            product, target = self.product, self.product.warp_grid
            assert target is not None
            rows, cols = self._source_window(target)
            count = len(product.bands)
            src_transform = product.grid.transform @ Affine.translation(cols.start, rows.start)
            out = np.zeros((count, target.height, target.width), dtype=np.float32)
            ok = np.zeros((count, target.height, target.width), dtype=bool)
            resampling = product.warp_resampling
            common = {"src_transform": src_transform, "src_crs": product.grid.crs, "dst_transform": target.transform,
                      "dst_crs": target.crs}
            for i in range(count):  # band by band: the temporaries stay at one band's size
                values, valid = self._native(rows, cols, [i])
                if not values.size:
                    continue
                band = np.full((target.height, target.width), np.nan, dtype=np.float32)
                weight = np.zeros((target.height, target.width), dtype=np.float32)
                try:
                    reproject(values[0], band, resampling=Resampling[resampling], src_nodata=np.nan,
                              dst_nodata=np.nan, **common)
                    reproject(valid[0].astype(np.float32), weight, resampling=Resampling[_mask_resampling(resampling)],
                              **common)
                except (RasterioError, CRSError, ValueError) as exc:
                    raise ReadError(f"reprojection onto {target.crs} failed ({first_line(str(exc))})",
                                    path=product.path) from None
                ok[i] = (weight >= 1.0 - 1e-4) & np.isfinite(band)
                out[i] = np.where(ok[i], band, np.float32(0.0))
            self._warped = (out, ok)
            return self._warped

    def _source_window(self, target: Grid) -> tuple[slice, slice]:
        """The native rows and columns the warp grid needs (with a margin for the resampling kernel)."""
        from rasterio.warp import transform_bounds

        native = self.product.grid
        try:
            left, bottom, right, top = transform_bounds(target.crs, native.crs, *target.bounds, densify_pts=51)
            window = native.window_inside((left, bottom, right, top))
        except (RasterioError, CRSError, ValueError):
            window = Window(0, 0, native.width, native.height)
        if not all(math.isfinite(v) for v in (window.col_off, window.row_off, window.width, window.height)):
            window = Window(0, 0, native.width, native.height)
        margin = 4
        r0, c0 = max(0, int(window.row_off) - margin), max(0, int(window.col_off) - margin)
        r1 = min(native.height, int(window.row_off + window.height) + margin)
        c1 = min(native.width, int(window.col_off + window.width) + margin)
        if r1 <= r0 or c1 <= c0:
            return slice(0, native.height), slice(0, native.width)
        return slice(r0, r1), slice(c0, c1)

    # -------------------------------------------------------------------------------------------------- interface

    def _slices(self, window: Window) -> tuple[slice, slice]:
        r0, c0 = int(window.row_off), int(window.col_off)
        r1, c1 = r0 + int(window.height), c0 + int(window.width)
        grid = self.info.grid
        if r0 < 0 or c0 < 0 or r1 > grid.height or c1 > grid.width or r1 < r0 or c1 < c0:
            raise ValueError(f"window {window} is not inside the {grid.width}x{grid.height} raster")
        return slice(r0, r1), slice(c0, c1)

    def _block(self, window: Window, bands: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
        """(values with 0 where invalid, per-band validity) of ``window``; the last window of this thread is kept,
        so that ``read`` then ``read_valid`` of one window reads the file once."""
        indexes = self.band_indexes(bands)
        rows, cols = self._slices(window)
        key = (rows.start, rows.stop, cols.start, cols.stop, tuple(indexes))
        cached = getattr(self._cache, "last", None)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        if self.product.warp_grid is not None:
            values, valid = self._warp()
            block = values[indexes, rows, cols], valid[indexes, rows, cols]
        else:
            raw, ok = self._native(rows, cols, indexes)
            block = np.where(ok, raw, np.float32(0.0)).astype(np.float32), ok
        self._cache.last = (key, *block)
        return block

    def read(self, window: Window, bands: list[int] | None = None) -> np.ndarray:
        """Physical values of ``window`` (inside the raster) as float32 (bands, rows, cols); invalid pixels read 0,
        so that resampling spreads no fill value or NaN into valid neighbours."""
        return self._block(window, bands)[0].copy()

    def read_valid(self, window: Window, bands: list[int] | None = None) -> np.ndarray:
        """True where every selected band holds a valid value (not fill, inside valid_range, not flagged by QA)."""
        return np.all(self._block(window, bands)[1], axis=0)

    def read_band_valid(self, window: Window, bands: list[int] | None = None) -> np.ndarray:
        """Validity per selected band, (bands, rows, cols)."""
        return self._block(window, bands)[1].copy()

    def close(self, timeout: float = 30.0) -> None:
        super().close(timeout)
        self._warped = None
        self._cache = threading.local()


FORMAT = ProductFormat(name="MODIS", probe=probe_modis, open=open_modis, warps=True)
