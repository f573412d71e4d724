"""Per-architecture training recipes: what :func:`~spatialx.training.loop.train` does when not told otherwise.

A recipe is declarative data on the network's :class:`~spatialx.models.registry.ModelSpec` (``recipe=``, filled in
:mod:`spatialx.models.zoo`), laid over :data:`DEFAULT_RECIPE` (LE-Mamba's recipe, which PNN keeps). Keys:

- ``loss``: "l1+ssim" (L1 + 0.1 (1 - SSIM)), "l1" or "mse";
- ``optimizer``: "adamw", "adamax" or "adam" (SSRFN's); ``lr`` (the peak learning rate under a schedule),
  ``weight_decay``;
- ``schedule``: "none" (constant ``lr``) or "onecycle" (``torch.optim.lr_scheduler.OneCycleLR`` over the run's
  total steps, ``max_lr = lr``);
- ``clip``: gradient-norm clipping (None: none); ``ema``: decay of the weights' moving average (None: none);
- ``augment``: a random rot90/flip (one of the 8 symmetries of the square, drawn from the run's seed and the
  sample number) applied to every tensor of an example alike.

This module imports no torch: ``spatialx train --help`` and ``spatialx models`` read recipes cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spatialx.errors import SpatialxError

OPTIMIZERS = ("adamw", "adamax", "adam")
SCHEDULES = ("none", "onecycle")
LOSSES = ("l1+ssim", "l1", "mse")
RECIPE_KEYS = ("loss", "optimizer", "lr", "weight_decay", "schedule", "clip", "ema", "augment")

#: LE-Mamba's recipe (notes: AdamW lr 1e-3, weight decay 1e-6, gradient clip 0.03, EMA 0.995, L1 + 0.1 (1 - SSIM)).
DEFAULT_RECIPE: dict[str, Any] = {"loss": "l1+ssim", "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-6,
                                  "schedule": "none", "clip": 0.03, "ema": 0.995, "augment": False}


def check_choice(kind: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SpatialxError(f"unknown {kind} {value!r}", hint=f"choose one of: {', '.join(choices)}")
    return value


def check_recipe(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """A complete recipe (:data:`DEFAULT_RECIPE` updated by ``recipe``), its names checked."""
    unknown = sorted(set(recipe) - set(RECIPE_KEYS))
    if unknown:
        raise SpatialxError(f"unknown training recipe key(s) {', '.join(unknown)}",
                            hint=f"recipes take: {', '.join(RECIPE_KEYS)}")
    out = {**DEFAULT_RECIPE, **recipe}
    if isinstance(out["loss"], str):
        check_choice("loss", out["loss"], LOSSES)
    check_choice("optimizer", out["optimizer"], OPTIMIZERS)
    check_choice("schedule", out["schedule"], SCHEDULES)
    out["clip"] = float(out["clip"]) if out["clip"] else None
    out["ema"] = float(out["ema"]) if out["ema"] else None
    out["augment"] = bool(out["augment"])
    out["lr"], out["weight_decay"] = float(out["lr"]), float(out["weight_decay"])
    return out


def recipe_for(model: str, **overrides: Any) -> dict[str, Any]:
    """The recipe of registered network ``model`` with ``overrides`` (those not None) applied."""
    from spatialx.models.registry import get_model_spec

    given = {key: value for key, value in overrides.items() if value is not None}
    return check_recipe({**get_model_spec(model).recipe, **given})
