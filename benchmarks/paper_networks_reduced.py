"""The networks of the four papers at reduced resolution on the real scenes (issue #14), every network adapted with
the same number of steps on the reduced inputs only (`spatialx evaluate reduced`'s functions):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_networks_reduced.py --steps 50 --threads 1

1. The real QuickBird Toulouse pair (cut 21): the classical methods and ``exp``; ``pnn`` and ``lemamba`` from their
   bundled weights, fine-tuned; ``rwkvfusion`` (no weights ship for it) trained from scratch at its WV3/QB
   configuration.
2. The real EO-1 Hyperion + ALI pair over Paris (128 HS bands, 9 MS bands, the same 72 x 72 grid, so the HS is
   degraded by 3 as HySure does; cut 3): the classical hmif methods and ``exp``, and ``lemamba``, ``rwkvfusion``,
   ``ssrfn`` and ``spaxfus`` trained from scratch at their hmif configurations (the inputs' band counts). The files
   hold no wavelengths: the profiles are those of ``tests/test_evaluate_hmif.py`` (Hyperion's nominal band centres,
   each ALI band a box over the Hyperion bands its description names).

Prints Markdown tables and writes JSON to ``--out``. Networks are trained from scratch here, for ``--steps`` steps on
a CPU: the figures say what a short scene adaptation reaches, not what trained weights would.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import rasterio
import yaml

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
QB_CLASSICAL = ("exp", "gsa", "bdsd", "mtf-glp-fs", "awlp")
HMIF_CLASSICAL = ("exp", "gsa", "mtf-glp-hpm", "cnmf")


def hyperion_centre(band: int) -> float:
    """Nominal Hyperion band centres (nm): VNIR bands 1-70 from 355.59 nm, SWIR 71-242 from 851.92 nm."""
    return 355.59 + (band - 1) * 10.1756 if band <= 70 else 851.92 + (band - 71) * 10.0895


def paris_profiles(directory: Path) -> dict[str, str]:
    """Sensor profiles for the Paris pair written into ``directory`` (put on SPATIALX_SENSOR_PATH)."""
    hs, ms = SHARED / "hmif" / "paris_hyperion_hs.tif", SHARED / "hmif" / "paris_ali_ms.tif"
    with rasterio.open(hs) as src:
        numbers = [int(v) for v in src.tags()["HYPERION_BAND_NUMBERS"].split(",")]
    with rasterio.open(ms) as src:
        supports = [d.split("Hyperion bands ")[1].rstrip(")").split("-") for d in src.descriptions]
    hs_profile = {"name": "EO-1 Hyperion (Paris)", "dtype": "float64", "valid_range": [0, 2],
                  "bands": [{"name": f"H{n:03d}", "center_nm": round(hyperion_centre(n), 2), "fwhm_nm": 10.5,
                             "mtf_gain": 0.5625} for n in numbers]}
    boxes = []
    for i, (first, last) in enumerate(supports):
        lo, hi = hyperion_centre(int(first)) - 5, hyperion_centre(int(last)) + 5
        boxes.append({"name": f"ALI{i + 1}", "response": [[lo - 0.5, 0], [lo, 1], [hi, 1], [hi + 0.5, 0]]})
    ms_profile = {"name": "EO-1 ALI (Paris)", "dtype": "float64", "valid_range": [0, 2], "bands": boxes}
    (directory / "paris_hs.yaml").write_text(yaml.safe_dump(hs_profile))
    (directory / "paris_ms.yaml").write_text(yaml.safe_dump(ms_profile))
    return {"hs": "paris_hs", "ms": "paris_ms"}


def run(label: str, evaluate, methods: list[tuple[str, str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for row, method, options in methods:
        began = time.perf_counter()
        try:
            scores = evaluate(method, options)
        except Exception as exc:
            print(f"{label}: {row}: failed: {exc}", flush=True)
            continue
        seconds = round(time.perf_counter() - began, 1)
        table[row] = {**{k: v for k, v in scores.items() if v is not None}, "seconds": seconds}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in table[row].items() if isinstance(v, float))
        print(f"{label}: {row}: {shown}", flush=True)
    return table


def markdown(table: dict[str, dict[str, Any]], keys: tuple[str, ...]) -> str:
    lines = ["| method | " + " | ".join(keys) + " | s |", "|---|" + "---:|" * (len(keys) + 1)]
    for row, values in table.items():
        cells = [f"{values[k]:.4f}" if k in values else "-" for k in keys]
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {values['seconds']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scenes", nargs="+", default=["qb", "paris"], choices=("qb", "paris"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/paper_networks_reduced.json"))
    args = parser.parse_args()
    from spatialx.runtime import use_threads

    use_threads(args.threads)
    warnings.filterwarnings("ignore")
    from spatialx.evaluate import evaluate_reduced

    steps = {"adapt_steps": args.steps, "adapt_loss": "reduced"}  # "on the reduced inputs only", as published
    results: dict[str, Any] = {"steps": args.steps, "threads": args.threads}
    began = time.perf_counter()
    if "qb" in args.scenes:
        pan, xs = SHARED / "qb_toulouse_pan.tif", SHARED / "qb_toulouse_xs.tif"
        rows = [(m, m, {}) for m in QB_CLASSICAL]
        rows += [(f"{n} bundled + {args.steps} steps", n, steps) for n in ("pnn", "lemamba")]
        rows += [(f"rwkvfusion scratch + {args.steps} steps", "rwkvfusion", steps)]
        table = run("qb", lambda m, o: evaluate_reduced(pan, xs, "qb", [m], cut=21, method_options=o or None)[m], rows)
        results["QuickBird Toulouse (reduced, cut 21)"] = table
        print(markdown(table, ("Q2n", "SAM", "ERGAS", "SCC")), flush=True)
    if "paris" in args.scenes:
        with tempfile.TemporaryDirectory() as directory:
            sensors = paris_profiles(Path(directory))
            os.environ["SPATIALX_SENSOR_PATH"] = directory
            hs, ms = SHARED / "hmif" / "paris_hyperion_hs.tif", SHARED / "hmif" / "paris_ali_ms.tif"
            rows = [(m, m, {}) for m in HMIF_CLASSICAL]
            rows += [(f"{n} scratch + {args.steps} steps", n, steps)
                     for n in ("lemamba", "rwkvfusion", "ssrfn", "spaxfus")]
            table = run("paris", lambda m, o: evaluate_reduced(hs, ms, sensors, [m], task="hmif", ratio=3,
                                                               method_options=o or None)[m], rows)
        results["Hyperion + ALI Paris (reduced, ratio 3, cut 3)"] = table
        print(markdown(table, ("SAM", "ERGAS", "PSNR", "Q", "SSIM")), flush=True)
    results["seconds"] = round(time.perf_counter() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out} ({results['seconds']} s)")


if __name__ == "__main__":
    main()
