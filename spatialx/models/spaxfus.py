"""SpaXFus (He, Lin, Zheng, Yuan, Li, Zhang, Zhu; Remote Sensing of Environment 2025): a deep unfolding of the
spatial-X degradation model with the spatial-X intrinsic interaction prior (SpaXIP) as its proximal step.

``SpaXFus(bands, ratio)(high_res, low_res) -> fused``: ``high_res`` (B, guide_bands, H, W) -- the PAN for
pansharpening --, ``low_res`` (B, bands, H / ratio, W / ratio), **not** pre-upsampled (notes, "SpaXFus (authors'
code)"); the output is (B, bands, H, W). H and W must be multiples of ``ratio``.

:class:`SpaXFusOnGrid` is what the model registry builds and the pipeline runs: ``forward(lms, guide)`` takes the
low-resolution image already resampled onto the guide's grid, as every spatialx network (the fusion methods, the
training loop, scene adaptation and :mod:`spatialx.models.flops` all call ``model(lms, guide)``), pads both to a
multiple of ``ratio`` (replicate), decimates ``lms`` back to the native scale by the mean of each ``ratio x ratio``
block (``avg_pool2d``), runs :class:`SpaXFus` and crops. For an MS resampled by a mean-preserving kernel onto a
grid nested in the MS one this recovers the MS (exactly for nearest/area resampling with tiles on the MS grid);
otherwise it is the area-mean of the resampled MS, a slightly smoothed MS at its own scale. Reading the native MS
from the tile would need the pipeline to hand over both grids, which it does not yet.

Network (paper Sec. 4.2, Eqs. (25)-(36); the notes' "SpaXFus (authors' code)")::

    X_1 = GELU(conv1x1(cat(CAM(F(high)), CAM(up(low)))))                   # IFus, Eq. (36), notes
    stage k = 1..K (unshared weights, each with its own F_k, G_k, down_k, up_k, CAMs and prior):
        X_{k+1} = X_k - CAM_d(X_k)                                          # memory, delta X = X - eps mu X
                + CAM_a(up_k(low))       - CAM_b(up_k(down_k(X_k)))         # spatial restoration / degradation
                + CAM_c(F_k(high))       - CAM_e(F_k(G_k(X_k)))             # X-domain restoration / degradation
                + CAM_p(SpaXIP_k(X_k))                                      # prior (proximal) term, Eq. (33)
    out = ODConv1x1(cat(X_2, ..., X_{K+1}))                                  # no residual (notes)

* The memory term is written ``X - CAM(X)`` as in the authors' code (the notes' update rule), which is the paper's
  ``delta X_k`` with ``delta = 1 - eps mu`` (Eq. (23)); the paper's Eq. (30) ``CAM_delta(X_k)`` is
  ``memory="paper"``.
* ``F`` = PConv^-1 (guide channels -> bands: 1x1 conv, GELU, a residual block of two grouped 3x3 convs with a GELU
  between, ``groups`` groups), ``G`` = PConv / Phi_X (bands -> guide channels: 1x1 conv + GELU) (notes).
* ``operators="paper"`` (default, Sec. 4.2): ``down`` a ``ratio x ratio`` conv with stride ``ratio`` (SConv),
  ``up`` the transposed conv of the same shape (DConv). ``operators="code"``: max-pool down, bilinear up (the
  authors' code, per the notes), parameter-free.
* CAM: channel attention (avg- and max-pooled descriptors through a shared 1x1 -> ReLU -> 1x1, summed, sigmoid,
  multiplied onto the input) (notes). Its hidden width ``max(cam_min_hidden, channels // cam_reduction)`` is ours
  (4 and 4: with 4 or 8 bands the usual reduction of 16 would leave no channel).
* SpaXIP (Sec. 4.3, notes): 1x1 conv bands -> ``mid``, ``sxm_blocks`` SXM blocks, the XIM per-channel weight on the
  features, 1x1 conv ``mid`` -> bands (Eq. (48): ``Z = Conv(J) o F^n``).
* SXM block, channels-last (Eqs. (41)-(44), notes)::

      x = s1 * x + SS2D(LN(x))     # d_state 8, ssm_ratio 2, d_conv 3: in_proj splits the two branches, the
                                   # scan branch through the 4-direction selective scan, gated by SiLU(z), out_proj
      x = s2 * x + CAB(LN(x))      # CEB: conv3x3 C -> C/3, GELU, conv3x3 -> C, squeeze-excitation

  ``s1``, ``s2`` per-channel scales initialised to 1 (the paper's learnable alpha, Eq. (43)). The paper's "patch
  ensemble" of SXSSM (Fig. 4) is not in the authors' code the notes describe; the SS2D scans the whole tile.
  The SS2D is :class:`spatialx.models.ss2d.SS2D`, so the CUDA kernel, the compiled numba kernel and the chunked
  pure-PyTorch scan (``scan_backend``/``chunk``) are shared with LE-Mamba.
* XIM (Sec. 4.3.4, Eqs. (45)-(47), notes): per-channel statistics ``s = [max, mean, min, std]`` over H x W, (B, mid,
  4); ``LN`` then one Linear 4 -> 2 ``xim_inner`` split into the two Linear+SiLU branches; the scan branch runs a
  selective scan **along the channel order** (sequence length ``mid``), forward and reverse with their own
  parameters (one :func:`spatialx.models.scan.selective_scan` call, the two directions as groups of B and C), the
  two outputs summed in channel order (the "channel ensemble"), gated by the other branch, Linear back to 4, plus
  ``alpha * s``; CEB (LN then squeeze-excitation over the channels, residual); a 1x1 conv1d 4 -> 1 gives the
  per-channel weight (no sigmoid, as Eq. (48)). The paper's grouping of similar channels before the permutation
  (Fig. 5) is left out: the notes' code scans the channel order as it is.
* ODConv head (Li, Zhou, Yao, ICLR 2022), 1x1 with 4 kernels (notes): global average pool -> 1x1 conv to
  ``max(16, C_in / 16)`` -> ReLU -> four heads: input-channel and output-channel attentions (sigmoid), spatial
  attention over the kernel's k x k taps (sigmoid; skipped for k = 1, as ODConv does), kernel attention (softmax,
  temperature 1). The per-sample kernel is the attention-weighted sum of the 4 kernels. ODConv's BatchNorm after
  the first 1x1 conv is left out (the tiles of scene adaptation come in batches of a few).

Initialisation: PyTorch's defaults for the convolutions and Linear layers, the SSM parameters as Mamba (A_log =
log(1..N), D = 1, dt log-uniform in [1e-3, 0.1] through the inverse softplus of its bias), ODConv's kernels Kaiming
normal (fan-out) as its code.

Configurations (:mod:`spatialx.models.zoo`): pansharpening ``wv3`` (8 bands), ``qb`` and ``gf2`` (4 bands), ratio 4,
``mid`` 48, ``groups`` 4 (the authors' GF2 configuration; WV3's 8 bands take the same 4 groups), K = 9 stages, 4 SXM
blocks. HMIF: Chikusei (4 -> 128 bands, mid 48, groups 1), any band count. PolSAR: 2 -> 9 channels, ratio 2, mid 96,
groups 3, with the single-pol intensity as its one guide band (the fusion method scales a SAR scene by its level,
:mod:`spatialx.methods.network`). Spatio-temporal: 4 -> 8 channels, ratio 16, mid 48, groups 2 (the fine image at
t1 the guide, the coarse images of t1 and t2 the low-resolution input, Landsat t1 and t2 the output; the stfuse
adapter of :mod:`spatialx.methods.network` keeps the t2 half), any band count.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spatialx.models.scan import selective_scan
from spatialx.models.ss2d import SS2D, at_least_fp32

__all__ = [
    "CAB",
    "XIM",
    "ChannelAttention",
    "ChannelSSM",
    "ODConv2d",
    "SXMBlock",
    "SpaXFus",
    "SpaXFusOnGrid",
    "SpaXIP",
]

OPERATORS = ("paper", "code")
MEMORY = ("code", "paper")


# ----------------------------------------------------------------------------------------------------------------
# Attention blocks
# ----------------------------------------------------------------------------------------------------------------


class ChannelAttention(nn.Module):
    """CAM: ``x * sigmoid(mlp(avgpool(x)) + mlp(maxpool(x)))``, the MLP two shared 1x1 convs with a ReLU."""

    def __init__(self, channels: int, reduction: int = 4, min_hidden: int = 4) -> None:
        super().__init__()
        hidden = max(min_hidden, channels // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        peak = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(avg + peak)


class CAB(nn.Module):
    """Channel attention block on channels-last ``x``: conv3x3 C -> C/compress, GELU, conv3x3 -> C, then
    squeeze-excitation (avg pool, 1x1 C -> max(1, C/squeeze), ReLU, 1x1 back, sigmoid)."""

    def __init__(self, channels: int, compress: int = 3, squeeze: int = 16) -> None:
        super().__init__()
        inner = max(1, channels // compress)
        hidden = max(1, channels // squeeze)
        self.body = nn.Sequential(nn.Conv2d(channels, inner, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(inner, channels, 3, padding=1))
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                nn.Conv2d(hidden, channels, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x.permute(0, 3, 1, 2))
        return (y * self.se(y)).permute(0, 2, 3, 1)


# ----------------------------------------------------------------------------------------------------------------
# SpaXIP: SXM blocks and the X-intrinsic interaction module
# ----------------------------------------------------------------------------------------------------------------


class SXMBlock(nn.Module):
    """Spatial-X interaction module on channels-last (B, H, W, C): ``x = s1 x + SS2D(LN x); x = s2 x + CAB(LN x)``."""

    def __init__(self, dim: int, d_state: int = 8, ssm_ratio: float = 2.0, d_conv: int = 3, norm_eps: float = 1e-6,
                 cab_compress: int = 3, cab_squeeze: int = 16, scan_backend: str = "auto",
                 chunk: int | None = None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.ssm = SS2D(dim, d_state=d_state, ssm_ratio=ssm_ratio, d_conv=d_conv, scan_backend=scan_backend,
                        chunk=chunk)
        self.skip1 = nn.Parameter(torch.ones(dim))
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.ceb = CAB(dim, cab_compress, cab_squeeze)
        self.skip2 = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x = self.skip1 * x + self.ssm(self.norm1(x))
        return self.skip2 * x + self.ceb(self.norm2(x))


def _inverse_softplus(x: Tensor) -> Tensor:
    return x + torch.log(-torch.expm1(-x))


class ChannelSSM(nn.Module):
    """A bidirectional selective scan along a token axis: ``(B, L, d) -> (B, L, d)``, forward and reverse scans with
    their own parameters, summed in the original order. One :func:`~spatialx.models.scan.selective_scan` call (the
    two directions are the two groups of B and C), so the CUDA, compiled and chunked paths all serve it."""

    def __init__(self, d_inner: int, d_state: int = 8, dt_rank: int | None = None, dt_min: float = 1e-3,
                 dt_max: float = 0.1, dt_init_floor: float = 1e-4, scan_backend: str = "auto",
                 chunk: int | None = None) -> None:
        super().__init__()
        self.d_inner, self.d_state = d_inner, d_state
        self.dt_rank = dt_rank or max(1, math.ceil(d_inner / 16))
        self.scan_backend, self.chunk = scan_backend, chunk
        r, n = self.dt_rank, d_state
        self.x_proj = nn.ModuleList(nn.Linear(d_inner, r + 2 * n, bias=False) for _ in range(2))
        self.dt_proj = nn.ModuleList(nn.Linear(r, d_inner, bias=False) for _ in range(2))
        self.dt_bias = nn.Parameter(torch.empty(2 * d_inner))
        self.A_log = nn.Parameter(torch.empty(2 * d_inner, n))
        self.D = nn.Parameter(torch.empty(2 * d_inner))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        with torch.no_grad():
            for proj in self.dt_proj:
                nn.init.uniform_(proj.weight, -r ** -0.5, r ** -0.5)
            dt = torch.exp(torch.rand(2 * d_inner) * (math.log(dt_max) - math.log(dt_min))
                           + math.log(dt_min)).clamp(min=dt_init_floor)
            self.dt_bias.copy_(_inverse_softplus(dt))
            self.A_log.copy_(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(2 * d_inner, 1))
            self.D.fill_(1.0)

    def forward(self, u: Tensor) -> Tensor:
        batch, length, d = u.shape
        r, n = self.dt_rank, self.d_state
        seqs = (u, u.flip(1))
        us, dts, Bs, Cs = [], [], [], []
        for seq, xp, dp in zip(seqs, self.x_proj, self.dt_proj, strict=True):
            dt, b, c = torch.split(xp(seq), [r, n, n], dim=-1)
            us.append(seq.transpose(1, 2))
            dts.append(dp(dt).transpose(1, 2))
            Bs.append(b.transpose(1, 2))
            Cs.append(c.transpose(1, 2))
        y = selective_scan(torch.cat(us, 1).contiguous(), torch.cat(dts, 1).contiguous(),
                           -torch.exp(at_least_fp32(self.A_log)), torch.stack(Bs, 1).contiguous(),
                           torch.stack(Cs, 1).contiguous(), at_least_fp32(self.D),
                           delta_bias=at_least_fp32(self.dt_bias),
                           delta_softplus=True, chunk=self.chunk, backend=self.scan_backend)
        forward, reverse = y.view(batch, 2, d, length).unbind(1)
        return (forward + reverse.flip(-1)).transpose(1, 2)

    def extra_flops(self, args: tuple, kwargs: dict, output: Tensor) -> int:
        """The scan, counted as SS2D's (``9 B D L N + B D L`` per direction); the projections are nn.Linear."""
        batch, length, d = args[0].shape
        return 2 * (9 * batch * d * length * self.d_state + batch * d * length)


class XIM(nn.Module):
    """X-intrinsic interaction module: channels-last features (B, H, W, C) -> a per-channel weight (B, C)."""

    STATS = 4

    def __init__(self, channels: int, d_inner: int = 16, d_state: int = 8, se_reduction: int = 4,
                 norm_eps: float = 1e-6, scan_backend: str = "auto", chunk: int | None = None) -> None:
        super().__init__()
        s = self.STATS
        self.norm = nn.LayerNorm(s, eps=norm_eps)
        self.in_proj = nn.Linear(s, 2 * d_inner)
        self.ssm = ChannelSSM(d_inner, d_state, scan_backend=scan_backend, chunk=chunk)
        self.out_proj = nn.Linear(d_inner, s)
        self.alpha = nn.Parameter(torch.ones(s))
        self.ceb_norm = nn.LayerNorm(s, eps=norm_eps)
        hidden = max(1, channels // se_reduction)
        self.se = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels),
                                nn.Sigmoid())
        self.ensemble = nn.Conv1d(s, 1, 1)

    @staticmethod
    def statistics(x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, C, 4): max, mean, min and standard deviation of each channel over H x W."""
        flat = x.flatten(1, 2)
        return torch.stack([flat.amax(1), flat.mean(1), flat.amin(1), flat.std(1, unbiased=False)], dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        stats = self.statistics(x)  # (B, C, 4)
        u, z = self.in_proj(self.norm(stats)).chunk(2, dim=-1)
        w = self.ssm(F.silu(u))  # scan along the channel order
        j = self.out_proj(w * F.silu(z)) + self.alpha * stats
        y = self.ceb_norm(j)
        j = j + y * self.se(y.mean(-1)).unsqueeze(-1)
        return self.ensemble(j.transpose(1, 2)).squeeze(1)  # (B, C)


class SpaXIP(nn.Module):
    """The prior: 1x1 conv bands -> mid, SXM blocks, the XIM per-channel weight, 1x1 conv mid -> bands."""

    def __init__(self, bands: int, mid: int = 48, blocks: int = 4, d_state: int = 8, ssm_ratio: float = 2.0,
                 d_conv: int = 3, xim: bool = True, xim_inner: int = 16, xim_d_state: int = 8,
                 scan_backend: str = "auto", chunk: int | None = None, **block_kwargs: object) -> None:
        super().__init__()
        self.head = nn.Conv2d(bands, mid, 1)
        self.blocks = nn.ModuleList(
            SXMBlock(mid, d_state, ssm_ratio, d_conv, scan_backend=scan_backend, chunk=chunk,
                     **block_kwargs)  # type: ignore[arg-type]
            for _ in range(blocks))
        self.xim = XIM(mid, xim_inner, xim_d_state, scan_backend=scan_backend, chunk=chunk) if xim else None
        self.tail = nn.Conv2d(mid, bands, 1)

    def forward(self, x: Tensor) -> Tensor:
        # one copy into channels-last memory here, not one per LayerNorm and slow elementwise ops in every block
        f = self.head(x).permute(0, 2, 3, 1).contiguous()
        for block in self.blocks:
            f = block(f)
        if self.xim is not None:
            f = f * self.xim(f)[:, None, None, :]
        return self.tail(f.permute(0, 3, 1, 2))


# ----------------------------------------------------------------------------------------------------------------
# Degradation operators and the stage
# ----------------------------------------------------------------------------------------------------------------


class HighToLow(nn.Module):
    """F = PConv^-1: high-resolution channels -> bands (1x1 conv, GELU, grouped residual block)."""

    def __init__(self, guide_bands: int, bands: int, groups: int = 1) -> None:
        super().__init__()
        if bands % groups:
            raise ValueError(f"groups ({groups}) must divide the band count ({bands})")
        self.proj = nn.Sequential(nn.Conv2d(guide_bands, bands, 1), nn.GELU())
        self.res = nn.Sequential(nn.Conv2d(bands, bands, 3, padding=1, groups=groups), nn.GELU(),
                                 nn.Conv2d(bands, bands, 3, padding=1, groups=groups))

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)
        return x + self.res(x)


class Down(nn.Module):
    """D_spa: a ratio x ratio conv of stride ratio (paper), or max-pooling (authors' code)."""

    def __init__(self, bands: int, ratio: int, operators: str) -> None:
        super().__init__()
        self.ratio = ratio
        self.conv = nn.Conv2d(bands, bands, ratio, stride=ratio) if operators == "paper" else None

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) if self.conv is not None else F.max_pool2d(x, self.ratio)


class Up(nn.Module):
    """D_spa^T: the transposed conv of the same shape (paper), or bilinear upsampling (authors' code)."""

    def __init__(self, bands: int, ratio: int, operators: str) -> None:
        super().__init__()
        self.ratio = ratio
        self.conv = nn.ConvTranspose2d(bands, bands, ratio, stride=ratio) if operators == "paper" else None

    def forward(self, x: Tensor) -> Tensor:
        if self.conv is not None:
            return self.conv(x)
        return F.interpolate(x, scale_factor=self.ratio, mode="bilinear", align_corners=False)


class Stage(nn.Module):
    """One unfolded iteration (Eq. (29) with the CAM-weighted terms of Eqs. (30)-(33))."""

    def __init__(self, bands: int, guide_bands: int, ratio: int, groups: int, operators: str, memory: str,
                 cam: dict, prior: dict) -> None:
        super().__init__()
        self.memory = memory
        self.down = Down(bands, ratio, operators)
        self.up = Up(bands, ratio, operators)
        self.high_to_low = HighToLow(guide_bands, bands, groups)  # F = PConv^-1
        self.low_to_high = nn.Sequential(nn.Conv2d(bands, guide_bands, 1), nn.GELU())  # G = PConv
        self.cams = nn.ModuleDict({name: ChannelAttention(bands, **cam)
                                   for name in ("memory", "low", "spatial", "high", "spectral", "prior")})
        self.prior = SpaXIP(bands, **prior)

    def forward(self, x: Tensor, high: Tensor, low: Tensor) -> Tensor:
        c = self.cams
        memory = x - c["memory"](x) if self.memory == "code" else c["memory"](x)
        restore = c["low"](self.up(low)) + c["high"](self.high_to_low(high))
        degrade = c["spatial"](self.up(self.down(x))) + c["spectral"](self.high_to_low(self.low_to_high(x)))
        return memory + restore - degrade + c["prior"](self.prior(x))


# ----------------------------------------------------------------------------------------------------------------
# ODConv head
# ----------------------------------------------------------------------------------------------------------------


class ODConv2d(nn.Module):
    """Omni-dimensional dynamic convolution (Li et al. 2022): attention over the input channels, the output channels,
    the k x k taps and ``kernels`` candidate kernels, computed per sample from the globally pooled input."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, kernels: int = 4,
                 reduction: float = 0.0625, min_hidden: int = 16, temperature: float = 1.0) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.kernels, self.temperature = kernels, temperature
        hidden = max(int(in_channels * reduction), min_hidden)
        self.fc = nn.Sequential(nn.Conv2d(in_channels, hidden, 1, bias=False), nn.ReLU(inplace=True))
        self.channel_fc = nn.Conv2d(hidden, in_channels, 1)
        self.filter_fc = nn.Conv2d(hidden, out_channels, 1)
        self.spatial_fc = nn.Conv2d(hidden, kernel_size * kernel_size, 1) if kernel_size > 1 else None
        self.kernel_fc = nn.Conv2d(hidden, kernels, 1) if kernels > 1 else None
        self.weight = nn.Parameter(torch.empty(kernels, out_channels, in_channels, kernel_size, kernel_size))
        for i in range(kernels):
            nn.init.kaiming_normal_(self.weight[i], mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        k = self.kernel_size
        a = self.fc(x.mean(dim=(2, 3), keepdim=True))
        channel = torch.sigmoid(self.channel_fc(a)).view(batch, 1, self.in_channels, 1, 1)
        filt = torch.sigmoid(self.filter_fc(a)).view(batch, self.out_channels, 1, 1)
        weight = self.weight.unsqueeze(0) * channel.unsqueeze(1)  # (B, kernels, out, in, k, k)
        if self.spatial_fc is not None:
            weight = weight * torch.sigmoid(self.spatial_fc(a)).view(batch, 1, 1, 1, k, k)
        if self.kernel_fc is not None:
            attention = torch.softmax(self.kernel_fc(a).view(batch, self.kernels) / self.temperature, dim=1)
            weight = torch.einsum("bn,bnoikl->boikl", attention, weight)
        else:
            weight = weight[:, 0]
        if k == 1:  # a per-sample matrix product: no convolution whose group count is the (dynamic) batch
            pixels = x.reshape(batch, self.in_channels, height * width)
            out = torch.bmm(weight.reshape(batch, self.out_channels, self.in_channels), pixels)
        else:
            out = F.conv2d(x.reshape(1, batch * self.in_channels, height, width),
                           weight.reshape(batch * self.out_channels, self.in_channels, k, k), padding=k // 2,
                           groups=batch)
        return out.view(batch, self.out_channels, height, width) * filt

    def extra_flops(self, args: tuple, kwargs: dict, output: Tensor) -> int:
        """The per-sample convolution (the attention convs are nn.Conv2d) and the kernel aggregation."""
        batch = args[0].shape[0]
        per_kernel = self.out_channels * self.in_channels * self.kernel_size ** 2
        return output.numel() * self.in_channels * self.kernel_size ** 2 + batch * self.kernels * per_kernel


# ----------------------------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------------------------


class SpaXFus(nn.Module):
    """``SpaXFus(bands, ratio)(high_res, low_res)``: (B, guide_bands, H, W), (B, bands, H/ratio, W/ratio) ->
    (B, bands, H, W). See the module docstring.

    Args:
        bands: channels of the low-resolution input and of the output (C_X).
        ratio: the integer resolution ratio between the two inputs.
        guide_bands: channels of the high-resolution input (c_B).
        stages: K, the unfolded iterations (9 in the paper and the authors' code).
        mid: width of the prior's features (48 for pansharpening).
        groups: groups of the residual block in F = PConv^-1 (4 for GF2 pansharpening).
        sxm_blocks: SXM blocks per prior (4).
        d_state, ssm_ratio, d_conv: the SXM blocks' SS2D (8, 2, 3).
        xim, xim_inner, xim_d_state: the X-intrinsic module (on/off, width of its scan branch, its state size).
        operators: ``"paper"`` (strided conv / transposed conv) or ``"code"`` (max-pool / bilinear).
        memory: ``"code"`` (``X - CAM(X)``) or ``"paper"`` (``CAM(X)``).
        cam_reduction, cam_min_hidden: the CAMs' hidden width ``max(min_hidden, channels // reduction)``.
        od_kernels: candidate kernels of the ODConv head (4).
        scan_backend, chunk: passed to :func:`spatialx.models.scan.selective_scan` by every scan.
    """

    def __init__(self, bands: int, ratio: int = 4, guide_bands: int = 1, stages: int = 9, mid: int = 48,
                 groups: int = 4, sxm_blocks: int = 4, d_state: int = 8, ssm_ratio: float = 2.0, d_conv: int = 3,
                 xim: bool = True, xim_inner: int = 16, xim_d_state: int = 8, operators: str = "paper",
                 memory: str = "code", cam_reduction: int = 4, cam_min_hidden: int = 4, od_kernels: int = 4,
                 scan_backend: str = "auto", chunk: int | None = None) -> None:
        super().__init__()
        if operators not in OPERATORS:
            raise ValueError(f"operators must be one of {OPERATORS}, got {operators!r}")
        if memory not in MEMORY:
            raise ValueError(f"memory must be one of {MEMORY}, got {memory!r}")
        if stages < 1 or ratio < 1:
            raise ValueError(f"stages and ratio must be positive, got {stages} and {ratio}")
        self.bands, self.ratio, self.guide_bands, self.stages_count = bands, int(ratio), guide_bands, stages
        cam = {"reduction": cam_reduction, "min_hidden": cam_min_hidden}
        prior = {"mid": mid, "blocks": sxm_blocks, "d_state": d_state, "ssm_ratio": ssm_ratio, "d_conv": d_conv,
                 "xim": xim, "xim_inner": xim_inner, "xim_d_state": xim_d_state, "scan_backend": scan_backend,
                 "chunk": chunk}
        self.init_high = HighToLow(guide_bands, bands, groups)
        self.init_up = Up(bands, self.ratio, operators)
        self.init_cam_high = ChannelAttention(bands, **cam)
        self.init_cam_low = ChannelAttention(bands, **cam)
        self.init_fuse = nn.Sequential(nn.Conv2d(2 * bands, bands, 1), nn.GELU())
        self.stages = nn.ModuleList(Stage(bands, guide_bands, self.ratio, groups, operators, memory, cam, prior)
                                    for _ in range(stages))
        self.head = ODConv2d(stages * bands, bands, 1, kernels=od_kernels)

    def forward(self, high_res: Tensor, low_res: Tensor) -> Tensor:
        if (high_res.dim() != 4 or low_res.dim() != 4 or high_res.shape[1] != self.guide_bands
                or low_res.shape[1] != self.bands or high_res.shape[0] != low_res.shape[0]
                or tuple(high_res.shape[-2:]) != (low_res.shape[-2] * self.ratio, low_res.shape[-1] * self.ratio)):
            raise ValueError(f"SpaXFus({self.bands} bands, ratio {self.ratio}) expects high_res "
                             f"(B, {self.guide_bands}, H, W) and low_res (B, {self.bands}, H/{self.ratio}, "
                             f"W/{self.ratio}), got {tuple(high_res.shape)} and {tuple(low_res.shape)}")
        high = high_res.to(low_res.dtype)
        x = self.init_fuse(torch.cat([self.init_cam_high(self.init_high(high)),
                                      self.init_cam_low(self.init_up(low_res))], dim=1))
        outputs = []
        for stage in self.stages:
            x = stage(x, high, low_res)
            outputs.append(x)
        return self.head(torch.cat(outputs, dim=1))


class SpaXFusOnGrid(nn.Module):
    """:class:`SpaXFus` with spatialx's network interface ``(lms, guide) -> fused``, all on the guide's grid: the
    inputs padded (replicate) to a multiple of ``ratio``, ``lms`` decimated by the mean of each ``ratio x ratio``
    block, the output cropped back. ``kwargs`` go to :class:`SpaXFus`; the network is :attr:`net`."""

    def __init__(self, bands: int, ratio: int = 4, guide_bands: int = 1, **kwargs: object) -> None:
        super().__init__()
        self.bands, self.ratio, self.guide_bands = bands, int(ratio), guide_bands
        self.net = SpaXFus(bands, self.ratio, guide_bands, **kwargs)  # type: ignore[arg-type]

    @property
    def size_multiple(self) -> int:
        return self.ratio

    def forward(self, lms: Tensor, guide: Tensor) -> Tensor:
        if (lms.dim() != 4 or guide.dim() != 4 or lms.shape[1] != self.bands or guide.shape[1] != self.guide_bands
                or lms.shape[-2:] != guide.shape[-2:] or lms.shape[0] != guide.shape[0]):
            raise ValueError(f"SpaXFus({self.bands} bands) expects lms (B, {self.bands}, H, W) and guide "
                             f"(B, {self.guide_bands}, H, W), got {tuple(lms.shape)} and {tuple(guide.shape)}")
        height, width = lms.shape[-2:]
        pad_h, pad_w = (-height) % self.ratio, (-width) % self.ratio
        if pad_h or pad_w:
            lms = F.pad(lms, (0, pad_w, 0, pad_h), mode="replicate")
            guide = F.pad(guide, (0, pad_w, 0, pad_h), mode="replicate")
        low = F.avg_pool2d(lms, self.ratio) if self.ratio > 1 else lms
        out = self.net(guide.to(lms.dtype), low)
        return out[..., :height, :width] if (pad_h or pad_w) else out
