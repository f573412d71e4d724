"""Tiny seeded rasters for tests: PAN/MS pairs on chosen grids, written as GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from scipy.ndimage import gaussian_filter

from spatialx.sensors import get_sensor

CRS = "EPSG:32631"


def smooth_field(shape: tuple[int, ...], seed: int, sigma: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.random(shape), sigma=(0,) * (len(shape) - 2) + (sigma, sigma))
    field -= field.min()
    return field / field.max()


def write_tif(path: Path, data: np.ndarray, transform: Affine | None, crs: str | None, nodata: float | None = 0,
              descriptions: list[str] | None = None) -> Path:
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": data.dtype, "crs": crs, "nodata": nodata, "tiled": True, "blockxsize": 64,
               "blockysize": 64}
    if transform is not None:
        profile["transform"] = transform
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if descriptions:
            dst.descriptions = tuple(descriptions)
    return path


def write_pair(directory: Path, sensor: str = "qb", pan_size: tuple[int, int] = (256, 256),
               ms_size: tuple[int, int] | None = None, pan_res: float = 0.5, ms_res: float | None = None,
               ms_offset: tuple[float, float] = (0.0, 0.0), crs: str | None = CRS, seed: int = 0,
               ms_crs: str | None = "same") -> tuple[Path, Path]:
    """A PAN and an MS GeoTIFF. ``ms_offset`` shifts the MS origin (x, y) in metres; sizes are (rows, cols)."""
    profile = get_sensor(sensor)
    ratio = profile.ratio
    ms_res = ms_res or pan_res * ratio
    if ms_size is None:
        ms_size = (round(pan_size[0] * pan_res / ms_res), round(pan_size[1] * pan_res / ms_res))
    x0, y0 = 500000.0, 4800000.0
    bands = len(profile.bands)
    ms = (200 + 1500 * smooth_field((bands, *ms_size), seed)).astype("uint16")
    pan_lin = smooth_field((1, *pan_size), seed + 1, sigma=1.5)
    pan = (200 + 1500 * pan_lin).astype("uint16")
    pan_path = write_tif(directory / "pan.tif", pan, Affine(pan_res, 0, x0, 0, -pan_res, y0) if crs else None, crs)
    ms_transform = Affine(ms_res, 0, x0 + ms_offset[0], 0, -ms_res, y0 + ms_offset[1]) if crs else None
    ms_path = write_tif(directory / "ms.tif", ms, ms_transform, crs if ms_crs == "same" else ms_crs,
                        descriptions=list(profile.band_names))
    return pan_path, ms_path
