"""The WKV recurrence of RWKV-5/6 ("Eagle"/"Finch") with a data-independent decay, as RWKVFusion uses it.

Per batch ``b``, head ``h`` (head size ``N``, value size ``V``, usually ``N = V = 32``), with the matrix-valued
state ``S`` (N x V) of each head::

    d      = exp(-exp(w[h]))                                   per key channel, in (0, 1]
    o_t[j] = sum_i r_t[i] * (S_{t-1}[i, j] + u[h, i] * k_t[i] * v_t[j])
    S_t    = diag(d) S_{t-1} + k_t v_t^T                       (S_{-1} = initial_state, zeros when None)

``r`` (receptance, the query), ``k`` and ``v`` are ``(batch, L, H, N)`` (``v``: ``(batch, L, H, V)``), ``w`` and
``u`` (the decay and the "bonus" of the current token) are ``(H, N)``, the state ``(batch, H, N, V)``; the output
has ``v``'s shape and ``r``'s dtype. The arithmetic runs in float32, or float64 when any input is float64. This is
what the notes read from the authors' code ("WKV per head, head size 32, decay exp(-exp(w)), bonus u"); the paper's
Eq. (7) writes Vision-RWKV's older RWKV-4 form (one scalar state per channel, normalised by a running sum of
``exp(k)``), which the authors' network does not use. ``w`` is a parameter, not a function of the input (RWKV-6's
data-dependent decay is not used), which is what makes the chunked form below cheap.

Implementations:

- :func:`wkv_reference`: the loop over ``L``, the ground truth, differentiable by autograd (slow).
- :func:`wkv_chunked`: the default pure-PyTorch path (any device, autograd). The sequence is cut into chunks of
  ``chunk`` steps (the last one zero-padded). With ``lam = -exp(w) <= 0`` the log-decay per step, every factor is
  the decay over a *non-negative* number of steps, ``exp(lam * m)`` with ``m >= 0``, so no factor can overflow for
  any ``w`` (``w = +-30`` included), and one that underflows is 0, as in the loop:

  * intra-chunk: ``A[s, tau] = sum_i r_s[i] k_tau[i] exp(lam_i (s - 1 - tau))`` for ``tau < s``, built one lag
    ``m = s - 1 - tau`` at a time (``chunk - 1`` vectorised products over all chunks; the usual factorisation
    ``(r_s e^{lam s}) . (k_tau e^{-lam (tau + 1)})`` needs ``e^{-lam t}``, which overflows for strong decays), then
    ``o_intra = A v`` as one batched matmul;
  * inter-chunk: each chunk's state contribution ``sum_tau (k_tau e^{lam (T - 1 - tau)}) v_tau^T``, the states
    entering the chunks by :func:`spatialx.models.scan.linear_scan` over chunks with the chunk decay
    ``e^{lam T}``, and ``o_inter = (r_s e^{lam s}) S_in`` as a batched matmul;
  * the bonus term ``(r_t . (u * k_t)) v_t``.

  ``w`` is clamped to ``log(1e4)`` (a decay of ``exp(-1e4)``, 0 in float32 and float64 alike, as
  ``exp(-exp(w))`` already is there): this keeps ``lam * 0`` finite (``-inf * 0`` would be NaN) and the gradient
  past the clamp 0, and changes no value. With gradients on, the intra-chunk scores are recomputed in backward
  (activation checkpointing) rather than keeping ``chunk - 1`` lag products; what autograd keeps is then a few
  tensors of the inputs' size.
- :func:`wkv_compiled`: a numba loop per (batch, head), inference only (no gradients), CPU: ``3 N V`` multiply-adds
  per step and head, the ``V``-wide inner loops vectorised; see "Measurements".
- ``flash-linear-attention``'s (``fla``) RWKV-6 chunk kernel on CUDA when that package imports
  (:func:`fla_rwkv6`). UNTESTED HERE: this machine has no GPU and no ``fla``; the call follows fla's documented
  ``chunk_rwkv6(r, k, v, g, u, scale, initial_state, output_final_state)`` with ``g`` the per-step log-decay
  ``-exp(w)`` broadcast to ``(batch, L, H, N)`` and ``scale = 1`` (RWKV does not scale ``r``).

:func:`wkv` chooses: ``fla`` for CUDA tensors when it imports, the compiled kernel on the CPU when no gradient is
needed and numba imports, the chunked form otherwise. :class:`WKV` is the module RWKVFusion uses: it owns ``w``
and ``u`` and reports its cost to :mod:`spatialx.models.flops` (:meth:`WKV.extra_flops`).

Measurements (2-core machine shared with other work, ``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``,
float32, medians of 3). Inference, batch 1, 64 channels = 2 heads of 32, L = 256 * 256 = 65536:

=====================================  ==========
compiled (numba loop, serial)           0.047 s
chunked, chunk 8 / 16 / 32 / 64         0.38 / 0.16 / 0.23 / 0.42 s
reference loop                          2.7 s
=====================================  ==========

so the compiled kernel is kept and is the CPU inference default (3.4x the best chunked form; both agree to 3e-6
relative in float32). The first chunked version (lag products summed, not a matmul with the decay column) took
0.92 s at chunk 32. Training (forward + backward, batch 8, 2 heads, L = 64 * 64): chunked 0.57 / 0.45 / 0.69 s at
chunk 8 / 16 / 32, the reference 1.9 s; hence :data:`DEFAULT_CHUNK` = 16. The kernel is serial: the only
parallelism is batch x heads (4 jobs for one tile at RWKVFusion's finest level), and numba's OpenMP pool, once
started in a process, left workers spinning that made the torch work after it 3-8x slower here (training steps of a
small RWKVFusion: 0.25 s before, 2 s after; ``OMP_WAIT_POLICY=PASSIVE`` or ``NUMBA_THREADING_LAYER=workqueue``
avoid it, and the parallel selective-scan kernels start that pool too).
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from spatialx.models.scan import linear_scan

__all__ = ["DEFAULT_CHUNK", "WKV", "fla_rwkv6", "wkv", "wkv_chunked", "wkv_compiled", "wkv_flops", "wkv_reference"]

_BACKENDS = ("auto", "chunked", "compiled", "reference", "fla")

#: Chunk length of :func:`wkv_chunked` when none is given (see "Measurements" in the module docstring).
DEFAULT_CHUNK = 16

#: ``exp(w)`` is clamped to this: ``exp(-1e4)`` is 0 in every float type, as ``exp(-exp(w))`` is beyond it.
_MAX_RATE = 1e4


# ----------------------------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------------------------


def _check(r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor, initial_state: Tensor | None) -> None:
    if r.dim() != 4:
        raise ValueError(f"r must be (batch, L, H, N), got shape {tuple(r.shape)}")
    if k.shape != r.shape:
        raise ValueError(f"k must have r's shape {tuple(r.shape)}, got {tuple(k.shape)}")
    if v.dim() != 4 or v.shape[:3] != r.shape[:3]:
        raise ValueError(f"v must be (batch, L, H, V) with r's (batch, L, H) = {tuple(r.shape[:3])}, "
                         f"got {tuple(v.shape)}")
    heads, n = r.shape[2], r.shape[3]
    for name, p in (("w", w), ("u", u)):
        if tuple(p.shape) != (heads, n):
            raise ValueError(f"{name} must be (H, N) = {(heads, n)}, got {tuple(p.shape)}")
    if initial_state is not None and tuple(initial_state.shape) != (r.shape[0], heads, n, v.shape[3]):
        raise ValueError(f"initial_state must be (batch, H, N, V) = {(r.shape[0], heads, n, v.shape[3])}, "
                         f"got {tuple(initial_state.shape)}")


def _compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def _log_decay(w: Tensor, dtype: torch.dtype) -> Tensor:
    """``lam = -exp(w)``, the log of the per-step decay, with ``exp(w)`` clamped (see the module docstring)."""
    # clamp w, not exp(w): past the clamp the gradient is then 0 * exp(max), not 0 * inf
    return -torch.exp(w.to(dtype).clamp(max=math.log(_MAX_RATE)))


# ----------------------------------------------------------------------------------------------------------------
# Reference
# ----------------------------------------------------------------------------------------------------------------


def wkv_reference(r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor, initial_state: Tensor | None = None,
                  return_state: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """The recurrence as a plain loop over the sequence: the ground truth. Same arguments and results as
    :func:`wkv`; differentiable through autograd (one graph node per step). Pass float64 for a float64 reference."""
    _check(r, k, v, w, u, initial_state)
    ctype = _compute_dtype(r, k, v, w, u, initial_state)
    batch, _, heads, n = r.shape
    rc, kc, vc, uc = r.to(ctype), k.to(ctype), v.to(ctype), u.to(ctype)
    decay = torch.exp(-torch.exp(w.to(ctype))).unsqueeze(-1)  # (H, N, 1), exactly the formula
    state = (rc.new_zeros(batch, heads, n, v.shape[3]) if initial_state is None else initial_state.to(ctype))
    outs = []
    for rt, kt, vt in zip(rc.unbind(1), kc.unbind(1), vc.unbind(1), strict=True):
        kv = kt.unsqueeze(-1) * vt.unsqueeze(-2)  # (batch, H, N, V)
        outs.append(torch.einsum("bhn,bhnv->bhv", rt, state + uc.unsqueeze(-1) * kv))
        state = decay * state + kv
    out = torch.stack(outs, dim=1) if outs else vc.new_zeros(batch, 0, heads, v.shape[3])
    out = out.to(r.dtype)
    return (out, state) if return_state else out


# ----------------------------------------------------------------------------------------------------------------
# Chunked parallel form
# ----------------------------------------------------------------------------------------------------------------


def _intra_scores(r: Tensor, k: Tensor, lam: Tensor) -> Tensor:
    """``A[..., s, tau] = sum_i r_s[i] k_tau[i] exp(lam_i (s - 1 - tau))`` for ``tau < s``, else 0.

    ``r``, ``k``: (batch, H, chunks, T, N); ``lam``: (H, N). One lag ``m = s - 1 - tau`` at a time: its entries are
    the ``m + 1``-th subdiagonal of every chunk's (T, T) matrix, and ``exp(lam m) <= 1``."""
    length = r.shape[-2]
    scores = r.new_zeros(*r.shape[:-1], length)
    weights = torch.exp(lam[None] * torch.arange(length - 1, dtype=lam.dtype, device=lam.device)[:, None, None])
    weights = weights[:, :, None, :, None]  # (T - 1, H, 1, N, 1): a column per head, broadcast over the chunks
    for m in range(length - 1):
        # the product and a matmul with the decay column: one pass fewer than multiply-then-sum
        lagged = (r[..., m + 1:, :] * k[..., :length - 1 - m, :]) @ weights[m]
        scores.diagonal(offset=-(m + 1), dim1=-2, dim2=-1).copy_(lagged.squeeze(-1))
    return scores


def wkv_chunked(r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor, initial_state: Tensor | None = None,
                return_state: bool = False, chunk: int | None = None) -> Tensor | tuple[Tensor, Tensor]:
    """The chunked parallel form (module docstring); same arguments and results as :func:`wkv`."""
    _check(r, k, v, w, u, initial_state)
    chunk = DEFAULT_CHUNK if chunk is None else int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    ctype = _compute_dtype(r, k, v, w, u, initial_state)
    batch, length, heads, n = r.shape
    vdim = v.shape[3]
    if length == 0:
        state = (r.new_zeros(batch, heads, n, vdim, dtype=ctype) if initial_state is None
                 else initial_state.to(ctype))
        out = v.new_zeros(batch, 0, heads, vdim, dtype=r.dtype)
        return (out, state) if return_state else out
    chunk = min(chunk, length)
    n_chunks = -(-length // chunk)
    pad = n_chunks * chunk - length
    lam = _log_decay(w, ctype)  # (H, N)
    rb, kb, vb = (chunk_blocks(x.to(ctype), chunk, n_chunks, pad) for x in (r, k, v))
    from_start = decay_from_chunk_start(lam, chunk)
    to_end = from_start.flip(1)  # (H, T, N): decay over T - 1 - tau steps
    per_chunk = torch.exp(lam * chunk)  # (H, N)

    # inter-chunk: each chunk's own contribution to the state, then the states entering the chunks
    contrib = (kb * to_end[:, None]).transpose(-1, -2) @ vb  # (batch, H, chunks, N, V)
    contrib = contrib.permute(2, 0, 1, 3, 4)  # (chunks, batch, H, N, V)
    carry = per_chunk[None, None, :, :, None].expand(contrib.shape)
    h0 = None if initial_state is None else initial_state.to(ctype)
    after = linear_scan(carry, contrib, h0)  # state after each chunk
    first = after.new_zeros(after.shape[1:]) if h0 is None else h0
    entering = torch.cat([first.unsqueeze(0), after[:-1]], dim=0).permute(1, 2, 0, 3, 4)  # (batch, H, chunks, N, V)
    out = (rb * from_start[:, None]) @ entering

    # intra-chunk scores (recomputed in backward when gradients are on: they are chunk - 1 lag products)
    if torch.is_grad_enabled() and (rb.requires_grad or kb.requires_grad or lam.requires_grad):
        scores = checkpoint(_intra_scores, rb, kb, lam, use_reentrant=False)
    else:
        scores = _intra_scores(rb, kb, lam)
    out = out + scores @ vb
    # the bonus of the current token
    out = out + (rb * kb * u.to(ctype)[:, None, None, :]).sum(-1, keepdim=True) * vb

    out = out.permute(0, 2, 3, 1, 4).reshape(batch, n_chunks * chunk, heads, vdim)[:, :length].to(r.dtype)
    if not return_state:
        return out
    state = after[-1] if pad == 0 else last_chunk_state(entering[:, :, -1], kb, vb, lam, from_start, chunk - pad)
    return out, state


def chunk_blocks(x: Tensor, chunk: int, n_chunks: int, pad: int) -> Tensor:
    """(batch, L, H, X) -> (batch, H, chunks, T, X), zero-padded at the end to whole chunks."""
    x = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, pad))
    return x.reshape(x.shape[0], n_chunks, chunk, x.shape[2], x.shape[3]).permute(0, 3, 1, 2, 4)


def decay_from_chunk_start(lam: Tensor, chunk: int) -> Tensor:
    """(H, T, N): the decay over s = 0 .. T - 1 steps. Every exponent of the chunked form is ``lam`` times a
    non-negative step count, so nothing overflows, whatever ``w`` is."""
    return torch.exp(lam[:, None, :] * torch.arange(chunk, dtype=lam.dtype, device=lam.device)[:, None])


def last_chunk_state(entering: Tensor, kb: Tensor, vb: Tensor, lam: Tensor, from_start: Tensor, last: int) -> Tensor:
    """The state after the last chunk's ``last`` real steps, from the state ``entering`` it (batch, H, N, V): its
    padded steps must not decay the state."""
    tail_k, tail_v = kb[:, :, -1, :last], vb[:, :, -1, :last]
    return (torch.exp(lam * last)[None, :, :, None] * entering
            + (tail_k * from_start[:, :last].flip(1)).transpose(-1, -2) @ tail_v)


# ----------------------------------------------------------------------------------------------------------------
# Compiled CPU kernel (numba), inference only
# ----------------------------------------------------------------------------------------------------------------


def _wkv_loop(r, k, v, decay, u, state, out):  # pragma: no cover - compiled by numba, tested through wkv_compiled
    """One pass over the sequence per (batch, head); ``state`` (batch, H, N, V) is advanced in place."""
    batch, length, heads, n = r.shape
    vdim = v.shape[3]
    for job in range(batch * heads):
        b = job // heads
        h = job % heads
        s = state[b, h].copy()
        acc = np.empty(vdim, dtype=out.dtype)
        for t in range(length):
            bonus = r[b, t, h, 0] * 0
            for i in range(n):
                bonus += r[b, t, h, i] * u[h, i] * k[b, t, h, i]
            for j in range(vdim):
                acc[j] = bonus * v[b, t, h, j]
            for i in range(n):
                ri = r[b, t, h, i]
                ki = k[b, t, h, i]
                di = decay[h, i]
                for j in range(vdim):
                    old = s[i, j]
                    acc[j] += ri * old
                    s[i, j] = di * old + ki * v[b, t, h, j]
            for j in range(vdim):
                out[b, t, h, j] = acc[j]
        state[b, h] = s


np: Any = None  # numpy, bound when the kernel is compiled (the loop's np.empty)
_KERNEL_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _kernel() -> Callable[..., None] | None:
    """The compiled :func:`_wkv_loop`, or None when numba cannot be imported (compiled lazily, cached on disk)."""
    global np
    try:
        import numpy
        from numba import njit
    except Exception as exc:  # ImportError, an llvmlite that does not load here
        warnings.warn(f"the compiled WKV kernel is unavailable ({type(exc).__name__}: {exc}); using the chunked "
                      "PyTorch form", RuntimeWarning, stacklevel=3)
        return None
    np = numpy
    # as spatialx.models._scan_kernels: reassoc/contract so the V-wide inner loops vectorise (no nnan/ninf, so NaN
    # and inf stay IEEE), numpy's error model (no ZeroDivisionError checks in the loops), cached compiled code.
    # Serial (parallel=False): there are only batch x heads independent jobs (4 for a tile at the finest level), and
    # numba's OpenMP pool, once started, leaves workers spinning that slowed the torch work after it 3-8x here.
    return njit(cache=True, nogil=True, fastmath={"reassoc", "contract"}, error_model="numpy")(_wkv_loop)


def compiled_available() -> bool:
    return _kernel() is not None


def wkv_compiled(r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor, initial_state: Tensor | None = None,
                 return_state: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """The numba kernel (CPU tensors, no gradients); same arguments and results as :func:`wkv`."""
    _check(r, k, v, w, u, initial_state)
    kernel = _kernel()
    if kernel is None:
        raise RuntimeError("the compiled WKV kernel needs numba")
    if any(t is not None and t.device.type != "cpu" for t in (r, k, v, w, u, initial_state)):
        raise ValueError("the compiled WKV kernel runs on CPU tensors")
    ctype = _compute_dtype(r, k, v, w, u, initial_state)
    batch, _, heads, n = r.shape
    vdim = v.shape[3]
    with torch.no_grad():
        arrays = [t.detach().to(ctype).contiguous() for t in (r, k, v)]
        decay = torch.exp(_log_decay(w.detach(), ctype)).contiguous()
        bonus = u.detach().to(ctype).contiguous()
        state = (torch.zeros(batch, heads, n, vdim, dtype=ctype) if initial_state is None
                 else initial_state.detach().to(ctype).clone(memory_format=torch.contiguous_format))
        out = torch.empty(v.shape, dtype=ctype)
        with _KERNEL_LOCK:  # one call at a time: tiles fused by parallel workers take turns (as scan_cpu does)
            kernel(*(t.numpy() for t in (*arrays, decay, bonus, state, out)))
    out = out.to(r.dtype)
    return (out, state) if return_state else out


# ----------------------------------------------------------------------------------------------------------------
# flash-linear-attention (optional, CUDA; untested here)
# ----------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def fla_rwkv6() -> Callable[..., Any] | None:
    """``fla.ops.rwkv6.chunk_rwkv6`` when ``flash-linear-attention`` imports, else None (looked up once, lazily)."""
    try:
        from fla.ops.rwkv6 import chunk_rwkv6
    except Exception:  # ImportError, or a triton that does not load without a GPU
        return None
    return chunk_rwkv6


def _wkv_fla(r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor, initial_state: Tensor | None,
             return_state: bool) -> Tensor | tuple[Tensor, Tensor]:
    """UNTESTED HERE (no GPU, no fla on this machine): fla's RWKV-6 chunk kernel with a constant log-decay."""
    fn = fla_rwkv6()
    if fn is None:
        raise RuntimeError("flash-linear-attention (fla) is not importable")
    log_decay = _log_decay(w, _compute_dtype(r, w)).to(r.dtype)
    g = log_decay.expand(r.shape).contiguous()  # (batch, L, H, N): fla's decay is per step
    kwargs: dict[str, Any] = {"scale": 1.0, "initial_state": initial_state, "output_final_state": return_state}
    params = inspect.signature(fn).parameters
    # three generations of the API: ``head_first`` (default True in some versions) says the layout; without it,
    # the newest take (batch, L, H, N) (they have ``cu_seqlens``), the oldest only (batch, H, L, N)
    heads_first = "head_first" not in params and "cu_seqlens" not in params
    if "head_first" in params:
        kwargs["head_first"] = False
    args = [r, k, v, g]
    if heads_first:
        args = [t.transpose(1, 2).contiguous() for t in args]
    out, state = fn(*args, u.to(r.dtype), **kwargs)  # positional: the decay is ``w`` or ``g`` by version
    if heads_first:
        out = out.transpose(1, 2)
    return (out, state) if return_state else out


# ----------------------------------------------------------------------------------------------------------------
# Dispatch, FLOPs, module
# ----------------------------------------------------------------------------------------------------------------


def _needs_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def wkv(r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor, initial_state: Tensor | None = None,
        return_state: bool = False, chunk: int | None = None,
        backend: str = "auto") -> Tensor | tuple[Tensor, Tensor]:
    """The WKV recurrence (module docstring): ``o`` of ``v``'s shape, and the last state ``(batch, H, N, V)`` when
    ``return_state``. ``backend``: ``"auto"`` (fla on CUDA when it imports; on the CPU the compiled kernel when no
    gradient is needed, else the chunked form), ``"chunked"``, ``"compiled"``, ``"reference"`` or ``"fla"``."""
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend == "auto" and r.device.type == "meta":  # shapes only (FLOP counting): nothing to compute
        _check(r, k, v, w, u, initial_state)
        out = v.new_empty(v.shape)
        return (out, v.new_empty(r.shape[0], r.shape[2], r.shape[3], v.shape[3])) if return_state else out
    if backend == "auto":
        if r.is_cuda:
            backend = "fla" if fla_rwkv6() is not None else "chunked"
        elif r.device.type == "cpu" and not _needs_grad(r, k, v, w, u, initial_state) and compiled_available():
            backend = "compiled"
        else:
            backend = "chunked"
    if backend == "reference":
        return wkv_reference(r, k, v, w, u, initial_state, return_state)
    if backend == "compiled":
        if _needs_grad(r, k, v, w, u, initial_state):
            raise ValueError("the compiled WKV kernel has no backward; use backend 'chunked' for training")
        return wkv_compiled(r, k, v, w, u, initial_state, return_state)
    if backend == "fla":
        _check(r, k, v, w, u, initial_state)
        return _wkv_fla(r, k, v, w, u, initial_state, return_state)
    return wkv_chunked(r, k, v, w, u, initial_state, return_state, chunk)


def wkv_flops(batch: int, length: int, heads: int, head_size: int, value_size: int | None = None) -> int:
    """FLOPs of the recurrence, 1 multiply-accumulate = 1 FLOP (:mod:`spatialx.models.flops`): per step and head,
    the state update ``d * S + k v^T`` (a multiply and a multiply-accumulate per state element, ``2 N V``), the
    read-out ``r^T S`` (``N V``), the bonus coefficient ``r . (u * k)`` (``2 N``) and its product with ``v``
    (``V``): ``3 N V + 2 N + V``. Which implementation runs does not change the count."""
    value_size = head_size if value_size is None else value_size
    per_step = 3 * head_size * value_size + 2 * head_size + value_size
    return int(batch) * int(length) * int(heads) * per_step


class WKV(nn.Module):
    """The WKV operator with its parameters: ``WKV(channels, head_size)(r, k, v) -> o``, all ``(batch, L,
    channels)``, ``channels = heads * head_size``.

    ``w`` (the decay ``exp(-exp(w))``) and ``u`` (the bonus) are ``(heads, head_size)``. Initialisation follows
    RWKV-5/6's scheme in spirit: decay rates spread per channel so that ``w`` runs from -6 (a memory of hundreds of
    steps, i.e. several image rows) to -1 (a couple of steps), and ``u`` from 0.5 down to 0 with a small zigzag so
    that neighbouring channels differ.
    """

    def __init__(self, channels: int, head_size: int = 32, backend: str = "auto", chunk: int | None = None) -> None:
        super().__init__()
        if channels % head_size:
            raise ValueError(f"channels ({channels}) must be a multiple of head_size ({head_size})")
        self.channels, self.head_size, self.heads = channels, head_size, channels // head_size
        self.backend, self.chunk = backend, chunk
        ratio = torch.arange(channels, dtype=torch.float32) / max(1, channels - 1)
        zigzag = 0.1 * ((torch.arange(channels) % 3) - 1).float()
        self.w = nn.Parameter((-6.0 + 5.0 * ratio ** 0.9).view(self.heads, head_size))
        self.u = nn.Parameter((0.5 * (1.0 - ratio) + zigzag).view(self.heads, head_size))

    def forward(self, r: Tensor, k: Tensor, v: Tensor) -> Tensor:
        batch, length, channels = r.shape
        shape = (batch, length, self.heads, self.head_size)
        out = wkv(r.reshape(shape), k.reshape(shape), v.reshape(shape), self.w, self.u, chunk=self.chunk,
                  backend=self.backend)
        return out.reshape(batch, length, channels)

    def extra_flops(self, args: tuple, kwargs: dict, output: Any) -> int:
        """The recurrence's FLOPs for this call (:func:`wkv_flops`): ``batch * L * heads * (3 N^2 + 3 N)``."""
        r = args[0] if args else kwargs["r"]
        return wkv_flops(r.shape[0], r.shape[1], self.heads, self.head_size)
