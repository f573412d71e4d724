#!/usr/bin/env python
"""The threads scheduler against a dask LocalCluster on the same scene: wall time, and whether the bytes agree.

Each configuration runs ``spatialx pansharpen`` as a child process on a synthetic scene (``write_sample``, cached
in ``--workdir``), so that the cluster's start (worker processes importing spatialx) is in the figure, as an operator
sees it. ``--threads`` threads in the threads run; ``--processes`` worker processes of ``--threads //
--processes`` threads (at least 1) in the cluster run. Prints a Markdown table and writes ``results-cluster.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="PAN pixels per side")
    parser.add_argument("--method", default="gsa")
    parser.add_argument("--sensor", default="wv3")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()

    from spatialx.sample import write_sample

    scene = args.workdir / f"scene-{args.sensor}-{args.size}"
    if not (scene / "pan.tif").exists():
        write_sample(scene, sensor=args.sensor, size=args.size)
    per_worker = max(1, args.threads // args.processes)
    runs = {"threads": ["-j", str(args.threads)],
            f"local:{args.processes}": ["-j", str(per_worker), "--cluster", f"local:{args.processes}"]}
    results = {}
    for name, extra in runs.items():
        out = args.workdir / f"cluster-{args.method}-{name.replace(':', '')}.tif"
        best = float("inf")
        for _ in range(args.repeat):
            command = [sys.executable, "-m", "spatialx", "pansharpen", str(scene / "pan.tif"), str(scene / "ms.tif"),
                       str(out), "-s", args.sensor, "-m", args.method, "--overwrite", "-q", *extra]
            started = time.perf_counter()
            subprocess.run(command, check=True)
            best = min(best, time.perf_counter() - started)
        results[name] = {"seconds": round(best, 2), "sha256": _sha(out)}
    identical = len({r["sha256"] for r in results.values()}) == 1
    print(f"| {args.method}, {args.size} px, {args.threads} threads | wall s | bytes |")
    print("| --- | --- | --- |")
    for name, result in results.items():
        print(f"| {name} | {result['seconds']} | {'identical' if identical else result['sha256'][:12]} |")
    (args.workdir / "results-cluster.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                                  "results": results, "identical": identical},
                                                                 indent=2) + "\n")


if __name__ == "__main__":
    main()
