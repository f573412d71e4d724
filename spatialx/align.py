"""Put every input on the output grid, explicitly, and say what was done.

The output grid is the guide raster's grid (PAN for pansharpening) over the intersection of all footprints. Lower
resolution inputs are resampled onto it window by window with a separable cubic-convolution kernel (Keys, a=-0.5):
the mapping between north-up grids in one CRS is separable (x depends only on the column, y only on the row), so
resampling a tile is two small matrix products, exact for any ratio and sub-pixel offset, and a tile gives the same
values as the whole image. Inputs in another CRS are first reprojected by a GDAL WarpedVRT at their own resolution.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from rasterio.windows import Window

from spatialx.errors import InputMismatchError
from spatialx.grid import Grid, intersect_bounds
from spatialx.io.read import RasterInfo

CUBIC_A = -0.5
CUBIC_RADIUS = 2  # taps each side of the sample position


class NotGeoreferencedWarning(UserWarning):
    """Inputs carry no CRS; outputs will carry none either."""


def cubic_weights(offsets: np.ndarray) -> np.ndarray:
    """Keys cubic-convolution kernel evaluated at ``offsets`` (distance in source pixels)."""
    x = np.abs(offsets)
    a = CUBIC_A
    w = np.where(x <= 1, (a + 2) * x**3 - (a + 3) * x**2 + 1,
                 np.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, 0.0))
    return w


@dataclass(frozen=True)
class AxisMap:
    """Linear map from output pixel index to fractional source pixel index (pixel centres at integers)."""

    scale: float
    offset: float
    size: int  # source pixels along this axis

    def positions(self, start: int, stop: int) -> np.ndarray:
        return self.scale * np.arange(start, stop, dtype=np.float64) + self.offset

    def source_range(self, start: int, stop: int) -> tuple[int, int]:
        """Source pixels [lo, hi) that the kernel touches for output indices [start, stop), clipped."""
        p = self.positions(start, stop)
        lo = math.floor(p.min()) - CUBIC_RADIUS + 1
        hi = math.floor(p.max()) + CUBIC_RADIUS + 1
        return max(0, lo), min(self.size, hi)

    def taps(self, start: int, stop: int, lo: int) -> tuple[np.ndarray, np.ndarray]:
        """Kernel taps of output indices [start, stop): source indices relative to ``lo`` and weights, both of
        shape (stop - start, 4). Taps beyond the source edge repeat the edge pixel (replicate boundary)."""
        p = self.positions(start, stop)
        base = np.floor(p).astype(np.int64)
        offsets = np.arange(-CUBIC_RADIUS + 1, CUBIC_RADIUS + 1)
        index = base[:, None] + offsets[None, :]
        weights = cubic_weights(p[:, None] - index).astype(np.float32)
        return np.clip(index, 0, self.size - 1) - lo, weights


@dataclass(frozen=True)
class Resampler:
    """Reads a lower-resolution input onto windows of the output grid."""

    source: RasterInfo
    rows: AxisMap
    cols: AxisMap

    @property
    def ratio(self) -> float:
        return 1.0 / self.cols.scale

    def source_window(self, window: Window) -> Window:
        r0, r1 = self.rows.source_range(int(window.row_off), int(window.row_off + window.height))
        c0, c1 = self.cols.source_range(int(window.col_off), int(window.col_off + window.width))
        return Window(c0, r0, c1 - c0, r1 - r0)

    def _taps(self, src_window: Window, window: Window):
        row0, col0 = int(window.row_off), int(window.col_off)
        iy, wy = self.rows.taps(row0, row0 + int(window.height), int(src_window.row_off))
        ix, wx = self.cols.taps(col0, col0 + int(window.width), int(src_window.col_off))
        return iy, wy, ix, wx

    def resample(self, data: np.ndarray, src_window: Window, window: Window) -> np.ndarray:
        """Resample ``data`` (bands, rows, cols) read at ``src_window`` onto output ``window``.

        Four taps per axis, gathered and summed in a fixed order: a pixel gets the same float32 value whatever
        tile it is computed in.
        """
        iy, wy, ix, wx = self._taps(src_window, window)
        rows = sum(data[:, iy[:, t], :] * wy[None, :, t, None] for t in range(wy.shape[1]))
        # np.take along the last axis keeps the result C-contiguous (fancy indexing there would not).
        return sum(np.take(rows, ix[:, t], axis=2) * wx[None, None, :, t] for t in range(wx.shape[1]))

    def resample_valid(self, valid: np.ndarray, src_window: Window, window: Window) -> np.ndarray:
        """An output pixel is valid only when every source pixel its kernel touches is valid."""
        iy, wy, ix, wx = self._taps(src_window, window)
        rows = np.logical_and.reduce([valid[iy[:, t], :] | (wy[:, t, None] == 0) for t in range(wy.shape[1])])
        return np.logical_and.reduce([rows[:, ix[:, t]] | (wx[None, :, t] == 0) for t in range(wx.shape[1])])


@dataclass(frozen=True)
class Nest:
    """A source raster nested in the output grid: ``factor`` output pixels per source pixel, edges aligned."""

    factor: int
    out_window: Window  # on the output grid
    src_window: Window  # on the source raster; out_window is exactly factor x src_window


def nest(resampler: Resampler, out_shape: tuple[int, int], label: str) -> Nest:
    """The largest extent over which ``resampler``'s source is an exact integer subdivision of the output grid.

    Indices and learned methods' training pairs need exact pixel correspondences, not resampled values.
    """
    info, rows_map, cols_map = resampler.source, resampler.rows, resampler.cols
    factor = round(1.0 / cols_map.scale)
    if factor < 1 or abs(1.0 / cols_map.scale - factor) > 1e-6 or abs(1.0 / rows_map.scale - factor) > 1e-6:
        raise InputMismatchError(f"{label} grid is not an integer subdivision of the output grid "
                                 f"(ratio {1.0 / cols_map.scale:.4g})", path=info.path,
                                 hint="this needs nested grids; resample with gdalwarp first")
    spans = []
    for amap, out_len, src_len in ((rows_map, out_shape[0], info.grid.height),
                                   (cols_map, out_shape[1], info.grid.width)):
        # Source pixel whose first output pixel is output index 0 (fractional when grids are offset).
        first = amap.offset - (0.5 / factor - 0.5)
        if abs(first * factor - round(first * factor)) > 1e-6:
            raise InputMismatchError(f"{label} pixel edges do not line up with the output grid", path=info.path,
                                     hint="this needs nested grids; resample with gdalwarp first")
        start = math.ceil(first - 1e-9)
        out_start = round((start - first) * factor)
        spans.append((out_start, start, min(src_len - start, (out_len - out_start) // factor)))
    (r_out, r_src, r_n), (c_out, c_src, c_n) = spans
    if r_n < 1 or c_n < 1:
        raise InputMismatchError(f"{label} does not overlap the other inputs", path=info.path)
    return Nest(factor, Window(c_out, r_out, c_n * factor, r_n * factor), Window(c_src, r_src, c_n, r_n))


def common_extent(nests: dict[str, Nest]) -> tuple[Window, dict[str, tuple[int, int]]]:
    """The extent (on the output grid) that every nested role covers, snapped to whole pixels of the coarsest.

    Returns that window and, per role, the (row, col) of its first pixel in the role's own raster.
    """
    coarse = max(nests.values(), key=lambda n: n.factor)
    factor = coarse.factor
    top = max(int(n.out_window.row_off) for n in nests.values())
    left = max(int(n.out_window.col_off) for n in nests.values())
    top += (int(coarse.out_window.row_off) - top) % factor
    left += (int(coarse.out_window.col_off) - left) % factor
    bottom = min(int(n.out_window.row_off + n.out_window.height) for n in nests.values())
    right = min(int(n.out_window.col_off + n.out_window.width) for n in nests.values())
    rows, cols = max(0, (bottom - top) // factor), max(0, (right - left) // factor)
    origins = {role: (int(n.src_window.row_off) + (top - int(n.out_window.row_off)) // n.factor,
                      int(n.src_window.col_off) + (left - int(n.out_window.col_off)) // n.factor)
               for role, n in nests.items()}
    return Window(left, top, cols * factor, rows * factor), origins


@dataclass
class Alignment:
    """The output grid, where it sits in the guide raster, and how each other input reaches it."""

    grid: Grid
    guide_window: Window  # the output grid as a window of the guide raster
    resamplers: dict[str, Resampler]
    notes: list[str] = field(default_factory=list)

    @property
    def georeferenced(self) -> bool:
        return self.grid.crs is not None


def _axis_maps(out: Grid, src: Grid) -> tuple[AxisMap, AxisMap]:
    # Pixel centres: output index i sits at world t*(i+0.5); source index j's centre at t*(j+0.5).
    a, c, e, f = out.transform.a, out.transform.c, out.transform.e, out.transform.f
    sa, sc, se, sf = src.transform.a, src.transform.c, src.transform.e, src.transform.f
    cols = AxisMap(scale=a / sa, offset=(c + 0.5 * a - sc) / sa - 0.5, size=src.width)
    rows = AxisMap(scale=e / se, offset=(f + 0.5 * e - sf) / se - 0.5, size=src.height)
    return rows, cols


def align(guide: RasterInfo, others: dict[str, RasterInfo], guide_role: str = "PAN") -> Alignment:
    """Plan how ``others`` (role -> raster) land on the grid of ``guide`` over their common footprint."""
    notes: list[str] = []
    all_inputs = {guide_role: guide, **others}
    for role, info in all_inputs.items():
        if not info.grid.is_north_up:
            raise InputMismatchError(f"{role} has a rotated geotransform", path=info.path,
                                     hint="warp it north-up first, e.g. gdalwarp")
    with_crs = {role for role, info in all_inputs.items() if info.georeferenced}
    if with_crs and len(with_crs) != len(all_inputs):
        lacking = next(info for role, info in all_inputs.items() if role not in with_crs)
        having = ", ".join(sorted(with_crs))
        raise InputMismatchError(f"has no CRS while {having} has one", path=lacking.path,
                                 hint="assign the missing CRS (gdal_edit.py -a_srs) or remove it from both")
    if not with_crs:
        return _align_pixel_space(guide, others, guide_role)

    guide_grid = guide.grid
    src_grids: dict[str, Grid] = {}
    for role, info in others.items():
        if info.grid.crs != guide_grid.crs:
            raise InputMismatchError(
                f"{role} CRS {info.grid.crs} differs from {guide_role} CRS {guide_grid.crs}", path=info.path,
                hint=f"reproject it onto the {guide_role} CRS first (gdalwarp -t_srs)")
        src_grids[role] = info.grid
    bounds = guide_grid.bounds
    for role, grid in src_grids.items():
        common = intersect_bounds(bounds, grid.bounds)
        if common is None:
            raise InputMismatchError(f"{role} does not overlap {guide_role}", path=others[role].path,
                                     hint="check that both files cover the same area")
        bounds = common
    window = guide_grid.window_inside(bounds)
    if window.width < 1 or window.height < 1:
        raise InputMismatchError(f"the common footprint is smaller than one {guide_role} pixel",
                                 path=guide.path, hint="check that the inputs cover the same area")
    out_grid = guide_grid.crop(window)
    if (window.width, window.height) != (guide_grid.width, guide_grid.height):
        notes.append(f"output covers the common footprint: {guide_role} window "
                     f"rows {window.row_off}..{window.row_off + window.height - 1}, "
                     f"cols {window.col_off}..{window.col_off + window.width - 1}")
    resamplers = {}
    for role, grid in src_grids.items():
        rows, cols = _axis_maps(out_grid, grid)
        resamplers[role] = Resampler(others[role], rows, cols)
        notes.append(f"{role} resampled onto the {guide_role} grid (cubic), ratio {1 / cols.scale:.4g}")
    return Alignment(out_grid, window, resamplers, notes)


def _align_pixel_space(guide: RasterInfo, others: dict[str, RasterInfo], guide_role: str) -> Alignment:
    """Inputs without CRS: accepted only when they cover the same pixel extent at an integer ratio."""
    gh, gw = guide.grid.shape
    resamplers = {}
    for role, info in others.items():
        h, w = info.grid.shape
        ratio = gw // w if w else 0
        if ratio < 1 or gw != ratio * w or gh != ratio * h:
            raise InputMismatchError(
                f"{role} is {w}x{h} pixels and {guide_role} {gw}x{gh}: without a CRS they must cover the same "
                "extent at an integer ratio", path=info.path,
                hint="georeference both inputs (gdal_edit.py -a_srs -a_ullr)")
        # Source pixel j covers guide pixels [j*r, (j+1)*r): its centre sits at guide coordinate (j+0.5)*r.
        axis = AxisMap(scale=1.0 / ratio, offset=0.5 / ratio - 0.5, size=w)
        resamplers[role] = Resampler(info, AxisMap(axis.scale, axis.offset, h), axis)
    names = " and ".join(info.path.name for info in (guide, *others.values()))
    warnings.warn(f"{names} are not georeferenced (no CRS): the output will have no CRS either",
                  NotGeoreferencedWarning, stacklevel=2)
    grid = Grid(guide.grid.transform, gw, gh, None)
    notes = [f"no CRS: {role} taken as covering the {guide_role} extent at ratio "
             f"{1 / r.cols.scale:g}" for role, r in resamplers.items()]
    return Alignment(grid, Window(0, 0, gw, gh), resamplers, notes)
