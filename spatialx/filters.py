"""Degradation and interpolation filters of the community pansharpening toolbox (Vivone et al.).

Reduced-resolution scores are only comparable across papers when the degraded inputs are built exactly as
the reference MATLAB toolbox builds them, so these filters follow its conventions to the last detail (kernel
design, border handling, sampling phase) rather than what would be most natural in numpy. Every function is
checked against arrays produced by the toolbox itself (``tests/test_filters.py``).

Arrays are channel-first ``(C, H, W)``; a 2-D ``(H, W)`` array is accepted and a 2-D array comes back. Work
is done in float64 (as MATLAB does) and the result is returned in the input's floating dtype, or float64 for
integer input, so a float32 pipeline stays float32 in memory.

numpy/scipy only: this module must stay importable where torch is not installed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import scipy.sparse
from scipy import ndimage, signal

__all__ = [
    "decimate",
    "degrade_ms",
    "imresize_bicubic",
    "interp23tap",
    "interp23tap_kernel",
    "mtf_filter",
    "mtf_gaussian_sigma",
    "mtf_kernel",
]

DEFAULT_TAPS = 41
"""Kernel size of the toolbox's ``genMTF`` (fixed there, whatever the ratio)."""

_KAISER_BETA = 0.5
"""MATLAB's ``kaiser(N)`` default; the toolbox never passes a beta."""

_INTERP_HALF_POINTS = 6
"""The 23-tap interpolator uses 6 input samples either side of each new one."""


# ------------------------------------------------------------------------------------------------------------
# helpers


def _as_chw(image: np.ndarray) -> tuple[np.ndarray, bool, np.dtype]:
    """View ``image`` as (C, H, W) float64, remembering whether it was 2-D and which dtype to hand back."""
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected a (C, H, W) or (H, W) array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"empty image of shape {arr.shape}")
    if np.iscomplexobj(arr):
        raise ValueError("complex images are not supported")
    out_dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.dtype(np.float64)
    was_2d = arr.ndim == 2
    if was_2d:
        arr = arr[np.newaxis]
    return arr.astype(np.float64, copy=False), was_2d, out_dtype


def _restore(arr: np.ndarray, was_2d: bool, dtype: np.dtype) -> np.ndarray:
    if was_2d:
        arr = arr[0]
    return np.ascontiguousarray(arr, dtype=dtype)


def _integer_ratio(ratio: float, name: str = "ratio") -> int:
    """Sampling ratios are integers in every sensor pair; accept 4.0 but refuse 2.5 rather than guess."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise ValueError(f"{name} must be a positive integer, got {ratio!r}")
    value = float(ratio)
    if not math.isfinite(value) or value < 1 or value != int(value):
        raise ValueError(f"{name} must be a positive integer, got {ratio!r}")
    return int(value)


def _check_taps(taps: int) -> int:
    # Even sizes would need fsamp2's even-size centring conventions, which the toolbox never exercises.
    if isinstance(taps, bool) or int(taps) != taps or taps < 3 or taps % 2 == 0:
        raise ValueError(f"taps must be an odd integer >= 3, got {taps!r}")
    return int(taps)


def _gains_per_band(gains: float | Sequence[float] | np.ndarray, bands: int) -> list[float]:
    """One gain broadcasts to every band (PAN, or sensors quoting a single value); otherwise one per band."""
    g = np.atleast_1d(np.asarray(gains, dtype=np.float64))
    if g.ndim != 1:
        raise ValueError(f"gains must be a scalar or a 1-D sequence, got shape {g.shape}")
    if g.size == 1:
        g = np.repeat(g, bands)
    if g.size != bands:
        raise ValueError(f"got {g.size} MTF gains for {bands} bands")
    return [float(v) for v in g]


# ------------------------------------------------------------------------------------------------------------
# MTF-matched degradation


def mtf_gaussian_sigma(gain: float, ratio: float, taps: int = DEFAULT_TAPS) -> float:
    """Standard deviation (in samples of the ``taps``-point frequency grid) of the toolbox's Gaussian.

    ``genMTF`` builds the Gaussian on the spatial grid of ``fspecial`` and then reuses it, normalised to a
    peak of 1, as a *frequency* response sampled on ``taps`` points over [-1, 1]; this sigma puts the response
    at ``gain`` at the MS Nyquist frequency ``fcut / 2`` with ``fcut = 1 / ratio``. It is expressed in grid
    steps, not in pixels, which is why it depends on ``taps``.
    """
    taps = _check_taps(taps)
    gain = float(gain)
    if not 0.0 < gain < 1.0:
        raise ValueError(f"MTF gain at Nyquist must lie strictly between 0 and 1, got {gain!r}")
    ratio = float(ratio)
    if not (math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"ratio must be positive, got {ratio!r}")
    fcut = 1.0 / ratio
    return math.sqrt(((taps - 1) * fcut / 2.0) ** 2 / (-2.0 * math.log(gain)))


@lru_cache(maxsize=8)
def _huang_window(taps: int) -> np.ndarray:
    """``fwind1``'s circular window: the 1-D Kaiser window swept around the centre (Huang's method).

    ``fwind1`` places the 1-D window on ``taps`` points spanning [-1, 1], reads it back by linear
    interpolation at the radius of every 2-D grid point, and zeroes the corners whose radius exceeds 1.
    """
    w1 = np.kaiser(taps, _KAISER_BETA)
    t = np.linspace(-1.0, 1.0, taps)
    radius = np.hypot(t[:, np.newaxis], t[np.newaxis, :])
    window = np.interp(radius, t, w1)
    window[radius > 1.0] = 0.0
    window.setflags(write=False)
    return window


@lru_cache(maxsize=64)
def _mtf_kernel_cached(gain: float, ratio: float, taps: int) -> np.ndarray:
    sigma = mtf_gaussian_sigma(gain, ratio, taps)
    x = np.arange(taps, dtype=np.float64) - (taps - 1) / 2.0
    gauss = np.exp(-(x[:, np.newaxis] ** 2 + x[np.newaxis, :] ** 2) / (2.0 * sigma * sigma))
    # fspecial zeroes values below eps * max; kept for fidelity although it cannot change the kernel visibly.
    gauss[gauss < np.finfo(np.float64).eps * gauss.max()] = 0.0
    desired = gauss / gauss.max()  # the desired frequency response, 1 at DC
    # fsamp2: the response is sampled with DC at the centre, so move DC to index 0, invert, and move the
    # impulse response's origin back to the centre. For odd sizes fsamp2's rot90 pair reduces to this.
    impulse = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(desired)))
    kernel = np.real(impulse) * _huang_window(taps)
    # No renormalisation: the toolbox's kernels pass ~0.9989 of the signal and reference data reflect that.
    kernel.setflags(write=False)
    return kernel


def mtf_kernel(gain: float, ratio: float, taps: int = DEFAULT_TAPS) -> np.ndarray:
    """The toolbox's ``genMTF`` kernel for one band: a ``(taps, taps)`` float64 array.

    Designed by frequency sampling (``fwind1``): a Gaussian whose response is ``gain`` at the MS Nyquist
    frequency, windowed by a circularly symmetric Kaiser window. Deliberately not renormalised to sum 1, since
    reference data degraded by the toolbox carry its ~0.1 % loss of DC gain.
    """
    return _mtf_kernel_cached(float(gain), float(ratio), _check_taps(taps)).copy()


def _fft_correlate_replicate(band: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """imfilter(band, kernel, 'replicate') for an odd square kernel, via FFT (41x41 direct is too slow)."""
    half = kernel.shape[0] // 2
    padded = np.pad(band, half, mode="edge")
    # Correlation is convolution with the flipped kernel; 'valid' trims the padding back off.
    return signal.fftconvolve(padded, kernel[::-1, ::-1], mode="valid")


def mtf_filter(
    image: np.ndarray,
    gains: float | Sequence[float] | np.ndarray,
    ratio: float,
    taps: int = DEFAULT_TAPS,
) -> np.ndarray:
    """Blur each band with its MTF-matched kernel, replicating borders (``imfilter(..., 'replicate')``).

    This simulates what the sensor would have seen at the coarser resolution, which is what Wald's protocol
    needs; border replication rather than zero padding keeps the image edges from darkening.
    ``gains`` is one value per band, or a single value used for every band.
    """
    arr, was_2d, dtype = _as_chw(image)
    gain_list = _gains_per_band(gains, arr.shape[0])
    out = np.empty_like(arr)
    for b, gain in enumerate(gain_list):
        out[b] = _fft_correlate_replicate(arr[b], _mtf_kernel_cached(gain, float(ratio), _check_taps(taps)))
    return _restore(out, was_2d, dtype)


def decimate(image: np.ndarray, ratio: int) -> np.ndarray:
    """Keep every ``ratio``-th pixel starting at ``ratio // 2`` in both directions.

    The toolbox samples at offset ratio/2 (rows 2, 6, 10, ... for ratio 4, 0-based), i.e. the low-resolution
    pixel sits near the centre of the block it summarises; other offsets shift the degraded image by a pixel
    fraction and spoil every reduced-resolution score.
    """
    r = _integer_ratio(ratio)
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected a (C, H, W) or (H, W) array, got shape {arr.shape}")
    start = r // 2
    return np.ascontiguousarray(arr[..., start::r, start::r])


def decimate_centred(image: np.ndarray, ratio: int) -> np.ndarray:
    """One value per ``ratio x ratio`` block, taken at the block's geometric centre.

    Unlike :func:`decimate` (the toolbox's convention, half a pixel off the centre for even ratios), the result
    sits exactly where a geotransform sharing the high-resolution origin says it does: for an even ratio the
    centre lies between two pixels in each direction, so their mean is taken.
    """
    r = _integer_ratio(ratio)
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected a (C, H, W) or (H, W) array, got shape {arr.shape}")
    if r % 2:
        return np.ascontiguousarray(arr[..., r // 2::r, r // 2::r])
    rows = 0.5 * (arr[..., r // 2 - 1::r, :] + arr[..., r // 2::r, :])
    return np.ascontiguousarray(0.5 * (rows[..., r // 2 - 1::r] + rows[..., r // 2::r]))


def degrade_ms(
    ms: np.ndarray,
    gains: float | Sequence[float] | np.ndarray,
    ratio: int,
    taps: int = DEFAULT_TAPS,
) -> np.ndarray:
    """Wald-protocol MS degradation as the toolbox does it: MTF-matched blur, then decimation by ``ratio``."""
    r = _integer_ratio(ratio)
    return decimate(mtf_filter(ms, gains, r, taps), r)


# ------------------------------------------------------------------------------------------------------------
# 23-tap polynomial interpolator ("EXP")


_INTERP23_SIDE_TAPS = (
    0.305334091185,
    -0.072698593239,
    0.021809577942,
    -0.005192756653,
    0.000807762146,
    -0.000060081482,
)
"""Half-band taps at distances 1, 3, ..., 11 (upsampled grid), as the toolbox prints them.

They are the weights of 12-point Lagrange interpolation at the midpoint of the central pair (nodes at +-1/2,
+-3/2, ..., +-11/2), halved. The toolbox's printed values differ from the exact dyadic ones by up to 1e-10
(0.0726985932390 vs 0.0726985931396, apparently a transcription slip); the toolbox's values are kept since
they are what reference data were made with. ``tests/test_filters.py`` re-derives them from the Lagrange
formula.
"""


@lru_cache(maxsize=1)
def _interp23tap_coefficients() -> np.ndarray:
    """The 23-tap half-band filter (centre 1/2, even-distance taps 0), symmetric."""
    half = np.zeros(2 * _INTERP_HALF_POINTS)  # distances 0 .. 11
    half[0] = 0.5
    half[1::2] = _INTERP23_SIDE_TAPS
    coeffs = np.concatenate([half[:0:-1], half])
    coeffs.setflags(write=False)
    return coeffs


def interp23tap_kernel(scaled: bool = True) -> np.ndarray:
    """The 23 coefficients of the toolbox's interpolator, for callers that need to know its support (tiling).

    With ``scaled=True`` (default) they are the taps actually applied after zero insertion, i.e. the half-band
    filter times 2 (centre 1, sum 2), which restores the gain lost by inserting zeros; ``scaled=False`` gives
    the half-band filter itself (centre 0.5, sum 1). A factor-2 stage reaches 11 upsampled (6 input) samples
    either side, so a tile needs that much halo per stage.
    """
    coeffs = _interp23tap_coefficients()
    return (2.0 * coeffs) if scaled else coeffs.copy()


def _upsample2_axis(arr: np.ndarray, axis: int, first_stage: bool) -> np.ndarray:
    """One factor-2 stage along ``axis``: zero insertion + circular 23-tap filtering, done polyphase.

    Because the centre tap is exactly 1 and every other even-distance tap is 0, the filtered image equals the
    input at the inserted sample positions, and the in-between positions get the 12 odd taps; computing only
    those is the same arithmetic as MATLAB's full filtering, at half the cost. The toolbox puts the samples at
    odd positions (1-based 2:2:end) in the first stage and at even positions (1:2:end) in later ones.
    """
    # c[k]: weight of the two samples at distance 2k + 1 (upsampled grid) from the new position, k = 0..5
    c = 2.0 * _interp23tap_coefficients()[2 * _INTERP_HALF_POINTS - 1 :][1::2]
    weights = np.concatenate([c[::-1], c])  # input offsets -6..5 (first stage) or -5..6 (later stages)
    # A new sample lies between inputs i - 1 and i when samples sit at odd positions (first stage), between
    # inputs i and i + 1 otherwise; correlate1d centres a 12-tap filter on tap 6, origin -1 moves it to tap 5.
    between = ndimage.correlate1d(arr, weights, axis=axis, mode="wrap", origin=0 if first_stage else -1)
    shape = list(arr.shape)
    shape[axis] *= 2
    out = np.empty(shape, dtype=arr.dtype)
    samples = [slice(None)] * arr.ndim
    new = [slice(None)] * arr.ndim
    samples[axis] = slice(1, None, 2) if first_stage else slice(0, None, 2)
    new[axis] = slice(0, None, 2) if first_stage else slice(1, None, 2)
    out[tuple(samples)] = arr
    out[tuple(new)] = between
    return out


def interp23tap(image: np.ndarray, ratio: int) -> np.ndarray:
    """Upsample by ``ratio`` (a power of 2) with the toolbox's 23-tap interpolator (the "EXP" image).

    Most pansharpening methods and networks take this as their MS input, and reference scores assume it, so
    its sampling phase and circular borders match the toolbox exactly. Stages are log2(ratio); the toolbox
    loops ``ratio / 2`` times, which is the same for ratios 2 and 4 (the only ones it is used with) but would
    over-upsample for 8 and above.
    """
    r = _integer_ratio(ratio)
    if r & (r - 1):
        raise ValueError(f"interp23tap needs a power-of-2 ratio, got {ratio!r}")
    arr, was_2d, dtype = _as_chw(image)
    stages = r.bit_length() - 1
    for stage in range(stages):
        first = stage == 0
        arr = _upsample2_axis(arr, axis=1, first_stage=first)  # MATLAB filters down the columns first,
        arr = _upsample2_axis(arr, axis=2, first_stage=first)  # then along the rows
    return _restore(arr, was_2d, dtype)


# ------------------------------------------------------------------------------------------------------------
# MATLAB imresize, bicubic


def _keys_cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5, as in MATLAB's imresize."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    inner = 1.5 * ax3 - 2.5 * ax2 + 1.0
    outer = -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    return np.where(ax <= 1.0, inner, np.where(ax <= 2.0, outer, 0.0))


def _resize_matrix(in_len: int, out_len: int, scale: float, antialiasing: bool) -> scipy.sparse.csr_matrix:
    """Sparse (out_len, in_len) matrix of imresize's weights along one dimension.

    Output pixel ``i`` (1-based) maps to input coordinate ``u = i / scale + (1 - 1 / scale) / 2`` so that
    pixel areas line up; when shrinking with antialiasing the kernel is stretched by ``1 / scale`` and scaled
    by ``scale`` so it low-passes before sampling. Weights are renormalised to sum 1 and indices that fall
    outside are mirrored with the edge pixel repeated (MATLAB's symmetric padding); mirrored taps add onto
    their pixel.
    """
    stretch = antialiasing and scale < 1.0
    width = 4.0 / scale if stretch else 4.0
    i = np.arange(1, out_len + 1, dtype=np.float64)
    u = i / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    n_taps = math.ceil(width) + 2
    idx = left[:, np.newaxis] + np.arange(n_taps)[np.newaxis, :]  # 1-based
    dist = u[:, np.newaxis] - idx
    weights = scale * _keys_cubic(scale * dist) if stretch else _keys_cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # MATLAB: aux = [1:n, n:-1:1]; idx = aux(mod(idx - 1, 2n) + 1)
    period = 2 * in_len
    m = np.mod(idx.astype(np.int64) - 1, period)
    src = np.where(m < in_len, m, period - 1 - m)  # 0-based
    rows = np.repeat(np.arange(out_len), n_taps)
    # csr construction sums duplicate (row, col) entries, which is what mirrored taps need.
    return scipy.sparse.csr_matrix((weights.ravel(), (rows, src.ravel())), shape=(out_len, in_len))


def imresize_bicubic(image: np.ndarray, scale: float, antialiasing: bool = True) -> np.ndarray:
    """MATLAB ``imresize(I, scale)`` with its default bicubic method; output size ``ceil(scale * size)``.

    The toolbox degrades PAN this way (not with the MTF filter) for the reduced-resolution protocol and for
    full-resolution D_s, so the indices only reproduce if the same kernel, antialiasing, pixel-centre mapping
    and mirrored borders are used. Rows are resized before columns, as MATLAB does for equal scales. Unlike
    MATLAB, integer input is not rounded back to integers: the result is float64.
    ``antialiasing=False`` gives MATLAB's ``'Antialiasing', false`` (plain cubic sampling when shrinking).
    """
    scale = float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    arr, was_2d, dtype = _as_chw(image)
    c, h, w = arr.shape
    out_h, out_w = math.ceil(scale * h), math.ceil(scale * w)
    rows = _resize_matrix(h, out_h, scale, antialiasing)
    cols = _resize_matrix(w, out_w, scale, antialiasing)
    out = np.empty((c, out_h, out_w), dtype=np.float64)
    for b in range(c):
        along_rows = rows @ arr[b]  # (out_h, w)
        out[b] = (cols @ along_rows.T).T
    return _restore(out, was_2d, dtype)
