"""SSRFN (Zhao, Wu, Luo, Ou, Zhang; IEEE JSTARS 2024): the spatial-spectral interaction super-resolution CNN-Mamba
network for the fusion of a low-resolution hyperspectral image (HSI) and a high-resolution multispectral image (MSI).

``SSRFN(bands, ratio, guide_bands)(lms, guide) -> fused``: ``lms`` (B, bands, H, W) is the HSI already resampled onto
the MSI's grid, as every spatialx network takes it; ``guide`` (B, guide_bands, H, W) the MSI; values in [0, 1]; the
output is (B, bands, H, W). The paper's network takes the HSI at its own scale and a low-resolution MSI: both are
recovered inside the model as :class:`~spatialx.models.spaxfus.SpaXFusOnGrid` does, by padding (replicate) to a
multiple of ``ratio`` and taking the mean of every ``ratio x ratio`` block (``avg_pool2d``); the output is cropped
back. Any H and W. For an HSI resampled by a mean-preserving kernel onto a grid nested in its own, with tiles on the
HSI grid, this recovers the HSI; otherwise it is a slightly smoothed HSI at its own scale.

Network (paper Sec. II-C, Figs. 1-7), ``C = width``; X the LR HSI, Y the HR MSI, Y~ the LR MSI::

    F_h, F_m, F_lm = SFE_h(X), SFE_m(Y), SFE_m(Y~)                      # Eqs. (5)-(7): MSI weights shared
    F_dh, F_dm, F_dlm = DFE(F_h), DFE(F_m), DFE(F_lm)                   # Eq. (8), one DFE (choice 5)
    E    = CFE(cat(F_dh, F_dlm))                                       # cyclic ConvGRU, Eqs. (9)-(12), at LR
    F_op = SCM(F_dm, up(E))                                            # 16 corrections, Eq. (13), at HR
    S    = cat(up(F_dh), F_op)                                         # (B, 2C, H, W)
    F_spa, F_spe = SpaR(S), SpeR(S)                                    # Eqs. (14)-(17)
    Z    = FFM(F_spa, F_spe)                                           # Eqs. (18)-(21) -> bands channels
    out  = lms + Z                                                     # (``residual=False``: Z, the paper's)

``up`` is bilinear interpolation by ``ratio``.

* SFE: four 3x3 convolutions, the first lifting the input to C channels; ``F = f1 + c4(a(c3(a(c2(a(f1))))))``
  with ``f1 = c1(X)`` and ``a`` a LeakyReLU(0.2).
* DFE: ``dfe_units`` (5) units of three 3x3 convolutions and one Mamba block, Eq. (8): ``u <- c3(a(c2(a(c1(u)))) +
  Mamba(u))``, so 15 convolutions and 5 Mamba blocks, plus one skip around the whole DFE.
* CFE: a convolutional GRU (3x3 convolutions; reset gate P, update gate O, candidate H~) run ``cfe_iterations``
  (6) times on the same input ``T = cat(F_dh, F_dlm)`` (2C channels), each output fed back as the next state;
  after every update ``H <- H + Mamba(H)``. ``E`` is the last state (C channels).
* SCM: ``G = sigmoid(up(E))``; ``scm_steps`` (16) times ``F <- conv3x3(G * (v_j * F) + F)``, with one shared
  convolution and a per-step, per-channel scale ``v_j`` initialised to 1 (the paper's identity matrix L).
* SpaR / SpeR (one class, :class:`InteractionSR`): S viewed as a one-channel 3D volume (B, 1, 2C, H, W), the
  channel axis as its depth. ``sr_stages`` (4) stages of a local branch (3D convolutions 3x3x1, torch's kernel
  (1, 3, 3), for SpaR; 1x1x3, torch's (3, 1, 1), for SpeR: 1 -> k 3D channels, LeakyReLU, k -> 1, ``k =
  conv3d_channels``) and a global branch (a Mamba block on the 2C-channel features), mutually gated, Eqs.
  (16)-(17): ``L' = sigmoid(L) * G + L``, ``G' = sigmoid(G) * L + G``. A 1x1x1 3D convolution (without bias: FFM's
  LayerNorms would cancel it) merges the last ``L'`` and ``G'`` (two 3D channels) into the 2C-channel result.
* FFM: ``Q, K = Mamba(F_spa), Mamba(F_spa)``, ``V = Mamba(F_spe)``, ``F = (1 - softmax(K * V)) * Q + V`` (Eq. (19),
  softmax over channels); then ``A, B, D = Mamba(F)`` x 3, each projecting 2C -> bands, ``Z = (1 - softmax(B * D))
  * A + D`` (Eq. (21)).

The Mamba block (:class:`Mamba1D`, Mamba's, as the paper's formula ``rho(ssm(sigma(Conv(rho(I)))) * sigma(rho(I)))``):
``in_proj`` to ``2 * expand * d`` (x and z), causal depthwise conv1d of width ``d_conv``, SiLU, ``x_proj`` to (dt,
B, C), ``dt_proj``, the selective scan (:func:`spatialx.models.scan.selective_scan`: the CUDA kernel, the compiled
numba kernel or the chunked pure-PyTorch scan, ``scan_backend``/``chunk``) gated by SiLU(z), ``out_proj``. d_state
64, d_conv 4, expand 2 (paper, Sec. II-C1), ``dt_rank = ceil(d / 16)``. :class:`ImageMamba` runs it on images:
LayerNorm over the channels, the pixels as tokens in row-major order.

Choices where the paper is ambiguous or silent (paper says X; we do Y because Z):

1. Mamba tokens: the paper does not say what the sequence is. We scan **pixels as tokens** (row-major, one direction,
   the channels as the model dimension) in every Mamba block, because bands as tokens would make the model
   dimension H x W (weights tied to one image size), and the paper calls the blocks "global" spatial extractors.
2. Normalisation: the paper's Mamba formula has none; we put a LayerNorm before every Mamba block (as Mamba's own
   residual block does) because the blocks read un-normalised convolutional features of any scale.
3. Activations: the paper names none for the CNN parts (its sigma in the Mamba formula is Mamba's SiLU); we use
   LeakyReLU(0.2) between convolutions (SFE, DFE, 3D local branch), none in SCM (Eq. (13) has none) and in the CFE
   the GRU's sigmoid/tanh.
4. SFE: Eq. (5) adds the input X to the output of four convolutions, but X has ``bands`` (or ``guide_bands``)
   channels and F has C: the first convolution lifts to C and the skip starts from its output.
5. DFE: "15 convolutional layers and 5 Mamba blocks" as in Eq. (8). The paper gives one formula for the three
   inputs, ``u = [F_h, F_m, F_lm]``; we read it literally: **one DFE shared by the LR HSI, the HR MSI and the LR
   MSI** (each SFE has lifted its input to C channels), so CFE compares F_dh and F_dlm in one feature space. It is
   also the reading that matches Table VI: separate HSI and MSI DFEs gave 33.2 M parameters but only 146 GFLOPs at
   width 192, a FLOPs-to-parameters ratio (4.4 G/M) 12 % under the paper's (5.0) that no width changes; the shared
   DFE lands both within 5 % (choice 12). One skip around the whole DFE (not in Eq. (8)) so its 15 stacked
   convolutions train from scratch.
6. CFE: Eq. (12) reads ``O * H~ + (1 - O) * H~`` (a typo: we use the standard GRU update ``O * H~ + (1 - O) *
   H``); the weights ``w^i`` are shared by the iterations (a recurrent cell, "reinputting each output as a new
   state"); the first state is zeros; the paper only says a Mamba module is "embedded": we apply it to the state
   after every update, residually, with one set of weights.
7. SCM: the per-step "identity matrix L" updated each iteration is read as ``v_j``, a learnable per-channel scale
   per step initialised to 1; the 3x3 convolution is shared by the 16 steps ("16 identical correction operations",
   "a recurrent network"). E (LR) is brought to the HR grid by bilinear interpolation.
8. The LR HSI features are brought to the HR grid by bilinear interpolation before SpaR/SpeR (the paper stacks
   F_dh with the HR F_dm^op without saying how the sizes meet).
9. SpaR/SpeR: the 3D convolutions' feature channels are not given; the volume is the 2C-channel feature map with
   one 3D channel and the local branch lifts it to ``conv3d_channels`` (8) 3D channels and back, so the local and
   the global features have one shape for the gating. The paper says SpeR differs "by a 1x1x3 convolution kernel":
   we give SpeR 1x1x3 kernels in every local branch (SpaR 3x3x1) and both the paper's final 1x1x1 merge. Both take
   ``cat(up(F_dh), F_dm^op)`` ("the same network structure").
10. FFM: the softmax axis is not given; we take the channels of each pixel (a per-pixel attention, so a tile's
    pixels depend on each other only through the scans). Eq. (20) writes A, B from F_spa and D from F_spe; the text
    says the three branches come from F_hrhsi: we follow the text.
11. Output: the paper's Z is the fused image; we add ``lms`` (``residual=True``, the field's convention, notes
    "Shared conventions") so a fresh network starts from the resampled HSI, which scene adaptation's few steps need;
    ``residual=False`` is the paper's.
12. Size: Table VI (simulated dataset-1) gives 38.63 M parameters and 193.67 GFLOPs without an input size; the
    paper's samples are 512 x 512 (HR) with a 128 x 128 HSI, but no network of 38.6 M convolution and projection
    weights applied at every pixel does 193.67 GFLOPs there: each weight used once per LR pixel alone would be
    633 G, and this network counts 12.65 TFLOPs at 512 x 512 (64 x its 64 x 64 figure: every part scales with the
    pixels). The figures fit the field's 64 x 64 HR patch (16 x 16 HSI), as counted by
    :mod:`spatialx.models.flops` (1 MAC = 1 FLOP): the paper's configuration (100 bands, 4 MSI bands, ratio 4,
    ``width`` 228, the rest as the paper) has **37.02 M parameters (-4.2 %) and 197.64 GFLOPs (+2.1 %)** at
    64 x 64: convolutions 73.86 G, LayerNorms 0.16 G, ``extra`` 123.62 G (the Mamba blocks: scans 36.64 G,
    projections 86.72 G, depthwise convolutions 0.25 G; the 1x1x1 merges 0.01 G). The width is ours (the paper
    gives none): 228 balances the two figures.

Implementation (same maps as the description above, for CPU time and memory):

* :class:`Mamba1D` works channels first, (B, d, L), the scan's layout: its projections are matrix products on the
  Linear layers' weights and its depthwise convolution shifted multiply-adds, so no transposed or padded copies.
* The 3x3x1 and 1x1x3 3D convolutions are the equivalent 2D convolutions (one depth slice, or one pixel's
  column, at a time) and the 1x1x1 merge a weighted sum: ``nn.Conv3d`` on the CPU pads one or two 3D channels to a
  16-channel blocked layout, which made SpaR/SpeR the memory peak (87 KB per pixel; 48 KB now, the Mamba blocks on
  2C channels).
* The modules whose layers are not called (Mamba1D, InteractionSR) count their FLOPs in ``extra_flops``.

Configurations (for :mod:`spatialx.models.zoo`): ``hmif`` is the paper's (100 bands, 4-band MSI, ratio 4, the
constructor's defaults); real PRISMA + Sentinel-2 pairs (60-230 bands, 4 bands, ratio 3) take it with their own
counts (37.6 M parameters for 230 bands, 36.8 M for 60). ``tiny`` (width 8, one DFE unit, 2 CFE iterations, 2 SCM
steps, one SpaR/SpeR stage, d_state 4) is for tests and quick CPU runs.

Initialisation: PyTorch's defaults for convolutions and Linear layers, the SSM parameters as Mamba (A_log =
log(1..N), D = 1, dt log-uniform in [1e-3, 0.1] through the inverse softplus of its bias; helpers of
:mod:`spatialx.models.ss2d`). Training (paper Sec. III-A): MSE loss, Adam (beta 0.9, 0.99), learning rate 1e-4,
batch 8.

Tiling: every Mamba block scans the whole tile, so a tile is not exactly a window of the whole image: as LE-Mamba,
a wide context and a cross-fade hide the seams. In row-major order a row's first pixels follow the previous row's
last ones, so the first columns of a tile narrower than the image differ from the whole image's most (a few pixels;
they lie in the halo). The block-mean decimation wants tiles on the HSI grid (offsets multiples of ``ratio``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spatialx.models.scan import selective_scan
from spatialx.models.ss2d import _inverse_softplus, at_least_fp32

__all__ = ["CFE", "DFE", "FFM", "SCM", "SFE", "SSRFN", "DFEUnit", "ImageMamba", "InteractionSR", "Local3D", "Mamba1D"]

#: Slope of the LeakyReLU between convolutions (choice 3 of the module docstring).
NEGATIVE_SLOPE = 0.2


def _act() -> nn.Module:
    return nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True)


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


# ----------------------------------------------------------------------------------------------------------------
# Mamba
# ----------------------------------------------------------------------------------------------------------------


class Mamba1D(nn.Module):
    """Mamba's selective-state-space block on channels-first token sequences: (B, d_model, L) -> (B, d_out, L).

    ``in_proj`` (d_model -> 2 d_inner: x and z), causal depthwise conv1d of width ``d_conv``, SiLU, ``x_proj``
    (d_inner -> dt_rank + 2 d_state), ``dt_proj`` (dt_rank -> d_inner; its bias is the scan's ``delta_bias``), the
    selective scan with softplus(dt), the ``D`` skip and the SiLU(z) gate, ``out_proj`` (d_inner -> d_out). The
    sequence is read in its order only (causal): token t sees tokens 0..t.

    Channels first because the scan takes (B, d_inner, L): the four projections are matrix products on the Linear
    layers' weights, ``W @ x``, which leave every intermediate in that layout (no transposed copies; on the paper's
    configuration these copies were 13 % of a CPU forward). The Linear layers and the Conv1d hold the weights but
    are not called (see :meth:`_causal_conv`), so the FLOP hooks do not see them: :meth:`extra_flops` counts them
    with the scan.
    """

    def __init__(self, d_model: int, d_out: int | None = None, d_state: int = 64, d_conv: int = 4,
                 expand: float = 2.0, dt_rank: int | str = "auto", *, bias: bool = False, conv_bias: bool = True,
                 dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4, dt_scale: float = 1.0,
                 scan_backend: str = "auto", chunk: int | None = None) -> None:
        super().__init__()
        if d_conv < 1:
            raise ValueError(f"d_conv must be positive, got {d_conv}")
        self.d_model, self.d_out = d_model, d_model if d_out is None else int(d_out)
        self.d_state, self.d_conv = d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.scan_backend, self.chunk = scan_backend, chunk
        d, n, r = self.d_inner, d_state, self.dt_rank
        self.in_proj = nn.Linear(d_model, 2 * d, bias=bias)
        # the causal depthwise convolution's weights; forward applies them as shifted multiply-adds (_causal_conv)
        self.conv1d = nn.Conv1d(d, d, d_conv, groups=d, bias=conv_bias)
        self.x_proj = nn.Linear(d, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, d, bias=False)
        self.dt_bias = nn.Parameter(torch.empty(d))
        self.A_log = nn.Parameter(torch.empty(d, n))
        self.D = nn.Parameter(torch.empty(d))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_proj = nn.Linear(d, self.d_out, bias=bias)
        self._dt_init = (dt_min, dt_max, dt_init_floor, dt_scale)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """(Re-)initialise dt_proj, its bias, A_log and D as Mamba does (x_proj keeps nn.Linear's +-d_inner^-0.5)."""
        dt_min, dt_max, floor, scale = self._dt_init
        std = self.dt_rank ** -0.5 * scale
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=floor)
        self.dt_bias.copy_(_inverse_softplus(dt))
        self.A_log.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.D.fill_(1.0)

    @staticmethod
    def _project(layer: nn.Linear, x: Tensor) -> Tensor:
        """``layer`` applied to channels-first ``x`` (B, in, L) -> (B, out, L), contiguous. ``mm``/``bmm`` rather
        than ``torch.matmul``, which computes a (2D, 3D) product transposed and then copies the whole output."""
        weight = layer.weight
        y = torch.mm(weight, x[0]).unsqueeze(0) if x.shape[0] == 1 else torch.bmm(weight.expand(x.shape[0], -1, -1), x)
        return y if layer.bias is None else y + layer.bias[:, None]

    def _causal_conv(self, x: Tensor) -> Tensor:
        """The depthwise causal convolution, ``y_t = b + sum_k w_k x_{t - (d_conv - 1) + k}``, as ``d_conv``
        in-place multiply-adds of shifted views: no padded copy of ``x`` and none of the blocked-layout buffers
        ``nn.Conv1d`` takes on the CPU (three times the output, measured), the largest tensors of the block."""
        # in x's dtype, as nn.Conv1d under autocast: the scan's kernel wants u, delta and z in one dtype
        weight, length = self.conv1d.weight[:, 0].to(x.dtype), x.shape[-1]
        k = self.d_conv
        y = x * weight[:, k - 1:k]
        for shift in range(1, min(k, length)):
            y[..., shift:].addcmul_(x[..., :length - shift], weight[:, k - 1 - shift:k - shift])
        return y if self.conv1d.bias is None else y.add_(self.conv1d.bias.to(x.dtype)[:, None])

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[1] != self.d_model:
            raise ValueError(f"Mamba1D expects (batch, {self.d_model}, L), got {tuple(x.shape)}")
        d, r, n = self.d_inner, self.dt_rank, self.d_state
        xz = self._project(self.in_proj, x)  # (B, 2D, L)
        xi = F.silu(self._causal_conv(xz[:, :d]), inplace=True)  # (B, D, L)
        x_dbl = self._project(self.x_proj, xi)  # (B, R + 2N, L)
        dt = self._project(self.dt_proj, x_dbl[:, :r])
        y = selective_scan(xi, dt, -torch.exp(at_least_fp32(self.A_log)), x_dbl[:, r:r + n].contiguous(),
                           x_dbl[:, r + n:].contiguous(), at_least_fp32(self.D), z=xz[:, d:],
                           delta_bias=at_least_fp32(self.dt_bias), delta_softplus=True, chunk=self.chunk,
                           backend=self.scan_backend)
        return self._project(self.out_proj, y)

    def extra_flops(self, args: tuple, kwargs: dict, output: Tensor) -> int:
        """The scan, counted as :mod:`spatialx.models.flops` counts SS2D's, ``9 B D L N + B D L``, the four
        projections (matrix products on the Linear weights, invisible to the hooks): ``B L (d_model 2 D + D (R +
        2 N) + R D + D d_out)``, and the depthwise convolution as the conv hook would count it, ``B D L d_conv``."""
        x = args[0] if args else kwargs["x"]
        batch, length = x.shape[0], x.shape[2]
        d, n, r = self.d_inner, self.d_state, self.dt_rank
        scan = 9 * batch * d * length * n + batch * d * length
        projections = batch * length * (self.d_model * 2 * d + d * (r + 2 * n) + r * d + d * self.d_out)
        return scan + projections + batch * d * length * self.d_conv


class ImageMamba(nn.Module):
    """A :class:`Mamba1D` on images: (B, C, H, W) -> (B, d_out, H, W), LayerNorm over the channels, then the pixels
    as tokens in row-major order (choices 1 and 2 of the module docstring)."""

    def __init__(self, channels: int, d_out: int | None = None, norm_eps: float = 1e-5, **mamba: object) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=norm_eps)
        self.mamba = Mamba1D(channels, d_out, **mamba)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        tokens = self.norm(x.flatten(2).transpose(1, 2))  # (B, H W, C): the norm's one copy
        return self.mamba(tokens.transpose(1, 2)).view(batch, -1, height, width)


# ----------------------------------------------------------------------------------------------------------------
# Feature extraction and correction
# ----------------------------------------------------------------------------------------------------------------


class SFE(nn.Module):
    """Shallow features: four 3x3 convolutions, the first lifting to ``width``, with a skip from its output."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.lift = _conv3x3(in_channels, width)
        self.body = nn.Sequential(_act(), _conv3x3(width, width), _act(), _conv3x3(width, width), _act(),
                                  _conv3x3(width, width))

    def forward(self, x: Tensor) -> Tensor:
        f = self.lift(x)
        return f + self.body(f)


class DFEUnit(nn.Module):
    """Eq. (8): ``c3(a(c2(a(c1(u)))) + Mamba(u))``: local features and a global scan of the same input, merged."""

    def __init__(self, width: int, **mamba: object) -> None:
        super().__init__()
        self.local = nn.Sequential(_conv3x3(width, width), _act(), _conv3x3(width, width), _act())
        self.mamba = ImageMamba(width, **mamba)
        self.merge = _conv3x3(width, width)

    def forward(self, u: Tensor) -> Tensor:
        return self.merge(self.local(u) + self.mamba(u))


class DFE(nn.Module):
    """Deep features: ``units`` :class:`DFEUnit` (3 convolutions and a Mamba block each), one skip around them."""

    def __init__(self, width: int, units: int = 5, **mamba: object) -> None:
        super().__init__()
        self.units = nn.Sequential(*(DFEUnit(width, **mamba) for _ in range(units)))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.units(x)


class CFE(nn.Module):
    """Change features: a cyclic convolutional GRU on ``T = cat(F_dh, F_dlm)`` (2 width channels) -> E (width).

    Per iteration, with the state H (zeros at first)::

        P  = sigmoid(W_xp * T + W_hp * H + b_p)        # reset gate, Eq. (9)
        O  = sigmoid(W_xo * T + W_ho * H + b_o)        # update gate, Eq. (10)
        H~ = tanh(W_xh * T + W_hh * (P . H) + b_h)     # candidate, Eq. (11)
        H  = O . H~ + (1 - O) . H                      # Eq. (12), read as the standard GRU update
        H  = H + Mamba(H)                              # the embedded global scan

    The three input convolutions are one (2 width -> 3 width) layer and the two gates' state convolutions another
    (same maps as separate layers); all 3x3, shared by the iterations.
    """

    def __init__(self, width: int, iterations: int = 6, **mamba: object) -> None:
        super().__init__()
        if iterations < 1:
            raise ValueError(f"iterations must be positive, got {iterations}")
        self.width, self.iterations = width, iterations
        self.conv_x = _conv3x3(2 * width, 3 * width)
        self.conv_h = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
        self.conv_hh = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.mamba = ImageMamba(width, **mamba)

    def forward(self, t: Tensor) -> Tensor:
        xp, xo, xh = self.conv_x(t).chunk(3, dim=1)  # the input is the same every iteration: convolved once
        h = t.new_zeros(t.shape[0], self.width, t.shape[2], t.shape[3])
        for _ in range(self.iterations):
            hp, ho = self.conv_h(h).chunk(2, dim=1)
            p, o = torch.sigmoid(xp + hp), torch.sigmoid(xo + ho)
            candidate = torch.tanh(xh + self.conv_hh(p * h))
            h = o * candidate + (1 - o) * h
            h = h + self.mamba(h)
        return h


class SCM(nn.Module):
    """Spectral correction, Eq. (13): ``steps`` times ``F <- conv3x3(sigmoid(E) . (v_j . F) + F)``, one shared
    convolution, ``v_j`` per step and channel, initialised to 1 (choice 7 of the module docstring)."""

    def __init__(self, width: int, steps: int = 16) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be positive, got {steps}")
        self.steps = steps
        self.conv = _conv3x3(width, width)
        self.scales = nn.Parameter(torch.ones(steps, width))

    def forward(self, f: Tensor, error: Tensor) -> Tensor:
        gate = torch.sigmoid(error)
        for j in range(self.steps):
            f = self.conv(gate * (self.scales[j].view(1, -1, 1, 1) * f) + f)
        return f


# ----------------------------------------------------------------------------------------------------------------
# Super-resolution branches and fusion
# ----------------------------------------------------------------------------------------------------------------


class Local3D(nn.Module):
    """The local branch of a SpaR/SpeR stage: the (B, C, H, W) features as a one-channel volume (B, 1, C, H, W), a
    3D convolution 1 -> k, LeakyReLU, a 3D convolution k -> 1; kernel 3x3x1 (torch's (1, 3, 3): spatial,
    ``kind="spatial"``) or 1x1x3 (torch's (3, 1, 1): along the channels, ``kind="spectral"``).

    A 3x3x1 kernel sees one depth slice at a time and a 1x1x3 kernel one pixel's column: they are computed as the
    equivalent 2D convolutions, the slices as a batch (B C, 1, H, W) or the pixels as a width (B, 1, C, H W). Same
    maps and FLOP count as ``nn.Conv3d``; on the CPU ``nn.Conv3d`` took 45-58 KB of memory per pixel for these
    branches in the paper's configuration, most of a forward's peak. In inference the slices (or pixels) are run
    in groups of about :attr:`CHUNK` elements of the hidden volume, so the k-channel volume never exists whole.
    """

    #: Elements of the (k-channel) hidden volume per inference chunk (16 MiB of float32).
    CHUNK = 1 << 22

    def __init__(self, kind: str, hidden: int = 8) -> None:
        super().__init__()
        self.kind = kind
        kernel, padding = ((3, 3), (1, 1)) if kind == "spatial" else ((3, 1), (1, 0))
        self.body = nn.Sequential(nn.Conv2d(1, hidden, kernel, padding=padding), _act(),
                                  nn.Conv2d(hidden, 1, kernel, padding=padding))
        self.hidden = hidden

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        if self.kind == "spatial":
            volume = x.reshape(batch * channels, 1, height, width)  # each depth slice an image
            per_item, axis = self.hidden * height * width, 0
        else:
            volume = x.reshape(batch, 1, channels, height * width)  # each pixel a column along the channels
            per_item, axis = self.hidden * channels * batch, 3
        exporting = torch.jit.is_tracing() or torch.compiler.is_compiling()  # one graph for every size
        if exporting or torch.is_grad_enabled() or volume.shape[axis] * per_item <= self.CHUNK:
            out = self.body(volume)
        else:
            step = max(1, self.CHUNK // per_item)
            out = torch.cat([self.body(part) for part in volume.split(step, dim=axis)], dim=axis)
        return out.reshape(batch, channels, height, width)


class InteractionSR(nn.Module):
    """SpaR (``kind="spatial"``, 3x3x1 kernels) or SpeR (``kind="spectral"``, 1x1x3): ``stages`` stages of a local
    3D-convolution branch and a global Mamba branch with mutual sigmoid gating (Eqs. (14)-(17)), and a 1x1x1 3D
    convolution merging the two last features. (B, C, H, W) -> (B, C, H, W)."""

    KINDS = ("spatial", "spectral")

    def __init__(self, channels: int, kind: str = "spatial", stages: int = 4, conv3d_channels: int = 8,
                 **mamba: object) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        if stages < 1:
            raise ValueError(f"stages must be positive, got {stages}")
        self.kind = kind
        self.local = nn.ModuleList(Local3D(kind, conv3d_channels) for _ in range(stages))
        self.globals = nn.ModuleList(ImageMamba(channels, **mamba) for _ in range(stages))
        # the final 1x1x1 3D convolution (2 3D channels -> 1), applied as a weighted sum (nn.Conv3d pads its 2
        # channels to a 16-channel blocked layout on the CPU: 8 copies of the features). No bias: the result only
        # feeds FFM's Mamba blocks, whose LayerNorm removes any constant, so a bias would get no gradient.
        bound = 2 ** -0.5  # nn.Conv3d's default initialisation for a fan-in of 2
        self.merge_weight = nn.Parameter(torch.empty(2).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        local, glob = x, x
        for local_branch, global_branch in zip(self.local, self.globals, strict=True):
            f_local, f_global = local_branch(local), global_branch(glob)
            local = torch.sigmoid(f_local) * f_global + f_local  # Eq. (16)
            glob = torch.sigmoid(f_global) * f_local + f_global  # Eq. (17)
        w = self.merge_weight
        return torch.addcmul(local * w[0], glob, w[1])

    def extra_flops(self, args: tuple, kwargs: dict, output: Tensor) -> int:
        """The 1x1x1 merge, as the conv hook would count a Conv3d(2, 1, 1): 2 per output element."""
        return 2 * output.numel()


class FFM(nn.Module):
    """Feature fusion, Eqs. (18)-(21): Mamba "cross-attention" of F_spa (Q, K) and F_spe (V), then Mamba
    "self-attention" whose three branches project to ``bands``; softmax over the channels of each pixel."""

    def __init__(self, channels: int, bands: int, **mamba: object) -> None:
        super().__init__()
        self.q, self.k, self.v = (ImageMamba(channels, **mamba) for _ in range(3))
        self.a, self.b, self.d = (ImageMamba(channels, bands, **mamba) for _ in range(3))

    @staticmethod
    def attend(key: Tensor, value: Tensor, query: Tensor) -> Tensor:
        """``(1 - softmax(key . value)) . query + value``, the softmax over the channels."""
        return (1 - torch.softmax(key * value, dim=1)) * query + value

    def forward(self, spa: Tensor, spe: Tensor) -> Tensor:
        fused = self.attend(self.k(spa), self.v(spe), self.q(spa))  # Eq. (19)
        return self.attend(self.b(fused), self.d(fused), self.a(fused))  # Eq. (21)


# ----------------------------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------------------------


class SSRFN(nn.Module):
    """``SSRFN(bands, ratio, guide_bands)(lms, guide) -> fused`` (see the module docstring).

    Args:
        bands: hyperspectral bands (input ``lms`` and output).
        ratio: the integer resolution ratio between the HSI and the MSI (4 in the paper; 3 for PRISMA + Sentinel-2).
        guide_bands: MSI bands (4 in the paper: SPOT-4, and Sentinel-2's 10 m bands).
        width: C, the feature channels of SFE, DFE, CFE and SCM (SpaR, SpeR and FFM work on 2 C).
        dfe_units: DFE units of 3 convolutions + 1 Mamba block (5).
        cfe_iterations: iterations of the cyclic GRU (6).
        scm_steps: correction steps of SCM (16).
        sr_stages: gated local/global stages of SpaR and SpeR (4).
        conv3d_channels: hidden 3D channels of the local branches (choice 9 of the module docstring).
        d_state, d_conv, expand: every Mamba block's (64, 4, 2).
        residual: add ``lms`` to the output (choice 11); ``False`` is the paper's.
        scan_backend, chunk: passed to :func:`spatialx.models.scan.selective_scan` by every scan.
    """

    def __init__(self, bands: int, ratio: int = 4, guide_bands: int = 4, width: int = 228, dfe_units: int = 5,
                 cfe_iterations: int = 6, scm_steps: int = 16, sr_stages: int = 4, conv3d_channels: int = 8,
                 d_state: int = 64, d_conv: int = 4, expand: float = 2.0, residual: bool = True,
                 scan_backend: str = "auto", chunk: int | None = None) -> None:
        super().__init__()
        if ratio < 1 or bands < 1 or guide_bands < 1 or width < 1:
            raise ValueError(f"bands, ratio, guide_bands and width must be positive, got {bands}, {ratio}, "
                             f"{guide_bands}, {width}")
        self.bands, self.ratio, self.guide_bands, self.width = bands, int(ratio), guide_bands, width
        self.residual = residual
        mamba = {"d_state": d_state, "d_conv": d_conv, "expand": expand, "scan_backend": scan_backend,
                 "chunk": chunk}
        self.sfe_h = SFE(bands, width)
        self.sfe_m = SFE(guide_bands, width)
        self.dfe = DFE(width, dfe_units, **mamba)  # one DFE for the three inputs (choice 5)
        self.cfe = CFE(width, cfe_iterations, **mamba)
        self.scm = SCM(width, scm_steps)
        self.spar = InteractionSR(2 * width, "spatial", sr_stages, conv3d_channels, **mamba)
        self.sper = InteractionSR(2 * width, "spectral", sr_stages, conv3d_channels, **mamba)
        self.ffm = FFM(2 * width, bands, **mamba)

    @property
    def size_multiple(self) -> int:
        return self.ratio

    def _up(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        if x.shape[-2:] == size:
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def forward(self, lms: Tensor, guide: Tensor) -> Tensor:
        if (lms.dim() != 4 or guide.dim() != 4 or lms.shape[1] != self.bands or guide.shape[1] != self.guide_bands
                or lms.shape[-2:] != guide.shape[-2:] or lms.shape[0] != guide.shape[0]):
            raise ValueError(f"SSRFN({self.bands} bands, {self.guide_bands} guide bands) expects lms (B, "
                             f"{self.bands}, H, W) and guide (B, {self.guide_bands}, H, W), got {tuple(lms.shape)} "
                             f"and {tuple(guide.shape)}")
        height, width = lms.shape[-2:]
        guide = guide.to(lms.dtype)
        # padded and cropped unconditionally (a pad of 0 is a copy, a crop to the size a view): a branch on the
        # size would be fixed at its traced value in an ONNX export with dynamic height and width
        pad_h, pad_w = (-height) % self.ratio, (-width) % self.ratio
        hsi = F.pad(lms, (0, pad_w, 0, pad_h), mode="replicate")
        msi = F.pad(guide, (0, pad_w, 0, pad_h), mode="replicate")
        size = (hsi.shape[-2], hsi.shape[-1])
        low_hsi = F.avg_pool2d(hsi, self.ratio) if self.ratio > 1 else hsi
        low_msi = F.avg_pool2d(msi, self.ratio) if self.ratio > 1 else msi

        f_dh = self.dfe(self.sfe_h(low_hsi))
        f_dm = self.dfe(self.sfe_m(msi))
        f_dlm = self.dfe(self.sfe_m(low_msi))
        error = self.cfe(torch.cat([f_dh, f_dlm], dim=1))
        f_op = self.scm(f_dm, self._up(error, size))
        stacked = torch.cat([self._up(f_dh, size), f_op], dim=1)
        out = self.ffm(self.spar(stacked), self.sper(stacked))[..., :height, :width]
        return lms + out if self.residual else out
