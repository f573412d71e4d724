"""Gram-Schmidt adaptive (GSA, Aiazzi et al. 2007), as the community toolbox computes it.

The synthetic intensity is the combination of the MS bands that best predicts the PAN *at the MS resolution*: the
(mean-removed) PAN is low-passed with the toolbox's generic Gaussian (``LPfilterGauss``, gain 0.3 at Nyquist) and
decimated at ``[r//2::r]``, and regressed, with a constant, on the MS at its own resolution (the upsampled MS sampled at
the same positions, which is exactly the original MS when it was expanded with the 23-tap interpolator). Each band then
receives the PAN detail ``(PAN - mean) - I0`` with the gain ``cov(MS_b, I0) / var(I0)``, ``I0`` being the intensity
minus its mean, computed on the upsampled MS. The toolbox's final mean equalisation is a no-op (the detail has zero
mean) and is not repeated.

All of these are scene statistics, computed once in :meth:`GSA.fit`; :meth:`GSA.fuse` is pointwise (no halo).
With a strided sample (large scenes) the PAN cannot be filtered: the weights are then regressed on the full-resolution
PAN samples against the upsampled MS samples, which gives slightly different (usually smaller) detail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from spatialx.filters import decimate
from spatialx.methods.base import FusionMethod, SceneSample
from spatialx.methods.classical._toolbox import Sample, cov, lowpass_gauss, regress


class GSA(FusionMethod):
    name = "gsa"
    roles = ("pan", "ms")
    default_overlap = 0

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.alpha: np.ndarray | None = None
        self.gains: np.ndarray | None = None
        self.ms_mean: np.ndarray | None = None
        self.pan_mean = 0.0
        self.estimate = ""

    def fit(self, sample: SceneSample) -> None:
        s = Sample(sample, self.ratio)
        ms_px = s.ms_px()
        self.ms_mean = ms_px.mean(axis=1)
        self.pan_mean = float(s.pan_px().mean())
        r = round(float(self.ratio))
        alpha = None
        if s.exact and abs(float(self.ratio) - r) < 1e-9 and r >= 1:
            low_pan = decimate(lowpass_gauss(s.pan - self.pan_mean, r), r)
            low_ms = decimate(s.ms, r)
            low_valid = s.lowres_valid()
            if low_valid.sum() >= s.ms.shape[0] + 2:
                low_ms_px = low_ms[:, low_valid]
                centred = low_ms_px - low_ms_px.mean(axis=1, keepdims=True)
                alpha = regress(low_pan[low_valid], centred)[:-1]
                self.estimate = "reduced resolution (toolbox)"
        if alpha is None:
            alpha = regress(s.pan_px(), ms_px)[:-1]
            self.estimate = "full-resolution samples"
        intensity = alpha @ (ms_px - self.ms_mean[:, None])
        intensity -= intensity.mean()
        var = cov(intensity, intensity)
        self.gains = np.array([cov(band, intensity) / var if var > 0 else 0.0 for band in ms_px])
        self.alpha = alpha

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.alpha is None or self.gains is None or self.ms_mean is None:
            raise RuntimeError("GSA.fuse called before fit")
        ms = np.asarray(inputs["ms"], dtype=np.float64)
        pan = np.asarray(inputs["pan"], dtype=np.float64)[0]
        centred = ms - self.ms_mean[:, None, None]
        # The intensity's scene mean is zero here (centred MS, no constant), so I0 = alpha . (MS - mean).
        detail = (pan - self.pan_mean) - np.tensordot(self.alpha, centred, axes=1)
        return (ms + self.gains[:, None, None] * detail).astype(np.float32)

    def params(self) -> dict[str, Any]:
        if self.alpha is None or self.gains is None:
            return {}
        return {"alpha": np.round(self.alpha, 6).tolist(), "gains": np.round(self.gains, 6).tolist(),
                "estimated_at": self.estimate}
