"""NDVI from any multispectral raster, streamed window by window, with a QGIS style next to it.

Red and NIR are found by band description (the names spatialx writes, from the sensor profile); a file without
descriptions is taken to hold the sensor's bands in profile order. NDVI is float32 with nodata -9999 wherever an
input band is nodata or NIR + Red is zero.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from spatialx import __version__
from spatialx.errors import InputMismatchError
from spatialx.io.outputs import OutputPlan, atomic_write_text
from spatialx.io.read import RasterInfo, ThreadLocalReader, open_raster
from spatialx.io.write import BandInfo, OutputSpec, RasterWriter, gdal_env
from spatialx.sensors import SensorProfile, get_sensor

NDVI_NODATA = -9999.0
WINDOW = 1024

# A diverging ramp (ColorBrewer RdYlGn) over -1..1: water and bare ground red/yellow, vegetation green.
_RAMP = [(-1.0, "#a50026"), (-0.2, "#d73027"), (0.0, "#fdae61"), (0.2, "#ffffbf"), (0.4, "#a6d96a"),
         (0.6, "#1a9850"), (1.0, "#006837")]


def find_band(info: RasterInfo, sensor: SensorProfile, name: str) -> int:
    """1-based index of the band called ``name`` in ``info`` (by description, else by profile order)."""
    described = [d.lower() if d else None for d in info.descriptions]
    if name.lower() in described:
        return described.index(name.lower()) + 1
    if info.count == len(sensor.bands):
        return sensor.band_index(name) + 1
    raise InputMismatchError(
        f"no band described as {name!r}, and {info.count} bands do not match {sensor.name}'s "
        f"{len(sensor.bands)}", path=info.path, hint="pass the matching --sensor")


def ndvi_array(red: np.ndarray, nir: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(NIR - Red) / (NIR + Red) as float32, NDVI_NODATA where invalid or undefined."""
    red64, nir64 = red.astype(np.float64), nir.astype(np.float64)
    total = nir64 + red64
    ok = valid & (total != 0) & np.isfinite(total)  # NaN/inf inputs are nodata, never a NaN NDVI
    out = np.full(red.shape, NDVI_NODATA, dtype=np.float32)
    out[ok] = ((nir64[ok] - red64[ok]) / total[ok]).astype(np.float32)
    return out


def qml_style(minimum: float = -1.0, maximum: float = 1.0) -> str:
    """A QGIS single-band pseudocolour style for NDVI."""
    items = "\n".join(
        f'          <item alpha="255" value="{value:g}" label="{value:g}" color="{color}"/>'
        for value, color in _RAMP if minimum <= value <= maximum)
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.28" styleCategories="AllStyleCategories">
  <pipe>
    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1" alphaBand="-1"
                    classificationMin="{minimum:g}" classificationMax="{maximum:g}" nodataColor="">
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0"
                         minimumValue="{minimum:g}" maximumValue="{maximum:g}">
{items}
        </colorrampshader>
      </rastershader>
    </rasterrenderer>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def ndvi(source: str | PathLike[str], output: str | PathLike[str], sensor: str | SensorProfile,
         overwrite: bool = False) -> Path:
    """Write the NDVI of ``source`` to ``output`` (COG, float32) and ``output`` with ``.qml`` beside it."""
    # Both files are checked against the input and each other before anything is read.
    plan = OutputPlan({"MS": source}, overwrite=overwrite)
    out_path = plan.add(output, what="NDVI", kind="raster")
    style_path = plan.add(out_path.with_suffix(".qml"), what="style of the NDVI", kind="sidecar")
    profile = sensor if isinstance(sensor, SensorProfile) else get_sensor(sensor)
    if profile.ndvi_red is None or profile.ndvi_nir is None:
        raise InputMismatchError(f"sensor {profile.key!r} has no red and near-infrared bands for an NDVI",
                                 path=profile.path, hint="add ndvi: {red: ..., nir: ...} to its YAML, or drop --ndvi")
    info = open_raster(source, role="MS")
    red_band, nir_band = find_band(info, profile, profile.ndvi_red), find_band(info, profile, profile.ndvi_nir)
    tags = {"TIFFTAG_SOFTWARE": f"spatialx {__version__}", "SPATIALX_PRODUCT": "NDVI",
            "SPATIALX_INPUTS": {"MS": info.path.name},
            "SPATIALX_PARAMS": {"red_band": red_band, "nir_band": nir_band, "sensor": profile.key}}
    spec = OutputSpec(path=out_path, grid=info.grid, dtype="float32", bands=[BandInfo("NDVI")],
                      nodata=NDVI_NODATA, tags=tags, overwrite=overwrite)
    with gdal_env(), ThreadLocalReader(info) as reader, RasterWriter(spec) as writer:
        for top in range(0, info.grid.height, WINDOW):
            for left in range(0, info.grid.width, WINDOW):
                window = Window(left, top, min(WINDOW, info.grid.width - left), min(WINDOW, info.grid.height - top))
                red, nir = reader.read(window, [red_band, nir_band])
                valid = reader.read_valid(window, [red_band, nir_band]) if info.has_mask else np.ones(
                    red.shape, dtype=bool)
                writer.write(ndvi_array(red, nir, valid)[None], window)
    atomic_write_text(style_path, qml_style())
    return out_path
