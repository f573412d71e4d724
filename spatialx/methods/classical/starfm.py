"""Spatio-temporal fusion as array functions: coarse difference, STARFM and ESTARFM.

The task: predict the fine image (Landsat, 30 m) at a date ``t_p`` from fine/coarse pairs at dates ``t_k`` and the
coarse image (MODIS) at ``t_p``. Every input arrives already on the fine grid (the coarse images are smooth
interpolations of footprint averages), as float arrays (bands, rows, cols) in physical units, NaN where invalid. The
functions here are the algorithms on such arrays; the pipeline's method classes wrap them.

Locality. The pipeline runs them on tiles padded by :func:`halo` pixels. Every output pixel depends only on the inputs
within ``window // 2`` pixels of it and on global statistics passed in as arguments (:func:`global_statistics`,
computed once on a scene sample: the per-band standard deviations that set the similarity thresholds). A window that
leaves the image is cut at its edge, exactly as a tile's window is cut at the tile's edge, so a tile's interior equals
the whole image's result bit for bit: every sum is accumulated per pixel in a fixed order, never by running sums or
integral images (whose rounding depends on where the array starts).

Implementation. :func:`starfm` and :func:`estarfm` are compiled numba kernels, one output row per thread, looping over
the window for each pixel and rejecting a dissimilar neighbour after one comparison; memory stays O(bands x pixels).
The numpy alternative (a loop over the window offsets, each processing the whole image at once) was 3x slower on one
thread even simplified to one pair without the exact-zero rule (200 x 200, window 31: 0.49 s against 0.16 s); a
variant of the kernel that loops over the centres innermost (to let the compiler vectorise) was slower still. On two
cores shared with other jobs (so these are upper bounds): 400 x 400 x 1 band, window 31, STARFM 0.34 s (one pair;
0.73 s with two) and ESTARFM 1.1 s; 512 x 512 x 6 bands, window 51, STARFM 16 s (one pair; the cost grows with
pairs x bands) and ESTARFM 6.3 s. The first call in a fresh environment compiles the kernels (about 15 s), cached
next to this file.

**Coarse difference** (:func:`coarse_difference`): ``F_k + (C_p - C_k)`` per pair, the baseline every method
refines.

**STARFM** (:func:`starfm`; Gao, Masek, Schwaller and Hall, "On the blending of the Landsat and MODIS surface
reflectance: predicting daily Landsat surface reflectance", IEEE TGRS 44(8), 2006). Each band is predicted on its
own, as in the paper. For a centre pixel and each pair ``k``:

- *similar pixels*: neighbours in the window with ``|F_k(x_i) - F_k(x_c)| <= 2 sigma_k / m``, ``sigma_k`` the global
  standard deviation of the fine band at ``t_k`` and ``m`` the number of classes (paper: 4);
- *sample filtering*: a similar pixel is kept when its spectral difference ``S = |F_k - C_k|`` and temporal difference
  ``T = |C_k - C_p|`` are both no larger than the centre's plus the uncertainty: ``S <= max_k S_c,k + sigma_lm`` and
  ``T <= max_k T_c,k + sigma_mm`` with ``sigma_lm = sqrt(sigma_l^2 + sigma_m^2)`` and ``sigma_mm = sqrt(2) sigma_m``,
  ``sigma_l`` and ``sigma_m`` the fine and coarse uncertainties. The paper's ``max`` over the pairs is kept (the
  USDA code, and the imagefusion library after it, take ``min``): with ``max`` and ``<=`` the centre pixel of every
  pair passes its own test, so the candidate set is never empty and the paper's fallback (the centre alone) is
  built in. The paper asks for both conditions (the default); the USDA code accepts either
  (``sample_filter="either"``), which keeps the pure coarse pixels of a class whose change is larger than the
  centre's: on the synthetic land-cover-change scene of the tests it lowered the RMSE from 0.024 to 0.018;
- *weights*: ``C = S T D`` with ``D = 1 + d / A``, ``d`` the distance in pixels and ``A`` the paper's constant,
  by default half the window (as the imagefusion library sets it: ``D`` runs from 1 at the centre to about 2.4 in
  the corners), or the paper's logarithmic form ``C = ln(S B + 1) ln(T B + 1) D`` (``weighting="log"``,
  ``B = log_scale``, the paper's 10000 for reflectance). The product is the default
  because its weights do not depend on the units (scaling S or T scales every ``C`` alike), so a band in kelvin
  needs no other scale factor; the log form tempers the dominance of near-zero differences but its ``B`` must suit
  the units. ``W = (1/C) / sum(1/C)`` over the kept pixels of all pairs together, as the paper combines pairs;
- *prediction*: ``F_p(x_c) = sum W (F_k(x_i) + C_p(x_i) - C_k(x_i))``.

Exact zeros, as the paper states them: if the centre's ``S`` or ``T`` is zero for a pair, the fine and coarse agree
at the centre (or the coarse did not change), and the prediction is that pair's own value at the centre, ``C_p`` or
``F_k`` (the mean over the pairs where this happens). A neighbour with ``C = 0`` otherwise takes the whole weight,
shared equally with the other zero-``C`` neighbours: the limit of inverse weighting. The uncertainty layer is the
weighted standard deviation of the candidate predictions ``F_k + C_p - C_k`` under the weights ``W``: how much the
pixels the prediction averages disagree (zero where a single candidate decides).

**ESTARFM** (:func:`estarfm`; Zhu, Chen, Gao, Chen and Masek, "An enhanced spatial and temporal adaptive reflectance
fusion model for complex heterogeneous regions", RSE 114, 2010), with exactly two pairs ``t_m``, ``t_n``:

- *similar pixels*: within ``2 sigma / m`` of the centre in every band of both fine images (the intersection of the
  two selections; the authors' code requires every band);
- *weights*: ``R_i``, the correlation between the fine and the coarse values of pixel ``i`` (all bands at both dates:
  ``2 x bands`` numbers each), and ``d_i = 1 + distance / (window / 2)``; ``W_i = (1/D_i) / sum(1/D_i)`` with
  ``D_i = (1 - R_i) d_i + 1e-7``, the constant from the authors' code (``R_i = 1`` would divide by zero). With a
  single band the correlation of two pairs of numbers is +-1 (or undefined, taken as 0 as the authors do): every
  pixel whose fine and coarse values moved the same way then weighs alike, whatever its distance;
- *conversion coefficient*: ``V``, the slope of the fine against the coarse values of the similar pixels, both dates
  pooled, by least squares, per band. It is used only when it can be trusted, following the authors' code: at least
  ``min_similar`` similar pixels (the code: more than 5), a coarse spread (standard deviation) of at least ``sqrt(2)
  sigma_m``, a slope significant at ``significance`` (F test, 5 %) and positive; otherwise ``V = 1`` (the STARFM
  assumption that fine and coarse change alike). A trusted slope is clipped at ``max_conversion`` (5, the code's
  bound, where the code resets to 1: a significant steep slope is more likely too steep than wrong in sign);
- *temporal weights*: ``T_k = (1/|sum C_k - sum C_p|) / sum_k(...)``, the sums over the valid pixels of the window,
  per band; when a pair's sum did not change at all it takes the whole weight (both alike: one half each);
- *prediction*: ``F_p = T_m F_m(p) + T_n F_n(p)``, ``F_k(p) = F_k(x_c) + sum_i W_i V (C_p(x_i) - C_k(x_i))``.

Differences from the authors' code: with few similar pixels the code drops the coarse change altogether (it returns
``T_m F_m + T_n F_n``); here the weighted prediction still runs, with ``V = 1`` (the centre is always among its own
similar pixels), so the coarse change is never ignored. The code's repair of predictions outside the data range is
not done (physical units have no fixed range). The uncertainty layer is the standard deviation of the candidate
predictions ``F_k(x_c) + V (C_p(x_i) - C_k(x_i))`` under the weights ``T_k W_i``.

A pixel is valid for ESTARFM only where all five inputs hold data in every band (the correlation uses all of them);
STARFM judges validity per band and per pair, so a pair that is cloudy at the centre is skipped while the others
still predict it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from spatialx.errors import InputMismatchError, MethodError

try:
    from numba import njit as _njit
    from numba import prange

    # cache: compiled code is stored next to this file (or in NUMBA_CACHE_DIR). No fastmath: the sums must keep
    # their order (tiles equal the whole image exactly) and NaN comparisons must stay IEEE. The numpy error model:
    # IEEE division (no zero checks in the loops).
    njit = _njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is a dependency; this keeps the module importable without it
    HAVE_NUMBA = False
    prange = range

    def njit(function):  # type: ignore[no-redef]
        return function

#: The paper's moving window (Gao et al. 2006: 1500 m, 51 Landsat pixels); :func:`window_pixels` converts it.
DEFAULT_WINDOW_M = 1500.0
#: Number of land-cover classes in the similarity threshold ``2 sigma / m`` (both papers: 4).
DEFAULT_CLASSES = 4.0
#: Uncertainty of the fine and coarse values, in reflectance: 0.002, the 0.2 % of the data range that the ESTARFM
#: authors' code assumes (the USDA STARFM code is reported to use 50 for data scaled to 10000, i.e. 0.005). In
#: other units (kelvin) pass values in those units.
DEFAULT_FINE_UNCERTAINTY = 0.002
DEFAULT_COARSE_UNCERTAINTY = 0.002
#: STARFM's logarithmic weighting scale ``B`` (reflectance scaled to 10000).
DEFAULT_LOG_SCALE = 10000.0
#: ESTARFM: fewest similar pixels for which the conversion coefficient is regressed (the authors' code: > 5).
DEFAULT_MIN_SIMILAR = 6
#: ESTARFM: largest conversion coefficient kept (the authors' code's bound).
DEFAULT_MAX_CONVERSION = 5.0
#: ESTARFM: significance level of the regression's F test.
DEFAULT_SIGNIFICANCE = 0.05
#: ESTARFM: added to the combined distance ``(1 - R) d`` (the authors' code), so that ``R = 1`` weighs finitely.
CORRELATION_FLOOR = 1e-7

WEIGHTINGS = ("product", "log")
#: STARFM's sample filter: a candidate passes both bounds (the paper) or either (the USDA reference code).
SAMPLE_FILTERS = ("both", "either")


# ------------------------------------------------------------------------------------------------------------
# helpers


def window_pixels(pixel_size: float, window_m: float = DEFAULT_WINDOW_M) -> int:
    """The odd window size in fine pixels closest to ``window_m`` metres: 1500 m at 30 m gives 51."""
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise MethodError(f"the pixel size must be positive, got {pixel_size:g}")
    if not (math.isfinite(window_m) and window_m > 0):
        raise MethodError(f"the window must be positive, got {window_m:g} m")
    return 2 * math.floor(window_m / pixel_size / 2.0) + 1  # the nearest odd number (ties go up)


def halo(window: int) -> int:
    """Pixels of context a tile needs on each side: half the window (every neighbour a centre reads)."""
    return _check_window(window) // 2


@dataclass(frozen=True)
class TemporalStatistics:
    """Global statistics of the fine images, computed once from a scene sample.

    ``sigma``, ``mean`` and ``count`` are (pairs, bands): the NaN-aware standard deviation (population) and mean of
    each fine image's band over its valid samples, and how many there were. ``sigma`` sets the similarity thresholds
    of :func:`starfm` and :func:`estarfm`.
    """

    sigma: np.ndarray
    mean: np.ndarray
    count: np.ndarray


def global_statistics(fine_images: Sequence[np.ndarray] | np.ndarray,
                      coarse_images: Sequence[np.ndarray] | np.ndarray | None = None) -> TemporalStatistics:
    """The per-band statistics of each fine image (one per pair) from sample arrays shaped (bands, ...).

    The samples may be whole images, windows or strided points, with NaN where invalid. With ``coarse_images`` (the
    pairs' coarse images, same shapes) a fine sample counts only where its pair's coarse sample is valid too, so the
    statistics describe the pixels that pair can use. The thresholds are global on purpose: a standard deviation
    computed per tile would make a tile's result depend on where the tile lies.
    """
    fines = _as_stack(fine_images, "fine")
    coarses = None if coarse_images is None else _as_stack(coarse_images, "coarse")
    if coarses is not None and coarses.shape != fines.shape:
        raise InputMismatchError(f"the coarse samples are {coarses.shape}, the fine ones {fines.shape}",
                                 hint="give one coarse sample per fine sample, of the same shape")
    pairs, bands = fines.shape[:2]
    sigma = np.full((pairs, bands), np.nan)
    mean = np.full((pairs, bands), np.nan)
    count = np.zeros((pairs, bands), dtype=np.int64)
    for k in range(pairs):
        for b in range(bands):
            values = fines[k, b].ravel()
            keep = np.isfinite(values)
            if coarses is not None:
                keep &= np.isfinite(coarses[k, b].ravel())
            values = values[keep]
            count[k, b] = values.size
            if values.size:
                mean[k, b] = values.mean()
                sigma[k, b] = values.std()
    return TemporalStatistics(sigma=sigma, mean=mean, count=count)


def _check_window(window: int) -> int:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1 or window % 2 == 0:
        raise MethodError(f"the window must be an odd number of pixels, got {window!r}",
                          hint="e.g. window_pixels(30) = 51 for the paper's 1500 m at 30 m")
    return int(window)


def _as_stack(images: Sequence[np.ndarray] | np.ndarray, what: str) -> np.ndarray:
    """(pairs, bands, ...) float64 from a list of (bands, ...) arrays, one such array (a single pair), or a 4-D
    (pairs, bands, rows, cols) stack."""
    if isinstance(images, np.ndarray):
        if images.ndim not in (2, 3, 4):
            raise InputMismatchError(f"the {what} images must be (bands, rows, cols), got shape {images.shape}")
        array = images if images.ndim == 4 else images[None]
    else:
        items = [np.asarray(image, dtype=np.float64) for image in images]
        if not items:
            raise InputMismatchError(f"no {what} image given", hint="give at least one fine/coarse pair")
        shapes = {item.shape for item in items}
        if len(shapes) != 1:
            raise InputMismatchError(f"the {what} images differ in shape: {sorted(shapes)}")
        if items[0].ndim < 2:
            raise InputMismatchError(f"the {what} images must be (bands, rows, cols), got shape {items[0].shape}")
        array = np.stack(items)
    return np.ascontiguousarray(array, dtype=np.float64)


def _inputs(fine, coarse, coarse_target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fines = _as_stack(fine, "fine")
    coarses = _as_stack(coarse, "coarse")
    target = np.ascontiguousarray(coarse_target, dtype=np.float64)
    if fines.ndim != 4:
        raise InputMismatchError(f"the fine images must be (bands, rows, cols), got {fines.shape[1:]}")
    if coarses.shape != fines.shape:
        raise InputMismatchError(f"{coarses.shape[0]} coarse image(s) {coarses.shape[1:]} for {fines.shape[0]} fine "
                                 f"image(s) {fines.shape[1:]}", hint="give one coarse image per fine image, same grid")
    if target.shape != fines.shape[1:]:
        raise InputMismatchError(f"the coarse target is {target.shape}, the pairs {fines.shape[1:]}",
                                 hint="resample every input onto the fine grid first")
    return fines, coarses, target


def _thresholds(sigma, pairs: int, bands: int, classes: float) -> np.ndarray:
    """The similarity thresholds ``2 sigma / m`` as (pairs, bands)."""
    if not (math.isfinite(classes) and classes > 0):
        raise MethodError(f"the number of classes must be positive, got {classes:g}")
    values = np.asarray(sigma, dtype=np.float64)
    if values.shape == (bands,):
        values = np.broadcast_to(values, (pairs, bands))
    if values.shape != (pairs, bands):
        raise InputMismatchError(f"sigma is {values.shape}, expected ({bands},) or ({pairs}, {bands})",
                                 hint="pass global_statistics(...).sigma for these pairs")
    if np.any(values < 0):
        raise MethodError("sigma must be non-negative")
    return np.ascontiguousarray(values * 2.0 / classes)


def _non_negative(value: float, name: str) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise MethodError(f"{name} must be a non-negative number, got {value:g}")
    return float(value)


def _distances(half: int, scale: float) -> np.ndarray:
    """``1 + d / A`` for every offset of the window, (2 half + 1, 2 half + 1)."""
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    return 1.0 + np.sqrt(offsets[:, None] ** 2 + offsets[None, :] ** 2) / scale


def _distance_scale(window: int, distance_scale: float | None) -> float:
    if distance_scale is None:
        return window / 2.0
    if not (math.isfinite(distance_scale) and distance_scale > 0):
        raise MethodError(f"the distance scale must be positive, got {distance_scale:g}")
    return float(distance_scale)


def _need_numba() -> None:
    if not HAVE_NUMBA:  # pragma: no cover
        raise MethodError("STARFM and ESTARFM need numba, which does not import here", hint="pip install numba")


# ------------------------------------------------------------------------------------------------------------
# coarse difference


def coarse_difference(fine: Sequence[np.ndarray] | np.ndarray, coarse: Sequence[np.ndarray] | np.ndarray,
                      coarse_target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``F_k + (C_p - C_k)`` for each pair, combined; returns (prediction, uncertainty), both (bands, rows, cols).

    With several pairs the per-pair predictions are averaged per pixel and band with weights ``1 / |C_p - C_k|``:
    the pair whose coarse image changed least since its date needs the smallest correction, which is ESTARFM's
    temporal weighting taken at the pixel instead of over a window (the coarse images are smooth interpolations of
    footprint averages, so the per-pixel change already describes a footprint). A pair whose coarse value did not
    change at all takes the whole weight (shared with any other such pair). No date is needed, and the result is
    pointwise: no halo. Pairs with NaN at a pixel are left out; NaN where none is left. The uncertainty is the
    weighted standard deviation of the per-pair predictions (zero with a single pair).
    """
    fines, coarses, target = _inputs(fine, coarse, coarse_target)
    if fines.shape[0] == 1:  # taken as is, not through weights of one (whose rounding would move it)
        prediction = fines[0] + (target - coarses[0])
        return prediction.astype(np.float32), np.where(np.isfinite(prediction), 0.0, np.nan).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        candidates = fines + (target[None] - coarses)
        valid = np.isfinite(candidates)
        change = np.abs(target[None] - coarses)
        zero = valid & (change == 0)
        weights = np.where(zero.any(axis=0, keepdims=True), zero, np.where(valid, 1.0 / change, 0.0))
        candidates = np.where(valid, candidates, 0.0)
        total = weights.sum(axis=0)
        prediction = (weights * candidates).sum(axis=0) / total
        spread = (weights * (candidates - prediction[None]) ** 2).sum(axis=0) / total
    prediction[total == 0] = np.nan
    return prediction.astype(np.float32), np.sqrt(np.maximum(spread, 0.0)).astype(np.float32)


# ------------------------------------------------------------------------------------------------------------
# STARFM


@njit
def _starfm_kernel(fine, coarse, target, thresholds, spectral_margin, temporal_margin, distances, log_form,
                   log_scale, either, out, spread):  # pragma: no cover - compiled
    pairs, bands, rows, cols = fine.shape
    half = distances.shape[0] // 2
    for r in prange(rows):
        r0 = max(r - half, 0)
        r1 = min(r + half + 1, rows)
        for c in range(cols):
            c0 = max(c - half, 0)
            c1 = min(c + half + 1, cols)
            for b in range(bands):
                ref = target[b, r, c]
                out[b, r, c] = np.nan
                spread[b, r, c] = np.nan
                if not np.isfinite(ref):
                    continue
                # The centre of each pair: validity, the filter's bounds, and the paper's exact-zero rule.
                n_valid = 0
                s_max = 0.0
                t_max = 0.0
                n_zero = 0
                zero_value = 0.0
                zero_sum = 0.0
                zero_sq = 0.0
                for k in range(pairs):
                    f = fine[k, b, r, c]
                    g = coarse[k, b, r, c]
                    if not (np.isfinite(f) and np.isfinite(g)):
                        continue
                    n_valid += 1
                    s = abs(f - g)
                    t = abs(g - ref)
                    s_max = max(s_max, s)
                    t_max = max(t_max, t)
                    if s == 0.0 or t == 0.0:
                        # The pair's own value at the centre, taken exactly: F_k when the coarse did not change,
                        # else C_p (then F_k = C_k).
                        value = f if t == 0.0 else ref
                        n_zero += 1
                        zero_value += value
                        zero_sum += value - ref
                        zero_sq += (value - ref) ** 2
                if n_valid == 0:
                    continue
                if n_zero > 0:
                    mean = zero_sum / n_zero
                    out[b, r, c] = zero_value / n_zero
                    spread[b, r, c] = math.sqrt(max(zero_sq / n_zero - mean * mean, 0.0))
                    continue
                s_limit = s_max + spectral_margin
                t_limit = t_max + temporal_margin
                w_sum = 0.0
                wq_sum = 0.0
                wqq_sum = 0.0
                n_zero = 0
                zero_sum = 0.0
                zero_sq = 0.0
                for k in range(pairs):
                    fc = fine[k, b, r, c]
                    if not (np.isfinite(fc) and np.isfinite(coarse[k, b, r, c])):
                        continue
                    threshold = thresholds[k, b]
                    for y in range(r0, r1):
                        f_row = fine[k, b, y]
                        g_row = coarse[k, b, y]
                        p_row = target[b, y]
                        d_row = distances[y - r + half]
                        for x in range(c0, c1):
                            f = f_row[x]
                            if not (abs(f - fc) <= threshold or (y == r and x == c)):  # NaN f fails here
                                continue
                            g = g_row[x]
                            p = p_row[x]
                            if not (np.isfinite(g) and np.isfinite(p)):
                                continue
                            s = abs(f - g)
                            t = abs(g - p)
                            if either:
                                if not (s <= s_limit or t <= t_limit):
                                    continue
                            elif not (s <= s_limit and t <= t_limit):
                                continue
                            d = d_row[x - c + half]
                            if log_form:
                                weight = math.log1p(s * log_scale) * math.log1p(t * log_scale) * d
                            else:
                                weight = s * t * d
                            q = f + p - g - ref
                            if weight == 0.0:
                                n_zero += 1
                                zero_sum += q
                                zero_sq += q * q
                            else:
                                w = 1.0 / weight
                                w_sum += w
                                wq_sum += w * q
                                wqq_sum += w * q * q
                if n_zero > 0:
                    mean = zero_sum / n_zero
                    var = zero_sq / n_zero - mean * mean
                elif w_sum > 0.0:
                    mean = wq_sum / w_sum
                    var = wqq_sum / w_sum - mean * mean
                else:
                    continue
                out[b, r, c] = ref + mean
                spread[b, r, c] = math.sqrt(max(var, 0.0))


def starfm(fine: Sequence[np.ndarray] | np.ndarray, coarse: Sequence[np.ndarray] | np.ndarray,
           coarse_target: np.ndarray, sigma: np.ndarray, *, window: int, classes: float = DEFAULT_CLASSES,
           fine_uncertainty: float = DEFAULT_FINE_UNCERTAINTY,
           coarse_uncertainty: float = DEFAULT_COARSE_UNCERTAINTY, weighting: str = "product",
           log_scale: float = DEFAULT_LOG_SCALE, distance_scale: float | None = None,
           sample_filter: str = "both") -> tuple[np.ndarray, np.ndarray]:
    """STARFM (Gao et al. 2006) prediction of the fine image at the target date; see the module docstring.

    ``fine`` and ``coarse``: the pairs, a list of (bands, rows, cols) arrays (or one array for a single pair, or a
    (pairs, bands, rows, cols) stack); ``coarse_target``: (bands, rows, cols); all on the fine grid, NaN where
    invalid. ``sigma``: the global standard deviation of each fine band, (bands,) or (pairs, bands)
    (:func:`global_statistics`). ``window``: odd size in fine pixels (:func:`window_pixels`). ``classes``: ``m`` of
    the similarity threshold ``2 sigma / m``. ``fine_uncertainty`` and ``coarse_uncertainty``: ``sigma_l`` and
    ``sigma_m`` of the sample filter, in the data's units. ``weighting``: ``"product"`` (``C = S T D``) or ``"log"``
    (``ln(S B + 1) ln(T B + 1) D``, ``B = log_scale``). ``distance_scale``: ``A`` in ``D = 1 + d / A`` (default
    ``window / 2``). ``sample_filter``: a candidate must pass both bounds of the sample filter (``"both"``, the
    paper) or either (``"either"``, the USDA code).

    Returns (prediction, uncertainty), float32 (bands, rows, cols); NaN where the target coarse value is invalid or
    no pair is valid at the centre.
    """
    _need_numba()
    window = _check_window(window)
    if weighting not in WEIGHTINGS:
        raise MethodError(f"unknown STARFM weighting {weighting!r}", hint=f"choose one of: {', '.join(WEIGHTINGS)}")
    if sample_filter not in SAMPLE_FILTERS:
        raise MethodError(f"unknown STARFM sample filter {sample_filter!r}",
                          hint=f"choose one of: {', '.join(SAMPLE_FILTERS)}")
    if not (math.isfinite(log_scale) and log_scale > 0):
        raise MethodError(f"the log weighting scale must be positive, got {log_scale:g}")
    sigma_l = _non_negative(fine_uncertainty, "the fine uncertainty")
    sigma_m = _non_negative(coarse_uncertainty, "the coarse uncertainty")
    fines, coarses, target = _inputs(fine, coarse, coarse_target)
    pairs, bands = fines.shape[:2]
    thresholds = _thresholds(sigma, pairs, bands, classes)
    distances = _distances(window // 2, _distance_scale(window, distance_scale))
    out = np.empty(target.shape, dtype=np.float64)
    spread = np.empty(target.shape, dtype=np.float64)
    _starfm_kernel(fines, coarses, target, thresholds, math.hypot(sigma_l, sigma_m), math.sqrt(2.0) * sigma_m,
                   distances, weighting == "log", float(log_scale), sample_filter == "either", out, spread)
    return out.astype(np.float32), spread.astype(np.float32)


# ------------------------------------------------------------------------------------------------------------
# ESTARFM


@njit
def _estarfm_pixels(fine, coarse, target, valid, correlation):  # pragma: no cover - compiled
    """Per pixel: valid in all five inputs and every band; the fine/coarse correlation over 2 x bands values."""
    pairs, bands, rows, cols = fine.shape
    n = pairs * bands
    for r in prange(rows):
        for c in range(cols):
            ok = True
            for b in range(bands):
                if not np.isfinite(target[b, r, c]):
                    ok = False
                for k in range(pairs):
                    if not (np.isfinite(fine[k, b, r, c]) and np.isfinite(coarse[k, b, r, c])):
                        ok = False
            valid[r, c] = ok
            correlation[r, c] = 0.0
            if not ok:
                continue
            mf = 0.0
            mc = 0.0
            for k in range(pairs):
                for b in range(bands):
                    mf += fine[k, b, r, c]
                    mc += coarse[k, b, r, c]
            mf /= n
            mc /= n
            sff = 0.0
            scc = 0.0
            sfc = 0.0
            for k in range(pairs):
                for b in range(bands):
                    df = fine[k, b, r, c] - mf
                    dc = coarse[k, b, r, c] - mc
                    sff += df * df
                    scc += dc * dc
                    sfc += df * dc
            if sff > 0.0 and scc > 0.0:
                correlation[r, c] = min(max(sfc / math.sqrt(sff * scc), -1.0), 1.0)


@njit
def _box_sums(values, valid, half, out):  # pragma: no cover - compiled
    """Sums of ``values`` (n, rows, cols) over the valid pixels of each window, rows first then columns, each sum
    taken in a fixed order (no running sums), so that a tile's interior equals the whole image's."""
    n, rows, cols = values.shape
    across = np.zeros((n, rows, cols))
    for r in prange(rows):
        for c in range(cols):
            for x in range(max(c - half, 0), min(c + half + 1, cols)):
                if valid[r, x]:
                    for i in range(n):
                        across[i, r, c] += values[i, r, x]
    for r in prange(rows):
        for i in range(n):
            for c in range(cols):
                out[i, r, c] = 0.0
        for y in range(max(r - half, 0), min(r + half + 1, rows)):
            for i in range(n):
                for c in range(cols):
                    out[i, r, c] += across[i, y, c]


@njit
def _estarfm_kernel(fine, coarse, target, valid, correlation, sums, thresholds, distances, min_similar,
                    spread_min, f_critical, max_conversion, out, spread):  # pragma: no cover - compiled
    """``fine`` and ``coarse`` are (rows, cols, 2, bands) and ``target`` (rows, cols, bands): a pixel's values
    side by side, since every similar pixel is read in all bands of all five images."""
    rows, cols, _, bands = fine.shape
    half = distances.shape[0] // 2
    for r in prange(rows):
        r0 = max(r - half, 0)
        r1 = min(r + half + 1, rows)
        # per band: sum w dm, sum w dm^2, sum w dn, sum w dn^2, regression sums x, y, xx, xy, yy (both dates pooled,
        # shifted by the centre's values of the first date to keep the sums small)
        acc = np.zeros((bands, 9))
        for c in range(cols):
            for b in range(bands):
                out[b, r, c] = np.nan
                spread[b, r, c] = np.nan
            if not valid[r, c]:
                continue
            c0 = max(c - half, 0)
            c1 = min(c + half + 1, cols)
            acc[:] = 0.0
            w_sum = 0.0
            count = 0
            for y in range(r0, r1):
                d_row = distances[y - r + half]
                for x in range(c0, c1):
                    if not valid[y, x]:
                        continue
                    similar = True
                    for k in range(2):
                        for b in range(bands):
                            if not abs(fine[y, x, k, b] - fine[r, c, k, b]) <= thresholds[k, b]:
                                similar = False
                                break
                        if not similar:
                            break
                    if not similar and not (y == r and x == c):
                        continue
                    count += 1
                    combined = max(1.0 - correlation[y, x], 0.0) * d_row[x - c + half]
                    w = 1.0 / (combined + CORRELATION_FLOOR)
                    w_sum += w
                    for b in range(bands):
                        p = target[y, x, b]
                        cm = coarse[y, x, 0, b]
                        cn = coarse[y, x, 1, b]
                        dm = p - cm
                        dn = p - cn
                        x0 = coarse[r, c, 0, b]
                        y0 = fine[r, c, 0, b]
                        xm = cm - x0
                        ym = fine[y, x, 0, b] - y0
                        xn = cn - x0
                        yn = fine[y, x, 1, b] - y0
                        a = acc[b]
                        a[0] += w * dm
                        a[1] += w * dm * dm
                        a[2] += w * dn
                        a[3] += w * dn * dn
                        a[4] += xm + xn
                        a[5] += ym + yn
                        a[6] += xm * xm + xn * xn
                        a[7] += xm * ym + xn * yn
                        a[8] += ym * ym + yn * yn
            n = 2 * count
            for b in range(bands):
                a = acc[b]
                conversion = 1.0
                if count >= min_similar:
                    sxx = a[6] - a[4] * a[4] / n
                    sxy = a[7] - a[4] * a[5] / n
                    syy = a[8] - a[5] * a[5] / n
                    if sxx > 0.0 and syy > 0.0 and math.sqrt(sxx / (n - 1)) >= spread_min:
                        slope = sxy / sxx
                        r2 = min(sxy * sxy / (sxx * syy), 1.0)
                        f_stat = (n - 2) * r2 / (1.0 - r2) if r2 < 1.0 else np.inf
                        if slope > 0.0 and f_stat >= f_critical[n]:
                            conversion = min(slope, max_conversion)
                change_m = abs(sums[b, r, c] - sums[2 * bands + b, r, c])
                change_n = abs(sums[bands + b, r, c] - sums[2 * bands + b, r, c])
                if change_m == 0.0 and change_n == 0.0:
                    t_m = 0.5
                elif change_m == 0.0:
                    t_m = 1.0
                elif change_n == 0.0:
                    t_m = 0.0
                else:
                    t_m = (1.0 / change_m) / (1.0 / change_m + 1.0 / change_n)
                t_n = 1.0 - t_m
                mean_m = a[0] / w_sum
                mean_n = a[2] / w_sum
                pred_m = fine[r, c, 0, b] + conversion * mean_m
                pred_n = fine[r, c, 1, b] + conversion * mean_n
                pred = t_m * pred_m + t_n * pred_n
                var_m = max(a[1] / w_sum - mean_m * mean_m, 0.0)
                var_n = max(a[3] / w_sum - mean_n * mean_n, 0.0)
                var = (t_m * ((pred_m - pred) ** 2 + conversion * conversion * var_m)
                       + t_n * ((pred_n - pred) ** 2 + conversion * conversion * var_n))
                out[b, r, c] = pred
                spread[b, r, c] = math.sqrt(var)


@lru_cache(maxsize=8)
def _f_critical(window: int, significance: float) -> np.ndarray:
    """The F(1, n - 2) critical values for n = 0 .. 2 window^2 pooled samples (inf below 3)."""
    from scipy.stats import f as f_distribution

    n = np.arange(2 * window * window + 1)
    table = np.full(n.shape, np.inf)
    table[3:] = f_distribution.isf(significance, 1, n[3:] - 2)
    table.flags.writeable = False
    return table


def estarfm(fine: Sequence[np.ndarray] | np.ndarray, coarse: Sequence[np.ndarray] | np.ndarray,
            coarse_target: np.ndarray, sigma: np.ndarray, *, window: int, classes: float = DEFAULT_CLASSES,
            coarse_uncertainty: float = DEFAULT_COARSE_UNCERTAINTY, min_similar: int = DEFAULT_MIN_SIMILAR,
            max_conversion: float = DEFAULT_MAX_CONVERSION, significance: float = DEFAULT_SIGNIFICANCE,
            distance_scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ESTARFM (Zhu et al. 2010) prediction from exactly two pairs; see the module docstring.

    Arguments as for :func:`starfm`. ``coarse_uncertainty`` (``sigma_m``) sets the smallest coarse spread,
    ``sqrt(2) sigma_m``, over which the conversion coefficient is regressed; ``min_similar``, ``significance`` and
    ``max_conversion`` are the regression's other guards.

    Returns (prediction, uncertainty), float32 (bands, rows, cols); NaN where any input is invalid at the pixel.
    """
    _need_numba()
    window = _check_window(window)
    fines, coarses, target = _inputs(fine, coarse, coarse_target)
    if fines.shape[0] != 2:
        raise InputMismatchError(f"ESTARFM takes exactly two fine/coarse pairs, got {fines.shape[0]}",
                                 hint="use starfm for one pair or more than two")
    sigma_m = _non_negative(coarse_uncertainty, "the coarse uncertainty")
    if not (0 < significance < 1):
        raise MethodError(f"the significance level must lie in (0, 1), got {significance:g}")
    if isinstance(min_similar, bool) or not isinstance(min_similar, (int, np.integer)) or min_similar < 1:
        raise MethodError(f"min_similar must be a positive integer, got {min_similar!r}")
    if not (math.isfinite(max_conversion) and max_conversion > 0):
        raise MethodError(f"the largest conversion coefficient must be positive, got {max_conversion:g}")
    bands, rows, cols = target.shape
    thresholds = _thresholds(sigma, 2, bands, classes)
    distances = _distances(window // 2, _distance_scale(window, distance_scale))
    valid = np.empty((rows, cols), dtype=np.bool_)
    correlation = np.empty((rows, cols), dtype=np.float64)
    _estarfm_pixels(fines, coarses, target, valid, correlation)
    stacked = np.concatenate([coarses[0], coarses[1], target])
    stacked = np.where(valid[None], stacked, 0.0)
    sums = np.empty_like(stacked)
    _box_sums(stacked, valid, window // 2, sums)
    out = np.empty(target.shape, dtype=np.float64)
    spread = np.empty(target.shape, dtype=np.float64)
    # a pixel's values side by side: (rows, cols, pairs, bands) and (rows, cols, bands)
    interleaved = (np.ascontiguousarray(fines.transpose(2, 3, 0, 1)),
                   np.ascontiguousarray(coarses.transpose(2, 3, 0, 1)), np.ascontiguousarray(target.transpose(1, 2, 0)))
    _estarfm_kernel(*interleaved, valid, correlation, sums, thresholds, distances, int(min_similar),
                    math.sqrt(2.0) * sigma_m, _f_critical(window, float(significance)), float(max_conversion),
                    out, spread)
    return out.astype(np.float32), spread.astype(np.float32)
