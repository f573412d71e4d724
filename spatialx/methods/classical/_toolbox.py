"""Pieces shared by the classical methods that reproduce the community pansharpening toolbox (Vivone et al.).

The toolbox computes every statistic over the whole image it is given; spatialx computes them in
:meth:`~spatialx.methods.base.FusionMethod.fit` from a :class:`~spatialx.methods.base.SceneSample`. When the sample
holds every pixel (``stride == 1``) the statistics below are the toolbox's, computed on the same filtered images. When
the scene is too large and the sample is a strided set of points, nothing can be filtered: the statistics of a low-pass
PAN are then replaced by those of its *MS-predictable part*, the least-squares prediction of the PAN from the
upsampled MS bands (plus a constant), which is what the low-pass PAN stands for in these methods (the PAN as the MS
would have seen it). Each method's docstring says which of its numbers this affects.

The filters themselves come from :mod:`spatialx.filters`; this module only composes them the way the toolbox does.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from spatialx.errors import MethodError
from spatialx.filters import DEFAULT_TAPS, decimate, imresize_bicubic, interp23tap, mtf_filter
from spatialx.methods.base import SceneSample

#: ``LPfilterGauss``'s fixed gain at the MS Nyquist frequency (the toolbox's generic "PAN low-pass").
LPGAUSS_NYQUIST_GAIN = 0.3


def integer_ratio(ratio: float, method: str) -> int:
    """The resolution ratio as an integer, or a :class:`MethodError` for methods that decimate."""
    value = float(ratio)
    if not math.isfinite(value) or value < 1 or abs(value - round(value)) > 1e-9:
        raise MethodError(f"{method} decimates by the resolution ratio and needs an integer one, got {ratio:g}",
                          hint="pass --ratio with the sensor's integer ratio (e.g. 4)")
    return round(value)


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


# ------------------------------------------------------------------------------------------------------------
# low-pass filters, as the toolbox composes them


@lru_cache(maxsize=4)
def _lpgauss_gain(taps: int) -> float:
    # LPfilterGauss designs its Gaussian with N where genMTF uses N - 1 (sigma = N * fcut / 2 / sqrt(-2 ln G));
    # the same kernel comes out of genMTF's design with the gain G ** ((N - 1) / N) ** 2.
    return LPGAUSS_NYQUIST_GAIN ** (((taps - 1) / taps) ** 2)


def lowpass_gauss(image: np.ndarray, ratio: float, taps: int = DEFAULT_TAPS) -> np.ndarray:
    """The toolbox's ``LPfilterGauss``: one Kaiser-windowed Gaussian (gain 0.3 at Nyquist), replicate borders."""
    return mtf_filter(image, _lpgauss_gain(taps), ratio, taps)


def _upsample(image: np.ndarray, ratio: int) -> np.ndarray:
    if ratio & (ratio - 1) == 0:
        return interp23tap(image, ratio)
    # The 23-tap interpolator exists for powers of 2 only; other ratios get MATLAB's bicubic imresize.
    return imresize_bicubic(image, ratio)


def glp_lowpass(image: np.ndarray, gains, ratio: int, taps: int = DEFAULT_TAPS) -> np.ndarray:
    """The MTF-GLP low-pass: MTF-matched blur, decimation at ``[r//2::r]``, 23-tap interpolation back.

    As the toolbox does it (``MTF``, ``imresize(.., 1/ratio, 'nearest')``, ``interp23tap``). Images whose size is not
    a multiple of the ratio are extended by edge replication at the bottom/right and cropped back.
    """
    arr = np.asarray(image, dtype=np.float64)
    h, w = arr.shape[-2:]
    ph, pw = round_up(h, ratio) - h, round_up(w, ratio) - w
    if ph or pw:
        pad = [(0, 0)] * (arr.ndim - 2) + [(0, ph), (0, pw)]
        arr = np.pad(arr, pad, mode="edge")
    low = _upsample(decimate(mtf_filter(arr, gains, ratio, taps), ratio), ratio)
    return np.ascontiguousarray(low[..., :h, :w])


@lru_cache(maxsize=8)
def glp_halo(ratio: int, taps: int = DEFAULT_TAPS) -> int:
    """Context a tile needs for :func:`glp_lowpass` to be exact: the blur's radius plus the interpolator's reach.

    The interpolator's reach is measured on an impulse (exact zeros outside its support), then the total is rounded
    up to a multiple of the ratio so that tiles keep the decimation phase.
    """
    n = 32
    impulse = np.zeros((n, n))
    impulse[n // 2, n // 2] = 1.0
    up = _upsample(impulse, ratio)
    rows = np.nonzero(np.any(up != 0, axis=1))[0]
    centre = ratio * (n // 2) + ratio // 2
    reach = int(max(centre - rows.min(), rows.max() - centre))
    return round_up(taps // 2 + reach, ratio)


def bicubic_lowpass(image: np.ndarray, ratio: float) -> np.ndarray:
    """``imresize(imresize(I, 1/ratio), ratio)``: bicubic (antialiased) down, bicubic up, cropped to the input."""
    arr = np.asarray(image, dtype=np.float64)
    h, w = arr.shape[-2:]
    up = imresize_bicubic(imresize_bicubic(arr, 1.0 / ratio), ratio)
    if up.shape[-2] < h or up.shape[-1] < w:  # non-integer ratios can come back one pixel short
        pad = [(0, 0)] * (up.ndim - 2) + [(0, max(0, h - up.shape[-2])), (0, max(0, w - up.shape[-1]))]
        up = np.pad(up, pad, mode="edge")
    return np.ascontiguousarray(up[..., :h, :w])


# ------------------------------------------------------------------------------------------------------------
# statistics


def std2(x: np.ndarray) -> float:
    """MATLAB ``std2``: sample standard deviation (N - 1)."""
    return float(np.std(x, ddof=1)) if x.size > 1 else 0.0


def cov(a: np.ndarray, b: np.ndarray) -> float:
    """Sample covariance (N - 1), as MATLAB's ``cov``."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return float(np.dot(a - a.mean(), b - b.mean()) / max(1, a.size - 1))


def corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation (``corr2``); 0 when either input is constant."""
    den = math.sqrt(cov(a, a) * cov(b, b))
    return cov(a, b) / den if den > 0 else 0.0


def regress(target: np.ndarray, bands: np.ndarray, intercept: bool = True) -> np.ndarray:
    """Least-squares weights of ``bands`` (k, n) predicting ``target`` (n,), the constant last when ``intercept``.

    Solved through the (centred) normal equations: millions of samples, a handful of unknowns.
    """
    x = np.asarray(bands, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    if intercept:
        x_mean, y_mean = x.mean(axis=1), float(y.mean())
        x, y = x - x_mean[:, None], y - y_mean
    weights, *_ = np.linalg.lstsq(x @ x.T, x @ y, rcond=None)
    if intercept:
        weights = np.append(weights, y_mean - weights @ x_mean)
    return weights


def combine(weights: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """``sum_k w_k band_k`` (+ the constant when ``weights`` has one more entry than ``bands``)."""
    bands = np.asarray(bands)
    out = np.tensordot(np.asarray(weights[: bands.shape[0]], dtype=np.float64), bands, axes=1)
    if len(weights) > bands.shape[0]:
        out = out + weights[-1]
    return out


class Sample:
    """A :class:`SceneSample` seen as the toolbox sees its inputs: float64 PAN and upsampled MS, plus the mask.

    ``exact`` is true when the sample is every pixel of a scene large enough to filter, so that filtered images (and
    their statistics) can be formed as the toolbox forms them.
    """

    def __init__(self, sample: SceneSample, ratio: float, min_size: int = 0):
        self.pan = np.asarray(sample.inputs["pan"], dtype=np.float64)[0]
        self.ms = np.asarray(sample.inputs["ms"], dtype=np.float64)
        self.valid = np.asarray(sample.valid, dtype=bool)
        self.stride = int(sample.stride)
        self.ratio = ratio
        if int(self.valid.sum()) < self.ms.shape[0] + 2:
            raise MethodError("too few valid pixels in the scene to estimate the method's statistics")
        self.exact = self.stride == 1 and min(self.pan.shape) >= min_size

    def px(self, image: np.ndarray) -> np.ndarray:
        """Valid pixels of an image on the sample grid: (n,) for 2-D, (bands, n) for 3-D."""
        return image[..., self.valid]

    def pan_px(self) -> np.ndarray:
        return self.pan[self.valid]

    def ms_px(self) -> np.ndarray:
        return self.ms[:, self.valid]

    def pan_lowres_proxy(self) -> np.ndarray:
        """For strided samples: the PAN's MS-predictable part at the valid samples (see the module docstring)."""
        pan = self.pan_px()
        return combine(regress(pan, self.ms_px()), self.ms_px())

    def lowres_valid(self) -> np.ndarray:
        """The mask at the toolbox's decimated positions ``[r//2::r]``."""
        return decimate(self.valid, int(self.ratio))
