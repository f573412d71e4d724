"""LE-Mamba adapted on the real QuickBird pair vs the classical methods, and a seam check (issue: the first network).

    .venv/bin/python benchmarks/lemamba_quickbird.py --steps 50 --threads 2

1. Reduced resolution (Wald, as `spatialx evaluate reduced`): LE-Mamba trained from scratch on the reduced inputs
   only (never the reference) for --steps steps, then judged with every classical method: Q4, SAM, ERGAS, SCC, and
   the CPU time the adaptation took.
2. Seam check: the adapted weights fuse the full-resolution pair with two tile sizes; the maximum difference
   between the two and, for each, the ratio of the mean absolute gradient across tile boundaries to elsewhere
   (1.0 = no seam).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
import torch

from spatialx.evaluate import _load, score_reduced
from spatialx.methods import create_method, list_methods
from spatialx.methods.base import fuse_arrays
from spatialx.metrics import reduced_indices
from spatialx.models.weights import save_weights
from spatialx.protocols import reduce_scene
from spatialx.sensors import get_sensor
from spatialx.tasks.pansharpen import pansharpen

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def boundary_gradient_ratio(image: np.ndarray, tile: int) -> float:
    """Mean |horizontal and vertical difference| on tile boundaries over the mean elsewhere."""
    dx = np.abs(np.diff(image, axis=2)).mean(axis=0)
    dy = np.abs(np.diff(image, axis=1)).mean(axis=0)
    cols = np.arange(tile - 1, dx.shape[1], tile)
    rows = np.arange(tile - 1, dy.shape[0], tile)
    on = np.concatenate([dx[:, cols].ravel(), dy[rows, :].ravel()])
    off_x = np.delete(dx, cols, axis=1).ravel()
    off_y = np.delete(dy, rows, axis=0).ravel()
    return float(on.mean() / np.concatenate([off_x, off_y]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiles", type=int, nargs=2, default=(128, 200))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/lemamba_quickbird.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    pan, xs = SHARED / "qb_toulouse_pan.tif", SHARED / "qb_toulouse_xs.tif"
    sensor = get_sensor("qb")

    scene = _load(pan, xs, sensor, None)
    reduced = reduce_scene(scene.pan, scene.ms, sensor.mtf_gains, 4, scene.pan_to_ms)
    table = {m.name: score_reduced(reduced, m.name, sensor) for m in list_methods("pansharpen")
             if m.kind == "classical"}
    # scratch: a fresh network (without it, adaptation would fine-tune the bundled weights, which saw this scene's
    # northern half; benchmarks/default_weights_vs_scratch.py compares the two on the southern half)
    method = create_method("lemamba", sensor, 4, adapt_steps=args.steps, adapt_patch=args.patch,
                           adapt_batch=args.batch, seed=0, scratch=True, adapt_loss="reduced")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    fused = fuse_arrays(method, {"pan": reduced.pan, "ms": reduced.ms_up}, {"ms": reduced.ms_lr})
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    table["lemamba (adapted)"] = reduced_indices(reduced.reference, fused, ratio=4, max_value=sensor.max_value)
    adaptation = method.adaptation

    with tempfile.TemporaryDirectory() as tmp:
        weights = save_weights(method.model, Path(tmp) / "adapted.safetensors",
                               {"architecture": "lemamba", "config": method.card["config"], "sensor": "qb"})
        outputs = []
        for tile in args.tiles:
            result = pansharpen(pan, xs, Path(tmp) / f"t{tile}.tif", sensor, "lemamba", tile=tile,
                                dtype="float32", method_options={"weights": weights}, workers=args.threads)
            with rasterio.open(result.output) as src:
                outputs.append(src.read().astype(np.float64))
        seams = {"tiles": list(args.tiles), "max_abs_difference_dn": float(np.abs(outputs[0] - outputs[1]).max()),
                 "mean_abs_difference_dn": float(np.abs(outputs[0] - outputs[1]).mean()),
                 "boundary_gradient_ratio": {str(t): boundary_gradient_ratio(o, t)
                                             for t, o in zip(args.tiles, outputs, strict=True)}}

    report = {"reduced": {k: {i: v[i] for i in ("Q2n", "SAM", "ERGAS", "SCC")} for k, v in table.items()},
              "adaptation": adaptation, "fuse_cpu_seconds": cpu, "fuse_wall_seconds": wall,
              "threads": args.threads, "seams": seams}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print("| method | Q4 | SAM | ERGAS | SCC |\n|---|---:|---:|---:|---:|")
    for name, values in report["reduced"].items():
        print(f"| {name} | {values['Q2n']:.4f} | {values['SAM']:.4f} | {values['ERGAS']:.4f} | {values['SCC']:.4f} |")
    print(f"\nadaptation: {adaptation['steps']} steps, patch {adaptation['patch']}, batch {adaptation['batch_size']}, "
          f"{adaptation['seconds']:.1f} s wall; adapt+fuse {cpu:.1f} s CPU / {wall:.1f} s wall, {args.threads} threads")
    print(f"seams: {json.dumps(seams)}")


if __name__ == "__main__":
    main()
