"""The xarray API: fuse rioxarray-labelled arrays into a lazy, labelled result.

``spatialx.xr.fuse(task, {role: DataArray}, method=..., sensor=...)`` takes arrays with dimensions ``(band, y, x)``
(or ``(y, x)``) whose CRS, transform and nodata come from rioxarray (``array.rio``), and returns a dask-backed
``DataArray`` labelled the same way: band names and wavelengths as coordinates, CRS, transform and nodata written
through rioxarray, provenance in ``attrs``. It runs the file path's steps (alignment, the method's first pass,
the tile plan with halos, the same fusion and the same cross-fade, the same output encoding), so
``spatialx.xr.fuse(...)`` equals ``spatialx.fuse(...)`` on the same data. The first pass runs when ``fuse`` is
called; tiles are fused when the result is computed, each output chunk (a stitching cell) from the tiles that
cover it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from spatialx.errors import InputMismatchError, SpatialxError
from spatialx.grid import Grid
from spatialx.io.read import RasterInfo
from spatialx.methods.base import FusionMethod, SensorArg
from spatialx.options import RunOptions
from spatialx.tasks import TaskSpec, get_task

__all__ = ["ArrayReader", "fuse", "raster_info"]


def _band_first(array: Any, label: str) -> Any:
    if array.ndim == 2:
        return array.expand_dims("band")
    if array.ndim != 3:
        raise InputMismatchError(f"{label} has dimensions {array.dims}; expected (band, y, x) or (y, x)")
    y, x = array.rio.y_dim, array.rio.x_dim
    band = next(dim for dim in array.dims if dim not in (y, x))
    return array.transpose(band, y, x)


def raster_info(array: Any, label: str = "input") -> RasterInfo:
    """Describe a rioxarray-labelled ``DataArray`` as the pipeline sees a file."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    if not hasattr(array, "rio"):
        raise SpatialxError(f"{label} is not an xarray DataArray", hint="open it with rioxarray.open_rasterio")
    array = _band_first(array, label)
    crs = array.rio.crs
    transform = array.rio.transform(recalc=True)
    grid = Grid(transform=transform, width=int(array.sizes[array.rio.x_dim]),
                height=int(array.sizes[array.rio.y_dim]), crs=crs if crs else None)
    nodata = array.rio.nodata if array.rio.nodata is not None else array.rio.encoded_nodata
    names = array.attrs.get("long_name")
    band_dim = array.dims[0]
    if isinstance(names, (list, tuple)) and len(names) == array.sizes[band_dim]:
        descriptions = tuple(str(n) for n in names)
    elif array[band_dim].dtype.kind in "UO":
        descriptions = tuple(str(v) for v in array[band_dim].values)
    else:
        descriptions = (None,) * array.sizes[band_dim]
    floating = np.dtype(array.dtype).kind == "f"
    return RasterInfo(path=Path(f"<{array.name or label}>"), count=int(array.sizes[band_dim]),
                      dtype=str(array.dtype), grid=grid, nodata=None if nodata is None else float(nodata),
                      descriptions=descriptions, has_gcps=False, has_mask=nodata is not None or floating,
                      source=array, opener=ArrayReader)


class ArrayReader:
    """Windowed reads of an in-memory (or dask-backed) ``DataArray``, with the file reader's interface."""

    def __init__(self, info: RasterInfo):
        self.info = info
        self.array = _band_first(info.source, str(info.path))
        self._lock = threading.Lock()

    def _values(self, window: Window, bands: list[int] | None) -> np.ndarray:
        indexes = [b - 1 for b in (bands or range(1, self.info.count + 1))]
        r0, c0 = int(window.row_off), int(window.col_off)
        piece = self.array[indexes, r0: r0 + int(window.height), c0: c0 + int(window.width)].data
        if hasattr(piece, "compute"):  # dask: computed here, inside a tile task, without a nested scheduler
            piece = piece.compute(scheduler="synchronous")
        return np.asarray(piece)

    def read(self, window: Window, bands: list[int] | None = None) -> np.ndarray:
        return self._values(window, bands).astype(np.float32)

    def read_valid(self, window: Window, bands: list[int] | None = None) -> np.ndarray:
        values = self._values(window, bands)
        valid = np.ones(values.shape, dtype=bool)
        if values.dtype.kind == "f":
            valid &= np.isfinite(values)
        if self.info.nodata is not None:
            valid &= values != self.info.nodata
        return np.all(valid, axis=0)

    def read_masked(self, window: Window, bands: list[int] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        return self.read(window, bands), self.read_valid(window, bands) if self.info.has_mask else None

    def close(self) -> None:
        """Nothing to release: the array belongs to the caller."""


def fuse(task: str | TaskSpec, inputs: Mapping[str, Any], *, method: str, sensor: SensorArg,
         options: RunOptions | None = None, **changes: Any) -> Any:
    """Fuse labelled arrays (role -> ``DataArray``) with ``method``; returns a lazy, labelled ``DataArray``.

    The options are those of :func:`spatialx.fuse` (``tile``, ``overlap``, ``dtype``, ``bands``, ...); options
    that write files (``ndvi``, ``report``, ``layers``, ``overwrite``) and ``reproject`` do not apply here.
    """
    import dask.array as da
    import xarray as xr

    from spatialx.pipeline import TileFuser, check_alignment, plan_fusion
    from spatialx.scene import first_pass
    from spatialx.tiling import blend_cell

    spec = get_task(task)
    options = RunOptions.of(options, **changes).updated(style=False)
    if options.ndvi is not None or options.report or options.reproject or options.layers:
        raise SpatialxError("ndvi, report, layers and reproject write or warp files; they do not apply to arrays",
                            hint="use spatialx.fuse on files, or compute them from the returned array")
    if options.scheduler is not None:
        raise SpatialxError("scheduler does not apply to arrays: the returned array is lazy",
                            hint="compute it on your cluster: with distributed.Client(ADDRESS): result.compute()")
    infos = {role: raster_info(array, spec.label(role)) for role, array in inputs.items()}
    plan = plan_fusion(spec, infos, sensor, method, options)
    scene = plan.scene
    scene.open_readers()
    check_alignment(plan, options)
    if type(plan.fusion).fit is not FusionMethod.fit:
        plan.fusion.fit(first_pass(scene))
    plan.params.update(plan.fusion.params())
    tiles, bands = plan.tiles, len(plan.output_sensor.bands)
    fuser = TileFuser(scene, plan.fusion, tiles)
    row_cuts, col_cuts = tiles.cells()
    name = f"spatialx-xr-{time.time_ns()}"

    def tile_result(row: int, col: int) -> tuple[Any, np.ndarray, np.ndarray]:
        block = fuser.group(row, (col,))
        return tiles.tile(row, col), block[:-1], block[-1] > 0.5

    def cell(window: Window, *results: tuple[Any, np.ndarray, np.ndarray]) -> np.ndarray:
        values, valid = blend_cell(tiles, window, list(results))
        return plan.encoder(values, valid > 0.5)

    graph: dict[Any, Any] = {}
    for r in range(tiles.shape[0]):
        for c in range(tiles.shape[1]):
            graph[(f"{name}-tile", r, c)] = (tile_result, r, c)
    for ri in range(len(row_cuts) - 1):
        for ci in range(len(col_cuts) - 1):
            window = Window(col_cuts[ci], row_cuts[ri], col_cuts[ci + 1] - col_cuts[ci],
                            row_cuts[ri + 1] - row_cuts[ri])
            covering = [(f"{name}-tile", r, c) for r, c in tiles.covering(ri, ci)]
            graph[(name, 0, ri, ci)] = (cell, window, *covering)
    chunks = ((bands,), tuple(np.diff(row_cuts).tolist()), tuple(np.diff(col_cuts).tolist()))
    data = da.Array(graph, name, chunks=chunks, dtype=np.dtype(plan.dtype))
    return _labelled(data, plan, method, options, xr)


def _labelled(data: Any, plan: Any, method: str, options: RunOptions, xr: Any) -> Any:
    import rioxarray  # noqa: F401

    grid = plan.scene.alignment.grid
    transform = grid.transform
    xs = transform.c + transform.a * (np.arange(grid.width) + 0.5)
    ys = transform.f + transform.e * (np.arange(grid.height) + 0.5)
    sensor = plan.output_sensor
    coords = {"band": [b.name for b in sensor.bands], "y": ys, "x": xs,
              "wavelength": ("band", [np.nan if b.center_nm is None else b.center_nm for b in sensor.bands]),
              "fwhm": ("band", [np.nan if b.width_nm is None else b.width_nm for b in sensor.bands])}
    attrs = {key: value for key, value in plan.tags(method, options).items() if not key.startswith("TIFFTAG")}
    result = xr.DataArray(data, dims=("band", "y", "x"), coords=coords, attrs=attrs, name=f"{method}")
    if grid.crs is not None:
        result = result.rio.write_crs(grid.crs)
    result = result.rio.write_transform(transform)
    if plan.nodata is not None:
        result = result.rio.write_nodata(plan.nodata, encoded=False)
    return result
