#!/usr/bin/env python
"""Benchmark the selective scan: the sequential reference loop vs the chunked pure-PyTorch path (and mamba_ssm).

Times :func:`spatialx.models.scan.selective_scan_reference` (a Python loop over the ``L`` steps),
:func:`spatialx.models.scan.selective_scan_chunked` (the pure-PyTorch path) and, when numba imports,
:func:`spatialx.models.scan.selective_scan_compiled` (the CPU default) on one problem, by default ``L = 128 * 128``
(one 128 x 128 image scanned in one direction), ``batch 1, dim 64, N 16``, with everything an SS2D layer passes:
``D``, ``z``, ``delta_bias`` and ``delta_softplus``. Forward is timed under ``torch.no_grad()``; forward+backward
is the forward with autograd on plus ``backward()`` of a weighted sum of the output and the last state. Figures are
the best of ``--repeat`` runs after one warm-up run (the reference: best of ``--reference-repeat``, no warm-up).

It also reports the largest absolute errors of the chunked path against a float64 run of the reference on the
same data (output, last state and the gradients of u, delta, A, B, C, D, z), unless ``--no-check``.

``--device cuda`` runs on the GPU instead and also times ``mamba_ssm``'s fused kernel when that package imports
(its output is compared with the chunked path's). Usage::

    .venv/bin/python benchmarks/bench_scan.py                     # L = 16384, CPU
    .venv/bin/python benchmarks/bench_scan.py --threads 1         # one intra-op thread
    .venv/bin/python benchmarks/bench_scan.py --chunk 64 --length 4096 --dim 128
    .venv/bin/python benchmarks/bench_scan.py --device cuda --batch 8 --dim 384

Other options: ``--batch``, ``--dim``, ``--state``, ``--block-elements``, ``--seed``, ``--no-reference-backward``
(skip the slow autograd-through-the-loop timing), ``--json PATH`` (also write the figures there).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spatialx.models import scan_cpu
from spatialx.models.scan import (
    mamba_selective_scan_fn,
    selective_scan_chunked,
    selective_scan_compiled,
    selective_scan_reference,
)


def make_problem(batch: int, dim: int, n_state: int, length: int, device: str, seed: int) -> dict[str, torch.Tensor]:
    """Inputs shaped and scaled like an SS2D layer's at initialisation (dt in [1e-3, 0.1], A = -(1..N))."""
    gen = torch.Generator().manual_seed(seed)
    dt = torch.exp(torch.rand(dim, generator=gen) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    problem = {
        "u": torch.randn(batch, dim, length, generator=gen),
        "delta": 0.5 * torch.randn(batch, dim, length, generator=gen),
        "A": -torch.arange(1, n_state + 1, dtype=torch.float32).repeat(dim, 1),
        "B": torch.randn(batch, n_state, length, generator=gen),
        "C": torch.randn(batch, n_state, length, generator=gen),
        "D": torch.ones(dim),
        "z": torch.randn(batch, dim, length, generator=gen),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),  # inverse softplus
    }
    return {k: v.to(device) for k, v in problem.items()}


GRAD_KEYS = ("u", "delta", "A", "B", "C", "D", "z")


def call(fn: Callable, p: dict[str, torch.Tensor], **kw):
    return fn(p["u"], p["delta"], p["A"], p["B"], p["C"], p["D"], p["z"], p["delta_bias"], True, True, **kw)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_time(run: Callable[[], object], repeat: int, device: str, warmup: bool = True) -> float:
    if warmup:
        run()
    sync(device)
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def forward(fn: Callable, p: dict[str, torch.Tensor], **kw) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return call(fn, p, **kw)
    return run


def forward_backward(fn: Callable, p: dict[str, torch.Tensor], weights: tuple[torch.Tensor, torch.Tensor],
                     **kw) -> Callable[[], dict[str, torch.Tensor]]:
    def run():
        leaves = {k: (v.detach().requires_grad_(k in GRAD_KEYS)) for k, v in p.items()}
        out, last = call(fn, leaves, **kw)
        ((out * weights[0]).sum() + (last * weights[1]).sum()).backward()
        return {k: leaves[k].grad for k in GRAD_KEYS}
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=128 * 128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--state", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=None, help="chunk length (default: chosen by the scan)")
    parser.add_argument("--block-elements", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reference-repeat", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-reference-backward", action="store_true")
    parser.add_argument("--no-check", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    device = args.device
    p = make_problem(args.batch, args.dim, args.state, args.length, device, args.seed)
    chunk = args.chunk or "auto"
    kw = {"chunk": args.chunk, "block_elements": args.block_elements}
    gen = torch.Generator().manual_seed(args.seed + 1)
    weights = (torch.randn(args.batch, args.dim, args.length, generator=gen).to(device),
               torch.randn(args.batch, args.dim, args.state, generator=gen).to(device))
    results: dict[str, object] = {
        "problem": {"batch": args.batch, "dim": args.dim, "N": args.state, "L": args.length, "chunk": chunk,
                    "device": device, "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "machine": platform.processor() or platform.machine()},
    }
    print(f"selective scan, batch {args.batch}, dim {args.dim}, N {args.state}, L {args.length}, chunk {chunk}, "
          f"{device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}")

    times: dict[str, float] = {}
    times["reference fwd"] = best_time(forward(selective_scan_reference, p), args.reference_repeat, device,
                                       warmup=False)
    times["chunked fwd"] = best_time(forward(selective_scan_chunked, p, **kw), args.repeat, device)
    if not args.no_reference_backward:
        times["reference fwd+bwd"] = best_time(forward_backward(selective_scan_reference, p, weights),
                                               args.reference_repeat, device, warmup=False)
    times["chunked fwd+bwd"] = best_time(forward_backward(selective_scan_chunked, p, weights, **kw), args.repeat,
                                         device)
    compiled = device == "cpu" and scan_cpu.available()
    if compiled:  # the warm-up run of best_time also compiles (or loads the cached compiled code)
        times["compiled fwd"] = best_time(forward(selective_scan_compiled, p), args.repeat, device)
        times["compiled fwd+bwd"] = best_time(forward_backward(selective_scan_compiled, p, weights), args.repeat,
                                              device)
    kernel = mamba_selective_scan_fn() if device == "cuda" else None
    if kernel is not None:
        times["mamba_ssm fwd"] = best_time(forward(kernel, p), args.repeat, device)
        times["mamba_ssm fwd+bwd"] = best_time(forward_backward(kernel, p, weights), args.repeat, device)
    elif device == "cuda":
        print("mamba_ssm is not importable: its kernel is not timed")
    for name, seconds in times.items():
        print(f"  {name:<20s} {seconds * 1e3:10.1f} ms")
    speedups = {"fwd": times["reference fwd"] / times["chunked fwd"]}
    if "reference fwd+bwd" in times:
        speedups["fwd+bwd"] = times["reference fwd+bwd"] / times["chunked fwd+bwd"]
    for name, ratio in speedups.items():
        print(f"  speed-up chunked vs reference, {name}: {ratio:.1f}x")
    if compiled:
        compiled_speedups = {"fwd": times["reference fwd"] / times["compiled fwd"],
                             "fwd vs chunked": times["chunked fwd"] / times["compiled fwd"],
                             "fwd+bwd vs chunked": times["chunked fwd+bwd"] / times["compiled fwd+bwd"]}
        if "reference fwd+bwd" in times:
            compiled_speedups["fwd+bwd"] = times["reference fwd+bwd"] / times["compiled fwd+bwd"]
        for name, ratio in compiled_speedups.items():
            print(f"  speed-up compiled vs {'reference, ' if 'vs' not in name else ''}{name}: {ratio:.1f}x")
        results["speedup_compiled"] = compiled_speedups
    if kernel is not None:
        print(f"  speed-up mamba_ssm vs chunked, fwd: {times['chunked fwd'] / times['mamba_ssm fwd']:.1f}x")
    results["seconds"] = times
    results["speedup_chunked_vs_reference"] = speedups

    if not args.no_check:
        p64 = {k: v.double() for k, v in p.items()}
        w64 = (weights[0].double(), weights[1].double())
        truth = forward_backward(selective_scan_reference, p64, w64)
        with torch.no_grad():
            out_ref, last_ref = call(selective_scan_reference, p64)
            out_ch, last_ch = call(selective_scan_chunked, p, **kw)
        grads_ref = truth()
        grads_ch = forward_backward(selective_scan_chunked, p, weights, **kw)()
        errors = {"out": (out_ch.double() - out_ref).abs().max().item(),
                  "last_state": (last_ch.double() - last_ref).abs().max().item()}
        for k in GRAD_KEYS:
            errors[f"grad {k}"] = (grads_ch[k].double() - grads_ref[k]).abs().max().item()
        if compiled:
            with torch.no_grad():
                out_co, last_co = call(selective_scan_compiled, p)
            grads_co = forward_backward(selective_scan_compiled, p, weights)()
            errors["compiled out"] = (out_co.double() - out_ref).abs().max().item()
            errors["compiled last_state"] = (last_co.double() - last_ref).abs().max().item()
            for k in GRAD_KEYS:
                errors[f"compiled grad {k}"] = (grads_co[k].double() - grads_ref[k]).abs().max().item()
        scale = {"out": out_ref.abs().max().item(), "last_state": last_ref.abs().max().item()}
        scale.update({f"grad {k}": grads_ref[k].abs().max().item() for k in GRAD_KEYS})
        print("  max |float32 path - reference float64| (max |reference|):")
        for k, v in errors.items():
            print(f"    {k:<22s} {v:.2e}  ({scale[k.removeprefix('compiled ')]:.2e})")
        if kernel is not None:
            with torch.no_grad():
                out_k, _ = call(kernel, p)
            errors["mamba_ssm out vs chunked"] = (out_k - out_ch).abs().max().item()
            print(f"    mamba_ssm out vs chunked: {errors['mamba_ssm out vs chunked']:.2e}")
        results["max_abs_error"] = errors
        results["max_abs_reference"] = scale
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
