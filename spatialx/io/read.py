"""Open rasters defensively and read windows from them, one dataset handle per thread.

GDAL dataset handles are not thread-safe, so tiles processed on a thread pool each read through their own
thread's handle (:class:`ThreadLocalReader`). A raster in another CRS can be opened through a GDAL warped VRT
(``warp_to``): it is then reprojected on the fly, window by window, at its own resolution. In-memory arrays
(:mod:`spatialx.xr`) are read through the same :class:`RasterReader` interface.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.enums import Resampling as WarpResampling
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
    #: Every band's mask is its nodata value alone (no alpha band, no internal or external mask).
    nodata_mask_only: bool = False
    #: Reprojected on the fly onto this CRS (a GDAL warped VRT), with this GDAL resampling.
    warp_crs: CRS | None = None
    warp_resampling: str = "cubic"
    native_crs: CRS | None = None  # the file's own CRS, when warped
    #: Where the pixels come from when not a GDAL dataset at ``path``: an in-memory array (:mod:`spatialx.xr`) or
    #: a sensor product a format reader opened (:func:`register_format`); read by ``opener(info)``.
    source: Any = field(default=None, compare=False, repr=False)
    opener: Callable[[RasterInfo], RasterReader] | None = field(default=None, compare=False, repr=False)
    #: Per band, when the file says: centre wavelength and FWHM in nm (the band metadata spatialx writes, GDAL's
    #: IMAGERY domain, or a product's own metadata).
    wavelengths_nm: tuple[float | None, ...] | None = None
    fwhm_nm: tuple[float | None, ...] | None = None
    #: Product metadata a reader found (acquisition date, processing baseline, ...), for provenance.
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def georeferenced(self) -> bool:
        return self.grid.crs is not None

    def reader(self) -> RasterReader:
        """A reader safe to use from many threads."""
        if self.opener is not None:
            return self.opener(self)
        return ThreadLocalReader(self)


@dataclass(frozen=True)
class ProductFormat:
    """A sensor product format GDAL does not read as one raster (PRISMA HE5, a Sentinel-2 SAFE folder, ...)."""

    name: str
    #: Is ``path`` such a product? Cheap: a suffix, a folder layout, a file signature; never raises.
    probe: Callable[[Path], bool]
    #: Open it as :class:`RasterInfo` (with ``opener`` set), raising :class:`~spatialx.errors.ReadError`; called as
    #: ``open(path, role, **options)`` with the reader's own options (e.g. PRISMA's ``keep_overlap``).
    open: Callable[..., RasterInfo]
    #: The reader reprojects onto another CRS itself: ``open`` then also takes ``warp_to`` (a CRS or None) and
    #: ``warp_resampling`` (a GDAL resampling name) and returns the reprojected raster's description.
    warps: bool = False


_FORMATS: list[ProductFormat] = []
#: Modules whose ``FORMAT`` is a built-in :class:`ProductFormat`, imported on the first :func:`open_raster`.
#: Probed in this order: Landsat and MODIS band files end like Sentinel-2's (``_B10.TIF``, ``_B01.TIF``), so their
#: stricter probes go first.
BUILTIN_FORMATS: tuple[str, ...] = ("spatialx.io.prisma", "spatialx.io.landsat", "spatialx.io.modis",
                                     "spatialx.io.sentinel2", "spatialx.io.radarsat2")
_builtins_loaded = False


def register_format(product: ProductFormat) -> None:
    """Teach :func:`open_raster` a product format (probed in registration order, before GDAL)."""
    if any(existing.name == product.name for existing in _FORMATS):
        raise ValueError(f"format {product.name!r} is already registered")
    _FORMATS.append(product)


def product_format_name(path: str | PathLike[str]) -> str | None:
    """The name of the sensor product format ``path`` is (e.g. "PRISMA L2D"), or None for a plain raster."""
    product = _product_format(Path(path)) if Path(path).exists() else None
    return None if product is None else product.name


def _product_format(path: Path) -> ProductFormat | None:
    global _builtins_loaded
    if not _builtins_loaded:
        from importlib import import_module

        _builtins_loaded = True
        for module in BUILTIN_FORMATS:
            register_format(import_module(module).FORMAT)
    return next((product for product in _FORMATS if product.probe(path)), None)


class RasterReader(Protocol):
    """Windowed reads of one input as float32 (bands, rows, cols), and its validity."""

    def read(self, window: Window, bands: list[int] | None = None) -> np.ndarray: ...

    def read_valid(self, window: Window, bands: list[int] | None = None) -> np.ndarray: ...

    def read_masked(self, window: Window, bands: list[int] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``read`` and, when the input can hold invalid pixels, ``read_valid`` (else None) of one window."""
        ...

    def close(self) -> None: ...


def _open(path: Path) -> rasterio.DatasetReader:
    with warnings.catch_warnings():
        # Rasters without a geotransform are handled explicitly (see RasterInfo.georeferenced).
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


def _warped(src: rasterio.DatasetReader, crs: CRS, resampling: str):
    from rasterio.vrt import WarpedVRT

    # Without a nodata value, pixels outside the source would read as 0: an alpha band marks them instead.
    return WarpedVRT(src, crs=crs, resampling=WarpResampling[resampling], add_alpha=src.nodata is None)


def open_raster(path: str | PathLike[str], role: str = "input", warp_to: CRS | None = None,
                warp_resampling: str = "cubic", options: Mapping[str, Any] | None = None) -> RasterInfo:
    """Open ``path``, check that its pixels can actually be read, and describe it.

    A truncated file often opens fine and fails only on the first read of a missing block, so the last block is
    read here: a broken input is reported before any work starts, not half-way through a scene. With ``warp_to``
    (a CRS other than the file's), the raster is described and later read as reprojected onto that CRS. Sensor
    products (:func:`register_format`) are opened by their format's reader, with its ``options``.
    """
    path = Path(path)
    if not path.exists():
        raise ReadError(f"{role} file does not exist", path=path, hint="check the path")
    product = _product_format(path)
    if product is not None:
        if product.warps:
            options = {**dict(options or {}), "warp_to": warp_to, "warp_resampling": warp_resampling}
        try:
            info = product.open(path, role, **dict(options or {}))
        except TypeError as exc:
            raise ReadError(f"{role}: {product.name} reader options: {exc}", path=path) from None
        if not product.warps and warp_to is not None and info.grid.crs is not None and info.grid.crs != warp_to:
            raise ReadError(f"{role}: {product.name} products cannot be reprojected on the fly (it is in "
                            f"{info.grid.crs}, the output grid in {warp_to})", path=path,
                            hint="reproject the product to a GeoTIFF first (gdalwarp)")
        return info
    if options:
        raise ReadError(f"{role}: {', '.join(sorted(options))} apply to sensor product files, not to this raster",
                        path=path, hint="drop the option, or give the product file")
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
                nodata_mask_only=all(flags == [MaskFlags.nodata] for flags in src.mask_flag_enums),
                **_band_wavelengths(src),
            )
            if warp_to is not None and crs is not None and crs != warp_to:
                with _warped(src, warp_to, warp_resampling) as vrt:
                    grid = Grid(transform=vrt.transform, width=vrt.width, height=vrt.height, crs=vrt.crs)
                info = replace(info, grid=grid, has_mask=True, warp_crs=warp_to, warp_resampling=warp_resampling,
                               native_crs=crs)
    except RasterioIOError as exc:
        text = str(exc)
        if "not recognized as" in text or "not a supported file format" in text:
            raise ReadError(f"{role} is not a raster GDAL can read", path=path,
                            hint="give a GeoTIFF or another GDAL-readable raster") from None
        raise ReadError(f"{role} cannot be read ({first_line(text)})", path=path,
                        hint="the file may be truncated or corrupt; re-download or re-export it") from None
    except RasterioError as exc:
        raise ReadError(f"{role} cannot be read ({first_line(str(exc))})", path=path) from None
    return info


def _nm(value: str | None, units: str | None = "nm") -> float | None:
    try:
        number = float(str(value).strip().strip("{}"))
    except (TypeError, ValueError):
        return None
    unit = (units or "nm").strip().lower()
    return number * 1000 if unit in ("um", "micrometers", "micrometer", "micron", "microns", "µm") else number


def _band_wavelengths(src: rasterio.DatasetReader) -> dict[str, tuple[float | None, ...] | None]:
    """Centre wavelength and FWHM per band, in nm, from the metadata the writers of cubes use: band tags
    ``wavelength`` (with ``wavelength_units``) and ``fwhm`` (spatialx, many tools), GDAL's ``IMAGERY`` domain, or
    an ENVI header's ``wavelength``/``fwhm`` lists (``ENVI`` domain, ``wavelength units``)."""
    centres: list[float | None] = []
    widths: list[float | None] = []
    for band in range(1, src.count + 1):
        tags = src.tags(band)
        imagery = src.tags(band, ns="IMAGERY")
        units = tags.get("wavelength_units", "nm")
        centre = _nm(tags.get("wavelength"), units)
        if centre is None and "CENTRAL_WAVELENGTH_UM" in imagery:
            centre = _nm(imagery["CENTRAL_WAVELENGTH_UM"], "um")
        width = _nm(tags.get("fwhm"), units)
        if width is None and "FWHM_UM" in imagery:
            width = _nm(imagery["FWHM_UM"], "um")
        centres.append(centre)
        widths.append(width)
    envi = src.tags(ns="ENVI")
    if all(c is None for c in centres) and "wavelength" in envi:
        units = envi.get("wavelength_units", envi.get("wavelength units", "nm"))
        values = [_nm(v, units) for v in envi["wavelength"].strip("{} ").split(",")]
        if len(values) == src.count:
            centres = values
            fwhm = envi.get("fwhm", "").strip("{} ").split(",")
            widths = [_nm(v, units) for v in fwhm] if len(fwhm) == src.count else [None] * src.count
    if all(c is None for c in centres):
        return {"wavelengths_nm": None, "fwhm_nm": None}
    return {"wavelengths_nm": tuple(centres), "fwhm_nm": tuple(widths)}


def first_line(text: str, default: str = "unknown GDAL error") -> str:
    """The first line of a library's error message (GDAL and HDF errors run over several)."""
    return text.strip().splitlines()[0] if text.strip() else default


def metadata_number(text: Any, what: str, where: Path, role: str) -> float:
    """A number a product's metadata states (``what`` names it), or a one-line error naming the metadata file."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ReadError(f"{role}: {what} is {text!r}, not a number", path=where,
                        hint="the product metadata is damaged; re-download it") from None
    if not math.isfinite(value):
        raise ReadError(f"{role}: {what} is {text!r}", path=where, hint="the product metadata is damaged")
    return value


def open_band_file(path: Path, role: str) -> rasterio.DatasetReader:
    """One band file of a sensor product, opened, or a one-line error naming it."""
    try:
        return _open(path)
    except RasterioError as exc:
        raise ReadError(f"{role}: cannot open the band file {path.name} ({first_line(str(exc))})", path=path,
                        hint="the file may be truncated or corrupt; re-download the product") from None


def band_file_grid(path: Path, role: str, georeferencing: str) -> Grid:
    """The grid of a product's single-band file, after checking it has one band, georeferencing (``georeferencing``
    says what the product's files carry, for the hint) and a readable last pixel."""
    with open_band_file(path, role) as src:
        if src.count != 1:
            raise ReadError(f"{role}: the band file {path.name} has {src.count} bands; expected one", path=path,
                            hint="give the product's single-band files")
        if not src.crs:
            raise ReadError(f"{role}: the band file {path.name} is not georeferenced", path=path,
                            hint=f"{georeferencing}; re-download it")
        try:
            # A truncated file often opens fine and fails only on its last block.
            src.read(1, window=Window(src.width - 1, src.height - 1, 1, 1))
        except RasterioError as exc:
            raise ReadError(f"{role}: the band file {path.name} cannot be read ({first_line(str(exc))})", path=path,
                            hint="the file may be truncated or corrupt; re-download the product") from None
        return Grid(transform=src.transform, width=src.width, height=src.height, crs=src.crs)


class PerThreadHandles:
    """What every file reader needs to be safe from many threads: one open handle per thread and file (neither
    GDAL's nor h5py's handles may be shared across threads), and reads in flight counted, so that :meth:`close`
    (an interrupt, a failing tile) waits for them instead of freeing a handle under a worker thread, which would
    crash the process. Subclasses read inside ``with self.reading():`` through :meth:`handle`.
    """

    def __init__(self, info: RasterInfo):
        self.info = info
        self._local = threading.local()
        self._handles: list[Any] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition()
        self._active = 0
        self._closed = False

    def read_masked(self, window: Window, bands: list[int] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``read`` and, when the input can hold invalid pixels, ``read_valid`` (else None) of one window."""
        data = self.read(window, bands)  # type: ignore[attr-defined]
        return data, self.read_valid(window, bands) if self.info.has_mask else None  # type: ignore[attr-defined]

    def band_indexes(self, bands: list[int] | None) -> list[int]:
        """0-based indexes of the 1-based ``bands`` (default: all), checked against the raster's band count."""
        indexes = bands if bands is not None else list(range(1, self.info.count + 1))
        for index in indexes:
            if not 1 <= index <= self.info.count:
                raise IndexError(f"band index {index} outside 1..{self.info.count}")
        return [i - 1 for i in indexes]

    def handle(self, key: Any, opener: Callable[[], Any]) -> Any:
        """This thread's handle called ``key``, opened by ``opener`` on first use."""
        per_thread = self._local.__dict__.setdefault("handles", {})
        if key not in per_thread:
            opened = opener()
            with self._lock:
                self._handles.append(opened)
            per_thread[key] = opened
        return per_thread[key]

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._idle:
            if self._closed:
                raise ReadError("read after the run stopped", path=self.info.path)
            self._active += 1
        try:
            yield
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def close(self, timeout: float = 30.0) -> None:
        """Close every thread's handles once the reads in flight have finished (new reads are refused)."""
        with self._idle:
            self._closed = True
            self._idle.wait_for(lambda: self._active == 0, timeout=timeout)
        with self._lock:
            for opened in reversed(self._handles):  # e.g. a warped VRT before the dataset it reads
                opened.close()
            self._handles.clear()
        self._local = threading.local()

    def __enter__(self) -> PerThreadHandles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ThreadLocalReader(PerThreadHandles):
    """Windowed reads from one raster, safe to call from many threads."""

    def __init__(self, info: RasterInfo):
        super().__init__(info)
        #: Validity is the nodata value alone, in a type float32 holds exactly: it is read off the pixels, not
        #: read again as GDAL's mask band (which decodes the same blocks a second time).
        self._nodata_only = (info.nodata is not None and not np.isnan(info.nodata) and info.warp_crs is None
                             and np.dtype(info.dtype).kind in "iu" and np.dtype(info.dtype).itemsize <= 2
                             and info.nodata_mask_only)

    def _dataset(self) -> rasterio.DatasetReader:
        src = self.handle("dataset", lambda: _open(self.info.path))
        if self.info.warp_crs is None:
            return src
        return self.handle("warped", lambda: _warped(src, self.info.warp_crs, self.info.warp_resampling))

    def read(self, window: Window, bands: list[int] | None = None) -> np.ndarray:
        """Read ``window`` (which must lie inside the raster) as float32, shape (bands, rows, cols)."""
        indexes = bands if bands is not None else list(range(1, self.info.count + 1))
        try:
            with self.reading():
                return self._dataset().read(indexes, window=window, out_dtype="float32")
        except RasterioError as exc:
            raise ReadError(f"read failed at {window} ({first_line(str(exc))})", path=self.info.path,
                            hint="the file may be truncated or corrupt") from None

    def read_masked(self, window: Window, bands: list[int] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        data = self.read(window, bands)
        if not self.info.has_mask:
            return data, None
        if self._nodata_only:
            return data, np.all(data != np.float32(self.info.nodata), axis=0)
        return data, self.read_valid(window, bands)

    def read_valid(self, window: Window, bands: list[int] | None = None) -> np.ndarray:
        """Validity mask of ``window``: True where every selected band holds data (GDAL masks honour nodata,
        alpha bands and internal masks alike)."""
        indexes = bands if bands is not None else list(range(1, self.info.count + 1))
        try:
            with self.reading():
                masks = self._dataset().read_masks(indexes, window=window)
        except RasterioError as exc:
            raise ReadError(f"mask read failed at {window} ({first_line(str(exc))})", path=self.info.path) from None
        return np.all(masks != 0, axis=0)
