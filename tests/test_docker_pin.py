"""The Docker images install the torch the set-up pins: one version, read from the Makefile."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dockerfile_torch_version_is_the_makefile_pin():
    pin = re.search(r"^TORCH_PIN \?= torch==(\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    default = re.search(r"^ARG TORCH_VERSION=(\S+)$", (ROOT / "docker" / "Dockerfile").read_text(), re.MULTILINE)
    assert pin and default and pin.group(1) == default.group(1)
