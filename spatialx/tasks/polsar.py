"""``spatialx polsar``: the quad-pol covariance matrix C3 at the single-pol resolution, as a library call over
:func:`spatialx.fuse`, with the Pauli RGB and the Cloude-Pottier decomposition as side products.

The quad-pol input is read as C3 by its reader (SLC sets and RADARSAT-2 products are multilooked on the fly,
:mod:`spatialx.io.radarsat2`; a 9-band C3 GeoTIFF is read as it is); the single-pol input as intensity.
:func:`simulate_pair` builds the reduced-resolution pair from one quad-pol scene (the C3 averaged over ratio x ratio
blocks, the HH intensity at full resolution), for ``--simulate-from`` and ``evaluate reduced --task polsar``.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from spatialx.errors import InputMismatchError, SpatialxError
from spatialx.options import RunOptions
from spatialx.tasks import POLSAR

__all__ = ["polsar", "read_polsar_pair", "simulate_pair"]

QUAD_SENSOR, SINGLE_SENSOR = "radarsat2_quad", "radarsat2_single"
#: Rows of C3 read at a time while simulating (a multiple of any ratio up to 8).
SIMULATE_ROWS = 256


def _reader_options(path: str | PathLike[str], options: Mapping[str, Any]) -> Mapping[str, Any] | None:
    from spatialx.io.read import product_format_name

    return dict(options) if options and product_format_name(path) else None


def _speckle_options(looks: int | None, speckle: str) -> dict[str, Any]:
    return {"speckle": speckle, **({"looks": looks} if looks is not None else {})}


def simulate_pair(quad: str | PathLike[str], ratio: int, directory: str | PathLike[str], *, looks: int | None = None,
                  speckle: str = "boxcar", polarisation: str = "HH") -> dict[str, Path]:
    """The reduced-resolution pair of one quad-pol scene, written into ``directory``: ``quad`` (the C3 averaged
    over ``ratio x ratio`` blocks, on a grid ``ratio`` times coarser) and ``single`` (the ``polarisation`` intensity
    of the full-resolution C3: C11 for HH, C33 for VV), plus ``reference`` (the full-resolution C3), all float32.
    Block by block: memory does not grow with the scene."""
    from affine import Affine

    from spatialx.io.read import open_raster
    from spatialx.io.write import BandInfo, OutputSpec, RasterWriter, gdal_env
    from spatialx.sensors import get_sensor

    ratio = int(ratio)
    if ratio < 2:
        raise SpatialxError(f"--ratio {ratio}: the reduced-resolution protocol degrades by 2 or more")
    channel = {"HH": 0, "VV": 8}.get(polarisation.upper())
    if channel is None:
        raise SpatialxError(f"cannot simulate a {polarisation} single-pol image from C3", hint="use HH or VV")
    info = open_raster(quad, role="quad-pol", options=_reader_options(quad, _speckle_options(looks, speckle)))
    if info.count != 9:
        raise InputMismatchError(f"the quad-pol input has {info.count} bands, not the 9 channels of C3",
                                 path=info.path, hint="give the four SLC polarisations or a 9-band C3 GeoTIFF")
    grid = info.grid
    rows, cols = grid.height // ratio * ratio, grid.width // ratio * ratio
    if rows < 8 * ratio or cols < 8 * ratio:
        raise InputMismatchError(f"the quad-pol scene ({grid.width}x{grid.height}) is too small for ratio {ratio}",
                                 path=info.path, hint=f"it needs at least {8 * ratio} pixels a side")
    directory = Path(directory)
    names = [b.name for b in get_sensor(QUAD_SENSOR).bands]
    transform = grid.transform
    coarse = transform @ Affine.scale(ratio, ratio)
    from spatialx.grid import Grid

    specs = {
        "reference": OutputSpec(directory / "reference_c3.tif", Grid(transform, cols, rows, grid.crs), "float32",
                                [BandInfo(n) for n in names], cog=False),
        "quad": OutputSpec(directory / "quad_lr.tif", Grid(coarse, cols // ratio, rows // ratio, grid.crs),
                           "float32", [BandInfo(n) for n in names], cog=False),
        "single": OutputSpec(directory / f"single_{polarisation.lower()}.tif", Grid(transform, cols, rows, grid.crs),
                             "float32", [BandInfo("intensity")], cog=False),
    }
    step = SIMULATE_ROWS // ratio * ratio or ratio
    with gdal_env(), info.reader() as reader, RasterWriter(specs["reference"]) as ref, \
            RasterWriter(specs["quad"]) as low, RasterWriter(specs["single"]) as single:
        for top in range(0, rows, step):
            height = min(step, rows - top)
            c3 = reader.read(Window(0, top, cols, height))
            ref.write(c3, Window(0, top, cols, height))
            single.write(c3[channel:channel + 1], Window(0, top, cols, height))
            blocks = c3.reshape(9, height // ratio, ratio, cols // ratio, ratio).mean(axis=(2, 4))
            low.write(blocks.astype(np.float32), Window(0, top // ratio, cols // ratio, height // ratio))
    return {key: spec.path for key, spec in specs.items()}


def read_polsar_pair(single: str | PathLike[str], quad: str | PathLike[str], *, looks: int | None = None,
                     speckle: str = "boxcar", single_looks: int = 1) -> tuple[np.ndarray, np.ndarray, int]:
    """``(intensity (1, H, W), C3 (9, h, w), g)``: a single-pol and a quad-pol input read whole with the fusion
    readers (SLC sets multilooked as ``polsar`` does) on nested grids, the quad-pol pixel ``g`` single-pol pixels
    wide from the same upper-left corner (``g`` 1: a single-pol image on the C3's own grid, e.g. its HH channel).
    For training: the scenes are small enough to hold (the training patches are cut from memory)."""
    from spatialx.io.read import open_raster

    single_info = open_raster(single, role="single-pol", options=_reader_options(single, {"looks": single_looks}))
    quad_info = open_raster(quad, role="quad-pol", options=_reader_options(quad, _speckle_options(looks, speckle)))
    if quad_info.count != 9:
        raise InputMismatchError(f"the quad-pol input has {quad_info.count} bands, not the 9 channels of C3",
                                 path=quad_info.path, hint="give the four SLC polarisations or a 9-band C3 GeoTIFF")
    if single_info.count != 1:
        raise InputMismatchError(f"the single-pol input has {single_info.count} bands, not one intensity",
                                 path=single_info.path, hint="give one single-pol SLC or intensity image")
    fine, coarse = single_info.grid, quad_info.grid
    ratio = coarse.transform.a / fine.transform.a
    grid_ratio = round(ratio)
    corner = ~fine.transform @ (coarse.transform.c, coarse.transform.f)
    nested = (grid_ratio >= 1 and abs(ratio - grid_ratio) < 1e-6 * grid_ratio
              and abs(coarse.transform.e / fine.transform.e - grid_ratio) < 1e-6 * grid_ratio
              and max(abs(corner[0]), abs(corner[1])) < 1e-3 and fine.crs == coarse.crs)
    if not nested:
        raise InputMismatchError("the quad-pol grid is not nested in the single-pol grid from the same upper-left "
                                 "corner", path=quad_info.path,
                                 hint="training needs the pair on nested grids (as spatialx polsar --simulate-from "
                                      "writes them)")
    rows = min(coarse.height, fine.height // grid_ratio)
    cols = min(coarse.width, fine.width // grid_ratio)
    with single_info.reader() as reader:
        intensity = reader.read(Window(0, 0, cols * grid_ratio, rows * grid_ratio)).astype(np.float32)
    with quad_info.reader() as reader:
        c3 = reader.read(Window(0, 0, cols, rows)).astype(np.float32)
    if not (np.isfinite(intensity).all() and np.isfinite(c3).all()):
        raise InputMismatchError("the pair has non-finite pixels", path=quad_info.path,
                                 hint="train on scenes without nodata")
    return intensity, c3, grid_ratio


def polsar(quad: str | PathLike[str], single: str | PathLike[str], output: str | PathLike[str], *,
           method: str = "bicubic", looks: int | None = None, speckle: str = "boxcar", single_looks: int = 1,
           quad_sensor: str = QUAD_SENSOR, single_sensor: str = SINGLE_SENSOR,
           pauli: str | PathLike[str] | None = None, decomposition: str | PathLike[str] | None = None,
           options: RunOptions | None = None, **changes: Any):
    """Fuse ``quad`` (quad-pol SLC set, RADARSAT-2 product or C3 GeoTIFF) with ``single`` (single-pol SLC or
    intensity) into the 9-band C3 COG ``output`` on the single-pol grid; optionally write the Pauli RGB
    (``pauli``) and the H/A/alpha decomposition (``decomposition``) of the result. ``looks`` and ``speckle`` say
    how SLC inputs are multilooked into C3 (``looks`` None: the reader's default window, 5 for the boxcar, 7 for
    the refined Lee filter; ``single_looks`` for a single-pol SLC). ``changes`` are
    :class:`~spatialx.options.RunOptions` fields.
    """
    from spatialx.io.outputs import OutputPlan
    from spatialx.pipeline import fuse

    run = RunOptions.of(options, **changes)
    # Side products are checked with the product, before any work.
    plan = OutputPlan({"quad-pol": quad, "single-pol": single}, overwrite=run.overwrite)
    plan.add(output, what="output")
    sides = {kind: path for kind, path in (("pauli", pauli), ("decomposition", decomposition)) if path is not None}
    for kind, path in sides.items():
        plan.add(path, what=f"{kind} product")
        plan.add(Path(path).with_suffix(".qml"), what=f"style of the {kind} product", kind="sidecar")
    read_options = {role: value for role, value in (
        ("quad", _reader_options(quad, _speckle_options(looks, speckle))),
        ("single", _reader_options(single, {"looks": single_looks}))) if value}
    run = run.updated(read_options={**read_options, **dict(run.read_options)})
    result = fuse(POLSAR, {"quad": quad, "single": single}, output, method=method,
                  sensor={"quad": quad_sensor, "single": single_sensor}, options=run)
    from spatialx.products import polsar as products

    if "pauli" in sides:
        result.products["pauli"] = products.write_pauli(result.output, sides["pauli"], overwrite=run.overwrite)
    if "decomposition" in sides:
        result.products["decomposition"] = products.write_decomposition(result.output, sides["decomposition"],
                                                                        overwrite=run.overwrite)
    return result
