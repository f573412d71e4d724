"""``spatialx hmif HS MS OUT``: every hyperspectral band at the multispectral resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spatialx.cli import options as opt
from spatialx.cluster import scheduler_option


def command(
    hs: Annotated[Path, typer.Argument(help="Hyperspectral cube: a PRISMA L2D .he5, or a GeoTIFF whose bands carry "
                                            "wavelengths.", show_default=False)],
    ms: Annotated[Path, typer.Argument(help="Multispectral image: a Sentinel-2 L2A product (.SAFE, its "
                                            "MTD_MSIL2A.xml, or a folder of band COGs), or a multiband GeoTIFF.",
                                       show_default=False)],
    output: opt.OutputPath,
    method: opt.Method = "gsa",
    hs_sensor: Annotated[str, typer.Option("--hs-sensor", help="Sensor profile of the HS cube.")] = "prisma_l2d",
    ms_sensor: Annotated[str, typer.Option("--ms-sensor", help="Sensor profile of the MS image.")] = "s2_l2a",
    ms_bands: Annotated[str | None, typer.Option(
        "--ms-bands", help="MS bands to use, by name (e.g. B02,B03,B04,B08, the Sentinel-2 10 m bands, the "
                           "default for a Sentinel-2 product) or by number.", show_default=False)] = None,
    hs_bands: Annotated[str | None, typer.Option(
        "--hs-bands", help="HS bands to fuse and write, by name or number [default: all].",
        show_default=False)] = None,
    keep_overlap: Annotated[bool, typer.Option(
        "--keep-overlap", help="PRISMA: keep the VNIR bands that overlap the SWIR range (dropped by default).")]
    = False,
    mask_snow: Annotated[bool, typer.Option("--mask-snow", help="Sentinel-2: treat snow (SCL 11) as invalid.")]
    = False,
    weights: opt.Weights = None,
    adapt_steps: opt.AdaptSteps = 0,
    scratch: opt.Scratch = False,
    config: opt.NetworkConfig = None,
    backend: opt.Backend = "torch",
    onnx: opt.OnnxFile = None,
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
    overwrite: opt.Overwrite = False,
    quiet: opt.Quiet = False,
) -> None:
    """Fuse an HS cube with an MS image onto the MS grid (over the common footprint): every HS band at the MS
    resolution, as float32 reflectance by default; write a COG."""
    from spatialx.io.read import product_format_name

    read_options: dict[str, dict[str, object]] = {}
    if keep_overlap:
        read_options["hs"] = {"keep_overlap": True}
    bands: dict[str, str] = {}
    if hs_bands:
        bands["hs"] = hs_bands
    if ms_bands:
        if product_format_name(ms) == "Sentinel-2 L2A":  # the reader picks the bands and checks their grid
            read_options["ms"] = {"bands": tuple(b.strip() for b in ms_bands.split(",") if b.strip())}
        else:
            bands["ms"] = ms_bands
    if mask_snow:
        read_options.setdefault("ms", {})["mask_snow"] = True
    opt.run_fusion("hmif", {"hs": hs, "ms": ms}, output, method, {"hs": hs_sensor, "ms": ms_sensor}, device=device,
                   quiet=quiet, weights=weights, adapt_steps=adapt_steps, scratch=scratch, config=config,
                   backend=backend, onnx=onnx, bands=bands or None, read_options=read_options, ratio=ratio, tile=tile,
                   overlap=overlap, workers=workers, scheduler=scheduler_option(scheduler, cluster), dtype=dtype,
                   compress_level=compress_level,
                   overwrite=overwrite, ndvi=ndvi, report=report, reproject=reproject)
