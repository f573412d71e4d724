"""Network weights: safetensors files with a small JSON card.

``model.safetensors`` holds the tensors (never a pickle) and, in its header metadata, the card; ``model.json`` next
to it repeats the card for people and adds the file's sha256. Loading checks the hash when the card file is
present, rebuilds the architecture from the card and loads the tensors strictly, so a missing, corrupt or
mismatched file is one clear error instead of a half-loaded network.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import Any

from spatialx import __version__
from spatialx.errors import ReadError

CARD_KEY = "spatialx_card"
REQUIRED = ("architecture", "config")


def card_path(weights: str | PathLike[str]) -> Path:
    return Path(weights).with_suffix(".json")


def weight_files(weights: str | PathLike[str] | None) -> dict[str, Path]:
    """The files a run reads for ``--weights`` (the tensors and their card), as inputs of an output plan."""
    return {} if weights is None else {"weights": Path(weights), "weights card": card_path(weights)}


def sha256(path: str | PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(model, path: str | PathLike[str], card: Mapping[str, Any]) -> Path:
    """Write ``model``'s state dict to ``path`` (safetensors) and its card next to it, atomically."""
    from safetensors.torch import save_file

    from spatialx.io.outputs import atomic_write_text, publish, temporary_for

    missing = [key for key in REQUIRED if key not in card]
    if missing:
        raise ValueError(f"weight card lacks {', '.join(missing)}")
    path = Path(path)
    full_card = {"format": "spatialx-weights/1", "spatialx_version": __version__,
                 "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **card}
    tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    # Registered temporaries: an error or an interrupt (SIGINT/SIGTERM under the CLI) leaves none behind.
    with temporary_for(path, ".safetensors") as temporary:
        save_file(tensors, temporary, metadata={CARD_KEY: json.dumps(full_card, sort_keys=True)})
        publish(temporary, path)
    full_card["sha256"] = sha256(path)
    atomic_write_text(card_path(path), json.dumps(full_card, indent=2) + "\n")
    return path


def read_header_json(path: str | PathLike[str], key: str, what: str, missing_hint: str) -> dict[str, Any]:
    """The JSON document stored under ``key`` in a safetensors file's header metadata (weights cards and training
    checkpoints), with one clear error for a missing, foreign, truncated or corrupt file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ReadError(f"{what} does not exist", path=path, hint="check the path")
    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        raise ReadError(f"not a valid safetensors file ({str(exc).splitlines()[0]})", path=path,
                        hint=missing_hint) from None
    if key not in metadata:
        raise ReadError(f"safetensors file is not a spatialx {what}", path=path, hint=missing_hint)
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError:
        raise ReadError(f"the {what} header is corrupt", path=path) from None


def read_card(path: str | PathLike[str]) -> dict[str, Any]:
    """The card of a weights file (from its header), checked against the sha256 its sidecar card states (a
    missing card is refused: nothing else tells a flipped byte from a trained weight)."""
    path = Path(path)
    card = read_header_json(path, CARD_KEY, "weights file",
                            "weights must be .safetensors files written by spatialx train (or save_weights)")
    sidecar = card_path(path)
    if not sidecar.is_file():
        # The card holds the checksum: without it a modified file would be used unnoticed.
        raise ReadError(f"the weights' card {sidecar.name} is missing, so the weights cannot be verified", path=path,
                        hint="copy the .json card that spatialx train wrote next to the .safetensors file")
    try:
        expected = json.loads(sidecar.read_text()).get("sha256")
    except json.JSONDecodeError:
        raise ReadError("weights card is not valid JSON", path=sidecar) from None
    if not expected:
        raise ReadError("the weights card states no sha256", path=sidecar,
                        hint="use the card spatialx train wrote with these weights")
    if expected != sha256(path):
        raise ReadError("sha256 of the weights does not match its card", path=path,
                        hint="the file was modified or truncated; re-copy it")
    return card


def load_weights(path: str | PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state_dict, card)`` of a weights file."""
    from safetensors.torch import load_file

    card = read_card(path)
    try:
        tensors = load_file(Path(path))
    except Exception as exc:
        raise ReadError(f"cannot read tensors ({exc})", path=path) from None
    return tensors, card


def load_model(path: str | PathLike[str], architecture: str | None = None, bands: int | None = None):
    """Rebuild the network a weights file was trained as and load its tensors; returns ``(model, card)``."""
    from spatialx.models.registry import create_model

    tensors, card = load_weights(path)
    if architecture is not None and card["architecture"] != architecture:
        raise ReadError(f"weights are for {card['architecture']!r}, not {architecture!r}", path=path,
                        hint=f"use --method {card['architecture']} or other weights")
    if bands is not None and card["config"].get("bands") not in (None, bands):
        raise ReadError(f"weights are for {card['config'].get('bands')} bands, the input has {bands}", path=path,
                        hint="use weights trained for this sensor")
    model = create_model(card["architecture"], None, **card["config"])
    try:
        result = model.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[-1].strip()
        raise ReadError(f"weights do not fit the {card['architecture']} architecture ({first})", path=path) from None
    if result.missing_keys or result.unexpected_keys:
        detail = ", ".join([*(f"missing {k}" for k in result.missing_keys[:3]),
                            *(f"unexpected {k}" for k in result.unexpected_keys[:3])])
        raise ReadError(f"weights do not fit the {card['architecture']} architecture ({detail})", path=path)
    return model, card
