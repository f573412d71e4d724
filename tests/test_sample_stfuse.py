"""The synthetic stfuse scene (`spatialx sample DIR --task stfuse`): Landsat 8 C2 L2 scene folders and MCD43A4 band
GeoTIFF sets read back through the real readers with their dates, the coarse pixels as footprint means of the fine
ones, the land-cover change, determinism, the output policy, and a fusion run end to end."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform as transform_points
from rasterio.windows import Window

from spatialx.errors import OutputError, SpatialxError
from spatialx.io.landsat import parse_mtl
from spatialx.io.modis import SINUSOIDAL
from spatialx.io.read import open_raster, product_format_name
from spatialx.sample import (
    DEFAULT_ORIGIN,
    MODIS_500M_PIXEL_M,
    MODIS_GRID_ORIGIN,
    STFUSE_BANDS,
    STFUSE_COARSE_GAIN,
    STFUSE_COARSE_OFFSET,
    STFUSE_DATES,
    STFUSE_PREDICT,
    write_stfuse_sample,
)
from spatialx.tasks.stfuse import stfuse

SIZE, SEED = 101, 2  # odd on purpose: about 6.5 MODIS pixels per side
T1, T2, T3 = STFUSE_DATES
ROLES = {"fine_t1", "fine_t3", "coarse_t1", "coarse_t2", "coarse_t3", "reference", "summary"}
#: MODIS band -> the Landsat band whose truth it records.
MODIS_OF = {1: "SR_B4", 2: "SR_B5", 3: "SR_B2", 4: "SR_B3", 6: "SR_B6", 7: "SR_B7"}


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict[str, Path]:
    return write_stfuse_sample(tmp_path_factory.mktemp("stfuse") / "scene", size=SIZE, seed=SEED)


@pytest.fixture(scope="module")
def summary(scene) -> dict:
    return json.loads(scene["summary"].read_text(encoding="utf-8"))


def _all(info) -> Window:
    return Window(0, 0, info.grid.width, info.grid.height)


def read(path: Path, bands: str | None = None) -> tuple[object, np.ndarray, np.ndarray]:
    """(info, physical values float64, validity) through the product reader."""
    info = open_raster(path, options={"bands": bands} if bands else None)
    with info.reader() as reader:
        return info, reader.read(_all(info)).astype(np.float64), reader.read_valid(_all(info))


def read_tif(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read().astype(np.float64)


def ndvi(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    return (nir - red) / (nir + red)


def change_window(summary: dict) -> tuple[slice, slice]:
    w = summary["land_cover_change"]["window"]
    return slice(w["row_off"], w["row_off"] + w["height"]), slice(w["col_off"], w["col_off"] + w["width"])


def test_files_and_summary(scene, summary):
    assert set(scene) == ROLES
    out = scene["reference"].parent
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in scene.values())
    fine = scene["fine_t1"].name
    assert fine == "LC08_L2SP_196030_20210501_20210510_02_T1" and scene["fine_t3"].name.startswith(
        "LC08_L2SP_196030_20210704_")
    assert sorted(p.name.removeprefix(fine + "_") for p in scene["fine_t1"].iterdir()) == sorted(
        [*(f"SR_B{b}.TIF" for b in range(1, 8)), "ST_B10.TIF", "QA_PIXEL.TIF", "MTL.txt"])
    for i, date in enumerate(STFUSE_DATES, start=1):
        folder = scene[f"coarse_t{i}"]
        assert folder.name.startswith(f"MCD43A4.A{dt.date.fromisoformat(date):%Y%j}.h18v04.061.")
        assert sorted(p.name.removeprefix(folder.name) for p in folder.iterdir()) == sorted(
            f"_B{b:02d}{qa}.TIF" for b in range(1, 8) for qa in ("", "qa"))
    assert summary["predict"] == STFUSE_PREDICT == T2 and summary["bands"] == list(STFUSE_BANDS)
    assert summary["fine"] == {T1: scene["fine_t1"].name, T3: scene["fine_t3"].name}
    assert list(summary["coarse"]) == list(STFUSE_DATES)
    assert summary["command"].startswith("spatialx stfuse ") and f"--predict {T2}" in summary["command"]
    assert math.isclose(summary["ratio"], MODIS_500M_PIXEL_M / 30.0)
    with rasterio.open(scene["reference"]) as src:
        assert src.descriptions == STFUSE_BANDS and src.dtypes[0] == "float32" and src.shape == (SIZE, SIZE)
        assert src.crs.to_epsg() == 32631 and src.transform == rasterio.Affine(30, 0, DEFAULT_ORIGIN[0], 0, -30,
                                                                                   DEFAULT_ORIGIN[1])


def test_landsat_folders_open_as_landsat_c2_l2_with_their_dates(scene, summary):
    reference = open_raster(scene["reference"])
    for role, date in (("fine_t1", T1), ("fine_t3", T3)):
        assert product_format_name(scene[role]) == "Landsat C2 L2"
        info, values, valid = read(scene[role], ",".join(STFUSE_BANDS))
        assert info.metadata["acquired"] == date and info.metadata["sensor"] == "landsat_c2l2"
        assert info.metadata["processing_level"] == "L2SP" and info.metadata["wrs_path"] == 196
        # the Level-2 scaling, not the Level-1 rescaling the same MTL also states
        assert info.metadata["scale"]["SR_B4"] == 2.75e-05 and info.metadata["offset"]["SR_B4"] == -0.2
        assert info.grid == reference.grid and info.descriptions == STFUSE_BANDS
        assert values.min() >= 0.0 and values.max() < 0.7
        if role == "fine_t1":
            assert valid.all()
        else:  # a few cloud pixels (and their dilation) at t3, bright in SR and masked by QA_PIXEL
            clouds = summary["clouds"]
            assert (~valid).sum() == clouds["cloud_pixels"] + clouds["dilated_cloud_pixels"] > 0
            assert values[0][~valid].mean() > values[0][valid].mean() + 0.1
    st = open_raster(scene["fine_t1"], options={"bands": "ST_B10"})
    assert st.metadata["units"] == "K"
    groups = parse_mtl(Path(info.metadata["mtl"]))["LANDSAT_METADATA_FILE"]
    assert groups["IMAGE_ATTRIBUTES"]["DATE_ACQUIRED"] == T3 and groups["PRODUCT_CONTENTS"]["LANDSAT_PRODUCT_ID"] == (
        scene["fine_t3"].name)
    assert groups["LEVEL1_RADIOMETRIC_RESCALING"]["REFLECTANCE_MULT_BAND_4"] == "2.0000E-05"
    assert groups["LEVEL2_SURFACE_REFLECTANCE_PARAMETERS"]["REFLECTANCE_MULT_BAND_4"] == "2.75e-05"
    assert float(groups["IMAGE_ATTRIBUTES"]["CLOUD_COVER"]) > 0


def test_modis_sets_open_as_modis_with_their_dates(scene):
    fine = open_raster(scene["reference"]).grid
    corners_x, corners_y = transform_points(fine.crs, SINUSOIDAL, [fine.bounds[0], fine.bounds[2]] * 2,
                                            [fine.bounds[1]] * 2 + [fine.bounds[3]] * 2)
    res, (gx, gy) = MODIS_500M_PIXEL_M, MODIS_GRID_ORIGIN
    for i, date in enumerate(STFUSE_DATES, start=1):
        folder = scene[f"coarse_t{i}"]
        assert product_format_name(folder) == "MODIS"
        info, values, valid = read(folder)
        assert info.metadata["acquired"] == date and info.metadata["sensor"] == "mcd43a4"
        assert info.metadata["format"] == "GeoTIFF set" and info.count == 7
        assert info.grid.crs == SINUSOIDAL and valid.all() and values.min() > 0 and values.max() < 0.8
        t = info.grid.transform
        assert math.isclose(t.a, res) and math.isclose(-t.e, res)
        # a window of the global MODIS grid, covering the Landsat footprint with a margin
        assert abs((t.c - gx) / res - round((t.c - gx) / res)) < 1e-6
        assert abs((gy - t.f) / res - round((gy - t.f) / res)) < 1e-6
        left, bottom, right, top = info.grid.bounds
        assert left < min(corners_x) - res and right > max(corners_x) + res
        assert bottom < min(corners_y) - res and top > max(corners_y) + res


def test_coarse_pixels_are_footprint_means_times_gain_plus_offset(scene):
    # t1 is clear everywhere: the Landsat pixels are the truth (quantised), so each coarse pixel lying inside the
    # Landsat footprint is the mean of the Landsat pixels whose centres it holds, times the gain, plus the offset
    fine_info, fine, valid = read(scene["fine_t1"])
    assert valid.all()
    coarse_info, coarse, _ = read(scene["coarse_t1"])
    g, c = fine_info.grid, coarse_info.grid
    cols, rows = np.meshgrid(np.arange(g.width) + 0.5, np.arange(g.height) + 0.5)
    x, y = g.transform @ (cols.ravel(), rows.ravel())
    sx, sy = (np.asarray(v) for v in transform_points(g.crs, c.crs, x, y))
    ccol, crow = (np.floor(v).astype(int) for v in ~c.transform @ (sx, sy))
    # coarse pixels wholly inside the Landsat footprint: all four corners inside it
    inner = []
    for r in range(c.height):
        for k in range(c.width):
            px, py = c.transform @ (np.array([k, k + 1, k, k + 1]), np.array([r, r, r + 1, r + 1]))
            ux, uy = transform_points(c.crs, g.crs, px, py)
            if (min(ux) > g.bounds[0] and max(ux) < g.bounds[2] and min(uy) > g.bounds[1]
                    and max(uy) < g.bounds[3]):
                inner.append((r, k))
    assert len(inner) >= 9
    names = list(fine_info.descriptions)
    for r, k in inner:
        inside = (crow == r) & (ccol == k)
        assert 200 < inside.sum() < 280  # (463.3 / 30)^2 = 238.5 Landsat pixels per MODIS pixel
        for band, source in MODIS_OF.items():
            mean = fine[names.index(source)].ravel()[inside].mean()
            expected = STFUSE_COARSE_GAIN * mean + STFUSE_COARSE_OFFSET
            assert coarse[band - 1, r, k] == pytest.approx(expected, abs=1e-4), (band, r, k)
    # band 5 (1240 nm) is the spectra's own, near the NIR plateau
    assert np.corrcoef(coarse[4].ravel(), coarse[1].ravel())[0, 1] > 0.8


def test_phenology_and_the_land_cover_change(scene, summary):
    _, t1, _ = read(scene["fine_t1"], ",".join(STFUSE_BANDS))
    _, t3, valid3 = read(scene["fine_t3"], ",".join(STFUSE_BANDS))
    reference = read_tif(scene["reference"])
    red, nir = STFUSE_BANDS.index("SR_B4"), STFUSE_BANDS.index("SR_B5")
    n1, n2, n3 = ndvi(t1[red], t1[nir]), ndvi(reference[red], reference[nir]), ndvi(t3[red], t3[nir])
    # the season: greener on the whole (a few cereals ripen), unevenly (parcels and a gradient, not one shift)
    growth = (n3 - n1)[valid3]
    assert n1.mean() < n2.mean() and n1.mean() < n3.mean() and (growth > 0).mean() > 0.6 and growth.std() > 0.05
    # the cleared forest patch: forest at t1, bare soil at t2 (the reference) and t3
    rows, cols = change_window(summary)
    assert n1[rows, cols].min() > 0.6
    assert n2[rows, cols].max() < 0.35 and n3[rows, cols].max() < 0.4
    ring = np.zeros_like(n1, dtype=bool)
    ring[rows.start - 3:rows.stop + 3, cols.start - 3:cols.stop + 3] = True
    ring[rows, cols] = False
    assert np.median(n2[ring]) > 0.6  # the stand around it still stands
    # MODIS sees it only as part of a pixel: the patch is not one MODIS pixel
    assert summary["land_cover_change"]["window"]["width"] * 30 < MODIS_500M_PIXEL_M


def test_coarse_diff_beats_no_change_end_to_end(scene, tmp_path):
    truth = read_tif(scene["reference"])
    reference = open_raster(scene["reference"])
    rmse = {}
    for method in ("no-change", "coarse-diff"):
        result = stfuse(tmp_path / f"{method}.tif", [scene["fine_t1"], scene["fine_t3"]],
                        [scene["coarse_t1"], scene["coarse_t2"], scene["coarse_t3"]], STFUSE_PREDICT, method=method,
                        fine_bands=",".join(STFUSE_BANDS))
        assert result.params["pairs"] == [T1, T3] and result.params["predict"] == T2
        with rasterio.open(result.output) as src:
            assert src.transform == reference.grid.transform and src.shape == (SIZE, SIZE) and src.count == 6
            fused = src.read().astype(np.float64)
        assert np.isfinite(fused).all()
        rmse[method] = float(np.sqrt(((fused - truth) ** 2).mean()))
    assert rmse["coarse-diff"] < 0.6 * rmse["no-change"], rmse


def test_deterministic_for_a_seed(scene, tmp_path):
    again = write_stfuse_sample(tmp_path / "again", size=SIZE, seed=SEED)
    for role in ROLES - {"summary"}:
        ours = sorted(p for p in ([scene[role]] if scene[role].is_file() else scene[role].iterdir()))
        theirs = sorted(p for p in ([again[role]] if again[role].is_file() else again[role].iterdir()))
        assert [p.name for p in ours] == [p.name for p in theirs]
        for a, b in zip(ours, theirs, strict=True):
            assert a.read_bytes() == b.read_bytes(), a.name
    assert json.loads(again["summary"].read_text()) == json.loads(scene["summary"].read_text())
    other = write_stfuse_sample(tmp_path / "other", size=SIZE, seed=SEED + 1)
    assert np.abs(read_tif(other["reference"]) - read_tif(scene["reference"])).mean() > 0.01


def test_existing_files_are_refused_without_overwrite(tmp_path):
    paths = write_stfuse_sample(tmp_path, size=64, seed=0)
    watched = [paths["reference"], *paths["fine_t1"].iterdir(), *paths["coarse_t2"].iterdir()]
    before = {p: p.stat().st_mtime_ns for p in watched}
    with pytest.raises(OutputError) as info:
        write_stfuse_sample(tmp_path, size=64, seed=1)
    assert "output exists" in info.value.message and "--overwrite" in info.value.hint
    assert {p: p.stat().st_mtime_ns for p in watched} == before
    assert not [p for p in tmp_path.rglob(".sx-*")]  # no temporary left behind
    write_stfuse_sample(tmp_path, size=64, seed=1, overwrite=True)
    assert all(p.stat().st_mtime_ns != t for p, t in before.items())
    # a foreign file in a product folder would be read as part of the product
    (paths["coarse_t1"] / "MCD43A4.A2021100.h18v04.061.2021109052712_B01.TIF").write_bytes(b"")
    with pytest.raises(OutputError, match="other files") as info:
        write_stfuse_sample(tmp_path, size=64, seed=1, overwrite=True)
    assert info.value.path == str(paths["coarse_t1"])


@pytest.mark.parametrize("kwargs,match", [({"size": 63}, "64 to 2048"), ({"size": 4096}, "64 to 2048"),
                                          ({"size": 100.0}, "integer"), ({"seed": "a"}, "integer"),
                                          ({"seed": -1}, "0 or more")])
def test_bad_arguments_are_refused_before_any_file(tmp_path, kwargs, match):
    with pytest.raises(SpatialxError, match=match) as info:
        write_stfuse_sample(tmp_path / "scene", **{"size": 64, **kwargs})
    assert info.value.path == str(tmp_path / "scene") and not (tmp_path / "scene").exists()


def test_cli(tmp_path):
    from typer.testing import CliRunner

    from spatialx.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["sample", str(tmp_path / "s"), "--task", "stfuse", "--size", "65"])
    assert result.exit_code == 0, result.output
    assert "wrote reference" in result.output and "spatialx stfuse" in result.output
    assert open_raster(tmp_path / "s" / "reference.tif").grid.shape == (65, 65)
    for extra, word in ((["--sensor", "qb"], "--sensor"), (["--bands", "12"], "--task hmif")):
        refused = runner.invoke(app, ["sample", str(tmp_path / "x"), "--task", "stfuse", *extra])
        assert isinstance(refused.exception, SpatialxError) and word in str(refused.exception)
    refused = runner.invoke(app, ["sample", str(tmp_path / "x"), "--task", "stfuse", "--size", "32"])
    assert isinstance(refused.exception, SpatialxError) and "64 to 2048" in str(refused.exception)
    assert not (tmp_path / "x").exists()
