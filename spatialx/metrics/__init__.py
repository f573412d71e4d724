"""Image-fusion quality indices (numpy backend), matching the reference MATLAB pansharpening toolbox.

Reduced resolution (with a reference): :func:`q2n`, :func:`q_index`, :func:`sam`, :func:`ergas`, :func:`scc`,
:func:`psnr`, :func:`mpsnr`, :func:`ssim`, :func:`mssim`, :func:`cc`, :func:`rmse`, :func:`mae`, bundled by
:func:`reduced_indices` after :func:`cut_border`.

Full resolution (no reference): :func:`d_lambda`, :func:`d_s`, :func:`qnr`, :func:`d_lambda_khan`,
:func:`hqnr`, bundled by :func:`full_indices`.

PolSAR: :func:`riemannian_distance`, :func:`pauli_components`.

Images are channel-first ``(C, H, W)`` arrays (2-D arrays are one band); computations are in float64.

A torch backend with the same definitions (batched ``(B, C, H, W)`` tensors, any device and float dtype,
differentiable, for validation and losses in training) is :mod:`spatialx.metrics.torch_backend`. It is not
imported here, so that this package does not need torch: import it explicitly,
``from spatialx.metrics import torch_backend``.
"""

from __future__ import annotations

from .full import d_lambda, d_lambda_khan, d_s, full_indices, hqnr, qnr
from .polsar import c3_to_matrices, pauli_components, riemannian_distance
from .reduced import (
    cc,
    cut_border,
    ergas,
    mae,
    mpsnr,
    mssim,
    psnr,
    q2n,
    q_index,
    reduced_indices,
    rmse,
    sam,
    scc,
    ssim,
)

__all__ = [
    "c3_to_matrices",
    "cc",
    "cut_border",
    "d_lambda",
    "d_lambda_khan",
    "d_s",
    "ergas",
    "full_indices",
    "hqnr",
    "mae",
    "mpsnr",
    "mssim",
    "pauli_components",
    "psnr",
    "q2n",
    "q_index",
    "qnr",
    "reduced_indices",
    "riemannian_distance",
    "rmse",
    "sam",
    "scc",
    "ssim",
]
