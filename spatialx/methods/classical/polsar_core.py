"""Array core of the classical PolSAR fusion methods: a guided filter of an upsampled C3 image by a single-pol
high-resolution intensity, and the PSD projection the interpolation references end with.

All inputs are on the output grid (the LR C3 already interpolated onto it). The functions are tile-invariant:
a tile computed with :func:`halo` pixels of context on each side equals the same pixels of the whole image to
float rounding, because every neighbourhood operation is a box mean whose window is clipped to the image *and*
normalised by the number of valid pixels in it (He et al.'s ``N``), computed from cumulative sums.

Conventions of :func:`guided_c3` (the guided filter of He, Sun and Tang, TPAMI 2013):

* Guide: ``10 log10(intensity)`` (dB). SAR intensity spans several decades and its speckle is multiplicative; in
  dB an edge of a given contrast has the same size anywhere, speckle has a fixed variance (5.6 dB std for one
  look), the filter's ``eps`` has a physical unit (dB^2) and does not depend on the scene's calibration, and a
  gain on the guide (an offset in dB) changes nothing. No per-image normalisation (it would depend on the tile).
* Span: filtered separately, as ``10 log10(span)`` against the dB guide, and brought back to linear power
  (positive by construction, and the filter transfers the guide's edges as a ratio).
* Polarimetric shape: the nine channels of ``C3 / span`` (scale-free; diagonal in [0, 1]) are each guided-filtered
  with the same guide, renormalised to unit trace (the filter is linear and keeps constants, so the trace is 1
  up to rounding already), and multiplied by the filtered span.
* Then :func:`~spatialx.metrics.polsar.psd_project` with ``keep_span=True``: the span of the result is exactly the
  filtered span. ("Span preserved": neither the per-channel filtering nor the projection changes the total
  power that the span filter gave; on a spatially constant C3 the output equals the input whatever the guide.)
"""

from __future__ import annotations

import numpy as np

from spatialx.metrics.polsar import psd_project, span

__all__ = ["DEFAULT_EPS_DB2", "DEFAULT_RADIUS", "box_mean", "guided_c3", "guided_filter", "halo", "project"]

#: Box radius (window ``2r + 1``) of the guided filter, in output pixels.
DEFAULT_RADIUS = 3
#: Regularisation of the guided filter in dB^2 of the guide: local guide variation well above it is transferred,
#: well below it is smoothed.
DEFAULT_EPS_DB2 = 1.0


def halo(radius: int = DEFAULT_RADIUS) -> int:
    """Pixels of context needed on each side of a tile: the guided filter applies box means twice."""
    return 2 * int(radius)


def _box_sum_axis(x: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Sum over ``[i - r, i + r]`` clipped to the array along ``axis``, from a cumulative sum (float64)."""
    n = x.shape[axis]
    c = np.cumsum(x, axis=axis, dtype=np.float64)
    c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
    idx = np.arange(n)
    hi = np.minimum(idx + r + 1, n)
    lo = np.maximum(idx - r, 0)
    return np.take(c, hi, axis=axis) - np.take(c, lo, axis=axis)


def _box_sum(x: np.ndarray, r: int) -> np.ndarray:
    return _box_sum_axis(_box_sum_axis(x, r, -1), r, -2)


def box_mean(x: np.ndarray, r: int, weight: np.ndarray | None = None) -> np.ndarray:
    """Mean of ``x`` (..., H, W) over the ``(2r + 1)^2`` window clipped to the image, counting only pixels where
    ``weight`` (H, W bool) is True (all when None); NaN where the window holds none."""
    if weight is None:
        weight = np.ones(x.shape[-2:], dtype=bool)
    w = weight.astype(np.float64)
    count = _box_sum(w, r)
    total = _box_sum(np.where(weight, x, 0.0), r)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1.0), np.nan)


def _guide_stats(guide: np.ndarray, valid: np.ndarray, r: int, eps: float):
    mean_g = box_mean(guide, r, valid)
    var_g = box_mean(guide * guide, r, valid) - mean_g**2
    defined = np.isfinite(mean_g)
    return mean_g, np.maximum(var_g, 0.0) + eps, defined


def _guided(p: np.ndarray, guide: np.ndarray, valid: np.ndarray, r: int, stats) -> np.ndarray:
    mean_g, denom, defined = stats
    mean_p = box_mean(p, r, valid)
    cov = box_mean(p * guide, r, valid) - mean_g * mean_p
    a = np.where(defined, cov / denom, 0.0)
    b = np.where(defined, mean_p - a * mean_g, 0.0)
    return box_mean(a, r, defined) * guide + box_mean(b, r, defined)


def guided_filter(p: np.ndarray, guide: np.ndarray, radius: int = DEFAULT_RADIUS, eps: float = DEFAULT_EPS_DB2,
                  valid: np.ndarray | None = None) -> np.ndarray:
    """He et al.'s guided filter of ``p`` ((H, W) or (C, H, W)) by ``guide`` (H, W), as given (no scaling),
    float64: ``q = mean(a) * guide + mean(b)`` with ``a = cov(guide, p) / (var(guide) + eps)``,
    ``b = mean(p) - a mean(guide)`` over ``(2 radius + 1)^2`` windows. ``valid`` (H, W bool) leaves pixels out of
    every statistic; windows are clipped to the image. Values at invalid pixels are meaningless."""
    g = np.asarray(guide, dtype=np.float64)
    x = np.asarray(p, dtype=np.float64)
    if valid is None:
        valid = np.isfinite(g) & np.all(np.isfinite(x.reshape(-1, *g.shape)), axis=0)
    g = np.where(valid, g, 0.0)
    x = np.where(valid, x, 0.0)
    stats = _guide_stats(g, valid, int(radius), float(eps))
    if x.ndim == 2:
        return _guided(x, g, valid, int(radius), stats)
    return np.stack([_guided(channel, g, valid, int(radius), stats) for channel in x])


def guided_c3(c3_up: np.ndarray, guide: np.ndarray, radius: int = DEFAULT_RADIUS,
              eps: float = DEFAULT_EPS_DB2) -> np.ndarray:
    """Fuse an upsampled C3 image (9, H, W) with a high-resolution single-pol intensity ``guide`` (H, W, linear
    power, e.g. ``|S_HH|^2``) on the same grid; see the module docstring for the conventions.

    ``eps`` is in dB^2 of the guide. Pixels whose guide is not a positive finite number, or whose C3 is not finite
    or has a non-positive span, are left out of every statistic; there the output is the input C3 projected onto
    the PSD cone (NaN where the input is NaN). The result is PSD, has the dtype of ``c3_up`` when that is a float
    type (else float64), and is tile-invariant with :func:`halo` ``(radius)`` pixels of context.
    """
    c3 = np.asarray(c3_up)
    if c3.ndim != 3 or c3.shape[0] != 9:
        raise ValueError(f"C3 images must be (9, H, W), got shape {c3.shape}")
    g = np.asarray(guide, dtype=np.float64)
    if g.shape != c3.shape[1:]:
        raise ValueError(f"guide shape {g.shape} differs from the C3 image's {c3.shape[1:]}")
    if radius < 0 or eps <= 0:
        raise ValueError(f"need radius >= 0 and eps > 0, got {radius}, {eps}")
    x = c3.astype(np.float64)
    total = span(x)
    valid = np.isfinite(g) & (g > 0) & np.all(np.isfinite(x), axis=0) & np.isfinite(total) & (total > 0)
    out_dtype = c3.dtype if np.issubdtype(c3.dtype, np.floating) else np.float64
    if not valid.any():
        return psd_project(x).astype(out_dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        g_db = np.where(valid, 10.0 * np.log10(np.where(valid, g, 1.0)), 0.0)
        span_db = np.where(valid, 10.0 * np.log10(np.where(valid, total, 1.0)), 0.0)
        shape = np.where(valid, x / np.where(valid, total, 1.0), 0.0)
    r = int(radius)
    stats = _guide_stats(g_db, valid, r, float(eps))
    span_f = 10.0 ** (_guided(span_db, g_db, valid, r, stats) / 10.0)
    shape_f = np.stack([_guided(channel, g_db, valid, r, stats) for channel in shape])
    trace = shape_f[0] + shape_f[5] + shape_f[8]
    with np.errstate(divide="ignore", invalid="ignore"):
        fused = shape_f * (span_f / trace)
    fused = np.where(valid & (trace > 0), fused, x)
    return psd_project(fused, keep_span=True).astype(out_dtype)


def project(c3: np.ndarray) -> np.ndarray:
    """PSD projection keeping the span (:func:`~spatialx.metrics.polsar.psd_project`), for the interpolation
    references (nearest, bilinear, bicubic), whose C3 can leave the cone near edges."""
    return psd_project(c3, keep_span=True)
