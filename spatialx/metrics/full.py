"""No-reference (full-resolution) quality indices, numpy backend, as the reference MATLAB toolbox has them.

* ``d_lambda`` - QNR spectral distortion (toolbox 1.0 option): for every band pair, the mean UIQI over
  non-overlapping ``block`` x ``block`` blocks of the fused image versus the same of the MS image
  *upsampled to the PAN scale* (23-tap interpolator), ``(mean_pairs |dQ|^p)^(1/p)``.
* ``d_s`` - QNR spatial distortion: per band, blockwise UIQI(fused band, PAN) versus UIQI(upsampled MS band,
  PAN degraded by bicubic antialiased ``imresize`` to 1/ratio and re-expanded with the 23-tap interpolator),
  ``(mean_bands |dQ|^q)^(1/q)``.
* ``qnr`` = ``(1 - D_lambda)^alpha (1 - D_s)^beta``.
* ``d_lambda_khan`` - Khan's spectral distortion as the toolbox's ``D_lambda_K``:
  ``1 - Q2n(MS_up, MTF(fused))`` at the PAN scale (the fused image is MTF-filtered but not decimated; the
  reference is the upsampled MS).
* ``hqnr`` = ``(1 - D_lambda_K)(1 - D_s)``.

Blocks follow MATLAB ``blockproc``: tiles from the top-left corner, partial tiles at the right/bottom edges
are processed as they are (the toolbox itself refuses sizes that are not multiples of the block).

The upsampled MS (``ms_up``) is what the toolbox's ``indexes_evaluation_FS`` receives as ``I_MS``; when it is
not given it is computed here as ``interp23tap(ms_lr, ratio)``, which is how the toolbox builds it.

Arrays are channel-first ``(C, H, W)`` (PAN may be ``(H, W)`` or ``(1, H, W)``), computed in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spatialx.filters import imresize_bicubic, interp23tap, mtf_filter

from .reduced import _chw, q2n

__all__ = ["d_lambda", "d_lambda_khan", "d_s", "full_indices", "hqnr", "qnr"]


# --------------------------------------------------------------------------------------------------- helpers
def _block_uqi_mean(x: np.ndarray, y: np.ndarray, block: int) -> float:
    """Mean over ``blockproc`` tiles (partial ones at the right/bottom included) of the toolbox's ``uqi``."""
    h, w = x.shape
    values = [
        _uqi_tiles(x[None, i : i + block, j : j + block], y[None, i : i + block, j : j + block])
        for i in range(0, h, block)
        for j in range(0, w, block)
    ]
    return float(np.mean(np.concatenate(values)))


def _uqi_tiles(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """UIQI of each tile of ``x``/``y`` shaped (T, s1, s2) -> (T,)."""
    n = x.shape[1] * x.shape[2]
    mx = x.mean(axis=(1, 2))
    my = y.mean(axis=(1, 2))
    xc = x - mx[:, None, None]
    yc = y - my[:, None, None]
    cxy = (xc * yc).sum(axis=(1, 2)) / (n - 1)
    vx = (xc * xc).sum(axis=(1, 2)) / (n - 1)
    vy = (yc * yc).sum(axis=(1, 2)) / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 4.0 * cxy * mx * my / (vx + vy) / (mx**2 + my**2)


def _tiles(x: np.ndarray, block: int) -> np.ndarray | None:
    """(..., H, W) -> (..., T, block, block) when H and W are multiples of ``block``, else None."""
    h, w = x.shape[-2:]
    if h % block or w % block:
        return None
    lead = x.shape[:-2]
    t = x.reshape(*lead, h // block, block, w // block, block)
    t = np.moveaxis(t, -3, -2)
    return t.reshape(*lead, (h // block) * (w // block), block, block)


def _blockwise_q(x: np.ndarray, y: np.ndarray, block: int) -> float:
    """Mean blockwise UIQI of two 2-D images (``mean2(blockproc(x, [S S], uqi))``)."""
    tx, ty = _tiles(x, block), _tiles(y, block)
    if tx is None or ty is None:
        return _block_uqi_mean(x, y, block)
    return float(_uqi_tiles(tx, ty).mean())


def _ratio_from_shapes(fused: np.ndarray, ms: np.ndarray) -> int:
    (fh, fw), (mh, mw) = fused.shape[-2:], ms.shape[-2:]
    if fh % mh or fw % mw or fh // mh != fw // mw:
        raise ValueError(f"fused {fh}x{fw} is not an integer multiple of MS {mh}x{mw}")
    return fh // mh


def _upsampled_ms(
    fused: np.ndarray, ms_lr: np.ndarray, ratio: int | None, ms_up: np.ndarray | None
) -> np.ndarray:
    """The MS at the fused scale: ``ms_up`` if given, ``ms_lr`` itself if already that size, else EXP."""
    if ms_up is not None:
        up = _chw(ms_up, "ms_up")
    elif ms_lr.shape[1:] == fused.shape[1:]:
        up = ms_lr
    else:
        r = _ratio_from_shapes(fused, ms_lr) if ratio is None else int(ratio)
        up = np.asarray(interp23tap(ms_lr, r), dtype=np.float64)
    if up.shape != fused.shape:
        raise ValueError(f"upsampled MS has shape {up.shape}, fused has {fused.shape}")
    return up


def _pan_2d(pan: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    p = np.asarray(pan, dtype=np.float64)
    if p.ndim == 3:
        if p.shape[0] != 1:
            raise ValueError(f"pan must have one band, got shape {p.shape}")
        p = p[0]
    if p.shape != shape:
        raise ValueError(f"pan has shape {p.shape}, fused bands are {shape}")
    return p


# --------------------------------------------------------------------------------------------------- QNR
def d_lambda(
    fused: np.ndarray,
    ms_lr: np.ndarray,
    block: int = 32,
    p: float = 1,
    *,
    ms_up: np.ndarray | None = None,
) -> float:
    """Spectral distortion D_lambda of QNR, as the toolbox's ``D_lambda`` (toolbox 1.0 option).

    For each band pair (i < j): ``Q_f`` = mean blockwise UIQI of fused bands i, j and ``Q_m`` = the same on
    the MS upsampled to the fused scale; ``D = (mean |Q_f - Q_m|^p)^(1/p)``. ``ms_lr`` is the original MS
    (upsampled here with the 23-tap interpolator, the ratio taken from the shapes) unless ``ms_up`` is given,
    or ``ms_lr`` is already at the fused size. 0 means no spectral distortion.
    """
    f = _chw(fused, "fused")
    up = _upsampled_ms(f, _chw(ms_lr, "ms_lr"), None, ms_up)
    bands = f.shape[0]
    if bands < 2:
        raise ValueError("D_lambda needs at least two bands")
    total = 0.0
    for i in range(bands - 1):
        for j in range(i + 1, bands):
            q_exp = _blockwise_q(up[i], up[j], block)
            q_fus = _blockwise_q(f[i], f[j], block)
            total += abs(q_fus - q_exp) ** p
    pairs = bands * (bands - 1) / 2
    return float((total / pairs) ** (1.0 / p))


def _degraded_pan(pan2d: np.ndarray, ratio: int) -> np.ndarray:
    """PAN low-passed as the toolbox's D_s does: ``interp23tap(imresize(PAN, 1/ratio), ratio)``."""
    low = imresize_bicubic(pan2d[None], 1.0 / ratio)
    return np.asarray(interp23tap(np.asarray(low, dtype=np.float64), ratio), dtype=np.float64)[0]


def d_s(
    fused: np.ndarray,
    ms_lr: np.ndarray,
    pan: np.ndarray,
    ratio: int,
    block: int = 32,
    q: float = 1,
    *,
    ms_up: np.ndarray | None = None,
) -> float:
    """Spatial distortion D_s of QNR, as the toolbox's ``D_s`` (toolbox 1.0 option).

    For each band b: ``Q_high`` = mean blockwise UIQI(fused_b, PAN), ``Q_low`` = mean blockwise
    UIQI(MS_up_b, PAN_lp) with ``PAN_lp = interp23tap(imresize_bicubic(PAN, 1/ratio), ratio)``;
    ``D_s = (mean_b |Q_high - Q_low|^q)^(1/q)``. 0 means no spatial distortion.
    """
    f = _chw(fused, "fused")
    r = int(ratio)
    up = _upsampled_ms(f, _chw(ms_lr, "ms_lr"), r, ms_up)
    p2 = _pan_2d(pan, f.shape[1:])
    pan_lp = _degraded_pan(p2, r)
    total = 0.0
    for b in range(f.shape[0]):
        q_high = _blockwise_q(f[b], p2, block)
        q_low = _blockwise_q(up[b], pan_lp, block)
        total += abs(q_high - q_low) ** q
    return float((total / f.shape[0]) ** (1.0 / q))


def qnr(
    fused: np.ndarray,
    ms_lr: np.ndarray,
    pan: np.ndarray,
    ratio: int,
    block: int = 32,
    p: float = 1,
    q: float = 1,
    alpha: float = 1,
    beta: float = 1,
    *,
    ms_up: np.ndarray | None = None,
) -> float:
    """QNR = ``(1 - D_lambda)^alpha * (1 - D_s)^beta`` (1 is ideal)."""
    f = _chw(fused, "fused")
    up = _upsampled_ms(f, _chw(ms_lr, "ms_lr"), int(ratio), ms_up)
    dl = d_lambda(f, ms_lr, block, p, ms_up=up)
    ds = d_s(f, ms_lr, pan, ratio, block, q, ms_up=up)
    return float((1.0 - dl) ** alpha * (1.0 - ds) ** beta)


# -------------------------------------------------------------------------------------------------- HQNR
def d_lambda_khan(
    fused: np.ndarray,
    ms_lr: np.ndarray,
    gains: float | Sequence[float] | np.ndarray,
    ratio: int,
    block: int = 32,
    *,
    ms_up: np.ndarray | None = None,
) -> float:
    """Khan's spectral distortion as the toolbox's ``D_lambda_K``: ``1 - Q2n(MS_up, MTF(fused))``.

    The fused image is blurred with the sensor's MTF-matched filters (``gains`` at Nyquist, one per band, or
    one for all) and compared, *at the PAN scale and without decimation*, with the MS upsampled by the 23-tap
    interpolator (``ms_up``, computed from ``ms_lr`` when not given), using Q2n with ``block`` x ``block``
    blocks. (Khan et al.'s paper and older toolbox copies decimate the filtered image and compare with the
    original MS instead; that gives different numbers.)
    """
    f = _chw(fused, "fused")
    r = int(ratio)
    up = _upsampled_ms(f, _chw(ms_lr, "ms_lr"), r, ms_up)
    blurred = np.asarray(mtf_filter(f, gains, r), dtype=np.float64)
    return float(1.0 - q2n(up, blurred, block, block))


def hqnr(
    fused: np.ndarray,
    ms_lr: np.ndarray,
    pan: np.ndarray,
    gains: float | Sequence[float] | np.ndarray,
    ratio: int,
    block: int = 32,
    *,
    ms_up: np.ndarray | None = None,
) -> float:
    """Hybrid QNR = ``(1 - D_lambda_K)(1 - D_s)`` (D_s with q = 1), as the toolbox's ``HQNR``."""
    f = _chw(fused, "fused")
    up = _upsampled_ms(f, _chw(ms_lr, "ms_lr"), int(ratio), ms_up)
    dl = d_lambda_khan(f, ms_lr, gains, ratio, block, ms_up=up)
    ds = d_s(f, ms_lr, pan, ratio, block, 1, ms_up=up)
    return float((1.0 - dl) * (1.0 - ds))


def full_indices(
    fused: np.ndarray,
    ms_lr: np.ndarray,
    pan: np.ndarray,
    ratio: int,
    gains: float | Sequence[float] | np.ndarray,
    block: int = 32,
    p: float = 1,
    q: float = 1,
    *,
    ms_up: np.ndarray | None = None,
) -> dict[str, float]:
    """All no-reference indices (toolbox ``indexes_evaluation_FS`` with flagQNR 1 and 0).

    Returns a dict with keys ``D_lambda, D_s, QNR, D_lambda_K, HQNR``. ``gains`` are the MS bands' MTF gains
    at Nyquist (e.g. QuickBird 0.34 0.32 0.30 0.22). HQNR uses D_s with q = 1 whatever ``q`` is, as the
    toolbox does.
    """
    f = _chw(fused, "fused")
    ms = _chw(ms_lr, "ms_lr")
    r = int(ratio)
    up = _upsampled_ms(f, ms, r, ms_up)
    dl = d_lambda(f, ms, block, p, ms_up=up)
    ds = d_s(f, ms, pan, r, block, q, ms_up=up)
    ds1 = ds if q == 1 else d_s(f, ms, pan, r, block, 1, ms_up=up)
    dlk = d_lambda_khan(f, ms, gains, r, block, ms_up=up)
    return {
        "D_lambda": dl,
        "D_s": ds,
        "QNR": float((1.0 - dl) * (1.0 - ds)),
        "D_lambda_K": dlk,
        "HQNR": float((1.0 - dlk) * (1.0 - ds1)),
    }
