"""The WKV recurrence: chunked and compiled forms against the sequential reference (forward, backward, extreme
decays, state carry), the dispatcher, and the FLOP count."""

from __future__ import annotations

import pytest
import torch

from spatialx.models import wkv as wkv_module
from spatialx.models.flops import flop_breakdown
from spatialx.models.wkv import WKV, wkv, wkv_chunked, wkv_compiled, wkv_flops, wkv_reference

pytestmark = pytest.mark.usefixtures("torch_single_thread")

needs_numba = pytest.mark.skipif(not wkv_module.compiled_available(), reason="numba is not importable")
NAMES = ("r", "k", "v", "w", "u", "initial_state")


def make(batch=2, length=37, heads=3, n=4, vdim=None, w_scale=2.0, u_scale=1.0, with_state=True, seed=0,
         dtype=torch.float64, extreme=False):
    gen = torch.Generator().manual_seed(seed)
    vdim = n if vdim is None else vdim

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    inputs = {"r": rnd(batch, length, heads, n), "k": rnd(batch, length, heads, n),
              "v": rnd(batch, length, heads, vdim), "w": w_scale * rnd(heads, n), "u": u_scale * rnd(heads, n),
              "initial_state": rnd(batch, heads, n, vdim) if with_state else None}
    if extreme:  # decays of exactly 0 and of 1 - 1e-13, both ends of what any parameterisation can reach
        inputs["w"][0, :4] = torch.tensor([30.0, -30.0, 20.0, -20.0])[:n]
    return {k: (None if x is None else x.to(dtype)) for k, x in inputs.items()}


def max_rel_err(got, want):
    got, want = got.double(), want.double()
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def run(fn, inputs, **kwargs):
    """Output, last state and the gradients of a fixed random functional of both."""
    leaves = {k: (None if x is None else x.detach().clone().requires_grad_()) for k, x in inputs.items()}
    out, state = fn(*(leaves[k] for k in NAMES), return_state=True, **kwargs)
    gen = torch.Generator().manual_seed(99)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum() + \
        (state * torch.randn(state.shape, generator=gen, dtype=state.dtype)).sum()
    loss.backward()
    return out.detach(), state.detach(), {k: x.grad for k, x in leaves.items() if x is not None}


def assert_runs_close(got, want, tol):
    assert max_rel_err(got[0], want[0]) < tol, "output"
    assert max_rel_err(got[1], want[1]) < tol, "state"
    for name, grad in want[2].items():
        assert torch.isfinite(got[2][name]).all(), name
        assert max_rel_err(got[2][name], grad) < tol, name


# ---------------------------------------------------------------------------------------------------------------
# Chunked form
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "chunk"), [
    ({"length": 37}, 8),  # ragged last chunk
    ({"length": 64, "heads": 2, "n": 8}, 16),  # whole chunks
    ({"length": 5}, 16),  # one chunk, shorter than the chunk size
    ({"length": 50, "batch": 1, "heads": 1, "n": 3, "vdim": 5}, 7),  # value size != key size
    ({"length": 33, "with_state": False}, 1),  # chunk 1: all inter-chunk
])
def test_chunked_matches_reference_forward_and_backward(shape, chunk):
    inputs = make(**shape)
    assert_runs_close(run(wkv_chunked, inputs, chunk=chunk), run(wkv_reference, inputs), 1e-11)


@pytest.mark.parametrize("chunk", [5, 16])
def test_extreme_decays_and_bonus_stay_finite_and_match(chunk):
    """w from -30 to +30 (decay 1 - 1e-13 to exactly 0), w = 1000 (exp(w) = inf) and a bonus of +-50: no overflow,
    no NaN, in forward and backward, float64 and float32."""
    inputs = make(length=45, heads=2, n=4, u_scale=50.0, extreme=True, seed=3)
    want = run(wkv_reference, inputs)
    assert all(torch.isfinite(t).all() for t in (want[0], want[1], *want[2].values()))
    assert_runs_close(run(wkv_chunked, inputs, chunk=chunk), want, 1e-11)
    single = {k: (None if x is None else x.float()) for k, x in inputs.items()}
    got = run(wkv_chunked, single, chunk=chunk)
    assert all(torch.isfinite(t).all() for t in (got[0], got[1], *got[2].values()))
    assert max_rel_err(got[0], want[0]) < 1e-5 and max_rel_err(got[1], want[1]) < 1e-5


def test_infinite_decay_rate():
    """w = 1000: exp(w) is inf even in float64. The forward is the reference's (a decay of exactly 0); the
    reference's own gradient there is NaN (-inf * 0, the formula taken literally), the chunked form's is 0."""
    inputs = make(length=30, seed=9)
    inputs["w"][1, 2] = 1000.0
    want = wkv_reference(*(inputs[k] for k in NAMES), return_state=True)
    got = run(wkv_chunked, inputs, chunk=8)
    assert max_rel_err(got[0], want[0]) < 1e-12 and max_rel_err(got[1], want[1]) < 1e-12
    assert all(torch.isfinite(g).all() for g in got[2].values())
    assert got[2]["w"][1, 2] == 0


def test_chunked_gradcheck():
    inputs = make(batch=1, length=11, heads=2, n=3, seed=5)
    leaves = tuple(inputs[k].clone().requires_grad_() for k in NAMES)

    def fn(*args):
        return wkv_chunked(*args, return_state=True, chunk=4)

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-7)


def test_chunked_float32_against_float64_reference():
    inputs = make(batch=2, length=300, heads=2, n=32, w_scale=1.0, seed=7)
    want = wkv_reference(*(inputs[k] for k in NAMES), return_state=True)
    single = [None if inputs[k] is None else inputs[k].float() for k in NAMES]
    got = wkv_chunked(*single, return_state=True)
    assert got[0].dtype == torch.float32
    assert max_rel_err(got[0], want[0]) < 2e-5 and max_rel_err(got[1], want[1]) < 2e-5


def test_chunk_size_does_not_change_the_result():
    inputs = make(length=70, seed=8)
    args = [inputs[k] for k in NAMES]
    base = wkv_chunked(*args, chunk=16)
    for chunk in (1, 3, 16, 69, 70, 200):
        torch.testing.assert_close(wkv_chunked(*args, chunk=chunk), base, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("path", ["chunked", "compiled", "reference"])
def test_state_carries_a_split_sequence(path):
    """Running [0, L) equals running [0, c) then [c, L) from the first part's last state."""
    if path == "compiled" and not wkv_module.compiled_available():
        pytest.skip("numba is not importable")
    inputs = make(length=61, seed=11)
    args = [inputs[k] for k in NAMES]
    with torch.no_grad():
        full, last = wkv(*args, return_state=True, backend=path, chunk=8)
        cut = 23
        head = [x[:, :cut] for x in args[:3]]
        tail = [x[:, cut:] for x in args[:3]]
        y1, s1 = wkv(*head, *args[3:5], args[5], return_state=True, backend=path, chunk=8)
        y2, s2 = wkv(*tail, *args[3:5], s1, return_state=True, backend=path, chunk=8)
    torch.testing.assert_close(torch.cat([y1, y2], 1), full, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s2, last, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("path", ["chunked", "reference", "compiled"])
def test_empty_sequence_returns_the_initial_state(path):
    if path == "compiled" and not wkv_module.compiled_available():
        pytest.skip("numba is not importable")
    inputs = make(length=0)
    with torch.no_grad():
        out, state = wkv(*(inputs[k] for k in NAMES), return_state=True, backend=path)
    assert out.shape == (2, 0, 3, 4)
    torch.testing.assert_close(state, inputs["initial_state"])


def test_half_inputs_keep_their_dtype():
    inputs = make(length=20, with_state=False)
    args = [None if inputs[k] is None else inputs[k].to(torch.bfloat16) for k in NAMES]
    out = wkv_chunked(*args)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


@pytest.mark.parametrize(("change", "error"), [
    ({"r": torch.zeros(2, 5, 3)}, "r must be"),
    ({"k": torch.zeros(2, 6, 3, 4)}, "k must have"),
    ({"v": torch.zeros(2, 5, 2, 4)}, "v must be"),
    ({"w": torch.zeros(3, 5)}, "w must be"),
    ({"u": torch.zeros(4)}, "u must be"),
    ({"initial_state": torch.zeros(2, 3, 4, 5)}, "initial_state must be"),
])
def test_input_validation(change, error):
    inputs = {**make(length=5, dtype=torch.float32), **change}
    with pytest.raises(ValueError, match=error):
        wkv_chunked(*(inputs[k] for k in NAMES))


# ---------------------------------------------------------------------------------------------------------------
# Compiled kernel and dispatch
# ---------------------------------------------------------------------------------------------------------------


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [{"length": 37}, {"length": 130, "heads": 2, "n": 32, "w_scale": 1.0},
                                   {"length": 9, "n": 3, "vdim": 6, "with_state": False}])
def test_compiled_matches_reference(dtype, shape):
    inputs = make(**shape, seed=4)
    want = wkv_reference(*(inputs[k] for k in NAMES), return_state=True)
    args = [None if inputs[k] is None else inputs[k].to(dtype) for k in NAMES]
    with torch.no_grad():
        out, state = wkv_compiled(*args, return_state=True)
    assert out.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    assert max_rel_err(out, want[0]) < tol and max_rel_err(state, want[1]) < tol


@needs_numba
def test_compiled_extreme_decays():
    inputs = make(length=40, heads=2, n=4, u_scale=50.0, extreme=True, seed=6)
    want = wkv_reference(*(inputs[k] for k in NAMES), return_state=True)
    for dtype in (torch.float64, torch.float32):
        out, state = wkv_compiled(*(None if inputs[k] is None else inputs[k].to(dtype) for k in NAMES),
                                  return_state=True)
        assert torch.isfinite(out).all() and torch.isfinite(state).all()
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        assert max_rel_err(out, want[0]) < tol and max_rel_err(state, want[1]) < tol


@needs_numba
def test_auto_backend_on_cpu(monkeypatch):
    """No gradient needed: the compiled kernel; gradients needed: the chunked form; never fla on CPU tensors."""
    calls = []
    for name in ("wkv_compiled", "wkv_chunked"):
        original = getattr(wkv_module, name)
        monkeypatch.setattr(wkv_module, name, lambda *a, _n=name, _f=original, **k: calls.append(_n) or _f(*a, **k))
    monkeypatch.setattr(wkv_module, "fla_rwkv6", lambda: pytest.fail("fla looked up for CPU tensors"))
    inputs = make(length=10, dtype=torch.float32)
    args = [inputs[k] for k in NAMES]
    with torch.no_grad():
        wkv(*args)
    wkv(*args)  # nothing requires grad: still compiled
    w = args[3].clone().requires_grad_()
    wkv(*args[:3], w, *args[4:])
    assert calls == ["wkv_compiled", "wkv_compiled", "wkv_chunked"]
    with pytest.raises(ValueError, match="no backward"):
        wkv(*args[:3], w, *args[4:], backend="compiled")
    with pytest.raises(ValueError, match="backend"):
        wkv(*args, backend="nope")


def _fake_fla(r, k, v, g, u, scale, initial_state, output_final_state, heads_first):
    """fla's contract, computed by the reference: ``g`` the per-step log-decay, ``scale`` multiplying r."""
    if heads_first:
        r, k, v, g = (t.transpose(1, 2) for t in (r, k, v, g))
    assert scale == 1.0 and g.shape == r.shape and (g == g[:1, :1]).all()
    out, state = wkv_reference(r, k, v, torch.log(-g[0, 0]), u, initial_state, return_state=True)
    return (out.transpose(1, 2) if heads_first else out), (state if output_final_state else None)


def fla_newest(r, k, v, w, u, scale=None, initial_state=None, output_final_state=False, cu_seqlens=None, **kwargs):
    assert not kwargs
    return _fake_fla(r, k, v, w, u, scale, initial_state, output_final_state, False)


def fla_head_first(q, k, v, g, u, scale=None, initial_state=None, output_final_state=False, head_first=True):
    return _fake_fla(q, k, v, g, u, scale, initial_state, output_final_state, head_first)


def fla_oldest(r, k, v, g, u, scale=None, initial_state=None, output_final_state=False, checkpoint_level=0):
    return _fake_fla(r, k, v, g, u, scale, initial_state, output_final_state, True)


@pytest.mark.parametrize("fake", [fla_newest, fla_head_first, fla_oldest])
def test_fla_adapter_follows_each_api_generation(fake, monkeypatch):
    """The call into fla (layout, log-decay, scale), checked against stand-ins with the signatures of fla's three API
    generations: the kernel itself needs CUDA and is not tested here."""
    monkeypatch.setattr(wkv_module, "fla_rwkv6", lambda: fake)
    inputs = make(length=21, seed=12)
    args = [inputs[k] for k in NAMES]
    want = wkv_reference(*args, return_state=True)
    got = wkv(*args, return_state=True, backend="fla")
    assert max_rel_err(got[0], want[0]) < 1e-12 and max_rel_err(got[1], want[1]) < 1e-12
    torch.testing.assert_close(wkv(*args, backend="fla"), want[0])


@pytest.mark.skipif(not torch.cuda.is_available() or wkv_module.fla_rwkv6() is None,
                    reason="needs CUDA and flash-linear-attention")
def test_fla_matches_chunked_on_cuda():  # pragma: no cover - no GPU here
    inputs = make(batch=2, length=200, heads=2, n=32, w_scale=1.0, dtype=torch.float32)
    cuda = [None if inputs[k] is None else inputs[k].cuda() for k in NAMES]
    want = wkv_chunked(*cuda, return_state=True)
    got = wkv(*cuda, return_state=True, backend="fla")
    assert max_rel_err(got[0], want[0]) < 1e-3 and max_rel_err(got[1], want[1]) < 1e-3


# ---------------------------------------------------------------------------------------------------------------
# Module and FLOPs
# ---------------------------------------------------------------------------------------------------------------


def test_module_shapes_init_and_flops():
    torch.manual_seed(0)
    layer = WKV(64, head_size=32)
    assert layer.w.shape == layer.u.shape == (2, 32)
    decay = torch.exp(-torch.exp(layer.w))
    assert 0.6 < decay.min() < decay.max() < 1.0  # memories of a couple to hundreds of steps
    x = torch.randn(3, 50, 64)
    out = layer(x, x, x)
    assert out.shape == x.shape
    want = wkv_reference(*(t.view(3, 50, 2, 32) for t in (x, x, x)), layer.w, layer.u).reshape(3, 50, 64)
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
    per_step = 3 * 32 * 32 + 2 * 32 + 32
    assert wkv_flops(3, 50, 2, 32) == 3 * 50 * 2 * per_step
    assert layer.extra_flops((x, x, x), {}, out) == 3 * 50 * 2 * per_step
    assert flop_breakdown(layer, (x, x, x))["extra"] == 3 * 50 * 2 * per_step
    with pytest.raises(ValueError, match="multiple"):
        WKV(48, head_size=32)
