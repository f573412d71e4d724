"""The selective scan: the chunked pure-PyTorch path against the sequential reference, forward and backward."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spatialx.models.scan import (
    linear_scan,
    mamba_selective_scan_fn,
    selective_scan,
    selective_scan_chunked,
    selective_scan_compiled,
    selective_scan_reference,
)
from spatialx.models.scan_cpu import available as compiled_available

needs_numba = pytest.mark.skipif(not compiled_available(), reason="numba is not importable")

GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")


def make_inputs(batch=2, dim=6, n_state=4, length=37, groups_b=0, groups_c=0, fixed_b=False, fixed_c=False,
                with_d=True, with_z=True, with_bias=True, with_h0=True, delta_scale=1.0, seed=0,
                dtype=torch.float64):
    """Random inputs in mamba's layout; ``groups_*`` 0 means (batch, N, L), G > 0 means (batch, G, N, L)."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    def bc(groups, fixed):
        if fixed:
            return rnd(dim, n_state)
        return rnd(batch, groups, n_state, length) if groups else rnd(batch, n_state, length)

    inputs = {
        "u": rnd(batch, dim, length),
        "delta": delta_scale * torch.rand(batch, dim, length, generator=gen, dtype=torch.float64),
        "A": -torch.exp(0.5 * rnd(dim, n_state)),
        "B": bc(groups_b, fixed_b),
        "C": bc(groups_c, fixed_c),
        "D": rnd(dim) if with_d else None,
        "z": rnd(batch, dim, length) if with_z else None,
        "delta_bias": 0.5 * rnd(dim) if with_bias else None,
        "initial_state": rnd(batch, dim, n_state) if with_h0 else None,
    }
    return {k: (None if v is None else v.to(dtype)) for k, v in inputs.items()}


def run(fn, inputs, softplus=True, last=True, seed=1, **kw):
    """Output, last state and the gradients of a fixed random weighting of both, for every given input."""
    leaves = {k: (None if v is None else v.detach().clone().requires_grad_()) for k, v in inputs.items()}
    result = fn(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], leaves["D"], leaves["z"],
                leaves["delta_bias"], softplus, last, leaves["initial_state"], **kw)
    out, state = result if last else (result, None)
    gen = torch.Generator().manual_seed(seed)
    loss = (out.double() * torch.randn(out.shape, generator=gen, dtype=torch.float64)).sum()
    if state is not None:
        loss = loss + (state.double() * torch.randn(state.shape, generator=gen, dtype=torch.float64)).sum()
    names = [k for k in GRAD_NAMES if leaves[k] is not None]
    grads = torch.autograd.grad(loss, [leaves[k] for k in names], allow_unused=True)
    return out.detach(), None if state is None else state.detach(), dict(zip(names, grads, strict=True))


def max_rel_err(got, want):
    got, want = got.double(), want.double()
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def assert_close_runs(got, want, tol):
    out_g, last_g, grads_g = got
    out_w, last_w, grads_w = want
    assert max_rel_err(out_g, out_w) < tol, "output"
    if last_w is not None:
        assert last_g is not None
        assert max_rel_err(last_g, last_w) < tol, "last state"
    assert grads_g.keys() == grads_w.keys()
    for name in grads_w:
        assert grads_g[name] is not None, name
        assert torch.isfinite(grads_g[name]).all(), name
        assert max_rel_err(grads_g[name], grads_w[name]) < tol, f"gradient of {name}"


CASES = [
    # (shape/options for make_inputs, flags for run, chunk, block_elements)
    ({}, {}, 4, None),
    ({"length": 1}, {}, None, None),
    ({"length": 64}, {"softplus": False}, 8, None),
    ({"length": 101, "groups_b": 2, "groups_c": 3}, {}, 8, 300),
    ({"length": 50, "groups_b": 6, "groups_c": 1}, {"last": False}, 3, 100),
    ({"length": 29, "fixed_b": True, "fixed_c": True}, {}, 4, 200),
    ({"length": 29, "fixed_b": True, "groups_c": 2}, {}, 5, None),
    ({"length": 40, "with_d": False, "with_z": False, "with_bias": False, "with_h0": False}, {}, 4, 150),
    ({"length": 70, "with_h0": False, "batch": 1, "dim": 3, "n_state": 16}, {"last": False}, 2, 500),
    ({"length": 257, "dim": 4, "n_state": 2}, {}, 4, 64),  # many chunks: the chunk-level scan recurses
]


@pytest.mark.parametrize(("make", "flags", "chunk", "block"), CASES)
def test_chunked_matches_reference_float64(make, flags, chunk, block):
    inputs = make_inputs(**make)
    want = run(selective_scan_reference, inputs, **flags)
    got = run(selective_scan_chunked, inputs, chunk=chunk, block_elements=block, **flags)
    assert_close_runs(got, want, 1e-10)


@pytest.mark.parametrize(("make", "flags", "chunk", "block"), CASES[:6])
def test_chunked_float32_matches_float64_reference(make, flags, chunk, block):
    want = run(selective_scan_reference, make_inputs(**make), **flags)
    got = run(selective_scan_chunked, make_inputs(dtype=torch.float32, **make), chunk=chunk, block_elements=block,
              **flags)
    assert got[0].dtype == torch.float32
    assert_close_runs(got, want, 2e-5)


def test_reference_float32_agrees_with_float64():
    make = {"length": 45, "groups_b": 2}
    want = run(selective_scan_reference, make_inputs(**make))
    got = run(selective_scan_reference, make_inputs(dtype=torch.float32, **make))
    assert_close_runs(got, want, 2e-5)


def test_gradcheck_chunked():
    inputs = make_inputs(batch=1, dim=2, n_state=2, length=11, groups_b=2)
    names = [k for k in GRAD_NAMES if inputs[k] is not None]
    leaves = [inputs[k].clone().requires_grad_() for k in names]

    def fn(*tensors):
        kw = dict(zip(names, tensors, strict=True))
        return selective_scan_chunked(kw["u"], kw["delta"], kw["A"], kw["B"], kw["C"], kw["D"], kw["z"],
                                      kw["delta_bias"], True, True, kw["initial_state"], chunk=3, block_elements=24)

    assert torch.autograd.gradcheck(fn, leaves)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_deltas_stay_finite_and_match(dtype):
    """delta up to 50 and A down to -16: a chunk's total decay is in the thousands, beyond exp's range."""
    inputs = make_inputs(batch=2, dim=8, n_state=16, length=300, delta_scale=50.0, with_bias=False, seed=3)
    inputs["A"] = -16.0 * torch.rand(8, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    inputs["delta"][:, :3] *= 1e-3  # a few channels keep a long memory next to the ones that forget at once
    total_decay = (inputs["delta"][..., :64].sum(-1, keepdim=True) * inputs["A"].abs().max()).max()
    assert total_decay > 1000
    # what the naive exp(-cumsum(delta A)) form would meet within one chunk of 64 steps
    naive = torch.exp(-(inputs["delta"][..., :64, None] * inputs["A"][:, None, :]).cumsum(-2).to(torch.float32))
    assert not torch.isfinite(naive).all()

    want = run(selective_scan_reference, inputs, softplus=False)
    cast = {k: (None if v is None else v.to(dtype)) for k, v in inputs.items()}
    for chunk in (8, 64, None):
        got = run(selective_scan_chunked, cast, softplus=False, chunk=chunk)
        assert torch.isfinite(got[0]).all()
        assert_close_runs(got, want, 1e-5 if dtype == torch.float32 else 1e-10)


# The compiled kernel takes time-varying B and C only (the other layouts stay on the chunked path).
COMPILED_CASES = [case for case in CASES if not case[0].get("fixed_b") and not case[0].get("fixed_c")]


@needs_numba
@pytest.mark.parametrize(("make", "flags", "block"), [(make, flags, block) for make, flags, _, block in COMPILED_CASES])
def test_compiled_matches_reference(make, flags, block):
    inputs = make_inputs(**make)
    want = run(selective_scan_reference, inputs, **flags)
    assert_close_runs(run(selective_scan_compiled, inputs, block_elements=block, **flags), want, 1e-10)
    got32 = run(selective_scan_compiled, {k: (None if v is None else v.float()) for k, v in inputs.items()},
                block_elements=block, **flags)
    assert got32[0].dtype == torch.float32
    assert_close_runs(got32, want, 2e-5)


@needs_numba
def test_compiled_gradcheck_and_extreme_deltas():
    inputs = make_inputs(batch=1, dim=2, n_state=2, length=11, groups_b=2)
    names = [k for k in GRAD_NAMES if inputs[k] is not None]

    def fn(*tensors):
        kw = dict(zip(names, tensors, strict=True))
        return selective_scan_compiled(kw["u"], kw["delta"], kw["A"], kw["B"], kw["C"], kw["D"], kw["z"],
                                       kw["delta_bias"], True, True, kw["initial_state"])

    assert torch.autograd.gradcheck(fn, [inputs[k].clone().requires_grad_() for k in names])
    extreme = make_inputs(batch=1, dim=4, n_state=16, length=200, delta_scale=50.0, with_bias=False, seed=3)
    extreme["A"] = -16.0 * torch.rand(4, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    want = run(selective_scan_reference, extreme, softplus=False)
    got = run(selective_scan_compiled, {k: (None if v is None else v.float()) for k, v in extreme.items()},
              softplus=False)
    assert torch.isfinite(got[0]).all()
    assert_close_runs(got, want, 1e-5)


@needs_numba
def test_auto_backend_on_cpu_is_the_compiled_kernel(monkeypatch):
    from spatialx.models import scan_cpu

    calls = []
    original = scan_cpu.compiled_scan
    monkeypatch.setattr(scan_cpu, "compiled_scan", lambda *a: calls.append(1) or original(*a))
    inputs = make_inputs(length=20, groups_b=2)
    args = [inputs[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
    torch.testing.assert_close(selective_scan(*args, True), selective_scan_reference(*args, True))
    assert calls == [1]
    fixed = make_inputs(length=20, fixed_b=True)  # time-invariant B: the chunked path
    selective_scan(*[fixed[k] for k in ("u", "delta", "A", "B", "C")])
    assert calls == [1]
    with pytest.raises(RuntimeError, match="time-varying"):
        selective_scan(*[fixed[k] for k in ("u", "delta", "A", "B", "C")], backend="compiled")


def test_chunk_and_block_invariance():
    inputs = make_inputs(batch=2, dim=5, n_state=3, length=203, groups_b=5, dtype=torch.float32, seed=7)
    base = run(selective_scan_chunked, inputs, chunk=2, block_elements=1)
    for chunk in (3, 7, 16, 64, 256, None):
        for block in (40, 1000, 10**7, None):
            assert_close_runs(run(selective_scan_chunked, inputs, chunk=chunk, block_elements=block), base, 1e-5)


def test_initial_state_continues_a_split_sequence():
    """Scanning [0, L) equals scanning [0, k) then [k, L) from the first part's last state."""
    inputs = make_inputs(length=60, with_z=False, with_h0=False, seed=11)
    args = [inputs[k] for k in ("u", "delta", "A", "B", "C", "D")]
    full, last = selective_scan_chunked(*args, return_last_state=True, chunk=8)
    cut = 23
    head = [t[..., :cut] if t.dim() == 3 else t for t in args]
    tail = [t[..., cut:] if t.dim() == 3 else t for t in args]
    y1, h1 = selective_scan_chunked(*head, return_last_state=True, chunk=8)
    y2, h2 = selective_scan_chunked(*tail, return_last_state=True, initial_state=h1, chunk=8)
    torch.testing.assert_close(torch.cat([y1, y2], -1), full)
    torch.testing.assert_close(h2, last)


def test_half_input_keeps_dtype_and_computes_in_float32():
    inputs = make_inputs(length=33, with_h0=False)
    half = {k: (None if v is None else v.to(torch.bfloat16)) for k, v in inputs.items()}
    out = selective_scan_chunked(half["u"], half["delta"], half["A"], half["B"], half["C"], half["D"], half["z"],
                                 half["delta_bias"], True)
    assert out.dtype == torch.bfloat16
    want = selective_scan_reference(*(half[k].float() for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")),
                                    True)
    torch.testing.assert_close(out.float(), want, atol=0.05 * want.abs().max().item(), rtol=0)


@pytest.mark.parametrize("path", [selective_scan_chunked, selective_scan_compiled])
def test_empty_sequence(path):
    inputs = make_inputs(length=0)
    out, last = path(inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"], return_last_state=True,
                     initial_state=inputs["initial_state"])
    assert out.shape == (2, 6, 0)
    torch.testing.assert_close(last, inputs["initial_state"])


def test_dispatcher_on_cpu():
    inputs = make_inputs(length=30)
    args = [inputs[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
    ref = selective_scan(*args, True, backend="reference")
    torch.testing.assert_close(ref, selective_scan_reference(*args, True))
    torch.testing.assert_close(selective_scan(*args, True), ref)
    torch.testing.assert_close(selective_scan(*args, True, chunk=4, backend="chunked"), ref)
    with pytest.raises(RuntimeError, match="backend='cuda'"):
        selective_scan(*args, True, backend="cuda")
    with pytest.raises(ValueError, match="backend"):
        selective_scan(*args, True, backend="triton")


def test_dispatcher_never_sends_cpu_tensors_to_the_kernel(monkeypatch):
    from spatialx.models import scan

    def kernel(*args, **kwargs):
        raise AssertionError("the CUDA kernel was called for CPU tensors")

    monkeypatch.setattr(scan, "mamba_selective_scan_fn", lambda: kernel)
    inputs = make_inputs(length=12, with_h0=False)
    args = [inputs[k] for k in ("u", "delta", "A", "B", "C")]
    torch.testing.assert_close(scan.selective_scan(*args), selective_scan_reference(*args))
    with pytest.raises(RuntimeError, match="not on CUDA"):
        scan.selective_scan(*args, backend="cuda")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"u": torch.zeros(2, 6)}, ValueError),
        ({"delta": torch.zeros(2, 6, 9)}, ValueError),
        ({"A": torch.zeros(5, 4)}, ValueError),
        ({"A": torch.zeros(6, 4, dtype=torch.complex64)}, TypeError),
        ({"B": torch.zeros(2, 4, 4, 10)}, ValueError),  # 4 groups do not divide 6 channels
        ({"C": torch.zeros(2, 3, 10)}, ValueError),
        ({"D": torch.zeros(5)}, ValueError),
        ({"initial_state": torch.zeros(2, 6, 3)}, ValueError),
    ],
)
def test_input_validation(change, error):
    inputs = {"u": torch.zeros(2, 6, 10), "delta": torch.zeros(2, 6, 10), "A": torch.zeros(6, 4),
              "B": torch.zeros(2, 4, 10), "C": torch.zeros(2, 4, 10), "D": None, "initial_state": None}
    inputs.update(change)
    for fn in (selective_scan_chunked, selective_scan_reference):
        with pytest.raises(error):
            fn(inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"], inputs["D"],
               initial_state=inputs["initial_state"])


def test_linear_scan_matches_loop_and_gradcheck():
    gen = torch.Generator().manual_seed(5)
    a = torch.rand(50, 3, 2, generator=gen, dtype=torch.float64)
    x = torch.randn(50, 3, 2, generator=gen, dtype=torch.float64)
    h0 = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    h, want = h0, []
    for t in range(50):
        h = a[t] * h + x[t]
        want.append(h)
    torch.testing.assert_close(linear_scan(a, x, h0, chunk=4), torch.stack(want))
    leaves = [t[:13].clone().requires_grad_() for t in (a, x)] + [h0.clone().requires_grad_()]
    assert torch.autograd.gradcheck(lambda a_, x_, h_: linear_scan(a_, x_, h_, chunk=3), leaves)


needs_mamba = pytest.mark.skipif(not torch.cuda.is_available() or mamba_selective_scan_fn() is None,
                                 reason="needs CUDA and an importable mamba_ssm")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
def test_chunked_on_cuda_matches_reference():
    inputs = make_inputs(length=150, groups_b=2, dtype=torch.float32)
    cuda = {k: (None if v is None else v.cuda()) for k, v in inputs.items()}
    want = run(selective_scan_reference, make_inputs(length=150, groups_b=2))
    got = run(selective_scan_chunked, cuda, chunk=16)
    got = (got[0].cpu(), got[1].cpu(), {k: v.cpu() for k, v in got[2].items()})
    assert_close_runs(got, want, 2e-5)


@needs_mamba
@pytest.mark.parametrize("groups", [0, 2])
def test_mamba_kernel_agrees_with_pure_path(groups):
    inputs = make_inputs(batch=2, dim=64, n_state=16, length=1000, groups_b=groups, groups_c=groups,
                         with_h0=False, dtype=torch.float32, seed=2)
    cuda = {k: (None if v is None else v.cuda()) for k, v in inputs.items()}

    def kernel(*args):
        *rest, h0 = args
        assert h0 is None
        return selective_scan(*rest, backend="cuda")

    want = run(selective_scan_chunked, cuda)
    got = run(kernel, cuda)
    assert_close_runs(got, want, 1e-3)
    assert math.isfinite(got[0].abs().max().item())


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("make", "flags", "block"), [(make, flags, block) for make, flags, _, block in COMPILED_CASES])
def test_compiled_inference_path_matches_reference(make, flags, block, dtype, monkeypatch):
    """With grad mode off the compiled path is one pass with the decays in the loop (``inference_scan``)."""
    from spatialx.models import scan_cpu

    calls = []
    original = scan_cpu.inference_scan
    monkeypatch.setattr(scan_cpu, "inference_scan", lambda *a: calls.append(1) or original(*a))
    want = make_inputs(**make)
    got = make_inputs(dtype=dtype, **make)
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    softplus = flags.get("softplus", True)
    out_w, last_w = selective_scan_reference(*[want[k] for k in names], softplus, True, want["initial_state"])
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            out, last = selective_scan_compiled(*[got[k] for k in names], softplus, True, got["initial_state"],
                                                block_elements=block)
        assert out.dtype == dtype
        tol = 1e-12 if dtype == torch.float64 else 2e-6
        assert max_rel_err(out, out_w) < tol
        assert max_rel_err(last, last_w) < tol
    assert calls == [1, 1]
    # with grad mode on, the autograd path (which the other tests compare with the reference)
    selective_scan_compiled(*[got[k] for k in names], softplus, False, got["initial_state"])
    run(selective_scan_compiled, got, **flags)
    assert calls == [1, 1]


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_inference_extreme_deltas(dtype):
    inputs = make_inputs(batch=1, dim=4, n_state=16, length=200, delta_scale=50.0, with_bias=False, seed=3)
    inputs["A"] = -16.0 * torch.rand(4, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    want = selective_scan_reference(*[inputs[k] for k in names], False, True, inputs["initial_state"])
    with torch.no_grad():
        got = selective_scan_compiled(*[None if inputs[k] is None else inputs[k].to(dtype) for k in names], False,
                                      True, inputs["initial_state"].to(dtype))
    assert torch.isfinite(got[0]).all()
    assert max_rel_err(got[0], want[0]) < 1e-5
    assert max_rel_err(got[1], want[1]) < 1e-5


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_exp_is_accurate_and_ieee_at_the_edges(dtype):
    from spatialx.models import _scan_kernels

    x = np.concatenate([np.linspace(-100, 100, 20001), np.linspace(-1, 1, 10001)]).astype(dtype)
    out = np.empty_like(x)
    _scan_kernels.exp_array(x, out)
    ref = np.exp(x.astype(np.float64))
    top = 88.3 if dtype == np.float32 else 709.0
    normal = (ref > np.finfo(dtype).tiny) & (x < top)
    assert (np.abs(out[normal] - ref[normal]) / ref[normal]).max() < 2 * np.finfo(dtype).eps
    assert (out[ref < np.finfo(dtype).tiny] == 0).all()
    edges = np.array([np.nan, -np.inf, np.inf, -1e4, 1e4, 0.0], dtype=dtype)
    out = np.empty_like(edges)
    _scan_kernels.exp_array(edges, out)
    assert np.isnan(out[0]) and out[1] == 0 and out[2] == np.inf and out[3] == 0 and out[4] == np.inf
    assert out[5] == 1


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_decay_is_the_exp_of_non_positive_arguments(dtype):
    """The scans' decay exp on x <= 0: within 2 ulp of exp down to -20 and 4 ulp below (float32; float64 is the
    exp itself), exactly 1 at 0; below the normal range at most the smallest normal float (not 0), which no state
    can tell from 0; NaN stays NaN."""
    from spatialx.models import _scan_kernels

    x = np.concatenate([np.linspace(-100, 0, 200001), np.linspace(-1, 0, 100001)]).astype(dtype)
    out, exp = np.empty_like(x), np.empty_like(x)
    _scan_kernels.decay_array(x, out)
    _scan_kernels.exp_array(x, exp)
    tiny, eps = np.finfo(dtype).tiny, np.finfo(dtype).eps
    ref = np.exp(x.astype(np.float64))
    normal = ref > tiny
    ulps = np.abs(out[normal] - ref[normal]) / ref[normal] / eps
    if dtype == np.float64:
        np.testing.assert_array_equal(out[normal], exp[normal])
    else:
        assert ulps[x[normal] > -20].max() < 2 and ulps.max() < 4, ulps.max()
    assert (out[~normal] <= 2 * tiny).all() and (out[~normal] >= 0).all()
    edges = np.array([np.nan, -np.inf, -1e4, 0.0, -0.0], dtype=dtype)
    out = np.empty_like(edges)
    _scan_kernels.decay_array(edges, out)
    assert np.isnan(out[0]) and (out[1:3] <= 2 * tiny).all() and (out[3:] == 1).all()


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_softplus_matches_torch_and_ieee_at_the_edges(dtype):
    """The step's softplus inside the SS2D kernel is torch's (threshold 20), within 2 ulp, NaN and inf kept."""
    from spatialx.models import _scan_kernels

    x = np.concatenate([np.linspace(-110, 110, 22001), np.linspace(-1e-3, 1e-3, 2001),
                        np.linspace(19.9, 20.1, 201)]).astype(dtype)
    out = np.empty_like(x)
    _scan_kernels.softplus_array(x, out)
    ref = torch.nn.functional.softplus(torch.from_numpy(x.astype(np.float64))).numpy()
    normal = ref > np.finfo(dtype).tiny
    assert (np.abs(out[normal] - ref[normal]) / ref[normal]).max() < 2 * np.finfo(dtype).eps
    assert (out[~normal] <= np.finfo(dtype).tiny).all()
    edges = np.array([np.nan, -np.inf, np.inf, 0.0], dtype=dtype)
    out = np.empty_like(edges)
    _scan_kernels.softplus_array(edges, out)
    assert np.isnan(out[0]) and out[1] == 0 and out[2] == np.inf
    assert abs(out[3] - np.log(2.0)) < 2 * np.finfo(dtype).eps
