"""Wald's reduced-resolution protocol as the reference toolbox runs it.

At reduced resolution the original MS is the reference: the MS is degraded by the ratio with its MTF-matched
filters and decimated (``filters.degrade_ms``), the PAN is brought down to the MS grid with MATLAB-style bicubic
(antialiased) resizing, the degraded MS is re-expanded with the 23-tap interpolator ("EXP"), and a method fuses
these into an estimate of the original MS.

hmif (:func:`reduce_hmif`) is the same protocol with the HS as the reference: the MS is degraded onto the HS grid
with its own MTF, the HS by the ratio with the HS MTF and re-expanded with bicubic resizing (any integer ratio:
PRISMA over Sentinel-2 is 3).

polsar (:func:`reduce_polsar`) is the same protocol with the quad-pol C3 as the reference: the C3 is averaged over
``ratio x ratio`` blocks (a multilook, as :func:`spatialx.tasks.polsar.simulate_pair` simulates the low-resolution
quad-pol) and brought back bilinearly, as the pipeline resamples a covariance image; the single-pol intensity is
averaged onto the reference grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from spatialx.errors import InputMismatchError
from spatialx.filters import degrade_ms, imresize_bicubic, interp23tap
from spatialx.sensors import SensorProfile

#: MTF gain at Nyquist for bands whose profile states none: PRISMA's value in the toolbox, and the convention for
#: sensors without a published one (GF-2 in the implementation notes).
DEFAULT_MTF_GAIN = 0.3


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


# ------------------------------------------------------------------------------------------------------------ hmif
def mtf_gains(sensor: SensorProfile, role: str) -> tuple[list[float], list[str]]:
    """Each band's MTF gain, :data:`DEFAULT_MTF_GAIN` where the profile states none (and a note saying so)."""
    gains = [DEFAULT_MTF_GAIN if band.mtf_gain is None else float(band.mtf_gain) for band in sensor.bands]
    missing = [band.name for band in sensor.bands if band.mtf_gain is None]
    if not missing:
        return gains, []
    which = "every band" if len(missing) == len(gains) else f"bands {', '.join(missing)}"
    return gains, [f"{role} MTF: sensor {sensor.key} states no MTF gain for {which}; the default "
                   f"{DEFAULT_MTF_GAIN} at Nyquist is used"]


def degrade(image: np.ndarray, gains: Sequence[float], ratio: int) -> np.ndarray:
    """``image`` (bands, r h, r w) as a sensor with these MTF gains records it at ``ratio`` times coarser pixels:
    each band blurred by its MTF-matched Gaussian (unit DC gain, replicated borders), one sample per ``ratio x
    ratio`` block at the block's centre (:func:`~spatialx.filters.decimate_centred`: where a coarser pixel nested on
    the same origin has its centre). ``ratio`` 1 returns the image (float64)."""
    from spatialx.filters import decimate_centred, mtf_filter, mtf_kernel

    arr = np.asarray(image, dtype=np.float64)
    if ratio == 1:
        return arr
    blurred = mtf_filter(arr, list(gains), ratio)
    # The toolbox's kernels pass ~99.9 % of the mean; physical values must keep theirs.
    dc = np.array([mtf_kernel(g, ratio).sum() for g in gains])
    return decimate_centred(blurred / dc[:, None, None], ratio)


@dataclass(frozen=True)
class HMIFReducedScene:
    """Inputs of one reduced-resolution hmif fusion and the HS it must reproduce (all (bands, rows, cols))."""

    reference: np.ndarray  # the original HS, cropped to a multiple of the ratio
    ms: np.ndarray  # the MS on the reference grid (degraded by the HS:MS grid ratio; as read when that is 1)
    hs_lr: np.ndarray  # the reference degraded by the ratio
    hs_up: np.ndarray  # hs_lr resampled back onto the reference grid (Keys cubic)
    ratio: int
    sensors: Mapping[str, SensorProfile]
    notes: tuple[str, ...] = ()


def reduce_hmif(hs: np.ndarray, ms: np.ndarray, sensors: Mapping[str, SensorProfile], grid_ratio: int,
                ratio: int | None = None) -> HMIFReducedScene:
    """Degrade an HS (B, h, w) and MS (M, h g, w g) pair for Wald's protocol with the HS as reference.

    The MS is degraded by the grid ratio ``g`` with its own MTF (onto the HS grid), the HS by ``ratio`` (default
    ``g``; required when ``g`` is 1) with the HS MTF; the reference is cropped to a multiple of ``ratio``
    (bottom/right).
    """
    from spatialx.filters import imresize_bicubic

    if ms.shape[1:] != (hs.shape[1] * grid_ratio, hs.shape[2] * grid_ratio):
        raise InputMismatchError(f"MS {ms.shape[1:]} is not HS {hs.shape[1:]} x {grid_ratio}")
    if ratio is None:
        if grid_ratio == 1:
            raise InputMismatchError("the HS and MS are on the same grid: the degradation ratio cannot be read "
                                     "from the grids", hint="give it with --ratio (e.g. 3 for 30 m over 10 m)")
        ratio = grid_ratio
    ratio = int(ratio)
    if ratio < 2:
        raise InputMismatchError(f"ratio {ratio}: the reduced-resolution protocol degrades the HS by 2 or more",
                                 hint="give --ratio 2 or more")
    rows, cols = (hs.shape[1] // ratio) * ratio, (hs.shape[2] // ratio) * ratio
    if rows < 4 * ratio or cols < 4 * ratio:
        raise InputMismatchError(f"HS of {hs.shape[2]}x{hs.shape[1]} pixels is too small for ratio {ratio}",
                                 hint=f"the HS needs at least {4 * ratio} pixels each way")
    hs_gains, hs_notes = mtf_gains(sensors["hs"], "HS")
    notes = list(hs_notes)
    reference = np.asarray(hs[:, :rows, :cols], dtype=np.float64)
    ms_ref = np.asarray(ms[:, : rows * grid_ratio, : cols * grid_ratio], dtype=np.float64)
    if grid_ratio > 1:
        ms_gains, ms_notes = mtf_gains(sensors["ms"], "MS")
        notes.extend(ms_notes)
        ms_ref = degrade(ms_ref, ms_gains, grid_ratio)
    else:
        notes.append("HS and MS on the same grid: the MS is used as read, the HS degraded by the ratio")
    hs_lr = degrade(reference, hs_gains, ratio)
    hs_up = imresize_bicubic(hs_lr, ratio)
    return HMIFReducedScene(reference=reference.astype(np.float32), ms=ms_ref.astype(np.float32),
                            hs_lr=hs_lr.astype(np.float32), hs_up=hs_up.astype(np.float32), ratio=ratio,
                            sensors=dict(sensors), notes=tuple(notes))


# ---------------------------------------------------------------------------------------------------------- polsar
#: Quantile of the single-pol intensity a PolSAR scene is scaled by for a network (:func:`polsar_level`).
POLSAR_LEVEL_QUANTILE = 0.99


@dataclass(frozen=True)
class PolSARReducedScene:
    """Inputs of one reduced-resolution polsar fusion and the C3 it must reproduce (all (channels, rows, cols))."""

    reference: np.ndarray  # the quad-pol C3, cropped to a multiple of the ratio
    single: np.ndarray  # the single-pol intensity on the reference grid, (1, rows, cols)
    quad_lr: np.ndarray  # the reference averaged over ratio x ratio blocks
    quad_up: np.ndarray  # quad_lr resampled bilinearly back onto the reference grid
    ratio: int


def block_mean(image: np.ndarray, ratio: int) -> np.ndarray:
    """The mean of every ``ratio x ratio`` block of ``image`` (bands, rows, cols), rows and columns cropped to a
    multiple of ``ratio`` (float64): a boxcar multilook onto the ``ratio`` times coarser grid."""
    arr = np.asarray(image, dtype=np.float64)
    rows, cols = arr.shape[1] // ratio * ratio, arr.shape[2] // ratio * ratio
    if ratio == 1:
        return arr[:, :rows, :cols]
    return arr[:, :rows, :cols].reshape(arr.shape[0], rows // ratio, ratio, cols // ratio, ratio).mean(axis=(2, 4))


def expand_linear(image: np.ndarray, ratio: int) -> np.ndarray:
    """``image`` (bands, h, w) bilinearly onto the grid ``ratio`` times finer on the same origin (h r, w r): the
    pipeline's covariance resampling (:class:`spatialx.align.AxisMap`, replicated edges), a convex combination of
    neighbouring pixels, so a C3 image stays positive semidefinite."""
    from spatialx.align import AxisMap

    arr = np.asarray(image, dtype=np.float64)
    offset = 0.5 / ratio - 0.5
    rows = AxisMap(scale=1.0 / ratio, offset=offset, size=arr.shape[1], kernel="linear")
    cols = AxisMap(scale=1.0 / ratio, offset=offset, size=arr.shape[2], kernel="linear")
    iy, wy = rows.taps(0, arr.shape[1] * ratio, 0)
    ix, wx = cols.taps(0, arr.shape[2] * ratio, 0)
    along_rows = sum(arr[:, iy[:, t], :] * wy[None, :, t, None] for t in range(wy.shape[1]))
    return sum(np.take(along_rows, ix[:, t], axis=2) * wx[None, None, :, t] for t in range(wx.shape[1]))


def reduce_polsar(quad: np.ndarray, single: np.ndarray, grid_ratio: int, ratio: int = 2) -> PolSARReducedScene:
    """Degrade a quad-pol C3 (9, h, w) and single-pol intensity (1, h g, w g) pair for Wald's protocol with the C3 as
    reference: the C3 averaged over ``ratio x ratio`` blocks and resampled bilinearly back, the intensity averaged
    over ``g x g`` blocks onto the C3 grid (as read when ``g`` is 1: a single-pol image simulated from the C3 itself).
    """
    ratio, grid_ratio = int(ratio), int(grid_ratio)
    if quad.shape[0] != 9:
        raise InputMismatchError(f"the quad-pol input has {quad.shape[0]} channels, not the 9 of C3")
    if single.shape[1:] != (quad.shape[1] * grid_ratio, quad.shape[2] * grid_ratio):
        raise InputMismatchError(f"single-pol {single.shape[1:]} is not quad-pol {quad.shape[1:]} x {grid_ratio}")
    if ratio < 2:
        raise InputMismatchError(f"ratio {ratio}: the reduced-resolution protocol degrades by 2 or more")
    rows, cols = quad.shape[1] // ratio * ratio, quad.shape[2] // ratio * ratio
    if rows < 4 * ratio or cols < 4 * ratio:
        raise InputMismatchError(f"quad-pol C3 of {quad.shape[2]}x{quad.shape[1]} pixels is too small for ratio "
                                 f"{ratio}", hint=f"it needs at least {4 * ratio} pixels each way")
    reference = np.asarray(quad[:, :rows, :cols], dtype=np.float64)
    guide = block_mean(single[:, : rows * grid_ratio, : cols * grid_ratio], grid_ratio)
    quad_lr = block_mean(reference, ratio)
    return PolSARReducedScene(reference=reference.astype(np.float32), single=guide.astype(np.float32),
                              quad_lr=quad_lr.astype(np.float32),
                              quad_up=expand_linear(quad_lr, ratio).astype(np.float32), ratio=ratio)


def polsar_level(intensity: np.ndarray) -> float:
    """The level a PolSAR scene is divided by before a network sees it: the :data:`POLSAR_LEVEL_QUANTILE` quantile
    of the single-pol intensity's finite positive pixels. SAR power has no nominal range (the optical sensors'
    [0, max DN]); one level for the single-pol and every C3 channel keeps their physical relation (C11 is the HH
    intensity) and leaves most values in [0, 1], as the optical inputs are."""
    values = np.asarray(intensity, dtype=np.float64).ravel()
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        raise InputMismatchError("the single-pol intensity has no positive pixel to scale the scene by",
                                 hint="check that the single-pol input is an intensity (linear power)")
    return float(np.quantile(values, POLSAR_LEVEL_QUANTILE))
