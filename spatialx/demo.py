"""The demo job: generate the bundled sample scene and pansharpen it with every classical method.

``python -m spatialx.demo demo-out`` (what ``make demo`` runs) writes ``demo-out/sample/`` (PAN, MS, reference),
one COG and one NDVI (+ QGIS style) per method, and prints a short table.
"""

from __future__ import annotations

import sys
from pathlib import Path

SENSOR = "wv3"
SIZE = 512


def main(out_dir: str = "demo-out") -> int:
    from rich.console import Console
    from rich.table import Table

    from spatialx.methods import list_methods
    from spatialx.sample import write_sample
    from spatialx.tasks.pansharpen import pansharpen

    console = Console()
    root = Path(out_dir)
    (root / "sample").mkdir(parents=True, exist_ok=True)
    paths = write_sample(root / "sample", sensor=SENSOR, size=SIZE, seed=0, overwrite=True)
    table = Table(title=f"spatialx demo: {SENSOR} sample {SIZE}x{SIZE} -> {root}/")
    for column in ("method", "output", "NDVI", "seconds"):
        table.add_column(column)
    for info in list_methods("pansharpen"):
        if info.kind != "classical":
            continue
        output, ndvi = root / f"pansharpened_{info.name}.tif", root / f"ndvi_{info.name}.tif"
        result = pansharpen(paths["pan"], paths["ms"], output, SENSOR, info.name, tile=256, workers=2,
                            overwrite=True, ndvi=ndvi)
        table.add_row(info.name, str(output), str(ndvi), f"{result.seconds:.2f}")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
