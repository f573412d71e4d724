"""One small spec per fusion task: which inputs it takes and which one defines the output grid."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    name: str
    guide: str  # role whose grid (over the common footprint) is the output grid
    resampled: tuple[str, ...]  # roles resampled onto the output grid
    output_like: str  # role whose bands (names, wavelengths) and dtype the output takes
    labels: dict[str, str]  # role -> how messages name it

    def label(self, role: str) -> str:
        return self.labels.get(role, role)


PANSHARPEN = TaskSpec("pansharpen", guide="pan", resampled=("ms",), output_like="ms",
                      labels={"pan": "PAN", "ms": "MS"})

__all__ = ["PANSHARPEN", "TaskSpec"]
