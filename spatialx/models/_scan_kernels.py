"""numba kernels of the selective scan; see :mod:`spatialx.models.scan_cpu`, which wraps them for autograd."""

import math

import numpy as np
from numba import njit as _njit
from numba import prange

# cache: compiled code is stored next to this file (or in NUMBA_CACHE_DIR) and reused by later processes.
njit = _njit(parallel=True, cache=True, nogil=True)


@njit
def forward(delta, du, A, B, C, h0, y, last):
    batch, dim, length = delta.shape
    n_state = A.shape[1]
    per_group = dim // B.shape[1]
    for job in prange(batch * dim):
        b = job // dim
        d = job % dim
        g = d // per_group
        h = h0[b, d].copy()
        for t in range(length):
            step = delta[b, d, t]
            drive = du[b, d, t]
            acc = 0.0
            for n in range(n_state):
                h[n] = math.exp(step * A[d, n]) * h[n] + drive * B[b, g, t, n]
                acc += h[n] * C[b, g, t, n]
            y[b, d, t] = acc
        last[b, d] = h

@njit
def backward(delta, du, A, B, C, h0, dy, dlast, g_delta, g_du, g_A, g_B, g_C, g_h0):
    batch, dim, length = delta.shape
    n_state = A.shape[1]
    groups = B.shape[1]
    per_group = dim // groups
    for job in prange(batch * groups):
        b = job // groups
        g = job % groups
        states = np.empty((length, n_state), dtype=delta.dtype)
        decays = np.empty((length, n_state), dtype=delta.dtype)
        grad = np.empty(n_state, dtype=delta.dtype)
        for d in range(g * per_group, (g + 1) * per_group):
            h = h0[b, d].copy()
            for t in range(length):
                step = delta[b, d, t]
                drive = du[b, d, t]
                for n in range(n_state):
                    a = math.exp(step * A[d, n])
                    h[n] = a * h[n] + drive * B[b, g, t, n]
                    decays[t, n] = a
                    states[t, n] = h[n]
            grad[:] = dlast[b, d]
            for t in range(length - 1, -1, -1):
                step = delta[b, d, t]
                drive = du[b, d, t]
                out_grad = dy[b, d, t]
                acc_delta = 0.0
                acc_du = 0.0
                for n in range(n_state):
                    gn = grad[n] + C[b, g, t, n] * out_grad
                    g_C[b, g, t, n] += states[t, n] * out_grad
                    before = states[t - 1, n] if t > 0 else h0[b, d, n]
                    through = gn * decays[t, n] * before  # dL/d(delta_t A_n)
                    acc_delta += through * A[d, n]
                    g_A[b, d, n] += through * step
                    acc_du += gn * B[b, g, t, n]
                    g_B[b, g, t, n] += gn * drive
                    grad[n] = decays[t, n] * gn
                g_delta[b, d, t] = acc_delta
                g_du[b, d, t] = acc_du
            g_h0[b, d] = grad

