"""The alignment preflight: the shift between the PAN and the MS content, its sign, and what is done about it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from scenes import CRS, write_pair, write_tif
from scipy.ndimage import gaussian_filter
from scipy.ndimage import shift as nd_shift

from spatialx.options import RunOptions
from spatialx.pipeline import open_scene
from spatialx.registration import (
    corrected_transform,
    estimate_shift,
    intensity,
    preflight,
    preflight_arrays,
    shift_map,
)
from spatialx.scene import first_pass
from spatialx.tasks import get_task

SIZE, RATIO = 512, 4
WEIGHTS = np.array([0.20, 0.24, 0.20, 0.36])  # QuickBird's PAN weights
PAN_TRANSFORM = Affine(0.5, 0, 500000.0, 0, -0.5, 4800000.0)
MS_TRANSFORM = Affine(2.0, 0, 500000.0, 0, -2.0, 4800000.0)


def _field(seed: int, sigma: float) -> np.ndarray:
    f = gaussian_filter(np.random.default_rng(seed).random((SIZE, SIZE)), sigma)
    return (f - f.min()) / (f.max() - f.min())


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    """Four bands at PAN resolution sharing a common structure (so the PAN and the MS look alike)."""
    common = _field(1, 2.0)
    return np.stack([0.6 * common + 0.4 * _field(10 + b, 6.0) for b in range(4)])


def _ms(truth: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """The MS whose content is moved by ``shift`` (dx, dy) MS pixels from where the georeferencing puts it: the
    truth resampled, then averaged over 4 x 4 blocks."""
    moved = np.stack([nd_shift(t, (shift[1] * RATIO, shift[0] * RATIO), order=3, mode="reflect") for t in truth])
    rows, cols = truth.shape[1] // RATIO, truth.shape[2] // RATIO
    return moved.reshape(len(truth), rows, RATIO, cols, RATIO).mean(axis=(2, 4))


def _write(directory: Path, truth: np.ndarray, shift: tuple[float, float],
           ms_transform: Affine = MS_TRANSFORM) -> tuple[Path, Path]:
    pan = np.tensordot(WEIGHTS, truth, axes=1)
    pan_path = write_tif(directory / "pan.tif", (200 + 1500 * pan[None]).astype("uint16"), PAN_TRANSFORM, CRS)
    ms_path = write_tif(directory / "ms.tif", (200 + 1500 * _ms(truth, shift)).astype("uint16"), ms_transform, CRS)
    return pan_path, ms_path


def _preflight(pan: Path, ms: Path, pixel_budget: int | None = None):
    scene, sensors = open_scene(get_task("pansharpen"), {"pan": pan, "ms": ms}, "qb", RunOptions())
    with scene:
        sample = first_pass(scene, pixel_budget)
    return preflight(sample, scene, sensors), sample


def test_zero_shift_is_ok(truth, tmp_path):
    result, _ = _preflight(*_write(tmp_path, truth, (0.0, 0.0)))
    assert result.estimate.reliable and result.estimate.magnitude < 0.1
    assert result.decision == "ok" and result.tags()["decision"] == "ok"


@pytest.mark.parametrize("shift", [(2.0, -1.0), (0.5, 0.25), (-1.3, 0.7)])
def test_known_shift_is_measured_with_its_sign(truth, tmp_path, shift):
    """The MS content moved by +s: it must move by -s to match the PAN."""
    result, _ = _preflight(*_write(tmp_path, truth, shift))
    est = result.estimate
    assert est.reliable and est.confidence > 0.5
    assert abs(est.dx + shift[0]) < 0.15 and abs(est.dy + shift[1]) < 0.15
    assert result.decision == "warn"
    assert len([w for w in est.windows if w.usable]) == 4


def test_ten_pixels_is_refused(truth, tmp_path):
    """The user's case: 10 MS pixels east of where the georeferencing puts it."""
    result, _ = _preflight(*_write(tmp_path, truth, (10.0, 0.0)))
    assert result.decision == "refuse"
    assert abs(result.estimate.dx + 10) < 0.15 and abs(result.estimate.dy) < 0.15
    assert "10.00 MS pixels" in result.message


def test_corrected_transform_aligns_the_pair(truth, tmp_path):
    """The sign convention end to end: moving the MS georeferencing by the estimate leaves no shift."""
    shift = (2.0, -1.0)
    pan, ms = _write(tmp_path, truth, shift)
    est = _preflight(pan, ms)[0].estimate
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    with rasterio.open(ms) as src:
        transform = corrected_transform(src.transform, est)
    again, _ = _preflight(*_write(fixed, truth, shift, ms_transform=transform))
    assert again.decision == "ok" and again.estimate.magnitude < 0.15


def test_stride_keeps_low_resolution_units(truth, tmp_path):
    """A strided first pass (large scenes) reports the shift in MS pixels all the same."""
    result, sample = _preflight(*_write(tmp_path, truth, (2.0, -1.0)), pixel_budget=SIZE * SIZE // 4)
    assert sample.stride == 2
    assert abs(result.estimate.dx + 2) < 0.2 and abs(result.estimate.dy - 1) < 0.2


@pytest.fixture(scope="module")
def quickbird(shared_dir) -> tuple[np.ndarray, np.ndarray]:
    """The real QuickBird Toulouse PAN and XS (the XS delivered on the PAN grid), as float64."""
    real = shared_dir / "data" / "real"
    with rasterio.open(real / "qb_toulouse_pan.tif") as pan, rasterio.open(real / "qb_toulouse_xs.tif") as xs:
        return pan.read().astype(np.float64), xs.read().astype(np.float64)


def _real_pair(directory: Path, quickbird, shift: tuple[float, float]) -> tuple[Path, Path]:
    """The real PAN, and the real XS moved by ``shift`` MS pixels and averaged onto its native 4:1 grid."""
    pan, xs = quickbird
    directory.mkdir()
    pan_path = write_tif(directory / "pan.tif", pan.astype("uint16"), PAN_TRANSFORM, CRS)
    return pan_path, write_tif(directory / "ms.tif", _ms(xs, shift).astype("uint16"), MS_TRANSFORM, CRS)


def test_real_imagery_shift_is_measured_against_the_pairs_own_offset(quickbird, tmp_path):
    """Real textures and a real PAN/XS spectral mismatch: every imposed shift is recovered to 0.1 MS pixel on top
    of the pair's own offset (about a PAN pixel, measured as it comes), and 10 MS pixels is refused."""
    own = _preflight(*_real_pair(tmp_path / "own", quickbird, (0.0, 0.0)))[0]
    assert own.decision == "ok" and own.estimate.reliable and own.estimate.magnitude < 0.5
    for k, shift in enumerate([(2.0, -1.0), (-1.3, 0.7), (0.0, -3.5), (10.0, 0.0)]):
        result = _preflight(*_real_pair(tmp_path / f"moved{k}", quickbird, shift))[0]
        est = result.estimate
        assert est.reliable, shift
        assert abs(est.dx - own.estimate.dx + shift[0]) < 0.1 and abs(est.dy - own.estimate.dy + shift[1]) < 0.1
        assert result.decision == ("refuse" if max(map(abs, shift)) > 3 else "warn"), shift


def test_flat_image_is_unreliable():
    flat = np.full((SIZE, SIZE), 500.0)
    est = estimate_shift(flat[None], flat, RATIO)
    assert not est.reliable and math.isnan(est.dx) and "no texture" in est.reason
    assert preflight_arrays(flat[None], flat, RATIO).decision == "unknown"


def test_unrelated_content_is_unreliable(tmp_path):
    """write_pair's PAN and MS are independent fields: no shift can be measured, none is made up."""
    result, _ = _preflight(*write_pair(tmp_path, pan_size=(512, 512)))
    assert result.decision == "unknown" and not result.estimate.reliable


def test_nodata_holes_are_tolerated(truth):
    shift = (2.0, -1.0)
    pan = np.tensordot(WEIGHTS, truth, axes=1)
    ms = np.kron(_ms(truth, shift), np.ones((RATIO, RATIO)))  # nearest upsampling onto the PAN grid
    pan[40:140, 300:420] = np.nan
    ms[:, 350:380, 50:200] = np.nan
    est = estimate_shift(pan[None], intensity(ms, WEIGHTS), RATIO)
    assert est.reliable
    assert abs(est.dx + shift[0]) < 0.15 and abs(est.dy + shift[1]) < 0.15
    holey = estimate_shift(np.full_like(pan, np.nan)[None], intensity(ms, WEIGHTS), RATIO)
    assert not holey.reliable and "nodata" in holey.reason


def test_shift_map_has_a_shift_per_window(truth):
    pan = np.tensordot(WEIGHTS, truth, axes=1)
    ms = np.kron(_ms(truth, (0.5, 0.25)), np.ones((RATIO, RATIO)))
    grid = shift_map(pan[None], intensity(ms, WEIGHTS), RATIO, (4, 4))
    assert (grid.rows, grid.cols) == (4, 4) and len(grid.windows) == 16
    usable = [w for w in grid.windows if w.usable]
    assert len(usable) >= 14
    assert all(abs(w.dx + 0.5) < 0.25 and abs(w.dy + 0.25) < 0.25 for w in usable)


def _cli(*args: str):
    import typer
    from typer.testing import CliRunner

    from spatialx.cli import check_alignment

    app = typer.Typer()
    app.command()(check_alignment.command)
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_cli_prints_the_shift(truth, tmp_path):
    pan, ms = _write(tmp_path, truth, (2.0, -1.0))
    result = _cli(str(pan), str(ms), "--sensor", "qb")
    assert result.exit_code == 0, result.output
    assert "dx=-2.00 dy=+1.00" in result.output and "warn" in result.output
    assert "shift map" in result.output


def test_cli_bad_input_is_a_spatialx_error(tmp_path):
    from spatialx.errors import SpatialxError

    result = _cli(str(tmp_path / "missing.tif"), str(tmp_path / "ms.tif"), "--sensor", "qb")
    assert isinstance(result.exception, SpatialxError)


def test_pansharpen_refuses_a_misregistered_pair_and_records_the_shift(truth, tmp_path, request):
    """The user's case: MS content 10 MS pixels off its georeferencing is refused before any tile is fused (one
    line, nothing written) unless --allow-misregistration; a 2 px offset gives one warning; the shift is recorded."""
    import json

    import rasterio

    from spatialx.errors import InputMismatchError
    from spatialx.tasks.pansharpen import pansharpen

    (tmp_path / "ten").mkdir()
    (tmp_path / "two").mkdir()
    pan, ms = _write(tmp_path / "ten", truth, (10.0, 0.0))
    with pytest.raises(InputMismatchError, match="--allow-misregistration"):
        pansharpen(pan, ms, tmp_path / "ten" / "out.tif", "qb", "gsa")
    assert not (tmp_path / "ten" / "out.tif").exists()
    forced = pansharpen(pan, ms, tmp_path / "ten" / "forced.tif", "qb", "gsa", allow_misregistration=True).output
    pan, ms = _write(tmp_path / "two", truth, (2.0, -1.0))
    with pytest.warns(UserWarning, match="offset from the PAN by 2.2"):
        warned = pansharpen(pan, ms, tmp_path / "two" / "out.tif", "qb", "brovey", report=True).output
    report = json.loads((tmp_path / "two" / "out.quality.json").read_text())
    assert report["alignment"]["decision"] == "warn" and report["alignment"]["dx"] == pytest.approx(-2.0, abs=0.3)
    for path, decision in ((forced, "refuse"), (warned, "warn")):
        with rasterio.open(path) as src:
            assert json.loads(src.tags()["SPATIALX_PARAMS"])["alignment"]["decision"] == decision


def test_align_shift_auto_corrects_the_pair_before_fusing(truth, tmp_path):
    import json

    import rasterio

    from spatialx.tasks.pansharpen import pansharpen

    pan, ms = _write(tmp_path, truth, (2.0, -1.0))
    fixed = pansharpen(pan, ms, tmp_path / "fixed.tif", "qb", "gsa", align_shift="auto")
    with rasterio.open(fixed.output) as src:
        params = json.loads(src.tags()["SPATIALX_PARAMS"])
    assert params["alignment_corrected"] == pytest.approx({"dx": -2.0, "dy": 1.0}, abs=0.1)
    assert params["alignment"]["decision"] == "ok"  # measured again after the correction
    assert any("--align-shift auto" in note for note in fixed.notes)


def test_xarray_api_runs_the_same_preflight(truth, tmp_path):
    """``spatialx.xr.fuse`` on labelled arrays refuses the 10-pixel offset as the file path does, and records the
    measured shift in the result's attributes when forced."""
    import rioxarray

    import spatialx.xr
    from spatialx.errors import InputMismatchError

    pan, ms = _write(tmp_path, truth, (10.0, 0.0))
    arrays = {role: rioxarray.open_rasterio(path) for role, path in (("pan", pan), ("ms", ms))}
    with pytest.raises(InputMismatchError, match="--allow-misregistration"):
        spatialx.xr.fuse("pansharpen", arrays, method="gsa", sensor="qb")
    forced = spatialx.xr.fuse("pansharpen", arrays, method="gsa", sensor="qb", allow_misregistration=True)
    assert "refuse" in str(forced.attrs)


def test_evaluate_runs_the_preflight_on_the_pair_it_judges(truth, tmp_path):
    """Indices of a misregistered pair judge the registration: evaluate refuses it as the fusion commands do (one
    line naming the option), judges it with --allow-misregistration, and says the measured shift in its notes."""
    from spatialx.errors import InputMismatchError
    from spatialx.evaluate import evaluate_full, evaluate_reduced
    from spatialx.tasks.pansharpen import pansharpen

    (tmp_path / "ten").mkdir()
    (tmp_path / "zero").mkdir()
    pan, ms = _write(tmp_path / "ten", truth, (10.0, 0.0))
    with pytest.raises(InputMismatchError, match="--allow-misregistration"):
        evaluate_reduced(pan, ms, "qb", ["exp"])
    forced = evaluate_reduced(pan, ms, "qb", ["exp"], allow_misregistration=True)
    assert "exp" in forced and any("dx=" in note and "(refuse)" in note for note in forced.notes)
    pan, ms = _write(tmp_path / "zero", truth, (0.0, 0.0))
    fused = pansharpen(pan, ms, tmp_path / "zero" / "gsa.tif", "qb", "gsa").output
    scores = evaluate_full(pan, ms, fused, "qb")
    assert 0 < scores["HQNR"] <= 1 and any("(ok)" in note for note in scores.notes)
    with pytest.raises(InputMismatchError, match="--allow-misregistration"):
        evaluate_full(*_write(tmp_path / "ten", truth, (10.0, 0.0)), fused, "qb")
