"""PolSAR array math (PSD projection, Cloude-Pottier, ENL, errors), the Pauli and H/A/alpha side products, and the
guided-filter core of the classical PolSAR fusion."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from scenes import write_tif

from spatialx.errors import OutputError, ReadError
from spatialx.methods.classical.polsar_core import guided_c3, guided_filter, halo, project
from spatialx.metrics.polsar import (
    c3_to_matrices,
    c3_to_t3,
    channel_errors,
    cloude_pottier,
    enl,
    is_psd,
    matrices_to_c3,
    pauli_components,
    psd_project,
    span,
    span_psnr,
)
from spatialx.products.polsar import write_decomposition, write_pauli

AFFINE = rasterio.Affine(8.0, 0, 500000, 0, -8.0, 4800000)
U = np.array([[1.0, 0.0, 1.0], [1.0, 0.0, -1.0], [0.0, np.sqrt(2.0), 0.0]]) / np.sqrt(2.0)


def multilook_c3(shape, looks=4, seed=0, scale=None):
    """A PSD C3 image: the average of ``looks`` outer products of complex Gaussian scattering vectors."""
    rng = np.random.default_rng(seed)
    k = rng.normal(size=(3, looks, *shape)) + 1j * rng.normal(size=(3, looks, *shape))
    if scale is not None:
        k = k * np.sqrt(scale)
    m = np.einsum("ilhw,jlhw->hwij", k, k.conj()) / looks
    return matrices_to_c3(m)


def c3_from_t3(t3: np.ndarray, shape=(1, 1)) -> np.ndarray:
    c = U.T @ np.asarray(t3, dtype=complex) @ U  # C3 = U^H T3 U
    return matrices_to_c3(np.broadcast_to(c, (*shape, 3, 3)))


def random_hermitian(n, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 1, 3, 3)) + 1j * rng.normal(size=(n, 1, 3, 3))
    return matrices_to_c3(a + np.conj(np.swapaxes(a, -1, -2)))


# --- matrices, span, PSD ------------------------------------------------------------------------------------------

def test_c3_matrices_round_trip():
    c3 = multilook_c3((5, 7))
    m = c3_to_matrices(c3)
    assert np.allclose(m, np.conj(np.swapaxes(m, -1, -2)))
    assert np.array_equal(matrices_to_c3(m), c3)
    assert np.allclose(span(c3), np.trace(m, axis1=-2, axis2=-1).real)


def test_pauli_components_match_the_coherency_diagonal():
    c3 = multilook_c3((4, 4), seed=3)
    t = c3_to_t3(c3)
    diag = np.moveaxis(np.diagonal(t, axis1=-2, axis2=-1).real, -1, 0)
    assert np.allclose(pauli_components(c3), diag)
    assert np.allclose(span(c3), diag.sum(axis=0))


@pytest.mark.parametrize("keep_span", [True, False])
def test_psd_project_gives_psd_matrices(keep_span):
    c3 = random_hermitian(500, seed=1)
    assert not is_psd(c3).all()
    out = psd_project(c3, keep_span=keep_span)
    assert is_psd(out).all()
    w = np.linalg.eigvalsh(c3_to_matrices(out))
    assert w.min() >= -1e-9 * np.abs(w).max()
    if keep_span:
        positive = span(c3) > 0
        assert np.allclose(span(out)[positive], span(c3)[positive])


def test_fast_positive_definite_screen_agrees_with_eigenvalues():
    from spatialx.metrics.polsar import _clearly_pd

    rng = np.random.default_rng(1)
    a = rng.normal(size=(4000, 1, 3, 3)) + 1j * rng.normal(size=(4000, 1, 3, 3))
    m = a @ np.conj(np.swapaxes(a, -1, -2)) - np.eye(3) * rng.random((4000, 1, 1, 1))
    fast = _clearly_pd(matrices_to_c3(m), np.ones((4000, 1), dtype=bool))
    w = np.linalg.eigvalsh(m)
    assert 0.2 < fast.mean() < 0.9
    assert (w[..., 0][fast] > 0).all()
    assert fast[w[..., 0] > 1e-3 * w.sum(axis=-1)].all()


def test_psd_project_leaves_psd_pixels_bit_for_bit():
    c3 = multilook_c3((16, 16), looks=1).astype(np.float32)  # rank one: eigenvalues 0 up to rounding
    mixed = c3.copy()
    mixed[:, 0, 0] = random_hermitian(1, seed=5)[:, 0, 0]
    mixed[:, 0, 1] = np.nan
    out = psd_project(mixed)
    assert out.dtype == np.float32
    untouched = np.ones((16, 16), dtype=bool)
    untouched[0, 0] = False
    assert np.array_equal(out[:, untouched], mixed[:, untouched], equal_nan=True)
    assert not np.array_equal(out[:, 0, 0], mixed[:, 0, 0])


def test_psd_project_is_the_nearest_psd_matrix():
    # diag(3, -1, 0) in a rotated basis: the nearest PSD matrix is the rotated diag(3, 0, 0) (the 2x2 case
    # [[3, 0], [0, -1]] embedded); keeping the trace (2) it is diag(2, 0, 0) (eigenvalues shifted by 1, clipped).
    rng = np.random.default_rng(7)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)) + 1j * rng.normal(size=(3, 3)))
    m = q @ np.diag([3.0, -1.0, 0.0]) @ q.conj().T
    c3 = matrices_to_c3(m[None, None])
    near = c3_to_matrices(psd_project(c3, keep_span=False))[0, 0]
    assert np.allclose(near, q @ np.diag([3.0, 0.0, 0.0]) @ q.conj().T)
    same_trace = c3_to_matrices(psd_project(c3, keep_span=True))[0, 0]
    assert np.allclose(same_trace, q @ np.diag([2.0, 0.0, 0.0]) @ q.conj().T)
    # No random PSD matrix (of the same trace, for the second) is nearer.
    for _ in range(200):
        b = rng.normal(size=(3, 3)) + 1j * rng.normal(size=(3, 3))
        p = b @ b.conj().T
        assert np.linalg.norm(p - m) >= np.linalg.norm(near - m) - 1e-12
        p = p * (2.0 / np.trace(p).real)
        assert np.linalg.norm(p - m) >= np.linalg.norm(same_trace - m) - 1e-12


# --- Cloude-Pottier -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("t3", "entropy", "alpha"), [
    (np.diag([1.0, 0.0, 0.0]), 0.0, 0.0),  # surface (odd bounce)
    (np.diag([0.0, 1.0, 0.0]), 0.0, 90.0),  # dihedral (double bounce)
    (np.diag([0.0, 0.0, 1.0]), 0.0, 90.0),  # oriented dipole / HV only
    (np.eye(3), 1.0, 60.0),  # fully random
])
def test_cloude_pottier_known_cases(t3, entropy, alpha):
    h, a, al = cloude_pottier(c3_from_t3(t3 * 2.5, shape=(2, 3)))
    assert np.allclose(h, entropy, atol=1e-6)
    assert np.allclose(al, alpha, atol=1e-5)
    assert np.allclose(a, 0.0, atol=1e-6)


def test_cloude_pottier_anisotropy_and_edge_cases():
    h, a, al = cloude_pottier(c3_from_t3(np.diag([2.0, 1.0, 0.0])))
    p = np.array([2.0, 1.0]) / 3
    assert h[0, 0] == pytest.approx(-(p * np.log(p) / np.log(3)).sum())
    assert a[0, 0] == pytest.approx(1.0)
    assert al[0, 0] == pytest.approx(90 / 3)
    zero = np.zeros((9, 1, 2))
    zero[:, 0, 1] = np.nan
    for values in cloude_pottier(zero):
        assert np.isnan(values).all()
    h, a, al = cloude_pottier(multilook_c3((8, 8)))
    assert ((h >= 0) & (h <= 1)).all() and ((a >= 0) & (a <= 1)).all() and ((al >= 0) & (al <= 90)).all()


# --- ENL, errors --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("looks", [1, 4, 16])
def test_enl_of_gamma_speckle(looks):
    rng = np.random.default_rng(looks)
    texture = np.where(np.arange(256)[None, :] < 128, 1.0, 20.0) * np.ones((256, 1))  # two flat fields
    intensity = texture * rng.gamma(looks, 1.0 / looks, size=(256, 256))
    assert enl(intensity) == pytest.approx(looks, rel=0.1)


def test_channel_errors_and_span_psnr():
    ref = multilook_c3((8, 8))
    pred = ref.copy()
    pred[5] += 0.5
    pred[:, 0, 0] = np.nan  # left out
    errors = channel_errors(ref, pred)
    assert errors["mae"]["C22"] == pytest.approx(0.5) and errors["rmse"]["C22"] == pytest.approx(0.5)
    assert errors["mae"]["C11"] == 0.0
    assert errors["mae_all"] == pytest.approx(0.5 / 9) and errors["rmse_all"] == pytest.approx(np.sqrt(0.25 / 9))
    s = span(ref)
    s[0, 0] = np.nan
    assert span_psnr(ref, pred) == pytest.approx(10 * np.log10(np.nanmax(s) ** 2 / 0.25))
    assert span_psnr(ref, ref) == np.inf


# --- side products ------------------------------------------------------------------------------------------------

@pytest.fixture
def c3_tif(tmp_path):
    c3 = multilook_c3((48, 40), seed=2).astype(np.float32)
    c3[:, 0, 0] = np.nan
    return write_tif(tmp_path / "c3.tif", c3, AFFINE, "EPSG:32610", nodata=np.nan), c3


def test_pauli_product(tmp_path, c3_tif):
    src, c3 = c3_tif
    out = write_pauli(src, tmp_path / "pauli.tif")
    with rasterio.open(out) as ds:
        assert ds.count == 3 and ds.dtypes[0] == "uint8" and ds.nodata == 0
        assert ds.crs.to_epsg() == 32610 and ds.transform == AFFINE
        assert ds.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        rgb = ds.read()
    assert (rgb[:, 0, 0] == 0).all() and (rgb[:, 1:, 1:] >= 1).all()
    # The stretch runs 2..98 %: a few percent of each channel saturate at each end, the rest lie between.
    for band in rgb:
        values = band[band > 0]
        assert 0.005 < (values == 1).mean() < 0.06 and 0.005 < (values == 255).mean() < 0.06
    # Brighter double bounce -> redder: the red channel follows T22's order.
    t22 = pauli_components(np.nan_to_num(c3))[1]
    assert np.corrcoef(rgb[0][1:, 1:].ravel(), np.log(t22[1:, 1:]).ravel())[0, 1] > 0.95
    assert "multibandcolor" in (tmp_path / "pauli.qml").read_text()
    with pytest.raises(OutputError):
        write_pauli(src, out)
    write_pauli(src, out, overwrite=True)


def test_decomposition_product(tmp_path, c3_tif):
    src, c3 = c3_tif
    out = write_decomposition(src, tmp_path / "haa.tif")
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("entropy", "anisotropy", "alpha")
        assert ds.dtypes[0] == "float32" and np.isnan(ds.nodata)
        assert ds.crs.to_epsg() == 32610 and ds.transform == AFFINE
        data = ds.read()
    assert np.isnan(data[:, 0, 0]).all()
    expected = np.stack(cloude_pottier(c3.astype(np.float64)))
    assert np.allclose(data[:, 1:, 1:], expected[:, 1:, 1:], atol=1e-5)
    assert (tmp_path / "haa.qml").exists()
    with pytest.raises(OutputError):
        write_decomposition(src, out)


def test_products_refuse_a_non_c3_raster(tmp_path):
    src = write_tif(tmp_path / "four.tif", np.ones((4, 8, 8), dtype=np.float32), AFFINE, "EPSG:32610")
    for writer in (write_pauli, write_decomposition):
        with pytest.raises(ReadError, match="9 bands") as info:
            writer(src, tmp_path / "x.tif")
        assert "four.tif" in str(info.value) and "\n" not in str(info.value)
        assert not (tmp_path / "x.tif").exists()


# --- guided filter core -------------------------------------------------------------------------------------------

def scene(shape=(96, 80), seed=0):
    """A two-field C3 (a dark surface field and a bright volume field) on a blocky 2x LR grid, and a speckled HR
    guide following the true edge."""
    rng = np.random.default_rng(seed)
    cols = np.arange(shape[1])[None, :] * np.ones((shape[0], 1))
    bright = cols >= shape[1] // 2 + 1  # the true edge, between LR pixels' halves
    hr = np.where(bright, 1.0, 0.0)
    surface = c3_from_t3(np.diag([1.0, 0.1, 0.05]))[:, 0, 0]
    volume = c3_from_t3(np.diag([1.0, 1.0, 1.0]) * 10)[:, 0, 0]
    truth = surface[:, None, None] * (1 - hr) + volume[:, None, None] * hr
    up = truth.reshape(9, shape[0] // 2, 2, shape[1] // 2, 2).mean(axis=(2, 4)).repeat(2, axis=1).repeat(2, axis=2)
    up = up + multilook_c3(shape, looks=8, seed=seed) * 0.05
    guide = span(truth) / 3 * rng.gamma(8, 1 / 8, size=shape)
    return up, guide


def test_guided_c3_is_tile_invariant():
    c3, guide = scene()
    radius = 3
    whole = guided_c3(c3, guide, radius=radius)
    h = halo(radius)
    assert h == 2 * radius
    top, left, height, width = 20, 13, 40, 50
    tile = guided_c3(c3[:, top:top + height, left:left + width], guide[top:top + height, left:left + width],
                     radius=radius)
    assert np.allclose(tile[:, h:-h, h:-h], whole[:, top + h:top + height - h, left + h:left + width - h],
                       rtol=1e-10, atol=1e-12)
    # Less context is not enough.
    short = guided_c3(c3[:, top + 1:top + height, left:left + width], guide[top + 1:top + height, left:left + width],
                      radius=radius)
    assert not np.allclose(short[:, h - 1, h:-h], whole[:, top + h, left + h:left + width - h],
                           rtol=1e-10, atol=1e-12)


def test_guided_c3_output_is_psd_and_keeps_the_filtered_span():
    c3, guide = scene(seed=4)
    out = guided_c3(c3, guide, radius=2, eps=0.5)
    assert is_psd(out).all()
    valid = np.ones(guide.shape, dtype=bool)
    expected = 10 ** (guided_filter(10 * np.log10(span(c3)), 10 * np.log10(guide), radius=2, eps=0.5,
                                    valid=valid) / 10)
    assert np.allclose(span(out), expected, rtol=1e-9)


def test_guided_c3_keeps_a_constant_image_and_sharpens_an_edge():
    const = np.broadcast_to(multilook_c3((1, 1), seed=9), (9, 32, 32)).copy()
    guide = np.random.default_rng(0).gamma(2, 1, size=(32, 32))
    assert np.allclose(guided_c3(const, guide), const, rtol=1e-9)
    c3, guide = scene(seed=1)
    out = guided_c3(c3, guide.astype(np.float32), radius=3)
    edge = c3.shape[2] // 2 + 1
    # Across the true edge the fused span steps up more sharply than the blocky upsampled one.
    step_in = np.median(span(c3)[:, edge] / span(c3)[:, edge - 1])
    step_out = np.median(span(out)[:, edge] / span(out)[:, edge - 1])
    assert step_out > step_in


def test_guided_c3_handles_invalid_pixels_and_dtypes():
    c3, guide = scene(seed=2)
    c3 = c3.astype(np.float32)
    c3[:, 5, 5] = np.nan
    guide[10, 10] = 0.0
    out = guided_c3(c3, guide)
    assert out.dtype == np.float32
    assert np.isnan(out[:, 5, 5]).all() and np.isfinite(np.delete(out.reshape(9, -1), 5 * 80 + 5, axis=1)).all()
    assert np.allclose(out[:, 10, 10], project(c3)[:, 10, 10])
    with pytest.raises(ValueError):
        guided_c3(c3[:4], guide)
