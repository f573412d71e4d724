"""Parameter and FLOP counts of the networks, as the fusion papers report them (``spatialx models``).

Convention: **one multiply-accumulate (MAC) counts as one FLOP**, as fvcore and thop count and as the field's papers
report "FLOPs" (LE-Mamba, RWKVFusion, PanMamba, ...). Batch size 1 at the field's usual 64 x 64 input
(:func:`network_inputs`). What is counted, by forward hooks on the modules of one forward pass (no_grad, eval):

- ``conv``: ``nn.Conv1d/2d/3d`` -- output elements x (in_channels / groups) x kernel volume; transposed
  convolutions: input elements x (out_channels / groups) x kernel volume. Biases are not counted.
- ``linear``: ``nn.Linear`` -- output elements x in_features.
- ``norm``: ``nn.LayerNorm``, ``nn.GroupNorm``, ``nn.BatchNorm*``, ``nn.InstanceNorm*`` -- 5 per element with an
  affine transform, 4 without (fvcore's rule).
- ``ssm``: each :class:`~spatialx.models.ss2d.SS2D` call, counted analytically from its shapes, with ``B`` batch,
  ``K = 4`` directions, ``D = d_inner``, ``L = H x W``, ``N = d_state``, ``R = dt_rank``:

  * the selective scan: ``9 B K D L N + B K D L`` -- the figure VMamba and LE-Mamba's authors register for
    ``selective_scan_fn`` in fvcore (Mamba's estimate of the recurrence: discretisation ``exp(dt A)``, ``dt B u``,
    the state update and the ``C h`` read-out, about 9 operations per state element and step), plus the ``D u``
    skip; the softplus of dt and the SiLU gate are not counted;
  * the per-direction projections done with ``einsum`` on raw parameters, invisible to the hooks: ``x_proj``
    ``B K L D (R + 2N)`` and ``dt_proj`` ``B K L R D``;
  * LE-Mamba's S2L update when a state is shared in: ``einsum('bkdn,bknl->bkdl')``, ``B K D N L`` (its two grouped
    1x1 conv1d projections are ``nn.Conv1d`` and counted as ``conv``).

- ``extra``: any module defining ``extra_flops(args, kwargs, output) -> int`` (costs its layers cannot show).

Not counted: activations, element-wise additions and products, softmax, resizing (``F.interpolate``), padding and
reshapes -- as fvcore by default, they are a few percent at most of a fusion network's count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["count_gflops", "count_params", "flop_breakdown", "network_inputs", "ss2d_flops"]

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def count_params(model: nn.Module) -> int:
    """Number of parameters (each shared tensor once), trainable or not."""
    return sum(p.numel() for p in model.parameters())


def network_inputs(config: Mapping[str, Any] | nn.Module, size: int = 64, batch: int = 1,
                   dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """The ``(lms, guide)`` pair a fusion network takes at ``size x size``: (batch, bands, size, size) and
    (batch, guide_bands, size, size) (``guide_bands`` 1, the PAN, unless the config or model says otherwise).
    Values are uniform in [0, 1) from a fixed seed: FLOPs do not depend on them."""
    if isinstance(config, nn.Module):
        bands, guide = getattr(config, "bands", None), getattr(config, "guide_bands", 1)
    else:
        bands, guide = config.get("bands"), config.get("guide_bands", 1)
    if bands is None:
        raise ValueError("the configuration has no 'bands'; pass the network inputs explicitly")
    generator = torch.Generator().manual_seed(0)
    lms = torch.rand(batch, int(bands), size, size, generator=generator, dtype=dtype)
    guide_img = torch.rand(batch, int(guide), size, size, generator=generator, dtype=dtype)
    return lms.to(device), guide_img.to(device)


def ss2d_flops(module: nn.Module, x: Tensor, shared_state: bool) -> tuple[int, int]:
    """(scan FLOPs, projection-einsum FLOPs) of one SS2D call on channels-last ``x`` (see the module docstring)."""
    batch, height, width = x.shape[0], x.shape[1], x.shape[2]
    k, d, n, r = 4, module.d_inner, module.d_state, module.dt_rank
    length = height * width
    scan = 9 * batch * k * d * length * n + batch * k * d * length
    einsums = batch * k * length * d * (r + 2 * n) + batch * k * length * r * d
    if shared_state:
        einsums += batch * k * d * n * length
    return scan, einsums


def _conv_flops(module: nn.Module, inputs: tuple, output: Tensor) -> int:
    kernel = math.prod(module.kernel_size)
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return inputs[0].numel() * (module.out_channels // module.groups) * kernel
    return output.numel() * (module.in_channels // module.groups) * kernel


def _norm_flops(module: nn.Module, inputs: tuple) -> int:
    affine = getattr(module, "elementwise_affine", None)
    if affine is None:
        affine = getattr(module, "affine", False)
    return inputs[0].numel() * (5 if affine else 4)


def flop_breakdown(model: nn.Module, inputs: Tensor | Sequence[Tensor], **kwargs: Any) -> dict[str, int]:
    """FLOPs (MACs) of ``model(*inputs, **kwargs)`` by kind: ``conv``, ``linear``, ``norm``, ``ssm`` (the selective
    scans), ``ssm_einsum`` (SS2D's projections on raw parameters and the S2L update), ``extra``, and ``total``.
    One forward pass in eval mode without gradients; the model's mode is restored afterwards."""
    from spatialx.models.ss2d import SS2D

    counts = dict.fromkeys(("conv", "linear", "norm", "ssm", "ssm_einsum", "extra"), 0)
    handles = []

    def conv_hook(module: nn.Module, args: tuple, output: Tensor) -> None:
        counts["conv"] += _conv_flops(module, args, output)

    def linear_hook(module: nn.Module, args: tuple, output: Tensor) -> None:
        counts["linear"] += output.numel() * module.in_features

    def norm_hook(module: nn.Module, args: tuple, output: Tensor) -> None:
        counts["norm"] += _norm_flops(module, args)

    def ss2d_hook(module: nn.Module, args: tuple, kwargs_: dict, output: Any) -> None:
        x = args[0] if args else kwargs_["x"]
        prev = args[1] if len(args) > 1 else kwargs_.get("prev_state")
        scan, einsums = ss2d_flops(module, x, bool(module.share_state and prev is not None))
        counts["ssm"] += scan
        counts["ssm_einsum"] += einsums

    def extra_hook(module: nn.Module, args: tuple, kwargs_: dict, output: Any) -> None:
        counts["extra"] += int(module.extra_flops(args, kwargs_, output))

    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
        elif isinstance(module, _NORMS):
            handles.append(module.register_forward_hook(norm_hook))
        elif isinstance(module, SS2D):
            handles.append(module.register_forward_hook(ss2d_hook, with_kwargs=True))
        if callable(getattr(module, "extra_flops", None)):
            handles.append(module.register_forward_hook(extra_hook, with_kwargs=True))
    was_training = model.training
    args = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    try:
        model.eval()
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    counts["total"] = sum(counts.values())
    return counts


def count_gflops(model: nn.Module, inputs: Tensor | Sequence[Tensor] | None = None, size: int = 64,
                 **kwargs: Any) -> float:
    """GFLOPs (1 MAC = 1 FLOP, see the module docstring) of one forward pass on ``inputs``; by default the
    ``(lms, guide)`` pair of :func:`network_inputs` at ``size x size`` (64: the figure papers report)."""
    if inputs is None:
        inputs = network_inputs(model, size)
    return flop_breakdown(model, inputs, **kwargs)["total"] / 1e9
