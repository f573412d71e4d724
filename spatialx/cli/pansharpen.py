"""``spatialx pansharpen PAN MS OUT``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spatialx.cli import options as opt


def command(
    pan: Annotated[Path, typer.Argument(help="Panchromatic raster.", show_default=False)],
    ms: Annotated[Path, typer.Argument(help="Multispectral raster (any grid overlapping the PAN).",
                                       show_default=False)],
    output: opt.OutputPath,
    sensor: opt.Sensor = "wv3",
    method: Annotated[str, typer.Option("--method", "-m", help="Fusion method (see `spatialx methods`).")] = "brovey",
    weights: opt.Weights = None,
    adapt_steps: opt.AdaptSteps = 0,
    bands: opt.Bands = None,
    ratio: opt.Ratio = None,
    tile: opt.Tile = 512,
    overlap: opt.Overlap = None,
    workers: opt.Workers = 1,
    device: opt.Device = "auto",
    dtype: opt.Dtype = None,
    ndvi: Annotated[Path | None, typer.Option("--ndvi", help="Also write the NDVI of the result here.",
                                              show_default=False)] = None,
    report: Annotated[bool, typer.Option("--report", help="Also write full-resolution quality indices (sampled "
                                                          "windows) to OUT.quality.json.")] = False,
    reproject: opt.Reproject = False,
    overwrite: opt.Overwrite = False,
    quiet: opt.Quiet = False,
) -> None:
    """Pansharpen MS with PAN onto the PAN grid (over the common footprint); write a COG."""
    from spatialx.cli.progress import print_result, tile_progress
    from spatialx.devices import check_device, resolve_device
    from spatialx.methods import get_method_info
    from spatialx.tasks.pansharpen import pansharpen

    # Only networks use a device; probing for CUDA would import torch for nothing.
    if get_method_info(method).kind == "network":
        target = resolve_device(device)
    else:
        check_device(device)
        target = "cpu"
    with tile_progress(f"pansharpen {method}", enabled=not quiet) as progress:
        result = pansharpen(pan, ms, output, sensor, method, method_options=opt.method_options(weights, adapt_steps),
                            bands=bands, ratio=ratio, tile=tile, overlap=overlap, workers=workers, device=target,
                            dtype=dtype, overwrite=overwrite, ndvi=ndvi, report=report, reproject=reproject,
                            progress=progress)
    if not quiet:
        print_result(result)
