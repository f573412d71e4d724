"""Hypersharpening: pansharpening methods applied to every HS band with a synthetic high-resolution band built from
the MS (Selva, Aiazzi, Butera, Chiarantini, Baronti, "Hyper-sharpening: a first approach on SIM-GA data", IEEE
JSTARS 8(6), 2015).

For HS band ``k`` the synthetic band is ``P_k = sum_m w_km MS_m + b_k`` over the MS bands that see HS band ``k``
(:func:`~spatialx.methods.classical._spectral.select_ms_bands`; all of them for HS bands between or beyond the MS
bands). The weights are the least-squares regression of the HS band on those MS bands *at the HS resolution*: the
native HS pixels of the first pass's windows against the MS degraded as the HS sensor records it (HS MTF, one sample
per block, :func:`~spatialx.methods.classical._spectral.degrade`). ``P_k`` then plays the PAN for band ``k``:

- ``gsa`` (Gram-Schmidt adaptive, Aiazzi et al. 2007, component substitution): ``F_k = HS_k + g_k (P_k - I_k)``,
  where ``I_k`` is ``P_k`` as the HS sees it, synthesised from the HS itself: ``I_k = sum_m w_km S_m + b_k`` with
  ``S_m`` the regression of the degraded MS band ``m`` on the HS bands it overlaps (at the HS resolution, with a
  constant). The gain is GSA's ``g_k = cov(HS_k, I_k) / var(I_k)`` over the upsampled HS of the first pass. Like the
  pansharpening GSA this is pointwise: no halo, tiles are exact.
- ``mtf-glp-hpm`` (MTF-matched generalised Laplacian pyramid, high-pass modulation): ``F_k = HS_k P_k / low(P_k)``,
  ``low`` being the HS MTF of band ``k`` at the grid ratio, decimation at the HS pixel centres and cubic interpolation
  back (:func:`~spatialx.methods.classical._spectral.glp_lowpass`: ``P_k`` as it would reach the MS grid through the
  HS). Computed as ``HS_k + m (P_k - low(P_k))`` with the modulation ``m = HS_k / low(P_k)`` held in
  ``[0, max_modulation]``, as the pansharpening version does. The halo covers the blur and the interpolator, tiles
  start on HS pixel edges (``align`` = ratio).

The HS MTF is estimated from the scene unless ``mtf="sensor"`` (see :mod:`~spatialx.methods.classical._spectral`).
``HS_k`` is the HS resampled onto the MS grid (the ``hs`` input). Both methods decimate when fitting, so the HS:MS
grid ratio must be an integer, and the grids nested (the first pass's windows hold both on exact correspondences).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from spatialx.errors import MethodError
from spatialx.methods.base import FusionMethod, MethodContext, SceneSample
from spatialx.methods.classical._spectral import (
    OVERLAP_THRESHOLD,
    ScalePair,
    check_mtf_mode,
    covered_ms_bands,
    fit_lstsq,
    gain_groups,
    glp_halo,
    glp_lowpass,
    hs_mtf_gains,
    hs_ratio,
    pooled,
    response_overlap,
    scale_pairs,
    scene_mtf_gains,
    select_ms_bands,
)

#: HS bands handled at once in :meth:`fuse`: bounds the (bands, rows, cols) temporaries of a tile.
_BAND_CHUNK = 32
#: First-pass pixels GSA's injection gains are estimated from, at most.
_GAIN_SAMPLES = 1 << 20


def _quantiles(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    return {"min": round(float(values.min()), 6), "median": round(float(np.median(values)), 6),
            "max": round(float(values.max()), 6)}


class _Hypersharpening(FusionMethod):
    """Shared: the MS band selection, the HS MTF, and the regression of each HS band on its MS bands."""

    roles = ("hs", "ms")
    default_overlap = 0

    def __init__(self, context: MethodContext, overlap_threshold: float = OVERLAP_THRESHOLD, mtf: str = "estimate",
                 **options: Any):
        super().__init__(context, **options)
        self.hs_sensor = context.sensors["hs"]
        self.ms_sensor = context.sensors["ms"]
        self.r = hs_ratio(context, self.name)
        self.threshold = float(overlap_threshold)
        self.mtf = check_mtf_mode(mtf, self.name)
        # The sensor's gains until the first pass says otherwise (mtf="estimate").
        self.mtf_gains, self.mtf_source = hs_mtf_gains(self.hs_sensor)
        self.groups = gain_groups(self.mtf_gains)
        self.selection = self._selection()
        #: (HS bands, MS bands): ``w_km``, zero for MS bands not selected; and the constants ``b_k``.
        self.weights: np.ndarray | None = None
        self.offsets: np.ndarray | None = None
        self.r2: np.ndarray | None = None

    def _selection(self) -> list[tuple[int, ...]]:
        return select_ms_bands(self.hs_sensor, self.ms_sensor, self.threshold)

    def _check_fitted(self) -> tuple[np.ndarray, np.ndarray]:
        if self.weights is None or self.offsets is None:
            raise RuntimeError(f"{type(self).__name__}.fuse called before fit")
        return self.weights, self.offsets

    def fit(self, sample: SceneSample) -> None:
        pairs = scale_pairs(sample, self.hs_sensor, self.ms_sensor, self.r, self.name)
        self.mtf_gains, self.mtf_source = scene_mtf_gains(self.mtf, pairs, self.hs_sensor, self.ms_sensor, self.r,
                                                          self.threshold)
        self.groups = gain_groups(self.mtf_gains)
        n = sum(int(p.valid.sum()) for p in pairs)
        bands_hs, bands_ms = len(self.hs_sensor.bands), len(self.ms_sensor.bands)
        if n < bands_ms + 3:
            raise MethodError(f"{self.name}: only {n} HS pixels of the first pass have valid data under their whole "
                              f"MTF support, too few to regress {bands_ms} MS bands",
                              hint="use a larger scene (at least a few dozen HS pixels each way)")
        weights = np.zeros((bands_hs, bands_ms))
        offsets = np.zeros(bands_hs)
        r2 = np.zeros(bands_hs)
        for gain, bands in self.groups.items():
            degraded = pooled(pairs, [p.degraded_ms(gain, self.r) for p in pairs])
            for k in bands:
                chosen = list(self.selection[k])
                target = pooled(pairs, [p.hs[k: k + 1] for p in pairs])[0].astype(np.float64)
                w, b = fit_lstsq(target, degraded[chosen])
                weights[k, chosen], offsets[k] = w, b
                residual = target - (w @ degraded[chosen] + b)
                total = float(np.var(target))
                r2[k] = 1.0 - float(np.var(residual)) / total if total > 0 else 0.0
        self.weights, self.offsets, self.r2 = weights, offsets, r2
        self._fit_injection(sample, pairs)

    def _fit_injection(self, sample: SceneSample, pairs: list[ScalePair]) -> None:
        """Statistics of the injection itself (GSA's gains); none for HPM."""

    def params(self) -> dict[str, Any]:
        used = np.zeros(len(self.ms_sensor.bands), dtype=int)
        for chosen in self.selection:
            used[list(chosen)] += 1
        out: dict[str, Any] = {
            "grid_ratio": self.r, "overlap_threshold": self.threshold, "mtf_gains": self.mtf_source,
            "hs_bands_per_ms_band": dict(zip(self.ms_sensor.band_names, used.tolist(), strict=True)),
            "hs_bands_on_all_ms_bands": sum(len(c) == len(self.ms_sensor.bands) for c in self.selection),
            "estimated_at": "HS resolution (first-pass windows)"}
        if self.r2 is not None:
            out["regression_r2"] = _quantiles(self.r2)
        return out


class HyperGSA(_Hypersharpening):
    """GSA hypersharpening: component substitution with one synthetic band and one intensity per HS band."""

    name = "gsa"

    def __init__(self, context: MethodContext, **options: Any):
        self.ms_used: tuple[int, ...] = ()
        super().__init__(context, **options)
        self.hs_inputs = self._hs_inputs()
        #: Per MS band used: the HS bands it is synthesised from, their weights and the constant.
        self.synthesis: list[tuple[np.ndarray, np.ndarray, float]] = []
        self.gains: np.ndarray | None = None

    def _selection(self) -> list[tuple[int, ...]]:
        # Only MS bands the HS spectrum covers can be synthesised into I_k; the others cannot be substituted.
        self.ms_used = covered_ms_bands(self.hs_sensor, self.ms_sensor, self.threshold)
        if not self.ms_used:
            raise MethodError(f"gsa: no band of the MS sensor {self.ms_sensor.key!r} overlaps the spectrum of the HS "
                              f"sensor {self.hs_sensor.key!r}", hint="check the sensors given for the two inputs")
        used = set(self.ms_used)
        return [tuple(m for m in chosen if m in used) or self.ms_used
                for chosen in super()._selection()]

    def _hs_inputs(self) -> list[np.ndarray]:
        overlap = response_overlap(self.hs_sensor, self.ms_sensor)
        return [np.flatnonzero(overlap[m] > self.threshold) for m in self.ms_used]

    def _synthesise(self, hs: np.ndarray) -> np.ndarray:
        """``S_m`` for every MS band used, from HS data (HS bands first, any trailing shape)."""
        out = np.empty((len(self.synthesis), *hs.shape[1:]), dtype=np.float64)
        for i, (bands, w, b) in enumerate(self.synthesis):
            out[i] = np.tensordot(w, hs[bands], axes=1) + b
        return out

    def _fit_injection(self, sample: SceneSample, pairs: list[ScalePair]) -> None:
        weights, offsets = self._check_fitted()
        # The MS as the HS records it, per MS band, with the gain of the HS bands that synthesise it.
        self.synthesis = []
        for m, bands in zip(self.ms_used, self.hs_inputs, strict=True):
            gain = float(np.median(self.mtf_gains[bands]))
            target = pooled(pairs, [p.degraded_ms(gain, self.r)[m: m + 1] for p in pairs])[0]
            regressors = pooled(pairs, [p.hs[bands] for p in pairs]).astype(np.float64)
            w, b = fit_lstsq(target, regressors)
            self.synthesis.append((bands, w, b))
        # GSA's gains, on the upsampled HS samples of the first pass (as the pansharpening GSA uses the upsampled MS);
        # a million samples fix a covariance well enough, and a (bands, pixels) copy of a whole scene would not fit.
        hs_up = np.asarray(sample.inputs["hs"]).reshape(len(weights), -1)
        index = np.flatnonzero(np.asarray(sample.valid).ravel())
        index = index[:: max(1, len(index) // _GAIN_SAMPLES)]
        if len(index) < 3:
            raise MethodError("gsa: too few valid pixels in the first pass to estimate the injection gains")
        synthetic = np.stack([w @ hs_up[bands][:, index].astype(np.float64) + b for bands, w, b in self.synthesis])
        used = list(self.ms_used)
        gains = np.zeros(len(weights))
        for k in range(len(weights)):
            intensity = weights[k, used] @ synthetic + offsets[k]
            band = hs_up[k, index].astype(np.float64)
            var = float(np.var(intensity))
            gains[k] = float(np.mean((band - band.mean()) * (intensity - intensity.mean()))) / var if var > 0 else 0.0
        self.gains = gains

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        weights, _ = self._check_fitted()
        if self.gains is None:
            raise RuntimeError("HyperGSA.fuse called before fit")
        hs = np.asarray(inputs["hs"], dtype=np.float32)
        ms = np.asarray(inputs["ms"], dtype=np.float64)
        used = list(self.ms_used)
        # P_k - I_k = sum_m w_km (MS_m - S_m): the constants cancel, so one detail image per MS band serves all bands.
        detail = (ms[used] - self._synthesise(hs)).astype(np.float32)
        injection = (self.gains[:, None] * weights[:, used]).astype(np.float32)
        return hs + np.tensordot(injection, detail, axes=1)

    def params(self) -> dict[str, Any]:
        out = super().params()
        out["ms_bands_substituted"] = [self.ms_sensor.band_names[m] for m in self.ms_used]
        if self.gains is not None:
            out["injection_gains"] = _quantiles(self.gains)
        return out


class HyperMTFGLPHPM(_Hypersharpening):
    """MTF-GLP-HPM hypersharpening: high-pass modulation of each HS band by its synthetic band."""

    name = "mtf-glp-hpm"

    def __init__(self, context: MethodContext, max_modulation: float | None = 4.0, **options: Any):
        super().__init__(context, **options)
        self.max_modulation = None if max_modulation is None else float(max_modulation)
        self.align = self.r
        self.halo = glp_halo(self.r)

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        weights, offsets = self._check_fitted()
        hs = np.asarray(inputs["hs"], dtype=np.float32)
        ms = np.asarray(inputs["ms"], dtype=np.float64)
        out = np.empty_like(hs)
        for gain, bands in self.groups.items():
            # low(P_k) = sum_m w_km low(MS_m) + b_k: the low-pass is linear and has unit DC gain.
            low_ms = glp_lowpass(ms, gain, self.r).astype(np.float32)
            ms32 = ms.astype(np.float32)
            for start in range(0, len(bands), _BAND_CHUNK):
                chunk = bands[start: start + _BAND_CHUNK]
                w = weights[chunk].astype(np.float32)
                b = offsets[chunk].astype(np.float32)[:, None, None]
                synthetic = np.tensordot(w, ms32, axes=1) + b
                low = np.tensordot(w, low_ms, axes=1) + b
                if self.max_modulation is None:
                    out[chunk] = hs[chunk] * synthetic / (low + np.finfo(np.float32).eps)
                    continue
                modulation = np.divide(hs[chunk], low, out=np.zeros_like(low), where=low > 0)
                np.clip(modulation, 0.0, self.max_modulation, out=modulation)
                out[chunk] = hs[chunk] + modulation * (synthetic - low)
        return out

    def params(self) -> dict[str, Any]:
        return {**super().params(), "max_modulation": self.max_modulation, "halo": self.halo}
