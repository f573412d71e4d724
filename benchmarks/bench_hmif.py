#!/usr/bin/env python
"""Benchmark ``spatialx hmif`` (PRISMA HE5 + Sentinel-2 band COGs): wall time and peak RSS against scene size, and
the PRISMA reader's throughput against h5py reading the same windows directly.

1. **Memory vs size**: ``spatialx hmif hs.he5 ms/ out.tif -m METHOD`` on synthetic scenes of ``--sizes`` MS pixels
   per side (``--bands`` PRISMA bands; the issue's scene is 3000 px, 230 bands), each run as a child process
   (wall time and its own peak RSS from ``wait4``, as in ``bench_pansharpen.py``). Peak RSS must stay flat as the
   scene grows.
2. **Reader throughput**: every 512 x 512 HS window of the largest scene read through ``PrismaReader`` (reflectance,
   band order by wavelength, validity from the error matrices) against raw ``h5py`` hyperslabs of the same windows
   of both cubes (DN only): Mpx x bands per second, and the ratio.

Scenes are cached in ``--workdir`` (``hmif-<size>-<bands>/``). Results print as Markdown and go to
``<workdir>/hmif-results.json``. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pansharpen import DEFAULT_WORKDIR, child_env, run_child

REPO = Path(__file__).resolve().parent.parent


def ensure_scene(workdir: Path, size: int, bands: int, seed: int) -> dict[str, Path]:
    from spatialx.sample import write_hmif_sample

    directory = workdir / f"hmif-{size}-{bands}"
    paths = {"hs": directory / "hs.he5", "ms": directory / "ms"}
    if not paths["hs"].exists() or not (paths["ms"] / "B02.tif").exists():
        started = time.perf_counter()
        written = write_hmif_sample(directory, size=size, bands=bands, seed=seed, overwrite=True)
        for extra in ("hs_tif", "reference"):  # not needed here: only the product files are read
            written[extra].unlink(missing_ok=True)
        print(f"scene {size} px x {bands} bands written in {time.perf_counter() - started:.0f} s", flush=True)
    return paths


def measure_fusion(paths: dict[str, Path], workdir: Path, method: str, threads: int, tile: int | None) -> dict:
    out = workdir / f"hmif-{method}.tif"
    out.unlink(missing_ok=True)
    cmd = [str(Path(sys.executable).with_name("spatialx")), "hmif", paths["hs"], paths["ms"], out, "-m", method,
           "-j", str(threads), "-q", "--overwrite", *(["--tile", str(tile)] if tile else [])]
    step = run_child(f"hmif {method}", cmd, child_env(threads), workdir / "hmif.log")
    size = out.stat().st_size
    out.unlink(missing_ok=True)
    out.with_suffix(".qml").unlink(missing_ok=True)
    return {"wall_s": round(step.seconds, 2), "cpu_s": round(step.cpu_seconds, 2),
            "peak_rss_mib": round(step.peak_rss_mib, 1), "output_mib": round(size / 2**20, 1)}


def measure_reader(he5: Path, window: int = 512) -> dict:
    import h5py
    from rasterio.windows import Window

    from spatialx.io.prisma import open_prisma

    info = open_prisma(he5)
    height, width = info.grid.shape
    windows = [Window(c, r, min(window, width - c), min(window, height - r))
               for r in range(0, height, window) for c in range(0, width, window)]
    pixels = sum(int(w.width * w.height) for w in windows) * info.count
    reader = info.reader()
    started = time.perf_counter()
    for w in windows:
        reader.read(w)
        reader.read_valid(w)
    ours = time.perf_counter() - started
    reader.close()
    fields = "HDFEOS/SWATHS/PRS_L2D_HCO/Data Fields"
    started = time.perf_counter()
    with h5py.File(he5, "r") as handle:
        cubes = [handle[f"{fields}/{name}"] for name in ("VNIR_Cube", "SWIR_Cube")]
        for w in windows:
            r0, c0 = int(w.row_off), int(w.col_off)
            for cube in cubes:  # (rows, bands, cols)
                cube[r0: r0 + int(w.height), :, c0: c0 + int(w.width)]
    raw = time.perf_counter() - started
    return {"windows": len(windows), "bands": info.count, "spatialx_mpx_bands_per_s": round(pixels / ours / 1e6, 1),
            "h5py_mpx_bands_per_s": round(pixels / raw / 1e6, 1), "spatialx_over_h5py_time": round(ours / raw, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[600, 1500, 3000],
                        help="MS pixels per side (multiples of 3)")
    parser.add_argument("--bands", type=int, default=230, help="PRISMA bands of the scenes")
    parser.add_argument("--method", default="gsa")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tile", type=int, default=None, help="fusion tile (default: spatialx's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results: dict = {"method": args.method, "bands": args.bands, "threads": args.threads, "sizes": {}}
    print("| MS px | HS px | wall (s) | CPU (s) | peak RSS (MiB) | output (MiB) |\n|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        paths = ensure_scene(args.workdir, size, args.bands, args.seed)
        row = measure_fusion(paths, args.workdir, args.method, args.threads, args.tile)
        results["sizes"][size] = row
        print(f"| {size} | {size // 3} | {row['wall_s']} | {row['cpu_s']} | {row['peak_rss_mib']} | "
              f"{row['output_mib']} |", flush=True)
    largest = ensure_scene(args.workdir, max(args.sizes), args.bands, args.seed)
    results["reader"] = measure_reader(largest["hs"])
    print(json.dumps(results["reader"]))
    (args.workdir / "hmif-results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
