"""PolSAR quantities: Riemannian distance between covariance matrices, Pauli powers from C3.

Covariance images are 9 real channels ``(C11, Re C12, Im C12, Re C13, Im C13, C22, Re C23, Im C23, C33)`` of a
3x3 Hermitian matrix per pixel, channel-first ``(9, H, W)``. ``C12 = <k1 k2*>`` and the lower triangle is the
conjugate of the upper one.

Basis convention: C3 is in the *lexicographic* basis of the reciprocal scattering vector
``k_L = [S_HH, sqrt(2) S_HV, S_VV]^T``, so ``C11 = <|S_HH|^2>``, ``C22 = 2 <|S_HV|^2>``, ``C33 = <|S_VV|^2>``,
``C13 = <S_HH S_VV*>``.

Besides the Riemannian distance and the Pauli powers: the inverse of :func:`c3_to_matrices`
(:func:`matrices_to_c3`), the span, a per-pixel positive-semidefiniteness test and projection (:func:`is_psd`,
:func:`psd_project`), the Cloude-Pottier H/A/alpha decomposition (:func:`cloude_pottier`), the equivalent number of
looks of an intensity image (:func:`enl`), and the per-channel errors and span PSNR of the PolSAR evaluation
(:func:`channel_errors`, :func:`span_psnr`). Pixels with a non-finite channel are NaN in per-pixel outputs and
left out of scalar ones.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "C3_NAMES",
    "c3_to_matrices",
    "c3_to_t3",
    "channel_errors",
    "cloude_pottier",
    "enl",
    "is_psd",
    "matrices_to_c3",
    "pauli_components",
    "psd_project",
    "riemannian_distance",
    "span",
    "span_psnr",
]

_C3_CHANNELS = 9
#: Channel names in storage order.
C3_NAMES = ("C11", "C12_real", "C12_imag", "C13_real", "C13_imag", "C22", "C23_real", "C23_imag", "C33")
#: Default relative tolerance of :func:`is_psd` / :func:`psd_project`, in units of the input dtype's machine
#: epsilon: an eigenvalue down to ``-tol * scale`` (scale = the pixel's largest absolute eigenvalue) counts as zero,
#: i.e. as rounding (float32: 7.6e-6, float64: 1.4e-14; a rank-one C3 stored as float32 is indefinite at ~1e-7).
PSD_TOL_EPS = 64


def _tol(arr: np.ndarray, tol: float | None) -> float:
    if tol is not None:
        return float(tol)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    return PSD_TOL_EPS * float(np.finfo(dtype).eps)
#: Lexicographic -> Pauli basis: ``k_P = U k_L`` with ``k_P = [HH+VV, HH-VV, 2 HV] / sqrt(2)``; ``T3 = U C3 U^H``.
_U_LEX_TO_PAULI = np.array([[1.0, 0.0, 1.0], [1.0, 0.0, -1.0], [0.0, np.sqrt(2.0), 0.0]]) / np.sqrt(2.0)


def _check(c3: np.ndarray) -> np.ndarray:
    arr = np.asarray(c3)
    if arr.ndim != 3 or arr.shape[0] != _C3_CHANNELS:
        raise ValueError(f"C3 images must be (9, H, W), got shape {arr.shape}")
    return arr


def c3_to_matrices(c3: np.ndarray) -> np.ndarray:
    """(9, H, W) real channels -> (H, W, 3, 3) complex128 Hermitian matrices."""
    arr = np.asarray(c3, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] != _C3_CHANNELS:
        raise ValueError(f"C3 images must be (9, H, W), got shape {arr.shape}")
    c11, c12r, c12i, c13r, c13i, c22, c23r, c23i, c33 = arr
    c12 = c12r + 1j * c12i
    c13 = c13r + 1j * c13i
    c23 = c23r + 1j * c23i
    rows = [
        [c11 + 0j, c12, c13],
        [np.conj(c12), c22 + 0j, c23],
        [np.conj(c13), np.conj(c23), c33 + 0j],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def riemannian_distance(
    c3_ref: np.ndarray,
    c3_pred: np.ndarray,
    eps: float = 0.0,
    return_map: bool = False,
) -> float | np.ndarray:
    """Affine-invariant Riemannian distance between per-pixel covariance matrices, mean over pixels.

    ``d(A, B) = ||log(A^-1/2 B A^-1/2)||_F = sqrt(sum_k log(lambda_k)^2)`` with ``lambda_k`` the generalised
    eigenvalues of ``B v = lambda A v`` (computed by whitening with ``A = U diag(w) U^H``). Symmetric,
    invariant under ``A, B -> X A X^H, X B X^H`` for any invertible X, and 0 only for identical matrices.

    ``eps`` is added to the diagonal of both matrices (regularises rank-deficient, e.g. single-look, C3).
    Raises ValueError if a matrix is not positive definite. ``return_map=True`` gives the (H, W) map.
    """
    a = c3_to_matrices(c3_ref)
    b = c3_to_matrices(c3_pred)
    if a.shape != b.shape:
        raise ValueError(f"C3 images differ in shape: {a.shape[:2]} and {b.shape[:2]}")
    if eps:
        eye = np.eye(3) * eps
        a = a + eye
        b = b + eye
    w, u = np.linalg.eigh(a)
    if not np.all(w > 0):
        raise ValueError("reference covariance is not positive definite at some pixels (use eps > 0)")
    whiten = u * (1.0 / np.sqrt(w))[..., None, :]  # U diag(w^-1/2); A^-1/2 = whiten U^H
    m = np.conj(np.swapaxes(whiten, -1, -2)) @ b @ whiten  # same eigenvalues as A^-1/2 B A^-1/2
    m = 0.5 * (m + np.conj(np.swapaxes(m, -1, -2)))
    lam = np.linalg.eigvalsh(m)
    if not np.all(lam > 0):
        raise ValueError("predicted covariance is not positive definite at some pixels (use eps > 0)")
    dmap = np.sqrt((np.log(lam) ** 2).sum(axis=-1))
    return dmap if return_map else float(dmap.mean())


def pauli_components(c3: np.ndarray) -> np.ndarray:
    """Pauli powers from lexicographic C3: ``(|HH+VV|^2/2, |HH-VV|^2/2, 2|HV|^2)``, shape (3, H, W).

    These are the diagonal of the coherency matrix T3 (T11, T22, T33):
    ``T11 = (C11 + C33 + 2 Re C13) / 2``, ``T22 = (C11 + C33 - 2 Re C13) / 2``, ``T33 = C22``. For the usual
    Pauli RGB composite use R = T22 (double bounce), G = T33 (volume), B = T11 (surface).
    """
    arr = np.asarray(c3, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] != _C3_CHANNELS:
        raise ValueError(f"C3 images must be (9, H, W), got shape {arr.shape}")
    c11, c13r, c22, c33 = arr[0], arr[3], arr[5], arr[8]
    return np.stack([(c11 + c33 + 2.0 * c13r) / 2.0, (c11 + c33 - 2.0 * c13r) / 2.0, c22])


def matrices_to_c3(m: np.ndarray) -> np.ndarray:
    """(H, W, 3, 3) complex Hermitian matrices -> (9, H, W) float64 channels; the inverse of :func:`c3_to_matrices`.

    The upper triangle and the real part of the diagonal are read; the lower triangle is assumed to be its
    conjugate (a non-Hermitian input is not symmetrised).
    """
    m = np.asarray(m)
    if m.ndim != 4 or m.shape[-2:] != (3, 3):
        raise ValueError(f"matrices must be (H, W, 3, 3), got shape {m.shape}")
    parts = [m[..., 0, 0].real, m[..., 0, 1].real, m[..., 0, 1].imag, m[..., 0, 2].real, m[..., 0, 2].imag,
             m[..., 1, 1].real, m[..., 1, 2].real, m[..., 1, 2].imag, m[..., 2, 2].real]
    return np.stack(parts).astype(np.float64)


def c3_to_t3(c3: np.ndarray) -> np.ndarray:
    """Coherency matrices ``T3 = U C3 U^H`` (H, W, 3, 3) of a lexicographic C3 image, in the Pauli basis
    ``k_P = [HH+VV, HH-VV, 2 HV] / sqrt(2)`` (``U`` unitary, so T3 has the eigenvalues and span of C3)."""
    u = _U_LEX_TO_PAULI
    return u @ c3_to_matrices(c3) @ u.T  # U is real: U^H = U^T


def span(c3: np.ndarray) -> np.ndarray:
    """Total power ``C11 + C22 + C33`` (the trace; ``|HH|^2 + 2|HV|^2 + |VV|^2``), float64 (H, W)."""
    arr = _check(c3).astype(np.float64, copy=False)
    return arr[0] + arr[5] + arr[8]


def _finite_pixels(arr: np.ndarray) -> np.ndarray:
    return np.all(np.isfinite(arr), axis=0)


def _clearly_pd(arr: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Pixels certainly positive definite, without an eigen-decomposition: leading principal minors (Sylvester)
    ``C11 > d s``, ``C11 C22 - |C12|^2 > d s^2``, ``det > d s^3`` with ``s`` the span and ``d = 1e-6``; then the
    smallest eigenvalue is ``>= det / s^2 > 1e-6 s``, far above any rounding. A fast path, not a definition."""
    x = arr.astype(np.float64, copy=False)
    c11, c12r, c12i, c13r, c13i, c22, c23r, c23i, c33 = (np.where(ok, ch, 0.0) for ch in x)
    s = c11 + c22 + c33
    m2 = c11 * c22 - (c12r**2 + c12i**2)
    # det of [[a, z12, z13], [., b, z23], [., ., c]] Hermitian: abc + 2 Re(z12 z23 conj(z13)) - a|z23|^2 - b|z13|^2
    # - c|z12|^2
    re = (c12r * c23r - c12i * c23i) * c13r + (c12r * c23i + c12i * c23r) * c13i
    det = (c11 * c22 * c33 + 2.0 * re - c11 * (c23r**2 + c23i**2) - c22 * (c13r**2 + c13i**2)
           - c33 * (c12r**2 + c12i**2))
    d = 1e-6
    return ok & (s > 0) & (c11 > d * s) & (m2 > d * s**2) & (det > d * s**3)


def is_psd(c3: np.ndarray, tol: float | None = None) -> np.ndarray:
    """Per pixel (H, W) bool: is the matrix positive semidefinite, i.e. its smallest eigenvalue
    ``>= -tol * max|eigenvalue|`` (a relative tolerance, so that rounding of rank-deficient matrices, e.g.
    single-look C3, does not count as negative; None: :data:`PSD_TOL_EPS` machine epsilons of the input's dtype).
    The zero matrix is PSD; pixels with a non-finite channel are not."""
    arr = _check(c3)
    tol = _tol(arr, tol)
    ok = _finite_pixels(arr)
    out = _clearly_pd(arr, ok)
    rest = ok & ~out
    if rest.any():
        w = np.linalg.eigvalsh(c3_to_matrices(arr[:, rest][:, None, :])[0])
        out[rest] = w[:, 0] >= -tol * np.abs(w).max(axis=1)
    return out


def _simplex(w: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row of ``w`` (N, 3) onto ``{x >= 0, sum x = total}`` (total > 0).

    Sort descending, ``theta = (cumsum_rho - total) / rho`` for the largest rho with ``u_rho > theta_rho``,
    ``x = max(w - theta, 0)`` (Held, Wolfe and Crowder 1974; Duchi et al. 2008)."""
    u = -np.sort(-w, axis=1)
    css = np.cumsum(u, axis=1)
    k = np.arange(1, w.shape[1] + 1)
    theta_k = (css - total[:, None]) / k
    rho = np.sum(u > theta_k, axis=1)  # >= 1 whenever total > 0
    theta = np.take_along_axis(theta_k, (rho - 1)[:, None], axis=1)
    return np.maximum(w - theta, 0.0)


def psd_project(c3: np.ndarray, keep_span: bool = True, tol: float | None = None) -> np.ndarray:
    """Per-pixel projection of a C3 image onto the cone of positive semidefinite matrices.

    Each pixel's Hermitian matrix is diagonalised (``np.linalg.eigh``), ``C = V diag(w) V^H``, and rebuilt as
    ``V diag(w') V^H``:

    * ``keep_span=True`` (default): ``w'`` is the Euclidean projection of ``w`` onto ``{w' >= 0, sum w' = sum w}``,
      i.e. ``w' = max(w - theta, 0)`` with the one ``theta >= 0`` that keeps the trace. The result is the PSD
      matrix *of the same span* nearest in Frobenius norm. Where the span is <= 0 no PSD matrix keeps it; those
      pixels get the plain clipping below (the zero matrix when every eigenvalue is <= 0).
    * ``keep_span=False``: ``w' = max(w, 0)``, the nearest PSD matrix in Frobenius norm (Higham 1988); the span
      grows by the sum of the clipped negative eigenvalues.

    Pixels already PSD (:func:`is_psd` with ``tol``) and pixels with a non-finite channel are returned unchanged,
    bit for bit; clearly positive definite pixels (leading principal minors well above 0) skip the
    eigen-decomposition, so a multilooked C3 costs little more than a copy. The result has the input's dtype when
    that is a float type (float64 otherwise); rebuilt pixels are computed in float64, with the diagonal taken real
    and the upper triangle stored (see
    :func:`matrices_to_c3`).
    """
    arr = _check(c3)
    tol = _tol(arr, tol)
    out = np.array(arr, dtype=arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64, copy=True)
    ok = _finite_pixels(arr) & ~_clearly_pd(arr, _finite_pixels(arr))
    if not ok.any():
        return out
    m = c3_to_matrices(arr[:, ok][:, None, :])[0]  # (N, 3, 3)
    w, v = np.linalg.eigh(m)
    bad = w[:, 0] < -tol * np.abs(w).max(axis=1)
    if not bad.any():
        return out
    w, v = w[bad], v[bad]
    clipped = np.maximum(w, 0.0)
    if keep_span:
        total = w.sum(axis=1)
        positive = total > 0
        if positive.any():
            clipped[positive] = _simplex(w[positive], total[positive])
    rebuilt = (v * clipped[:, None, :]) @ np.conj(np.swapaxes(v, -1, -2))
    channels = matrices_to_c3(rebuilt[:, None])[:, :, 0]  # (9, Nbad)
    rows, cols = np.nonzero(ok)
    out[:, rows[bad], cols[bad]] = channels
    return out


def cloude_pottier(c3: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cloude-Pottier eigen-decomposition of a lexicographic C3 image: entropy H, anisotropy A, mean alpha angle
    (degrees), each float64 (H, W).

    From the coherency matrix ``T3 = U C3 U^H`` (:func:`c3_to_t3`): eigenvalues ``l1 >= l2 >= l3`` (negative ones,
    from a non-PSD input or rounding, are taken as 0), ``p_i = l_i / sum l``, ``H = -sum p_i log3 p_i``
    (``0 log 0 = 0``), ``A = (l2 - l3) / (l2 + l3)``, ``alpha = sum p_i alpha_i`` with
    ``alpha_i = arccos |e_i[0]|`` (first, i.e. surface, component of the unit eigenvector of ``l_i``).

    Edge cases: a zero (or non-positive) span or a non-finite channel gives NaN in all three; where
    ``l2 + l3 <= 1e-12 * sum l`` (a pure, rank-1 target) A is undefined and set to 0. For repeated eigenvalues the
    eigenvectors are not unique and alpha is whatever basis LAPACK returns (T3 = identity: 0, 90, 90 -> 60 deg).
    """
    arr = _check(c3)
    shape = arr.shape[1:]
    h = np.full(shape, np.nan)
    a = np.full(shape, np.nan)
    alpha = np.full(shape, np.nan)
    ok = _finite_pixels(arr)
    if not ok.any():
        return h, a, alpha
    t = c3_to_t3(arr[:, ok][:, None, :])[0]
    w, v = np.linalg.eigh(t)  # ascending
    w = np.maximum(w[:, ::-1], 0.0)
    v = v[:, :, ::-1]
    total = w.sum(axis=1)
    good = total > 0
    w, v, total = w[good], v[good], total[good]
    p = w / total[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    entropy = np.clip(-plogp.sum(axis=1) / np.log(3.0), 0.0, 1.0)
    minor = w[:, 1] + w[:, 2]
    defined = minor > 1e-12 * total
    aniso = np.zeros_like(minor)
    aniso[defined] = (w[defined, 1] - w[defined, 2]) / minor[defined]
    alphas = np.degrees(np.arccos(np.clip(np.abs(v[:, 0, :]), 0.0, 1.0)))  # (N, 3), column i = eigenvector i
    mean_alpha = (p * alphas).sum(axis=1)
    rows, cols = np.nonzero(ok)
    rows, cols = rows[good], cols[good]
    h[rows, cols], a[rows, cols], alpha[rows, cols] = entropy, aniso, mean_alpha
    return h, a, alpha


def enl(intensity: np.ndarray, window: int = 7, fraction: float = 0.1) -> float:
    """Equivalent number of looks of an intensity image (H, W), ``mean^2 / variance`` over its most homogeneous
    areas.

    The image is cut into non-overlapping ``window`` x ``window`` blocks (a partial last row/column is dropped;
    blocks with a non-finite or non-positive pixel are skipped). Each block's pixels are split into the two
    colours of a checkerboard: the coefficient of variation of one half ranks the blocks, and the ``fraction``
    (at least one) with the lowest CV are kept; the ENL is ``1 / mean(s^2 / m^2)`` of the *other* half of the
    kept blocks (``s^2`` with ddof 1). Ranking and estimating on disjoint pixels avoids the upward bias of
    choosing blocks by the very statistic being estimated (with independent speckle, L-look gamma data gives
    ~L). Returns NaN when no block qualifies.
    """
    img = np.asarray(intensity, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"intensity must be (H, W), got shape {img.shape}")
    if window < 2:
        raise ValueError(f"window must be >= 2, got {window}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    ny, nx = img.shape[0] // window, img.shape[1] // window
    if ny == 0 or nx == 0:
        return float("nan")
    blocks = img[: ny * window, : nx * window].reshape(ny, window, nx, window).swapaxes(1, 2)
    blocks = blocks.reshape(ny * nx, window * window)
    blocks = blocks[np.all(np.isfinite(blocks) & (blocks > 0), axis=1)]
    if blocks.shape[0] == 0:
        return float("nan")
    yy, xx = np.divmod(np.arange(window * window), window)
    black = (yy + xx) % 2 == 0
    rank_half, est_half = blocks[:, black], blocks[:, ~black]
    cv = rank_half.std(axis=1, ddof=1) / rank_half.mean(axis=1)
    keep = np.argsort(cv, kind="stable")[: max(1, int(np.ceil(fraction * blocks.shape[0])))]
    est = est_half[keep]
    ratio = est.var(axis=1, ddof=1) / est.mean(axis=1) ** 2
    mean_ratio = float(ratio.mean())
    return float("inf") if mean_ratio == 0 else 1.0 / mean_ratio


def _pair(ref: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = _check(ref).astype(np.float64, copy=False)
    b = _check(pred).astype(np.float64, copy=False)
    if a.shape != b.shape:
        raise ValueError(f"C3 images differ in shape: {a.shape} and {b.shape}")
    return a, b, _finite_pixels(a) & _finite_pixels(b)


def channel_errors(ref: np.ndarray, pred: np.ndarray) -> dict[str, object]:
    """Mean absolute and root-mean-square error of a predicted C3 image against a reference, per channel and over
    all 9 channels, on the pixels where both are finite in every channel.

    Returns ``{"mae": {name: v}, "rmse": {name: v}, "mae_all": v, "rmse_all": v}`` with the channel names of
    :data:`C3_NAMES` (floats; NaN when no pixel is valid). ``*_all`` pool every channel value equally.
    """
    a, b, ok = _pair(ref, pred)
    diff = (b - a)[:, ok]
    if diff.shape[1] == 0:
        nan = float("nan")
        return {"mae": dict.fromkeys(C3_NAMES, nan), "rmse": dict.fromkeys(C3_NAMES, nan), "mae_all": nan,
                "rmse_all": nan}
    mae = np.abs(diff).mean(axis=1)
    mse = (diff**2).mean(axis=1)
    return {"mae": {n: float(v) for n, v in zip(C3_NAMES, mae, strict=True)},
            "rmse": {n: float(v) for n, v in zip(C3_NAMES, np.sqrt(mse), strict=True)},
            "mae_all": float(mae.mean()), "rmse_all": float(np.sqrt(mse.mean()))}


def span_psnr(ref: np.ndarray, pred: np.ndarray) -> float:
    """PSNR (dB) of the predicted span against the reference span: ``10 log10(peak^2 / MSE)`` with ``peak`` the
    reference span's maximum over the pixels where both images are finite (so a scene's brightest target sets
    the scale, as for an image's data range; no dB conversion of the span itself). inf for identical spans, NaN
    without valid pixels or with a non-positive peak."""
    a, b, ok = _pair(ref, pred)
    if not ok.any():
        return float("nan")
    sa = (a[0] + a[5] + a[8])[ok]
    sb = (b[0] + b[5] + b[8])[ok]
    peak = float(sa.max())
    mse = float(((sb - sa) ** 2).mean())
    if peak <= 0:
        return float("nan")
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak**2 / mse))
