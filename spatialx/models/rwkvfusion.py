"""RWKVFusion (Cao, Liang, Deng, Vivone): a U-Net of bidirectional RWKV (BRWKV) blocks with a multi-modal fusion
module, for pansharpening and hyperspectral/multispectral image fusion (HMIF).

``RWKVFusion(bands)(lms, guide) -> clip(lms + head(body(cat(lms, guide))), 0, 1)``: ``lms`` is the low-resolution
image upsampled to the guide's grid, (B, bands, H, W), values in [0, 1]; ``guide`` the high-resolution image,
(B, guide_bands, H, W): the PAN for pansharpening (``guide_bands=1``), the MSI for HMIF (3 or 4 bands; any band
count on either side). Any H and W: the inputs are padded (replicate) to a multiple of ``2 ** levels`` = 8 and the
output is cropped back. The clip applies in eval mode only: in training a clamp has zero gradient outside [0, 1]
and would stop the loss from pulling an overshooting pixel back, which the unclamped L1 term does.

Network (channels-last ``(B, H, W, C)`` inside; ``S_l`` = ``cat(lms, guide)`` averaged over ``2^l x 2^l`` blocks,
the raw modalities at level l)::

    x = conv3x3(S_0)                                            # bands + guide_bands -> C_0
    encoder, level l = 0, 1, 2 (``depths`` = [2, 1, 1] BRWKV blocks at C_l):
        x = BRWKV(x, S_l) ...;  skip_l = x;  x = conv_k2s2(x) * s_l      (C_l -> C_{l+1}, s_l learnable, init sqrt 2)
    middle: 1 BRWKV block at level 3
    decoder, level l = 2, 1, 0:
        x = bilinear_x2(conv1x1(x));  x = Linear(cat(x, gamma_l * skip_l))  (2 C_l -> C_l; gamma_l per channel, init 1)
        ``depths[l]`` BRWKV blocks (x, S_l)
    out = conv3x3(x)                                            # C_0 -> bands, the residual added to lms

BRWKV block (block index i over the whole network, in build order)::

    f, p = MFM(x, S_l)          f = (F + M) * GELU(p), p = mean_HW(F + M), F = RMSNorm(conv3x3(x)),
                                M = RMSNorm(conv3x3(S_l))                            (paper Eq. (15))
    x = x + f                   raw-information replenishment
    (b1, a1, g1, b2, a2, g2) = Linear(SiLU(p))                      adaLN from the pooled summary, (B, 6 C)
    x = x + g1 * SpatialMix(LN(x) * (1 + a1) + b1)                  gated residuals
    x = x + g2 * ChannelMix(LN(x) * (1 + a2) + b2)

    SpatialMix: token shift; r, k, v, g = Linear(C -> 2C) each (C channels per scan); scans: row-major and
                column-major for even i, both reversed for odd i (bidirectionality comes from alternating blocks);
                the two scans' r, k, v stacked along the channels (2C = 2C/32 heads of 32) -> one WKV call
                (:class:`~spatialx.models.wkv.WKV`, decay exp(-exp(w)), bonus u, per scan and head) -> each scan
                back to image order -> GroupNorm per head -> * SiLU(g) -> Linear(2C -> C)
    ChannelMix: token shift; sigmoid(R x_r) * V(relu(K x_k)^2), hidden 2C

Choices where the paper is ambiguous or silent (the notes, from the authors' code, settle the rest):

* WKV form. The paper's Eq. (7) is Vision-RWKV's RWKV-4 "Bi-WKV" (a normalised sum with exp(k) weights); the
  authors' code, per the notes, is RWKV-5/6's per-head matrix-state recurrence with head size 32, decay
  exp(-exp(w)) and bonus u. We follow the code; ``w`` is a per-channel parameter (not RWKV-6's data-dependent
  decay). Eq. (8)'s sigmoid(R) gate belongs to RWKV-4, where r is not a query; here r is the query and the gate is
  SiLU(g), as the notes say.
* Scan stacking ("X_s in R^{L x C}, C = n C'", then X_s W_R). Taken literally with a full W, each channel of the
  stacked sequence at position t would mix two different pixels (the t-th of the row-major and of the column-major
  order). We read W as block-diagonal over the scans: each scan's r, k, v come from its own pixel, computed in image
  order (a per-token Linear commutes with reordering) and then scanned; each scan has its own heads, w and u. The
  two outputs are put back in image order and concatenated; W_O (2C -> C) merges them.
* Token shift: kept (the paper does not mention it; RWKV and Vision-RWKV have it): Vision-RWKV's quad-directional
  shift (a quarter of the channels from each 4-neighbour) with RWKV-5's static per-channel mixing ratios, in both
  mixes. It costs no FLOPs of note and gives every block a 3 x 3 neighbourhood besides the 1-D scans.
* Normalisation: LayerNorm without affine parameters before each mix (adaLN supplies the scale and shift; the
  paper's RMSNorm in Eq. (9) plays this pre-norm role); RWKV's GroupNorm per head on the WKV output.
* adaLN conditioning: the MFM's pooled vector p (one C-vector per image). The paper injects the T5 caption this way
  (a scale-shift); with no caption for pansharpening and HMIF, the pooled modality-aware summary is the
  conditioning. Initialised to zero weights with gates 1, shifts and scales 0: a fresh block is a plain pre-norm
  residual block and every branch trains from the first step. A per-pixel modulation (Linear on f) was the
  alternative: same parameters, +0.47 GFLOPs (2.81 G, 20 % over the paper), so not the reading the sizes support.
* MFM: Eq. (15) as written, kernel 3 for both convolutions (unstated; kernel 1 gives 0.93 M / 1.63 G, far from the
  paper); its output is added to the stream (replenishment) rather than replacing it; it is in every block,
  encoder and decoder, as the notes say. The mask path (Eq. (16)) and the caption path (Eq. (18): a spatial mix and
  an MLP over [T, X_img]) are omitted, as the paper omits masks for pansharpening/HMIF and the notes omit captions;
  without T, path iii has nothing to exchange and is not built.
* Widths. The notes give 32 -> 64 -> 64 -> 64, which lands far off the paper: 0.859 M parameters, 0.922 GFLOPs
  (-29 %, -61 %). No choice inside the blocks closes that: at 64 x 64 input the paper's 2.34 G for 1.21 M means
  ~1930 MACs per parameter, i.e. parameters weighted towards the 64 x 64 level, whereas with 32 channels there
  nearly all parameters sit in the 64-wide 32^2, 16^2 and 8^2 levels (our 32-wide build: ~1070 MACs per parameter;
  a 64-wide one: ~1850). With 64 channels at every level the paper's sizes come out: 1,262,859 parameters (+4.4 %)
  and 2.342 GFLOPs (+0.1 %). ``widths=(64, 64, 64, 64)`` is therefore the default; ``widths=(32, 64, 64, 64)``
  builds the notes' reading.
* Skips: the encoder features times a per-channel factor (init 1), concatenated, Linear 2C -> C, as LE-Mamba's
  U-Net (same group); up = 1x1 conv at the coarse resolution, then bilinear x2 (4x cheaper than the other order).
* Initialisation: Linear truncated normal (std 0.02), Conv2d Kaiming (fan-out), WKV as
  :class:`~spatialx.models.wkv.WKV`; the head's weights truncated normal std 1e-3, so that a fresh network starts
  near ``lms`` (Kaiming there gave a residual of RMS ~15 on [0, 1] images).

Size (WV3: 8 bands + PAN, 64 x 64, :mod:`spatialx.models.flops`, 1 MAC = 1 FLOP): 1,262,859 parameters = blocks
1,166,400 (MFM 380,736; adaLN 224,640; spatial mix 375,552; channel mix 185,472) + down 49,344 + up 12,288 + skip
fuse 24,768 + intro 5,248 + head 4,616 + scales 195; 2.342 GFLOPs = linear 1.212 + conv 0.867 + WKV recurrence
0.241 (``extra``, :func:`~spatialx.models.wkv.wkv_flops`) + norms 0.022. Paper: 1.21 M, 2.34 G. QB/GF2 (4 bands):
1.238 M, 2.279 G. HMIF (paper, Chikusei/Pavia x4: 1.888 M, 3.134 G): 102 HS bands + RGB 1.870 M, 3.841 G; 128 + 4
bands 2.041 M, 4.262 G; 31 + RGB 1.420 M, 2.729 G -- the MFM's 3x3 convolution of the raw modalities grows with the
band count, so our HMIF FLOPs run 23-36 % over the paper's (its HMIF configuration is not described).

Tiling: the WKV scans and the MFM's pooling see the whole tile, so no halo makes tiles exact; with 16 px of context
a fresh network's tiles differed from the whole image by ~1 % of the residual's peak, evenly (not only at seams).
CPU inference, one thread: 5.3 s for 256 x 256; activations ~6.7 KB per pixel (a 512 x 512 tile: +1.8 GB).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spatialx.models.init import init_linear_and_conv, seeded
from spatialx.models.wkv import WKV

__all__ = ["BRWKVBlock", "ChannelMix", "MultiModalFusion", "RWKVFusion", "SpatialMix", "token_shift"]


# ----------------------------------------------------------------------------------------------------------------
# Pieces of a block (channels-last tensors (B, H, W, C) throughout)
# ----------------------------------------------------------------------------------------------------------------


def token_shift(x: Tensor) -> Tensor:
    """Vision-RWKV's quad-directional token shift: the channels in four groups, each taking the value of one of the
    pixel's four neighbours (left, right, above, below; zeros past the border). (B, H, W, C) -> (B, H, W, C)."""
    channels = x.shape[-1]
    q = channels // 4
    out = torch.zeros_like(x)
    out[:, :, 1:, :q] = x[:, :, :-1, :q]  # from the left neighbour
    out[:, :, :-1, q:2 * q] = x[:, :, 1:, q:2 * q]  # from the right
    out[:, 1:, :, 2 * q:3 * q] = x[:, :-1, :, 2 * q:3 * q]  # from above
    out[:, :-1, :, 3 * q:] = x[:, 1:, :, 3 * q:]  # from below
    return out


def _mix_init(channels: int, power: float) -> Tensor:
    """RWKV-style token-shift mixing ratios: a per-channel ramp from 1 down towards 0, so channels differ in how
    much of the neighbour they take."""
    ramp = torch.arange(channels, dtype=torch.float32) / max(1, channels)
    return 1.0 - ramp ** power


class SpatialMix(nn.Module):
    """The BRWKV spatial mixing on one scan pair (module docstring): token shift -> r, k, v, g projections (each
    ``dim -> 2 dim``: ``dim`` channels per scan) -> both scans' WKV as one call on the stacked channels -> back to
    image order -> GroupNorm per head -> ``* SiLU(g)`` -> ``2 dim -> dim``.

    ``reverse``: scan the reversed row-major and column-major orders (the odd blocks)."""

    scans = 2

    def __init__(self, dim: int, head_size: int = 32, reverse: bool = False, wkv_backend: str = "auto",
                 wkv_chunk: int | None = None) -> None:
        super().__init__()
        if dim % head_size:
            raise ValueError(f"the width ({dim}) must be a multiple of the head size ({head_size})")
        att = self.scans * dim
        self.dim, self.reverse = dim, reverse
        self.mix_r = nn.Parameter(_mix_init(dim, 0.5))
        self.mix_k = nn.Parameter(_mix_init(dim, 1.0))
        self.mix_v = nn.Parameter(_mix_init(dim, 0.7))
        self.mix_g = nn.Parameter(_mix_init(dim, 0.5))
        self.receptance = nn.Linear(dim, att, bias=False)
        self.key = nn.Linear(dim, att, bias=False)
        self.value = nn.Linear(dim, att, bias=False)
        self.gate = nn.Linear(dim, att, bias=False)
        self.wkv = WKV(att, head_size, backend=wkv_backend, chunk=wkv_chunk)
        # RWKV-5/6's ln_x: GroupNorm with one group per head, over each token's channels; eps as RWKV's (1e-5 times
        # its head_size_divisor 8 squared), which damps heads whose output is near zero
        self.norm = nn.GroupNorm(att // head_size, att, eps=64e-5)
        self.output = nn.Linear(att, dim, bias=False)

    def _scan(self, t: Tensor) -> Tensor:
        """(B, H, W, 2 dim) image order -> (B, H * W, 2 dim): the first ``dim`` channels row-major, the others
        column-major (each reversed for odd blocks), stacked along the channels."""
        batch, height, width, _ = t.shape
        rows = t[..., :self.dim].reshape(batch, height * width, self.dim)
        cols = t[..., self.dim:].transpose(1, 2).reshape(batch, height * width, self.dim)
        seq = torch.cat([rows, cols], dim=-1)
        return seq.flip(1) if self.reverse else seq

    def _unscan(self, seq: Tensor, height: int, width: int) -> Tensor:
        if self.reverse:
            seq = seq.flip(1)
        batch = seq.shape[0]
        rows = seq[..., :self.dim].reshape(batch, height, width, self.dim)
        cols = seq[..., self.dim:].reshape(batch, width, height, self.dim).transpose(1, 2)
        return torch.cat([rows, cols], dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[1:3]
        shifted = token_shift(x) - x
        r = self.receptance(x + shifted * self.mix_r)
        k = self.key(x + shifted * self.mix_k)
        v = self.value(x + shifted * self.mix_v)
        g = self.gate(x + shifted * self.mix_g)
        out = self._unscan(self.wkv(self._scan(r), self._scan(k), self._scan(v)), height, width)
        out = self.norm(out.reshape(-1, out.shape[-1])).view(out.shape)
        return self.output(out * F.silu(g))


class ChannelMix(nn.Module):
    """RWKV's channel mixing: token shift, then ``sigmoid(R x_r) * V(relu(K x_k)^2)``, hidden ``hidden_ratio * dim``."""

    def __init__(self, dim: int, hidden_ratio: float = 2.0) -> None:
        super().__init__()
        hidden = round(dim * hidden_ratio)
        self.mix_k = nn.Parameter(_mix_init(dim, 1.0))
        self.mix_r = nn.Parameter(_mix_init(dim, 1.0))
        self.key = nn.Linear(dim, hidden, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        shifted = token_shift(x) - x
        k = torch.relu(self.key(x + shifted * self.mix_k)).square()
        return torch.sigmoid(self.receptance(x + shifted * self.mix_r)) * self.value(k)


class MultiModalFusion(nn.Module):
    """The MFM's raw-information path (paper Eq. (15)); the caption and mask paths are omitted (module docstring).

    ``forward(x, modalities) -> (feature, pooled)``: ``f = RMSNorm(Conv(x))``, ``s = RMSNorm(Conv(modalities))``,
    ``pooled = mean_HW(f + s)`` (B, C) and ``feature = (f + s) * GELU(pooled)`` (B, H, W, C). ``modalities`` are
    the raw inputs ``cat(lms, guide)`` at this block's resolution, channels first."""

    def __init__(self, dim: int, modal_channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.feature_conv = nn.Conv2d(dim, dim, kernel, padding=kernel // 2)
        self.modal_conv = nn.Conv2d(modal_channels, dim, kernel, padding=kernel // 2)
        self.feature_norm = nn.RMSNorm(dim, eps=1e-6)
        self.modal_norm = nn.RMSNorm(dim, eps=1e-6)

    def forward(self, x: Tensor, modalities: Tensor) -> tuple[Tensor, Tensor]:
        f = self.feature_norm(self.feature_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
        s = self.modal_norm(self.modal_conv(modalities).permute(0, 2, 3, 1))
        z = f + s
        pooled = z.mean(dim=(1, 2))
        return z * F.gelu(pooled)[:, None, None, :], pooled


class BRWKVBlock(nn.Module):
    """One BRWKV layer (module docstring): MFM replenishment, then spatial and channel mixing, each pre-normalised
    with an adaLN modulation and added through a gate, both from the MFM's pooled summary.

    ``forward(x, modalities)``: ``x`` (B, H, W, dim), ``modalities`` (B, modal_channels, H, W)."""

    def __init__(self, dim: int, modal_channels: int, reverse: bool = False, head_size: int = 32,
                 hidden_ratio: float = 2.0, mfm_kernel: int = 3, norm_eps: float = 1e-6, wkv_backend: str = "auto",
                 wkv_chunk: int | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.mfm = MultiModalFusion(dim, modal_channels, mfm_kernel)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=False)
        self.modulation = nn.Linear(dim, 6 * dim)
        self.spatial = SpatialMix(dim, head_size, reverse, wkv_backend, wkv_chunk)
        self.channel = ChannelMix(dim, hidden_ratio)

    @torch.no_grad()
    def reset_modulation(self) -> None:
        """Shifts and scales 0, gates 1, independent of the condition at first: the block starts as a plain
        pre-norm residual block (every branch trains from the first step, unlike adaLN-Zero's closed gates)."""
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)
        self.modulation.bias[2 * self.dim:3 * self.dim] = 1.0
        self.modulation.bias[5 * self.dim:] = 1.0

    def forward(self, x: Tensor, modalities: Tensor) -> Tensor:
        feature, pooled = self.mfm(x, modalities)
        x = x + feature
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(pooled))[:, None, None].chunk(6, -1)
        x = x + gate1 * self.spatial(self.norm1(x) * (1 + scale1) + shift1)
        return x + gate2 * self.channel(self.norm2(x) * (1 + scale2) + shift2)


# ----------------------------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------------------------


class RWKVFusion(nn.Module):
    """``RWKVFusion(bands, ratio)(lms, guide) -> fused``: (B, bands, H, W) and (B, guide_bands, H, W) ->
    (B, bands, H, W), clipped to [0, 1] in eval mode.

    Args:
        bands: channels of ``lms`` and of the output.
        ratio: resolution ratio of the task (recorded for the pipeline; the network works on the guide's grid).
        guide_bands: channels of the guide (1 for PAN, 3 or 4 for a high-resolution MSI).
        widths: channels at each level, the finest first, then the middle (``len(depths) + 1`` entries).
        depths: BRWKV blocks per encoder level (the decoder mirrors them); its length is the number of levels.
        middle_depth: blocks at the coarsest resolution.
        head_size: WKV head size.
        hidden_ratio: channel-mix hidden width over the block width.
        mfm_kernel: kernel of the MFM's two convolutions.
        down_scale: initial value of each downsampling's learnable scale.
        wkv_backend, wkv_chunk: passed to :func:`spatialx.models.wkv.wkv` (``"auto"``: fla on CUDA, the compiled
            kernel in CPU inference, the chunked form when training on the CPU).
        seed: build the weights from this seed (independently of the global RNG); ``None`` uses the global RNG.
    """

    #: Context (pixels of the guide grid) a tile needs each side. The WKV scans and the MFM's pooling see the whole
    #: tile, so no finite halo makes tiles exact; 32 px keeps the seams' differences small (see the module docstring).
    halo = 32

    def __init__(self, bands: int, ratio: int = 4, guide_bands: int = 1, widths: Sequence[int] = (64, 64, 64, 64),
                 depths: Sequence[int] = (2, 1, 1), middle_depth: int = 1, head_size: int = 32,
                 hidden_ratio: float = 2.0, mfm_kernel: int = 3, down_scale: float = math.sqrt(2.0),
                 norm_eps: float = 1e-6, wkv_backend: str = "auto", wkv_chunk: int | None = None,
                 seed: int | None = None) -> None:
        super().__init__()
        if bands < 1 or guide_bands < 1:
            raise ValueError(f"bands and guide_bands must be positive, got {bands} and {guide_bands}")
        depths, widths = [int(d) for d in depths], [int(w) for w in widths]
        levels = len(depths)
        if levels < 1 or len(widths) != levels + 1:
            raise ValueError(f"widths needs one entry per level plus the middle ({levels + 1}), got {widths}")
        if any(w % head_size for w in widths):
            raise ValueError(f"every width must be a multiple of the head size {head_size}, got {widths}")
        self.bands, self.ratio, self.guide_bands = int(bands), int(ratio), int(guide_bands)
        self.levels, self.widths, self.depths = levels, widths, depths
        modal = self.bands + self.guide_bands
        count = 0

        def block(dim: int) -> BRWKVBlock:
            nonlocal count
            blk = BRWKVBlock(dim, modal, reverse=count % 2 == 1, head_size=head_size, hidden_ratio=hidden_ratio,
                             mfm_kernel=mfm_kernel, norm_eps=norm_eps, wkv_backend=wkv_backend,
                             wkv_chunk=wkv_chunk)
            count += 1
            return blk

        with seeded(seed):
            self.intro = nn.Conv2d(modal, widths[0], 3, padding=1)
            self.encoders = nn.ModuleList()
            self.downs = nn.ModuleList()
            for level in range(levels):
                self.encoders.append(nn.ModuleList(block(widths[level]) for _ in range(depths[level])))
                self.downs.append(nn.Conv2d(widths[level], widths[level + 1], 2, stride=2))
            self.down_scales = nn.Parameter(torch.full((levels,), float(down_scale)))
            self.middle = nn.ModuleList(block(widths[levels]) for _ in range(middle_depth))
            self.ups = nn.ModuleList()
            self.skip_scales = nn.ParameterList()
            self.fuses = nn.ModuleList()
            self.decoders = nn.ModuleList()
            for level in reversed(range(levels)):
                self.ups.append(nn.Conv2d(widths[level + 1], widths[level], 1, bias=False))
                self.skip_scales.append(nn.Parameter(torch.ones(widths[level])))
                self.fuses.append(nn.Linear(2 * widths[level], widths[level]))
                self.decoders.append(nn.ModuleList(block(widths[level]) for _ in range(depths[level])))
            self.head = nn.Conv2d(widths[0], self.bands, 3, padding=1)
            self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        init_linear_and_conv(self)
        for module in self.modules():
            if isinstance(module, BRWKVBlock):
                module.reset_modulation()
        # A small head: a fresh network starts near lms (Kaiming here gave a residual of RMS ~15 on [0, 1] images,
        # the stream's RMS being ~3 at the head), and the L1 loss then starts from the interpolation's error.
        nn.init.trunc_normal_(self.head.weight, std=1e-3)

    @property
    def size_multiple(self) -> int:
        """H and W are padded internally to a multiple of this (the U-Net's total downsampling)."""
        return 2 ** self.levels

    def forward(self, lms: Tensor, guide: Tensor) -> Tensor:
        if (lms.dim() != 4 or guide.dim() != 4 or lms.shape[1] != self.bands or guide.shape[1] != self.guide_bands
                or lms.shape[-2:] != guide.shape[-2:] or lms.shape[0] != guide.shape[0]):
            raise ValueError(f"RWKVFusion({self.bands} bands) expects lms (B, {self.bands}, H, W) and guide "
                             f"(B, {self.guide_bands}, H, W), got {tuple(lms.shape)} and {tuple(guide.shape)}")
        height, width = lms.shape[-2:]
        pad_h, pad_w = (-height) % self.size_multiple, (-width) % self.size_multiple
        modal = torch.cat([lms, guide.to(lms.dtype)], dim=1)
        if pad_h or pad_w:
            modal = F.pad(modal, (0, pad_w, 0, pad_h), mode="replicate")
        out = self.residual(modal)[..., :height, :width] + lms
        # Clipped for inference only: a clamp has zero gradient outside [0, 1], so in training it would stop the
        # loss from pulling an overshooting pixel back; the L1 term does that unclamped.
        return out if self.training else out.clamp(0.0, 1.0)

    def residual(self, modal: Tensor) -> Tensor:
        """``head(body(modalities))`` for ``modal = cat(lms, guide)`` of a size that is a multiple of
        :attr:`size_multiple` (``forward`` pads to it)."""
        height, width = modal.shape[-2:]
        if height % self.size_multiple or width % self.size_multiple:
            raise ValueError(f"residual() needs H and W multiples of {self.size_multiple}, got {height}x{width}")
        # the raw modalities at every level, by exact 2^l x 2^l means (the sizes are multiples of 2^levels)
        modals = [modal] + [F.avg_pool2d(modal, 2 ** level) for level in range(1, self.levels + 1)]
        # channels-last memory from here on (the convolutions keep it): no copy in every LayerNorm
        x = self.intro(modal).permute(0, 2, 3, 1).contiguous()
        skips = []
        for level, (blocks, down) in enumerate(zip(self.encoders, self.downs, strict=True)):
            for blk in blocks:
                x = blk(x, modals[level])
            skips.append(x)
            x = (down(x.permute(0, 3, 1, 2)) * self.down_scales[level]).permute(0, 2, 3, 1)
        for blk in self.middle:
            x = blk(x, modals[self.levels])
        for index, (up, scale, fuse, blocks) in enumerate(zip(self.ups, self.skip_scales, self.fuses,
                                                             self.decoders, strict=True)):
            level = self.levels - 1 - index
            x = F.interpolate(up(x.permute(0, 3, 1, 2)), scale_factor=2, mode="bilinear", align_corners=False)
            x = fuse(torch.cat([x.permute(0, 2, 3, 1), skips[level] * scale], dim=-1))
            for blk in blocks:
                x = blk(x, modals[level])
        return self.head(x.permute(0, 3, 1, 2))
