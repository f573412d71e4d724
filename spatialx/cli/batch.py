"""``spatialx batch JOBS.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spatialx.cli import options as opt
from spatialx.cluster import scheduler_option


def command(
    jobs: Annotated[Path, typer.Argument(help="YAML list of jobs: task, inputs, output, method, sensor, options, "
                                              "method_options (see the README).", show_default=False)],
    output_root: Annotated[Path | None, typer.Option(
        "--output-root", help="Folder the jobs' outputs are relative to; none may leave it [default: the jobs "
                              "file's folder].", show_default=False)] = None,
    workers: opt.Workers = 1,
    scheduler: opt.Scheduler = None,
    cluster: opt.Cluster = None,
    overwrite: opt.Overwrite = False,
    quiet: opt.Quiet = False,
) -> None:
    """Run many fusion jobs: all validated first; finished ones skipped, interrupted ones resumed; a STAC item per
    product, collection.json and summary.html in the output root. Exit status 1 if any job failed."""
    from rich.table import Table

    from spatialx.batch import BatchError, Outcome, run_batch
    from spatialx.cli.progress import console

    def heard(outcome: Outcome) -> None:
        if not quiet:
            line = f"{outcome.status:>7}  {outcome.job.name}"
            console.print(line + (f"  {outcome.reason}" if outcome.reason else ""), highlight=False, markup=False,
                          soft_wrap=True)

    try:
        outcomes = run_batch(jobs, output_root, overwrite=overwrite, scheduler=scheduler_option(scheduler, cluster),
                             workers=workers, on_outcome=heard)
    except BatchError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        raise
    table = Table("job", "task", "method", "status", "seconds", "reason", title="spatialx batch")
    for o in outcomes:
        table.add_row(o.job.name, o.job.task, o.job.method, o.status,
                      "" if o.seconds is None else f"{o.seconds:.1f}", o.reason or "")
    if not quiet:
        console.print(table)
    failed = sum(o.status == "failed" for o in outcomes)
    if failed:
        console.print(f"{failed} of {len(outcomes)} jobs failed", highlight=False)
        raise typer.Exit(1)
