"""Band-dependent spatial detail (BDSD, Garzelli et al. 2008), one global block, as the community toolbox.

Each fused band is ``F_k = MS_k + sum_j gamma_jk MS_j + gamma_(N+1)k PAN``: the detail is a band-dependent linear
combination of the upsampled MS bands and the PAN, with ``gamma`` the minimum-mean-square-error solution at reduced
resolution. Following the toolbox (``BDSD`` with the block size set to the image size): the PAN is blurred with its own
MTF-matched filter and decimated at ``[r//2::r]``; the "original" MS is the upsampled MS shrunk by bicubic ``imresize``
(1/ratio) and its low-pass version is that blurred with the bands' MTF filters; ``gamma`` solves
``[MS_LP, PAN_LP] gamma_k = MS_k - MS_LP_k`` in the least-squares sense.

``gamma`` is a scene statistic (from :meth:`BDSD.fit`); :meth:`BDSD.fuse` is pointwise (no halo). The toolbox's local
variant (blocks) is not offered: its result would depend on the tiling. With a strided sample (large scenes) the
reduced-resolution images cannot be formed; ``gamma`` then takes the component-substitution form that BDSD
generalises, ``F_k = MS_k + g_k (PAN - I)``, with ``I`` the least-squares prediction of the PAN from the MS samples and
``g_k = cov(MS_k, I) / var(I)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from spatialx.filters import decimate, imresize_bicubic, mtf_filter
from spatialx.methods.base import FusionMethod, SceneSample
from spatialx.methods.classical._toolbox import Sample, combine, cov, integer_ratio, regress


class BDSD(FusionMethod):
    name = "bdsd"
    roles = ("pan", "ms")
    default_overlap = 0

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.r = integer_ratio(self.ratio, self.name)
        self.gamma: np.ndarray | None = None  # (bands + 1, bands): MS bands then PAN
        self.offset: np.ndarray | None = None  # (bands,), zero for the toolbox estimate
        self.estimate = ""

    def fit(self, sample: SceneSample) -> None:
        s = Sample(sample, self.ratio)
        bands = s.ms.shape[0]
        # 41-tap filters at the reduced scale need a few reduced pixels to mean anything.
        if s.exact and min(s.pan.shape) >= 4 * self.r:
            pan_low = decimate(mtf_filter(s.pan, self.sensor.pan.mtf_gain, self.r), self.r)
            ms_orig = imresize_bicubic(s.ms, 1.0 / self.r)
            h = min(pan_low.shape[0], ms_orig.shape[1])
            w = min(pan_low.shape[1], ms_orig.shape[2])
            pan_low, ms_orig = pan_low[:h, :w], ms_orig[:, :h, :w]
            ms_low = mtf_filter(ms_orig, self.sensor.mtf_gains, self.r)
            valid = s.lowres_valid()[:h, :w]
            if valid.sum() >= bands + 2:
                design = np.vstack([ms_low[:, valid], pan_low[valid]])
                self.gamma = np.stack([regress(ms_orig[k][valid] - ms_low[k][valid], design, intercept=False)
                                       for k in range(bands)], axis=1)
                self.offset = np.zeros(bands)
                self.estimate = "reduced resolution, one global block (toolbox)"
                return
        ms_px = s.ms_px()
        alpha = regress(s.pan_px(), ms_px)
        intensity = combine(alpha, ms_px)
        var = cov(intensity, intensity)
        g = np.array([cov(band, intensity) / var if var > 0 else 0.0 for band in ms_px])
        self.gamma = np.vstack([-np.outer(alpha[:-1], g), g[None]])
        self.offset = -alpha[-1] * g
        self.estimate = "strided samples (component-substitution form)"

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.gamma is None or self.offset is None:
            raise RuntimeError("BDSD.fuse called before fit")
        ms = np.asarray(inputs["ms"], dtype=np.float64)
        pan = np.asarray(inputs["pan"], dtype=np.float64)
        stack = np.concatenate([ms, pan[:1]])
        detail = np.tensordot(self.gamma.T, stack, axes=1)
        return (ms + detail + self.offset[:, None, None]).astype(np.float32)

    def params(self) -> dict[str, Any]:
        if self.gamma is None:
            return {}
        return {"gamma": np.round(self.gamma, 6).tolist(), "estimated_at": self.estimate}
