"""RWKVFusion: shapes (pansharpening and HMIF, odd sizes), residual and clipping, scans, gradients, size against the
paper, tiled against whole-image inference, a few training steps, WKV paths inside the network, determinism."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spatialx.models import wkv as wkv_module
from spatialx.models.flops import count_params, flop_breakdown, network_inputs
from spatialx.models.rwkvfusion import BRWKVBlock, RWKVFusion, SpatialMix, token_shift
from spatialx.models.wkv import wkv_flops

pytestmark = pytest.mark.usefixtures("torch_single_thread")

#: The configurations suggested for the model registry (pansharpening WV3 / QB-GF2, HMIF with an RGB guide).
CONFIGS = {"wv3": {"bands": 8, "ratio": 4}, "qb": {"bands": 4, "ratio": 4},
           "hmif": {"bands": 31, "ratio": 8, "guide_bands": 3}}


def inputs(bands: int, height: int, width: int, guide_bands: int = 1, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(1, bands, height, width, generator=generator),
            torch.rand(1, guide_bands, height, width, generator=generator))


def small(**kw) -> RWKVFusion:
    """The full structure (3 levels, [2, 1, 1] + 1 blocks, both scan pairs) at one head per scan, for fast checks."""
    return RWKVFusion(**{"bands": 4, "widths": (32, 32, 32, 32), "seed": 0, **kw})


def blocks(model: RWKVFusion) -> list[BRWKVBlock]:
    return [m for m in model.modules() if isinstance(m, BRWKVBlock)]


# ---------------------------------------------------------------------------------------------------------------
# Shapes, residual, clipping
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", list(CONFIGS))
def test_output_shapes_at_an_odd_size(config):
    cfg = CONFIGS[config]
    model = RWKVFusion(**cfg, seed=0).eval()
    assert (model.bands, model.ratio, model.guide_bands) == (cfg["bands"], cfg["ratio"], cfg.get("guide_bands", 1))
    lms, guide = inputs(cfg["bands"], 60, 68, cfg.get("guide_bands", 1))
    with torch.no_grad():
        out = model(lms, guide)
    assert out.shape == lms.shape
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize(("height", "width"), [(13, 7), (1, 1), (8, 24)])
def test_any_size_is_padded_and_cropped(height, width):
    model = small().eval()
    lms, pan = inputs(4, height, width)
    with torch.no_grad():
        out = model(lms, pan)
    assert out.shape == lms.shape and torch.isfinite(out).all()


def test_output_is_lms_plus_the_head_clipped_in_eval_only():
    model = small()
    lms, pan = inputs(4, 16, 24)
    with torch.no_grad():
        modal = torch.cat([lms, pan], 1)
        model.eval()
        torch.testing.assert_close(model(lms, pan), (model.residual(modal) + lms).clamp(0, 1))
        torch.nn.init.zeros_(model.head.weight)
        torch.nn.init.zeros_(model.head.bias)
        assert torch.equal(model(lms, pan), lms)  # everything goes through the head
        model.head.bias.fill_(2.0)
        assert torch.equal(model(lms, pan), torch.ones_like(lms))  # clipped for inference ...
        model.train()
        torch.testing.assert_close(model(lms, pan), lms + 2.0)  # ... but not in training, where it would stop gradients


def test_input_checks():
    model = small().eval()
    with pytest.raises(ValueError, match="expects"):
        model(torch.zeros(1, 3, 16, 16), torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="expects"):
        model(torch.zeros(1, 4, 16, 16), torch.zeros(1, 1, 16, 8))
    with pytest.raises(ValueError, match="multiples"):
        model.residual(torch.zeros(1, 5, 12, 16))
    with pytest.raises(ValueError, match="one entry per level"):
        RWKVFusion(4, widths=(32, 64))
    with pytest.raises(ValueError, match="multiple of the head size"):
        RWKVFusion(4, widths=(48, 64, 64, 64))


# ---------------------------------------------------------------------------------------------------------------
# Scans, token shift, structure
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_orders_and_their_inverse(reverse):
    mix = SpatialMix(32, reverse=reverse)
    height, width = 3, 5
    index = torch.arange(height * width, dtype=torch.float32).view(1, height, width, 1).expand(1, height, width, 64)
    seq = mix._scan(index.contiguous())
    rows = torch.arange(height * width, dtype=torch.float32)  # row-major: pixel (i, j) is i * W + j
    cols = torch.arange(height * width).view(height, width).t().reshape(-1).float()  # column-major
    if reverse:
        rows, cols = rows.flip(0), cols.flip(0)
    assert torch.equal(seq[0, :, 0], rows) and torch.equal(seq[0, :, 40], cols)
    x = torch.randn(2, height, width, 64)
    assert torch.equal(mix._unscan(mix._scan(x), height, width), x)


def test_blocks_alternate_the_scan_pair():
    model = small()
    found = blocks(model)
    assert len(found) == 2 * (2 + 1 + 1) + 1
    assert [b.spatial.reverse for b in found] == [i % 2 == 1 for i in range(len(found))]
    assert all(b.spatial.wkv.heads == 2 for b in found)  # one head of 32 per scan at width 32


def test_token_shift_takes_the_four_neighbours():
    x = torch.randn(1, 4, 5, 8)
    out = token_shift(x)
    torch.testing.assert_close(out[0, 1, 2, :2], x[0, 1, 1, :2])  # from the left
    torch.testing.assert_close(out[0, 1, 2, 2:4], x[0, 1, 3, 2:4])  # from the right
    torch.testing.assert_close(out[0, 1, 2, 4:6], x[0, 0, 2, 4:6])  # from above
    torch.testing.assert_close(out[0, 1, 2, 6:], x[0, 2, 2, 6:])  # from below
    assert out[0, :, 0, :2].abs().max() == 0 and out[0, -1, :, 6:].abs().max() == 0  # zeros past the border


def test_fresh_blocks_start_with_open_gates_and_no_modulation():
    block = small().encoders[0][0]
    bias = block.modulation.bias.view(6, -1)
    assert torch.equal(block.modulation.weight, torch.zeros_like(block.modulation.weight))
    assert torch.equal(bias[[2, 5]], torch.ones_like(bias[[2, 5]]))
    assert torch.equal(bias[[0, 1, 3, 4]], torch.zeros_like(bias[[0, 1, 3, 4]]))


# ---------------------------------------------------------------------------------------------------------------
# Training signals
# ---------------------------------------------------------------------------------------------------------------


def test_gradient_reaches_every_parameter():
    model = small()
    lms, pan = inputs(4, 16, 16)
    model(lms, pan).square().mean().backward()
    dead = [name for name, p in model.named_parameters()
            if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not dead


def test_a_few_steps_lower_the_l1_loss():
    """A tiny synthetic pansharpening pair: the MS is the blurred truth, the PAN its band mean."""
    generator = torch.Generator().manual_seed(0)
    gt = F.interpolate(torch.rand(2, 4, 6, 6, generator=generator), size=(24, 24), mode="bicubic",
                       align_corners=False).clamp(0, 1)
    lms = F.interpolate(F.avg_pool2d(gt, 4), size=(24, 24), mode="bilinear", align_corners=False)
    pan = gt.mean(1, keepdim=True)
    model = small(seed=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(10):
        loss = F.l1_loss(model(lms, pan), gt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(F.l1_loss(lms, gt).item(), rel=0.25)  # a fresh network starts near lms
    assert max(losses[-3:]) < 0.92 * losses[0], losses


# ---------------------------------------------------------------------------------------------------------------
# Size, tiling, WKV paths, determinism
# ---------------------------------------------------------------------------------------------------------------


def test_wv3_size_matches_the_paper():
    model = RWKVFusion(**CONFIGS["wv3"], seed=0)
    params = count_params(model)
    assert abs(params - 1.21e6) / 1.21e6 < 0.10, params
    counts = flop_breakdown(model, network_inputs(model, 64))
    assert abs(counts["total"] / 1e9 - 2.34) / 2.34 < 0.10, counts
    # the recurrence, counted analytically: 9 blocks, 4 heads each (2 scans x 64 / 32), L = 64^2 / 4^level
    lengths = [64 * 64] * 4 + [32 * 32] * 2 + [16 * 16] * 2 + [8 * 8]
    assert counts["extra"] == sum(wkv_flops(1, length, 4, 32) for length in lengths)
    assert model.training  # the counter restores the mode


def test_tiled_inference_matches_the_whole_image_away_from_seams():
    """2 x 2 tiles of 48 px with 16 px of context each side (clipped at the image border). The scans and the
    MFM's pooled gate see a whole tile, so tiles are not exact anywhere; the differences stay small."""
    model = small().eval()
    generator = torch.Generator().manual_seed(1)
    pan = F.interpolate(torch.rand(1, 1, 12, 12, generator=generator), size=(96, 96), mode="bicubic",
                        align_corners=False).clamp(0, 1)
    lms = (pan * torch.tensor([0.8, 0.9, 1.0, 1.1]).view(1, 4, 1, 1)).clamp(0, 1)
    core, halo = 48, 16
    with torch.no_grad():
        whole = model(lms, pan)
        tiled = torch.empty_like(whole)
        for y in (0, core):
            for x in (0, core):
                y0, y1, x0, x1 = max(0, y - halo), min(96, y + core + halo), max(0, x - halo), min(96, x + core + halo)
                out = model(lms[..., y0:y1, x0:x1], pan[..., y0:y1, x0:x1])
                tiled[..., y:y + core, x:x + core] = out[..., y - y0:y - y0 + core, x - x0:x - x0 + core]
    detail = (whole - lms).abs().max()
    assert 0.01 < detail < 0.5, detail  # the comparison means something: a real residual, not clipped away
    centre = (tiled - whole)[..., 16:80, 16:80].abs().max()
    assert centre < 0.05 * detail, (centre, detail)


@pytest.mark.skipif(not wkv_module.compiled_available(), reason="numba is not importable")
def test_wkv_paths_inside_the_network(monkeypatch):
    """Inference runs the compiled kernel, training the chunked form; both give the same network output."""
    calls = []
    for name in ("wkv_compiled", "wkv_chunked"):
        original = getattr(wkv_module, name)
        monkeypatch.setattr(wkv_module, name, lambda *a, _n=name, _f=original, **k: calls.append(_n) or _f(*a, **k))
    model = small().eval()
    lms, pan = inputs(4, 16, 24)
    with torch.no_grad():
        compiled = model(lms, pan)
    assert set(calls) == {"wkv_compiled"} and len(calls) == 9
    calls.clear()
    chunked = model(lms, pan)  # gradients on: the chunked form
    assert set(calls) == {"wkv_chunked"} and len(calls) == 9
    torch.testing.assert_close(compiled, chunked, rtol=1e-5, atol=1e-5)
    forced = small(wkv_backend="chunked").eval()
    with torch.no_grad():
        torch.testing.assert_close(forced(lms, pan), compiled, rtol=1e-5, atol=1e-5)


def test_deterministic_given_a_seed():
    torch.manual_seed(123)
    a = small(seed=7)
    torch.manual_seed(456)
    b = small(seed=7)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name
    lms, pan = inputs(4, 16, 16)
    a.eval()
    b.eval()
    with torch.no_grad():
        assert torch.equal(a(lms, pan), b(lms, pan))
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    small(seed=7)
    assert torch.equal(torch.rand(3), expected)  # building with a seed leaves the global RNG alone
