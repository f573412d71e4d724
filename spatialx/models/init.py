"""Weight initialisation shared by the U-Net networks (LE-Mamba, RWKVFusion): the vision-transformer convention."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def init_linear_and_conv(model: nn.Module) -> None:
    """Every ``nn.Linear`` truncated normal (std 0.02) and every ``nn.Conv2d`` Kaiming normal (fan-out), biases 0."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="leaky_relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
