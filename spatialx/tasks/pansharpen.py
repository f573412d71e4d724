"""``spatialx pansharpen``: PAN + multispectral, as a library call (a thin layer over :func:`spatialx.fuse`)."""

from __future__ import annotations

from os import PathLike
from typing import Any

from spatialx.options import RunOptions
from spatialx.pipeline import FusionResult, fuse, report_path
from spatialx.sensors import SensorProfile
from spatialx.tasks import PANSHARPEN

__all__ = ["pansharpen", "report_path"]


def pansharpen(pan: str | PathLike[str], ms: str | PathLike[str], output: str | PathLike[str],
               sensor: str | SensorProfile, method: str = "brovey", *, options: RunOptions | None = None,
               **changes: Any) -> FusionResult:
    """Pansharpen ``ms`` with ``pan`` into a COG at ``output`` (on the PAN grid over the common footprint).

    ``changes`` are :class:`~spatialx.options.RunOptions` fields: e.g. ``tile=256, workers=2, ndvi="ndvi.tif"``
    (an NDVI product of the fused image and its QGIS style) or ``report=True`` (full-resolution quality indices on
    a sample of windows, in ``<output>.quality.json``).
    """
    return fuse(PANSHARPEN, {"pan": pan, "ms": ms}, output, method=method, sensor=sensor, options=options,
                **changes)
