"""Cross-scan/merge, the SS2D layer (with LE-Mamba state sharing) and the VSS block."""

from __future__ import annotations

import math

import pytest
import torch

from spatialx.models.scan import mamba_selective_scan_fn
from spatialx.models.ss2d import SS2D, DropPath, VSSBlock, cross_merge, cross_scan


def seeded(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------------------------------------------------------
# cross_scan / cross_merge
# ---------------------------------------------------------------------------------------------------------------


def test_cross_scan_directions():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).view(1, 2, 3, 4)  # (batch, C, H=3, W=4)
    xs = cross_scan(x)
    assert xs.shape == (1, 4, 2, 12)
    row_major = x.flatten(2)[0]
    col_major = x.transpose(2, 3).flatten(2)[0]
    torch.testing.assert_close(xs[0, 0], row_major)
    torch.testing.assert_close(xs[0, 1], col_major)
    torch.testing.assert_close(xs[0, 2], row_major.flip(-1))
    torch.testing.assert_close(xs[0, 3], col_major.flip(-1))
    # the column-major scan visits (0,0), (1,0), (2,0), (0,1), ...
    assert xs[0, 1, 0, :4].tolist() == [0.0, 4.0, 8.0, 1.0]


@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 7), (5, 1), (3, 4), (8, 8), (7, 13)])
def test_cross_merge_inverts_cross_scan(height, width):
    x = seeded(2, 3, height, width, seed=height * 31 + width)
    xs = cross_scan(x)
    torch.testing.assert_close(cross_merge(xs, (height, width)), 4 * x)
    # VMamba's (batch, 4, C, H, W) layout of the same sequences
    torch.testing.assert_close(cross_merge(xs.view(2, 4, 3, height, width)), 4 * x)
    # each direction alone is a bijection back to image order
    for k in range(4):
        only = torch.zeros_like(xs)
        only[:, k] = xs[:, k]
        torch.testing.assert_close(cross_merge(only, (height, width)), x)


def test_cross_merge_is_the_adjoint_of_cross_scan():
    x = seeded(2, 3, 5, 6, seed=1, dtype=torch.float64)
    ys = seeded(2, 4, 3, 30, seed=2, dtype=torch.float64)
    lhs = (cross_scan(x) * ys).sum()
    rhs = (x * cross_merge(ys, (5, 6))).sum()
    torch.testing.assert_close(lhs, rhs)


def test_cross_merge_errors():
    with pytest.raises(ValueError, match="size"):
        cross_merge(torch.zeros(1, 4, 2, 12))
    with pytest.raises(ValueError, match="does not match"):
        cross_merge(torch.zeros(1, 4, 2, 12), (3, 5))
    with pytest.raises(ValueError):
        cross_scan(torch.zeros(2, 3, 4))


# ---------------------------------------------------------------------------------------------------------------
# SS2D
# ---------------------------------------------------------------------------------------------------------------


def small_ss2d(**kw):
    torch.manual_seed(0)
    return SS2D(8, d_state=4, ssm_ratio=2.0, d_conv=3, **kw)


def test_ss2d_parameters_and_initialisation():
    layer = SS2D(32, d_state=16, ssm_ratio=2.0)
    d_inner = 64
    assert layer.d_inner == d_inner and layer.dt_rank == math.ceil(32 / 16)
    assert layer.x_proj_weight.shape == (4, layer.dt_rank + 32, d_inner)
    assert layer.dt_projs_weight.shape == (4, d_inner, layer.dt_rank)
    torch.testing.assert_close(layer.A_logs[0], torch.log(torch.arange(1.0, 17.0)))
    torch.testing.assert_close(torch.exp(layer.A_logs), torch.arange(1.0, 17.0).expand(4 * d_inner, 16))
    assert torch.all(layer.Ds == 1)
    dt = torch.nn.functional.softplus(layer.dt_projs_bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    assert dt.log().std() > 0.5  # spread log-uniformly, not constant
    assert layer.conv2d.kernel_size == (3, 3) and layer.conv2d.groups == d_inner
    with pytest.raises(ValueError):
        SS2D(8, d_conv=4)


@pytest.mark.parametrize(("height", "width", "d_conv"), [(4, 4, 3), (3, 7, 1), (6, 5, 5)])
def test_ss2d_forward_shape_and_gradients(height, width, d_conv):
    layer = small_ss2d() if d_conv == 3 else SS2D(8, d_state=4, d_conv=d_conv)
    x = seeded(2, height, width, 8).requires_grad_()
    out = layer(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, param in layer.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_ss2d_deterministic_and_backend_independent():
    layer = small_ss2d().eval()
    x = seeded(2, 5, 6, 8)
    with torch.no_grad():
        first = layer(x)
        second = layer(x)
        layer.scan_backend = "reference"
        reference = layer(x)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(first, reference, rtol=1e-5, atol=1e-6)


def test_ss2d_uses_all_four_directions():
    """A pixel's output depends on pixels before and after it in both scan orders."""
    layer = small_ss2d()
    x = seeded(1, 5, 5, 8).requires_grad_()
    layer(x)[0, 2, 2].sum().backward()
    influence = x.grad[0].abs().sum(-1)
    assert (influence > 0).all()


def test_ss2d_state_out_and_initial_state():
    layer = small_ss2d()
    x = seeded(2, 4, 5, 8)
    out, state = layer(x, return_state=True)
    assert state.shape == (2, 4, layer.d_inner, layer.d_state)
    torch.testing.assert_close(out, layer(x))
    zeros = torch.zeros_like(state)
    torch.testing.assert_close(layer(x, initial_state=zeros), out)
    moved = layer(x, initial_state=state)
    assert not torch.allclose(moved, out)
    with pytest.raises(ValueError, match="initial_state"):
        layer(x, initial_state=state[:, :3])


def test_ss2d_last_state_matches_a_manual_scan():
    """The returned state of direction 0 is the row-major scan's state after the last pixel."""
    from spatialx.models.scan import selective_scan_reference

    layer = small_ss2d().double()
    x = seeded(1, 3, 4, 8, dtype=torch.float64)
    _, state = layer(x, return_state=True)
    xi, _ = layer.in_proj(x).chunk(2, dim=-1)
    xs = cross_scan(layer.act(layer.conv2d(xi.permute(0, 3, 1, 2))))
    x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, layer.x_proj_weight)
    dts, Bs, Cs = torch.split(x_dbl, [layer.dt_rank, layer.d_state, layer.d_state], dim=2)
    dts = torch.einsum("bkrl,kdr->bkdl", dts, layer.dt_projs_weight)
    d = layer.d_inner
    _, last = selective_scan_reference(xs[:, 0], dts[:, 0], -torch.exp(layer.A_logs[:d]), Bs[:, 0], Cs[:, 0],
                                       layer.Ds[:d], delta_bias=layer.dt_projs_bias[0], delta_softplus=True,
                                       return_last_state=True)
    torch.testing.assert_close(state[:, 0], last)


def test_state_sharing_starts_neutral_and_learns():
    torch.manual_seed(0)
    producer = SS2D(8, d_state=4, ssm_ratio=1.0)  # d_inner 8
    consumer = SS2D(8, d_state=4, ssm_ratio=2.0, share_state=True, state_dim=8)  # d_inner 16
    assert consumer.state_alpha.shape == (1, 4, 16, 1) and torch.all(consumer.state_alpha == 0)
    x = seeded(2, 4, 4, 8)
    _, state = producer(x, return_state=True)
    plain = consumer(x)
    shared = consumer(x, prev_state=state)
    torch.testing.assert_close(shared, plain)  # alpha = 0: no effect yet
    shared.square().sum().backward()
    assert consumer.state_alpha.grad.abs().sum() > 0  # ... but alpha learns
    with torch.no_grad():
        consumer.state_alpha.fill_(0.5)
    assert not torch.allclose(consumer(x, prev_state=state), plain)
    with pytest.raises(ValueError, match="prev_state"):
        consumer(x, prev_state=torch.zeros(2, 4, 16, 4))


def test_state_sharing_gradient_reaches_the_producer():
    torch.manual_seed(0)
    first = VSSBlock(8, d_state=4, mlp_ratio=1.0, share_state=True)
    second = VSSBlock(8, d_state=4, mlp_ratio=1.0, share_state=True)
    with torch.no_grad():
        second.op.state_alpha.fill_(0.1)
    x = seeded(1, 4, 4, 8)
    y, state = first(x, return_state=True)
    assert state.shape == (1, 4, 16, 4)
    out = second(y, prev_state=state)
    (out.square().sum()).backward()
    for module in (second.op.state_g, second.op.state_proj):
        assert module.weight.grad.abs().sum() > 0
    assert first.op.A_logs.grad.abs().sum() > 0


def test_share_state_modes_differ_only_when_active():
    torch.manual_seed(0)
    code = SS2D(8, d_state=4, share_state=True)
    paper = SS2D(8, d_state=4, share_state=True, share_state_mode="paper")
    paper.load_state_dict(code.state_dict())
    x = seeded(1, 3, 5, 8)
    state = seeded(1, 4, 16, 4, seed=5)
    torch.testing.assert_close(code(x, prev_state=state), paper(x, prev_state=state))
    with torch.no_grad():
        code.state_alpha.fill_(0.3)
        paper.state_alpha.fill_(0.3)
    assert not torch.allclose(code(x, prev_state=state), paper(x, prev_state=state))
    with pytest.raises(ValueError):
        SS2D(8, share_state=True, share_state_mode="other")


def test_state_injection_hook():
    layer = small_ss2d()
    x = seeded(2, 3, 3, 8)
    prev = seeded(2, 4, 16, 4, seed=9)
    seen = {}

    def identity(xs, state):
        seen["xs"], seen["state"] = xs.shape, state
        return xs

    torch.testing.assert_close(layer(x, prev_state=prev, state_injection=identity), layer(x))
    assert seen["xs"] == (2, 4, layer.d_inner, 9) and seen["state"] is prev
    layer.state_injection = lambda xs, state: xs + state.mean()
    assert not torch.allclose(layer(x, prev_state=prev), layer(x, prev_state=prev, state_injection=identity))


# ---------------------------------------------------------------------------------------------------------------
# VSSBlock, DropPath
# ---------------------------------------------------------------------------------------------------------------


def test_vss_block_forward_backward():
    torch.manual_seed(0)
    block = VSSBlock(8, drop_path=0.1, d_state=4, d_conv=3, mlp_ratio=4.0)
    assert block.norm.eps == 1e-6 and block.norm2.eps == 1e-6
    assert block.mlp[0].out_features == 32 and isinstance(block.mlp[1], torch.nn.GELU)
    x = seeded(2, 5, 4, 8).requires_grad_()
    out = block(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())
    block.eval()
    with torch.no_grad():
        torch.testing.assert_close(block(x), block(x), rtol=0, atol=0)


def test_vss_block_without_mlp_and_with_state():
    torch.manual_seed(0)
    block = VSSBlock(8, d_state=4, mlp_ratio=0, d_conv=7, ssm_ratio=1.0)
    assert block.mlp is None
    x = seeded(1, 6, 6, 8)
    out, state = block(x, return_state=True)
    assert out.shape == x.shape and state.shape == (1, 4, 8, 4)
    with torch.no_grad():
        expected = x + block.op(block.norm(x))
    torch.testing.assert_close(out.detach(), expected)


@pytest.mark.parametrize("mlp_ratio", [4.0, 0])
def test_vss_block_inference_by_pixel_chunks_matches_the_autograd_path(mlp_ratio, monkeypatch):
    """Inference runs SS2D's gate and output projection and the MLP a few pixels at a time and adds the residual
    into SS2D's fresh output: the numbers of the whole-image autograd path, and the caller's input untouched."""
    from spatialx.models import ss2d

    monkeypatch.setattr(ss2d, "PIXEL_CHUNK", 7)  # chunks that end mid-row and mid-image
    torch.manual_seed(0)
    block = VSSBlock(8, d_state=4, mlp_ratio=mlp_ratio).eval()
    x = seeded(2, 5, 6, 8)
    before = x.clone()
    with torch.inference_mode():
        got = block(x)
    want = block(x)
    torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=1e-6)
    assert torch.equal(x, before)


def test_drop_path():
    drop = DropPath(0.5)
    x = torch.ones(1000, 3)
    drop.eval()
    assert drop(x) is x
    drop.train()
    torch.manual_seed(0)
    y = drop(x)
    rows = y[:, 0]
    assert set(rows.unique().tolist()) <= {0.0, 2.0}
    assert 0.4 < (rows > 0).float().mean() < 0.6
    assert torch.all(y == y[:, :1])  # whole samples
    with pytest.raises(ValueError):
        DropPath(1.0)


@pytest.mark.skipif(not torch.cuda.is_available() or mamba_selective_scan_fn() is None,
                    reason="needs CUDA and an importable mamba_ssm")
def test_ss2d_cuda_kernel_matches_pure_path():
    torch.manual_seed(0)
    layer = SS2D(32, d_state=16).cuda()
    x = seeded(2, 16, 16, 32).cuda()
    out_kernel, state_kernel = layer(x, return_state=True)
    layer.scan_backend = "chunked"
    out_pure, state_pure = layer(x, return_state=True)
    torch.testing.assert_close(out_kernel, out_pure, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(state_kernel, state_pure, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("share", "mode"), [(False, "code"), (True, "code"), (True, "paper")])
@pytest.mark.parametrize("size", [(5, 7), (8, 8), (1, 3)])
def test_ss2d_four_direction_inference_matches_the_per_direction_path(dtype, share, mode, size, monkeypatch):
    """Without autograd on the CPU the four scans run as one pass on image-order inputs; same outputs and states."""
    from spatialx.models import scan_cpu

    if not scan_cpu.available():
        pytest.skip("numba is not importable")
    calls = []
    original = scan_cpu.ss2d_direction_scan
    monkeypatch.setattr(scan_cpu, "ss2d_direction_scan", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    torch.manual_seed(0)
    layer = SS2D(8, d_state=4, share_state=share, state_dim=12 if share else None,
                 share_state_mode=mode).to(dtype).eval()
    if share:
        with torch.no_grad():
            layer.state_alpha.normal_()
    x = torch.randn(2, *size, 8, dtype=dtype)
    prev = torch.randn(2, 4, 12, 4, dtype=dtype) if share else None
    init = torch.randn(2, 4, layer.d_inner, 4, dtype=dtype)
    with torch.inference_mode():
        out, state = layer(x, prev_state=prev, initial_state=init, return_state=True)
    assert calls == [0, 1, 2, 3]
    want_out, want_state = layer(x, prev_state=prev, initial_state=init, return_state=True)  # autograd: per direction
    assert calls == [0, 1, 2, 3]
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}
    torch.testing.assert_close(out, want_out.detach(), **tol)
    torch.testing.assert_close(state, want_state.detach(), **tol)


def test_channel_blocks_split_the_work_evenly_and_do_not_change_the_scan():
    """The SS2D kernel's channel blocks: whole vectors, states within L1, every thread equally busy on one image; and
    the scan's result does not depend on them (the channels' recurrences are independent), and the first direction
    may write y instead of adding to it."""
    import numpy as np

    from spatialx.models import scan_cpu

    for dim, n_state, batch, threads in [(96, 8, 1, 2), (96, 8, 1, 1), (64, 32, 1, 2), (64, 16, 1024, 2),
                                         (192, 8, 1, 2), (256, 16, 1, 1), (96, 8, 2, 2), (64, 16, 1, 4)]:
        block = scan_cpu.channel_block(dim, n_state, batch, threads)
        jobs = batch * -(-dim // block)
        assert block % 16 == 0 and (block == 16 or 2 * n_state * block * 4 <= 16384), (dim, n_state, block)
        assert jobs >= min(threads, batch * dim // 16) and (batch >= threads or jobs % threads == 0), (dim, block)
    assert scan_cpu.channel_block(96, 8, 1, 2) == 48 and scan_cpu.channel_block(96, 8, 1, 1) == 96
    if not scan_cpu.available():
        pytest.skip("numba is not importable")
    from spatialx.models import _scan_kernels

    rng = np.random.default_rng(0)
    batch, size, dim, n_state, rank = 2, 12, 96, 8, 3
    proj = rng.standard_normal((batch, size * size, rank + 2 * n_state), dtype=np.float32)
    u = rng.standard_normal((batch, size * size, dim), dtype=np.float32)
    weight = rng.standard_normal((rank, dim), dtype=np.float32) * 0.3
    bias = rng.standard_normal(dim, dtype=np.float32)
    A = -np.exp(rng.standard_normal((n_state, dim), dtype=np.float32))
    D = rng.standard_normal(dim, dtype=np.float32)
    results = []
    for block in (16, 48, 64, 96):
        state = np.zeros((batch, dim, n_state), dtype=np.float32)
        y = np.zeros((batch, size * size, dim), dtype=np.float32)
        _scan_kernels.forward_ss2d(proj, rank, weight, bias, u, A, D, state, y, size, size, 1, block)
        results.append((y, state))
    state = np.zeros((batch, dim, n_state), dtype=np.float32)
    y = np.full((batch, size * size, dim), np.nan, dtype=np.float32)  # accumulate=False writes over what y holds
    _scan_kernels.forward_ss2d(proj, rank, weight, bias, u, A, D, state, y, size, size, 1, 48, False)
    results.append((y, state))
    for y, state in results[1:]:
        np.testing.assert_allclose(y, results[0][0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(state, results[0][1], rtol=1e-6, atol=1e-6)


def test_a_hooked_projection_sends_inference_down_the_module_path(monkeypatch):
    """The compiled inference pass uses in_proj and out_proj by their weights; a hook on either (the FLOP
    counter's) must see them called, so the layer takes the per-direction path, with the same result."""
    from spatialx.models import scan_cpu

    if not scan_cpu.available():
        pytest.skip("numba is not importable")
    torch.manual_seed(0)
    layer = SS2D(8, d_state=4).eval()
    x = torch.randn(1, 5, 6, 8)
    with torch.inference_mode():
        fast = layer(x)
    calls, seen = [], []
    monkeypatch.setattr(scan_cpu, "ss2d_direction_scan", lambda *a, **k: calls.append(a[0]))
    layer.out_proj.register_forward_hook(lambda *args: seen.append(1))
    with torch.inference_mode():
        hooked = layer(x)
    assert seen == [1] and calls == []
    torch.testing.assert_close(hooked, fast, rtol=1e-5, atol=1e-6)
