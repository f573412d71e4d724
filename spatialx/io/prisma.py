"""PRISMA Level-2D (ASI) hyperspectral products: read the HE5 file's VNIR and SWIR cubes as one reflectance raster.

Layout (PRISMA Products Specification; the public readers prismaread and EnMAP-Box read it the same way):

- ``HDFEOS/SWATHS/PRS_L2D_HCO/Data Fields/VNIR_Cube`` and ``SWIR_Cube``: uint16 DN stored (rows, bands, cols);
  ``VNIR_PIXEL_L2_ERR_MATRIX`` / ``SWIR_PIXEL_L2_ERR_MATRIX`` beside them, same shape, 0 where the pixel is good.
- Root attributes: ``List_Cw_Vnir``/``List_Cw_Swir`` (centre wavelengths, nm) and ``List_Fwhm_Vnir``/
  ``List_Fwhm_Swir``, one entry per slot of the cube's band axis, in descending wavelength order, with 0 (and a 0
  in ``List_Cw_*_Flags`` where present) for unused slots; ``L2ScaleVnirMin``/``Max`` and ``L2ScaleSwirMin``/``Max``:
  reflectance = min + DN / 65535 * (max - min); ``Epsg_Code`` and ``Product_{UL,UR,LL,LR}corner_{easting,northing}``;
  ``Processing_Level`` ("2D") and ``Product_StartTime``.

The bands are exposed in ascending wavelength order, VNIR and SWIR merged. The cameras overlap around 920-1010 nm;
by default the overlap is kept once, from the SWIR camera (whose detector still has full response there, where the
silicon VNIR detector fades): VNIR bands at or above the first SWIR centre are dropped, as prismaread does with its
default ``join_priority = "SWIR"``. ``keep_overlap=True`` keeps both cameras' bands.

Corner convention: the ``Product_*corner_*`` attributes are taken as the **centres** of the corner pixels, so the
grid's outer edge lies half a pixel outside them. Source: prismaread (IREA-CNR, ``R/pr_setext_L2D.R``: the extent
starts at ``xmin - 15``/``ymin - 15`` for 30 m pixels) and the EnMAP-Box (``ImportPrismaL2DAlgorithm.spatialInfo``:
extent ``UL_easting - res/2`` .. ``LR_easting + res/2``, ``LR_northing - res/2`` .. ``UL_northing + res/2``). At
least one smaller Python reader uses the UL attribute as the outer corner instead, half a pixel (15 m) off the two
above; the ASI specification text itself was not available to settle it. The pixel size is derived from the same
attributes, ``(LR - UL) / (n - 1)`` on each axis (30 m for real products); without the LR corner it is the
specified 30 m of the hyperspectral cubes.

No fill value is documented for the cubes. Geocoding leaves the area outside the imaged swath at DN 0 in every
band, so a pixel whose selected bands are all DN 0 is treated as fill (the EnMAP-Box import masks the same way);
pixels with a non-zero error-matrix value in any selected band are invalid too.

:func:`write_prisma_l2d` writes a small file in the same layout: real products are large and may not be
redistributed, so tests and ``spatialx sample`` make their own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.windows import Window

from spatialx.errors import ReadError
from spatialx.grid import Grid
from spatialx.io.read import PerThreadHandles, ProductFormat, RasterInfo, first_line

CAMERAS = ("VNIR", "SWIR")
#: Hyperspectral ground sampling distance in the PRISMA specification, used when a file gives no LR corner.
NOMINAL_PIXEL_SIZE_M = 30.0
DN_MAX = 65535.0
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# HDF5 allows a user block before the superblock, so the signature may sit at 0, 512, 1024, 2048, ...
_SIGNATURE_OFFSETS = (0, 512, 1024, 2048, 4096)
_NAME_FORMAT = {"VNIR": "VNIR{:02d}", "SWIR": "SWIR{:03d}"}
_LEVEL_HINTS = {
    "1": "this is top-of-atmosphere radiance; order the L2D (geocoded surface reflectance) product",
    "2B": "this is at-ground radiance; order the L2D (geocoded surface reflectance) product",
    "2C": "L2C reflectance is not geocoded; order the L2D product, which is",
}


def _fields_path(level: str) -> str:
    return f"HDFEOS/SWATHS/PRS_L{level}_HCO/Data Fields"


@dataclass(frozen=True)
class _Band:
    camera: str  # "VNIR" or "SWIR"
    index: int  # position along the cube's band axis in the file
    wavelength_nm: float
    fwhm_nm: float | None
    name: str


@dataclass(frozen=True)
class _Layout:
    """What :class:`PrismaReader` needs, found once by :func:`open_prisma` (kept in ``RasterInfo.source``)."""

    bands: tuple[_Band, ...]
    cubes: dict[str, str]  # camera -> dataset path
    errors: dict[str, str | None]  # camera -> error-matrix dataset path, None when the file has none
    scales: dict[str, tuple[float, float]]  # camera -> (L2ScaleMin, L2ScaleMax)


def probe(path: Path) -> bool:
    """Is ``path`` a PRISMA HE5 file? ``.he5`` with an HDF5 signature; ``.h5`` only when it also says PRISMA
    (other ``.h5`` rasters keep going to GDAL). Never raises."""
    try:
        suffix = path.suffix.lower()
        if suffix not in (".he5", ".h5") or not path.is_file() or not _has_hdf5_signature(path):
            return False
        if suffix == ".he5":
            return True
        with h5py.File(path, "r") as f:
            return "Processing_Level" in f.attrs or any(
                name.startswith("PRS_") for name in f.get("HDFEOS/SWATHS", {}))
    except Exception:  # a probe answers "not mine" to anything it cannot look into
        return False


def _has_hdf5_signature(path: Path) -> bool:
    with open(path, "rb") as fh:
        for offset in _SIGNATURE_OFFSETS:
            fh.seek(offset)
            head = fh.read(len(_HDF5_SIGNATURE))
            if head == _HDF5_SIGNATURE:
                return True
            if len(head) < len(_HDF5_SIGNATURE):
                return False
    return False



def _scalar(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return value
        value = value.reshape(-1)[0]
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", "replace").strip("\x00").strip()
    if isinstance(value, np.generic):
        return value.item()
    return value.strip() if isinstance(value, str) else value


def _number(attrs: h5py.AttributeManager, key: str, path: Path, role: str) -> float:
    if key not in attrs:
        raise ReadError(f"{role}: PRISMA attribute {key} is missing", path=path,
                        hint="the file is not a complete PRISMA L2D product; re-download it")
    try:
        return float(_scalar(attrs[key]))
    except (TypeError, ValueError):
        raise ReadError(f"{role}: PRISMA attribute {key} is not a number ({_scalar(attrs[key])!r})",
                        path=path) from None


def _vector(attrs: h5py.AttributeManager, key: str) -> np.ndarray | None:
    if key not in attrs:
        return None
    values = np.asarray(attrs[key]).reshape(-1)
    if values.dtype == np.float32:
        # Products store float32: its shortest decimal (402.4413) is the value meant, not 402.44129943847656.
        return np.array([float(str(v)) for v in values])
    return values.astype(np.float64)


def open_prisma(path: str | PathLike[str], role: str = "HS", keep_overlap: bool = False) -> RasterInfo:
    """Describe a PRISMA L2D HE5 file as one float32 reflectance raster, bands in ascending wavelength.

    Checks the processing level, the cube layout and that the last pixel of each cube reads (a truncated file is
    reported here, not half-way through a scene). Raises :class:`~spatialx.errors.ReadError` naming the file.
    """
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ReadError(f"{role} cannot be read as HDF5 ({first_line(str(exc))})", path=path,
                        hint="the file may be truncated or corrupt; re-download it") from None
    try:
        with f:
            return _describe(f, path, role, keep_overlap)
    except (OSError, KeyError) as exc:
        raise ReadError(f"{role} cannot be read as a PRISMA product ({first_line(str(exc))})", path=path,
                        hint="the file may be truncated or corrupt; re-download it") from None


def _describe(f: h5py.File, path: Path, role: str, keep_overlap: bool) -> RasterInfo:
    attrs = f.attrs
    level = _scalar(attrs["Processing_Level"]) if "Processing_Level" in attrs else None
    if level != "2D":
        stated = "no Processing_Level attribute" if level is None else f"Processing_Level {level!r}"
        raise ReadError(f"{role} is not a PRISMA L2D product ({stated})", path=path,
                        hint=_LEVEL_HINTS.get(str(level), "give a PRISMA L2D .he5 file (PRS_L2D_*.he5)"))
    fields = _fields_path("2D")
    if fields not in f:
        raise ReadError(f"{role}: PRISMA L2D file has no {fields} group", path=path,
                        hint="the file is not a complete PRISMA L2D hyperspectral product")

    cubes, errors, scales, shapes = {}, {}, {}, {}
    bands: list[_Band] = []
    for camera in CAMERAS:
        cube_path = f"{fields}/{camera}_Cube"
        if cube_path not in f or not isinstance(f[cube_path], h5py.Dataset) or f[cube_path].ndim != 3:
            raise ReadError(f"{role}: PRISMA L2D file has no 3-D {camera}_Cube", path=path,
                            hint="the file is not a complete PRISMA L2D hyperspectral product")
        cube = f[cube_path]
        rows, slots, cols = cube.shape
        if not rows or not slots or not cols:
            raise ReadError(f"{role}: PRISMA {camera}_Cube is empty ({cube.shape})", path=path,
                            hint="the file is corrupt; re-download it")
        shapes[camera] = (rows, cols)
        err_path = f"{fields}/{camera}_PIXEL_L2_ERR_MATRIX"
        if err_path in f:
            if f[err_path].shape != cube.shape:
                raise ReadError(f"{role}: {camera}_PIXEL_L2_ERR_MATRIX is {f[err_path].shape}, its cube "
                                f"{cube.shape}", path=path, hint="the file is corrupt; re-download it")
            errors[camera] = err_path
        else:
            errors[camera] = None
        cubes[camera] = cube_path
        title = camera.capitalize()
        scales[camera] = (_number(attrs, f"L2Scale{title}Min", path, role),
                          _number(attrs, f"L2Scale{title}Max", path, role))
        bands.extend(_camera_bands(attrs, camera, slots, path, role))
        # The last pixel of every band: a truncated or damaged final chunk fails here, at open time.
        cube[rows - 1, :, cols - 1]

    if shapes["VNIR"] != shapes["SWIR"]:
        raise ReadError(f"{role}: VNIR cube is {shapes['VNIR']} pixels, SWIR cube {shapes['SWIR']}", path=path,
                        hint="the file is corrupt; re-download it")
    swir_start = min((b.wavelength_nm for b in bands if b.camera == "SWIR"), default=None)
    if not keep_overlap and swir_start is not None:
        bands = [b for b in bands if not (b.camera == "VNIR" and b.wavelength_nm >= swir_start)]
    bands.sort(key=lambda b: (b.wavelength_nm, CAMERAS.index(b.camera)))
    if not bands:
        raise ReadError(f"{role}: PRISMA file lists no used band (List_Cw_Vnir and List_Cw_Swir are all 0)",
                        path=path, hint="the file is corrupt; re-download it")

    height, width = shapes["VNIR"]
    grid, pixel_source = _grid(attrs, width, height, path, role)
    start = _scalar(attrs["Product_StartTime"]) if "Product_StartTime" in attrs else None
    metadata: dict[str, Any] = {
        "sensor": "prisma_l2d",
        "processing_level": level,
        "date": _date(start),
        "start_time": None if start is None else str(start),
        "epsg": grid.crs.to_epsg() if grid.crs is not None else None,
        "pixel_size_m": grid.res[0],
        "pixel_size_source": pixel_source,
        "corner_convention": "Product_*corner_* are corner-pixel centres",
        "overlap": "kept" if keep_overlap else "SWIR",
        "error_matrix": all(errors.values()),
        "L2ScaleVnirMin": scales["VNIR"][0], "L2ScaleVnirMax": scales["VNIR"][1],
        "L2ScaleSwirMin": scales["SWIR"][0], "L2ScaleSwirMax": scales["SWIR"][1],
        # The reader delivers reflectance: the range its DN can map to (what a network scales the values by).
        "units": "reflectance",
        "value_range": (min(low for low, _ in scales.values()), max(high for _, high in scales.values())),
    }
    if "Product_StopTime" in attrs:
        metadata["stop_time"] = str(_scalar(attrs["Product_StopTime"]))
    layout = _Layout(bands=tuple(bands), cubes=cubes, errors=errors, scales=scales)
    return RasterInfo(
        path=path,
        count=len(bands),
        dtype="float32",
        grid=grid,
        nodata=None,
        descriptions=tuple(b.name for b in bands),
        has_gcps=False,
        has_mask=True,
        source=layout,
        opener=PrismaReader,
        wavelengths_nm=tuple(b.wavelength_nm for b in bands),
        fwhm_nm=tuple(b.fwhm_nm for b in bands),
        metadata=metadata,
    )


def _camera_bands(attrs: h5py.AttributeManager, camera: str, slots: int, path: Path, role: str) -> list[_Band]:
    title = camera.capitalize()
    centres = _vector(attrs, f"List_Cw_{title}")
    fwhm = _vector(attrs, f"List_Fwhm_{title}")
    flags = _vector(attrs, f"List_Cw_{title}_Flags")
    if centres is None:
        raise ReadError(f"{role}: PRISMA attribute List_Cw_{title} is missing", path=path,
                        hint="the file is not a complete PRISMA L2D product; re-download it")
    if len(centres) != slots:
        raise ReadError(f"{role}: List_Cw_{title} lists {len(centres)} wavelengths for {slots} bands of the "
                        f"{camera} cube", path=path, hint="the file is corrupt; re-download it")
    if fwhm is not None and len(fwhm) != slots:
        raise ReadError(f"{role}: List_Fwhm_{title} lists {len(fwhm)} values for {slots} bands", path=path,
                        hint="the file is corrupt; re-download it")
    used = centres > 0
    if flags is not None and len(flags) == slots:
        used &= flags != 0
    kept = sorted(np.flatnonzero(used), key=lambda i: centres[i])
    # Names count the camera's used slots in ascending wavelength, like the profile's VNIR01.., SWIR001..,
    # before the overlap is dropped, so a band keeps its name with or without keep_overlap.
    return [_Band(camera=camera, index=int(i), wavelength_nm=float(centres[i]),
                  fwhm_nm=float(fwhm[i]) if fwhm is not None and fwhm[i] > 0 else None,
                  name=_NAME_FORMAT[camera].format(n))
            for n, i in enumerate(kept, start=1)]


def _grid(attrs: h5py.AttributeManager, width: int, height: int, path: Path, role: str) -> tuple[Grid, str]:
    if "Epsg_Code" not in attrs:
        raise ReadError(f"{role}: PRISMA L2D file has no Epsg_Code", path=path,
                        hint="the product is not geocoded; give an L2D file")
    try:
        crs = CRS.from_epsg(int(_scalar(attrs["Epsg_Code"])))
    except (CRSError, TypeError, ValueError):
        raise ReadError(f"{role}: PRISMA Epsg_Code {_scalar(attrs['Epsg_Code'])!r} is not a known EPSG code",
                        path=path) from None
    ul_e = _number(attrs, "Product_ULcorner_easting", path, role)
    ul_n = _number(attrs, "Product_ULcorner_northing", path, role)
    px = py = None
    if "Product_LRcorner_easting" in attrs and "Product_LRcorner_northing" in attrs:
        lr_e = _number(attrs, "Product_LRcorner_easting", path, role)
        lr_n = _number(attrs, "Product_LRcorner_northing", path, role)
        # Corner-pixel centres: n pixels span n - 1 intervals.
        px = (lr_e - ul_e) / (width - 1) if width > 1 else None
        py = (ul_n - lr_n) / (height - 1) if height > 1 else None
        if (px is not None and px <= 0) or (py is not None and py <= 0):
            raise ReadError(f"{role}: PRISMA corners UL ({ul_e}, {ul_n}) and LR ({lr_e}, {lr_n}) do not "
                            f"describe a north-up grid", path=path, hint="the file is corrupt; re-download it")
        px, py = px or py, py or px
    source = "corners"
    if px is None or py is None:
        px = py = NOMINAL_PIXEL_SIZE_M
        source = "nominal"
    # Corner attributes are stored in float; rounding to the micrometre removes the noise of the division.
    px, py = round(px, 6), round(py, 6)
    transform = Affine(px, 0.0, ul_e - px / 2, 0.0, -py, ul_n + py / 2)
    return Grid(transform=transform, width=width, height=height, crs=crs), source


def _date(start: Any) -> str | None:
    if start is None:
        return None
    match = re.match(r"\s*(\d{4})-?(\d{2})-?(\d{2})", str(start))
    return f"{match[1]}-{match[2]}-{match[3]}" if match else None


FORMAT = ProductFormat(name="PRISMA L2D", probe=probe, open=open_prisma)


class PrismaReader(PerThreadHandles):
    """Windowed reflectance reads from a PRISMA L2D file, safe to call from many threads.

    h5py serialises all calls with one global lock, so threads do not read in parallel; each still reads through
    its own ``h5py.File`` so that no handle's state is shared across threads (as :class:`ThreadLocalReader` does
    for GDAL).
    """

    def __init__(self, info: RasterInfo):
        if not isinstance(info.source, _Layout):
            raise TypeError("PrismaReader reads a RasterInfo made by open_prisma")
        super().__init__(info)
        self._layout: _Layout = info.source

    def _file(self) -> h5py.File:
        def opener() -> h5py.File:
            try:
                return h5py.File(self.info.path, "r")
            except OSError as exc:
                raise ReadError(f"cannot reopen ({first_line(str(exc))})", path=self.info.path,
                                hint="the file may have been moved, truncated or replaced") from None

        return self.handle("h5", opener)

    def _slices(self, window: Window) -> tuple[slice, slice]:
        r0, c0 = int(window.row_off), int(window.col_off)
        r1, c1 = r0 + int(window.height), c0 + int(window.width)
        if r0 < 0 or c0 < 0 or r1 > self.info.grid.height or c1 > self.info.grid.width or r1 < r0 or c1 < c0:
            raise ValueError(f"window {window} is not inside the {self.info.grid.width}x{self.info.grid.height} "
                             f"raster")
        return slice(r0, r1), slice(c0, c1)

    def _bands(self, bands: list[int] | None) -> list[_Band]:
        if bands is None:
            return list(self._layout.bands)
        count = len(self._layout.bands)
        bad = [b for b in bands if not 1 <= b <= count]
        if bad:
            raise IndexError(f"band index {bad[0]} out of range 1..{count}")
        return [self._layout.bands[b - 1] for b in bands]

    def _read(self, dataset_path: str, rows: slice, cols: slice, indexes: list[int]) -> np.ndarray:
        """``dataset[rows, indexes, cols]`` as (len(indexes), rows, cols): one hyperslab per call, only the window
        and only those bands (h5py list indexing needs increasing indexes, hence the sorted unique read)."""
        wanted = sorted(set(indexes))
        dataset = self._file()[dataset_path]
        if wanted[-1] - wanted[0] + 1 == len(wanted):
            block = dataset[rows, wanted[0]:wanted[-1] + 1, cols]
        else:
            block = dataset[rows, wanted, cols]
        position = {index: k for k, index in enumerate(wanted)}
        return np.moveaxis(block, 1, 0)[[position[i] for i in indexes]]

    def _by_camera(self, selected: list[_Band]) -> dict[str, tuple[list[int], list[int]]]:
        out: dict[str, tuple[list[int], list[int]]] = {}
        for k, band in enumerate(selected):
            positions, indexes = out.setdefault(band.camera, ([], []))
            positions.append(k)
            indexes.append(band.index)
        return out

    def read(self, window: Window, bands: list[int] | None = None) -> np.ndarray:
        """Reflectance of ``window`` (inside the raster) as float32 (bands, rows, cols); ``bands`` are 1-based
        indexes into the ascending band list."""
        rows, cols = self._slices(window)
        selected = self._bands(bands)
        out = np.empty((len(selected), rows.stop - rows.start, cols.stop - cols.start), dtype=np.float32)
        try:
            with self.reading():
                for camera, (positions, indexes) in self._by_camera(selected).items():
                    lo, hi = self._layout.scales[camera]
                    dn = self._read(self._layout.cubes[camera], rows, cols, indexes)
                    out[positions] = dn.astype(np.float32) * np.float32((hi - lo) / DN_MAX) + np.float32(lo)
        except OSError as exc:
            raise ReadError(f"read failed at {window} ({first_line(str(exc))})", path=self.info.path,
                            hint="the file may be truncated or corrupt; re-download it") from None
        return out

    def read_valid(self, window: Window, bands: list[int] | None = None) -> np.ndarray:
        """True where every selected band is valid: its error-matrix value is 0, and the pixel is not fill (DN 0
        in all selected bands)."""
        rows, cols = self._slices(window)
        selected = self._bands(bands)
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        flagged = np.zeros(shape, dtype=bool)
        fill = np.full(shape, bool(selected))
        try:
            with self.reading():
                for camera, (_, indexes) in self._by_camera(selected).items():
                    fill &= np.all(self._read(self._layout.cubes[camera], rows, cols, indexes) == 0, axis=0)
                    err_path = self._layout.errors[camera]
                    if err_path is not None:
                        flagged |= np.any(self._read(err_path, rows, cols, indexes) != 0, axis=0)
        except OSError as exc:
            raise ReadError(f"mask read failed at {window} ({first_line(str(exc))})", path=self.info.path,
                            hint="the file may be truncated or corrupt; re-download it") from None
        return ~(flagged | fill)


def write_prisma_l2d(path: str | PathLike[str], reflectance: np.ndarray, wavelengths: Sequence[float],
                     fwhm: Sequence[float], crs_epsg: int, ul_easting: float, ul_northing: float,
                     pixel_size: float = 30.0, err_mask: np.ndarray | None = None, vnir_count: int | None = None,
                     *, scale_ranges: dict[str, tuple[float, float]] | None = None,
                     unused_slots: tuple[int, int] = (0, 0), processing_level: str = "2D",
                     start_time: str = "2020-05-24T10:37:04.529", compression: str | None = "gzip") -> Path:
    """Write ``reflectance`` (bands, rows, cols) as a PRISMA L2D-layout HE5 file; returns ``path``.

    The first ``vnir_count`` bands (default: those centred below 1000 nm) form the VNIR cube, the rest the SWIR
    cube, each in ascending wavelength (the cameras' ranges may overlap). As in real products the cubes are stored
    (rows, bands, cols) in descending wavelength, followed by ``unused_slots`` (VNIR, SWIR) zero-wavelength slots,
    as uint16 DN over each cube's ``scale_ranges[camera]`` (default: 0 or the data minimum, to the data maximum).
    NaN reflectance is written as DN 0 (fill). ``err_mask`` (rows, cols) or (bands, rows, cols), bool or integer
    codes, fills the error matrices (True becomes 1). ``ul_easting``/``ul_northing`` is the centre of the upper-left
    pixel (see the module docstring). ``processing_level`` other than "2D" writes the same layout under that level's
    swath name, for refusal tests.
    """
    path = Path(path)
    data = np.asarray(reflectance, dtype=np.float64)
    if data.ndim != 3:
        raise ValueError(f"reflectance must be (bands, rows, cols), got shape {data.shape}")
    count, rows, cols = data.shape
    wl = np.asarray(wavelengths, dtype=np.float64)
    fw = np.asarray(fwhm, dtype=np.float64)
    if wl.shape != (count,) or fw.shape != (count,):
        raise ValueError(f"{count} bands need {count} wavelengths and FWHM, got {wl.size} and {fw.size}")
    if np.any(wl <= 0):
        raise ValueError("wavelengths must be positive (0 marks an unused slot in the file)")
    n_vnir = int(np.count_nonzero(wl < 1000.0)) if vnir_count is None else int(vnir_count)
    if not 0 < n_vnir < count:
        raise ValueError(f"both cameras need a band: {n_vnir} VNIR of {count} bands")
    if not pixel_size > 0:
        raise ValueError(f"pixel_size must be positive, got {pixel_size}")
    errors = _error_codes(err_mask, count, rows, cols)
    parts = {"VNIR": slice(0, n_vnir), "SWIR": slice(n_vnir, count)}
    level = str(processing_level)
    fields = _fields_path(level)
    with h5py.File(path, "w") as f:
        attrs = f.attrs
        for camera, extra in zip(CAMERAS, unused_slots, strict=True):
            part = parts[camera]
            if np.any(np.diff(wl[part]) <= 0):
                raise ValueError(f"{camera} wavelengths must increase strictly")
            cube = data[part]
            finite = cube[np.isfinite(cube)]
            lo, hi = (scale_ranges or {}).get(camera) or (
                min(0.0, float(finite.min())) if finite.size else 0.0,
                float(finite.max()) if finite.size else 1.0)
            if hi <= lo:
                hi = lo + 1.0
            dn = np.rint((np.nan_to_num(cube, nan=lo) - lo) / (hi - lo) * DN_MAX)
            dn = np.clip(dn, 0, DN_MAX).astype(np.uint16)
            err = errors[part]
            # Stored descending, unused slots last, band axis in the middle.
            dn = np.concatenate([dn[::-1], np.zeros((extra, rows, cols), np.uint16)])
            err = np.concatenate([err[::-1], np.zeros((extra, rows, cols), np.uint8)])
            chunks = (min(rows, 64), dn.shape[0], min(cols, 64))
            f.create_dataset(f"{fields}/{camera}_Cube", data=np.transpose(dn, (1, 0, 2)), chunks=chunks,
                             compression=compression)
            f.create_dataset(f"{fields}/{camera}_PIXEL_L2_ERR_MATRIX", data=np.transpose(err, (1, 0, 2)),
                             chunks=chunks, compression=compression)
            title = camera.capitalize()
            pad = np.zeros(extra, np.float32)
            attrs[f"List_Cw_{title}"] = np.concatenate([wl[part][::-1].astype(np.float32), pad])
            attrs[f"List_Fwhm_{title}"] = np.concatenate([fw[part][::-1].astype(np.float32), pad])
            attrs[f"List_Cw_{title}_Flags"] = np.concatenate([np.ones(part.stop - part.start, np.int8),
                                                              np.zeros(extra, np.int8)])
            attrs[f"L2Scale{title}Min"] = np.float32(lo)
            attrs[f"L2Scale{title}Max"] = np.float32(hi)
        attrs["Processing_Level"] = np.bytes_(level)
        attrs["Product_StartTime"] = np.bytes_(start_time)
        attrs["Epsg_Code"] = np.int32(crs_epsg)
        right, bottom = ul_easting + (cols - 1) * pixel_size, ul_northing - (rows - 1) * pixel_size
        for corner, (east, north) in {"UL": (ul_easting, ul_northing), "UR": (right, ul_northing),
                                      "LL": (ul_easting, bottom), "LR": (right, bottom)}.items():
            attrs[f"Product_{corner}corner_easting"] = np.float64(east)
            attrs[f"Product_{corner}corner_northing"] = np.float64(north)
    return path


def _error_codes(err_mask: np.ndarray | None, count: int, rows: int, cols: int) -> np.ndarray:
    if err_mask is None:
        return np.zeros((count, rows, cols), np.uint8)
    codes = np.asarray(err_mask)
    codes = codes.astype(np.uint8) if codes.dtype == bool else np.clip(codes, 0, 255).astype(np.uint8)
    if codes.shape == (rows, cols):
        return np.broadcast_to(codes, (count, rows, cols))
    if codes.shape == (count, rows, cols):
        return codes
    raise ValueError(f"err_mask must be (rows, cols) or (bands, rows, cols), got {codes.shape}")


__all__ = ["FORMAT", "PrismaReader", "open_prisma", "probe", "write_prisma_l2d"]
