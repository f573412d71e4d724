"""PNN (Masi, Cozzolino, Verdoliva, Scarpa 2016): the classic three-layer pansharpening CNN.

``cat(lms, pan)`` -> 9x9 conv to ``width1`` -> ReLU -> 5x5 conv to ``width2`` -> ReLU -> 5x5 conv to ``bands``,
with "same" zero padding so that the output has the input's size. As the field has done since PanNet and A-PNN,
the network predicts a residual that is added to ``lms`` (the MS upsampled to the PAN grid), so an untrained
network starts near the interpolated MS rather than at noise. Receptive field: 17 x 17 pixels (8 each side).

Small (80 k parameters for 4 bands) and fast on a CPU: the network that the training, checkpointing and scene
adaptation code is tested with.
"""

from __future__ import annotations

import torch
from torch import nn


class PNN(nn.Module):
    """``PNN(bands, ratio)(lms, pan) -> fused``: (B, bands, H, W) and (B, 1, H, W) in [0, 1] -> (B, bands, H, W)."""

    #: Pixels of context each side an output pixel depends on (tiling halos).
    halo = 8

    def __init__(self, bands: int, ratio: int = 4, width1: int = 64, width2: int = 32):
        super().__init__()
        if bands < 1 or width1 < 1 or width2 < 1:
            raise ValueError(f"bands and widths must be positive, got {bands}, {width1}, {width2}")
        self.bands, self.ratio = int(bands), int(ratio)
        self.conv1 = nn.Conv2d(bands + 1, width1, kernel_size=9, padding=4)
        self.conv2 = nn.Conv2d(width1, width2, kernel_size=5, padding=2)
        self.conv3 = nn.Conv2d(width2, bands, kernel_size=5, padding=2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, lms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        if lms.shape[1] != self.bands or pan.shape[1] != 1 or lms.shape[-2:] != pan.shape[-2:]:
            raise ValueError(f"PNN({self.bands} bands) expects lms (B, {self.bands}, H, W) and pan (B, 1, H, W), "
                             f"got {tuple(lms.shape)} and {tuple(pan.shape)}")
        x = self.relu(self.conv1(torch.cat([lms, pan], dim=1)))
        x = self.relu(self.conv2(x))
        return lms + self.conv3(x)
