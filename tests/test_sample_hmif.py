"""The synthetic hmif scene (`spatialx sample DIR --task hmif`): every file read back through the real readers (PRISMA
HE5, Sentinel-2 band-COG folder, GeoTIFF), the physics that links them (MTF degradation, spectral responses), the
grids' nesting, determinism, the output policy, and one fusion run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

import spatialx
from spatialx.errors import OutputError, SpatialxError
from spatialx.filters import decimate_centred, mtf_filter, mtf_kernel
from spatialx.io.prisma import open_prisma, write_prisma_l2d
from spatialx.io.read import open_raster
from spatialx.sample import DEFAULT_ORIGIN, prisma_band_grid, write_hmif_sample
from spatialx.sensors import get_sensor

SIZE, BANDS, SEED = 144, 60, 3
STRIP = 48  # three strips: the seams between them are inside every comparison below
S2_BANDS = ("B02", "B03", "B04", "B08")
SENSORS = {"hs": "prisma_l2d", "ms": "s2_l2a"}
DN_STEP = 1.0 / 65535.0  # the HE5 cubes hold [0, 1] in uint16


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict[str, Path]:
    return write_hmif_sample(tmp_path_factory.mktemp("hmif") / "scene", size=SIZE, bands=BANDS, seed=SEED,
                             strip_rows=STRIP)


def _all(info) -> Window:
    return Window(0, 0, info.grid.width, info.grid.height)


def read_info(info) -> np.ndarray:
    with info.reader() as reader:
        return reader.read(_all(info)).astype(np.float64)


def read_tif(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read().astype(np.float64)


def test_files_and_nested_grids(scene):
    assert set(scene) == {"hs", "hs_tif", "ms", "reference"}
    assert scene["hs"].name == "hs.he5" and scene["ms"].is_dir()
    assert sorted(p.name for p in scene["ms"].iterdir()) == ["B02.tif", "B03.tif", "B04.tif", "B08.tif", "item.json"]
    grid = prisma_band_grid(BANDS)
    hs = open_raster(scene["hs"])  # dispatched to the PRISMA reader by the file itself
    assert hs.metadata["sensor"] == "prisma_l2d" and hs.metadata["pixel_size_source"] == "corners"
    assert hs.count == BANDS == len(grid.kept)
    wavelengths = np.array(hs.wavelengths_nm)
    assert np.all(np.diff(wavelengths) > 0) and 400 < wavelengths[0] < 410 and 2490 < wavelengths[-1] < 2500
    np.testing.assert_array_equal(wavelengths, grid.wavelengths[grid.kept])
    assert all(9.9 < w < 12.1 for w in hs.fwhm_nm)
    assert hs.descriptions[0] == "VNIR01" and hs.descriptions[-1].startswith("SWIR")
    # the overlap is in the file, as in real products: the VNIR camera reaches past the first SWIR centre
    both = open_prisma(scene["hs"], keep_overlap=True)
    assert both.count == len(grid.wavelengths) > BANDS
    first_swir = min(w for w, n in zip(both.wavelengths_nm, both.descriptions, strict=True) if n.startswith("SWIR"))
    assert max(w for w, n in zip(both.wavelengths_nm, both.descriptions, strict=True) if n.startswith("VNIR")) > \
        first_swir

    ms = open_raster(scene["ms"])  # the Sentinel-2 reader: a folder of band files
    assert ms.descriptions == S2_BANDS and ms.metadata["radiometry_from"] == "STAC item item.json"
    x0, y0 = DEFAULT_ORIGIN
    assert ms.grid.transform == Affine(10.0, 0.0, x0, 0.0, -10.0, y0) and ms.grid.shape == (SIZE, SIZE)
    # 30 m, the same upper-left corner: every HS pixel is exactly 3 x 3 MS pixels, edges aligned
    assert hs.grid.transform == Affine(30.0, 0.0, x0, 0.0, -30.0, y0) and hs.grid.shape == (SIZE // 3, SIZE // 3)
    assert hs.grid.crs == ms.grid.crs and hs.grid.crs.to_epsg() == 32631
    with h5py.File(scene["hs"]) as f:  # the corner attributes are corner-pixel centres
        assert f.attrs["Product_ULcorner_easting"] == x0 + 15 and f.attrs["Product_ULcorner_northing"] == y0 - 15

    for role, transform, side in (("hs_tif", hs.grid.transform, SIZE // 3), ("reference", ms.grid.transform, SIZE)):
        info = open_raster(scene[role])
        assert info.grid.transform == transform and info.grid.shape == (side, side) and info.dtype == "float32"
        assert info.descriptions == hs.descriptions
        assert info.wavelengths_nm == hs.wavelengths_nm and info.fwhm_nm == hs.fwhm_nm
    for band in S2_BANDS:
        with rasterio.open(scene["ms"] / f"{band}.tif") as src:
            assert src.dtypes == ("uint16",) and src.nodata == 0 and src.descriptions == (band,)
            assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


def test_the_he5_layout_is_write_prisma_l2ds(scene, tmp_path):
    """The strip writer and the whole-cube writer of the PRISMA module make the same file structure."""
    grid = prisma_band_grid(BANDS)
    cube = np.full((len(grid.wavelengths), 4, 5), 0.25)
    x0, y0 = DEFAULT_ORIGIN
    small = write_prisma_l2d(tmp_path / "small.he5", cube, grid.wavelengths, grid.fwhm, 32631, x0 + 15, y0 - 15,
                             vnir_count=grid.vnir_count, unused_slots=(3, 2), scale_ranges={"VNIR": (0, 1),
                                                                                              "SWIR": (0, 1)})

    def structure(path: Path) -> tuple[dict, dict]:
        with h5py.File(path) as f:
            datasets = {}
            f.visititems(lambda name, obj: datasets.update({name: (obj.dtype, obj.shape[1])})
                         if isinstance(obj, h5py.Dataset) else None)
            attrs = {k: np.asarray(v).dtype for k, v in f.attrs.items()}
        return datasets, attrs

    assert structure(scene["hs"]) == structure(small)
    with h5py.File(scene["hs"]) as f, h5py.File(small) as g:
        for key in ("List_Cw_Vnir", "List_Cw_Swir", "List_Fwhm_Vnir", "List_Cw_Swir_Flags", "L2ScaleSwirMax"):
            np.testing.assert_array_equal(f.attrs[key], g.attrs[key])
    mine, theirs = open_raster(scene["hs"]), open_raster(small)
    assert (mine.descriptions, mine.wavelengths_nm, mine.fwhm_nm) == (theirs.descriptions, theirs.wavelengths_nm,
                                                                      theirs.fwhm_nm)
    with mine.reader() as reader:
        assert reader.read_valid(_all(mine)).all()  # error matrices all 0, no fill pixel


def test_hs_tif_is_the_he5_before_quantisation(scene):
    he5 = read_info(open_raster(scene["hs"]))
    tif = read_tif(scene["hs_tif"])
    assert he5.shape == tif.shape == (BANDS, SIZE // 3, SIZE // 3)
    assert np.abs(he5 - tif).max() <= DN_STEP / 2 + 1e-7
    assert tif.min() > 0.0 and tif.max() < 1.0


def test_hs_is_the_mtf_degraded_truth(scene):
    reference = read_tif(scene["reference"])
    assert reference.shape == (BANDS, SIZE, SIZE) and reference.min() >= 0.0 and reference.max() <= 1.0
    # PRISMA's MTF (gain 0.3 at Nyquist, ratio 3) with unit DC gain, sampled at each 3 x 3 block's centre
    expected = decimate_centred(mtf_filter(reference, 0.3, 3), 3) / mtf_kernel(0.3, 3).sum()
    np.testing.assert_allclose(read_tif(scene["hs_tif"]), expected, rtol=0, atol=2e-6)
    # and not a cheaper model: a plain 3 x 3 block mean differs by far more than the float32 round-off
    blocks = reference.reshape(BANDS, SIZE // 3, 3, SIZE // 3, 3).mean(axis=(2, 4))
    assert np.abs(blocks - expected).max() > 1e-3


def test_the_s2_bands_are_the_truth_integrated_with_their_responses(scene):
    ms = open_raster(scene["ms"])
    assert ms.metadata["boa_add_offset"] == dict.fromkeys(S2_BANDS, 0.0)
    assert ms.metadata["boa_quantification_value"] == 10000.0
    item = json.loads((scene["ms"] / "item.json").read_text())
    assert item["properties"]["s2:processing_baseline"] == "02.14"
    assert {a["raster:bands"][0]["scale"] for a in item["assets"].values()} == {0.0001}
    reflectance = read_info(ms)
    with ms.reader() as reader:
        assert reader.read_valid(_all(ms)).all()
    reference = read_tif(scene["reference"])
    wavelengths = np.array(open_raster(scene["reference"]).wavelengths_nm)
    s2 = get_sensor("s2_l2a")
    for i, band in enumerate(S2_BANDS):
        response = s2.layer(band).response_curve(wavelengths)[:, None, None]
        expected = np.trapezoid(response * reference, wavelengths, axis=0) / np.trapezoid(response[:, 0, 0],
                                                                                          wavelengths)
        np.testing.assert_allclose(reflectance[i], expected, rtol=0, atol=0.5e-4 + 1e-6, err_msg=band)
    # vegetation's red edge is there: NIR well above red over much of the scene
    ndvi = (reflectance[3] - reflectance[2]) / (reflectance[3] + reflectance[2])
    assert (ndvi > 0.5).mean() > 0.2 and (ndvi < 0).mean() > 0.005  # fields, and water


def test_deterministic_for_a_seed_whatever_the_strips(scene, tmp_path):
    again = write_hmif_sample(tmp_path / "again", size=SIZE, bands=BANDS, seed=SEED, strip_rows=STRIP)
    whole = write_hmif_sample(tmp_path / "whole", size=SIZE, bands=BANDS, seed=SEED)  # one strip
    other = write_hmif_sample(tmp_path / "other", size=SIZE, bands=BANDS, seed=SEED + 1, strip_rows=STRIP)
    for role in ("hs_tif", "reference"):
        np.testing.assert_array_equal(read_tif(again[role]), read_tif(scene[role]), err_msg=role)
    for role in ("hs", "ms"):
        np.testing.assert_array_equal(read_info(open_raster(again[role])), read_info(open_raster(scene[role])))
    # the truth and the MS are rendered pixel by pixel: bit-identical; the HS's FFT round-off follows the strip size
    np.testing.assert_array_equal(read_tif(whole["reference"]), read_tif(scene["reference"]))
    np.testing.assert_array_equal(read_info(open_raster(whole["ms"])), read_info(open_raster(scene["ms"])))
    np.testing.assert_allclose(read_tif(whole["hs_tif"]), read_tif(scene["hs_tif"]), rtol=0, atol=1e-6)
    assert np.abs(read_tif(other["reference"]) - read_tif(scene["reference"])).mean() > 0.01


def test_existing_files_are_refused_without_overwrite(tmp_path):
    paths = write_hmif_sample(tmp_path, size=48, bands=20, seed=0)
    before = {p: p.stat().st_mtime_ns for p in (paths["hs"], paths["reference"], paths["ms"] / "B02.tif")}
    with pytest.raises(OutputError) as info:
        write_hmif_sample(tmp_path, size=48, bands=20, seed=1)
    assert info.value.path == str(paths["hs"]) and "--overwrite" in info.value.hint
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert not [p for p in tmp_path.rglob(".sx-*")]  # no temporary left behind
    write_hmif_sample(tmp_path, size=48, bands=20, seed=1, overwrite=True)
    assert all(p.stat().st_mtime_ns != t for p, t in before.items())
    # a foreign file in ms/ would be read as part of the Sentinel-2 product
    (tmp_path / "ms" / "B05.tif").write_bytes(b"")
    with pytest.raises(OutputError, match="other files") as info:
        write_hmif_sample(tmp_path, size=48, bands=20, seed=1, overwrite=True)
    assert info.value.path == str(tmp_path / "ms")


@pytest.mark.parametrize("kwargs,match", [({"size": 50}, "multiple of 3"), ({"size": 9}, "at least 12"),
                                          ({"bands": 300}, "8 to 240 bands"), ({"strip_rows": 50}, "multiple of 48")])
def test_bad_arguments_are_refused_before_any_file(tmp_path, kwargs, match):
    with pytest.raises(SpatialxError, match=match) as info:
        write_hmif_sample(tmp_path / "scene", **{"size": 48, "bands": 20, **kwargs})
    assert info.value.path == str(tmp_path / "scene") and not (tmp_path / "scene").exists()


def test_fuse_exp_end_to_end(scene, tmp_path):
    result = spatialx.fuse("hmif", {"hs": scene["hs"], "ms": scene["ms"]}, tmp_path / "exp.tif", method="exp",
                           sensor=SENSORS)
    hs, ms = open_raster(scene["hs"]), open_raster(scene["ms"])
    assert result.params["ratio"] == 3.0 and result.shape == (BANDS, SIZE, SIZE)
    with rasterio.open(result.output) as src:
        assert src.transform == ms.grid.transform and src.crs == ms.grid.crs and src.shape == (SIZE, SIZE)
        assert src.descriptions == hs.descriptions
        assert tuple(float(src.tags(i)["wavelength"]) for i in range(1, src.count + 1)) == hs.wavelengths_nm
        fused = src.read().astype(np.float64)
    # interpolated HS reflectance: the truth's spatial pattern, without its 10 m detail
    reference = read_tif(scene["reference"])
    error = np.abs(fused - reference).mean()
    assert 0.002 < error < 0.6 * np.abs(reference - reference.mean(axis=(1, 2), keepdims=True)).mean()


def test_cli(tmp_path):
    from typer.testing import CliRunner

    from spatialx.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["sample", str(tmp_path / "h"), "--task", "hmif", "--size", "48", "--bands", "12"])
    assert result.exit_code == 0, result.output
    assert open_raster(tmp_path / "h" / "hs.he5").count == 12 and "wrote reference" in result.output
    refused = runner.invoke(app, ["sample", str(tmp_path / "x"), "--task", "hmif", "--sensor", "qb"])
    assert isinstance(refused.exception, SpatialxError) and "--sensor" in str(refused.exception)
    refused = runner.invoke(app, ["sample", str(tmp_path / "x"), "--bands", "12"])
    assert isinstance(refused.exception, SpatialxError) and "--task hmif" in str(refused.exception)
    assert not (tmp_path / "x").exists()
    result = runner.invoke(app, ["sample", str(tmp_path / "p"), "--sensor", "qb", "--size", "64"])  # unchanged
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["ms.tif", "pan.tif", "reference.tif"]
