"""``spatialx pansharpen PAN MS OUT``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spatialx.cli import options as opt
from spatialx.cluster import scheduler_option


def command(
    pan: Annotated[Path, typer.Argument(help="Panchromatic raster.", show_default=False)],
    ms: Annotated[Path, typer.Argument(help="Multispectral raster (any grid overlapping the PAN).",
                                       show_default=False)],
    output: opt.OutputPath,
    sensor: opt.Sensor = "wv3",
    method: opt.Method = "brovey",
    weights: opt.Weights = None,
    adapt_steps: opt.AdaptSteps = 0,
    adapt_loss: opt.AdaptLoss = None,
    scratch: opt.Scratch = False,
    config: opt.NetworkConfig = None,
    backend: opt.Backend = "torch",
    onnx: opt.OnnxFile = None,
    bands: opt.Bands = None,
    ratio: opt.Ratio = None,
    tile: opt.Tile = None,
    overlap: opt.Overlap = None,
    workers: opt.Workers = 1,
    scheduler: opt.Scheduler = None,
    cluster: opt.Cluster = None,
    device: opt.Device = "auto",
    dtype: opt.Dtype = None,
    compress_level: opt.CompressLevel = None,
    ndvi: opt.Ndvi = None,
    report: opt.Report = False,
    reproject: opt.Reproject = False,
    allow_misregistration: Annotated[bool, typer.Option(
        "--allow-misregistration", help="Fuse even when the MS content is found more than 3 MS pixels off the "
                                        "PAN (the preflight refuses it otherwise).")] = False,
    align_shift: Annotated[str | None, typer.Option(
        "--align-shift", help="auto: move the MS georeferencing by the shift the preflight measures, then fuse.",
        show_default=False)] = None,
    overwrite: opt.Overwrite = False,
    quiet: opt.Quiet = False,
) -> None:
    """Pansharpen MS with PAN onto the PAN grid (over the common footprint); write a COG."""
    opt.run_fusion("pansharpen", {"pan": pan, "ms": ms}, output, method, sensor, device=device, quiet=quiet,
                   weights=weights, adapt_steps=adapt_steps, adapt_loss=adapt_loss, scratch=scratch, config=config,
                   backend=backend,
                   onnx=onnx, bands=bands, ratio=ratio, tile=tile, overlap=overlap, workers=workers,
                   scheduler=scheduler_option(scheduler, cluster), dtype=dtype, compress_level=compress_level,
                   overwrite=overwrite, ndvi=ndvi, report=report, reproject=reproject,
                   allow_misregistration=allow_misregistration, align_shift=align_shift)
