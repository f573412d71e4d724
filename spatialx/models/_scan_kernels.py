"""numba kernels of the selective scan; see :mod:`spatialx.models.scan_cpu`, which wraps them for autograd.

Both take the decays ``exp(delta * A)`` of one time block precomputed (by torch, whose vectorised ``exp`` is several
times faster than a scalar one in a loop), so their loops are multiply-adds only. Layouts: ``decay`` (batch, dim,
T, N); ``delta``, ``du``, ``y``, ``dy`` (batch, dim, T); ``B``, ``C`` and their gradients (batch, G, T, N);
states (batch, dim, N). The channels of group ``g`` are ``g * dim // G ... (g + 1) * dim // G - 1``.
"""

import numpy as np
from numba import njit as _njit
from numba import prange

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
