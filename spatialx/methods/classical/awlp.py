"""Additive wavelet luminance proportional (AWLP, Otazu et al. 2005), as the community toolbox computes it.

The PAN is equalised to each band, ``P_b = (P - mean(P)) std(MS_b) / std(LP(P)) + mean(MS_b)`` with
``LP(x) = imresize(imresize(x, 1/r), r)``; its wavelet detail (the first ``ceil(log2 r)`` levels of an undecimated
decomposition with the B3-spline pair ``[1 4 6 4 1] / 16``) is injected in proportion to each band's share of the
mean MS intensity: ``F_b = MS_b + (MS_b / mean_j MS_j) (P_b - A(P_b))``.

The approximation ``A`` is what the toolbox's undecimated transform (``ndwt2_working`` with symmetric extension,
detail planes zeroed, inverse) returns: per axis, four passes of the 5-tap B3 kernel, undilated, where the first two
passes extend their input symmetrically by 4 samples and keep the widened result, and the last two shrink it back.
Its support is 8 pixels each side, hence ``halo = 8``; the equalisation moments are scene statistics
(:meth:`AWLP.fit`). With a strided sample (large scenes) ``std(LP(P))`` is the standard deviation of the PAN's
MS-predictable part (its least-squares prediction from the MS).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from spatialx.methods.base import FusionMethod, SceneSample
from spatialx.methods.classical._toolbox import Sample, bicubic_lowpass, std2

_B3 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
_EXTEND = 4  # samples added by each analysis level's symmetric extension


def _filter_valid(image: np.ndarray, axis: int) -> np.ndarray:
    """Correlate with the B3 kernel along ``axis`` and keep the part that needs no extension (2 shorter each side)."""
    out = ndimage.correlate1d(image, _B3, axis=axis, mode="nearest")
    index = [slice(None)] * image.ndim
    index[axis] = slice(2, -2)
    return out[tuple(index)]


def wavelet_approximation(image: np.ndarray, levels: int = 2) -> np.ndarray:
    """The approximation plane of the toolbox's undecimated B3 transform after ``levels`` levels (same size)."""
    out = np.asarray(image, dtype=np.float64)
    pad = [(0, 0)] * (out.ndim - 2)
    for _ in range(levels):  # analysis: extend symmetrically, filter, keep the widened result
        out = np.pad(out, pad + [(_EXTEND, _EXTEND)] * 2, mode="symmetric")
        out = _filter_valid(_filter_valid(out, -2), -1)
    for _ in range(levels):  # synthesis of the approximation only: filter, shrink back
        out = _filter_valid(_filter_valid(out, -2), -1)
    return out


class AWLP(FusionMethod):
    name = "awlp"
    roles = ("pan", "ms")
    default_overlap = 0

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.levels = max(1, math.ceil(math.log2(float(self.ratio)))) if float(self.ratio) > 1 else 1
        self.halo = 4 * self.levels  # 2 px per pass, 2 passes per level
        self.scale: np.ndarray | None = None
        self.estimate = ""

    def fit(self, sample: SceneSample) -> None:
        s = Sample(sample, self.ratio)
        if s.exact:
            pan_low_std = std2(s.px(bicubic_lowpass(s.pan, self.ratio)))
            self.estimate = "whole scene (toolbox)"
        else:
            pan_low_std = std2(s.pan_lowres_proxy())
            self.estimate = "strided samples (low-pass PAN approximated)"
        self.scale = np.array([std2(band) for band in s.ms_px()]) / (pan_low_std or 1.0)

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.scale is None:
            raise RuntimeError("AWLP.fuse called before fit")
        ms = np.asarray(inputs["ms"], dtype=np.float64)
        pan = np.asarray(inputs["pan"], dtype=np.float64)[0]
        # The equalised PAN is affine in the PAN and the approximation passes constants, so the detail of P_b is the
        # band's scale times the PAN's detail.
        detail = pan - wavelet_approximation(pan, self.levels)
        share = ms / (ms.mean(axis=0) + np.finfo(np.float64).eps)
        return (ms + share * self.scale[:, None, None] * detail).astype(np.float32)

    def params(self) -> dict[str, Any]:
        if self.scale is None:
            return {}
        return {"levels": self.levels, "pan_scale": np.round(self.scale, 6).tolist(), "estimated_at": self.estimate}
