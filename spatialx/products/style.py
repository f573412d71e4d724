"""The default QGIS view of a product: which bands are red, green and blue, and a ``.qml`` that shows them stretched.

QGIS (checked with 3.22) draws any raster of three or more bands with bands 1, 2, 3 as red, green, blue, whatever
the bands are and whatever colour interpretation GDAL reports; for a WorldView-3 product that is Coastal, Blue,
Green: false colour, water orange. A ``.qml`` next to the product (QGIS loads ``<name>.qml`` beside ``<name>.tif``
as the layer's default style) fixes the view; the colour interpretation written into the GeoTIFF
(:class:`~spatialx.io.write.BandInfo` ``color``) tells GDAL and other tools the same thing.

* :func:`default_rgb` chooses the bands: by wavelength (nearest 650/550/470 nm), else by name (Red/Green/Blue,
  Sentinel-2 ``B04/B03/B02``, Landsat Collection-2 ``SR_B*``), or the PolSAR composites.
* :func:`band_stretch` computes the 2-98 % cumulative cut per band from the product's smallest overview, so the
  numbers are in the style and QGIS does not scan the file.
* :func:`multiband_qml` / :func:`singleband_gray_qml` write the style text; :func:`write_style` does all three for
  a written product and returns the text (the caller decides where and how it is written).

The XML follows what QGIS 3 itself writes (``QgsMultiBandColorRenderer::writeXml``,
``QgsRasterRenderer::_writeXml``, ``QgsRasterMinMaxOrigin::writeXml``, ``QgsContrastEnhancement::writeXml``), and
was compared with the output of ``QgsRasterLayer.saveNamedStyle`` in QGIS 3.22.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import replace
from os import PathLike
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

from spatialx.io.write import BandInfo

#: Display targets (nm) for red, green and blue: the centres of the visible primaries most VNIR sensors sample.
RGB_TARGETS_NM = (650.0, 550.0, 470.0)
#: How far a band centre may sit from its target when the band does not reach it with its own half width.
WAVELENGTH_TOLERANCE_NM = 40.0
#: From this many bands (or with kind "hyperspectral") a product is a cube: the nearest band to each target is
#: taken, within HSI_MAX_OFFSET_NM (so a SWIR-only cube gets a grey view, not three copies of its shortest band).
HSI_MIN_BANDS = 100
HSI_MAX_OFFSET_NM = 100.0
#: The longest side of the sample read for the stretch when a product has no overview small enough.
STRETCH_SAMPLE_SIDE = 1024
CUMULATIVE_CUT = (0.02, 0.98)
#: The QGIS version whose writer this module's XML matches; QGIS reads styles of older versions as they are.
QGIS_STYLE_VERSION = "3.22.16"

KINDS = ("optical", "hyperspectral", "polsar")
_RGB = ("red", "green", "blue")

#: Band names of the Pauli side product :func:`pauli_rgb` computes, coloured for display.
PAULI_BANDS = (BandInfo("T22", color="red"), BandInfo("T33", color="green"), BandInfo("T11", color="blue"))


def _key(name: str) -> str:
    """Band names compared without case or punctuation: ``SR_B4`` ~ ``sr-b4``, ``C12_re`` ~ ``C12re``."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _by_color(bands: Sequence[BandInfo]) -> tuple[int, int, int] | None:
    found = {color: [i for i, b in enumerate(bands, 1) if b.color == color] for color in _RGB}
    if all(len(found[c]) == 1 for c in _RGB):
        return found["red"][0], found["green"][0], found["blue"][0]
    return None


def _by_wavelength(bands: Sequence[BandInfo], kind: str) -> tuple[int, int, int] | None:
    centred = [(i, b) for i, b in enumerate(bands, 1) if b.center_nm is not None]
    if len(centred) < 3:
        return None
    hyperspectral = kind == "hyperspectral" or len(bands) >= HSI_MIN_BANDS
    picks = []
    for target in RGB_TARGETS_NM:
        index, band = min(centred, key=lambda item: abs(item[1].center_nm - target))
        offset = abs(band.center_nm - target)
        limit = HSI_MAX_OFFSET_NM if hyperspectral else max(WAVELENGTH_TOLERANCE_NM, (band.fwhm_nm or 0.0) / 2)
        if offset > limit:
            return None
        picks.append(index)
    return tuple(picks) if len(set(picks)) == 3 else None


def _landsat_sr(names: dict[str, int]) -> tuple[int, int, int] | None:
    """Landsat Collection-2 surface reflectance: ``SR_B4`` is red on OLI (Landsat 8/9) but NIR on TM/ETM+.

    Only OLI has an ``SR_B6`` (SWIR 1; on TM/ETM+ band 6 is thermal, ``ST_B6``) and a thermal ``ST_B10``; TM/ETM+
    products have ``SR_B7`` without ``SR_B6``. A subset that shows neither is ambiguous and gets no RGB.
    """
    if {"srb6", "stb10"} & names.keys():
        keys = ("srb4", "srb3", "srb2")
    elif {"srb7", "stb6"} & names.keys():
        keys = ("srb3", "srb2", "srb1")
    else:
        return None
    return tuple(names[k] for k in keys) if all(k in names for k in keys) else None


def _names(bands: Sequence[BandInfo]) -> dict[str, int]:
    """Compared name -> 1-based index; the first band of a repeated name wins."""
    names: dict[str, int] = {}
    for index, band in enumerate(bands, 1):
        names.setdefault(_key(band.name), index)
    return names


def _by_name(bands: Sequence[BandInfo]) -> tuple[int, int, int] | None:
    names = _names(bands)
    for keys in (("red", "green", "blue"), ("r", "g", "b"), ("b04", "b03", "b02")):  # the last: Sentinel-2
        if all(k in names for k in keys):
            return tuple(names[k] for k in keys)
    return _landsat_sr(names)


def _polsar(bands: Sequence[BandInfo]) -> tuple[int, int, int] | None:
    names = _names(bands)
    for keys in (("t22", "t33", "t11"), ("c11", "c22", "c33"), ("hh", "hv", "vv")):
        if all(k in names for k in keys):
            return tuple(names[k] for k in keys)
    return None


def default_rgb(bands: Sequence[BandInfo], kind: str = "optical") -> tuple[int, int, int] | None:
    """1-based indexes of the bands to show as red, green and blue, or None when the product has no such view.

    Bands whose ``color`` already says red, green and blue (once each) win. Otherwise, for ``optical`` and
    ``hyperspectral`` products, wavelength comes first: for each of 650, 550, 470 nm the band whose centre is
    nearest, accepted when the target lies within its half width or within 40 nm of its centre (for a
    ``hyperspectral`` product, or any with 100+ bands, the nearest within 100 nm); then names: Red/Green/Blue or
    R/G/B (any case), Sentinel-2 B04/B03/B02, Landsat Collection-2 SR_B4/SR_B3/SR_B2 (OLI) or SR_B3/SR_B2/SR_B1
    (TM/ETM+), told apart by the bands present.

    ``polsar``: a true Pauli RGB (red ``|HH-VV|^2/2``, green ``2|HV|^2``, blue ``|HH+VV|^2/2``) is the diagonal of
    the coherency matrix T3, so a T3 product (bands T11, T22, T33, ...) is shown as red = T22, green = T33,
    blue = T11. A lexicographic C3 product holds ``C11 = <|HH|^2>``, ``C22 = 2<|HV|^2>``, ``C33 = <|VV|^2>``;
    the Pauli red and blue are ``(C11 + C33 -/+ 2 Re C13) / 2``, sums of bands that a QGIS band renderer cannot
    form, so C3 is shown as the standard lexicographic composite red = C11 (HH), green = C22 (HV), blue = C33 (VV):
    the same volume channel, but surface and double bounce are not separated as in Pauli. For a real Pauli view
    write a side product with :func:`pauli_rgb` and :data:`PAULI_BANDS`. Intensity products HH, HV, VV are shown
    the same way.

    Single-band products, and products without three distinct matching bands, return None (the style is then a
    grey view of band 1).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown product kind {kind!r}; expected one of {', '.join(KINDS)}")
    if len(bands) < 3:
        return None
    rgb = _by_color(bands)
    if rgb is None:
        rgb = _polsar(bands) if kind == "polsar" else _by_wavelength(bands, kind) or _by_name(bands)
    return rgb if rgb is not None and len(set(rgb)) == 3 else None


def with_colors(bands: Sequence[BandInfo], rgb: tuple[int, int, int] | None) -> list[BandInfo]:
    """``bands`` with ``color`` red, green, blue on the ``rgb`` bands (1-based), so the GeoTIFF says what the style
    shows; a red/green/blue left on any other band is cleared. ``rgb`` None returns the bands unchanged."""
    if rgb is None:
        return list(bands)
    colors = dict(zip(rgb, _RGB, strict=True))
    return [replace(b, color=colors.get(i, None if b.color in _RGB else b.color)) for i, b in enumerate(bands, 1)]


def pauli_rgb(c3: np.ndarray) -> np.ndarray:
    """Pauli composite of a lexicographic C3 image (9, H, W), as float32 (3, H, W) in display order:
    red ``|HH-VV|^2/2`` (T22, double bounce), green ``2|HV|^2`` (T33, volume), blue ``|HH+VV|^2/2`` (T11, surface).

    Write it with :data:`PAULI_BANDS` as a side product; its default view is then the Pauli RGB.
    """
    # Imported here: the metrics package is only needed by PolSAR products.
    from spatialx.metrics.polsar import pauli_components

    t11, t22, t33 = pauli_components(c3)
    return np.stack([t22, t33, t11]).astype(np.float32)


def band_stretch(path: str | PathLike[str], bands: Sequence[int], lower: float = CUMULATIVE_CUT[0],
                 upper: float = CUMULATIVE_CUT[1], nodata: float | None = None) -> list[tuple[float, float]]:
    """Cumulative-cut (``lower``, ``upper`` fractions) minimum and maximum of each of ``bands`` (1-based) of ``path``.

    Read from the smallest overview (a COG's is at most one block), else from a nearest-neighbour decimated read
    of at most 1024 px a side: an estimate, as QGIS's own ("Estimated" accuracy). Masked pixels (the file's nodata
    or mask), non-finite values and ``nodata`` (for a fill value the file does not declare) are ignored. The
    quantiles are the empirical ones (``inverted_cdf``): values that occur in the band. A band without valid
    pixels gets (0, 1) (nothing of it is drawn: QGIS hides a pixel that is nodata in any of the three bands), and
    a constant band gets maximum = minimum + 1, so that QGIS never divides by zero.
    """
    if not 0.0 <= lower < upper <= 1.0:
        raise ValueError(f"need 0 <= lower < upper <= 1, got {lower}, {upper}")
    indexes = [int(b) for b in bands]
    with rasterio.open(path) as src:
        if not indexes or min(indexes) < 1 or max(indexes) > src.count:
            raise ValueError(f"{path}: bands {indexes} not in 1..{src.count}")
        levels = len(src.overviews(indexes[0]))
    options = {"overview_level": levels - 1} if levels else {}
    with rasterio.open(path, **options) as src:
        step = max(1, math.ceil(max(src.width, src.height) / STRETCH_SAMPLE_SIDE))
        shape = (len(indexes), math.ceil(src.height / step), math.ceil(src.width / step))
        data = src.read(indexes, out_shape=shape, masked=True, resampling=Resampling.nearest)
    result = []
    for band in data:
        values = band.compressed().astype(np.float64)
        values = values[np.isfinite(values)]
        if nodata is not None and not math.isnan(nodata):
            values = values[values != nodata]
        if values.size == 0:
            result.append((0.0, 1.0))
            continue
        low, high = (float(v) for v in np.quantile(values, [lower, upper], method="inverted_cdf"))
        result.append((low, high if high > low else low + 1.0))
    return result


def _qgis_root() -> ET.Element:
    return ET.Element("qgis", {"version": QGIS_STYLE_VERSION, "styleCategories": "AllStyleCategories"})


def _renderer(parent: ET.Element, kind: str, lower: float, upper: float, **bands: int) -> ET.Element:
    # nodataColor "" draws nodata transparent; opacity/alphaBand as QGIS writes its defaults.
    attrs = {"type": kind, "opacity": "1", "alphaBand": "-1", "nodataColor": ""}
    attrs.update({key: str(value) for key, value in bands.items()})
    renderer = ET.SubElement(parent, "rasterrenderer", attrs)
    # The origin of the min/max: a user's "reset" in the layer properties recomputes the same kind of stretch.
    origin = ET.SubElement(renderer, "minMaxOrigin")
    for tag, text in (("limits", "CumulativeCut"), ("extent", "WholeRaster"), ("statAccuracy", "Estimated"),
                      ("cumulativeCutLower", f"{lower:g}"), ("cumulativeCutUpper", f"{upper:g}"),
                      ("stdDevFactor", "2")):
        ET.SubElement(origin, tag).text = text
    return renderer


def _enhancement(parent: ET.Element, tag: str, minmax: tuple[float, float]) -> None:
    element = ET.SubElement(parent, tag)
    ET.SubElement(element, "minValue").text = f"{minmax[0]:.10g}"
    ET.SubElement(element, "maxValue").text = f"{minmax[1]:.10g}"
    ET.SubElement(element, "algorithm").text = "StretchToMinimumMaximum"


def _document(root: ET.Element) -> str:
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, "unicode") + "\n"


def _check_stretch(stretch: Sequence[tuple[float, float]], count: int) -> None:
    if len(stretch) != count:
        raise ValueError(f"need {count} (min, max) pairs, got {len(stretch)}")
    for low, high in stretch:
        if not (math.isfinite(low) and math.isfinite(high) and high > low):
            raise ValueError(f"stretch ({low}, {high}) is not a finite, increasing range")


def multiband_qml(rgb: tuple[int, int, int], stretch: Sequence[tuple[float, float]],
                  cut: tuple[float, float] = CUMULATIVE_CUT) -> str:
    """A QGIS 3 style: multiband colour renderer on ``rgb`` (1-based red, green, blue bands), each band stretched
    linearly between its ``stretch`` (min, max), declared as a ``cut`` cumulative cut over the whole raster.

    Nodata is not part of it: QGIS takes nodata from the GeoTIFF (a ``<noData>`` element in a ``.qml`` is ignored
    by ``loadNamedStyle``, checked on 3.22), and a transparency list would be matched against the stretched
    0-255 values, not the data.
    """
    if len(rgb) != 3 or min(rgb) < 1:
        raise ValueError(f"rgb must be three 1-based band numbers, got {rgb}")
    _check_stretch(stretch, 3)
    root = _qgis_root()
    pipe = ET.SubElement(root, "pipe")
    renderer = _renderer(pipe, "multibandcolor", *cut, redBand=rgb[0], greenBand=rgb[1], blueBand=rgb[2])
    for color, minmax in zip(_RGB, stretch, strict=True):
        _enhancement(renderer, f"{color}ContrastEnhancement", minmax)
    return _document(root)


def singleband_gray_qml(band: int, stretch: tuple[float, float], cut: tuple[float, float] = CUMULATIVE_CUT) -> str:
    """A QGIS 3 style: band ``band`` in grey (black to white), stretched like :func:`multiband_qml`."""
    if band < 1:
        raise ValueError(f"band must be 1-based, got {band}")
    _check_stretch([stretch], 1)
    root = _qgis_root()
    pipe = ET.SubElement(root, "pipe")
    renderer = _renderer(pipe, "singlebandgray", *cut, grayBand=band)
    renderer.set("gradient", "BlackToWhite")
    _enhancement(renderer, "contrastEnhancement", stretch)
    return _document(root)


def write_style(product: str | PathLike[str], bands: Sequence[BandInfo], kind: str = "optical",
                nodata: float | None = None) -> str:
    """The default ``.qml`` text for the written ``product`` whose bands are ``bands``: true colour (or the PolSAR
    composite, see :func:`default_rgb`) with a 2-98 % cumulative-cut stretch, else grey band 1.

    Only reads ``product``; the caller writes the text next to it (``product.with_suffix(".qml")``), which QGIS
    loads as the layer's default style. ``nodata`` is a fill value to leave out of the stretch when the file does
    not declare it.
    """
    product = Path(product)
    with rasterio.open(product) as src:
        count = src.count
    if count != len(bands):
        raise ValueError(f"{product} has {count} bands, {len(bands)} band descriptions were given")
    rgb = default_rgb(bands, kind)
    if rgb is None:
        return singleband_gray_qml(1, band_stretch(product, [1], nodata=nodata)[0])
    return multiband_qml(rgb, band_stretch(product, rgb, nodata=nodata))
