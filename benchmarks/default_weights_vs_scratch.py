"""Do the bundled default weights help? The same adaptation steps from them and from scratch, on unseen data.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/default_weights_vs_scratch.py --threads 1

For each network (``--networks``, default lemamba and pnn) and each step count (``--steps``, default 20 and 60):
scene adaptation (``--adapt-steps N``, the CPU defaults: 32 px patches, batch 4) starting from the bundled weights
(fine-tuning learning rate 1e-4, the default) and from a fresh network (``--scratch``, learning rate 1e-3), plus
the bundled weights as they are (0 steps). Two protocols, with the library functions behind ``spatialx evaluate``:

a. reduced resolution (Wald; :func:`spatialx.evaluate.evaluate_reduced`) on the real QuickBird Toulouse pair's
   **southern half** (PAN rows >= 250 of 500, cropped to new GeoTIFFs with the source's georeferencing: no CRS, the
   window's transform, the full scene's GCPs left out), which the 4-band weights never saw (they were trained on the
   northern half): Q4, SAM, ERGAS, SCC, next to ``exp`` and the best classical methods;
b. full resolution (:func:`spatialx.evaluate.evaluate_full`) on a generated WorldView-3 scene of a seed no weights
   were trained on (``--fr-seed``): HQNR, Khan's D_lambda, D_s, next to ``exp`` and the same classical methods, and,
   since a generated scene has its truth, SAM and ERGAS against it (:func:`spatialx.evaluate.evaluate_compare`).

Adaptation sees only what a user has: for (a) the reduced inputs, for (b) the scene itself. Prints Markdown tables
and writes JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
CLASSICAL = ("exp", "mtf-glp-fs", "awlp", "mtf-glp-hpm", "gsa")


def crop_south(pan: Path, xs: Path, out: Path) -> tuple[Path, Path]:
    """The southern half (rows >= H / 2) of the pair as new GeoTIFFs, keeping the source's georeferencing."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for source in (pan, xs):
            with rasterio.open(source) as src:
                half = src.height // 2
                window = Window(0, half, src.width, src.height - half)
                profile = {**src.profile, "height": window.height, "width": window.width,
                           "transform": src.window_transform(window)}
                target = out / f"{source.stem}_south.tif"
                with rasterio.open(target, "w", **profile) as dst:  # no GCPs: they are the full scene's corners
                    dst.write(src.read(window=window))
                    dst.descriptions = src.descriptions
            written.append(target)
    return written[0], written[1]


def variants(network: str, steps: list[int]) -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = [(f"{network} bundled, 0 steps", {})]
    for n in steps:
        # Wald patches, as published in the README (the default picks full resolution for an MS on its own grid)
        rows.append((f"{network} bundled + {n} steps", {"adapt_steps": n, "adapt_loss": "reduced"}))
        rows.append((f"{network} scratch, {n} steps", {"adapt_steps": n, "adapt_loss": "reduced", "scratch": True}))
    return rows


def reduced(args, work: Path) -> dict[str, dict[str, Any]]:
    from spatialx.evaluate import evaluate_reduced

    pan, xs = crop_south(SHARED / "qb_toulouse_pan.tif", SHARED / "qb_toulouse_xs.tif", work / "qb_south")
    table: dict[str, dict[str, Any]] = {}
    began = time.perf_counter()
    for name, values in evaluate_reduced(pan, xs, "qb", list(CLASSICAL)).items():
        table[name] = {**values, "seconds": None}
    print(f"reduced: classical methods in {time.perf_counter() - began:.1f} s", flush=True)
    for network in args.networks:
        for label, options in variants(network, args.steps):
            began = time.perf_counter()
            values = evaluate_reduced(pan, xs, "qb", [network], method_options=options)[network]
            table[label] = {**values, "seconds": round(time.perf_counter() - began, 1)}
            print(f"reduced: {label}: Q4 {values['Q2n']:.4f} SAM {values['SAM']:.3f} ERGAS {values['ERGAS']:.3f} "
                  f"SCC {values['SCC']:.4f} ({table[label]['seconds']} s)", flush=True)
    return table


def full(args, work: Path) -> dict[str, dict[str, Any]]:
    from spatialx.evaluate import evaluate_compare, evaluate_full
    from spatialx.sample import write_sample
    from spatialx.sensors import get_sensor
    from spatialx.tasks.pansharpen import pansharpen

    scene = write_sample(work / "wv3", sensor="wv3", size=args.fr_size, seed=args.fr_seed, overwrite=True)
    max_value = get_sensor("wv3").max_value
    rows = [(name, name, {}) for name in CLASSICAL]
    rows += [(label, network, options) for network in args.networks for label, options in variants(network, args.steps)]
    table: dict[str, dict[str, Any]] = {}
    for label, method, options in rows:
        output = work / f"fr_{label.replace(' ', '_').replace(',', '').replace('+', 'plus')}.tif"
        began = time.perf_counter()
        pansharpen(scene["pan"], scene["ms"], output, "wv3", method, tile=256, dtype="float32", overwrite=True,
                   method_options=options)
        seconds = round(time.perf_counter() - began, 1)
        values = dict(evaluate_full(scene["pan"], scene["ms"], output, "wv3"))
        truth = evaluate_compare(scene["reference"], output, ratio=4, max_value=max_value)
        table[label] = {**values, "SAM_truth": truth["SAM"], "ERGAS_truth": truth["ERGAS"], "seconds": seconds}
        print(f"full: {label}: HQNR {values['HQNR']:.4f} D_lambda_K {values['D_lambda_K']:.4f} D_s {values['D_s']:.4f}"
              f" | truth SAM {truth['SAM']:.3f} ERGAS {truth['ERGAS']:.3f} ({seconds} s)", flush=True)
    return table


def markdown(title: str, table: dict[str, dict[str, Any]], keys: list[tuple[str, str]]) -> str:
    lines = [f"**{title}**", "", "| method | " + " | ".join(label for _, label in keys) + " | seconds |",
             "|---|" + "---:|" * (len(keys) + 1)]
    for name, values in table.items():
        cells = [f"{values[key]:.4f}" for key, _ in keys]
        seconds = values.get("seconds")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'-' if seconds is None else seconds} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=["lemamba", "pnn"])
    parser.add_argument("--steps", nargs="+", type=int, default=[20, 60])
    parser.add_argument("--fr-seed", type=int, default=4242, help="generated WV3 scene's seed (not trained on)")
    parser.add_argument("--fr-size", type=int, default=256, help="its PAN side in pixels")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=("reduced", "full"), default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/default_weights_vs_scratch.json"))
    args = parser.parse_args()
    from spatialx.runtime import use_threads

    use_threads(args.threads)
    warnings.simplefilter("ignore")
    began = time.perf_counter()
    report: dict[str, Any] = {"networks": args.networks, "steps": args.steps, "threads": args.threads,
                              "adaptation": "CPU defaults: 32 px patches, batch 4, seed 0; lr 1e-4 from the bundled "
                                            "weights, 1e-3 from scratch"}
    with tempfile.TemporaryDirectory(prefix="spatialx-defaults-") as tmp:
        work = Path(tmp)
        if args.only in (None, "reduced"):
            report["reduced_quickbird_south"] = reduced(args, work)
        if args.only in (None, "full"):
            report["full_wv3"] = full(args, work)
            report["full_wv3_scene"] = {"sensor": "wv3", "size": args.fr_size, "seed": args.fr_seed}
    report["seconds"] = round(time.perf_counter() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    if "reduced_quickbird_south" in report:
        print(markdown("Reduced resolution, real QuickBird Toulouse, southern half (unseen), cut 21",
                       report["reduced_quickbird_south"],
                       [("Q2n", "Q4"), ("SAM", "SAM"), ("ERGAS", "ERGAS"), ("SCC", "SCC")]))
        print()
    if "full_wv3" in report:
        print(markdown(f"Full resolution, generated WV3 scene (seed {args.fr_seed}, {args.fr_size} px, unseen)",
                       report["full_wv3"], [("HQNR", "HQNR"), ("D_lambda_K", "D_lambda (Khan)"), ("D_s", "D_s"),
                                            ("SAM_truth", "SAM vs truth"), ("ERGAS_truth", "ERGAS vs truth")]))
    print(f"\n{report['seconds']:.0f} s in all, {args.threads} thread(s); JSON: {args.out}")


if __name__ == "__main__":
    main()
