"""The training loop: AdamW or Adamax, an optional OneCycle schedule, gradient clipping, EMA weights, rot90/flip
augmentation, validation, safetensors checkpoints, exact resume.

:func:`train` trains any registered network (``model(lms, pan) -> fused``) on examples from
:mod:`spatialx.training.data`. Its defaults are LE-Mamba's recipe: AdamW (lr 1e-3, weight decay 1e-6), gradient
norm clipped to 0.03, an exponential moving average of the weights with decay 0.995, and the loss
L1 + 0.1 (1 - SSIM) on images in [0, 1]; :func:`train_model` (``spatialx train``) takes each network's own recipe
(:mod:`spatialx.training.recipes`, e.g. SpaXFus: L1, Adamax lr 1e-4 with OneCycle, clip 0.1, augmentation).

Reproducibility: example ``k`` of a run is a function of the data's seed and ``k`` only (see
:mod:`spatialx.training.data`), the torch generators are seeded from ``seed``, and deterministic kernels are
requested. A checkpoint holds the live weights, the EMA weights, the optimizer's kind and state, the learning-rate
schedule's state and the RNG states, so
``train(steps=N)`` and ``train(steps=k, checkpoint=c)`` followed by ``train(steps=N, resume=c)`` end with the same
weights, bit for bit (same device, same batch size). Checkpoints are safetensors files, never pickles: tensors
under ``model/``, ``ema/`` and ``optim/<param>/<name>``; steps, hyperparameters and RNG states as JSON in the
header metadata.

:func:`train_model` is the library function behind ``spatialx train``: data from a PanCollection HDF5 file or
from scenes, a registered network, training, and the weights file with its card.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spatialx.errors import InputMismatchError, OutputError, ReadError, SpatialxError
from spatialx.tasks import PANSHARPEN, POLSAR
from spatialx.training.data import (
    TARGET,
    ArrayScene,
    AugmentedStream,
    EpochSampler,
    GridPatchSampler,
    HMIFWaldPatchDataset,
    HSIDataset,
    PanCollectionDataset,
    PatchStream,
    PolSARWaldPatchDataset,
    RandomPatchSampler,
    Subset,
    WaldPatchDataset,
    collate,
)
from spatialx.training.recipes import OPTIMIZERS, SCHEDULES

CHECKPOINT_KEY = "spatialx_checkpoint"
CHECKPOINT_FORMAT = "spatialx-checkpoint/1"
LOSSES = ("l1+ssim", "l1", "mse")
#: Indices reported by validation (from :func:`spatialx.metrics.torch_backend.reduced_indices`), plus "loss".
VAL_INDICES = ("Q2n", "SAM", "ERGAS", "SCC", "PSNR")

#: ``progress(step, total, loss, samples_per_s, val_metrics or None)``, called after every step.
TrainProgress = Callable[[int, int, float, float, "dict[str, float] | None"], None]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------------------------- pieces
def make_loss(loss: str | LossFn) -> LossFn:
    """``loss(fused, gt)`` for a loss name: "l1+ssim" (L1 + 0.1 (1 - SSIM), data range 1), "l1" or "mse"."""
    if callable(loss):
        return loss
    if loss == "l1+ssim":
        from spatialx.metrics.torch_backend import ssim

        def l1_ssim(fused: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
            return F.l1_loss(fused, gt) + 0.1 * (1.0 - ssim(gt, fused, 1.0).mean())

        return l1_ssim
    if loss == "l1":
        return F.l1_loss
    if loss == "mse":
        return F.mse_loss
    raise SpatialxError(f"unknown loss {loss!r}", hint=f"choose one of: {', '.join(LOSSES)}")


def make_optimizer(kind: str, parameters: Any, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """``torch.optim.AdamW``, ``Adamax`` or ``Adam`` by name."""
    from spatialx.training.recipes import check_choice

    check_choice("optimizer", kind, OPTIMIZERS)
    factory = {"adamw": torch.optim.AdamW, "adamax": torch.optim.Adamax, "adam": torch.optim.Adam}[kind]
    return factory(parameters, lr=lr, weight_decay=weight_decay)


def make_schedule(kind: str, optimizer: torch.optim.Optimizer, lr: float, steps: int) -> Any:
    """None for "none"; for "onecycle" ``OneCycleLR`` over ``steps`` optimizer steps peaking at ``lr``."""
    from spatialx.training.recipes import check_choice

    check_choice("schedule", kind, SCHEDULES)
    if kind == "none":
        return None
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(int(steps), 2))


def batch_loss(loss_fn: Any) -> bool:
    """Whether ``loss_fn`` is an objective that runs the network itself: ``loss_fn(forward, batch)`` with
    ``forward(*inputs) -> fused`` and the batch's tensors on the device (full-resolution scene adaptation,
    :mod:`spatialx.training.fullres`), rather than ``loss_fn(fused, target)``."""
    return bool(getattr(loss_fn, "takes_batch", False))


def _loss_of_batch(model: nn.Module, batch: Mapping[str, torch.Tensor], loss_fn: Any, roles: Sequence[str],
                   device: torch.device, amp: bool) -> torch.Tensor:
    if batch_loss(loss_fn):
        on_device = {key: value.to(device, non_blocking=True) for key, value in batch.items()}

        def forward(*inputs: torch.Tensor) -> torch.Tensor:
            with _autocast(device, amp):
                return model(*inputs).float()

        return loss_fn(forward, on_device)
    gt = batch[TARGET].to(device, non_blocking=True)
    with _autocast(device, amp):
        fused = model(*(batch[role].to(device, non_blocking=True) for role in roles))
    return loss_fn(fused.float(), gt)


def ema_decay(decay: float, updates: int) -> float:
    """The EMA decay used for update number ``updates`` (0-based): ``min(decay, (1 + n) / (10 + n))``, a warm-up
    that keeps the average from being dominated by the initial weights in short runs (as timm's ModelEma)."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


@torch.no_grad()
def ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * model`` for floating tensors; other buffers are copied."""
    live = model.state_dict()
    for name, value in ema_model.state_dict().items():
        source = live[name]
        if value.is_floating_point():
            value.lerp_(source.to(value.dtype), 1.0 - decay)
        else:
            value.copy_(source)


def resolve_torch_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device in ("auto", "cpu", "cuda"):
        from spatialx.devices import resolve_device

        return torch.device(resolve_device(device))
    try:
        return torch.device(device)
    except RuntimeError:
        raise SpatialxError(f"unknown device {device!r}", hint="use auto, cpu or cuda") from None


@contextmanager
def deterministic():
    """Deterministic kernels (warn-only where there is none) and no cuDNN autotuning, restored afterwards."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have a deterministic implementation.*")
            warnings.filterwarnings("ignore", message=".*Deterministic behavior was enabled.*")
            yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark


def _get_examples(data: Any, indices: Sequence[int]) -> list[dict[str, torch.Tensor]]:
    if hasattr(data, "__getitems__"):
        return list(data.__getitems__(list(indices)))
    return [data[i] for i in indices]


def _data_attr(name: str, *sources: Any) -> Any:
    for source in sources:
        value = getattr(source, name, None)
        if value is not None:
            return value
    return None


def as_stream(data: Any, seed: int) -> PatchStream:
    """Training data as a stream of examples over sample numbers: a :class:`PatchStream` as it is, a
    :class:`WaldPatchDataset` with random windows of its ``patch`` (64 when it has none), any sized map-style
    dataset with a fresh permutation every epoch."""
    if isinstance(data, PatchStream) or getattr(data, "is_stream", False):  # already over sample numbers
        return data
    if isinstance(data, WaldPatchDataset):
        return PatchStream(data, RandomPatchSampler(data, getattr(data, "patch", 64), seed=seed))
    try:
        size = len(data)
    except TypeError:
        raise SpatialxError(f"training data of type {type(data).__name__} has no length",
                            hint="pass a map-style dataset, a WaldPatchDataset or a PatchStream") from None
    return PatchStream(data, EpochSampler(size, seed))


class _StepBatches:
    """Batch sampler: the sample numbers of steps ``start .. stop - 1``."""

    def __init__(self, start: int, stop: int, batch_size: int):
        self.start, self.stop, self.batch_size = start, stop, batch_size

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield list(range(step * self.batch_size, (step + 1) * self.batch_size))


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


# ----------------------------------------------------------------------------------------------- validation
@torch.no_grad()
def validate(model: nn.Module, data: Any, *, max_value: float, ratio: float, batch_size: int = 8,
             device: str | torch.device = "cpu", cut: int = 0, loss: str | LossFn | None = "l1+ssim",
             amp: bool = True, indices: bool = True,
             roles: Sequence[str] = PANSHARPEN.network_roles) -> dict[str, float]:
    """Mean reduced-resolution indices (Q2n, SAM, ERGAS, SCC, PSNR) of ``model`` over every example of ``data``
    (a sized map-style dataset), and the mean ``loss``. Fused images are clipped to [0, 1] and compared in the
    sensor's DN scale (``max_value``), as the toolbox does; ``cut`` drops a border first (0 for patches).
    ``indices=False`` computes the loss only."""
    from spatialx.metrics.torch_backend import reduced_indices

    device = resolve_torch_device(device)
    loss_fn = (loss if batch_loss(loss) else make_loss(loss)) if loss is not None else None
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    count = 0
    try:
        for start in range(0, len(data), batch_size):
            batch = collate(_get_examples(data, range(start, min(len(data), start + batch_size))))
            if loss_fn is not None and batch_loss(loss_fn):
                if indices:
                    raise SpatialxError("reduced-resolution indices need a reference: validate a batch objective "
                                        "with indices=False")
                n = next(iter(batch.values())).shape[0]
                sums["loss"] = sums.get("loss", 0.0) + float(_loss_of_batch(model, batch, loss_fn, roles, device,
                                                                            amp)) * n
                count += n
                continue
            gt = batch[TARGET].to(device)
            with _autocast(device, amp):
                fused = model(*(batch[role].to(device) for role in roles))
            fused = fused.float()
            n = gt.shape[0]
            if loss_fn is not None:
                sums["loss"] = sums.get("loss", 0.0) + float(loss_fn(fused, gt)) * n
            count += n
            if not indices:
                continue
            size = min(gt.shape[-2:])
            block = 32 if size - 2 * max(cut, 0) >= 32 else max(1, size - 2 * max(cut, 0))
            scores = reduced_indices(gt.double() * max_value, fused.clamp(0, 1).double() * max_value, ratio,
                                     max_value, cut=cut, block=block)
            for key in VAL_INDICES:
                sums[key] = sums.get(key, 0.0) + float(scores[key].sum())
    finally:
        model.train(was_training)
    if count == 0:
        raise SpatialxError("the validation data set is empty")
    return {key: value / count for key, value in sums.items()}


# ---------------------------------------------------------------------------------------------- checkpoints
def _b64(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")


def _from_b64(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": _b64(torch.get_rng_state())}
    if device.type == "cuda":
        state["cuda"] = _b64(torch.cuda.get_rng_state(device))
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(_from_b64(state["torch"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(_from_b64(state["cuda"]), device)


def save_checkpoint(path: str | PathLike[str], model: nn.Module, ema_model: nn.Module,
                    optimizer: torch.optim.Optimizer, step: int, info: Mapping[str, Any]) -> Path:
    """Write a training checkpoint (safetensors, atomically): weights, EMA weights, optimizer state, and
    ``info`` (JSON-serialisable: step, seed, RNG states, ...) in the header."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in (("model", model), ("ema", ema_model)):
        for name, value in module.state_dict().items():
            tensors[f"{prefix}/{name}"] = value.detach().to("cpu", copy=True).contiguous()
    optim = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for index, state in optim["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim/{index}/{name}"] = value.detach().to("cpu", copy=True).contiguous()
            else:
                scalars[f"{index}/{name}"] = value
    meta = {"format": CHECKPOINT_FORMAT, "step": int(step), "param_groups": optim["param_groups"],
            "optim_scalars": scalars, **info}
    if not path.parent.is_dir():
        raise OutputError("checkpoint directory does not exist", path=path.parent, hint="create it first")
    from spatialx.io.outputs import publish, temporary_for

    with temporary_for(path, ".safetensors") as temporary:
        save_file(tensors, str(temporary), metadata={CHECKPOINT_KEY: json.dumps(meta)})
        publish(temporary, path)
    return path


def read_checkpoint(path: str | PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, info)`` of a checkpoint written by :func:`save_checkpoint`."""
    from safetensors.torch import load_file

    from spatialx.models.weights import read_header_json

    path = Path(path)
    info = read_header_json(path, CHECKPOINT_KEY, "training checkpoint", "resume from a file written with --checkpoint")
    try:
        tensors = load_file(path)
    except Exception as exc:  # safetensors raises its own types for truncated files
        raise ReadError(f"not a valid safetensors checkpoint ({str(exc).splitlines()[0]})", path=path) from None
    if info.get("format") != CHECKPOINT_FORMAT:
        raise ReadError(f"unsupported checkpoint format {info.get('format')!r}", path=path)
    return tensors, info


def _load_module(module: nn.Module, tensors: Mapping[str, torch.Tensor], prefix: str, path: Path) -> None:
    state = {name[len(prefix) + 1:]: value for name, value in tensors.items() if name.startswith(prefix + "/")}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        raise ReadError(f"checkpoint does not fit this network ({lines[-1] if lines else exc})", path=path,
                        hint="resume with the same --model and --config") from None


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor],
                    info: Mapping[str, Any], path: Path) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim/"):
            _, index, key = name.split("/", 2)
            state.setdefault(int(index), {})[key] = value
    for name, value in info.get("optim_scalars", {}).items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    except (ValueError, KeyError, RuntimeError) as exc:
        raise ReadError(f"checkpoint optimizer state does not fit this network ({exc})", path=path) from None


# ------------------------------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    """What :func:`train` did. ``model`` is the network passed in, now holding the EMA weights."""

    model: nn.Module
    steps: int  # steps done in total (a resumed run counts the checkpoint's)
    start_step: int  # where this call started (0, or the checkpoint's step)
    losses: list[float]  # training loss of every step this call ran
    val_metrics: dict[str, float] | None  # of the final (EMA) weights
    val_history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    seconds: float = 0.0
    samples_per_s: float = 0.0
    checkpoint: Path | None = None

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None


def train(
    model: nn.Module,
    train_data: Any,
    *,
    steps: int,
    batch_size: int,
    lr: float = 1e-3,
    weight_decay: float = 1e-6,
    clip: float | None = 0.03,
    ema: float | None = 0.995,
    loss: str | LossFn = "l1+ssim",
    optimizer: str = "adamw",
    schedule: str = "none",
    augment: bool = False,
    total_steps: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    val_data: Any = None,
    val_every: int | None = 1000,
    val_cut: int = 0,
    max_value: float | None = None,
    ratio: float | None = None,
    checkpoint: str | PathLike[str] | None = None,
    checkpoint_every: int | None = 1000,
    resume: str | PathLike[str] | None = None,
    progress: TrainProgress | None = None,
    workers: int = 0,
    amp: bool = True,
    roles: Sequence[str] = PANSHARPEN.network_roles,
    val_indices: bool = True,
) -> TrainResult:
    """Train ``model`` for ``steps`` optimizer steps in total (a resumed run continues up to ``steps``).

    ``train_data``: a :class:`~spatialx.training.data.PatchStream`, a
    :class:`~spatialx.training.data.WaldPatchDataset`, or any sized map-style dataset of examples (``target`` and
    the task's ``roles``, the network's arguments in order: ``ms``, ``pan`` for pansharpening; e.g.
    :class:`~spatialx.training.data.PanCollectionDataset`). Step ``s`` trains on sample numbers ``s * batch_size ..
    (s + 1) * batch_size - 1``. ``val_data`` (sized) is evaluated with the EMA weights every ``val_every`` steps and
    at the end (indices in the DN scale ``max_value`` with the data's ``ratio``, taken from the data sets when not
    given). ``checkpoint`` is written every ``checkpoint_every`` steps and at the end; ``resume`` continues from
    one. ``ema`` None or 0 disables the average. ``optimizer`` is "adamw", "adamax" or "adam"; ``schedule`` "none"
    keeps ``lr``, "onecycle" runs ``OneCycleLR`` over the ``total_steps`` of the whole run (default ``steps``; give
    it to a run stopped early on purpose, so its checkpoint resumes the same schedule) with ``lr`` as its peak;
    ``augment``
    applies a rot90/flip drawn from ``(seed, sample number)`` to every tensor of each example alike.
    ``val_indices=False`` validates the loss only (values without a DN scale, such as a C3).
    ``loss`` may also be a batch objective (:func:`batch_loss`) that runs the network on the batch itself.
    On CUDA the forward pass runs under bfloat16 autocast when ``amp``
    (and the GPU supports it). After training, ``model`` holds the EMA weights and is left in the mode it came in.
    """
    if steps < 0 or batch_size < 1:
        raise SpatialxError(f"steps must be >= 0 and batch_size >= 1, got {steps} and {batch_size}")
    device = resolve_torch_device(device)
    loss_fn = loss if batch_loss(loss) else make_loss(loss)
    from spatialx.training.recipes import check_choice

    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_choice("schedule", schedule, SCHEDULES)
    stream = as_stream(train_data, seed)
    if augment:
        stream = AugmentedStream(stream, seed)
    max_value = max_value if max_value is not None else _data_attr("max_value", val_data, stream)
    ratio = ratio if ratio is not None else _data_attr("ratio", val_data, stream)
    if val_data is not None and (max_value is None or ratio is None):
        raise SpatialxError("validation needs max_value and ratio (the data sets do not say)",
                            hint="pass max_value= and ratio=")
    was_training = model.training
    model.to(device)
    use_ema = bool(ema)
    ema_model = copy.deepcopy(model).eval() if use_ema else model
    for parameter in ema_model.parameters() if use_ema else ():
        parameter.requires_grad_(False)
    optimizer_kind = optimizer
    optimizer = make_optimizer(optimizer_kind, [p for p in model.parameters() if p.requires_grad], lr, weight_decay)
    scheduler = make_schedule(schedule, optimizer, lr, steps if total_steps is None else total_steps)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    info = {"seed": int(seed), "batch_size": int(batch_size), "ema": ema, "loss": loss if isinstance(loss, str)
            else getattr(loss, "name", None) or getattr(loss, "__name__", "custom"), "optimizer": optimizer_kind,
            "schedule": schedule, "augment": bool(augment)}

    start = 0
    if resume is not None:
        resume = Path(resume)
        tensors, saved = read_checkpoint(resume)
        _load_module(model, tensors, "model", resume)
        if use_ema:
            if not any(name.startswith("ema/") for name in tensors):
                raise ReadError("checkpoint has no EMA weights", path=resume)
            _load_module(ema_model, tensors, "ema", resume)
        # checkpoints written before Adamax existed hold AdamW states and no "optimizer" key
        for key, default in (("optimizer", "adamw"), ("schedule", "none")):
            if saved.get(key, default) != info[key]:
                raise ReadError(f"checkpoint was trained with {key} {saved.get(key, default)!r}, this run uses "
                                f"{info[key]!r}", path=resume, hint=f"resume with the same --{key}")
        _load_optimizer(optimizer, tensors, saved, resume)
        if scheduler is None:
            for group in optimizer.param_groups:
                group["lr"], group["weight_decay"] = lr, weight_decay
        else:  # the schedule's position and its learning rates come back as they were
            if "scheduler" not in saved:
                raise ReadError("checkpoint has no learning-rate schedule state", path=resume)
            scheduler.load_state_dict(saved["scheduler"])
        changed = [f"{key} {saved.get(key)} -> {value}" for key, value in info.items()
                   if key in ("seed", "batch_size") and saved.get(key) != value]
        if changed:
            warnings.warn(f"resuming {resume.name} with {', '.join(changed)}: the run will not repeat the "
                          f"original one exactly", stacklevel=2)
        start = int(saved["step"])
        _set_rng_state(saved["rng"], device)
    else:
        torch.manual_seed(seed)

    def write_checkpoint(step: int) -> None:
        assert checkpoint is not None
        extra = {"scheduler": scheduler.state_dict()} if scheduler is not None else {}
        save_checkpoint(checkpoint, model, ema_model, optimizer, step, {**info, **extra, "rng": _rng_state(device)})

    losses: list[float] = []
    history: list[tuple[int, dict[str, float]]] = []
    val_metrics: dict[str, float] | None = None

    def run_validation() -> dict[str, float]:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            return validate(ema_model, val_data, max_value=max_value, ratio=ratio, batch_size=batch_size, roles=roles,
                            device=device, cut=val_cut, loss=loss_fn, amp=amp, indices=val_indices)

    loader = torch.utils.data.DataLoader(stream, batch_sampler=_StepBatches(start, steps, batch_size),
                                         num_workers=workers, collate_fn=collate,
                                         pin_memory=device.type == "cuda",
                                         # its own generator: creating the iterator must not draw from the
                                         # global one, or a resumed run would see other dropout masks
                                         generator=torch.Generator().manual_seed(int(seed)))
    began = time.perf_counter()
    step = start
    model.train()
    with deterministic():
        for step, batch in enumerate(loader, start=start + 1):
            value = _loss_of_batch(model, batch, loss_fn, roles, device, amp)
            if not torch.isfinite(value):
                raise SpatialxError(f"training diverged at step {step} (loss {float(value)})",
                                    hint="lower --lr or check the data scaling (--sensor)")
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            if scheduler is not None and scheduler.last_epoch < scheduler.total_steps - 1:
                scheduler.step()
            if use_ema:
                ema_update(ema_model, model, ema_decay(float(ema), step - 1))
            losses.append(float(value.detach()))
            metrics = None
            if val_data is not None and ((val_every and step % val_every == 0) or step == steps):
                metrics = run_validation()
                history.append((step, metrics))
                val_metrics = metrics
            if checkpoint is not None and checkpoint_every and step % checkpoint_every == 0 and step != steps:
                write_checkpoint(step)
            if progress is not None:
                elapsed = time.perf_counter() - began
                progress(step, steps, losses[-1], (step - start) * batch_size / max(elapsed, 1e-9), metrics)
    seconds = time.perf_counter() - began
    if val_data is not None and val_metrics is None:  # nothing left to train (resumed at the end)
        val_metrics = run_validation()
        history.append((max(step, start), val_metrics))
    if checkpoint is not None:
        write_checkpoint(max(step, start))
    if use_ema:
        model.load_state_dict(ema_model.state_dict())
    model.train(was_training)
    done = max(step, start)
    return TrainResult(model=model, steps=done, start_step=start, losses=losses, val_metrics=val_metrics,
                       val_history=history, seconds=seconds,
                       samples_per_s=(done - start) * batch_size / max(seconds, 1e-9), checkpoint=checkpoint)


# ---------------------------------------------------------------------------------------------- train_model
@dataclass
class TrainModelResult:
    output: Path
    card: dict[str, Any]
    result: TrainResult


def _held_out_h5(dataset: PanCollectionDataset, fraction: float, limit: int) -> tuple[Any, Any]:
    n = len(dataset)
    n_val = min(limit, int(n * fraction))
    if n_val < 1 or n - n_val < 1:
        return dataset, None
    return Subset(dataset, range(n - n_val)), Subset(dataset, range(n - n_val, n))


def _spread(dataset: Any, limit: int) -> Any:
    if len(dataset) <= limit:
        return dataset
    step = len(dataset) / limit
    return Subset(dataset, [int(i * step) for i in range(limit)])


def train_model(
    output: str | PathLike[str],
    *,
    model: str = "pnn",
    config: str | None = None,
    sensor: str = "wv3",
    h5: str | PathLike[str] | None = None,
    val_h5: str | PathLike[str] | None = None,
    scenes: Sequence[tuple[str | PathLike[str], str | PathLike[str]]] | None = None,
    steps: int = 1000,
    batch_size: int = 8,
    patch: int = 64,
    lr: float | None = None,
    weight_decay: float | None = None,
    clip: float | None = None,
    ema: float | None = None,
    loss: str | None = None,
    optimizer: str | None = None,
    schedule: str | None = None,
    augment: bool | None = None,
    seed: int = 0,
    device: str = "auto",
    holdout: float = 0.1,
    val_patches: int = 64,
    val_every: int | None = None,
    checkpoint: str | PathLike[str] | None = None,
    checkpoint_every: int | None = 500,
    resume: str | PathLike[str] | None = None,
    overwrite: bool = False,
    workers: int = 0,
    progress: TrainProgress | None = None,
    task: str = "pansharpen",
    sensors: Mapping[str, str] | None = None,
    select_bands: Mapping[str, str] | None = None,
) -> TrainModelResult:
    """Train a registered network and write ``output`` (.safetensors) with its card (``spatialx train``).

    Data: ``h5`` (PanCollection HDF5, values divided by the sensor's max value) with ``val_h5`` or, without it,
    the last ``holdout`` fraction of the file held out; or ``scenes`` ((PAN, MS) file pairs on nested grids), cut
    into random Wald-protocol patches of ``patch`` pixels, the bottom rows of every scene (``holdout``, at least
    one patch high) held out for validation. At most ``val_patches`` examples are validated. ``config`` defaults
    to the sensor's configuration of the network, else the first with the data's band count.

    ``lr``, ``weight_decay``, ``clip``, ``ema``, ``loss``, ``optimizer``, ``schedule`` and ``augment`` default (None)
    to the network's training recipe (:func:`spatialx.training.recipes.recipe_for`); ``clip=0`` and ``ema=0``
    turn those off. The card's ``training`` records the recipe used.

    ``task="hmif"``: ``scenes`` are (HS, MS) pairs read with the fusion pipeline's readers (PRISMA HE5, Sentinel-2
    products, cubes with wavelengths), each whole into memory, their sensors in ``sensors`` (``{"hs": ...,
    "ms": ...}``, default PRISMA L2D and Sentinel-2 L2A); examples follow Wald's protocol with the HS as reference
    (:class:`~spatialx.training.data.HMIFWaldPatchDataset`) at the pair's grid ratio.

    ``task="polsar"``: ``scenes`` are (single-pol, quad-pol) pairs on nested grids, Wald's protocol with the C3 as
    reference (:class:`~spatialx.training.data.PolSARWaldPatchDataset`). ``task="stfuse"``: ``scenes`` are the
    (fine, coarse) pairs of one date series (paths of products that state their date, or ``(date, path)``), read as
    ``spatialx stfuse`` reads them with ``sensors`` and ``select_bands`` per kind (``{"fine": ..., "coarse":
    ...}``); the examples are its triples (:mod:`spatialx.training.temporal`), the bottom rows held out for validation.
    """
    from spatialx.io.write import check_output_path
    from spatialx.models.registry import create_model, get_model_spec, model_config
    from spatialx.models.weights import card_path, save_weights
    from spatialx.sensors import get_sensor

    output = Path(output)
    if output.suffix != ".safetensors":
        raise OutputError("weights are written as .safetensors files", path=output,
                          hint=f"name the output {output.with_suffix('.safetensors').name}")
    check_output_path(output, overwrite)
    if card_path(output).exists() and not overwrite:
        raise OutputError("output card exists", path=card_path(output), hint="pass --overwrite to replace it")
    if checkpoint is not None and Path(checkpoint).resolve() == output.resolve():
        raise OutputError("the checkpoint and the output are the same file", path=output,
                          hint="give --checkpoint another name")
    if (h5 is None) == (not scenes):
        raise SpatialxError("give training data: either --h5 FILE or --scene PAN MS (not both)")
    if val_h5 is not None and h5 is None:
        raise SpatialxError("--val-h5 goes with --h5", hint="with --scene, validation patches are held out")
    from spatialx.training.recipes import recipe_for

    spec = get_model_spec(model)
    recipe = recipe_for(model, lr=lr, weight_decay=weight_decay, clip=clip, ema=ema, loss=loss, optimizer=optimizer,
                        schedule=schedule, augment=augment)
    if task not in spec.tasks:
        raise SpatialxError(f"{model} is not a network for {task}", hint=f"it serves {', '.join(spec.tasks)}")
    if task not in (PANSHARPEN.name, "hmif") and h5 is not None:
        raise SpatialxError("HDF5 training sets hold pansharpening (PanCollection) or hmif (GT, LRHSI, RGB) examples",
                            hint=f"train {task} on --scene pairs")
    profile = get_sensor(sensor)
    guide_bands = 1
    task_roles = PANSHARPEN.network_roles
    sensor_card: Any = profile.key

    val_data: Any
    if task == "stfuse":
        return _train_series(output, spec, recipe, config=config, scenes=scenes or (), sensors=sensors,
                             select_bands=select_bands,
                             steps=steps, batch_size=batch_size, patch=patch, seed=seed, device=device,
                             holdout=holdout, val_patches=val_patches, val_every=val_every, checkpoint=checkpoint,
                             checkpoint_every=checkpoint_every, resume=resume, progress=progress, workers=workers)
    max_value = profile.max_value
    if h5 is not None:
        if task == "hmif":  # hyperspectral sets come in [0, 1]
            dataset: PanCollectionDataset = HSIDataset(h5)
            max_value, guide_bands, task_roles = 1.0, dataset.guide_bands, ("hs", "ms")
            sensor_card = "hdf5 (values in [0, 1])"
        else:
            dataset = PanCollectionDataset(h5, max_value)
        ratio = dataset.ratio or int(profile.ratio)
        bands = dataset.bands
        if val_h5 is not None:
            train_data, val_data = dataset, type(dataset)(val_h5, max_value)
            if val_data.bands != bands:
                raise InputMismatchError(f"validation file has {val_data.bands} bands, training file {bands}",
                                         path=val_h5)
        else:
            train_data, val_data = _held_out_h5(dataset, holdout, val_patches)
        description: dict[str, Any] = {"kind": f"{dataset.FORMAT.lower()}-h5", "path": str(h5),
                                       "examples": len(train_data),
                                       "patch": dataset.patch, "validation": str(val_h5) if val_h5 else
                                       (f"last {len(val_data)} examples held out" if val_data else None)}
        if task == PANSHARPEN.name and bands != len(profile.bands):
            warnings.warn(f"{Path(h5).name} has {bands} bands, sensor {profile.key!r} has {len(profile.bands)}: "
                          f"check --sensor (it sets the scaling, max {profile.max_value:g})", stacklevel=2)
    else:
        if task == "hmif":
            wald = _hmif_patches(scenes or (), sensors)
            profile, guide_bands = wald.sensors["hs"], len(wald.sensors["ms"].bands)
            task_roles = ("hs", "ms")
            sensor_card = {role: p.key for role, p in wald.sensors.items()}
        elif task == "polsar":
            wald = _polsar_patches(scenes or ())
            profile, task_roles = wald.profile, POLSAR.network_roles
            sensor_card = {"quad": wald.profile.key, "single": "radarsat2_single"}
        else:
            wald = WaldPatchDataset([tuple(pair) for pair in scenes or ()], profile)
        patch = wald.check_patch(patch)
        ratio, bands = wald.ratio, wald.bands
        rows = min(scene.ms_rows for scene in wald.scenes)
        fraction = max(holdout, (patch + wald.ratio) / max(rows, 1)) if holdout > 0 else 0.0
        val_data = None
        if 0 < fraction <= 0.34:
            try:
                val_data = PatchStream(wald, GridPatchSampler(wald, patch, rows=(1.0 - fraction, 1.0),
                                                              limit=val_patches))
            except InputMismatchError:
                val_data = None
        train_rows = (0.0, 1.0 - fraction) if val_data is not None else (0.0, 1.0)
        train_data = PatchStream(wald, RandomPatchSampler(wald, patch, seed=seed, rows=train_rows))
        description = {"kind": "wald-patches", "scenes": [[str(p), str(m)] for p, m in scenes or ()],
                       "patch": patch, "ratio": wald.ratio,
                       "validation": (f"{len(val_data)} patches from the bottom {fraction:.0%} of the rows"
                                      if val_data is not None else None)}
    if val_data is not None:
        val_data = _spread(val_data, val_patches)
    named_bands = h5 is None or task == PANSHARPEN.name  # a hyperspectral HDF5 file names no sensor

    if task == PANSHARPEN.name:
        config_name = config or (profile.key if profile.key in spec.configs else spec.config_for_bands(bands))
        kwargs = model_config(model, config_name)
        if kwargs.get("bands") not in (None, bands):
            raise InputMismatchError(f"{model} configuration {config_name!r} is for {kwargs.get('bands')} bands, "
                                     f"the data have {bands}", hint=f"use --config {spec.config_for_bands(bands)}")
    else:
        config_name, kwargs = spec.config_for(task, bands, guide_bands, config, ratio=int(ratio))
    if "ratio" in kwargs and kwargs["ratio"] != ratio:
        kwargs["ratio"] = int(ratio)
    torch.manual_seed(seed)  # the initial weights
    network = create_model(model, config_name, **kwargs)

    torch_device = resolve_torch_device(device)
    result = train(network, train_data, steps=steps, batch_size=batch_size, **recipe, seed=seed,
                   device=torch_device, val_data=val_data,
                   val_every=val_every, max_value=wald.max_value if h5 is None else max_value, ratio=ratio,
                   checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume, progress=progress,
                   workers=workers, roles=task_roles, val_indices=task != POLSAR.name)
    card = {
        "architecture": model,
        "config": kwargs,
        "config_name": config_name,
        "task": task,
        "roles": list(task_roles),
        "sensor": sensor_card,
        "bands": list(profile.band_names) if named_bands and len(profile.bands) == bands else bands,
        "max_value": profile.max_value if task == PANSHARPEN.name else None,
        "ratio": int(ratio),
        "parameters": sum(p.numel() for p in network.parameters()),
        "training": {"data": description, "steps": result.steps, "batch_size": batch_size, **recipe,
                     "recipe": dict(recipe), "seed": seed,
                     "device": str(torch_device), "seconds_this_run": round(result.seconds, 3),
                     "final_train_loss": result.final_loss, "resumed_from": str(resume) if resume else None},
        "validation": {key: _finite(value) for key, value in (result.val_metrics or {}).items()} or None,
    }
    network.to("cpu")
    save_weights(network, output, card)
    return TrainModelResult(output=output, card=card, result=result)


def _hmif_patches(scenes: Sequence[tuple[Any, Any]], sensors: Mapping[str, str] | None) -> HMIFWaldPatchDataset:
    """hmif training patches from (HS, MS) pairs, each read whole with the fusion pipeline's readers."""
    from spatialx.evaluate import read_hmif

    pairs = [read_hmif(hs, ms, dict(sensors or {})) for hs, ms in scenes]
    if not pairs:
        raise SpatialxError("no training scenes given", hint="pass at least one --scene HS MS")
    first = pairs[0]
    for (hs, _), pair in zip(scenes, pairs, strict=True):
        if pair.grid_ratio != first.grid_ratio or pair.hs.shape[0] != first.hs.shape[0]:
            raise InputMismatchError(f"the scenes differ: {pair.hs.shape[0]} HS bands at grid ratio "
                                     f"{pair.grid_ratio}, the first scene {first.hs.shape[0]} at {first.grid_ratio}",
                                     path=hs, hint="train on one sensor pair and band selection at a time")
        if pair.grid_ratio < 2:
            raise InputMismatchError("the HS and MS are on the same grid: nothing to learn between the two "
                                     "resolutions", path=hs, hint="give the HS on its own, coarser grid")
    arrays = [ArrayScene(pair.ms, pair.hs, pan_to_ms=pair.grid_ratio, guide_bands=None, name=f"{Path(hs).name} + "
                         f"{Path(ms).name}") for (hs, ms), pair in zip(scenes, pairs, strict=True)]
    return HMIFWaldPatchDataset(arrays, first.sensors, ratio=first.grid_ratio)


def _train_series(output: Path, spec: Any, recipe: Mapping[str, Any], *, config: str | None,
                  scenes: Sequence[tuple[Any, Any]], sensors: Mapping[str, str] | None,
                  select_bands: Mapping[str, str] | None, steps: int, batch_size: int, patch: int, seed: int,
                  device: str, holdout: float, val_patches: int, **run: Any) -> TrainModelResult:
    """``train_model`` for stfuse: the triples of one date series (:func:`~spatialx.training.temporal.read_series`)."""
    from spatialx.models.registry import create_model
    from spatialx.models.weights import save_weights
    from spatialx.training.temporal import TEMPORAL_ROLES, TemporalPatchSampler, read_series, temporal_patch

    sensors, selection = dict(sensors or {}), dict(select_bands or {})
    series = read_series(scenes, fine_sensor=sensors.get("fine", "auto"), coarse_sensor=sensors.get("coarse", "auto"),
                         fine_bands=selection.get("fine"), coarse_bands=selection.get("coarse"))
    data = series.dataset
    patch = temporal_patch(data.ratio, patch)
    rows = data.shape[0]
    fraction = max(holdout, (patch + 1) / rows) if holdout > 0 else 0.0
    val_data = None
    if 0 < fraction <= 0.34:
        val_data = PatchStream(data, TemporalPatchSampler(data, patch, seed=seed + 1, limit=val_patches,
                                                          rows=(1.0 - fraction, 1.0)))
    train_rows = (0.0, 1.0 - fraction) if val_data is not None else (0.0, 1.0)
    train_data = PatchStream(data, TemporalPatchSampler(data, patch, seed=seed, rows=train_rows))
    fine_bands = len(series.fine_bands)
    config_name, kwargs = spec.config_for("stfuse", 2 * fine_bands, fine_bands, config, ratio=data.ratio)
    torch.manual_seed(seed)
    network = create_model(spec.name, config_name, **kwargs)
    torch_device = resolve_torch_device(device)
    result = train(network, train_data, steps=steps, batch_size=batch_size, **recipe, seed=seed, device=torch_device,
                   val_data=val_data, max_value=1.0, ratio=data.ratio, roles=TEMPORAL_ROLES, val_indices=False, **run)
    card = {
        "architecture": spec.name, "config": kwargs, "config_name": config_name, "task": "stfuse",
        "roles": list(TEMPORAL_ROLES), "sensor": series.sensors, "bands": series.fine_bands, "max_value": None,
        "ratio": data.ratio, "parameters": sum(p.numel() for p in network.parameters()),
        "training": {"data": {"kind": "date-series", "dates": series.dates,
                              "pairs": [[_dated_text(f), _dated_text(c)] for f, c in scenes], "patch": patch,
                              "ratio": data.ratio,
                              "validation": (f"{len(val_data)} windows from the bottom {fraction:.0%} of the rows"
                                             if val_data is not None else None)},
                     "steps": result.steps, "batch_size": batch_size, **recipe, "recipe": dict(recipe), "seed": seed,
                     "device": str(torch_device), "seconds_this_run": round(result.seconds, 3),
                     "final_train_loss": result.final_loss,
                     "resumed_from": str(run["resume"]) if run.get("resume") else None},
        "validation": {key: _finite(value) for key, value in (result.val_metrics or {}).items()} or None,
    }
    network.to("cpu")
    save_weights(network, output, card)
    return TrainModelResult(output=output, card=card, result=result)


def _dated_text(item: Any) -> str:
    return f"{item[0]}={item[1]}" if isinstance(item, tuple) else str(item)


def _polsar_patches(scenes: Sequence[tuple[Any, Any]]) -> PolSARWaldPatchDataset:
    """polsar training patches from (single-pol, quad-pol) pairs on nested grids, each read whole; Wald's protocol
    at ratio 2 with the C3 as reference (a single-pol image on the C3's own grid gives the paper's simulation:
    the C3 averaged 2 x 2 against its own HH intensity)."""
    from spatialx.tasks.polsar import read_polsar_pair

    arrays = []
    for single, quad in scenes:
        intensity, c3, grid_ratio = read_polsar_pair(single, quad)
        arrays.append(ArrayScene(intensity, c3, pan_to_ms=grid_ratio, name=f"{Path(single).name} + {Path(quad).name}"))
    return PolSARWaldPatchDataset(arrays, ratio=2)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
