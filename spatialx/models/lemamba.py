"""LE-Mamba (Cao, Wu, Deng, Zhong, ACM MM 2024): a U-Net of local-enhanced vision Mamba (LEVM) blocks with state
sharing, for pansharpening and hyperspectral/multispectral image fusion (HMIF).

``LEMamba(bands)(lms, guide) -> lms + net(lms, guide)``: ``lms`` is the low-resolution image upsampled to the guide's
grid, (B, bands, H, W); ``guide`` the high-resolution image, (B, guide_bands, H, W) -- the PAN band for
pansharpening (``guide_bands=1``), the high-resolution MSI (RGB, ``guide_bands=3``) for HMIF. Any H and W: the
inputs are padded (reflect, or replicate where the image is too small to reflect) to a multiple of ``2 ** levels``
and the output is cropped back.

Network (channels-last ``(B, H, W, C)`` inside, like :class:`~spatialx.models.ss2d.VSSBlock`)::

    x = conv3x3(lms)                                            # bands -> width
    encoder, level l = 0 .. levels-1 (``depths[l]`` LEVM blocks at width C_l):
        x, h = LEVM(x, guide_l, h_prev)  ...; keep (x, h) for level l;  x = conv k2 s2 (C_l -> C_{l+1})
    middle: ``middle_depth`` LEVM blocks at the coarsest level
    decoder, level l = levels-1 .. 0:
        x = bilinear_x2(conv1x1(x))  (C_{l+1} -> C_l);  x = Linear(cat(x, skip_scale_l * x_enc_l))  (2 C_l -> C_l)
        ``depths[l]`` LEVM blocks; the first also takes the encoder's state h_enc_l (skip-connected flow)
    out = conv3x3(x)                                            # width -> bands;  forward returns lms + out

``skip_scale_l`` is per channel and starts at 0, so a fresh network begins without feature skips. Widths:
``C_0 = width`` and ``C_{l+1} = C_l * channel_mults[l]``; the authors' "tiny" configuration that the paper reports
(0.74 M parameters on WV3) keeps the width at 32 at every level (``channel_mults = (1, 1, 1)``).

LEVM block, on ``x`` at level l (window ``window_sizes[l]``, global ``ssm_ratios[l]``)::

    x = x + dwconv3x3(conv1x1(resize(guide)))                   # guide injected in every block
    if window:  x = x + local_scale * merge(VSS_local(partition(x, window)))      # local branch
    x, h = VSS_global(x, prev_state=S(h_prev, h_skip))          # global branch, state sharing

``VSS_local`` is a :class:`~spatialx.models.ss2d.VSSBlock` on non-overlapping windows (d_state 16, d_conv 7,
ssm_ratio 2, MLP ratio 1); maps whose size is not a multiple of the window are zero-padded for the partition and
cropped after the merge, and a window larger than the map shrinks to it. ``local_scale`` is per channel
(truncated normal, std 0.02, as in the authors' code). ``VSS_global`` is a VSS block with d_state 32, d_conv 11,
MLP ratio 4 and LE-Mamba's state sharing (:class:`~spatialx.models.ss2d.SS2D` with ``share_state=True``):

* every global block returns the last hidden state of each of its four scans, ``h`` (B, 4, d_inner, N);
* adjacent flow: ``h`` goes to the next block (through the encoder, the middle and the decoder, as the paper's
  Eq. (5)-(6) and Fig. 2(d));
* skip-connected flow: the state of the last block of encoder level l goes to the first decoder block of level l;
* the receiving SS2D projects the incoming state per direction with a grouped 1x1 conv1d, ``g`` is a grouped 1x1
  conv1d of the scan input ``xs`` (D -> N), and ``xs <- xs + alpha * einsum('bkdn,bknl->bkdl', h, g)`` (S2L,
  Eq. (14)), ``alpha`` (1, 4, D, 1) initialised to 0. A block that receives both flows projects each with its own
  weights and adds them (implemented as one grouped projection of the two states concatenated per direction,
  which is the same linear map). As the notes say, only the global branch shares states.

Drop-path rates grow linearly from 0 to ``drop_path`` over all blocks (encoder, middle, decoder). LayerNorm eps
1e-6. Initialisation as the authors' network: Linear weights truncated normal (std 0.02) with zero bias, Conv2d
weights Kaiming normal (fan-out), the SSM parameters as Mamba (see :mod:`spatialx.models.ss2d`).

Configurations (:func:`register`): ``wv3`` (8 bands), ``qb`` and ``gf2`` (4 bands) at ratio 4, ``hmif`` (31 bands,
RGB guide, ratio 8).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spatialx.models.init import init_linear_and_conv, seeded
from spatialx.models.ss2d import VSSBlock, hooked

__all__ = ["LEMamba", "LEVMBlock", "window_merge", "window_partition"]


# ----------------------------------------------------------------------------------------------------------------
# Windows
# ----------------------------------------------------------------------------------------------------------------


def window_partition(x: Tensor, window: tuple[int, int]) -> tuple[Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * nh * nw, wh, ww, C) non-overlapping windows, zero-padding H and W up to multiples of the
    window; also returns the padded size (for :func:`window_merge`)."""
    batch, height, width, channels = x.shape
    wh, ww = window
    pad_h, pad_w = (-height) % wh, (-width) % ww
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = height + pad_h, width + pad_w
    windows = x.view(batch, hp // wh, wh, wp // ww, ww, channels).permute(0, 1, 3, 2, 4, 5)
    return windows.reshape(-1, wh, ww, channels), (hp, wp)


def window_merge(windows: Tensor, padded: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Inverse of :func:`window_partition`: (B * nh * nw, wh, ww, C) -> (B, H, W, C), the padding cropped off."""
    _, wh, ww, channels = windows.shape
    hp, wp = padded
    nh, nw = hp // wh, wp // ww
    x = windows.view(-1, nh, nw, wh, ww, channels).permute(0, 1, 3, 2, 4, 5).reshape(-1, hp, wp, channels)
    height, width = size
    if (hp, wp) != (height, width):
        x = x[:, :height, :width].contiguous()
    return x


# ----------------------------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------------------------


class GuideInjection(nn.Module):
    """The guide (PAN or high-resolution MSI) at the block's resolution -> 1x1 conv -> depthwise 3x3, channels-last."""

    def __init__(self, guide_bands: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(guide_bands, channels, 1)
        self.dwconv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)

    def forward(self, guide: Tensor) -> Tensor:
        if hooked(self.proj):  # the FLOP counter sees the conv called
            return self.dwconv(self.proj(guide)).permute(0, 2, 3, 1)
        # the 1x1 conv as the per-pixel linear map it is, written channels last: the depthwise conv then runs on a
        # channels-last input and returns (B, H, W, C) contiguous (block input + injection on a 256 px tile: 5 ms,
        # against 13 ms as two NCHW convolutions and an add of a permuted view)
        projected = F.linear(guide.permute(0, 2, 3, 1), self.proj.weight.flatten(1), self.proj.bias)
        return self.dwconv(projected.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class LEVMBlock(nn.Module):
    """One local-enhanced vision Mamba block on channels-last features (see the module docstring).

    ``forward(x, guide, prev_state=None, skip_state=None) -> (x, state)``: ``x`` (B, H, W, dim); ``guide``
    (B, guide_bands, H, W), already at this block's resolution; ``prev_state`` (B, 4, prev_state_dim, N) from the
    previous block (adjacent flow) and ``skip_state`` (B, 4, skip_state_dim, N) from the encoder (skip-connected
    flow), each used only when this block was built to receive it. ``state`` is the global scan's last hidden
    state (B, 4, global d_inner, N), or ``None`` without state sharing.
    """

    def __init__(self, dim: int, guide_bands: int = 1, window_size: int | None = 8, ssm_ratio: float = 2.0, *,
                 local_d_state: int = 16, local_d_conv: int = 7, local_ssm_ratio: float = 2.0,
                 local_mlp_ratio: float = 1.0, global_d_state: int = 32, global_d_conv: int = 11,
                 global_mlp_ratio: float = 4.0, drop_path: float = 0.0, share_state: bool = True,
                 prev_state_dim: int | None = None, skip_state_dim: int | None = None, norm_eps: float = 1e-6,
                 share_state_mode: str = "code", scan_backend: str = "auto", chunk: int | None = None) -> None:
        super().__init__()
        if window_size is not None and window_size < 1:
            raise ValueError(f"window_size must be positive or None, got {window_size}")
        self.dim = dim
        self.window_size = window_size
        self.share_state = share_state
        self.prev_state_dim = prev_state_dim if share_state else None
        self.skip_state_dim = skip_state_dim if share_state else None
        scan = {"scan_backend": scan_backend, "chunk": chunk}
        self.inject = GuideInjection(guide_bands, dim)
        if window_size is not None:
            self.local = VSSBlock(dim, drop_path=drop_path, d_state=local_d_state, ssm_ratio=local_ssm_ratio,
                                  d_conv=local_d_conv, mlp_ratio=local_mlp_ratio, norm_eps=norm_eps, **scan)
            self.local_scale = nn.Parameter(torch.empty(dim))
            nn.init.trunc_normal_(self.local_scale, std=0.02)
        else:
            self.local = None
            self.local_scale = None
        state_in = (self.prev_state_dim or 0) + (self.skip_state_dim or 0)
        self.global_block = VSSBlock(dim, drop_path=drop_path, d_state=global_d_state, ssm_ratio=ssm_ratio,
                                     d_conv=global_d_conv, mlp_ratio=global_mlp_ratio, norm_eps=norm_eps,
                                     share_state=state_in > 0, state_dim=state_in or None,
                                     share_state_mode=share_state_mode, **scan)
        self.state_channels = self.global_block.op.d_inner
        self.d_state = global_d_state

    def _incoming(self, x: Tensor, prev_state: Tensor | None, skip_state: Tensor | None) -> Tensor | None:
        """The state handed to the global SS2D: prev and skip concatenated per direction (zeros for a missing one)."""
        parts: list[tuple[int | None, Tensor | None]] = [(self.prev_state_dim, prev_state),
                                                         (self.skip_state_dim, skip_state)]
        if all(dim is None or state is None for dim, state in parts):
            return None
        pieces = []
        for dim, state in parts:
            if dim is None:
                continue
            if state is None:
                state = x.new_zeros(x.shape[0], 4, dim, self.d_state)
            elif tuple(state.shape[1:]) != (4, dim, self.d_state) or state.shape[0] != x.shape[0]:
                raise ValueError(f"state of shape {tuple(state.shape)} does not fit this block, which expects "
                                 f"(batch, 4, {dim}, {self.d_state})")
            pieces.append(state)
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=2)

    def forward(self, x: Tensor, guide: Tensor, prev_state: Tensor | None = None,
                skip_state: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        height, width = x.shape[1], x.shape[2]
        x = x + self.inject(guide)
        if self.local is not None:
            window = (min(self.window_size, height), min(self.window_size, width))
            windows, padded = window_partition(x, window)
            local = window_merge(self.local(windows), padded, (height, width))
            x = torch.addcmul(x, self.local_scale, local)
        incoming = self._incoming(x, prev_state, skip_state)
        if not self.share_state:
            return self.global_block(x), None
        return self.global_block(x, prev_state=incoming, return_state=True)


# ----------------------------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------------------------


def _per_level(values: Sequence, levels: int, name: str) -> list:
    values = list(values)
    if len(values) != levels:
        raise ValueError(f"{name} must have one entry per level ({levels}), got {values}")
    return values


class LEMamba(nn.Module):
    """``LEMamba(bands, ratio)(lms, guide) -> fused``: (B, bands, H, W) and (B, guide_bands, H, W) -> (B, bands, H, W).

    Args:
        bands: channels of ``lms`` and of the output.
        ratio: resolution ratio of the task (recorded for the pipeline; the network works on the guide's grid).
        width: channels at the first level.
        depths: LEVM blocks per encoder level (the decoder mirrors them); its length is the number of levels.
        middle_depth: LEVM blocks at the coarsest resolution.
        window_sizes: local-branch window per level (``None``: no local branch); the middle uses the last.
        ssm_ratios: global-branch SS2D expansion per level; the middle uses the last.
        channel_mults: width multiplier applied by each downsampling (1: constant width, the paper's "tiny" model).
        local_*, global_*: the two VSS blocks' state size, depthwise kernel, expansion (local) and MLP ratio.
        drop_path: the largest drop-path rate (the last block's).
        share_state: LE-Mamba's state sharing; ``adjacent_flow`` / ``skip_flow`` switch its two flows (the
            paper's ablation, Table 4).
        guide_bands: channels of the guide (1 for PAN, 3 for an RGB MSI).
        share_state_mode: ``"code"`` (dt, B, C from the scan input before the S2L update, as the authors' code)
            or ``"paper"`` (after it, Algorithm 2).
        scan_backend, chunk: passed to :func:`spatialx.models.scan.selective_scan` (``"auto"``: ``mamba_ssm``'s
            CUDA kernel where usable, the compiled numba kernel on the CPU, else the chunked pure-PyTorch scan).
            The CUDA kernel cannot start from a state, which state sharing does not need: states are injected
            through the S2L update, not as initial states.
        seed: build the weights from this seed (independently of the global RNG); ``None`` uses the global RNG.
    """

    #: Context (pixels of the guide grid) a tile needs each side. The global scans see the whole tile, so no finite
    #: halo makes tiled and whole-image results identical; 32 pixels keeps tile borders well inside the windows.
    halo = 32

    def __init__(self, bands: int, ratio: int = 4, width: int = 32, depths: Sequence[int] = (2, 1, 1),
                 middle_depth: int = 1, window_sizes: Sequence[int | None] = (8, 8, None),
                 ssm_ratios: Sequence[float] = (2, 2, 1), channel_mults: Sequence[int] = (1, 1, 1),
                 local_d_state: int = 16, local_d_conv: int = 7, local_ssm_ratio: float = 2.0,
                 local_mlp_ratio: float = 1.0, global_d_state: int = 32, global_d_conv: int = 11,
                 global_mlp_ratio: float = 4.0, drop_path: float = 0.1, share_state: bool = True,
                 adjacent_flow: bool = True, skip_flow: bool = True, guide_bands: int = 1, norm_eps: float = 1e-6,
                 share_state_mode: str = "code", scan_backend: str = "auto", chunk: int | None = None,
                 seed: int | None = None) -> None:
        super().__init__()
        if bands < 1 or guide_bands < 1 or width < 1:
            raise ValueError(f"bands, guide_bands and width must be positive, got {bands}, {guide_bands}, {width}")
        levels = len(depths)
        if levels < 1 or any(d < 1 for d in depths) or middle_depth < 0:
            raise ValueError(f"depths must be positive and middle_depth non-negative, got {depths}, {middle_depth}")
        window_sizes = _per_level(window_sizes, levels, "window_sizes")
        ssm_ratios = _per_level(ssm_ratios, levels, "ssm_ratios")
        channel_mults = _per_level(channel_mults, levels, "channel_mults")
        self.bands, self.ratio, self.guide_bands = int(bands), int(ratio), int(guide_bands)
        self.levels = levels
        self.share_state = share_state
        self.adjacent_flow = share_state and adjacent_flow
        self.skip_flow = share_state and skip_flow
        widths = [int(width)]
        for mult in channel_mults:
            widths.append(widths[-1] * int(mult))
        self.widths = widths

        n_blocks = 2 * sum(depths) + middle_depth
        rates = [float(r) for r in torch.linspace(0, drop_path, n_blocks)] if n_blocks > 1 else [float(drop_path)]
        common = {"guide_bands": guide_bands, "local_d_state": local_d_state, "local_d_conv": local_d_conv,
                  "local_ssm_ratio": local_ssm_ratio, "local_mlp_ratio": local_mlp_ratio,
                  "global_d_state": global_d_state, "global_d_conv": global_d_conv,
                  "global_mlp_ratio": global_mlp_ratio, "share_state": share_state, "norm_eps": norm_eps,
                  "share_state_mode": share_state_mode, "scan_backend": scan_backend, "chunk": chunk}
        with seeded(seed):
            self.intro = nn.Conv2d(bands, widths[0], 3, padding=1)
            self.encoders = nn.ModuleList()
            self.downs = nn.ModuleList()
            blocks_built = 0
            prev_dim: int | None = None  # state channels of the previous block in the adjacent flow
            enc_state_dims: list[int] = []

            def block(dim: int, window: int | None, ratio_: float, skip_dim: int | None = None) -> LEVMBlock:
                nonlocal blocks_built, prev_dim
                blk = LEVMBlock(dim, window_size=window, ssm_ratio=ratio_, drop_path=rates[blocks_built],
                                prev_state_dim=prev_dim if self.adjacent_flow else None,
                                skip_state_dim=skip_dim if self.skip_flow else None, **common)
                blocks_built += 1
                prev_dim = blk.state_channels
                return blk

            for level in range(levels):
                self.encoders.append(nn.ModuleList(
                    block(widths[level], window_sizes[level], ssm_ratios[level]) for _ in range(depths[level])))
                enc_state_dims.append(prev_dim)
                self.downs.append(nn.Conv2d(widths[level], widths[level + 1], 2, stride=2))
            self.middle = nn.ModuleList(
                block(widths[levels], window_sizes[-1], ssm_ratios[-1]) for _ in range(middle_depth))
            self.ups = nn.ModuleList()
            self.skip_scales = nn.ParameterList()
            self.fuses = nn.ModuleList()
            self.decoders = nn.ModuleList()
            for level in reversed(range(levels)):
                self.ups.append(nn.Conv2d(widths[level + 1], widths[level], 1, bias=False))
                self.skip_scales.append(nn.Parameter(torch.zeros(widths[level])))
                self.fuses.append(nn.Linear(2 * widths[level], widths[level]))
                self.decoders.append(nn.ModuleList(
                    block(widths[level], window_sizes[level], ssm_ratios[level],
                          skip_dim=enc_state_dims[level] if i == 0 else None)
                    for i in range(depths[level])))
            self.ending = nn.Conv2d(widths[0], bands, 3, padding=1)
            self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        init_linear_and_conv(self)

    @property
    def size_multiple(self) -> int:
        """H and W are padded internally to a multiple of this (the U-Net's total downsampling)."""
        return 2 ** self.levels

    def _pad(self, x: Tensor, pad_h: int, pad_w: int) -> Tensor:
        if not (pad_h or pad_w):
            return x
        mode = "reflect" if pad_h < x.shape[-2] and pad_w < x.shape[-1] else "replicate"
        return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)

    def forward(self, lms: Tensor, pan: Tensor) -> Tensor:
        if (lms.dim() != 4 or pan.dim() != 4 or lms.shape[1] != self.bands or pan.shape[1] != self.guide_bands
                or lms.shape[-2:] != pan.shape[-2:] or lms.shape[0] != pan.shape[0]):
            raise ValueError(f"LEMamba({self.bands} bands) expects lms (B, {self.bands}, H, W) and guide "
                             f"(B, {self.guide_bands}, H, W), got {tuple(lms.shape)} and {tuple(pan.shape)}")
        height, width = lms.shape[-2:]
        pad_h, pad_w = (-height) % self.size_multiple, (-width) % self.size_multiple
        out = self.residual(self._pad(lms, pad_h, pad_w), self._pad(pan.to(lms.dtype), pad_h, pad_w))
        if pad_h or pad_w:
            out = out[..., :height, :width]
        return lms + out

    def residual(self, lms: Tensor, guide: Tensor) -> Tensor:
        """The network's detail prediction ``net(lms, guide)`` on inputs whose size is a multiple of
        :attr:`size_multiple` (``forward`` pads to it)."""
        height, width = lms.shape[-2:]
        if height % self.size_multiple or width % self.size_multiple:
            raise ValueError(f"residual() needs H and W multiples of {self.size_multiple}, got {height}x{width}")
        guides = [guide]
        for level in range(1, self.levels + 1):
            size = (height >> level, width >> level)
            guides.append(F.interpolate(guide, size=size, mode="bilinear", align_corners=True))

        x = self.intro(lms).permute(0, 2, 3, 1)
        state: Tensor | None = None
        skips: list[tuple[Tensor, Tensor | None]] = []
        for level, (blocks, down) in enumerate(zip(self.encoders, self.downs, strict=True)):
            for blk in blocks:
                x, state = blk(x, guides[level], prev_state=state)
            skips.append((x, state))
            x = down(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        for blk in self.middle:
            x, state = blk(x, guides[self.levels], prev_state=state)
        for index, (up, scale, fuse, blocks) in enumerate(zip(self.ups, self.skip_scales, self.fuses,
                                                             self.decoders, strict=True)):
            level = self.levels - 1 - index
            enc_x, enc_state = skips[level]
            x = F.interpolate(up(x.permute(0, 3, 1, 2)), scale_factor=2, mode="bilinear", align_corners=False)
            x = fuse(torch.cat([x.permute(0, 2, 3, 1), enc_x * scale], dim=-1))
            for i, blk in enumerate(blocks):
                x, state = blk(x, guides[level], prev_state=state, skip_state=enc_state if i == 0 else None)
        return self.ending(x.permute(0, 3, 1, 2))
