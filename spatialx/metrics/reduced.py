"""Reference-based (reduced-resolution) quality indices, numpy backend.

Every index follows the community's reference MATLAB pansharpening toolbox (Vivone et al.) where that toolbox
defines it, including its quirks, so that numbers are comparable with the literature:

* ``q2n``  - Q4 / Q8 / Q2^n (Garzelli & Nencini): hypercomplex UIQI on non-overlapping blocks, on values
  rounded to uint16, bands padded with zero bands to a power of two, image mirror-padded to a multiple of the
  block.
* ``q_index`` - UIQI (Wang & Bovik) per band with a *sliding* 32x32 window over the valid region (the
  toolbox's ``Q`` calls Wang's ``img_qi``, which uses ``filter2(ones(32), x, 'valid')``), mean over bands.
* ``sam`` - spectral angle in degrees, averaged over pixels whose norm product is non-zero.
* ``ergas`` - ``(100 / ratio) * sqrt(mean_b(MSE_b / mean_b(ref)^2))``, ratio = PAN/MS scale ratio (e.g. 4).
* ``scc`` - Sobel gradient magnitude of the one-pixel interior of each band (zero-padded ``imfilter``), then
  the *uncentred* correlation over all bands.

Indices the toolbox does not compute (PSNR, SSIM, CC, RMSE, MAE) use the usual definitions, with the data
range given explicitly as the sensor's maximum value (e.g. 2047 for 11-bit data).

All functions take images channel-first ``(C, H, W)`` (a 2-D array is one band) and compute in float64.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import maximum_filter, minimum_filter

__all__ = [
    "cc",
    "cut_border",
    "ergas",
    "mae",
    "mpsnr",
    "mssim",
    "psnr",
    "q2n",
    "q_index",
    "reduced_indices",
    "rmse",
    "sam",
    "scc",
    "ssim",
]

_EPS = float(np.finfo(np.float64).eps)  # MATLAB's eps


# --------------------------------------------------------------------------------------------------- helpers
def _chw(image: np.ndarray, name: str = "image") -> np.ndarray:
    """``image`` as a (C, H, W) float64 array; a 2-D array is one band."""
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{name} must be (C, H, W) or (H, W), got shape {arr.shape}")
    return arr


def _pair(ref: np.ndarray, fused: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, f = _chw(ref, "ref"), _chw(fused, "fused")
    if r.shape != f.shape:
        raise ValueError(f"ref and fused must have the same shape, got {r.shape} and {f.shape}")
    return r, f


def _box_sum_valid(x: np.ndarray, size: int) -> np.ndarray:
    """Sum over each ``size`` x ``size`` window inside the last two axes (``filter2(ones, x, 'valid')``).

    Separable running sums via cumulative sums (float64; relative error ~1e-13 on 11-bit imagery).
    """
    c = np.cumsum(x, axis=-2)
    c = np.concatenate([np.zeros_like(c[..., :1, :]), c], axis=-2)
    rows = c[..., size:, :] - c[..., :-size, :]
    c = np.cumsum(rows, axis=-1)
    c = np.concatenate([np.zeros_like(c[..., :1]), c], axis=-1)
    return c[..., size:] - c[..., :-size]


def _to_uint16_values(x: np.ndarray) -> np.ndarray:
    """MATLAB ``uint16(x)`` as float64: round half away from zero, saturate to [0, 65535], NaN -> 0."""
    y = np.floor(np.clip(x, 0.0, 65535.0) + 0.5)  # x >= 0 after the clip, so floor(x + 0.5) rounds half up
    y[np.isnan(y)] = 0.0
    return y


# ----------------------------------------------------------------------------------------------- border
def cut_border(img: np.ndarray, cut: int = 21) -> np.ndarray:
    """Drop the border as the toolbox's ``I(cut:end-cut, cut:end-cut, :)`` (1-based) does.

    Rows/columns ``cut-1 .. H-cut-1`` (0-based) are kept, i.e. numpy ``[..., cut-1:H-cut, cut-1:W-cut]``: for
    ``H = 480`` and ``cut = 21`` that is ``[20:459]``, 439 pixels (one more row/column than ``cut`` pixels
    dropped on each side: 20 at the top/left, 21 at the bottom/right). ``cut <= 0`` returns the image as is.
    Works on (C, H, W) or (H, W) arrays (the last two axes are cut); no copy is made.
    """
    arr = np.asarray(img)
    if cut <= 0:
        return arr
    h, w = arr.shape[-2:]
    if h - 2 * cut + 1 < 1 or w - 2 * cut + 1 < 1:
        raise ValueError(f"image of {h}x{w} pixels is too small for a border cut of {cut}")
    return arr[..., cut - 1 : h - cut, cut - 1 : w - cut]


# -------------------------------------------------------------------------------------------------- Q2n
def _hypercomplex_mult(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Product of hypercomplex numbers stored on axis 0 (length a power of 2), as the toolbox's onion_mult.

    Cayley-Dickson recursion with the toolbox's sign convention: split ``x = (a, b)``, ``y = (c, d)`` into
    halves, let ``b' = conj(b)``, ``d' = conj(d)`` (conj negates every component but the first); the
    product is ``(a c - d' conj(b'), conj(a) d' + c b')``. For two components this is the complex product.
    """
    n = x.shape[0]
    if n == 1:
        return x * y
    h = n // 2
    a, c = x[:h], y[:h]
    b, d = _conj(x[h:]), _conj(y[h:])
    first = _hypercomplex_mult(a, c) - _hypercomplex_mult(d, _conj(b))
    second = _hypercomplex_mult(_conj(a), d) + _hypercomplex_mult(c, b)
    return np.concatenate([first, second], axis=0)


def _conj(x: np.ndarray) -> np.ndarray:
    out = -x
    out[0] = x[0]
    return out


def _q2n_blocks(ref_blocks: np.ndarray, fus_blocks: np.ndarray) -> np.ndarray:
    """Hypercomplex quality vector of each block, as the toolbox's ``onions_quality``.

    ``ref_blocks``/``fus_blocks``: (N, nblocks, s1, s2) float64, N a power of 2. Returns (N, nblocks).
    Both blocks are normalised with the *reference* block's per-band mean and sample std (std 0 -> eps; a
    band whose reference mean is exactly 0 shifts the fused band without scaling it, as the toolbox does);
    the fused block enters conjugated.
    """
    s1, s2 = ref_blocks.shape[2:]
    npx = s1 * s2
    mean = ref_blocks.mean(axis=(2, 3), keepdims=True)
    std = ref_blocks.std(axis=(2, 3), ddof=1, keepdims=True)
    std = np.where(std == 0, _EPS, std)
    dat1 = (ref_blocks - mean) / std + 1.0
    scale2 = np.where(mean == 0, 1.0, std)
    dat2 = _conj((fus_blocks - mean) / scale2 + 1.0)

    m1 = dat1.mean(axis=(2, 3))  # (N, nblocks)
    m2 = dat2.mean(axis=(2, 3))
    mod_m1_sq = (m1**2).sum(axis=0)
    mod_m2_sq = (m2**2).sum(axis=0)
    termine2 = np.sqrt(mod_m1_sq) * np.sqrt(mod_m2_sq)
    termine4 = np.sqrt(mod_m1_sq) ** 2 + np.sqrt(mod_m2_sq) ** 2
    unbias = npx / (npx - 1)
    int1 = unbias * (np.sqrt((dat1**2).sum(axis=0)) ** 2).mean(axis=(1, 2))
    int2 = unbias * (np.sqrt((dat2**2).sum(axis=0)) ** 2).mean(axis=(1, 2))
    termine3 = int1 + int2 - unbias * (np.sqrt(mod_m1_sq) ** 2 + np.sqrt(mod_m2_sq) ** 2)
    mean_bias = 2.0 * termine2 / termine4

    qu = _hypercomplex_mult(dat1, dat2).mean(axis=(2, 3))  # (N, nblocks)
    qm = _hypercomplex_mult(m1, m2)
    degenerate = termine3 == 0
    cbm = 2.0 / np.where(degenerate, 1.0, termine3)
    q = (unbias * qu - unbias * qm) * mean_bias * cbm
    if np.any(degenerate):
        q[:, degenerate] = 0.0
        q[-1, degenerate] = mean_bias[degenerate]
    return q


def _blocks(x: np.ndarray, block: int, shift: int, steps_y: int, steps_x: int) -> np.ndarray:
    """(n, H, W) -> (n, steps_y * steps_x, block, block): blocks whose corners are multiples of ``shift``."""
    n = x.shape[0]
    if shift == block:
        t = x[:, : steps_y * block, : steps_x * block].reshape(n, steps_y, block, steps_x, block)
        return t.transpose(0, 1, 3, 2, 4).reshape(n, steps_y * steps_x, block, block)
    iy = (np.arange(steps_y) * shift)[:, None, None, None] + np.arange(block)[None, None, :, None]
    ix = (np.arange(steps_x) * shift)[None, :, None, None] + np.arange(block)[None, None, None, :]
    return x[:, iy, ix].reshape(n, steps_y * steps_x, block, block)


def q2n(ref: np.ndarray, fused: np.ndarray, block: int = 32, shift: int = 32) -> float:
    """Q2^n index (Q4 for 4 bands, Q8 for 8), exactly as the toolbox's ``q2n(I_GT, I_F, block, shift)``.

    Steps: mirror-pad (symmetric, edge repeated) rows/columns at the bottom/right so that the blocks at
    multiples of ``shift`` cover the image; round both images to uint16 values (negatives -> 0); append zero
    bands up to a power-of-two band count; compute the hypercomplex UIQI of every ``block`` x ``block`` block;
    take the norm of each block's quality vector; average over blocks. 1 means identical.
    """
    r, f = _pair(ref, fused)
    if block < 2 or shift < 1:
        raise ValueError("block must be >= 2 and shift >= 1")
    bands, h, w = r.shape
    steps_y, steps_x = max(math.ceil(h / shift), 1), max(math.ceil(w / shift), 1)
    pad_y = (steps_y - 1) * shift + block - h
    pad_x = (steps_x - 1) * shift + block - w
    if pad_y > 0 or pad_x > 0:
        pad = ((0, 0), (0, max(pad_y, 0)), (0, max(pad_x, 0)))
        r = np.pad(r, pad, mode="symmetric")
        f = np.pad(f, pad, mode="symmetric")
    r = _to_uint16_values(r)
    f = _to_uint16_values(f)
    n = 1 << max(bands - 1, 0).bit_length()
    if n != bands:
        zeros = np.zeros((n - bands, *r.shape[1:]))
        r = np.concatenate([r, zeros])
        f = np.concatenate([f, zeros])
    q = _q2n_blocks(_blocks(r, block, shift, steps_y, steps_x), _blocks(f, block, shift, steps_y, steps_x))
    return float(np.sqrt((q**2).sum(axis=0)).mean())


# ---------------------------------------------------------------------------------------------------- Q
def _uiqi_sliding(x: np.ndarray, y: np.ndarray, block: int) -> np.ndarray:
    """Mean UIQI of each band pair over all ``block`` x ``block`` windows (Wang's ``img_qi``), shape (C,)."""
    npx = block * block
    s1 = _box_sum_valid(x, block)
    s2 = _box_sum_valid(y, block)
    s11 = _box_sum_valid(x * x, block)
    s22 = _box_sum_valid(y * y, block)
    s12 = _box_sum_valid(x * y, block)
    prod_means = s1 * s2
    sum_sq_means = s1 * s1 + s2 * s2
    numerator = 4.0 * (npx * s12 - prod_means) * prod_means
    den1 = npx * (s11 + s22) - sum_sq_means
    den = den1 * sum_sq_means
    qmap = np.ones_like(den)
    # Flatness is tested exactly: running sums leave round-off where a window's variance is truly zero.
    both_flat = _flat_windows(x, block) & _flat_windows(y, block)
    flat_pair = both_flat & (sum_sq_means != 0)
    qmap[flat_pair] = 2.0 * prod_means[flat_pair] / sum_sq_means[flat_pair]
    ok = (den != 0) & ~both_flat
    qmap[ok] = numerator[ok] / den[ok]
    return qmap.mean(axis=(-2, -1))


def _flat_windows(x: np.ndarray, block: int) -> np.ndarray:
    """True for each ``block`` x ``block`` window (valid positions) whose values are all equal."""
    size = (1,) * (x.ndim - 2) + (block, block)
    spread = maximum_filter(x, size=size, mode="nearest") - minimum_filter(x, size=size, mode="nearest")
    start = block // 2  # scipy centres an even window at index block // 2 of it
    rows, cols = x.shape[-2] - block + 1, x.shape[-1] - block + 1
    return spread[..., start:start + rows, start:start + cols] == 0


def q_index(ref: np.ndarray, fused: np.ndarray, block: int = 32) -> float:
    """Q_avg: UIQI per band, sliding ``block`` x ``block`` window (valid positions only), mean over bands.

    This is the toolbox's ``Q`` (``img_qi`` per band, window 32): every window position fully inside the image
    (stride 1), constant-window conventions of ``img_qi`` (two flat windows -> 1; flat but different means ->
    ``2 mx my / (mx^2 + my^2)``). If the image is smaller than the window, the whole band is one window.
    """
    r, f = _pair(ref, fused)
    size = min(block, r.shape[1], r.shape[2])
    return float(_uiqi_sliding(r, f, size).mean())


# ------------------------------------------------------------------------------------------ SAM / ERGAS
def sam(ref: np.ndarray, fused: np.ndarray) -> float:
    """Spectral Angle Mapper in degrees: mean over pixels of ``acos(<r, f> / (|r| |f|))``.

    Pixels where ``|r| |f| == 0`` are excluded from the mean (the toolbox's ``SAM``); the cosine is clipped to
    [-1, 1] (MATLAB takes the real part of ``acos``, which is the same). Averaging is over *angles*: libraries
    that average in another order (e.g. over cosines) give different numbers.
    """
    r, f = _pair(ref, fused)
    dot = (r * f).sum(axis=0)
    norm = np.sqrt((r * r).sum(axis=0) * (f * f).sum(axis=0))
    valid = norm != 0
    if not np.any(valid):
        return 0.0
    cos = np.clip(dot[valid] / norm[valid], -1.0, 1.0)
    return float(np.degrees(np.arccos(cos).sum() / valid.sum()))


def ergas(ref: np.ndarray, fused: np.ndarray, ratio: float) -> float:
    """ERGAS = ``(100 / ratio) * sqrt(mean_b(MSE_b / mean(ref_b)^2))``, ``ratio`` = PAN/MS scale ratio (4).

    ``ratio`` is the resolution ratio as a number >= 1 (so 100/ratio = 25 for QuickBird), as in torchmetrics;
    sewar takes the inverse (``r = 1/4``) - see the tests.
    """
    r, f = _pair(ref, fused)
    mse = ((r - f) ** 2).mean(axis=(1, 2))
    mu = r.mean(axis=(1, 2))
    return float((100.0 / ratio) * np.sqrt((mse / mu**2).mean()))


# -------------------------------------------------------------------------------------------------- SCC
def _sobel_magnitude(img: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of each band's one-pixel interior, zero borders (``imfilter`` default)."""
    core = img[:, 1:-1, 1:-1]
    p = np.pad(core, ((0, 0), (1, 1), (1, 1)))
    # vertical derivative kernel [[1, 2, 1], [0, 0, 0], [-1, -2, -1]] (correlation), and its transpose
    smooth_x = p[:, :, :-2] + 2.0 * p[:, :, 1:-1] + p[:, :, 2:]
    gy = smooth_x[:, :-2, :] - smooth_x[:, 2:, :]
    smooth_y = p[:, :-2, :] + 2.0 * p[:, 1:-1, :] + p[:, 2:, :]
    gx = smooth_y[:, :, :-2] - smooth_y[:, :, 2:]
    return np.sqrt(gy * gy + gx * gx)


def scc(ref: np.ndarray, fused: np.ndarray) -> float:
    """Spatial correlation coefficient as the toolbox's ``SCC``.

    Each band's interior ``[1:-1, 1:-1]`` is filtered with the 3x3 Sobel kernel and its transpose (zero
    padding), the gradient magnitudes are formed, and the *uncentred* correlation
    ``sum(Gf * Gr) / sqrt(sum(Gf^2) sum(Gr^2))`` is taken over all pixels of all bands.
    """
    r, f = _pair(ref, fused)
    if r.shape[1] < 3 or r.shape[2] < 3:
        raise ValueError("scc needs images of at least 3x3 pixels")
    gr = _sobel_magnitude(r)
    gf = _sobel_magnitude(f)
    return float((gf * gr).sum() / np.sqrt((gf * gf).sum()) / np.sqrt((gr * gr).sum()))


# ------------------------------------------------------------------------------- PSNR, SSIM, CC, errors
def rmse(ref: np.ndarray, fused: np.ndarray) -> float:
    """Root mean squared error over all pixels and bands."""
    r, f = _pair(ref, fused)
    return float(np.sqrt(((r - f) ** 2).mean()))


def mae(ref: np.ndarray, fused: np.ndarray) -> float:
    """Mean absolute error over all pixels and bands."""
    r, f = _pair(ref, fused)
    return float(np.abs(r - f).mean())


def psnr(ref: np.ndarray, fused: np.ndarray, max_value: float) -> float:
    """PSNR in dB of the whole cube: ``10 log10(max_value^2 / MSE)``, MSE over all pixels and bands.

    ``max_value`` is the data range (the sensor's maximum value, e.g. 2047 for 11-bit data, 1 for [0, 1]
    data). Identical images give ``inf``.
    """
    r, f = _pair(ref, fused)
    mse = ((r - f) ** 2).mean()
    return float("inf") if mse == 0 else float(10.0 * np.log10(max_value**2 / mse))


def mpsnr(ref: np.ndarray, fused: np.ndarray, max_value: float) -> float:
    """Mean over bands of the per-band PSNR (the "MPSNR" of the hyperspectral-fusion literature)."""
    r, f = _pair(ref, fused)
    mse = ((r - f) ** 2).mean(axis=(1, 2))
    with np.errstate(divide="ignore"):
        per_band = 10.0 * np.log10(max_value**2 / mse)
    return float(per_band.mean())


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of the last two axes with the symmetric 1-D window ``g``."""
    rows = sliding_window_view(x, g.size, axis=-2) @ g
    return sliding_window_view(rows, g.size, axis=-1) @ g


def _ssim_per_band(r: np.ndarray, f: np.ndarray, max_value: float, win: int, sigma: float) -> np.ndarray:
    size = min(win, r.shape[1], r.shape[2])
    g = _gaussian_window(size, sigma)
    c1 = (0.01 * max_value) ** 2
    c2 = (0.03 * max_value) ** 2
    mu_r = _filter_valid(r, g)
    mu_f = _filter_valid(f, g)
    var_r = _filter_valid(r * r, g) - mu_r**2
    var_f = _filter_valid(f * f, g) - mu_f**2
    cov = _filter_valid(r * f, g) - mu_r * mu_f
    smap = ((2 * mu_r * mu_f + c1) * (2 * cov + c2)) / ((mu_r**2 + mu_f**2 + c1) * (var_r + var_f + c2))
    return smap.mean(axis=(1, 2))


def ssim(ref: np.ndarray, fused: np.ndarray, max_value: float, win: int = 11, sigma: float = 1.5) -> float:
    """SSIM (Wang et al. 2004): Gaussian window ``win`` x ``win`` (sigma 1.5), K1 = 0.01, K2 = 0.03, data
    range ``max_value``; SSIM map over the valid window positions (as Wang's ``ssim_index.m``), averaged over
    pixels and bands.

    Matches ``sewar.full_ref.ssim`` with a Gaussian 11/1.5 filter and ``mode='valid'``. torchmetrics'
    ``structural_similarity_index_measure`` reflect-pads and averages the full-size map instead (differs at
    ~1e-4 on typical images).
    """
    r, f = _pair(ref, fused)
    return float(_ssim_per_band(r, f, max_value, win, sigma).mean())


def mssim(ref: np.ndarray, fused: np.ndarray, max_value: float, win: int = 11, sigma: float = 1.5) -> float:
    """Mean over bands of the per-band SSIM ("MSSIM" of the hyperspectral literature; not multi-scale SSIM).

    All bands have the same size, so this equals :func:`ssim`; it exists under this name for reports that
    quote MPSNR/MSSIM side by side.
    """
    return ssim(ref, fused, max_value, win, sigma)


def cc(ref: np.ndarray, fused: np.ndarray) -> float:
    """Cross-correlation: Pearson correlation coefficient of each band pair, mean over bands.

    A band with zero variance in either image gives NaN for that band (undefined correlation).
    """
    r, f = _pair(ref, fused)
    rc = r - r.mean(axis=(1, 2), keepdims=True)
    fc = f - f.mean(axis=(1, 2), keepdims=True)
    num = (rc * fc).sum(axis=(1, 2))
    den = np.sqrt((rc * rc).sum(axis=(1, 2)) * (fc * fc).sum(axis=(1, 2)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float((num / den).mean())


# ------------------------------------------------------------------------------------------------ bundle
def reduced_indices(
    ref: np.ndarray,
    fused: np.ndarray,
    ratio: float,
    max_value: float,
    cut: int = 21,
    block: int = 32,
) -> dict[str, float]:
    """All reference-based indices as the toolbox's ``indexes_evaluation`` computes them (plus PSNR/SSIM/CC).

    Both images are cut with :func:`cut_border` first (``cut=0`` disables it; images too small for the cut
    are evaluated whole). Q2n uses ``block`` x ``block`` blocks with shift ``block``, Q a ``block`` sliding
    window, ERGAS the ``ratio``, PSNR/SSIM the data range ``max_value``. The fused image is not clipped
    (the toolbox's ``thvalues=0``).

    Returns a dict with keys ``Q2n, Q, SAM, ERGAS, SCC, PSNR, SSIM, CC``.
    """
    r, f = _pair(ref, fused)
    h, w = r.shape[1:]
    if cut > 0 and min(h, w) > 2 * cut:
        r, f = cut_border(r, cut), cut_border(f, cut)
    return {
        "Q2n": q2n(r, f, block, block),
        "Q": q_index(r, f, block),
        "SAM": sam(r, f),
        "ERGAS": ergas(r, f, ratio),
        "SCC": scc(r, f),
        "PSNR": psnr(r, f, max_value),
        "SSIM": ssim(r, f, max_value),
        "CC": cc(r, f),
    }
