"""An immutable pixel grid: CRS, affine transform and shape, with the few operations alignment needs."""

from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid. ``crs`` is None for rasters that are not georeferenced."""

    transform: Affine
    width: int
    height: int
    crs: CRS | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y), both positive."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        x0, y0 = self.transform @ (0, 0)
        x1, y1 = self.transform @ (self.width, self.height)
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

    @property
    def is_north_up(self) -> bool:
        return self.transform.b == 0 and self.transform.d == 0

    def window_inside(self, bounds: tuple[float, float, float, float]) -> Window:
        """The largest window of whole pixels of this grid that lies inside ``bounds``."""
        left, bottom, right, top = bounds
        inv = ~self.transform
        cols = sorted([(inv @ (left, top))[0], (inv @ (right, bottom))[0]])
        rows = sorted([(inv @ (left, top))[1], (inv @ (right, bottom))[1]])
        eps = 1e-6  # tolerate float noise in bounds that sit exactly on pixel edges
        col0, col1 = max(0, math.ceil(cols[0] - eps)), min(self.width, math.floor(cols[1] + eps))
        row0, row1 = max(0, math.ceil(rows[0] - eps)), min(self.height, math.floor(rows[1] + eps))
        return Window(col0, row0, max(0, col1 - col0), max(0, row1 - row0))

    def crop(self, window: Window) -> Grid:
        """The sub-grid covered by an integer ``window``."""
        return Grid(
            transform=self.transform @ Affine.translation(int(window.col_off), int(window.row_off)),
            width=int(window.width),
            height=int(window.height),
            crs=self.crs,
        )


def intersect_bounds(a: tuple[float, float, float, float],
                     b: tuple[float, float, float, float]) -> tuple[float, float, float, float] | None:
    """Intersection of two (left, bottom, right, top) boxes, or None when they do not overlap."""
    left, bottom = max(a[0], b[0]), max(a[1], b[1])
    right, top = min(a[2], b[2]), min(a[3], b[3])
    if right <= left or top <= bottom:
        return None
    return left, bottom, right, top
