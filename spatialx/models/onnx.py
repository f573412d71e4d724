"""Networks as ONNX models: export a spatialx network to ONNX and run it with ONNX Runtime.

:func:`export_onnx` writes a network (rebuilt from its safetensors weights, or a live ``nn.Module``) as an ONNX file
whose batch, height and width are dynamic, with the weights card in the model's ``metadata_props`` (key
``spatialx_card``, the card's JSON), atomically (staged next to the output and renamed into place, like every
spatialx output). The export is checked at once: ONNX Runtime and PyTorch run the same random input and the largest
absolute difference is reported (:class:`ExportResult`).

:class:`OnnxRunner` runs an exported model on numpy arrays (the tiler's batches), on the CPU or, with
``onnxruntime-gpu``, on CUDA. ``onnx``, ``onnxscript`` and ``onnxruntime`` are optional (the ``onnx`` extra); a
missing one is a one-line :class:`~spatialx.errors.MethodError`.

Every network exports: PNN (convolutions only), LE-Mamba, SpaXFus, SSRFN and RWKVFusion. A selective scan is a
recurrence over its sequence (H x W pixels for SS2D): its CPU
kernel (numba) cannot be traced, and the pure-PyTorch paths of :mod:`spatialx.models.scan` are Python loops whose
trip count depends on the length (``divmod`` of a symbolic length fails in ``torch.export``). During an export every
scan (the modules of :data:`SCAN_CALLERS`) therefore calls :func:`export_selective_scan` instead, the same
recurrence written with torch's ``scan`` higher-order op, which the dynamo exporter turns into one ONNX ``Scan``;
RWKVFusion's WKV (:data:`WKV_CALLERS`) likewise calls :func:`export_wkv`, its chunked form with the scan over chunks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from spatialx.errors import MethodError

CARD_KEY = "spatialx_card"
DEFAULT_OPSET = 18
#: Input names of the exported graph, per position of the network's arguments (the task's network roles follow).
INPUT_NAMES = ("lms", "guide")
OUTPUT_NAME = "fused"


def onnx_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def _require(*names: str) -> None:
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        raise MethodError(f"ONNX needs the {', '.join(missing)} package{'s' if len(missing) > 1 else ''}",
                          hint="pip install 'spatialx[onnx]' (onnx, onnxscript, onnxruntime)")


@dataclass
class ExportResult:
    path: Path
    opset: int
    exporter: str  # "dynamo" or "torchscript"
    max_abs_diff: float
    checked_shape: tuple[int, ...]
    inputs: tuple[str, ...] = field(default_factory=tuple)


def _example_inputs(model, card: Mapping[str, Any], tile: int, batch: int = 2, seed: int = 0):
    import torch

    config = card.get("config", {})
    bands = int(config.get("bands", getattr(model, "bands", 1)))
    guide = int(config.get("guide_bands", getattr(model, "guide_bands", 1)))
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, bands, tile, tile, generator=generator),
            torch.rand(batch, guide, tile, tile, generator=generator))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress and warn about shape names: keep a CLI run to its own lines."""
    sink = io.StringIO()
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _failed_op(exc: BaseException) -> str:
    """The first line of an exporter error that names what failed (an op or a guard), for a one-line message."""
    text = str(exc)
    lines = [line.strip() for line in text.splitlines()]
    if "## Exception summary" in lines:  # torch.onnx's dynamo report: the cause follows the heading
        summary = [line for line in lines[lines.index("## Exception summary") + 1:] if line]
        if summary:
            return summary[0][:300]
    for line in text.splitlines():
        stripped = line.strip()
        if any(key in stripped for key in ("aten::", "aten.", "Unsupported", "unsupported", "not supported",
                                           "Could not", "could not", "Constraints violated", "guard")):
            return stripped[:300]
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return f"{type(exc).__name__}: {first[:300]}"


def export_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False, initial_state=None, chunk=None, backend="auto", **unused):
    """:func:`spatialx.models.scan.selective_scan`'s contract (time-varying or grouped ``B``/``C``) as one
    ``torch._higher_order_ops.scan`` over ``L``: exportable with a dynamic sequence length. Inference only; it keeps
    the ``(L, batch, dim, N)`` decays and drives, so it is for exports, not for fusion in PyTorch."""
    import torch
    import torch.nn.functional as F
    from torch._higher_order_ops.scan import scan

    batch, dim, _ = u.shape
    n_state = A.shape[1]
    dt = delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.float()[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)
    uf = u.float()

    def per_channel(m):  # (batch, N, L) or (batch, G, N, L) -> (L, batch, dim, N)
        m = m.float() if m.dim() == 4 else m.float().unsqueeze(1)
        return m.repeat_interleave(dim // m.shape[1], dim=1).permute(3, 0, 1, 2)

    decay = torch.exp(dt.unsqueeze(-1) * A.float()[None, :, None, :]).permute(2, 0, 1, 3)
    drive = (dt * uf).permute(2, 0, 1).unsqueeze(-1) * per_channel(B)
    h0 = uf.new_zeros(batch, dim, n_state) if initial_state is None else initial_state.float()

    def step(h, xs):
        a_t, x_t, c_t = xs
        h = a_t * h + x_t
        return h.clone(), (h * c_t).sum(-1)

    last, ys = scan(step, h0, (decay, drive, per_channel(C)))
    y = ys.permute(1, 2, 0)
    if D is not None:
        y = y + uf * D.float()[None, :, None]
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(u.dtype)
    return (y, last) if return_last_state else y


def export_wkv(r, k, v, w, u, initial_state=None, return_state=False, chunk=None, backend="auto"):
    """:func:`spatialx.models.wkv.wkv`'s contract as its chunked form (:func:`~spatialx.models.wkv.wkv_chunked`)
    with a fixed chunk length, every chunk padded to it, and the states entering the chunks by one
    ``torch._higher_order_ops.scan`` over the chunks: exportable with a dynamic sequence length. As in the chunked
    form every decay factor is ``exp(lam m)`` with ``m >= 0`` steps, so nothing overflows for any ``w``. The
    intra-chunk terms are added one lag at a time straight into the output (no (T, T) score matrix). Inference
    only; ``backend`` is ignored."""
    import torch
    import torch.nn.functional as F
    from torch._higher_order_ops.scan import scan

    from spatialx.models.wkv import DEFAULT_CHUNK, _log_decay, chunk_blocks, decay_from_chunk_start, last_chunk_state

    steps_per_chunk = DEFAULT_CHUNK if chunk is None else int(chunk)
    batch, length, heads, n = r.shape
    vdim = v.shape[3]
    n_chunks = (length + steps_per_chunk - 1) // steps_per_chunk
    pad = n_chunks * steps_per_chunk - length
    lam = _log_decay(w, torch.float32)  # (H, N)
    rb, kb, vb = (chunk_blocks(x.float(), steps_per_chunk, n_chunks, pad) for x in (r, k, v))
    from_start = decay_from_chunk_start(lam, steps_per_chunk)
    chunk_decay = torch.exp(lam * steps_per_chunk)[None, :, :, None]  # (1, H, N, 1)
    contrib = ((kb * from_start.flip(1)[:, None]).transpose(-1, -2) @ vb).permute(2, 0, 1, 3, 4)  # (chunks, b, H, N, V)
    h0 = rb.new_zeros(batch, heads, n, vdim) if initial_state is None else initial_state.float()

    def step(h, contribution):
        return chunk_decay * h + contribution, h.clone()

    _, entering = scan(step, h0, contrib)
    entering = entering.permute(1, 2, 0, 3, 4)  # (batch, H, chunks, N, V)
    out = (rb * from_start[:, None]) @ entering
    for m in range(steps_per_chunk - 1):  # the token m + 1 steps back in the chunk, decayed over m steps
        scores = (rb[..., m + 1:, :] * kb[..., :steps_per_chunk - 1 - m, :]) @ from_start[:, m, None, :, None]
        out = out + F.pad(scores * vb[..., :steps_per_chunk - 1 - m, :], (0, 0, m + 1, 0))
    out = out + (rb * kb * u.float()[:, None, None, :]).sum(-1, keepdim=True) * vb
    out = out.permute(0, 2, 3, 1, 4).reshape(batch, n_chunks * steps_per_chunk, heads, vdim)[:, :length].to(r.dtype)
    if not return_state:
        return out
    return out, last_chunk_state(entering[:, :, -1], kb, vb, lam, from_start, steps_per_chunk - pad)


#: Modules whose networks call :func:`spatialx.models.scan.selective_scan` through their own module-level name.
SCAN_CALLERS = ("spatialx.models.ss2d", "spatialx.models.spaxfus", "spatialx.models.ssrfn")
#: Modules that call :func:`spatialx.models.wkv.wkv` through their own module-level name.
WKV_CALLERS = ("spatialx.models.wkv",)


@contextlib.contextmanager
def _exportable_scans(model) -> Iterator[None]:
    """While exporting a network, route every recurrence through its exportable form: the ``selective_scan`` name
    of each loaded module of :data:`SCAN_CALLERS` becomes :func:`export_selective_scan` and the ``wkv`` name of
    each of :data:`WKV_CALLERS` :func:`export_wkv` (restored after), and every block with a ``scan_backend`` is set
    to ``"chunked"`` (SS2D's compiled path is an image-order kernel of its own)."""
    import sys

    routes = [(sys.modules[name], attribute, replacement)
              for names, attribute, replacement in ((SCAN_CALLERS, "selective_scan", export_selective_scan),
                                                    (WKV_CALLERS, "wkv", export_wkv))
              for name in names if name in sys.modules]
    blocks = [m for m in model.modules() if hasattr(m, "scan_backend")]
    originals = [getattr(module, attribute) for module, attribute, _ in routes]
    backends = [block.scan_backend for block in blocks]
    try:
        for module, attribute, replacement in routes:
            setattr(module, attribute, replacement)
        for block in blocks:
            block.scan_backend = "chunked"
        yield
    finally:
        for (module, attribute, _), original in zip(routes, originals, strict=True):
            setattr(module, attribute, original)
        for block, backend in zip(blocks, backends, strict=True):
            block.scan_backend = backend


def _export_graph(model, args: tuple, path: Path, opset: int) -> str:
    """Write ``model`` to ``path`` with dynamic batch, height and width; returns the exporter that worked."""
    import torch

    names = list(INPUT_NAMES[:len(args)])
    errors: list[str] = []
    with _quiet(), torch.no_grad(), _exportable_scans(model):
        try:
            batch, height, width = (torch.export.Dim(n) for n in ("batch", "height", "width"))
            dims = {0: batch, 2: height, 3: width}
            program = torch.onnx.export(model, args, dynamo=True, input_names=names, output_names=[OUTPUT_NAME],
                                        dynamic_shapes=tuple(dims for _ in args), opset_version=opset,
                                        verbose=False, optimize=True)
            program.save(os.fspath(path))
            return "dynamo"
        except Exception as exc:  # the dynamo exporter raises many types; fall back to TorchScript
            errors.append(f"dynamo: {_failed_op(exc)}")
        try:
            axes = {0: "batch", 2: "height", 3: "width"}
            torch.onnx.export(model, args, os.fspath(path), dynamo=False, input_names=names,
                              output_names=[OUTPUT_NAME], opset_version=opset,
                              dynamic_axes={**{n: axes for n in names}, OUTPUT_NAME: axes})
            return "torchscript"
        except Exception as exc:
            errors.append(f"torchscript: {_failed_op(exc)}")
    raise MethodError(f"the network does not export to ONNX ({'; '.join(errors)})",
                      hint="export another architecture, or fuse with --backend torch")


def _embed_card(path: Path, card: Mapping[str, Any]) -> None:
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=True)
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = CARD_KEY, json.dumps(dict(card), sort_keys=True, default=str)
    model.producer_name = "spatialx"
    onnx.save(model, os.fspath(path))


def export_onnx(model, card: Mapping[str, Any], path: str | PathLike[str], *, opset: int = DEFAULT_OPSET,
                tile: int = 256, check: bool = True, check_batch: int = 2) -> ExportResult:
    """Export ``model`` (an ``nn.Module`` built by the registry; its ``card`` is embedded) to ``path``, atomically.

    ``tile``: the square size of the example input used for tracing and for the check (all three of batch, height
    and width stay dynamic). The check runs ONNX Runtime and PyTorch on one random input and reports the largest
    absolute difference.
    """
    _require("onnx", "onnxscript", "onnxruntime")
    from spatialx.io.outputs import publish, temporary_for

    model = model.eval().cpu()
    args = _example_inputs(model, card, tile, batch=check_batch)
    path = Path(path)
    # The exporter may write external data next to its file: build in a private directory, then stage one file
    # next to the output (a registered temporary, removed on any failure or interrupt) and rename it into place.
    with tempfile.TemporaryDirectory(prefix="spatialx-onnx-") as staging:
        staged = Path(staging) / "model.onnx"
        exporter = _export_graph(model, args, staged, opset)
        _embed_card(staged, card)
        diff = float("nan")
        if check:
            diff = check_onnx(staged, model, args)
        with temporary_for(path, ".onnx") as temporary:
            shutil.copyfile(staged, temporary)
            publish(temporary, path)
    return ExportResult(path=path, opset=opset, exporter=exporter, max_abs_diff=diff,
                        checked_shape=tuple(args[0].shape), inputs=INPUT_NAMES[:len(args)])


def export_weights(weights: str | PathLike[str], path: str | PathLike[str], **kwargs: Any) -> ExportResult:
    """:func:`export_onnx` of the network a safetensors weights file holds (its card embedded)."""
    from spatialx.models.weights import load_model, sha256

    model, card = load_model(weights)
    card = {**card, "sha256": sha256(weights), "weights": Path(weights).name}
    return export_onnx(model, card, path, **kwargs)


def check_onnx(path: str | PathLike[str], model, args: Sequence) -> float:
    """Largest absolute difference between ONNX Runtime and PyTorch on ``args``."""
    import torch

    runner = OnnxRunner(path, threads=None)
    with torch.no_grad():
        expected = model(*args).float().numpy()
    got = runner.run([a.numpy() for a in args])
    if got.shape != expected.shape:
        raise MethodError(f"the exported model returns shape {got.shape}, PyTorch {expected.shape}")
    return float(np.abs(got - expected).max())


def read_card(path: str | PathLike[str]) -> dict[str, Any]:
    """The spatialx card embedded in an exported ONNX file (``{}`` when it has none)."""
    _require("onnx")
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    for entry in model.metadata_props:
        if entry.key == CARD_KEY:
            return json.loads(entry.value)
    return {}


class OnnxRunner:
    """An ONNX Runtime session over an exported spatialx network: ``run([lms, guide]) -> fused`` on float32 arrays.

    ``device="cuda"`` uses the CUDAExecutionProvider when ONNX Runtime offers it (``onnxruntime-gpu``), else the CPU.
    ``threads``: intra-op threads (``None``: ONNX Runtime's default; else e.g. torch's thread count).
    """

    def __init__(self, path: str | PathLike[str], device: str = "cpu", threads: int | None = None):
        _require("onnxruntime")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device == "cuda" and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        self.providers = providers
        self.session = ort.InferenceSession(os.fspath(path), sess_options=options, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        if len(arrays) != len(self.input_names):
            raise ValueError(f"the ONNX model takes {len(self.input_names)} inputs, got {len(arrays)}")
        feeds = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in zip(self.input_names, arrays,
                                                                                     strict=True)}
        return self.session.run(None, feeds)[0]
