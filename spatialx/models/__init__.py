"""Network building blocks for the deep fusion methods.

State-space core (pure PyTorch, with ``mamba_ssm``'s CUDA kernel used when it is importable):

- :func:`selective_scan` (dispatcher), :func:`selective_scan_chunked` (CPU default),
  :func:`selective_scan_reference` (sequential ground truth), :func:`linear_scan` (chunked ``h_t = a_t h_{t-1} +
  x_t``) -- in :mod:`spatialx.models.scan`;
- :func:`cross_scan`, :func:`cross_merge`, :class:`SS2D`, :class:`VSSBlock`, :class:`DropPath` -- in
  :mod:`spatialx.models.ss2d` (channels-last blocks, LE-Mamba state sharing).

Names load on first use, so ``import spatialx.models`` does not import torch.
"""

from __future__ import annotations

from spatialx._lazy import lazy_attributes

_LAZY = {
    "selective_scan": "spatialx.models.scan",
    "selective_scan_chunked": "spatialx.models.scan",
    "selective_scan_reference": "spatialx.models.scan",
    "linear_scan": "spatialx.models.scan",
    "mamba_selective_scan_fn": "spatialx.models.scan",
    "cross_scan": "spatialx.models.ss2d",
    "cross_merge": "spatialx.models.ss2d",
    "SS2D": "spatialx.models.ss2d",
    "VSSBlock": "spatialx.models.ss2d",
    "DropPath": "spatialx.models.ss2d",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
