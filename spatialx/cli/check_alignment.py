"""``spatialx check-alignment A B``: does the content of B sit where its georeferencing puts it on A's grid?"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from spatialx.cli import options as opt

Task = Annotated[str, typer.Option("--task", help="Task whose guide (A) and first other input (B) are compared.")]
Grid = Annotated[int, typer.Option("--grid", min=1, max=8, help="Windows per side of the shift map.")]


def command(
    guide: Annotated[Path, typer.Argument(help="Guide raster (the PAN for pansharpening).", show_default=False)],
    low: Annotated[Path, typer.Argument(help="Lower-resolution raster (the MS).", show_default=False)],
    sensor: opt.Sensor = "wv3",
    task: Task = "pansharpen",
    bands: opt.Bands = None,
    reproject: opt.Reproject = False,
    grid: Grid = 4,
) -> None:
    """Measure the shift between A and B's content (phase correlation at B's resolution): the global shift, in B's
    pixels, and a map of windows. Shifts under 0.5 B pixels are fine; over 3, fusion gives wrong detail."""
    from rich.console import Console
    from rich.table import Table

    from spatialx.errors import SpatialxError
    from spatialx.options import RunOptions
    from spatialx.pipeline import open_scene
    from spatialx.registration import preflight, scene_shift_map
    from spatialx.scene import first_pass
    from spatialx.tasks import get_task

    spec = get_task(task)
    if not spec.resampled:
        raise SpatialxError(f"{spec.name} has a single input: there is nothing to align")
    other = spec.resampled[0]
    scene, sensors = open_scene(spec, {spec.guide: guide, other: low}, sensor,
                                RunOptions(bands=bands, reproject=reproject))
    with scene:
        sample = first_pass(scene)
    result = preflight(sample, scene, sensors, low_role=other)
    shifts = scene_shift_map(sample, scene, sensors, low_role=other, grid=(grid, grid))

    console = Console()
    est = result.estimate
    g, lo = spec.label(spec.guide), spec.label(other)
    console.print(f"[bold]{lo}[/] {low.name} against [bold]{g}[/] {guide.name}"
                  + (f" (sampled every {sample.stride} px)" if sample.stride > 1 else ""))
    if est.reliable:
        console.print(f"global shift: dx={est.dx:+.2f} dy={est.dy:+.2f} {lo} px (|shift| {est.magnitude:.2f}, "
                      f"confidence {est.confidence:.2f}): [bold]{result.decision}[/]")
    else:
        console.print(f"global shift: not measured ({est.reason}): [bold]{result.decision}[/]")
    table = Table(title=f"shift map ({lo} px the {lo} content must move to match the {g}; peak ratio)",
                  title_justify="left", caption_justify="left",
                  caption="ok < 0.5 px, warn 0.5-3 px, refuse > 3 px; +x east (columns), +y south (rows)")
    table.add_column(f"{g} rows \\ cols")
    for c in range(shifts.cols):
        box = shifts.at(0, c).box
        table.add_column(f"{box[1] * sample.stride}-{(box[1] + box[3]) * sample.stride}", justify="right")
    for r in range(shifts.rows):
        box = shifts.at(r, 0).box
        cells = []
        for c in range(shifts.cols):
            w = shifts.at(r, c)
            ratio = "inf" if math.isinf(w.peak_ratio) else f"{w.peak_ratio:.1f}"
            cells.append(f"{w.dx:+.2f}, {w.dy:+.2f} ({ratio})" if w.usable else w.reason)
        table.add_row(f"{box[0] * sample.stride}-{(box[0] + box[2]) * sample.stride}", *cells)
    console.print(table)
