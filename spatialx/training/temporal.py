"""Training examples for spatio-temporal networks, from the fine/coarse pairs of a date series.

A spatio-temporal network (SpaXFus's stfuse configuration, notes: "Landsat t1 bands + coarse t1 and t2 -> output
both dates, the prediction is the t2 half") takes the fine image of one pair date ``a`` and the coarse images of
``a`` and of another date ``b``, and returns the fine images of ``a`` and ``b``. A series of ``N >= 2`` pairs holds
``N (N - 1)`` such triples with their answer: every ordered pair of distinct pair dates ``(a, b)``, the fine image
of ``b`` the second half of the target. That is what scene adaptation (``--adapt-steps`` on ``spatialx stfuse``)
and ``spatialx train --task stfuse`` learn from: the run's own pairs, no simulation.

Examples are windows of ``patch`` fine pixels cut from whole images on the fine grid (the coarse images as the
pipeline resampled them), each role scaled to [0, 1] by its sensor's value range::

    {"coarse": (2 B, P, P) coarse a then coarse b, "fine": (B, P, P) fine a, "target": (2 B, P, P) fine a then b}

Windows holding NaN (clouds, fill) are redrawn; samplers are functions of ``(seed, k)`` as the other samplers of
:mod:`spatialx.training.data`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from spatialx.errors import InputMismatchError
from spatialx.training.data import MAX_ATTEMPTS, TARGET, Example, PatchStream, _seeded

#: The network's arguments on stfuse, in order: the coarse images of both dates, the fine image of the first.
TEMPORAL_ROLES = ("coarse", "fine")


@dataclass(frozen=True)
class TemporalQuery:
    """One example: the pair dates ``a`` (input) and ``b`` (predicted), and the window's upper-left pixel."""

    a: int
    b: int
    row: int
    col: int
    size: int


class TemporalPatchDataset(Dataset):
    """Triples of a date series on the fine grid (module docstring). ``fines`` and ``coarses`` hold one (B, H, W)
    image per pair date, already scaled to [0, 1] and the coarse bands in fine band order."""

    def __init__(self, fines: Sequence[np.ndarray], coarses: Sequence[np.ndarray], ratio: int):
        if len(fines) != len(coarses):
            raise ValueError(f"{len(fines)} fine and {len(coarses)} coarse images: one of each per pair date")
        if len(fines) < 2:
            raise InputMismatchError("a spatio-temporal network learns from two or more fine/coarse pairs of one "
                                     "date series; this one has one",
                                     hint="add a second pair of another date, or use --weights trained on a series")
        shape = fines[0].shape
        for image in (*fines, *coarses):
            if image.shape != shape:
                raise ValueError(f"every image must be {shape} on the fine grid, got {image.shape}")
        self.fines = [np.asarray(f, dtype=np.float32) for f in fines]
        self.coarses = [np.asarray(c, dtype=np.float32) for c in coarses]
        self.ratio = int(ratio)
        self.bands = 2 * shape[0]
        self.max_value = 1.0
        self.valid = [np.isfinite(f).all(axis=0) & np.isfinite(c).all(axis=0)
                      for f, c in zip(self.fines, self.coarses, strict=True)]

    @property
    def shape(self) -> tuple[int, int]:
        return self.fines[0].shape[1], self.fines[0].shape[2]

    def is_valid(self, query: TemporalQuery) -> bool:
        window = np.s_[query.row:query.row + query.size, query.col:query.col + query.size]
        return bool(self.valid[query.a][window].all() and self.valid[query.b][window].all())

    def __getitem__(self, query: TemporalQuery) -> Example:
        window = np.s_[:, query.row:query.row + query.size, query.col:query.col + query.size]

        def tensor(*images: np.ndarray) -> torch.Tensor:
            # a window drawn MAX_ATTEMPTS times with clouds in it anyway: NaN would poison every gradient
            return torch.from_numpy(np.nan_to_num(np.concatenate([image[window] for image in images])))

        a, b = query.a, query.b
        return {"coarse": tensor(self.coarses[a], self.coarses[b]), "fine": tensor(self.fines[a]),
                TARGET: tensor(self.fines[a], self.fines[b])}

    def describe(self) -> str:
        rows, cols = self.shape
        return f"spatio-temporal triples of {len(self.fines)} pair dates, {cols}x{rows} fine pixels"


class TemporalPatchSampler:
    """Random ordered date pairs and windows of ``patch`` pixels (``query(k)`` a function of ``(seed, k)``), cloudy
    windows redrawn; with ``limit`` a fixed list of that many windows spread over the scene (validation)."""

    def __init__(self, dataset: TemporalPatchDataset, patch: int, seed: int = 0, limit: int | None = None,
                 rows: tuple[float, float] = (0.0, 1.0)):
        height, cols = dataset.shape
        self.dataset, self.patch, self.seed = dataset, int(patch), int(seed)
        #: Window origins: rows [first_row, last_row], within the ``rows`` band (fractions) of the scene.
        self.first_row = int(rows[0] * height)
        self.last_row = int(rows[1] * height) - self.patch
        if self.patch > cols or self.last_row < self.first_row:
            raise InputMismatchError(f"the scene ({cols}x{height} fine pixels) is smaller than a {self.patch}-pixel "
                                     "training window", hint="give a larger scene, or a smaller patch")
        self.pairs = [(a, b) for a in range(len(dataset.fines)) for b in range(len(dataset.fines)) if a != b]
        self.fixed: list[TemporalQuery] | None = None
        if limit is not None:
            self.fixed = [self._draw(k) for k in range(max(1, int(limit)))]

    def _draw(self, k: int) -> TemporalQuery:
        cols = self.dataset.shape[1]
        query = None
        for attempt in range(MAX_ATTEMPTS):
            rng = _seeded(self.seed, k, attempt)
            a, b = self.pairs[int(rng.integers(len(self.pairs)))]
            query = TemporalQuery(a, b, self.first_row + int(rng.integers(self.last_row - self.first_row + 1)),
                                  int(rng.integers(cols - self.patch + 1)), self.patch)
            if self.dataset.is_valid(query):
                break
        assert query is not None
        return query

    def query(self, k: int, attempt: int = 0) -> TemporalQuery:
        return self._draw(k) if self.fixed is None else self.fixed[k % len(self.fixed)]

    def __len__(self) -> int:
        if self.fixed is None:
            raise TypeError("this sampler is endless")
        return len(self.fixed)


def temporal_patch(ratio: int, patch: int) -> int:
    """``patch`` rounded up to a multiple of ``ratio`` and at least four coarse pixels: the network decimates its
    coarse input by ``ratio``."""
    ratio = max(1, int(ratio))
    return max(4 * ratio, -(-int(patch) // ratio) * ratio)


def adapt_temporal(model: nn.Module, dataset: TemporalPatchDataset, *, steps: int, patch: int, batch_size: int,
                   seed: int = 0, device: str | torch.device = "cpu", eval_patches: int = 8,
                   **recipe: Any) -> dict[str, Any]:
    """Fine-tune ``model`` in place on the triples of one date series (``recipe``: :func:`train`'s loss, optimizer,
    lr, ... as :func:`spatialx.training.adapt.adapt` takes them); returns the statistics ``adapt`` returns."""
    from spatialx.training.loop import resolve_torch_device, train, validate

    began = time.perf_counter()
    patch = temporal_patch(dataset.ratio, patch)
    stream = PatchStream(dataset, TemporalPatchSampler(dataset, patch, seed=seed))
    held = PatchStream(dataset, TemporalPatchSampler(dataset, patch, seed=seed + 1, limit=eval_patches))
    torch_device = resolve_torch_device(device)

    def held_loss() -> float:
        return validate(model, held, max_value=1.0, ratio=dataset.ratio, batch_size=batch_size, device=torch_device,
                        loss=recipe.get("loss", "l1"), indices=False, roles=TEMPORAL_ROLES)["loss"]

    model.to(torch_device)
    initial = held_loss()
    result = train(model, stream, steps=steps, batch_size=batch_size, seed=seed, device=torch_device,
                   roles=TEMPORAL_ROLES, **recipe)
    final = held_loss()
    return {"task": "stfuse", "loss": "series", "recipe": dict(recipe), "initial_loss": initial,
            "final_loss": final, "first_train_loss": result.losses[0] if result.losses else None,
            "last_train_loss": result.final_loss, "steps": result.steps, "patch": patch, "batch_size": batch_size,
            "pairs": len(dataset.fines), "eval_patches": len(held), "seconds": time.perf_counter() - began,
            "samples_per_s": result.samples_per_s}


@dataclass
class Series:
    """A date series read onto the first fine image's grid, ready for :class:`TemporalPatchDataset`: one fine and
    one coarse image per pair date in [0, 1] (coarse bands in fine band order), the coarse grid ratio, and what a
    weights card records."""

    dataset: TemporalPatchDataset
    dates: list[str]
    sensors: dict[str, str]
    fine_bands: list[str]


def read_series(pairs: Sequence[tuple[Any, Any]], *, fine_sensor: str = "auto", coarse_sensor: str = "auto",
                fine_bands: str | None = None, coarse_bands: str | None = None) -> Series:
    """Read the (fine, coarse) pairs of one series whole, as ``spatialx stfuse`` reads its inputs (products' dates,
    readers and sensors; the coarse images reprojected and resampled onto the first fine grid). Each item of a pair
    is a path, or ``(date, path)`` for files whose metadata states no date."""
    from rasterio.windows import Window

    from spatialx.methods.classical.temporal import coarse_band_order
    from spatialx.pipeline import open_scene
    from spatialx.tasks.stfuse import role_name, stfuse_inputs

    fine = [item if isinstance(item, tuple) else (None, item) for item, _ in pairs]
    coarse = [item if isinstance(item, tuple) else (None, item) for _, item in pairs]
    series = stfuse_inputs(fine, coarse, None, fine_sensor=fine_sensor, coarse_sensor=coarse_sensor,
                           fine_bands=fine_bands, coarse_bands=coarse_bands)
    scene, profiles = open_scene(series.task, series.inputs, series.sensors, series.run_options())
    dates = sorted({role.split("@", 1)[1] for role in series.inputs})
    grid = scene.alignment.grid
    with scene:
        arrays = scene.read_each(Window(0, 0, grid.width, grid.height))
    fine_profile, coarse_profile = profiles[role_name("fine", dates[0])], profiles[role_name("coarse", dates[0])]
    order = coarse_band_order(fine_profile, coarse_profile)

    def scaled(array: np.ndarray, profile: Any) -> np.ndarray:
        low, high = profile.value_range
        return ((array - np.float32(low)) / np.float32(high - low)).astype(np.float32)

    fines = [scaled(arrays[role_name("fine", d)], fine_profile) for d in dates]
    coarses = [scaled(arrays[role_name("coarse", d)][order], coarse_profile) for d in dates]
    ratio = max(1, round(max(r.ratio for r in scene.alignment.resamplers.values())))
    return Series(TemporalPatchDataset(fines, coarses, ratio), dates,
                  {"fine": fine_profile.key, "coarse": coarse_profile.key}, list(fine_profile.band_names))
