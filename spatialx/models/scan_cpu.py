"""The selective scan as a compiled CPU kernel (numba): forward and backward behind one autograd Function.

The chunked pure-PyTorch scan (:func:`spatialx.models.scan.selective_scan_chunked`) spends most of its time moving
``(T, batch, dim, N)`` work tensors through memory, one small operation per step. Here each ``(batch, channel)``
sequence is scanned in a plain loop with its ``N`` states in registers, which is what the recurrence wants on a CPU:
the forward pass reads each input once and writes ``y`` and the last state; the backward pass recomputes one
sequence's states and decays into a private ``(L, N)`` buffer and runs the adjoint recurrence
``g_t = C_t dy_t + a_{t+1} g_{t+1}`` backwards over it. Nothing of size ``(batch, dim, L, N)`` is ever allocated.

Work is split across numba's threads by ``(batch, channel)`` in the forward pass and by ``(batch, group)`` in the
backward pass (the channels of a group share ``B`` and ``C``, whose gradients they accumulate, so one thread owns
a group and no two threads write the same gradient). numba's default thread pool must not be entered from two
Python threads at once, so calls are serialised by a lock (tiles fused on parallel dask workers take turns here).

Only time-varying, grouped ``B``/``C`` (``(batch, G, N, L)``, what SS2D passes) are handled; other layouts stay
on the chunked path. ``numba`` is a dependency; a missing or broken install disables this path with a warning.
"""

from __future__ import annotations

import functools
import math
import threading
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def kernels() -> tuple[Any, Any] | None:
    """The compiled (forward, backward) kernels, or None when numba cannot be imported (compiled lazily, cached)."""
    try:
        from spatialx.models import _scan_kernels
    except Exception as exc:  # ImportError, an llvmlite that does not load here, an unwritable numba cache
        warnings.warn(f"the compiled CPU scan is unavailable ({type(exc).__name__}: {exc}); using the slower "
                      "chunked PyTorch scan. Reinstall numba, or set NUMBA_CACHE_DIR to a writable directory.",
                      RuntimeWarning, stacklevel=2)
        return None
    return _scan_kernels.forward, _scan_kernels.backward


def available() -> bool:
    return kernels() is not None


def _steps_last(M: Tensor) -> Tensor:
    """(batch, G, N, L) -> contiguous (batch, G, L, N): the states of one step side by side."""
    return M.transpose(2, 3).contiguous()


def _regroup(M: Tensor, groups: int) -> Tensor:
    """(batch, G, N, L) -> (batch, groups, N, L) for ``groups`` a multiple of G (each group repeated)."""
    return M if M.shape[1] == groups else M.repeat_interleave(groups // M.shape[1], dim=1)


def _ungroup(grad: Tensor, groups: int) -> Tensor:
    """The gradient of :func:`_regroup`: sum the repeats of each original group."""
    if grad.shape[1] == groups:
        return grad
    return grad.reshape(grad.shape[0], groups, grad.shape[1] // groups, *grad.shape[2:]).sum(2)


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


def _set_threads() -> None:
    import numba

    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


class _CompiledScanFn(torch.autograd.Function):
    """(delta, delta*u, A, B, C, h0) -> (sum_n C h, last state); the contract of ``scan._SelectiveScanFn``."""

    @staticmethod
    def forward(ctx: Any, delta: Tensor, du: Tensor, A: Tensor, B: Tensor, C: Tensor,
                h0: Tensor | None) -> tuple[Tensor, Tensor]:
        forward_kernel, _ = kernels()
        batch, dim, _ = delta.shape
        delta, du, A = delta.contiguous(), du.contiguous(), A.contiguous()
        # B and C on one grouping (the finest of the two), so that one backward thread owns a whole group
        groups = math.lcm(B.shape[1], C.shape[1])
        ctx.groups = (B.shape[1], C.shape[1])
        Bs, Cs = _steps_last(_regroup(B, groups)), _steps_last(_regroup(C, groups))
        start = delta.new_zeros(batch, dim, A.shape[1]) if h0 is None else h0.contiguous()
        y = torch.empty_like(delta)
        last = torch.empty_like(start)
        with _LOCK:
            _set_threads()
            forward_kernel(_numpy(delta), _numpy(du), _numpy(A), _numpy(Bs), _numpy(Cs), _numpy(start),
                           y.numpy(), last.numpy())
        ctx.save_for_backward(delta, du, A, Bs, Cs, start)
        ctx.has_h0 = h0 is not None
        ctx.set_materialize_grads(False)
        return y, last

    @staticmethod
    def backward(ctx: Any, dy: Tensor | None, dlast: Tensor | None) -> tuple[Tensor | None, ...]:
        if dy is None and dlast is None:
            return (None,) * 6
        _, backward_kernel = kernels()
        delta, du, A, Bs, Cs, start = ctx.saved_tensors
        dy = torch.zeros_like(delta) if dy is None else dy.contiguous().to(delta.dtype)
        dlast = torch.zeros_like(start) if dlast is None else dlast.contiguous().to(delta.dtype)
        g_delta, g_du = torch.empty_like(delta), torch.empty_like(du)
        g_A = delta.new_zeros(delta.shape[0], *A.shape)  # per batch element, summed below: no shared writes
        g_B, g_C = torch.zeros_like(Bs), torch.zeros_like(Cs)
        g_h0 = torch.empty_like(start)
        with _LOCK:
            _set_threads()
            backward_kernel(_numpy(delta), _numpy(du), _numpy(A), _numpy(Bs), _numpy(Cs), _numpy(start),
                            _numpy(dy), _numpy(dlast), g_delta.numpy(), g_du.numpy(), g_A.numpy(), g_B.numpy(),
                            g_C.numpy(), g_h0.numpy())
        groups_b, groups_c = ctx.groups
        return (g_delta, g_du, g_A.sum(0), _ungroup(g_B.transpose(2, 3), groups_b),
                _ungroup(g_C.transpose(2, 3), groups_c), g_h0 if ctx.has_h0 else None)


def supports(delta: Tensor, B: Tensor, C: Tensor) -> bool:
    """Whether :func:`compiled_scan` handles these inputs: CPU tensors, grouped time-varying B and C, numba present."""
    return delta.device.type == "cpu" and B.dim() == 4 and C.dim() == 4 and available()


def compiled_scan(delta: Tensor, du: Tensor, A: Tensor, B: Tensor, C: Tensor,
                  h0: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(y, last_state)`` of the recurrence for effective ``delta``, ``du = delta * u`` (all in one float dtype)."""
    return _CompiledScanFn.apply(delta, du, A, B, C, h0)
