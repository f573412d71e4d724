"""PolSAR quantities: Riemannian distance between covariance matrices, Pauli powers from C3.

Covariance images are 9 real channels ``(C11, Re C12, Im C12, Re C13, Im C13, C22, Re C23, Im C23, C33)`` of a
3x3 Hermitian matrix per pixel, channel-first ``(9, H, W)``. ``C12 = <k1 k2*>`` and the lower triangle is the
conjugate of the upper one.

Basis convention: C3 is in the *lexicographic* basis of the reciprocal scattering vector
``k_L = [S_HH, sqrt(2) S_HV, S_VV]^T``, so ``C11 = <|S_HH|^2>``, ``C22 = 2 <|S_HV|^2>``, ``C33 = <|S_VV|^2>``,
``C13 = <S_HH S_VV*>``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["c3_to_matrices", "pauli_components", "riemannian_distance"]

_C3_CHANNELS = 9


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
