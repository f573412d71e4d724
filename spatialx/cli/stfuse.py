"""``spatialx stfuse OUT --fine DATE=PATH ... --coarse DATE=PATH ... --predict DATE``: the fine image at a date
only the coarse sensor saw."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spatialx.cli import options as opt
from spatialx.cluster import scheduler_option


def dated_paths(values: list[str] | None) -> list[tuple[str | None, Path]]:
    """``DATE=PATH`` values as ``(date, path)``; a value without ``DATE=`` (or naming an existing file that holds
    a ``=``) keeps its date in the product's metadata: ``(None, path)``."""
    out: list[tuple[str | None, Path]] = []
    for value in values or []:
        date, sep, path = value.partition("=")
        out.append((date, Path(path)) if sep and date and not Path(value).exists() else (None, Path(value)))
    return out


def command(
    output: opt.OutputPath,
    fine: Annotated[list[str], typer.Option(
        "--fine", metavar="DATE=PATH", help="Fine image (e.g. a Landsat C2 L2 scene folder or MTL, or a GeoTIFF) "
                                            "at DATE (YYYY-MM-DD; from the product's metadata when omitted). "
                                            "Repeat for more pairs.", show_default=False)],
    coarse: Annotated[list[str], typer.Option(
        "--coarse", metavar="DATE=PATH", help="Coarse image (e.g. MODIS .hdf or GeoTIFF) at every fine date and at "
                                              "the prediction date.", show_default=False)],
    predict: Annotated[str, typer.Option("--predict", metavar="DATE", help="The date to predict the fine image "
                                                                           "at.", show_default=False)],
    method: opt.Method = "starfm",
    fine_sensor: Annotated[str, typer.Option("--fine-sensor", help="Sensor profile of the fine images (auto: the "
                                                                   "product's; `lst` for float kelvin).")] = "auto",
    coarse_sensor: Annotated[str, typer.Option("--coarse-sensor", help="Sensor profile of the coarse images.")]
    = "auto",
    fine_bands: Annotated[str | None, typer.Option(
        "--fine-bands", help="Fine bands, e.g. SR_B2,SR_B3,SR_B4,SR_B5,SR_B6,SR_B7 or ST_B10 (LST) for Landsat.",
        show_default=False)] = None,
    coarse_bands: Annotated[str | None, typer.Option(
        "--coarse-bands", help="Coarse bands (default: the product's; paired with the fine bands by spectral "
                               "range).", show_default=False)] = None,
    uncertainty: Annotated[Path | None, typer.Option(
        "--uncertainty", help="Also write the per-pixel uncertainty (float32 COG + .qml) here.",
        show_default=False)] = None,
    window: Annotated[int | None, typer.Option(
        "--window", min=3, help="starfm/estarfm: moving window in fine pixels, odd [default: 1500 m].",
        show_default=False)] = None,
    classes: Annotated[int | None, typer.Option(
        "--classes", min=1, help="starfm/estarfm: land-cover classes for the similarity threshold [default: 4].",
        show_default=False)] = None,
    tile: opt.Tile = None,
    overlap: opt.Overlap = None,
    workers: opt.Workers = 1,
    scheduler: opt.Scheduler = None,
    cluster: opt.Cluster = None,
    dtype: opt.Dtype = None,
    compress_level: opt.CompressLevel = None,
    ndvi: opt.Ndvi = None,
    overwrite: opt.Overwrite = False,
    quiet: opt.Quiet = False,
) -> None:
    """Predict the fine image at --predict from fine/coarse pairs and the coarse image of that date; the output is
    on the (first) fine grid over the common footprint, nodata where no prediction exists."""
    from spatialx.cli.progress import print_result, tile_progress
    from spatialx.tasks.stfuse import stfuse

    method_options = {key: value for key, value in (("window", window), ("classes", classes)) if value is not None}
    with tile_progress(f"stfuse {method}", enabled=not quiet) as progress:
        result = stfuse(output, dated_paths(fine), dated_paths(coarse), predict, method=method,
                        fine_sensor=fine_sensor, coarse_sensor=coarse_sensor, fine_bands=fine_bands,
                        coarse_bands=coarse_bands, method_options=method_options,
                        layers={"uncertainty": uncertainty} if uncertainty else {}, tile=tile, overlap=overlap,
                        workers=workers, scheduler=scheduler_option(scheduler, cluster), dtype=dtype,
                        compress_level=compress_level, ndvi=ndvi,
                        overwrite=overwrite, progress=progress)
    if not quiet:
        print_result(result)
