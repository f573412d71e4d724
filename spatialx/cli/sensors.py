"""``spatialx sensors`` and ``spatialx methods``: what this installation knows."""

from __future__ import annotations

from typing import Annotated

import typer


def sensors_command(
    names: Annotated[list[str] | None, typer.Argument(help="Sensors to show [default: all].",
                                                      show_default=False)] = None,
) -> None:
    """Show the sensor profiles: bands, wavelengths, MTF gains, PAN, bit depth, ratio, NDVI bands, nodata."""
    from rich.console import Console
    from rich.table import Table

    from spatialx.sensors import get_sensor, list_sensors

    console = Console()
    profiles = [get_sensor(n) for n in names] if names else list_sensors()
    for p in profiles:
        nodata = "none" if p.nodata is None else f"{p.nodata:g}"
        table = Table(title=f"[bold]{p.key}[/] {p.name}", caption=(
            f"{p.bit_depth}-bit (max {p.max_value:g}, {p.dtype}), ratio {p.ratio:g}, NDVI {p.ndvi_red}/{p.ndvi_nir}, "
            f"nodata {nodata}; {p.path}"), title_justify="left", caption_justify="left")
        for column in ("#", "band", "centre nm", "width nm", "MTF gain", "PAN weight"):
            table.add_column(column, justify="left" if column == "band" else "right")
        for i, band in enumerate(p.bands, start=1):
            table.add_row(str(i), band.name, f"{band.center_nm:g}", f"{band.width_nm:g}", f"{band.mtf_gain:g}",
                          f"{band.pan_weight:g}")
        table.add_row("PAN", p.pan.name, f"{p.pan.center_nm:g}", f"{p.pan.width_nm:g}", f"{p.pan.mtf_gain:g}", "",
                      style="dim")
        console.print(table)


def methods_command(
    task: Annotated[str | None, typer.Option("--task", help="Only methods for this task.")] = None,
) -> None:
    """List the registered fusion methods."""
    from rich.console import Console
    from rich.table import Table

    from spatialx.methods import list_methods

    table = Table(title="Methods")
    for column in ("name", "kind", "tasks", "summary"):
        table.add_column(column)
    for info in list_methods(task):
        table.add_row(info.name, info.kind, ", ".join(info.tasks), info.summary)
    Console().print(table)
