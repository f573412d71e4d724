"""Image-fusion quality indices in torch: batched, on any device and floating dtype, differentiable.

The same definitions as the numpy backend (:mod:`spatialx.metrics.reduced`, :mod:`spatialx.metrics.full`),
which follows the reference MATLAB pansharpening toolbox, rewritten in torch so that networks can use them
for validation during training and as losses without numpy round trips. Import it explicitly::

    from spatialx.metrics import torch_backend as tm

    scores = tm.reduced_indices(ref, fused, ratio=4, max_value=2047)  # {"Q2n": (B,), "Q": (B,), ...}

Conventions:

* Images are ``(B, C, H, W)`` tensors (a ``(C, H, W)`` tensor is one image, a ``(H, W)`` tensor one band of
  one image); ``ref`` and ``fused`` must have the same shape and device. Computation is in the inputs'
  floating dtype (the promoted one when they differ; integer tensors become the default dtype), on their
  device. Every index returns a tensor of shape ``(B,)``, one value per image, in that dtype.
* Values agree with the numpy backend to ~1e-13 relative in float64 and ~1e-6 in float32 (measured on
  random and structured scenes and on the toolbox's QuickBird arrays; ``tests/test_metrics_torch.py``).
  Window sums are pairwise (not running sums), local variances (Q, SSIM) are formed from band-centred
  data, and SAM uses an ``atan2`` form, so that float32 loses nothing to cancellation. One intended
  difference: Q tests window flatness exactly, where the numpy backend's running sums can miss it on
  non-integer data (a flat window pair then gets an arbitrary value there instead of img_qi's flat rule).
* Gradients: every index except Q2n is differentiable (Q2n rounds to uint16 values as the toolbox does, so
  its gradient is zero). Non-smooth points get a finite subgradient instead of NaN: the square roots of
  ERGAS, RMSE and the Sobel magnitude have gradient 0 at 0, SAM's angle is computed through ``atan2``
  (gradient 0 at identical spectra), PSNR of identical images is ``inf`` with gradient 0.

Reduced resolution (with a reference): :func:`q2n`, :func:`q_index`, :func:`sam`, :func:`ergas`, :func:`scc`,
:func:`psnr`, :func:`mpsnr`, :func:`ssim`, :func:`mssim`, :func:`cc`, :func:`rmse`, :func:`mae`, bundled by
:func:`reduced_indices` after :func:`cut_border`.

Full resolution (no reference), for the parts that depend on the fused image: :func:`d_lambda`, :func:`d_s`,
:func:`qnr` take the *already upsampled* MS (``ms_up``, the toolbox's ``I_MS``) and, for D_s, the already
low-passed PAN (``pan_lp``); both depend only on the inputs, so compute them once with the numpy filters::

    from spatialx.filters import imresize_bicubic, interp23tap
    ms_up = interp23tap(ms_lr, ratio)
    pan_lp = interp23tap(imresize_bicubic(pan[None], 1 / ratio), ratio)[0]

Khan's D_lambda_K and HQNR (MTF filtering of the fused image) are only in the numpy backend.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "cc",
    "cut_border",
    "d_lambda",
    "d_s",
    "ergas",
    "mae",
    "mpsnr",
    "mssim",
    "psnr",
    "q2n",
    "q_index",
    "qnr",
    "reduced_indices",
    "rmse",
    "sam",
    "scc",
    "ssim",
]

_EPS = 2.220446049250313e-16  # MATLAB's eps (float64), used whatever the dtype, as the numpy backend does

_SPATIAL = (-2, -1)
_IMAGE = (1, 2, 3)


# --------------------------------------------------------------------------------------------------- helpers
def _bchw(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """``image`` as a (B, C, H, W) floating tensor; (C, H, W) is one image, (H, W) one band of one image."""
    t = torch.as_tensor(image)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[None]
    if t.ndim != 4:
        raise ValueError(f"{name} must be (B, C, H, W), (C, H, W) or (H, W), got shape {tuple(t.shape)}")
    return t


def _pair(ref: torch.Tensor, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r, f = _bchw(ref, "ref"), _bchw(fused, "fused")
    if r.shape != f.shape:
        raise ValueError(f"ref and fused must have the same shape, got {tuple(r.shape)} and {tuple(f.shape)}")
    if r.device != f.device:
        raise ValueError(f"ref and fused must be on the same device, got {r.device} and {f.device}")
    dtype = torch.promote_types(r.dtype, f.dtype)
    return r.to(dtype), f.to(dtype)


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` whose gradient at ``x == 0`` is 0 instead of inf (NaN and negatives still give NaN)."""
    zero = x == 0
    return torch.where(zero, torch.zeros_like(x), torch.sqrt(torch.where(zero, torch.ones_like(x), x)))


def _window_sum(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Sum over every window of ``size`` samples fully inside ``dim`` ('valid'), by doubling.

    Window sums of length 1, 2, 4, ... are built by pairwise addition and the ones of ``size``'s binary digits
    combined: O(log size) full-array additions, pairwise-summation accuracy (no running cumulative sums, which
    would lose float32 precision), differentiable, any device.
    """
    n_out = x.shape[dim] - size + 1
    result: torch.Tensor | None = None
    offset, length, remaining, partial = 0, 1, size, x
    while True:
        if remaining & 1:
            part = partial.narrow(dim, offset, n_out)
            result = part if result is None else result + part
            offset += length
        remaining >>= 1
        if not remaining:
            break
        m = partial.shape[dim] - length
        partial = partial.narrow(dim, 0, m) + partial.narrow(dim, length, m)
        length *= 2
    assert result is not None
    return result


def _box_sum(x: torch.Tensor, size_y: int, size_x: int) -> torch.Tensor:
    """Sum over every ``size_y`` x ``size_x`` window inside the last two axes (``filter2(ones, x, 'valid')``)."""
    return _window_sum(_window_sum(x, size_y, -2), size_x, -1)


def _flat_pairs(x: torch.Tensor, y: torch.Tensor, size: int) -> torch.Tensor:
    """True where both ``size`` x ``size`` windows (valid positions) of ``x`` and of ``y`` are constant.

    A window is constant when no two neighbours in it differ: counts of differing neighbours are summed over
    the window exactly (0/1 values), so the test is exact whatever the dtype.
    """
    if size == 1:
        return torch.ones_like(x, dtype=torch.bool)
    step_x = ((x[..., 1:] != x[..., :-1]) | (y[..., 1:] != y[..., :-1])).to(x.dtype)
    step_y = ((x[..., 1:, :] != x[..., :-1, :]) | (y[..., 1:, :] != y[..., :-1, :])).to(x.dtype)
    return (_box_sum(step_x, size, size - 1) == 0) & (_box_sum(step_y, size - 1, size) == 0)


def _to_uint16_values(x: torch.Tensor) -> torch.Tensor:
    """MATLAB ``uint16(x)`` as floats: round half away from zero, saturate to [0, 65535], NaN -> 0."""
    y = torch.floor(torch.clamp(x, 0.0, 65535.0) + 0.5)
    return torch.nan_to_num(y, nan=0.0)


# ----------------------------------------------------------------------------------------------- border
def cut_border(img: torch.Tensor, cut: int = 21) -> torch.Tensor:
    """Drop the border as the toolbox's ``I(cut:end-cut, cut:end-cut, :)`` (1-based) does.

    Keeps ``[..., cut-1:H-cut, cut-1:W-cut]`` of the last two axes (20 rows/columns dropped at the top/left,
    21 at the bottom/right for ``cut = 21``); ``cut <= 0`` returns the tensor as is. Returns a view.
    """
    t = torch.as_tensor(img)
    if cut <= 0:
        return t
    h, w = t.shape[-2:]
    if h - 2 * cut + 1 < 1 or w - 2 * cut + 1 < 1:
        raise ValueError(f"image of {h}x{w} pixels is too small for a border cut of {cut}")
    return t[..., cut - 1 : h - cut, cut - 1 : w - cut]


# -------------------------------------------------------------------------------------------------- Q2n
def _conj(x: torch.Tensor) -> torch.Tensor:
    """Hypercomplex conjugate along dim 0: every component but the first negated."""
    return torch.cat([x[:1], -x[1:]], dim=0)


def _hypercomplex_mult(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Product of hypercomplex numbers stored on dim 0 (a power of 2), as the toolbox's ``onion_mult``.

    Cayley-Dickson recursion with the toolbox's sign convention (see the numpy backend).
    """
    n = x.shape[0]
    if n == 1:
        return x * y
    h = n // 2
    a, c = x[:h], y[:h]
    b, d = _conj(x[h:]), _conj(y[h:])
    first = _hypercomplex_mult(a, c) - _hypercomplex_mult(d, _conj(b))
    second = _hypercomplex_mult(_conj(a), d) + _hypercomplex_mult(c, b)
    return torch.cat([first, second], dim=0)


def _q2n_blocks(ref_blocks: torch.Tensor, fus_blocks: torch.Tensor) -> torch.Tensor:
    """Hypercomplex quality vector of each block, as the toolbox's ``onions_quality``.

    ``ref_blocks``/``fus_blocks``: (N, B, nblocks, s1, s2), N a power of 2. Returns (N, B, nblocks).
    """
    s1, s2 = ref_blocks.shape[-2:]
    npx = s1 * s2
    mean = ref_blocks.mean(dim=_SPATIAL, keepdim=True)
    std = ref_blocks.std(dim=_SPATIAL, correction=1, keepdim=True)
    std = torch.where(std == 0, torch.full_like(std, _EPS), std)
    dat1 = (ref_blocks - mean) / std + 1.0
    scale2 = torch.where(mean == 0, torch.ones_like(std), std)
    dat2 = _conj((fus_blocks - mean) / scale2 + 1.0)

    m1 = dat1.mean(dim=_SPATIAL)  # (N, B, nblocks)
    m2 = dat2.mean(dim=_SPATIAL)
    mod_m1_sq = (m1**2).sum(dim=0)
    mod_m2_sq = (m2**2).sum(dim=0)
    termine2 = torch.sqrt(mod_m1_sq) * torch.sqrt(mod_m2_sq)
    termine4 = torch.sqrt(mod_m1_sq) ** 2 + torch.sqrt(mod_m2_sq) ** 2
    unbias = npx / (npx - 1)
    int1 = unbias * (torch.sqrt((dat1**2).sum(dim=0)) ** 2).mean(dim=_SPATIAL)
    int2 = unbias * (torch.sqrt((dat2**2).sum(dim=0)) ** 2).mean(dim=_SPATIAL)
    termine3 = int1 + int2 - unbias * (torch.sqrt(mod_m1_sq) ** 2 + torch.sqrt(mod_m2_sq) ** 2)
    mean_bias = 2.0 * termine2 / termine4

    qu = _hypercomplex_mult(dat1, dat2).mean(dim=_SPATIAL)  # (N, B, nblocks)
    qm = _hypercomplex_mult(m1, m2)
    degenerate = termine3 == 0
    cbm = 2.0 / torch.where(degenerate, torch.ones_like(termine3), termine3)
    q = (unbias * qu - unbias * qm) * mean_bias * cbm
    # a degenerate block's vector is (0, ..., 0, mean_bias), as the toolbox sets it
    fill = torch.cat([torch.zeros_like(q[:-1]), mean_bias[None]], dim=0)
    return torch.where(degenerate[None], fill, q)


def _pad_symmetric_end(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """``numpy.pad(x, (0, pad), mode='symmetric')`` along ``dim`` (edge repeated; reflected again if needed)."""
    n = x.shape[dim]
    if pad <= n:
        return torch.cat([x, x.narrow(dim, n - pad, pad).flip(dim)], dim=dim)
    idx = torch.arange(n + pad, device=x.device) % (2 * n)
    return x.index_select(dim, torch.where(idx >= n, 2 * n - 1 - idx, idx))


def _blocks(x: torch.Tensor, block: int, shift: int, steps_y: int, steps_x: int) -> torch.Tensor:
    """(B, N, H, W) -> (N, B, steps_y * steps_x, block, block): blocks whose corners are multiples of ``shift``."""
    bsz, n = x.shape[:2]
    x = x[..., : (steps_y - 1) * shift + block, : (steps_x - 1) * shift + block]
    t = x.unfold(2, block, shift).unfold(3, block, shift)  # (B, N, steps_y, steps_x, block, block)
    return t.reshape(bsz, n, steps_y * steps_x, block, block).transpose(0, 1)


def q2n(ref: torch.Tensor, fused: torch.Tensor, block: int = 32, shift: int = 32) -> torch.Tensor:
    """Q2^n index (Q4 for 4 bands, Q8 for 8) of each image, exactly as the toolbox's ``q2n``; shape (B,).

    Mirror-pad (symmetric) at the bottom/right so that blocks at multiples of ``shift`` cover the image, round
    to uint16 values (negatives -> 0), append zero bands up to a power of two, hypercomplex UIQI of every
    ``block`` x ``block`` block, norm of each block's vector, mean over blocks. Not differentiable (rounding).
    """
    r, f = _pair(ref, fused)
    if block < 2 or shift < 1:
        raise ValueError("block must be >= 2 and shift >= 1")
    bsz, bands, h, w = r.shape
    steps_y, steps_x = max(math.ceil(h / shift), 1), max(math.ceil(w / shift), 1)
    pad_y = (steps_y - 1) * shift + block - h
    pad_x = (steps_x - 1) * shift + block - w
    if pad_y > 0:
        r, f = _pad_symmetric_end(r, pad_y, 2), _pad_symmetric_end(f, pad_y, 2)
    if pad_x > 0:
        r, f = _pad_symmetric_end(r, pad_x, 3), _pad_symmetric_end(f, pad_x, 3)
    r = _to_uint16_values(r)
    f = _to_uint16_values(f)
    n = 1 << max(bands - 1, 0).bit_length()
    if n != bands:
        zeros = r.new_zeros((bsz, n - bands, *r.shape[2:]))
        r = torch.cat([r, zeros], dim=1)
        f = torch.cat([f, zeros], dim=1)
    q = _q2n_blocks(_blocks(r, block, shift, steps_y, steps_x), _blocks(f, block, shift, steps_y, steps_x))
    return _safe_sqrt((q**2).sum(dim=0)).mean(dim=-1)


# ---------------------------------------------------------------------------------------------------- Q
def _uiqi_sliding(x: torch.Tensor, y: torch.Tensor, size: int) -> torch.Tensor:
    """Mean UIQI of each band pair over all ``size`` x ``size`` windows (Wang's ``img_qi``), shape (B, C).

    Same map as the numpy backend: ``4 cov mx my / ((vx + vy)(mx^2 + my^2))``; two flat windows give
    ``2 mx my / (mx^2 + my^2)`` (1 when both means are 0), other zero denominators 1. Local (co)variances come
    from band-centred data (exact shift invariance, no float32 cancellation); a window pair counts as flat
    when both windows are constant (tested exactly), which is when the toolbox's denominator is exactly 0.
    """
    npx = float(size * size)
    xc = x - x.mean(dim=_SPATIAL, keepdim=True).detach()
    yc = y - y.mean(dim=_SPATIAL, keepdim=True).detach()
    sums = _box_sum(torch.stack([x, y, xc, yc, xc * xc, yc * yc, xc * yc]), size, size) / npx
    mx, my, ax, ay, sxx, syy, sxy = sums.unbind(0)
    var_sum = (sxx - ax * ax) + (syy - ay * ay)
    cov = sxy - ax * ay
    var_sum = torch.where(_flat_pairs(x, y, size), torch.zeros_like(var_sum), var_sum)

    prod_means = mx * my
    sum_sq_means = mx * mx + my * my
    numerator = 4.0 * cov * prod_means
    den = var_sum * sum_sq_means
    ok = den != 0
    means_nonzero = sum_sq_means != 0
    flat_value = torch.where(
        (var_sum == 0) & means_nonzero,
        2.0 * prod_means / torch.where(means_nonzero, sum_sq_means, torch.ones_like(sum_sq_means)),
        torch.ones_like(den),
    )
    qmap = torch.where(ok, numerator / torch.where(ok, den, torch.ones_like(den)), flat_value)
    return qmap.mean(dim=_SPATIAL)


def q_index(ref: torch.Tensor, fused: torch.Tensor, block: int = 32) -> torch.Tensor:
    """Q_avg of each image: UIQI per band over a sliding ``block`` x ``block`` window (valid positions, stride
    1), mean over bands, as the toolbox's ``Q`` (``img_qi``); shape (B,). An image smaller than the window is
    one window."""
    r, f = _pair(ref, fused)
    size = min(block, r.shape[2], r.shape[3])
    return _uiqi_sliding(r, f, size).mean(dim=1)


# ------------------------------------------------------------------------------------------ SAM / ERGAS
def sam(ref: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Spectral Angle Mapper in degrees of each image: mean over pixels of the angle between the spectra
    ``acos(<r, f> / (|r| |f|))``; shape (B,).

    Pixels where ``|r| |f| == 0`` are excluded (an image with none left gives 0); averaging is over angles,
    as the toolbox does. The angle is evaluated as ``2 atan2(|u - v|, |u + v|)`` with ``u``, ``v`` the unit
    spectra: the same angle, but accurate for small angles in float32 (where ``acos`` of a cosine near 1
    loses ~1e-4 relative) and with a bounded gradient (0 at identical spectra instead of NaN).
    """
    r, f = _pair(ref, fused)
    prod = (r * r).sum(dim=1) * (f * f).sum(dim=1)
    valid = prod != 0
    one = torch.ones_like(prod)
    u = r / torch.sqrt(torch.where(valid, (r * r).sum(dim=1), one))[:, None]
    v = f / torch.sqrt(torch.where(valid, (f * f).sum(dim=1), one))[:, None]
    angle = 2.0 * torch.atan2(_safe_sqrt(((u - v) ** 2).sum(dim=1)), _safe_sqrt(((u + v) ** 2).sum(dim=1)))
    angle = torch.where(valid, angle, torch.zeros_like(angle))
    count = valid.sum(dim=_SPATIAL)
    mean = angle.sum(dim=_SPATIAL) / torch.clamp(count, min=1).to(angle.dtype)
    return torch.rad2deg(mean)


def ergas(ref: torch.Tensor, fused: torch.Tensor, ratio: float) -> torch.Tensor:
    """ERGAS = ``(100 / ratio) * sqrt(mean_b(MSE_b / mean(ref_b)^2))`` of each image, ``ratio`` = PAN/MS scale
    ratio as a number >= 1 (4 for QuickBird); shape (B,)."""
    r, f = _pair(ref, fused)
    mse = ((r - f) ** 2).mean(dim=_SPATIAL)
    mu = r.mean(dim=_SPATIAL)
    return (100.0 / ratio) * _safe_sqrt((mse / mu**2).mean(dim=1))


# -------------------------------------------------------------------------------------------------- SCC
def _sobel_magnitude(img: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of each band's one-pixel interior, zero borders (``imfilter`` default)."""
    core = img[..., 1:-1, 1:-1]
    p = F.pad(core, (1, 1, 1, 1))
    smooth_x = p[..., :, :-2] + 2.0 * p[..., :, 1:-1] + p[..., :, 2:]
    gy = smooth_x[..., :-2, :] - smooth_x[..., 2:, :]
    smooth_y = p[..., :-2, :] + 2.0 * p[..., 1:-1, :] + p[..., 2:, :]
    gx = smooth_y[..., :, :-2] - smooth_y[..., :, 2:]
    return _safe_sqrt(gy * gy + gx * gx)


def scc(ref: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Spatial correlation coefficient of each image, as the toolbox's ``SCC``: Sobel magnitudes of the band
    interiors, uncentred correlation over all pixels of all bands; shape (B,)."""
    r, f = _pair(ref, fused)
    if r.shape[2] < 3 or r.shape[3] < 3:
        raise ValueError("scc needs images of at least 3x3 pixels")
    gr = _sobel_magnitude(r)
    gf = _sobel_magnitude(f)
    return (gf * gr).sum(dim=_IMAGE) / torch.sqrt((gf * gf).sum(dim=_IMAGE)) / torch.sqrt((gr * gr).sum(dim=_IMAGE))


# ------------------------------------------------------------------------------- PSNR, SSIM, CC, errors
def rmse(ref: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Root mean squared error over all pixels and bands of each image; shape (B,)."""
    r, f = _pair(ref, fused)
    return _safe_sqrt(((r - f) ** 2).mean(dim=_IMAGE))


def mae(ref: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over all pixels and bands of each image; shape (B,)."""
    r, f = _pair(ref, fused)
    return (r - f).abs().mean(dim=_IMAGE)


def _psnr_from_mse(mse: torch.Tensor, max_value: float) -> torch.Tensor:
    zero = mse == 0
    value = 10.0 * torch.log10(max_value**2 / torch.where(zero, torch.ones_like(mse), mse))
    return torch.where(zero, torch.full_like(mse, math.inf), value)


def psnr(ref: torch.Tensor, fused: torch.Tensor, max_value: float) -> torch.Tensor:
    """PSNR in dB of each image cube: ``10 log10(max_value^2 / MSE)`` (MSE over all pixels and bands);
    ``max_value`` is the data range (2047 for 11-bit data). Identical images give ``inf``. Shape (B,)."""
    r, f = _pair(ref, fused)
    return _psnr_from_mse(((r - f) ** 2).mean(dim=_IMAGE), max_value)


def mpsnr(ref: torch.Tensor, fused: torch.Tensor, max_value: float) -> torch.Tensor:
    """Mean over bands of the per-band PSNR of each image; shape (B,)."""
    r, f = _pair(ref, fused)
    return _psnr_from_mse(((r - f) ** 2).mean(dim=_SPATIAL), max_value).mean(dim=1)


def _gaussian_window(size: int, sigma: float) -> list[float]:
    """The normalised Gaussian window as Python floats (computed in float64, as the numpy backend does)."""
    x = [i - (size - 1) / 2.0 for i in range(size)]
    g = [math.exp(-(v * v) / (2.0 * sigma**2)) for v in x]
    total = math.fsum(g)
    return [v / total for v in g]


def _correlate_valid(x: torch.Tensor, g: list[float], dim: int) -> torch.Tensor:
    """'Valid' correlation of ``dim`` with the 1-D window ``g``: one multiply-add per tap on shifted views
    (faster than ``conv2d`` on CPU, no unfolded copy; differentiable)."""
    n_out = x.shape[dim] - len(g) + 1
    out = x.narrow(dim, 0, n_out) * g[0]
    for j in range(1, len(g)):
        out.add_(x.narrow(dim, j, n_out), alpha=g[j])
    return out


def _filter_valid(x: torch.Tensor, g: list[float]) -> torch.Tensor:
    """Separable 'valid' filtering of the last two axes with the symmetric 1-D window ``g``."""
    return _correlate_valid(_correlate_valid(x, g, -2), g, -1)


def _ssim_per_band(r: torch.Tensor, f: torch.Tensor, max_value: float, win: int, sigma: float) -> torch.Tensor:
    size = min(win, r.shape[2], r.shape[3])
    g = _gaussian_window(size, sigma)
    c1 = (0.01 * max_value) ** 2
    c2 = (0.03 * max_value) ** 2
    # moments of band-centred data (no float32 cancellation in the variances); means restored by adding back
    c_r = r.mean(dim=_SPATIAL, keepdim=True).detach()
    c_f = f.mean(dim=_SPATIAL, keepdim=True).detach()
    rc, fc = r - c_r, f - c_f
    a_r, a_f, s_rr, s_ff, s_rf = _filter_valid(torch.stack([rc, fc, rc * rc, fc * fc, rc * fc]), g).unbind(0)
    mu_r, mu_f = a_r + c_r, a_f + c_f
    var_r = s_rr - a_r**2
    var_f = s_ff - a_f**2
    cov = s_rf - a_r * a_f
    smap = ((2 * mu_r * mu_f + c1) * (2 * cov + c2)) / ((mu_r**2 + mu_f**2 + c1) * (var_r + var_f + c2))
    return smap.mean(dim=_SPATIAL)  # (B, C)


def ssim(ref: torch.Tensor, fused: torch.Tensor, max_value: float, win: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM of each image (Wang et al. 2004): Gaussian ``win`` x ``win`` window (sigma 1.5), K1 = 0.01,
    K2 = 0.03, data range ``max_value``, map over the valid window positions, mean over pixels and bands;
    shape (B,). Differentiable."""
    r, f = _pair(ref, fused)
    return _ssim_per_band(r, f, max_value, win, sigma).mean(dim=1)


def mssim(ref: torch.Tensor, fused: torch.Tensor, max_value: float, win: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean over bands of the per-band SSIM (equals :func:`ssim`; named as in the hyperspectral literature)."""
    return ssim(ref, fused, max_value, win, sigma)


def cc(ref: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Cross-correlation of each image: Pearson coefficient per band pair, mean over bands (a band with zero
    variance gives NaN); shape (B,)."""
    r, f = _pair(ref, fused)
    rc = r - r.mean(dim=_SPATIAL, keepdim=True)
    fc = f - f.mean(dim=_SPATIAL, keepdim=True)
    num = (rc * fc).sum(dim=_SPATIAL)
    den = torch.sqrt((rc * rc).sum(dim=_SPATIAL) * (fc * fc).sum(dim=_SPATIAL))
    return (num / den).mean(dim=1)


# ------------------------------------------------------------------------------------------------ bundle
#: Bands up to which Q2n is computed (as :data:`spatialx.evaluate.Q2N_MAX_BANDS`).
Q2N_MAX_BANDS = 32


def reduced_indices(
    ref: torch.Tensor,
    fused: torch.Tensor,
    ratio: float,
    max_value: float,
    cut: int = 21,
    block: int = 32,
) -> dict[str, torch.Tensor]:
    """All reference-based indices, as the numpy backend's :func:`~spatialx.metrics.reduced_indices`.

    Both images are cut with :func:`cut_border` first (``cut=0`` disables it; images too small for the cut
    are evaluated whole). Returns ``{"Q2n", "Q", "SAM", "ERGAS", "SCC", "PSNR", "SSIM", "CC"}``, each a
    tensor of shape (B,). Q2n is NaN above :data:`Q2N_MAX_BANDS` bands (hyperspectral cubes: its hypercomplex
    algebra would have 256 dimensions for 230 bands).
    """
    r, f = _pair(ref, fused)
    h, w = r.shape[2:]
    if cut > 0 and min(h, w) > 2 * cut:
        r, f = cut_border(r, cut), cut_border(f, cut)
    return {
        "Q2n": q2n(r, f, block, block) if r.shape[1] <= Q2N_MAX_BANDS else r.new_full((r.shape[0],), math.nan),
        "Q": q_index(r, f, block),
        "SAM": sam(r, f),
        "ERGAS": ergas(r, f, ratio),
        "SCC": scc(r, f),
        "PSNR": psnr(r, f, max_value),
        "SSIM": ssim(r, f, max_value),
        "CC": cc(r, f),
    }


# ------------------------------------------------------------------------------------- full resolution
def _uqi_tiles(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """UIQI of tiles (..., s1, s2) -> (...): the toolbox's ``uqi`` (sample covariances, no special cases)."""
    n = x.shape[-2] * x.shape[-1]
    mx = x.mean(dim=_SPATIAL, keepdim=True)
    my = y.mean(dim=_SPATIAL, keepdim=True)
    xc, yc = x - mx, y - my
    cxy = (xc * yc).sum(dim=_SPATIAL) / (n - 1)
    vx = (xc * xc).sum(dim=_SPATIAL) / (n - 1)
    vy = (yc * yc).sum(dim=_SPATIAL) / (n - 1)
    mx, my = mx[..., 0, 0], my[..., 0, 0]
    return 4.0 * cxy * mx * my / (vx + vy) / (mx**2 + my**2)


def _blockwise_q(x: torch.Tensor, y: torch.Tensor, block: int) -> torch.Tensor:
    """Mean UIQI over ``blockproc`` tiles of (..., H, W) pairs -> (...): full tiles, then the partial tiles
    at the right, the bottom and the corner (processed as they are, as MATLAB's ``blockproc`` does)."""
    h, w = x.shape[-2:]
    hf, wf = (h // block) * block, (w // block) * block
    values = []
    for r0, r1, th in ((0, hf, block), (hf, h, h - hf)):
        for c0, c1, tw in ((0, wf, block), (wf, w, w - wf)):
            if r1 <= r0 or c1 <= c0:
                continue
            xs, ys = x[..., r0:r1, c0:c1], y[..., r0:r1, c0:c1]
            lead = xs.shape[:-2]
            shape = (*lead, (r1 - r0) // th, th, (c1 - c0) // tw, tw)
            xt = xs.reshape(shape).transpose(-3, -2)  # (..., ny, nx, th, tw)
            yt = ys.reshape(shape).transpose(-3, -2)
            values.append(_uqi_tiles(xt, yt).flatten(start_dim=-2))
    return torch.cat(values, dim=-1).mean(dim=-1)


def _like(image: torch.Tensor, ref: torch.Tensor, name: str) -> torch.Tensor:
    """``image`` as (B, C, H, W) in ``ref``'s dtype/device, broadcast over the batch when it has one image."""
    t = _bchw(image, name).to(device=ref.device, dtype=ref.dtype)
    if t.shape[0] == 1 and ref.shape[0] != 1:
        t = t.expand(ref.shape[0], *t.shape[1:])
    if t.shape[0] != ref.shape[0] or t.shape[2:] != ref.shape[2:]:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, fused has {tuple(ref.shape)}")
    return t


def d_lambda(fused: torch.Tensor, ms_up: torch.Tensor, block: int = 32, p: float = 1) -> torch.Tensor:
    """Spectral distortion D_lambda of QNR of each image, as the toolbox's ``D_lambda``; shape (B,).

    For each band pair (i < j): ``|Q(fused_i, fused_j) - Q(ms_up_i, ms_up_j)|^p`` with ``Q`` the mean UIQI
    over ``block`` x ``block`` tiles; ``(mean over pairs)^(1/p)``. ``ms_up`` is the MS already upsampled to
    the fused scale (the toolbox's ``I_MS``, e.g. ``interp23tap(ms_lr, ratio)``); one image broadcasts over
    the batch. Differentiable in ``fused``.
    """
    f = _bchw(fused, "fused")
    up = _like(ms_up, f, "ms_up")
    if up.shape[1] != f.shape[1]:
        raise ValueError(f"ms_up has {up.shape[1]} bands, fused has {f.shape[1]}")
    bands = f.shape[1]
    if bands < 2:
        raise ValueError("D_lambda needs at least two bands")
    ii, jj = torch.triu_indices(bands, bands, offset=1, device=f.device)
    q_fus = _blockwise_q(f[:, ii], f[:, jj], block)  # (B, pairs)
    q_exp = _blockwise_q(up[:, ii], up[:, jj], block)
    return ((q_fus - q_exp).abs() ** p).mean(dim=1) ** (1.0 / p)


def d_s(
    fused: torch.Tensor,
    ms_up: torch.Tensor,
    pan: torch.Tensor,
    pan_lp: torch.Tensor,
    block: int = 32,
    q: float = 1,
) -> torch.Tensor:
    """Spatial distortion D_s of QNR of each image, as the toolbox's ``D_s``; shape (B,).

    Per band: ``|Q(fused_b, pan) - Q(ms_up_b, pan_lp)|^q`` (blockwise UIQI as in :func:`d_lambda`),
    ``(mean over bands)^(1/q)``. ``pan_lp`` is the PAN degraded as the toolbox does,
    ``interp23tap(imresize_bicubic(pan, 1/ratio), ratio)``. ``pan``/``pan_lp`` are (B, 1, H, W), (1, H, W) or
    (H, W); ``ms_up``, ``pan`` and ``pan_lp`` broadcast over the batch when they hold one image.
    """
    f = _bchw(fused, "fused")
    up = _like(ms_up, f, "ms_up")
    p2 = _like(pan, f, "pan")
    plp = _like(pan_lp, f, "pan_lp")
    if p2.shape[1] != 1 or plp.shape[1] != 1:
        raise ValueError("pan and pan_lp must have one band")
    q_high = _blockwise_q(f, p2.expand_as(f), block)  # (B, C)
    q_low = _blockwise_q(up, plp.expand_as(up), block)
    return ((q_high - q_low).abs() ** q).mean(dim=1) ** (1.0 / q)


def qnr(
    fused: torch.Tensor,
    ms_up: torch.Tensor,
    pan: torch.Tensor,
    pan_lp: torch.Tensor,
    block: int = 32,
    p: float = 1,
    q: float = 1,
    alpha: float = 1,
    beta: float = 1,
) -> torch.Tensor:
    """QNR = ``(1 - D_lambda)^alpha (1 - D_s)^beta`` of each image (1 is ideal); shape (B,)."""
    dl = d_lambda(fused, ms_up, block, p)
    ds = d_s(fused, ms_up, pan, pan_lp, block, q)
    return (1.0 - dl) ** alpha * (1.0 - ds) ** beta
