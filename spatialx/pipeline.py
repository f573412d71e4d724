"""The one data path of every task: read -> align -> tile (dask) -> fuse -> blend -> write.

:func:`fuse_scene` is the library entry point behind every fusion command. It opens and checks the inputs, plans the
output grid (:mod:`spatialx.align`), lets the method compute its scene statistics on a first, sampled pass, then
streams tiles through a dask graph whose blocks are stitched by :class:`~spatialx.tiling.OverlapAddStitcher` and
written by :class:`~spatialx.io.write.RasterWriter`. Memory is bounded by the tile size and the number of workers.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
from rasterio.windows import Window

from spatialx import __version__
from spatialx.align import Alignment, AxisMap, Resampler, align, common_extent, nest
from spatialx.errors import InputMismatchError, SpatialxError
from spatialx.io.read import RasterInfo, ThreadLocalReader, open_raster
from spatialx.io.write import BandInfo, OutputSpec, RasterWriter, check_output_path, gdal_env
from spatialx.methods import FusionMethod, SceneSample, create_method, get_method_info
from spatialx.methods.base import SceneWindow
from spatialx.sensors import SensorProfile, get_sensor
from spatialx.tasks import TaskSpec
from spatialx.tiling import OverlapAddStitcher, Tile, TilePlan

#: First-pass budget: scenes up to this many output pixels are sampled at every pixel (exact statistics).
SAMPLE_PIXELS = 1 << 22
STRIP_ROWS = 256

Progress = Callable[[int, int], None]


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


@dataclass
class _Inputs:
    """Opened inputs of one run, their band selection and their alignment on the output grid."""

    task: TaskSpec
    rasters: dict[str, RasterInfo]
    bands: dict[str, list[int]]  # role -> 1-based file band indexes, in sensor order
    alignment: Alignment
    readers: dict[str, ThreadLocalReader] = field(default_factory=dict)

    def open_readers(self) -> None:
        self.readers = {role: ThreadLocalReader(info) for role, info in self.rasters.items()}

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()

    def guide_window(self, window: Window) -> Window:
        gw = self.alignment.guide_window
        return Window(int(gw.col_off + window.col_off), int(gw.row_off + window.row_off), window.width, window.height)

    def read(self, window: Window) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Every role on ``window`` of the output grid, and where all of them hold data."""
        task, arrays = self.task, {}
        guide = self.readers[task.guide]
        arrays[task.guide] = guide.read(self.guide_window(window), self.bands[task.guide])
        valid = np.ones(arrays[task.guide].shape[1:], dtype=bool)
        if self.rasters[task.guide].has_mask:
            valid &= guide.read_valid(self.guide_window(window), self.bands[task.guide])
        for role in task.resampled:
            arrays[role], role_valid = self.read_resampled(role, self.alignment.resamplers[role], window)
            if role_valid is not None:
                valid &= role_valid
        return arrays, valid

    def read_resampled(self, role: str, resampler: Resampler,
                        window: Window) -> tuple[np.ndarray, np.ndarray | None]:
        src_window = resampler.source_window(window)
        reader = self.readers[role]
        data = reader.read(src_window, self.bands[role])
        valid = None
        if self.rasters[role].has_mask:
            valid = resampler.resample_valid(reader.read_valid(src_window, self.bands[role]), src_window, window)
        return resampler.resample(data, src_window, window), valid


def resolve_bands(info: RasterInfo, sensor: SensorProfile, bands: str | None,
                  label: str) -> tuple[SensorProfile, list[int]]:
    """Match the file's bands to the sensor profile.

    ``bands`` is None (the file's bands are the sensor's, in order), a comma list of 1-based file band numbers
    (picked in the sensor's band order), or a comma list of sensor band names (the file holds those bands, in that
    order: the profile is restricted to them).
    """
    if bands:
        items = [b.strip() for b in bands.split(",") if b.strip()]
        if all(item.isdigit() for item in items):
            indexes = [int(item) for item in items]
            bad = [i for i in indexes if not 1 <= i <= info.count]
            if bad:
                raise InputMismatchError(f"--bands {bands}: {label} has bands 1..{info.count}", path=info.path)
            if len(indexes) != len(sensor.bands):
                raise InputMismatchError(
                    f"--bands selects {len(indexes)} bands but {sensor.name} has {len(sensor.bands)} "
                    f"({', '.join(sensor.band_names)})", path=info.path)
            return sensor, indexes
        sensor = sensor.select(items)
    if info.count != len(sensor.bands):
        raise InputMismatchError(
            f"{label} has {info.count} bands, {sensor.name} expects {len(sensor.bands)} "
            f"({', '.join(sensor.band_names)})", path=info.path,
            hint="pick the sensor that matches, or select bands with --bands (numbers or names)")
    return sensor, list(range(1, info.count + 1))


def _strided(reader_read: Callable[[Window], np.ndarray], height: int, width: int, stride: int) -> np.ndarray:
    """Read a ``height x width`` area strip by strip and keep every ``stride``-th pixel (from stride // 2)."""
    offset = stride // 2
    strips = []
    rows_per_strip = max(stride, (STRIP_ROWS // stride) * stride)
    for top in range(0, height, rows_per_strip):
        bottom = min(height, top + rows_per_strip)
        strip = reader_read(Window(0, top, width, bottom - top))
        # A copy, not a view: a view would keep every full strip alive until the end.
        strips.append(np.ascontiguousarray(strip[..., offset::stride, offset::stride]))
    return np.concatenate(strips, axis=-2)


def first_pass(inputs: _Inputs, pixel_budget: int = SAMPLE_PIXELS) -> SceneSample:
    """Sample the whole scene for the method's global statistics (every pixel when it fits the budget)."""
    grid = inputs.alignment.grid
    task = inputs.task
    stride = max(1, math.ceil(math.sqrt(grid.width * grid.height / pixel_budget)))
    guide = inputs.readers[task.guide]
    sampled: dict[str, np.ndarray] = {}
    offset = stride // 2

    def guide_read(w: Window) -> np.ndarray:
        data = guide.read(inputs.guide_window(w), inputs.bands[task.guide])
        if inputs.rasters[task.guide].has_mask:
            mask = guide.read_valid(inputs.guide_window(w), inputs.bands[task.guide])
            data = np.concatenate([data, mask[None].astype(np.float32)])
        return data

    data = _strided(guide_read, grid.height, grid.width, stride)
    if inputs.rasters[task.guide].has_mask:
        sampled[task.guide], valid = data[:-1], data[-1] > 0
    else:
        sampled[task.guide], valid = data, np.ones(data.shape[1:], dtype=bool)
    native: dict[str, np.ndarray] = {}
    out_h, out_w = valid.shape
    for role in task.resampled:
        resampler = inputs.alignment.resamplers[role]
        # The same resampler, evaluated only at the sampled output pixels.
        strided = Resampler(
            resampler.source,
            AxisMap(resampler.rows.scale * stride, resampler.rows.offset + resampler.rows.scale * offset,
                    resampler.rows.size),
            AxisMap(resampler.cols.scale * stride, resampler.cols.offset + resampler.cols.scale * offset,
                    resampler.cols.size))
        # Strip by strip: one read of the whole source would grow with the scene.
        strips, valid_strips = [], []
        for top in range(0, out_h, STRIP_ROWS):
            window = Window(0, top, out_w, min(STRIP_ROWS, out_h - top))
            values, role_valid = inputs.read_resampled(role, strided, window)
            strips.append(values)
            valid_strips.append(np.ones(values.shape[1:], dtype=bool) if role_valid is None else role_valid)
        sampled[role] = np.concatenate(strips, axis=1)
        valid &= np.concatenate(valid_strips, axis=0)
        native[role] = _native_sample(inputs, role, resampler, pixel_budget)
    windows, reason = scene_windows(inputs, whole=stride == 1)
    return SceneSample(inputs=sampled, valid=valid, native=native, stride=stride, windows=windows,
                       windows_unavailable=reason)


def scene_windows(inputs: _Inputs, whole: bool, count: int = 8, size: int = 128) -> tuple[list[SceneWindow], str]:
    """Contiguous, exactly nested windows for methods that learn from the scene (scene adaptation).

    ``whole``: one window over the entire common extent; otherwise up to ``count`` windows of ``size`` coarse
    pixels spread over it. Returns the windows, or none and the reason (grids not nested).
    """
    task, grid = inputs.task, inputs.alignment.grid
    try:
        nests = {role: nest(inputs.alignment.resamplers[role], grid.shape, task.label(role))
                 for role in task.resampled}
    except InputMismatchError as exc:
        return [], exc.message
    extent, origins = common_extent(nests)
    factor = max(n.factor for n in nests.values())
    rows, cols = int(extent.height) // factor, int(extent.width) // factor
    if rows < 1 or cols < 1:
        return [], "the inputs share no whole coarse pixel"
    if whole:
        boxes = [(0, 0, rows, cols)]
    else:
        height, width = min(size, rows), min(size, cols)
        per_side = max(1, math.isqrt(count))
        boxes = [(int(r), int(c), height, width)
                 for r in np.unique(np.linspace(0, rows - height, per_side).astype(int))
                 for c in np.unique(np.linspace(0, cols - width, per_side).astype(int))]
    windows = []
    for r, c, h, w in boxes:
        guide_window = Window(int(extent.col_off) + c * factor, int(extent.row_off) + r * factor, w * factor,
                              h * factor)
        guide = inputs.readers[task.guide].read(inputs.guide_window(guide_window), inputs.bands[task.guide])
        native = {role: inputs.readers[role].read(
            Window(origins[role][1] + c * factor // n.factor, origins[role][0] + r * factor // n.factor,
                   w * factor // n.factor, h * factor // n.factor), inputs.bands[role])
                  for role, n in nests.items()}
        windows.append(SceneWindow(guide, native, factor))
    return windows, ""


def _native_sample(inputs: _Inputs, role: str, resampler: Resampler, pixel_budget: int) -> np.ndarray:
    """The role on its own grid over the output footprint (strided when large)."""
    grid = inputs.alignment.grid
    window = resampler.source_window(Window(0, 0, grid.width, grid.height))
    stride = max(1, math.ceil(math.sqrt(window.width * window.height / pixel_budget)))
    reader = inputs.readers[role]
    c0, r0 = int(window.col_off), int(window.row_off)
    return _strided(lambda w: reader.read(Window(c0 + w.col_off, r0 + w.row_off, w.width, w.height),
                                          inputs.bands[role]), int(window.height), int(window.width), stride)


def _pad(array: np.ndarray, pad: tuple[int, int, int, int]) -> np.ndarray:
    if not any(pad):
        return array
    top, bottom, left, right = pad
    return np.pad(array, ((0, 0), (top, bottom), (left, right)), mode="edge")


class _Encoder:
    """Turns blended float values into the output dtype, with nodata where inputs had none."""

    def __init__(self, dtype: str, nodata: float | None, max_value: float | None):
        self.dtype = np.dtype(dtype)
        self.nodata = nodata
        if self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            low = info.min if self.dtype.kind == "i" else 0
            if nodata is not None and nodata == low:
                low += 1  # keep valid pixels distinguishable from nodata
            high = info.max if max_value is None else min(info.max, max_value)
            self.range: tuple[float, float] | None = (low, high)
        else:
            self.range = None

    def __call__(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        if self.range is not None:
            values = np.clip(np.rint(values), *self.range)
        out = values.astype(self.dtype)
        if self.nodata is not None or self.dtype.kind == "f":
            out[:, ~valid] = self.nodata if self.nodata is not None else np.nan
        return out


def _output_bands(sensor: SensorProfile) -> list[BandInfo]:
    return [BandInfo(b.name, b.center_nm, b.width_nm) for b in sensor.bands]


def fuse_scene(
    task: TaskSpec,
    inputs: Mapping[str, str | PathLike[str]],
    output: str | PathLike[str],
    sensor: str | SensorProfile,
    method: str,
    *,
    method_options: Mapping[str, Any] | None = None,
    bands: str | None = None,
    ratio: float | None = None,
    tile: int = 512,
    overlap: int | None = None,
    workers: int = 1,
    device: str = "cpu",
    dtype: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    notes: list[str] | None = None,
) -> FusionResult:
    """Fuse the rasters in ``inputs`` (role -> path) into ``output`` with ``method``."""
    started = time.perf_counter()
    out_path = check_output_path(output, overwrite)
    profile = sensor if isinstance(sensor, SensorProfile) else get_sensor(sensor)
    get_method_info(method, task.name)
    rasters = {role: open_raster(path, role=task.label(role)) for role, path in inputs.items()}
    if any(info.path.resolve() == out_path.resolve() for info in rasters.values()):
        raise SpatialxError("output would overwrite an input", path=out_path, hint="choose another output name")
    profile, selected = resolve_bands(rasters[task.output_like], profile, bands, task.label(task.output_like))
    band_map = {role: list(range(1, info.count + 1)) for role, info in rasters.items()}
    band_map[task.output_like] = selected
    alignment = align(rasters[task.guide], {r: rasters[r] for r in task.resampled}, task.label(task.guide))
    grid_ratio = alignment.resamplers[task.output_like].ratio if task.output_like in alignment.resamplers else 1.0
    # Filters model the sensor's optics, so methods use the sensor's resolution ratio unless told otherwise; the
    # grid ratio differs when the MS was delivered already resampled (e.g. onto the PAN grid).
    ratio = float(ratio or profile.ratio)
    if abs(grid_ratio - ratio) > 0.05 * ratio:
        alignment.notes.append(f"{task.label(task.output_like)} grid ratio {grid_ratio:.4g} differs from the "
                               f"method ratio {ratio:g} (sensor {profile.key}); pass --ratio to change it")
    fusion: FusionMethod = create_method(method, profile, ratio, task=task.name, **dict(method_options or {}))
    fusion.device = device
    overlap = fusion.default_overlap if overlap is None else overlap
    grid = alignment.grid
    try:
        plan = TilePlan(grid.height, grid.width, tile=tile, overlap=overlap, halo=fusion.halo, align=fusion.align)
    except ValueError as exc:
        raise SpatialxError(f"invalid tiling: {exc}", hint="adjust --tile / --overlap") from None

    out_like = rasters[task.output_like]
    out_dtype = dtype or out_like.dtype
    nodata = out_like.nodata if out_like.nodata is not None else profile.nodata
    encoder = _Encoder(out_dtype, nodata, profile.max_value if np.dtype(out_dtype).kind in "iu" else None)
    run_notes = list(notes or []) + alignment.notes
    params = {"ratio": round(ratio, 6), "grid_ratio": round(grid_ratio, 6), "tile": tile, "overlap": overlap,
              "halo": fusion.halo}
    job = _Inputs(task, rasters, band_map, alignment)
    job.open_readers()
    try:
        with gdal_env(workers):
            if type(fusion).fit is not FusionMethod.fit:  # pointwise methods need no scene statistics
                fusion.fit(first_pass(job))
            params.update(fusion.params())
            tags = {
                "TIFFTAG_SOFTWARE": f"spatialx {__version__}",
                "SPATIALX_VERSION": __version__,
                "SPATIALX_TASK": task.name,
                "SPATIALX_METHOD": method,
                "SPATIALX_SENSOR": profile.key,
                "SPATIALX_PARAMS": params,
                "SPATIALX_INPUTS": {task.label(r): info.path.name for r, info in rasters.items()},
            }
            spec = OutputSpec(path=out_path, grid=grid, dtype=out_dtype, bands=_output_bands(profile),
                              nodata=nodata, tags=tags, overwrite=overwrite)
            with RasterWriter(spec, workers=workers) as writer:
                _run_tiles(job, fusion, plan, len(profile.bands), encoder, writer, workers, progress)
    finally:
        job.close()
    return FusionResult(output=out_path, method=method, sensor=profile.key,
                        shape=(len(profile.bands), grid.height, grid.width), tiles=len(plan),
                        seconds=time.perf_counter() - started, notes=run_notes, params=params)


def _run_tiles(job: _Inputs, fusion: FusionMethod, plan: TilePlan, bands: int, encoder: _Encoder,
               writer: RasterWriter, workers: int, progress: Progress | None) -> None:
    """Fuse every tile on a dask graph and stream the stitched cells into ``writer``.

    A dask block is a group of ``fusion.batch_tiles`` neighbouring tiles of one row, fused in one call (networks
    run them as one batch on the device); blocks span the tiles' blend extents side by side.
    """

    def write_cell(values: np.ndarray, valid_weight: np.ndarray, window: Window) -> None:
        writer.write(encoder(values, valid_weight > 0.5), window)

    stitcher = OverlapAddStitcher(plan, bands, write_cell)

    def prepare(tile: Tile) -> tuple[dict[str, np.ndarray], np.ndarray]:
        arrays, valid = job.read(tile.read)
        rows, cols = tile.blend_slices()
        top, left = tile.pad[0], tile.pad[2]
        valid_blend = valid[rows.start - top: rows.stop - top, cols.start - left: cols.stop - left]
        return {role: _pad(a, tile.pad) for role, a in arrays.items()}, valid_blend

    def fuse_group(row: int, cols: tuple[int, ...]) -> np.ndarray:
        tiles = [plan.tile(row, col) for col in cols]
        prepared = [prepare(tile) for tile in tiles]
        fused = fusion.fuse_batch([inputs for inputs, _ in prepared])
        pieces = []
        for tile, (_, valid_blend), result in zip(tiles, prepared, fused, strict=True):
            rows_slice, cols_slice = tile.blend_slices()
            result = np.asarray(result, dtype=np.float32)[:, rows_slice, cols_slice]
            pieces.append(np.concatenate([result, valid_blend[None].astype(np.float32)]))
        return np.concatenate(pieces, axis=2)

    batch = max(1, int(getattr(fusion, "batch_tiles", 1)))
    groups = [tuple(range(start, min(start + batch, plan.shape[1]))) for start in range(0, plan.shape[1], batch)]
    sink = _StitchSink(plan, stitcher, progress)
    heights = tuple(int(plan.tile(r, 0).blend.height) for r in range(plan.shape[0]))
    widths = tuple(sum(sink.widths[c] for c in group) for group in groups)
    name = f"spatialx-fuse-{dask.base.tokenize(id(fusion), id(plan), time.time_ns())}"
    graph = {(name, 0, r, g): (fuse_group, r, group) for r in range(plan.shape[0]) for g, group in enumerate(groups)}
    blocks = da.Array(graph, name, chunks=((bands + 1,), heights, widths), dtype=np.float32)
    # Each row of tiles is stored before the next starts: at most one row is in flight whatever the scene size.
    row_starts = np.concatenate([[0], np.cumsum(heights)])
    for r in range(plan.shape[0]):
        sink.row = r
        da.store(blocks[:, row_starts[r]: row_starts[r + 1], :], sink, lock=False, scheduler="threads",
                 num_workers=max(1, workers))
    if stitcher.pending_cells:
        raise RuntimeError(f"{stitcher.pending_cells} output cells were never completed")


class _StitchSink:
    """The ``da.store`` target: splits each stored block into its tiles and hands them to the stitcher."""

    def __init__(self, plan: TilePlan, stitcher: OverlapAddStitcher, progress: Progress | None):
        self.plan, self.stitcher, self.progress = plan, stitcher, progress
        self.row = 0
        self.done = 0
        self._lock = threading.Lock()
        self.widths = [int(plan.tile(0, c).blend.width) for c in range(plan.shape[1])]
        self.col_starts = [0, *np.cumsum(self.widths).tolist()]

    def __setitem__(self, index: tuple[slice, ...], block: np.ndarray) -> None:
        col = self.col_starts.index(index[2].start)
        offset = 0
        while offset < block.shape[2]:
            width = self.widths[col]
            piece = block[:, :, offset: offset + width]
            self.stitcher.add(self.plan.tile(self.row, col), piece[:-1], piece[-1] > 0.5)
            offset += width
            col += 1
            with self._lock:
                self.done += 1
                if self.progress is not None:
                    self.progress(self.done, len(self.plan))
