"""Refined Lee polarimetric speckle filter (spatialx.io.speckle) and its use by the quad-pol reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from spatialx.errors import ReadError
from spatialx.io.radarsat2 import boxcar_mean, c3_from_slc, open_polsar
from spatialx.io.speckle import directional_masks, halo, refined_lee, refined_lee_c3, subwindows
from spatialx.metrics.polsar import c3_to_matrices, is_psd

pytestmark = [pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
              pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")]

POLS = ("HH", "HV", "VH", "VV")
COV = np.array([[4.0, 0.3 + 0.2j, 1.5 - 0.5j], [0.3 - 0.2j, 0.5, 0.1j], [1.5 + 0.5j, -0.1j, 3.0]])


def _slc(shape, rng, cov=COV):
    """HH, HV, VH, VV single-look complex Gaussian speckle with covariance ``cov`` of k = [HH, HV, VV]."""
    n = shape[0] * shape[1]
    white = (rng.standard_normal((3, n)) + 1j * rng.standard_normal((3, n))) / np.sqrt(2)
    k = np.linalg.cholesky(cov) @ white
    noise = 0.05 * (rng.standard_normal(n) + 1j * rng.standard_normal(n))
    return np.stack([k[0], k[1], k[1] + noise, k[2]]).reshape(4, *shape)


def _brute(c3: np.ndarray, window: int, enl: float = 1.0) -> np.ndarray:
    """Per-pixel reference of the refined Lee filter, straight from the algorithm's steps."""
    r = window // 2
    size, step = subwindows(window)
    s = c3[0] + c3[5] + c3[8]
    padded = np.pad(c3, [(0, 0), (r, r), (r, r)], mode="symmetric")
    s_pad = np.pad(s, r, mode="symmetric")
    masks = directional_masks(window).astype(bool)
    out = np.empty_like(c3)
    lo, hi = -(size // 2), size // 2 + 1
    for i in range(c3.shape[1]):
        for j in range(c3.shape[2]):
            win = s_pad[i: i + window, j: j + window]
            m = np.array([[win[r + (a - 1) * step + lo: r + (a - 1) * step + hi,
                               r + (c - 1) * step + lo: r + (c - 1) * step + hi].mean() for c in range(3)]
                          for a in range(3)])
            grad = [m[:, 2].sum() - m[:, 0].sum(), m[2].sum() - m[0].sum(),
                    m[0, 1] + m[0, 2] + m[1, 2] - m[1, 0] - m[2, 0] - m[2, 1],
                    m[0, 0] + m[0, 1] + m[1, 0] - m[1, 2] - m[2, 1] - m[2, 2]]
            d = int(np.argmax(np.abs(grad)))
            first, second = [(m[1, 0], m[1, 2]), (m[0, 1], m[2, 1]), (m[0, 2], m[2, 0]), (m[0, 0], m[2, 2])][d]
            mask = masks[2 * d + int(abs(second - m[1, 1]) < abs(first - m[1, 1]))]
            values = win[mask]
            mean_s, var_s = values.mean(), values.var()
            var_x = (var_s - mean_s**2 / enl) / (1 + 1 / enl)
            b = np.clip(var_x / var_s, 0, 1) if var_s > 0 else 0.0
            mean_c = padded[:, i: i + window, j: j + window][:, mask].mean(axis=1)
            out[:, i, j] = mean_c + b * (c3[:, i, j] - mean_c)
    return out


# ------------------------------------------------------------------------------------------------ array filter


def test_geometry():
    assert [subwindows(w) for w in (3, 5, 7, 9, 11, 13, 15, 17)] == [(1, 1), (3, 1), (3, 2), (3, 3), (5, 3),
                                                                     (5, 4), (5, 5), (7, 5)]
    assert halo(7) == 3 and halo(5) == 2
    masks = directional_masks(7)
    assert masks.shape == (8, 7, 7) and np.all(masks.sum(axis=(1, 2)) == 28)
    assert np.all(masks[:, 3, 3] == 1)  # every window holds its centre
    for a, b in ((0, 1), (2, 3), (4, 5), (6, 7)):  # the two halves of a direction cover the window
        assert np.all(np.maximum(masks[a], masks[b]) == 1)
    for bad in (1, 4, 7.0, True):
        with pytest.raises(ValueError, match="odd"):
            halo(bad)


@pytest.mark.parametrize("window", [3, 5, 7, 9, 11])
def test_equals_a_per_pixel_reference(window):
    rng = np.random.default_rng(window)
    slc = _slc((19, 23), rng)
    slc[:, :, 12:] *= 3.0  # an edge
    c3 = c3_from_slc(*slc)
    np.testing.assert_allclose(refined_lee_c3(c3, window), _brute(c3, window), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(refined_lee_c3(c3, window, enl=4.0), _brute(c3, window, enl=4.0), rtol=1e-10,
                               atol=1e-12)


def test_homogeneous_speckle_is_unbiased_with_a_high_enl():
    rng = np.random.default_rng(11)
    c3 = c3_from_slc(*_slc((256, 256), rng))
    out = refined_lee_c3(c3, 7)
    r2 = np.sqrt(2.0)  # k_L = [HH, sqrt(2) HV, VV]
    truth = np.array([4.0, 0.3 * r2, 0.2 * r2, 1.5, -0.5, 2 * 0.5, 0.0, 0.1 * r2, 3.0])
    for i in (0, 5, 8):  # the powers within a few %
        assert abs(out[i].mean() / truth[i] - 1) < 0.03, (i, out[i].mean())
    scale = np.sqrt(truth[0] * truth[8])
    assert np.all(np.abs(out.mean(axis=(1, 2)) - truth) < 0.03 * scale)
    for i in (0, 5, 8):
        enl = out[i].mean() ** 2 / out[i].var()
        assert enl > 5, (i, enl)


def test_a_step_edge_is_not_blurred():
    rng = np.random.default_rng(12)
    height, width, half = 128, 64, 32
    slc = _slc((height, width), rng, cov=np.eye(3))
    slc[:, :, half:] *= np.sqrt(10.0)  # power 1 on the left, 10 on the right
    c3 = c3_from_slc(*slc)
    lee = refined_lee_c3(c3, 7)[0]
    box = boxcar_mean(c3[0:1], 7)[0]
    for col, level in ((half - 1, 1.0), (half - 2, 1.0), (half, 10.0), (half + 1, 10.0)):
        lee_error = abs(np.median(lee[:, col]) / level - 1)
        box_error = abs(np.median(box[:, col]) / level - 1)
        assert lee_error < 0.5 * box_error, (col, lee_error, box_error)
        assert lee_error < 0.35, (col, lee_error)


def test_output_is_hermitian_psd_everywhere():
    rng = np.random.default_rng(13)
    slc = _slc((64, 64), rng)
    slc[:, 20:40, 10:30] *= 5.0
    slc[:, :, 50:] = 0.0  # a dead stripe: var(s) = 0
    c3 = c3_from_slc(*slc)
    for window in (5, 7, 9):
        out = refined_lee_c3(c3, window)
        assert np.all(np.isfinite(out))
        assert np.all(is_psd(out))
        eig = np.linalg.eigvalsh(c3_to_matrices(out))
        trace = out[0] + out[5] + out[8]
        assert np.all(eig.min(axis=-1) >= -1e-12 * trace)
        assert np.all(is_psd(out.astype(np.float32)))


def test_constant_and_single_channel():
    flat = np.full((1, 20, 20), 2.5)
    np.testing.assert_allclose(refined_lee(flat, window=7), flat)
    rng = np.random.default_rng(14)
    intensity = rng.exponential(2.0, (1, 40, 40))
    out = refined_lee(intensity, window=5)
    assert out.shape == intensity.shape and np.all(out >= 0)
    # One channel driven by itself is the C3 filter's C11 when C22 = C33 = 0.
    c3 = np.zeros((9, 40, 40))
    c3[0] = intensity[0]
    np.testing.assert_allclose(refined_lee_c3(c3, 5)[0], out[0], rtol=1e-12)
    with pytest.raises(ValueError, match="enl"):
        refined_lee(intensity, enl=0)
    with pytest.raises(ValueError, match=r"\(9, H, W\)"):
        refined_lee_c3(intensity)


# ------------------------------------------------------------------------------------------------------ reader


def _write_set(folder: Path, slc: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": slc.shape[2], "height": slc.shape[1], "crs": "EPSG:32631",
               "transform": from_origin(500000.0, 4200000.0, 5.0, 5.0)}
    for i, pol in enumerate(POLS):
        if i % 2:
            with rasterio.open(folder / f"rsat_{pol}.tif", "w", count=1, dtype="complex64", **profile) as dst:
                dst.write(slc[i].astype(np.complex64)[None])
        else:
            with rasterio.open(folder / f"rsat_{pol}.tif", "w", count=2, dtype="float32", **profile) as dst:
                dst.write(np.stack([slc[i].real, slc[i].imag]).astype(np.float32))


@pytest.fixture(scope="module")
def quad(tmp_path_factory):
    rng = np.random.default_rng(15)
    slc = _slc((40, 52), rng)
    slc[:, :, 26:] *= 2.0
    folder = tmp_path_factory.mktemp("lee")
    _write_set(folder, slc)
    stored = slc.astype(np.complex64).astype(np.complex128)
    return folder, stored


@pytest.mark.parametrize("window", [5, 7])
def test_reader_windows_equal_the_whole_image_cropped(quad, window):
    folder, slc = quad
    info = open_polsar(folder, looks=window, speckle="refined-lee")
    reference = refined_lee_c3(c3_from_slc(*slc), window)
    with info.reader() as reader:
        whole = reader.read(Window(0, 0, 52, 40))
        np.testing.assert_allclose(whole, reference, rtol=2e-5, atol=1e-5)
        for win in (Window(0, 0, 9, 7), Window(13, 11, 17, 8), Window(40, 30, 12, 10), Window(25, 0, 3, 40),
                    Window(51, 39, 1, 1), Window(1, 1, 1, 1)):
            r, c, h, w = win.row_off, win.col_off, win.height, win.width
            np.testing.assert_array_equal(reader.read(win), whole[:, r: r + h, c: c + w])
        np.testing.assert_array_equal(reader.read(Window(13, 11, 17, 8), [9, 1]), whole[[8, 0], 11:19, 13:30])


def test_reader_metadata_defaults_and_intensity(quad):
    folder, slc = quad
    info = open_polsar(folder, speckle="refined-lee")
    md = info.metadata
    assert md["speckle"] == "refined-lee" and md["looks"] == 7 and md["representation"] == "C3"
    assert md["enl"] is not None and md["enl"] > 1
    with info.reader() as reader:
        out = reader.read(Window(0, 0, 52, 40))
    assert np.all(is_psd(out))
    assert open_polsar(folder).metadata["speckle"] == "boxcar"
    single = open_polsar(folder, polarisation="HH", speckle="refined-lee", looks=5)
    assert single.metadata["speckle"] == "refined-lee" and single.metadata["looks"] == 5
    with single.reader() as reader:
        np.testing.assert_allclose(reader.read(Window(3, 4, 20, 15))[0],
                                   refined_lee((np.abs(slc[0]) ** 2)[None], window=5)[0, 4:19, 3:23], rtol=2e-5,
                                   atol=1e-6)
    for bad in (1, 4):
        with pytest.raises(ReadError, match="refined Lee window"):
            open_polsar(folder, looks=bad, speckle="refined-lee")
