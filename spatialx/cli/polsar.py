"""``spatialx polsar QUADPOL SINGLEPOL OUT``: the quad-pol covariance matrix C3 at the single-pol resolution."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from spatialx.cli import options as opt
from spatialx.cluster import scheduler_option
from spatialx.errors import SpatialxError


def command(
    quad: Annotated[Path, typer.Argument(help="Quad-pol input: a RADARSAT-2 product (folder or product.xml), a "
                                              "folder of four SLC GeoTIFFs (HH, HV, VH, VV), or a 9-band C3 "
                                              "GeoTIFF.", show_default=False)],
    single: Annotated[Path | None, typer.Argument(help="Single-pol input at the higher resolution: an SLC or an "
                                                       "intensity GeoTIFF (or RADARSAT-2 product). Omit with "
                                                       "--simulate-from.", show_default=False)] = None,
    output: Annotated[Path | None, typer.Argument(help="Output C3 (9-band float32 COG).", show_default=False)]
    = None,
    method: opt.Method = "bicubic",
    looks: Annotated[int | None, typer.Option(
        "--looks", min=1, help="Multilook window (odd) forming C3 from SLC [default: 5 for the boxcar, 7 for "
                               "refined-lee].", show_default=False)] = None,
    speckle: Annotated[str, typer.Option("--speckle", help="Speckle filter forming C3 from SLC: boxcar or "
                                                           "refined-lee.")] = "boxcar",
    simulate: Annotated[int | None, typer.Option(
        "--simulate-from", metavar="RATIO", help="Reduced-resolution protocol: build the pair from QUADPOL alone "
                                                 "(C3 averaged over RATIO x RATIO blocks, HH intensity at full "
                                                 "resolution) and fuse it.", show_default=False)] = None,
    pauli: Annotated[Path | None, typer.Option("--pauli", help="Also write the Pauli RGB (8-bit COG + .qml).",
                                               show_default=False)] = None,
    decomposition: Annotated[Path | None, typer.Option(
        "--decomposition", help="Also write the H/A/alpha (Cloude-Pottier) decomposition (float32 COG).",
        show_default=False)] = None,
    radius: Annotated[int | None, typer.Option("--radius", min=1, help="guided: filter radius in output pixels "
                                                                       "[default: 1].",
                                               show_default=False)] = None,
    weights: opt.Weights = None,
    adapt_steps: opt.AdaptSteps = 0,
    scratch: opt.Scratch = False,
    config: opt.NetworkConfig = None,
    tile: opt.Tile = None,
    overlap: opt.Overlap = None,
    workers: opt.Workers = 1,
    scheduler: opt.Scheduler = None,
    cluster: opt.Cluster = None,
    device: opt.Device = "auto",
    compress_level: opt.CompressLevel = None,
    overwrite: opt.Overwrite = False,
    quiet: opt.Quiet = False,
) -> None:
    """Fuse a low-resolution quad-pol C3 with a high-resolution single-pol image: the full C3 on the single-pol
    grid, every pixel a positive semidefinite covariance matrix."""
    from spatialx.cli.progress import print_result, tile_progress
    from spatialx.tasks.polsar import polsar, simulate_pair

    if simulate is not None:
        if output is not None:
            raise SpatialxError("with --simulate-from give QUADPOL and OUT only", hint="spatialx polsar Q.tif OUT.tif "
                                                                                     "--simulate-from 2")
        single, output = None, single
    if output is None or (single is None and simulate is None):
        raise SpatialxError("give QUADPOL SINGLEPOL OUT, or QUADPOL OUT with --simulate-from RATIO")
    method_options: dict[str, object] = opt.method_options(weights, adapt_steps, config, scratch=scratch)
    if radius is not None:
        method_options["radius"] = radius
    with tempfile.TemporaryDirectory(prefix="spatialx-polsar-") as directory:
        if simulate is not None:
            pair = simulate_pair(quad, simulate, directory, looks=looks, speckle=speckle)
            quad, single = pair["quad"], pair["single"]
        with tile_progress(f"polsar {method}", enabled=not quiet) as progress:
            result = polsar(quad, single, output, method=method, looks=looks, speckle=speckle, pauli=pauli,
                            decomposition=decomposition, method_options=method_options, tile=tile, overlap=overlap,
                            workers=workers, scheduler=scheduler_option(scheduler, cluster),
                            device=opt.fusion_device("polsar", method, device), overwrite=overwrite, progress=progress,
                            compress_level=compress_level)
    if not quiet:
        print_result(result)
