"""Default weights shipped inside the package: one safetensors file and its card per network configuration.

``spatialx/models/weights/<architecture>-<config>.safetensors`` with ``.json`` cards next to them, written by
``scripts/train_default_weights.py`` (the cards say exactly what they were trained on). A network method given no
``--weights`` looks its weights up here by architecture, task and band counts (:func:`find_bundled`) and loads
them like any weights file: the card's sha256 is checked, the architecture rebuilt from the card. Listing reads
only the small JSON cards, never torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where the bundled weights live (package data).
BUNDLED_DIR = Path(__file__).with_name("weights")


@dataclass(frozen=True)
class BundledWeights:
    """One bundled weights file, described by its sidecar card (verified only when loaded)."""

    path: Path
    architecture: str
    config_name: str
    task: str
    bands: int
    guide_bands: int
    sha256: str
    summary: str
    card: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.path.name


def list_bundled(directory: str | Path | None = None) -> list[BundledWeights]:
    """The bundled weights, sorted by file name (a card that is not valid JSON is left out; a tampered tensor file
    is caught when it is loaded)."""
    root = Path(directory) if directory is not None else BUNDLED_DIR
    found = []
    for path in sorted(root.glob("*.safetensors")) if root.is_dir() else ():
        try:
            card = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            config = card["config"]
            found.append(BundledWeights(
                path=path, architecture=card["architecture"], config_name=card.get("config_name", ""),
                task=card.get("task", "pansharpen"), bands=int(config["bands"]),
                guide_bands=int(config.get("guide_bands", 1)), sha256=card.get("sha256", ""),
                summary=card.get("summary", ""), card=card))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def find_bundled(architecture: str, task: str, bands: int, guide_bands: int = 1) -> BundledWeights | None:
    """The bundled weights for ``architecture`` on ``task`` with a ``bands``-band input and a ``guide_bands``-band
    guide, or None."""
    for weights in list_bundled():
        if (weights.architecture, weights.task, weights.bands, weights.guide_bands) == (
                architecture, task, int(bands), int(guide_bands)):
            return weights
    return None


def describe_bundled(architecture: str | None = None) -> str:
    """The bundled weights in a few words, for messages: ``lemamba-qb (pansharpen, 4 bands), ...``."""
    entries = [f"{w.path.stem} ({w.task}, {w.bands} bands)" for w in list_bundled()
               if architecture is None or w.architecture == architecture]
    return ", ".join(entries) if entries else "none"
