"""A network's tile context: how far tiled output is from the whole image in one tile, per halo and cross-fade.

    .venv/bin/python benchmarks/network_tile_context.py --network lemamba --size 1024 --threads 2
    .venv/bin/python benchmarks/network_tile_context.py --network rwkvfusion --size 1024
    .venv/bin/python benchmarks/network_tile_context.py --network spaxfus --size 512

The global scans (LE-Mamba, SpaXFus) and WKV recurrences (RWKVFusion) see the whole tile, so no halo makes tiles
exact; this measures what each context costs (seconds) and buys (|tiled - whole| in DN) with the bundled weights,
on a generated WorldView-3 scene and, when ``../shared`` is present, on the real QuickBird pair. Every configuration
runs tiles of the method's processed size (its CPU core + 2 overlap + 2 halo), so their memory is the same. Errors
inside a frame of 32 px are listed apart: at the scene's own edges a tile's halo is reflected context, which a
halo of 0 removes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parent))
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def configs(processed: int) -> list[tuple[int, int, int]]:
    """(core tile, halo, overlap) of the same processed size (core + 2 halo + 2 overlap)."""
    return [(processed - 128, 32, 32), (processed - 96, 16, 32), (processed - 80, 8, 32), (processed - 64, 16, 16),
            (processed - 64, 0, 32)]


def fuse(method: type, pan: str, ms: str, out: Path, sensor: str, tile: int, halo: int,
         overlap: int) -> tuple[np.ndarray, float]:
    """Fuse with ``method`` (a network method's class) at this tile, halo and overlap; (output, seconds)."""
    from spatialx.tasks.pansharpen import pansharpen

    default = method.halo
    method.halo = halo
    try:
        start = time.perf_counter()
        pansharpen(pan, ms, out, sensor, method.name, tile=tile, overlap=overlap, workers=1, overwrite=True)
        seconds = time.perf_counter() - start
    finally:
        method.halo = default
    with rasterio.open(out) as dataset:
        return dataset.read().astype(np.float64), seconds


def compare(network: str, name: str, pan: str, ms: str, sensor: str, size: int, workdir: Path) -> list[dict]:
    from spatialx.methods.registry import method_factory

    method = method_factory(network, "pansharpen")
    whole, seconds = fuse(method, pan, ms, workdir / f"{name}-whole.tif", sensor, size + 64, 32, 32)
    rows = [{"scene": name, "config": "whole image, one tile", "seconds": round(seconds, 1)}]
    for tile, halo, overlap in configs(method.cpu_tile + 2 * (method.halo + method.default_overlap)):
        label = f"{tile} + {halo} halo + {overlap} overlap"
        tiled, seconds = fuse(method, pan, ms, workdir / f"{name}-{tile}-{halo}-{overlap}.tif", sensor, tile, halo,
                              overlap)
        diff = np.abs(tiled - whole)
        inside = diff[:, 32:-32, 32:-32]
        rows.append({"scene": name, "config": label, "seconds": round(seconds, 1),
                     "context_cost": round(((tile + 2 * overlap + 2 * halo) / tile) ** 2, 2),
                     "mean_abs_dn": round(float(diff.mean()), 3), "p99_dn": float(np.percentile(diff, 99)),
                     "max_abs_dn": float(diff.max()), "max_abs_dn_inside_32px": float(inside.max())})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="lemamba", choices=("lemamba", "rwkvfusion", "spaxfus"),
                        help="a network method with bundled weights and a CPU tile")
    parser.add_argument("--size", type=int, default=1024, help="PAN size of the generated WV3 scene (px)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if args.size < 128:
        parser.error(f"--size {args.size}: at least 128 px (errors are also reported inside a 32 px frame)")
    if args.workdir is not None and not args.workdir.is_dir():
        parser.error(f"--workdir {args.workdir}: not a directory (create it, or leave it out for a temporary one)")
    from spatialx.runtime import use_threads

    use_threads(args.threads)
    import bench_pansharpen

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        scene = bench_pansharpen.ensure_scene(workdir, "wv3", args.size, 0)
        rows = compare(args.network, "wv3-generated", scene["pan"], scene["ms"], "wv3", args.size, workdir)
        if SHARED.is_dir():
            rows += compare(args.network, "quickbird-toulouse", str(SHARED / "qb_toulouse_pan.tif"),
                            str(SHARED / "qb_toulouse_xs.tif"), "qb", 500, workdir)
    print("| scene | tiles | s | context cost | mean abs DN | p99 DN | max DN | max DN inside 32 px |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(str(row.get(k, "-")) for k in ("scene", "config", "seconds", "context_cost",
                                                                 "mean_abs_dn", "p99_dn", "max_abs_dn",
                                                                 "max_abs_dn_inside_32px")) + " |")


if __name__ == "__main__":
    main()
