"""Selective scan (the S6 recurrence of Mamba) in pure PyTorch, with an optional dispatch to ``mamba_ssm``'s kernel.

The recurrence, per batch ``b``, channel ``d`` and state ``n``::

    delta = softplus(delta + delta_bias)              (each step optional)
    h_t   = exp(delta_t * A[d, n]) * h_{t-1} + delta_t * B_t[n] * u_t
    y_t   = sum_n C_t[n] * h_t[n] + D[d] * u_t
    out_t = y_t * silu(z_t)                           (when z is given)

Argument layout and semantics follow ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``: ``u`` and
``delta`` are ``(batch, dim, L)``; ``A`` is ``(dim, N)`` (real only); ``B`` and ``C`` are either time-varying
``(batch, N, L)``, grouped ``(batch, G, N, L)`` (channel ``d`` uses group ``d // (dim // G)``) or time-invariant
``(dim, N)``; ``D`` and ``delta_bias`` are ``(dim,)``; ``z`` is ``(batch, dim, L)``. The output has ``u``'s dtype;
the arithmetic runs in float32, or float64 when any of ``u, delta, A, B, C`` is float64. With
``return_last_state=True`` the result is ``(out, last_state)`` with ``last_state`` of shape ``(batch, dim, N)``.

Beyond ``mamba_ssm``, every entry point takes ``initial_state`` ``(batch, dim, N)``: the state ``h_{-1}`` the scan
starts from (zeros when ``None``). LE-Mamba's state sharing reads and injects states this way. The CUDA kernel has
no initial state, so :func:`selective_scan` only calls it when ``initial_state is None``.

Four implementations:

- :func:`selective_scan_reference`: the sequential loop over ``L``, the ground truth (differentiable by autograd;
  slow). Pass float64 tensors for a float64 reference.
- :func:`selective_scan_chunked`: the default CPU path. The sequence is processed in time blocks (sized so that a
  block's ``(T, batch, dim, N)`` work tensors stay in cache), one after the other, carrying the state. Inside a
  block the scan is chunk-parallel: every chunk of ``chunk`` steps is first reduced from a zero state (all chunks
  at once, one step at a time), the boundary states follow from a scan over the chunks with their total decays
  ``exp(A * sum(delta))``, and each chunk is then re-scanned in place from its true incoming state. Only products
  of per-step decays ``exp(delta * A)`` and sums appear, never ``exp(-cumsum(delta * A))``, so any ``delta`` is
  safe: a decay that underflows is 0, exactly as in the sequential loop. Backward is hand-written: per block, the
  states are recomputed from the saved block-entry state and the adjoint recurrence ``g_t = C_t dy_t + a_{t+1}
  g_{t+1}`` runs as the same chunked scan in reverse; autograd keeps the inputs and one state per block.
- :func:`selective_scan_compiled`: a numba kernel per ``(batch, channel)`` sequence with a hand-written backward
  (:mod:`spatialx.models.scan_cpu`), the CPU default when numba imports and ``B``/``C`` vary in time.
- ``mamba_ssm``'s fused CUDA kernel, used by :func:`selective_scan` for CUDA tensors when the package imports.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BLOCK_ELEMENTS_CPU",
    "BLOCK_ELEMENTS_CUDA",
    "default_chunk",
    "linear_scan",
    "mamba_selective_scan_fn",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_compiled",
    "selective_scan_reference",
]

_BACKENDS = ("auto", "compiled", "chunked", "reference", "cuda")


# ----------------------------------------------------------------------------------------------------------------
# mamba_ssm (optional, lazy)
# ----------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def mamba_selective_scan_fn() -> Callable[..., Any] | None:
    """``mamba_ssm``'s ``selective_scan_fn`` when that package imports, else ``None`` (looked up once, lazily).

    ``mamba_ssm`` is published as source only and fails to import without a CUDA build; any failure counts as absent.
    """
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, OSError from a missing .so, RuntimeError from a CUDA-less build
        return None
    return selective_scan_fn


# ----------------------------------------------------------------------------------------------------------------
# Input handling shared by the implementations
# ----------------------------------------------------------------------------------------------------------------


def _compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    for tensor in tensors:
        if tensor is not None and tensor.dtype == torch.float64:
            return torch.float64
    return torch.float32


def _check_inputs(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
                  delta_bias: Tensor | None, initial_state: Tensor | None) -> tuple[int, int, int, int]:
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, dim, L), got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"delta must have u's shape {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.is_complex():
        raise TypeError("complex A is not supported by the pure-PyTorch selective scan")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must be (dim={dim}, N), got shape {tuple(A.shape)}")
    n_state = A.shape[1]
    for name, mat in (("B", B), ("C", C)):
        if mat.is_complex():
            raise TypeError(f"complex {name} is not supported by the pure-PyTorch selective scan")
        if mat.dim() == 2:
            ok = tuple(mat.shape) == (dim, n_state)
        elif mat.dim() == 3:
            ok = tuple(mat.shape) == (batch, n_state, length)
        elif mat.dim() == 4:
            ok = (mat.shape[0], mat.shape[2], mat.shape[3]) == (batch, n_state, length) and dim % mat.shape[1] == 0
        else:
            ok = False
        if not ok:
            raise ValueError(f"{name} must be (dim, N), (batch, N, L) or (batch, G, N, L) with G dividing dim; got "
                             f"shape {tuple(mat.shape)} for u {tuple(u.shape)} and N={n_state}")
    for name, vec in (("D", D), ("delta_bias", delta_bias)):
        if vec is not None and tuple(vec.shape) != (dim,):
            raise ValueError(f"{name} must be (dim={dim},), got shape {tuple(vec.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have u's shape {tuple(u.shape)}, got {tuple(z.shape)}")
    if initial_state is not None and tuple(initial_state.shape) != (batch, dim, n_state):
        raise ValueError(f"initial_state must be (batch, dim, N)={(batch, dim, n_state)}, "
                         f"got {tuple(initial_state.shape)}")
    return batch, dim, length, n_state


def _effective_delta(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool, dtype: torch.dtype) -> Tensor:
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return delta


def _epilogue(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None, dtype_out: torch.dtype) -> Tensor:
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(dtype_out)


# ----------------------------------------------------------------------------------------------------------------
# Reference: the sequential loop
# ----------------------------------------------------------------------------------------------------------------


def _per_channel(mat: Tensor, dim: int) -> Tensor:
    """B or C as (batch, dim, N, L), or (dim, N) when time-invariant."""
    if mat.dim() == 2:
        return mat
    if mat.dim() == 3:
        return mat.unsqueeze(1).expand(-1, dim, -1, -1)
    return mat.repeat_interleave(dim // mat.shape[1], dim=1)


def selective_scan_reference(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                             z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
                             return_last_state: bool = False,
                             initial_state: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
    """The selective scan as a plain loop over the sequence: slow, simple, the ground truth for the other paths.

    Same arguments and results as :func:`selective_scan`. Differentiable through autograd (one graph node per step).
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias, initial_state)
    dtype_in = u.dtype
    ctype = _compute_dtype(u, delta, A, B, C)
    batch, dim, length = u.shape
    n_state = A.shape[1]
    uc = u.to(ctype)
    dc = _effective_delta(delta, delta_bias, delta_softplus, ctype)
    Bc = _per_channel(B.to(ctype), dim)
    Cc = _per_channel(C.to(ctype), dim)
    decay = torch.exp(torch.einsum("bdl,dn->bdln", dc, A.to(ctype)))
    if Bc.dim() == 2:
        drive = torch.einsum("bdl,dn,bdl->bdln", dc, Bc, uc)
    else:
        drive = torch.einsum("bdl,bdnl,bdl->bdln", dc, Bc, uc)
    h = uc.new_zeros(batch, dim, n_state) if initial_state is None else initial_state.to(ctype)
    ys = []
    # unbind (not indexing) per step, so that backward stacks the step gradients once instead of L full-size times
    decays, drives = decay.unbind(2), drive.unbind(2)
    Cs = None if Cc.dim() == 2 else Cc.unbind(3)
    for t in range(length):
        h = decays[t] * h + drives[t]
        if Cs is None:
            ys.append(torch.einsum("bdn,dn->bd", h, Cc))
        else:
            ys.append(torch.einsum("bdn,bdn->bd", h, Cs[t]))
    y = torch.stack(ys, dim=2) if ys else uc.new_zeros(batch, dim, 0)
    out = _epilogue(y, uc, D, z, dtype_in)
    return (out, h) if return_last_state else out


# ----------------------------------------------------------------------------------------------------------------
# Chunked linear recurrence h_t = a_t * h_{t-1} + x_t
# ----------------------------------------------------------------------------------------------------------------


def default_chunk(length: int) -> int:
    """The chunk length used when ``chunk`` is not given: a power of two near ``sqrt(length)``, within [16, 256]."""
    if length <= 16:
        return 16
    return int(min(256, max(16, 2 ** round(math.log2(math.sqrt(length))))))


def _sequential_(a: Tensor, x: Tensor, carry: Tensor | None, reverse: bool) -> Tensor:
    xs, a_steps = x.unbind(0), a.unbind(0)
    order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    prev = carry
    for t in order:
        if prev is not None:
            xs[t].addcmul_(a_steps[t], prev)
        prev = xs[t]
    return x


def _scan_(a: Tensor, x: Tensor, carry: Tensor | None, chunk: int, reverse: bool = False,
           totals: Tensor | None = None) -> Tensor:
    """In place along dim 0 of ``x`` (L, ...): forward ``x_t += a_t * x_{t-1}`` with ``x_{-1} = carry``, or reverse
    ``x_t += a_t * x_{t+1}`` with ``x_L = carry`` (``carry`` None means zeros). ``x`` must be contiguous.

    Reduce, then scan: each chunk's end state from a zero start (one read-only pass), the boundary states by a
    (recursive) scan over chunks with the chunks' total decays, then every chunk scanned in place from its true
    incoming state, the steps of all chunks vectorised together. ``totals`` (n_chunks, ...), the product of ``a``
    over each whole chunk, may be given when the caller has it cheaper than ``a.prod``.
    """
    length = x.shape[0]
    if length <= chunk:
        return _sequential_(a, x, carry, reverse)
    n_chunks, rest = divmod(length, chunk)
    main = n_chunks * chunk
    if rest:  # a ragged tail is scanned step by step, before (reverse) or after (forward) the chunked part
        if reverse:
            _sequential_(a[main:], x[main:], carry, reverse)
            _scan_(a[:main], x[:main], x[main], chunk, reverse, totals)
        else:
            _scan_(a[:main], x[:main], carry, chunk, reverse, totals)
            _sequential_(a[main:], x[main:], x[main - 1], reverse)
        return x
    width = x.shape[1:]
    xs = x.view(n_chunks, chunk, *width).unbind(1)  # per-step views across all chunks
    as_ = a.view(n_chunks, chunk, *width)
    a_steps = as_.unbind(1)
    order = list(range(chunk - 1, -1, -1) if reverse else range(chunk))
    # 1) every chunk's end state from a zero start
    ends = xs[order[0]].clone(memory_format=torch.contiguous_format)
    spare = torch.empty_like(ends)
    for t in order[1:]:
        torch.addcmul(xs[t], a_steps[t], ends, out=spare)
        ends, spare = spare, ends
    # 2) boundary states: a scan over the chunks with each chunk's total decay
    if totals is None:
        totals = as_.prod(dim=1)
    bounds = _scan_(totals, ends, carry, chunk, reverse)
    # 3) the state entering each chunk
    incoming = spare
    if reverse:
        incoming[:-1] = bounds[1:]
        edge = -1
    else:
        incoming[1:] = bounds[:-1]
        edge = 0
    if carry is None:
        incoming[edge].zero_()
    else:
        incoming[edge] = carry
    # 4) every chunk again, in place, from its incoming state
    prev = incoming
    for t in order:
        xs[t].addcmul_(a_steps[t], prev)
        prev = xs[t]
    return x


class _LinearScan(torch.autograd.Function):
    """h = scan(a, x, h0) along dim 0 of (L, M) tensors; backward runs the adjoint scan in reverse."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, x: Tensor, h0: Tensor | None, chunk: int) -> Tensor:
        a = a.contiguous()
        h = x.clone(memory_format=torch.contiguous_format)
        _scan_(a, h, h0, chunk)
        ctx.chunk = chunk
        ctx.has_h0 = h0 is not None
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    def backward(ctx: Any, dh: Tensor) -> tuple[Tensor | None, ...]:
        a, h, h0 = ctx.saved_tensors
        # g_t = dL/dh_t (total) obeys g_t = dh_t + a_{t+1} g_{t+1}: a reverse scan with the decays shifted by one.
        shifted = torch.empty_like(a, memory_format=torch.contiguous_format)
        shifted[:-1] = a[1:]
        shifted[-1].zero_()
        g = dh.clone(memory_format=torch.contiguous_format)
        _scan_(shifted, g, None, ctx.chunk, reverse=True)
        del shifted
        grad_a = None
        if ctx.needs_input_grad[0]:
            grad_a = torch.empty_like(a, memory_format=torch.contiguous_format)
            torch.mul(g[1:], h[:-1], out=grad_a[1:])
            if h0 is None:
                grad_a[0].zero_()
            else:
                torch.mul(g[0], h0, out=grad_a[0])
        grad_h0 = a[0] * g[0] if (ctx.has_h0 and ctx.needs_input_grad[2]) else None
        return grad_a, g, grad_h0, None


def linear_scan(a: Tensor, x: Tensor, h0: Tensor | None = None, chunk: int | None = None) -> Tensor:
    """All states of ``h_t = a_t * h_{t-1} + x_t`` along dim 0 (``h_{-1} = h0``, zeros when None), chunked.

    ``a`` and ``x`` are ``(L, ...)`` of one shape, ``h0`` has the shape of ``x[0]``. Differentiable in all three.
    """
    if a.shape != x.shape:
        raise ValueError(f"a and x must have one shape, got {tuple(a.shape)} and {tuple(x.shape)}")
    if x.shape[0] == 0:
        return x.clone()
    shape = x.shape
    flat_a = a.reshape(shape[0], -1)
    flat_x = x.reshape(shape[0], -1)
    flat_h0 = None if h0 is None else h0.reshape(-1).contiguous()
    chunk = default_chunk(shape[0]) if chunk is None else int(chunk)
    if chunk < 2:
        raise ValueError(f"chunk must be >= 2, got {chunk}")
    return _LinearScan.apply(flat_a, flat_x, flat_h0, chunk).view(shape)


# ----------------------------------------------------------------------------------------------------------------
# Chunked selective scan: sequential over time blocks, chunk-parallel inside each, hand-written backward
# ----------------------------------------------------------------------------------------------------------------

#: Default size, in elements of the (T, batch, dim, N) state tensor, of one time block on CPU: small enough that a
#: block's work tensors stay in cache and in the allocator's reused memory, large enough to amortise the per-step
#: Python overhead. CUDA blocks are larger (kernel launches, not cache, are the constraint there).
BLOCK_ELEMENTS_CPU = 1 << 18
BLOCK_ELEMENTS_CUDA = 1 << 24


def _plan(length: int, cells: int, chunk: int | None, block_elements: int) -> tuple[int, int]:
    """(chunk, time block length): a block of about ``block_elements / cells`` steps, a multiple of the chunk."""
    steps = max(1, block_elements // max(1, cells))
    if chunk is None:
        chunk = int(min(128, max(8, 2 ** round(math.log2(math.sqrt(min(steps, length)))))))
    block = max(chunk, steps // chunk * chunk)
    return chunk, min(block, length)


def _view(buffer: Tensor, shape: tuple[int, ...], offset_rows: int = 0) -> Tensor:
    row = math.prod(shape[1:])
    return buffer[offset_rows * row:(offset_rows + shape[0]) * row].view(shape)


def _chunk_totals(delta: Tensor, A: Tensor, chunk: int) -> Tensor:
    """prod over each chunk of exp(delta_t * A) = exp(A * sum_t delta_t): (T, b, d) -> (T // chunk, b, d, N)."""
    sums = delta.reshape(delta.shape[0] // chunk, chunk, *delta.shape[1:]).sum(dim=1)
    return torch.exp(sums.unsqueeze(-1) * A)


def _grouped(x: Tensor, groups: int) -> Tensor:
    """(T, b, dim, ...) -> (T, b, G, dim // G, ...) view."""
    return x.view(x.shape[0], x.shape[1], groups, x.shape[2] // groups, *x.shape[3:])


def _drive(du: Tensor, B: Tensor, out: Tensor) -> Tensor:
    """w (T, b, dim) times B (T, b, G, N) or (dim, N) into out (T, b, dim, N): delta*u*B, or dy*C."""
    if B.dim() == 2:
        return torch.mul(du.unsqueeze(-1), B, out=out)
    groups = B.shape[2]
    torch.mul(_grouped(du, groups).unsqueeze(-1), B.unsqueeze(3), out=_grouped(out, groups))
    return out


def _readout(states: Tensor, C: Tensor) -> Tensor:
    """sum_n states (T, b, dim, N) * C (T, b, G, N) or (dim, N) -> (T, b, dim)."""
    if C.dim() == 2:
        return torch.einsum("lbdn,dn->lbd", states, C)
    y = torch.einsum("lbghn,lbgn->lbgh", _grouped(states, C.shape[2]), C)
    return y.reshape(states.shape[:3])


def _outer_grad(states: Tensor, weight: Tensor, like: Tensor) -> Tensor:
    """sum over a group's channels of states (T, b, dim, N) * weight (T, b, dim): a block's gradient for B or C,
    (dim, N) summed over the steps when ``like`` is (dim, N), else (T, b, G, N) for ``like`` (batch, G, N, L)."""
    if like.dim() == 2:
        return torch.einsum("lbdn,lbd->dn", states, weight)
    groups = like.shape[1]
    return torch.einsum("lbghn,lbgh->lbgn", _grouped(states, groups), _grouped(weight, groups))


def _time_block(x: Tensor, start: int, stop: int) -> Tensor:
    """Steps [start, stop) of a (batch, ..., L) tensor as a contiguous (T, batch, ...) tensor."""
    return x[..., start:stop].movedim(-1, 0).contiguous()


def _block_states(delta_b: Tensor, du_b: Tensor, A: Tensor, B_b: Tensor, h_in: Tensor, chunk: int,
                  decay_buf: Tensor, state_buf: Tensor) -> tuple[Tensor, Tensor]:
    """Decays exp(delta A) and states (T, b, dim, N) of one time block entered with state ``h_in``."""
    shape = (*delta_b.shape, A.shape[1])
    decay = torch.mul(delta_b.unsqueeze(-1), A, out=_view(decay_buf, shape))
    decay.exp_()
    states = _drive(du_b, B_b, _view(state_buf, shape))
    whole = delta_b.shape[0] // chunk * chunk
    totals = _chunk_totals(delta_b[:whole], A, chunk) if whole else None
    _scan_(decay, states, h_in, chunk, totals=totals)
    return decay, states


class _SelectiveScanFn(torch.autograd.Function):
    """(delta, delta*u, A, B, C, h0) -> (sum_n C h, last state), both in mamba's (batch, dim, L) layout.

    ``delta``, ``du``: (batch, dim, L); ``A``: (dim, N); ``B``, ``C``: (dim, N) or (batch, G, N, L); ``h0``:
    (batch, dim, N) or None. The sequence is processed in time blocks of ``block`` steps, one after the other,
    each with the chunked scan on sequence-major (T, batch, dim, N) work tensors; only the state entering each
    block is kept for backward, which recomputes a block's states and runs the adjoint recurrence backwards.
    """

    @staticmethod
    def forward(ctx: Any, delta: Tensor, du: Tensor, A: Tensor, B: Tensor, C: Tensor, h0: Tensor | None,
                chunk: int, block: int) -> tuple[Tensor, Tensor]:
        batch, dim, length = delta.shape
        n_state = A.shape[1]
        y = delta.new_empty(batch, dim, length)
        decay_buf = delta.new_empty(block * batch * dim * n_state)
        state_buf = torch.empty_like(decay_buf)
        state = delta.new_zeros(batch, dim, n_state) if h0 is None else h0
        entering = []
        for start in range(0, length, block):
            stop = min(start + block, length)
            entering.append(state)
            _, states = _block_states(_time_block(delta, start, stop), _time_block(du, start, stop), A,
                                      _bc_steps(B, start, stop), state, chunk, decay_buf, state_buf)
            y[..., start:stop] = _readout(states, _bc_steps(C, start, stop)).permute(1, 2, 0)
            state = states[-1].clone()
        ctx.save_for_backward(delta, du, A, B, C, torch.stack(entering))
        ctx.chunk, ctx.block = chunk, block
        ctx.set_materialize_grads(False)
        return y, state

    @staticmethod
    def backward(ctx: Any, dy: Tensor | None, dlast: Tensor | None) -> tuple[Tensor | None, ...]:
        if dy is None and dlast is None:
            return (None,) * 8
        delta, du, A, B, C, entering = ctx.saved_tensors
        chunk, block = ctx.chunk, ctx.block
        batch, dim, length = delta.shape
        n_state = A.shape[1]
        need = ctx.needs_input_grad
        grad_delta = torch.empty_like(delta) if need[0] else None
        grad_du = torch.empty_like(du) if need[1] else None
        grad_A = torch.zeros_like(A) if need[2] else None
        grad_B = (torch.zeros_like(B) if B.dim() == 2 else torch.empty_like(B)) if need[3] else None
        # every step's gradient is written below, except C's when only the last state has a gradient
        grad_C = (torch.zeros_like(C) if C.dim() == 2 or dy is None else torch.empty_like(C)) if need[4] else None
        # dL/dh at the end of the current block through later steps (at the very end: the last state's gradient)
        carry = dlast if dlast is not None else delta.new_zeros(batch, dim, n_state)
        row = batch * dim * n_state
        decay_buf = delta.new_empty((block + 1) * row)  # one spare row, see `shifted` below
        state_buf, grad_buf, through_buf = (delta.new_empty(block * row) for _ in range(3))
        starts = list(range(0, length, block))
        for index in range(len(starts) - 1, -1, -1):
            start = starts[index]
            stop = min(start + block, length)
            steps = stop - start
            shape = (steps, batch, dim, n_state)
            delta_b, du_b = _time_block(delta, start, stop), _time_block(du, start, stop)
            B_b, C_b = _bc_steps(B, start, stop), _bc_steps(C, start, stop)
            h_in = entering[index]
            decay, states = _block_states(delta_b, du_b, A, B_b, h_in, chunk, decay_buf, state_buf)
            # g_t = dL/dh_t = C_t dy_t + a_{t+1} g_{t+1}; past the block's end, a_{t+1} g_{t+1} is `carry`
            g = _view(grad_buf, shape)
            if dy is not None:
                dy_b = _time_block(dy, start, stop)
                _drive(dy_b, C_b, g)
                if grad_C is not None:
                    _store_bc_grad(grad_C, _outer_grad(states, dy_b, C), start, stop)
            else:
                g.zero_()
            # a_t h_{t-1}, the part of h_t that came through the decay: dL/d(delta_t A) = g_t a_t h_{t-1}
            through = _view(through_buf, shape)
            torch.mul(decay[1:], states[:-1], out=through[1:])
            torch.mul(decay[0], h_in, out=through[0])
            # a_{t+1}: the decay buffer read one row later, its spare last row set to 1 (the link to `carry`);
            # their chunk products come from delta_{t+1}, with delta = 0 for that last link
            _view(decay_buf, (1, *shape[1:]), offset_rows=steps).fill_(1)
            shifted = _view(decay_buf, shape, offset_rows=1)
            delta_next = torch.zeros_like(delta_b)
            delta_next[:-1] = delta_b[1:]
            whole = steps // chunk * chunk
            totals = _chunk_totals(delta_next[:whole], A, chunk) if whole else None
            _scan_(shifted, g, carry, chunk, reverse=True, totals=totals)
            carry = decay[0] * g[0]  # dL/dh_{start-1}
            if grad_du is not None:
                grad_du[..., start:stop] = _readout(g, B_b).permute(1, 2, 0)
            if grad_B is not None:
                _store_bc_grad(grad_B, _outer_grad(g, du_b, B), start, stop)
            through.mul_(g)
            if grad_delta is not None:
                grad_delta[..., start:stop] = torch.einsum("lbdn,dn->bdl", through, A)
            if grad_A is not None:
                grad_A += torch.einsum("lbdn,lbd->dn", through, delta_b)
        grad_h0 = carry if need[5] else None
        return grad_delta, grad_du, grad_A, grad_B, grad_C, grad_h0, None, None


def _bc_steps(M: Tensor, start: int, stop: int) -> Tensor:
    """B or C for steps [start, stop): (dim, N) as is, (batch, G, N, L) as a contiguous (T, batch, G, N)."""
    return M if M.dim() == 2 else _time_block(M, start, stop)


def _store_bc_grad(grad: Tensor, block_grad: Tensor, start: int, stop: int) -> None:
    if grad.dim() == 2:
        grad += block_grad
    else:
        grad[..., start:stop] = block_grad.permute(1, 2, 3, 0)


def selective_scan_chunked(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                           z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
                           return_last_state: bool = False, initial_state: Tensor | None = None,
                           chunk: int | None = None,
                           block_elements: int | None = None) -> Tensor | tuple[Tensor, Tensor]:
    """The selective scan, chunked and vectorised in pure PyTorch (any device); see the module docstring.

    The sequence is processed in time blocks of about ``block_elements`` elements of the ``(T, batch, dim, N)``
    state tensor (default :data:`BLOCK_ELEMENTS_CPU` / :data:`BLOCK_ELEMENTS_CUDA`), one after the other, the
    state carried between them; inside a block the scan runs chunk-parallel with chunks of ``chunk`` steps
    (default: a power of two near the square root of the block length). Results do not depend on either beyond
    rounding, and ``L`` need not be a multiple of either. Autograd keeps the inputs and one state per block;
    backward recomputes the rest block by block.
    """
    batch, dim, length, n_state = _check_inputs(u, delta, A, B, C, D, z, delta_bias, initial_state)
    dtype_in = u.dtype
    ctype = _compute_dtype(u, delta, A, B, C)
    uc = u.to(ctype)
    if length == 0:
        out = _epilogue(uc.clone(), uc, None, None, dtype_in)
        state = uc.new_zeros(batch, dim, n_state) if initial_state is None else initial_state.to(ctype).clone()
        return (out, state) if return_last_state else out
    if chunk is not None and int(chunk) < 2:
        raise ValueError(f"chunk must be >= 2, got {chunk}")
    if block_elements is None:
        block_elements = BLOCK_ELEMENTS_CUDA if u.is_cuda else BLOCK_ELEMENTS_CPU
    chunk, block = _plan(length, batch * dim * n_state, None if chunk is None else int(chunk), int(block_elements))
    dc = _effective_delta(delta, delta_bias, delta_softplus, ctype)
    Bc = B.to(ctype) if B.dim() != 3 else B.to(ctype).unsqueeze(1)
    Cc = C.to(ctype) if C.dim() != 3 else C.to(ctype).unsqueeze(1)
    h0 = None if initial_state is None else initial_state.to(ctype).contiguous()
    y, last = _SelectiveScanFn.apply(dc, dc * uc, A.to(ctype).contiguous(), Bc, Cc, h0, chunk, block)
    out = _epilogue(y, uc, D, z, dtype_in)
    return (out, last) if return_last_state else out


def selective_scan_compiled(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                            z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
                            return_last_state: bool = False, initial_state: Tensor | None = None,
                            block_elements: int | None = None) -> Tensor | tuple[Tensor, Tensor]:
    """The selective scan through the compiled CPU kernel (:mod:`spatialx.models.scan_cpu`); same contract.

    Needs numba, CPU tensors and time-varying ``B``/``C`` (``(batch, N, L)`` or grouped); raises otherwise.
    ``block_elements``: decays per time block (default :data:`spatialx.models.scan_cpu.BLOCK_ELEMENTS`); results
    do not depend on it. With grad mode off (``torch.no_grad``, ``torch.inference_mode``) one compiled pass
    computes the decays in its loop and keeps nothing for backward (``scan_cpu.inference_scan``). (SS2D's
    inference on the CPU calls ``scan_cpu.ss2d_inference_scan`` directly: four directions in one pass.)
    """
    from spatialx.models import scan_cpu

    length = _check_inputs(u, delta, A, B, C, D, z, delta_bias, initial_state)[2]
    if length == 0:  # nothing to scan: the chunked path's answer (the initial state) is the whole result
        return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                                      initial_state)
    dtype_in = u.dtype
    ctype = _compute_dtype(u, delta, A, B, C)
    Bc = B.to(ctype) if B.dim() != 3 else B.to(ctype).unsqueeze(1)
    Cc = C.to(ctype) if C.dim() != 3 else C.to(ctype).unsqueeze(1)
    if not scan_cpu.supports(delta, Bc, Cc):
        raise RuntimeError("the compiled scan needs numba, CPU tensors and time-varying B and C")
    uc = u.to(ctype)
    dc = _effective_delta(delta, delta_bias, delta_softplus, ctype)
    h0 = None if initial_state is None else initial_state.to(ctype)
    if not torch.is_grad_enabled():
        # inference (no_grad / inference_mode): one pass, decays in the loop, nothing of size (batch, dim, L, N)
        # and nothing saved; with grad mode on, the autograd Function below runs even for inputs without grad
        y, last = scan_cpu.inference_scan(dc, uc, A.to(ctype), Bc, Cc, D, h0)
        out = y if z is None else y * F.silu(z.to(ctype))
        out = out.to(dtype_in)
        return (out, last) if return_last_state else out
    y, last = scan_cpu.compiled_scan(dc, dc * uc, A.to(ctype), Bc, Cc, h0,
                                     block_elements or scan_cpu.BLOCK_ELEMENTS)
    out = _epilogue(y, uc, D, z, dtype_in)
    return (out, last) if return_last_state else out


def _compiled_usable(u: Tensor, B: Tensor, C: Tensor) -> bool:
    if u.device.type != "cpu" or B.dim() == 2 or C.dim() == 2:  # e.g. meta tensors for FLOP counting
        return False
    from spatialx.models import scan_cpu

    return scan_cpu.available()


# ----------------------------------------------------------------------------------------------------------------
# Dispatcher
# ----------------------------------------------------------------------------------------------------------------


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                   z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
                   return_last_state: bool = False, initial_state: Tensor | None = None, chunk: int | None = None,
                   backend: str = "auto") -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan with ``mamba_ssm.selective_scan_fn``'s arguments, plus ``initial_state`` (see module doc).

    ``backend``: ``"auto"`` uses ``mamba_ssm``'s CUDA kernel when it imports, the tensors are on CUDA (not
    float64) and ``initial_state is None`` (the kernel cannot start from a state); on the CPU, the compiled numba
    kernel (:func:`selective_scan_compiled`) when numba imports, ``B``/``C`` vary in time and no ``chunk`` is
    given; else :func:`selective_scan_chunked` (``chunk`` is passed to it). ``"compiled"``, ``"chunked"`` and
    ``"reference"`` force that path; ``"cuda"`` forces the CUDA kernel and raises when it cannot be used. Returns
    ``out`` ``(batch, dim, L)``, or ``(out, last_state)`` with ``return_last_state``.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if u.device.type == "meta" and backend == "auto":
        # Shapes only (FLOP counting): the recurrence has no values to compute, and stepping it through meta
        # kernels costs seconds per network.
        batch, dim, length, n_state = _check_inputs(u, delta, A, B, C, D, z, delta_bias, initial_state)
        out = u.new_empty(batch, dim, length)
        return (out, u.new_empty(batch, dim, n_state)) if return_last_state else out
    if backend in ("auto", "cuda"):
        kernel = mamba_selective_scan_fn() if u.is_cuda else None
        usable = kernel is not None and initial_state is None and u.dtype != torch.float64
        if backend == "cuda" and not usable:
            why = ("the tensors are not on CUDA" if not u.is_cuda
                   else "mamba_ssm is not importable" if kernel is None
                   else "initial_state is not supported by the kernel" if initial_state is not None
                   else "the kernel has no float64 version")
            raise RuntimeError(f"backend='cuda' cannot be used: {why}")
        if usable:
            return kernel(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if backend == "compiled" or (backend == "auto" and chunk is None and _compiled_usable(u, B, C)):
        return selective_scan_compiled(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                                       initial_state)
    if backend == "reference":
        return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                                        initial_state)
    return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                                  initial_state, chunk)
