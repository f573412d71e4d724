"""`spatialx evaluate` for hmif (HS + MS): Wald's protocol with the HS as reference, the full-resolution consistency
indices, the quality report of `spatialx hmif --report`, and `compare` on a many-band pair.

Scenes: a PRISMA L2D HE5 at 30 m and a Sentinel-2 band-COG folder with its STAC item at 10 m, written here in their
real layouts; and the real EO-1 Hyperion/ALI Paris pair (skipped without ../shared), described by box spectral
responses built from the Hyperion band ranges its files name.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from scenes import HMIF_EPSG as EPSG
from scenes import HMIF_ORIGIN, HMIF_RATIO, S2_BANDS, smooth_field, write_hmif_pair, write_tif

import spatialx
from spatialx.errors import InputMismatchError, SpatialxError
from spatialx.evaluate import (
    HMIF_FULL_KEYS,
    REDUCED_KEYS,
    degrade,
    evaluate_compare,
    evaluate_full,
    evaluate_reduced,
    hmif_indices,
    quality_report_hmif,
    reduce_hmif,
)
from spatialx.metrics import q2n
from spatialx.sensors import get_sensor

X0, Y0 = HMIF_ORIGIN
RATIO = HMIF_RATIO
SENSORS = {"hs": "prisma_l2d", "ms": "s2_l2a"}
#: The hmif methods being written next to `exp`; the comparisons run on those registered.
SHARPENING = ("gsa", "mtf-glp-hpm", "cnmf")


def _write_scene(directory: Path, ms_size: int) -> dict:
    """HS = the truth averaged over 3x3 blocks (PRISMA HE5, 30 m); MS = the truth through Sentinel-2's responses;
    the 10 m truth of the bands the reader keeps as a GeoTIFF."""
    pair = write_hmif_pair(directory, ms_size, sigma=2.5)
    truth_tif = write_tif(directory / "truth.tif", pair["truth"], Affine(10.0, 0, X0, 0, -10.0, Y0),
                          f"EPSG:{EPSG}", nodata=None)
    return {"hs": pair["hs"], "ms": pair["ms"], "truth": truth_tif, "dir": directory}


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    """288 x 288 MS pixels: large enough that the methods' HS-scale regressions (which need an HS pixel's whole
    41-tap MTF support inside the scene) have samples at the reduced scale."""
    return _write_scene(tmp_path_factory.mktemp("hmif_eval"), 288)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict:
    return _write_scene(tmp_path_factory.mktemp("hmif_small"), 96)


@pytest.fixture(scope="module")
def reduced(scene) -> dict:
    from spatialx.methods import list_methods

    methods = [m.name for m in list_methods("hmif") if m.kind == "classical"]
    return evaluate_reduced(scene["hs"], scene["ms"], SENSORS, methods, task="hmif")


def _registered(names: tuple[str, ...]) -> list[str]:
    from spatialx.methods import list_methods

    have = {m.name for m in list_methods("hmif") if m.kind == "classical"}
    return [name for name in names if name in have]


def test_reduced_gives_every_method_the_index_keys(reduced):
    assert "exp" in reduced
    for method, values in reduced.items():
        assert tuple(values) == REDUCED_KEYS, method
        assert values["Q2n"] is None, method  # 47 bands: beyond the hypercomplex algebra Q2n is computed with
        assert all(math.isfinite(v) for k, v in values.items() if k != "Q2n"), (method, values)
        assert values["SAM"] > 0 and 0 < values["Q"] <= 1 and values["ERGAS"] > 0, method
    assert any("Q2n not computed: 47 bands" in note for note in reduced.notes)
    # exp is the degraded HS interpolated back; measured SAM 1.25 deg, ERGAS 2.01, PSNR 28.5 dB, Q 0.52 (gsa SAM
    # 0.20, PSNR 44.8; mtf-glp-hpm 0.20, 44.9; cnmf 0.28, 41.6)
    assert 0.3 < reduced["exp"]["SAM"] < 3 and 20 < reduced["exp"]["PSNR"] < 40


def test_sharpening_methods_beat_exp_on_sam_and_psnr(reduced):
    methods = _registered(SHARPENING)
    if not methods:
        pytest.skip(f"none of the hmif methods {', '.join(SHARPENING)} is registered yet")
    exp = reduced["exp"]
    for method in methods:
        assert reduced[method]["SAM"] < exp["SAM"], (method, reduced[method], exp)
        assert reduced[method]["PSNR"] > exp["PSNR"], (method, reduced[method], exp)


def test_reduce_hmif_degrades_with_unit_gain_and_names_default_gains():
    hs_sensor = get_sensor("prisma_l2d")
    s2 = get_sensor("s2_l2a").select(list(S2_BANDS))
    no_gains = replace(s2, bands=tuple(replace(b, mtf_gain=None) for b in s2.bands))
    hs = np.full((3, 24, 24), 0.25, np.float32)
    ms = np.full((4, 72, 72), 0.4, np.float32)
    sensors = {"hs": replace(hs_sensor, bands=hs_sensor.bands[:3]), "ms": no_gains}
    out = reduce_hmif(hs, ms, sensors, grid_ratio=3)
    assert out.ratio == 3 and out.reference.shape == (3, 24, 24) and out.ms.shape == (4, 24, 24)
    assert out.hs_lr.shape == (3, 8, 8) and out.hs_up.shape == (3, 24, 24)
    # physical values keep their mean through the MTF blur (the toolbox's kernels lose ~0.1 %)
    np.testing.assert_allclose(out.hs_lr, 0.25, rtol=1e-6)
    np.testing.assert_allclose(out.ms, 0.4, rtol=1e-6)
    assert any("MS MTF" in n and "every band" in n and "0.3" in n for n in out.notes)
    with pytest.raises(InputMismatchError, match="--ratio"):
        reduce_hmif(hs, hs, sensors, grid_ratio=1)  # same grid: the ratio cannot come from the grids


def test_q2n_of_physical_values_does_not_depend_on_units():
    """The toolbox rounds to uint16, which would leave reflectance two levels: hmif rescales first."""
    rng = np.random.default_rng(3)
    ref = (0.2 + 0.3 * smooth_field((8, 64, 64), 1)).astype(np.float64)
    fused = ref + 0.01 * rng.standard_normal(ref.shape)
    values = hmif_indices(ref, fused, ratio=3)
    assert values["Q2n"] == pytest.approx(q2n(ref * 10000, fused * 10000), abs=2e-3)
    assert 0.5 < values["Q2n"] < 1
    assert hmif_indices(ref, ref, ratio=3)["Q2n"] == pytest.approx(1.0)


def test_full_resolution_prefers_the_truth_to_exp(scene, tmp_path):
    product = spatialx.fuse("hmif", {"hs": scene["hs"], "ms": scene["ms"]}, tmp_path / "exp.tif", method="exp",
                            sensor=SENSORS).output
    exp = evaluate_full(scene["hs"], scene["ms"], product, SENSORS, task="hmif")
    truth = evaluate_full(scene["hs"], scene["ms"], scene["truth"], SENSORS, task="hmif")
    assert tuple(exp) == tuple(truth) == HMIF_FULL_KEYS
    # the truth is sharp: its projection onto the Sentinel-2 bands is the MS; exp's is the HS interpolated
    assert truth["PSNR_MS"] > exp["PSNR_MS"] + 5 and truth["Q_MS"] > exp["Q_MS"] and truth["CC_MS"] > exp["CC_MS"]
    # degraded to 30 m it is (up to the MTF model: the HS here is a block mean) the HS; exp is blurred twice
    assert truth["SAM_HS"] < exp["SAM_HS"] and truth["ERGAS_HS"] < exp["ERGAS_HS"]
    assert truth["PSNR_HS"] > exp["PSNR_HS"]
    # a border cut keeps whole HS pixels and changes the numbers only a little
    cut = evaluate_full(scene["hs"], scene["ms"], product, SENSORS, task="hmif", cut=10)
    assert cut["SAM_HS"] == pytest.approx(exp["SAM_HS"], rel=0.3)


def test_full_refuses_a_product_with_other_bands(scene, tmp_path):
    other = write_tif(tmp_path / "four.tif", np.ones((4, 288, 288), "float32"), Affine(10.0, 0, X0, 0, -10.0, Y0),
                      f"EPSG:{EPSG}", nodata=None)
    with pytest.raises(InputMismatchError, match="fused image has 4 bands"):
        evaluate_full(scene["hs"], scene["ms"], other, SENSORS, task="hmif")


def test_hmif_report_is_written_next_to_the_product(small, tmp_path):
    result = spatialx.fuse("hmif", {"hs": small["hs"], "ms": small["ms"]}, tmp_path / "exp.tif", method="exp",
                           sensor=SENSORS, report=True)
    report = json.loads(result.products["report"].read_text())
    assert tuple(report["indices"]) == HMIF_FULL_KEYS and report["method"] == "exp"
    # the pipeline hands the report the HS sensor only: the MS one comes from the product's provenance
    assert report["sensor"] == {"HS": "prisma_l2d", "MS": "s2_l2a"} and report["ratio"] == 3
    assert len(report["windows"]) >= 1 and 0 < report["indices"]["Q_MS"] <= 1
    # a uint16 product stores reflectance / 1e-4 with the GDAL band scale: it is judged in reflectance too
    stored = spatialx.fuse("hmif", {"hs": small["hs"], "ms": small["ms"]}, tmp_path / "u16.tif", method="exp",
                           sensor=SENSORS, dtype="uint16").output
    floats = evaluate_full(small["hs"], small["ms"], result.output, SENSORS, task="hmif")
    scaled = evaluate_full(small["hs"], small["ms"], stored, SENSORS, task="hmif")
    assert scaled["PSNR_MS"] == pytest.approx(floats["PSNR_MS"], abs=0.05)
    assert scaled["SAM_HS"] == pytest.approx(floats["SAM_HS"], rel=1e-2)
    sampled = quality_report_hmif(small["hs"], small["ms"], small["truth"], SENSORS, window=48, samples=4)
    assert len(sampled["windows"]) == 4 and sampled["windows"][1]["size"] == [48, 48]
    assert sampled["indices"]["PSNR_MS"] > report["indices"]["PSNR_MS"]


# ------------------------------------------------------------------------------------------------------ Paris


def _hyperion_centre(band: int) -> float:
    """Nominal Hyperion band centres (nm): VNIR bands 1-70 from 355.59 nm, SWIR 71-242 from 851.92 nm."""
    return 355.59 + (band - 1) * 10.1756 if band <= 70 else 851.92 + (band - 71) * 10.0895


@pytest.fixture
def paris(shared_dir, tmp_path, monkeypatch) -> dict:
    """The Paris pair and sensor profiles for it: the HS bands at Hyperion's nominal centres, each MS band a box
    over the Hyperion bands its description names (the files hold no wavelengths)."""
    directory = shared_dir / "data" / "real" / "hmif"
    hs, ms = directory / "paris_hyperion_hs.tif", directory / "paris_ali_ms.tif"
    with rasterio.open(hs) as src:
        numbers = [int(v) for v in src.tags()["HYPERION_BAND_NUMBERS"].split(",")]
    with rasterio.open(ms) as src:
        supports = [d.split("Hyperion bands ")[1].rstrip(")").split("-") for d in src.descriptions]
    # HySure blurs with [1 4 6 4 1]'[1 4 6 4 1]/256 before decimating by 3: its response at the Nyquist frequency
    # of the degraded grid (1/6 cycle per pixel) is cos(pi/6)^4 = 0.5625, the gain the Gaussian MTF model is given.
    hs_profile = {"name": "EO-1 Hyperion (Paris)", "dtype": "float64", "valid_range": [0, 2],
                  "bands": [{"name": f"H{n:03d}", "center_nm": round(_hyperion_centre(n), 2), "fwhm_nm": 10.5,
                             "mtf_gain": 0.5625} for n in numbers]}
    boxes = []
    for i, (first, last) in enumerate(supports):
        lo, hi = _hyperion_centre(int(first)) - 5, _hyperion_centre(int(last)) + 5
        boxes.append({"name": f"ALI{i + 1}", "response": [[lo - 0.5, 0], [lo, 1], [hi, 1], [hi + 0.5, 0]]})
    ms_profile = {"name": "EO-1 ALI (Paris)", "dtype": "float64", "valid_range": [0, 2], "bands": boxes}
    (tmp_path / "paris_hs.yaml").write_text(yaml.safe_dump(hs_profile))
    (tmp_path / "paris_ms.yaml").write_text(yaml.safe_dump(ms_profile))
    monkeypatch.setenv("SPATIALX_SENSOR_PATH", str(tmp_path))
    return {"hs": hs, "ms": ms, "sensors": {"hs": "paris_hs", "ms": "paris_ms"}}


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.filterwarnings("ignore::spatialx.align.NotGeoreferencedWarning")
def test_real_paris_reduced_resolution(paris):
    # CNMF's iterations take ~20 s on these 128 bands: the fast methods stand for the family here.
    methods = ["exp", *_registered(("gsa", "mtf-glp-hpm"))]
    result = evaluate_reduced(paris["hs"], paris["ms"], paris["sensors"], methods, task="hmif", ratio=3)
    assert list(result) == methods
    for method, values in result.items():
        assert values["Q2n"] is None and all(math.isfinite(v) for k, v in values.items() if k != "Q2n"), method
    # Measured (cut 3, 66x66 reference pixels): exp SAM 3.41 deg, ERGAS 5.42, PSNR 29.8 dB, Q 0.64, SSIM 0.72;
    # gsa SAM 2.82, PSNR 32.0; mtf-glp-hpm SAM 2.49, PSNR 33.0 (cnmf SAM 2.95, PSNR 31.9).
    exp = result["exp"]
    assert 1 < exp["SAM"] < 20 and 2 < exp["ERGAS"] < 12 and 20 < exp["PSNR"] < 40 and 0.3 < exp["Q"] < 0.9
    for method in methods[1:]:
        assert result[method]["SAM"] < exp["SAM"] and result[method]["PSNR"] > exp["PSNR"], method
    assert any("same grid" in note for note in result.notes)
    with pytest.raises(InputMismatchError, match="--ratio"):
        evaluate_reduced(paris["hs"], paris["ms"], paris["sensors"], ["exp"], task="hmif")


# ------------------------------------------------------------------------------------------------ compare, CLI


def test_compare_a_200_band_pair(tmp_path):
    ref = (0.05 + 0.5 * smooth_field((200, 40, 40), 7)).astype("float32")
    noisy = (ref + 0.005 * np.random.default_rng(1).standard_normal(ref.shape)).astype("float32")
    transform = Affine(30.0, 0, X0, 0, -30.0, Y0)
    a = write_tif(tmp_path / "ref.tif", ref, transform, f"EPSG:{EPSG}", nodata=None)
    b = write_tif(tmp_path / "fused.tif", noisy, transform, f"EPSG:{EPSG}", nodata=None)
    values = evaluate_compare(a, b, ratio=3, max_value=None, cut=0)
    assert tuple(values) == REDUCED_KEYS and values["Q2n"] is None
    assert any("256" in note for note in values.notes)
    expected_psnr = 10 * np.log10(float(ref.max()) ** 2 / np.mean((ref.astype(float) - noisy) ** 2))
    assert values["PSNR"] == pytest.approx(expected_psnr, rel=1e-6) and values["SAM"] > 0
    assert evaluate_compare(a, a, ratio=3, max_value=1.0, cut=0)["SAM"] == 0.0


def test_cli_reduced_hmif_writes_the_documented_json_and_csv(small, tmp_path):
    from typer.testing import CliRunner

    from spatialx.cli.main import app

    out = CliRunner().invoke(app, ["evaluate", "reduced", str(small["hs"]), str(small["ms"]), "--task", "hmif",
                                   "-m", "exp", "--ratio", "3", "--cut", "0", "--json", str(tmp_path / "r.json"),
                                   "--csv", str(tmp_path / "r.csv")])
    assert out.exit_code == 0, out.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert list(data) == ["exp"] and tuple(data["exp"]) == REDUCED_KEYS and data["exp"]["Q2n"] is None
    rows = list(csv.reader((tmp_path / "r.csv").open()))
    assert rows[0] == ["method", *REDUCED_KEYS] and rows[1][0] == "exp" and rows[1][1] == ""
    assert "Q2n not computed" in out.output  # the note (stderr, mixed into the runner's output)


def test_cli_refuses_a_bad_task_and_the_other_task_sensor_options_in_one_line(small, monkeypatch, capsys):
    from spatialx.cli.main import run

    for args, message in ((["--task", "stfuse"], "--task stfuse: evaluate judges pansharpen or hmif"),
                          (["--task", "hmif", "-s", "wv3"], "--sensor is for pansharpening"),
                          (["--hs-sensor", "prisma_l2d"], "--hs-sensor: only with --task hmif")):
        monkeypatch.setattr(sys, "argv", ["spatialx", "evaluate", "reduced", str(small["hs"]), str(small["ms"]),
                                          *args])
        with pytest.raises(SystemExit) as exit_info:
            run()
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and message in err, err


def test_evaluate_reduced_library_refuses_an_unknown_task(small):
    with pytest.raises(SpatialxError, match="unknown task"):
        evaluate_reduced(small["hs"], small["ms"], SENSORS, ["exp"], task="nope")


def test_degrade_keeps_block_centres_on_the_coarse_grid():
    """An odd ratio samples the centre pixel of each block: a delta at a block centre stays one coarse pixel."""
    image = np.zeros((1, 30, 30))
    image[0, 13, 16] = 9.0  # centre of block (4, 5) at ratio 3
    out = degrade(image, [0.3], 3)
    assert np.unravel_index(np.argmax(out[0]), out[0].shape) == (4, 5)


def test_cli_full_hmif_writes_the_documented_json(small, tmp_path):
    from typer.testing import CliRunner

    from spatialx.cli.main import app

    out = CliRunner().invoke(app, ["evaluate", "full", str(small["hs"]), str(small["ms"]), str(small["truth"]),
                                   "--task", "hmif", "--json", str(tmp_path / "f.json")])
    assert out.exit_code == 0, out.output
    data = json.loads((tmp_path / "f.json").read_text())
    assert tuple(data) == HMIF_FULL_KEYS and all(math.isfinite(v) for v in data.values())


def test_nodata_in_the_common_extent_is_refused(small, tmp_path):
    """A Sentinel-2 nodata pixel (DN 0) would enter the indices as reflectance 0: the evaluation says so instead."""
    import shutil

    ms_dir = shutil.copytree(small["ms"], tmp_path / "S2A_HOLE_L2A")
    with rasterio.open(ms_dir / "B03.tif", "r+") as dst:
        band = dst.read(1)
        band[40, 50] = 0
        dst.write(band, 1)
    with pytest.raises(InputMismatchError, match="nodata"):
        evaluate_full(small["hs"], ms_dir, small["truth"], SENSORS, task="hmif")
