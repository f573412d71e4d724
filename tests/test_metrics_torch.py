"""Torch backend of the quality indices: agreement with the numpy backend, batching, dtypes, gradients."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spatialx.metrics import full as full_np  # noqa: E402
from spatialx.metrics import reduced as reduced_np  # noqa: E402
from spatialx.metrics import torch_backend as tm  # noqa: E402

RR_KEYS = {"Q2n": "Q2n", "Q_avg": "Q", "SAM": "SAM", "ERGAS": "ERGAS", "SCC": "SCC"}  # metrics.json -> ours
MAX_VALUE = 2047.0

# (name, keyword arguments) of every reference-based index; same names in both backends
INDICES = [
    ("q2n", {}),
    ("q_index", {}),
    ("sam", {}),
    ("ergas", {"ratio": 4}),
    ("scc", {}),
    ("psnr", {"max_value": MAX_VALUE}),
    ("mpsnr", {"max_value": MAX_VALUE}),
    ("ssim", {"max_value": MAX_VALUE}),
    ("mssim", {"max_value": MAX_VALUE}),
    ("cc", {}),
    ("rmse", {}),
    ("mae", {}),
]


pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _rtol(name: str, dtype: torch.dtype) -> float:
    if dtype == torch.float32:
        return 1e-5
    return 1e-5 if name.lower() == "q2n" else 1e-6


# ------------------------------------------------------------------------------------------------ inputs
def _random_pair(bands: int, h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = rng.uniform(50.0, 1500.0, size=(bands, h, w)).round()
    return ref, ref + rng.normal(0.0, 40.0, size=ref.shape)


def _structured_pair(bands: int, h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ramps and ripples with flat blocks (flat Q windows, equal and different), a nodata corner (zero-norm
    pixels, zero-mean windows), negatives (uint16 saturation) and exact .5 values (uint16 rounding).

    Values are multiples of 0.5, so that the numpy backend's running sums are exact and its flat-window
    detection works (see ``test_q_index_flat_windows_exact``).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    ref = np.stack([200 + 3 * b * yy + 5 * xx + 40 * np.sin(xx / (3 + b)) for b in range(bands)]).round()
    ref[:, 5:45, 3:40] = 700.0
    ref[:, -12:, -15:] = 0.0
    fused = ref + (2 * rng.normal(0.0, 15.0, size=ref.shape)).round() / 2
    fused[:, 5:45, 3:40] = 700.0
    fused[0, 10:40, 5:35] = 650.0
    fused[:, -12:, -15:] = 0.0
    fused[:, :3, :] = -20.5
    fused[1 % bands, 50:, :10] = 1000.5
    return ref, fused


def _batch(kind: str, bands: int, h: int, w: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    make = _random_pair if kind == "random" else _structured_pair
    pairs = [make(bands, h, w, seed) for seed in (bands, bands + 100)]
    ref = torch.tensor(np.stack([p[0] for p in pairs]), dtype=dtype)
    fused = torch.tensor(np.stack([p[1] for p in pairs]), dtype=dtype)
    return ref, fused


def _numpy_per_item(name: str, ref: torch.Tensor, fused: torch.Tensor, **kw: float) -> np.ndarray:
    """The numpy backend on every batch item (float64 copies of exactly the values the torch backend sees)."""
    fn = getattr(reduced_np, name)
    r, f = ref.double().cpu().numpy(), fused.double().cpu().numpy()
    return np.array([fn(r[b], f[b], **kw) for b in range(r.shape[0])])


def _rel_err(ours: torch.Tensor, expected: np.ndarray) -> float:
    got = ours.detach().double().cpu().numpy()
    return float(np.max(np.abs(got - expected) / np.abs(expected)))


# ------------------------------------------------------------------------------------ numpy agreement
CASES = [  # (kind, bands, H, W): odd sizes; the last random one is smaller than the Q/Q2n blocks
    ("random", 3, 70, 53),
    ("random", 4, 70, 53),
    ("random", 8, 40, 67),
    ("random", 3, 10, 13),
    ("structured", 3, 70, 53),
    ("structured", 4, 70, 53),
    ("structured", 8, 66, 71),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("kind", "bands", "h", "w"), CASES, ids=lambda v: str(v))
def test_every_index_agrees_with_numpy(kind: str, bands: int, h: int, w: int, dtype: torch.dtype) -> None:
    ref, fused = _batch(kind, bands, h, w, dtype)
    for name, kw in INDICES:
        ours = getattr(tm, name)(ref, fused, **kw)
        assert ours.shape == (2,) and ours.dtype == dtype, name
        expected = _numpy_per_item(name, ref, fused, **kw)
        err = _rel_err(ours, expected)
        assert err <= _rtol(name, dtype), (name, err, ours, expected)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cut", [21, 0])
def test_reduced_indices_bundle_agrees_with_numpy(dtype: torch.dtype, cut: int) -> None:
    ref, fused = _batch("structured", 4, 70, 53, dtype)  # 70x53 > 2 * 21: cut to 29x12 (Q window 12)
    ours = tm.reduced_indices(ref, fused, ratio=4, max_value=MAX_VALUE, cut=cut)
    r, f = ref.double().numpy(), fused.double().numpy()
    expected = [reduced_np.reduced_indices(r[b], f[b], 4, MAX_VALUE, cut=cut) for b in range(2)]
    assert set(ours) == set(expected[0]) == {"Q2n", "Q", "SAM", "ERGAS", "SCC", "PSNR", "SSIM", "CC"}
    for key, value in ours.items():
        assert value.shape == (2,) and value.dtype == dtype
        err = _rel_err(value, np.array([e[key] for e in expected]))
        assert err <= _rtol(key, dtype), (key, err)


def test_cut_border_matches_numpy() -> None:
    x = torch.arange(2 * 3 * 70 * 53, dtype=torch.float64).reshape(2, 3, 70, 53)
    np.testing.assert_array_equal(tm.cut_border(x, 21).numpy(), reduced_np.cut_border(x.numpy(), 21))
    assert tm.cut_border(x, 21).shape == (2, 3, 29, 12)
    assert tm.cut_border(x, 0) is x
    with pytest.raises(ValueError):
        tm.cut_border(torch.zeros(3, 30, 30), 21)


def test_q_index_flat_windows_exact() -> None:
    """Constant window pairs take img_qi's flat branch exactly, whatever the values around them.

    Brute force over every window (two-pass moments, flatness from max == min). On non-integer data the numpy
    backend's running sums can leave a flat pair's denominator at ~1e-4 instead of 0 (a different value for
    those windows); the torch backend tests flatness exactly.
    """
    rng = np.random.default_rng(5)
    x = rng.uniform(100.0, 900.0, size=(1, 1, 24, 27))
    y = x + rng.normal(0.0, 30.0, size=x.shape)
    x[..., 4:16, 6:20] = 512.3  # flat in both, equal means
    y[..., 4:16, 6:20] = 512.3
    y[..., 4:14, 6:18] = 498.7  # flat in both, different means
    x[..., 16:, :12] = 0.0  # zero windows in both: Q = 1
    y[..., 16:, :12] = 0.0
    size = 8
    q = np.zeros((24 - size + 1, 27 - size + 1))
    for i in range(q.shape[0]):
        for j in range(q.shape[1]):
            a, b = x[0, 0, i : i + size, j : j + size], y[0, 0, i : i + size, j : j + size]
            ma, mb = a.mean(), b.mean()
            va, vb, cov = a.var(), b.var(), ((a - ma) * (b - mb)).mean()
            if np.ptp(a) == 0 and np.ptp(b) == 0:
                q[i, j] = 1.0 if ma == mb == 0 else 2 * ma * mb / (ma**2 + mb**2)
            else:
                q[i, j] = 4 * cov * ma * mb / ((va + vb) * (ma**2 + mb**2))
    ours = tm.q_index(torch.tensor(x), torch.tensor(y), block=size)
    assert ours.item() == pytest.approx(q.mean(), rel=1e-12)


# ------------------------------------------------------------------------------- shapes, devices, edges
def test_input_shapes_and_dtypes() -> None:
    ref, fused = _batch("random", 4, 40, 40, torch.float64)
    one = tm.sam(ref[0], fused[0])  # (C, H, W): one image
    assert one.shape == (1,) and one.item() == pytest.approx(tm.sam(ref, fused)[0].item(), rel=1e-15)
    assert tm.rmse(ref[0, 0], fused[0, 0]).shape == (1,)  # (H, W): one band
    mixed = tm.ergas(ref.float(), fused, 4)  # float32 with float64 -> float64
    assert mixed.dtype == torch.float64
    assert tm.mae(ref.round().to(torch.int32), ref.round().to(torch.int32)).dtype == torch.get_default_dtype()
    with pytest.raises(ValueError):
        tm.sam(ref, fused[:, :3])
    with pytest.raises(ValueError):
        tm.sam(ref[None], fused[None])


def test_identical_images() -> None:
    ref, _ = _batch("random", 4, 45, 50, torch.float64)
    out = tm.reduced_indices(ref, ref.clone(), 4, MAX_VALUE, cut=0)
    for key, value in {"Q2n": 1.0, "Q": 1.0, "SAM": 0.0, "ERGAS": 0.0, "SCC": 1.0, "SSIM": 1.0, "CC": 1.0}.items():
        torch.testing.assert_close(out[key], torch.full((2,), value, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.isinf(out["PSNR"]).all()


def test_zero_norm_pixels_and_constant_band() -> None:
    ref = torch.zeros(1, 2, 1, 3, dtype=torch.float64)
    ref[:, 0] = 1.0
    fused = ref.clone()
    fused[:, 1, 0, 0] = 1.0  # 45 degrees at pixel 0
    fused[:, :, 0, 2] = 0.0  # zero-norm pixel: excluded
    assert tm.sam(ref, fused).item() == pytest.approx(22.5, rel=1e-12)
    assert tm.sam(torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)).tolist() == [0.0, 0.0]
    assert torch.isnan(tm.cc(ref, fused)).all()  # band 0 of ref is constant: undefined, as in numpy


# -------------------------------------------------------------------------------------------- gradients
def _tiny(seed: int, shape: tuple[int, ...] = (2, 3, 12, 13)) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ref = torch.rand(shape, generator=gen, dtype=torch.float64) * 100 + 10
    fused = (ref + torch.randn(shape, generator=gen, dtype=torch.float64) * 5).requires_grad_(True)
    return ref, fused


def test_gradcheck_ssim_and_sam() -> None:
    ref, fused = _tiny(0, (2, 2, 12, 13))  # SSIM: 11x11 window, 2x3 valid positions
    assert torch.autograd.gradcheck(lambda f: tm.ssim(ref, f, 255.0), (fused,))
    ref, fused = _tiny(1, (2, 3, 4, 5))
    ref[0, :, 0, 0] = 0.0  # a zero-norm pixel, excluded
    assert torch.autograd.gradcheck(lambda f: tm.sam(ref, f), (fused,))


def test_gradcheck_q_index_and_ergas() -> None:
    ref, fused = _tiny(2, (1, 2, 8, 9))
    assert torch.autograd.gradcheck(lambda f: tm.q_index(ref, f, block=5), (fused,))
    assert torch.autograd.gradcheck(lambda f: tm.ergas(ref, f, 4), (fused,))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_gradients_flow(dtype: torch.dtype) -> None:
    ref, fused = _batch("random", 4, 48, 40, dtype)
    for name, kw in INDICES:
        if name == "q2n":
            continue  # rounds to uint16 values: gradient 0 by construction
        f = fused.clone().requires_grad_(True)
        getattr(tm, name)(ref, f, **kw).sum().backward()
        assert torch.isfinite(f.grad).all(), name
        assert f.grad.abs().sum() > 0, name


def test_gradients_finite_at_identical_images() -> None:
    """Non-smooth points (identical spectra, zero error) give a finite subgradient, not NaN."""
    ref, _ = _batch("random", 3, 40, 40, torch.float64)
    for name in ("sam", "ergas", "rmse", "scc", "psnr", "ssim", "q_index", "cc"):
        f = ref.clone().requires_grad_(True)
        kw = {"ratio": 4} if name == "ergas" else {"max_value": MAX_VALUE} if name in ("psnr", "ssim") else {}
        getattr(tm, name)(ref, f, **kw).sum().backward()
        assert torch.isfinite(f.grad).all(), name


# ------------------------------------------------------------------------------------- full resolution
def test_full_resolution_agrees_with_numpy() -> None:
    """D_lambda / D_s / QNR with partial blockproc tiles (70x53 is not a multiple of 32); one ``ms_up`` and
    one PAN broadcast over the batch."""
    rng = np.random.default_rng(11)
    ms_up = rng.uniform(100, 1500, size=(4, 70, 53))
    pan = ms_up.mean(axis=0) + rng.normal(0, 20, size=(70, 53))
    pan_lp = pan + rng.normal(0, 10, size=pan.shape)  # any low-passed PAN: only the formula is checked here
    fused = np.stack([ms_up + rng.normal(0, s, size=ms_up.shape) for s in (20.0, 60.0)])
    t = {
        k: torch.tensor(v, requires_grad=(k == "fused"))
        for k, v in {"fused": fused, "ms_up": ms_up, "pan": pan, "pan_lp": pan_lp}.items()
    }
    dl = tm.d_lambda(t["fused"], t["ms_up"])
    ds = tm.d_s(t["fused"], t["ms_up"], t["pan"], t["pan_lp"])
    qnr = tm.qnr(t["fused"], t["ms_up"], t["pan"], t["pan_lp"], p=2, q=2, alpha=1, beta=2)
    for b in range(2):
        assert dl[b].item() == pytest.approx(full_np.d_lambda(fused[b], ms_up), rel=1e-10)
        # the numpy D_s rebuilds pan_lp itself: compare the formula with the same pan_lp directly
        q_high = [full_np._blockwise_q(fused[b, k], pan, 32) for k in range(4)]
        q_low = [full_np._blockwise_q(ms_up[k], pan_lp, 32) for k in range(4)]
        assert ds[b].item() == pytest.approx(np.mean(np.abs(np.subtract(q_high, q_low))), rel=1e-10)
    assert qnr.shape == (2,)
    qnr.sum().backward()
    assert torch.isfinite(t["fused"].grad).all() and t["fused"].grad.abs().sum() > 0


# ------------------------------------------------------------------------------------ toolbox reference
@pytest.fixture(scope="module")
def toolbox(toolbox_qb: dict) -> dict:
    """Two of the toolbox's methods stacked as one batch."""
    methods = ["GSA", "MTF-GLP"]
    return {**toolbox_qb, "methods": methods, "fused": np.stack([toolbox_qb["fused"][m] for m in methods])}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_toolbox_reduced_resolution(toolbox: dict, dtype: torch.dtype) -> None:
    """Two methods in one batch: the torch bundle against the toolbox's numbers and the numpy backend."""
    gt, fused = toolbox["gt"], toolbox["fused"]
    ours = tm.reduced_indices(
        torch.tensor(np.stack([gt, gt]), dtype=dtype),
        torch.tensor(fused, dtype=dtype),
        ratio=4,
        max_value=MAX_VALUE,
        cut=21,
    )
    for b, method in enumerate(toolbox["methods"]):
        for key, value in toolbox["metrics"]["RR"][method].items():
            ours_value = ours[RR_KEYS[key]][b].item()
            assert ours_value == pytest.approx(value, rel=_rtol(key, dtype)), (method, key)
        if dtype == torch.float64:
            expected = reduced_np.reduced_indices(gt, fused[b], 4, MAX_VALUE, cut=21)
            for key, value in expected.items():
                assert ours[key][b].item() == pytest.approx(value, rel=_rtol(key, dtype)), (method, key)


def test_toolbox_full_resolution(toolbox: dict) -> None:
    """D_lambda, D_s, QNR with the toolbox's I_MS and PAN low-passed as the numpy backend does."""
    pan = toolbox["pan"]
    pan_lp = full_np._degraded_pan(pan, 4)
    args = [torch.tensor(a) for a in (toolbox["fused"], toolbox["ms_up"], pan, pan_lp)]
    ours = {"D_lambda": tm.d_lambda(*args[:2]), "D_s": tm.d_s(*args), "QNR": tm.qnr(*args)}
    for b, method in enumerate(toolbox["methods"]):
        for key in ("D_lambda", "D_s", "QNR"):
            expected = toolbox["metrics"]["FR"][method][key]
            assert ours[key][b].item() == pytest.approx(expected, rel=1e-6), (method, key)


# ------------------------------------------------------------------------------------- packaging, CUDA
def test_metrics_package_does_not_import_torch() -> None:
    code = (
        "import sys, spatialx.metrics\n"
        "assert 'torch' not in sys.modules, 'spatialx.metrics imported torch'\n"
        "assert 'spatialx.metrics.torch_backend' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_cuda_matches_cpu(dtype: torch.dtype) -> None:
    ref, fused = _batch("structured", 8, 70, 66, dtype)
    cpu = tm.reduced_indices(ref, fused, 4, MAX_VALUE)
    gpu = tm.reduced_indices(ref.cuda(), fused.cuda(), 4, MAX_VALUE)
    for key, value in gpu.items():
        assert value.device.type == "cuda" and value.dtype == dtype
        assert _rel_err(value, cpu[key].double().numpy()) <= _rtol(key, dtype), key
    f = fused.cuda().requires_grad_(True)
    (tm.ssim(ref.cuda(), f, MAX_VALUE).sum() + tm.sam(ref.cuda(), f).sum()).backward()
    assert torch.isfinite(f.grad).all()
    dl = tm.d_lambda(fused.cuda(), ref.cuda())
    assert dl.device.type == "cuda" and torch.isfinite(dl).all()
