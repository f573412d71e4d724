"""MTF-matched generalised Laplacian pyramid (MTF-GLP) methods, as the community toolbox computes them.

The PAN's low-pass version, for band ``b``, is the PAN blurred with the Gaussian matched to that band's MTF gain at
Nyquist (41 taps, replicate borders), decimated at ``[r//2::r]`` and interpolated back with the 23-tap interpolator
(:func:`~spatialx.methods.classical._toolbox.glp_lowpass`). Three injection schemes:

- ``mtf-glp`` (``MTF_GLP``): additive, unit gains: ``F_b = MS_b + P_b - low(P_b)``;
- ``mtf-glp-hpm`` (``MTF_GLP_HPM``): high-pass modulation: ``F_b = MS_b * P_b / low(P_b)``;
- ``mtf-glp-fs`` (``MTF_GLP_FS``, Vivone 2018): additive with full-scale regression gains
  ``g_b = cov(MS_b, P) / cov(low_b(P), P)`` on the raw PAN.

For the first two ``P_b`` is the PAN equalised to band ``b``: ``(P - mean(P)) * std(MS_b) / std(LPG(P)) + mean(MS_b)``,
where ``LPG`` is the toolbox's generic Gaussian low-pass (``LPfilterGauss``, gain 0.3).

Scene statistics (means, standard deviations, FS gains) come from :meth:`fit`; :meth:`fuse` is local. A tile needs the
blur's radius (20 px) plus the interpolator's reach after decimation (33 px at ratio 4), rounded up to a multiple of
the ratio: ``halo = 56`` at ratio 4, and tiles are aligned on the ratio so they keep the toolbox's decimation phase.
With a strided sample (large scenes) the low-pass PAN cannot be formed: ``std(LPG(P))`` is then the standard
deviation of the PAN's MS-predictable part (its least-squares prediction from the MS), and the FS gains use
``cov(I, P)`` of that prediction ``I`` in place of ``cov(low_b(P), P)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from spatialx.filters import DEFAULT_TAPS
from spatialx.methods.base import FusionMethod, MethodContext, SceneSample
from spatialx.methods.classical._toolbox import (
    Sample,
    cov,
    glp_halo,
    glp_lowpass,
    integer_ratio,
    lowpass_gauss,
    std2,
)

TAPS = DEFAULT_TAPS


class _MTFGLP(FusionMethod):
    """Shared set-up: integer ratio, MTF gains, halo and alignment."""

    roles = ("pan", "ms")
    default_overlap = 0

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.r = integer_ratio(self.ratio, self.name)
        self.gains = np.asarray(self.sensor.mtf_gains, dtype=np.float64)
        self.align = self.r
        self.halo = glp_halo(self.r, TAPS)
        self.estimate = ""

    def _low(self, image: np.ndarray) -> np.ndarray:
        return glp_lowpass(image, self.gains, self.r, TAPS)

    def params(self) -> dict[str, Any]:
        return {"mtf_gains": self.gains.tolist(), "taps": TAPS, "estimated_at": self.estimate}


class _Equalised(_MTFGLP):
    """MTF-GLP variants that inject the PAN equalised to each band (mean and std of the band)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pan_mean: float | None = None
        self.scale: np.ndarray | None = None
        self.ms_mean: np.ndarray | None = None

    def fit(self, sample: SceneSample) -> None:
        s = Sample(sample, self.ratio)
        ms_px = s.ms_px()
        self.pan_mean = float(s.pan_px().mean())
        if s.exact:
            pan_low_std = std2(s.px(lowpass_gauss(s.pan, self.r)))
            self.estimate = "whole scene (toolbox)"
        else:
            pan_low_std = std2(s.pan_lowres_proxy())
            self.estimate = "strided samples (low-pass PAN approximated)"
        pan_low_std = pan_low_std or 1.0
        self.ms_mean = ms_px.mean(axis=1)
        self.scale = np.array([std2(band) for band in ms_px]) / pan_low_std

    def _equalised(self, pan: np.ndarray) -> np.ndarray:
        if self.scale is None or self.ms_mean is None or self.pan_mean is None:
            raise RuntimeError(f"{type(self).__name__}.fuse called before fit")
        return (pan - self.pan_mean)[None] * self.scale[:, None, None] + self.ms_mean[:, None, None]

    def params(self) -> dict[str, Any]:
        out = super().params()
        if self.scale is not None:
            out["pan_scale"] = np.round(self.scale, 6).tolist()
        return out


class MTFGLP(_Equalised):
    """MTF-GLP with additive injection and unit gains (toolbox ``MTF_GLP``)."""

    name = "mtf-glp"

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        ms = np.asarray(inputs["ms"], dtype=np.float64)
        equalised = self._equalised(np.asarray(inputs["pan"], dtype=np.float64)[0])
        return (ms + equalised - self._low(equalised)).astype(np.float32)


class MTFGLPHPM(_Equalised):
    """MTF-GLP with high-pass modulation (toolbox ``MTF_GLP_HPM``).

    ``F = MS * P_b / low(P_b)`` is computed as ``MS + m (P_b - low(P_b))`` with the modulation ``m = MS / low(P_b)``
    limited to ``[0, max_modulation]`` (default 4), and 0 where the low-pass is not positive. On real imagery ``m``
    stays near 1 (0.5 to 1.7 on the toolbox's QuickBird crop), so this is the toolbox's result; it only stops the
    division from exploding where the equalised PAN's low-pass comes near zero (dark bands of low-contrast or
    synthetic scenes), which the toolbox does not guard against. ``max_modulation=None`` gives the unguarded formula.
    """

    name = "mtf-glp-hpm"

    def __init__(self, context: MethodContext, max_modulation: float | None = 4.0, **options: Any):
        super().__init__(context, **options)
        self.max_modulation = None if max_modulation is None else float(max_modulation)

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        ms = np.asarray(inputs["ms"], dtype=np.float64)
        equalised = self._equalised(np.asarray(inputs["pan"], dtype=np.float64)[0])
        low = self._low(equalised)
        if self.max_modulation is None:
            return (ms * (equalised / (low + np.finfo(np.float64).eps))).astype(np.float32)
        modulation = np.divide(ms, low, out=np.zeros_like(ms), where=low > 0)
        np.clip(modulation, 0.0, self.max_modulation, out=modulation)
        return (ms + modulation * (equalised - low)).astype(np.float32)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "max_modulation": self.max_modulation}


class MTFGLPFS(_MTFGLP):
    """MTF-GLP with full-scale regression injection gains (Vivone 2018, toolbox ``MTF_GLP_FS``)."""

    name = "mtf-glp-fs"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.injection: np.ndarray | None = None

    def fit(self, sample: SceneSample) -> None:
        s = Sample(sample, self.ratio)
        pan_px, ms_px = s.pan_px(), s.ms_px()
        if s.exact:
            low = self._low(np.broadcast_to(s.pan, s.ms.shape))
            denominators = [cov(s.px(band), pan_px) for band in low]
            self.estimate = "whole scene (toolbox)"
        else:
            denominators = [cov(s.pan_lowres_proxy(), pan_px)] * len(ms_px)
            self.estimate = "strided samples (low-pass PAN approximated)"
        self.injection = np.array([cov(band, pan_px) / den if den else 0.0 for band, den in zip(ms_px, denominators,
                                                                                                   strict=True)])

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.injection is None:
            raise RuntimeError("MTFGLPFS.fuse called before fit")
        ms = np.asarray(inputs["ms"], dtype=np.float64)
        pan = np.broadcast_to(np.asarray(inputs["pan"], dtype=np.float64)[0], ms.shape)
        return (ms + self.injection[:, None, None] * (pan - self._low(pan))).astype(np.float32)

    def params(self) -> dict[str, Any]:
        out = super().params()
        if self.injection is not None:
            out["injection_gains"] = np.round(self.injection, 6).tolist()
        return out
