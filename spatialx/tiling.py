"""Tile plan with halos and full coverage, smooth overlap weights, and the overlap-add stitcher.

Along each axis the scene is cut into cores of ``tile`` pixels (the last one absorbs a remainder that is too small
to carry a blending ramp). Every tile is fused on its core grown by ``overlap + halo`` pixels: the halo feeds the
method's receptive field and is thrown away; the overlap band is kept and cross-faded with the neighbour's over
``2 * overlap`` pixels centred on the core boundary. The two ramps are ``w`` and ``1 - w``, so the weights of all
tiles sum to exactly one at every pixel: a method whose receptive field fits inside the halo gives the same result
tiled as on the whole image, and a network with a global receptive field gets a seamless cross-fade.

The stitcher splits the scene into cells between the lines ``k * tile +/- overlap``. Each cell is covered by a known
number of tiles (1, 2 or 4); once all of them have arrived the cell is written and freed. Processing tiles in
row-major order keeps only a band of ``2 * overlap`` rows across the scene pending, so memory does not grow with the
number of tiles.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from rasterio.windows import Window


def _cores(length: int, tile: int, overlap: int, align: int) -> list[tuple[int, int]]:
    count = max(1, math.ceil(length / tile))
    if count > 1 and length - (count - 1) * tile < max(2 * overlap, align):
        count -= 1  # the last core would be thinner than its ramp: merge it into its neighbour
    starts = [i * tile for i in range(count)]
    return [(s, starts[i + 1] if i + 1 < count else length) for i, s in enumerate(starts)]


def ramp(length: int) -> np.ndarray:
    """Raised-cosine ramp rising from ~0 to ~1 over ``length`` pixels (its mirror is ``1 - ramp``)."""
    t = (np.arange(length, dtype=np.float64) + 0.5) / length
    return (np.sin(0.5 * np.pi * t) ** 2).astype(np.float32)


@dataclass(frozen=True)
class Tile:
    """One unit of work: indices in the tile grid and its three nested windows on the output grid."""

    row: int
    col: int
    core: Window  # pixels this tile owns
    blend: Window  # core + overlap, clipped to the scene: where its result is used
    read: Window  # blend + halo, clipped to the scene: what it must read
    pad: tuple[int, int, int, int]  # (top, bottom, left, right) replicate padding up to the unclipped extent

    @property
    def padded_shape(self) -> tuple[int, int]:
        return (int(self.read.height) + self.pad[0] + self.pad[1], int(self.read.width) + self.pad[2] + self.pad[3])

    def blend_slices(self) -> tuple[slice, slice]:
        """Where ``blend`` sits inside the padded read extent."""
        top = int(self.blend.row_off - self.read.row_off) + self.pad[0]
        left = int(self.blend.col_off - self.read.col_off) + self.pad[2]
        return slice(top, top + int(self.blend.height)), slice(left, left + int(self.blend.width))


class TilePlan:
    """How a ``height x width`` grid is cut into tiles for a method with a given halo."""

    def __init__(self, height: int, width: int, tile: int = 512, overlap: int = 16, halo: int = 0, align: int = 1):
        if tile < 1:
            raise ValueError("tile must be positive")
        if overlap < 0 or halo < 0:
            raise ValueError("overlap and halo must not be negative")
        if 2 * overlap > tile:
            raise ValueError(f"overlap ({overlap}) must be at most half the tile size ({tile})")
        if align > 1 and (tile % align or overlap % align or halo % align):
            raise ValueError(f"tile, overlap and halo must be multiples of {align} for this method")
        self.height, self.width = height, width
        self.tile_size, self.overlap, self.halo, self.align = tile, overlap, halo, align
        self.row_cores = _cores(height, tile, overlap, align)
        self.col_cores = _cores(width, tile, overlap, align)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.row_cores), len(self.col_cores)

    def __len__(self) -> int:
        return len(self.row_cores) * len(self.col_cores)

    def _axis(self, cores: list[tuple[int, int]], i: int, length: int) -> tuple[int, int, int, int, int, int]:
        start, stop = cores[i]
        b0, b1 = max(0, start - self.overlap), min(length, stop + self.overlap)
        want0, want1 = b0 - self.halo, b1 + self.halo
        r0, r1 = max(0, want0), min(length, want1)
        return b0, b1, r0, r1, r0 - want0, want1 - r1

    def tile(self, row: int, col: int) -> Tile:
        (rs, re_), (cs, ce) = self.row_cores[row], self.col_cores[col]
        rb0, rb1, rr0, rr1, pt, pb = self._axis(self.row_cores, row, self.height)
        cb0, cb1, cr0, cr1, pl, pr = self._axis(self.col_cores, col, self.width)
        return Tile(row, col, Window(cs, rs, ce - cs, re_ - rs), Window(cb0, rb0, cb1 - cb0, rb1 - rb0),
                    Window(cr0, rr0, cr1 - cr0, rr1 - rr0), (pt, pb, pl, pr))

    def __iter__(self) -> Iterator[Tile]:
        for row in range(len(self.row_cores)):
            for col in range(len(self.col_cores)):
                yield self.tile(row, col)

    def _axis_weights(self, cores: list[tuple[int, int]], i: int, length: int) -> np.ndarray:
        b0, b1 = max(0, cores[i][0] - self.overlap), min(length, cores[i][1] + self.overlap)
        w = np.ones(b1 - b0, dtype=np.float32)
        if self.overlap == 0:
            return w
        full = ramp(2 * self.overlap)
        if i > 0:  # rising ramp centred on this core's start, clipped like the blend window
            lo = cores[i][0] - self.overlap
            seg = full[b0 - lo: min(b1, lo + 2 * self.overlap) - lo]
            w[: len(seg)] = seg
        if i + 1 < len(cores):  # falling ramp centred on this core's end
            lo = cores[i][1] - self.overlap
            seg = 1.0 - full[: min(b1, lo + 2 * self.overlap) - lo]
            w[lo - b0: lo - b0 + len(seg)] = seg
        return w

    def weights(self, tile: Tile) -> np.ndarray:
        """Blend weights over ``tile.blend`` (rows, cols)."""
        wy = self._axis_weights(self.row_cores, tile.row, self.height)
        wx = self._axis_weights(self.col_cores, tile.col, self.width)
        return np.outer(wy, wx)

    def _cuts(self, cores: list[tuple[int, int]], length: int) -> list[int]:
        cuts = {0, length}
        for start, _ in cores[1:]:
            cuts.update((max(0, start - self.overlap), min(length, start + self.overlap)))
        return sorted(cuts)

    def cells(self) -> tuple[list[int], list[int]]:
        """Row and column cut positions of the stitching cells."""
        return self._cuts(self.row_cores, self.height), self._cuts(self.col_cores, self.width)


    def covering(self, row_cell: int, col_cell: int) -> list[tuple[int, int]]:
        """The tiles (row-major) whose blend extent covers stitching cell ``(row_cell, col_cell)``."""
        row_cuts, col_cuts = self.cells()
        ra, rb, ca, cb = row_cuts[row_cell], row_cuts[row_cell + 1], col_cuts[col_cell], col_cuts[col_cell + 1]

        def spans(cores: list[tuple[int, int]], a: int, b: int, length: int) -> list[int]:
            return [i for i, (s, e) in enumerate(cores)
                    if max(0, s - self.overlap) <= a and b <= min(length, e + self.overlap)]

        return [(r, c) for r in spans(self.row_cores, ra, rb, self.height)
                for c in spans(self.col_cores, ca, cb, self.width)]


def _weighted(plan: TilePlan, tile: Tile, values: np.ndarray, valid: np.ndarray, window: Window,
              weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A tile's weighted values and validity on ``window`` (new arrays: they do not keep the tile alive)."""
    weights = plan.weights(tile) if weights is None else weights
    ra, ca = int(window.row_off) - int(tile.blend.row_off), int(window.col_off) - int(tile.blend.col_off)
    rows, cols = slice(ra, ra + int(window.height)), slice(ca, ca + int(window.width))
    w = weights[rows, cols]
    return values[:, rows, cols] * w, valid[rows, cols] * w


def _sum(pieces: list[tuple[int, int, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Add weighted pieces in row-major tile order: the same float result whatever order tiles arrived in."""
    pieces = sorted(pieces, key=lambda piece: (piece[0], piece[1]))
    values, valid = np.zeros_like(pieces[0][2]), np.zeros_like(pieces[0][3])
    for _, _, v, m in pieces:
        values += v
        valid += m
    return values, valid


def blend_cell(plan: TilePlan, window: Window, results: list[tuple[Tile, np.ndarray, np.ndarray]]
               ) -> tuple[np.ndarray, np.ndarray]:
    """One stitching cell from the tiles covering it, as :class:`OverlapAddStitcher` blends it.

    ``results`` holds each covering tile with its values (bands, rows, cols) and validity over ``tile.blend``.
    Returns the blended values and the blended validity in [0, 1].
    """
    if not results:
        raise ValueError(f"no tile covers the cell at {window}")
    return _sum([(tile.row, tile.col, *_weighted(plan, tile, values, valid, window))
                 for tile, values, valid in results])


WriteCell = Callable[[np.ndarray, np.ndarray, Window], None]


class OverlapAddStitcher:
    """Collects weighted tile results and hands each cell to ``write`` as soon as it is complete.

    A cell's pieces are added in row-major tile order once all have arrived, so the output does not depend on the
    order in which workers finish tiles.

    ``write(values, weight_of_valid, window)`` receives the blended values (bands, rows, cols) and the blended
    validity (rows, cols) in [0, 1]. Thread-safe: tiles may arrive from several workers in any order, and ``write``
    is called outside the stitcher's lock, from those workers, so it must be thread-safe itself (cells are
    encoded in parallel; only the file write needs to be serialised).
    """

    def __init__(self, plan: TilePlan, bands: int, write: WriteCell, skip_above: int = 0):
        self.plan, self.bands, self.write = plan, bands, write
        #: Cells that end at or above this output row are written already (a resumed run): pieces are dropped.
        self.skip_above = skip_above
        self.row_cuts, self.col_cuts = plan.cells()
        self._pending: dict[tuple[int, int], list] = {}
        self._lock = threading.Lock()
        self._row_cover = self._coverage(self.row_cuts, plan.row_cores, plan.height)
        self._col_cover = self._coverage(self.col_cuts, plan.col_cores, plan.width)

    def _coverage(self, cuts: list[int], cores: list[tuple[int, int]], length: int) -> list[int]:
        counts = []
        for a, b in pairwise(cuts):
            counts.append(sum(1 for s, e in cores
                              if max(0, s - self.plan.overlap) <= a and b <= min(length, e + self.plan.overlap)))
        return counts

    @staticmethod
    def _span(cuts: list[int], start: int, stop: int) -> range:
        return range(cuts.index(start), cuts.index(stop))

    def add(self, tile: Tile, values: np.ndarray, valid: np.ndarray) -> None:
        """Add one tile's result over ``tile.blend``: values (bands, rows, cols), valid (rows, cols) bool."""
        weights = self.plan.weights(tile)
        r0, c0 = int(tile.blend.row_off), int(tile.blend.col_off)
        rows = self._span(self.row_cuts, r0, r0 + int(tile.blend.height))
        cols = self._span(self.col_cuts, c0, c0 + int(tile.blend.width))
        ready = []
        with self._lock:
            for ri in rows:
                ra, rb = self.row_cuts[ri], self.row_cuts[ri + 1]
                if rb <= self.skip_above:
                    continue
                for ci in cols:
                    ca, cb = self.col_cuts[ci], self.col_cuts[ci + 1]
                    window = Window(ca, ra, cb - ca, rb - ra)
                    if self._row_cover[ri] * self._col_cover[ci] == 1:
                        # One tile covers the cell, with weight 1 throughout: its values are the cell's.
                        local = slice(ra - r0, rb - r0), slice(ca - c0, cb - c0)
                        ready.append(((values[:, local[0], local[1]], valid[local]), window))
                        continue
                    piece = (tile.row, tile.col, *_weighted(self.plan, tile, values, valid, window, weights))
                    entry = self._pending.setdefault((ri, ci), [[], self._row_cover[ri] * self._col_cover[ci]])
                    entry[0].append(piece)
                    entry[1] -= 1
                    if entry[1] == 0:
                        del self._pending[(ri, ci)]
                        ready.append((_sum(entry[0]), window))
        for (cell_values, cell_valid), window in ready:
            self.write(cell_values, cell_valid, window)

    @property
    def pending_cells(self) -> int:
        return len(self._pending)
