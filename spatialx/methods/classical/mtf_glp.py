"""MTF-GLP with high-pass modulation (Aiazzi et al.; Vivone et al. 2018).

Each band gets the PAN, histogram-matched to it (scene mean and standard deviation from the first pass), times the
ratio of that PAN to its low-pass version, where the low-pass filter is the Gaussian matched to the band's MTF gain
at Nyquist (sensor profile). The 41-tap filter needs 20 pixels of context, hence the halo.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from spatialx.filters import mtf_filter
from spatialx.methods.base import FusionMethod, SceneSample

TAPS = 41


class MTFGLPHPM(FusionMethod):
    name = "mtf-glp-hpm"
    tasks = ("pansharpen",)
    halo = TAPS // 2

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.gains = np.asarray(self.sensor.mtf_gains, dtype=np.float64)
        self.pan_stats: tuple[float, float] | None = None
        self.ms_stats: np.ndarray | None = None  # (bands, 2): mean, std

    def fit(self, sample: SceneSample) -> None:
        pan = sample.valid_pixels("pan")[0].astype(np.float64)
        ms = sample.valid_pixels("ms").astype(np.float64)
        self.pan_stats = (float(pan.mean()), float(pan.std()) or 1.0)
        self.ms_stats = np.stack([ms.mean(axis=1), ms.std(axis=1)], axis=1)

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.pan_stats is None or self.ms_stats is None:
            raise RuntimeError("MTFGLPHPM.fuse called before fit")
        ms, pan = inputs["ms"], inputs["pan"][0]
        mean, std = self.pan_stats
        scale = (self.ms_stats[:, 1] / std).astype(np.float32)[:, None, None]
        matched = (pan - np.float32(mean))[None] * scale + self.ms_stats[:, 0].astype(np.float32)[:, None, None]
        low = mtf_filter(matched, self.gains, self.ratio, taps=TAPS).astype(np.float32)
        return ms * (matched / (low + np.finfo(np.float32).eps))

    def params(self) -> dict[str, Any]:
        return {"mtf_gains": self.gains.tolist(), "taps": TAPS}
