"""STAC Items and Collections for spatialx products, described from the product file itself.

The item says what the file says: its footprint, grid, bands and the ``SPATIALX_*`` tags the writer put there, so an
item built later (or by another program) from the same file is the same item. Only headers are read, never pixels.

Extensions are pystac's own classes. pystac 1.15 writes STAC 1.1.0 items with the extension versions it ships:
projection v2.0.0 (``proj:code``, or ``proj:wkt2`` for a CRS without an authority code; ``proj:shape``,
``proj:transform``, ``proj:bbox``) on the item, and eo v1.1.0 ``eo:bands`` and raster v1.1.0 ``raster:bands`` on each
raster asset. pystac 1.15 does not yet write the STAC 1.1 common ``bands`` array for these extensions; ``eo:bands`` /
``raster:bands`` on assets is what their v1.1.0 schemas validate, and what stac-validator and QGIS's STAC browser
read. The processing extension (``processing:software``) has no pystac class: its fields are plain properties and its
schema URL is added by hand.

Hrefs: items keep absolute paths in memory; :func:`write_stac_item` writes every asset and ``derived_from`` link
relative to the item's folder, and no ``self`` link, so a folder of items and products can be moved or served as it
is (``pystac.Item.from_file`` resolves them against the item file).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import rasterio
import rasterio.warp
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, NoDataStrings, RasterBand, RasterExtension
from pystac.utils import make_relative_href
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from spatialx import __version__
from spatialx.errors import OutputError, ReadError, SpatialxError
from spatialx.io.outputs import atomic_write_text
from spatialx.io.read import _band_wavelengths, open_raster

__all__ = ["COG_MEDIA_TYPE", "PROCESSING_SCHEMA", "stac_item", "write_collection", "write_stac_item"]

COG_MEDIA_TYPE = str(pystac.MediaType.COG)
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
#: Points per footprint edge: a UTM edge becomes a curve in lon/lat, and its bulge can exceed the corners' extent.
EDGE_POINTS = 21
#: Keys of a reader's product metadata (:attr:`~spatialx.io.read.RasterInfo.metadata`) that hold the acquisition.
ACQUISITION_KEYS = ("acquired", "acquisition_datetime", "acquisition_date", "acquisition_start")
#: Common band names given only when the centre wavelength (nm) leaves no doubt; ranges from the EO extension's
#: table, made disjoint (its red and yellow, nir and nir08 overlap), for narrow bands of multispectral products.
COMMON_NAMES_NM = (("coastal", 400, 450), ("blue", 450, 510), ("green", 510, 580), ("yellow", 585, 625),
                   ("red", 625, 690), ("rededge", 690, 750), ("nir", 750, 1000), ("cirrus", 1350, 1400),
                   ("swir16", 1550, 1750), ("swir22", 2080, 2350), ("lwir", 10500, 12500))
#: Wider than this (FWHM, nm) a visible band is a panchromatic one, whatever its centre.
PAN_MIN_FWHM_NM = 150.0
#: From this many bands a product is a cube: per-band colour names would say nothing.
CUBE_MIN_BANDS = 100

_DATA_TYPES = {member.value: member for member in DataType}
_TIFF_DATETIME = "%Y:%m:%d %H:%M:%S"


def _open(path: Path, what: str) -> rasterio.DatasetReader:
    if not path.exists():
        raise ReadError(f"{what} does not exist", path=path, hint="check the path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioError as exc:
        text = str(exc).strip().splitlines()
        raise ReadError(f"{what} is not a raster GDAL can read ({text[0] if text else type(exc).__name__})",
                        path=path) from None


def _json_tag(tags: Mapping[str, str], key: str) -> Any:
    """A ``SPATIALX_*`` tag: JSON when the writer encoded it (mappings, lists), else the text as written."""
    text = tags.get(key)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _plain(value: Any) -> Any:
    """``value`` as JSON types: numpy scalars and arrays unwrapped, non-finite numbers null (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


# --------------------------------------------------------------------------------------------------------------
# Dates.


def _parse_datetime(value: Any) -> dt.datetime | None:
    """An ISO date or datetime (``Z`` or an offset; naive is UTC), or GeoTIFF's ``YYYY:MM:DD HH:MM:SS``."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        if not text:
            return None
        try:
            moment = dt.datetime.strptime(text, _TIFF_DATETIME)
        except ValueError:
            # fromisoformat before Python 3.11 takes neither "Z" nor "YYYYMMDD".
            text = re.sub(r"[Zz]$", "+00:00", text)
            if re.fullmatch(r"\d{8}", text):
                text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
            try:
                moment = dt.datetime.fromisoformat(text)
            except ValueError:
                return None
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def _prediction_date(dates: Mapping[str, dt.datetime], params: Any) -> dt.datetime | None:
    """The date a product stands for when its inputs span several: the prediction of a spatio-temporal fusion.

    In order: the method's own ``predict`` parameter; a label that says prediction or target; the one coarse
    acquisition without a fine image of its date (stfuse labels its roles ``fine <date>`` / ``coarse <date>``).
    """
    if isinstance(params, Mapping) and params.get("predict"):
        found = _parse_datetime(params["predict"])
        if found is not None:
            return found
    labelled = [moment for label, moment in dates.items() if re.search(r"predict|target", label, re.IGNORECASE)]
    if len(set(labelled)) == 1:
        return labelled[0]
    fine = {moment for label, moment in dates.items() if label.lower().startswith("fine")}
    coarse_only = {moment for label, moment in dates.items() if label.lower().startswith("coarse")} - fine
    return next(iter(coarse_only)) if fine and len(coarse_only) == 1 else None


def _input_date(path: Path) -> dt.datetime | None:
    """An input's acquisition as its reader states it, else its GeoTIFF ``TIFFTAG_DATETIME``.

    An input that cannot be opened any more (moved, deleted since the run) states no date: the item is about the
    product, which is still linked to it by name.
    """
    try:
        info = open_raster(path, role="input")
    except SpatialxError:
        return None
    for key in ACQUISITION_KEYS:
        found = _parse_datetime(info.metadata.get(key)) if info.metadata.get(key) else None
        if found is not None:
            return found
    if info.opener is not None:  # a sensor product folder or container: no GeoTIFF tags of its own
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                stamp = src.tags().get("TIFFTAG_DATETIME")
    except RasterioError:
        return None
    return _parse_datetime(stamp) if stamp else None


def _dates(product: Path, tags: Mapping[str, str], params: Any,
           inputs: Mapping[str, Path]) -> tuple[dt.datetime | None, dt.datetime | None, dt.datetime | None, str]:
    """(datetime, start, end, source): from the product's ``SPATIALX_DATES``, else its inputs, else the file."""
    labelled = _json_tag(tags, "SPATIALX_DATES")
    found: dict[str, dt.datetime] = {}
    if isinstance(labelled, Mapping):
        found = {str(k): moment for k, v in labelled.items() if (moment := _parse_datetime(v)) is not None}
    source = "product"
    if found:
        predicted = _prediction_date(found, params)
        if predicted is not None:
            return predicted, None, None, source
    else:
        source = "inputs"
        found = {label: moment for label, path in inputs.items() if (moment := _input_date(Path(path))) is not None}
    moments = sorted(set(found.values()))
    if len(moments) == 1:
        return moments[0], None, None, source
    if moments:
        return None, moments[0], moments[-1], source
    # STAC needs a datetime or a range; when nothing states the acquisition, the product's own time is all there is.
    mtime = dt.datetime.fromtimestamp(product.stat().st_mtime, tz=dt.timezone.utc).replace(microsecond=0)
    return mtime, None, None, "file"


# --------------------------------------------------------------------------------------------------------------
# Geometry and grid.


def _edge_pixels(width: int, height: int) -> list[tuple[float, float]]:
    """The outline of the image in pixel coordinates, corners included, closed, counter-clockwise on the map
    for a north-up grid (GeoJSON's right-hand rule)."""
    steps = np.linspace(0.0, 1.0, EDGE_POINTS)[:-1]
    ring = [(0.0, height * t) for t in steps]  # left edge, top to bottom
    ring += [(width * t, float(height)) for t in steps]  # bottom, left to right
    ring += [(float(width), height * (1 - t)) for t in steps]  # right, bottom to top
    ring += [(width * (1 - t), 0.0) for t in steps]  # top, right to left
    return [*ring, ring[0]]


def _footprint(src: rasterio.DatasetReader) -> dict[str, Any] | None:
    if not src.crs:
        return None
    ring = [src.transform @ xy for xy in _edge_pixels(src.width, src.height)]
    polygon = {"type": "Polygon", "coordinates": [[list(map(float, xy)) for xy in ring]]}
    try:
        return rasterio.warp.transform_geom(src.crs, "EPSG:4326", polygon, precision=7)
    except (RasterioError, ValueError) as exc:
        raise ReadError(f"cannot transform the footprint to WGS84 ({exc})", path=src.name) from None


def _coordinates(geometry: Mapping[str, Any]) -> Iterable[tuple[float, float]]:
    def walk(node: Any) -> Iterable[tuple[float, float]]:
        if node and isinstance(node[0], (int, float)):
            yield float(node[0]), float(node[1])
        else:
            for child in node:
                yield from walk(child)

    yield from walk(geometry["coordinates"])


def _bbox(geometry: Mapping[str, Any] | None) -> list[float] | None:
    if geometry is None:
        return None
    xs, ys = zip(*_coordinates(geometry), strict=True)
    return [min(xs), min(ys), max(xs), max(ys)]


def _apply_projection(item: pystac.Item, src: rasterio.DatasetReader) -> None:
    ProjectionExtension.add_to(item)
    proj = ProjectionExtension.ext(item)
    code = wkt2 = None
    if src.crs:
        authority = src.crs.to_authority()
        if authority is not None:
            code = f"{authority[0]}:{authority[1]}"
        else:
            wkt2 = src.crs.to_wkt(version="WKT2_2019")
    georeferenced = bool(src.crs) or not src.transform.is_identity
    proj.apply(code=code, wkt2=wkt2, shape=[src.height, src.width],
               transform=[float(v) for v in src.transform] if georeferenced else None,
               bbox=[float(v) for v in src.bounds] if src.crs else None)


# --------------------------------------------------------------------------------------------------------------
# Bands.


def _sensor_descriptions(sensor: Any) -> dict[str, str]:
    """Band name -> the profile's description, when the product names one known sensor."""
    if not isinstance(sensor, str):
        return {}
    from spatialx.sensors import get_sensor

    try:
        profile = get_sensor(sensor)
    except SpatialxError:
        return {}
    bands = [*profile.bands, *((profile.pan,) if profile.pan else ())]
    return {band.name: band.description for band in bands if band.description}


def _common_name(center_nm: float | None, fwhm_nm: float | None, color: str, count: int) -> str | None:
    if count >= CUBE_MIN_BANDS:
        return None
    if center_nm is not None and fwhm_nm is not None and fwhm_nm >= PAN_MIN_FWHM_NM and 450 <= center_nm <= 900:
        return "pan"
    if center_nm is None:
        # A colour the writer stated (BandInfo.color) names a visible band even without a wavelength.
        return color if color in ("red", "green", "blue") else None
    return next((name for name, low, high in COMMON_NAMES_NM if low <= center_nm < high), None)


def _nodata(value: float | None) -> float | NoDataStrings | None:
    if value is None:
        return None
    if math.isnan(value):
        return NoDataStrings.NAN
    if math.isinf(value):
        return NoDataStrings.INF if value > 0 else NoDataStrings.NINF
    return float(value)


def _apply_bands(item: pystac.Item, asset: pystac.Asset, src: rasterio.DatasetReader,
                 descriptions: Mapping[str, str]) -> None:
    # Wavelengths as the project's readers understand them (band tags, GDAL IMAGERY, ENVI headers).
    waves = _band_wavelengths(src)
    centres = waves["wavelengths_nm"] or (None,) * src.count
    widths = waves["fwhm_nm"] or (None,) * src.count
    res_x, res_y = (abs(v) for v in src.res)
    # raster:bands holds one number: only square pixels have one resolution.
    square = bool(src.crs) and math.isclose(res_x, res_y, rel_tol=1e-9)
    eo_bands, raster_bands = [], []
    for index in range(src.count):
        name = src.descriptions[index] or f"band {index + 1}"
        centre, width = centres[index], widths[index]
        eo_bands.append(Band.create(
            name=name, description=descriptions.get(name),
            common_name=_common_name(centre, width, src.colorinterp[index].name, src.count),
            center_wavelength=None if centre is None else round(centre / 1000, 6),
            full_width_half_max=None if width is None else round(width / 1000, 6)))
        scale, offset = src.scales[index], src.offsets[index]
        raster_bands.append(RasterBand.create(
            nodata=_nodata(src.nodatavals[index]), data_type=_DATA_TYPES.get(src.dtypes[index], DataType.OTHER),
            scale=None if scale == 1 else float(scale), offset=None if offset == 0 else float(offset),
            spatial_resolution=float(res_x) if square else None, unit=src.units[index] or None))
    EOExtension.add_to(item)
    RasterExtension.add_to(item)
    EOExtension.ext(asset).apply(bands=eo_bands)
    RasterExtension.ext(asset).apply(bands=raster_bands)


def _raster_media_type(src: rasterio.DatasetReader) -> str:
    # GDAL >= 3.1 reports the COG layout of a file it opens; a plain GeoTIFF must not claim to be one.
    cog = src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT", "").upper() == "COG"
    return COG_MEDIA_TYPE if cog else str(pystac.MediaType.GEOTIFF)


def _side_asset(item: pystac.Item, key: str, path: Path, descriptions: Mapping[str, str]) -> pystac.Asset:
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        with _open(path, f"side product {key!r}") as src:
            asset = pystac.Asset(str(path.absolute()), title=path.name, media_type=_raster_media_type(src),
                                 roles=["data"])
            _apply_bands(item, asset, src, descriptions)
        return asset
    if not path.exists():
        raise ReadError(f"side product {key!r} does not exist", path=path, hint="check the path")
    media_type = {".qml": str(pystac.MediaType.XML), ".json": str(pystac.MediaType.JSON),
                  ".png": str(pystac.MediaType.PNG), ".html": str(pystac.MediaType.HTML)}.get(suffix)
    role = "overview" if suffix == ".png" else "metadata"
    return pystac.Asset(str(path.absolute()), title=path.name, media_type=media_type, roles=[role])


# --------------------------------------------------------------------------------------------------------------
# The item.


def stac_item(product: Path, *, inputs: Mapping[str, Path], quality: Mapping | None = None,
              seconds: float | None = None, item_id: str | None = None,
              extra_assets: Mapping[str, Path] | None = None) -> pystac.Item:
    """A STAC Item for the spatialx product ``product``, from its headers and tags.

    ``inputs`` (role label -> path) become ``derived_from`` links titled by role; ``extra_assets`` (key -> path)
    are the side products: GeoTIFFs (NDVI, layers) get roles ``["data"]`` and their own bands, ``.qml`` styles and
    ``.json`` reports ``["metadata"]``. ``quality`` (index -> value) and ``seconds`` (run time) become
    ``spatialx:quality`` and ``spatialx:seconds``.

    Geometry and bbox: the image outline, densified, in WGS84; both null for a product without CRS. Time: the
    product's ``SPATIALX_DATES`` (a spatio-temporal fusion's prediction date; other series a start/end range),
    else the inputs' acquisition dates (one date: ``datetime``; several: ``start_datetime``/``end_datetime``),
    else the product's modification time; ``spatialx:datetime_source`` says which ("product", "inputs", "file").
    The item id defaults to the product's file stem. Bands are ``eo:bands`` / ``raster:bands`` on the raster
    assets and the grid is ``proj:*`` on the item (pystac 1.15's extension classes; see the module docstring). A
    missing or unreadable product or side product raises :class:`~spatialx.errors.ReadError`.
    """
    product = Path(product)
    with _open(product, "product") as src:
        tags = src.tags()
        params = _json_tag(tags, "SPATIALX_PARAMS")
        sensor = _json_tag(tags, "SPATIALX_SENSOR")
        geometry = _footprint(src)
        moment, start, end, source = _dates(product, tags, params, inputs)
        properties: dict[str, Any] = {"spatialx:datetime_source": source}
        for key, tag in (("spatialx:task", "SPATIALX_TASK"), ("spatialx:method", "SPATIALX_METHOD")):
            if tag in tags:
                properties[key] = tags[tag]
        if sensor is not None:
            properties["spatialx:sensor"] = sensor
        if params is not None:
            properties["spatialx:params"] = _plain(params)
        if quality is not None:
            properties["spatialx:quality"] = _plain(dict(quality))
        if seconds is not None:
            properties["spatialx:seconds"] = round(float(seconds), 3)
        properties["processing:software"] = {"spatialx": tags.get("SPATIALX_VERSION", __version__)}
        item = pystac.Item(item_id or product.stem, geometry, _bbox(geometry), moment, properties,
                           start_datetime=start, end_datetime=end)
        item.stac_extensions.append(PROCESSING_SCHEMA)
        _apply_projection(item, src)
        asset = pystac.Asset(str(product.absolute()), title=product.name, media_type=_raster_media_type(src),
                             roles=["data"])
        descriptions = _sensor_descriptions(sensor)
        _apply_bands(item, asset, src, descriptions)
    item.add_asset("data", asset)
    for key, path in (extra_assets or {}).items():
        if key == "data":
            raise SpatialxError("side product key 'data' is the product's own asset", path=path,
                                hint="name it after what it is, e.g. ndvi")
        item.add_asset(key, _side_asset(item, key, Path(path), descriptions))
    for label, path in inputs.items():
        item.add_link(pystac.Link("derived_from", str(Path(path).absolute()), title=str(label),
                                  media_type=str(pystac.MediaType.GEOTIFF)
                                  if Path(path).suffix.lower() in (".tif", ".tiff") else None))
    return item


def _relative(href: str, start: str) -> str:
    """``href`` relative to the JSON file ``start``, or as it is when it is a URL or on another drive."""
    if "://" in href or not os.path.isabs(href):
        return href
    try:
        return make_relative_href(href, start)
    except ValueError:  # Windows: another drive
        return href


def _item_json(item: pystac.Item, path: Path) -> str:
    start = str(path.absolute())
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    for asset in data.get("assets", {}).values():
        asset["href"] = _relative(asset["href"], start)
    for link in data.get("links", []):
        link["href"] = _relative(link["href"], start)
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def write_stac_item(item: pystac.Item, path: Path) -> Path:
    """Write ``item`` as JSON to ``path`` atomically, asset and link hrefs relative to ``path``'s folder.

    The item's self href becomes ``path`` (so :func:`write_collection` can link to it); the file has no ``self``
    link, which a relative, movable catalogue must not have.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError("output directory does not exist", path=path.parent, hint="create it first")
    try:
        text = _item_json(item, path)
    except ValueError as exc:  # a NaN in a caller's property
        raise OutputError(f"the item is not valid JSON ({exc})", path=path) from None
    atomic_write_text(path, text)
    item.set_self_href(str(path.absolute()))
    return path


# --------------------------------------------------------------------------------------------------------------
# Collections.


def _time_range(items: Sequence[pystac.Item]) -> list[dt.datetime | None]:
    starts, ends = [], []
    for item in items:
        start = item.common_metadata.start_datetime or item.datetime
        end = item.common_metadata.end_datetime or item.datetime
        if start is not None:
            starts.append(start)
        if end is not None:
            ends.append(end)
    return [min(starts) if starts else None, max(ends) if ends else None]


def write_collection(items: Sequence[pystac.Item], path: Path, collection_id: str, description: str) -> Path:
    """Write a STAC Collection to ``path`` (atomically) that links the already written ``items``.

    Its extent is the union of the items' bboxes (the whole globe when none has one: a collection must state an
    extent, and non-georeferenced products have no place on it) and the range of their datetimes. Items are linked
    as ``item`` links relative to ``path``'s folder, and are not rewritten (they carry no parent link): each item
    must have been written, e.g. by :func:`write_stac_item`, or read with ``pystac.Item.from_file``.
    """
    path = Path(path)
    if not items:
        raise OutputError("a collection needs at least one item", path=path)
    hrefs = []
    for item in items:
        href = item.get_self_href()
        if href is None or not Path(href).is_file():
            raise OutputError(f"item {item.id!r} has not been written", path=path,
                              hint="write each item with write_stac_item before the collection")
        hrefs.append(href)
    boxes = [item.bbox for item in items if item.bbox]
    bbox = ([min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
            if boxes else [-180.0, -90.0, 180.0, 90.0])
    extent = pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([_time_range(items)]))
    collection = pystac.Collection(collection_id, description, extent, license="other")
    start = str(path.absolute())
    data = collection.to_dict(include_self_link=False, transform_hrefs=False)
    data["links"] = [link for link in data.get("links", []) if link["rel"] not in ("root", "self")]
    data["links"] += [{"rel": "item", "href": _relative(str(Path(href).absolute()), start),
                       "type": str(pystac.MediaType.JSON), "title": item.id} for item, href in zip(items, hrefs,
                                                                                                    strict=True)]
    atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
    return path
