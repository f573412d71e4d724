"""Judge fusion results: reduced resolution (Wald), full resolution (no reference), and plain comparison.

These are the library functions behind ``spatialx evaluate``. Inputs are opened and aligned like the fusion
inputs (same error messages), but the indices need exact pixel correspondences, so the grids must be nested: the
PAN (or fused) grid an integer subdivision of the MS grid, with pixel edges that line up.

Two tasks are judged: pansharpening (PAN + MS, the toolbox's protocols, unchanged) and ``hmif`` (HS + MS: every HS
band at the MS resolution). For ``hmif`` the inputs are opened with the fusion pipeline's own readers
(:func:`spatialx.pipeline.open_scene`: PRISMA and Sentinel-2 products, values in physical units), the HS is read on
its own grid and the MS on its grid over their exactly nested common extent.

hmif, reduced resolution (Wald, the HS as reference; :func:`reduce_hmif`): the HS is blurred with the HS sensor's
MTF (each band's ``mtf_gain``, a Gaussian with that gain at the Nyquist frequency of the degraded grid, unit DC
gain) and one sample is kept per ``ratio x ratio`` block, at its centre; the MS is degraded the same way with its own
bands' MTF by the HS:MS grid ratio, which puts it on the HS's native grid, the reference grid. When the grids
coincide (ratio 1: co-registered GeoTIFFs, the EO-1 Paris pair) the MS is already at the reference's resolution and
is used as read, as HySure's demo and the pansharpening protocol (an MS delivered on the PAN grid) do; the HS is
then degraded by the ``ratio`` the caller gives. Bands without an MTF gain use :data:`DEFAULT_MTF_GAIN` (a note
says so). The degraded HS is brought back onto the reference grid with Keys' cubic convolution (area-aligned
pixel centres, as the pipeline resamples the HS onto the MS grid) and each method fuses it with the MS.

hmif indices (:func:`hmif_indices`): the pansharpening keys, with the data range (PSNR, SSIM) taken as the
reference's maximum, since HS values are physical (reflectance, or any unit: the Paris pair's are arbitrary) and a
DN range would not apply. Q2n needs a hypercomplex algebra of dimension 2^k >= bands, whose products cost 4^k per
pixel: it is computed up to :data:`Q2N_MAX_BANDS` bands (on values rescaled to the uint16 range it rounds to, which
leaves the index unchanged since it normalises each block) and is ``None`` (JSON null) above, with a note.

hmif, full resolution (no reference; :func:`score_full_hmif`), keys :data:`HMIF_FULL_KEYS`:

* spectral consistency with the HS (Wald's consistency property): the fused image degraded to the HS grid exactly
  as the reduced protocol degrades (HS MTF, block-centre samples) against the HS: ``SAM_HS`` (degrees), ``ERGAS_HS``
  (ratio = the grid ratio) and ``PSNR_HS`` (peak: the HS's maximum);
* spatial consistency with the MS: the fused image projected onto the MS bands through the spectral response matrix
  ``R`` (:func:`spectral_response_matrix`: MS band ``m`` = sum_k R[m, k] HS_k) against the MS, on the MS bands the
  HS spectrum covers: ``PSNR_MS`` (peak: the MS's maximum), ``CC_MS`` (mean per-band correlation) and ``Q_MS``
  (mean UIQI, 32x32 sliding window). It assumes both images in the same physical units, as the pipeline fuses them.

An HS delivered on the MS grid (ratio 1) stands in for its native self after both it and the fused image are
degraded by ``ratio``, as the pansharpening full-resolution indices do with an MS on the PAN grid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from spatialx.align import CommonGrid, align, common_grid, nest
from spatialx.errors import InputMismatchError, SpatialxError
from spatialx.io.read import RasterInfo, ThreadLocalReader, open_raster
from spatialx.io.write import gdal_env
from spatialx.methods import create_method
from spatialx.methods.base import fuse_arrays
from spatialx.metrics import cc, cut_border, ergas, full_indices, psnr, q2n, q_index, reduced_indices, sam, scc, ssim
from spatialx.pipeline import resolve_bands
from spatialx.protocols import (
    HMIFReducedScene,
    ReducedScene,
    degrade,
    mtf_gains,
    reduce_hmif,
    reduce_scene,
)
from spatialx.scene import SceneInputs
from spatialx.sensors import SensorProfile, get_sensor
from spatialx.tasks import HMIF, get_task

DEFAULT_CUT = 21
REDUCED_KEYS = ("Q2n", "Q", "SAM", "ERGAS", "SCC", "PSNR", "SSIM", "CC")
FULL_KEYS = ("D_lambda", "D_s", "QNR", "D_lambda_K", "HQNR")
#: Full-resolution hmif indices: spectral consistency with the HS, then spatial consistency with the MS.
HMIF_FULL_KEYS = ("SAM_HS", "ERGAS_HS", "PSNR_HS", "PSNR_MS", "CC_MS", "Q_MS")
#: The tasks ``evaluate`` judges.
TASKS = ("pansharpen", "hmif")
#: Sensors of the hmif inputs when none is named (the ``spatialx hmif`` command's defaults).
HMIF_SENSORS = {"hs": "prisma_l2d", "ms": "s2_l2a"}
#: Q2n is computed up to this many bands: above, its 2^k-dimensional hypercomplex products (4^k operations per
#: pixel, k = 6 or more) cost minutes and gigabytes on a scene.
Q2N_MAX_BANDS = 32
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


def alignment_notes(task: str, inputs: Mapping[str, str | PathLike[str]], sensor: Any, *,
                    bands: str | Mapping[str, str] | None = None,
                    read_options: Mapping[str, Mapping[str, Any]] | None = None,
                    allow_misregistration: bool = False) -> list[str]:
    """The fusion commands' alignment preflight on the inputs (role -> path) an evaluation judges
    (:func:`spatialx.pipeline.check_alignment`): a note with the measured shift, a warning above half a
    low-resolution pixel, and a refusal above the limit unless ``allow_misregistration`` -- indices of a
    misregistered pair judge the registration, not the method."""
    from spatialx.options import RunOptions
    from spatialx.pipeline import check_alignment, plan_fusion

    spec = get_task(task)
    options = RunOptions(bands=bands, read_options=read_options or {}, allow_misregistration=allow_misregistration)
    plan = plan_fusion(spec, inputs, sensor, "exp", options)
    with plan.scene, gdal_env():
        check_alignment(plan, options)
    found = plan.params.get("alignment")
    if found is None:
        return []
    if "dx" not in found:
        return [f"alignment not checked: {found.get('reason', 'no reliable estimate')}"]
    return [f"alignment preflight: {spec.label(spec.resampled[0])} content off by dx={found['dx']:+.2f}, "
            f"dy={found['dy']:+.2f} {found['units']} ({found['decision']})"]


def _rounded(values: Mapping[str, float]) -> dict[str, float]:
    return {key: float(value) for key, value in values.items()}


def evaluate_reduced(pan: str | PathLike[str], ms: str | PathLike[str],
                     sensor: str | SensorProfile | Mapping[str, str | SensorProfile], methods: Sequence[str], *,
                     ratio: int | None = None, cut: int | None = None, bands: str | Mapping[str, str] | None = None,
                     method_options: Mapping[str, Any] | None = None, task: str = "pansharpen",
                     read_options: Mapping[str, Mapping[str, Any]] | None = None,
                     allow_misregistration: bool = False) -> dict[str, dict[str, Any]]:
    """Wald's protocol on the user's scene: degrade, fuse with each method, compare with the original.

    Pansharpening (``task="pansharpen"``): ``pan`` and ``ms`` with one ``sensor``; the reference is the MS. Returns
    ``{method: {"Q2n", "Q", "SAM", "ERGAS", "SCC", "PSNR", "SSIM", "CC"}}``; ``cut`` defaults to the toolbox's 21.

    hmif (``task="hmif"``): ``pan`` is the HS, ``sensor`` a ``{"hs": ..., "ms": ...}`` mapping (or one sensor for
    both), ``bands`` selects HS bands (or ``{role: selection}``), ``read_options`` are the product readers' (as
    ``spatialx hmif`` passes them); the reference is the HS (see the module docstring). Same keys, Q2n ``None`` above
    :data:`Q2N_MAX_BANDS` bands; ``cut`` defaults to the ratio. The result is a :class:`Scores`, whose ``notes`` say
    which defaults were used and what was skipped.

    Both first run the fusion commands' alignment preflight (:func:`alignment_notes`): a pair misregistered beyond
    the limit is refused unless ``allow_misregistration``; the measured shift is a note.
    """
    if _task(task) == "hmif":
        checked = alignment_notes("hmif", {"hs": pan, "ms": ms}, _hmif_sensors(sensor), bands=bands,
                                  read_options=read_options, allow_misregistration=allow_misregistration)
        scene = read_hmif(pan, ms, sensor, bands=bands, read_options=read_options)
        reduced = reduce_hmif(scene.hs, scene.ms, scene.sensors, scene.grid_ratio, ratio)
        cut = reduced.ratio if cut is None else cut
        results = Scores(notes=[*checked, *scene.notes, *reduced.notes, *_q2n_note(reduced.reference.shape[0])])
        for name in methods:
            results[name] = score_reduced_hmif(reduced, name, cut, _network_options(name, "hmif", method_options))
        return results
    cut = DEFAULT_CUT if cut is None else cut
    checked = alignment_notes("pansharpen", {"pan": pan, "ms": ms}, sensor, bands=bands,  # type: ignore[arg-type]
                              allow_misregistration=allow_misregistration)
    scene = _load(pan, ms, sensor, bands)  # type: ignore[arg-type]
    ratio = int(ratio or scene.sensor.ratio)
    reduced = reduce_scene(scene.pan, scene.ms, scene.sensor.mtf_gains, ratio, scene.pan_to_ms)
    results = Scores(notes=checked)
    for name in methods:
        options = _network_options(name, "pansharpen", method_options)
        results[name] = _rounded(score_reduced(reduced, name, scene.sensor, cut, options))
    return results


def _network_options(name: str, task: str, options: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """Options such as weights and adaptation belong to the learned methods of the comparison."""
    from spatialx.methods import get_method_info

    return options if get_method_info(name, task).kind == "network" else None


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
                  sensor: str | SensorProfile | Mapping[str, str | SensorProfile], *, ratio: int | None = None,
                  bands: str | Mapping[str, str] | None = None, cut: int = 0, block: int = 32,
                  task: str = "pansharpen",
                  read_options: Mapping[str, Mapping[str, Any]] | None = None,
                  allow_misregistration: bool = False) -> dict[str, Any]:
    """No-reference quality of ``fused`` (on the PAN grid): D_lambda, D_s, QNR, Khan's D_lambda and HQNR.

    ``cut`` drops a border first, rounded up to whole MS pixels so the grids stay nested (the toolbox computes
    these indices on the whole image: default 0).

    hmif (``task="hmif"``; ``pan`` is the HS, ``sensor``/``bands``/``read_options`` as for
    :func:`evaluate_reduced`): ``fused`` on the MS grid, keys :data:`HMIF_FULL_KEYS` (module docstring), the cut
    rounded up to whole HS pixels; ``ratio`` is needed only when the HS lies on the MS grid. Returns a
    :class:`Scores` with notes. The alignment preflight runs first, as for :func:`evaluate_reduced`.
    """
    if _task(task) == "hmif":
        checked = alignment_notes("hmif", {"hs": pan, "ms": ms}, _hmif_sensors(sensor), bands=bands,
                                  read_options=read_options, allow_misregistration=allow_misregistration)
        scene = read_hmif(pan, ms, sensor, bands=bands, read_options=read_options, fused=fused)
        assert scene.fused is not None
        hs_image, ms_image, image = scene.hs, scene.ms, scene.fused
        if cut:
            lr = math.ceil(cut / scene.grid_ratio)
            hr = lr * scene.grid_ratio
            hs_image = hs_image[:, lr:-lr, lr:-lr]
            ms_image, image = ms_image[:, hr:-hr, hr:-hr], image[:, hr:-hr, hr:-hr]
        values, notes = score_full_hmif(hs_image, ms_image, image, scene.sensors, scene.grid_ratio, ratio)
        return Scores(values, notes=[*checked, *scene.notes, *notes])
    checked = alignment_notes("pansharpen", {"pan": pan, "ms": ms}, sensor, bands=bands,  # type: ignore[arg-type]
                              allow_misregistration=allow_misregistration)
    scene = _load(pan, ms, sensor, bands, extra={"fused": fused})  # type: ignore[arg-type]
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
    return Scores(_rounded(score_full(pan_image, ms_image, image, scene.sensor, int(ratio or scene.sensor.ratio),
                                      scene.pan_to_ms, block)), notes=checked)


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


def evaluate_compare(reference: str | PathLike[str], fused: str | PathLike[str], *, ratio: float | None,
                     max_value: float | None, cut: int | None = None, task: str | None = None) -> dict[str, Any]:
    """The reference-based indices between two aligned rasters of the same shape and bands, whatever the task.

    Up to :data:`Q2N_MAX_BANDS` bands with a ``max_value`` these are the toolbox's (:func:`reduced_indices`). Above,
    Q2n is ``None`` (a 200-band HS pair is compared like any other). ``max_value=None`` is for physical values
    (reflectance): the data range is the reference's maximum, as :func:`hmif_indices` takes it. The result is a
    :class:`Scores`; its notes say what was skipped. ``cut`` defaults to :data:`DEFAULT_CUT`.

    ``task="stfuse"`` (spatio-temporal fusion: ``fused`` the prediction, ``reference`` the real fine image of that
    date) gives the indices of :mod:`spatialx.metrics.temporal` instead, over the pixels valid in both files (each
    file's nodata or mask, and finite values; values scaled by the GDAL scale/offset a file records): a
    :class:`Scores` with keys :data:`STFUSE_KEYS` (``"pixels"`` the number compared) and ``"bands"``
    (``{band: {RMSE, MAE, bias, R2, CC, SSIM}}``, named by the reference's band descriptions, else ``"band 1"``,
    ...). Overall values are means over bands; ``bias`` is prediction minus truth. ``ratio`` is ERGAS's coarse:fine
    ratio (a convention here; ``None``: 1), ``max_value`` the SSIM data range (``None``: each band's truth range),
    ``cut`` defaults to 0. Other tasks (``None``, ``"pansharpen"``, ``"hmif"``) compare as above.

    ``task="polsar"``: two 9-band C3 images, scored with :func:`polsar_indices` (d_R, channel MAE/RMSE, span PSNR,
    H/A/alpha differences); ``ratio`` and ``max_value`` do not apply.
    """
    kind = compare_task(task)
    stfuse = kind == "stfuse"
    if kind == "polsar":
        return _compare_polsar(reference, fused, 0 if cut is None else cut)
    if not stfuse:
        if ratio is None:
            raise SpatialxError("the resolution ratio is needed for ERGAS", hint="give ratio (e.g. 4)")
        cut = DEFAULT_CUT if cut is None else cut
    ref_info, fused_info = open_raster(reference, role="reference"), open_raster(fused, role="fused")
    if ref_info.grid.shape != fused_info.grid.shape or ref_info.count != fused_info.count:
        raise InputMismatchError(
            f"fused is {fused_info.count}x{fused_info.grid.height}x{fused_info.grid.width}, reference "
            f"{ref_info.count}x{ref_info.grid.height}x{ref_info.grid.width}", path=fused_info.path,
            hint="compare images on the same grid with the same bands")
    if ref_info.grid.crs != fused_info.grid.crs or not ref_info.grid.transform.almost_equals(
            fused_info.grid.transform):
        raise InputMismatchError("fused and reference grids differ (CRS or transform)", path=fused_info.path)
    if stfuse:
        return _compare_stfuse(ref_info, fused_info, ratio=1.0 if ratio is None else float(ratio),
                               data_range=max_value, cut=0 if cut is None else cut)
    with gdal_env():
        window = Window(0, 0, ref_info.grid.width, ref_info.grid.height)
        ref, image = _read(ref_info, window), _read(fused_info, window)
    if max_value is not None and ref_info.count <= Q2N_MAX_BANDS:
        return _rounded(reduced_indices(ref, image, ratio=ratio, max_value=max_value, cut=cut))
    return Scores(hmif_indices(ref, image, ratio, cut, max_value=max_value), notes=_q2n_note(ref_info.count))


#: The overall keys of ``evaluate_compare(..., task="stfuse")`` (it adds ``"bands"``, the per-band values).
STFUSE_KEYS = ("RMSE", "MAE", "bias", "R2", "CC", "SSIM", "SAM", "ERGAS", "pixels")
#: The tasks ``evaluate_compare`` takes: those of :data:`TASKS`, compared alike, and ``stfuse``.
COMPARE_TASKS = (*TASKS, "stfuse", "polsar")


def compare_task(task: str | None) -> str | None:
    """The task of a comparison, or a one-line error."""
    if task is None:
        return None
    name = str(task).strip().lower()
    if name not in COMPARE_TASKS:
        raise SpatialxError(f"--task {task}: compare judges {', '.join(COMPARE_TASKS)}",
                            hint="stfuse for a predicted fine image against the real one, polsar for two C3 "
                                 "images; pansharpen and hmif compare alike")
    return name


def _read_physical(info: RasterInfo) -> tuple[np.ndarray, np.ndarray]:
    """The whole raster as float32 in the units its GDAL scale/offset give, and where it holds data: its mask
    (nodata, alpha, internal mask), pixels equal to its nodata in any band, and finite values in every band."""
    window = Window(0, 0, info.grid.width, info.grid.height)
    reader = info.reader()  # a sensor product's own reader, else GDAL's
    try:
        image = reader.read(window)
        valid = reader.read_valid(window) if info.has_mask else np.ones(image.shape[1:], dtype=bool)
    finally:
        reader.close()
    if info.nodata is not None and not math.isnan(info.nodata):
        valid &= ~(image == np.float32(info.nodata)).any(axis=0)
    valid &= np.isfinite(image).all(axis=0)
    linear = _gdal_linear(info)
    if linear is not None:
        image = image * linear[0] + linear[1]
    return image, valid


def _band_labels(info: RasterInfo) -> list[str]:
    """Band names for per-band results: the descriptions when each band has its own, else ``band 1``, ..."""
    names = [str(d).strip() if d else "" for d in info.descriptions]
    if len(names) == info.count and all(names) and len(set(names)) == len(names):
        return names
    return [f"band {b + 1}" for b in range(info.count)]


def _compare_stfuse(ref_info: RasterInfo, fused_info: RasterInfo, *, ratio: float, data_range: float | None,
                    cut: int) -> Scores:
    """``evaluate_compare(..., task="stfuse")`` on two rasters already checked to share grid and bands."""
    from spatialx.metrics.temporal import temporal_indices

    if not ratio > 0:
        raise SpatialxError(f"--ratio {ratio:g}: the resolution ratio must be positive")
    with gdal_env():
        truth, truth_valid = _read_physical(ref_info)
        prediction, prediction_valid = _read_physical(fused_info)
    valid = truth_valid & prediction_valid
    h, w = valid.shape
    if cut > 0 and min(h, w) > 2 * cut:
        truth, prediction = truth[:, cut:-cut, cut:-cut], prediction[:, cut:-cut, cut:-cut]
        valid = valid[cut:-cut, cut:-cut]
    total, compared = valid.size, int(valid.sum())
    if compared == 0:
        raise InputMismatchError("the prediction and the reference have no pixel with data in common",
                                 path=fused_info.path, hint="check the nodata of both files")
    values = temporal_indices(truth, prediction, valid, ratio=ratio, data_range=data_range,
                              band_names=_band_labels(ref_info))
    notes = []
    if compared < total:
        notes.append(f"{total - compared} of {total} pixels left out: nodata or not finite in either image")
    return Scores(values, notes=notes)


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


# ------------------------------------------------------------------------------------------------------------- hmif


class Scores(dict):
    """Index values as a plain mapping (JSON writes it as one) and ``notes``: how they were computed (defaults
    used, indices skipped), for the CLI to print."""

    def __init__(self, values: Mapping[str, Any] | None = None, notes: Sequence[str] = ()):
        super().__init__(values or {})
        self.notes = list(notes)


def _task(task: str) -> str:
    name = get_task(task).name
    if name not in TASKS:
        raise SpatialxError(f"evaluate does not judge the {name} task", hint=f"choose one of: {', '.join(TASKS)}")
    return name


def _q2n_note(bands: int) -> list[str]:
    if bands <= Q2N_MAX_BANDS:
        return []
    return [f"Q2n not computed: {bands} bands need a hypercomplex algebra of dimension "
            f"{1 << (bands - 1).bit_length()} (it is computed up to {Q2N_MAX_BANDS} bands)"]


@dataclass
class HMIFScene:
    """The HS on its own grid and the MS on its grid over their common, exactly nested extent (physical values)."""

    hs: np.ndarray  # (HS bands, h, w)
    ms: np.ndarray  # (MS bands, h * grid_ratio, w * grid_ratio)
    grid_ratio: int  # MS pixels per HS pixel (1: the HS was delivered on the MS grid)
    sensors: dict[str, SensorProfile]  # each role's profile as it describes the file
    fused: np.ndarray | None = None  # a fused image on the MS grid over the same extent
    notes: list[str] = field(default_factory=list)


def _hmif_sensors(sensor: str | SensorProfile | Mapping[str, str | SensorProfile] | None,
                  ) -> dict[str, str | SensorProfile]:
    if sensor is None:
        return dict(HMIF_SENSORS)
    if isinstance(sensor, Mapping):
        return {**HMIF_SENSORS, **sensor}
    return {"hs": sensor, "ms": sensor}


class _HMIFPlan:
    """Where the exactly nested common extent of HS, MS (and a fused image on the MS grid) lies in each file.

    Boxes are counted in blocks of the common grid (one HS pixel, ``grid_ratio`` MS pixels, each way).
    """

    def __init__(self, hs: str | PathLike[str], ms: str | PathLike[str],
                 sensor: str | SensorProfile | Mapping[str, str | SensorProfile] | None,
                 bands: str | Mapping[str, str] | None, read_options: Mapping[str, Mapping[str, Any]] | None,
                 fused: str | PathLike[str] | None):
        from spatialx.options import RunOptions
        from spatialx.pipeline import open_scene

        options = RunOptions(bands=bands, read_options=dict(read_options or {}))
        scene, profiles = open_scene(HMIF, {"hs": hs, "ms": ms}, _hmif_sensors(sensor), options)
        self.scene: SceneInputs = scene
        self.sensors = profiles
        self.notes = [n for n in scene.alignment.notes if "reprojected" in n or "common footprint" in n]
        hs_info = scene.rasters["hs"]
        hs_nest = nest(scene.alignment.resamplers["hs"], "HS")
        if hs_nest.scale < 1 or hs_nest.scale.denominator != 1:
            raise InputMismatchError(f"the HS:MS grid ratio {hs_nest.scale} is not a whole number >= 1",
                                     path=hs_info.path, hint="the indices need each HS pixel to cover whole MS pixels")
        common = common_grid({"hs": hs_nest}, scene.alignment.grid.shape)
        if isinstance(common, str):
            raise InputMismatchError(f"the inputs have no common extent ({common})", path=hs_info.path)
        self.common: CommonGrid = common
        self.grid_ratio = int(hs_nest.scale)
        self.fused: RasterInfo | None = None
        self.fused_origin = (0, 0)  # the output grid's first pixel in the fused file (row, col)
        self._fused_linear: tuple[np.ndarray, np.ndarray] | None = None
        if fused is not None:
            self.fused = open_raster(fused, role="fused")
            if self.fused.count != len(profiles["hs"].bands):
                raise InputMismatchError(f"the fused image has {self.fused.count} bands, the HS "
                                         f"{len(profiles['hs'].bands)}", path=self.fused.path,
                                         hint="give the product fused from these inputs (and the same --bands)")
            self.fused_origin = self._locate_fused(self.fused)
            self._fused_linear = _gdal_linear(self.fused)

    @property
    def blocks(self) -> tuple[int, int]:
        return self.common.blocks

    def _locate_fused(self, info: RasterInfo) -> tuple[int, int]:
        """The output grid's first pixel in the fused file: the fused image must lie on the MS grid."""
        grid, own = self.scene.alignment.grid, info.grid
        if (grid.crs is None) != (own.crs is None) or (grid.crs is not None and grid.crs != own.crs):
            raise InputMismatchError("the fused image is not in the MS CRS", path=info.path,
                                     hint="give the product fused from these inputs, on the MS grid")
        a, e = grid.transform.a, grid.transform.e
        if abs(own.transform.a - a) > 1e-6 * abs(a) or abs(own.transform.e - e) > 1e-6 * abs(e):
            raise InputMismatchError(f"the fused image's pixels ({own.transform.a:g}) are not the MS's ({a:g})",
                                     path=info.path, hint="give the product fused on the MS grid")
        col = (grid.transform.c - own.transform.c) / a
        row = (grid.transform.f - own.transform.f) / e
        if abs(col - round(col)) > 1e-3 or abs(row - round(row)) > 1e-3:
            raise InputMismatchError("the fused image's pixels do not line up with the MS pixels", path=info.path,
                                     hint="give the product fused on the MS grid")
        return round(row), round(col)

    def out_window(self, row: int, col: int, rows: int, cols: int) -> Window:
        block_r, block_c = self.common.block
        return Window(self.common.col_start + col * block_c, self.common.row_start + row * block_r,
                      cols * block_c, rows * block_r)

    def read(self, row: int = 0, col: int = 0, rows: int | None = None,
             cols: int | None = None) -> tuple[HMIFScene, bool]:
        """The box of ``rows x cols`` blocks from block (row, col) and whether every pixel of it holds data.

        The readers must be open (``with plan.scene:``).
        """
        rows, cols = rows or self.blocks[0], cols or self.blocks[1]
        scene = self.scene
        window = self.out_window(row, col, rows, cols)
        windows = {"ms": scene.guide_window(window), "hs": self.common.source_window("hs", window)}
        arrays = {role: scene.read_native(role, w) for role, w in windows.items()}
        valid = all(scene.readers[role].read_valid(w, scene.bands[role]).all()
                    for role, w in windows.items() if scene.rasters[role].has_mask)
        fused = None
        if self.fused is not None:
            r0, c0 = self.fused_origin
            fused_window = Window(c0 + window.col_off, r0 + window.row_off, window.width, window.height)
            if (fused_window.col_off < 0 or fused_window.row_off < 0
                    or fused_window.col_off + fused_window.width > self.fused.grid.width
                    or fused_window.row_off + fused_window.height > self.fused.grid.height):
                raise InputMismatchError("the fused image does not cover the common extent of the HS and MS",
                                         path=self.fused.path, hint="give the product fused from these inputs")
            with ThreadLocalReader(self.fused) as reader:
                fused = reader.read(fused_window)
                if self.fused.has_mask:
                    valid &= bool(reader.read_valid(fused_window).all())
            if self._fused_linear is not None:
                fused = fused * self._fused_linear[0] + self._fused_linear[1]
        images = [arrays["hs"], arrays["ms"], *([] if fused is None else [fused])]
        valid &= all(bool(np.isfinite(a).all()) for a in images)
        return HMIFScene(arrays["hs"], arrays["ms"], self.grid_ratio, self.sensors, fused, list(self.notes)), valid


def _gdal_linear(info: RasterInfo) -> tuple[np.ndarray, np.ndarray] | None:
    """The band scales and offsets GDAL records (a uint16 product storing reflectance / 1e-4), or None."""
    import rasterio

    if info.opener is not None:  # a product a format reader opens delivers its values itself
        return None
    with gdal_env(), rasterio.open(info.path) as src:
        scales, offsets = np.asarray(src.scales, np.float64), np.asarray(src.offsets, np.float64)
    if np.all(scales == 1) and np.all(offsets == 0):
        return None
    return scales[:, None, None].astype(np.float32), offsets[:, None, None].astype(np.float32)


def read_hmif(hs: str | PathLike[str], ms: str | PathLike[str],
              sensor: str | SensorProfile | Mapping[str, str | SensorProfile] | None = None, *,
              bands: str | Mapping[str, str] | None = None,
              read_options: Mapping[str, Mapping[str, Any]] | None = None,
              fused: str | PathLike[str] | None = None) -> HMIFScene:
    """Open an hmif pair with the pipeline's readers and read the HS (own grid), the MS (own grid) and optionally a
    fused image (MS grid) over their whole, exactly nested common extent.

    ``sensor`` is ``{"hs": ..., "ms": ...}`` (missing roles default to :data:`HMIF_SENSORS`) or one sensor for both.
    Nodata anywhere in the extent is refused: the indices need complete images.
    """
    plan = _HMIFPlan(hs, ms, sensor, bands, read_options, fused)
    with gdal_env(), plan.scene:
        scene, valid = plan.read()
    if not valid:
        raise InputMismatchError("the inputs have nodata (or non-finite) pixels in their common extent",
                                 path=plan.scene.rasters["hs"].path,
                                 hint="the indices need complete images: crop the inputs to their valid area")
    return scene


def fuse_reduced_hmif(reduced: HMIFReducedScene, method: str,
                      method_options: Mapping[str, Any] | None = None) -> np.ndarray:
    """Fuse a reduced-resolution hmif scene with ``method`` on whole arrays."""
    from spatialx.methods.base import MethodContext

    ratio = float(reduced.ratio)
    context = MethodContext(HMIF, dict(reduced.sensors), ratio, {"hs": ratio})
    fusion = create_method(method, context, **dict(method_options or {}))
    return fuse_arrays(fusion, {"hs": reduced.hs_up, "ms": reduced.ms}, {"hs": reduced.hs_lr})


def score_reduced_hmif(reduced: HMIFReducedScene, method: str, cut: int | None = None,
                       method_options: Mapping[str, Any] | None = None) -> dict[str, float | None]:
    fused = fuse_reduced_hmif(reduced, method, method_options)
    return hmif_indices(reduced.reference, fused, reduced.ratio, reduced.ratio if cut is None else cut)


def _q2n_physical(ref: np.ndarray, fused: np.ndarray, block: int) -> float:
    """Q2n of physical values: the toolbox rounds to uint16, which would flatten reflectance to 0 and 1, so both
    images are first scaled by one common factor (Q2n normalises each block, so the factor cancels)."""
    top = max(float(np.max(ref)), float(np.max(fused)))
    factor = 65535.0 / top if top > 0 else 1.0
    return q2n(ref * factor, fused * factor, block, block)


def hmif_indices(ref: np.ndarray, fused: np.ndarray, ratio: float, cut: int = 0, block: int = 32,
                 max_value: float | None = None) -> dict[str, float | None]:
    """The reference-based indices of :data:`REDUCED_KEYS` for physical values (any number of bands).

    As :func:`~spatialx.metrics.reduced_indices` (border cut unless the image is too small, Q in a ``block``
    window, ERGAS with ``ratio``), except: the data range of PSNR/SSIM is ``max_value`` or else the reference's
    maximum; Q2n is computed on rescaled values (see :func:`_q2n_physical`) and is ``None`` above
    :data:`Q2N_MAX_BANDS` bands.
    """
    r, f = np.asarray(ref, dtype=np.float64), np.asarray(fused, dtype=np.float64)
    if r.shape != f.shape:
        raise InputMismatchError(f"fused {f.shape} and reference {r.shape} differ")
    h, w = r.shape[1:]
    if cut > 0 and min(h, w) > 2 * cut:
        r, f = cut_border(r, cut), cut_border(f, cut)
    peak = float(np.max(r)) if max_value is None else float(max_value)
    quality = None
    if r.shape[0] <= Q2N_MAX_BANDS:
        quality = q2n(r, f, block, block) if max_value is not None else _q2n_physical(r, f, block)
    return {"Q2n": quality, "Q": q_index(r, f, block), "SAM": sam(r, f), "ERGAS": ergas(r, f, ratio),
            "SCC": scc(r, f), "PSNR": psnr(r, f, peak), "SSIM": ssim(r, f, peak), "CC": cc(r, f)}


def score_full_hmif(hs: np.ndarray, ms: np.ndarray, fused: np.ndarray, sensors: Mapping[str, SensorProfile],
                    grid_ratio: int, ratio: int | None = None, block: int = 32) -> tuple[dict[str, float], list[str]]:
    """Full-resolution hmif indices (:data:`HMIF_FULL_KEYS`, defined in the module docstring) and notes.

    ``hs`` (B, h, w) on its grid, ``ms`` and ``fused`` (M or B, h g, w g) on the MS grid, ``g = grid_ratio``. When
    ``g`` is 1 the HS and the fused image are both degraded by ``ratio`` first.
    """
    hs_sensor, ms_sensor = sensors["hs"], sensors["ms"]
    if fused.shape[0] != hs.shape[0] or fused.shape[1:] != ms.shape[1:]:
        raise InputMismatchError(f"fused image {fused.shape} does not match the HS bands ({hs.shape[0]}) on the MS "
                                 f"grid {ms.shape[1:]}")
    gains, notes = mtf_gains(hs_sensor, "HS")
    hs_ref = np.asarray(hs, dtype=np.float64)
    if grid_ratio == 1:
        if not ratio or ratio < 2:
            raise InputMismatchError("the HS lies on the MS grid: the spectral consistency needs the ratio to "
                                     "degrade both by", hint="give it with --ratio (e.g. 3)")
        rows, cols = (hs.shape[1] // ratio) * ratio, (hs.shape[2] // ratio) * ratio
        hs_ref = degrade(hs_ref[:, :rows, :cols], gains, ratio)
        degraded = degrade(fused[:, :rows, :cols], gains, ratio)
        scale = ratio
        notes.append(f"HS on the MS grid: the HS and the fused image are both degraded by {ratio} for the spectral "
                     f"consistency")
    else:
        if ratio and ratio != grid_ratio:
            notes.append(f"the fused image is compared with the HS on its own grid: grid ratio {grid_ratio} used, "
                         f"not {ratio}")
        degraded = degrade(fused, gains, grid_ratio)
        scale = grid_ratio
    from spatialx.methods.classical._spectral import spectral_response_matrix

    matrix = spectral_response_matrix(hs_sensor, ms_sensor)
    covered = [m for m in range(matrix.shape[0]) if matrix[m].sum() > 0]
    if not covered:
        raise InputMismatchError(f"no band of the MS sensor {ms_sensor.key} overlaps the spectrum of the HS sensor "
                                 f"{hs_sensor.key}", hint="check the sensors given for the two inputs")
    if len(covered) < matrix.shape[0]:
        names = [ms_sensor.bands[m].name for m in range(matrix.shape[0]) if m not in covered]
        notes.append(f"MS bands outside the HS spectrum left out of the spatial consistency: {', '.join(names)}")
    synthetic = np.tensordot(matrix[covered], np.asarray(fused, dtype=np.float64), axes=1)
    ms_ref = np.asarray(ms, dtype=np.float64)[covered]
    values = {"SAM_HS": sam(hs_ref, degraded), "ERGAS_HS": ergas(hs_ref, degraded, scale),
              "PSNR_HS": psnr(hs_ref, degraded, float(hs_ref.max())),
              "PSNR_MS": psnr(ms_ref, synthetic, float(ms_ref.max())), "CC_MS": cc(ms_ref, synthetic),
              "Q_MS": q_index(ms_ref, synthetic, block)}
    return values, notes


def _report_sensors(sensors: str | SensorProfile | Mapping[str, str | SensorProfile],
                    fused: str | PathLike[str]) -> tuple[dict[str, str | SensorProfile], list[str]]:
    """Each role's sensor for a report. ``spatialx.fuse`` hands its reports the output-like role's sensor only (the
    HS's); the MS's is then the one the product's provenance names (``SPATIALX_SENSOR``: ``{"HS": .., "MS": ..}``, or
    one key when a single sensor served both roles)."""
    import json

    import rasterio

    if isinstance(sensors, Mapping) and "ms" in sensors:
        return _hmif_sensors(sensors), []
    hs = sensors["hs"] if isinstance(sensors, Mapping) else sensors
    with gdal_env(), rasterio.open(fused) as src:
        tag = src.tags().get("SPATIALX_SENSOR")
    if tag is None:
        return {"hs": hs, "ms": HMIF_SENSORS["ms"]}, [
            f"the product names no MS sensor (no SPATIALX_SENSOR tag): {HMIF_SENSORS['ms']} assumed"]
    try:
        named = json.loads(tag)
    except ValueError:
        named = tag  # a single key is written as it is
    return {"hs": hs, "ms": named.get("MS", HMIF_SENSORS["ms"]) if isinstance(named, dict) else named}, []


def quality_report_hmif(hs: str | PathLike[str], ms: str | PathLike[str], fused: str | PathLike[str],
                        sensors: str | SensorProfile | Mapping[str, str | SensorProfile], *, ratio: int | None = None,
                        bands: str | Mapping[str, str] | None = None, samples: int = 16, window: int = 256,
                        read_options: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Full-resolution hmif indices (:data:`HMIF_FULL_KEYS`) on a regular sample of ``samples`` windows of about
    ``window`` MS pixels: the report of ``spatialx hmif --report``, whose cost does not grow with the scene.

    ``sensors`` is ``{"hs": ..., "ms": ...}``, or the HS's sensor alone (what ``spatialx.fuse`` passes; the MS's is
    then read from the product's provenance, see :func:`_report_sensors`). Windows holding nodata are skipped. The
    summary is the mean over windows; each window's values are listed too, with its position in product pixels.
    """
    chosen, notes = _report_sensors(sensors, fused)
    plan = _HMIFPlan(hs, ms, chosen, bands, read_options, fused)
    grid_ratio, block = plan.grid_ratio, plan.common.block[0]
    if grid_ratio == 1 and (not ratio or ratio < 2):
        raise InputMismatchError("the HS lies on the MS grid: the report needs the ratio to degrade by",
                                 path=plan.scene.rasters["hs"].path, hint="give it with --ratio (e.g. 3)")
    unit = grid_ratio if grid_ratio > 1 else int(ratio)  # type: ignore[arg-type]
    # MS pixels per side: a multiple of the degradation, at least 8 pixels of the coarser grid.
    size = max(unit * 8, (window // unit) * unit)
    size_r = min(size, (plan.blocks[0] * block // unit) * unit) // block
    size_c = min(size, (plan.blocks[1] * block // unit) * unit) // block
    if size_r * block < 4 * unit or size_c * block < 4 * unit:
        raise InputMismatchError("the common extent of the HS and MS is too small for a quality report",
                                 path=Path(fused))
    per_side = max(1, math.isqrt(samples))
    starts_r = np.unique(np.linspace(0, plan.blocks[0] - size_r, per_side).astype(int))
    starts_c = np.unique(np.linspace(0, plan.blocks[1] - size_c, per_side).astype(int))
    windows, skipped = [], 0
    origin_r, origin_c = plan.fused_origin
    with gdal_env(), plan.scene:
        for r in starts_r:
            for c in starts_c:
                scene, valid = plan.read(int(r), int(c), size_r, size_c)
                if not valid:
                    skipped += 1
                    continue
                assert scene.fused is not None
                values, window_notes = score_full_hmif(scene.hs, scene.ms, scene.fused, plan.sensors, grid_ratio,
                                                       ratio)
                notes.extend(n for n in window_notes if n not in notes)
                out = plan.out_window(int(r), int(c), size_r, size_c)
                windows.append({"row": int(out.row_off) + origin_r, "col": int(out.col_off) + origin_c,
                                "size": [int(out.height), int(out.width)], **_rounded(values)})
    if not windows:
        raise InputMismatchError(f"every one of the {skipped} sampled windows holds nodata", path=Path(fused),
                                 hint="the report needs windows where the HS, the MS and the product all hold data")
    if skipped:
        notes.append(f"{skipped} of {skipped + len(windows)} sampled windows hold nodata and were skipped")
    summary = {key: float(np.mean([w[key] for w in windows])) for key in HMIF_FULL_KEYS}
    return {"protocol": "full resolution (no reference): spectral consistency with the HS, spatial consistency "
                        "with the MS; mean over sampled windows",
            "sensor": {"HS": plan.sensors["hs"].key, "MS": plan.sensors["ms"].key},
            "ratio": grid_ratio if grid_ratio > 1 else int(ratio),  # type: ignore[arg-type]
            "indices": summary, "windows": windows, "notes": notes}


# ----------------------------------------------------------------------------------------------------------- polsar
#: Indices of a fused C3 against the reference C3 (:func:`polsar_indices`).
POLSAR_KEYS = ("d_R", "MAE", "RMSE", "span_PSNR", "dH", "dA", "dalpha")


def polsar_indices(reference: np.ndarray, fused: np.ndarray, cut: int = 0) -> dict[str, float]:
    """A fused C3 (9, H, W) against the reference: the mean affine-invariant Riemannian distance ``d_R``, the MAE
    and RMSE over the 9 channels, the PSNR of the span (dB), and how well the Cloude-Pottier parameters survive:
    mean absolute differences of entropy ``dH``, anisotropy ``dA`` and alpha ``dalpha`` (degrees). ``cut`` drops a
    border first."""
    from spatialx.metrics.polsar import channel_errors, cloude_pottier, riemannian_distance, span_psnr

    if cut:
        reference, fused = reference[:, cut:-cut, cut:-cut], fused[:, cut:-cut, cut:-cut]
    errors = channel_errors(reference, fused)
    ref_haa, fused_haa = cloude_pottier(reference), cloude_pottier(fused)
    differences = [float(np.nanmean(np.abs(a - b))) for a, b in zip(ref_haa, fused_haa, strict=True)]
    # Interpolated and projected matrices may be singular (an eigenvalue at 0, or -1e-8 of the largest from rounding):
    # the distance needs positive definite ones, so both get the same tiny ridge, 1e-6 of the mean span.
    ridge = 1e-6 * float(np.nanmean(reference[0] + reference[5] + reference[8]))
    return {"d_R": float(riemannian_distance(reference, fused, eps=ridge)), "MAE": errors["mae_all"],
            "RMSE": errors["rmse_all"], "span_PSNR": span_psnr(reference, fused), "dH": differences[0],
            "dA": differences[1], "dalpha": differences[2]}


def _compare_polsar(reference: str | PathLike[str], fused: str | PathLike[str], cut: int) -> Scores:
    ref_info, fused_info = open_raster(reference, role="reference"), open_raster(fused, role="fused")
    for info in (ref_info, fused_info):
        if info.count != 9:
            raise InputMismatchError(f"{info.count} bands: a C3 image has 9 (C11, C12_re, ..., C33)", path=info.path,
                                     hint="compare two C3 images written by spatialx polsar")
    if ref_info.grid.shape != fused_info.grid.shape or ref_info.grid.transform != fused_info.grid.transform:
        raise InputMismatchError("fused and reference grids differ", path=fused_info.path,
                                 hint="compare images on the same grid")
    with gdal_env():
        window = Window(0, 0, ref_info.grid.width, ref_info.grid.height)
        reference_c3, fused_c3 = _read(ref_info, window), _read(fused_info, window)
    return Scores(_rounded(polsar_indices(reference_c3.astype(np.float64), fused_c3.astype(np.float64), cut)))


def evaluate_reduced_polsar(quad: str | PathLike[str], methods: Sequence[str], *, ratio: int = 2,
                            looks: int | None = None, speckle: str = "boxcar", cut: int = 0, polarisation: str = "HH",
                            method_options: Mapping[str, Any] | None = None) -> Scores:
    """The reduced-resolution protocol for polsar: the quad-pol scene's C3 (multilooked with ``looks``) is the
    reference; it is averaged over ``ratio x ratio`` blocks (the low-resolution quad-pol), the single-pol is its
    full-resolution ``polarisation`` intensity; each method fuses the pair through the product pipeline
    (:func:`spatialx.tasks.polsar.polsar`) and is scored with :func:`polsar_indices`."""
    import tempfile

    from spatialx.tasks.polsar import polsar, simulate_pair

    window = looks or (7 if speckle == "refined-lee" else 5)
    results = Scores(notes=[f"reference: C3 with a {window} x {window} {speckle}; low resolution: {ratio} x {ratio} "
                            f"block means; single-pol: the {polarisation} intensity"])
    with tempfile.TemporaryDirectory(prefix="spatialx-polsar-eval-") as scratch:
        pair = simulate_pair(quad, ratio, scratch, looks=looks, speckle=speckle, polarisation=polarisation)
        with rasterio.open(pair["reference"]) as src:
            reference = src.read().astype(np.float64)
        for name in methods:
            output = Path(scratch) / f"{name}.tif"
            polsar(pair["quad"], pair["single"], output, method=name, style=False,
                   method_options=dict(_network_options(name, "polsar", method_options) or {}))
            with rasterio.open(output) as src:
                fused = src.read().astype(np.float64)
            results[name] = _rounded(polsar_indices(reference, fused, cut))
    return results
