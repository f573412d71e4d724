"""Pointwise methods: the expanded MS reference and the weighted Brovey transform."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from spatialx.errors import MethodError
from spatialx.methods.base import FusionMethod, MethodContext


class Expanded(FusionMethod):
    """EXP: the output-like input resampled onto the output grid, untouched by the guide (the MS on the PAN grid;
    the HS on the MS grid): the reference every method must beat."""

    name = "exp"
    default_overlap = 0

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return inputs[self.context.task.output_like]


class Brovey(FusionMethod):
    """Weighted Brovey: each band times PAN / (sum_b w_b MS_b), like GDAL's pansharpening.

    Weights default to the sensor profile's ``pan_weight``s (each band's share of the PAN response).
    """

    name = "brovey"
    roles = ("pan", "ms")
    default_overlap = 0

    def __init__(self, context: MethodContext, band_weights: Sequence[float] | None = None,
                 **options: Any):
        super().__init__(context, **options)
        sensor = self.sensor
        chosen = sensor.pan_weights if band_weights is None else tuple(float(w) for w in band_weights)
        if len(chosen) != len(sensor.bands):
            raise MethodError(f"brovey needs {len(sensor.bands)} weights, got {len(chosen)}")
        if not any(chosen):
            raise MethodError(f"sensor {sensor.key} defines no PAN weights", path=sensor.path,
                              hint="add pan_weight to its bands or pass band_weights")
        self.weights = np.asarray(chosen, dtype=np.float32)

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        ms, pan = inputs["ms"], inputs["pan"][0]
        pseudo_pan = np.tensordot(self.weights, ms, axes=1)
        factor = np.divide(pan, pseudo_pan, out=np.zeros_like(pan), where=pseudo_pan != 0)
        return ms * factor

    def params(self) -> dict[str, Any]:
        return {"weights": [round(float(w), 6) for w in self.weights]}
