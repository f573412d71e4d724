"""`spatialx evaluate compare --task stfuse`: spatio-temporal fusion scores (spatialx.metrics.temporal), on exact
synthetic cases with nodata holes, through the CLI, and on the real Landsat/MODIS LST pairs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from spatialx.errors import InputMismatchError, SpatialxError
from spatialx.evaluate import STFUSE_KEYS, evaluate_compare
from spatialx.metrics import ssim
from spatialx.metrics.temporal import BAND_KEYS, TEMPORAL_KEYS, masked_ssim, temporal_indices

REAL = Path(__file__).resolve().parents[1].parent / "shared/data/real"
NODATA = float(np.finfo(np.float32).min)  # -3.4028235e38, float32 lowest


@pytest.fixture
def cli(request):
    return request.getfixturevalue("spatialx")


def _write(path: Path, data: np.ndarray, nodata: float | None = NODATA, descriptions=None,
           transform=None) -> Path:
    data = np.asarray(data, np.float32)
    if data.ndim == 2:
        data = data[None]
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": "float32", "crs": "EPSG:32633", "nodata": nodata,
               "transform": transform or Affine(30, 0, 500000, 0, -30, 4500000)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for b, text in enumerate(descriptions or [], start=1):
            dst.set_band_description(b, text)
    return path


def _truth(rows: int = 8, cols: int = 9) -> np.ndarray:
    r, c = np.mgrid[:rows, :cols]
    return (290.0 + r * 1.5 + c * 0.5).astype(np.float32)


# ------------------------------------------------------------------------------------------------------- metrics


def test_a_constant_offset_gives_its_rmse_bias_and_r2():
    t = _truth().astype(np.float64)
    p = t + 2.0
    values = temporal_indices(t, p)
    ss_tot = ((t - t.mean()) ** 2).sum()
    assert tuple(k for k in values if k != "bands") == TEMPORAL_KEYS
    assert values["RMSE"] == pytest.approx(2.0) and values["MAE"] == pytest.approx(2.0)
    assert values["bias"] == pytest.approx(2.0)
    assert values["R2"] == pytest.approx(1 - t.size * 4.0 / ss_tot)
    assert values["CC"] == pytest.approx(1.0)
    assert values["SAM"] is None  # one band
    assert values["ERGAS"] == pytest.approx(100 * 2.0 / t.mean())
    assert values["pixels"] == t.size
    assert list(values["bands"]) == ["band 1"] and tuple(values["bands"]["band 1"]) == BAND_KEYS


def test_bias_is_prediction_minus_truth_and_alternating_errors_cancel():
    t = _truth().astype(np.float64)
    signs = np.where((np.indices(t.shape).sum(axis=0) % 2) == 0, 1.0, -1.0)
    values = temporal_indices(t, t - 3.0)
    assert values["bias"] == pytest.approx(-3.0)  # a prediction too cold has a negative bias
    values = temporal_indices(t, t + signs)
    assert values["bias"] == pytest.approx(signs.mean()) and values["RMSE"] == pytest.approx(1.0)
    assert values["MAE"] == pytest.approx(1.0)


def test_a_perfect_prediction():
    t = np.stack([_truth(), _truth() * 0.5, _truth() + 7])
    values = temporal_indices(t, t)
    assert values["RMSE"] == 0 and values["bias"] == 0 and values["R2"] == 1.0 and values["ERGAS"] == 0
    assert values["CC"] == pytest.approx(1.0) and values["SSIM"] == pytest.approx(1.0) and values["SAM"] == 0
    assert list(values["bands"]) == ["band 1", "band 2", "band 3"]


def test_sam_and_ergas_of_known_spectra():
    t = np.ones((2, 4, 4))
    t[1] = 0.0
    p = np.ones((2, 4, 4))  # (1, 0) against (1, 1): 45 degrees everywhere
    assert temporal_indices(t, p)["SAM"] == pytest.approx(45.0)
    truth = np.stack([np.full((5, 5), 0.2), np.full((5, 5), 0.4)])
    values = temporal_indices(truth, truth * 1.1, ratio=2.0)
    assert values["ERGAS"] == pytest.approx(100 / 2.0 * 0.1)  # RMSE_b / mean_b = 0.1 in both bands
    assert values["SAM"] == pytest.approx(0.0, abs=1e-6)  # a scaled spectrum keeps its angle
    # constant bands: R2, CC and SSIM are undefined
    assert values["R2"] is None and values["CC"] is None and values["SSIM"] is None
    assert values["bands"]["band 1"]["RMSE"] == pytest.approx(0.02)


def test_masked_pixels_and_nan_are_left_out():
    t = _truth().astype(np.float64)
    p = t + 1.0
    valid = np.ones(t.shape, bool)
    valid[2, 3] = valid[5, 5] = False
    p[2, 3], p[5, 5] = 1e6, -1e6  # wrong where masked
    t[0, 0] = np.nan  # and a NaN in the truth
    p[7, 8] = np.inf
    values = temporal_indices(t, p, valid)
    assert values["pixels"] == t.size - 4
    assert values["RMSE"] == pytest.approx(1.0) and values["bias"] == pytest.approx(1.0)
    assert values["CC"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no pixel"):
        temporal_indices(t, p, np.zeros(t.shape, bool))


def test_masked_ssim_is_the_toolbox_ssim_without_holes_and_ignores_hole_values():
    rng = np.random.default_rng(0)
    t = rng.uniform(280, 320, (2, 30, 32))
    p = t + rng.normal(0, 2, t.shape)
    assert masked_ssim(t, p, data_range=40.0) == pytest.approx(
        [ssim(t[0], p[0], 40.0), ssim(t[1], p[1], 40.0)], rel=1e-12)
    valid = np.ones(t.shape[1:], bool)
    valid[10:14, 5:20] = False
    q = p.copy()
    q[:, ~valid] = rng.uniform(-1e4, 1e4, (2, int((~valid).sum())))
    assert masked_ssim(t, q, valid) == pytest.approx(masked_ssim(t, p, valid), rel=1e-12)
    assert masked_ssim(t, t, valid) == pytest.approx([1.0, 1.0])
    # the default data range is the truth's valid range per band
    ranges = [float(t[b][valid].max() - t[b][valid].min()) for b in range(2)]
    assert masked_ssim(t, p, valid) == pytest.approx(masked_ssim(t, p, valid, ranges), rel=1e-12)


# ----------------------------------------------------------------------------------------------- evaluate_compare


def test_evaluate_compare_stfuse_honours_nodata_and_nan(tmp_path):
    t = _truth()
    p = t - 1.5
    t_file, p_file = t.copy(), p.copy()
    t_file[1, 1] = NODATA  # nodata in the truth
    p_file[3, 4] = np.nan  # NaN in the prediction
    p_file[6, 2] = NODATA
    p_file[1, 1] = 5000.0  # a value where the truth has none
    truth = _write(tmp_path / "truth.tif", t_file)
    pred = _write(tmp_path / "pred.tif", p_file)
    result = evaluate_compare(truth, pred, ratio=None, max_value=None, task="stfuse")
    assert tuple(k for k in result if k != "bands") == STFUSE_KEYS
    assert result["pixels"] == t.size - 3
    assert result["RMSE"] == pytest.approx(1.5, rel=1e-6) and result["bias"] == pytest.approx(-1.5, rel=1e-6)
    valid = np.ones(t.shape, bool)
    valid[1, 1] = valid[3, 4] = valid[6, 2] = False
    tv = t[valid].astype(np.float64)
    assert result["R2"] == pytest.approx(1 - tv.size * 2.25 / ((tv - tv.mean()) ** 2).sum(), rel=1e-5)
    assert any("3 of 72 pixels left out" in note for note in result.notes)
    json.dumps(result)  # plain JSON


def test_evaluate_compare_stfuse_on_a_file_without_nodata(tmp_path):
    t = _truth()
    truth = _write(tmp_path / "truth.tif", t, nodata=None)
    pred = _write(tmp_path / "pred.tif", np.where(np.arange(t.size).reshape(t.shape) == 5, np.nan, t + 0.25),
                  nodata=None)
    result = evaluate_compare(truth, pred, ratio=None, max_value=None, task="stfuse")
    assert result["pixels"] == t.size - 1 and result["bias"] == pytest.approx(0.25)


def test_evaluate_compare_stfuse_multiband_names_cut_and_ratio(tmp_path):
    t = np.stack([_truth(12, 12) / 1000, _truth(12, 12) / 2000, _truth(12, 12) / 1500])
    p = t * 1.02
    truth = _write(tmp_path / "truth.tif", t, descriptions=["SR_B2", "SR_B3", "SR_B4"])
    pred = _write(tmp_path / "pred.tif", p)
    result = evaluate_compare(truth, pred, ratio=16, max_value=None, task="stfuse")
    assert list(result["bands"]) == ["SR_B2", "SR_B3", "SR_B4"]
    assert result["SAM"] == pytest.approx(0.0, abs=1e-4)
    per_band = [result["bands"][name]["RMSE"] for name in result["bands"]]
    assert result["RMSE"] == pytest.approx(np.mean(per_band))  # overall values: the mean over bands
    rel = [np.sqrt(np.mean((p[b] - t[b]) ** 2)) / t[b].mean() for b in range(3)]
    assert result["ERGAS"] == pytest.approx(100 / 16 * np.sqrt(np.mean(np.square(rel))), rel=1e-5)
    cut = evaluate_compare(truth, pred, ratio=16, max_value=None, cut=2, task="stfuse")
    assert cut["pixels"] == 8 * 8
    # --max-value is SSIM's data range
    ranged = evaluate_compare(truth, pred, ratio=1, max_value=1.0, task="stfuse")
    assert ranged["SSIM"] != pytest.approx(result["SSIM"])


def test_evaluate_compare_stfuse_refuses_mismatches(tmp_path):
    t = _truth()
    truth = _write(tmp_path / "truth.tif", t)
    with pytest.raises(InputMismatchError, match="same grid"):
        evaluate_compare(truth, _write(tmp_path / "two.tif", np.stack([t, t])), ratio=None, max_value=None,
                         task="stfuse")
    with pytest.raises(InputMismatchError, match="same grid"):
        evaluate_compare(truth, _write(tmp_path / "small.tif", t[:-1]), ratio=None, max_value=None, task="stfuse")
    moved = _write(tmp_path / "moved.tif", t, transform=Affine(30, 0, 500030, 0, -30, 4500000))
    with pytest.raises(InputMismatchError, match="grids differ"):
        evaluate_compare(truth, moved, ratio=None, max_value=None, task="stfuse")
    empty = _write(tmp_path / "empty.tif", np.full(t.shape, NODATA, np.float32))
    with pytest.raises(InputMismatchError, match="no pixel"):
        evaluate_compare(truth, empty, ratio=None, max_value=None, task="stfuse")
    with pytest.raises(SpatialxError, match="compare judges"):
        evaluate_compare(truth, truth, ratio=None, max_value=None, task="starfm")


def test_other_tasks_compare_as_before(tmp_path):
    rng = np.random.default_rng(1)
    t = rng.uniform(100, 2000, (4, 64, 64)).astype(np.float32)
    truth = _write(tmp_path / "truth.tif", t, nodata=None)
    pred = _write(tmp_path / "pred.tif", t + rng.normal(0, 20, t.shape).astype(np.float32), nodata=None)
    plain = evaluate_compare(truth, pred, ratio=4, max_value=2047)
    assert "Q2n" in plain
    assert evaluate_compare(truth, pred, ratio=4, max_value=2047, task="pansharpen") == plain
    assert evaluate_compare(truth, pred, ratio=4, max_value=2047, cut=21) == plain


# ------------------------------------------------------------------------------------------------------------ CLI


def test_cli_compare_stfuse_table_json_and_csv(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    t = _truth()
    t[0, 0] = NODATA
    truth = _write(tmp_path / "truth.tif", t)
    pred = _write(tmp_path / "pred.tif", _truth() + 2)
    done = cli("evaluate", "compare", truth, pred, "--task", "stfuse", "--json", "out.json", "--csv", "out.csv",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "71 pixels compared" in done.stdout and "RMSE" in done.stdout and "2.0000" in done.stdout
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["RMSE"] == pytest.approx(2.0) and data["bias"] == pytest.approx(2.0) and data["pixels"] == 71
    assert data["SAM"] is None and data["bands"]["band 1"]["bias"] == pytest.approx(2.0)
    rows = list(csv.reader((tmp_path / "out.csv").read_text().splitlines()))
    assert rows[0] == ["image", *STFUSE_KEYS]
    assert rows[1][0] == "pred.tif" and float(rows[1][1]) == pytest.approx(2.0) and rows[1][-1] == "71"
    assert len(rows) == 2


def test_cli_compare_stfuse_multiband_rows(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    t = np.stack([_truth() / 1000, _truth() / 1100])
    truth = _write(tmp_path / "truth.tif", t, descriptions=["red", "nir"])
    pred = _write(tmp_path / "pred.tif", t + 0.01)
    done = cli("evaluate", "compare", truth, pred, "--task", "stfuse", "--ratio", "16.7", "--csv", "out.csv",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "red" in done.stdout and "nir" in done.stdout
    rows = list(csv.reader((tmp_path / "out.csv").read_text().splitlines()))
    assert [r[0] for r in rows[1:]] == ["pred.tif", "red", "nir"]
    header = rows[0]
    assert rows[2][header.index("SAM")] == "" and float(rows[2][header.index("RMSE")]) == pytest.approx(0.01)
    assert float(rows[1][header.index("SAM")]) >= 0


def test_cli_compare_stfuse_errors_are_one_line(cli, tmp_path):
    t = _truth()
    truth = _write(tmp_path / "truth.tif", t)
    two = _write(tmp_path / "two.tif", np.stack([t, t]))
    for args, text in [((truth, two, "--task", "stfuse"), "same grid"),
                       ((truth, truth, "--task", "fuse"), "compare judges"),
                       ((truth, truth, "--task", "stfuse", "--sensor", "wv3"), "not with --task stfuse")]:
        done = cli("evaluate", "compare", *args, cwd=tmp_path)
        assert done.returncode != 0
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("spatialx: error:") and text in lines[0], done.stderr


# ------------------------------------------------------------------------------------------------ real LST pairs


@pytest.fixture(scope="module")
def lst() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"shared real data not found at {REAL}")
    names = ["Landsat_LST_cloudrm_20160205.tif", "Landsat_LST_cloudrm_20160308.tif",
             "MOD11A1_LST_cloudrm_20160205.tif", "MOD11A1_LST_cloudrm_20160308.tif"]
    missing = [n for n in names if not (REAL / n).is_file()]
    if missing:
        pytest.skip(f"real LST files missing: {', '.join(missing)}")
    return REAL


def _stfuse(truth: Path, prediction: Path) -> dict:
    return evaluate_compare(truth, prediction, ratio=None, max_value=None, task="stfuse")


def test_real_lst_modis_alone(lst):
    result = _stfuse(lst / "Landsat_LST_cloudrm_20160308.tif", lst / "MOD11A1_LST_cloudrm_20160308.tif")
    assert result["RMSE"] == pytest.approx(5.17, abs=0.01)
    assert result["bias"] == pytest.approx(-4.52, abs=0.01)  # MODIS is colder: prediction - truth < 0
    assert result["pixels"] == 400 * 400


def test_real_lst_no_change(lst):
    result = _stfuse(lst / "Landsat_LST_cloudrm_20160308.tif", lst / "Landsat_LST_cloudrm_20160205.tif")
    assert result["RMSE"] == pytest.approx(8.85, abs=0.01)
    assert result["pixels"] == 400 * 400 - 1  # one nodata pixel in Landsat 2016-02-05


def test_real_lst_coarse_difference(lst, tmp_path):
    with rasterio.open(lst / "Landsat_LST_cloudrm_20160205.tif") as src:
        fine, profile = src.read(1, masked=True), src.profile
    with rasterio.open(lst / "MOD11A1_LST_cloudrm_20160205.tif") as a, \
            rasterio.open(lst / "MOD11A1_LST_cloudrm_20160308.tif") as b:
        before, after = a.read(1, masked=True), b.read(1, masked=True)
    predicted = fine.astype(np.float64) + after - before
    out = tmp_path / "coarse_diff.tif"
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(predicted.filled(profile["nodata"]).astype(np.float32), 1)
    result = _stfuse(lst / "Landsat_LST_cloudrm_20160308.tif", out)
    assert result["RMSE"] == pytest.approx(4.98, abs=0.01)
    assert result["pixels"] == 400 * 400 - 1
    assert math.isfinite(result["SSIM"]) and result["SAM"] is None
