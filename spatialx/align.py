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
from fractions import Fraction

import numpy as np
from rasterio.windows import Window

from spatialx.errors import InputMismatchError
from spatialx.grid import Grid, intersect_bounds
from spatialx.io.read import RasterInfo
from spatialx.tasks import Resampling

CUBIC_A = -0.5
CUBIC_RADIUS = 2  # taps each side of the sample position
#: Largest denominator accepted when a grid ratio is read as a fraction (3/2 for 15 m / 10 m; 4 for PAN/MS).
MAX_DENOMINATOR = 16


class NotGeoreferencedWarning(UserWarning):
    """Inputs carry no CRS; outputs will carry none either."""


def cubic_weights(offsets: np.ndarray) -> np.ndarray:
    """Keys cubic-convolution kernel evaluated at ``offsets`` (distance in source pixels)."""
    x = np.abs(offsets)
    a = CUBIC_A
    w = np.where(x <= 1, (a + 2) * x**3 - (a + 3) * x**2 + 1,
                 np.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, 0.0))
    return w


def kernel_for(resampling: Resampling | str, scale: float) -> str:
    """The interpolation kernel of a role: ``scale`` is source pixels per output pixel (< 1: refining)."""
    kind = Resampling(resampling)
    coarsening = scale > 1 + 1e-9
    if kind is Resampling.NEAREST:
        return "nearest"
    if kind is Resampling.AVERAGE or (coarsening and kind in (Resampling.AUTO, Resampling.COVARIANCE)):
        return "average"
    return "linear" if kind is Resampling.COVARIANCE else "cubic"


@dataclass(frozen=True)
class AxisMap:
    """Linear map from output pixel index to fractional source pixel index (pixel centres at integers)."""

    scale: float
    offset: float
    size: int  # source pixels along this axis
    kernel: str = "cubic"  # cubic | linear | nearest | average
    #: Source pixels one output pixel covers, for ``average`` (default ``scale``; wider than the step when the
    #: first pass samples every n-th output pixel).
    footprint: float | None = None

    @property
    def width(self) -> float:
        return self.scale if self.footprint is None else self.footprint

    def positions(self, start: int, stop: int) -> np.ndarray:
        return self.scale * np.arange(start, stop, dtype=np.float64) + self.offset

    @property
    def reach(self) -> tuple[int, int]:
        """Source taps below and above ``floor(position)`` that the kernel may touch."""
        if self.kernel == "cubic":
            return CUBIC_RADIUS - 1, CUBIC_RADIUS
        if self.kernel == "average":
            half = math.ceil(self.width / 2) + 1
            return half, half
        return 0, 1  # linear (two taps) and nearest (one of the two)

    def source_range(self, start: int, stop: int) -> tuple[int, int]:
        """Source pixels [lo, hi) that the kernel touches for output indices [start, stop), clipped."""
        p = self.positions(start, stop)
        below, above = self.reach
        lo = math.floor(p.min()) - below
        hi = math.floor(p.max()) + above + 1
        return max(0, lo), min(self.size, hi)

    def taps(self, start: int, stop: int, lo: int, clip: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Kernel taps of output indices [start, stop): source indices relative to ``lo`` and weights, both of
        shape (stop - start, taps). Taps beyond the source edge repeat the edge pixel (replicate boundary); with
        ``clip=False`` they keep pointing past it, for data padded by replication (:func:`apply_taps`)."""
        p = self.positions(start, stop)
        base = np.floor(p).astype(np.int64)
        below, above = self.reach
        offsets = np.arange(-below, above + 1)
        index = base[:, None] + offsets[None, :]
        if self.kernel == "cubic":
            weights = cubic_weights(p[:, None] - index)
        elif self.kernel == "linear":
            weights = np.clip(1.0 - np.abs(p[:, None] - index), 0.0, None)
        elif self.kernel == "nearest":
            weights = (index == np.floor(p + 0.5)[:, None]).astype(np.float64)
        else:  # area average: the overlap of each source pixel with the output pixel's footprint
            half = 0.5 * self.width
            lo_edge, hi_edge = p[:, None] - half, p[:, None] + half
            weights = np.clip(np.minimum(hi_edge, index + 0.5) - np.maximum(lo_edge, index - 0.5), 0.0, None)
            weights /= weights.sum(axis=1, keepdims=True)
        if clip:
            index = np.clip(index, 0, self.size - 1)
        return index - lo, weights.astype(np.float32)


def _period(index: np.ndarray, weights: np.ndarray) -> tuple[int, int] | None:
    """``(period, step)`` when output ``j + period`` takes the taps of output ``j`` moved ``step`` source pixels on,
    with the same weights, for every ``j`` (any nested ratio away from clipped edges); else None."""
    n = index.shape[0]
    for period in range(1, min(MAX_DENOMINATOR, n - 1) + 1):
        step = int(index[period, 0] - index[0, 0])
        if step >= 1 and np.array_equal(index[period:], index[:-period] + step) and \
                np.array_equal(weights[period:], weights[:-period]):
            return period, step
    return None


def apply_taps(data: np.ndarray, index: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """``sum_t data[..., index[j, t], ...] * weights[j, t]`` along ``axis`` for every output ``j``, the taps added in
    order, in ``data``'s float type. ``index`` may point past either end of ``data``: the edge value repeats.

    Periodic taps (every nested ratio: PAN/MS 4, 3:2) are applied phase by phase on strided views, so each tap is
    one multiply-add over contiguous memory instead of a gather; the sums, and so the values, are the same.
    """
    before = max(0, -int(index.min()))
    after = max(0, int(index.max()) - (data.shape[axis] - 1))
    if before or after:
        pad = [(0, 0)] * data.ndim
        pad[axis] = (before, after)
        data, index = np.pad(data, pad, mode="edge"), index + before
    n, taps = index.shape
    period = _period(index, weights) if n > 2 else None
    if period is None:
        shape = [1] * data.ndim
        shape[axis] = n
        return sum(np.take(data, index[:, t], axis=axis) * weights[:, t].reshape(shape) for t in range(taps))
    period, step = period
    out_shape = list(data.shape)
    out_shape[axis] = n
    out = np.empty(out_shape, dtype=np.result_type(data.dtype, weights.dtype))
    lead = (slice(None),) * axis
    for phase in range(min(period, n)):
        count = len(range(phase, n, period))
        terms = (data[(*lead, slice(int(index[phase, t]), int(index[phase, t]) + step * (count - 1) + 1, step))]
                 * weights[phase, t] for t in range(taps))
        out[(*lead, slice(phase, n, period))] = sum(terms)
    return out


@dataclass(frozen=True)
class Resampler:
    """Reads a lower-resolution input onto windows of the output grid."""

    source: RasterInfo
    rows: AxisMap
    cols: AxisMap

    @property
    def ratio(self) -> float:
        return 1.0 / self.cols.scale

    @property
    def kernel(self) -> str:
        return self.cols.kernel

    def source_window(self, window: Window) -> Window:
        r0, r1 = self.rows.source_range(int(window.row_off), int(window.row_off + window.height))
        c0, c1 = self.cols.source_range(int(window.col_off), int(window.col_off + window.width))
        return Window(c0, r0, c1 - c0, r1 - r0)

    def _taps(self, src_window: Window, window: Window, clip: bool = True):
        row0, col0 = int(window.row_off), int(window.col_off)
        iy, wy = self.rows.taps(row0, row0 + int(window.height), int(src_window.row_off), clip)
        ix, wx = self.cols.taps(col0, col0 + int(window.width), int(src_window.col_off), clip)
        return iy, wy, ix, wx

    def resample(self, data: np.ndarray, src_window: Window, window: Window) -> np.ndarray:
        """Resample ``data`` (bands, rows, cols) read at ``src_window`` onto output ``window``.

        A fixed number of taps per axis, summed in a fixed order: a pixel gets the same float32 value whatever tile
        it is computed in.
        """
        iy, wy, ix, wx = self._taps(src_window, window, clip=False)
        return apply_taps(apply_taps(data, iy, wy, axis=1), ix, wx, axis=2)

    def resample_valid(self, valid: np.ndarray, src_window: Window, window: Window) -> np.ndarray:
        """An output pixel is valid only when every source pixel its kernel touches is valid."""
        iy, wy, ix, wx = self._taps(src_window, window)
        rows = np.logical_and.reduce([valid[iy[:, t], :] | (wy[:, t, None] == 0) for t in range(wy.shape[1])])
        return np.logical_and.reduce([rows[:, ix[:, t]] | (wx[None, :, t] == 0) for t in range(wx.shape[1])])


@dataclass(frozen=True)
class AxisNest:
    """Where a source grid's pixel edges meet the output grid's along one axis.

    Output edge ``first + n * out_step`` coincides with source edge ``src_first + n * src_step`` for every integer
    ``n``: ``out_step`` output pixels span exactly ``src_step`` source pixels (4 and 1 for PAN/MS; 3 and 2 for a
    10 m output and a 15 m input).
    """

    out_step: int
    src_step: int
    first: int  # output edge in [0, out_step)
    src_first: int  # the source edge it meets (may lie outside the source)
    src_size: int

    def source_edge(self, out_edge: int) -> int:
        return self.src_first + (out_edge - self.first) // self.out_step * self.src_step

    def out_bounds(self) -> tuple[float, float]:
        """Output edges between which this source has pixels."""
        per = self.out_step / self.src_step
        return self.first - self.src_first * per, self.first + (self.src_size - self.src_first) * per


def _axis_nest(amap: AxisMap, label: str, path: object) -> AxisNest:
    scale = Fraction(amap.scale).limit_denominator(MAX_DENOMINATOR)  # source pixels per output pixel
    if scale <= 0 or abs(float(scale) - amap.scale) * max(amap.size, 1) / max(amap.scale, 1e-12) > 1e-3:
        raise InputMismatchError(f"{label} grid ratio {1 / amap.scale:.6g} is not a ratio of small whole numbers",
                                 path=path, hint="this needs nested grids (e.g. 4:1 or 3:2); resample with gdalwarp")
    src_step, out_step = scale.numerator, scale.denominator
    # Source edge coordinate (source pixel j spans [j, j + 1)) of output edge k: scale * k + shift.
    shift = amap.offset + 0.5 - 0.5 * amap.scale
    for k in range(out_step):
        u = float(scale) * k + shift
        if abs(u - round(u)) < 1e-6:
            return AxisNest(out_step, src_step, k, round(u), amap.size)
    raise InputMismatchError(f"{label} pixel edges do not line up with the output grid", path=path,
                             hint="this needs nested grids; resample with gdalwarp first")


@dataclass(frozen=True)
class Nest:
    """A source raster nested in the output grid, per axis (rows, cols)."""

    rows: AxisNest
    cols: AxisNest

    @property
    def scale(self) -> Fraction:
        """Output pixels per source pixel (equal on both axes)."""
        return Fraction(self.cols.out_step, self.cols.src_step)


def nest(resampler: Resampler, label: str) -> Nest:
    """How ``resampler``'s source nests in the output grid: the ratio as a fraction and where edges meet.

    Indices and learned methods' training pairs need exact pixel correspondences, not resampled values, so windows
    for them are cut at edges shared by every grid. Grids whose ratio is not a fraction of small whole numbers
    (Landsat 30 m and MODIS 463.3 m: 15.44) never share edges; they are refused here with the reason.
    """
    info = resampler.source
    rows, cols = _axis_nest(resampler.rows, label, info.path), _axis_nest(resampler.cols, label, info.path)
    if Fraction(rows.out_step, rows.src_step) != Fraction(cols.out_step, cols.src_step):
        raise InputMismatchError(f"{label} has different ratios along rows and columns", path=info.path,
                                 hint="this needs square pixels; resample with gdalwarp first")
    return Nest(rows, cols)


def _common_axis(nests: list[AxisNest], out_len: int) -> tuple[int, int, int] | None:
    """The output edges shared by every source along one axis: (start, block, blocks), or None."""
    block = math.lcm(*(n.out_step for n in nests))
    phase = next((k for k in range(block) if all((k - n.first) % n.out_step == 0 for n in nests)), None)
    if phase is None:
        return None
    lo = max([0.0, *(n.out_bounds()[0] for n in nests)])
    hi = min([float(out_len), *(n.out_bounds()[1] for n in nests)])
    start = phase + block * math.ceil((lo - phase) / block - 1e-9)
    blocks = math.floor((hi - start) / block + 1e-9)
    return start, block, max(0, blocks)


@dataclass(frozen=True)
class CommonGrid:
    """Edges shared by the output grid and every nested source: windows cut here are exact for every grid."""

    row_start: int
    col_start: int
    block: tuple[int, int]  # output pixels per block (rows, cols)
    blocks: tuple[int, int]  # whole blocks in the common extent (rows, cols)
    nests: dict[str, Nest]

    def source_window(self, role: str, window: Window) -> Window:
        """The window of ``role``'s raster that covers output ``window`` (whose edges are shared edges)."""
        n = self.nests[role]
        r0, c0 = int(window.row_off), int(window.col_off)
        r1, c1 = r0 + int(window.height), c0 + int(window.width)
        top, left = n.rows.source_edge(r0), n.cols.source_edge(c0)
        return Window(left, top, n.cols.source_edge(c1) - left, n.rows.source_edge(r1) - top)


def common_grid(nests: dict[str, Nest], out_shape: tuple[int, int]) -> CommonGrid | str:
    """The shared edges of every nested role, or why there are none."""
    rows = _common_axis([n.rows for n in nests.values()], out_shape[0])
    cols = _common_axis([n.cols for n in nests.values()], out_shape[1])
    if rows is None or cols is None:
        return "the inputs' pixel edges never line up with each other"
    if rows[2] < 1 or cols[2] < 1:
        return "the inputs share no whole pixel of the coarsest grid"
    return CommonGrid(rows[0], cols[0], (rows[1], cols[1]), (rows[2], cols[2]), nests)


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


def _axis_maps(out: Grid, src: Grid, resampling: Resampling | str = Resampling.AUTO) -> tuple[AxisMap, AxisMap]:
    # Pixel centres: output index i sits at world t*(i+0.5); source index j's centre at t*(j+0.5).
    a, c, e, f = out.transform.a, out.transform.c, out.transform.e, out.transform.f
    sa, sc, se, sf = src.transform.a, src.transform.c, src.transform.e, src.transform.f
    kernel = kernel_for(resampling, max(abs(a / sa), abs(e / se)))
    cols = AxisMap(scale=a / sa, offset=(c + 0.5 * a - sc) / sa - 0.5, size=src.width, kernel=kernel)
    rows = AxisMap(scale=e / se, offset=(f + 0.5 * e - sf) / se - 0.5, size=src.height, kernel=kernel)
    return rows, cols


_KERNEL_WORDS = {"cubic": "cubic", "linear": "bilinear, covariance-preserving", "nearest": "nearest",
                 "average": "area average"}


def align(guide: RasterInfo, others: dict[str, RasterInfo], guide_role: str = "PAN",
          resampling: dict[str, Resampling] | None = None) -> Alignment:
    """Plan how ``others`` (label -> raster) land on the grid of ``guide`` over their common footprint.

    ``resampling`` says per label how a role's pixels reach the output grid (default: cubic when refining, area
    average when coarsening).
    """
    resampling = resampling or {}
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
        return _align_pixel_space(guide, others, guide_role, resampling)

    guide_grid = guide.grid
    src_grids: dict[str, Grid] = {}
    for role, info in others.items():
        if info.grid.crs != guide_grid.crs:
            raise InputMismatchError(
                f"{role} CRS {info.grid.crs} differs from {guide_role} CRS {guide_grid.crs}", path=info.path,
                hint=f"pass --reproject to warp it onto the {guide_role} CRS on the fly, or reproject it first "
                     "(gdalwarp -t_srs)")
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
        rows, cols = _axis_maps(out_grid, grid, resampling.get(role, Resampling.AUTO))
        resamplers[role] = Resampler(others[role], rows, cols)
        notes.append(f"{role} resampled onto the {guide_role} grid ({_KERNEL_WORDS[cols.kernel]}), "
                     f"ratio {1 / cols.scale:.4g}")
    return Alignment(out_grid, window, resamplers, notes)


def _align_pixel_space(guide: RasterInfo, others: dict[str, RasterInfo], guide_role: str,
                       resampling: dict[str, Resampling]) -> Alignment:
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
        kernel = kernel_for(resampling.get(role, Resampling.AUTO), 1.0 / ratio)
        axis = AxisMap(scale=1.0 / ratio, offset=0.5 / ratio - 0.5, size=w, kernel=kernel)
        resamplers[role] = Resampler(info, AxisMap(axis.scale, axis.offset, h, kernel), axis)
    names = " and ".join(info.path.name for info in (guide, *others.values()))
    warnings.warn(f"{names} are not georeferenced (no CRS): the output will have no CRS either",
                  NotGeoreferencedWarning, stacklevel=2)
    grid = Grid(guide.grid.transform, gw, gh, None)
    notes = [f"no CRS: {role} taken as covering the {guide_role} extent at ratio "
             f"{1 / r.cols.scale:g}" for role, r in resamplers.items()]
    return Alignment(grid, Window(0, 0, gw, gh), resamplers, notes)
