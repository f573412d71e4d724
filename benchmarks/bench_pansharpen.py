#!/usr/bin/env python
"""Benchmark spatialx's weighted Brovey pansharpening against GDAL's, and spatialx's peak memory vs scene size.

Two measurements on synthetic WorldView-3 scenes written by :func:`spatialx.sample.write_sample`:

1. **Comparison** at ``--compare-size`` (PAN pixels per side, default 8192): ``spatialx pansharpen --method
   brovey`` against GDAL's pansharpening (``gdal_pansharpen``, i.e. a ``VRTPansharpenedDataset`` with the weighted
   Brovey algorithm) on the same PAN and MS files, with the same weights (the sensor profile's ``pan_weight``), the
   same resampling (cubic), the same bit depth (clamp at the sensor's ``max_value``) and the same thread count.
   spatialx always writes a deflate-compressed Cloud-Optimised GeoTIFF with overviews; GDAL is measured twice:

   * ``GDAL -> GTiff``: ``gdal_pansharpen`` writing a tiled, deflate-compressed GeoTIFF (no overviews);
   * ``GDAL -> GTiff -> COG``: the same, then ``gdal_translate -of COG`` with the creation options spatialx's writer
     uses (deflate, predictor, level 1, 512 px blocks, AVERAGE overviews), so that both sides produce a COG.

   Each is run as a child process (wall time, best of ``--repeat`` runs; peak RSS from ``wait4``), and the two
   outputs are compared pixel by pixel on their common area (mean absolute difference, RMSE, bias, correlation):
   the implementations differ in details (cubic kernel edge handling, GDAL's integer intermediate), so agreement
   is reported, never asserted.

2. **Memory vs size**: spatialx's wall time and peak RSS at each of ``--sizes`` (default 2048, 8192, 16384) to
   show that memory is bounded by the tile size and the worker count, not by the scene size.

Scenes are cached in ``--workdir`` (``scene-<sensor>-<size>/``; the high-resolution reference that write_sample
also writes is deleted right away, it is not needed here). Figures are printed as Markdown and written to
``<workdir>/results.json`` (and ``results.md``). See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# The environment children start from, taken before anything (rasterio) can add GDAL/PROJ settings of its own.
BASE_ENV = dict(os.environ)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = REPO / "benchmarks" / "out"
DEFAULT_SIZES = (2048, 8192, 16384)
MiB = 1024 * 1024

# spatialx's RasterWriter (spatialx/io/write.py) writes its COG with these options (its default deflate level,
# DEFAULT_COMPRESS_LEVEL there); the GDAL COG variant uses the same ones so that the two outputs are the same kind
# of file. GDAL's plain GTiff keeps GDAL's defaults (level 6, no predictor), as the issue measured it.
COG_OPTIONS = {
    "COMPRESS": "DEFLATE",
    "PREDICTOR": "YES",
    "LEVEL": "1",
    "BLOCKSIZE": "512",
    "OVERVIEWS": "AUTO",
    "OVERVIEW_RESAMPLING": "AVERAGE",
    "BIGTIFF": "IF_SAFER",
}
# What the brief for GDAL's direct output asks for: a tiled, deflate-compressed GeoTIFF.
GTIFF_OPTIONS = {"TILED": "YES", "COMPRESS": "DEFLATE", "BIGTIFF": "IF_SAFER"}


class BenchError(RuntimeError):
    """A step of the benchmark could not be run."""


# ------------------------------------------------------------------------------------------------------------
# measuring child processes


@dataclass
class Step:
    """One child process of a measured run."""

    name: str
    seconds: float
    peak_rss_mib: float
    cpu_seconds: float = 0.0  # user + system time of the process (all its threads)
    load_before: float | None = None  # 1-minute load average when it started and when it ended: other
    load_after: float | None = None  # processes competing for the CPUs make wall times longer


@dataclass
class Run:
    """One repetition: a sequence of child processes (wall time adds up, peak RSS is the largest)."""

    steps: list[Step] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    @property
    def peak_rss_mib(self) -> float:
        return max(s.peak_rss_mib for s in self.steps)

    @property
    def cpu_seconds(self) -> float:
        return sum(s.cpu_seconds for s in self.steps)


@dataclass
class Measurement:
    """Best-of-N wall time and worst-of-N peak RSS of a command sequence."""

    label: str
    runs: list[Run]
    output_bytes: int | None = None
    commands: list[str] = field(default_factory=list)

    @property
    def best(self) -> Run:
        return min(self.runs, key=lambda r: r.seconds)

    @property
    def seconds(self) -> float:
        return self.best.seconds

    @property
    def peak_rss_mib(self) -> float:
        return max(r.peak_rss_mib for r in self.runs)

    def as_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "label": self.label,
            "seconds_best": round(self.seconds, 3),
            "seconds_all": [round(r.seconds, 3) for r in self.runs],
            "cpu_seconds_best": round(best.cpu_seconds, 3),
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "best_run_steps": [{"name": s.name, "seconds": round(s.seconds, 3), "cpu_seconds": round(s.cpu_seconds, 3),
                                "peak_rss_mib": round(s.peak_rss_mib, 1), "load_before": s.load_before,
                                "load_after": s.load_after} for s in best.steps],
            "load_range": _load_range(s for r in self.runs for s in r.steps),
            "output_bytes": self.output_bytes,
            "commands": self.commands,
        }


# Each measured command is started by this tiny launcher (a fresh interpreter without site-packages, ~10 MiB),
# which waits for it with wait4. Measuring from the benchmark process itself would be wrong: Linux records the
# RSS high-water mark of the process image that exec replaces, so a child forked (or vforked) from a large parent
# reports at least the parent's peak RSS. Through the launcher that floor is the launcher's own few MiB
# (reported as "rss_floor_mib" in the results).
_LAUNCHER = """
import os, signal, sys, time
result, cmd = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawnp(cmd[0], cmd, os.environ)
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda s, f: os.kill(pid, s))
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(result, "w") as fh:
    fh.write(f"{seconds!r} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)} "
             f"{usage.ru_utime + usage.ru_stime!r}")
"""


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _load_range(steps: Any) -> list[float] | None:
    loads = [x for st in steps for x in (st.load_before, st.load_after) if x is not None]
    return [min(loads), max(loads)] if loads else None


def _maxrss_mib(ru_maxrss: int) -> float:
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return ru_maxrss * scale / MiB


def run_child(name: str, cmd: Sequence[str], env: dict[str, str], log: Path) -> Step:
    """Run ``cmd`` to completion; its wall time and its own peak RSS (``wait4`` on exactly this process)."""
    cmd = [str(c) for c in cmd]
    result = log.with_name(f".{log.stem}.result")
    result.unlink(missing_ok=True)
    load_before = _loadavg()
    with log.open("a") as fh:
        fh.write(f"\n$ {shlex.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _LAUNCHER, str(result), *cmd],
                                stdout=fh, stderr=subprocess.STDOUT, env=env)
        try:
            proc.wait()
        except BaseException:  # interrupted: do not leave the command running
            proc.terminate()
            proc.wait()
            raise
    try:
        seconds, maxrss, status, cpu = result.read_text().split()
    except (OSError, ValueError):
        raise BenchError(f"{name} could not be run: {shlex.join(cmd)} (see {log})") from None
    result.unlink()
    if int(status) != 0:
        raise BenchError(f"{name} failed with exit status {status}: {shlex.join(cmd)} (see {log})")
    return Step(name, float(seconds), _maxrss_mib(int(maxrss)), float(cpu), load_before, _loadavg())


def child_env(threads: int) -> dict[str, str]:
    """The same thread settings for every child: GDAL's pool and any BLAS/OpenMP pool."""
    env = dict(BASE_ENV)
    n = str(threads)
    env.update(GDAL_NUM_THREADS=n, OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n)
    return env


def _unlink(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------------------
# scenes


def ensure_scene(workdir: Path, sensor: str, size: int, seed: int) -> dict[str, Any]:
    """PAN and MS of a synthetic scene, generated once and cached (the reference is deleted)."""
    from spatialx import __version__
    from spatialx.sample import write_sample

    scene_dir = workdir / f"scene-{sensor}-{size}"
    stamp_path = scene_dir / "scene.json"
    stamp = {"sensor": sensor, "size": size, "seed": seed, "generator": "spatialx.sample.write_sample"}
    pan, ms = scene_dir / "pan.tif", scene_dir / "ms.tif"
    cached = (pan.exists() and ms.exists() and stamp_path.exists()
              and json.loads(stamp_path.read_text()).get("scene") == stamp)
    info: dict[str, Any] = {"dir": str(scene_dir), "size": size, "cached": cached}
    if not cached:
        _check_disk(workdir, _scene_bytes(sensor, size), f"generating the {size} px scene")
        print(f"  generating the {sensor} scene of {size} x {size} px in {scene_dir} ...", flush=True)
        start = time.perf_counter()
        paths = write_sample(scene_dir, sensor=sensor, size=size, seed=seed, overwrite=True)
        paths["reference"].unlink(missing_ok=True)  # not needed here, and by far the largest file
        info["generation_seconds"] = round(time.perf_counter() - start, 1)
        stamp_path.write_text(json.dumps({"scene": stamp, "spatialx_version": __version__,
                                          "generation_seconds": info["generation_seconds"]}, indent=2))
    info.update(pan=str(pan), ms=str(ms), pan_bytes=pan.stat().st_size, ms_bytes=ms.stat().st_size)
    return info


def _scene_bytes(sensor: str, size: int) -> int:
    """Upper bound of what writing a scene needs on disk at once (uncompressed PAN, MS and reference)."""
    from spatialx.sensors import get_sensor

    profile = get_sensor(sensor)
    itemsize = np.dtype(profile.dtype).itemsize
    bands = len(profile.bands)
    return int(size * size * itemsize * (1 + bands + bands / profile.ratio**2))


def _output_bytes(sensor: str, size: int) -> int:
    """Upper bound of one run's outputs: an uncompressed staging file plus the compressed result."""
    from spatialx.sensors import get_sensor

    profile = get_sensor(sensor)
    return int(2.4 * size * size * np.dtype(profile.dtype).itemsize * len(profile.bands))


def _check_disk(path: Path, needed: int, what: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path).free
    if free < needed:
        raise BenchError(f"{what} needs up to {needed / 1e9:.1f} GB, {path} has {free / 1e9:.1f} GB free")


# ------------------------------------------------------------------------------------------------------------
# the commands


def spatialx_cmd(pan: str, ms: str, out: Path, sensor: str, threads: int) -> list[str]:
    return [sys.executable, "-m", "spatialx", "pansharpen", pan, ms, str(out), "--sensor", sensor,
            "--method", "brovey", "--workers", str(threads), "--quiet", "--overwrite"]


def _co(options: dict[str, str]) -> list[str]:
    return [arg for key, value in options.items() for arg in ("-co", f"{key}={value}")]


def gdal_pansharpen_cmd(tool: str, pan: str, ms: str, out: Path, weights: Sequence[float], bit_depth: int,
                        sample_bits: int, threads: int) -> list[str]:
    """``gdal_pansharpen``: weighted Brovey with the given weights (one -w per MS band, in band order).

    ``-bitdepth`` makes GDAL clamp at ``2**bit_depth - 1`` like spatialx clamps at the sensor's ``max_value``; it
    also tags the output NBITS=bit_depth, which the GTiff driver would honour by bit-packing the samples, so
    ``NBITS=sample_bits`` keeps plain 16-bit samples like spatialx's output.
    """
    cmd = [tool, "-q", "-r", "cubic", "-threads", str(threads), "-bitdepth", str(bit_depth)]
    for w in weights:
        cmd += ["-w", repr(float(w))]
    options = {**GTIFF_OPTIONS, "NBITS": str(sample_bits), "NUM_THREADS": str(threads)}
    return [*cmd, "-of", "GTiff", *_co(options), pan, ms, str(out)]


def gdal_cog_cmd(tool: str, src: Path, out: Path, threads: int) -> list[str]:
    return [tool, "-q", "-of", "COG", *_co({**COG_OPTIONS, "NUM_THREADS": str(threads)}), str(src), str(out)]


def find_gdal_tools(pansharpen: str | None, translate: str | None) -> dict[str, str]:
    found = {
        "pansharpen": pansharpen or shutil.which("gdal_pansharpen") or shutil.which("gdal_pansharpen.py"),
        "translate": translate or shutil.which("gdal_translate"),
    }
    missing = [name for name, path in found.items() if not path]
    if missing:
        raise BenchError(f"GDAL tools not found: {', '.join('gdal_' + m for m in missing)} (install gdal-bin "
                         "and python3-gdal, or pass --gdal-pansharpen / --gdal-translate, or use --skip-gdal)")
    return {name: str(path) for name, path in found.items()}


def tool_version(cmd: Sequence[str], env: dict[str, str]) -> str:
    try:
        done = subprocess.run([*cmd, "--version"], capture_output=True, text=True, env=env, timeout=60)
    except OSError as exc:
        return f"unknown ({exc})"
    return (done.stdout.strip() or done.stderr.strip()).splitlines()[0] if (done.stdout or done.stderr) else "?"


# ------------------------------------------------------------------------------------------------------------
# agreement of two outputs


def agreement(a_path: Path, b_path: Path, edge: int, nodata: float | None, strip_rows: int = 256) -> dict[str, Any]:
    """Per-band statistics of ``a - b`` on the common area of two rasters on the same pixel grid.

    Computed strip by strip (bounded memory) over pixels valid in both (not ``nodata``), once over the whole
    common area and once over its interior (``edge`` pixels trimmed on each side, where the resampling kernels'
    edge handling differs).
    """
    import rasterio
    from rasterio.windows import Window, from_bounds

    with rasterio.open(a_path) as a, rasterio.open(b_path) as b:
        if a.count != b.count:
            raise BenchError(f"{a_path.name} has {a.count} bands, {b_path.name} {b.count}")
        if not np.allclose(a.res, b.res):
            raise BenchError(f"different pixel sizes: {a.res} vs {b.res}")
        left, right = max(a.bounds.left, b.bounds.left), min(a.bounds.right, b.bounds.right)
        bottom, top = max(a.bounds.bottom, b.bounds.bottom), min(a.bounds.top, b.bounds.top)
        wa = from_bounds(left, bottom, right, top, a.transform).round_offsets().round_lengths()
        wb = from_bounds(left, bottom, right, top, b.transform).round_offsets().round_lengths()
        height, width = int(wa.height), int(wa.width)
        bands = a.count
        names = list(a.descriptions) if all(a.descriptions) else [f"band {i}" for i in range(1, bands + 1)]
        scopes = {"all": _Acc(bands), "interior": _Acc(bands)}
        invalid_only_a = invalid_only_b = 0
        for top_row in range(0, height, strip_rows):
            rows = min(strip_rows, height - top_row)
            xa = a.read(window=Window(wa.col_off, wa.row_off + top_row, width, rows))
            xb = b.read(window=Window(wb.col_off, wb.row_off + top_row, width, rows))
            if nodata is not None:
                va, vb = np.all(xa != nodata, axis=0), np.all(xb != nodata, axis=0)
            else:
                va = vb = np.ones(xa.shape[1:], dtype=bool)
            invalid_only_a += int(np.count_nonzero(~va & vb))
            invalid_only_b += int(np.count_nonzero(va & ~vb))
            valid = va & vb
            scopes["all"].add(xa, xb, valid)
            inner = valid.copy()
            inner[:, :edge] = False
            inner[:, width - edge:] = False
            r = np.arange(top_row, top_row + rows)
            inner[(r < edge) | (r >= height - edge)] = False
            scopes["interior"].add(xa, xb, inner)
    result: dict[str, Any] = {
        "common_area_px": [height, width],
        "edge_px": edge,
        "nodata": nodata,
        f"nodata_only_in_{a_path.stem}": invalid_only_a,
        f"nodata_only_in_{b_path.stem}": invalid_only_b,
    }
    for scope, acc in scopes.items():
        result[scope] = acc.summary(names)
    return result


class _Acc:
    """Running sums for difference statistics and Pearson correlation, per band (shifted for precision)."""

    SHIFT = 1024.0

    def __init__(self, bands: int):
        z = lambda: np.zeros(bands)  # noqa: E731
        self.n, self.sa, self.sb, self.saa, self.sbb, self.sab = z(), z(), z(), z(), z(), z()
        self.sabs, self.sdd, self.over1 = z(), z(), z()
        self.maxabs = z()

    def add(self, xa: np.ndarray, xb: np.ndarray, valid: np.ndarray) -> None:
        for i in range(xa.shape[0]):
            a = xa[i][valid].astype(np.float64) - self.SHIFT
            b = xb[i][valid].astype(np.float64) - self.SHIFT
            if a.size == 0:
                continue
            d = a - b
            ad = np.abs(d)
            self.n[i] += a.size
            self.sa[i] += a.sum()
            self.sb[i] += b.sum()
            self.saa[i] += a @ a
            self.sbb[i] += b @ b
            self.sab[i] += a @ b
            self.sabs[i] += ad.sum()
            self.sdd[i] += d @ d
            self.over1[i] += np.count_nonzero(ad > 1)
            self.maxabs[i] = max(self.maxabs[i], float(ad.max()))

    def summary(self, names: Sequence[str]) -> dict[str, Any]:
        def stats(n, sa, sb, saa, sbb, sab, sabs, sdd, over1, maxabs) -> dict[str, float]:
            if n == 0:
                return {"pixels": 0}
            cov = sab / n - (sa / n) * (sb / n)
            var_a, var_b = saa / n - (sa / n) ** 2, sbb / n - (sb / n) ** 2
            corr = cov / math.sqrt(var_a * var_b) if var_a > 0 and var_b > 0 else float("nan")
            return {
                "pixels": int(n),
                "mean_a": round(sa / n + self.SHIFT, 3),
                "mean_b": round(sb / n + self.SHIFT, 3),
                "bias": round((sa - sb) / n, 4),
                "mad": round(sabs / n, 4),
                "rmse": round(math.sqrt(sdd / n), 4),
                "max_abs": float(maxabs),
                "pct_over_1dn": round(100.0 * over1 / n, 4),
                "corr": round(corr, 6),
            }

        per_band = {name: stats(*(arr[i] for arr in self._arrays())) for i, name in enumerate(names)}
        overall = stats(*(arr.sum() if k != 9 else arr.max() for k, arr in enumerate(self._arrays())))
        # A correlation pooled over bands mixes their levels; report the mean of the per-band ones instead.
        overall["corr"] = round(float(np.nanmean([b.get("corr", np.nan) for b in per_band.values()])), 6)
        return {"overall": overall, "bands": per_band}

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (self.n, self.sa, self.sb, self.saa, self.sbb, self.sab, self.sabs, self.sdd, self.over1,
                self.maxabs)


# ------------------------------------------------------------------------------------------------------------
# the benchmark


def repeats_for(size: int, repeat: int | None) -> int:
    if repeat is not None:
        return max(1, repeat)
    return 3 if size <= 4096 else 1


def measure_spatialx(scene: dict[str, Any], sensor: str, threads: int, repeat: int, work: Path,
                     logs: Path) -> tuple[Measurement, Path]:
    size = scene["size"]
    out = work / f"spatialx-{sensor}-{size}.tif"
    cmd = spatialx_cmd(scene["pan"], scene["ms"], out, sensor, threads)
    env = child_env(threads)
    runs = []
    for i in range(repeat):
        _unlink(out)
        print(f"  spatialx {size} px, run {i + 1}/{repeat} ...", end=" ", flush=True)
        step = run_child("spatialx pansharpen", cmd, env, logs / f"spatialx-{size}.log")
        print(f"{step.seconds:.1f} s (CPU {step.cpu_seconds:.1f} s), {step.peak_rss_mib:.0f} MiB, "
              f"load {step.load_before} -> {step.load_after}", flush=True)
        runs.append(Run([step]))
    m = Measurement("spatialx (COG)", runs, out.stat().st_size, [shlex.join(cmd)])
    return m, out


def measure_gdal(scene: dict[str, Any], tools: dict[str, str], profile: Any, threads: int, repeat: int,
                 work: Path, logs: Path) -> tuple[Measurement, Measurement, Path, Path]:
    size = scene["size"]
    gtiff = work / f"gdal-{size}.tif"
    cog = work / f"gdal-{size}-cog.tif"
    ps_cmd = gdal_pansharpen_cmd(tools["pansharpen"], scene["pan"], scene["ms"], gtiff, profile.pan_weights,
                                 int(profile.bit_depth), 8 * np.dtype(profile.dtype).itemsize, threads)
    cog_cmd = gdal_cog_cmd(tools["translate"], gtiff, cog, threads)
    env = child_env(threads)
    gtiff_runs, cog_runs = [], []
    for i in range(repeat):
        _unlink(gtiff, cog)
        print(f"  GDAL {size} px, run {i + 1}/{repeat} ...", end=" ", flush=True)
        ps = run_child("gdal_pansharpen -> GTiff", ps_cmd, env, logs / f"gdal-{size}.log")
        print(f"pansharpen {ps.seconds:.1f} s (CPU {ps.cpu_seconds:.1f} s), {ps.peak_rss_mib:.0f} MiB;", end=" ",
              flush=True)
        tr = run_child("gdal_translate -of COG", cog_cmd, env, logs / f"gdal-{size}.log")
        print(f"COG {tr.seconds:.1f} s (CPU {tr.cpu_seconds:.1f} s), {tr.peak_rss_mib:.0f} MiB, "
              f"load {ps.load_before} -> {tr.load_after}", flush=True)
        gtiff_runs.append(Run([ps]))
        cog_runs.append(Run([ps, tr]))
    gtiff_m = Measurement("GDAL -> GTiff (deflate, tiled)", gtiff_runs, gtiff.stat().st_size, [shlex.join(ps_cmd)])
    cog_m = Measurement("GDAL -> GTiff -> COG (gdal_translate)", cog_runs, cog.stat().st_size,
                        [shlex.join(ps_cmd), shlex.join(cog_cmd)])
    return gtiff_m, cog_m, gtiff, cog


def environment(threads: int, tools: dict[str, str] | None) -> dict[str, Any]:
    import rasterio

    from spatialx import __version__

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
        if hasattr(os, "sysconf") else None,
        "threads": threads,
        "spatialx": __version__,
        "spatialx_gdal": rasterio.__gdal_version__,
        "rasterio": rasterio.__version__,
        "numpy": np.__version__,
    }
    env["git"] = _git_revision()
    if tools:
        base = child_env(threads)
        env["gdal_tools"] = tools
        env["gdal_pansharpen_version"] = tool_version([tools["pansharpen"]], base)
        env["gdal_translate_version"] = tool_version([tools["translate"]], base)
    return env


def _git_revision() -> str | None:
    """The commit the measured spatialx comes from, "+dirty" when its sources differ from it."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=30)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "spatialx"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def startup_cost(threads: int, logs: Path) -> Step:
    """What the spatialx CLI costs before any pixel: the interpreter and the imports of the pansharpen path."""
    code = "import spatialx.cli.main, spatialx.tasks.pansharpen"
    return run_child("spatialx startup", [sys.executable, "-c", code], child_env(threads), logs / "startup.log")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES),
                        help="PAN sizes (px per side) at which spatialx's time and peak RSS are measured")
    parser.add_argument("--compare-size", type=int, default=8192,
                        help="PAN size of the spatialx vs GDAL comparison (0: no comparison)")
    parser.add_argument("--threads", type=int, default=2, help="threads / workers for both tools")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs per measurement, the best time is kept (unset: 3 up to 4096 px, else 1)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="scenes, outputs, logs, results")
    parser.add_argument("--sensor", default="wv3", help="sensor profile of the synthetic scenes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic scenes")
    parser.add_argument("--skip-gdal", action="store_true", help="measure spatialx only")
    parser.add_argument("--edge", type=int, default=16,
                        help="border (PAN px) left out of the 'interior' agreement figures")
    parser.add_argument("--keep-outputs", action="store_true", help="keep the fused images (deleted otherwise)")
    parser.add_argument("--gdal-pansharpen", default=None, help="gdal_pansharpen executable (default: on PATH)")
    parser.add_argument("--gdal-translate", default=None, help="gdal_translate executable (default: on PATH)")
    args = parser.parse_args(argv)

    from spatialx.sensors import get_sensor

    profile = get_sensor(args.sensor)
    weights = [float(w) for w in profile.pan_weights]
    bit_depth = int(profile.bit_depth)
    workdir = args.workdir.resolve()
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    compare = args.compare_size if args.compare_size > 0 else None
    tools = None if args.skip_gdal or compare is None else find_gdal_tools(args.gdal_pansharpen,
                                                                             args.gdal_translate)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "environment": environment(args.threads, tools),
        "config": {
            "argv": [Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)],
            "sensor": profile.key,
            "bands": list(profile.band_names),
            "weights": weights,
            "bit_depth": bit_depth,
            "max_value": profile.max_value,
            "nodata": profile.nodata,
            "threads": args.threads,
            "sizes": args.sizes,
            "compare_size": compare,
            "seed": args.seed,
            "gtiff_options": GTIFF_OPTIONS,
            "cog_options": COG_OPTIONS,
        },
        "scenes": {},
    }
    print(f"spatialx {results['environment']['spatialx']} (GDAL {results['environment']['spatialx_gdal']}), "
          f"{args.threads} threads, {results['environment']['cpu_count']} CPUs", flush=True)
    if tools:
        print(f"GDAL tools: {results['environment']['gdal_pansharpen_version']}", flush=True)

    if shutil.which("true"):
        floor = run_child("true", ["true"], child_env(args.threads), logs / "startup.log")
        results["environment"]["rss_floor_mib"] = round(floor.peak_rss_mib, 1)
    step = startup_cost(args.threads, logs)
    results["spatialx_startup"] = {"seconds": round(step.seconds, 3), "peak_rss_mib": round(step.peak_rss_mib, 1)}

    spatialx_by_size: dict[int, Measurement] = {}
    if compare is not None:
        print(f"\n== comparison at {compare} px", flush=True)
        scene = ensure_scene(workdir, profile.key, compare, args.seed)
        results["scenes"][str(compare)] = scene
        _check_disk(workdir, 2 * _output_bytes(profile.key, compare), "the comparison outputs")
        repeat = repeats_for(compare, args.repeat)
        sx, sx_out = measure_spatialx(scene, profile.key, args.threads, repeat, workdir, logs)
        spatialx_by_size[compare] = sx
        comparison: dict[str, Any] = {"size": compare, "repeat": repeat, "spatialx": sx.as_dict()}
        outputs = [sx_out]
        if tools:
            gtiff_m, cog_m, gtiff, cog = measure_gdal(scene, tools, profile, args.threads, repeat, workdir, logs)
            outputs += [gtiff, cog]
            comparison["gdal_gtiff"] = gtiff_m.as_dict()
            comparison["gdal_cog"] = cog_m.as_dict()
            comparison["ratios"] = {
                "time_spatialx_over_gdal_gtiff": round(sx.seconds / gtiff_m.seconds, 3),
                "time_spatialx_over_gdal_cog": round(sx.seconds / cog_m.seconds, 3),
                "cpu_spatialx_over_gdal_gtiff": round(sx.best.cpu_seconds / gtiff_m.best.cpu_seconds, 3),
                "cpu_spatialx_over_gdal_cog": round(sx.best.cpu_seconds / cog_m.best.cpu_seconds, 3),
                "rss_spatialx_over_gdal_gtiff": round(sx.peak_rss_mib / gtiff_m.peak_rss_mib, 3),
                "rss_spatialx_over_gdal_cog": round(sx.peak_rss_mib / cog_m.peak_rss_mib, 3),
            }
            print("  comparing the outputs ...", flush=True)
            comparison["agreement"] = agreement(sx_out, gtiff, args.edge, profile.nodata)
        results["comparison"] = comparison
        if not args.keep_outputs:
            _unlink(*outputs)

    print("\n== spatialx peak memory vs scene size", flush=True)
    scaling = []
    for size in args.sizes:
        if size not in spatialx_by_size:
            scene = ensure_scene(workdir, profile.key, size, args.seed)
            results["scenes"][str(size)] = scene
            _check_disk(workdir, _output_bytes(profile.key, size), f"the {size} px output")
            m, out = measure_spatialx(scene, profile.key, args.threads, repeats_for(size, args.repeat), workdir,
                                      logs)
            if not args.keep_outputs:
                _unlink(out)
            spatialx_by_size[size] = m
        m = spatialx_by_size[size]
        mpx = size * size / 1e6
        scaling.append({"size": size, "megapixels": round(mpx, 2), "repeat": len(m.runs),
                        "seconds_best": round(m.seconds, 3), "cpu_seconds_best": round(m.best.cpu_seconds, 3),
                        "mpx_per_s": round(mpx / m.seconds, 3), "peak_rss_mib": round(m.peak_rss_mib, 1),
                        "output_bytes": m.output_bytes, "load_range": _load_range(s for r in m.runs for s in r.steps)})
    results["scaling"] = scaling
    results["total_seconds"] = round(time.perf_counter() - started, 1)

    report = markdown(results)
    print("\n" + report)
    (workdir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (workdir / "results.md").write_text(report + "\n")
    print(f"wrote {workdir / 'results.json'} and {workdir / 'results.md'}")
    return 0


# ------------------------------------------------------------------------------------------------------------
# report


def _mb(n: int | None) -> str:
    return "" if n is None else f"{n / 1e6:.0f}"


def markdown(results: dict[str, Any]) -> str:
    env, cfg = results["environment"], results["config"]
    lines = [
        f"spatialx {env['spatialx']} ({env.get('git') or 'no git'}; rasterio {env['rasterio']}, "
        f"GDAL {env['spatialx_gdal']}); "
        + (f"GDAL tools: {env['gdal_pansharpen_version']}; " if "gdal_pansharpen_version" in env else "")
        + f"{env['cpu']}, {env['cpu_count']} CPUs; {cfg['threads']} threads; sensor {cfg['sensor']} "
        f"({len(cfg['bands'])} bands), seed {cfg['seed']}.",
        "",
    ]
    comp = results.get("comparison")
    if comp:
        lines += _comparison_md(comp, cfg)
    lines += ["### spatialx peak memory vs scene size", "",
              "| PAN size (px) | Megapixels | Wall time (s) | CPU time (s) | Mpx/s | Peak RSS (MiB) | Load avg |",
              "|---:|---:|---:|---:|---:|---:|---|"]
    for row in results["scaling"]:
        lines.append(f"| {row['size']} | {row['megapixels']:.1f} | {row['seconds_best']:.1f} | "
                     f"{row['cpu_seconds_best']:.1f} | {row['mpx_per_s']:.2f} | {row['peak_rss_mib']:.0f} | "
                     f"{_load_text(row.get('load_range'))} |")
    st = results.get("spatialx_startup")
    if st:
        lines += ["", f"spatialx startup alone (interpreter and imports): {st['seconds']:.1f} s, "
                  f"{st['peak_rss_mib']:.0f} MiB peak RSS."]
    if env.get("rss_floor_mib") is not None:
        lines.append(f"Peak RSS is measured through a launcher whose floor is {env['rss_floor_mib']:.0f} MiB.")
    lines.append(f"Load avg: 1-minute load average before / after each run; above the thread count, other processes "
                 f"competed for the {env['cpu_count']} CPUs and wall times are inflated (CPU times much less so).")
    return "\n".join(lines)


def _load_text(load: list[float] | None) -> str:
    return "" if not load else f"{load[0]:.1f}-{load[1]:.1f}"


def _comparison_md(comp: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    size, sx = comp["size"], comp["spatialx"]
    lines = [f"### Weighted Brovey, PAN {size} x {size} px, MS {len(cfg['bands'])} bands "
             f"(best of {comp['repeat']})", "",
             "| Tool -> output | Wall time (s) | CPU time (s) | Peak RSS (MiB) | Output (MB) "
             "| spatialx / this: wall | CPU | RSS | Load avg |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    rows = [("spatialx", sx)]
    if "gdal_gtiff" in comp:
        rows += [("gdal_gtiff", comp["gdal_gtiff"]), ("gdal_cog", comp["gdal_cog"])]
    for key, m in rows:
        if key == "spatialx":
            ratios = "1 | 1 | 1"
            label = "spatialx -> COG (deflate, predictor, overviews)"
        else:
            ratios = (f"{sx['seconds_best'] / m['seconds_best']:.2f} | "
                      f"{sx['cpu_seconds_best'] / m['cpu_seconds_best']:.2f} | "
                      f"{sx['peak_rss_mib'] / m['peak_rss_mib']:.2f}")
            label = m["label"]
            if key == "gdal_cog":
                steps = " + ".join(f"{st['seconds']:.1f}" for st in m["best_run_steps"])
                label += f" ({steps} s)"
        lines.append(f"| {label} | {m['seconds_best']:.1f} | {m['cpu_seconds_best']:.1f} | {m['peak_rss_mib']:.0f} "
                     f"| {_mb(m['output_bytes'])} | {ratios} | {_load_text(m.get('load_range'))} |")
    agree = comp.get("agreement")
    if agree:
        inner, whole = agree["interior"], agree["all"]
        lines += ["", f"Agreement spatialx - GDAL (DN, pixels valid in both; interior: {agree['edge_px']} px border "
                  f"left out; whole area: MAD {whole['overall'].get('mad')}, max |d| "
                  f"{whole['overall'].get('max_abs'):.0f}):", "",
                  "| Band | mean spatialx | mean GDAL | bias | MAD | RMSE | max abs | > 1 DN (%) | r |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, st in [*inner["bands"].items(), ("all bands", inner["overall"])]:
            if not st.get("pixels"):
                continue
            lines.append(f"| {name} | {st['mean_a']:.1f} | {st['mean_b']:.1f} | {st['bias']:+.3f} | "
                         f"{st['mad']:.3f} | {st['rmse']:.3f} | {st['max_abs']:.0f} | {st['pct_over_1dn']:.3f} | "
                         f"{st['corr']:.5f} |")
        only = [k for k in agree if k.startswith("nodata_only_in_")]
        lines += ["", "Pixels nodata in one output only: "
                  + ", ".join(f"{k.removeprefix('nodata_only_in_')}: {agree[k]}" for k in only) + "."]
    lines.append("")
    return lines


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
