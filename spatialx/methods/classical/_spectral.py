"""What the hyperspectral + multispectral (``hmif``) methods share: how the two sensors' bands relate spectrally, and
how the MS is brought to the HS resolution.

Spectral side. Every band's relative response is taken from its sensor profile (:meth:`Band.response_curve`: the
tabulated curve, or a Gaussian of the band's centre and FWHM) on a common 1 nm grid, each scaled to a peak of 1. From
the integrals ``A[m, k] = integral r_m(l) phi_k(l) dl`` of MS band ``m``'s response ``r_m`` against HS band ``k``'s
``phi_k`` come

- the spectral response matrix ``R = A / A.sum(axis=1)`` (:func:`spectral_response_matrix`), which synthesises MS
  band ``m`` from the HS bands (``MS_m ~ sum_k R[m, k] HS_k``; a flat spectrum maps onto itself), the ``R`` of CNMF
  (Yokoya et al. 2012); a row of zeros marks an MS band that no HS band overlaps (outside the HS spectral range);
- the overlap ``O[m, k] = A[m, k] / integral phi_k`` (:func:`response_overlap`), the MS band's mean relative response
  over HS band ``k`` (1 when the HS band lies where the MS response is at its peak), from which
  :func:`select_ms_bands` picks, for each HS band, the MS bands that see it (``O > 0.05``, i.e. the HS band lies
  within about one FWHM of the MS band's centre for Gaussian responses), and every MS band where none does (HS bands
  between or beyond the MS bands, such as PRISMA's SWIR against Sentinel-2's 10 m bands).

Spatial side. The HS pixel is modelled as the ground blurred by the HS sensor's MTF (a Gaussian with the band's
``mtf_gain`` at the HS Nyquist frequency, :func:`spatialx.filters.mtf_filter` at the HS:MS grid ratio) and sampled at
the centre of each ``r x r`` block of MS pixels (:func:`~spatialx.filters.decimate_centred`: on nested grids the HS
pixel centre is the block centre). The MS degraded this way (:func:`degrade`) is what the HS would have recorded of
the MS scene, so regressions and the CNMF coupling are done at the HS scale against the HS itself. The MTF model is
preferred to a plain area average because the HS optics blur beyond the pixel footprint, and because it is the model
of the toolbox's reduced-resolution protocol and of :mod:`spatialx.evaluate`. The kernel is renormalised to unit DC
gain (the toolbox keeps its ~0.1 % loss to reproduce reference data; here it would only bias the HPM modulation).

Which gain: by default the methods estimate it from the scene (:func:`estimate_mtf_gain`: the Gaussian blur that best
maps the MS onto the HS, searched between 0.1 and 0.9), with ``mtf="sensor"`` they take the profile's ``mtf_gain``
(:data:`DEFAULT_HS_MTF_GAIN` where a band has none). The estimate is the default because what matters is the blur
between the two files as they are, which a nominal gain may not describe: the HS sensor's MTF relative to the MS's
(which is not a perfect image either), or an HS simulated by area averaging (estimated at 0.675 where PRISMA's profile
says 0.3). A wrong gain is costly on smooth scenes: there the methods inject the blur mismatch rather than detail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from spatialx.errors import MethodError
from spatialx.filters import DEFAULT_TAPS, decimate_centred, imresize_bicubic, mtf_filter, mtf_kernel
from spatialx.methods.base import MethodContext, SceneSample
from spatialx.sensors import SensorProfile

#: Smallest mean relative response of an MS band over an HS band for the MS band to count as seeing it.
OVERLAP_THRESHOLD = 0.05
#: MTF gain at the HS Nyquist frequency for bands whose profile states none: the PRISMA value of the pansharpening
#: toolbox (IMPLEMENTATION_NOTES.md), also the toolbox's generic low-pass gain.
DEFAULT_HS_MTF_GAIN = 0.3
#: Step of the wavelength grid the responses are integrated on (nm); PRISMA's FWHM is ~10 nm.
_STEP_NM = 1.0
#: Relative response below which a band is taken not to respond.
_RESPONSE_FLOOR = 1e-6


# ------------------------------------------------------------------------------------------------------------
# spectral responses


def _response_table(sensor: SensorProfile, wavelengths: np.ndarray) -> np.ndarray:
    """Each band's relative response on ``wavelengths``, peak 1: (bands, len(wavelengths))."""
    curves = np.stack([band.response_curve(wavelengths) for band in sensor.bands])
    peak = curves.max(axis=1, keepdims=True)
    curves = np.divide(curves, peak, out=np.zeros_like(curves), where=peak > 0)
    # Gaussian tails never reach zero; below 1e-6 of the peak no real instrument responds.
    curves[curves < _RESPONSE_FLOOR] = 0.0
    return curves


def _extent_nm(sensor: SensorProfile) -> tuple[float, float]:
    lo, hi = math.inf, -math.inf
    for band in sensor.bands:
        if band.response is not None:
            lo, hi = min(lo, band.response.wavelengths_nm[0]), max(hi, band.response.wavelengths_nm[-1])
        elif band.center_nm is not None and band.width_nm:
            # a Gaussian falls below 1e-7 of its peak 2.5 FWHM from its centre
            lo, hi = min(lo, band.center_nm - 2.5 * band.width_nm), max(hi, band.center_nm + 2.5 * band.width_nm)
    return lo, hi


def _integrals(hs_sensor: SensorProfile, ms_sensor: SensorProfile) -> tuple[np.ndarray, np.ndarray]:
    """``A[m, k]`` (MS band against HS band) and ``integral phi_k`` for every HS band."""
    for sensor, role in ((hs_sensor, "HS"), (ms_sensor, "MS")):
        if not sensor.bands:
            raise MethodError(f"the {role} sensor {sensor.key!r} has no bands")
    (lo_h, hi_h), (lo_m, hi_m) = _extent_nm(hs_sensor), _extent_nm(ms_sensor)
    lo, hi = min(lo_h, lo_m), max(hi_h, hi_m)
    if not math.isfinite(lo) or not math.isfinite(hi):
        # Bands without any spectral description: response_curve says which one and what to add.
        lo, hi = 0.0, 1.0
    wavelengths = np.arange(math.floor(lo), math.ceil(hi) + _STEP_NM, _STEP_NM)
    hs = _response_table(hs_sensor, wavelengths)
    ms = _response_table(ms_sensor, wavelengths)
    return ms @ hs.T * _STEP_NM, hs.sum(axis=1) * _STEP_NM


def spectral_response_matrix(hs_sensor: SensorProfile, ms_sensor: SensorProfile,
                             threshold: float = OVERLAP_THRESHOLD) -> np.ndarray:
    """``R`` (MS bands, HS bands): MS band ``m`` as a combination of the HS bands, each row summing to 1.

    ``R[m, k]`` is MS band ``m``'s response integrated against HS band ``k``'s, normalised over ``k``. An MS band that
    no HS band overlaps by more than ``threshold`` (:func:`response_overlap`: outside the HS spectral range, or seen
    only by the tail of its response) gets a row of zeros: the HS cannot synthesise it. A band the HS covers only in
    part is synthesised from that part.
    """
    a, hs_area = _integrals(hs_sensor, ms_sensor)
    covered = (_overlap(a, hs_area) > threshold).any(axis=1, keepdims=True)
    total = a.sum(axis=1, keepdims=True)
    return np.divide(a, total, out=np.zeros_like(a), where=covered & (total > 0))


def _overlap(a: np.ndarray, hs_area: np.ndarray) -> np.ndarray:
    return np.divide(a, hs_area[None, :], out=np.zeros_like(a), where=hs_area[None, :] > 0)


def response_overlap(hs_sensor: SensorProfile, ms_sensor: SensorProfile) -> np.ndarray:
    """``O`` (MS bands, HS bands): the mean relative response (peak 1) of MS band ``m`` over HS band ``k``."""
    return _overlap(*_integrals(hs_sensor, ms_sensor))


def select_ms_bands(hs_sensor: SensorProfile, ms_sensor: SensorProfile,
                    threshold: float = OVERLAP_THRESHOLD) -> list[tuple[int, ...]]:
    """For each HS band, the MS bands whose response overlaps it (``O > threshold``), or every MS band when none
    does."""
    overlap = response_overlap(hs_sensor, ms_sensor)
    everything = tuple(range(overlap.shape[0]))
    return [tuple(int(m) for m in np.flatnonzero(column > threshold)) or everything for column in overlap.T]


def covered_ms_bands(hs_sensor: SensorProfile, ms_sensor: SensorProfile,
                     threshold: float = OVERLAP_THRESHOLD) -> tuple[int, ...]:
    """The MS bands that some HS band overlaps: only these can be synthesised from the HS."""
    overlap = response_overlap(hs_sensor, ms_sensor)
    return tuple(int(m) for m in np.flatnonzero((overlap > threshold).any(axis=1)))


# ------------------------------------------------------------------------------------------------------------
# the HS:MS ratio and the HS MTF


def hs_ratio(context: MethodContext, method: str) -> int:
    """The HS:MS grid ratio as an integer (methods that decimate need one), else a :class:`MethodError`."""
    ratio = float(context.grid_ratios.get("hs", context.ratio))
    if not math.isfinite(ratio) or ratio < 1.5 or abs(ratio - round(ratio)) > 1e-6:
        hint = ("resample the HS onto a grid nested in the MS grid at an integer ratio (e.g. 30 m on 10 m with "
                "gdalwarp -tr 30 30 -tap)")
        if math.isfinite(ratio) and ratio < 1.5:
            raise MethodError(f"{method} needs the HS at its own, coarser resolution, but its grid ratio to the MS "
                              f"is {ratio:g}", hint="give the HS file as delivered, not already resampled onto the MS")
        raise MethodError(f"{method} degrades the MS to the HS resolution by decimation and needs an integer HS:MS "
                          f"grid ratio, got {ratio:g}", hint=hint)
    return round(ratio)


def hs_mtf_gains(hs_sensor: SensorProfile) -> tuple[np.ndarray, str]:
    """Each HS band's MTF gain at the HS Nyquist frequency, and where the gains came from."""
    gains = [band.mtf_gain for band in hs_sensor.bands]
    missing = sum(g is None for g in gains)
    values = np.array([DEFAULT_HS_MTF_GAIN if g is None else float(g) for g in gains], dtype=np.float64)
    if missing == 0:
        source = f"sensor {hs_sensor.key}"
    elif missing == len(gains):
        source = f"default {DEFAULT_HS_MTF_GAIN} (sensor {hs_sensor.key} states none)"
    else:
        source = f"sensor {hs_sensor.key}, default {DEFAULT_HS_MTF_GAIN} for {missing} bands without one"
    return values, source


def gain_groups(gains: np.ndarray) -> dict[float, np.ndarray]:
    """HS band indices by MTF gain: the MS is degraded once per distinct gain, not once per band."""
    return {float(g): np.flatnonzero(gains == g) for g in np.unique(gains)}


# ------------------------------------------------------------------------------------------------------------
# spatial degradation to the HS resolution


@lru_cache(maxsize=32)
def _dc_gain(gain: float, ratio: int, taps: int) -> float:
    return float(mtf_kernel(gain, ratio, taps).sum())


def blur(image: np.ndarray, gain: float, ratio: int, taps: int = DEFAULT_TAPS) -> np.ndarray:
    """The HS MTF on the MS grid (replicate borders), with unit DC gain; float64."""
    arr = np.asarray(image, dtype=np.float64)
    return mtf_filter(arr, gain, ratio, taps) / _dc_gain(float(gain), int(ratio), int(taps))


def degrade(image: np.ndarray, gain: float, ratio: int, taps: int = DEFAULT_TAPS) -> np.ndarray:
    """MS-grid images (bands, r*h, r*w) as the HS sensor records them: blurred by its MTF, one sample per block."""
    return decimate_centred(blur(image, gain, ratio, taps), ratio)


def glp_lowpass(image: np.ndarray, gain: float, ratio: int, taps: int = DEFAULT_TAPS) -> np.ndarray:
    """An MS-grid image as it reaches the output through the HS: degraded, then cubic-interpolated back.

    The interpolation is Keys' cubic convolution (a = -0.5) with pixel areas aligned, as the pipeline resamples the
    HS onto the MS grid. Sizes that are not a multiple of the ratio are extended by edge replication and cropped.
    """
    arr = np.asarray(image, dtype=np.float64)
    h, w = arr.shape[-2:]
    ph, pw = -h % ratio, -w % ratio
    if ph or pw:
        arr = np.pad(arr, [(0, 0)] * (arr.ndim - 2) + [(0, ph), (0, pw)], mode="edge")
    low = imresize_bicubic(degrade(arr, gain, ratio, taps), ratio)
    return np.ascontiguousarray(low[..., :h, :w])


def glp_halo(ratio: int, taps: int = DEFAULT_TAPS) -> int:
    """Context for :func:`glp_lowpass` to give a tile's centre exactly: the blur's radius plus the cubic's reach.

    An output pixel interpolates HS samples less than 2 HS pixels (``2 r`` MS pixels) from it, each the blur of MS
    pixels within ``taps // 2`` of its block centre (half a pixel more for even ratios, whose centre falls between
    pixels). Rounded up to a multiple of the ratio so that tiles keep the blocks' phase.
    """
    reach = taps // 2 + 2 * ratio + (1 if ratio % 2 == 0 else 0)
    return -(-reach // ratio) * ratio


# ------------------------------------------------------------------------------------------------------------
# first-pass data at the HS scale


@dataclass
class ScalePair:
    """One piece of the scene at the HS scale: the HS, the MS over the same ground, and which pixels hold data."""

    hs: np.ndarray  # (HS bands, h, w), native, as read (float32)
    ms: np.ndarray  # (MS bands, r h, r w), float64, invalid values replaced by the band mean
    hs_ok: np.ndarray  # (h, w): the HS pixel holds data
    ms_ok: np.ndarray  # (h, w): every MS pixel of its block holds data
    valid: np.ndarray  # (h, w): both hold data and the MTF support lies inside the piece and holds data

    def degraded_ms(self, gain: float, ratio: int) -> np.ndarray:
        return degrade(self.ms, gain, ratio)


def _band_valid(sensor: SensorProfile, image: np.ndarray) -> np.ndarray:
    ok = np.all(np.isfinite(image), axis=0)
    for band, values in zip(sensor.bands, image, strict=True):
        if band.nodata is not None or band.valid_range is not None:
            ok &= band.valid_mask(values)
    return ok


def scale_pairs(sample: SceneSample, hs_sensor: SensorProfile, ms_sensor: SensorProfile, ratio: int,
                method: str, taps: int = DEFAULT_TAPS) -> list[ScalePair]:
    """The first pass's contiguous windows as :class:`ScalePair` s (HS role ``hs``, MS role ``ms``).

    The windows hold both inputs as read, with exact pixel correspondences; an HS pixel counts only when every MS
    pixel under its MTF support holds data and lies inside the window, so that its degraded MS is exact.
    """
    if not sample.windows:
        raise MethodError(f"{method} estimates its statistics at the HS resolution and needs the HS and MS grids "
                          f"nested ({sample.windows_unavailable or 'no contiguous windows in the first pass'})",
                          hint="resample the HS onto a grid nested in the MS grid (e.g. gdalwarp -tap)")
    pairs = []
    radius = taps // 2
    for window in sample.windows:
        factor = window.factor("hs")
        if factor != ratio:
            raise MethodError(f"{method}: the HS grid is {factor} MS pixels per HS pixel in the scene but the method "
                              f"was set up for {ratio}", hint="give the method the scene's grid ratio")
        hs = np.asarray(window.arrays["hs"], dtype=np.float32)
        ms = np.asarray(window.arrays["ms"], dtype=np.float64)
        h, w = hs.shape[1:]
        ms = ms[:, : h * ratio, : w * ratio]
        if ms.shape[1:] != (h * ratio, w * ratio):
            raise MethodError(f"{method}: a first-pass window holds {ms.shape[1:]} MS pixels for {(h, w)} HS pixels "
                              f"at ratio {ratio}")
        bad = ~_band_valid(ms_sensor, ms)
        if bad.any():
            # Invalid MS values must not reach the filter as numbers; the pixels they touch are dropped below.
            fill = np.nanmean(np.where(bad, np.nan, ms), axis=(1, 2)) if (~bad).any() else np.zeros(len(ms))
            ms = np.where(bad[None], np.nan_to_num(fill)[:, None, None], ms)
        # An HS pixel needs its whole MTF support valid and inside the window (outside counts as invalid).
        spread = ndimage.maximum_filter(bad.astype(np.uint8), size=2 * radius + 1, mode="constant", cval=1)
        touched = decimate_centred(spread.astype(np.float64), ratio) > 0
        hs_ok = _band_valid(hs_sensor, hs)
        ms_ok = ~bad.reshape(h, ratio, w, ratio).any(axis=(1, 3))
        pairs.append(ScalePair(hs, ms, hs_ok, ms_ok, hs_ok & ~touched))
    if sum(int(p.valid.sum()) for p in pairs) == 0:
        raise MethodError(f"{method}: no HS pixel of the first pass has valid HS and MS data under its whole MTF "
                          f"support", hint="the scene may be too small or mostly nodata")
    return pairs


def fit_lstsq(target: np.ndarray, regressors: np.ndarray, rcond: float = 1e-8) -> tuple[np.ndarray, float]:
    """Least squares ``target ~ w . regressors + b`` over n samples ((n,) and (k, n)), centred normal equations.

    Nearly collinear regressors (neighbouring HS bands) are handled by truncating singular values below ``rcond``
    of the largest, so that float32 rounding in rank-deficient data cannot be amplified into huge weights.
    """
    x = np.asarray(regressors, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    x_mean, y_mean = x.mean(axis=1), float(y.mean())
    xc, yc = x - x_mean[:, None], y - y_mean
    weights, *_ = np.linalg.lstsq(xc @ xc.T, xc @ yc, rcond=rcond)
    return weights, y_mean - float(weights @ x_mean)


def pooled(pairs: Sequence[ScalePair], images: Sequence[np.ndarray]) -> np.ndarray:
    """The valid HS-scale pixels of one (bands, h, w) image per pair, pooled: (bands, n)."""
    return np.concatenate([image[:, pair.valid] for pair, image in zip(pairs, images, strict=True)], axis=1)


#: Gains at Nyquist searched by :func:`estimate_mtf_gain` (the coarse grid; the best is refined to 0.005).
_GAIN_GRID = np.round(np.arange(0.10, 0.905, 0.05), 3)
#: MS pixels the estimate is computed on, at most (the windows' centres).
_ESTIMATE_PIXELS = 1 << 20


def _centre_crop(pair: ScalePair, ratio: int, hs_pixels: int) -> ScalePair:
    h, w = pair.valid.shape
    if h * w <= hs_pixels:
        return pair
    side = max(8, math.isqrt(hs_pixels))
    r0, c0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
    rows, cols = slice(r0, r0 + side), slice(c0, c0 + side)
    ms = pair.ms[:, rows.start * ratio: rows.stop * ratio, cols.start * ratio: cols.stop * ratio]
    return ScalePair(pair.hs[:, rows, cols], ms, pair.hs_ok[rows, cols], pair.ms_ok[rows, cols],
                     pair.valid[rows, cols])


def estimate_mtf_gain(pairs: Sequence[ScalePair], hs_sensor: SensorProfile, ms_sensor: SensorProfile, ratio: int,
                      threshold: float = OVERLAP_THRESHOLD) -> tuple[float, float]:
    """The MTF gain (at the HS Nyquist frequency) of the blur that best maps the MS onto the HS, and its fit.

    For a candidate gain, each MS band the HS covers is degraded with it and regressed (with a constant) on the HS
    bands it overlaps; the gain explaining the most variance, summed over MS bands, is the blur relating the two
    inputs as they are. It is what the methods need: the HS sensor's MTF relative to the MS one (the reduced-
    resolution protocol blurs both), and it holds where a profile's nominal gain does not describe the files (an HS
    made by area averaging comes out at about 0.68). Returns the gain and the mean explained variance (R^2) there.
    """
    overlap = response_overlap(hs_sensor, ms_sensor)
    used = [m for m in range(overlap.shape[0]) if (overlap[m] > threshold).any()]
    if not used:
        raise MethodError(f"no band of the MS sensor {ms_sensor.key!r} overlaps the spectrum of the HS sensor "
                          f"{hs_sensor.key!r}", hint="check the sensors given for the two inputs")
    budget = _ESTIMATE_PIXELS // (ratio * ratio) // max(1, len(pairs))
    pieces = [_centre_crop(pair, ratio, budget) for pair in pairs]
    if sum(int(p.valid.sum()) for p in pieces) < 16:
        raise MethodError("too few HS pixels with valid data to estimate the HS blur",
                          hint="use a larger scene, or mtf='sensor' to take the sensor profile's gains")
    # The HS side of each regression does not depend on the gain: its moments are formed once.
    moments = []
    for m in used:
        bands = np.flatnonzero(overlap[m] > threshold)
        x = pooled(pieces, [p.hs[bands] for p in pieces]).astype(np.float64)
        xc = x - x.mean(axis=1, keepdims=True)
        moments.append((xc, np.linalg.pinv(xc @ xc.T, rcond=1e-8)))

    def explained(gain: float) -> float:
        degraded = pooled(pieces, [degrade(p.ms[used], gain, ratio) for p in pieces])
        total = 0.0
        for (xc, inverse), y in zip(moments, degraded, strict=True):
            yc = y - y.mean()
            var = float(yc @ yc)
            c = xc @ yc
            total += float(c @ inverse @ c) / var if var > 0 else 0.0
        return total / len(used)

    scores = {float(g): explained(float(g)) for g in _GAIN_GRID}
    best = max(scores, key=scores.__getitem__)
    for step in (0.02, 0.01, 0.005):
        for g in (best - step, best + step):
            if 0.05 <= g <= 0.95 and round(g, 3) not in scores:
                scores[round(g, 3)] = explained(round(g, 3))
        best = max(scores, key=scores.__getitem__)
    return best, scores[best]


MTF_MODES = ("estimate", "sensor")


def check_mtf_mode(mode: str, method: str) -> str:
    if mode not in MTF_MODES:
        raise MethodError(f"{method}: mtf must be one of {', '.join(MTF_MODES)}, got {mode!r}",
                          hint="'estimate' fits the HS blur to the scene, 'sensor' takes the profile's mtf_gain")
    return mode


def scene_mtf_gains(mode: str, pairs: Sequence[ScalePair], hs_sensor: SensorProfile, ms_sensor: SensorProfile,
                    ratio: int, threshold: float = OVERLAP_THRESHOLD) -> tuple[np.ndarray, str]:
    """Each HS band's MTF gain for the first pass's ``mode`` (see :func:`estimate_mtf_gain`), and its source."""
    if mode == "sensor":
        return hs_mtf_gains(hs_sensor)
    gain, r2 = estimate_mtf_gain(pairs, hs_sensor, ms_sensor, ratio, threshold)
    return np.full(len(hs_sensor.bands), gain), f"estimated from the scene: {gain:.3f} (R^2 {r2:.5f})"

