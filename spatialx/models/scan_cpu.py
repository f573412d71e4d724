"""The selective scan as a compiled CPU kernel (numba): forward and backward behind one autograd Function.

The chunked pure-PyTorch scan (:func:`spatialx.models.scan.selective_scan_chunked`) pays one Python-level
operation per step and chunk, which dominates for the short sequences of LE-Mamba's local windows and small
training patches. Here each ``(batch, channel)`` sequence is scanned in a plain compiled loop. The sequence is cut
into time blocks of about :data:`BLOCK_ELEMENTS` decays: torch computes a block's decays ``exp(delta A)`` in one
vectorised call (a scalar ``exp`` per element in the loop was measured as slow as the whole chunked scan), and
the kernel runs the multiply-adds. Forward keeps the state entering each block; backward recomputes a block's
states into a private ``(T, N)`` buffer per thread and runs the adjoint recurrence ``g_t = C_t dy_t + a_{t+1}
g_{t+1}`` backwards over it, blocks in reverse. Nothing of size ``(batch, dim, L, N)`` is allocated.

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


@functools.lru_cache(maxsize=1)
def inference_kernel() -> Any | None:
    """The compiled inference kernel (``_scan_kernels.forward_inference``), or None without numba."""
    if kernels() is None:
        return None
    from spatialx.models import _scan_kernels

    return _scan_kernels.forward_inference


@functools.lru_cache(maxsize=1)
def ss2d_kernel() -> Any | None:
    """The compiled SS2D inference kernel (``_scan_kernels.forward_ss2d``), or None without numba."""
    if kernels() is None:
        return None
    from spatialx.models import _scan_kernels

    return _scan_kernels.forward_ss2d


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


def _block(t: Tensor, axis: int, start: int, stop: int) -> np.ndarray:
    """Steps [start, stop) along ``axis`` as a C-contiguous array: the kernels vectorise only over contiguous
    arrays (numba compiles strided ones to scalar loops, measured 7x slower)."""
    return _numpy(t.narrow(axis, start, stop - start).contiguous())


def _set_threads() -> int:
    """numba's threads for the next kernel: torch's intra-op count (the caller's choice), capped by numba's pool."""
    import numba

    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    return threads


#: Elements of the (batch, dim, T, N) decay tensor per time block: the decays of a block are computed by torch in one
#: vectorised ``exp`` and then read by the kernel; a bounded block keeps that buffer a few MiB whatever ``L``.
BLOCK_ELEMENTS = 1 << 20


def _blocks(batch: int, dim: int, length: int, n_state: int, block_elements: int) -> list[tuple[int, int]]:
    steps = max(1, block_elements // max(1, batch * dim * n_state))
    return [(start, min(start + steps, length)) for start in range(0, length, steps)]


def _decays(delta: Tensor, A: Tensor, start: int, stop: int, buffer: Tensor) -> np.ndarray:
    """exp(delta_t A) for steps [start, stop) as a contiguous (batch, dim, T, N) array in ``buffer``'s memory (one
    buffer reused for every block: a fresh multi-MiB tensor per block costs page faults, measured 2x the exp)."""
    batch, dim, _ = delta.shape
    decay = buffer[:batch * dim * (stop - start) * A.shape[1]].view(batch, dim, stop - start, A.shape[1])
    torch.mul(delta[..., start:stop, None], A[:, None, :], out=decay)
    return _numpy(decay.exp_())


def _decay_buffer(delta: Tensor, A: Tensor, blocks: list[tuple[int, int]]) -> Tensor:
    longest = max((stop - start for start, stop in blocks), default=0)
    return delta.new_empty(delta.shape[0] * delta.shape[1] * longest * A.shape[1])


class _CompiledScanFn(torch.autograd.Function):
    """(delta, delta*u, A, B, C, h0) -> (sum_n C h, last state); the contract of ``scan._SelectiveScanFn``.

    The sequence is processed in time blocks; forward keeps the state entering each block, backward recomputes a
    block's decays and states from it and runs the blocks in reverse, carrying dL/dh across block boundaries.
    """

    @staticmethod
    def forward(ctx: Any, delta: Tensor, du: Tensor, A: Tensor, B: Tensor, C: Tensor, h0: Tensor | None,
                block_elements: int) -> tuple[Tensor, Tensor]:
        forward_kernel, _ = kernels()
        batch, dim, length = delta.shape
        delta, du, A = delta.contiguous(), du.contiguous(), A.contiguous()
        # B and C on one grouping (the finest of the two), so that one backward thread owns a whole group
        groups = math.lcm(B.shape[1], C.shape[1])
        ctx.groups = (B.shape[1], C.shape[1])
        Bs, Cs = _steps_last(_regroup(B, groups)), _steps_last(_regroup(C, groups))
        state = delta.new_zeros(batch, dim, A.shape[1]) if h0 is None else h0.detach().clone().contiguous()
        y = torch.empty_like(delta)
        blocks = _blocks(batch, dim, length, A.shape[1], block_elements)
        buffer = _decay_buffer(delta, A, blocks)
        entering = []
        with _LOCK:
            _set_threads()
            for start, stop in blocks:
                entering.append(state.clone())
                y_block = torch.empty_like(delta[..., start:stop], memory_format=torch.contiguous_format)
                forward_kernel(_decays(delta, A, start, stop, buffer), _block(du, 2, start, stop),
                               _block(Bs, 2, start, stop), _block(Cs, 2, start, stop), state.numpy(),
                               y_block.numpy())
                y[..., start:stop] = y_block
        ctx.save_for_backward(delta, du, A, Bs, Cs, *entering)
        ctx.blocks = blocks
        ctx.has_h0 = h0 is not None
        ctx.set_materialize_grads(False)
        return y, state

    @staticmethod
    def backward(ctx: Any, dy: Tensor | None, dlast: Tensor | None) -> tuple[Tensor | None, ...]:
        if dy is None and dlast is None:
            return (None,) * 7
        _, backward_kernel = kernels()
        delta, du, A, Bs, Cs, *entering = ctx.saved_tensors
        dy = torch.zeros_like(delta) if dy is None else dy.contiguous().to(delta.dtype)
        carry = torch.zeros_like(entering[0]) if dlast is None else dlast.to(delta.dtype).clone().contiguous()
        g_delta, g_du = torch.empty_like(delta), torch.empty_like(du)
        g_A = delta.new_zeros(delta.shape[0], *A.shape)  # per batch element, summed below: no shared writes
        g_B, g_C = torch.empty_like(Bs), torch.empty_like(Cs)
        buffer = _decay_buffer(delta, A, ctx.blocks)
        with _LOCK:
            _set_threads()
            for (start, stop), state in zip(reversed(ctx.blocks), reversed(entering), strict=True):
                g_delta_block, g_du_block = (torch.empty_like(delta[..., start:stop],
                                                              memory_format=torch.contiguous_format)
                                             for _ in range(2))
                g_B_block, g_C_block = (torch.zeros_like(Bs[:, :, start:stop], memory_format=torch.contiguous_format)
                                        for _ in range(2))
                backward_kernel(_decays(delta, A, start, stop, buffer), _block(delta, 2, start, stop),
                                _block(du, 2, start, stop), _numpy(A), _block(Bs, 2, start, stop),
                                _block(Cs, 2, start, stop), _numpy(state), _block(dy, 2, start, stop),
                                carry.numpy(), g_delta_block.numpy(), g_du_block.numpy(), g_A.numpy(),
                                g_B_block.numpy(), g_C_block.numpy())
                g_delta[..., start:stop] = g_delta_block
                g_du[..., start:stop] = g_du_block
                g_B[:, :, start:stop] = g_B_block
                g_C[:, :, start:stop] = g_C_block
        groups_b, groups_c = ctx.groups
        return (g_delta, g_du, g_A.sum(0), _ungroup(g_B.transpose(2, 3), groups_b),
                _ungroup(g_C.transpose(2, 3), groups_c), carry if ctx.has_h0 else None, None)


def supports(delta: Tensor, B: Tensor, C: Tensor) -> bool:
    """Whether :func:`compiled_scan` handles these inputs: CPU tensors, grouped time-varying B and C, numba present."""
    return delta.device.type == "cpu" and B.dim() == 4 and C.dim() == 4 and available()


def compiled_scan(delta: Tensor, du: Tensor, A: Tensor, B: Tensor, C: Tensor, h0: Tensor | None,
                  block_elements: int = BLOCK_ELEMENTS) -> tuple[Tensor, Tensor]:
    """``(y, last_state)`` of the recurrence for effective ``delta``, ``du = delta * u`` (all in one float dtype)."""
    return _CompiledScanFn.apply(delta, du, A, B, C, h0, block_elements)


def needs_grad(*tensors: Tensor | None) -> bool:
    """Whether autograd would record a scan of these tensors (grad mode on and one of them requiring grad)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def inference_scan(delta: Tensor, u: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
                   h0: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(y + D u, last_state)`` of the recurrence in one compiled pass, for inference (nothing kept for backward).

    ``delta`` is the effective step (bias and softplus applied), all tensors in one float dtype, ``B`` and ``C``
    grouped ``(batch, G, N, L)``. Each ``(batch, channel)`` sequence is scanned by one thread with its state in a
    local array and the decays ``exp(delta A)`` computed in the loop: no ``(batch, dim, L, N)`` or per-block
    tensor exists, the only temporaries are ``B`` and ``C`` with the states side by side, ``(batch, G, L, N)``.
    """
    kernel = inference_kernel()
    batch, dim, _ = delta.shape
    delta, u, A = delta.detach().contiguous(), u.detach().contiguous(), A.detach().contiguous()
    Bs, Cs = _steps_last(B.detach()), _steps_last(C.detach())
    skip = delta.new_zeros(dim) if D is None else D.detach().to(delta.dtype).contiguous()
    state = (delta.new_zeros(batch, dim, A.shape[1]) if h0 is None
             else h0.detach().to(delta.dtype).clone(memory_format=torch.contiguous_format))
    y = torch.empty_like(delta)
    with _LOCK:
        _set_threads()
        kernel(_numpy(delta), _numpy(u), _numpy(A), _numpy(Bs), _numpy(Cs), _numpy(skip), state.numpy(), y.numpy())
    return y, state


def channel_block(dim: int, n_state: int, batch: int, threads: int) -> int:
    """Channels per job of the SS2D kernel: as few jobs as keep every thread equally busy, each as wide as its
    states allow. A job reads each pixel's projection and steps through the image once whatever its width, so
    wider jobs do less of that per channel (d_inner 96, N 8, one thread: 96 channels 0.78 ns per update, 64 1.05);
    their states and decay rates (2 x N x width floats) stay within 16 KiB of L1; and the image's jobs split evenly
    over the threads (96 on two threads: 2 x 48 channels 0.45 ns, 64 + 32 0.55-0.80). Widths are whole 16-float
    vectors."""
    widest = max(16, 2048 // max(1, n_state) // 16 * 16)
    blocks = max(-(-threads // batch), -(-dim // widest))
    while batch < threads and batch * blocks % threads:
        blocks += 1
    width = -(-dim // blocks)
    return -(-width // 16) * 16


def ss2d_direction_scan(direction: int, proj: Tensor, dt_weight: Tensor, dt_bias: Tensor, u: Tensor, A: Tensor,
                        D: Tensor, state: Tensor, y: Tensor, size: tuple[int, int], accumulate: bool = True) -> None:
    """One direction of SS2D's scans on image-order, channels-last inputs, added into ``y`` (or written over it,
    ``accumulate=False``) (inference only).

    ``direction`` 0-3 as :func:`spatialx.models.ss2d.cross_scan` orders them; ``proj`` (batch, L, R + 2N): the
    direction's x projection (``R`` step ranks, then ``B``, then ``C``); ``u`` (batch, L, dim); ``dt_weight``
    (dim, R) and ``dt_bias`` (dim,): the step is ``softplus(dt_bias + dt_weight @ proj[..., :R])``, computed in
    the kernel; ``A`` (dim, N), ``D`` (dim,). ``state`` (batch, dim, N), contiguous, holds the initial states and
    receives the last ones (empty, (0, dim, N): start from zero, keep nothing); ``y`` (batch, L, dim), contiguous,
    receives ``sum_n C h + D u`` added to what it holds.
    Four calls, one per direction, make SS2D's merged scan without its (batch, 4 dim, L) tensors; see
    ``_scan_kernels.forward_ss2d``.
    """
    kernel = ss2d_kernel()
    batch, length, rows = proj.shape
    dim, n_state = A.shape
    rank = dt_weight.shape[-1]
    height, width = size
    if height * width != length or rows != rank + 2 * n_state or tuple(u.shape) != (batch, length, dim):
        raise ValueError(f"SS2D scan layout: proj {tuple(proj.shape)}, u {tuple(u.shape)}, A {tuple(A.shape)}, "
                         f"rank {rank} for an image of {size}")
    if not (state.is_contiguous() and y.is_contiguous()):
        raise ValueError("state and y must be contiguous: the kernel writes them in place")
    dtype = y.dtype

    def prepared(t: Tensor) -> np.ndarray:
        return _numpy(t.detach().to(dtype).contiguous())

    with _LOCK:
        block = channel_block(dim, n_state, batch, _set_threads())
        kernel(prepared(proj), rank, prepared(dt_weight.t()), prepared(dt_bias), prepared(u), prepared(A.t()),
               prepared(D), _numpy(state), _numpy(y), height, width, direction, block, accumulate)
