"""``spatialx sample OUT_DIR``: the bundled synthetic scene."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spatialx.cli import options as opt


def command(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write pan.tif, ms.tif and reference.tif into.",
                                            show_default=False)],
    sensor: opt.Sensor = "wv3",
    size: Annotated[int, typer.Option("--size", min=16, help="PAN side in pixels (a multiple of the ratio).")] = 1024,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same scene.")] = 0,
    overwrite: opt.Overwrite = False,
) -> None:
    """Generate a deterministic, georeferenced synthetic scene (PAN, MS, and the high-resolution reference)."""
    from spatialx.cli.progress import console
    from spatialx.errors import OutputError
    from spatialx.sample import write_sample

    if not out_dir.exists():
        if not out_dir.parent.is_dir():
            raise OutputError("parent directory does not exist", path=out_dir.parent, hint="create it first")
        out_dir.mkdir()
    paths = write_sample(out_dir, sensor=sensor, size=size, seed=seed, overwrite=overwrite)
    for role, path in paths.items():
        console.print(f"wrote {role}: {path}")
