"""Raster input and output: windowed reads that name the file on failure, and the one COG writer.

Names load on first use, so that importing :mod:`spatialx.io.outputs` (the CLI root does) does not import GDAL.
"""

from __future__ import annotations

from spatialx._lazy import lazy_attributes

_LAZY = {
    "RasterInfo": "spatialx.io.read:RasterInfo",
    "ThreadLocalReader": "spatialx.io.read:ThreadLocalReader",
    "open_raster": "spatialx.io.read:open_raster",
    "RasterWriter": "spatialx.io.write:RasterWriter",
    "write_array": "spatialx.io.write:write_array",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
