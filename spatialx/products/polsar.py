"""PolSAR side products of a C3 raster: a Pauli RGB composite and the Cloude-Pottier H/A/alpha decomposition.

The input is a 9-band lexicographic C3 raster (channel order of :mod:`spatialx.metrics.polsar`). Both products
are read and written window by window (memory bounded by the window, not the scene), keep the input's CRS and
transform, go through :class:`~spatialx.io.write.RasterWriter` (temporary file, then rename; an existing output
is replaced only with ``overwrite``) and get a QGIS ``.qml`` beside them.

Invalid input pixels: masked by the file (nodata, mask, alpha), a non-finite channel, or a span <= 0 (no
backscatter at all: fill, not data). They are nodata in both products.
"""

from __future__ import annotations

import math
from os import PathLike
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from spatialx import __version__
from spatialx.errors import ReadError
from spatialx.io.outputs import OutputPlan, atomic_write_text
from spatialx.io.read import RasterInfo, ThreadLocalReader, open_raster
from spatialx.io.write import BandInfo, OutputSpec, RasterWriter, gdal_env
from spatialx.metrics.polsar import cloude_pottier, pauli_components
from spatialx.products.style import PAULI_BANDS, multiband_qml

__all__ = ["DECOMPOSITION_BANDS", "PAULI_PERCENTILES", "pauli_db", "stretch_u8", "write_decomposition",
           "write_pauli"]

WINDOW = 512
#: Pixels of the whole image sampled (on a regular grid) for the Pauli stretch.
SAMPLE_PIXELS = 1 << 20
#: The Pauli channels are stretched between these percentiles of their dB values.
PAULI_PERCENTILES = (2.0, 98.0)
#: Powers at or below this (linear) are shown as this (-100 dB): zero power is data, not nodata.
_POWER_FLOOR = 1e-10
DECOMPOSITION_BANDS = (BandInfo("entropy"), BandInfo("anisotropy"), BandInfo("alpha"))
#: Display ranges of the decomposition's default view (entropy, anisotropy, alpha in degrees).
_DECOMPOSITION_RANGES = ((0.0, 1.0), (0.0, 1.0), (0.0, 90.0))


def _open_c3(path: str | PathLike[str]) -> RasterInfo:
    info = open_raster(path, role="C3")
    if info.count != 9:
        raise ReadError(f"C3 input must have 9 bands (C11, C12 re/im, C13 re/im, C22, C23 re/im, C33), "
                        f"it has {info.count}", path=info.path)
    return info


def _windows(info: RasterInfo):
    for top in range(0, info.grid.height, WINDOW):
        for left in range(0, info.grid.width, WINDOW):
            yield Window(left, top, min(WINDOW, info.grid.width - left), min(WINDOW, info.grid.height - top))


def _read(reader: ThreadLocalReader, info: RasterInfo, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """The window's C3 (float64) and its validity (see the module docstring)."""
    c3 = reader.read(window).astype(np.float64)
    valid = np.all(np.isfinite(c3), axis=0)
    if info.has_mask:
        valid &= reader.read_valid(window)
    valid &= np.where(valid, c3[0] + c3[5] + c3[8], 0.0) > 0
    return c3, valid


def pauli_db(c3: np.ndarray) -> np.ndarray:
    """Pauli powers in display order (red T22 ``|HH-VV|^2/2``, green T33 ``2|HV|^2``, blue T11 ``|HH+VV|^2/2``)
    in dB, float64 (3, H, W); powers <= 1e-10 (also the small negatives of a non-PSD input) are -100 dB."""
    t11, t22, t33 = pauli_components(np.nan_to_num(c3))
    powers = np.stack([t22, t33, t11])
    return 10.0 * np.log10(np.maximum(powers, _POWER_FLOOR))


def stretch_u8(db: np.ndarray, valid: np.ndarray, limits: list[tuple[float, float]]) -> np.ndarray:
    """dB channels (3, H, W) -> uint8, linear from each channel's (low, high) to 1..255, clipped; 0 where not
    ``valid`` (the nodata value)."""
    out = np.zeros(db.shape, dtype=np.uint8)
    for band, (low, high) in enumerate(limits):
        scaled = 1.0 + 254.0 * (db[band] - low) / (high - low)
        out[band] = np.where(valid, np.clip(np.rint(scaled), 1, 255), 0).astype(np.uint8)
    return out


def _pauli_limits(reader: ThreadLocalReader, info: RasterInfo) -> list[tuple[float, float]]:
    """First pass: 2-98 % dB percentiles of each channel from a regular sample of at most SAMPLE_PIXELS pixels
    (every ``step``-th row and column of the whole image, the same grid whatever the window layout)."""
    step = max(1, math.ceil(math.sqrt(info.grid.width * info.grid.height / SAMPLE_PIXELS)))
    samples = []
    for window in _windows(info):
        r0, c0 = (-window.row_off) % step, (-window.col_off) % step
        if r0 >= window.height or c0 >= window.width:
            continue
        c3, valid = _read(reader, info, window)
        c3, valid = c3[:, r0::step, c0::step], valid[r0::step, c0::step]
        samples.append(pauli_db(c3)[:, valid])
    values = np.concatenate(samples, axis=1) if samples else np.zeros((3, 0))
    limits = []
    for channel in values:
        if channel.size == 0:
            limits.append((0.0, 1.0))
            continue
        low, high = (float(v) for v in np.percentile(channel, PAULI_PERCENTILES))
        limits.append((low, high if high > low else low + 1.0))
    return limits


def _tags(product: str, info: RasterInfo, params: dict) -> dict:
    return {"TIFFTAG_SOFTWARE": f"spatialx {__version__}", "SPATIALX_PRODUCT": product,
            "SPATIALX_INPUTS": {"C3": info.path.name}, "SPATIALX_PARAMS": params}


def write_pauli(c3_path: str | PathLike[str], out_path: str | PathLike[str], overwrite: bool = False) -> Path:
    """Write the Pauli RGB of the C3 raster ``c3_path`` to ``out_path`` (uint8 RGB COG) and ``.qml`` beside it.

    Red ``|HH-VV|^2/2 = (C11 + C33 - 2 Re C13) / 2`` (double bounce), green ``C22 = 2|HV|^2`` (volume), blue
    ``|HH+VV|^2/2 = (C11 + C33 + 2 Re C13) / 2`` (surface), each in dB and stretched linearly to 1..255 between its
    2 and 98 % percentiles, estimated from a regular sample of at most 2^20 pixels of the whole image (a first
    pass over the file; the second writes). 0 is nodata. Colour interpretation red, green, blue; the stretch (dB)
    is in the ``SPATIALX_PARAMS`` tag. The style shows bands 1, 2, 3 as red, green, blue over 1..255.
    """
    plan = OutputPlan({"C3": c3_path}, overwrite=overwrite)
    target = plan.add(out_path, what="Pauli RGB", kind="raster")
    style_path = plan.add(target.with_suffix(".qml"), what="style of the Pauli RGB", kind="sidecar")
    info = _open_c3(c3_path)
    with gdal_env(), ThreadLocalReader(info) as reader:
        limits = _pauli_limits(reader, info)
        params = {"channels": ["T22 |HH-VV|^2/2", "T33 2|HV|^2", "T11 |HH+VV|^2/2"], "units": "dB",
                  "percentiles": list(PAULI_PERCENTILES),
                  "stretch_db": [[round(low, 4), round(high, 4)] for low, high in limits]}
        spec = OutputSpec(path=target, grid=info.grid, dtype="uint8", bands=list(PAULI_BANDS), nodata=0,
                          tags=_tags("Pauli RGB", info, params), overwrite=overwrite)
        with RasterWriter(spec) as writer:
            for window in _windows(info):
                c3, valid = _read(reader, info, window)
                writer.write(stretch_u8(pauli_db(c3), valid, limits), window)
    atomic_write_text(style_path, multiband_qml((1, 2, 3), [(1.0, 255.0)] * 3))
    return target


def write_decomposition(c3_path: str | PathLike[str], out_path: str | PathLike[str],
                        overwrite: bool = False) -> Path:
    """Write the Cloude-Pottier entropy, anisotropy and mean alpha angle (degrees) of the C3 raster ``c3_path``
    to ``out_path`` (3-band float32 COG, bands ``entropy``, ``anisotropy``, ``alpha``, nodata NaN) and a ``.qml``
    beside it (bands 1, 2, 3 as red, green, blue over 0..1, 0..1, 0..90; see
    :func:`~spatialx.metrics.polsar.cloude_pottier` for the definitions and edge cases)."""
    plan = OutputPlan({"C3": c3_path}, overwrite=overwrite)
    target = plan.add(out_path, what="H/A/alpha decomposition", kind="raster")
    style_path = plan.add(target.with_suffix(".qml"), what="style of the decomposition", kind="sidecar")
    info = _open_c3(c3_path)
    params = {"decomposition": "Cloude-Pottier", "basis": "T3 from lexicographic C3", "alpha_units": "degrees"}
    spec = OutputSpec(path=target, grid=info.grid, dtype="float32", bands=list(DECOMPOSITION_BANDS),
                      nodata=float("nan"), tags=_tags("H/A/alpha", info, params), overwrite=overwrite)
    with gdal_env(), ThreadLocalReader(info) as reader, RasterWriter(spec) as writer:
        for window in _windows(info):
            c3, valid = _read(reader, info, window)
            c3[:, ~valid] = np.nan
            writer.write(np.stack(cloude_pottier(c3)).astype(np.float32), window)
    atomic_write_text(style_path, multiband_qml((1, 2, 3), list(_DECOMPOSITION_RANGES)))
    return target
