"""Judge fusion results: reduced resolution (Wald), full resolution (no reference), and plain comparison.

These are the library functions behind ``spatialx evaluate``. Inputs are opened and aligned like the fusion
inputs (same error messages), but the indices need exact pixel correspondences, so the grids must be nested: the
PAN (or fused) grid an integer subdivision of the MS grid, with pixel edges that line up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from spatialx.align import align, common_grid, nest
from spatialx.errors import InputMismatchError
from spatialx.io.read import RasterInfo, ThreadLocalReader, open_raster
from spatialx.io.write import gdal_env
from spatialx.methods import create_method
from spatialx.methods.base import fuse_arrays
from spatialx.metrics import full_indices, reduced_indices
from spatialx.pipeline import resolve_bands
from spatialx.protocols import ReducedScene, reduce_scene
from spatialx.sensors import SensorProfile, get_sensor

DEFAULT_CUT = 21
REDUCED_KEYS = ("Q2n", "Q", "SAM", "ERGAS", "SCC", "PSNR", "SSIM", "CC")
FULL_KEYS = ("D_lambda", "D_s", "QNR", "D_lambda_K", "HQNR")


def _read(info: RasterInfo, window: Window, bands: list[int] | None = None) -> np.ndarray:
    with ThreadLocalReader(info) as reader:
        return reader.read(window, bands)


@dataclass
class _Scene:
    """PAN (output grid) and MS (native grid) arrays over their common nested extent."""

    pan: np.ndarray
    ms: np.ndarray
    pan_to_ms: int
    sensor: SensorProfile
    extra: dict[str, np.ndarray]


@dataclass
class _Plan:
    """Where the common nested extent of PAN, MS and extra rasters lies in each file.

    Extents are counted in MS pixels (``rows x cols``); each raster's origin is given in its own pixels.
    """

    infos: dict[str, RasterInfo]
    origins: dict[str, tuple[int, int]]  # role -> (row, col) of the extent's first pixel in that file
    factors: dict[str, int]  # role -> file pixels per MS pixel
    bands: dict[str, list[int] | None]
    rows: int
    cols: int
    sensor: SensorProfile

    def read(self, row: int = 0, col: int = 0, rows: int | None = None, cols: int | None = None) -> _Scene:
        """Arrays of the sub-extent starting at MS pixel (row, col), ``rows x cols`` MS pixels."""
        rows, cols = rows or self.rows, cols or self.cols
        arrays = {}
        for role, info in self.infos.items():
            f = self.factors[role]
            r0, c0 = self.origins[role]
            arrays[role] = _read(info, Window(c0 + col * f, r0 + row * f, cols * f, rows * f), self.bands[role])
        pan, ms = arrays.pop("pan"), arrays.pop("ms")
        return _Scene(pan=pan, ms=ms, pan_to_ms=self.factors["pan"], sensor=self.sensor, extra=arrays)


def _plan(pan: str | PathLike[str], ms: str | PathLike[str], sensor: str | SensorProfile, bands: str | None,
          extra: Mapping[str, str | PathLike[str]] | None = None) -> _Plan:
    """Find the common footprint of PAN, MS (and e.g. a fused image on the PAN grid), exactly nested."""
    profile = sensor if isinstance(sensor, SensorProfile) else get_sensor(sensor)
    pan_info, ms_info = open_raster(pan, role="PAN"), open_raster(ms, role="MS")
    profile, ms_bands = resolve_bands(ms_info, profile, bands, "MS")
    others = {"ms": ms_info, **{role: open_raster(path, role=role) for role, path in (extra or {}).items()}}
    with gdal_env():
        alignment = align(pan_info, others, "PAN")
    labels = {role: "MS" if role == "ms" else role for role in others}
    nests = {role: nest(alignment.resamplers[role], labels[role]) for role in others}
    for role, role_nest in nests.items():
        if role != "ms" and role_nest.scale != 1:
            raise InputMismatchError(f"{role} is not on the PAN grid", path=others[role].path,
                                     hint="give the fused image written for this PAN")
    if nests["ms"].scale.denominator != 1:
        raise InputMismatchError(f"the PAN/MS grid ratio {nests['ms'].scale} is not a whole number",
                                 path=ms_info.path, hint="the indices need MS pixels nested in PAN pixels")
    common = common_grid(nests, alignment.grid.shape)
    if isinstance(common, str):
        raise InputMismatchError(f"the inputs have no common extent ({common})", path=ms_info.path)
    factor = int(nests["ms"].scale)
    rows, cols = common.blocks[0] * common.block[0] // factor, common.blocks[1] * common.block[1] // factor
    origins = {role: (n.rows.source_edge(common.row_start), n.cols.source_edge(common.col_start))
               for role, n in nests.items()}
    origins["pan"] = (int(alignment.guide_window.row_off + common.row_start),
                      int(alignment.guide_window.col_off + common.col_start))
    factors = {"pan": factor, "ms": 1, **{role: factor for role in nests if role != "ms"}}
    band_map: dict[str, list[int] | None] = {"pan": [1], "ms": ms_bands, **{r: None for r in nests if r != "ms"}}
    return _Plan({"pan": pan_info, **others}, origins, factors, band_map, rows, cols, profile)


def _load(pan: str | PathLike[str], ms: str | PathLike[str], sensor: str | SensorProfile, bands: str | None,
          extra: Mapping[str, str | PathLike[str]] | None = None) -> _Scene:
    plan = _plan(pan, ms, sensor, bands, extra)
    with gdal_env():
        return plan.read()


def _rounded(values: Mapping[str, float]) -> dict[str, float]:
    return {key: float(value) for key, value in values.items()}


def evaluate_reduced(pan: str | PathLike[str], ms: str | PathLike[str], sensor: str | SensorProfile,
                     methods: Sequence[str], *, ratio: int | None = None, cut: int = DEFAULT_CUT,
                     bands: str | None = None,
                     method_options: Mapping[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """Wald's protocol on the user's scene: degrade, fuse with each method, compare with the original MS.

    Returns ``{method: {"Q2n", "Q", "SAM", "ERGAS", "SCC", "PSNR", "SSIM", "CC"}}``.
    """
    scene = _load(pan, ms, sensor, bands)
    ratio = int(ratio or scene.sensor.ratio)
    reduced = reduce_scene(scene.pan, scene.ms, scene.sensor.mtf_gains, ratio, scene.pan_to_ms)
    from spatialx.methods import get_method_info

    results = {}
    for name in methods:
        # Options such as weights and adaptation belong to the learned methods of the comparison.
        options = method_options if get_method_info(name, "pansharpen").kind == "network" else None
        results[name] = _rounded(score_reduced(reduced, name, scene.sensor, cut, options))
    return results


def fuse_reduced(reduced: ReducedScene, method: str, sensor: SensorProfile,
                 method_options: Mapping[str, Any] | None = None) -> np.ndarray:
    """Fuse a reduced-resolution scene with ``method`` on whole arrays (the toolbox's way)."""
    fusion = create_method(method, sensor, reduced.ratio, task="pansharpen", **dict(method_options or {}))
    return fuse_arrays(fusion, {"pan": reduced.pan, "ms": reduced.ms_up}, {"ms": reduced.ms_lr})


def score_reduced(reduced: ReducedScene, method: str, sensor: SensorProfile, cut: int = DEFAULT_CUT,
                  method_options: Mapping[str, Any] | None = None) -> dict[str, float]:
    fused = fuse_reduced(reduced, method, sensor, method_options)
    return reduced_indices(reduced.reference, fused, ratio=reduced.ratio, max_value=sensor.max_value, cut=cut)


def evaluate_full(pan: str | PathLike[str], ms: str | PathLike[str], fused: str | PathLike[str],
                  sensor: str | SensorProfile, *, ratio: int | None = None, bands: str | None = None,
                  cut: int = 0, block: int = 32) -> dict[str, float]:
    """No-reference quality of ``fused`` (on the PAN grid): D_lambda, D_s, QNR, Khan's D_lambda and HQNR.

    ``cut`` drops a border first, rounded up to whole MS pixels so the grids stay nested (the toolbox computes
    these indices on the whole image: default 0).
    """
    scene = _load(pan, ms, sensor, bands, extra={"fused": fused})
    image = scene.extra["fused"]
    if image.shape[0] != scene.ms.shape[0]:
        raise InputMismatchError(f"fused image has {image.shape[0]} bands, the MS {scene.ms.shape[0]}",
                                 path=Path(fused))
    pan_image, ms_image = scene.pan, scene.ms
    if cut:
        lr = math.ceil(cut / scene.pan_to_ms)
        hr = lr * scene.pan_to_ms
        pan_image, image = pan_image[:, hr:-hr, hr:-hr], image[:, hr:-hr, hr:-hr]
        ms_image = ms_image[:, lr:-lr, lr:-lr]
    return _rounded(score_full(pan_image, ms_image, image, scene.sensor, int(ratio or scene.sensor.ratio),
                               scene.pan_to_ms, block))


def score_full(pan: np.ndarray, ms: np.ndarray, fused: np.ndarray, sensor: SensorProfile, ratio: int,
               pan_to_ms: int, block: int = 32) -> dict[str, float]:
    """Full-resolution indices. An MS delivered on the PAN grid (``pan_to_ms == 1``) is reduced by ``ratio`` with
    its MTF filters to stand in for the native MS (as the toolbox's reduced-resolution inputs are made)."""
    from spatialx.filters import degrade_ms

    if pan_to_ms == 1:
        rows, cols = (ms.shape[1] // ratio) * ratio, (ms.shape[2] // ratio) * ratio
        pan, fused = pan[:, :rows, :cols], fused[:, :rows, :cols]
        ms_lr = degrade_ms(ms[:, :rows, :cols].astype(np.float64), sensor.mtf_gains, ratio)
    elif pan_to_ms == ratio:
        ms_lr = ms
    else:
        raise InputMismatchError(f"PAN/MS grid ratio {pan_to_ms} differs from the ratio {ratio}",
                                 hint="pass --ratio to match the grids")
    return full_indices(fused, ms_lr, pan, ratio, sensor.mtf_gains, block=block)


def evaluate_compare(reference: str | PathLike[str], fused: str | PathLike[str], *, ratio: float,
                     max_value: float, cut: int = DEFAULT_CUT) -> dict[str, float]:
    """The reference-based indices between two aligned rasters of the same shape and bands."""
    ref_info, fused_info = open_raster(reference, role="reference"), open_raster(fused, role="fused")
    if ref_info.grid.shape != fused_info.grid.shape or ref_info.count != fused_info.count:
        raise InputMismatchError(
            f"fused is {fused_info.count}x{fused_info.grid.height}x{fused_info.grid.width}, reference "
            f"{ref_info.count}x{ref_info.grid.height}x{ref_info.grid.width}", path=fused_info.path,
            hint="compare images on the same grid with the same bands")
    if ref_info.grid.crs != fused_info.grid.crs or not ref_info.grid.transform.almost_equals(
            fused_info.grid.transform):
        raise InputMismatchError("fused and reference grids differ (CRS or transform)", path=fused_info.path)
    with gdal_env():
        window = Window(0, 0, ref_info.grid.width, ref_info.grid.height)
        ref, image = _read(ref_info, window), _read(fused_info, window)
    return _rounded(reduced_indices(ref, image, ratio=ratio, max_value=max_value, cut=cut))


def quality_report(pan: str | PathLike[str], ms: str | PathLike[str], fused: str | PathLike[str],
                   sensor: str | SensorProfile, *, ratio: int | None = None, bands: str | None = None,
                   samples: int = 16, window: int = 256) -> dict[str, Any]:
    """Full-resolution indices on a regular sample of ``samples`` windows of ``window`` PAN pixels.

    Cheap enough to run after every fusion (``pansharpen --report``): the cost does not grow with the scene.
    The summary is the mean over windows; each window's values are listed too.
    """
    plan = _plan(pan, ms, sensor, bands, extra={"fused": fused})
    factor = plan.factors["pan"]
    ratio = int(ratio or plan.sensor.ratio)
    size = max(ratio * 8, (window // factor // ratio) * ratio)  # MS pixels per side, a multiple of the ratio
    size_r, size_c = min(size, (plan.rows // ratio) * ratio), min(size, (plan.cols // ratio) * ratio)
    if size_r < 4 * ratio or size_c < 4 * ratio:
        raise InputMismatchError("the fused image is too small for a quality report", path=Path(fused))
    per_side = max(1, math.isqrt(samples))
    starts_r = np.unique(np.linspace(0, plan.rows - size_r, per_side).astype(int))
    starts_c = np.unique(np.linspace(0, plan.cols - size_c, per_side).astype(int))
    windows = []
    with gdal_env():
        for r in starts_r:
            for c in starts_c:
                scene = plan.read(int(r), int(c), size_r, size_c)
                values = score_full(scene.pan, scene.ms, scene.extra["fused"], plan.sensor, ratio, factor)
                windows.append({"row": int(r) * factor, "col": int(c) * factor, "size": [size_r * factor,
                                                                                         size_c * factor],
                                **_rounded(values)})
    summary = {key: float(np.mean([w[key] for w in windows])) for key in FULL_KEYS}
    return {"protocol": "full resolution (no reference), mean over sampled windows", "sensor": plan.sensor.key,
            "ratio": ratio, "indices": summary, "windows": windows}
