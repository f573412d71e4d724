"""``spatialx evaluate reduced|full|compare``: quality indices as the reference toolbox computes them.

``reduced`` and ``full`` judge pansharpening (``--task pansharpen``, the default: PAN + MS and one ``--sensor``) or
hyperspectral + multispectral fusion (``--task hmif``: HS + MS, ``--hs-sensor`` and ``--ms-sensor``, inputs read as
``spatialx hmif`` reads them). ``compare`` is the same for every task: two rasters on one grid.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from spatialx.cli import options as opt

app = typer.Typer(help="Judge fusion results with the community's quality indices.", no_args_is_help=True)

Ratio = Annotated[int | None, typer.Option("--ratio", min=1, help="Resolution ratio [default: the sensor's].",
                                           show_default=False)]
Cut = Annotated[int | None, typer.Option(
    "--cut", min=0, help="Border dropped before computing indices (pixels) [default: 21 for pansharpen, the ratio for "
                         "hmif].", show_default=False)]
Task = Annotated[str, typer.Option("--task", help="What is judged: pansharpen (PAN + MS) or hmif (HS + MS).")]
Sensor = Annotated[str | None, typer.Option(
    "--sensor", "-s", help="Sensor profile (see `spatialx sensors`), pansharpen [default: wv3].", show_default=False)]
HsSensor = Annotated[str | None, typer.Option(
    "--hs-sensor", help="hmif: sensor profile of the HS cube [default: prisma_l2d].", show_default=False)]
MsSensor = Annotated[str | None, typer.Option(
    "--ms-sensor", help="hmif: sensor profile of the MS image [default: s2_l2a].", show_default=False)]
MsBands = Annotated[str | None, typer.Option(
    "--ms-bands", help="hmif: MS bands to use, by name or number (as `spatialx hmif --ms-bands`); --bands selects "
                       "HS bands.", show_default=False)]
First = Annotated[Path, typer.Argument(metavar="PAN|HS", help="Panchromatic raster (pansharpen) or hyperspectral "
                                                               "cube (hmif).", show_default=False)]
JsonPath = Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.",
                                               show_default=False)]
CsvPath = Annotated[Path | None, typer.Option("--csv", help="Also write the results as CSV here.",
                                              show_default=False)]


def _print(title: str, rows: dict[str, dict[str, float | None]], first: str, notes: Sequence[str] = ()) -> None:
    from rich.console import Console
    from rich.table import Table

    keys = list(next(iter(rows.values())))
    table = Table(title=title)
    table.add_column(first)
    for key in keys:
        table.add_column(key, justify="right")
    for name, values in rows.items():
        table.add_row(name, *(_cell(k, values[k]) for k in keys))
    Console().print(table)
    for note in notes:
        typer.echo(f"note: {note}", err=True)


def _cell(key: str, value: float | None) -> str:
    if value is None:  # an index not computed (Q2n of many bands): the notes say why
        return "n/a"
    return f"{value:.2f}" if key.startswith("PSNR") else f"{value:.4f}"


def _task(task: str) -> str:
    """The task judged, refused in one line before any input is opened."""
    from spatialx.errors import SpatialxError
    from spatialx.evaluate import TASKS

    name = task.strip().lower()
    if name not in TASKS:
        raise SpatialxError(f"--task {task}: evaluate judges {' or '.join(TASKS)}",
                            hint="pansharpen for PAN + MS, hmif for HS + MS")
    return name


def _sensors(task: str, sensor: str | None, hs_sensor: str | None, ms_sensor: str | None,
             ms_bands: str | None) -> None:
    """Refuse the other task's sensor options, so that a forgotten --task is not silently judged as another task."""
    from spatialx.errors import SpatialxError

    if task == "hmif" and sensor is not None:
        raise SpatialxError("--sensor is for pansharpening", hint="with --task hmif give --hs-sensor and --ms-sensor")
    given = [name for name, value in (("--hs-sensor", hs_sensor), ("--ms-sensor", ms_sensor),
                                      ("--ms-bands", ms_bands)) if value is not None]
    if task == "pansharpen" and given:
        raise SpatialxError(f"{', '.join(given)}: only with --task hmif", hint="pansharpening takes --sensor")


def _hmif_inputs(ms: Path, hs_sensor: str | None, ms_sensor: str | None, hs_bands: str | None,
                 ms_bands: str | None) -> tuple[dict[str, str], dict[str, str] | None, dict[str, dict[str, object]]]:
    """Sensors, band selections and reader options of an hmif pair, as ``spatialx hmif`` builds them."""
    from spatialx.evaluate import HMIF_SENSORS
    from spatialx.io.read import product_format_name

    sensors = {"hs": hs_sensor or HMIF_SENSORS["hs"], "ms": ms_sensor or HMIF_SENSORS["ms"]}
    bands: dict[str, str] = {"hs": hs_bands} if hs_bands else {}
    read_options: dict[str, dict[str, object]] = {}
    if ms_bands:
        if product_format_name(ms) == "Sentinel-2 L2A":  # the reader picks the bands and checks their grid
            read_options["ms"] = {"bands": tuple(b.strip() for b in ms_bands.split(",") if b.strip())}
        else:
            bands["ms"] = ms_bands
    return sensors, bands or None, read_options


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
    pan: First,
    ms: Annotated[Path | None, typer.Argument(help="Multispectral raster (the reference at reduced scale for "
                                                   "pansharpen; for hmif a Sentinel-2 L2A product or a multiband "
                                                   "GeoTIFF). polsar: none (the quad-pol scene alone).",
                                              show_default=False)] = None,
    task: Annotated[str, typer.Option("--task", help="What is judged: pansharpen (PAN + MS), hmif (HS + MS) or "
                                                     "polsar (QUADPOL alone).")] = "pansharpen",
    looks: Annotated[int | None, typer.Option("--looks", min=1, help="polsar: multilook window forming the "
                                                                     "reference C3 from SLC [default: 5].",
                                              show_default=False)] = None,
    sensor: Sensor = None,
    hs_sensor: HsSensor = None,
    ms_sensor: MsSensor = None,
    methods: Annotated[list[str] | None, typer.Option(
        "--method", "-m", help="Method to judge (repeat for several) [default: every classical method of the task].",
        show_default=False)] = None,
    weights: opt.Weights = None,
    adapt_steps: opt.AdaptSteps = 0,
    adapt_loss: opt.AdaptLoss = None,
    scratch: opt.Scratch = False,
    config: opt.NetworkConfig = None,
    ratio: Annotated[int | None, typer.Option(
        "--ratio", min=1, help="Resolution ratio [default: the sensor's; hmif: the HS:MS grid ratio, required when "
                               "the grids coincide].", show_default=False)] = None,
    cut: Cut = None,
    bands: opt.Bands = None,
    ms_bands: MsBands = None,
    allow_misregistration: opt.AllowMisregistration = False,
    json_path: JsonPath = None,
    csv_path: CsvPath = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Wald's protocol on your scene: degrade the inputs, fuse, compare with the original MS (pansharpen) or HS
    (hmif)."""
    from spatialx.errors import SpatialxError
    from spatialx.evaluate import evaluate_reduced
    from spatialx.methods import list_methods

    options = opt.method_options(weights, adapt_steps, config, scratch=scratch, adapt_loss=adapt_loss)
    if task.strip().lower() == "polsar":
        from spatialx.evaluate import evaluate_reduced_polsar

        if ms is not None:
            raise SpatialxError("polsar's reduced-resolution protocol takes the quad-pol scene alone",
                                hint="spatialx evaluate reduced QUADPOL --task polsar [--ratio 2]")
        _check_outputs({"quad-pol": pan}, json_path, csv_path, overwrite, weights)
        names = methods or [m.name for m in list_methods("polsar") if m.kind == "classical"]
        results = evaluate_reduced_polsar(pan, names, ratio=ratio or 2, looks=looks, cut=cut or 0,
                                          method_options=options)
        _print(f"Reduced resolution, polsar ({pan.name}, ratio {ratio or 2})", results, "method", results.notes)
        _save(results, json_path, csv_path, "method")
        return
    if ms is None:
        raise SpatialxError(f"{task} needs the MS input too", hint="spatialx evaluate reduced PAN|HS MS ...")
    task = _task(task)
    _sensors(task, sensor, hs_sensor, ms_sensor, ms_bands)
    labels = ("PAN", "MS") if task == "pansharpen" else ("HS", "MS")
    _check_outputs(dict(zip(labels, (pan, ms), strict=True)), json_path, csv_path, overwrite, weights)
    names = methods or [m.name for m in list_methods(task) if m.kind == "classical"]
    if task == "pansharpen":
        cut = 21 if cut is None else cut
        results = evaluate_reduced(pan, ms, sensor or "wv3", names, ratio=ratio, cut=cut, bands=bands,
                                   method_options=options, allow_misregistration=allow_misregistration)
        _print(f"Reduced resolution ({ms.name}, cut {cut})", results, "method", results.notes)
    else:
        sensors, selection, read_options = _hmif_inputs(ms, hs_sensor, ms_sensor, bands, ms_bands)
        results = evaluate_reduced(pan, ms, sensors, names, ratio=ratio, cut=cut, bands=selection,
                                   method_options=options, task="hmif", read_options=read_options,
                                   allow_misregistration=allow_misregistration)
        _print(f"Reduced resolution, hmif ({pan.name} + {ms.name}, cut {'the ratio' if cut is None else cut})",
               results, "method", results.notes)
    _save(results, json_path, csv_path, "method")


@app.command("full", no_args_is_help=True)
def full(
    pan: First,
    ms: Annotated[Path, typer.Argument(help="Multispectral raster (native resolution).", show_default=False)],
    fused: Annotated[Path, typer.Argument(help="Fused raster on the PAN grid (pansharpen) or the MS grid (hmif).",
                                          show_default=False)],
    task: Task = "pansharpen",
    sensor: Sensor = None,
    hs_sensor: HsSensor = None,
    ms_sensor: MsSensor = None,
    ratio: Ratio = None,
    cut: Annotated[int, typer.Option(
        "--cut", min=0, help="Border dropped before computing indices, rounded up to whole MS (hmif: HS) pixels (the "
                             "toolbox computes full-resolution indices on the whole image, hence 0).")] = 0,
    bands: opt.Bands = None,
    ms_bands: MsBands = None,
    allow_misregistration: opt.AllowMisregistration = False,
    json_path: JsonPath = None,
    csv_path: CsvPath = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Full resolution, no reference. pansharpen: D_lambda, D_s, QNR, Khan's D_lambda and HQNR. hmif: spectral
    consistency with the HS (SAM_HS, ERGAS_HS, PSNR_HS of the product degraded to the HS grid) and spatial consistency
    with the MS (PSNR_MS, CC_MS, Q_MS of the product projected onto the MS bands)."""
    from spatialx.evaluate import evaluate_full

    task = _task(task)
    _sensors(task, sensor, hs_sensor, ms_sensor, ms_bands)
    labels = ("PAN", "MS", "fused") if task == "pansharpen" else ("HS", "MS", "fused")
    _check_outputs(dict(zip(labels, (pan, ms, fused), strict=True)), json_path, csv_path, overwrite)
    if task == "pansharpen":
        results = evaluate_full(pan, ms, fused, sensor or "wv3", ratio=ratio, bands=bands, cut=cut,
                                allow_misregistration=allow_misregistration)
    else:
        sensors, selection, read_options = _hmif_inputs(ms, hs_sensor, ms_sensor, bands, ms_bands)
        results = evaluate_full(pan, ms, fused, sensors, ratio=ratio, bands=selection, cut=cut, task="hmif",
                                read_options=read_options, allow_misregistration=allow_misregistration)
    _print(f"Full resolution ({fused.name})", {fused.name: results}, "image", getattr(results, "notes", ()))
    _save(results, json_path, csv_path, "image")


@app.command("compare", no_args_is_help=True)
def compare(
    reference: Annotated[Path, typer.Argument(help="Reference raster (stfuse: the real fine image of the date).",
                                              show_default=False)],
    fused: Annotated[Path, typer.Argument(help="Raster to judge, on the same grid (stfuse: the prediction).",
                                          show_default=False)],
    task: Annotated[str | None, typer.Option(
        "--task", help="stfuse: spatio-temporal fusion indices (RMSE, MAE, bias, R2, CC, SSIM, SAM, ERGAS) over "
                       "the pixels valid in both; polsar: two C3 images (d_R, MAE, RMSE, span PSNR, H/A/alpha "
                       "differences); pansharpen or hmif (the default): the toolbox's indices.",
        show_default=False)] = None,
    sensor: Annotated[str | None, typer.Option(
        "--sensor", "-s", help="Sensor profile (see `spatialx sensors`) (default wv3; not with --task stfuse).",
        show_default=False)] = None,
    ratio: Annotated[float | None, typer.Option(
        "--ratio", min=1, help="Resolution ratio of ERGAS (default: the sensor's; stfuse: 1, a convention: give "
                               "the coarse:fine ratio, e.g. 16 for MODIS and Landsat, to weight it as in the "
                               "literature).", show_default=False)] = None,
    max_value: Annotated[float | None, typer.Option(
        "--max-value", help="Data range of PSNR and SSIM, e.g. 1 for reflectance (default: the sensor's; stfuse: "
                            "each band's range in the reference).", show_default=False)] = None,
    cut: Annotated[int | None, typer.Option(
        "--cut", min=0, help="Border dropped before computing indices (pixels; default 21, stfuse 0).",
        show_default=False)] = None,
    json_path: JsonPath = None,
    csv_path: CsvPath = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """The reference-based indices between two aligned rasters, for any task: Q2n is left out (n/a) above 32
    bands. With --task stfuse: a predicted fine image against the real one (bias = prediction - reference;
    per-band values in the table and the --json/--csv files)."""
    from spatialx.errors import SpatialxError
    from spatialx.evaluate import compare_task, evaluate_compare
    from spatialx.sensors import get_sensor

    if max_value is not None and not max_value > 0:
        raise SpatialxError(f"--max-value {max_value:g}: the data range must be positive")
    if compare_task(task) == "stfuse":
        if sensor is not None:
            raise SpatialxError("--sensor: not with --task stfuse",
                                hint="stfuse takes the data range from the reference (or --max-value)")
        _check_outputs({"reference": reference, "fused": fused}, json_path, csv_path, overwrite)
        results = evaluate_compare(reference, fused, ratio=ratio, max_value=max_value, cut=cut, task="stfuse")
        overall = {k: v for k, v in results.items() if k not in ("bands", "pixels")}
        bands = results["bands"]
        rows = {fused.name: overall}
        if len(bands) > 1:
            rows.update({name: {k: values.get(k) for k in overall} for name, values in bands.items()})
        _print(f"{fused.name} against {reference.name} ({results['pixels']} pixels compared)", rows, "image",
               results.notes)
        _save(results, json_path, None, "image")
        _save({name: {**values, "pixels": results["pixels"]} for name, values in rows.items()}, None, csv_path,
              "image")
        return
    _check_outputs({"reference": reference, "fused": fused}, json_path, csv_path, overwrite)
    if compare_task(task) == "polsar":
        results = evaluate_compare(reference, fused, ratio=None, max_value=None, cut=cut, task="polsar")
        _print(f"{fused.name} against {reference.name} (C3)", {fused.name: results}, "image")
        _save(results, json_path, csv_path, "image")
        return
    profile = get_sensor(sensor or "wv3")
    scale = ratio or profile.ratio
    if scale is None:
        raise SpatialxError(f"sensor {profile.key} has no PAN:MS ratio for ERGAS", hint="give it with --ratio")
    results = evaluate_compare(reference, fused, ratio=scale, max_value=max_value or profile.max_value,
                               cut=21 if cut is None else cut)
    _print(f"{fused.name} against {reference.name}", {fused.name: results}, "image",
           getattr(results, "notes", ()))
    _save(results, json_path, csv_path, "image")
