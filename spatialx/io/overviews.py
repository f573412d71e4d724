"""Overview pyramids built window by window, so that a COG's overviews cost bounded memory.

GDAL's COG driver can build overviews itself, but it reads the full-resolution image in strips that span the whole
width (hundreds of MiB for a 16k-wide 8-band scene), and compresses the overview data twice. Here each level is the
nodata-aware 2 x 2 mean of the level above, computed over fixed-size windows into its own tiled GeoTIFF, compressed
as the output is; :func:`spatialx.io.cog.assemble_cog` then copies the levels' compressed tiles into the COG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

# Output pixels per side of one window of work: the read is twice that per side (32 MiB of float32 for 8 bands).
WINDOW = 512


def overview_sizes(width: int, height: int, blocksize: int) -> list[tuple[int, int]]:
    """Sizes of successive factor-2 levels until the image fits in one block, as GDAL's COG driver chooses them."""
    sizes = []
    while max(width, height) > blocksize:
        width, height = -(-width // 2), -(-height // 2)
        sizes.append((width, height))
    return sizes


def downsample_mean(block: np.ndarray, nodata: float | None) -> np.ndarray:
    """Mean of each 2 x 2 cell of ``block`` (bands, rows, cols), ignoring nodata; odd edges average what exists.

    Integer outputs round half up, as GDAL's AVERAGE does; a cell with no valid pixel is nodata.
    """
    bands, rows, cols = block.shape
    # float32 sums four 16-bit values exactly; wider inputs keep float64.
    work = np.float32 if block.dtype.itemsize <= 2 or block.dtype == np.float32 else np.float64
    if nodata is None:
        valid = None
    else:
        valid = ~np.isnan(block) if np.isnan(nodata) else block != nodata
        if np.isnan(nodata) or nodata != 0:
            block = np.where(valid, block, 0)
    if rows % 2 or cols % 2:
        padded = np.zeros((bands, rows + rows % 2, cols + cols % 2), dtype=block.dtype)
        padded[:, :rows, :cols] = block
        mask = np.zeros(padded.shape, dtype=bool)
        mask[:, :rows, :cols] = True if valid is None else valid
        block, valid = padded, mask
    total = _sum_cells(block, work)
    if valid is None:
        mean = total / work(4)
        empty = None
    else:
        count = _sum_cells(valid, work)
        empty = count == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count
    if np.issubdtype(block.dtype, np.integer):
        mean = np.floor(mean + 0.5, out=mean)
    if empty is not None and empty.any():
        mean[empty] = np.nan if np.isnan(nodata) else nodata
    return mean.astype(block.dtype, copy=False)


def _sum_cells(values: np.ndarray, dtype: type) -> np.ndarray:
    """Sum of each 2 x 2 cell, from four strided views (far faster than a reshaped reduction)."""
    total = values[:, 0::2, 0::2].astype(dtype)
    total += values[:, 1::2, 0::2]
    total += values[:, 0::2, 1::2]
    total += values[:, 1::2, 1::2]
    return total


#: Values one overview window may read (its 2x2 source), so that a 230-band cube reads smaller windows.
WINDOW_VALUES = (2 * WINDOW) ** 2 * 16


def window_for(bands: int) -> int:
    """The overview window side for ``bands`` bands: :data:`WINDOW`, smaller for many bands (a multiple of 16).

    The means do not depend on it: every window starts on an even source pixel."""
    return max(16, min(WINDOW, math.isqrt(WINDOW_VALUES // (4 * max(1, bands))) // 16 * 16))


def level_profile(base: Mapping[str, Any], size: tuple[int, int], nodata: float | None, blocksize: int,
                  creation: Mapping[str, Any]) -> dict[str, Any]:
    """The GTiff profile of an overview level of ``size`` (width, height) below a level of profile ``base``
    (width, height, count, dtype, crs, transform)."""
    width, height = size
    transform = base.get("transform") or Affine.identity()
    return {
        "driver": "GTiff", "width": width, "height": height, "count": base["count"], "dtype": base["dtype"],
        "nodata": nodata, "tiled": True, "blockxsize": blocksize, "blockysize": blocksize, "interleave": "pixel",
        "bigtiff": "IF_SAFER", "crs": base.get("crs"),
        "transform": transform @ Affine.scale(base["width"] / width, base["height"] / height), **creation,
    }


def _downsample_file(src_path: Path, dst_path: Path, size: tuple[int, int], nodata: float | None,
                     blocksize: int, creation: Mapping[str, Any]) -> None:
    with rasterio.open(src_path) as src:
        width, height = size
        base = {"width": src.width, "height": src.height, "count": src.count, "dtype": src.dtypes[0],
                "crs": src.crs, "transform": src.transform}
        profile = level_profile(base, size, nodata, blocksize, creation)
        # Whole blocks per window, so that each compressed block is written once.
        step = blocksize * max(1, window_for(src.count) // blocksize)
        with rasterio.open(dst_path, "w", **profile) as dst:
            for row in range(0, height, step):
                for col in range(0, width, step):
                    out = Window(col, row, min(step, width - col), min(step, height - row))
                    read = Window(2 * col, 2 * row, min(2 * out.width, src.width - 2 * col),
                                  min(2 * out.height, src.height - 2 * row))
                    dst.write(downsample_mean(src.read(window=read), nodata), window=out)


def build_overviews(base: Path, levels: Sequence[Path], nodata: float | None, blocksize: int,
                    creation: Mapping[str, Any] | None = None) -> None:
    """Write the overview levels of ``base`` to ``levels`` (largest first, one per :func:`overview_sizes` entry),
    with the GTiff creation options ``creation`` (compression)."""
    with rasterio.open(base) as src:
        sizes = overview_sizes(src.width, src.height, blocksize)
    if len(sizes) != len(levels):
        raise ValueError(f"{base} needs {len(sizes)} overview levels, {len(levels)} paths were given")
    above = base
    for path, size in zip(levels, sizes, strict=True):
        _downsample_file(above, path, size, nodata, blocksize, creation or {})
        above = path
