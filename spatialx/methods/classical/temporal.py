"""Spatio-temporal fusion methods (``spatialx stfuse``): the adapters between the pipeline's tiles and the array
algorithms of :mod:`spatialx.methods.classical.starfm`.

A run's roles are its acquisitions (:func:`spatialx.tasks.stfuse.temporal_layout`): a fine and a coarse image per
pair date and the coarse image of the prediction date, all on the fine grid. The fine and coarse images must hold
the same variable (reflectance with reflectance, kelvin with kelvin); each fine band is paired with the coarse band
whose spectral range overlaps it most (MODIS numbers its bands in another order than Landsat), and a fine band that
no coarse band overlaps is refused rather than paired by position. Single-band images without a spectral range
(land-surface temperature) pair as they are.

Tiles arrive with NaN where an acquisition holds no data (clouds, fill): these methods judge validity per pixel
(:attr:`~spatialx.methods.base.FusionMethod.judges_validity`), so a pixel cloudy on one pair date is still
predicted from the others; the output is nodata where no prediction exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from spatialx.errors import MethodError
from spatialx.methods.base import FusionMethod, MethodContext, SceneSample
from spatialx.sensors import SensorProfile

UNCERTAINTY = {"uncertainty": "per-pixel spread of the candidate predictions (same units as the product)"}


def _interval(band) -> tuple[float, float] | None:
    if band.center_nm is None or not band.width_nm:
        return None
    return band.center_nm - band.width_nm / 2, band.center_nm + band.width_nm / 2


def coarse_band_order(fine: SensorProfile, coarse: SensorProfile) -> list[int]:
    """For each fine band, the index of the coarse band that records the same signal (see the module docstring)."""
    fine_units, coarse_units = _units(fine), _units(coarse)
    if fine_units != coarse_units:
        raise MethodError(f"the fine images hold {fine_units} ({fine.key}), the coarse images {coarse_units} "
                          f"({coarse.key}): different variables cannot be fused",
                          hint="give fine and coarse images of one variable (reflectance bands, or LST in K)")
    ranges = [_interval(b) for b in coarse.bands]
    order = []
    for band in fine.bands:
        span = _interval(band)
        if span is None or not any(ranges):
            if len(fine.bands) == len(coarse.bands):
                return list(range(len(fine.bands)))
            raise MethodError(f"fine band {band.name} has no spectral range to pair it with a coarse band",
                              hint="select as many fine as coarse bands, in matching order")
        overlaps = [0.0 if r is None else max(0.0, min(span[1], r[1]) - max(span[0], r[0])) for r in ranges]
        best = int(np.argmax(overlaps))
        if overlaps[best] <= 0:
            raise MethodError(f"no coarse band ({coarse.key}) overlaps fine band {band.name} "
                              f"({span[0]:.0f}-{span[1]:.0f} nm)",
                              hint="select the fine bands the coarse sensor also records (--fine-bands)")
        order.append(best)
    return order


def _units(sensor: SensorProfile) -> str:
    units = {b.units or sensor.units for b in sensor.bands}
    if len(units) != 1:
        raise MethodError(f"the bands of {sensor.key} hold different variables ({', '.join(map(str, units))})",
                          hint="select bands of one variable")
    return str(units.pop() or "reflectance")


class TemporalMethod(FusionMethod):
    """Base of the stfuse methods: the run's acquisitions, the band pairing, per-pixel validity."""

    judges_validity = True
    layers: ClassVar[Mapping[str, str]] = UNCERTAINTY

    def __init__(self, context: MethodContext, **options: Any):
        from spatialx.tasks.stfuse import temporal_layout

        super().__init__(context, **options)
        self.layout = temporal_layout(context.task)
        fine = context.sensors[self.layout.pairs[0][1]]
        coarse = context.sensors[self.layout.target[1]]
        self.order = coarse_band_order(fine, coarse)
        self.units = _units(fine)

    def split(self, inputs: Mapping[str, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """(fine images, coarse images with their bands in fine order, coarse image at the prediction date)."""
        fines = [inputs[fine] for _, fine, _ in self.layout.pairs]
        coarses = [inputs[coarse][self.order] for _, _, coarse in self.layout.pairs]
        return fines, coarses, inputs[self.layout.target[1]][self.order]

    def with_layers(self, prediction: np.ndarray, uncertainty: np.ndarray) -> np.ndarray:
        """The product's planes followed by the layers this run asked for."""
        planes = [prediction.astype(np.float32)]
        if "uncertainty" in self.emit:
            # One plane: the root mean square over bands (NaN where the prediction is, so validity agrees).
            spread = uncertainty if uncertainty.ndim == 2 else np.sqrt(np.mean(uncertainty ** 2, axis=0))
            planes.append(spread[None].astype(np.float32))
        return np.concatenate(planes) if len(planes) > 1 else planes[0]

    def params(self) -> dict[str, Any]:
        return {"pairs": [date for date, _, _ in self.layout.pairs], "predict": self.layout.target[0],
                "coarse_bands": [self.context.sensors[self.layout.target[1]].bands[i].name for i in self.order],
                "units": self.units}


class CoarseExpanded(TemporalMethod):
    """``exp`` for stfuse: the coarse image of the prediction date, interpolated onto the fine grid (what the
    coarse sensor alone says). The uncertainty layer is not defined for it."""

    name = "exp"
    layers: ClassVar[Mapping[str, str]] = {}

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.split(inputs)[2].astype(np.float32)


class NoChange(TemporalMethod):
    """``no-change``: the fine image of the pair nearest in time, as if nothing changed since (the floor every
    method must clear); where it holds no data, the next nearest pair's."""

    name = "no-change"
    layers: ClassVar[Mapping[str, str]] = {}

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        fines = self.split(inputs)[0]
        nearest = sorted(range(len(fines)), key=lambda k: abs(self.layout.days(self.layout.pairs[k][0])))
        out = fines[nearest[0]].astype(np.float32)
        for k in nearest[1:]:
            out = np.where(np.isnan(out), fines[k], out)
        return out


class CoarseDifference(TemporalMethod):
    """``coarse-diff``: fine(t_k) + coarse(t_p) - coarse(t_k), the simple reference every method must beat.

    With several pairs, each pixel averages the pairs' predictions weighted by the inverse of the coarse change
    since that pair (the pair most like the prediction date counts most); the uncertainty is the weighted spread of
    those predictions (0 with one pair).
    """

    name = "coarse-diff"

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        from spatialx.methods.classical.starfm import coarse_difference

        fines, coarses, target = self.split(inputs)
        prediction, uncertainty = coarse_difference(fines, coarses, target)
        return self.with_layers(prediction, uncertainty)


#: Radiometric uncertainty of the fine and coarse images (STARFM's sigma_l, sigma_m) by units: the paper's 0.002
#: for reflectance; for land-surface temperature 0.2 K (the order of Landsat ST's noise-equivalent difference).
UNCERTAINTY_BY_UNITS = {"reflectance": 0.002, "K": 0.2}


class STARFM(TemporalMethod):
    """``starfm`` (Gao et al. 2006): a moving window of spectrally similar neighbours, weighted by their spectral,
    temporal and spatial distance; several pairs weighted together. The similarity threshold uses each fine band's
    standard deviation over the whole scene (from the first pass), so tiles agree with the whole image."""

    name = "starfm"

    def __init__(self, context: MethodContext, window: int | None = None, classes: float = 4,
                 uncertainty: float | None = None, **options: Any):
        from spatialx.methods.classical import starfm

        super().__init__(context, **options)
        self.window = int(window) if window is not None else _default_window(context)
        if self.window < 3 or self.window % 2 == 0:
            raise MethodError(f"--window {self.window}: the moving window is an odd number of fine pixels, 3 or "
                              "more", hint=f"e.g. --window {max(3, self.window | 1)}")
        self.classes = float(classes)
        if self.classes < 1:
            raise MethodError(f"--classes {classes}: give 1 or more")
        self.uncertainty = float(uncertainty if uncertainty is not None else
                                 UNCERTAINTY_BY_UNITS.get(self.units, UNCERTAINTY_BY_UNITS["reflectance"]))
        self.halo = starfm.halo(self.window)
        self.default_overlap = min(16, self.halo)
        self.sigma: np.ndarray | None = None

    def fit(self, sample: SceneSample) -> None:
        from spatialx.methods.classical.starfm import global_statistics

        fines, coarses, _ = self.split(sample.inputs)
        self.sigma = global_statistics(fines, coarses).sigma

    def predict(self, fines: list[np.ndarray], coarses: list[np.ndarray],
                target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from spatialx.methods.classical.starfm import starfm

        return starfm(fines, coarses, target, self.sigma, window=self.window, classes=self.classes,
                      fine_uncertainty=self.uncertainty, coarse_uncertainty=self.uncertainty)

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.sigma is None:
            raise RuntimeError(f"{self.name}: fit() must run before fuse()")
        return self.with_layers(*self.predict(*self.split(inputs)))

    def params(self) -> dict[str, Any]:
        sigma = None if self.sigma is None else np.round(np.asarray(self.sigma, dtype=np.float64), 6).tolist()
        return {**super().params(), "window": self.window, "classes": self.classes,
                "uncertainty": self.uncertainty, "sigma": sigma}


class ESTARFM(STARFM):
    """``estarfm`` (Zhu et al. 2010): two pairs; conversion coefficients regressed over similar pixels, temporal
    weights from the coarse change since each pair."""

    name = "estarfm"

    def __init__(self, context: MethodContext, **options: Any):
        super().__init__(context, **options)
        if len(self.layout.pairs) != 2:
            raise MethodError(f"estarfm needs exactly two fine/coarse pairs, got {len(self.layout.pairs)}",
                              hint="give two --fine/--coarse pairs, or use starfm")

    def predict(self, fines: list[np.ndarray], coarses: list[np.ndarray],
                target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from spatialx.methods.classical.starfm import estarfm

        return estarfm(fines, coarses, target, self.sigma, window=self.window, classes=self.classes,
                       coarse_uncertainty=self.uncertainty)


def _default_window(context: MethodContext) -> int:
    """The paper's 1500 m window in fine pixels (odd), from the fine sensor's resolution (30 m: 51 pixels)."""
    from spatialx.methods.classical.starfm import DEFAULT_WINDOW_M

    fine = context.output_sensor
    resolution = fine.resolution_m or next((b.resolution_m for b in fine.bands if b.resolution_m), None)
    if not resolution:
        return 31
    pixels = max(3, round(DEFAULT_WINDOW_M / float(resolution)))
    return pixels | 1
