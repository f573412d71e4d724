"""``spatialx evaluate reduced|full|compare``: quality indices as the reference toolbox computes them."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated

import typer

from spatialx.cli import options as opt

app = typer.Typer(help="Judge fusion results with the community's quality indices.", no_args_is_help=True)

Ratio = Annotated[int | None, typer.Option("--ratio", min=1, help="Resolution ratio [default: the sensor's].",
                                           show_default=False)]
Cut = Annotated[int, typer.Option("--cut", min=0, help="Border dropped before computing indices (pixels).")]
JsonPath = Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.",
                                               show_default=False)]
CsvPath = Annotated[Path | None, typer.Option("--csv", help="Also write the results as CSV here.",
                                              show_default=False)]


def _print(title: str, rows: dict[str, dict[str, float]], first: str) -> None:
    from rich.console import Console
    from rich.table import Table

    keys = list(next(iter(rows.values())))
    table = Table(title=title)
    table.add_column(first)
    for key in keys:
        table.add_column(key, justify="right")
    for name, values in rows.items():
        table.add_row(name, *(f"{values[k]:.2f}" if k == "PSNR" else f"{values[k]:.4f}" for k in keys))
    Console().print(table)


def _check_outputs(inputs: dict[str, Path | None], json_path: Path | None, csv_path: Path | None,
                   overwrite: bool, weights: Path | None = None) -> None:
    """Refuse the --json/--csv files before any computation: not an input (nor the weights and their card), not
    each other, not an existing file unless --overwrite."""
    from spatialx.io.outputs import OutputPlan
    from spatialx.models.weights import weight_files

    plan = OutputPlan({**inputs, **weight_files(weights)}, overwrite=overwrite)
    if json_path is not None:
        plan.add(json_path, what="JSON output", kind="sidecar")
    if csv_path is not None:
        plan.add(csv_path, what="CSV output", kind="sidecar")


def _save(data: dict, json_path: Path | None, csv_path: Path | None, first: str) -> None:
    """Write the results checked by :func:`_check_outputs`, each through a temporary file and a rename."""
    from spatialx.io.outputs import atomic_write_text

    if json_path is not None:
        atomic_write_text(json_path, json.dumps(data, indent=2) + "\n")
    if csv_path is not None:
        rows = data if all(isinstance(v, dict) for v in data.values()) else {"": data}
        keys = list(next(iter(rows.values())))
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow([first, *keys])
        for name, values in rows.items():
            writer.writerow([name, *(values[k] for k in keys)])
        atomic_write_text(csv_path, text.getvalue())


@app.command("reduced", no_args_is_help=True)
def reduced(
    pan: Annotated[Path, typer.Argument(help="Panchromatic raster.", show_default=False)],
    ms: Annotated[Path, typer.Argument(help="Multispectral raster (the reference at reduced scale).",
                                       show_default=False)],
    sensor: opt.Sensor = "wv3",
    methods: Annotated[list[str] | None, typer.Option(
        "--method", "-m", help="Method to judge (repeat for several) [default: every classical method].",
        show_default=False)] = None,
    weights: opt.Weights = None,
    adapt_steps: opt.AdaptSteps = 0,
    ratio: Ratio = None,
    cut: Cut = 21,
    bands: opt.Bands = None,
    json_path: JsonPath = None,
    csv_path: CsvPath = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Wald's protocol on your scene: degrade PAN and MS, fuse, compare with the original MS."""
    from spatialx.evaluate import evaluate_reduced
    from spatialx.methods import list_methods

    _check_outputs({"PAN": pan, "MS": ms}, json_path, csv_path, overwrite, weights)
    names = methods or [m.name for m in list_methods("pansharpen") if m.kind == "classical"]
    results = evaluate_reduced(pan, ms, sensor, names, ratio=ratio, cut=cut, bands=bands,
                               method_options=opt.method_options(weights, adapt_steps))
    _print(f"Reduced resolution ({ms.name}, cut {cut})", results, "method")
    _save(results, json_path, csv_path, "method")


@app.command("full", no_args_is_help=True)
def full(
    pan: Annotated[Path, typer.Argument(help="Panchromatic raster.", show_default=False)],
    ms: Annotated[Path, typer.Argument(help="Multispectral raster (native resolution).", show_default=False)],
    fused: Annotated[Path, typer.Argument(help="Fused raster on the PAN grid.", show_default=False)],
    sensor: opt.Sensor = "wv3",
    ratio: Ratio = None,
    cut: Annotated[int, typer.Option(
        "--cut", min=0, help="Border dropped before computing indices, rounded up to whole MS pixels (the toolbox "
                             "computes full-resolution indices on the whole image, hence 0).")] = 0,
    bands: opt.Bands = None,
    json_path: JsonPath = None,
    csv_path: CsvPath = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Full resolution, no reference: D_lambda, D_s, QNR, Khan's D_lambda and HQNR."""
    from spatialx.evaluate import evaluate_full

    _check_outputs({"PAN": pan, "MS": ms, "fused": fused}, json_path, csv_path, overwrite)
    results = evaluate_full(pan, ms, fused, sensor, ratio=ratio, bands=bands, cut=cut)
    _print(f"Full resolution ({fused.name})", {fused.name: results}, "image")
    _save(results, json_path, csv_path, "image")


@app.command("compare", no_args_is_help=True)
def compare(
    reference: Annotated[Path, typer.Argument(help="Reference raster.", show_default=False)],
    fused: Annotated[Path, typer.Argument(help="Raster to judge, on the same grid.", show_default=False)],
    sensor: opt.Sensor = "wv3",
    ratio: Ratio = None,
    cut: Cut = 21,
    json_path: JsonPath = None,
    csv_path: CsvPath = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """The reference-based indices between two aligned rasters."""
    from spatialx.evaluate import evaluate_compare
    from spatialx.sensors import get_sensor

    _check_outputs({"reference": reference, "fused": fused}, json_path, csv_path, overwrite)
    profile = get_sensor(sensor)
    results = evaluate_compare(reference, fused, ratio=ratio or profile.ratio, max_value=profile.max_value, cut=cut)
    _print(f"{fused.name} against {reference.name}", {fused.name: results}, "image")
    _save(results, json_path, csv_path, "image")
