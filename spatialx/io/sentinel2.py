"""Sentinel-2 Level-2A products as one reflectance raster: a ``.SAFE`` folder, its ``MTD_MSIL2A.xml``, or a folder
of per-band files (COGs with a STAC item, or band JP2s).

Each band is its own file (``GRANULE/<tile>/IMG_DATA/R10m/T..._B02_10m.jp2`` in a SAFE, ``B02.tif`` in a COG
folder). The band files are read directly with the JP2OpenJPEG or GTiff driver rather than through GDAL's SENTINEL2
driver, whose ``SENTINEL2_L2A:<MTD_MSIL2A.xml>:10m:EPSG_xxxxx`` subdatasets mosaic every granule through a VRT and
need each granule's ``MTD_TL.xml``: reading the files keeps windowed reads on one file per band, and works the same
for COG folders that have no SAFE around them.

Radiometry is what the product states: reflectance = (DN + BOA_ADD_OFFSET) / BOA_QUANTIFICATION_VALUE, taken from
``MTD_MSIL2A.xml``, else from the STAC item's ``raster:bands`` (scale, offset), else from scale/offset tags in the
band files. A product stating only its processing baseline gets the offset through the ``s2_l2a`` profile's
``offset_from_product`` rule, which decides by the baseline, never by the acquisition date (reprocessed archives of
old acquisitions carry the new offset). DN 0 is no data; pixels whose Sen2Cor scene class (SCL, at 20 m) is no data,
saturated, cloud shadow, cloud, thin cirrus (and snow, on request) are invalid.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from spatialx.errors import ReadError, SpatialxError
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

__all__ = ["FORMAT", "Sentinel2Product", "Sentinel2Reader", "open_sentinel2", "probe_sentinel2"]

SENSOR_KEY = "s2_l2a"
#: Scene classes (QA condition names of the profile) that make a pixel unusable for fusion.
INVALID_CONDITIONS = ("fill", "saturated", "shadow", "cloud", "cirrus")
SNOW_CONDITION = "snow"
SCL = "SCL"

# A band file name: ``B02.tif`` (COG folders), ``T29RKH_20200219T112111_B02_10m.jp2`` (SAFE), ``..._SCL_20m.jp2``.
_BAND_FILE = re.compile(r"(?:^|_)(B\d{2}|B8A|SCL)(?:_(\d{2})m)?\.(?:jp2|tiff?)$", re.IGNORECASE)
_BAND_NAME = re.compile(r"B0?(8A|\d{1,2})", re.IGNORECASE)
# Metadata file names of SAFE products: compact naming (since 2016) and the older PSD 14.2 naming.
_MTD_L2A = re.compile(r"^(MTD_MSIL2A|S2[A-D]_(USER|OPER)_MTD_SAFL2A.*)\.xml$", re.IGNORECASE)
_MTD_L1C = re.compile(r"^(MTD_MSIL1C|S2[A-D]_(USER|OPER)_MTD_SAFL1C.*)\.xml$", re.IGNORECASE)
#: ``band_id`` order of ``BOA_ADD_OFFSET`` in ``MTD_MSIL2A.xml`` when the file lacks ``Spectral_Information_List``
#: (which maps ``bandId`` to ``physicalBand``): the 13 MSI bands, B10 included (ESA S2 product specification).
_MSI_BAND_IDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
_PROBE_ENTRIES = 2000  # a folder listing is cut short here: probing must stay cheap on huge directories


@dataclass(frozen=True)
class Sentinel2Product:
    """What :class:`Sentinel2Reader` needs: one file per selected band, its DN conversion, and the SCL."""

    bands: tuple[str, ...]
    files: tuple[Path, ...]
    add_offset: tuple[float, ...]  # BOA_ADD_OFFSET, in DN
    quantification: tuple[float, ...]  # BOA_QUANTIFICATION_VALUE
    layers: tuple[Band, ...]  # the profile's bands: nodata and valid DN range
    grid: Grid
    scl: Path | None
    scl_grid: Grid | None
    invalid_classes: tuple[int, ...]


@dataclass(frozen=True)
class _Radiometry:
    """DN -> reflectance of each band, and the product facts found next to it."""

    add_offset: dict[str, float]
    quantification: dict[str, float]
    source: str
    facts: dict[str, Any]


# --------------------------------------------------------------------------------------------------------- probe


def probe_sentinel2(path: Path) -> bool:
    """A ``.SAFE`` folder, a SAFE metadata file, or a folder holding Sentinel-2 band files. Never raises."""
    try:
        path = Path(path)
        if path.is_file():
            return bool(_MTD_L2A.match(path.name) or _MTD_L1C.match(path.name))
        if not path.is_dir():
            return False
        if path.suffix.upper() == ".SAFE":
            return True
        with os.scandir(path) as entries:
            for i, entry in enumerate(entries):
                if i >= _PROBE_ENTRIES:
                    break
                if _MTD_L2A.match(entry.name) or _MTD_L1C.match(entry.name):
                    return True
                match = _BAND_FILE.search(entry.name)
                if match and match.group(1).upper() != SCL and entry.is_file():
                    return True
    except (OSError, ValueError):
        return False
    return False


# ---------------------------------------------------------------------------------------------------------- open


def open_sentinel2(path: str | os.PathLike[str], role: str = "MS", bands: Sequence[str] | str | None = None,
                   mask_snow: bool = False) -> RasterInfo:
    """Describe a Sentinel-2 L2A product as a float32 reflectance raster of the selected ``bands``.

    ``bands`` defaults to the profile's finest-resolution bands (B02, B03, B04, B08 at 10 m); all selected bands must
    share one grid. ``mask_snow`` also marks SCL snow/ice as invalid. Raises :class:`ReadError` for L1C products,
    missing or mixed-resolution bands, band files off one grid, and products whose radiometry cannot be read.
    """
    path = Path(path)
    profile = get_sensor(SENSOR_KEY)
    if not path.exists():
        raise ReadError(f"{role} does not exist", path=path, hint="check the path")
    root, mtd = _product_root(path, role)
    wanted = _select_bands(profile, bands, role, path)
    candidates = _band_files(root)
    files = _choose_files(candidates, wanted, profile, role, path)
    grids = {band: _file_grid(files[band], role) for band in wanted}
    _check_one_grid(wanted, grids, profile, role, path)
    grid = grids[wanted[0]]

    scl_path = _choose_scl(candidates, profile)
    scl_grid = None
    if scl_path is not None:
        scl_grid = _file_grid(scl_path, role)
        if scl_grid.crs != grid.crs or not (scl_grid.is_north_up and grid.is_north_up):
            raise ReadError(f"{role}: the scene classification {scl_path.name} is not in the bands' CRS "
                            f"({scl_grid.crs} vs {grid.crs})", path=path,
                            hint="the SCL must come from the same tile as the bands")

    radiometry = _radiometry(root, mtd, wanted, files, profile, role, path)
    conditions = INVALID_CONDITIONS + ((SNOW_CONDITION,) if mask_snow else ())
    invalid = sorted({v for c in conditions for rule in profile.qa_rules(c, SCL) for v in (rule.values or ())})
    layers = tuple(profile.layer(b) for b in wanted)
    product = Sentinel2Product(
        bands=wanted, files=tuple(files[b] for b in wanted),
        add_offset=tuple(radiometry.add_offset[b] for b in wanted),
        quantification=tuple(radiometry.quantification[b] for b in wanted),
        layers=layers, grid=grid, scl=scl_path, scl_grid=scl_grid, invalid_classes=tuple(invalid))

    quantification: float | dict[str, float] = radiometry.quantification[wanted[0]]
    if len({radiometry.quantification[b] for b in wanted}) > 1:
        quantification = {b: radiometry.quantification[b] for b in wanted}
    metadata = {
        **radiometry.facts,
        "boa_add_offset": {b: radiometry.add_offset[b] for b in wanted},
        "boa_quantification_value": quantification,
        "radiometry_from": radiometry.source,
        "band_files": {b: str(files[b]) for b in wanted},
        "scl": None if scl_path is None else str(scl_path),
        "invalid_scl_classes": list(invalid),
        "mask_snow": mask_snow,
        # The reader delivers reflectance; networks scale it by the nominal reflectance range.
        "units": "reflectance",
        "value_range": (0.0, 1.0),
    }
    return RasterInfo(
        path=path, count=len(wanted), dtype="float32", grid=grid, nodata=None, descriptions=wanted,
        has_gcps=False, has_mask=True, source=product, opener=Sentinel2Reader,
        wavelengths_nm=tuple(layer.center_nm for layer in layers), fwhm_nm=tuple(layer.fwhm_nm for layer in layers),
        metadata=metadata)


def _product_root(path: Path, role: str) -> tuple[Path, Path | None]:
    """The folder holding the bands (or GRANULE/), and the SAFE metadata file when there is one."""
    if path.is_file():
        if _MTD_L1C.match(path.name):
            raise _l1c_error(role, path)
        if not _MTD_L2A.match(path.name):
            raise ReadError(f"{role} is not a Sentinel-2 L2A metadata file", path=path,
                            hint="give the product's MTD_MSIL2A.xml, its .SAFE folder, or a folder of band files")
        return path.parent, path
    names = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".xml")
    l2a = [n for n in names if _MTD_L2A.match(n)]
    if l2a:
        return path, path / l2a[0]
    if any(_MTD_L1C.match(n) for n in names) or "MSIL1C" in path.name.upper():
        raise _l1c_error(role, path)
    if path.suffix.upper() == ".SAFE":
        raise ReadError(f"{role}: the SAFE folder has no MTD_MSIL2A.xml", path=path,
                        hint="the product is incomplete: re-download or re-extract it")
    return path, None


def _l1c_error(role: str, path: Path) -> ReadError:
    return ReadError(f"{role} is a Sentinel-2 Level-1C product (top-of-atmosphere), not Level-2A", path=path,
                     hint="give the L2A product of the same acquisition (S2*_MSIL2A_*.SAFE), or run Sen2Cor on it")


def _normalise(name: str) -> str:
    text = name.strip().upper()
    match = _BAND_NAME.fullmatch(text)
    if match is None:
        return text
    number = match.group(1).upper()
    return "B8A" if number == "8A" else f"B{int(number):02d}"


def _select_bands(profile: SensorProfile, bands: Sequence[str] | str | None, role: str,
                  path: Path) -> tuple[str, ...]:
    if bands is None:
        finest = min(b.resolution_m for b in profile.bands if b.resolution_m is not None)
        return tuple(b.name for b in profile.bands if b.resolution_m == finest)
    names = bands.split(",") if isinstance(bands, str) else list(bands)
    wanted = tuple(_normalise(str(n)) for n in names if str(n).strip())
    if not wanted:
        raise ReadError(f"{role}: no Sentinel-2 band selected", path=path,
                        hint=f"select some of {', '.join(profile.band_names)}")
    unknown = [b for b in wanted if b not in profile.band_names]
    if unknown:
        raise ReadError(f"{role}: Sentinel-2 L2A has no band {', '.join(unknown)}", path=path,
                        hint=f"L2A bands are {', '.join(profile.band_names)} (no B10)")
    duplicated = sorted({b for b in wanted if wanted.count(b) > 1})
    if duplicated:
        raise ReadError(f"{role}: band {', '.join(duplicated)} selected twice", path=path,
                        hint="select each band once")
    return wanted


def _band_files(root: Path) -> dict[str, list[tuple[int | None, Path]]]:
    """Every band (and SCL) file of the product: name -> [(resolution in the file name, path)]."""
    granule = root / "GRANULE"
    folders = sorted(granule.glob("*/IMG_DATA/R*m")) if granule.is_dir() else [root]
    found: dict[str, list[tuple[int | None, Path]]] = {}
    for folder in folders:
        for file in sorted(folder.iterdir()):
            match = _BAND_FILE.search(file.name)
            if match and file.is_file():
                name = _normalise(match.group(1))
                found.setdefault(name, []).append((int(match.group(2)) if match.group(2) else None, file))
    return found


def _resolution(value: float | None) -> int | None:
    return None if value is None else round(value)


def _choose_files(candidates: Mapping[str, list[tuple[int | None, Path]]], wanted: tuple[str, ...],
                  profile: SensorProfile, role: str, path: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    missing: list[str] = []
    for band in wanted:
        native = _resolution(profile.layer(band).resolution_m)
        options = candidates.get(band, [])
        # SAFE products also ship resampled copies (B02 at 20 and 60 m): a band is read at its native resolution.
        exact = [p for res, p in options if res == native] or [p for res, p in options if res is None]
        if not exact:
            missing.append(band if not options else
                           f"{band} (only at {', '.join(f'{res} m' for res, _ in options)}, not {native} m)")
        elif len(exact) > 1:
            raise ReadError(f"{role}: the product holds {len(exact)} files for {band} "
                            f"({', '.join(p.name for p in exact[:3])}): several tiles or duplicates", path=path,
                            hint="give a single-tile product (one GRANULE) or a folder with one file per band")
        else:
            files[band] = exact[0]
    if missing:
        present = [b for b in profile.band_names if b in candidates]
        natives = {_resolution(profile.layer(b).resolution_m) for b in wanted}
        at = f" at {natives.pop()} m" if len(natives) == 1 else ""
        raise ReadError(
            f"{role}: the Sentinel-2 product has no {', '.join(missing)}{at}", path=path,
            hint=(f"it has {', '.join(present)}: select bands it has (bands=...), or re-download the complete product"
                  if present else "no band files found (GRANULE/*/IMG_DATA/R10m/*_B02_10m.jp2, or B02.tif ...): "
                                  "check that the product is complete"))
    return files


def _choose_scl(candidates: Mapping[str, list[tuple[int | None, Path]]], profile: SensorProfile) -> Path | None:
    options = candidates.get(SCL, [])
    if not options:
        return None
    native = _resolution(profile.layer(SCL).resolution_m)
    # The SCL is classified at 20 m; the 60 m copy is a subsample of it.
    ranked = sorted(options, key=lambda o: (o[0] != native, o[0] is not None, o[0] or 0, o[1].name))
    return ranked[0][1]




def _jp2_supported() -> bool:
    with rasterio.Env() as env:
        return "JP2OpenJPEG" in env.drivers()



def _file_grid(path: Path, role: str) -> Grid:
    return band_file_grid(path, role, "Sentinel-2 band files carry their UTM tile georeferencing")


def _describe(grid: Grid) -> str:
    x, y = grid.transform.c, grid.transform.f
    return f"{grid.crs}, {grid.width}x{grid.height}, {_metres(grid.res[0])} m, origin ({x:g}, {y:g})"


def _metres(value: float) -> str:
    return f"{value:g}"


def _check_one_grid(wanted: tuple[str, ...], grids: Mapping[str, Grid], profile: SensorProfile, role: str,
                    path: Path) -> None:
    resolutions = {b: grids[b].res for b in wanted}
    if len(set(resolutions.values())) > 1:
        groups: dict[float, list[str]] = {}
        for band in profile.bands:
            if band.resolution_m is not None:
                groups.setdefault(band.resolution_m, []).append(band.name)
        examples = "; ".join(f"{','.join(names)} for {_metres(res)} m" for res, names in sorted(groups.items())
                             if len(names) > 1)
        listing = ", ".join(f"{b} ({_metres(resolutions[b][0])} m)" for b in wanted)
        raise ReadError(f"{role}: the selected Sentinel-2 bands have different resolutions: {listing}", path=path,
                        hint=f"select bands of one resolution, e.g. {examples}")
    first = grids[wanted[0]]
    for band in wanted[1:]:
        grid = grids[band]
        same = (grid.crs == first.crs and grid.shape == first.shape
                and grid.transform.almost_equals(first.transform, precision=1e-6 * max(first.res)))
        if not same:
            raise ReadError(f"{role}: the band files are not on one grid: {wanted[0]} ({_describe(first)}) vs "
                            f"{band} ({_describe(grid)})", path=path,
                            hint="the band files must come from one tile of one product")


# ---------------------------------------------------------------------------------------------------- radiometry


def _radiometry(root: Path, mtd: Path | None, wanted: tuple[str, ...], files: Mapping[str, Path],
                profile: SensorProfile, role: str, path: Path) -> _Radiometry:
    if mtd is not None:
        return _from_mtd(mtd, wanted, profile, role)
    item = _stac_item(root, role)
    if item is not None:
        return _from_stac(item, wanted, files, profile, role)
    return _from_tags(wanted, files, role, path)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _resolve_offset(profile: SensorProfile, band: str, metadata: Mapping[str, Any], role: str, where: Path) -> float:
    rule = profile.layer(band).offset_from_product
    if rule is None:
        return 0.0
    try:
        return rule.resolve(metadata, band)
    except SpatialxError as exc:
        raise ReadError(f"{role}: {exc.message}", path=where, hint=exc.hint) from None


def _from_mtd(mtd: Path, wanted: tuple[str, ...], profile: SensorProfile, role: str) -> _Radiometry:
    try:
        root = ET.parse(mtd).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ReadError(f"{role}: cannot parse the product metadata ({exc})", path=mtd,
                        hint="the file may be truncated; re-download the product") from None
    level = _local(root.tag)
    first: dict[str, str] = {}
    band_ids: dict[str, str] = {}
    offsets: dict[str, str] = {}
    quantification: str | None = None
    for element in root.iter():
        name = _local(element.tag)
        text = (element.text or "").strip()
        if name == "Spectral_Information" and "bandId" in element.attrib and "physicalBand" in element.attrib:
            band_ids[element.attrib["bandId"]] = _normalise(element.attrib["physicalBand"])
        elif name == "BOA_ADD_OFFSET" and "band_id" in element.attrib:
            offsets[element.attrib["band_id"]] = text
        elif name.endswith("BOA_QUANTIFICATION_VALUE") and quantification is None:
            quantification = text  # L2A_BOA_QUANTIFICATION_VALUE in the older PSD 14.2 products
        elif text and name not in first:
            first[name] = text
    product_type = first.get("PRODUCT_TYPE", "")
    if "1C" in level.upper() or "1C" in product_type.upper():
        raise _l1c_error(role, mtd)
    if "2A" not in level.upper():
        raise ReadError(f"{role}: {mtd.name} is not Sentinel-2 Level-2A metadata (root element {level})", path=mtd,
                        hint="give the product's MTD_MSIL2A.xml or its .SAFE folder")
    baseline = first.get("PROCESSING_BASELINE")
    if offsets:
        stated = {}
        for band_id, text in offsets.items():
            name = band_ids.get(band_id) or (_MSI_BAND_IDS[int(band_id)] if band_id.isdigit()
                                             and int(band_id) < len(_MSI_BAND_IDS) else f"band_id {band_id}")
            stated[name] = metadata_number(text, f"BOA_ADD_OFFSET band_id={band_id}", mtd, role)
        rule_metadata: dict[str, Any] = {"BOA_ADD_OFFSET": stated}
    else:
        rule_metadata = {} if baseline is None else {"PROCESSING_BASELINE": baseline}
    add_offset = {b: _resolve_offset(profile, b, rule_metadata, role, mtd) for b in wanted}
    if quantification is not None:
        value = metadata_number(quantification, "BOA_QUANTIFICATION_VALUE", mtd, role)
    else:
        value = 1.0 / profile.layer(wanted[0]).scale
    if not value > 0:
        raise ReadError(f"{role}: BOA_QUANTIFICATION_VALUE is {value}; it must be positive", path=mtd,
                        hint="the metadata file is damaged; re-download the product")
    when = first.get("PRODUCT_START_TIME") or first.get("DATATAKE_SENSING_START")
    facts = _facts(baseline, when, first.get("Cloud_Coverage_Assessment"), first.get("PRODUCT_URI"))
    return _Radiometry(add_offset=add_offset, quantification=dict.fromkeys(wanted, value), source=mtd.name,
                       facts=facts)


def _facts(baseline: str | None, when: str | None, cloud: Any, product: str | None) -> dict[str, Any]:
    facts: dict[str, Any] = {"processing_baseline": baseline}
    if when:
        facts["acquisition_datetime"] = str(when)
        facts["acquisition_date"] = str(when)[:10]
    if cloud is not None:
        # An unparsable cloud estimate is provenance only, not worth refusing the product for.
        with contextlib.suppress(TypeError, ValueError):
            facts["cloud_cover"] = float(cloud)
    if product:
        facts["product"] = product
    return facts


def _stac_item(root: Path, role: str) -> tuple[Path, dict[str, Any]] | None:
    items = []
    for file in sorted(root.glob("*.json")):
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue  # not every json beside the bands is the STAC item (tileinfo_metadata.json, ...)
        if isinstance(data, dict) and data.get("type") == "Feature" and isinstance(data.get("assets"), dict):
            items.append((file, data))
    if len(items) > 1:
        raise ReadError(f"{role}: the folder holds several STAC items ({', '.join(f.name for f, _ in items)})",
                        path=root, hint="keep only the item of this product next to its band files")
    return items[0] if items else None


def _asset_name(href: str) -> str:
    return href.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def _from_stac(item: tuple[Path, dict[str, Any]], wanted: tuple[str, ...], files: Mapping[str, Path],
               profile: SensorProfile, role: str) -> _Radiometry:
    file, data = item
    props = data.get("properties") or {}
    product_type = str(props.get("s2:product_type", ""))
    level = str(props.get("processing:level", ""))
    if "1C" in product_type.upper() or level.upper() == "L1C":
        raise _l1c_error(role, file)
    baseline = next((str(props[k]) for k in ("s2:processing_baseline", "processing:version",
                                             "sentinel:processing_baseline") if props.get(k)), None)
    applied = props.get("earthsearch:boa_offset_applied", props.get("sentinel:boa_offset_applied"))
    by_name: dict[str, dict[str, Any]] = {}
    by_band: dict[str, list[dict[str, Any]]] = {}
    for asset in data["assets"].values():
        if not isinstance(asset, dict) or not isinstance(asset.get("href"), str):
            continue
        raster = asset.get("raster:bands")
        info = raster[0] if isinstance(raster, list) and raster and isinstance(raster[0], dict) else {}
        name = _asset_name(asset["href"])
        by_name[name.lower()] = info
        match = _BAND_FILE.search(name)
        if match:
            by_band.setdefault(_normalise(match.group(1)), []).append(info)
    add_offset: dict[str, float] = {}
    quantification: dict[str, float] = {}
    for band in wanted:
        info = by_name.get(files[band].name.lower())
        if info is None:
            stated = {(i.get("scale"), i.get("offset")) for i in by_band.get(band, [])}
            if len(stated) > 1:
                raise ReadError(f"{role}: the STAC item gives {band} several scale/offset pairs {sorted(stated)}",
                                path=file, hint=f"name the band file like its asset href ({band}.tif)")
            info = by_band[band][0] if by_band.get(band) else {}
        scale, offset = info.get("scale"), info.get("offset")
        if scale is not None:
            scale = metadata_number(scale, f"raster:bands scale of {band}", file, role)
            offset = 0.0 if offset is None else metadata_number(offset, f"raster:bands offset of {band}", file, role)
            if not scale > 0:
                raise ReadError(f"{role}: the STAC item gives {band} scale {scale}", path=file,
                                hint="the item is damaged; fetch it again")
            if applied is True and offset != 0:
                # earth-search marks pixels that already hold the offset: applying raster:bands too would shift
                # reflectance twice, and which of the two fields is right cannot be told from the item.
                raise ReadError(f"{role}: the STAC item says the BOA offset is already applied to the pixels, yet "
                                f"gives {band} raster:bands offset {offset}", path=file,
                                hint="the item contradicts itself; read the product's SAFE (MTD_MSIL2A.xml) instead")
            quantification[band] = 1.0 / scale
            # raster:bands offset is in reflectance; the product states it in DN (offset = BOA_ADD_OFFSET / QV).
            add_offset[band] = round(offset / scale, 6)
        else:
            rule_metadata: dict[str, Any] = {}
            if applied is True:
                rule_metadata = {"BOA_ADD_OFFSET": 0.0}
            elif baseline is not None:
                rule_metadata = {"PROCESSING_BASELINE": baseline}
            else:
                raise ReadError(f"{role}: the STAC item states neither raster:bands scale/offset for {band} nor a "
                                f"processing baseline, so its BOA_ADD_OFFSET is unknown", path=file,
                                hint="add the product's MTD_MSIL2A.xml next to the band files")
            add_offset[band] = _resolve_offset(profile, band, rule_metadata, role, file)
            quantification[band] = 1.0 / profile.layer(band).scale
    facts = _facts(baseline, props.get("datetime"), props.get("eo:cloud_cover"),
                   props.get("s2:product_uri") or data.get("id"))
    if applied is not None:
        facts["boa_offset_applied"] = bool(applied)
    return _Radiometry(add_offset=add_offset, quantification=quantification, source=f"STAC item {file.name}",
                       facts=facts)


def _from_tags(wanted: tuple[str, ...], files: Mapping[str, Path], role: str, path: Path) -> _Radiometry:
    add_offset: dict[str, float] = {}
    quantification: dict[str, float] = {}
    for band in wanted:
        with open_band_file(files[band], role) as src:
            scale, offset = float(src.scales[0]), float(src.offsets[0])
        if scale == 1.0 and offset == 0.0:
            # Without a statement, DN / 10000 would be a guess: from baseline 04.00 it is off by 0.1.
            raise ReadError(f"{role}: nothing states the radiometry of {band} (no MTD_MSIL2A.xml, no STAC item, "
                            f"no scale/offset in {files[band].name})", path=path,
                            hint="put the product's MTD_MSIL2A.xml or STAC item (.json) next to the band files")
        if not scale > 0:
            raise ReadError(f"{role}: {files[band].name} states scale {scale}", path=path,
                            hint="the file's scale tag is damaged")
        quantification[band] = 1.0 / scale
        add_offset[band] = round(offset / scale, 6)
    return _Radiometry(add_offset=add_offset, quantification=quantification, source="band file scale/offset",
                       facts={"processing_baseline": None})


# -------------------------------------------------------------------------------------------------------- reader


class Sentinel2Reader(PerThreadHandles):
    """Windowed reflectance reads of a Sentinel-2 product, one dataset handle per file per thread."""

    def __init__(self, info: RasterInfo):
        if not isinstance(info.source, Sentinel2Product):
            raise TypeError("Sentinel2Reader reads RasterInfo from open_sentinel2")
        super().__init__(info)
        self.product: Sentinel2Product = info.source

    def _dataset(self, path: Path) -> rasterio.DatasetReader:
        return self.handle(path, lambda: open_band_file(path, "input"))

    def _dn(self, i: int, window: Window) -> np.ndarray:
        path = self.product.files[i]
        try:
            with self.reading():
                return self._dataset(path).read(1, window=window)
        except RasterioError as exc:
            raise ReadError(f"read failed at {window} ({first_line(str(exc))})", path=path,
                            hint="the file may be truncated or corrupt") from None

    def read(self, window: Window, bands: list[int] | None = None) -> np.ndarray:
        """Reflectance of ``window`` as float32 (bands, rows, cols); pixels without data (DN 0 or outside the
        valid DN range) read 0, so that resampling does not spread a -0.1 offset or a NaN into valid neighbours."""
        indexes = self.band_indexes(bands)
        out = np.empty((len(indexes), int(window.height), int(window.width)), dtype=np.float32)
        for k, i in enumerate(indexes):
            dn = self._dn(i, window)
            reflectance = (dn.astype(np.float64) + self.product.add_offset[i]) / self.product.quantification[i]
            out[k] = np.where(self.product.layers[i].valid_mask(dn), reflectance, 0.0)
        return out

    def read_valid(self, window: Window, bands: list[int] | None = None) -> np.ndarray:
        """True where every selected band holds data and the scene class (when the product has an SCL) is not an
        invalid one."""
        valid = np.ones((int(window.height), int(window.width)), dtype=bool)
        for i in self.band_indexes(bands):
            valid &= self.product.layers[i].valid_mask(self._dn(i, window))
        if self.product.scl is not None:
            valid &= ~np.isin(self.read_scl(window), self.product.invalid_classes)
        return valid

    def read_scl(self, window: Window) -> np.ndarray:
        """The scene class of each band pixel of ``window``: that of the SCL pixel containing the pixel's centre
        (nearest neighbour); 0 (no data) where the SCL does not cover it."""
        product = self.product
        if product.scl is None or product.scl_grid is None:
            raise ReadError("the product has no scene classification (SCL)", path=self.info.path)
        band, scl = product.grid.transform, product.scl_grid.transform
        rows = np.arange(int(window.row_off), int(window.row_off + window.height), dtype=np.float64)
        cols = np.arange(int(window.col_off), int(window.col_off + window.width), dtype=np.float64)
        y = band.f + (rows + 0.5) * band.e
        x = band.c + (cols + 0.5) * band.a
        scl_rows = np.floor((y - scl.f) / scl.e).astype(np.int64)
        scl_cols = np.floor((x - scl.c) / scl.a).astype(np.int64)
        height, width = product.scl_grid.height, product.scl_grid.width
        row_in = (scl_rows >= 0) & (scl_rows < height)
        col_in = (scl_cols >= 0) & (scl_cols < width)
        out = np.zeros((rows.size, cols.size), dtype=np.uint8)
        if not row_in.any() or not col_in.any():
            return out
        r0, r1 = int(scl_rows[row_in].min()), int(scl_rows[row_in].max())
        c0, c1 = int(scl_cols[col_in].min()), int(scl_cols[col_in].max())
        try:
            with self.reading():
                block = self._dataset(product.scl).read(1, window=Window(c0, r0, c1 - c0 + 1, r1 - r0 + 1))
        except RasterioError as exc:
            raise ReadError(f"SCL read failed ({first_line(str(exc))})", path=product.scl,
                            hint="the file may be truncated or corrupt") from None
        out[np.ix_(row_in, col_in)] = block[np.ix_(scl_rows[row_in] - r0, scl_cols[col_in] - c0)]
        return out


FORMAT = ProductFormat(name="Sentinel-2 L2A", probe=probe_sentinel2, open=open_sentinel2)
