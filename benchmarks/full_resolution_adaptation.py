"""Full-resolution scene adaptation (``--adapt-loss full``) against reduced-resolution adaptation and the classical
methods, judged at full resolution (issue #13).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/full_resolution_adaptation.py --threads 1

Two scenes: a generated WorldView-3 scene (``spatialx sample --sensor wv3 --size 256 --seed 4242``) and a crop of the
real QuickBird Toulouse pair's southern half (PAN rows from 252, 248 x 256 px: the southern half has 250 rows; the
bundled 4-band weights saw the northern half; its XS is delivered on the PAN grid). For each: HQNR, Khan's D_lambda
and D_s (:func:`spatialx.evaluate.evaluate_full`) of ``exp``, the classical methods, and ``pnn`` / ``lemamba`` with
the bundled weights as they are, after ``--adapt-steps N --adapt-loss reduced`` and after ``--adapt-loss full``
(CPU defaults: 32 px patches, batch 4). Prints a Markdown table and writes JSON to ``--out``.
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
CLASSICAL = ("exp", "mtf-glp-fs", "awlp", "gsa", "bdsd")


def crop(source: Path, out: Path, row: int, rows: int, cols: int) -> Path:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(source) as src:
            window = Window(0, row, cols, rows)
            profile = {**src.profile, "height": rows, "width": cols, "transform": src.window_transform(window)}
            target = out / f"{source.stem}_south_crop.tif"
            with rasterio.open(target, "w", **profile) as dst:
                dst.write(src.read(window=window))
                dst.descriptions = src.descriptions
    return target


def rows_for(networks: list[str], steps: int, scratch: list[str], kinds: tuple[str, ...] = ("reduced", "full")
             ) -> list[tuple[str, str, dict[str, Any]]]:
    rows = [(name, name, {}) for name in CLASSICAL]
    for network in networks:
        rows.append((f"{network} bundled, 0 steps", network, {}))
        for kind in kinds:
            rows.append((f"{network} + {steps} steps {kind}", network, {"adapt_steps": steps, "adapt_loss": kind}))
    for network in scratch:
        rows.append((f"{network} scratch ({'tiny' if network == 'spaxfus' else 'default'}), {steps} steps full",
                     network, {"adapt_steps": steps, "adapt_loss": "full", "scratch": True,
                               **({"config": "tiny"} if network == "spaxfus" else {})}))
    return rows


def run_scene(name: str, pan: Path, ms: Path, sensor: str, rows, work: Path, tile: int = 256
              ) -> dict[str, dict[str, Any]]:
    from spatialx.evaluate import evaluate_full
    from spatialx.tasks.pansharpen import pansharpen

    table: dict[str, dict[str, Any]] = {}
    for label, method, options in rows:
        options = dict(options)
        if options.get("config"):
            options.pop("scratch", None)
        output = work / f"{name}_{len(table)}.tif"
        began = time.perf_counter()
        try:
            pansharpen(pan, ms, output, sensor, method, tile=tile, dtype="float32", overwrite=True,
                       method_options=options)
        except Exception as exc:
            print(f"{name}: {label}: failed: {exc}", flush=True)
            continue
        seconds = round(time.perf_counter() - began, 1)
        values = dict(evaluate_full(pan, ms, output, sensor))
        table[label] = {"HQNR": values["HQNR"], "D_lambda_K": values["D_lambda_K"], "D_s": values["D_s"],
                        "seconds": seconds}
        print(f"{name}: {label}: HQNR {values['HQNR']:.4f} D_lambda_K {values['D_lambda_K']:.4f} "
              f"D_s {values['D_s']:.4f} ({seconds} s)", flush=True)
    return table


def markdown(tables: dict[str, dict[str, dict[str, Any]]]) -> str:
    names = list(tables)
    labels = list(dict.fromkeys(label for table in tables.values() for label in table))
    head = "| method | " + " | ".join(f"{n} HQNR | D_lambda(K) | D_s" for n in names) + " |"
    lines = [head, "|---|" + "---:|---:|---:|" * len(names)]
    for label in labels:
        cells = []
        for n in names:
            v = tables[n].get(label)
            cells += ["-"] * 3 if v is None else [f"{v['HQNR']:.4f}", f"{v['D_lambda_K']:.4f}", f"{v['D_s']:.4f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=["pnn", "lemamba"])
    parser.add_argument("--scratch", nargs="*", default=[], help="networks also trained from scratch (full loss)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--kinds", nargs="+", default=["reduced", "full"], choices=("reduced", "full", "both"),
                        help="the --adapt-loss kinds to run for each network")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tile", type=int, default=256,
                        help="tile size of every fusion (256: each scene in one tile; SpaXFus's bundled weights, "
                             "trained on 32 px patches, fuse better in 64 px tiles)")
    parser.add_argument("--scenes", nargs="+", default=["wv3", "qb"], choices=("wv3", "qb"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/full_resolution_adaptation.json"))
    args = parser.parse_args()
    from spatialx.runtime import use_threads

    use_threads(args.threads)
    warnings.simplefilter("ignore")
    from spatialx.sample import write_sample

    rows = rows_for(args.networks, args.steps, args.scratch, tuple(args.kinds))
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "wv3" in args.scenes:
            scene = write_sample(work / "wv3", sensor="wv3", size=256, seed=4242, overwrite=True)
            tables["WV3 (generated, 256 px)"] = run_scene("wv3", scene["pan"], scene["ms"], "wv3", rows, work,
                                                          args.tile)
        if "qb" in args.scenes:
            pan = crop(SHARED / "qb_toulouse_pan.tif", work, 252, 248, 256)
            xs = crop(SHARED / "qb_toulouse_xs.tif", work, 252, 248, 256)
            tables["QB Toulouse south (248 x 256 px)"] = run_scene("qb", pan, xs, "qb", rows, work, args.tile)
    report = {"steps": args.steps, "tile": args.tile, "threads": args.threads, "networks": args.networks,
              "scratch": args.scratch,
              "seconds": round(time.perf_counter() - began, 1), "tables": tables}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(markdown(tables))
    print(f"wrote {args.out} ({report['seconds']} s)")


if __name__ == "__main__":
    main()
