"""Networks as fusion methods: the same interface, registry and tiler as the classical methods.

The method is the adapter between a task and a network: it hands the task's ``network_roles`` to the model as its
arguments, in that order, each scaled to [0, 1] by its own sensor's value range, and scales the result back by the
output sensor's range, clipped to it. SAR power has no nominal range: a PolSAR scene is divided by one level, the
99th percentile of its single-pol intensity found in the first pass (:func:`spatialx.protocols.polsar_level`;
training and adaptation divide their scenes the same way), and the fused C3, scaled back, is projected onto the
cone of covariance matrices instead of clipped.

A network method needs weights (``weights=``, a safetensors file written by ``spatialx train``; without it, the
bundled weights for the architecture, task and band counts, :mod:`spatialx.models.bundled`) or scene adaptation
(``adapt_steps=``: fine-tune those weights, or with ``scratch=True`` or ``config=`` train a fresh network, on
patches of the scene being fused, reduced-resolution or full-resolution (``adapt_loss=``), before fusing it), or
both; an untrained network is refused, never run. Tiles are fused in batches on the chosen device, with mixed
precision on CUDA.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spatialx.errors import MethodError, ReadError
from spatialx.methods.base import FusionMethod, MethodContext, SceneSample
from spatialx.training.temporal import TEMPORAL_ROLES

#: Tasks with a reduced-resolution protocol to adapt a network on the scene itself (:mod:`spatialx.training.adapt`).
ADAPTABLE_TASKS = ("pansharpen", "hmif", "polsar", "stfuse")
#: Inference engines: PyTorch, or ONNX Runtime on the network exported to ONNX (:mod:`spatialx.models.onnx`).
BACKENDS = ("torch", "onnx")


#: One network forward at a time on the CPU: torch's intra-op threads already use every core, so tiles fused side by
#: side by the tile workers would only multiply the activations' memory (gigabytes for a LE-Mamba tile).
_CPU_FORWARD = threading.Lock()


def _to_device(tensor, device):
    """A host tensor on ``device``; to a GPU through pinned memory, so the copy runs asynchronously, overlapping
    what the tile workers read and write meanwhile."""
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


class TemporalArguments:
    """stfuse: a network's arguments from a run's acquisitions (:mod:`spatialx.training.temporal`).

    The network takes ``coarse`` (the coarse images of a pair date and of the prediction date, bands in fine band
    order) and ``fine`` (that pair's fine image) and returns the fine images of both dates; the prediction is the
    second half. The pair nearest in time to the prediction date is the one used (as ``no-change`` picks it).
    """

    def __init__(self, context: MethodContext):
        from spatialx.methods.classical.temporal import coarse_band_order
        from spatialx.tasks.stfuse import temporal_layout

        self.layout = temporal_layout(context.task)
        _, self.fine_role, self.coarse_role = min(self.layout.pairs, key=lambda p: abs(self.layout.days(p[0])))
        self.target_role = self.layout.target[1]
        fine, coarse = context.sensors[self.fine_role], context.sensors[self.target_role]
        self.order = coarse_band_order(fine, coarse)
        self.bands = len(fine.bands)
        self.ranges = {"coarse": coarse.value_range, "fine": fine.value_range}
        # the coarse images' grid ratio, or the method ratio (--ratio) when they come already on the fine grid
        coarse_ratio = max([context.grid_ratios.get(role, 1.0) for _, _, role in self.layout.pairs]
                           + [context.grid_ratios.get(self.target_role, 1.0)])
        self.ratio = round(coarse_ratio) if coarse_ratio > 1.5 else max(1, round(context.ratio))

    def arguments(self, inputs: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The network's arguments of one tile and where they all hold data. The method judges validity itself
        (a cloud on a date the network does not read must not void the pixel): NaN, where an acquisition holds no
        data, is filled with the band's mean over the tile for the forward pass, and those pixels are nodata in
        the result."""
        coarse = np.concatenate([inputs[self.coarse_role][self.order], inputs[self.target_role][self.order]])
        arguments = {"coarse": coarse, "fine": inputs[self.fine_role]}
        valid = np.logical_and.reduce([np.isfinite(a).all(axis=0) for a in arguments.values()])
        if not valid.all():
            for name, array in arguments.items():
                means = np.nanmean(np.where(valid, array, np.nan).reshape(len(array), -1), axis=1) \
                    if valid.any() else np.zeros(len(array))
                arguments[name] = np.where(valid, array, np.nan_to_num(means)[:, None, None]).astype(np.float32)
        return arguments, valid

    def series(self, inputs: Mapping[str, np.ndarray],
               scaled: Callable[[np.ndarray, str], np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Every pair's (fine, coarse) images, scaled by ``scaled(array, role)``: scene adaptation's series."""
        fines = [scaled(inputs[fine], "fine") for _, fine, _ in self.layout.pairs]
        coarses = [scaled(inputs[coarse][self.order], "coarse") for _, _, coarse in self.layout.pairs]
        return fines, coarses

    def params(self) -> dict[str, Any]:
        return {"pair": self.fine_role.split("@", 1)[1], "predict": self.layout.target[0]}


class NetworkMethod(FusionMethod):
    """Base of every network method; subclasses name their architecture in the model registry.

    On a GPU, ``gpu_batch_tiles`` neighbouring tiles run as one batch; on the CPU one tile at a time, one forward at a
    time (whatever ``--workers``), with tiles of ``cpu_tile`` pixels when the user gives none: memory then stays
    that of one tile's activations.
    """

    architecture: ClassVar[str] = ""
    #: The network averages its low-resolution input over ratio x ratio blocks (SpaXFus, SSRFN): tiles, their
    #: overlap and halo then sit on the ratio's grid, so every tile's blocks are the whole image's.
    decimates: ClassVar[bool] = False
    halo = 32
    default_overlap = 32
    gpu_batch_tiles: ClassVar[int] = 4
    #: Default tile side on the CPU (None: the pipeline's default).
    cpu_tile: ClassVar[int | None] = None

    @property
    def judges_validity(self) -> bool:  # type: ignore[override]
        # stfuse: only the acquisitions the network reads decide (TemporalArguments.arguments)
        return self.temporal is not None

    @property
    def batch_tiles(self) -> int:  # type: ignore[override]
        return self.gpu_batch_tiles if self.device == "cuda" else 1

    @property
    def preferred_tile(self) -> int | None:  # type: ignore[override]
        return None if self.device == "cuda" else self.cpu_tile

    @property
    def tile_workers(self) -> int | None:  # type: ignore[override]
        # torch's intra-op threads use every core for one tile: a second tile worker on the CPU measured 18 %
        # slower and 300 MB more (it reads and prepares the next tile against the running forward)
        return None if self.device == "cuda" else 1

    def __init__(self, context: MethodContext, weights: str | Path | None = None,
                 adapt_steps: int = 0, adapt_patch: int | None = None, adapt_batch: int | None = None,
                 adapt_lr: float | None = None, config: str | None = None, seed: int = 0, backend: str = "torch",
                 onnx: str | Path | None = None, scratch: bool = False, adapt_loss: str | None = None,
                 **options: Any):
        super().__init__(context, **options)
        if backend not in BACKENDS:
            raise MethodError(f"{self.name}: unknown backend {backend!r}", hint=f"use one of: {', '.join(BACKENDS)}")
        if onnx is not None and backend != "onnx":
            raise MethodError(f"{self.name}: an ONNX file is run by the onnx backend", hint="add --backend onnx")
        # backend "onnx": the tiles run through ONNX Runtime, on the network exported after fit() (or on ``onnx``).
        self.backend, self._onnx_file = backend, (None if onnx is None else Path(onnx))
        self._onnx_runner: Any = None
        self._onnx_lock = threading.Lock()
        self.temporal = TemporalArguments(context) if context.task.name == "stfuse" else None
        self.network_roles = TEMPORAL_ROLES if self.temporal is not None else context.task.network_roles
        #: The integer ratio the network works at (stfuse: the coarse images' grid ratio, not the fine output's 1).
        self.network_ratio = self.temporal.ratio if self.temporal is not None else max(1, round(context.ratio))
        if self.decimates and self.network_ratio > 1:
            self.align = self.network_ratio
            self.halo = -(-type(self).halo // self.align) * self.align
            self.default_overlap = -(-type(self).default_overlap // self.align) * self.align
        if not self.network_roles:
            raise MethodError(f"task {context.task.name} declares no network inputs", hint="use a classical method")
        from spatialx.runtime import configure_memory

        # before torch allocates: a network's gigabytes of short-lived activations are what these settings are for
        # (classical methods' numpy temporaries ran 10-30 % slower under them, so only a network run applies them)
        configure_memory()
        import torch

        from spatialx.models.registry import create_model, get_model_spec
        from spatialx.models.weights import load_model, read_card, sha256

        if adapt_steps > 0 and context.task.name not in ADAPTABLE_TASKS:
            raise MethodError(f"{self.name}: scene adaptation is available for {', '.join(ADAPTABLE_TASKS)}, not "
                              f"yet for {context.task.name}", hint="use --weights trained for this task")
        if weights is not None and config is not None:
            raise MethodError(f"{self.name}: --config chooses the architecture of a network built here; weights "
                              "carry their own", hint="drop --config, or drop --weights to train from scratch")
        if scratch and weights is not None:
            raise MethodError(f"{self.name}: --scratch builds a fresh network, --weights loads one",
                              hint="drop one of them")
        if scratch and adapt_steps <= 0:
            raise MethodError(f"{self.name}: --scratch trains a fresh network on the scene, so it needs "
                              "--adapt-steps N", hint="add --adapt-steps N, or drop --scratch to use the bundled "
                                                      "weights")
        from spatialx.training.fullres import ADAPT_LOSSES

        if adapt_loss is not None and adapt_loss not in ADAPT_LOSSES:
            raise MethodError(f"{self.name}: unknown adaptation loss {adapt_loss!r}",
                              hint=f"choose one of: {', '.join(ADAPT_LOSSES)}")
        if adapt_loss not in (None, "reduced") and context.task.name != "pansharpen":
            raise MethodError(f"{self.name}: --adapt-loss {adapt_loss} (full resolution) is implemented for "
                              f"pansharpening only, not {context.task.name}", hint="use --adapt-loss reduced")
        #: Scene adaptation's objective: Wald patches ("reduced"), full-resolution consistency ("full") or both;
        #: None: :func:`~spatialx.training.fullres.default_adapt_loss` for the scene's grids.
        self.adapt_loss = adapt_loss
        if self.temporal is not None:
            bands, guide_bands = 2 * self.temporal.bands, self.temporal.bands
        else:
            bands, guide_bands = (len(context.sensors[role].bands) for role in self.network_roles[:2])
        #: Where the weights come from: "file" (--weights), "bundled" (the package's), "scratch" (a fresh network).
        self.weights_source = "file" if weights is not None else "scratch"
        if weights is None and config is None and not scratch:
            from spatialx.models.bundled import describe_bundled, find_bundled

            bundled = find_bundled(self.architecture, context.task.name, bands, guide_bands)
            if bundled is not None:
                weights, self.weights_source = bundled.path, "bundled"
            elif adapt_steps <= 0:
                task = context.task
                guide = (f" and a {guide_bands}-band {task.label(self.network_roles[1])}"
                         if guide_bands != 1 else "")
                raise MethodError(f"{self.name} has no bundled weights for {task.name} with a {bands}-band "
                                  f"{task.label(self.network_roles[0])}{guide} (bundled: {describe_bundled()})",
                                  hint="give --weights FILE (train them with `spatialx train`), or --adapt-steps N "
                                       "to train on the scene")
        if weights is None and adapt_steps <= 0:
            raise MethodError(f"{self.name} needs trained weights (--weights FILE) or scene adaptation "
                              "(--adapt-steps N)", hint="--config builds a fresh network: add --adapt-steps N, or "
                                                        "drop --config to use the bundled weights")
        # Defaults keep adaptation practical on a CPU (small patches and batches) and use a GPU's width; training
        # from scratch takes the papers' learning rate, fine-tuning (given or bundled weights) a tenth of it.
        self.adapt_steps = adapt_steps
        self._adapt_patch, self._adapt_batch = adapt_patch, adapt_batch
        from spatialx.training.recipes import recipe_for

        #: The architecture's training recipe; fine-tuning takes a tenth of its learning rate.
        self.recipe = recipe_for(self.architecture)
        self.adapt_lr = adapt_lr if adapt_lr is not None else (self.recipe["lr"] / 10 if weights is not None
                                                               else self.recipe["lr"])
        self.seed = seed
        #: Each network role's and the output's (low, high) mapped to [0, 1]; for SAR set by :meth:`fit`.
        self.value_ranges: dict[str, tuple[float, float]] = {}
        self.scene_level: float | None = None
        if self.temporal is not None:
            self.value_ranges = {**self.temporal.ranges, context.task.output_like: self.temporal.ranges["fine"]}
        elif not self.sensor.is_sar:
            self.value_ranges = {role: self.context.sensors[role].value_range
                                 for role in (*self.network_roles, context.task.output_like)}
        self.card: dict[str, Any] = {}
        self.adaptation: dict[str, Any] = {}
        if weights is not None:
            # The task first: weights of another task also fail the band checks, with a less useful message.
            card = read_card(weights)
            # Cards written before tasks were recorded are pansharpening weights, as everything trained then.
            trained_for = (card.get("task", "pansharpen"), tuple(card.get("roles", ("ms", "pan"))))
            if trained_for != (context.task.name, tuple(self.network_roles)):
                raise ReadError(f"weights were trained for {trained_for[0]} with inputs {', '.join(trained_for[1])}, "
                                f"not {context.task.name} with {', '.join(self.network_roles)}", path=weights,
                                hint="train weights for this task with `spatialx train`")
            self.model, self.card = load_model(weights, architecture=self.architecture, bands=bands)
            steps = (self.card.get("training") or {}).get("steps")
            if steps == 0 and adapt_steps <= 0:
                raise ReadError("weights were trained for 0 steps: an untrained network is never run", path=weights,
                                hint="train them (spatialx train --steps N), or add --adapt-steps")
            trained_guide = self.card.get("config", {}).get("guide_bands", 1)
            if trained_guide != guide_bands:
                raise ReadError(f"weights take a {trained_guide}-band {context.task.label(self.network_roles[1])}, "
                                f"the input has {guide_bands}", path=weights,
                                hint="select the bands the weights were trained with, or train for these")
            self.weights_name = Path(weights).name
            self.card["sha256"] = sha256(weights)
        else:
            config, kwargs = get_model_spec(self.architecture).config_for(
                context.task.name, bands, guide_bands, config, ratio=self.network_ratio)
            torch.manual_seed(seed)
            self.model = create_model(self.architecture, config, **kwargs)
            self.card = {"architecture": self.architecture, "config": kwargs, "config_name": config}
            self.weights_name = None
        self.model.eval()
        if self.backend == "onnx":
            from spatialx.models.onnx import _require

            _require(*(("onnxruntime",) if self._onnx_file is not None else ("onnx", "onnxscript", "onnxruntime")))
            if self._onnx_file is not None and not self._onnx_file.is_file():
                raise ReadError("ONNX file does not exist", path=self._onnx_file, hint="check the path")

    def __getstate__(self) -> dict[str, Any]:
        # A copy for a dask worker: the lock and the ONNX Runtime session stay here; the copy makes its own.
        return {**self.__dict__, "_onnx_lock": None, "_onnx_runner": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._onnx_lock = threading.Lock()

    def _onnx(self):
        """The ONNX Runtime session of this network: the given file, or the (adapted) network exported once."""
        with self._onnx_lock:
            if self._onnx_runner is None:
                import tempfile

                import torch

                from spatialx.models.onnx import OnnxRunner, export_onnx

                path = self._onnx_file
                if path is None:
                    with tempfile.TemporaryDirectory(prefix="spatialx-onnx-") as directory:
                        path = Path(directory) / "model.onnx"
                        export_onnx(self.model, self.card, path, tile=64, check=False, check_batch=1)
                        self._onnx_runner = OnnxRunner(path, self.device, threads=torch.get_num_threads())
                else:
                    self._onnx_runner = OnnxRunner(path, self.device, threads=torch.get_num_threads())
            return self._onnx_runner

    def fit(self, sample: SceneSample) -> None:
        task = self.context.task
        if self.sensor.is_sar:
            from spatialx.protocols import polsar_level

            guide = sample.inputs[task.guide]
            self.scene_level = polsar_level(guide[:, sample.valid])
            self.value_ranges = dict.fromkeys((*self.network_roles, task.output_like), (0.0, self.scene_level))
        if self.adapt_steps <= 0:
            return
        if self.temporal is not None:
            self._adapt_on_series(sample)
            return
        if not sample.windows:
            raise MethodError(f"{self.name}: scene adaptation needs exactly nested {task.label(task.guide)} and "
                              f"{task.label(task.output_like)} grids ({sample.windows_unavailable})",
                              hint="resample the inputs onto nested grids, or use --weights without adaptation")
        from spatialx.training.adapt import adapt
        from spatialx.training.fullres import default_adapt_loss

        guide, low = task.guide, task.output_like
        pan_to_ms = sample.windows[0].factor(low)
        adapt_loss = self.adapt_loss or default_adapt_loss(task.name, pan_to_ms, self.network_ratio)
        self.adaptation = adapt(
            self.model, [w.arrays[guide] for w in sample.windows], [w.arrays[low] for w in sample.windows],
            self.sensor, self.network_ratio, steps=self.adapt_steps, patch=self.adapt_patch,
            batch_size=self.adapt_batch, **{**self.recipe, "lr": self.adapt_lr}, adapt_loss=adapt_loss,
            seed=self.seed, device=self.device, pan_to_ms=pan_to_ms, task=task, sensors=self.context.sensors,
            level=self.scene_level)
        self.model.eval()

    def _adapt_on_series(self, sample: SceneSample) -> None:
        """stfuse: adapt on the triples of the run's own pairs (:mod:`spatialx.training.temporal`), read whole."""
        from spatialx.training.temporal import TemporalPatchDataset, adapt_temporal

        if sample.stride != 1:
            raise MethodError(f"{self.name}: scene adaptation on stfuse holds the whole scene in memory, and this "
                              f"one is too large (sampled every {sample.stride} pixels)",
                              hint="crop the scene for adaptation, or use --weights trained with spatialx train")
        fines, coarses = self.temporal.series(sample.inputs, self._scaled)  # type: ignore[union-attr]
        dataset = TemporalPatchDataset(fines, coarses, self.network_ratio)
        self.adaptation = adapt_temporal(self.model, dataset, steps=self.adapt_steps, patch=self.adapt_patch,
                                         batch_size=self.adapt_batch, seed=self.seed, device=self.device,
                                         **{**self.recipe, "lr": self.adapt_lr})
        self.model.eval()

    @property
    def adapt_patch(self) -> int:
        return self._adapt_patch or (64 if self.device == "cuda" else 32)

    @property
    def adapt_batch(self) -> int:
        return self._adapt_batch or (16 if self.device == "cuda" else 4)

    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.fuse_batch([inputs])[0]

    def fuse_batch(self, batch: list[Mapping[str, np.ndarray]]) -> list[np.ndarray]:
        """Run tiles of equal shape as one batch; inputs and outputs in the sensors' units, the network in [0, 1]."""
        import torch

        if not self.value_ranges:
            raise MethodError(f"{self.name}: a SAR scene is scaled by its level, found in the first pass",
                              hint="call fit() before fuse(), as the pipeline does")
        device = torch.device(self.device)
        runner = self._onnx() if self.backend == "onnx" else None
        if runner is None:
            self.model.to(device)
        low, high = self.value_ranges[self.context.task.output_like]
        results: list[np.ndarray | None] = [None] * len(batch)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        if self.temporal is not None:
            tiles, valid = (list(column) for column in zip(*(self.temporal.arguments(t) for t in batch), strict=True))
        else:
            tiles, valid = list(batch), []
        for i, inputs in enumerate(tiles):
            by_shape.setdefault(inputs[self.network_roles[0]].shape, []).append(i)
        serial = _CPU_FORWARD if device.type == "cpu" else contextlib.nullcontext()
        for indexes in by_shape.values():
            arrays = [self._scaled(np.stack([tiles[i][role] for i in indexes]), role) for role in self.network_roles]
            if runner is not None:
                with serial:
                    fused = runner.run(arrays)
            else:
                arguments = [_to_device(torch.from_numpy(array), device) for array in arrays]
                with serial, torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                                    enabled=device.type == "cuda"):
                    fused = self.model(*arguments).float().cpu().numpy()
            fused = self._unscaled(fused[:, self.temporal.bands:] if self.temporal is not None else fused, low, high)
            for slot, i in enumerate(indexes):
                results[i] = fused[slot] if self.temporal is None else np.where(valid[i], fused[slot], np.nan)
        return [r for r in results if r is not None]

    def _scaled(self, array: np.ndarray, role: str) -> np.ndarray:
        low, high = self.value_ranges[role]
        return ((array - np.float32(low)) / np.float32(high - low)).astype(np.float32, copy=False)

    def _unscaled(self, fused: np.ndarray, low: float, high: float) -> np.ndarray:
        """The network's output in the output sensor's units: clipped to its range, or for a C3 (no range) projected
        onto the cone of covariance matrices, pixel by pixel (a C3 with a negative eigenvalue is no covariance)."""
        if not self.sensor.is_sar:
            return np.clip(fused, 0, 1) * np.float32(high - low) + np.float32(low)
        from spatialx.metrics.polsar import psd_project

        return np.stack([psd_project(tile * np.float32(high - low) + np.float32(low)).astype(np.float32)
                         for tile in fused])

    def params(self) -> dict[str, Any]:
        info: dict[str, Any] = {"architecture": self.architecture, "config": self.card.get("config"),
                                "weights": self.weights_name, "weights_source": self.weights_source}
        if self.card.get("sha256"):
            info["weights_sha256"] = self.card["sha256"]
        if self.backend != "torch":
            info["backend"] = self.backend
        if self.scene_level is not None:
            info["scene_level"] = round(self.scene_level, 9)
        if self.temporal is not None:
            info.update(self.temporal.params())
        if self.adaptation:
            info["adaptation"] = {k: (round(v, 6) if isinstance(v, float) else v)
                                  for k, v in self.adaptation.items()}
        return info


class PNNMethod(NetworkMethod):
    name = "pnn"
    architecture = "pnn"
    halo = 8  # three convolutions 9x9, 5x5, 5x5
    default_overlap = 8


class LEMambaMethod(NetworkMethod):
    name = "lemamba"
    architecture = "lemamba"
    # The global scans see the whole tile, so no halo makes tiles exact; against the whole image in one tile
    # (benchmarks/network_tile_context.py, bundled weights), 16 px of halo and 16 of cross-fade are as close as 32
    # and 32: 1024 px WV3 scene, mean |difference| 0.132 vs 0.128 DN, max 12 vs 11 DN; QuickBird 0.034 vs 0.048,
    # max 4 vs 3. Without a halo the scene's own edges lose their reflected context (max 188 DN there).
    halo = 16
    default_overlap = 16
    gpu_batch_tiles = 2
    # Each tile runs on its core grown by overlap + halo (448 -> 512 x 512 px): about 2.9 KB of activations per
    # pixel run on the CPU, ~0.8 GB, so the process stays within 1.5 GB; the 64 px of context cost 1.31x the
    # core's pixels (384 px cores with 32 + 32 px: 1.78x).
    cpu_tile = 448


class SpaXFusMethod(NetworkMethod):
    """SpaXFus: the registered model (:class:`~spatialx.models.spaxfus.SpaXFusOnGrid`) takes the MS resampled onto
    the PAN grid, as every network here, and decimates it back to the MS scale (mean of ratio x ratio blocks)."""

    name = "spaxfus"
    architecture = "spaxfus"
    decimates = True
    # The SS2D scans see the whole tile (no finite receptive field): as LE-Mamba, a wide context and cross-fade.
    halo = 32
    default_overlap = 32
    gpu_batch_tiles = 2
    cpu_tile = 256


class RWKVFusionMethod(NetworkMethod):
    """RWKVFusion: the WKV scans and the fusion module's pooled summary see the whole tile, so tiles are never exact;
    as LE-Mamba, a wide context and cross-fade hide the seams."""

    name = "rwkvfusion"
    architecture = "rwkvfusion"
    # against the whole image in one tile (benchmarks/network_tile_context.py, bundled weights) 16 + 16 px of
    # context are as close as 32 + 32: 1024 px WV3 scene, mean |difference| 1.064 vs 1.074 DN, max 73 both;
    # QuickBird 0.208 vs 0.196 DN, max 6 vs 10
    halo = 16
    default_overlap = 16
    gpu_batch_tiles = 2
    # ~6.7 KB of activations per pixel run on the CPU: a 320 px core grows to 384 x 384 with its context (1.44x
    # its pixels; 256 + 32 + 32 cost 2.25x), ~1 GB
    cpu_tile = 320


class SSRFNMethod(NetworkMethod):
    """SSRFN: the HS resampled onto the MS grid is averaged back to its own scale inside the network; its Mamba
    blocks read the tile row by row (no finite receptive field), so a wide context hides the seams."""

    name = "ssrfn"
    architecture = "ssrfn"
    decimates = True
    halo = 36
    default_overlap = 24  # a multiple of 3 and 4, at most half the CPU tile
    gpu_batch_tiles = 2
    # ~55 KB of activations per pixel run on the CPU (plus 0.55 GB of weights at the paper's width): a 64 px core runs
    # on ~184 x 184 with its context, ~2.4 GB
    cpu_tile = 64
