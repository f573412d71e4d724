"""``spatialx tasks``: the fusion tasks this installation knows, with their input roles."""

from __future__ import annotations


def command() -> None:
    """List the fusion tasks: each input role, how it reaches the output grid, and the methods that serve it."""
    from rich.console import Console
    from rich.table import Table

    from spatialx.methods import list_methods
    from spatialx.tasks import list_tasks

    console = Console()
    for task in list_tasks():
        networks = ", ".join(task.label(r) for r in task.network_roles) or "nothing yet (no network declares it)"
        table = Table(title=f"[bold]{task.name}[/] {task.summary}", title_justify="left", caption_justify="left",
                      caption=f"output: the {task.label(task.guide)} grid with the {task.label(task.output_like)} "
                              f"bands; networks receive {networks}; "
                              f"methods: {', '.join(m.name for m in list_methods(task.name)) or 'none yet'}")
        for column in ("role", "label", "resampling", "sensor part", "", "description"):
            table.add_column(column)
        for role in task.roles:
            flags = ", ".join(flag for flag, on in (("guide", role.name == task.guide), ("optional", role.optional),
                                                   ("dated", role.dated)) if on)
            table.add_row(role.name, role.label, role.resampling.value, role.sensor_part, flags, role.description)
        console.print(table)
