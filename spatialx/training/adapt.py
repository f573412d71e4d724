"""Scene adaptation: fine-tune a trained network on the scene it is about to fuse (``--adapt-steps N``).

The scene is its own training set through Wald's protocol: patches of the PAN and MS are degraded by the ratio
(:class:`~spatialx.training.data.WaldPatchDataset`), the network learns to restore the original MS from them, and
the same weights are then applied at full resolution (the idea of A-PNN, Scarpa et al. 2018). Same recipe as
training (the network's loss, optimizer, schedule, clipping, EMA, augmentation; :mod:`spatialx.training.recipes`);
the EMA of the weights, when the recipe keeps one, is what the network holds at the end.

``adapt_loss="full"`` (pansharpening) trains instead on full-resolution patches of the scene with the
unsupervised spectral + spatial consistency objective of :mod:`spatialx.training.fullres`; ``"both"`` sums the
two. Augmentation is not applied to full-resolution patches: a quarter turn would move the decimation phase of
the spectral term off the MS grid.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from spatialx.errors import InputMismatchError
from spatialx.sensors import SensorProfile, get_sensor
from spatialx.tasks import PANSHARPEN, TaskSpec
from spatialx.training.data import (
    ArrayScene,
    GridPatchSampler,
    HMIFWaldPatchDataset,
    PatchStream,
    PolSARWaldPatchDataset,
    RandomPatchSampler,
    WaldPatchDataset,
)
from spatialx.training.loop import LossFn, make_loss, resolve_torch_device, train, validate


def _fitting_patch(scene: ArrayScene, patch: int, ratio: int, label: str = "MS") -> int:
    """``patch`` or, for a small scene, the largest multiple of ``ratio`` that fits it."""
    fits = min(scene.ms_rows, scene.ms_cols) // ratio * ratio
    size = min(int(patch) // ratio * ratio, fits)
    if size < 4 * ratio:
        raise InputMismatchError(f"the scene ({label} {scene.ms_cols}x{scene.ms_rows} pixels) is too small to adapt "
                                 f"on at ratio {ratio}", hint=f"it needs at least {4 * ratio} {label} pixels a side")
    return size


def adapt(
    model: nn.Module,
    pan: np.ndarray | Sequence[np.ndarray],
    ms: np.ndarray | Sequence[np.ndarray],
    sensor: str | SensorProfile,
    ratio: int | None = None,
    *,
    steps: int,
    patch: int = 64,
    batch_size: int = 8,
    lr: float = 1e-4,
    weight_decay: float = 1e-6,
    clip: float | None = 0.03,
    ema: float | None = 0.995,
    loss: str | LossFn = "l1+ssim",
    optimizer: str = "adamw",
    schedule: str = "none",
    augment: bool = False,
    adapt_loss: str = "reduced",
    seed: int = 0,
    device: str | torch.device = "cpu",
    pan_to_ms: int | None = None,
    nodata: float | None = None,
    eval_patches: int = 8,
    progress: Callable[..., None] | None = None,
    task: TaskSpec = PANSHARPEN,
    sensors: Mapping[str, SensorProfile] | None = None,
    level: float | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` in place on reduced-resolution patches of one scene; returns statistics.

    ``pan`` (1, H, W) on the PAN grid and ``ms`` (C, h, w) on its own grid, in the sensor's DN (``H = pan_to_ms
    * h``; ``pan_to_ms`` defaults to ``H // h``), or lists of such pairs (windows of one scene); ``ratio`` is
    the degradation ratio (default: the sensor's).
    Windows holding ``nodata`` (default: the sensor's) are avoided. ``patch`` shrinks to fit small scenes. The
    returned dict holds the reduced-resolution loss of a fixed set of ``eval_patches`` patches before and after
    (``initial_loss``, ``final_loss``), the first and last training losses, ``steps``, ``patch``, ``seconds``
    and ``samples_per_s``. ``progress`` is :func:`~spatialx.training.loop.train`'s callback.

    Other tasks name their guide and low-resolution roles in ``task`` (``guide``, ``output_like``) and give every
    role's profile in ``sensors``: for hmif, ``pan`` is the MS (the guide), ``ms`` the HS on its own grid, and the
    HS is the reference (:class:`~spatialx.training.data.HMIFWaldPatchDataset`); for polsar, ``pan`` is the
    single-pol intensity, ``ms`` the quad-pol C3 on its own grid, both divided by ``level`` (default: the scene's,
    :func:`~spatialx.protocols.polsar_level`), and the C3 is the reference
    (:class:`~spatialx.training.data.PolSARWaldPatchDataset`).

    ``adapt_loss``: "reduced" (the above), "full" or "both" (pansharpening only; :mod:`spatialx.training.fullres`);
    the initial and final losses are then those of the chosen objective on fixed patches, and the dict also holds
    ``loss`` (the kind) and, for full resolution, ``spatial_weight``.
    """
    from spatialx.training.fullres import ADAPT_LOSSES
    from spatialx.training.recipes import check_choice

    check_choice("adaptation loss", adapt_loss, ADAPT_LOSSES)
    if adapt_loss != "reduced" and task.name != PANSHARPEN.name:
        raise InputMismatchError(f"--adapt-loss {adapt_loss} is implemented for pansharpening only, not {task.name}",
                                 hint="use --adapt-loss reduced")
    began = time.perf_counter()
    profile = sensor if isinstance(sensor, SensorProfile) else get_sensor(sensor)
    ratio = int(ratio if ratio is not None else profile.ratio)
    pans, mss = ([pan], [ms]) if isinstance(pan, np.ndarray) else (list(pan), list(ms))
    one_band_guide = task.name == PANSHARPEN.name
    scenes = [ArrayScene(p, m, pan_to_ms=pan_to_ms, nodata=profile.nodata if nodata is None else nodata,
                         name=f"window {i}", guide_bands=1 if one_band_guide else None)
              for i, (p, m) in enumerate(zip(pans, mss, strict=True))]
    if scenes[0].bands != len(profile.bands):
        raise InputMismatchError(f"the {task.label(task.output_like)} has {scenes[0].bands} bands, sensor "
                                 f"{profile.key!r} has {len(profile.bands)}",
                                 hint="pass the sensor the scene comes from")
    if task.name == "hmif":
        dataset: WaldPatchDataset = HMIFWaldPatchDataset(scenes, sensors or {}, ratio=ratio)
    elif task.name == "polsar":
        dataset = PolSARWaldPatchDataset(scenes, ratio=ratio, levels=None if level is None else [level] * len(scenes))
    else:
        dataset = WaldPatchDataset(scenes, profile, ratio=ratio)
    patch = min(_fitting_patch(scene, patch, ratio, task.label(task.output_like)) for scene in scenes)
    stream: Any = PatchStream(dataset, RandomPatchSampler(dataset, patch, seed=seed))
    held: Any = PatchStream(dataset, GridPatchSampler(dataset, patch, limit=max(1, eval_patches)))
    torch_device = resolve_torch_device(device)
    loss_fn: Any = make_loss(loss)
    extra: dict[str, Any] = {}
    if adapt_loss != "reduced":
        from spatialx.training.fullres import (
            BothLoss,
            FullResolutionLoss,
            FullResolutionPatches,
            FullResolutionStream,
            PairedStream,
        )

        patches = FullResolutionPatches(scenes, dataset.gains, ratio, patch, dataset.max_value)
        full_stream = FullResolutionStream(patches, seed=seed)
        full_held = FullResolutionStream(patches, fixed=max(1, eval_patches))
        objective = FullResolutionLoss(dataset.gains, ratio)
        extra = {"spatial_weight": objective.spatial_weight, "full_patch": patches.patch}
        if adapt_loss == "full":
            stream, held, loss_fn = full_stream, full_held, objective
        else:
            stream, held = PairedStream(stream, full_stream), PairedStream(held, full_held)
            loss_fn = BothLoss(loss_fn, objective)
        augment = False

    def reduced_loss() -> float:
        return validate(model, held, max_value=dataset.max_value, ratio=ratio, batch_size=batch_size,
                        device=torch_device, loss=loss_fn, indices=False, roles=task.network_roles)["loss"]

    model.to(torch_device)
    initial = reduced_loss()
    result = train(model, stream, steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, clip=clip,
                   ema=ema, loss=loss_fn, optimizer=optimizer, schedule=schedule, augment=augment, seed=seed,
                   device=torch_device, progress=progress, roles=task.network_roles)
    final = reduced_loss()
    return {
        "task": task.name,
        "loss": adapt_loss,
        **extra,
        "recipe": {"loss": loss if isinstance(loss, str) else getattr(loss, "__name__", "custom"),
                   "optimizer": optimizer, "lr": lr, "weight_decay": weight_decay, "schedule": schedule, "clip": clip,
                   "ema": ema, "augment": augment},
        "initial_loss": initial,
        "final_loss": final,
        "first_train_loss": result.losses[0] if result.losses else None,
        "last_train_loss": result.final_loss,
        "steps": result.steps,
        "patch": patch,
        "batch_size": batch_size,
        "eval_patches": len(held),
        "seconds": time.perf_counter() - began,
        "samples_per_s": result.samples_per_s,
    }
