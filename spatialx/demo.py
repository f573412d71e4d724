"""The demo job: generate the bundled sample scenes and fuse them with every classical method.

``python -m spatialx.demo demo-out`` (what ``make demo`` runs) writes ``demo-out/sample/`` (PAN, MS, reference) and
one COG and one NDVI (+ QGIS style) per pansharpening method, then ``demo-out/sample_hmif/`` (a PRISMA-like HE5,
Sentinel-2 band COGs, the 10 m reference) and one COG per hmif method, and prints a short table with each product's
SAM and ERGAS against the scene's reference.
"""

from __future__ import annotations

import sys
from pathlib import Path

SENSOR = "wv3"
SIZE = 512
HMIF_SIZE = 192  # Sentinel-2 10 m pixels per side: 64 PRISMA pixels
HMIF_BANDS = 60
HMIF_SENSORS = {"hs": "prisma_l2d", "ms": "s2_l2a"}


def _scores(reference: Path, product: Path, ratio: int, max_value: float | None) -> tuple[str, str]:
    from spatialx.evaluate import evaluate_compare

    scores = evaluate_compare(reference, product, ratio=ratio, max_value=max_value)
    return f"{scores['SAM']:.2f}", f"{scores['ERGAS']:.2f}"


def main(out_dir: str = "demo-out") -> int:
    from rich.console import Console
    from rich.table import Table

    import spatialx
    from spatialx.methods import list_methods
    from spatialx.sample import write_hmif_sample, write_sample
    from spatialx.sensors import get_sensor
    from spatialx.tasks.pansharpen import pansharpen

    console = Console()
    if not console.is_terminal:  # piped (make demo in CI, a log): 80 columns would truncate the file names
        console = Console(width=160)
    root = Path(out_dir)
    (root / "sample").mkdir(parents=True, exist_ok=True)
    paths = write_sample(root / "sample", sensor=SENSOR, size=SIZE, seed=0, overwrite=True)
    table = Table(title=f"spatialx demo -> {root}/ (pansharpen: {SENSOR} {SIZE} px; hmif: {HMIF_BANDS}-band "
                        f"PRISMA-like + Sentinel-2, {HMIF_SIZE} px)")
    for column in ("task", "method", "output", "NDVI", "SAM (deg)", "ERGAS", "seconds"):
        table.add_column(column)
    max_value = get_sensor(SENSOR).max_value
    for info in list_methods("pansharpen"):
        if info.kind != "classical":
            continue
        output, ndvi = root / f"pansharpened_{info.name}.tif", root / f"ndvi_{info.name}.tif"
        result = pansharpen(paths["pan"], paths["ms"], output, SENSOR, info.name, tile=256, workers=2,
                            overwrite=True, ndvi=ndvi)
        table.add_row("pansharpen", info.name, output.name, ndvi.name,
                      *_scores(paths["reference"], output, 4, max_value), f"{result.seconds:.2f}")

    # Hyperspectral + multispectral: whatever classical methods are registered for hmif when the demo runs.
    hmif = write_hmif_sample(root / "sample_hmif", size=HMIF_SIZE, bands=HMIF_BANDS, seed=0, overwrite=True)
    for info in list_methods("hmif"):
        if info.kind != "classical":
            continue
        output = root / f"hmif_{info.name}.tif"
        result = spatialx.fuse("hmif", {"hs": hmif["hs"], "ms": hmif["ms"]}, output, method=info.name,
                               sensor=HMIF_SENSORS, tile=256, workers=2, overwrite=True)
        ratio = int(result.params["ratio"])
        table.add_row("hmif", info.name, output.name, "-", *_scores(hmif["reference"], output, ratio, None),
                      f"{result.seconds:.2f}")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
