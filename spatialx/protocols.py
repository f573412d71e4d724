"""Wald's reduced-resolution protocol as the reference toolbox runs it.

At reduced resolution the original MS is the reference: the MS is degraded by the ratio with its MTF-matched
filters and decimated (``filters.degrade_ms``), the PAN is brought down to the MS grid with MATLAB-style bicubic
(antialiased) resizing, the degraded MS is re-expanded with the 23-tap interpolator ("EXP"), and a method fuses
these into an estimate of the original MS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spatialx.errors import InputMismatchError
from spatialx.filters import degrade_ms, imresize_bicubic, interp23tap


@dataclass(frozen=True)
class ReducedScene:
    """Inputs of one reduced-resolution fusion and the reference it must reproduce (all (bands, rows, cols))."""

    reference: np.ndarray  # the original MS
    pan: np.ndarray  # PAN on the reference grid, (1, rows, cols)
    ms_lr: np.ndarray  # the degraded MS, reference size / ratio
    ms_up: np.ndarray  # ms_lr re-expanded to the reference size
    ratio: int


def expand(ms_lr: np.ndarray, ratio: int) -> np.ndarray:
    """The toolbox's EXP upsampling (23-tap interpolator, factor-2 stages)."""
    if ratio & (ratio - 1):
        raise InputMismatchError(f"EXP upsampling needs a power-of-two ratio, got {ratio}",
                                 hint="pass --ratio 2, 4 or 8")
    return interp23tap(ms_lr, ratio).astype(np.float32)


def reduce_scene(pan: np.ndarray, ms: np.ndarray, gains: tuple[float, ...], ratio: int,
                 pan_to_ms: int) -> ReducedScene:
    """Degrade a PAN (1, H, W) and MS (C, h, w) pair for Wald's protocol.

    ``pan_to_ms`` is the grid ratio between PAN and MS (1 when the MS was delivered on the PAN grid, as in some
    products: then the PAN is already at the reference scale and is used as it is). ``ratio`` is the degradation
    applied to the MS. The MS is cropped to a multiple of ``ratio`` (bottom/right).
    """
    if pan.shape[1:] != (ms.shape[1] * pan_to_ms, ms.shape[2] * pan_to_ms):
        raise InputMismatchError(f"PAN {pan.shape[1:]} is not MS {ms.shape[1:]} x {pan_to_ms}")
    rows, cols = (ms.shape[1] // ratio) * ratio, (ms.shape[2] // ratio) * ratio
    if rows < 4 * ratio or cols < 4 * ratio:
        raise InputMismatchError(f"MS of {ms.shape[2]}x{ms.shape[1]} pixels is too small for ratio {ratio}")
    reference = ms[:, :rows, :cols].astype(np.float32)
    pan = pan[:, : rows * pan_to_ms, : cols * pan_to_ms].astype(np.float64)
    pan_lr = pan if pan_to_ms == 1 else imresize_bicubic(pan, 1.0 / pan_to_ms)
    ms_lr = degrade_ms(reference.astype(np.float64), gains, ratio).astype(np.float32)
    return ReducedScene(reference=reference, pan=pan_lr.astype(np.float32), ms_lr=ms_lr,
                        ms_up=expand(ms_lr, ratio), ratio=ratio)
