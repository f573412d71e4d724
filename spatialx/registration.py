"""Alignment preflight: is the low-resolution input's content where its georeferencing puts it?

A PAN/MS pair whose MS content sits a few MS pixels away from where its georeferencing says fuses without error,
and the fusion is silently wrong (component-substitution methods inject the PAN detail with the wrong sign). The
preflight compares the guide (the PAN) with a synthetic intensity of the low-resolution input (the MS bands
weighted by the sensor's PAN weights, or their mean) on the output grid, both degraded to the low-resolution scale,
by phase correlation on a few windows spread over the scene.

Sign convention: a shift ``(dx, dy)`` is how far, in low-resolution pixels, the low-resolution content must move to
match the guide (+x towards increasing columns, east on a north-up grid; +y towards increasing rows, south). If the
MS content appears 2 MS pixels east of where the PAN has it, the shift is ``dx = -2``. Correcting the
georeferencing by the shift (:func:`corrected_transform`) moves the content where the guide has it.

Decisions (:func:`decide`): ``ok`` below 0.5 low-resolution pixels (the tolerance ENVI and GDAL users apply),
``warn`` up to 3, ``refuse`` above 3; ``unknown`` when no window had the texture to measure a shift (never a made-up
number).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine

__all__ = ["OK_BELOW", "REFUSE_ABOVE", "Preflight", "ShiftEstimate", "ShiftMap", "WindowShift",
           "corrected_transform", "decide", "estimate_shift", "intensity", "preflight", "preflight_arrays",
           "scene_shift_map", "shift_map"]

#: Shifts below this many low-resolution pixels are fine; above :data:`REFUSE_ABOVE`, the run is refused.
OK_BELOW = 0.5
REFUSE_ABOVE = 3.0
#: Windows are at most this many degraded (low-resolution) pixels a side, and at least :data:`MIN_WINDOW`.
MAX_WINDOW = 128
MIN_WINDOW = 24
#: A window is usable when its correlation peak stands this many times above the next best peak ...
MIN_PEAK_RATIO = 1.5
#: ... and a window alone (the others unusable) this many times.
STRONG_PEAK_RATIO = 3.0
#: ... and holds at least this fraction of valid pixels.
MIN_VALID = 0.5
#: Relative texture (standard deviation / mean absolute level) below which a window counts as flat.
MIN_TEXTURE = 1e-4
#: Windows within this many degraded pixels of the median shift agree with it.
AGREE = 0.5


@dataclass(frozen=True)
class WindowShift:
    """One window's measurement. ``box`` is (row, col, height, width) in pixels of the arrays given (the output
    grid); ``dx``/``dy`` in low-resolution pixels (NaN when the window was not usable)."""

    box: tuple[int, int, int, int]
    dx: float
    dy: float
    peak: float  # height of the normalised correlation peak (1 for identical content)
    peak_ratio: float  # the peak over the highest peak away from it
    valid_fraction: float
    usable: bool
    reason: str = ""

    @property
    def magnitude(self) -> float:
        return math.hypot(self.dx, self.dy)


@dataclass(frozen=True)
class ShiftEstimate:
    """The global shift of the low-resolution content relative to the guide, in low-resolution pixels."""

    dx: float
    dy: float
    confidence: float  # 0..1: the fraction of usable windows that agree, scaled by how clear their peaks are
    reliable: bool
    windows: tuple[WindowShift, ...] = ()
    reason: str = ""  # why the estimate is not reliable

    @property
    def magnitude(self) -> float:
        return math.hypot(self.dx, self.dy)

    @property
    def shift(self) -> tuple[float, float]:
        return self.dx, self.dy


@dataclass(frozen=True)
class ShiftMap:
    """A grid of windows, each with its own shift (for ``spatialx check-alignment``)."""

    rows: int
    cols: int
    windows: tuple[WindowShift, ...]

    def at(self, row: int, col: int) -> WindowShift:
        return self.windows[row * self.cols + col]


@dataclass(frozen=True)
class Preflight:
    """The estimate and what to do about it: ``ok``, ``warn``, ``refuse`` or ``unknown``."""

    estimate: ShiftEstimate
    decision: str
    guide: str = "PAN"
    low: str = "MS"
    stride: int = 1

    @property
    def message(self) -> str:
        """One line for a warning or an error."""
        est = self.estimate
        if not est.reliable:
            return f"could not check the {self.low}/{self.guide} alignment: {est.reason}"
        text = (f"the {self.low} content is offset from the {self.guide} by {est.magnitude:.2f} {self.low} pixels "
                f"(it must move dx={est.dx:+.2f}, dy={est.dy:+.2f} to match; confidence {est.confidence:.2f})")
        if self.decision == "ok":
            return text
        return f"{text}: the georeferencing of the two inputs disagrees with their content"

    def tags(self) -> dict[str, Any]:
        """For the product's provenance (``SPATIALX_ALIGNMENT``)."""
        est = self.estimate
        tags: dict[str, Any] = {"decision": self.decision, "units": f"{self.low} pixels"}
        if est.reliable:
            tags.update(dx=round(est.dx, 3), dy=round(est.dy, 3), confidence=round(est.confidence, 3))
        else:
            tags["reason"] = est.reason
        return tags


# --------------------------------------------------------------------------------------------------- helpers
def decide(estimate: ShiftEstimate, ok_below: float = OK_BELOW, refuse_above: float = REFUSE_ABOVE) -> str:
    if not estimate.reliable:
        return "unknown"
    if estimate.magnitude < ok_below:
        return "ok"
    return "refuse" if estimate.magnitude > refuse_above else "warn"


def intensity(low: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """A synthetic intensity of ``low`` (bands, H, W): the bands weighted by ``weights`` (normalised; e.g. the
    sensor's PAN weights), or their mean when there are none (or they do not fit the bands)."""
    low = np.asarray(low, dtype=np.float64)
    if low.ndim == 2:
        return low
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if w is None or w.shape != (low.shape[0],) or not np.isfinite(w).all() or w.sum() <= 0:
        return low.mean(axis=0)
    return np.tensordot(w / w.sum(), low, axes=1)


def corrected_transform(transform: Affine, estimate: ShiftEstimate | tuple[float, float]) -> Affine:
    """The low-resolution input's geotransform moved by the shift (in its own pixels), so that its content lands
    where the guide has it (for ``--align-shift auto``)."""
    dx, dy = estimate.shift if isinstance(estimate, ShiftEstimate) else estimate
    return transform @ Affine.translation(dx, dy)


def _as_plane(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 3:
        array = array.mean(axis=0) if array.shape[0] > 1 else array[0]
    if array.ndim != 2:
        raise ValueError(f"expected a (H, W) or (bands, H, W) array, got shape {array.shape}")
    return array


def _degrade(plane: np.ndarray, valid: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Block average by ``factor`` over valid pixels; the fraction of valid pixels of each block."""
    h, w = (plane.shape[0] // factor) * factor, (plane.shape[1] // factor) * factor
    plane, valid = plane[:h, :w], valid[:h, :w]
    values = np.where(valid, plane, 0.0)
    if factor == 1:
        return values, valid.astype(np.float64)
    shape = (h // factor, factor, w // factor, factor)
    total = values.reshape(shape).sum(axis=(1, 3))
    count = valid.reshape(shape).sum(axis=(1, 3)).astype(np.float64)
    return total / np.maximum(count, 1), count / factor**2


def _boxes(height: int, width: int, per_row: int, per_col: int, side: int | None = None) -> list[tuple[int, ...]]:
    """``per_row x per_col`` square-ish windows spread over a ``height x width`` grid (overlapping when needed)."""
    wh = side if side is not None else height // per_row
    ww = side if side is not None else width // per_col
    wh, ww = min(wh, height), min(ww, width)
    tops = np.unique(np.linspace(0, height - wh, per_row).round().astype(int))
    lefts = np.unique(np.linspace(0, width - ww, per_col).round().astype(int))
    return [(int(t), int(left), wh, ww) for t in tops for left in lefts]


def _hann(shape: tuple[int, int]) -> np.ndarray:
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1]))


def _prepare(window: np.ndarray, weight: np.ndarray) -> np.ndarray | None:
    """Fill invalid pixels with the window mean, remove the mean, taper by Hann and by validity; None if flat."""
    valid = weight >= MIN_VALID
    if valid.sum() < 16:
        return None
    values = window[valid]
    mean = values.mean()
    spread = values.std()
    if not np.isfinite(spread) or spread <= MIN_TEXTURE * max(abs(mean), np.abs(values).max(), 1e-12):
        return None
    filled = np.where(valid, window, mean) - mean
    return filled / spread * _hann(window.shape) * np.clip(weight, 0.0, 1.0)


def _upsampled_dft(spectrum: np.ndarray, size: int, factor: int, offsets: tuple[float, float]) -> np.ndarray:
    """The inverse DFT of ``spectrum`` on a ``size x size`` patch of a grid ``factor`` times finer, starting at
    ``offsets`` (in fine pixels): Guizar-Sicairos et al. 2008, by matrix products."""
    data = spectrum
    for n, offset in zip(spectrum.shape[::-1], offsets[::-1], strict=True):
        kernel = np.exp(-2j * np.pi * (np.arange(size) - offset)[:, None] * np.fft.fftfreq(n, factor)[None])
        data = np.tensordot(kernel, data, axes=(1, -1))
    return data


def _phase_correlate(guide: np.ndarray, low: np.ndarray, upsample: int = 20) -> tuple[float, float, float, float]:
    """Shift (dy, dx) in pixels that moves ``low`` onto ``guide``, the peak height and the peak ratio."""
    cross = np.fft.fft2(guide) * np.conj(np.fft.fft2(low))
    magnitude = np.abs(cross)
    floor = magnitude.max() * 1e-9
    if not np.isfinite(floor) or floor <= 0:
        return math.nan, math.nan, 0.0, 0.0
    # Whitened, with a mild low-pass: the degraded guide keeps detail above the low input's passband.
    fy, fx = np.meshgrid(np.fft.fftfreq(guide.shape[0]), np.fft.fftfreq(guide.shape[1]), indexing="ij")
    spectrum = cross / np.maximum(magnitude, floor) * np.exp(-(fx**2 + fy**2) / (2 * 0.25**2))
    surface = np.fft.ifft2(spectrum).real
    norm = np.exp(-(fx**2 + fy**2) / (2 * 0.25**2)).sum() / surface.size
    h, w = surface.shape
    peak_index = np.unravel_index(int(np.argmax(surface)), surface.shape)
    peak = float(surface[peak_index])
    # The second peak: the highest value outside a neighbourhood of the first (circularly).
    ry = (np.arange(h) - peak_index[0] + h // 2) % h - h // 2
    rx = (np.arange(w) - peak_index[1] + w // 2) % w - w // 2
    near = (np.abs(ry)[:, None] <= 3) & (np.abs(rx)[None] <= 3)
    second = float(surface[~near].max()) if (~near).any() else 0.0
    ratio = peak / second if second > 0 else math.inf
    coarse = np.array([(peak_index[0] + h // 2) % h - h // 2, (peak_index[1] + w // 2) % w - w // 2], float)
    # Sub-pixel: the correlation surface upsampled around the integer peak.
    size = math.ceil(upsample * 1.5)
    centre = size // 2
    offsets = (centre - coarse[0] * upsample, centre - coarse[1] * upsample)
    fine = _upsampled_dft(np.conj(spectrum), size, upsample, offsets).conj().real
    fy_i, fx_i = np.unravel_index(int(np.argmax(fine)), fine.shape)
    dy = coarse[0] + (fy_i - centre) / upsample
    dx = coarse[1] + (fx_i - centre) / upsample
    return float(dy), float(dx), peak / norm, ratio


def _measure(guide: np.ndarray, low: np.ndarray, weight: np.ndarray, box: tuple[int, ...], factor: int,
             to_low: float) -> WindowShift:
    top, left, height, width = box
    out_box = (top * factor, left * factor, height * factor, width * factor)
    sl = np.s_[top:top + height, left:left + width]
    weights = weight[sl]
    fraction = float((weights >= MIN_VALID).mean())
    if fraction < MIN_VALID:
        return WindowShift(out_box, math.nan, math.nan, 0.0, 0.0, fraction, False, "mostly nodata")
    a, b = _prepare(guide[sl], weights), _prepare(low[sl], weights)
    if a is None or b is None:
        return WindowShift(out_box, math.nan, math.nan, 0.0, 0.0, fraction, False, "no texture")
    dy, dx, peak, ratio = _phase_correlate(a, b)
    if not np.isfinite(dx) or ratio < MIN_PEAK_RATIO:
        return WindowShift(out_box, math.nan, math.nan, peak, ratio, fraction, False, "no clear correlation peak")
    if max(abs(dx), abs(dy)) > 0.4 * min(height, width):
        return WindowShift(out_box, math.nan, math.nan, peak, ratio, fraction, False, "shift too large to measure")
    return WindowShift(out_box, dx * to_low, dy * to_low, peak, ratio, fraction, True)


def _degraded(guide: np.ndarray, low: np.ndarray, ratio: float,
              valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, float]:
    guide, low = _as_plane(guide), _as_plane(low)
    if guide.shape != low.shape:
        raise ValueError(f"guide {guide.shape} and low {low.shape} must be on the same grid")
    if not ratio > 0:
        raise ValueError(f"ratio must be positive, got {ratio}")
    mask = np.isfinite(guide) & np.isfinite(low)
    if valid is not None:
        mask &= np.asarray(valid, dtype=bool)
    factor = max(1, round(ratio))
    g, wg = _degrade(guide, mask, factor)
    lo, _ = _degrade(low, mask, factor)
    # One unit of the degraded grid is ``factor`` pixels of the arrays, ``factor / ratio`` low-resolution pixels.
    return g, lo, wg, factor, factor / ratio


def _layout(height: int, width: int, count: int, max_window: int, min_window: int) -> tuple[int, int, int]:
    """Windows per axis and their side for ``count`` windows on a ``height x width`` degraded grid."""
    per_axis = max(1, math.isqrt(max(1, count)))
    while per_axis > 1 and min(height, width) // per_axis < min_window:
        per_axis -= 1
    side = min(max_window, min(height, width) // per_axis)
    return per_axis, per_axis, side


# ------------------------------------------------------------------------------------------------ public API
def estimate_shift(guide: np.ndarray, low: np.ndarray, ratio: float, windows: int = 4, *,
                   valid: np.ndarray | None = None, max_window: int = MAX_WINDOW,
                   min_window: int = MIN_WINDOW) -> ShiftEstimate:
    """The shift of ``low``'s content relative to ``guide``, in low-resolution pixels.

    ``guide``: the high-resolution guide, (H, W) or (bands, H, W) (bands are averaged); ``low``: the synthetic
    intensity of the low-resolution input resampled onto the same grid, (H, W) (see :func:`intensity`); ``ratio``:
    output pixels per low-resolution pixel; ``valid``: optional (H, W) mask (NaN in either array counts as
    invalid too). Both are block-averaged by ``round(ratio)`` and compared by phase correlation on ``windows``
    windows (2 x 2 for 4) of up to ``max_window`` degraded pixels; the median of the usable windows is the shift
    ``(dx, dy)``: how far the low-resolution content must move to match the guide (+x: columns, +y: rows).
    """
    g, lo, weight, factor, to_low = _degraded(guide, low, ratio, valid)
    h, w = g.shape
    if min(h, w) < 16:
        return ShiftEstimate(math.nan, math.nan, 0.0, False, (),
                             f"the common area is {h} x {w} low-resolution pixels, too small to measure a shift")
    per_row, per_col, side = _layout(h, w, windows, max_window, min(min_window, min(h, w)))
    measured = tuple(_measure(g, lo, weight, box, factor, to_low) for box in _boxes(h, w, per_row, per_col, side))
    return _combine(measured, to_low)


def _combine(measured: tuple[WindowShift, ...], to_low: float) -> ShiftEstimate:
    usable = [m for m in measured if m.usable]
    if not usable:
        reasons = sorted({m.reason for m in measured})
        return ShiftEstimate(math.nan, math.nan, 0.0, False, measured,
                             f"no window could be measured ({', '.join(reasons)})")
    dx = float(np.median([m.dx for m in usable]))
    dy = float(np.median([m.dy for m in usable]))
    tolerance = AGREE * max(to_low, 1.0)
    agree = [m for m in usable if math.hypot(m.dx - dx, m.dy - dy) <= tolerance]
    # A lone window counts only with a strong peak (a random match stands barely above its next peak).
    lone = len(agree) == 1 and len(usable) == 1 and agree[0].peak_ratio >= STRONG_PEAK_RATIO
    if len(agree) * 2 < len(usable) or (len(agree) < 2 and not lone):
        return ShiftEstimate(math.nan, math.nan, 0.0, False, measured,
                             f"the windows disagree ({', '.join(f'{m.dx:+.1f},{m.dy:+.1f}' for m in usable)})")
    # Refine on the windows that agree (the median of an even count is the mean of the middle two).
    dx = float(np.median([m.dx for m in agree]))
    dy = float(np.median([m.dy for m in agree]))
    clarity = float(np.median([min(1.0, (m.peak_ratio - 1.0) / 2.0) for m in agree]))
    confidence = len(agree) / len(measured) * clarity
    return ShiftEstimate(dx, dy, round(confidence, 4), True, measured)


def shift_map(guide: np.ndarray, low: np.ndarray, ratio: float, grid: tuple[int, int] = (4, 4), *,
              valid: np.ndarray | None = None, min_window: int = MIN_WINDOW) -> ShiftMap:
    """``grid`` (rows, cols) windows tiling the scene, each with its shift (low-resolution pixels) and peak; fewer
    per axis when the scene is too small for windows of ``min_window`` degraded pixels."""
    g, lo, weight, factor, to_low = _degraded(guide, low, ratio, valid)
    h, w = g.shape
    rows = max(1, min(grid[0], h // min_window))
    cols = max(1, min(grid[1], w // min_window))
    boxes = _boxes(h, w, rows, cols)
    return ShiftMap(rows, cols, tuple(_measure(g, lo, weight, box, factor, to_low) for box in boxes))


def preflight_arrays(guide: np.ndarray, low: np.ndarray, ratio: float, *, weights: Sequence[float] | None = None,
                     valid: np.ndarray | None = None, stride: int = 1, guide_label: str = "PAN",
                     low_label: str = "MS", windows: int = 4) -> Preflight:
    """:func:`estimate_shift` and its decision, for arrays on the output grid sampled every ``stride`` pixels;
    ``low`` is (bands, H, W) (reduced by :func:`intensity` with ``weights``) or already an intensity (H, W)."""
    plane = intensity(low, weights)
    estimate = estimate_shift(guide, plane, ratio / stride, windows, valid=valid)
    return Preflight(estimate, decide(estimate), guide_label, low_label, stride)


def _roles(scene: Any, low_role: str | None) -> tuple[str, str, float]:
    guide = scene.guide
    low = low_role or scene.resampled[0]
    resampler = scene.alignment.resamplers[low]
    ratio = math.sqrt(1.0 / abs(resampler.cols.scale) / abs(resampler.rows.scale))
    return guide, low, ratio


def _weights(scene: Any, sensors: Mapping[str, Any] | None, guide: str, low: str) -> tuple[float, ...] | None:
    if sensors is None or low not in sensors or len(scene.bands[guide]) != 1:
        return None
    weights = tuple(sensors[low].pan_weights)
    return weights if len(weights) == len(scene.bands[low]) else None


def preflight(sample: Any, scene: Any, sensors: Mapping[str, Any] | None = None, *, low_role: str | None = None,
              windows: int = 4) -> Preflight:
    """The preflight on what the first pass gives: ``sample`` a :class:`~spatialx.methods.base.SceneSample`
    (``first_pass(scene)``), ``scene`` its :class:`~spatialx.scene.SceneInputs`, ``sensors`` the roles' profiles
    (for the PAN weights). Compares the guide with the first resampled role (or ``low_role``); the shift is in that
    role's pixels whatever the sample's stride."""
    guide, low, ratio = _roles(scene, low_role)
    task = scene.task
    return preflight_arrays(sample.inputs[guide], sample.inputs[low], ratio,
                            weights=_weights(scene, sensors, guide, low), valid=sample.valid, stride=sample.stride,
                            guide_label=task.label(guide), low_label=task.label(low), windows=windows)


def scene_shift_map(sample: Any, scene: Any, sensors: Mapping[str, Any] | None = None, *,
                    low_role: str | None = None, grid: tuple[int, int] = (4, 4)) -> ShiftMap:
    """:func:`shift_map` on a first-pass sample (see :func:`preflight`); boxes are in sampled pixels."""
    guide, low, ratio = _roles(scene, low_role)
    plane = intensity(sample.inputs[low], _weights(scene, sensors, guide, low))
    return shift_map(sample.inputs[guide], plane, ratio / sample.stride, grid, valid=sample.valid)

