"""Degradation and interpolation filters against the MATLAB toolbox's own arrays and hand-derived cases."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from spatialx import filters

QB_GAINS = (0.34, 0.32, 0.30, 0.22)
RATIO = 4


# ------------------------------------------------------------------------------------------------------------
# reference data


@pytest.fixture(scope="module")
def qb_inputs(toolbox_qb_dir: Path) -> dict[str, np.ndarray]:
    """The toolbox's QuickBird arrays, turned channel-first like everything in spatialx."""
    with np.load(toolbox_qb_dir / "inputs.npz") as data:
        out = {name: data[name] for name in data.files}
    for name in ("gt", "ms_lr", "ms_up"):
        out[name] = np.ascontiguousarray(out[name].transpose(2, 0, 1))
    return out


@pytest.fixture(scope="module")
def qb_kernels(toolbox_qb_dir: Path) -> np.ndarray:
    with np.load(toolbox_qb_dir / "mtf_kernels.npz") as data:
        return np.ascontiguousarray(data["qb"].transpose(2, 0, 1))


def test_mtf_kernels_match_toolbox(qb_kernels: np.ndarray) -> None:
    assert qb_kernels.shape == (4, 41, 41)
    for band, gain in enumerate(QB_GAINS):
        kernel = filters.mtf_kernel(gain, RATIO)
        assert kernel.shape == (41, 41)
        # The reference went through float32 on its way to the .npz: measured max error 1.5e-9, i.e. rounding.
        np.testing.assert_allclose(kernel, qb_kernels[band], rtol=1e-6, atol=1e-8)
        assert np.abs(kernel.astype(np.float32) - qb_kernels[band]).max() < 1e-15


def test_degrade_ms_reproduces_ms_lr(qb_inputs: dict[str, np.ndarray]) -> None:
    gt, ms_lr = qb_inputs["gt"], qb_inputs["ms_lr"]
    lr = filters.degrade_ms(gt.astype(np.float64), QB_GAINS, RATIO)
    assert lr.shape == ms_lr.shape == (4, 120, 120)
    err = np.abs(lr - ms_lr)
    # Measured: 3.0e-5 DN max (half a float32 ulp at 512-1024 DN), 5.9e-8 relative.
    assert err.max() < 1e-4
    assert (err / np.abs(ms_lr)).max() < 1e-6
    # float32 in, float32 out, same numbers
    lr32 = filters.degrade_ms(gt, QB_GAINS, RATIO)
    assert lr32.dtype == np.float32
    assert np.abs(lr32 - ms_lr).max() < 1e-4


def test_interp23tap_reproduces_ms_up(qb_inputs: dict[str, np.ndarray]) -> None:
    ms_lr, ms_up = qb_inputs["ms_lr"], qb_inputs["ms_up"]
    up = filters.interp23tap(ms_lr.astype(np.float64), RATIO)
    assert up.shape == ms_up.shape == (4, 480, 480)
    err = np.abs(up - ms_up)
    # Measured: 6.4e-5 DN max, 1.3e-7 relative (the float32 rounding of ms_lr and ms_up).
    assert err.max() < 2e-4
    assert (err / np.abs(ms_up)).max() < 1e-6


# ------------------------------------------------------------------------------------------------------------
# MTF kernel and filter


def test_mtf_gaussian_sigma_formula() -> None:
    expected = math.sqrt((40 * 0.25 / 2) ** 2 / (-2 * math.log(0.34)))
    assert filters.mtf_gaussian_sigma(0.34, 4) == pytest.approx(expected, rel=1e-15)
    assert filters.mtf_gaussian_sigma(0.34, 4) == pytest.approx(3.403945459808088, rel=1e-12)
    # sigma is the width of the frequency response: a lower gain at Nyquist needs a narrower one (more blur)
    assert filters.mtf_gaussian_sigma(0.15, 4) < filters.mtf_gaussian_sigma(0.34, 4)


@pytest.mark.parametrize("gain", [0.34, 0.22, 0.15])
def test_mtf_kernel_properties(gain: float) -> None:
    kernel = filters.mtf_kernel(gain, RATIO)
    np.testing.assert_allclose(kernel, kernel.T, atol=1e-15)
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-15)
    assert np.unravel_index(np.argmax(kernel), kernel.shape) == (20, 20)
    # not renormalised: DC gain a little under 1, as in the toolbox
    assert 0.997 < kernel.sum() < 0.9995
    # the design goal: response close to the MTF gain at the MS Nyquist frequency (1 / (2 ratio) cycles/pixel)
    x = np.arange(41) - 20
    response = float((kernel * np.cos(2 * np.pi * x / (2 * RATIO))[np.newaxis, :]).sum())
    assert response == pytest.approx(gain, abs=0.03)
    # callers get their own copy
    kernel[20, 20] = 99.0
    assert filters.mtf_kernel(gain, RATIO)[20, 20] < 1.0


@pytest.mark.parametrize(
    ("gain", "ratio", "taps"),
    [(0.0, 4, 41), (1.0, 4, 41), (-0.2, 4, 41), (0.3, 0, 41), (0.3, 4, 40), (0.3, 4, 1)],
)
def test_mtf_kernel_rejects_bad_arguments(gain: float, ratio: float, taps: int) -> None:
    with pytest.raises(ValueError):
        filters.mtf_kernel(gain, ratio, taps)


def test_mtf_filter_matches_direct_replicate_correlation() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((2, 37, 50)) * 1000
    gains = (0.3, 0.22)
    out = filters.mtf_filter(image, gains, RATIO)
    for band, gain in enumerate(gains):
        direct = ndimage.correlate(image[band], filters.mtf_kernel(gain, RATIO), mode="nearest")
        np.testing.assert_allclose(out[band], direct, rtol=0, atol=1e-9)


def test_mtf_filter_shapes_dtypes_and_gains() -> None:
    rng = np.random.default_rng(1)
    band = rng.random((30, 40)).astype(np.float32)
    out2d = filters.mtf_filter(band, 0.3, RATIO)
    assert out2d.shape == (30, 40)
    assert out2d.dtype == np.float32
    stacked = filters.mtf_filter(np.stack([band, band]), 0.3, RATIO)  # one gain for every band
    np.testing.assert_array_equal(stacked[0], out2d)
    np.testing.assert_array_equal(stacked[1], out2d)
    assert filters.mtf_filter(np.ones((3, 8, 8), dtype=np.uint16), [0.3, 0.3, 0.3], RATIO).dtype == np.float64
    # a constant image comes back scaled by the kernel's DC gain (replicate borders: no edge darkening)
    const = filters.mtf_filter(np.full((12, 12), 100.0), 0.3, RATIO)
    np.testing.assert_allclose(const, 100.0 * filters.mtf_kernel(0.3, RATIO).sum(), rtol=1e-12)
    with pytest.raises(ValueError):
        filters.mtf_filter(np.zeros((3, 8, 8)), [0.3, 0.3], RATIO)
    with pytest.raises(ValueError):
        filters.mtf_filter(np.zeros(8), 0.3, RATIO)


def test_decimate_phase_and_validation() -> None:
    image = np.arange(2 * 12 * 12).reshape(2, 12, 12)
    out = filters.decimate(image, 4)
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out, image[:, 2::4, 2::4])
    np.testing.assert_array_equal(filters.decimate(image[0], 3), image[0, 1::3, 1::3])
    np.testing.assert_array_equal(filters.decimate(image, 1), image)
    assert filters.decimate(image, 4.0).shape == (2, 3, 3)
    for bad in (0, -2, 2.5, "4"):
        with pytest.raises(ValueError):
            filters.decimate(image, bad)


def test_degrade_ms_shape() -> None:
    out = filters.degrade_ms(np.ones((3, 64, 48)), 0.3, 4)
    assert out.shape == (3, 16, 12)


# ------------------------------------------------------------------------------------------------------------
# 23-tap interpolator


def _lagrange_midpoint_side_taps(half_points: int) -> list[float]:
    """Half the weights of 2n-point Lagrange interpolation at the midpoint, for distances 1, 3, ..., 2n-1."""
    nodes = [Fraction(2 * k - 1, 2) for k in range(-half_points + 1, half_points + 1)]
    weights = []
    for j, xj in enumerate(nodes):
        w = Fraction(1)
        for m, xm in enumerate(nodes):
            if m != j:
                w *= (0 - xm) / (xj - xm)
        weights.append(float(w) / 2)
    return weights[half_points:]


def test_interp23tap_kernel_is_the_lagrange_half_band_filter() -> None:
    half_band = filters.interp23tap_kernel(scaled=False)
    assert half_band.shape == (23,)
    np.testing.assert_array_equal(half_band, half_band[::-1])
    assert half_band[11] == 0.5
    np.testing.assert_array_equal(half_band[13::2], 0.0)  # even distances vanish: a half-band filter
    np.testing.assert_allclose(half_band[12::2], _lagrange_midpoint_side_taps(6), rtol=0, atol=1e-9)
    assert half_band.sum() == pytest.approx(1.0, abs=1e-9)
    scaled = filters.interp23tap_kernel()
    np.testing.assert_array_equal(scaled, 2 * half_band)
    assert scaled[11] == 1.0


def _interp23tap_brute_force(image: np.ndarray, ratio: int) -> np.ndarray:
    """The toolbox's algorithm spelled out: zero insertion, then full 23-tap circular correlation per axis."""
    kernel = filters.interp23tap_kernel()
    x = image.astype(np.float64)
    for stage in range(int(math.log2(ratio))):
        c, h, w = x.shape
        z = np.zeros((c, 2 * h, 2 * w))
        if stage == 0:
            z[:, 1::2, 1::2] = x
        else:
            z[:, 0::2, 0::2] = x
        for axis in (1, 2):
            acc = np.zeros_like(z)
            for j, coeff in enumerate(kernel):
                acc += coeff * np.roll(z, 11 - j, axis=axis)  # acc[i] += k[j] * z[i + j - 11]
            z = acc
        x = z
    return x


@pytest.mark.parametrize(
    ("shape", "ratio"), [((2, 5, 7), 2), ((1, 3, 4), 4), ((3, 16, 12), 4), ((1, 9, 9), 8)]
)
def test_interp23tap_matches_brute_force(shape: tuple[int, int, int], ratio: int) -> None:
    image = np.random.default_rng(2).random(shape)
    np.testing.assert_allclose(
        filters.interp23tap(image, ratio), _interp23tap_brute_force(image, ratio), rtol=0, atol=1e-13
    )


@pytest.mark.parametrize("ratio", [2, 4, 8])
def test_interp23tap_keeps_samples_on_the_decimation_grid(ratio: int) -> None:
    # The toolbox's phases put original sample j at ratio * j + ratio // 2: exactly where decimate() samples.
    image = np.random.default_rng(3).random((2, 6, 5))
    up = filters.interp23tap(image, ratio)
    assert up.shape == (2, 6 * ratio, 5 * ratio)
    np.testing.assert_array_equal(filters.decimate(up, ratio), image)


def test_interp23tap_shapes_dtypes_and_errors() -> None:
    band = np.full((5, 6), 7.0, dtype=np.float32)
    up = filters.interp23tap(band, 4)
    assert up.shape == (20, 24)
    assert up.dtype == np.float32
    np.testing.assert_allclose(up, 7.0, rtol=1e-6)  # constants survive (weights sum to 1)
    np.testing.assert_array_equal(filters.interp23tap(band, 1), band)
    for bad in (3, 6, 0, -4, 2.5):
        with pytest.raises(ValueError):
            filters.interp23tap(band, bad)


# ------------------------------------------------------------------------------------------------------------
# MATLAB imresize (bicubic)

# Keys cubic (a = -0.5) at the distances that occur below, worked out by hand
K025, K075, K125, K175 = 0.8671875, 0.2265625, -0.0703125, -0.0234375


def test_imresize_upscale_hand_derived() -> None:
    # imresize([1 2 3 4], 2): output 1 maps to u = 0.75 (1-based); taps at indices -1, 0, 1, 2 are mirrored to
    # 2, 1, 1, 2, so out(1) = (K175 + K125) * 2 + (K075 + K025) * 1 = 0.90625.
    out = filters.imresize_bicubic(np.array([[1.0, 2.0, 3.0, 4.0]]), 2)
    assert out.shape == (2, 8)
    expected = [0.90625, 1.1796875, 1.7265625, 2.25, 2.75, 3.2734375, 3.8203125, 4.09375]
    np.testing.assert_allclose(out[0], expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(out[1], expected, rtol=0, atol=1e-15)
    assert out[0, 0] == pytest.approx((K175 + K125) * 2 + (K075 + K025) * 1, abs=1e-15)


def test_imresize_antialiased_shrink_hand_derived() -> None:
    # scale 0.5: kernel 0.5 * cubic(0.5 d), 8 taps wide; output 1 centres on u = 1.5 (1-based), taps at
    # d = +-0.5, +-1.5, +-2.5, +-3.5 weigh w0..w3 = K025/2, K075/2, K125/2, K175/2; indices 0, -1, -2
    # mirror to 1, 2, 3.
    w0, w1, w2, w3 = K025 / 2, K075 / 2, K125 / 2, K175 / 2
    weights = np.array([w0 + w1, w0 + w2, w1 + w3, w2, w3, 0, 0, 0])
    assert weights.sum() == pytest.approx(1.0, abs=1e-15)
    v = np.random.default_rng(4).random(8)
    out = filters.imresize_bicubic(np.tile(v, (2, 1)), 0.5)
    assert out.shape == (1, 4)
    assert out[0, 0] == pytest.approx(float(weights @ v), abs=1e-14)
    # output 2 centres on 0-based 2.5: taps at -1..6, and index -1 (weight w3) mirrors onto index 0
    interior = np.array([w2 + w3, w1, w0, w0, w1, w2, w3, 0])
    assert out[0, 1] == pytest.approx(float(interior @ v), abs=1e-14)


@pytest.mark.parametrize("scale", [0.25, 0.3, 0.5, 1.0, 1.5, 2.0, 4.0])
def test_imresize_preserves_constants_and_sizes(scale: float) -> None:
    image = np.full((3, 17, 22), 123.25)
    out = filters.imresize_bicubic(image, scale)
    assert out.shape == (3, math.ceil(scale * 17), math.ceil(scale * 22))
    np.testing.assert_allclose(out, 123.25, rtol=1e-13)


def test_imresize_reproduces_ramps_in_the_interior() -> None:
    # cubic convolution reproduces linear functions; output k (0-based) samples the input at 4k + 1.5
    ramp = np.tile(np.arange(64, dtype=np.float64), (64, 1))
    out = filters.imresize_bicubic(ramp, 0.25)
    assert out.shape == (16, 16)
    np.testing.assert_allclose(out[:, 2:-2], np.tile(4 * np.arange(16) + 1.5, (16, 1))[:, 2:-2], atol=1e-12)


def test_imresize_matches_torch_antialiased_bicubic_in_the_interior() -> None:
    # PyTorch's antialiased bicubic also uses Keys a = -0.5 and MATLAB's pixel-centre mapping; it differs only
    # at the borders (it truncates the kernel instead of mirroring).
    torch = pytest.importorskip("torch")
    image = np.random.default_rng(5).random((2, 64, 80))
    for scale in (0.25, 0.5):
        ours = filters.imresize_bicubic(image, scale)
        theirs = torch.nn.functional.interpolate(
            torch.from_numpy(image)[None],
            scale_factor=scale,
            mode="bicubic",
            antialias=True,
            align_corners=False,
        )[0].numpy()
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours[:, 3:-3, 3:-3], theirs[:, 3:-3, 3:-3], rtol=0, atol=1e-12)


def test_imresize_without_antialiasing_samples_the_plain_cubic() -> None:
    # with 'Antialiasing' false, halving picks cubic interpolation at the half-pixel points
    v = np.random.default_rng(6).random(12)
    out = filters.imresize_bicubic(np.tile(v, (2, 1)), 0.5, antialiasing=False)
    # output 2 (0-based 1) centres on 0-based 2.5: taps at distances 0.5 (cubic 0.5625) and 1.5 (-0.0625)
    expected = -0.0625 * v[1] + 0.5625 * v[2] + 0.5625 * v[3] - 0.0625 * v[4]
    assert out.shape == (1, 6)
    assert out[0, 1] == pytest.approx(expected, abs=1e-14)


def test_imresize_dtypes_and_errors() -> None:
    assert filters.imresize_bicubic(np.ones((8, 8), dtype=np.float32), 0.5).dtype == np.float32
    assert filters.imresize_bicubic(np.ones((8, 8), dtype=np.uint16), 0.5).dtype == np.float64
    assert filters.imresize_bicubic(np.ones((8, 8)), 0.5).shape == (4, 4)
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            filters.imresize_bicubic(np.ones((8, 8)), bad)
    with pytest.raises(ValueError):
        filters.imresize_bicubic(np.ones(8), 0.5)
