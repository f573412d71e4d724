"""numba kernels of the selective scan; see :mod:`spatialx.models.scan_cpu`, which wraps them for autograd.

Both take the decays ``exp(delta * A)`` of one time block precomputed (by torch, whose vectorised ``exp`` is several
times faster than a scalar one in a loop), so their loops are multiply-adds only. Layouts: ``decay`` (batch, dim,
T, N); ``delta``, ``du``, ``y``, ``dy`` (batch, dim, T); ``B``, ``C`` and their gradients (batch, G, T, N);
states (batch, dim, N). The channels of group ``g`` are ``g * dim // G ... (g + 1) * dim // G - 1``.
"""

import numpy as np
from numba import njit as _njit
from numba import prange, types
from numba.extending import intrinsic, overload

# cache: compiled code is stored next to this file (or in NUMBA_CACHE_DIR) and reused by later processes.
# reassoc/contract only (no nnan/ninf): the sums over the N states may be vectorised, NaN and inf stay IEEE.
njit = _njit(parallel=True, cache=True, nogil=True, fastmath={"reassoc", "contract"})


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
_INV_FACT64 = tuple(1.0 / float(np.prod(np.arange(1, i + 1, dtype=np.float64))) for i in range(14))


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
def _exp32(x):
    xc = min(max(x, _LO32), _HI32)
    k = np.floor(xc * _LOG2E32 + _HALF32)
    r = (xc - k * _LN2_HI32) - k * _LN2_LO32
    p = _P32[0]
    p = p * r + _P32[1]
    p = p * r + _P32[2]
    p = p * r + _P32[3]
    p = p * r + _P32[4]
    p = p * r + _P32[5]
    p = (p * (r * r) + r) + _ONE32
    e = p * _bits_to_float(np.int32((np.int64(k) + 127) << 23))
    e = _ZERO32 if x < _LO32 else e
    e = _INF32 if x > _HI32 else e
    return x if x != x else e


@_njit(inline="always", fastmath={"contract"})
def _exp64(x):
    xc = min(max(x, _LO64), _HI64)
    k = np.floor(xc * _LOG2E64 + 0.5)
    r = (xc - k * _LN2_HI64) - k * _LN2_LO64
    c = _INV_FACT64
    p = c[13]
    p = p * r + c[12]
    p = p * r + c[11]
    p = p * r + c[10]
    p = p * r + c[9]
    p = p * r + c[8]
    p = p * r + c[7]
    p = p * r + c[6]
    p = p * r + c[5]
    p = p * r + c[4]
    p = p * r + c[3]
    p = p * r + c[2]
    p = p * r + c[1]
    p = p * r + c[0]
    e = p * _bits_to_float((np.int64(k) + 1023) << 52)
    e = 0.0 if x < _LO64 else e
    e = np.inf if x > _HI64 else e
    return x if x != x else e


def fast_exp(x):  # pragma: no cover - replaced by the overload inside compiled code
    """exp(x) for a float32 or float64 scalar inside numba-compiled code (see above)."""
    raise NotImplementedError("fast_exp is only callable from numba-compiled code")


@overload(fast_exp, inline="always")
def _fast_exp_overload(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    if x == types.float64:
        return lambda x: _exp64(x)
    return None


@njit
def exp_array(x, out):
    """``out[i] = fast_exp(x[i])`` over 1-D arrays (to test the exp on its own)."""
    for i in prange(x.shape[0]):
        out[i] = fast_exp(x[i])


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
                h[n] = fast_exp(step * a[n]) * h[n] + drive * B[b, gb, t, n]
                acc += h[n] * C[b, gc, t, n]
            y[b, d, t] = acc + skip * ut
        state[b, d] = h


@njit
def forward_cross(delta, u, A, B, C, D, state, y, height, width):
    """SS2D's four scans of an ``height x width`` image read in image order, merged: ``y`` = cross_merge(ys).

    Direction ``k`` visits the pixels row-major (0), column-major (1), and each reversed (2, 3), as
    :func:`spatialx.models.ss2d.cross_scan` lays them out; ``u``, ``delta`` and ``y`` stay in image (row-major) order
    and the kernel reads them in the direction's order, so no per-direction copy of the image exists. ``delta``: (batch,
    K dim, L); ``u``: (batch, dim, L), the same input for every direction, or (batch, K dim, L); ``A``: (K dim, N);
    ``B``, ``C``: (batch, K, L, N) in each direction's scan order (step t of direction k at [b, k, t]: these are
    read whole for every channel, and read in image order the column-major directions would jump a page per step);
    ``D``: (K dim,); ``state``: (batch, K dim, N), initial states in, last states
    out (in scan order). Writes ``y`` (batch, dim, L), the sum over the directions of ``sum_n C h + D u``. One
    thread owns one (batch, channel) and runs its K scans one after the other, so no two threads write alike.
    """
    batch, kd, length = delta.shape
    dim = y.shape[1]
    k_dirs = kd // dim
    shared = u.shape[1] == dim
    n_state = A.shape[1]
    for job in prange(batch * dim):
        b = job // dim
        d = job % dim
        for t in range(length):
            y[b, d, t] = 0
        for k in range(k_dirs):
            c = k * dim + d
            cu = d if shared else c
            h = state[b, c].copy()
            a = A[c].copy()
            skip = D[c]
            # the pixel p = row * width + col of step t, advanced without divisions
            row = height - 1 if k >= 2 else 0
            col = width - 1 if k >= 2 else 0
            for t in range(length):
                p = row * width + col
                step = delta[b, c, p]
                ut = u[b, cu, p]
                drive = step * ut
                acc = h[0] * 0
                for n in range(n_state):
                    h[n] = fast_exp(step * a[n]) * h[n] + drive * B[b, k, t, n]
                    acc += h[n] * C[b, k, t, n]
                y[b, d, p] += acc + skip * ut
                if k == 0:
                    col += 1
                    if col == width:
                        col = 0
                        row += 1
                elif k == 1:
                    row += 1
                    if row == height:
                        row = 0
                        col += 1
                elif k == 2:
                    col -= 1
                    if col < 0:
                        col = width - 1
                        row -= 1
                else:
                    row -= 1
                    if row < 0:
                        row = height - 1
                        col -= 1
            state[b, c] = h
