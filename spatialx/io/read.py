"""Open rasters defensively and read windows from them, one dataset handle per thread.

GDAL dataset handles are not thread-safe, so tiles processed on a thread pool each read through their own
thread's handle (:class:`ThreadLocalReader`).
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.windows import Window

from spatialx.errors import ReadError
from spatialx.grid import Grid


@dataclass(frozen=True)
class RasterInfo:
    """What spatialx needs to know about an input raster, read once at open time."""

    path: Path
    count: int
    dtype: str
    grid: Grid
    nodata: float | None
    descriptions: tuple[str | None, ...]
    has_gcps: bool
    has_mask: bool  # nodata, alpha or an internal mask: some pixels may be invalid

    @property
    def georeferenced(self) -> bool:
        return self.grid.crs is not None


def _open(path: Path) -> rasterio.DatasetReader:
    with warnings.catch_warnings():
        # Rasters without a geotransform are handled explicitly (see RasterInfo.georeferenced).
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


def open_raster(path: str | PathLike[str], role: str = "input") -> RasterInfo:
    """Open ``path``, check that its pixels can actually be read, and describe it.

    A truncated file often opens fine and fails only on the first read of a missing block, so the last block is
    read here: a broken input is reported before any work starts, not half-way through a scene.
    """
    path = Path(path)
    if not path.exists():
        raise ReadError(f"{role} file does not exist", path=path, hint="check the path")
    if path.is_dir():
        raise ReadError(f"{role} is a directory, not a raster file", path=path)
    try:
        with _open(path) as src:
            height, width = src.shape
            block_h, block_w = src.block_shapes[0]
            last = Window(max(0, width - block_w), max(0, height - block_h), min(block_w, width),
                          min(block_h, height))
            src.read(window=last)
            crs = src.crs if src.crs else None
            info = RasterInfo(
                path=path,
                count=src.count,
                dtype=src.dtypes[0],
                grid=Grid(transform=src.transform, width=width, height=height, crs=crs),
                nodata=src.nodata,
                descriptions=tuple(src.descriptions),
                has_gcps=bool(src.gcps[0]),
                has_mask=any(MaskFlags.all_valid not in flags for flags in src.mask_flag_enums),
            )
    except RasterioIOError as exc:
        text = str(exc)
        if "not recognized as" in text or "not a supported file format" in text:
            raise ReadError(f"{role} is not a raster GDAL can read", path=path,
                            hint="give a GeoTIFF or another GDAL-readable raster") from None
        raise ReadError(f"{role} cannot be read ({_first_line(text)})", path=path,
                        hint="the file may be truncated or corrupt; re-download or re-export it") from None
    except RasterioError as exc:
        raise ReadError(f"{role} cannot be read ({_first_line(str(exc))})", path=path) from None
    return info


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown GDAL error"


class ThreadLocalReader:
    """Windowed reads from one raster, safe to call from many threads."""

    def __init__(self, info: RasterInfo):
        self.info = info
        self._local = threading.local()
        self._handles: list[rasterio.DatasetReader] = []
        self._lock = threading.Lock()

    def _dataset(self) -> rasterio.DatasetReader:
        src = getattr(self._local, "src", None)
        if src is None:
            src = _open(self.info.path)
            self._local.src = src
            with self._lock:
                self._handles.append(src)
        return src

    def read(self, window: Window, bands: list[int] | None = None) -> np.ndarray:
        """Read ``window`` (which must lie inside the raster) as float32, shape (bands, rows, cols)."""
        indexes = bands if bands is not None else list(range(1, self.info.count + 1))
        try:
            return self._dataset().read(indexes, window=window, out_dtype="float32")
        except RasterioError as exc:
            raise ReadError(f"read failed at {window} ({_first_line(str(exc))})", path=self.info.path,
                            hint="the file may be truncated or corrupt") from None

    def read_valid(self, window: Window, bands: list[int] | None = None) -> np.ndarray:
        """Validity mask of ``window``: True where every selected band holds data (GDAL masks honour nodata,
        alpha bands and internal masks alike)."""
        indexes = bands if bands is not None else list(range(1, self.info.count + 1))
        try:
            masks = self._dataset().read_masks(indexes, window=window)
        except RasterioError as exc:
            raise ReadError(f"mask read failed at {window} ({_first_line(str(exc))})", path=self.info.path) from None
        return np.all(masks != 0, axis=0)

    def close(self) -> None:
        with self._lock:
            for src in self._handles:
                src.close()
            self._handles.clear()
        self._local = threading.local()

    def __enter__(self) -> ThreadLocalReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
