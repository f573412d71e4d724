"""Device selection for networks (``--device auto|cpu|cuda``)."""

from __future__ import annotations

import importlib.util

from spatialx.errors import SpatialxError

DEVICES = ("auto", "cpu", "cuda")


def check_device(device: str) -> str:
    """The device name, lower-cased, if it is one spatialx knows."""
    device = device.lower()
    if device not in DEVICES:
        raise SpatialxError(f"unknown device {device!r}", hint="use auto, cpu or cuda")
    return device


def resolve_device(device: str) -> str:
    """Return "cpu" or "cuda"; asking for CUDA where there is none is an error, not a silent fallback."""
    device = check_device(device)
    if device == "cpu":
        return "cpu"
    if importlib.util.find_spec("torch") is None:
        if device == "cuda":
            raise SpatialxError("--device cuda needs PyTorch with CUDA", hint="install torch with CUDA support")
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise SpatialxError("--device cuda: no CUDA device is available", hint="use --device cpu or auto")
    return "cpu"
