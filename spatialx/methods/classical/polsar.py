"""PolSAR fusion methods (``spatialx polsar``): the quad-pol covariance matrix C3 on the single-pol grid.

The references differ only in how the quad-pol C3 reaches the output grid (nearest, bilinear, bicubic, each applied
element-wise to the 9 real channels); the guided method then lets the single-pol intensity shape it. Every output
pixel is a Hermitian positive semidefinite matrix: bicubic interpolation and the guided filter can leave the cone
(negative lobes), so their results are projected back onto it (:func:`spatialx.metrics.polsar.psd_project`), and
the tiles' cross-fade, a convex combination of PSD matrices, keeps them there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from spatialx.errors import MethodError
from spatialx.methods.base import FusionMethod, MethodContext, SceneSample
from spatialx.tasks import Resampling

#: Regularisation of the guided filter (dB^2) by default: see :class:`C3Guided`.
DEFAULT_GUIDED_EPS = 0.01
#: A first-pass sample with more non-PSD pixels than this is not a covariance image (a C3 file with wrong values).
MAX_NON_PSD_FRACTION = 0.01


class C3Resampled(FusionMethod):
    """Base of the PolSAR methods: the quad-pol C3 as the pipeline resampled it, projected onto the PSD cone."""

    roles = ("quad", "single")

    def fit(self, sample: SceneSample) -> None:
        """Refuse a quad-pol input that is not a covariance image (checked on its own grid, before resampling)."""
        from spatialx.metrics.polsar import is_psd

        quad = sample.native.get("quad", sample.inputs["quad"])
        quad = quad[:, np.isfinite(quad).all(axis=0)]
        if quad.shape[1] == 0:
            return
        bad = 1.0 - float(np.mean(is_psd(quad[:, :, None], tol=1e-4)))
        if bad > MAX_NON_PSD_FRACTION:
            raise MethodError(f"{bad:.0%} of the quad-pol pixels are not positive semidefinite covariance matrices",
                              hint="give a C3 in spatialx's channel order (C11, C12_re, C12_im, ..., C33), or the "
                                   "quad-pol SLC")

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        from spatialx.metrics.polsar import psd_project

        return psd_project(inputs["quad"]).astype(np.float32)


class C3Nearest(C3Resampled):
    """``nearest``: each single-pol pixel takes the C3 of the quad-pol pixel it lies in."""

    name = "nearest"
    resampling: ClassVar[Mapping[str, Resampling]] = {"quad": Resampling.NEAREST}


class C3Bilinear(C3Resampled):
    """``bilinear``: a convex combination of the four nearest C3 matrices (always PSD)."""

    name = "bilinear"
    resampling: ClassVar[Mapping[str, Resampling]] = {"quad": Resampling.COVARIANCE}


class C3Bicubic(C3Resampled):
    """``bicubic``: Keys cubic convolution of each channel, then the projection onto the PSD cone."""

    name = "bicubic"
    resampling: ClassVar[Mapping[str, Resampling]] = {"quad": Resampling.CUBIC}


class C3Guided(C3Resampled):
    """``guided``: the bicubic C3 filtered with the single-pol intensity as guide (He et al.'s guided filter per
    channel of C3 / span in dB, the span filtered alongside), then projected onto the PSD cone: the classical floor
    a network must beat. Defaults (radius 1, eps 0.01 dB^2) are the best of a sweep on the RADARSAT-2 extract
    (radius 1-2, eps 0.01-10); even so the filter's smoothing costs more than the guide gives there (README)."""

    name = "guided"
    resampling: ClassVar[Mapping[str, Resampling]] = {"quad": Resampling.CUBIC}

    def __init__(self, context: MethodContext, radius: int | None = None, eps: float | None = None,
                 **options: Any):
        from spatialx.methods.classical import polsar_core

        super().__init__(context, **options)
        self.radius = 1 if radius is None else int(radius)
        if self.radius < 1:
            raise MethodError(f"--radius {radius}: give 1 or more")
        self.eps = DEFAULT_GUIDED_EPS if eps is None else float(eps)
        self.halo = polsar_core.halo(self.radius)
        self.default_overlap = min(16, self.halo)

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        from spatialx.methods.classical.polsar_core import guided_c3

        return guided_c3(inputs["quad"], inputs["single"][0], radius=self.radius, eps=self.eps).astype(np.float32)

    def params(self) -> dict[str, Any]:
        return {"radius": self.radius, "eps": self.eps}
