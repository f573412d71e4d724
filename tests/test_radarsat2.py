"""PolSAR readers (spatialx.io.radarsat2): quad-pol SLC sets and RADARSAT-2 products as C3, single-pol intensity."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from numpy.lib.stride_tricks import sliding_window_view
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin
from rasterio.windows import Window

from spatialx.errors import MethodError, ReadError
from spatialx.io import read as read_module
from spatialx.io.radarsat2 import C3_BANDS, FORMAT, FORMATS, open_polsar, probe_polsar
from spatialx.metrics.polsar import c3_to_matrices
from spatialx.sensors import get_sensor

pytestmark = [pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
              pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")]

POLS = ("HH", "HV", "VH", "VV")
REAL = Path(__file__).resolve().parents[1].parent / "shared/data/real"
TRANSFORM = from_origin(500000.0, 4200000.0, 5.0, 5.0)


# ----------------------------------------------------------------------------------------------------- helpers


def _speckle(shape, rng):
    """HH, HV, VH, VV single-look complex Gaussian speckle: two regions (left, right) with known covariances of
    k = [HH, HV, VV]; VH = HV plus a little independent noise (so that the HV/VH average matters)."""
    height, width = shape
    covs = [np.array([[4.0, 0.3 + 0.2j, 1.5 - 0.5j], [0.3 - 0.2j, 0.5, 0.1j], [1.5 + 0.5j, -0.1j, 3.0]]),
            np.array([[1.0, 0.0, 0.4], [0.0, 0.2, 0.0], [0.4, 0.0, 2.0]])]
    out = np.empty((4, height, width), dtype=np.complex128)
    half = width // 2
    for cov, cols in zip(covs, (slice(0, half), slice(half, width)), strict=True):
        n = height * (cols.stop - cols.start)
        white = (rng.standard_normal((3, n)) + 1j * rng.standard_normal((3, n))) / np.sqrt(2)
        k = np.linalg.cholesky(cov) @ white
        noise = 0.05 * (rng.standard_normal(n) + 1j * rng.standard_normal(n))
        out[:, :, cols] = np.stack([k[0], k[1], k[1] + noise, k[2]]).reshape(4, height, -1)
    return out


def _write_slc(path: Path, values: np.ndarray, complex_band: bool = False, transform=TRANSFORM, crs="EPSG:32631"):
    height, width = values.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "crs": crs, "transform": transform}
    if complex_band:
        with rasterio.open(path, "w", count=1, dtype="complex64", **profile) as dst:
            dst.write(values.astype(np.complex64)[None])
    else:
        with rasterio.open(path, "w", count=2, dtype="float32", **profile) as dst:
            dst.write(np.stack([values.real, values.imag]).astype(np.float32))


def _slc_set(folder: Path, slc: np.ndarray, pols=POLS, prefix="rsat") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, pol in enumerate(POLS):
        if pol in pols:
            path = folder / f"{prefix}_{pol}.tif"
            _write_slc(path, slc[i], complex_band=(i % 2 == 1))  # mixed: 2-band re/im and one complex band
            paths.append(path)
    return paths


def _boxcar(image: np.ndarray, looks: int) -> np.ndarray:
    """Direct reference: the mean over the looks x looks neighbourhood's pixels that exist."""
    r = looks // 2
    padded = np.pad(image, r, constant_values=0.0)
    ones = np.pad(np.ones_like(image, dtype=np.float64), r, constant_values=0.0)
    sums = sliding_window_view(padded, (looks, looks)).sum(axis=(-1, -2))
    counts = sliding_window_view(ones, (looks, looks)).sum(axis=(-1, -2))
    return sums / counts


def _reference_c3(slc: np.ndarray, looks: int) -> np.ndarray:
    hh, hv, vh, vv = slc
    k = np.stack([hh, np.sqrt(2) * (hv + vh) / 2, vv])
    out = []
    for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)):
        prod = k[i] * np.conj(k[j])
        if i == j:
            out.append(_boxcar(prod.real, looks))
        else:
            out += [_boxcar(prod.real, looks), _boxcar(prod.imag, looks)]
    return np.stack(out)


@pytest.fixture(scope="module")
def quad(tmp_path_factory):
    rng = np.random.default_rng(1)
    slc = _speckle((48, 60), rng)
    folder = tmp_path_factory.mktemp("quad")
    _slc_set(folder, slc)
    (folder / "notes.txt").write_text("other files are ignored")
    return folder, slc


# ------------------------------------------------------------------------------------------------------- C3


@pytest.mark.parametrize("looks", [1, 3, 5])
def test_c3_windows_equal_direct_computation_including_edges(quad, looks):
    folder, slc = quad
    info = open_polsar(folder, looks=looks)
    assert info.count == 9 and info.dtype == "float32" and info.descriptions == C3_BANDS
    assert info.grid.shape == (48, 60) and info.grid.transform == TRANSFORM
    ref = _reference_c3(slc, looks)
    reader = info.reader()
    try:
        for window in (Window(0, 0, 7, 9), Window(53, 41, 7, 7), Window(0, 40, 60, 8), Window(20, 10, 13, 11),
                       Window(59, 0, 1, 48)):
            got = reader.read(window)
            assert got.dtype == np.float32 and got.shape == (9, window.height, window.width)
            rows, cols = window.toslices()
            np.testing.assert_allclose(got, ref[:, rows, cols], rtol=2e-5, atol=2e-5 * ref[0].mean())
    finally:
        reader.close()


def test_c3_is_hermitian_psd_and_follows_the_lexicographic_convention(quad):
    folder, slc = quad
    info = open_polsar(folder, looks=3)
    with info.reader() as reader:
        c3 = reader.read(Window(0, 0, 60, 48)).astype(np.float64)
        assert np.array_equal(reader.read(Window(0, 0, 60, 48), [6]), c3[5:6].astype(np.float32))
    matrices = c3_to_matrices(c3)
    np.testing.assert_allclose(matrices, np.conj(np.swapaxes(matrices, -1, -2)))
    eig = np.linalg.eigvalsh(matrices)
    assert np.all(eig >= -1e-5 * eig.max(axis=-1, keepdims=True))
    hh, hv, vh, vv = slc
    # C22 = 2 <|S_HV|^2> with S_HV the average of HV and VH (reciprocity); C11, C33 the co-pol powers.
    np.testing.assert_allclose(c3[5], _boxcar(2 * np.abs((hv + vh) / 2) ** 2, 3), rtol=1e-4)
    assert not np.allclose(c3[5], _boxcar(2 * np.abs(hv) ** 2, 3), rtol=1e-3)
    np.testing.assert_allclose(c3[0], _boxcar(np.abs(hh) ** 2, 3), rtol=1e-4)
    np.testing.assert_allclose(c3[3] + 1j * c3[4], _boxcar((hh * np.conj(vv)).real, 3)
                               + 1j * _boxcar((hh * np.conj(vv)).imag, 3), rtol=1e-4, atol=1e-4)
    # Region statistics: the left region's C11 is about 4, its C22 about 2 x 0.5 (+ the VH noise, halved).
    assert 3.0 < c3[0][:, 2:25].mean() < 5.0 and 0.8 < c3[5][:, 2:25].mean() < 1.3


def test_windowed_reads_equal_the_slice_of_a_full_read(quad):
    folder, _ = quad
    info = open_polsar(folder, looks=5)
    rng = np.random.default_rng(3)
    with info.reader() as reader:
        full = reader.read(Window(0, 0, 60, 48))
        for _ in range(10):
            col, row = int(rng.integers(0, 59)), int(rng.integers(0, 47))
            width, height = int(rng.integers(1, 61 - col)), int(rng.integers(1, 49 - row))
            np.testing.assert_array_equal(reader.read(Window(col, row, width, height)),
                                          full[:, row:row + height, col:col + width])
        assert reader.read_valid(Window(0, 0, 60, 48)).all()
        with pytest.raises(ReadError, match="outside"):
            reader.read(Window(55, 0, 10, 10))


def test_metadata(quad):
    folder, _ = quad
    info = open_polsar(folder)
    md = info.metadata
    assert md["representation"] == "C3" and md["looks"] == 5 and md["speckle"] == "boxcar"
    assert md["polarisations"] == list(POLS) and md["units"] == "linear power" and md["sensor"] == "radarsat2_quad"
    assert "value_range" not in md and md["enl"] is not None and md["enl"] > 1
    assert set(md["files"]) == set(POLS)
    assert get_sensor(md["sensor"]).band_names == C3_BANDS


@pytest.mark.parametrize("looks", [3, 5])
def test_enl_of_a_boxcar_on_homogeneous_speckle_is_about_looks_squared(tmp_path, looks):
    rng = np.random.default_rng(7 + looks)
    shape = (12 * looks * 8, 12 * looks * 8)
    white = (rng.standard_normal((4, *shape)) + 1j * rng.standard_normal((4, *shape))) / np.sqrt(2)
    _slc_set(tmp_path, white)
    enl = open_polsar(tmp_path, looks=looks).metadata["enl"]
    assert abs(enl - looks**2) < 0.2 * looks**2, enl
    single = open_polsar(tmp_path / "rsat_HH.tif", polarisation="HH").metadata["enl"]
    assert 0.8 < single < 1.2  # single-look intensity: ENL 1


# ------------------------------------------------------------------------------------------------- single-pol


def test_single_pol_intensity(tmp_path, quad):
    rng = np.random.default_rng(5)
    slc = _speckle((30, 40), rng)[0]
    path = tmp_path / "scene_slc.tif"
    _write_slc(path, slc, complex_band=True)
    info = open_polsar(path)
    assert info.count == 1 and info.descriptions == ("intensity",)
    assert info.metadata["sensor"] == "radarsat2_single" and info.metadata["representation"] == "intensity"
    assert info.metadata["looks"] == 1
    with info.reader() as reader:
        np.testing.assert_allclose(reader.read(Window(0, 0, 40, 30))[0], np.abs(slc) ** 2, rtol=1e-5)
    with open_polsar(path, looks=3).reader() as reader:
        np.testing.assert_allclose(reader.read(Window(5, 3, 20, 10))[0], _boxcar(np.abs(slc) ** 2, 3)[3:13, 5:25],
                                   rtol=1e-5)
    # A channel of a quad-pol set: the full-resolution intensity the reduced-resolution protocol simulates from.
    folder, quad_slc = quad
    for pol, i in (("HH", 0), ("vh", 2)):
        info = open_polsar(folder, polarisation=pol)
        assert info.descriptions == (pol.upper(),) and info.metadata["polarisations"] == [pol.upper()]
        with info.reader() as reader:
            np.testing.assert_allclose(reader.read(Window(0, 0, 60, 48))[0], np.abs(quad_slc[i]) ** 2, rtol=1e-5)
    # A 2-band file with a polarisation token but without its siblings is a single-pol SLC.
    lone = tmp_path / "lone"
    lone.mkdir()
    _write_slc(lone / "x_VV.tif", slc)
    for given in (lone, lone / "x_VV.tif"):
        info = open_polsar(given)
        assert info.count == 1 and info.descriptions == ("VV",)


def test_quad_from_one_file_with_siblings_and_from_a_list(quad):
    folder, _ = quad
    ref = open_polsar(folder, looks=3)
    with ref.reader() as reader:
        expected = reader.read(Window(0, 0, 60, 48))
    for given in (folder / "rsat_VH.tif", [folder / f"rsat_{p}.tif" for p in ("VV", "HV", "HH", "VH")]):
        info = open_polsar(given, looks=3)
        assert info.count == 9
        with info.reader() as reader:
            np.testing.assert_array_equal(reader.read(Window(0, 0, 60, 48)), expected)


def test_single_pol_profile_round_trips(tmp_path, monkeypatch):
    profile = get_sensor("radarsat2_single")
    assert profile.kind == "sar" and profile.frequency_ghz == 5.405 and profile.dtype == "float32"
    assert profile.representation == "intensity" and len(profile.bands) == 1
    (tmp_path / "again.yaml").write_text(profile.to_yaml())
    monkeypatch.setenv("SPATIALX_SENSOR_PATH", str(tmp_path))
    again = get_sensor("again")
    assert again.to_dict() == profile.to_dict()


# ----------------------------------------------------------------------------------------------------- errors


def test_errors_are_one_line(tmp_path, quad):
    rng = np.random.default_rng(9)
    slc = _speckle((20, 24), rng)
    three = tmp_path / "three"
    _slc_set(three, slc, pols=("HH", "HV", "VV"))
    with pytest.raises(ReadError, match="missing VH") as info:
        open_polsar(three)
    assert "\n" not in str(info.value)
    with pytest.raises(ReadError, match="missing VH"):
        open_polsar(sorted(three.iterdir()))

    real = tmp_path / "real"
    _slc_set(real, slc)
    with rasterio.open(real / "rsat_HV.tif", "w", driver="GTiff", width=24, height=20, count=1,
                       dtype="float32") as dst:
        dst.write(np.ones((1, 20, 24), np.float32))
    with pytest.raises(ReadError, match=r"rsat_HV\.tif is not complex SLC data"):
        open_polsar(real)

    shifted = tmp_path / "shifted"
    _slc_set(shifted, slc)
    _write_slc(shifted / "rsat_VV.tif", slc[3], transform=from_origin(500005.0, 4200000.0, 5.0, 5.0))
    with pytest.raises(ReadError, match="not on one grid"):
        open_polsar(shifted)
    cropped = tmp_path / "cropped"
    _slc_set(cropped, slc)
    _write_slc(cropped / "rsat_HH.tif", slc[0][:, :20])
    with pytest.raises(ReadError, match="not on one grid"):
        open_polsar(cropped)

    doubled = tmp_path / "doubled"
    _slc_set(doubled, slc)
    _write_slc(doubled / "imagery_HH.tif", slc[0])
    with pytest.raises(ReadError, match="more than one file per polarisation"):
        open_polsar(doubled)

    folder, _ = quad
    with pytest.raises(ReadError, match="odd"):
        open_polsar(folder, looks=4)
    with pytest.raises(ReadError, match="unknown polarisation"):
        open_polsar(folder, polarisation="RR")
    with pytest.raises(ReadError, match="refined Lee window"):
        open_polsar(folder, looks=1, speckle="refined-lee")
    with pytest.raises(MethodError, match="unknown speckle"):
        open_polsar(folder, speckle="frost")
    with pytest.raises(ReadError, match="no SLC files"):
        open_polsar(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "readme.txt").write_text("nothing here")
    return folder


# ------------------------------------------------------------------------------------------- RADARSAT-2 products


def _product(folder: Path, dn: np.ndarray, gains: np.ndarray | None, pols=POLS, product_type="SLC",
             layout: str = "iq", satellite="RADARSAT-2", xmlns="http://www.rsi.ca/rs2/prod/xml/schemas") -> Path:
    """A product folder GDAL's RS2 driver opens: product.xml with the elements it reads, imagery_<pol>.tif per
    polarisation (two int16 bands I, Q; or tiled; or one CInt16 band), lutSigma.xml with per-column gains."""
    folder.mkdir(parents=True, exist_ok=True)
    height, width = dn.shape[1:]
    images = []
    for i, pol in enumerate(POLS):
        if pol not in pols:
            continue
        name = f"imagery_{pol}.tif"
        images.append(f'<fullResolutionImageData pole="{pol}">{name}</fullResolutionImageData>')
        common = {"driver": "GTiff", "width": width, "height": height}
        if layout == "cint16":
            with rasterio.open(folder / name, "w", count=1, dtype="complex_int16", **common) as dst:
                dst.write(dn[i].astype(np.complex64)[None])
        else:
            tiles = {"tiled": True, "blockxsize": 16, "blockysize": 16} if layout == "tiled" else {}
            with rasterio.open(folder / name, "w", count=2, dtype="int16", **common, **tiles) as dst:
                dst.write(np.stack([dn[i].real, dn[i].imag]).astype(np.int16))
    lut = ""
    if gains is not None:
        (folder / "lutSigma.xml").write_text(
            f'<?xml version="1.0" encoding="UTF-8"?>\n<lut xmlns="{xmlns}"><offset>0.000000e+00</offset>'
            f'<gains>{" ".join(f"{g:.6e}" for g in gains)}</gains></lut>\n')
        lut = '<lookupTable incidenceAngleCorrection="Sigma Nought">lutSigma.xml</lookupTable>'
    (folder / "product.xml").write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<product xmlns="{xmlns}">
  <sourceAttributes><satellite>{satellite}</satellite><sensor>SAR</sensor><beamModeMnemonic>FQ9</beamModeMnemonic>
    <rawDataStartTime>2010-06-01T12:00:00.000000Z</rawDataStartTime></sourceAttributes>
  <imageGenerationParameters><generalProcessingInformation><productType>{product_type}</productType>
  </generalProcessingInformation></imageGenerationParameters>
  <imageAttributes>
    <rasterAttributes><dataType>Complex</dataType><bitsPerSample dataStream="Complex">16</bitsPerSample>
      <numberOfSamplesPerLine>{width}</numberOfSamplesPerLine><numberofLines>{height}</numberofLines>
      <sampledPixelSpacing units="m">4.73</sampledPixelSpacing><sampledLineSpacing units="m">5.12</sampledLineSpacing>
    </rasterAttributes>
    {lut}
    {"".join(images)}
  </imageAttributes>
</product>
""")
    return folder


@pytest.fixture(scope="module")
def product_dn():
    rng = np.random.default_rng(11)
    slc = _speckle((40, 50), rng) * 300.0
    dn = np.round(slc.real) + 1j * np.round(slc.imag)
    gains = np.linspace(150.0, 250.0, 50)
    return dn, gains


@pytest.mark.parametrize("layout", ["iq", "tiled", "cint16"])
def test_rs2_product_gives_calibrated_c3(tmp_path, product_dn, layout):
    dn, gains = product_dn
    folder = _product(tmp_path / "RS2_OK_SLC", dn, gains, layout=layout)
    ref = _reference_c3(dn / gains, 5)
    for given in (folder, folder / "product.xml"):
        assert probe_polsar(given)
        info = open_polsar(given)
        assert info.count == 9 and info.grid.shape == (40, 50)
        md = info.metadata
        assert md["calibration"].startswith("sigma0") and md["product_type"] == "SLC" and md["beam_mode"] == "FQ9"
        # GDAL calibrates full-width strips of I/Q samples; tiles and one-band CInt16 files are calibrated here.
        assert (md["calibration"] == "sigma0 (GDAL RS2 driver)") == (layout == "iq")
        with info.reader() as reader:
            got = reader.read(Window(0, 0, 50, 40))
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * ref[0].mean())
            np.testing.assert_array_equal(reader.read(Window(33, 21, 17, 19)), got[:, 21:40, 33:50])


def test_rs2_single_pol_and_channel_products(tmp_path, product_dn):
    dn, gains = product_dn
    single = _product(tmp_path / "single", dn, gains, pols=("HH",))
    info = open_polsar(single)
    assert info.count == 1 and info.descriptions == ("HH",) and info.metadata["sensor"] == "radarsat2_single"
    with info.reader() as reader:
        np.testing.assert_allclose(reader.read(Window(0, 0, 50, 40))[0], np.abs(dn[0] / gains) ** 2, rtol=1e-4)
    quad = _product(tmp_path / "quad", dn, gains)
    info = open_polsar(quad, polarisation="HV")
    with info.reader() as reader:
        np.testing.assert_allclose(reader.read(Window(0, 0, 50, 40))[0], np.abs(dn[1] / gains) ** 2, rtol=1e-4)
    with pytest.raises(ReadError, match="no VV channel"):
        open_polsar(single, polarisation="VV")


def test_rs2_product_without_lut_reads_uncalibrated_with_a_warning(tmp_path, product_dn):
    dn, _ = product_dn
    folder = _product(tmp_path / "nolut", dn, None)
    with pytest.warns(UserWarning, match="uncalibrated"):
        info = open_polsar(folder, polarisation="VV")
    assert info.metadata["calibration"].startswith("none")
    with info.reader() as reader:
        np.testing.assert_allclose(reader.read(Window(0, 0, 50, 40))[0], np.abs(dn[3]) ** 2, rtol=1e-5)


def test_rs2_product_errors(tmp_path, product_dn):
    dn, gains = product_dn
    with pytest.raises(ReadError, match="not a RADARSAT-2 product") as info:
        open_polsar(_product(tmp_path / "rcm", dn, gains, satellite="RCM-1", xmlns="rcmGsProductSchema"))
    assert "\n" not in str(info.value)
    with pytest.raises(ReadError, match="GDAL's RS2 driver does not calibrate"):
        open_polsar(_product(tmp_path / "ssg", dn, gains, product_type="SSG"))
    with pytest.raises(ReadError, match="missing HV, VH"):
        open_polsar(_product(tmp_path / "dual", dn, gains, pols=("HH", "VV")))


# ----------------------------------------------------------------------------------------- probe, open_raster


def test_probe_and_open_raster(tmp_path, quad, monkeypatch):
    folder, _ = quad
    plain = tmp_path / "sigma0_HH.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=8, height=8, count=1, dtype="float32") as dst:
        dst.write(np.ones((1, 8, 8), np.float32))
    assert probe_polsar(folder) and probe_polsar(folder / "rsat_HH.tif")
    assert not probe_polsar(plain) and not probe_polsar(tmp_path / "missing") and not probe_polsar(folder / "notes.txt")
    assert FORMATS[0] is FORMAT
    read_module._product_format(tmp_path)  # load the built-in formats first
    formats = list(read_module._FORMATS)
    monkeypatch.setattr(read_module, "_FORMATS", formats)
    if not any(f.name == FORMAT.name for f in formats):
        read_module.register_format(FORMAT)
    info = read_module.open_raster(folder, options={"looks": 3})
    assert info.count == 9 and info.metadata["looks"] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        assert read_module.open_raster(plain).count == 1  # a plain intensity GeoTIFF is GDAL's


# ------------------------------------------------------------------------------------------------- real data


@pytest.mark.skipif(not all((REAL / f"rsat_{p}.tif").is_file() for p in POLS), reason="shared real data absent")
def test_real_radarsat_extract():
    info = open_polsar(REAL)  # the folder also holds Landsat, MODIS, QuickBird files: ignored
    assert info.count == 9 and info.grid.shape == (200, 200) and info.grid.crs is None
    assert info.metadata["polarisations"] == list(POLS) and info.metadata["enl"] > 2
    with info.reader() as reader:
        c3 = reader.read(Window(0, 0, 200, 200)).astype(np.float64)
        np.testing.assert_array_equal(reader.read(Window(150, 170, 50, 30)), c3[:, 170:200, 150:200].astype(np.float32))
    eig = np.linalg.eigvalsh(c3_to_matrices(c3))
    assert np.all(eig >= -1e-4 * eig.max(axis=-1, keepdims=True))
    # Cross-pol power about 12 dB below co-pol (data notes): C22 = 2 <|HV|^2>, so compare C22 / 2.
    ratio_db = 10 * np.log10((c3[5].mean() / 2) / (0.5 * (c3[0].mean() + c3[8].mean())))
    assert -16 < ratio_db < -8
    hh = open_polsar(REAL / "rsat_HH.tif", polarisation="HH")
    with rasterio.open(REAL / "rsat_HH.tif") as src:
        raw = src.read(window=Window(0, 0, 20, 20)).astype(np.float64)
    with hh.reader() as reader:
        np.testing.assert_allclose(reader.read(Window(0, 0, 20, 20))[0], raw[0] ** 2 + raw[1] ** 2, rtol=1e-5)
    assert open_polsar(REAL / "rsat_VV.tif").count == 9  # one file with its three siblings: quad-pol
