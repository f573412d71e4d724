"""Tiny seeded rasters for tests: PAN/MS pairs on chosen grids, written as GeoTIFFs."""

from __future__ import annotations

import json
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


# ------------------------------------------------------------------------------------------------------- hmif
HMIF_ORIGIN, HMIF_EPSG, HMIF_RATIO = (600000.0, 5000000.0), 32631, 3
S2_BANDS = ("B02", "B03", "B04", "B08")


def hmif_spectra(wavelengths: np.ndarray) -> np.ndarray:
    """Three materials: vegetation (red edge), soil (rising), water (dark, falling)."""
    wl = np.asarray(wavelengths) / 1000.0
    vegetation = 0.05 + 0.4 / (1 + np.exp(-(wl - 0.72) * 60)) - 0.25 * (wl > 1.4) * (wl - 1.4)
    soil = 0.1 + 0.2 * wl
    water = 0.08 * np.exp(-(wl - 0.4) * 4)
    return np.stack([vegetation, soil, water]).clip(0.01, 0.9)


def write_hmif_pair(directory: Path, ms_size: int = 96, sigma: float = 4.0) -> dict:
    """A PRISMA L2D HE5 at 30 m (the truth averaged over 3 x 3 blocks; 48 bands whose cameras overlap above
    960 nm) and a Sentinel-2 band-COG folder at 10 m with its STAC item (the truth through B02/B03/B04/B08's
    responses, DN = reflectance x 10000). Returns the paths, the 10 m truth of the bands the reader keeps, their
    wavelengths, and the grid's origin."""
    from spatialx.io.prisma import write_prisma_l2d
    from spatialx.io.read import open_raster

    x0, y0 = HMIF_ORIGIN
    vnir, swir = np.linspace(420, 980, 24), np.linspace(960, 2400, 24)
    wavelengths = np.concatenate([vnir, swir])
    abundances = smooth_field((3, ms_size, ms_size), 5, sigma=sigma) + 0.05
    abundances /= abundances.sum(axis=0, keepdims=True)
    truth = np.einsum("mk,myx->kyx", hmif_spectra(wavelengths), abundances).astype(np.float32)
    n = ms_size // HMIF_RATIO
    hs = truth.reshape(len(wavelengths), n, HMIF_RATIO, n, HMIF_RATIO).mean(axis=(2, 4))
    he5 = write_prisma_l2d(directory / "PRS_L2D_test.he5", hs, wavelengths, np.full(len(wavelengths), 11.0),
                           HMIF_EPSG, x0 + 15.0, y0 - 15.0, pixel_size=30.0, vnir_count=len(vnir))
    s2 = get_sensor("s2_l2a")
    fine = np.linspace(400, 2500, 2101)
    ms_dir = directory / "S2A_TEST_L2A"
    ms_dir.mkdir()
    for band in S2_BANDS:
        response = s2.layer(band).response_curve(fine)
        per_material = hmif_spectra(fine) @ (response / response.sum())  # the mixture is linear: integrate once
        reflectance = np.tensordot(per_material, abundances, axes=1)
        write_tif(ms_dir / f"{band}.tif", np.rint(reflectance * 10000)[None].astype("uint16"),
                  Affine(10.0, 0, x0, 0, -10.0, y0), f"EPSG:{HMIF_EPSG}")
    raster = [{"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": 0.0}]
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "S2A_TEST_L2A",
            "properties": {"datetime": "2021-06-01T10:50:00Z", "s2:processing_baseline": "03.01"},
            "assets": {band: {"href": f"{band}.tif", "raster:bands": raster} for band in S2_BANDS}}
    (ms_dir / "item.json").write_text(json.dumps(item))
    kept_wavelengths = np.array(open_raster(he5).wavelengths_nm)
    kept = np.abs(wavelengths[:, None] - kept_wavelengths[None]).argmin(axis=0)
    return {"hs": he5, "ms": ms_dir, "truth": truth[kept], "wavelengths": kept_wavelengths, "dir": directory}
