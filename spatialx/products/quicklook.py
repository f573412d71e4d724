"""Small RGB previews of rasters, read from overviews so that any scene size costs the same memory.

* :func:`quicklook`: an RGB uint8 (H, W, 3) thumbnail whose longer side is at most ``max_side``: grey for one band,
  the Pauli composite (dB) for a lexicographic C3 product, else the true-colour bands
  :func:`~spatialx.products.style.default_rgb` picks (first three bands when it picks none), each channel stretched
  between its 2 and 98 % percentiles of valid pixels; nodata, masked and non-finite pixels are black.
* :func:`write_png`: an 8-bit RGB PNG with the standard library only (zlib + struct), written atomically; Pillow is
  not a spatialx dependency.
"""

from __future__ import annotations

import math
import re
import struct
import warnings
import zlib
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from spatialx.errors import ReadError
from spatialx.io.outputs import atomic_write_bytes
from spatialx.io.read import _band_wavelengths
from spatialx.io.write import BandInfo, gdal_env
from spatialx.products.style import default_rgb, pauli_rgb

__all__ = ["C3_BANDS", "QUICKLOOK_PERCENTILES", "png_bytes", "quicklook", "quicklook_png", "thumbnail_plan",
           "write_png"]

#: Band names of a lexicographic C3 product in file order (the RADARSAT-2 quad-pol profile and
#: :mod:`spatialx.products.polsar`), compared without case or punctuation.
C3_BANDS = ("C11", "C12_re", "C12_im", "C13_re", "C13_im", "C22", "C23_re", "C23_im", "C33")
QUICKLOOK_PERCENTILES = (2.0, 98.0)
#: Powers at or below this (linear) are shown as this: zero power is data, and log10(0) is not a number.
_POWER_FLOOR = 1e-10


def _key(name: str | None) -> str:
    return re.sub(r"[^0-9a-z]", "", (name or "").lower())


def thumbnail_plan(width: int, height: int, factors: Sequence[int], max_side: int) -> tuple[int | None, int, int]:
    """Which level to read and at what size: (overview index or None for full resolution, rows, cols).

    The level is the coarsest whose longer side is still at least ``max_side`` (so the thumbnail is never
    upsampled from a coarser level than it needs), and the read is scaled down from it to a longer side of
    ``max_side``; an image smaller than that is read as it is.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    level = None
    for index, factor in enumerate(factors):
        if max(math.ceil(width / factor), math.ceil(height / factor)) >= max_side:
            level = index
    scale = min(1.0, max_side / max(width, height))
    return level, max(1, round(height * scale)), max(1, round(width * scale))


def _band_infos(src: rasterio.DatasetReader) -> list[BandInfo]:
    waves = _band_wavelengths(src)
    centres = waves["wavelengths_nm"] or (None,) * src.count
    widths = waves["fwhm_nm"] or (None,) * src.count
    colours = [c.name if c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue) else None
               for c in src.colorinterp]
    return [BandInfo(src.descriptions[i] or "", centres[i], widths[i], colours[i]) for i in range(src.count)]


def _is_c3(bands: Sequence[BandInfo]) -> bool:
    return len(bands) == 9 and [_key(b.name) for b in bands] == [_key(n) for n in C3_BANDS]


def _stretch(channels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(C, H, W) float -> (H, W, C) uint8 between each channel's percentiles of the valid pixels; invalid black."""
    out = np.zeros((*valid.shape, channels.shape[0]), dtype=np.uint8)
    for index, channel in enumerate(channels):
        values = channel[valid]
        if values.size == 0:
            continue
        low, high = (float(v) for v in np.percentile(values, QUICKLOOK_PERCENTILES))
        if not high > low:
            # A constant channel shows mid-grey, not black: black means "no data" in these previews.
            out[..., index] = np.where(valid, 128, 0)
            continue
        scaled = np.clip((channel - low) / (high - low), 0.0, 1.0) * 255.0
        out[..., index] = np.where(valid, np.rint(np.nan_to_num(scaled)), 0).astype(np.uint8)
    return out


def _read(path: Path, indexes: list[int], max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """The bands ``indexes`` as float64 (C, H, W) at thumbnail size, and where every one of them is valid."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            factors = src.overviews(indexes[0])
            width, height = src.width, src.height
        level, rows, cols = thumbnail_plan(width, height, factors, max_side)
        options = {} if level is None else {"overview_level": level}
        with gdal_env(), rasterio.open(path, **options) as src:
            # Averaging: the reduction from the chosen level is at most about 2x, and a mean looks like the scene.
            data = src.read(indexes, out_shape=(len(indexes), rows, cols), masked=True,
                            resampling=Resampling.average)
    values = np.ma.getdata(data).astype(np.float64)
    valid = ~np.ma.getmaskarray(data).any(axis=0) & np.isfinite(values).all(axis=0)
    return values, valid


def quicklook(path: str | PathLike[str], max_side: int = 256) -> np.ndarray:
    """An RGB uint8 (H, W, 3) preview of the raster ``path``, longer side ``max_side`` at most (see the module).

    Read from the coarsest overview at least ``max_side`` on its longer side (:func:`thumbnail_plan`), so memory
    does not grow with the scene. A missing or unreadable file raises :class:`~spatialx.errors.ReadError`.
    """
    path = Path(path)
    if not path.exists():
        raise ReadError("file does not exist", path=path, hint="check the path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                bands = _band_infos(src)
        if len(bands) == 1:
            values, valid = _read(path, [1], max_side)
            return np.repeat(_stretch(values, valid), 3, axis=2)
        if _is_c3(bands):
            c3, valid = _read(path, list(range(1, 10)), max_side)
            # A pixel without backscatter at all is fill (as in spatialx.products.polsar), not a black target.
            valid &= np.where(valid, c3[0] + c3[5] + c3[8], 0.0) > 0
            pauli = pauli_rgb(np.where(valid, c3, 0.0)).astype(np.float64)
            return _stretch(10.0 * np.log10(np.maximum(pauli, _POWER_FLOOR)), valid)
        rgb = default_rgb(bands)
        if rgb is None:
            if len(bands) < 3:
                values, valid = _read(path, [1], max_side)
                return np.repeat(_stretch(values, valid), 3, axis=2)
            rgb = (1, 2, 3)
        values, valid = _read(path, list(rgb), max_side)
        return _stretch(values, valid)
    except (RasterioError, CPLE_BaseError) as exc:
        text = str(exc).strip().splitlines()
        raise ReadError(f"cannot read a preview ({text[0] if text else type(exc).__name__})", path=path) from None


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bytes(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of ``rgb`` (H, W, 3) uint8: one IDAT, filter type 0 on every row."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
        raise ValueError(f"need a non-empty uint8 (H, W, 3) array, got {rgb.dtype} {rgb.shape}")
    height, width = rgb.shape[:2]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), np.ascontiguousarray(rgb).reshape(height, -1)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit, truecolour, deflate, filter 0, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + _chunk(b"IEND", b""))


def write_png(rgb: np.ndarray, path: str | PathLike[str]) -> Path:
    """Write ``rgb`` (H, W, 3) uint8 to ``path`` as a PNG, atomically (temporary file, then rename)."""
    return atomic_write_bytes(Path(path), png_bytes(rgb))


def quicklook_png(path: str | PathLike[str], out: str | PathLike[str], max_side: int = 256) -> Path:
    """:func:`quicklook` of ``path`` written as the PNG ``out``."""
    return write_png(quicklook(path, max_side), out)
