"""``spatialx pansharpen``: PAN + multispectral, as a library call."""

from __future__ import annotations

import json
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from spatialx.pipeline import FusionResult, Progress, fuse_scene
from spatialx.sensors import SensorProfile
from spatialx.tasks import PANSHARPEN


def pansharpen(
    pan: str | PathLike[str],
    ms: str | PathLike[str],
    output: str | PathLike[str],
    sensor: str | SensorProfile,
    method: str = "brovey",
    *,
    method_options: Mapping[str, Any] | None = None,
    bands: str | None = None,
    ratio: float | None = None,
    tile: int = 512,
    overlap: int | None = None,
    workers: int = 1,
    device: str = "cpu",
    dtype: str | None = None,
    overwrite: bool = False,
    ndvi: str | PathLike[str] | None = None,
    report: bool = False,
    progress: Progress | None = None,
) -> FusionResult:
    """Pansharpen ``ms`` with ``pan`` into a COG at ``output`` (on the PAN grid over the common footprint).

    With ``ndvi`` set, an NDVI product of the fused image (and its QGIS style) is written there too. With
    ``report``, full-resolution quality indices on a sample of windows go to ``<output>.quality.json``.
    """
    from spatialx.io.write import check_output_path

    if ndvi is not None:
        check_output_path(ndvi, overwrite)
    if report:
        check_output_path(report_path(output), overwrite)
    result = fuse_scene(PANSHARPEN, {"pan": pan, "ms": ms}, output, sensor, method,
                        method_options=method_options, bands=bands, ratio=ratio, tile=tile, overlap=overlap,
                        workers=workers, device=device, dtype=dtype, overwrite=overwrite, progress=progress)
    if ndvi is not None:
        from spatialx.products.ndvi import ndvi as make_ndvi

        profile = sensor if isinstance(sensor, SensorProfile) else None
        make_ndvi(result.output, Path(ndvi), sensor=profile or result.sensor, overwrite=overwrite)
    if report:
        from spatialx.evaluate import quality_report

        quality = quality_report(pan, ms, result.output, sensor, ratio=int(result.params["ratio"]), bands=bands)
        quality.update(method=method, product=result.output.name)
        write_json(report_path(result.output), quality)
    return result


def report_path(output: str | PathLike[str]) -> Path:
    """Where ``--report`` puts the quality sidecar of ``output``."""
    output = Path(output)
    return output.with_name(output.stem + ".quality.json")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename, like every other output."""
    temporary = path.with_name(f".{path.name}.spatialx-tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(path)
