"""Root of the ``spatialx`` command: registers the commands and turns user errors into one line."""

from __future__ import annotations

import sys
import warnings

import typer

from spatialx import __version__
from spatialx.cli import (
    batch,
    check_alignment,
    evaluate,
    export,
    hmif,
    models,
    ndvi,
    pansharpen,
    polsar,
    sample,
    sensors,
    stfuse,
    tasks,
    train,
)

app = typer.Typer(
    name="spatialx",
    help="Fuse satellite images (pansharpening, HSI/MSI, spatio-temporal, PolSAR) into georeferenced COGs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts are plain text: "[default: 512]" must show, not be taken for Rich markup and dropped.
    rich_markup_mode=None,
)
app.command("pansharpen", no_args_is_help=True)(pansharpen.command)
app.command("hmif", no_args_is_help=True)(hmif.command)
app.command("stfuse", no_args_is_help=True)(stfuse.command)
app.command("polsar", no_args_is_help=True)(polsar.command)
app.command("batch", no_args_is_help=True)(batch.command)
app.command("ndvi", no_args_is_help=True)(ndvi.command)
app.command("sample", no_args_is_help=True)(sample.command)
app.command("sensors")(sensors.sensors_command)
app.command("methods")(sensors.methods_command)
app.command("tasks")(tasks.command)
app.command("models")(models.command)
app.command("export", no_args_is_help=True)(export.command)
app.command("check-alignment", no_args_is_help=True)(check_alignment.command)
app.add_typer(evaluate.app, name="evaluate")
# TrainCommand lets --scene take a PAN MS pair and repeat, which Typer alone cannot declare.
app.command("train", cls=train.TrainCommand, no_args_is_help=True)(train.command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"spatialx {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """spatialx: satellite image fusion."""


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"spatialx: warning: {message}", file=sys.stderr)


def run() -> None:
    """Console-script entry point: user errors become one line on stderr and exit status 2; SIGINT/SIGTERM remove
    every temporary file and become one line and exit status 130/143 (:func:`spatialx.io.outputs.signal_guard`)."""
    from spatialx.errors import SpatialxError
    from spatialx.io.outputs import signal_guard

    warnings.showwarning = _warning_line
    warnings.simplefilter("once")
    with signal_guard():
        try:
            app()
        except SpatialxError as exc:
            print(f"spatialx: error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)


if __name__ == "__main__":
    run()
