"""The default view of a product: RGB band choice, the cumulative-cut stretch, the .qml, the GeoTIFF's colour
interpretation after the COG step, and (where PyQGIS is installed) what QGIS actually draws."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from spatialx.grid import Grid
from spatialx.io.write import BandInfo, OutputSpec, RasterWriter, gdal_env, write_array
from spatialx.products.style import (
    PAULI_BANDS,
    band_stretch,
    default_rgb,
    multiband_qml,
    pauli_rgb,
    singleband_gray_qml,
    with_colors,
    write_style,
)

QGIS_PYTHON = "/usr/bin/python3"
CHECK_SCRIPT = Path(__file__).parent / "qgis" / "check_product.py"
GRID = Grid(Affine(2.0, 0, 500000, 0, -2.0, 4800000), 96, 48, CRS.from_epsg(32631))

WV3 = [BandInfo(name, center, width) for name, center, width in [
    ("Coastal", 425, 50), ("Blue", 480, 60), ("Green", 545, 70), ("Yellow", 605, 40), ("Red", 660, 60),
    ("RedEdge", 725, 40), ("NIR1", 832, 125), ("NIR2", 950, 180)]]
# Typical reflectances (x 1000 DN) in the WV3 bands, as in test_ndvi.
SPECTRA = {
    "water": [80, 70, 60, 40, 30, 20, 10, 8],  # bluish, dark in NIR
    "vegetation": [40, 45, 90, 70, 40, 250, 450, 460],
    "soil": [100, 120, 160, 190, 210, 230, 260, 280],
}
NODATA_ROWS = 4
# Pixel windows (col0, row0, col1, row1) inside each 32-column stripe, below the nodata rows.
AREAS = {name: (32 * k + 2, NODATA_ROWS + 4, 32 * k + 30, GRID.height - 2) for k, name in enumerate(SPECTRA)}


def wv3_product(path: Path) -> tuple[Path, list[BandInfo]]:
    """Water, vegetation and soil stripes with a little noise, a nodata strip on top, coloured bands."""
    data = np.zeros((8, GRID.height, GRID.width), dtype=np.int32)
    for k, spectrum in enumerate(SPECTRA.values()):
        data[:, :, 32 * k:32 * (k + 1)] = np.array(spectrum)[:, None, None]
    data += np.random.default_rng(0).integers(-3, 4, data.shape)
    data[:, :NODATA_ROWS] = 0
    bands = with_colors(WV3, default_rgb(WV3))
    return write_array(path, data.astype("uint16"), GRID, bands, nodata=0), bands


# --- band choice -----------------------------------------------------------------------------------------------

def test_worldview3_is_red5_green3_blue2():
    assert default_rgb(WV3) == (5, 3, 2)


def test_quickbird_order_blue_green_red_nir():
    qb = [BandInfo("Blue", 485, 70), BandInfo("Green", 560, 80), BandInfo("Red", 660, 60), BandInfo("NIR", 830, 140)]
    assert default_rgb(qb) == (3, 2, 1)


def test_wavelength_wins_over_names():
    # Names that lie (or are just labels): the wavelengths decide.
    bands = [BandInfo("red", 480), BandInfo("green", 560), BandInfo("blue", 665), BandInfo("nir", 842)]
    assert default_rgb(bands) == (3, 2, 1)


def test_no_blue_band_means_no_rgb():
    spot = [BandInfo("Green", 545, 70), BandInfo("Red", 645, 70), BandInfo("NIR", 835, 110), BandInfo("SWIR", 1665)]
    assert default_rgb(spot) is None


def test_names_without_wavelengths():
    assert default_rgb([BandInfo(n) for n in ("NIR", "BLUE", "green", "Red")]) == (4, 3, 2)
    sentinel2 = [BandInfo(n) for n in ("B02", "B03", "B04", "B08", "B8A", "B11")]
    assert default_rgb(sentinel2) == (3, 2, 1)
    oli = [BandInfo(f"SR_B{i}") for i in range(1, 8)]  # Landsat 8/9: SR_B4 red, SR_B3 green, SR_B2 blue
    assert default_rgb(oli) == (4, 3, 2)
    etm = [BandInfo(f"SR_B{i}") for i in (1, 2, 3, 4, 5, 7)]  # Landsat 4-7: SR_B3 red, SR_B4 is NIR
    assert default_rgb(etm) == (3, 2, 1)
    # SR_B2..SR_B4 alone are true colour on OLI but green/red/NIR on TM/ETM+: no guess.
    assert default_rgb([BandInfo(f"SR_B{i}") for i in (2, 3, 4)]) is None
    assert default_rgb([BandInfo(n) for n in ("Pan", "NIR", "SWIR")]) is None


def test_hyperspectral_cube_takes_the_nearest_bands():
    centres = np.linspace(400.0, 2500.0, 128)
    cube = [BandInfo(f"b{i}", float(c)) for i, c in enumerate(centres)]
    expected = tuple(int(np.argmin(np.abs(centres - t))) + 1 for t in (650, 550, 470))
    assert default_rgb(cube, "hyperspectral") == expected
    assert default_rgb(cube) == expected  # 100+ bands is a cube whatever the kind says
    swir = [BandInfo(f"b{i}", float(c)) for i, c in enumerate(np.linspace(1000.0, 2500.0, 128))]
    assert default_rgb(swir, "hyperspectral") is None


def replace_color(band: BandInfo, color: str | None) -> BandInfo:
    return BandInfo(band.name, band.center_nm, band.fwhm_nm, color)


def test_explicit_colours_win():
    bands = [replace_color(b, c) for b, c in zip(WV3, [None, None, None, "red", None, "green", None, "blue"],
                                                     strict=True)]
    assert default_rgb(bands) == (4, 6, 8)


def test_polsar_composites():
    c3 = [BandInfo(n) for n in ("C11", "C12_re", "C12_im", "C13_re", "C13_im", "C22", "C23_re", "C23_im", "C33")]
    assert default_rgb(c3, "polsar") == (1, 6, 9)  # lexicographic HH / HV / VV
    t3 = [BandInfo(n) for n in ("T11", "T12_re", "T12_im", "T13_re", "T13_im", "T22", "T23_re", "T23_im", "T33")]
    assert default_rgb(t3, "polsar") == (6, 9, 1)  # Pauli: T22 / T33 / T11
    assert default_rgb([BandInfo(n) for n in ("HH", "HV", "VH", "VV")], "polsar") == (1, 2, 4)
    assert default_rgb(list(PAULI_BANDS), "polsar") == (1, 2, 3)
    assert default_rgb(c3) is None  # not an optical product


def test_single_band_and_too_few_bands():
    assert default_rgb([BandInfo("NDVI")]) is None
    assert default_rgb([BandInfo("Red", 660), BandInfo("NIR", 830)]) is None
    with pytest.raises(ValueError, match="unknown product kind"):
        default_rgb(WV3, "thermal")


def test_with_colors_marks_the_rgb_bands_only():
    coloured = with_colors([*WV3[:4], replace_color(WV3[4], "blue"), *WV3[5:]], (5, 3, 2))
    assert [b.color for b in coloured] == [None, "blue", "green", None, "red", None, None, None]
    assert with_colors(WV3, None) == WV3


def test_pauli_rgb_of_pure_scatterers():
    # Per pixel (HH, HV, VV): surface (1, 0, 1), double bounce (1, 0, -1), volume (0, 1, 0).
    k = np.array([[1, 0, 1], [1, 0, -1], [0, 1, 0]], dtype=complex)
    kl = np.stack([k[:, 0], np.sqrt(2) * k[:, 1], k[:, 2]], axis=-1)  # lexicographic k_L
    c = np.einsum("pi,pj->pij", kl, kl.conj())
    c3 = np.stack([c[:, 0, 0].real, c[:, 0, 1].real, c[:, 0, 1].imag, c[:, 0, 2].real, c[:, 0, 2].imag,
                   c[:, 1, 1].real, c[:, 1, 2].real, c[:, 1, 2].imag, c[:, 2, 2].real])[:, None, :]
    rgb = pauli_rgb(c3)[:, 0, :]
    assert rgb.dtype == np.float32
    # Columns: surface is blue, double bounce red, volume green.
    np.testing.assert_allclose(rgb, [[0, 2, 0], [0, 0, 2], [2, 0, 0]], atol=1e-6)


# --- GeoTIFF colour interpretation ------------------------------------------------------------------------------

def test_colour_interpretation_survives_the_cog_step(tmp_path):
    path, _ = wv3_product(tmp_path / "wv3.tif")
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert [c.name for c in src.colorinterp] == [
            "undefined", "blue", "green", "undefined", "red", "undefined", "undefined", "undefined"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wv3.tif"]  # no .aux.xml, no temporaries


def test_rgb_first_bands_with_overviews(tmp_path):
    # Bands 1-3 red/green/blue take GTiff's PHOTOMETRIC=RGB path; small blocks give the COG overview levels.
    bands = with_colors([BandInfo("Red", 660), BandInfo("Green", 560), BandInfo("Blue", 485), BandInfo("NIR", 830)],
                        (1, 2, 3))
    grid = Grid(GRID.transform, 200, 150, GRID.crs)
    spec = OutputSpec(path=tmp_path / "rgbn.tif", grid=grid, dtype="uint16", bands=bands, nodata=0, blocksize=64)
    data = np.random.default_rng(1).integers(1, 2000, (4, 150, 200)).astype("uint16")
    with gdal_env(), RasterWriter(spec) as writer:
        writer.write(data, Window(0, 0, 200, 150))
    with rasterio.open(spec.path) as src:
        assert [c.name for c in src.colorinterp] == ["red", "green", "blue", "undefined"]
        assert src.overviews(1) == [2, 4]
        np.testing.assert_array_equal(src.read(), data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rgbn.tif"]


def test_uncoloured_products_keep_gdal_defaults(tmp_path):
    path = write_array(tmp_path / "ndvi.tif", np.zeros((1, 8, 8), "float32"), Grid(GRID.transform, 8, 8, GRID.crs),
                       [BandInfo("NDVI")])
    with rasterio.open(path) as src:
        assert [c.name for c in src.colorinterp] == ["gray"]


def test_unknown_colour_is_refused():
    with pytest.raises(ValueError, match="unknown colour interpretation"):
        BandInfo("Red", 660, color="crimson")


# --- stretch ----------------------------------------------------------------------------------------------------

def test_stretch_of_a_known_array_ignores_nodata(tmp_path):
    values = np.tile(np.arange(1, 101, dtype="uint16"), (2, 10, 1))  # 1..100, each 10 times per band
    values[1] *= 3
    data = np.concatenate([values, np.zeros((2, 5, 100), "uint16")], axis=1)  # 5 rows of nodata
    path = write_array(tmp_path / "k.tif", data, Grid(GRID.transform, 100, 15, GRID.crs),
                       [BandInfo("a"), BandInfo("b")], nodata=0)
    # Empirical 2 % and 98 % quantiles of 1..100: 2 and 98 (0 never counts).
    assert band_stretch(path, [1, 2]) == [(2.0, 98.0), (6.0, 294.0)]
    assert band_stretch(path, [2], lower=0.0, upper=1.0) == [(3.0, 300.0)]
    # A fill value the file does not declare is left out when given.
    undeclared = write_array(tmp_path / "u.tif", data, Grid(GRID.transform, 100, 15, GRID.crs),
                             [BandInfo("a"), BandInfo("b")])
    assert band_stretch(undeclared, [1])[0][0] == 0.0
    assert band_stretch(undeclared, [1], nodata=0) == [(2.0, 98.0)]
    with pytest.raises(ValueError, match=r"not in 1\.\.2"):
        band_stretch(path, [3])


def test_stretch_comes_from_the_smallest_overview_and_matches_full_resolution(tmp_path):
    ramp = np.broadcast_to(np.linspace(0.0, 1.0, 512, dtype="float32"), (1, 384, 512)).copy()
    ramp[:, :64] = np.nan  # nodata strip
    spec = OutputSpec(path=tmp_path / "ramp.tif", grid=Grid(GRID.transform, 512, 384, GRID.crs), dtype="float32",
                      bands=[BandInfo("ramp")], nodata=float("nan"), blocksize=64)
    with gdal_env(), RasterWriter(spec) as writer:
        writer.write(ramp, Window(0, 0, 512, 384))
    with rasterio.open(spec.path) as src:
        assert src.overviews(1) == [2, 4, 8]
    (low, high), = band_stretch(spec.path, [1])
    exact = np.quantile(ramp[~np.isnan(ramp)], [0.02, 0.98])
    assert low == pytest.approx(exact[0], abs=0.01) and high == pytest.approx(exact[1], abs=0.01)


def test_constant_and_empty_bands_get_a_usable_range(tmp_path):
    data = np.stack([np.full((8, 8), 7, "uint16"), np.zeros((8, 8), "uint16")])
    path = write_array(tmp_path / "c.tif", data, Grid(GRID.transform, 8, 8, GRID.crs), [BandInfo("a"), BandInfo("b")],
                       nodata=0)
    assert band_stretch(path, [1, 2]) == [(7.0, 8.0), (0.0, 1.0)]


# --- .qml -------------------------------------------------------------------------------------------------------

def test_multiband_qml_is_what_qgis_reads():
    root = ET.fromstring(multiband_qml((5, 3, 2), [(27, 213), (57, 163), (42.5, 123.25)]))
    assert root.tag == "qgis"
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.attrib == {"type": "multibandcolor", "opacity": "1", "alphaBand": "-1", "nodataColor": "",
                               "redBand": "5", "greenBand": "3", "blueBand": "2"}
    origin = renderer.find("minMaxOrigin")
    assert origin.findtext("limits") == "CumulativeCut" and origin.findtext("extent") == "WholeRaster"
    assert float(origin.findtext("cumulativeCutLower")) == 0.02
    assert float(origin.findtext("cumulativeCutUpper")) == 0.98
    for color, (low, high) in zip(("red", "green", "blue"), [(27, 213), (57, 163), (42.5, 123.25)], strict=True):
        ce = renderer.find(f"{color}ContrastEnhancement")
        assert ce.findtext("algorithm") == "StretchToMinimumMaximum"
        assert (float(ce.findtext("minValue")), float(ce.findtext("maxValue"))) == (low, high)


def test_bad_qml_inputs_are_refused():
    with pytest.raises(ValueError, match="increasing"):
        multiband_qml((5, 3, 2), [(1, 2), (3, 3), (4, 5)])
    with pytest.raises(ValueError, match="3"):
        multiband_qml((5, 3, 2), [(1, 2)])
    with pytest.raises(ValueError, match="1-based"):
        multiband_qml((0, 3, 2), [(1, 2)] * 3)


def test_write_style_for_multiband_and_single_band_products(tmp_path):
    path, bands = wv3_product(tmp_path / "wv3.tif")
    renderer = ET.fromstring(write_style(path, bands)).find("pipe/rasterrenderer")
    assert (renderer.get("redBand"), renderer.get("greenBand"), renderer.get("blueBand")) == ("5", "3", "2")
    # Red band: water ~30, vegetation ~40, soil ~210; the nodata strip (0) does not pull the minimum down.
    red = renderer.find("redContrastEnhancement")
    assert 20 <= float(red.findtext("minValue")) <= 35 and 205 <= float(red.findtext("maxValue")) <= 215

    ndvi = write_array(tmp_path / "ndvi.tif", np.linspace(-1, 1, 64, dtype="float32").reshape(1, 8, 8),
                       Grid(GRID.transform, 8, 8, GRID.crs), [BandInfo("NDVI")])
    gray = ET.fromstring(write_style(ndvi, [BandInfo("NDVI")])).find("pipe/rasterrenderer")
    assert gray.get("type") == "singlebandgray" and gray.get("grayBand") == "1"
    assert gray.find("minMaxOrigin").findtext("limits") == "CumulativeCut"
    assert ET.fromstring(singleband_gray_qml(1, (0.0, 1.0))).find("pipe/rasterrenderer/contrastEnhancement") is not None
    with pytest.raises(ValueError, match="8 bands, 3 band descriptions"):
        write_style(path, bands[:3])


# --- QGIS -------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def qgis_missing() -> str | None:
    """Why the QGIS check cannot run here, or None when it can."""
    if not os.access(QGIS_PYTHON, os.X_OK):
        return f"{QGIS_PYTHON} not found"
    try:
        probe = subprocess.run([QGIS_PYTHON, "-c", "import qgis.core"], env=qgis_env(), capture_output=True,
                               timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {QGIS_PYTHON}: {exc}"
    return None if probe.returncode == 0 else f"PyQGIS not installed for {QGIS_PYTHON} (Debian python3-qgis)"


def qgis_env() -> dict[str, str]:
    # The system QGIS must use its own GDAL/PROJ data and Python, not the virtualenv's wheels.
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "GDAL_DATA", "PROJ_LIB", "PROJ_DATA", "GDAL_DRIVER_PATH"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def test_qgis_opens_the_product_in_true_colour(tmp_path):
    reason = qgis_missing()
    if reason:
        pytest.skip(reason)
    path, bands = wv3_product(tmp_path / "wv3.tif")
    path.with_suffix(".qml").write_text(write_style(path, bands))
    areas = [f"--area={name}={','.join(map(str, box))}" for name, box in AREAS.items()]
    run = subprocess.run([QGIS_PYTHON, str(CHECK_SCRIPT), str(path), *areas], env=qgis_env(), capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    sys.stdout.write(run.stdout)  # shown with pytest -s: the whole QGIS view
    assert report["style"]["loaded"]
    for view in ("on_open", "styled"):  # QGIS loads the .qml beside the product by itself on opening
        renderer = report[view]
        assert renderer["type"] == "multibandcolor"
        assert [renderer[c]["band"] for c in ("red", "green", "blue")] == [5, 3, 2]
        assert [renderer[c]["name"].split(": ")[-1] for c in ("red", "green", "blue")] == ["Red", "Green", "Blue"]
        assert renderer["min_max_origin"]["limits"] == "CumulativeCut"
    assert report["color_interpretation"][1:5] == ["Blue", "Green", "Undefined", "Red"]
    water, vegetation, soil = (report["areas"][name] for name in SPECTRA)
    assert water[2] > water[0] + 40 and water[2] > water[1] + 40  # blue, not orange
    assert vegetation[1] > vegetation[0] and vegetation[1] > vegetation[2]
    assert min(soil) > 200  # the brightest surface, near white after the stretch
