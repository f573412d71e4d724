"""PolSAR inputs of ``spatialx polsar``: quad-pol single-look complex (SLC) data as the covariance matrix C3, and
single-pol SLC data as intensity.

Inputs, and which rule decides what they are:

- **A RADARSAT-2 product**: a folder holding ``product.xml`` (or that file itself), with ``imagery_HH.tif`` ... and
  ``lutSigma.xml``. It is read through GDAL's RS2 driver. With a sigma-nought LUT the calibrated subdataset
  ``RADARSAT_2_CALIB:SIGMA0:<product.xml>`` gives complex64 values ``DN / A`` (``A`` the LUT gain of the column),
  so ``|S|^2`` is sigma nought (RN-RP-51-2713: sigma0 = (I^2 + Q^2) / A^2 for SLC products, offset 0). The driver
  indexes the gains by the column inside a block, which is right only for full-width strips: imagery stored in
  tiles narrower than the image is read uncalibrated through the driver and divided by the gains here instead.
  The driver also misreads one-band complex (CInt16) imagery GeoTIFFs as 32-bit "void" samples: such files are
  read directly and the gains applied here. Real products store two int16 samples (I, Q) per pixel, which the
  driver reads right. Without a readable ``lutSigma.xml`` the product is read uncalibrated (DN), with a warning. SSG/SPG
  (map-projected) products carry no LUT GDAL applies, so they are refused, as is any ``product.xml`` that is not a
  RADARSAT-2 one (RCM, other missions). Bands map to polarisations by GDAL's ``POLARIMETRIC_INTERP`` band item
  (the ``pole`` attribute of ``fullResolutionImageData``).
- **A set of SLC GeoTIFFs**, one per polarisation, named with the polarisation as a separate token (``rsat_HH.tif``,
  ``imagery_VV.tif``, ``s1_hv_slc.tiff``; case-insensitive), each either one complex band (complex64, CInt16, ...)
  or two real bands (real, imaginary), all on one grid. Accepted as: a folder holding exactly one such file per
  polarisation (other files are ignored; two files of one polarisation are an error); a list/tuple of the four
  paths (``open_polsar`` only); or one of the four files, when its three siblings (the same name with the other
  polarisation tokens) lie next to it.
- **One SLC GeoTIFF** (complex, or two real bands with a polarisation token in the name) without its siblings, or
  a folder holding files of one polarisation only: single-pol intensity.

What is delivered (float32, always on the SLC grid: multilooking never decimates):

- **C3** (9 channels C11, C12_re, C12_im, C13_re, C13_im, C22, C23_re, C23_im, C33; sensor ``radarsat2_quad``),
  in the lexicographic basis ``k_L = [S_HH, sqrt(2) S_X, S_VV]`` with ``S_X = (S_HV + S_VH) / 2`` (reciprocity), so
  ``C22 = 2 <|S_X|^2>``. ``<.>`` is a ``looks x looks`` boxcar mean (``looks`` odd, default 5). Each window is read
  with a halo of ``looks // 2`` pixels; at the image edges the boxcar covers only the pixels that exist and is
  renormalised by their count, so a windowed read equals the same slice of a whole-image read exactly. With
  ``speckle="refined-lee"`` the single-look C3 is filtered by the refined Lee filter instead
  (:mod:`spatialx.io.speckle`; ``looks`` is its window, default 7), each window read with a halo of
  ``looks // 2`` and mirrored at the image edges, so windowed reads equal the whole-image read cropped too.
- **Intensity** ``<|S|^2>`` of one channel (sensor ``radarsat2_single``): a single-pol input, or the channel
  ``polarisation="HH"`` (``"HV"``, ``"VH"``, ``"VV"``) of a quad-pol input; ``looks`` defaults to 1 (full
  resolution, no averaging).

``metadata`` holds ``representation`` ("C3" or "intensity"), ``looks``, ``speckle``, ``enl`` (see
:func:`estimate_enl`), ``polarisations``, ``units`` ("linear power"), ``sensor``, ``calibration`` and the source
files. No ``value_range`` is set: SAR values are not reflectance and have no nominal range.
"""

from __future__ import annotations

import math
import os
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from spatialx.errors import MethodError, ReadError
from spatialx.grid import Grid
from spatialx.io.read import PerThreadHandles, ProductFormat, RasterInfo, first_line
from spatialx.io.speckle import halo as speckle_halo
from spatialx.io.speckle import refined_lee, refined_lee_c3

__all__ = ["C3_BANDS", "FORMAT", "FORMATS", "POLARISATIONS", "PolSARReader", "PolSARSource", "boxcar_mean",
           "c3_from_slc", "estimate_enl", "open_polsar", "probe_polsar"]

QUAD_SENSOR = "radarsat2_quad"
SINGLE_SENSOR = "radarsat2_single"
POLARISATIONS = ("HH", "HV", "VH", "VV")
C3_BANDS = ("C11", "C12_re", "C12_im", "C13_re", "C13_im", "C22", "C23_re", "C23_im", "C33")
SPECKLE_FILTERS = ("boxcar", "refined-lee")
#: Default window of the refined Lee filter (``looks`` with ``speckle="refined-lee"``).
REFINED_LEE_WINDOW = 7
UNITS = "linear power"
_RASTER_SUFFIXES = (".tif", ".tiff")
#: A polarisation written as its own token of a file name: ``rsat_HH``, ``imagery_VV``, ``s1-hv-slc``.
_POL_TOKEN = re.compile(r"(?<![A-Za-z])(HH|HV|VH|VV)(?![A-Za-z])", re.IGNORECASE)
_PRODUCT_XML = "product.xml"
_RS2_CALIB = "RADARSAT_2_CALIB"
_PROBE_ENTRIES = 2000
#: ENL estimate: at most this many sample windows, the most homogeneous fraction of them kept.
ENL_MAX_WINDOWS = 256
ENL_KEEP_FRACTION = 0.10


@dataclass(frozen=True)
class _Channel:
    """Where one polarisation's complex values come from."""

    pol: str | None
    path: str  # what rasterio opens: a file, or RADARSAT_2_CALIB:<calibration>:<product.xml>
    band: int  # 1-based band in that dataset
    iq: bool  # two real bands (band, band + 1) hold real and imaginary parts; else one complex band
    gains: tuple[float, ...] | None = None  # per-column amplitude gains divided out here (LUT not applied by GDAL)


@dataclass(frozen=True)
class PolSARSource:
    """What :class:`PolSARReader` needs: the complex channels (HH, HV, VH, VV for C3; one for intensity)."""

    channels: tuple[_Channel, ...]
    representation: str  # "C3" or "intensity"
    looks: int  # the boxcar size, or the refined Lee window
    grid: Grid
    speckle: str = "boxcar"  # "boxcar" or "refined-lee"


# ------------------------------------------------------------------------------------------------------ numerics


def boxcar_mean(stack: np.ndarray, looks: int) -> np.ndarray:
    """Mean of each (..., rows, cols) image over a ``looks x looks`` window centred on each pixel, over the pixels
    that exist (at the edges the window is cut and the mean renormalised by the count). Same shape, float64."""
    arr = np.asarray(stack, dtype=np.float64)
    if looks == 1:
        return arr.copy()
    from scipy.ndimage import uniform_filter

    size = (1,) * (arr.ndim - 2) + (looks, looks)
    sums = uniform_filter(arr, size=size, mode="constant", cval=0.0)
    counts = uniform_filter(np.ones(arr.shape[-2:]), size=(looks, looks), mode="constant", cval=0.0)
    return sums / counts


def c3_from_slc(hh: np.ndarray, hv: np.ndarray, vh: np.ndarray, vv: np.ndarray) -> np.ndarray:
    """Single-look C3 (9, rows, cols) float64 of complex SLC channels: ``k_L = [S_HH, sqrt(2) (S_HV + S_VH)/2,
    S_VV]`` and the upper triangle of ``k_L k_L^H`` as 9 real channels (C3_BANDS order)."""
    k1 = np.asarray(hh, dtype=np.complex128)
    k2 = np.sqrt(2.0) * 0.5 * (np.asarray(hv, dtype=np.complex128) + np.asarray(vh, dtype=np.complex128))
    k3 = np.asarray(vv, dtype=np.complex128)
    c12 = k1 * np.conj(k2)
    c13 = k1 * np.conj(k3)
    c23 = k2 * np.conj(k3)
    return np.stack([np.abs(k1) ** 2, c12.real, c12.imag, c13.real, c13.imag, np.abs(k2) ** 2, c23.real, c23.imag,
                     np.abs(k3) ** 2])


def estimate_enl(image: Any, grid: Grid, looks: int, band: int = 1) -> float | None:
    """Equivalent number of looks of a (multilooked) intensity-like band, estimated on homogeneous areas.

    ``image`` is a :class:`PolSARReader` (or anything with ``read(window, bands)``). The image is cut into
    non-overlapping ``w x w`` windows, ``w = max(32, 12 * looks)`` (shrunk to the image), at most
    :data:`ENL_MAX_WINDOWS` of them spread evenly over the scene. Each window is split into a left part, which
    judges its homogeneity (coefficient of variation std/mean), and a right part, ``looks`` columns away so that
    no boxcar output of it shares an input pixel with the left part, on which ENL = mean^2 / var is measured. The
    :data:`ENL_KEEP_FRACTION` (10 %, at least 3) windows with the lowest left-part CV are kept and their ENL
    averaged. Judging and measuring on disjoint pixels keeps the selection from favouring windows whose measured
    variance is low by chance (which would bias ENL upwards on speckle). For ``n x n`` boxcar means of
    independent single-look speckle the result is about ``n^2``. None when the image is too small (under 8 pixels
    a side) or has no usable window.
    """
    height, width = grid.height, grid.width
    size = min(max(32, 12 * looks), height, width)
    gap = looks
    left = (size - gap) // 2
    if size < 8 or left < 2 or size - left - gap < 2:
        return None
    rows, cols = height // size, width // size
    cells = [(r, c) for r in range(rows) for c in range(cols)]
    if len(cells) > ENL_MAX_WINDOWS:
        pick = np.linspace(0, len(cells) - 1, ENL_MAX_WINDOWS).round().astype(int)
        cells = [cells[i] for i in np.unique(pick)]
    stats: list[tuple[float, float]] = []
    for r, c in cells:
        block = np.asarray(image.read(Window(c * size, r * size, size, size), [band])[0], dtype=np.float64)
        judge, measure = block[:, :left], block[:, left + gap:]
        if not (np.all(np.isfinite(judge)) and np.all(np.isfinite(measure))):
            continue
        mean_j, mean_m = judge.mean(), measure.mean()
        var_m = measure.var(ddof=1)
        if mean_j <= 0 or mean_m <= 0 or var_m <= 0:
            continue
        stats.append((float(judge.std(ddof=1) / mean_j), float(mean_m**2 / var_m)))
    if not stats:
        return None
    stats.sort(key=lambda s: s[0])
    keep = max(min(3, len(stats)), math.ceil(ENL_KEEP_FRACTION * len(stats)))
    return float(np.mean([enl for _, enl in stats[:keep]]))


# --------------------------------------------------------------------------------------------------------- probe


def _pol_of(name: str) -> str | None:
    """The polarisation a file name states as a token, None when it states none or several different ones."""
    found = {m.group(1).upper() for m in _POL_TOKEN.finditer(Path(name).stem)}
    return found.pop() if len(found) == 1 else None


def _is_raster_name(name: str) -> bool:
    return name.lower().endswith(_RASTER_SUFFIXES)


def _quiet_open(path: str | Path) -> rasterio.DatasetReader:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


def _complex_layout(src: rasterio.DatasetReader) -> bool | None:
    """True for two real bands (I, Q), False for one complex band, None when the file is not complex data."""
    if src.count >= 1 and np.issubdtype(np.dtype(_numpy_dtype(src.dtypes[0])), np.complexfloating):
        return False if src.count == 1 else None
    if src.count == 2 and src.dtypes[0] == src.dtypes[1]:
        return True
    return None


def _numpy_dtype(name: str) -> str:
    return "complex64" if name == "complex_int16" else name


def probe_polsar(path: Path) -> bool:
    """A ``product.xml`` (or a folder holding one), a folder holding SLC files named by polarisation, or a complex
    SLC GeoTIFF (one complex band, or two bands with a polarisation token in its name). Never raises."""
    try:
        path = Path(path)
        if path.is_dir():
            if (path / _PRODUCT_XML).is_file() or (path / "PRODUCT.XML").is_file():
                return True
            with os.scandir(path) as entries:
                for i, entry in enumerate(entries):
                    if i >= _PROBE_ENTRIES:
                        break
                    if _is_raster_name(entry.name) and _pol_of(entry.name) and entry.is_file():
                        return True
            return False
        if not path.is_file():
            return False
        if path.name.lower() == _PRODUCT_XML:
            return True
        if not _is_raster_name(path.name):
            return False
        with _quiet_open(path) as src:
            layout = _complex_layout(src)
        return layout is False or (layout is True and _pol_of(path.name) is not None)
    except (OSError, ValueError, RasterioError):
        return False


# ---------------------------------------------------------------------------------------------------------- open


def open_polsar(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], role: str = "input",
                looks: int | None = None, speckle: str = "boxcar", polarisation: str | None = None) -> RasterInfo:
    """Describe a PolSAR input as float32 C3 (quad-pol) or intensity (single-pol, or ``polarisation`` of a
    quad-pol input); see the module documentation for the inputs accepted and the rules between them.

    ``looks``: the odd boxcar size (default 5 for C3, 1 for intensity). ``speckle``: "boxcar", or "refined-lee"
    (:mod:`spatialx.io.speckle`, on the single-look C3 or intensity; ``looks`` is then its window, odd >= 3,
    default 7). Raises :class:`ReadError` for missing
    polarisations, real (non-complex) bands, files off one grid, and products this reader cannot read.
    """
    pol = _check_polarisation(polarisation, role, path)
    if speckle not in SPECKLE_FILTERS:
        raise MethodError(f"{role}: unknown speckle filter {speckle!r}", hint=f"one of: {', '.join(SPECKLE_FILTERS)}")
    if isinstance(path, (list, tuple)):
        files = [Path(p) for p in path]
        if not files:
            raise ReadError(f"{role}: no polarisation files given", hint="give the four HH, HV, VH, VV files")
        where = files[0].parent
        channels, facts = _from_files(files, role, where, pol)
    else:
        where = Path(path)
        if not where.exists():
            raise ReadError(f"{role} does not exist", path=where, hint="check the path")
        xml = _product_xml(where)
        if xml is not None:
            channels, facts = _from_product(xml, role, pol)
        elif where.is_dir():
            channels, facts = _from_folder(where, role, pol)
        else:
            channels, facts = _from_file(where, role, pol)

    representation = "C3" if len(channels) == 4 else "intensity"
    lee = speckle == "refined-lee"
    if looks is None:
        looks = REFINED_LEE_WINDOW if lee else 5 if representation == "C3" else 1
    smallest = 3 if lee else 1
    if isinstance(looks, bool) or not isinstance(looks, (int, np.integer)) or looks < smallest or looks % 2 == 0:
        what = "looks (the refined Lee window)" if lee else "looks"
        raise ReadError(f"{role}: {what} must be an odd integer >= {smallest}, got {looks!r}", path=where,
                        hint="e.g. looks=7 for a 7x7 refined Lee window" if lee else "e.g. looks=5 for a 5x5 boxcar")
    looks = int(looks)
    grid = _one_grid(channels, role, where)
    source = PolSARSource(channels=channels, representation=representation, looks=looks, grid=grid,
                          speckle=speckle)
    pols = [c.pol for c in channels if c.pol is not None]
    if representation == "C3":
        descriptions: tuple[str, ...] = C3_BANDS
        sensor = QUAD_SENSOR
    else:
        descriptions = (channels[0].pol or "intensity",)
        sensor = SINGLE_SENSOR
    metadata: dict[str, Any] = {
        **facts,
        "sensor": sensor,
        "representation": representation,
        "looks": looks,
        "speckle": speckle,
        "polarisations": pols,
        "units": UNITS,
    }
    info = RasterInfo(path=where, count=len(descriptions), dtype="float32", grid=grid, nodata=None,
                      descriptions=descriptions, has_gcps=bool(facts.get("gcps")), has_mask=False, source=source,
                      opener=PolSARReader, metadata=metadata)
    with PolSARReader(info) as reader:
        # The last pixel is read here: a truncated file fails now, not half-way through a scene.
        reader.read(Window(grid.width - 1, grid.height - 1, 1, 1))
        metadata["enl"] = estimate_enl(reader, grid, looks)
        metadata["enl_from"] = "C11" if representation == "C3" else descriptions[0]
    return info


def _check_polarisation(polarisation: str | None, role: str, path: Any) -> str | None:
    if polarisation is None:
        return None
    pol = str(polarisation).strip().upper()
    if pol not in POLARISATIONS:
        raise ReadError(f"{role}: unknown polarisation {polarisation!r}", path=None if isinstance(path, (list, tuple))
                        else path, hint=f"one of: {', '.join(POLARISATIONS)}")
    return pol


def _product_xml(path: Path) -> Path | None:
    if path.is_file():
        return path if path.name.lower() == _PRODUCT_XML else None
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and p.name.lower() == _PRODUCT_XML]
        return found[0] if found else None
    return None



def _file_channel(path: Path, pol: str | None, role: str) -> _Channel:
    """One SLC GeoTIFF as a complex channel: one complex band, or two real bands (real, imaginary)."""
    try:
        with _quiet_open(path) as src:
            layout = _complex_layout(src)
            kinds = f"{src.count} band{'s' if src.count != 1 else ''} of {', '.join(sorted(set(src.dtypes)))}"
    except RasterioError as exc:
        raise ReadError(f"{role}: cannot open {path.name} ({first_line(str(exc))})", path=path,
                        hint="the file may be truncated or corrupt") from None
    if layout is None:
        raise ReadError(f"{role}: {path.name} is not complex SLC data ({kinds})", path=path,
                        hint="give single-look complex files: one complex band, or two bands (real, imaginary); "
                             "a 1-band intensity GeoTIFF is read as a plain raster")
    return _Channel(pol=pol, path=str(path), band=1, iq=layout)


def _missing_error(role: str, where: Path | None, found: Sequence[str]) -> ReadError:
    missing = [p for p in POLARISATIONS if p not in found]
    return ReadError(f"{role}: C3 needs HH, HV, VH and VV; {'found ' + ', '.join(found) if found else 'found none'}, "
                     f"missing {', '.join(missing)}", path=where,
                     hint='add the missing polarisation files, or select one channel (polarisation="HH")')


def _select(by_pol: dict[str, Path], role: str, where: Path | None, pol: str | None,
            default: Path | None = None) -> tuple[tuple[_Channel, ...], dict[str, Any]]:
    """The channels of ``by_pol`` (one file per polarisation found) C3 or ``pol`` needs."""
    if pol is not None:
        if pol not in by_pol:
            raise ReadError(f"{role}: no {pol} file (found {', '.join(by_pol) or 'none'})", path=where,
                            hint=f"select one of {', '.join(by_pol)}" if by_pol else "check the file names")
        files = {pol: by_pol[pol]}
    elif len(by_pol) == 4:
        files = dict(by_pol)
    elif default is not None:
        files = {_pol_of(default.name) or "": default}
    elif len(by_pol) == 1:
        files = dict(by_pol)
    else:
        raise _missing_error(role, where, [p for p in POLARISATIONS if p in by_pol])
    ordered = [p for p in POLARISATIONS if p in files] or list(files)
    channels = tuple(_file_channel(files[p], p or None, role) for p in ordered)
    return channels, {"calibration": "none (as stored)", "files": {p or "intensity": str(files[p]) for p in ordered}}


def _group_by_pol(files: Sequence[Path], role: str, where: Path | None) -> dict[str, Path]:
    groups: dict[str, list[Path]] = {}
    for file in files:
        pol = _pol_of(file.name)
        if pol is not None:
            groups.setdefault(pol, []).append(file)
    doubled = {p: fs for p, fs in groups.items() if len(fs) > 1}
    if doubled:
        listing = "; ".join(f"{p}: {', '.join(f.name for f in fs[:3])}" for p, fs in sorted(doubled.items()))
        raise ReadError(f"{role}: more than one file per polarisation ({listing})", path=where,
                        hint="give a folder with exactly one file per polarisation, or the four files as a list")
    return {p: fs[0] for p, fs in groups.items()}


def _from_files(files: list[Path], role: str, where: Path, pol: str | None):
    for file in files:
        if not file.is_file():
            raise ReadError(f"{role}: polarisation file does not exist", path=file, hint="check the path")
    unnamed = [f.name for f in files if _pol_of(f.name) is None]
    if unnamed and len(files) > 1:
        raise ReadError(f"{role}: {', '.join(unnamed)} name no polarisation (HH, HV, VH or VV as a token)",
                        path=where, hint="name each file after its polarisation, e.g. rsat_HH.tif")
    if len(files) == 1:
        return _from_file(files[0], role, pol)
    return _select(_group_by_pol(files, role, where), role, where, pol)


def _from_folder(folder: Path, role: str, pol: str | None):
    files = sorted(p for p in folder.iterdir() if p.is_file() and _is_raster_name(p.name) and _pol_of(p.name))
    if not files:
        raise ReadError(f"{role}: the folder holds no SLC files named by polarisation", path=folder,
                        hint="name the files after their polarisation (rsat_HH.tif, imagery_VV.tif, ...)")
    return _select(_group_by_pol(files, role, folder), role, folder, pol)


def _sibling(file: Path, pol: str) -> Path | None:
    """``file`` with its polarisation token replaced by ``pol`` (in the token's case), when that file exists."""
    match = list(_POL_TOKEN.finditer(file.stem))
    if not match:
        return None
    stem = file.stem
    for m in reversed(match):
        token = pol if m.group(1).isupper() else pol.lower()
        stem = stem[: m.start()] + token + stem[m.end():]
    candidate = file.with_name(stem + file.suffix)
    return candidate if candidate.is_file() else None


def _from_file(file: Path, role: str, pol: str | None):
    own = _pol_of(file.name)
    if own is None:
        if pol is not None:
            raise ReadError(f"{role}: {file.name} names no polarisation, so {pol} cannot be selected", path=file,
                            hint="drop the polarisation option, or name the files after their polarisation")
        return _select({}, role, file, None, default=file)
    siblings = {p: _sibling(file, p) for p in POLARISATIONS}
    by_pol = {p: s for p, s in siblings.items() if s is not None}
    by_pol[own] = file
    if pol is None and len(by_pol) != 4:
        return _select(by_pol, role, file, None, default=file)  # single-pol: this file's intensity
    return _select(by_pol, role, file, pol)


# ------------------------------------------------------------------------------------------------ RADARSAT-2 xml


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(node: ET.Element | None, *names: str) -> ET.Element | None:
    for name in names:
        if node is None:
            return None
        node = next((c for c in node if _local(c.tag) == name), None)
    return node


def _text(node: ET.Element | None, *names: str) -> str:
    found = _child(node, *names)
    return "" if found is None or found.text is None else found.text.strip()


def _from_product(xml: Path, role: str, pol: str | None):
    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ReadError(f"{role}: cannot parse {xml.name} ({exc})", path=xml,
                        hint="the file may be truncated; re-extract the product") from None
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    satellite = _text(root, "sourceAttributes", "satellite")
    if _local(root.tag) != "product" or not ("/rs2" in namespace or satellite.upper().startswith("RADARSAT-2")):
        what = satellite or namespace or f"<{_local(root.tag)}>"
        raise ReadError(f"{role}: {xml.name} is not a RADARSAT-2 product ({what})", path=xml,
                        hint="this reader reads RADARSAT-2 products (product.xml in the rs2 schema); export other "
                             "missions' SLC as one GeoTIFF per polarisation")
    attributes = _child(root, "imageAttributes")
    raster = _child(attributes, "rasterAttributes")
    product_type = _text(root, "imageGenerationParameters", "generalProcessingInformation", "productType")
    data_type = _text(raster, "dataType")
    facts: dict[str, Any] = {
        "product_xml": str(xml), "satellite": satellite or None, "product_type": product_type or None,
        "beam_mode": _text(root, "sourceAttributes", "beamModeMnemonic") or None,
        "acquisition_start": _text(root, "sourceAttributes", "rawDataStartTime") or None,
    }
    if product_type.upper().startswith(("SSG", "SPG")):
        raise ReadError(f"{role}: {product_type} products are map-projected and GDAL's RS2 driver does not "
                        f"calibrate them", path=xml, hint="order the SLC product of the scene for PolSAR")
    if data_type.lower() != "complex":
        raise ReadError(f"{role}: the product holds {data_type or 'unknown'} data, not single-look complex "
                        f"({product_type or 'unknown product type'})", path=xml,
                        hint="C3 and intensity are formed from SLC products")
    lut_name = ""
    for node in attributes if attributes is not None else []:
        if _local(node.tag) == "lookupTable" and node.get("incidenceAngleCorrection") == "Sigma Nought":
            lut_name = (node.text or "").strip()
    lut = xml.parent / lut_name if lut_name else None
    gains = _read_lut(lut) if lut is not None and lut.is_file() else None
    if gains is None:
        warnings.warn(f"{xml.parent}: the RADARSAT-2 product has no readable sigma-nought LUT "
                      f"({lut_name or 'lutSigma.xml'}): reading uncalibrated digital numbers", stacklevel=3)
    direct = _direct_channels(attributes, xml, gains)
    if direct is not None:
        calibration = "sigma0 (LUT applied by spatialx)" if gains is not None else "none (digital numbers)"
        facts.update(calibration=calibration, lut=str(lut) if gains is not None else None, gcps=0, gdal_path=None)
        return _product_channels(direct, role, xml, pol), facts
    calibrated = f"{_RS2_CALIB}:SIGMA0:{xml}"
    uncalibrated = f"{_RS2_CALIB}:UNCALIB:{xml}"
    try:
        with _quiet_open(calibrated if gains is not None else uncalibrated) as src:
            pols = [src.tags(i).get("POLARIMETRIC_INTERP", "").upper() for i in range(1, src.count + 1)]
            dtypes = list(src.dtypes)
            full_width = src.block_shapes[0][1] >= src.width if src.count else True
            gcps = len(src.gcps[0])
    except RasterioError as exc:
        raise ReadError(f"{role}: GDAL's RS2 driver cannot open the product ({first_line(str(exc))})", path=xml,
                        hint="check that the imagery files product.xml names are present") from None
    if not pols:
        raise ReadError(f"{role}: the product's imagery files cannot be opened", path=xml,
                        hint="product.xml names imagery_<pol>.tif files next to it; re-extract the product")
    for p, dtype in zip(pols, dtypes, strict=True):
        if not np.issubdtype(np.dtype(_numpy_dtype(dtype)), np.complexfloating):
            raise ReadError(f"{role}: GDAL reads the {p or '?'} imagery as {dtype}, not complex", path=xml,
                            hint="the imagery files must be complex: two int16 bands (I, Q) per file")
    if gains is None:
        path, own_gains, calibration = uncalibrated, None, "none (no sigma-nought LUT: digital numbers)"
    elif full_width:
        path, own_gains, calibration = calibrated, None, "sigma0 (GDAL RS2 driver)"
    else:
        # GDAL indexes the LUT by the column inside a block: right only for full-width strips.
        path, own_gains, calibration = uncalibrated, gains, "sigma0 (LUT applied by spatialx: tiled imagery)"
    facts.update(calibration=calibration, lut=str(lut) if gains is not None else None, gcps=gcps, gdal_path=path)
    by_pol: dict[str, _Channel] = {}
    for i, p in enumerate(pols, start=1):
        if p in POLARISATIONS:
            by_pol[p] = _Channel(pol=p, path=path, band=i, iq=False, gains=own_gains)
    return _product_channels(by_pol, role, xml, pol), facts


def _direct_channels(attributes: ET.Element | None, xml: Path,
                     gains: tuple[float, ...] | None) -> dict[str, _Channel] | None:
    """The imagery files read directly (LUT applied here) when GDAL's RS2 driver would misread them: it reads a
    one-band complex GeoTIFF (CInt16) as 32-bit "void" samples. None when the driver reads them right."""
    channels: dict[str, _Channel] = {}
    for node in attributes if attributes is not None else []:
        if _local(node.tag) != "fullResolutionImageData" or not (node.text or "").strip():
            continue
        file = xml.parent / node.text.strip()
        try:
            with _quiet_open(file) as src:
                layout = _complex_layout(src)
        except RasterioError:
            return None
        if layout is not False:
            return None
        channels[str(node.get("pole", "")).upper()] = _Channel(pol=str(node.get("pole", "")).upper(), path=str(file),
                                                              band=1, iq=False, gains=gains)
    return channels or None


def _product_channels(by_pol: dict[str, _Channel], role: str, xml: Path, pol: str | None) -> tuple[_Channel, ...]:
    by_pol = {p: c for p, c in by_pol.items() if p in POLARISATIONS}
    if pol is not None:
        if pol not in by_pol:
            raise ReadError(f"{role}: the product has no {pol} channel (it has {', '.join(by_pol) or 'none'})",
                            path=xml, hint=f"select one of {', '.join(by_pol)}")
        return (by_pol[pol],)
    if len(by_pol) == 4:
        return tuple(by_pol[p] for p in POLARISATIONS)
    if len(by_pol) == 1:
        return tuple(by_pol.values())
    raise _missing_error(role, xml, [p for p in POLARISATIONS if p in by_pol])


def _read_lut(lut: Path) -> tuple[float, ...] | None:
    """The amplitude gains of a RADARSAT-2 LUT file (``<lut><offset/><gains>a b c ...</gains></lut>``)."""
    try:
        root = ET.parse(lut).getroot()
        gains = tuple(float(v) for v in _text(root, "gains").split())
    except (ET.ParseError, OSError, ValueError):
        return None
    return gains if gains and all(g > 0 for g in gains) else None


# ------------------------------------------------------------------------------------------------------- checks


def _describe(grid: Grid) -> str:
    t = grid.transform
    return f"{grid.width}x{grid.height}, origin ({t.c:g}, {t.f:g}), pixel ({t.a:g}, {t.e:g}), {grid.crs}"


def _one_grid(channels: Sequence[_Channel], role: str, where: Path) -> Grid:
    grids: list[Grid] = []
    for channel in channels:
        try:
            with _quiet_open(channel.path) as src:
                grids.append(Grid(transform=src.transform, width=src.width, height=src.height,
                                  crs=src.crs if src.crs else None))
        except RasterioError as exc:
            raise ReadError(f"{role}: cannot open {channel.path} ({first_line(str(exc))})", path=where) from None
        if channel.gains is not None and len(channel.gains) != grids[-1].width:
            raise ReadError(f"{role}: the sigma-nought LUT has {len(channel.gains)} gains for "
                            f"{grids[-1].width} columns", path=where, hint="the product's lutSigma.xml is damaged")
    first = grids[0]
    for channel, grid in zip(channels[1:], grids[1:], strict=True):
        same = (grid.shape == first.shape and grid.crs == first.crs
                and grid.transform.almost_equals(first.transform, precision=1e-9 * max(1.0, abs(first.res[0]))))
        if not same:
            raise ReadError(f"{role}: the polarisations are not on one grid: {channels[0].pol} ({_describe(first)}) "
                            f"vs {channel.pol} ({_describe(grid)})", path=where,
                            hint="the channels must come from one SLC acquisition, unresampled")
    return first


# -------------------------------------------------------------------------------------------------------- reader


class PolSARReader(PerThreadHandles):
    """Windowed C3 or intensity reads of SLC data, one dataset handle per file per thread.

    A window is read with a halo of ``looks // 2`` pixels (cut at the image edges), turned into second moments,
    boxcar-averaged (or refined-Lee filtered) and cropped back, so a tile costs a tile plus its halo, never the
    whole image.
    """

    def __init__(self, info: RasterInfo):
        if not isinstance(info.source, PolSARSource):
            raise TypeError("PolSARReader reads RasterInfo from open_polsar")
        super().__init__(info)
        self.source: PolSARSource = info.source

    def _complex(self, channel: _Channel, window: Window) -> np.ndarray:
        try:
            with self.reading():
                src = self.handle(channel.path, lambda: _quiet_open(channel.path))
                if channel.iq:
                    parts = src.read([channel.band, channel.band + 1], window=window, out_dtype="float64")
                    values = parts[0] + 1j * parts[1]
                else:
                    values = src.read(channel.band, window=window, out_dtype="complex64").astype(np.complex128)
        except RasterioError as exc:
            raise ReadError(f"read failed at {window} ({first_line(str(exc))})", path=channel.path,
                            hint="the file may be truncated or corrupt") from None
        if channel.gains is not None:
            c0 = int(window.col_off)
            values = values / np.asarray(channel.gains[c0: c0 + int(window.width)], dtype=np.float64)
        return values

    def read(self, window: Window, bands: list[int] | None = None) -> np.ndarray:
        """C3 channels (or the intensity) of ``window`` (inside the image) as float32 (bands, rows, cols)."""
        indexes = self.band_indexes(bands)
        grid, looks = self.source.grid, self.source.looks
        col, row = int(window.col_off), int(window.row_off)
        width, height = int(window.width), int(window.height)
        if col < 0 or row < 0 or col + width > grid.width or row + height > grid.height or width < 1 or height < 1:
            raise ReadError(f"window {window} lies outside the {grid.width}x{grid.height} image",
                            path=self.info.path)
        lee = self.source.speckle == "refined-lee"
        halo = speckle_halo(looks) if lee else looks // 2
        r0, c0 = max(0, row - halo), max(0, col - halo)
        r1, c1 = min(grid.height, row + height + halo), min(grid.width, col + width + halo)
        padded = Window(c0, r0, c1 - c0, r1 - r0)
        values = [self._complex(channel, padded) for channel in self.source.channels]
        quad = self.source.representation == "C3"
        moments = c3_from_slc(*values) if quad else (np.abs(values[0]) ** 2)[None]
        if lee:  # all channels: the span drives the filter
            averaged = (refined_lee_c3(moments, looks) if quad else refined_lee(moments, window=looks))[indexes]
        else:
            averaged = boxcar_mean(moments[indexes], looks)
        crop = averaged[:, row - r0: row - r0 + height, col - c0: col - c0 + width]
        return crop.astype(np.float32)

    def read_valid(self, window: Window, bands: list[int] | None = None) -> np.ndarray:
        """True where every selected channel is finite (SLC data have no nodata value)."""
        return np.all(np.isfinite(self.read(window, bands)), axis=0)


FORMAT = ProductFormat(name="PolSAR SLC (RADARSAT-2)", probe=probe_polsar, open=open_polsar)
FORMATS = (FORMAT,)
