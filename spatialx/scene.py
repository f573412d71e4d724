"""A task's inputs opened and aligned on the output grid: windowed reads, the first pass, scene windows.

:class:`SceneInputs` is what every step after alignment reads through: the tiler asks it for every role on a
window of the output grid; the first pass (:func:`first_pass`) samples the whole scene for the method's statistics;
:func:`scene_windows` cuts contiguous windows whose edges are pixel edges of every grid, for methods that learn
from the scene.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np
from rasterio.windows import Window

from spatialx.align import Alignment, AxisMap, Resampler, common_grid, nest
from spatialx.errors import InputMismatchError
from spatialx.io.read import RasterInfo, RasterReader
from spatialx.methods.base import SceneSample, SceneWindow
from spatialx.sensors import Band, SensorProfile
from spatialx.tasks import TaskSpec

#: First-pass budget: scenes up to this many output pixels are sampled at every pixel (exact statistics) ...
SAMPLE_PIXELS = 1 << 22
#: ... and at most this many values of all roles' bands together (a 230-band cube samples fewer pixels; a
#: WorldView-3 PAN + 8-band MS pair, 9 bands, keeps the full pixel budget).
SAMPLE_VALUES = 9 * SAMPLE_PIXELS
#: Scene windows for learning methods hold at most this many values (four 512 px windows of PAN + 8 bands).
WINDOW_VALUES = 4 * 512 * 512 * 9
#: The first pass reads the scene in blocks of at most this many values (64 MiB of float32).
BLOCK_VALUES = 1 << 24


def resolve_bands(info: RasterInfo, sensor: SensorProfile, bands: str | None,
                  label: str) -> tuple[SensorProfile, list[int]]:
    """Match the file's bands to the sensor profile.

    ``bands`` is None (the file's bands are the sensor's, in order), a comma list of 1-based file band numbers
    (picked in the sensor's band order), or a comma list of sensor band names (the file holds those bands, in that
    order: the profile is restricted to them).
    """
    if bands:
        items = [b.strip() for b in bands.split(",") if b.strip()]
        repeated = sorted({item for item in items if items.count(item) > 1})
        if repeated:
            raise InputMismatchError(f"--bands {bands} names {', '.join(repeated)} more than once", path=info.path,
                                     hint="give each band once")
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
        names = sensor.band_names
        listed = ", ".join(names) if len(names) <= 12 else f"{', '.join(names[:3])}, ..., {names[-1]}"
        raise InputMismatchError(
            f"{label} has {info.count} bands, {sensor.name} expects {len(sensor.bands)} ({listed})", path=info.path,
            hint="pick the sensor that matches, or select bands with --bands (numbers or names)")
    return sensor, list(range(1, info.count + 1))


def profile_for_file(info: RasterInfo, sensor: SensorProfile) -> SensorProfile:
    """The sensor profile as it describes this file's bands.

    A product reader that names the sensor's bands (a Sentinel-2 reader giving B02, B03, ...) restricts the profile
    to them; an imaging spectrometer whose profile takes wavelengths from each file (PRISMA) gets bands with the
    file's centres and FWHM (and the nearest nominal band's MTF gain and resolution). Any other band-count mismatch
    is left for :func:`resolve_bands` to refuse. A reader that delivers physical values (reflectance)
    marks it in ``info.metadata``: the profile then describes those values, not the DN.
    """
    names = [d for d in info.descriptions if d]
    known = {b.name.lower() for b in sensor.bands}
    has_wavelengths = info.wavelengths_nm is not None and all(w is not None for w in info.wavelengths_nm)
    if has_wavelengths and sensor.wavelengths_from_file:
        sensor = _bands_from_file(info, sensor)
    elif len(names) == info.count != len(sensor.bands) and all(n.lower() in known for n in names):
        sensor = sensor.select(names)
    physical = info.metadata.get("value_range")
    if physical is not None:
        units = info.metadata.get("units", sensor.units)
        bands = tuple(replace(b, scale=1.0, offset=0.0, valid_range=None, nodata=None, units=units,
                              dtype=info.dtype, offset_from_product=None, range_from_product=None)
                      for b in sensor.bands)
        sensor = replace(sensor, bands=bands, dtype=info.dtype, valid_range=tuple(physical), max_value=None,
                         bit_depth=None, scale=1.0, offset=0.0, nodata=None, units=units, offset_from_product=None,
                         range_from_product=None)
    return sensor


def _bands_from_file(info: RasterInfo, sensor: SensorProfile) -> SensorProfile:
    nominal = [b for b in sensor.bands if b.center_nm is not None]
    fwhm = info.fwhm_nm or (None,) * info.count
    bands = []
    for i, (centre, width) in enumerate(zip(info.wavelengths_nm or (), fwhm, strict=True)):
        like = min(nominal, key=lambda b: abs(b.center_nm - centre)) if nominal else None  # type: ignore[operator]
        name = info.descriptions[i] or f"B{i + 1:03d}"
        if like is None:
            bands.append(Band(name=name, center_nm=centre, width_nm=width))
        else:
            bands.append(replace(like, name=name, center_nm=centre, width_nm=width or like.width_nm, response=None))
    names = [b.name for b in bands]
    if len(set(names)) != len(names):  # descriptions that repeat (or are missing for some bands) cannot name bands
        bands = [replace(b, name=f"B{i + 1:03d}") for i, b in enumerate(bands)]
    red, nir = (_nearest(bands, centre) for centre in NDVI_CENTRES_NM)
    return replace(sensor, bands=tuple(bands), spectral_grid=(), ndvi_red=red, ndvi_nir=nir)


#: Red and near-infrared centres of an NDVI made from a spectrometer's bands (Sentinel-2 B04 and B08).
NDVI_CENTRES_NM = (665.0, 842.0)


def _nearest(bands: list[Band], centre: float, within: float = 30.0) -> str | None:
    """The band nearest ``centre`` nm, if one lies within ``within`` nm."""
    best = min(bands, key=lambda b: abs((b.center_nm or np.inf) - centre), default=None)
    if best is None or best.center_nm is None or abs(best.center_nm - centre) > within:
        return None
    return best.name


def physical_profile(info: RasterInfo, sensor: SensorProfile) -> tuple[SensorProfile, np.ndarray | None]:
    """For a role fused in physical units: the profile of the converted values and the per-band ``(scale,
    offset)`` (shape (2, bands, 1, 1)) that convert the file's DN, or None when the values are physical already.

    A conversion that needs a number only the product states (Sentinel-2's ``BOA_ADD_OFFSET``) takes it from the
    metadata the reader found, or fails with a line saying which number is missing.
    """
    from spatialx.sensors import ProductMetadataError

    try:
        linear = [band.linear(info.metadata or None) for band in sensor.bands]
    except ProductMetadataError as exc:
        raise ProductMetadataError(f"{exc.message}: this file does not state it", path=info.path,
                                   hint="give the product itself (for Sentinel-2: the .SAFE folder, its "
                                        "MTD_MSIL2A.xml, or the band COGs with their STAC item)") from None
    if all(scale == 1.0 and offset == 0.0 for scale, offset in linear):
        return sensor, None
    coefficients = np.array(linear, dtype=np.float32).T[:, :, None, None]
    low, high = sensor.value_range
    bands = tuple(replace(b, scale=1.0, offset=0.0, valid_range=None, offset_from_product=None,
                          range_from_product=None) for b in sensor.bands)
    scales, offsets = coefficients[0].ravel(), coefficients[1].ravel()
    value_range = (float(np.min(low * scales + offsets)), float(np.max(high * scales + offsets)))
    return replace(sensor, bands=bands, valid_range=value_range, max_value=None, bit_depth=None, scale=1.0,
                   offset=0.0, offset_from_product=None, range_from_product=None, dtype="float32"), coefficients


@dataclass
class SceneInputs:
    """Opened inputs of one run, their band selection and their alignment on the output grid.

    ``linear`` holds, for roles fused in physical units whose files store DN, the ``(scale, offset)`` applied on
    every read (before resampling: a linear map commutes with it, and nodata is masked on the DN).
    """

    task: TaskSpec
    rasters: dict[str, RasterInfo]
    bands: dict[str, list[int]]  # role -> 1-based file band indexes, in sensor order
    alignment: Alignment
    readers: dict[str, RasterReader] = field(default_factory=dict)
    linear: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def guide(self) -> str:
        return self.task.guide

    @property
    def band_count(self) -> int:
        """Bands of every role together (what one pixel of the first pass costs)."""
        return sum(len(bands) for bands in self.bands.values())

    @property
    def resampled(self) -> tuple[str, ...]:
        """The non-guide roles this run has (optional roles may be absent)."""
        return tuple(role for role in self.task.resampled if role in self.rasters)

    def open_readers(self) -> None:
        self.readers = {role: info.reader() for role, info in self.rasters.items()}

    def __getstate__(self) -> dict:
        # Open handles stay in their process: a copy on a dask worker opens its own (TileFuser).
        return {**self.__dict__, "readers": {}}

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()

    def __enter__(self) -> SceneInputs:
        self.open_readers()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def guide_window(self, window: Window) -> Window:
        gw = self.alignment.guide_window
        return Window(int(gw.col_off + window.col_off), int(gw.row_off + window.row_off), window.width, window.height)

    def read(self, window: Window) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Every role on ``window`` of the output grid, and where all of them hold data."""
        arrays, masks = self._read_roles(window)
        valid = np.ones(arrays[self.guide].shape[1:], dtype=bool)
        for mask in masks.values():
            valid &= mask
        return arrays, valid

    def read_each(self, window: Window) -> dict[str, np.ndarray]:
        """Every role on ``window`` of the output grid, NaN where that role holds no data: for methods that judge
        validity per input (in multi-date fusion one cloudy date does not void a prediction)."""
        arrays, masks = self._read_roles(window)
        for role, mask in masks.items():
            arrays[role] = np.where(mask, arrays[role], np.float32(np.nan))
        return arrays

    def _read_roles(self, window: Window) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Each role on ``window`` and, for roles that can hold invalid pixels, where they hold data."""
        arrays, masks = {}, {}
        info = self.rasters[self.guide]
        data, valid = self.readers[self.guide].read_masked(self.guide_window(window), self.bands[self.guide])
        data, finite = _finite(data, _stored(info))
        arrays[self.guide] = self._physical(self.guide, data)
        if valid is not None:
            masks[self.guide] = valid
        if finite is not None:
            masks[self.guide] = finite & masks.get(self.guide, True)
        for role in self.resampled:
            arrays[role], role_valid = self.read_resampled(role, self.alignment.resamplers[role], window)
            if role_valid is not None:
                masks[role] = role_valid
        return arrays, masks

    def read_native(self, role: str, window: Window) -> np.ndarray:
        """``window`` of ``role``'s own raster, in the units the method sees."""
        return self._physical(role, self.readers[role].read(window, self.bands[role]))

    def _physical(self, role: str, data: np.ndarray) -> np.ndarray:
        linear = self.linear.get(role)
        return data if linear is None else data * linear[0] + linear[1]

    def read_resampled(self, role: str, resampler: Resampler,
                       window: Window) -> tuple[np.ndarray, np.ndarray | None]:
        src_window = resampler.source_window(window)
        data, valid = self.readers[role].read_masked(src_window, self.bands[role])
        data, finite = _finite(data, _stored(self.rasters[role]))
        data = self._physical(role, data)
        if finite is not None:
            valid = finite if valid is None else valid & finite
        if valid is not None:
            valid = resampler.resample_valid(valid, src_window, window)
        return resampler.resample(data, src_window, window), valid


def _stored(info: RasterInfo) -> str | None:
    """The type a plain GDAL file stores its pixels in (read as they are); None for sensor products and arrays,
    whose readers may mark fills as NaN."""
    return info.dtype if info.opener is None else None


def _finite(data: np.ndarray, stored: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``data`` with non-finite values (NaN or inf fills, whatever the file declares) set to 0, and where every band
    is finite (None when all are). A NaN would spread through any filter or interpolation, even with weight 0.
    Pixels ``stored`` as integers are finite: they are not scanned."""
    if stored is not None and np.dtype(stored).kind in "iub":
        return data, None
    finite = np.isfinite(data)
    if finite.all():
        return data, None
    return np.where(finite, data, data.dtype.type(0)), finite.all(axis=0)


def _strided(reader_read: Callable[[Window], np.ndarray], height: int, width: int, stride: int,
             bands: int = 1) -> np.ndarray:
    """Read a ``height x width`` area block by block and keep every ``stride``-th pixel (from stride // 2).

    Blocks hold at most :data:`BLOCK_VALUES` values of ``bands`` bands, and start on multiples of ``stride`` (the
    sampling phase), so memory stays bounded however wide the scene or many its bands.
    """
    offset = stride // 2
    side = max(1, math.isqrt(BLOCK_VALUES // max(1, bands)) // stride) * stride
    rows = []
    for top in range(0, height, side):
        pieces = []
        for left in range(0, width, side):
            block = reader_read(Window(left, top, min(side, width - left), min(side, height - top)))
            # A copy, not a view: a view would keep every full block alive until the end.
            pieces.append(np.ascontiguousarray(block[..., offset::stride, offset::stride]))
        rows.append(np.concatenate(pieces, axis=-1))
    return np.concatenate(rows, axis=-2)


def first_pass(inputs: SceneInputs, pixel_budget: int | None = None) -> SceneSample:
    """Sample the whole scene for the method's global statistics (every pixel when it fits the budget).

    The default budget bounds the sample's memory whatever the band count (:data:`SAMPLE_VALUES`).
    """
    if pixel_budget is None:
        pixel_budget = min(SAMPLE_PIXELS, SAMPLE_VALUES // max(1, inputs.band_count))
    grid = inputs.alignment.grid
    stride = max(1, math.ceil(math.sqrt(grid.width * grid.height / pixel_budget)))
    guide, guide_role = inputs.readers[inputs.guide], inputs.guide
    guide_masked = inputs.rasters[guide_role].has_mask
    sampled: dict[str, np.ndarray] = {}
    offset = stride // 2

    def guide_read(w: Window) -> np.ndarray:
        data, finite = _finite(inputs.read_native(guide_role, inputs.guide_window(w)))
        mask = guide.read_valid(inputs.guide_window(w), inputs.bands[guide_role]) if guide_masked else None
        if finite is not None:
            mask = finite if mask is None else mask & finite
        if mask is None:
            mask = np.ones(data.shape[1:], dtype=bool)
        return np.concatenate([data, mask[None].astype(np.float32)])

    data = _strided(guide_read, grid.height, grid.width, stride, len(inputs.bands[guide_role]) + 1)
    sampled[guide_role], valid = data[:-1], data[-1] > 0
    native: dict[str, np.ndarray] = {}
    out_h, out_w = valid.shape
    for role in inputs.resampled:
        resampler = inputs.alignment.resamplers[role]
        # The same resampler, evaluated only at the sampled output pixels.
        rows, cols = resampler.rows, resampler.cols
        strided = Resampler(
            resampler.source,
            AxisMap(rows.scale * stride, rows.offset + rows.scale * offset, rows.size, rows.kernel, rows.width),
            AxisMap(cols.scale * stride, cols.offset + cols.scale * offset, cols.size, cols.kernel, cols.width))
        # Block by block: one read of the whole source would grow with the scene. A sampled output pixel spans
        # ``scale * stride`` source pixels each way; blocks keep the source read within BLOCK_VALUES.
        span = max(cols.scale, rows.scale) * stride
        side = max(1, int(math.isqrt(BLOCK_VALUES // max(1, len(inputs.bands[role]))) / max(span, 1e-9)))
        value_rows, valid_rows = [], []
        for top in range(0, out_h, side):
            values_row, valid_row = [], []
            for left in range(0, out_w, side):
                window = Window(left, top, min(side, out_w - left), min(side, out_h - top))
                values, role_valid = inputs.read_resampled(role, strided, window)
                values_row.append(values)
                valid_row.append(np.ones(values.shape[1:], dtype=bool) if role_valid is None else role_valid)
            value_rows.append(np.concatenate(values_row, axis=2))
            valid_rows.append(np.concatenate(valid_row, axis=1))
        sampled[role] = np.concatenate(value_rows, axis=1)
        valid &= np.concatenate(valid_rows, axis=0)
        native[role] = _native_sample(inputs, role, resampler, pixel_budget)
    windows, reason = scene_windows(inputs, whole=stride == 1)
    return SceneSample(inputs=sampled, valid=valid, native=native, stride=stride, windows=windows,
                       windows_unavailable=reason)


def scene_windows(inputs: SceneInputs, whole: bool, count: int = 8,
                  size: int = 128) -> tuple[list[SceneWindow], str]:
    """Contiguous windows with exact pixel correspondences, for methods that learn from the scene.

    Windows are cut at output-grid edges that are also pixel edges of every input: with grid ratios p/q (4 for
    PAN/MS, 3/2 for 10 m and 15 m) that is every lcm(p) output pixels from the first edge all grids share. Grids
    whose ratio is not a fraction of small whole numbers (Landsat 30 m and MODIS 463.3 m) share no edges: then
    there are no windows, and the reason says so. ``whole``: one window over the entire common extent; otherwise up
    to ``count`` windows of about ``size`` pixels of the coarsest grid, spread over it.
    """
    grid = inputs.alignment.grid
    try:
        nests = {role: nest(inputs.alignment.resamplers[role], inputs.task.label(role)) for role in inputs.resampled}
    except InputMismatchError as exc:
        return [], exc.message
    if not nests:
        return [], "the task has a single input"
    common = common_grid(nests, grid.shape)
    if isinstance(common, str):
        return [], common
    block_r, block_c = common.block
    blocks_r, blocks_c = common.blocks
    if whole:
        boxes = [(0, 0, blocks_r, blocks_c)]
    else:
        coarsest = max(n.scale for n in nests.values())
        per_side = max(1, math.isqrt(count))
        # Windows of many-band inputs are smaller, so that their memory stays within WINDOW_VALUES.
        side = min(size * coarsest, math.isqrt(WINDOW_VALUES // (per_side**2 * max(1, inputs.band_count))))
        height = max(1, min(blocks_r, round(side / block_r)))
        width = max(1, min(blocks_c, round(side / block_c)))
        boxes = [(int(r), int(c), height, width)
                 for r in np.unique(np.linspace(0, blocks_r - height, per_side).astype(int))
                 for c in np.unique(np.linspace(0, blocks_c - width, per_side).astype(int))]
    windows = []
    scales = {inputs.guide: Fraction(1), **{role: n.scale for role, n in nests.items()}}
    for r, c, h, w in boxes:
        out_window = Window(common.col_start + c * block_c, common.row_start + r * block_r, w * block_c,
                            h * block_r)
        arrays = {inputs.guide: inputs.read_native(inputs.guide, inputs.guide_window(out_window))}
        for role in nests:
            arrays[role] = inputs.read_native(role, common.source_window(role, out_window))
        windows.append(SceneWindow(arrays, scales))
    return windows, ""


def _native_sample(inputs: SceneInputs, role: str, resampler: Resampler, pixel_budget: int) -> np.ndarray:
    """The role on its own grid over the output footprint (strided when large)."""
    grid = inputs.alignment.grid
    window = resampler.source_window(Window(0, 0, grid.width, grid.height))
    stride = max(1, math.ceil(math.sqrt(window.width * window.height / pixel_budget)))
    c0, r0 = int(window.col_off), int(window.row_off)
    return _strided(lambda w: inputs.read_native(role, Window(c0 + w.col_off, r0 + w.row_off, w.width, w.height)),
                    int(window.height), int(window.width), stride, len(inputs.bands[role]))
