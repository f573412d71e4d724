"""Weight initialisation shared by the U-Net networks (LE-Mamba, RWKVFusion): the vision-transformer convention,
from a seed when one is given."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Build weights from ``seed`` without touching the global generator (``None``: the global one, as usual)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


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
