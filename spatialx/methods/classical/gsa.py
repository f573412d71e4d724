"""Gram-Schmidt adaptive (GSA, Aiazzi et al. 2007).

The synthetic intensity is the least-squares combination of the MS bands (plus a constant) that best predicts the
PAN, fitted on the whole scene; each band receives the PAN detail (PAN - intensity) with gain cov(MS_b, I) / var(I).
All of these are scene statistics, so they come from the first pass and every tile uses the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from spatialx.errors import MethodError
from spatialx.methods.base import FusionMethod, SceneSample


class GSA(FusionMethod):
    name = "gsa"
    tasks = ("pansharpen",)
    default_overlap = 0

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.alpha: np.ndarray | None = None
        self.gains: np.ndarray | None = None
        self.means: dict[str, Any] = {}

    def fit(self, sample: SceneSample) -> None:
        ms = sample.valid_pixels("ms").astype(np.float64)
        pan = sample.valid_pixels("pan")[0].astype(np.float64)
        if ms.shape[1] < ms.shape[0] + 2:
            raise MethodError("gsa: too few valid pixels to fit the intensity regression")
        ms_mean, pan_mean = ms.mean(axis=1), pan.mean()
        design = np.vstack([ms - ms_mean[:, None], np.ones(ms.shape[1])])
        alpha, *_ = np.linalg.lstsq(design.T, pan - pan_mean, rcond=None)
        intensity = alpha[:-1] @ (ms - ms_mean[:, None]) + alpha[-1]
        intensity -= intensity.mean()
        gains = np.array([np.cov(intensity, band)[0, 1] for band in ms - ms_mean[:, None]]) / intensity.var(ddof=1)
        self.alpha, self.gains = alpha, gains
        self.means = {"ms": ms_mean, "pan": pan_mean}

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.alpha is None or self.gains is None:
            raise RuntimeError("GSA.fuse called before fit")
        ms, pan = inputs["ms"], inputs["pan"][0]
        ms_mean = self.means["ms"].astype(np.float32)
        centred = ms - ms_mean[:, None, None]
        # The intensity's scene mean is the regression constant (the MS are centred), so drop it.
        intensity = np.tensordot(self.alpha[:-1].astype(np.float32), centred, axes=1)
        detail = (pan - np.float32(self.means["pan"])) - intensity
        return ms + self.gains.astype(np.float32)[:, None, None] * detail

    def params(self) -> dict[str, Any]:
        if self.alpha is None:
            return {}
        return {"alpha": np.round(self.alpha, 6).tolist(), "gains": np.round(self.gains, 6).tolist()}
