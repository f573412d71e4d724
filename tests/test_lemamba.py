"""LE-Mamba: shapes for every configuration, residual structure, gradients, state sharing, size, scan path,
determinism; the FLOP counter; the registration and the ``spatialx models`` command."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch import nn

from spatialx.models import scan as scan_module
from spatialx.models import scan_cpu
from spatialx.models.flops import count_gflops, count_params, flop_breakdown, network_inputs, ss2d_flops
from spatialx.models.lemamba import LEMamba, LEVMBlock, window_merge, window_partition
from spatialx.models.registry import create_model, get_model_spec, model_config
from spatialx.models.ss2d import SS2D

CONFIGS = get_model_spec("lemamba").configs


pytestmark = pytest.mark.usefixtures("torch_single_thread")


def inputs(bands: int, height: int, width: int, guide_bands: int = 1, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(1, bands, height, width, generator=generator),
            torch.rand(1, guide_bands, height, width, generator=generator))


def small(**kw) -> LEMamba:
    """A narrow LE-Mamba with the full structure (3 levels, windows, both state flows) for fast checks."""
    kw = {"bands": 4, "width": 8, "seed": 0, **kw}
    return LEMamba(**kw)


def ss2d_layers(model: nn.Module) -> list[SS2D]:
    return [m for m in model.modules() if isinstance(m, SS2D)]


# ---------------------------------------------------------------------------------------------------------------
# Shapes, residual, windows
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", list(CONFIGS))
def test_forward_shapes_every_config(config):
    cfg = CONFIGS[config]
    model = LEMamba(**cfg, seed=0).eval()
    bands, guide = cfg["bands"], cfg.get("guide_bands", 1)
    with torch.no_grad():
        for height, width in ((32, 32), (40, 36)):
            lms, pan = inputs(bands, height, width, guide)
            out = model(lms, pan)
            assert out.shape == lms.shape
            assert torch.isfinite(out).all()


@pytest.mark.parametrize(("height", "width"), [(27, 33), (5, 3), (1, 1), (17, 64)])
def test_arbitrary_sizes_pad_and_crop(height, width):
    model = small().eval()
    lms, pan = inputs(4, height, width)
    with torch.no_grad():
        out = model(lms, pan)
    assert out.shape == lms.shape
    assert torch.isfinite(out).all()


def test_output_is_lms_plus_the_network_residual():
    model = small().eval()
    lms, pan = inputs(4, 24, 40)
    with torch.no_grad():
        out = model(lms, pan)
        # the end conv is Kaiming-initialised (as the authors'), so a fresh network is not the identity ...
        assert not torch.equal(out, lms)
        torch.testing.assert_close(out, lms + model.residual(lms, pan))
        # ... but everything goes through it: silence it and the output is lms exactly
        nn.init.zeros_(model.ending.weight)
        nn.init.zeros_(model.ending.bias)
        assert torch.equal(model(lms, pan), lms)


def test_input_checks():
    model = small().eval()
    with pytest.raises(ValueError, match="expects"):
        model(torch.zeros(1, 3, 16, 16), torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="expects"):
        model(torch.zeros(1, 4, 16, 16), torch.zeros(1, 1, 16, 8))
    with pytest.raises(ValueError, match="multiples"):
        model.residual(torch.zeros(1, 4, 12, 16), torch.zeros(1, 1, 12, 16))
    with pytest.raises(ValueError, match="one entry per level"):
        LEMamba(4, window_sizes=(8, None))


def test_window_partition_roundtrip_with_padding():
    x = torch.randn(2, 11, 13, 3)
    windows, padded = window_partition(x, (4, 5))
    assert padded == (12, 15)
    assert windows.shape == (2 * 3 * 3, 4, 5, 3)
    # the first window is the top-left corner; padding is zeros
    torch.testing.assert_close(windows[0], x[0, :4, :5])
    assert torch.equal(windows[8, 3], torch.zeros(5, 3))  # last window of the first image, padded row
    torch.testing.assert_close(window_merge(windows, padded, (11, 13)), x)


def test_local_branch_sees_only_its_window():
    torch.manual_seed(0)
    block = LEVMBlock(8, window_size=4, share_state=False).eval()
    x = torch.randn(1, 8, 8, 8)

    def local_only(t):
        return block.local_scale * window_merge(block.local(window_partition(t, (4, 4))[0]), (8, 8), (8, 8))

    with torch.no_grad():
        base = local_only(x)
        moved = x.clone()
        moved[:, 6, 6] += 1.0  # a pixel of the bottom-right window
        changed = (local_only(moved) - base).abs().amax(-1)
    assert changed[:, :4, :4].max() == 0 and changed[:, :4, 4:].max() == 0 and changed[:, 4:, :4].max() == 0
    assert changed[:, 4:, 4:].max() > 0


# ---------------------------------------------------------------------------------------------------------------
# Training signals and state sharing
# ---------------------------------------------------------------------------------------------------------------


def test_gradient_reaches_every_parameter():
    model = small(drop_path=0.0)
    lms, pan = inputs(4, 16, 16)
    model(lms, pan).square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    # zero-initialised gates (S2L alpha, skip scales) still learn: their own gradients are non-zero
    for name, p in model.named_parameters():
        if name.endswith(("state_alpha",)) or name.startswith("skip_scales"):
            assert p.grad.abs().sum() > 0, name
    # once the gates are open, every parameter gets a non-zero gradient
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("state_alpha") or name.startswith("skip_scales"):
                p.fill_(0.1)
    model.zero_grad()
    model(lms, pan).square().mean().backward()
    dead = [name for name, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not dead


def test_state_sharing_wiring():
    model = small()
    blocks = [b for b in model.modules() if isinstance(b, LEVMBlock)]
    assert len(blocks) == 2 * (2 + 1 + 1) + 1
    # adjacent flow: every block but the first receives the previous block's state
    assert blocks[0].prev_state_dim is None
    assert all(b.prev_state_dim == a.state_channels for a, b in itertools.pairwise(blocks))
    # skip-connected flow: the first decoder block of each level gets its encoder level's last state
    enc_last = [model.encoders[level][-1] for level in range(3)]
    for index, level in enumerate((2, 1, 0)):
        decoder = model.decoders[index]
        assert decoder[0].skip_state_dim == enc_last[level].state_channels
        assert all(b.skip_state_dim is None for b in decoder[1:])
    # only the global branch shares states
    assert all(not b.local.op.share_state for b in blocks if b.local is not None)
    shared = [b.global_block.op for b in blocks[1:]]
    assert all(op.share_state for op in shared)
    assert all(torch.equal(op.state_alpha, torch.zeros_like(op.state_alpha)) for op in shared)
    # the paper's ablations switch the flows off
    no_adjacent = small(adjacent_flow=False)
    blocks = [b for b in no_adjacent.modules() if isinstance(b, LEVMBlock)]
    assert all(b.prev_state_dim is None for b in blocks)
    assert sum(b.skip_state_dim is not None for b in blocks) == 3
    assert not any(op.share_state for op in ss2d_layers(small(share_state=False)))


def test_state_sharing_changes_the_output_once_alpha_is_nonzero():
    lms, pan = inputs(4, 16, 24)
    # the skip-connected flow alone (no adjacent flow): the top decoder's first block reads its encoder's state
    model = small(adjacent_flow=False).eval()
    with torch.no_grad():
        base = model(lms, pan)
        top_first = model.decoders[-1][0].global_block.op
        assert top_first.share_state and top_first.state_dim == model.encoders[0][-1].state_channels
        top_first.state_alpha.fill_(0.5)
        assert (model(lms, pan) - base).abs().max() > 1e-6
        top_first.state_alpha.zero_()
        assert torch.equal(model(lms, pan), base)
    # both flows, every gate open
    model = small().eval()
    with torch.no_grad():
        base = model(lms, pan)
        for op in ss2d_layers(model):
            if op.share_state:
                op.state_alpha.fill_(0.5)
        all_open = model(lms, pan)
    assert (all_open - base).abs().max() > 1e-6
    assert torch.isfinite(all_open).all()


def test_inference_path_matches_the_autograd_path():
    """Under inference mode the CPU runs its own path (SS2D's four scans in one compiled pass, local windows without
    state buffers, output projections written in place, the guide's 1x1 conv as a linear map): same result as the
    autograd path, every state gate and feature skip open."""
    lms, pan = inputs(4, 24, 16)
    model = small().eval()
    with torch.no_grad():
        for op in ss2d_layers(model):
            if op.share_state:
                op.state_alpha.normal_(0.0, 0.5)
        for scale in model.skip_scales:
            scale.fill_(0.7)
    with torch.inference_mode():
        fast = model(lms, pan)
    slow = model(lms, pan.requires_grad_())
    torch.testing.assert_close(fast, slow.detach(), rtol=1e-5, atol=1e-5)


def test_guide_injection_runs_its_conv_when_hooked():
    """The guide's 1x1 conv runs as a linear map, unless a hook (the FLOP counter) watches it; same numbers."""
    block = LEVMBlock(8, guide_bands=3, window_size=4)
    guide = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        direct = block.inject(guide)
        seen = []
        block.inject.proj.register_forward_hook(lambda *args: seen.append(1))
        hooked = block.inject(guide)
    assert seen == [1] and direct.shape == (2, 12, 10, 8) and direct.is_contiguous()
    torch.testing.assert_close(direct, hooked, rtol=1e-6, atol=1e-6)


def test_blocks_return_global_states_of_the_right_shape():
    model = small().eval()
    block = model.encoders[0][0]
    x = torch.randn(2, 16, 16, 8)
    guide = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        y, state = block(x, guide)
        assert y.shape == x.shape
        assert state.shape == (2, 4, block.state_channels, 32)
        nxt = model.encoders[0][1]
        _, state2 = nxt(y, guide, prev_state=state)
        assert state2.shape == (2, 4, nxt.state_channels, 32)
        with pytest.raises(ValueError, match="does not fit"):
            nxt(y, guide, prev_state=state[:, :, :3])


# ---------------------------------------------------------------------------------------------------------------
# Size, scan path, determinism
# ---------------------------------------------------------------------------------------------------------------


def test_wv3_parameters_match_the_paper():
    params = count_params(LEMamba(**CONFIGS["wv3"]))
    assert abs(params - 0.74e6) / 0.74e6 < 0.10, params
    hmif = count_params(LEMamba(**CONFIGS["hmif"]))
    assert abs(hmif - 3.158e6) / 3.158e6 < 0.10, hmif


def test_cpu_scan_paths_are_used_on_cpu(monkeypatch):
    """The compiled kernel when numba imports, else the chunked scan; never mamba_ssm's CUDA kernel."""
    calls = []
    name = "selective_scan_compiled" if scan_cpu.available() else "selective_scan_chunked"
    path = getattr(scan_module, name)

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return path(*args, **kwargs)

    monkeypatch.setattr(scan_module, name, spy)
    if scan_cpu.available():  # SS2D's four-direction inference pass
        monkeypatch.setattr(scan_cpu, "ss2d_direction_scan", lambda *a, _f=scan_cpu.ss2d_direction_scan, **k:
                            (a[0] == 0 and calls.append(a[1].shape)) or _f(*a, **k))
    monkeypatch.setattr(scan_module, "mamba_selective_scan_fn", lambda: pytest.fail("CUDA kernel called on CPU"))
    model = small().eval()
    with torch.no_grad():
        model(*inputs(4, 16, 16))
    assert len(calls) == len(ss2d_layers(model)) == 9 + 6  # a global scan per block, a local one per windowed block


def test_deterministic_given_a_seed():
    torch.manual_seed(123)
    a = small(seed=7)
    torch.manual_seed(456)  # the global RNG does not matter with a seed ...
    b = small(seed=7)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name
    lms, pan = inputs(4, 24, 16)
    a.eval()
    b.eval()
    with torch.no_grad():
        assert torch.equal(a(lms, pan), b(lms, pan))
        assert torch.equal(a(lms, pan), a(lms, pan))
    # ... and the construction leaves the global RNG alone
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    small(seed=7)
    assert torch.equal(torch.rand(3), expected)
    # without a seed the global RNG decides
    torch.manual_seed(3)
    c = small(seed=None)
    torch.manual_seed(3)
    d = small(seed=None)
    assert all(torch.equal(x, y) for x, y in zip(c.parameters(), d.parameters(), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters(), strict=True))


# ---------------------------------------------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------------------------------------------


class ConvToy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False)
        self.down = nn.Conv2d(8, 16, 2, stride=2)
        self.head = nn.Linear(16, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, x, guide):
        y = self.down(self.dw(torch.relu(self.conv(x))))
        return self.norm(self.head(y.permute(0, 2, 3, 1))) + guide.mean()


def test_flops_of_a_conv_toy_by_hand():
    x, guide = torch.rand(2, 3, 16, 12), torch.rand(2, 1, 16, 12)
    hand_conv = 2 * 16 * 12 * 8 * 3 * 9 + 2 * 16 * 12 * 8 * 1 * 25 + 2 * 8 * 6 * 16 * 8 * 4
    hand_linear = 2 * 8 * 6 * 4 * 16
    hand_norm = 2 * 8 * 6 * 4 * 5
    counts = flop_breakdown(ConvToy(), (x, guide))
    assert counts["conv"] == hand_conv
    assert counts["linear"] == hand_linear
    assert counts["norm"] == hand_norm
    assert counts["ssm"] == counts["ssm_einsum"] == counts["extra"] == 0
    assert counts["total"] == hand_conv + hand_linear + hand_norm
    assert count_gflops(ConvToy(), (x, guide)) == pytest.approx((hand_conv + hand_linear + hand_norm) / 1e9)


def test_flops_of_ss2d_and_extra_hooks():
    layer = SS2D(8, d_state=4, ssm_ratio=2.0, d_conv=3, share_state=True).eval()
    x = torch.randn(1, 6, 5, 8)
    d, n, r, length, k = 16, 4, 1, 30, 4
    scan = 9 * k * d * length * n + k * d * length
    einsums = k * length * d * (r + 2 * n) + k * length * r * d
    assert ss2d_flops(layer, x, shared_state=False) == (scan, einsums)
    assert ss2d_flops(layer, x, shared_state=True) == (scan, einsums + k * d * n * length)
    counts = flop_breakdown(layer, (x,))
    assert counts["ssm"] == scan and counts["ssm_einsum"] == einsums
    assert counts["linear"] == length * 8 * 2 * d + length * d * 8  # in_proj, out_proj
    assert counts["conv"] == length * d * 9  # depthwise 3x3
    state = torch.randn(1, 4, d, n)
    shared = flop_breakdown(layer, (x,), prev_state=state)
    assert shared["ssm_einsum"] == einsums + k * d * n * length
    assert shared["conv"] == counts["conv"] + k * d * d * n + k * n * d * length  # the two grouped 1x1 conv1d

    class Custom(nn.Module):
        def forward(self, x):
            return x * 2

        def extra_flops(self, args, kwargs, output):
            return output.numel()

    assert flop_breakdown(Custom(), torch.zeros(3, 7))["extra"] == 21


def test_lemamba_flops_near_the_paper():
    model = LEMamba(**CONFIGS["wv3"])
    lms, pan = network_inputs(CONFIGS["wv3"], 64)
    assert lms.shape == (1, 8, 64, 64) and pan.shape == (1, 1, 64, 64)
    counts = flop_breakdown(model, (lms, pan))
    assert counts["ssm"] > 0 and counts["ssm_einsum"] > 0
    assert abs(counts["total"] / 1e9 - 3.58) / 3.58 < 0.10, counts
    assert model.training  # the counter restores the mode


# ---------------------------------------------------------------------------------------------------------------
# Registry and ``spatialx models``
# ---------------------------------------------------------------------------------------------------------------


def test_registered_with_every_config():
    spec = get_model_spec("lemamba")
    assert spec.entry == "spatialx.models.lemamba:LEMamba"
    assert spec.tasks == ("pansharpen", "hmif")
    assert spec.paper["params"] == 0.74e6 and spec.paper["gflops"] == 3.58 and spec.paper["config"] == "wv3"
    assert spec.config_for_bands(31) == "hmif"
    assert spec.config_for_bands(8) == "wv3"
    model = create_model("lemamba", "hmif", seed=0)
    assert isinstance(model, LEMamba) and model.guide_bands == 3 and model.bands == 31 and model.ratio == 8
    assert json.loads(json.dumps(model_config("lemamba", "hmif"))) == model_config("lemamba", "hmif")


def test_models_command_writes_json(tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from spatialx.cli import models as models_cli

    monkeypatch.setattr(models_cli, "FLOPS_SIZE", 16)  # the measurement, not the listing, is what costs time
    app = typer.Typer()
    app.command()(models_cli.command)
    out = tmp_path / "models.json"
    result = CliRunner().invoke(app, ["--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "lemamba" in result.output
    data = json.loads(out.read_text())
    lemamba = data["lemamba"]
    assert lemamba["params"] == count_params(LEMamba(**CONFIGS["wv3"]))
    assert lemamba["tasks"] == ["pansharpen", "hmif"]
    assert 0 < lemamba["gflops"] < 3.58 / 8  # 16 x 16 here: 1/16 of the pixels of 64 x 64
    from spatialx.methods import list_methods

    classical = [m.name for m in list_methods() if m.kind == "classical"]
    assert classical
    for name in classical:  # one entry per name, with every task any of its implementations serves
        tasks = list(dict.fromkeys(t for m in list_methods() if m.name == name for t in m.tasks))
        assert data[name] == {"params": 0, "gflops": None, "tasks": tasks}
    assert data["gsa"]["tasks"] == ["pansharpen", "hmif"]
