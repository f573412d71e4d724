"""``spatialx sensors`` and ``spatialx methods``: what this installation knows."""

from __future__ import annotations

from typing import Annotated, Any

import typer


def sensors_command(
    names: Annotated[list[str] | None, typer.Argument(help="Sensors to show (default: all).",
                                                      show_default=False)] = None,
    as_yaml: Annotated[bool, typer.Option(
        "--yaml", help="Print each profile as YAML that loads back to the same profile (a start for a new sensor "
                       "file in SPATIALX_SENSOR_PATH).")] = False,
) -> None:
    """Show the sensor profiles: bands, wavelengths or polarimetric channels, resolution, radiometric scaling,
    MTF gains, PAN, NDVI bands, nodata, QA conditions."""
    from spatialx.sensors import get_sensor, list_sensors

    profiles = [get_sensor(n) for n in names] if names else list_sensors()
    if as_yaml:
        typer.echo("---\n".join(p.to_yaml() for p in profiles), nl=False)
        return

    from rich.console import Console

    console = Console()
    for p in profiles:
        console.print(_sensor_table(p))


def _g(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _radiometry(band: Any) -> str:
    if band.range_from_product is not None:
        rule = band.range_from_product
        text = f"from product {rule.min_key}..{rule.max_key}"
    else:
        text = "" if (band.scale, band.offset) == (1.0, 0.0) else f"{band.scale:g} / {band.offset:+g}"
    if band.offset_from_product is not None:
        text += f" after DN + {band.offset_from_product.key}"
    return text.strip()


def _sensor_table(p: Any) -> Any:
    """One profile as a table whose columns are the ones this sensor fills (SAR: channels, no wavelengths)."""
    from rich.markup import escape
    from rich.table import Table

    generated = sum(g.count for g in p.spectral_grid)
    explicit = p.bands[:len(p.bands) - generated]
    every = [*p.bands, *([p.pan] if p.pan else [])]
    columns: list[tuple[str, Any]] = [("band" if not p.is_sar else "channel", lambda b: escape(b.name))]
    if any(b.resolution_m for b in every):
        columns.append(("res m", lambda b: _g(b.resolution_m)))
    if any(b.center_nm is not None for b in every):
        columns += [("centre nm", lambda b: _g(b.center_nm)), ("FWHM nm", lambda b: _g(b.width_nm))]
    if any(b.mtf_gain is not None for b in every):
        columns.append(("MTF", lambda b: _g(b.mtf_gain)))
    if any(b.pan_weight for b in p.bands):
        columns.append(("PAN w", lambda b: f"{b.pan_weight:g}"))
    if any(_radiometry(b) for b in every):
        columns.append(("scale / offset", _radiometry))
    if any(b.valid_range != p.valid_range for b in every):
        columns.append(("valid DN", lambda b: "" if b.valid_range is None else
                        f"{b.valid_range[0]:g}..{b.valid_range[1]:g}"))
    if any(b.units for b in every):
        columns.append(("units", lambda b: escape(b.units or "")))
    if any(b.description for b in every):
        columns.append(("about", lambda b: escape(b.description)))

    table = Table(title=f"[bold]{escape(p.key)}[/] {escape(p.name)}", caption=escape(_caption(p)),
                  title_justify="left", caption_justify="left")
    table.add_column("#", justify="right")
    for title, _ in columns:
        table.add_column(title, justify="left" if title in ("band", "channel", "scale / offset", "units", "about")
                         else "right")
    for i, band in enumerate(explicit, start=1):
        table.add_row(str(i), *(cell(band) for _, cell in columns))
    start = len(explicit)
    for grid in p.spectral_grid:
        # An imaging spectrometer's hundreds of bands read better as one row per grid.
        first, last = p.bands[start], p.bands[start + grid.count - 1]
        cells = {title: cell(first) for title, cell in columns}
        cells["band" if not p.is_sar else "channel"] = f"{escape(first.name)}..{escape(last.name)}"
        cells["centre nm"] = f"{grid.start_nm:g}..{grid.stop_nm:g}" + (" nominal" if p.wavelengths_from_file else "")
        table.add_row(f"{start + 1}-{start + grid.count}", *(cells[title] for title, _ in columns))
        start += grid.count
    if p.pan is not None:
        cells = {title: cell(p.pan) for title, cell in columns}
        cells.pop("PAN w", None)  # PAN has no weight in itself
        table.add_row("PAN", *(cells.get(title, "") for title, _ in columns), style="dim")
    return table


def _caption(p: Any) -> str:
    parts = [p.kind if not p.is_sar else f"SAR {p.representation} ({', '.join(p.polarisations)}"
             + (f", {p.frequency_ghz:g} GHz)" if p.frequency_ghz else ")")]
    depth = f"{p.bit_depth}-bit, " if p.bit_depth is not None else ""
    parts.append(f"{depth}{p.dtype}" + (f", max {p.max_value:g}" if p.max_value is not None else ""))
    if p.valid_range is not None:
        parts.append(f"valid DN {p.valid_range[0]:g}..{p.valid_range[1]:g}")
    if p.ratio is not None:
        parts.append(f"ratio {p.ratio:g}")
    if p.ndvi_red:
        parts.append(f"NDVI {p.ndvi_red}/{p.ndvi_nir}")
    parts.append(f"nodata {'none' if p.nodata is None else f'{p.nodata:g}'}")
    if p.wavelengths_from_file:
        parts.append("centres/FWHM from each file (grid is nominal)")
    lines = ["; ".join(parts)]
    if p.ancillary:
        lines.append("ancillary: " + ", ".join(a.name for a in p.ancillary))
    if p.qa:
        lines.append("QA: " + ", ".join(p.qa_conditions))
    lines.append(str(p.path))
    return "\n".join(lines)


def methods_command(
    task: Annotated[str | None, typer.Option("--task", help="Only methods for this task.")] = None,
) -> None:
    """List the registered fusion methods."""
    from rich.console import Console
    from rich.table import Table

    from spatialx.methods import list_methods
    from spatialx.tasks import get_task

    if task is not None:
        task = get_task(task).name  # an unknown task is an error, not an empty table
    table = Table(title="Methods" if task is None else f"Methods for {task}")
    for column in ("name", "kind", "tasks", "summary"):
        table.add_column(column)
    for info in list_methods(task):
        table.add_row(info.name, info.kind, ", ".join(info.tasks), info.summary)
    Console().print(table)
