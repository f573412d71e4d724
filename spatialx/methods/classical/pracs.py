"""Partial replacement adaptive component substitution (PRACS, Choi et al. 2011), as the community toolbox.

With ``LP(x) = imresize(imresize(x, 1/r), r)`` (bicubic down and up) standing for "as seen at the MS resolution":

1. ``I_L = w . [MS, 1]``, ``w`` regressing ``LP(PAN)`` on the upsampled MS bands and a constant;
   ``cc_k = corr(I_L, MS_k)``.
2. Partial replacement: ``P_k = cc_k PAN + (1 - cc_k) MS'_k``, with ``MS'_k`` the band matched to the PAN's mean and
   standard deviation.
3. Band intensity ``I_k = w_k . [MS, 1]``, ``w_k`` regressing ``LP(P_k)`` on the MS bands and a constant.
4. Gains ``g_k = beta corr(I_k, MS_k) std(MS_k) / mean_j std(MS_j)`` with ``beta = 0.95``, and the local instability
   adjustment ``L_k = 1 - |1 - cc_k MS_k / I_k|``.
5. ``F_k = MS_k + g_k L_k (P_k - I_k)``.

All weights, correlations and moments are scene statistics (:meth:`PRACS.fit`); :meth:`PRACS.fuse` is pointwise (no
halo). With a strided sample (large scenes) ``LP`` cannot be applied: the regressions then use the full-resolution
samples (``LP(x) ~ x``), which puts slightly more weight on the bands that correlate with the PAN's fine detail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from spatialx.methods.base import FusionMethod, MethodContext, SceneSample
from spatialx.methods.classical._toolbox import Sample, bicubic_lowpass, combine, corr, regress, std2


class PRACS(FusionMethod):
    name = "pracs"
    roles = ("pan", "ms")
    default_overlap = 0

    def __init__(self, context: MethodContext, beta: float = 0.95, **options: Any):
        super().__init__(context, **options)
        self.beta = float(beta)
        self.cc: np.ndarray | None = None  # (bands,)
        self.match: np.ndarray | None = None  # (bands, 2): MS'_k = a MS_k + b
        self.weights: np.ndarray | None = None  # (bands, bands + 1): w_k
        self.gains: np.ndarray | None = None
        self.estimate = ""

    def fit(self, sample: SceneSample) -> None:
        s = Sample(sample, self.ratio)
        ms_px, pan_px = s.ms_px(), s.pan_px()
        bands = ms_px.shape[0]
        if s.exact:
            pan_low = s.px(bicubic_lowpass(s.pan, self.ratio))
            ms_low = s.px(bicubic_lowpass(s.ms, self.ratio))
            self.estimate = "whole scene (toolbox)"
        else:
            pan_low, ms_low = pan_px, ms_px
            self.estimate = "strided samples (no low-pass)"
        intensity = combine(regress(pan_low, ms_px), ms_px)
        ms_std = np.array([std2(band) for band in ms_px])
        pan_mean, pan_std = float(pan_px.mean()), std2(pan_px)
        cc = np.array([corr(intensity, band) for band in ms_px])
        match = np.zeros((bands, 2))
        weights = np.zeros((bands, bands + 1))
        gains = np.zeros(bands)
        for k in range(bands):
            a = pan_std / ms_std[k] if ms_std[k] > 0 else 0.0
            b = pan_mean - a * float(ms_px[k].mean())
            match[k] = a, b
            # LP is linear and passes constants, so LP(P_k) = cc LP(PAN) + (1 - cc)(a LP(MS_k) + b).
            replaced_low = cc[k] * pan_low + (1.0 - cc[k]) * (a * ms_low[k] + b)
            weights[k] = regress(replaced_low, ms_px)
            band_intensity = combine(weights[k], ms_px)
            gains[k] = self.beta * corr(band_intensity, ms_px[k]) * ms_std[k] / ms_std.mean()
        self.cc, self.match, self.weights, self.gains = cc, match, weights, gains

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.cc is None or self.match is None or self.weights is None or self.gains is None:
            raise RuntimeError("PRACS.fuse called before fit")
        ms = np.asarray(inputs["ms"], dtype=np.float64)
        pan = np.asarray(inputs["pan"], dtype=np.float64)[0]
        out = np.empty(ms.shape, dtype=np.float32)
        for k in range(ms.shape[0]):
            cc = self.cc[k]
            a, b = self.match[k]
            replaced = cc * pan + (1.0 - cc) * (a * ms[k] + b)
            band_intensity = combine(self.weights[k], ms)
            ratio = np.divide(ms[k], band_intensity, out=np.zeros_like(pan), where=band_intensity != 0)
            adjustment = 1.0 - np.abs(1.0 - cc * ratio)
            out[k] = ms[k] + self.gains[k] * adjustment * (replaced - band_intensity)
        return out

    def params(self) -> dict[str, Any]:
        if self.gains is None or self.cc is None:
            return {}
        return {"beta": self.beta, "cc": np.round(self.cc, 6).tolist(), "gains": np.round(self.gains, 6).tolist(),
                "estimated_at": self.estimate}
