"""SSRFN: size against the paper, shapes at odd sizes, gradients, scan paths, tiling seams, a few training steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import spatialx.models.ssrfn as ssrfn
from spatialx.models import scan_cpu
from spatialx.models.flops import count_params, flop_breakdown, network_inputs
from spatialx.models.ssrfn import SSRFN, InteractionSR, Local3D, Mamba1D

pytestmark = pytest.mark.usefixtures("torch_single_thread")

#: The tiny configuration, on the pure-PyTorch scan: numba's thread pool, once started, spins beside torch's one
#: thread, which on a 2-core machine with the other core busy made every op ~30x slower (a 72 x 72 forward 2 s instead
#: of 0.06 s). The compiled kernel is checked against it in the last test.
TINY = {"width": 8, "dfe_units": 1, "cfe_iterations": 2, "scm_steps": 2, "sr_stages": 1, "conv3d_channels": 2,
        "d_state": 4, "scan_backend": "chunked"}
#: Table VI of the paper (simulated dataset-1, 100 bands, SPOT-4's 4 bands, ratio 4).
PAPER_PARAMS, PAPER_GFLOPS = 38.63e6, 193.67


def tiny(seed: int = 0, bands: int = 6, ratio: int = 4, guide_bands: int = 3, **kw) -> SSRFN:
    torch.manual_seed(seed)
    return SSRFN(bands, ratio, guide_bands, **{**TINY, **kw})


def pair(bands: int = 6, guide_bands: int = 3, size: tuple[int, int] = (24, 24), batch: int = 2, seed: int = 0):
    """A smooth HSI on the MSI grid and an MSI made from it (so the pair is learnable), values in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, bands, size[0] // 4 + 1, size[1] // 4 + 1, generator=generator)
    lms = F.interpolate(coarse, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    mix = torch.rand(guide_bands, bands, generator=generator)
    guide = torch.einsum("gc,bchw->bghw", mix / mix.sum(1, keepdim=True), lms)
    guide = (guide + 0.1 * torch.rand(guide.shape, generator=generator)).clamp(0, 1)
    return lms, guide


def _meta_counts(model_fn, size: int, monkeypatch_scan) -> tuple[int, dict[str, int]]:
    """Parameters and FLOPs of a model built on the meta device, its scans stubbed: the counts come from shapes only
    (the hooks and ``Mamba1D.extra_flops``), so a 38 M network is counted in a fraction of a second."""
    monkeypatch_scan.setattr(ssrfn, "selective_scan", lambda u, *args, **kwargs: torch.empty_like(u))
    with torch.device("meta"):
        model = model_fn()
    return count_params(model), flop_breakdown(model, network_inputs(model, size, device="meta"))


@pytest.fixture(scope="module")
def paper_counts():
    with pytest.MonkeyPatch.context() as mp:
        return _meta_counts(lambda: SSRFN(100, 4, 4), 64, mp)


# ----------------------------------------------------------------------------------------------------------------
# Size
# ----------------------------------------------------------------------------------------------------------------


def test_paper_configuration_size(paper_counts):
    params, counts = paper_counts
    gflops = counts["total"] / 1e9
    # 64 x 64 MSI, 16 x 16 HSI (module docstring, choice 12): 37.02 M and 197.64 GFLOPs
    assert abs(params / PAPER_PARAMS - 1) < 0.10, params
    assert abs(gflops / PAPER_GFLOPS - 1) < 0.10, gflops
    # conv 73.86 G, norm 0.16 G, extra 123.62 G (Mamba scans 36.64 G, projections 86.72 G, depthwise convs 0.25 G)
    assert counts["conv"] > 0 and counts["norm"] > 0 and counts["extra"] > 0
    assert counts["linear"] == counts["ssm"] == counts["ssm_einsum"] == 0  # all in Mamba1D.extra_flops


def test_meta_counting_matches_a_real_forward(monkeypatch):
    lms, guide = network_inputs({"bands": 6, "guide_bands": 3}, 20)
    model = tiny()
    real = flop_breakdown(model, (lms, guide))
    params, meta = _meta_counts(lambda: tiny(), 20, monkeypatch)
    assert params == count_params(model)
    assert meta == real


def test_mamba_extra_flops_and_causality():
    torch.manual_seed(0)
    block = Mamba1D(8, d_out=5, d_state=4, scan_backend="chunked")
    x = torch.rand(2, 8, 11)  # channels first: (batch, d_model, L)
    with torch.no_grad():
        y = block(x)
        assert y.shape == (2, 5, 11)
        x2 = x.clone()
        x2[..., 7] += 1.0
        y2 = block(x2)
    # tokens before the change do not see it (causal conv and scan); later ones do
    torch.testing.assert_close(y2[..., :7], y[..., :7], rtol=0, atol=0)
    assert not torch.allclose(y2[..., 7:], y[..., 7:])
    d, n, r = block.d_inner, block.d_state, block.dt_rank
    assert (d, r) == (16, 1)
    projections = 2 * 11 * (8 * 2 * d + d * (r + 2 * n) + r * d + d * 5)
    depthwise = 2 * d * 11 * block.d_conv
    assert block.extra_flops((x,), {}, y) == 9 * 2 * d * 11 * n + 2 * d * 11 + projections + depthwise
    torch.testing.assert_close(block.A_log[:, -1].exp(), torch.full((d,), float(n)))
    # the projections are the Linear layers' maps, the depthwise convolution the Conv1d's (causal), channels first
    with torch.no_grad():
        xz = block.in_proj(x.transpose(1, 2)).transpose(1, 2)
        torch.testing.assert_close(block._project(block.in_proj, x), xz)
        u = xz[:, :d]
        causal = block.conv1d(F.pad(u, (block.d_conv - 1, 0)))
        torch.testing.assert_close(block._causal_conv(u), causal, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(block._causal_conv(u[..., :2]), causal[..., :2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["spatial", "spectral"])
def test_local_branch_is_the_3d_convolution(kind, monkeypatch):
    """The 2D reformulation computes the paper's 3x3x1 / 1x1x3 3D convolutions, and its inference chunks agree."""
    torch.manual_seed(0)
    local = Local3D(kind, hidden=3)
    kernel = (1, 3, 3) if kind == "spatial" else (3, 1, 1)
    convs = [torch.nn.Conv3d(1, 3, kernel, padding=tuple(k // 2 for k in kernel)),
             torch.nn.Conv3d(3, 1, kernel, padding=tuple(k // 2 for k in kernel))]
    with torch.no_grad():
        for conv, layer in zip(convs, (local.body[0], local.body[2]), strict=True):
            conv.weight.copy_(layer.weight.view_as(conv.weight))
            conv.bias.copy_(layer.bias)
        x = torch.rand(2, 5, 7, 6)
        reference = convs[1](F.leaky_relu(convs[0](x.unsqueeze(1)), ssrfn.NEGATIVE_SLOPE)).squeeze(1)
        torch.testing.assert_close(local(x), reference, rtol=1e-5, atol=1e-6)
        monkeypatch.setattr(Local3D, "CHUNK", 3 * 7 * 6)  # a few slices (or pixels) per chunk
        torch.testing.assert_close(local(x), reference, rtol=1e-5, atol=1e-6)


def test_interaction_merge_is_a_1x1x1_convolution():
    torch.manual_seed(0)
    block = InteractionSR(4, "spatial", stages=1, conv3d_channels=2, d_state=4, scan_backend="chunked").eval()
    merge = torch.nn.Conv3d(2, 1, 1, bias=False)
    with torch.no_grad():
        merge.weight.copy_(block.merge_weight.view_as(merge.weight))
        x = torch.rand(1, 4, 5, 6)
        local, glob = block.local[0](x), block.globals[0](x)
        f_local, f_global = torch.sigmoid(local) * glob + local, torch.sigmoid(glob) * local + glob
        expected = merge(torch.stack([f_local, f_global], 1)).squeeze(1)
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-6)
    assert block.extra_flops((x,), {}, expected) == 2 * expected.numel()


def test_paper_configuration_forward_small():
    torch.manual_seed(0)
    model = SSRFN(100, 4, 4, scan_backend="chunked").eval()
    lms, guide = network_inputs(model, 10)  # padded to 12, a 3 x 3 HSI: the cost is the 37 M weights' traffic
    with torch.no_grad():
        out = model(lms, guide)
    assert out.shape == (1, 100, 10, 10) and torch.isfinite(out).all()
    assert (model.bands, model.guide_bands, model.ratio, model.size_multiple) == (100, 4, 4, 4)


# ----------------------------------------------------------------------------------------------------------------
# Shapes, checks, gradients
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [3, 4])
@pytest.mark.parametrize("size", [(30, 36), (31, 25)])
def test_tiny_odd_sizes(ratio, size):
    model = tiny(bands=7, ratio=ratio, guide_bands=4).eval()
    lms, guide = pair(7, 4, size, batch=1)
    with torch.no_grad():
        out = model(lms, guide)
    assert out.shape == lms.shape and torch.isfinite(out).all()


def test_input_checks_and_residual_flag():
    model = tiny().eval()
    lms, guide = pair(size=(16, 16))
    with pytest.raises(ValueError, match="expects"):
        model(lms[:, :5], guide)
    with pytest.raises(ValueError, match="expects"):
        model(lms, guide[..., :8, :8])
    plain = tiny(residual=False).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(lms, guide), plain(lms, guide) + lms)


def test_gradients_reach_every_parameter():
    model = tiny().train()
    lms, guide = pair(size=(20, 16))
    model(lms, guide).square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_inference_is_deterministic():
    lms, guide = pair(size=(16, 16))
    a, b = tiny(seed=3).eval(), tiny(seed=3).eval()
    with torch.no_grad():
        first = a(lms, guide)
        assert torch.equal(first, a(lms, guide))
        assert torch.equal(first, b(lms, guide))


# ----------------------------------------------------------------------------------------------------------------
# Scan paths
# ----------------------------------------------------------------------------------------------------------------


def test_every_scan_takes_the_backend(monkeypatch):
    seen = []
    original = ssrfn.selective_scan

    def spy(*args, **kwargs):
        seen.append(kwargs.get("backend"))
        return original(*args, **kwargs)

    monkeypatch.setattr(ssrfn, "selective_scan", spy)
    model = tiny().train()
    model(*pair(size=(12, 12)))
    # DFE (1 unit) x 3 inputs, CFE x 2 iterations, SpaR and SpeR 1 stage each, FFM 6 branches
    assert seen == ["chunked"] * 13


# ----------------------------------------------------------------------------------------------------------------
# Tiling and training
# ----------------------------------------------------------------------------------------------------------------


def _tiled(model: SSRFN, lms, guide, core: int, halo: int):
    """What the pipeline does: cores grown by the halo (clipped at the image), each tile run alone, cores kept."""
    height, width = lms.shape[-2:]
    out = torch.zeros_like(lms)
    for y0 in range(0, height, core):
        for x0 in range(0, width, core):
            ty0, tx0 = max(0, y0 - halo), max(0, x0 - halo)
            ty1, tx1 = min(height, y0 + core + halo), min(width, x0 + core + halo)
            tile = model(lms[..., ty0:ty1, tx0:tx1], guide[..., ty0:ty1, tx0:tx1])
            out[..., y0:y0 + core, x0:x0 + core] = tile[..., y0 - ty0:y0 - ty0 + core, x0 - tx0:x0 - tx0 + core]
    return out


def test_tiled_inference_matches_the_whole_image_in_the_centre():
    """The scans see the whole tile, so tiles are not exact: with 24 px of context (tiles on the ratio grid) the
    centre of a 72 x 72 image stays within a few percent of the network's correction (output - lms). The image's
    left and right columns are left out: in row-major order a row's first pixels follow the previous row's last
    ones, which a tile narrower than the image changes (the raster wrap, not a seam)."""
    model = tiny(seed=1).eval()
    lms, guide = pair(size=(72, 72), batch=1, seed=2)
    with torch.no_grad():
        whole = model(lms, guide)
        tiled = _tiled(model, lms, guide, core=36, halo=24)
        blind = _tiled(model, lms, guide, core=36, halo=0)
    centre = (..., slice(12, 60), slice(12, 60))
    correction = (whole - lms)[centre].abs()
    error = (tiled - whole)[centre].abs()
    assert error.max() < 0.15 * correction.max()
    assert error.mean() < 0.03 * correction.mean()
    assert (blind - whole)[centre].abs().mean() > 10 * error.mean()  # the context is what keeps them close


def test_a_few_adam_steps_lower_the_mse():
    model = tiny(seed=0).train()
    sharp, guide = pair(size=(16, 16), batch=2, seed=5)
    # a reduced-resolution pair: the target is the sharp HSI, the input its block mean resampled back (nearest)
    lms = F.interpolate(F.avg_pool2d(sharp, 4), scale_factor=4, mode="nearest")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)  # the recipe's 1e-4 is for thousands of steps
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        loss = F.mse_loss(model(lms, guide), sharp)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.95 * losses[0] and losses[-1] < min(losses[:3]), losses


@pytest.mark.skipif(not scan_cpu.available(), reason="numba is not installed")
def test_compiled_and_chunked_scans_agree_inside_the_network():
    compiled = tiny(scan_backend="compiled")
    chunked = tiny(scan_backend="chunked", chunk=8)
    chunked.load_state_dict(compiled.state_dict())
    lms, guide = pair(size=(12, 16))
    for model in (compiled, chunked):
        model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(lms, guide), chunked(lms, guide), rtol=1e-4, atol=1e-5)
    grads = []
    for model in (compiled, chunked):
        model.train()
        model.zero_grad()
        model(lms, guide).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], rtol=1e-3, atol=1e-6, msg=name)
