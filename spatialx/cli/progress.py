"""A Rich progress bar for tiled runs: tiles done / total and throughput."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from spatialx.options import Progress as ProgressCallback
from spatialx.pipeline import FusionResult

console = Console(stderr=True)


@contextmanager
def tile_progress(description: str, enabled: bool = True) -> Iterator[ProgressCallback | None]:
    """Yield a ``(done, total)`` callback driving a progress bar that appears with the first finished tile
    (so that an early error is not preceded by an empty bar), or None when disabled."""
    if not enabled:
        yield None
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tiles"),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn())
    progress = Progress(*columns, console=console)
    state: dict[str, int] = {}

    def update(done: int, total: int) -> None:
        if "task" not in state:
            progress.start()
            state["task"] = progress.add_task(description, total=total, rate="")
        task = state["task"]
        progress.update(task, completed=done, total=total)
        speed = progress.tasks[0].speed
        progress.update(task, rate=f"{speed:.1f} tiles/s" if speed else "")

    try:
        yield update
    finally:
        progress.stop()


def print_result(result: FusionResult) -> None:
    """What a fusion command wrote: the product with its size and speed, the notes, then the side products."""
    bands, height, width = result.shape
    console.print(f"wrote {result.output} ({bands} bands, {width}x{height}, {result.tiles} tiles, "
                  f"{result.seconds:.1f} s, {width * height / max(result.seconds, 1e-9) / 1e6:.1f} Mpx/s)")
    for note in result.notes:
        console.print(f"  {note}", style="dim")
    if result.params.get("weights_source") == "bundled":
        console.print(f"  weights: bundled {result.params['weights']} (sha256 "
                      f"{str(result.params.get('weights_sha256', ''))[:12]}...)", style="dim")
    if result.products:
        console.print(f"wrote {', '.join(str(path) for path in result.products.values())}")
