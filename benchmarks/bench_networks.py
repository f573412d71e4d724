#!/usr/bin/env python
"""Benchmark the fusion networks on the CPU: end-to-end ``spatialx pansharpen`` and the bare network.

For every network in the registry (:func:`spatialx.models.registry.list_models`, pansharpening ones), on a generated
WorldView-3 scene (``spatialx.sample.write_sample``, cached under ``benchmarks/out/scene-wv3-<size>/`` as
``bench_pansharpen.py`` does):

* weights: the registered ``wv3`` configuration, randomly initialised (seed 0), saved with
  :func:`spatialx.models.weights.save_weights` and a card with the fields ``spatialx train`` writes;
* end to end: ``spatialx pansharpen PAN MS OUT -s wv3 -m NET --weights W -j THREADS -q`` as a child process
  (wall time and its own peak RSS, ``bench_pansharpen.run_child``), Mpx/s of PAN-grid pixels;
* the network alone: one ``--tile``-sized batch of random inputs through ``model(lms, pan)`` under
  ``torch.inference_mode`` on ``--threads`` threads (best of ``--repeat``), Mpx/s and achieved GFLOP/s with the
  FLOPs of :mod:`spatialx.models.flops` (1 MAC = 1 FLOP) at that size;
* a float32 ``torch.matmul`` (2048 x 2048) on the same threads in the same run, GFLOP/s counted the same way
  (MACs), as the machine's yardstick;
* the selective scan's own yardstick, in the same run (:func:`scan_yardsticks`): the CPU kernels' vectorised exp
  (exps/s) and the SS2D inference kernel (ns per state update, every thread busy). With the network's state updates
  per pixel (its ``ssm`` FLOPs / 9, :mod:`spatialx.models.flops`), ``1 / (updates per px x ns per update)`` is the
  most Mpx/s its scans allow at this kernel speed, were everything else free (``scan_ceiling_mpx_per_s``).

Prints a Markdown table and writes ``benchmarks/out/networks.json``. Usage::

    .venv/bin/python benchmarks/bench_networks.py                       # 1024 px, 2 threads
    .venv/bin/python benchmarks/bench_networks.py --sizes 1024 4096 --networks lemamba
    .venv/bin/python benchmarks/bench_networks.py --skip-cli --onnx                 # ORT vs PyTorch, bare network
    python3 benchmarks/bench_networks.py --device cuda --tile 1024 --batch 2 --skip-cli   # a GPU (scripts/gpu_check.sh)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from spatialx.runtime import configure_memory  # noqa: E402

configure_memory()  # as a network method does, before torch's first allocation

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_pansharpen import child_env, ensure_scene, run_child  # noqa: E402

from spatialx.models.flops import flop_breakdown, network_inputs  # noqa: E402
from spatialx.models.registry import create_model, list_models  # noqa: E402
from spatialx.models.weights import save_weights  # noqa: E402


def make_weights(name: str, path: Path) -> Path:
    """A randomly initialised ``wv3`` network saved as ``spatialx train`` would (same card fields)."""
    from spatialx.sensors import get_sensor

    spec = next(s for s in list_models() if s.name == name)
    config_name, kwargs = spec.config_for("pansharpen", 8, 1, "wv3", ratio=4)
    torch.manual_seed(0)
    model = create_model(name, config_name, **kwargs)
    profile = get_sensor("wv3")
    card = {"architecture": name, "config": kwargs, "config_name": config_name, "task": "pansharpen",
            "roles": ["ms", "pan"], "sensor": profile.key, "bands": list(profile.band_names),
            "max_value": profile.max_value, "ratio": 4, "parameters": sum(p.numel() for p in model.parameters()),
            "training": {"data": "none: random initialisation (benchmark)", "steps": 1, "seed": 0},
            "validation": None}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_weights(model, path, card)
    return path


def best(fn, repeat: int, device: str = "cpu") -> float:
    def timed() -> float:
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    timed()
    return min(timed() for _ in range(repeat))


def matmul_gflops(repeat: int, device: str = "cpu") -> float:
    a, b = torch.randn(2048, 2048, device=device), torch.randn(2048, 2048, device=device)
    return 2048 ** 3 / best(lambda: a @ b, repeat, device) / 1e9


def scan_yardsticks(repeat: int, threads: int) -> dict[str, float]:
    """The CPU scan kernels' speed here: their exp over 2^24 float32 (exps/s) and the SS2D inference kernel on one
    direction of a 128 x 128 image (d_inner 64, d_state 16, dt_rank 2, LE-Mamba's local block), ns per update."""
    import numba

    from spatialx.models import _scan_kernels as kernels
    from spatialx.models.scan_cpu import channel_block

    numba.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = -rng.random(1 << 24, dtype=np.float32) * 4
    out = np.empty_like(x)
    exp_seconds = best(lambda: kernels.exp_array(x, out), repeat)
    batch, size, dim, n_state, rank = 1, 128, 64, 16, 2
    length = size * size
    proj = rng.standard_normal((batch, length, rank + 2 * n_state), dtype=np.float32)
    u = rng.standard_normal((batch, length, dim), dtype=np.float32)
    dt_weight = rng.standard_normal((rank, dim), dtype=np.float32) * 0.1
    dt_bias = np.full(dim, -3.0, dtype=np.float32)
    A = -np.tile(np.arange(1, n_state + 1, dtype=np.float32)[:, None], (1, dim))
    D = np.ones(dim, dtype=np.float32)
    state = np.zeros((batch, dim, n_state), dtype=np.float32)
    y = np.zeros((batch, length, dim), dtype=np.float32)
    block = channel_block(dim, n_state, batch, threads)  # as ss2d_direction_scan picks it
    scan_seconds = best(lambda: kernels.forward_ss2d(proj, rank, dt_weight, dt_bias, u, A, D, state, y, size, size, 0,
                                                     block), repeat)
    return {"exp_per_s": round(x.size / exp_seconds), "ss2d_ns_per_update": round(
        scan_seconds * 1e9 / (batch * length * dim * n_state), 3)}


#: A full WorldView-3 scene's PAN (40k x 40k px): the projection the issue asks for.
SCENE_PX = 40_000 ** 2


def network_figures(name: str, tile: int, repeat: int, device: str = "cpu", batch: int = 1, *, threads: int = 2,
                    onnx_dir: Path | None = None) -> dict[str, object]:
    """The bare network on ``batch`` tiles of ``tile`` px: on CUDA under bfloat16 autocast, as the pipeline runs it
    there, with the peak GPU memory and the projected time of a 40k x 40k scene; with ``onnx_dir``, ONNX Runtime's
    figures on the same batch (:func:`onnx_figures`)."""
    model = create_model(name, "wv3").eval()
    lms, pan = network_inputs(model, tile, batch=batch)
    counts = flop_breakdown(model, (lms[:1], pan[:1]))
    gflop = counts["total"] / 1e9 * batch
    model, lms, pan = model.to(device), lms.to(device), pan.to(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        seconds = best(lambda: model(lms, pan), repeat, device)
    pixels = batch * tile * tile
    figures = {"tile": tile, "batch": batch, "device": device, "seconds": round(seconds, 3),
               "mpx_per_s": round(pixels / seconds / 1e6, 4), "gflop": round(gflop, 3),
               "mflop_per_px": round(gflop * 1e3 / pixels, 3), "gflop_per_s": round(gflop / seconds, 2),
               "scan_updates_per_px": round(counts["ssm"] / 9 / (tile * tile)),
               "scene_40k_hours": round(SCENE_PX / (pixels / seconds) / 3600, 2)}
    if device == "cuda":
        figures["gpu_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if onnx_dir is not None:
        figures["onnx"] = onnx_figures(name, model, lms, pan, seconds, threads, repeat, onnx_dir)
    return figures


def onnx_figures(name: str, model: torch.nn.Module, lms: torch.Tensor, pan: torch.Tensor, torch_seconds: float,
                 threads: int, repeat: int, workdir: Path) -> dict[str, object]:
    """ONNX Runtime (CPU) on the batch PyTorch just ran, or why the network does not export."""
    from spatialx.errors import SpatialxError
    from spatialx.models.onnx import OnnxRunner, export_onnx

    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{name}-wv3-random.onnx"
    card = {"architecture": name, "config": {"bands": int(lms.shape[1]), "guide_bands": int(pan.shape[1])}}
    try:
        export_onnx(model, card, path, tile=min(int(lms.shape[-1]), 64), check=False)
    except SpatialxError as exc:
        return {"exported": False, "why": str(exc)}
    runner = OnnxRunner(path, threads=threads)
    arrays = [lms.numpy(), pan.numpy()]
    seconds = best(lambda: runner.run(arrays), repeat)
    with torch.inference_mode():
        expected = model(lms, pan).numpy()
    pixels = lms.shape[0] * lms.shape[-1] * lms.shape[-2]
    return {"exported": True, "seconds": round(seconds, 3), "mpx_per_s": round(pixels / seconds / 1e6, 4),
            "ort_over_torch": round(torch_seconds / seconds, 2),
            "max_abs_diff": float(np.abs(runner.run(arrays) - expected).max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024], help="PAN sizes of the scenes (px)")
    parser.add_argument("--networks", nargs="+", default=None, help="default: every pansharpening network")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tile", type=int, default=256, help="tile size of the bare-network figure")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--skip-cli", action="store_true", help="only the bare-network figures")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the bare network runs (cuda: bfloat16 autocast; the CLI rows follow --device too)")
    parser.add_argument("--batch", type=int, default=1, help="tiles per bare-network call")
    parser.add_argument("--onnx", action="store_true", help="also ONNX Runtime (CPU) on the bare-network batch")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    names = args.networks or [s.name for s in list_models() if "pansharpen" in s.tasks]
    workdir = args.workdir
    log = workdir / "logs" / "networks.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {"threads": args.threads, "torch": torch.__version__,
                                  "machine": platform.processor() or platform.machine(),
                                  "device": args.device,
                                  "matmul_gflop_per_s": round(matmul_gflops(args.repeat, args.device), 1),
                                  "networks": {}}
    if args.device == "cpu":
        results["scan"] = scan_yardsticks(args.repeat, args.threads)
    rows = []
    for name in names:
        onnx_dir = workdir / "onnx" if args.onnx and args.device == "cpu" else None
        entry: dict[str, object] = {"network": network_figures(name, args.tile, args.repeat, args.device, args.batch,
                                                               threads=args.threads, onnx_dir=onnx_dir),
                                    "cli": {}}
        net = entry["network"]
        if "scan" in results and net["scan_updates_per_px"]:
            px_seconds = net["scan_updates_per_px"] * results["scan"]["ss2d_ns_per_update"] * 1e-9
            net["scan_ceiling_mpx_per_s"] = round(1e-6 / px_seconds, 4)
        if not args.skip_cli:
            weights = make_weights(name, workdir / "weights" / f"{name}-wv3-random.safetensors")
            for size in args.sizes:
                scene = ensure_scene(workdir, "wv3", size, args.seed)
                out = workdir / f"networks-{name}-{size}.tif"
                cmd = [sys.executable, "-m", "spatialx", "pansharpen", scene["pan"], scene["ms"], out, "-s", "wv3",
                       "-m", name, "--weights", weights, "-j", args.threads, "-q", "--overwrite", "--device",
                       args.device]
                step = run_child(f"{name} {size}", cmd, child_env(args.threads), log)
                out.unlink(missing_ok=True)
                entry["cli"][str(size)] = {"seconds": round(step.seconds, 2), "cpu_seconds": round(step.cpu_seconds, 2),
                                           "peak_rss_mib": round(step.peak_rss_mib, 1),
                                           "mpx_per_s": round(size * size / step.seconds / 1e6, 4),
                                           "load_before": step.load_before, "load_after": step.load_after}
                rows.append((name, f"{size}", entry["cli"][str(size)]))
        results["networks"][name] = entry  # type: ignore[index]
        print(f"{name}: {net['tile']} px tile {net['seconds']} s, {net['mpx_per_s']} Mpx/s, "
              f"{net['mflop_per_px']} MFLOP/px, {net['gflop_per_s']} GFLOP/s", flush=True)
        if "onnx" in net:
            ort = net["onnx"]
            print(f"{name} onnxruntime: " + (f"{ort['seconds']} s, {ort['mpx_per_s']} Mpx/s, ORT/PyTorch "
                                             f"{ort['ort_over_torch']}x, max |diff| {ort['max_abs_diff']:.2e}"
                                             if ort["exported"] else f"not exported ({ort['why']})"), flush=True)
    print(f"\ntorch matmul: {results['matmul_gflop_per_s']} GFLOP/s (MACs) on {args.threads} threads")
    if "scan" in results:
        print(f"scan kernels: exp {results['scan']['exp_per_s'] / 1e6:.0f} M/s, SS2D "
              f"{results['scan']['ss2d_ns_per_update']} ns per state update on {args.threads} threads")
    print("\n| network | bare network Mpx/s | scan ceiling Mpx/s | MFLOP/px | GFLOP/s (% of matmul) | PAN px "
          "| CLI wall (s) | CLI Mpx/s | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    mm = results["matmul_gflop_per_s"]
    for name in names:
        net = results["networks"][name]["network"]  # type: ignore[index]
        cli = results["networks"][name]["cli"] or {"-": {}}  # type: ignore[index]
        for size, fig in cli.items():
            print(f"| {name} | {net['mpx_per_s']} | {net.get('scan_ceiling_mpx_per_s', '-')} | "
                  f"{net['mflop_per_px']} | {net['gflop_per_s']} "
                  f"({100 * net['gflop_per_s'] / mm:.0f} %) | {size} | {fig.get('seconds', '-')} | "
                  f"{fig.get('mpx_per_s', '-')} | {fig.get('peak_rss_mib', '-')} |")
    path = workdir / "networks.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
