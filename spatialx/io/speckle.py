"""The refined Lee polarimetric speckle filter (Lee, Grunes & de Grandi 1999, "Polarimetric SAR speckle filtering
and its implication for classification", IEEE TGRS 37(5)), as array functions.

On single-look (or ``enl``-look) covariance images, channel-first ``(n, H, W)`` (C3: the 9 channels of
:data:`spatialx.io.radarsat2.C3_BANDS`; intensity: one channel), with a ``window x window`` filter window
(odd, >= 3; 7 in the paper):

1. the span ``s`` (C11 + C22 + C33 for C3, the intensity itself for one channel);
2. the means of ``s`` over nine ``sub x sub`` subwindows of the window, centred at offsets ``{-step, 0, step}^2``
   (:func:`subwindows`: 3x3 at steps 1, 2, 3 for windows 5, 7, 9; 5x5 for 11 to 15, 7x7 for 17 to 21, ...: the
   nine tile the window, overlapping when ``3 sub > window``), a 3x3 array ``M`` per pixel; the edge direction
   is the one of the four gradient masks (vertical ``[[-1, 0, 1]] * 3``, horizontal, the two diagonals) with the
   largest ``|gradient|`` (ties: vertical, horizontal, "\\" diagonal, "/" diagonal in that order);
3. of the two edge-aligned half windows of that direction (left/right half for a vertical edge, top/bottom for a
   horizontal one, the two triangles for each diagonal; each includes the centre line or diagonal, so it holds
   ``window (window + 1) / 2`` pixels), the one on the side whose subwindow mean (``M[1, 0]`` / ``M[1, 2]``,
   ``M[0, 1]`` / ``M[2, 1]``, ``M[0, 2]`` / ``M[2, 0]``, ``M[0, 0]`` / ``M[2, 2]``) is closer to ``M[1, 1]``;
4. over that directional window: the mean and (population) variance of ``s``,
   ``var(x) = (var(s) - mean(s)^2 sv2) / (1 + sv2)`` with ``sv2 = 1 / enl``, the weight
   ``b = clip(var(x) / var(s), 0, 1)`` (0 where ``var(s) = 0``), and for every channel
   ``filtered = mean(C) + b (C - mean(C))``, the means over the same directional window.

The output is ``(1 - b) mean(C) + b C``: with ``0 <= b <= 1`` a convex combination of a mean of PSD matrices and
a PSD matrix, so Hermitian PSD wherever the input is.

Image edges: the inputs are mirrored (``d c b a | a b c d``, numpy's "symmetric" padding) by :func:`halo` pixels
before filtering, so every window is full. Every output pixel depends only on the inputs within ``halo(window) =
window // 2`` pixels of it (the subwindows lie inside the window), so a tile read with a halo of ``halo(window)``
(cut at the image edges, where the mirroring happens alike) and cropped equals the whole-image result exactly.

Vectorised: the directional window sums are separable 1-D correlations (the half windows) and 2-D correlations
with the triangular masks (``scipy.ndimage.correlate``, which skips the zero weights), for ``n + 2`` images (the
channels, ``s`` and ``s^2``), the selection per pixel a ``np.where``; no loop over pixels.
"""

from __future__ import annotations

import numpy as np

__all__ = ["directional_masks", "halo", "refined_lee", "refined_lee_c3", "subwindows"]

#: Channels of C3 (C3_BANDS order) whose sum is the span: C11, C22, C33.
_C3_DIAGONAL = (0, 5, 8)


def _check_window(window: int) -> int:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 3 or window % 2 == 0:
        raise ValueError(f"the refined Lee window must be an odd integer >= 3, got {window!r}")
    return int(window)


def halo(window: int) -> int:
    """Pixels of context a refined Lee output pixel needs on each side: ``window // 2`` (the subwindows of the
    edge detection lie inside the window, and nothing is chained)."""
    return _check_window(window) // 2


def subwindows(window: int) -> tuple[int, int]:
    """``(size, step)`` of the nine edge-detection subwindows of a ``window x window`` window, with
    ``size + 2 step = window``: ``size = 2 ((window - 5) // 6) + 3`` (3 for windows 5 to 9, 5 for 11 to 15, ...;
    1 for window 3), so (3, 1), (3, 2), (3, 3) for 5, 7, 9 (the paper's 7x7: nine 3x3 at steps of 2)."""
    window = _check_window(window)
    size = 2 * ((window - 5) // 6) + 3
    return size, (window - size) // 2


def directional_masks(window: int) -> np.ndarray:
    """The 8 edge-aligned half windows (8, window, window) of 0/1, indexed ``[dy + r, dx + r]``: 0 left (dx <= 0)
    and 1 right (dx >= 0) of a vertical edge, 2 top (dy <= 0) and 3 bottom (dy >= 0) of a horizontal one,
    4 upper-right (dx >= dy) and 5 lower-left (dx <= dy) of a "\\" edge, 6 upper-left (dx + dy <= 0) and
    7 lower-right (dx + dy >= 0) of a "/" edge. Each holds ``window (window + 1) / 2`` pixels."""
    r = halo(window)
    dy, dx = np.mgrid[-r: r + 1, -r: r + 1]
    masks = [dx <= 0, dx >= 0, dy <= 0, dy >= 0, dx >= dy, dx <= dy, dx + dy <= 0, dx + dy >= 0]
    return np.stack(masks).astype(np.float64)


def _directional_sums(padded: np.ndarray, k: int, window: int) -> np.ndarray:
    """Sums of each (n, H + 2r, W + 2r) image over directional mask ``k``, for the (n, H, W) centre pixels."""
    from scipy.ndimage import correlate, correlate1d

    r = window // 2
    n, hp, wp = padded.shape
    h, w = hp - 2 * r, wp - 2 * r
    if k < 4:
        side = np.where(np.arange(-r, r + 1) <= 0, 1.0, 0.0) if k % 2 == 0 else np.where(
            np.arange(-r, r + 1) >= 0, 1.0, 0.0)
        across, along = (2, 1) if k < 2 else (1, 2)  # vertical edge: the half is across the columns
        out = correlate1d(padded, side, axis=across, mode="constant")
        out = correlate1d(out, np.ones(window), axis=along, mode="constant")
    else:
        mask = directional_masks(window)[k]
        out = np.stack([correlate(padded[i], mask, mode="constant") for i in range(n)])
    return out[:, r: r + h, r: r + w]


def refined_lee(stack: np.ndarray, span: np.ndarray | None = None, window: int = 7, enl: float = 1.0) -> np.ndarray:
    """Refined Lee filter of second-moment images ``stack`` (n, H, W) (C3 channels, or an intensity as (1, H, W))
    driven by ``span`` (H, W) (default: ``stack[0]``, right for one intensity channel; use
    :func:`refined_lee_c3` for C3). ``enl``: the equivalent number of looks of the input (1 for single-look
    outer products). Returns float64 (n, H, W); see the module documentation for the algorithm and the edges."""
    window = _check_window(window)
    if not enl > 0:
        raise ValueError(f"enl must be > 0, got {enl!r}")
    arr = np.asarray(stack, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(f"refined_lee expects (n, H, W) images, got shape {arr.shape}")
    s = arr[0] if span is None else np.asarray(span, dtype=np.float64)
    if s.shape != arr.shape[1:]:
        raise ValueError(f"span {s.shape} does not match the images {arr.shape[1:]}")
    n, h, w = arr.shape
    r = window // 2
    size, step = subwindows(window)
    sv2 = 1.0 / float(enl)

    def pad(a: np.ndarray) -> np.ndarray:
        return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(r, r), (r, r)], mode="symmetric")

    # 2. edge direction from the nine subwindow means of the span.
    from scipy.ndimage import uniform_filter

    s_pad = pad(s)
    sub = uniform_filter(s_pad, size=size, mode="constant")
    m = np.empty((3, 3, h, w))
    for a in range(3):
        for c in range(3):
            oy, ox = r + (a - 1) * step, r + (c - 1) * step
            m[a, c] = sub[oy: oy + h, ox: ox + w]
    gradients = np.abs(np.stack([
        m[:, 2].sum(0) - m[:, 0].sum(0),  # vertical edge
        m[2].sum(0) - m[0].sum(0),  # horizontal edge
        m[0, 1] + m[0, 2] + m[1, 2] - m[1, 0] - m[2, 0] - m[2, 1],  # "\" edge
        m[0, 0] + m[0, 1] + m[1, 0] - m[1, 2] - m[2, 1] - m[2, 2],  # "/" edge
    ]))
    direction = np.argmax(gradients, axis=0)
    del gradients
    # 3. the side closer to the centre subwindow: the first or second mask of the direction's pair.
    centre = m[1, 1]
    sides = ((m[1, 0], m[1, 2]), (m[0, 1], m[2, 1]), (m[0, 2], m[2, 0]), (m[0, 0], m[2, 2]))
    second = np.zeros((h, w), dtype=bool)
    for d, (first_side, second_side) in enumerate(sides):
        here = direction == d
        second[here] = (np.abs(second_side - centre) < np.abs(first_side - centre))[here]
    choice = 2 * direction + second
    del m, sub, direction, second

    # 4. windowed means of the channels, s and s^2 over the chosen directional window.
    images = pad(np.concatenate([arr, s[None], (s * s)[None]]))
    means = np.zeros((n + 2, h, w))
    count = window * (r + 1)
    for k in range(8):
        where = choice == k
        if where.any():
            means[:, where] = _directional_sums(images, k, window)[:, where] / count
    del images
    mean_c, mean_s = means[:n], means[n]
    var_s = np.maximum(means[n + 1] - mean_s * mean_s, 0.0)
    var_x = (var_s - mean_s * mean_s * sv2) / (1.0 + sv2)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.clip(np.where(var_s > 0, var_x / var_s, 0.0), 0.0, 1.0)
    return mean_c + b * (arr - mean_c)


def refined_lee_c3(c3: np.ndarray, window: int = 7, enl: float = 1.0) -> np.ndarray:
    """Refined Lee filter of C3 images (9, H, W) in C3_BANDS order (single-look outer products of the scattering
    vector for ``enl = 1``), the span ``C11 + C22 + C33`` driving it. float64 (9, H, W), Hermitian PSD where the
    input is."""
    arr = np.asarray(c3, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] != 9:
        raise ValueError(f"C3 images must be (9, H, W), got shape {arr.shape}")
    return refined_lee(arr, arr[list(_C3_DIAGONAL)].sum(0), window=window, enl=enl)
