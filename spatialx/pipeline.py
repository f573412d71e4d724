"""The one data path of every task: read -> align -> tile (dask) -> fuse -> blend -> write -> products.

:func:`fuse` is the library entry point behind every fusion command: it checks every path the run will write, opens
the task's inputs and plans the output grid (:func:`open_scene`, :mod:`spatialx.align`), builds the method from a
context of the roles' sensors (:func:`plan_fusion`), lets the method compute its scene statistics on a first,
sampled pass, then streams tiles through a dask graph whose blocks are stitched by
:class:`~spatialx.tiling.OverlapAddStitcher` and written by :class:`~spatialx.io.write.RasterWriter`, and finally
writes the side products (NDVI, QGIS style, quality report). Memory is bounded by the tile size and the number of
workers.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any

import dask
import dask.threaded
import numpy as np
from rasterio.crs import CRS
from rasterio.windows import Window

from spatialx import __version__
from spatialx.align import align
from spatialx.cluster import RemoteFusion, connect
from spatialx.errors import InputMismatchError, SpatialxError
from spatialx.io.journal import COUNTS, Journal
from spatialx.io.read import RasterInfo, open_raster
from spatialx.io.write import (
    COMPRESS_LEVELS,
    DEFAULT_COMPRESS_LEVEL,
    BandInfo,
    OutputSpec,
    RasterWriter,
    block_size_for,
    gdal_env,
    partial_path,
)
from spatialx.methods import FusionMethod, create_method, get_method_info
from spatialx.methods.base import MethodContext, SensorArg, role_sensors
from spatialx.options import Progress, RunOptions
from spatialx.scene import SceneInputs, first_pass, physical_profile, profile_for_file, resolve_bands
from spatialx.sensors import SensorProfile
from spatialx.tasks import Resampling, TaskSpec, get_task
from spatialx.tiling import OverlapAddStitcher, Tile, TilePlan

__all__ = ["FusionResult", "Progress", "RunOptions", "fuse", "fuse_scene", "open_scene", "plan_fusion",
           "resolve_bands"]


@dataclass
class FusionResult:
    """What a fusion run produced, for the CLI and for scripts."""

    output: Path
    method: str
    sensor: str
    shape: tuple[int, int, int]
    tiles: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    task: str = "pansharpen"
    nodata: float | None = None
    output_profile: SensorProfile | None = field(default=None, repr=False)
    #: Side products written next to the product (NDVI, styles, quality report), by kind.
    products: dict[str, Path] = field(default_factory=dict)


def _pad(array: np.ndarray, pad: tuple[int, int, int, int]) -> np.ndarray:
    if not any(pad):
        return array
    top, bottom, left, right = pad
    return np.pad(array, ((0, 0), (top, bottom), (left, right)), mode="edge")


class _Encoder:
    """Turns blended float values into the output dtype, with nodata where inputs had none."""

    def __init__(self, dtype: str, nodata: float | None, max_value: float | None, scale: float = 1.0):
        self.dtype = np.dtype(dtype)
        self.nodata = nodata
        self.scale = scale  # stored value = value / scale
        # A valid value equal to nodata (0 inside a signed range) is written one step above it instead.
        self.nudge = False
        if self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            # Sensor DN are never negative (a signed output type does not make them so); physical values may be.
            low = 0 if self.dtype.kind == "u" or max_value is not None else info.min
            if nodata is not None and nodata == low:
                low += 1  # keep valid pixels distinguishable from nodata
            high = info.max if max_value is None else min(info.max, max_value)
            self.range: tuple[float, float] | None = (low, high)
            self.nudge = nodata is not None and low < nodata <= high
        else:
            self.range = None
        # Valid values written, and how many fell below or above the range and were clipped (one warning at the end).
        self.values = self.below = self.above = 0
        self._lock = threading.Lock()

    def clipping_warning(self) -> str | None:
        """One line when more than 0.1 % of the valid values were clipped to the output's range, else None."""
        if self.range is None or not self.values:
            return None
        low, high = self.range
        parts = []
        if self.above > 0.001 * self.values:
            parts.append(f"{self.above / self.values:.1%} above {high:g} (the sensor's maximum in {self.dtype})")
        if self.below > 0.001 * self.values:
            parts.append(f"{self.below / self.values:.1%} below {low:g}")
        if not parts:
            return None
        return (f"{' and '.join(parts)} of the output values were clipped: check --sensor (its bit depth), or write "
                "--dtype float32 to keep them")

    def __call__(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        return self.encode(values, valid)[0]

    def encode(self, values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
        """The stored values of one cell, and what it added to the counts: (valid values, below, above)."""
        if self.scale != 1.0:
            values = values / np.float32(self.scale)
        counts = (0, 0, 0)
        if self.range is not None:
            # Counted in place (no copy of the valid values: this runs on every output cell).
            below = int(np.count_nonzero((values < self.range[0] - 0.5) & valid))
            above = int(np.count_nonzero((values > self.range[1] + 0.5) & valid))
            counts = (int(np.count_nonzero(valid)) * values.shape[0], below, above)
            with self._lock:
                self.values += counts[0]
                self.below += below
                self.above += above
            values = np.rint(values)
            np.clip(values, *self.range, out=values)
        out = values.astype(self.dtype)
        if self.nudge:
            out[(out == self.nodata) & valid[None]] = self.dtype.type(self.nodata + 1)
        if self.nodata is not None or self.dtype.kind == "f":
            out[:, ~valid] = self.nodata if self.nodata is not None else np.nan
        return out, counts


def _output_bands(sensor: SensorProfile) -> list[BandInfo]:
    """Band names and wavelengths, with the default view's red, green and blue marked (QGIS opens it so)."""
    from spatialx.products.style import default_rgb, with_colors

    bands = [BandInfo(b.name, b.center_nm, b.width_nm) for b in sensor.bands]
    return with_colors(bands, default_rgb(bands, _style_kind(sensor)))


def _style_kind(sensor: SensorProfile) -> str:
    return "polsar" if sensor.kind == "sar" else "optical"


_WARP_RESAMPLING = {Resampling.NEAREST: "nearest", Resampling.COVARIANCE: "bilinear"}


def open_scene(task: TaskSpec, inputs: Mapping[str, str | PathLike[str] | RasterInfo], sensor: SensorArg,
               options: RunOptions) -> tuple[SceneInputs, dict[str, SensorProfile]]:
    """Open every role's input, match its bands to its sensor, and plan the output grid.

    Returns the inputs (readers not yet open) and each role's sensor profile (the output-like role's restricted to
    ``options.bands``).
    """
    task.check_inputs(set(inputs))
    roles = tuple(role for role in task.role_names if role in inputs)
    profiles = role_sensors(task, sensor, roles)

    def opened(role: str, warp_to: CRS | None = None) -> RasterInfo:
        given = inputs[role]
        if isinstance(given, RasterInfo):
            return given
        resampling = _WARP_RESAMPLING.get(task.role(role).resampling, "cubic")
        return open_raster(given, role=task.label(role), warp_to=warp_to, warp_resampling=resampling,
                           options=options.read_options.get(role))

    rasters = {task.guide: opened(task.guide)}
    warp_to = rasters[task.guide].grid.crs if options.reproject else None
    rasters.update({role: opened(role, warp_to) for role in roles if role != task.guide})
    bands, linear = {}, {}
    for role in roles:
        if isinstance(options.bands, Mapping):
            selection = options.bands.get(role)
        else:
            selection = options.bands if role == task.output_like else None
        profile = profile_for_file(rasters[role], profiles[role])
        profiles[role], bands[role] = resolve_bands(rasters[role], profile, selection, task.label(role))
        if task.role(role).physical:
            profiles[role], coefficients = physical_profile(rasters[role], profiles[role])
            if coefficients is not None:
                linear[role] = coefficients
    others = {task.label(role): rasters[role] for role in roles if role != task.guide}
    resampling = {task.label(role): task.role(role).resampling for role in roles}
    alignment = align(rasters[task.guide], others, task.label(task.guide), resampling)
    alignment.resamplers = {role: alignment.resamplers[task.label(role)] for role in roles if role != task.guide}
    for role in roles:
        if rasters[role].warp_crs is not None:
            alignment.notes.append(f"{task.label(role)} reprojected on the fly from "
                                   f"{_crs_name(rasters[role].native_crs)} onto the "
                                   f"{task.label(task.guide)} CRS {_crs_name(rasters[role].warp_crs)} "
                                   f"({rasters[role].warp_resampling})")
    return SceneInputs(task, rasters, bands, alignment, linear=linear), profiles


def _crs_name(crs: CRS | None) -> str:
    if crs is None:
        return "none"
    epsg = crs.to_epsg()
    if epsg:
        return f"EPSG:{epsg}"
    # A CRS without a code (MODIS sinusoidal): its PROJ string says what it is; WKT would be a page.
    proj = crs.to_proj4() if crs.to_dict() else ""
    return proj or "a custom CRS"


@dataclass
class FusionPlan:
    """Everything decided before the first pixel is fused: inputs, method, tiles, output encoding and tags."""

    scene: SceneInputs
    sensors: dict[str, SensorProfile]
    fusion: FusionMethod
    tiles: TilePlan
    dtype: str
    nodata: float | None
    encoder: _Encoder
    params: dict[str, Any]
    notes: list[str]

    @property
    def output_sensor(self) -> SensorProfile:
        return self.sensors[self.scene.task.output_like]

    def tags(self, method: str, options: RunOptions) -> dict[str, Any]:
        task = self.scene.task
        keys = {self.sensors[role].key for role in self.scene.rasters}
        tags = {
            "TIFFTAG_SOFTWARE": f"spatialx {__version__}",
            "SPATIALX_VERSION": __version__,
            "SPATIALX_TASK": task.name,
            "SPATIALX_METHOD": method,
            "SPATIALX_SENSOR": self.output_sensor.key if len(keys) == 1 else
            {task.label(role): self.sensors[role].key for role in self.scene.rasters},
            "SPATIALX_PARAMS": self.params,
            "SPATIALX_INPUTS": {task.label(r): info.path.name for r, info in self.scene.rasters.items()},
        }
        if options.dates:
            tags["SPATIALX_DATES"] = {task.label(role): str(date) for role, date in options.dates.items()}
        warped = [note for note in self.notes if "reprojected on the fly" in note]
        if warped:
            tags["SPATIALX_REPROJECTED"] = warped
        tags.update({f"SPATIALX_{key.upper()}": value for key, value in options.provenance.items()})
        return tags


#: Output data types a COG with predictor holds and QGIS reads (GDAL's complex and 8-bit signed types are not).
OUTPUT_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
#: Scale of physical values written as integers, by unit (stored = value / scale), as the agencies store them.
INTEGER_SCALES = {"reflectance": 1e-4, "K": 0.01}
#: Largest resolution ratio a method's filters are built for (filters and halos grow with it).
MAX_RATIO = 32


def default_tile(bands: int) -> int:
    """512 px tiles; 256 px for outputs of over 32 bands, whose tiles would hold gigabytes (a 512 px tile of a
    230-band cube is 241 MB per copy, and fusing one takes several)."""
    return 512 if bands <= 32 else 256


def _output_dtype(requested: str | None, input_dtype: str) -> str:
    dtype = requested or input_dtype
    if dtype not in OUTPUT_DTYPES:
        raise SpatialxError(f"--dtype {dtype}: not an output data type spatialx writes" if requested else
                            f"the input's data type {dtype} cannot be written as a product",
                            hint=f"choose one of {', '.join(OUTPUT_DTYPES)}")
    return dtype


def _resolution(sensor: SensorProfile) -> float | None:
    """The sensor's ground resolution: its own, or the one all its bands share."""
    if sensor.resolution_m:
        return sensor.resolution_m
    resolutions = {b.resolution_m for b in sensor.bands}
    return resolutions.pop() if len(resolutions) == 1 and None not in resolutions else None


def _nominal_ratio(task: TaskSpec, sensors: Mapping[str, SensorProfile], grid_ratio: float) -> float:
    """The resolution ratio the method's filters assume: they model the sensors' optics, so it is the sensors'
    ratio, not the grids' (an MS delivered already resampled onto the PAN grid still has the MS's optics).

    The PAN:MS ratio of one sensor; else the ratio of the two sensors' ground resolutions (PRISMA 30 m and
    Sentinel-2 10 m: 3); else the grid ratio.
    """
    out, guide = sensors[task.output_like], sensors[task.guide]
    if out.ratio and out.path == guide.path:
        return float(out.ratio)
    out_res, guide_res = _resolution(out), _resolution(guide)
    if out_res and guide_res:
        return out_res / guide_res
    return max(1.0, grid_ratio)


def _with_method_resampling(task: TaskSpec, method: str) -> TaskSpec:
    """``task`` with the roles' resampling the method asks for (:attr:`FusionMethod.resampling`)."""
    from spatialx.methods.registry import method_factory

    wanted = getattr(method_factory(method, task.name), "resampling", {})
    if not wanted:
        return task
    return replace(task, roles=tuple(replace(role, resampling=wanted[role.name]) if role.name in wanted else role
                                     for role in task.roles))


def plan_fusion(task: TaskSpec, inputs: Mapping[str, str | PathLike[str] | RasterInfo], sensor: SensorArg,
                method: str, options: RunOptions) -> FusionPlan:
    """Open and align the inputs and build the method and the tile plan; nothing is read past the headers."""
    get_method_info(method, task.name)
    task = _with_method_resampling(task, method)
    for role in options.dates:
        if not task.role(role).dated:
            raise SpatialxError(f"the {task.label(role)} input of {task.name} takes no date")
    scene, sensors = open_scene(task, inputs, sensor, options)
    alignment = scene.alignment
    grid_ratios = {role: resampler.ratio for role, resampler in alignment.resamplers.items()}
    if task.guide_finest:
        for role, grid_ratio in grid_ratios.items():
            if grid_ratio < 1 - 1e-6:
                raise InputMismatchError(
                    f"{task.label(role)} pixels are {1 / grid_ratio:.3g} times finer than the "
                    f"{task.label(task.guide)}'s, the output grid", path=scene.rasters[role].path,
                    hint=f"the {task.label(task.guide)} must be the finest input: check the order of the inputs")
    grid_ratio = grid_ratios.get(task.output_like, 1.0)
    output_sensor = sensors[task.output_like]
    if options.ndvi is not None and (output_sensor.ndvi_red is None or output_sensor.ndvi_nir is None):
        # Said before any work: the NDVI is written after the product, which must not be left behind for nothing.
        raise InputMismatchError(f"sensor {output_sensor.key!r} has no red and near-infrared bands for an NDVI",
                                 path=output_sensor.path, hint="drop --ndvi, or give a sensor with ndvi bands")
    ratio = float(options.ratio or _nominal_ratio(task, sensors, grid_ratio))
    if not 1 <= ratio <= MAX_RATIO:
        raise SpatialxError(f"--ratio {ratio:g} is outside 1..{MAX_RATIO}",
                            hint="give the resolution ratio between the inputs, e.g. 4 for PAN/MS")
    if abs(grid_ratio - ratio) > 0.05 * ratio:
        alignment.notes.append(f"{task.label(task.output_like)} grid ratio {grid_ratio:.4g} differs from the "
                               f"method ratio {ratio:g} (sensor {output_sensor.key}); pass --ratio to change it")
    context = MethodContext(task, sensors, ratio, grid_ratios)
    fusion: FusionMethod = create_method(method, context, **dict(options.method_options))
    fusion.device = options.device
    unknown = sorted(set(options.layers) - set(fusion.layers))
    if unknown:
        offered = ", ".join(fusion.layers) or "none"
        raise SpatialxError(f"method {method} writes no {', '.join(unknown)} layer",
                            hint=f"its layers: {offered}")
    fusion.emit = tuple(options.layers)
    overlap = fusion.default_overlap if options.overlap is None else options.overlap
    tile = options.tile or fusion.preferred_tile or default_tile(len(output_sensor.bands))
    step = fusion.align
    if step > 1 and (tile % step or overlap % step):
        # Methods that decimate need tiles on their decimation phase: round up rather than refuse a default.
        rounded = -(-tile // step) * step, -(-overlap // step) * step
        alignment.notes.append(f"tile {tile} px and overlap {overlap} px rounded up to {rounded[0]} and "
                               f"{rounded[1]} px (multiples of {step} for {method})")
        tile, overlap = rounded
    grid = alignment.grid
    try:
        tiles = TilePlan(grid.height, grid.width, tile=tile, overlap=overlap, halo=fusion.halo,
                         align=fusion.align)
    except ValueError as exc:
        raise SpatialxError(f"invalid tiling: {exc}", hint="adjust --tile / --overlap") from None
    out_like = scene.rasters[task.output_like]
    physical = task.role(task.output_like).physical
    dtype = _output_dtype(options.dtype, "float32" if physical else out_like.dtype)
    integer = np.dtype(dtype).kind in "iu"
    # Physical values stored as integers keep a scale (GDAL band scale, which QGIS and rioxarray apply).
    scale = INTEGER_SCALES.get(output_sensor.units or "", 1.0) if physical and integer else 1.0
    nodata = out_like.nodata if out_like.nodata is not None else output_sensor.nodata
    if physical:  # float products declare NaN, so that GIS software masks what the encoder leaves empty
        nodata = 0.0 if integer else float("nan")
    encoder = _Encoder(dtype, nodata, output_sensor.max_value if integer and not physical else None, scale)
    params = {"ratio": round(ratio, 6), "grid_ratio": round(grid_ratio, 6), "tile": tile,
              "overlap": overlap, "halo": fusion.halo}
    if scale != 1.0:
        params["scale"] = scale
    return FusionPlan(scene, sensors, fusion, tiles, dtype, nodata, encoder, params, list(alignment.notes))


def fuse_scene(task: TaskSpec, inputs: Mapping[str, str | PathLike[str]], output: str | PathLike[str],
               method: str, sensor: SensorArg, options: RunOptions) -> FusionResult:
    """Fuse the rasters in ``inputs`` (role -> path) into the COG ``output`` with ``method``: the product only.

    :func:`fuse` is the entry point: it also checks every output path first and writes the side products.
    """
    started = time.perf_counter()
    out_path = Path(output)
    plan = plan_fusion(task, inputs, sensor, method, options)
    if options.align_shift not in (None, "auto"):
        raise SpatialxError(f"--align-shift {options.align_shift}: only auto is known",
                            hint="--align-shift auto corrects the shift the preflight measures")
    if options.align_shift == "auto":
        plan = _realigned(plan, task, sensor, method, options)
    scene, grid = plan.scene, plan.scene.alignment.grid
    level = DEFAULT_COMPRESS_LEVEL if options.compress_level is None else options.compress_level
    if level not in COMPRESS_LEVELS:
        raise SpatialxError(f"--compress-level {level}: deflate levels are 1 to 9",
                            hint="1 writes fastest (the default), 9 writes the smallest files")
    fuser = TileFuser(scene, plan.fusion, plan.tiles)
    needs_fit = type(plan.fusion).fit is not FusionMethod.fit  # pointwise methods need no scene statistics
    with scene, gdal_env(options.workers), connect(options.scheduler, options.workers) as client:
        check_alignment(plan, options)
        remote = None
        if client is not None:
            remote = RemoteFusion(client, fuser, needs_fit)
            plan.params.update(remote.params)
        else:
            if needs_fit:
                plan.fusion.fit(first_pass(scene))
            plan.params.update(plan.fusion.params())
        resumable = options.resume is not None
        spec = OutputSpec(path=out_path, grid=grid, dtype=plan.dtype, bands=_output_bands(plan.output_sensor),
                          nodata=plan.nodata, tags=plan.tags(method, options), overwrite=options.overwrite,
                          scale=plan.encoder.scale, blocksize=block_size_for(len(plan.output_sensor.bands)),
                          resumable=resumable, compress_level=level)
        layer_specs = [OutputSpec(path=Path(path), grid=grid, dtype="float32",
                                  bands=[BandInfo(name)], nodata=float("nan"),
                                  tags={**spec.tags, "SPATIALX_LAYER": name,
                                        "SPATIALX_LAYER_DESCRIPTION": plan.fusion.layers[name]},
                                  overwrite=options.overwrite, blocksize=block_size_for(1), resumable=resumable,
                                  compress_level=level)
                       for name, path in options.layers.items()]
        journal = None
        if resumable:
            staged = [partial_path(s.path, ".tif") for s in (spec, *layer_specs)]
            journal = Journal.load(out_path, str(options.resume), staged)
            if journal.resuming:
                plan.notes.append(f"resumed: {journal.rows_done} of {plan.tiles.shape[0]} tile rows were staged by "
                                  "an interrupted run of this job")
        try:
            with contextlib.ExitStack() as stack:
                writers = [stack.enter_context(RasterWriter(s, workers=options.workers,
                                                            resume=journal is not None and journal.resuming))
                           for s in (spec, *layer_specs)]
                valid = _run_tiles(fuser, len(plan.output_sensor.bands), plan.encoder, writers, options.workers,
                                   options.progress, remote, journal)
                if valid == 0:  # raised inside the writers: nothing is published
                    raise InputMismatchError("no output pixel holds data: the inputs are nodata (or zero, NaN) over "
                                             "the whole common footprint", path=scene.rasters[task.guide].path,
                                             hint="check the inputs' nodata value and that they cover the same "
                                                  "ground")
        except BaseException:
            if journal is not None and not journal.resuming:  # nothing worth keeping for a rerun
                for path in staged:
                    path.unlink(missing_ok=True)
            raise
        if journal is not None:
            journal.remove()
        warning = plan.encoder.clipping_warning()
        if warning:
            warnings.warn(warning, stacklevel=2)
    return FusionResult(output=out_path, method=method, sensor=plan.output_sensor.key,
                        shape=(len(plan.output_sensor.bands), grid.height, grid.width), tiles=len(plan.tiles),
                        seconds=time.perf_counter() - started, notes=plan.notes, params=plan.params,
                        task=task.name, nodata=plan.nodata, output_profile=plan.output_sensor)


def check_alignment(plan: FusionPlan, options: RunOptions) -> None:
    """Run the alignment preflight on an opened plan: record the shift in its params, warn above half a low-resolution
    pixel, refuse above the limit unless ``options.allow_misregistration`` (:mod:`spatialx.registration`)."""
    check = alignment_preflight(plan)
    if check is None:
        return
    plan.params["alignment"] = check.tags()
    if check.decision == "warn":
        warnings.warn(check.message, stacklevel=3)
    elif check.decision == "refuse" and not options.allow_misregistration:
        task = plan.scene.task
        raise InputMismatchError(check.message, path=plan.scene.rasters[task.resampled[0]].path,
                                 hint="check the georeferencing of both inputs, or pass "
                                      "--allow-misregistration to go on anyway")


def _realigned(plan: FusionPlan, task: TaskSpec, sensor: SensorArg, method: str, options: RunOptions) -> FusionPlan:
    """``plan`` again with the low-resolution input's georeferencing moved by the measured shift (``--align-shift
    auto``): its pixels are read as they are, from where they belong. Unchanged when there is nothing reliable to
    correct."""
    from spatialx.registration import corrected_transform

    with plan.scene, gdal_env(options.workers):
        check = alignment_preflight(plan)
    if check is None or not check.estimate.reliable or check.estimate.magnitude < 0.05:
        if check is not None:
            plan.notes.append(f"--align-shift auto: nothing corrected ({check.message})")
        return plan
    low = plan.scene.resampled[0]
    info = plan.scene.rasters[low]
    moved = replace(info, grid=replace(info.grid, transform=corrected_transform(info.grid.transform,
                                                                                check.estimate)))
    replanned = plan_fusion(task, {**plan.scene.rasters, low: moved}, sensor, method, options)
    shift = {"dx": round(check.estimate.dx, 3), "dy": round(check.estimate.dy, 3)}
    replanned.params["alignment_corrected"] = shift
    replanned.notes.append(f"{task.label(low)} georeferencing moved by dx={shift['dx']:+.3f}, dy={shift['dy']:+.3f} "
                           f"of its pixels to match the {task.label(task.guide)} (--align-shift auto)")
    return replanned


#: Side of the output window the alignment preflight reads (a bounded read whatever the scene size).
PREFLIGHT_WINDOW = 1024


def alignment_preflight(plan: FusionPlan):
    """The shift between the guide's content and the first lower-resolution input's (:mod:`spatialx.registration`),
    measured on one central window of at most :data:`PREFLIGHT_WINDOW` output pixels (fewer for many bands, so that
    the read stays within :data:`spatialx.scene.BLOCK_VALUES`). The guide is compared with the PAN-weighted MS
    (pansharpening), or the mean of its bands with the mean of the other input's bands inside the guide's spectral
    range (hmif: the HS bands Sentinel-2's 10 m bands span; stfuse: the coarse image of the first pair date). None
    for covariance and label inputs (PolSAR, masks) and for inputs already on the output grid."""
    from spatialx.registration import preflight_arrays
    from spatialx.scene import BLOCK_VALUES

    scene, task = plan.scene, plan.scene.task
    if not scene.resampled:
        return None
    low = scene.resampled[0]
    if task.role(low).resampling in (Resampling.COVARIANCE, Resampling.NEAREST):
        return None
    ratio = scene.alignment.resamplers[low].ratio
    if ratio < 1.5:
        return None
    grid = scene.alignment.grid
    side = min(PREFLIGHT_WINDOW, math.isqrt(BLOCK_VALUES // max(1, scene.band_count)))
    height, width = min(side, grid.height), min(side, grid.width)
    window = Window((grid.width - width) // 2, (grid.height - height) // 2, width, height)
    arrays, valid = scene.read(window)
    guide_sensor, low_sensor = plan.sensors[task.guide], plan.sensors[low]
    weights: tuple[float, ...] | None = tuple(low_sensor.pan_weights)
    low_bands = arrays[low]
    if task.role(task.guide).sensor_part != "pan":
        weights = None
        span = [b.center_nm for b in guide_sensor.bands if b.center_nm is not None]
        inside = [k for k, b in enumerate(low_sensor.bands)
                  if span and b.center_nm is not None and min(span) - 50 <= b.center_nm <= max(span) + 50]
        if inside and len(inside) < low_bands.shape[0]:
            low_bands = low_bands[inside]
    return preflight_arrays(arrays[task.guide], low_bands, ratio, valid=valid,
                            weights=weights if weights and len(weights) == low_bands.shape[0] else None,
                            guide_label=task.label(task.guide), low_label=task.label(low))


def fuse(task: str | TaskSpec, inputs: Mapping[str, str | PathLike[str]], output: str | PathLike[str], *,
         method: str, sensor: SensorArg, options: RunOptions | None = None, **changes: Any) -> FusionResult:
    """Fuse ``inputs`` (role -> path) of ``task`` into the COG ``output`` with ``method``; write the side products.

    ``sensor`` is one sensor for every role, or ``{role: sensor}``. ``options`` (a :class:`RunOptions`) and keyword
    ``changes`` to it say how: ``spatialx.fuse("pansharpen", {"pan": p, "ms": m}, "out.tif", method="gsa",
    sensor="wv3", tile=256, ndvi="ndvi.tif")``. Every path the run writes is checked before any work starts.
    """
    spec = get_task(task)
    options = RunOptions.of(options, **changes)
    if options.report and spec.name not in _REPORTS:
        raise SpatialxError(f"--report is not available for {spec.name} yet",
                            hint=f"it is for {', '.join(_REPORTS)}")
    paths = planned_outputs(spec, inputs, output, options)
    result = fuse_scene(spec, inputs, paths["product"], method, sensor, options)
    result.products = _side_products(result, spec, inputs, sensor, paths, options)
    return result


#: Quality reports per task: the function that scores a product from the task's inputs (sampled windows).
_REPORTS = {"pansharpen": "spatialx.evaluate:quality_report", "hmif": "spatialx.evaluate:quality_report_hmif"}


def report_path(output: str | PathLike[str]) -> Path:
    """Where ``--report`` puts the quality sidecar of ``output``."""
    output = Path(output)
    return output.with_name(output.stem + ".quality.json")


def planned_outputs(task: TaskSpec, inputs: Mapping[str, str | PathLike[str]], output: str | PathLike[str],
                    options: RunOptions) -> dict[str, Path]:
    """Every file the run will write, checked against the inputs, each other and ``--overwrite``, by kind."""
    from spatialx.io.outputs import OutputPlan
    from spatialx.models.weights import weight_files

    read = {task.label(role): path for role, path in inputs.items() if not isinstance(path, RasterInfo)}
    plan = OutputPlan({**read, **weight_files(options.method_options.get("weights"))}, overwrite=options.overwrite)
    paths = {"product": plan.add(output, what="output")}
    if options.style:
        paths["style"] = plan.add(Path(output).with_suffix(".qml"), what="style of the output", kind="sidecar")
    if options.ndvi is not None:
        paths["ndvi"] = plan.add(options.ndvi, what="NDVI")
        paths["ndvi_style"] = plan.add(Path(options.ndvi).with_suffix(".qml"), what="style of the NDVI",
                                       kind="sidecar")
    if options.report:
        paths["report"] = plan.add(report_path(output), what="quality report", kind="sidecar")
    for name, path in options.layers.items():
        paths[f"layer:{name}"] = plan.add(path, what=f"{name} layer")
        if options.style:
            paths[f"layer_style:{name}"] = plan.add(Path(path).with_suffix(".qml"), what=f"style of the {name} layer",
                                                    kind="sidecar")
    return paths


def _side_products(result: FusionResult, task: TaskSpec, inputs: Mapping[str, str | PathLike[str]],
                   sensor: SensorArg, paths: dict[str, Path], options: RunOptions) -> dict[str, Path]:
    import importlib
    import json

    from spatialx.io.outputs import atomic_write_text

    written = {}
    profile = result.output_profile
    if "style" in paths:
        from spatialx.products.style import write_style

        bands = _output_bands(profile)
        atomic_write_text(paths["style"], write_style(result.output, bands, _style_kind(profile), result.nodata))
        written["style"] = paths["style"]
    for name in options.layers:
        written[f"layer:{name}"] = paths[f"layer:{name}"]
        if f"layer_style:{name}" in paths:
            from spatialx.products.style import band_stretch, singleband_gray_qml

            layer = paths[f"layer:{name}"]
            atomic_write_text(paths[f"layer_style:{name}"], singleband_gray_qml(1, band_stretch(layer, [1])[0]))
            written[f"layer_style:{name}"] = paths[f"layer_style:{name}"]
    if "ndvi" in paths:
        from spatialx.products.ndvi import ndvi as make_ndvi

        written["ndvi"] = make_ndvi(result.output, paths["ndvi"], sensor=profile, overwrite=options.overwrite)
        written["ndvi_style"] = paths["ndvi_style"]
    if "report" in paths:
        module, _, name = _REPORTS[task.name].partition(":")
        quality_report = getattr(importlib.import_module(module), name)
        roles = [role for role in task.role_names if role in inputs]
        output_sensor = sensor[task.output_like] if isinstance(sensor, Mapping) else sensor
        bands = options.bands.get(task.output_like) if isinstance(options.bands, Mapping) else options.bands
        quality = quality_report(*(inputs[role] for role in roles), result.output, output_sensor,
                                 ratio=int(result.params["ratio"]), bands=bands)
        quality.update(method=result.method, product=result.output.name)
        if "alignment" in result.params:  # the preflight's shift, with the indices it may explain
            quality["alignment"] = result.params["alignment"]
        atomic_write_text(paths["report"], json.dumps(quality, indent=2) + "\n")
        written["report"] = paths["report"]
    return written


class TileFuser:
    """Reads, pads and fuses tiles: the work behind every dask block, for files and for xarray alike.

    It pickles without its open readers (a dask.distributed worker gets the paths, grids and method) and opens
    readers on first use where it lands."""

    def __init__(self, scene: SceneInputs, fusion: FusionMethod, plan: TilePlan):
        self.scene, self.fusion, self.plan = scene, fusion, plan
        self._opening = threading.Lock()

    def __getstate__(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key != "_opening"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._opening = threading.Lock()

    def _open(self) -> None:
        with self._opening:
            if not self.scene.readers:
                self.scene.open_readers()

    def prepare(self, tile: Tile) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        if self.fusion.judges_validity:  # validity comes from the result
            return {role: _pad(a, tile.pad) for role, a in self.scene.read_each(tile.read).items()}, None
        arrays, valid = self.scene.read(tile.read)
        rows, cols = tile.blend_slices()
        top, left = tile.pad[0], tile.pad[2]
        valid_blend = valid[rows.start - top: rows.stop - top, cols.start - left: cols.stop - left]
        return {role: _pad(a, tile.pad) for role, a in arrays.items()}, valid_blend

    def group(self, row: int, cols: tuple[int, ...]) -> np.ndarray:
        """Neighbouring tiles of one row fused in one call: (bands + 1, rows, sum of blend widths), the last
        plane being the tiles' validity."""
        if not self.scene.readers:
            self._open()
        tiles = [self.plan.tile(row, col) for col in cols]
        prepared = [self.prepare(tile) for tile in tiles]
        fused = self.fusion.fuse_batch([inputs for inputs, _ in prepared])
        pieces = []
        for tile, (_, valid_blend), result in zip(tiles, prepared, fused, strict=True):
            rows_slice, cols_slice = tile.blend_slices()
            result = np.asarray(result, dtype=np.float32)[:, rows_slice, cols_slice]
            if valid_blend is None:
                valid_blend = np.isfinite(result).all(axis=0)
                result = np.where(valid_blend, result, np.float32(0.0))  # NaN would poison the cross-fade
            pieces.append(np.concatenate([result, valid_blend[None].astype(np.float32)]))
        return np.concatenate(pieces, axis=2)


def _run_tiles(fuser: TileFuser, bands: int, encoder: _Encoder, writers: Sequence[RasterWriter], workers: int,
               progress: Progress | None, remote: RemoteFusion | None = None, journal: Journal | None = None) -> int:
    """Fuse every tile on a dask graph and stream the stitched cells into ``writers[0]`` (and the method's extra
    per-pixel planes into the others, float32 with NaN where the product is nodata); returns the number of output
    pixels that hold data.

    A dask task is a group of ``fusion.batch_tiles`` neighbouring tiles of one row, fused in one call (networks
    run them as one batch on the device), run by dask's threaded scheduler one row at a time. With ``remote`` the
    groups run on a dask.distributed cluster (:mod:`spatialx.cluster`) and come back here to be stitched. With a
    ``journal`` the writers are flushed and the journal saved after each tile row, and a journal that has rows done
    resumes after them: the last done row is fused again (its cells shared with the next row were not complete),
    the cells above it are not written twice.
    """
    plan, fusion = fuser.plan, fuser.fusion
    writer, layers = writers[0], writers[1:]
    rows = plan.shape[0]

    def row_top(r: int) -> int:  # cells that end at or above it need no tile of row r or later
        return plan.height if r >= rows else int(plan.tile(r, 0).blend.row_off)

    done = journal.rows_done if journal is not None else 0
    base = dict(journal.counts) if journal is not None else dict.fromkeys(COUNTS, 0)
    encoder.values, encoder.below, encoder.above = base["values"], base["below"], base["above"]
    counted = [base["valid"]]
    by_cell_end: dict[int, list[int]] = {}  # counts of the cells written, by their last row, for the journal

    written = threading.Lock()

    def write_cell(values: np.ndarray, valid_weight: np.ndarray, window: Window) -> None:
        # Called by the stitcher from the tile workers at once: cells are encoded in parallel, and the writers'
        # dataset handles and the counters are used under one lock.
        valid = valid_weight > 0.5
        encoded, counts = encoder.encode(values[:bands], valid)
        planes = [np.where(valid, values[bands + index], np.float32(np.nan))[None].astype(np.float32)
                  for index in range(len(layers))]
        cell_valid = int(np.count_nonzero(valid))
        with written:
            writer.write(encoded, window)
            for layer, plane in zip(layers, planes, strict=True):
                layer.write(plane, window)
            counted[0] += cell_valid
            end = int(window.row_off + window.height)
            totals = by_cell_end.setdefault(end, [0] * len(COUNTS))
            by_cell_end[end] = [a + b for a, b in zip(totals, (cell_valid, *counts), strict=True)]

    finished: set[int] = set()
    checkpointed = [done]

    def row_finished(r: int) -> None:
        finished.add(r)
        if journal is None:
            return
        upto = checkpointed[0]
        while upto in finished:
            upto += 1
        if upto == checkpointed[0]:
            return
        checkpointed[0] = upto
        for w in writers:
            w.flush()
        end = row_top(upto)
        counts = dict(base)
        for cell_end, values in by_cell_end.items():
            if cell_end <= end:
                counts = {name: counts[name] + v for name, v in zip(COUNTS, values, strict=True)}
        journal.save(upto, counts)

    bands_total = bands + len(layers)
    skip_above = row_top(done) if done else 0
    for w in writers:
        w.keep_rows_above(skip_above)
    stitcher = OverlapAddStitcher(plan, bands_total, write_cell, skip_above=skip_above)
    batch = max(1, int(getattr(fusion, "batch_tiles", 1)))
    groups = [tuple(range(start, min(start + batch, plan.shape[1]))) for start in range(0, plan.shape[1], batch)]
    sink = _StitchSink(plan, stitcher, progress, skipped=max(0, done - 1) * plan.shape[1])
    todo = list(range(max(0, done - 1), rows)) if done < rows else []
    if remote is not None:
        remote.run(todo, groups, sink.take, row_finished)
    else:
        name = f"spatialx-fuse-{dask.base.tokenize(id(fusion), id(plan), time.time_ns())}"
        workers = max(1, min(workers, fusion.tile_workers or workers))

        def fuse_group(r: int, group: tuple[int, ...]) -> None:
            sink.take(r, group, fuser.group(r, group))

        # Each row of tiles is finished before the next starts: at most one row is in flight whatever the scene size.
        for r in todo:
            graph = {(name, r, g): (fuse_group, r, group) for g, group in enumerate(groups)}
            dask.threaded.get(graph, list(graph), num_workers=workers)
            row_finished(r)
    if stitcher.pending_cells:
        raise RuntimeError(f"{stitcher.pending_cells} output cells were never completed")
    return counted[0]


class _StitchSink:
    """Where fused tile groups go: each is split into its tiles, handed to the stitcher, and counted."""

    def __init__(self, plan: TilePlan, stitcher: OverlapAddStitcher, progress: Progress | None, skipped: int = 0):
        self.plan, self.stitcher, self.progress = plan, stitcher, progress
        self.done = skipped  # tiles a resumed run does not fuse again
        self._lock = threading.Lock()
        self.widths = [int(plan.tile(0, c).blend.width) for c in range(plan.shape[1])]

    def take(self, row: int, group: tuple[int, ...], block: np.ndarray) -> None:
        """A block of the tile group ``group`` of ``row`` (tiles side by side, validity last)."""
        col, offset = group[0], 0
        while offset < block.shape[2]:
            width = self.widths[col]
            piece = block[:, :, offset: offset + width]
            self.stitcher.add(self.plan.tile(row, col), piece[:-1], piece[-1] > 0.5)
            offset += width
            col += 1
            with self._lock:
                self.done += 1
                if self.progress is not None:
                    self.progress(self.done, len(self.plan))
