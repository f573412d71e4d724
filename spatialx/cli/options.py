"""Options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

InputPath = Annotated[Path, typer.Argument(help="Input raster (GeoTIFF or any GDAL format).", show_default=False)]
OutputPath = Annotated[Path, typer.Argument(help="Output GeoTIFF (written as a COG).", show_default=False)]
Sensor = Annotated[str, typer.Option("--sensor", "-s", help="Sensor profile (see `spatialx sensors`).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace the output if it exists.")]
Tile = Annotated[int | None, typer.Option(
    "--tile", min=16, help="Tile size in output pixels [default: 512; 256 for outputs of over 32 bands].",
    show_default=False)]
Overlap = Annotated[int | None, typer.Option(
    "--overlap", min=0, help="Cross-fade width between tiles in pixels [default: the method's].",
    show_default=False)]
Workers = Annotated[int, typer.Option("--workers", "-j", min=1, help="Tiles processed in parallel (with "
                                                                   "--cluster: threads per worker process).")]
Scheduler = Annotated[str | None, typer.Option(
    "--scheduler", help="Run the tiles on a running dask.distributed cluster: its scheduler's address (e.g. "
                        "tcp://10.0.0.5:8786); inputs and output must be on paths every worker sees.",
    show_default=False)]
Cluster = Annotated[str | None, typer.Option(
    "--cluster", help="Run the tiles on a dask LocalCluster started for this run: local:N worker processes.",
    show_default=False)]
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda (networks only; classical methods run "
                                                      "on the CPU).")]
Dtype = Annotated[str | None, typer.Option(
    "--dtype", help="Output data type, e.g. float32 [default: the MS input's].", show_default=False)]
AllowMisregistration = Annotated[bool, typer.Option(
    "--allow-misregistration", help="Go on when the alignment preflight finds the low-resolution content more than "
                                    "3 of its pixels off the guide (refused otherwise).")]
CompressLevel = Annotated[int | None, typer.Option(
    "--compress-level", help="Deflate level of the outputs, 1 (fastest, the default) to 9 (smallest files).",
    show_default=False)]
Bands = Annotated[str | None, typer.Option(
    "--bands", help="Select MS bands: 1-based numbers in the sensor's band order (e.g. 3,2,1,4), or the sensor band "
                    "names the file holds, in file order (e.g. Blue,Green,Red,NIR1).", show_default=False)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]
Ratio = Annotated[float | None, typer.Option(
    "--ratio", min=1.0, help="PAN/MS resolution ratio the method's filters assume [default: the sensor's].",
    show_default=False)]
Weights = Annotated[Path | None, typer.Option(
    "--weights", help="Network weights (.safetensors) for learned methods.", show_default=False)]


Reproject = Annotated[bool, typer.Option(
    "--reproject", help="Warp inputs in another CRS onto the guide's CRS on the fly (GDAL warped VRT); the product's "
                        "provenance says so.")]
AdaptSteps = Annotated[int, typer.Option(
    "--adapt-steps", min=0, help="Networks: fine-tune the weights (--weights, else the bundled ones; or train a "
                                 "fresh network with --scratch) on this scene for N steps before fusing (objective: "
                                 "--adapt-loss).")]
AdaptLoss = Annotated[str | None, typer.Option(
    "--adapt-loss", help="Networks with --adapt-steps, pansharpening: reduced (Wald patches of the scene), full "
                         "(unsupervised spectral + spatial consistency on full-resolution patches of the actual PAN "
                         "and MS) or both [default: full when the MS is on its own grid, reduced when it comes on the "
                         "PAN grid].", show_default=False)]
Scratch = Annotated[bool, typer.Option(
    "--scratch", help="Networks: ignore the bundled weights and train a fresh network on the scene (needs "
                      "--adapt-steps).")]


NetworkConfig = Annotated[str | None, typer.Option(
    "--config", help="Networks without --weights: the architecture's configuration (see `spatialx models`) "
                     "[default: the one for the task and band counts].", show_default=False)]


Backend = Annotated[str, typer.Option(
    "--backend", help="Networks: torch, or onnx (ONNX Runtime, on the network exported on the fly or --onnx).")]
OnnxFile = Annotated[Path | None, typer.Option(
    "--onnx", help="Networks with --backend onnx: a model written by `spatialx export`.", show_default=False)]


def method_options(weights: Path | None, adapt_steps: int = 0, config: str | None = None, backend: str = "torch",
                   onnx: Path | None = None, scratch: bool = False,
                   adapt_loss: str | None = None) -> dict[str, object]:
    """Options every fusion command passes to the method it creates (only those the user gave)."""
    options: dict[str, object] = {}
    if adapt_loss is not None:
        from spatialx.errors import SpatialxError

        if adapt_loss not in ("reduced", "full", "both"):
            raise SpatialxError(f"unknown --adapt-loss {adapt_loss!r}", hint="choose one of: reduced, full, both")
        if not adapt_steps:
            raise SpatialxError("--adapt-loss chooses the objective of scene adaptation", hint="add --adapt-steps N")
        options["adapt_loss"] = adapt_loss
    if scratch:
        options["scratch"] = True
    if backend != "torch":
        options["backend"] = backend
    if onnx is not None:
        options["onnx"] = onnx
    if weights is not None:
        options["weights"] = weights
    if adapt_steps:
        options["adapt_steps"] = adapt_steps
    if config is not None:
        options["config"] = config
    return options

Method = Annotated[str, typer.Option("--method", "-m", help="Fusion method (see `spatialx methods --task ...`).")]
Ndvi = Annotated[Path | None, typer.Option("--ndvi", help="Also write the NDVI of the result here.",
                                           show_default=False)]
Report = Annotated[bool, typer.Option("--report", help="Also write full-resolution quality indices (sampled "
                                                       "windows) to OUT.quality.json.")]


def fusion_device(task: str, method: str, device: str) -> str:
    """The device a fusion runs on: ``device`` resolved for networks; the CPU for the others (probing for CUDA
    would import torch for nothing), after checking that ``device`` is a valid name."""
    from spatialx.devices import check_device, resolve_device
    from spatialx.methods import get_method_info

    if get_method_info(method, task).kind == "network":
        return resolve_device(device)
    check_device(device)
    return "cpu"


def run_fusion(task: str, inputs: dict[str, Path], output: Path, method: str, sensor: object, *, device: str,
               quiet: bool, weights: Path | None = None, adapt_steps: int = 0, config: str | None = None,
               backend: str = "torch", onnx: Path | None = None, scratch: bool = False,
               adapt_loss: str | None = None, **changes: object) -> None:
    """What every fusion command does once its arguments are parsed: pick the device, run ``spatialx.fuse`` under
    a progress bar, print what was written."""
    from spatialx.cli.progress import print_result, tile_progress
    from spatialx.pipeline import fuse

    target = fusion_device(task, method, device)
    with tile_progress(f"{task} {method}", enabled=not quiet) as progress:
        result = fuse(task, inputs, output, method=method, sensor=sensor,  # type: ignore[arg-type]
                      method_options=method_options(weights, adapt_steps, config, backend, onnx, scratch,
                                                     adapt_loss),
                      device=target,
                      progress=progress, **changes)
    if not quiet:
        print_result(result)
