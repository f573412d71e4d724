"""numba kernels of the selective scan; see :mod:`spatialx.models.scan_cpu`, which wraps them for autograd.

Both take the decays ``exp(delta * A)`` of one time block precomputed (by torch, whose vectorised ``exp`` is several
times faster than a scalar one in a loop), so their loops are multiply-adds only. Layouts: ``decay`` (batch, dim,
T, N); ``delta``, ``du``, ``y``, ``dy`` (batch, dim, T); ``B``, ``C`` and their gradients (batch, G, T, N);
states (batch, dim, N). The channels of group ``g`` are ``g * dim // G ... (g + 1) * dim // G - 1``.
"""

import math

import numpy as np
from numba import njit as _njit
from numba import prange, types
from numba.extending import intrinsic, overload

# cache: compiled code is stored next to this file (or in NUMBA_CACHE_DIR) and reused by later processes.
# reassoc/contract only (no nnan/ninf): the sums over the N states may be vectorised, NaN and inf stay IEEE.
# numpy's error model: Python's adds a ZeroDivisionError check to every float division, which stops a loop from
# vectorising (the softplus below ran 14x slower with it).
njit = _njit(parallel=True, cache=True, nogil=True, fastmath={"reassoc", "contract"}, error_model="numpy")


@njit
def forward(decay, du, B, C, state, y):
    """Advance ``state`` (in place) through one block, writing ``y_t = sum_n C_t[n] h_t[n]``."""
    batch, dim, length, n_state = decay.shape
    per_group = dim // B.shape[1]
    for job in prange(batch * dim):
        b = job // dim
        d = job % dim
        g = d // per_group
        h = state[b, d].copy()
        for t in range(length):
            drive = du[b, d, t]
            acc = h[0] * 0
            for n in range(n_state):
                h[n] = decay[b, d, t, n] * h[n] + drive * B[b, g, t, n]
                acc += h[n] * C[b, g, t, n]
            y[b, d, t] = acc
        state[b, d] = h


@njit
def backward(decay, delta, du, A, B, C, state, dy, carry, g_delta, g_du, g_A, g_B, g_C):
    """One block of the adjoint recurrence, from its entering ``state``; ``carry`` is dL/dh at the block's end on
    entry (through later steps) and dL/dh before the block on return. ``g_A`` (batch, dim, N) and ``g_B``, ``g_C``
    accumulate; ``g_delta`` and ``g_du`` are written. One thread owns one (batch, group): no two write alike."""
    batch, dim, length, n_state = decay.shape
    groups = B.shape[1]
    per_group = dim // groups
    for job in prange(batch * groups):
        b = job // groups
        g = job % groups
        # row 0: the state entering the block, row t + 1: h_t (no branch in the loops: they stay vectorised)
        states = np.empty((length + 1, n_state), dtype=decay.dtype)
        for d in range(g * per_group, (g + 1) * per_group):
            states[0] = state[b, d]
            for t in range(length):
                drive = du[b, d, t]
                for n in range(n_state):
                    states[t + 1, n] = decay[b, d, t, n] * states[t, n] + drive * B[b, g, t, n]
            grad = carry[b, d].copy()
            for t in range(length - 1, -1, -1):
                step = delta[b, d, t]
                drive = du[b, d, t]
                out_grad = dy[b, d, t]
                acc_delta = grad[0] * 0
                acc_du = grad[0] * 0
                for n in range(n_state):
                    gn = grad[n] + C[b, g, t, n] * out_grad
                    g_C[b, g, t, n] += states[t + 1, n] * out_grad
                    through = gn * decay[b, d, t, n] * states[t, n]  # dL/d(delta_t A_n)
                    acc_delta += through * A[d, n]
                    g_A[b, d, n] += through * step
                    acc_du += gn * B[b, g, t, n]
                    g_B[b, g, t, n] += gn * drive
                    grad[n] = decay[b, d, t, n] * gn
                g_delta[b, d, t] = acc_delta
                g_du[b, d, t] = acc_du
            carry[b, d] = grad


# ----------------------------------------------------------------------------------------------------------------
# Inference: the whole recurrence in one pass, decays computed in the loop by a vectorisable exp
# ----------------------------------------------------------------------------------------------------------------
#
# numba's ``np.exp``/``math.exp`` is a scalar libm call in a loop (no SVML here), which is why the training kernels
# take torch's vectorised exp per time block. For inference, where nothing is saved for backward, the decays are
# computed in the innermost loop instead, by a Cody-Waite range reduction and a polynomial that LLVM vectorises
# over the N states (2 ** k is built from its exponent bits). Accuracy: about 1 ulp (float32: Cephes' expf
# polynomial; float64: Taylor to degree 13 on |r| <= ln2 / 2, truncation error < 1e-17). Arguments below -87.3365
# (float32) or -708 (float64), where exp leaves the normal range, give exactly 0; above 88.3 (float32) or 709
# (float64) inf (float32's exp overflows only past 88.72: the decays of a scan are at most 1); NaN stays NaN.

_LOG2E32 = np.float32(1.4426950408889634)
_LN2_HI32 = np.float32(0.693359375)
_LN2_LO32 = np.float32(-2.12194440e-4)
_LO32 = np.float32(-87.3365)
_HI32 = np.float32(88.3)
_P32 = tuple(np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                                    1.6666665459e-1, 5.0000001201e-1))
_HALF32 = np.float32(0.5)
_ONE32 = np.float32(1.0)
_ZERO32 = np.float32(0.0)
_INF32 = np.float32(np.inf)

_LOG2E64 = 1.4426950408889634
_LN2_HI64 = 6.93145751953125e-1
_LN2_LO64 = 1.42860682030941723212e-6
_LO64 = -708.0
_HI64 = 709.0
_INV_FACT64 = tuple(1.0 / float(np.prod(np.arange(1, i + 1, dtype=np.float64))) for i in range(13, -1, -1))


@intrinsic
def _bits_to_float(typingctx, bits):
    """Reinterpret an int32 (int64) as the float32 (float64) with those bits."""
    if bits == types.int32:
        ret = types.float32
    elif bits == types.int64:
        ret = types.float64
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(ret))

    return ret(bits), codegen


@_njit(inline="always", fastmath={"contract"})
def _horner(coeffs, x):
    """The polynomial ``coeffs[0] x^n + ... + coeffs[n]`` (highest power first) by Horner's rule; ``coeffs`` is a
    tuple of constants, so LLVM unrolls the loop into multiply-adds."""
    p = coeffs[0]
    for i in range(1, len(coeffs)):
        p = p * x + coeffs[i]
    return p


@_njit(inline="always", fastmath={"contract"})
def _exp32_in_range(xc):
    """exp of an argument already in [_LO32, _HI32]: ``2 ** k * p(r)``."""
    k = np.floor(xc * _LOG2E32 + _HALF32)
    r = (xc - k * _LN2_HI32) - k * _LN2_LO32
    p = (_horner(_P32, r) * (r * r) + r) + _ONE32
    return p * _bits_to_float(np.int32((np.int32(k) + 127) << 23))  # int32: AVX2 has no vector float -> int64


@_njit(inline="always", fastmath={"contract"})
def _exp32(x):
    e = _exp32_in_range(min(max(x, _LO32), _HI32))
    e = _ZERO32 if x < _LO32 else e
    e = _INF32 if x > _HI32 else e
    return x if x != x else e


@_njit(inline="always", fastmath={"contract"})
def _exp64(x):
    xc = min(max(x, _LO64), _HI64)
    k = np.floor(xc * _LOG2E64 + 0.5)
    r = (xc - k * _LN2_HI64) - k * _LN2_LO64
    e = _horner(_INV_FACT64, r) * _bits_to_float((np.int64(k) + 1023) << 52)
    e = 0.0 if x < _LO64 else e
    e = np.inf if x > _HI64 else e
    return x if x != x else e


@intrinsic
def _float_to_bits(typingctx, value):
    """Reinterpret a float32 as the int32 with its bits."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int32))

    return types.int32(value), codegen


# The decay's own exp (see _decay32): 1 + r q(r), q of degree 4 minimax for the relative error on |r| <= ln2 / 2
# (8.4e-8 in exact arithmetic; fitted by linear programming on 4001 points): coefficients highest first, then 1.
_DECAY_Q32 = tuple(np.float32(c) for c in (8.263069205e-3, 4.189246893e-2, 1.666793078e-1, 4.999919534e-1,
                                                9.999996424e-1, 1.0))
_ROUND32 = np.float32(12582912.0)  # 1.5 * 2 ** 23: adding it rounds to an integer held in the low mantissa bits
_ROUND_BITS32 = np.int32(0x4B400000)  # its bits
_LN2_32 = np.float32(0.6931471805599453)


@_njit(inline="always", fastmath={"contract"})
def _decay32(x):
    """exp for the decays ``exp(step * A)`` of a scan, whose arguments are never positive (step >= 0, A < 0), in
    fewer operations than ``_exp32`` (it is the scans' innermost operation): no overflow branch; below
    -87.3365 the smallest normal float (1.2e-38) instead of 0; NaN passes through the lower clamp (``max(LO, x)``
    returns x when x is NaN) and the arithmetic, so no NaN check; ``k = round(x / ln2)`` read off the bits of
    ``x log2(e) + 1.5 * 2^23`` (no float -> int conversion); one-constant reduction ``r = x - k ln2`` (its error,
    k times ln2's float32 rounding, is below 1 ulp of the result for x > -20); a degree-5 polynomial with
    ``p(0) = 1`` exactly. Within 2 ulp of exp for x > -20, 4 ulp down to -87."""
    xc = _LO32 if x < _LO32 else x
    j = np.int32(_float_to_bits(xc * _LOG2E32 + _ROUND32) - _ROUND_BITS32)  # numba widens int32 arithmetic
    r = xc - np.float32(j) * _LN2_32
    return _horner(_DECAY_Q32, r) * _bits_to_float(np.int32((j + 127) << 23))


def _scalar_function(name: str, doc: str, for_float32, for_float64):
    """A function of one float32 or float64 scalar callable only from numba-compiled code, where it is inlined as
    ``for_float32`` or ``for_float64`` by the argument's type."""

    def stub(x):  # pragma: no cover - replaced by the overload inside compiled code
        raise NotImplementedError(f"{name} is only callable from numba-compiled code")

    stub.__name__ = stub.__qualname__ = name
    stub.__doc__ = doc

    @overload(stub, inline="always")
    def _typed(x):
        if x == types.float32:
            return lambda x: for_float32(x)
        if x == types.float64:
            return lambda x: for_float64(x)
        return None

    return stub


fast_exp = _scalar_function("fast_exp", "exp(x) inside numba-compiled code (see above).", _exp32, _exp64)
fast_decay = _scalar_function("fast_decay", "exp(x) for x <= 0 (a scan's decay) inside numba-compiled code (see "
                              "``_decay32``).", _decay32, _exp64)


@njit
def exp_array(x, out):
    """``out[i] = fast_exp(x[i])`` over 1-D arrays (to test the exp on its own)."""
    for i in prange(x.shape[0]):
        out[i] = fast_exp(x[i])


@njit
def decay_array(x, out):
    """``out[i] = fast_decay(x[i])`` over 1-D arrays (to test the decay on its own)."""
    for i in prange(x.shape[0]):
        out[i] = fast_decay(x[i])


@njit
def forward_inference(delta, u, A, B, C, D, state, y):
    """The whole scan of every ``(batch, channel)`` sequence, without saving anything for backward.

    ``delta`` (effective: bias and softplus applied), ``u``, ``y``: (batch, dim, L); ``A``: (dim, N); ``B``,
    ``C``: (batch, G_B, L, N) and (batch, G_C, L, N); ``D``: (dim,); ``state``: (batch, dim, N), the initial state
    on entry and the last one on return. Writes ``y_t = sum_n C_t[n] h_t[n] + D u_t``.
    """
    batch, dim, length = u.shape
    n_state = A.shape[1]
    per_b = dim // B.shape[1]
    per_c = dim // C.shape[1]
    for job in prange(batch * dim):
        b = job // dim
        d = job % dim
        gb = d // per_b
        gc = d // per_c
        h = state[b, d].copy()
        a = A[d].copy()
        skip = D[d]
        for t in range(length):
            step = delta[b, d, t]
            ut = u[b, d, t]
            drive = step * ut
            acc = h[0] * 0
            for n in range(n_state):
                h[n] = fast_decay(step * a[n]) * h[n] + drive * B[b, gb, t, n]
                acc += h[n] * C[b, gc, t, n]
            y[b, d, t] = acc + skip * ut
        state[b, d] = h


# softplus for the scan's step, ``log(1 + exp(x))`` as torch computes it (``x`` itself above 20): for float32 by
# ``max(x, 0) + log1p(e)``, ``e = exp(-|x|)`` in (0, 1] by the exp above, and ``log1p(e) = 2 atanh(s)`` with
# ``s = e / (2 + e)`` in (0, 1/3]: no cancellation however small e is, and atanh's series to s^13 is exact to
# (1/9)^7 / 15 = 1.4e-8 relative; it vectorises like the exp. Within 2 ulp of torch's. float64 (tests) uses libm's
# log1p and exp.
_ATANH32 = tuple(np.float32(1.0 / k) for k in (13, 11, 9, 7, 5, 3))  # atanh(s) / s = 1 + s^2 / 3 + s^4 / 5 + ...
_TWO32 = np.float32(2.0)
_TWENTY32 = np.float32(20.0)


@_njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _softplus32(x):
    e = _exp32(-abs(x))
    s = e / (_TWO32 + e)
    z = s * s
    s2 = s + s
    out = max(x, _ZERO32) + (s2 + s2 * z * _horner(_ATANH32, z))
    return x if x > _TWENTY32 else out


@_njit(inline="always")
def _softplus64(x):
    return x if x > 20.0 else math.log1p(math.exp(x))


fast_softplus = _scalar_function("fast_softplus", "softplus(x) (torch's, threshold 20) inside numba-compiled code.",
                                 _softplus32, _softplus64)


@njit
def softplus_array(x, out):
    """``out[i] = fast_softplus(x[i])`` over 1-D arrays (to test the softplus on its own)."""
    for i in prange(x.shape[0]):
        out[i] = fast_softplus(x[i])


@njit
def forward_ss2d(proj, rank, dt_weight, dt_bias, u, A, D, state, y, height, width, direction, block,
                 accumulate=True):
    """One of SS2D's four scans of an ``height x width`` image, its step computed in the kernel, added into ``y``.

    ``direction`` visits the pixels row-major (0), column-major (1), or one of them reversed (2, 3), as
    :func:`spatialx.models.ss2d.cross_scan` lays them out. Everything is channels last, in image order (``dim``
    channels, ``L = H W``):

    * ``proj`` (batch, L, rank + 2N): each pixel's x projection for this direction: ``rank`` step inputs, then
      ``B``, then ``C``. The step of channel ``d`` is ``softplus(dt_bias[d] + dt_weight[:, d] . proj[b, p, :rank])``:
      no (batch, dim, L) step tensor exists.
    * ``u`` (batch, L, dim); ``dt_weight`` (rank, dim), ``dt_bias`` (dim,), ``A`` (N, dim), ``D`` (dim,);
    * ``state`` (batch, dim, N): the initial states in, the last ones out; or an empty array (0, dim, N): the
      scans start from zero and their last states are not kept;
    * ``y`` (batch, L, dim): ``sum_n C h + D u`` is added to it (the four directions' calls merge the scans), or
      written over what it holds with ``accumulate=False`` (the first direction: no zero-filled ``y``).

    A thread owns one (batch, block of ``block`` channels) and scans it vectorised over the block's channels: the
    recurrences of different channels are independent, so each step is a few wide multiply-adds with no
    reduction, and no two threads write alike. LLVM vectorises the channel loops 16 float32 wide, so blocks of
    fewer than 16 channels run scalar.
    """
    batch, length, _ = proj.shape
    n_state = A.shape[0]
    dim = y.shape[2]
    blocks = (dim + block - 1) // block
    keep = state.shape[0] > 0
    for job in prange(batch * blocks):
        b = job // blocks
        d0 = (job % blocks) * block
        w = min(block, dim - d0)
        h = np.empty((n_state, w), dtype=y.dtype)
        a = np.empty((n_state, w), dtype=y.dtype)
        weight = np.empty((rank, w), dtype=y.dtype)
        bias = dt_bias[d0:d0 + w].copy()
        skip = D[d0:d0 + w].copy()
        step = np.empty(w, dtype=y.dtype)
        drive = np.empty(w, dtype=y.dtype)
        out = np.empty(w, dtype=y.dtype)
        for n in range(n_state):
            for j in range(w):
                a[n, j] = A[n, d0 + j]
                h[n, j] = state[b, d0 + j, n] if keep else _ZERO32
        for r in range(rank):
            for j in range(w):
                weight[r, j] = dt_weight[r, d0 + j]
        # the pixel p = row * width + col of step t, advanced without divisions
        row = height - 1 if direction >= 2 else 0
        col = width - 1 if direction >= 2 else 0
        for _ in range(length):
            p = row * width + col
            # the block's channels of this pixel as views indexed from 0: ``u[b, p, d0 + j]`` would be a gather
            # (LLVM cannot tell d0 + j from a negative, wrapped-around index)
            u_px = u[b, p, d0:d0 + w]
            y_px = y[b, p, d0:d0 + w]
            for j in range(w):
                step[j] = bias[j]
            for r in range(rank):
                x = proj[b, p, r]
                for j in range(w):
                    step[j] += weight[r, j] * x
            for j in range(w):
                s = fast_softplus(step[j])
                ut = u_px[j]
                step[j] = s
                drive[j] = s * ut
                out[j] = skip[j] * ut
            for n in range(n_state):
                bn = proj[b, p, rank + n]
                cn = proj[b, p, rank + n_state + n]
                for j in range(w):
                    hn = fast_decay(step[j] * a[n, j]) * h[n, j] + drive[j] * bn
                    h[n, j] = hn
                    out[j] += cn * hn
            if accumulate:
                for j in range(w):
                    y_px[j] += out[j]
            else:
                for j in range(w):
                    y_px[j] = out[j]
            if direction == 0:
                col += 1
                if col == width:
                    col = 0
                    row += 1
            elif direction == 1:
                row += 1
                if row == height:
                    row = 0
                    col += 1
            elif direction == 2:
                col -= 1
                if col < 0:
                    col = width - 1
                    row -= 1
            else:
                row -= 1
                if row < 0:
                    row = height - 1
                    col -= 1
        if keep:
            for n in range(n_state):
                for j in range(w):
                    state[b, d0 + j, n] = h[n, j]
