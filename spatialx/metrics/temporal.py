"""Quality indices of spatio-temporal fusion: a predicted fine image against the real fine image of that date.

Pixels are compared only where both images are valid: the caller's ``valid`` mask (e.g. the files' nodata), and
finite values in every band of both images; a pixel invalid in one band is left out of every band, so that all
indices (SAM among them) are computed on the same pixels. ``pixels`` is the number compared.

Per band (``t`` the truth, ``p`` the prediction, over the compared pixels):

* ``RMSE`` = ``sqrt(mean((p - t)^2))``, ``MAE`` = ``mean(|p - t|)``;
* ``bias`` = ``mean(p - t)``: prediction minus truth, negative when the prediction is too low (too cold);
* ``R2``, the coefficient of determination ``1 - SS_res / SS_tot`` (``SS_res = sum((p - t)^2)``,
  ``SS_tot = sum((t - mean(t))^2)``): 1 for a perfect prediction, 0 for predicting the truth's mean, negative
  below; not the square of ``CC``;
* ``CC``, Pearson's correlation coefficient;
* ``SSIM`` (Wang et al. 2004; Gaussian window 11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03), masked: the local means,
  variances and covariance are weighted by the Gaussian window restricted to compared pixels (normalised
  convolution: invalid pixels get weight 0, so their values do not matter), and the SSIM map is averaged over the
  window positions (``'valid'`` mode, as :func:`spatialx.metrics.ssim`) whose centre pixel is compared. With no
  invalid pixel this is exactly :func:`spatialx.metrics.ssim`. The data range is the truth's range over the compared
  pixels (max - min) of each band, unless the caller gives one.

Overall values are the mean over bands of the per-band values (for one band, the band's values), plus:

* ``SAM`` (multi-band only, else ``None``): mean spectral angle in degrees over the compared pixels (pixels where
  either spectrum is zero are left out, as :func:`spatialx.metrics.sam` does);
* ``ERGAS`` = ``(100 / ratio) * sqrt(mean_b((RMSE_b / mean(t_b))^2))``, ``ratio`` the coarse:fine resolution ratio
  as :func:`spatialx.metrics.ergas` takes it (>= 1; the ``h / l`` of the spatio-temporal literature is
  ``1 / ratio``). For spatio-temporal fusion the ratio term is a convention (the prediction is not a sharpened
  coarse image); the default 1 gives the plain relative error ``100 * sqrt(mean_b((RMSE_b / mean_b)^2))``.

An index that is undefined (a constant band for ``R2``/``CC``/``SSIM``, a zero mean for ``ERGAS``) is ``None``; so
is an overall mean over bands when any band's value is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spatialx.metrics.reduced import _chw

from .reduced import _filter_valid, _gaussian_window

__all__ = ["BAND_KEYS", "TEMPORAL_KEYS", "masked_ssim", "temporal_indices"]

#: The overall keys of :func:`temporal_indices` (it adds ``"bands"``, the per-band values).
TEMPORAL_KEYS = ("RMSE", "MAE", "bias", "R2", "CC", "SSIM", "SAM", "ERGAS", "pixels")
#: The keys of each band's values.
BAND_KEYS = ("RMSE", "MAE", "bias", "R2", "CC", "SSIM")


def _mask(truth: np.ndarray, prediction: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    mask = np.isfinite(truth).all(axis=0) & np.isfinite(prediction).all(axis=0)
    if valid is not None:
        v = np.asarray(valid, dtype=bool)
        if v.shape != mask.shape:
            raise ValueError(f"valid mask {v.shape} does not match the images {mask.shape}")
        mask &= v
    return mask


def masked_ssim(truth: np.ndarray, prediction: np.ndarray, valid: np.ndarray | None = None,
                data_range: float | Sequence[float] | None = None, win: int = 11,
                sigma: float = 1.5) -> list[float | None]:
    """Per-band SSIM over the pixels where ``valid`` (and both images are finite); see the module docstring.

    ``data_range`` is one value for every band, one per band, or ``None`` (each band's truth range over the
    compared pixels). A band with no window centre to average, or a zero data range, gives ``None``.
    """
    t, p = _chw(truth, "truth"), _chw(prediction, "prediction")
    if t.shape != p.shape:
        raise ValueError(f"prediction {p.shape} and truth {t.shape} differ")
    mask = _mask(t, p, valid)
    bands, h, w = t.shape
    size = min(win, h, w)
    g = _gaussian_window(size, sigma)
    half = (size - 1) // 2
    centres = mask[half:h - size + 1 + half, half:w - size + 1 + half]
    m = mask.astype(np.float64)
    weight = _filter_valid(m, g)
    if isinstance(data_range, (int, float)) or data_range is None:
        ranges: list[float | None] = [None if data_range is None else float(data_range)] * bands
    else:
        ranges = [float(r) for r in data_range]
        if len(ranges) != bands:
            raise ValueError(f"{len(ranges)} data ranges for {bands} bands")
    out: list[float | None] = []
    for b in range(bands):
        x, y = np.where(mask, t[b], 0.0), np.where(mask, p[b], 0.0)
        peak = ranges[b]
        if peak is None and mask.any():
            peak = float(x[mask].max() - x[mask].min())
        if not centres.any() or not peak:
            out.append(None)
            continue
        c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            mu_x = _filter_valid(m * x, g) / weight
            mu_y = _filter_valid(m * y, g) / weight
            var_x = _filter_valid(m * x * x, g) / weight - mu_x**2
            var_y = _filter_valid(m * y * y, g) / weight - mu_y**2
            cov = _filter_valid(m * x * y, g) / weight - mu_x * mu_y
            smap = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
        out.append(float(smap[centres].mean()))
    return out


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 or not np.isfinite(den) else float(num / den)


def _mean(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))


def temporal_indices(truth: np.ndarray, prediction: np.ndarray, valid: np.ndarray | None = None, *,
                     ratio: float = 1.0, data_range: float | Sequence[float] | None = None,
                     band_names: Sequence[str] | None = None) -> dict[str, Any]:
    """The indices of the module docstring between ``prediction`` and ``truth`` (``(bands, rows, cols)`` or
    ``(rows, cols)``), over the pixels where ``valid`` (``(rows, cols)``, optional) and both images are finite.

    Returns ``{"RMSE", "MAE", "bias", "R2", "CC", "SSIM", "SAM", "ERGAS", "pixels", "bands"}``: the overall values
    (:data:`TEMPORAL_KEYS`) and ``"bands"``, ``{name: {BAND_KEYS...}}`` in band order (``band_names``, default
    ``"band 1"``, ...). Raises ``ValueError`` when no pixel is valid in both images.
    """
    t, p = _chw(truth, "truth"), _chw(prediction, "prediction")
    if t.shape != p.shape:
        raise ValueError(f"prediction {p.shape} and truth {t.shape} differ")
    if not ratio > 0:
        raise ValueError(f"ratio {ratio}: must be positive")
    mask = _mask(t, p, valid)
    n = int(mask.sum())
    if n == 0:
        raise ValueError("no pixel is valid in both images")
    bands = t.shape[0]
    names = list(band_names) if band_names is not None else [f"band {b + 1}" for b in range(bands)]
    if len(names) != bands:
        raise ValueError(f"{len(names)} band names for {bands} bands")
    tv, pv = t[:, mask], p[:, mask]  # (bands, n)
    ssims = masked_ssim(t, p, mask, data_range)
    per_band: dict[str, dict[str, float | None]] = {}
    rel_sq: list[float | None] = []
    for b in range(bands):
        x, y = tv[b], pv[b]
        d = y - x
        mse = float(np.mean(d * d))
        rmse = float(np.sqrt(mse))
        xc, yc = x - x.mean(), y - y.mean()
        # a constant band (exactly: max == min; its centred values may round to tiny non-zeros) has no SS_tot
        ss_tot = float(np.sum(xc * xc)) if x.max() > x.min() else 0.0
        unexplained = _ratio(float(np.sum(d * d)), ss_tot)  # SS_res / SS_tot
        den = float(np.sqrt(ss_tot * float(np.sum(yc * yc)))) if y.max() > y.min() else 0.0
        mu = float(x.mean())
        rel = _ratio(rmse, mu)
        rel_sq.append(None if rel is None else rel * rel)
        per_band[names[b]] = {"RMSE": rmse, "MAE": float(np.mean(np.abs(d))), "bias": float(np.mean(d)),
                              "R2": None if unexplained is None else 1.0 - unexplained,
                              "CC": _ratio(float(np.sum(xc * yc)), den), "SSIM": ssims[b]}
    sam_value = None
    if bands > 1:
        dot = np.sum(tv * pv, axis=0)
        norm = np.sqrt(np.sum(tv * tv, axis=0) * np.sum(pv * pv, axis=0))
        keep = norm != 0
        if keep.any():
            cos = np.clip(dot[keep] / norm[keep], -1.0, 1.0)
            sam_value = float(np.degrees(np.arccos(cos).mean()))
    ergas_value = None if any(v is None for v in rel_sq) else float(100.0 / ratio * np.sqrt(np.mean(rel_sq)))
    overall: dict[str, Any] = {key: _mean([v[key] for v in per_band.values()]) for key in BAND_KEYS}
    overall.update({"SAM": sam_value, "ERGAS": ergas_value, "pixels": n, "bands": per_band})
    return overall
