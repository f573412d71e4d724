"""The journal of a resumable run: which tile rows are safely in its staging files, and what they held.

A run with a resume key (``RunOptions.resume``, set by ``spatialx batch``) stages its pixels in fixed, hidden files
next to each output (:func:`~spatialx.io.write.partial_path`) and, after each tile row, flushes them and records
here how many rows are done and the counts of the cells written so far (valid pixels, clipped values). A rerun with
the same key whose staging files are all still there continues from that row; any other key (the job changed)
starts again. The journal is written atomically, after the pixels it vouches for are on disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from spatialx.io.outputs import atomic_write_text
from spatialx.io.write import partial_path

#: The counts a run keeps of the cells it wrote: valid pixels, and the encoder's values, below and above its range.
COUNTS = ("valid", "values", "below", "above")


@dataclass
class Journal:
    path: Path
    key: str
    #: Tile rows whose every completed cell is on disk.
    rows_done: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))

    @classmethod
    def load(cls, output: Path, key: str, staged: Iterable[Path]) -> Journal:
        """The journal of ``output`` if it belongs to ``key`` and every staging file in ``staged`` exists, else a
        fresh one (nothing done)."""
        path = partial_path(output, ".json")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls(path, key)
        if (not isinstance(data, dict) or data.get("key") != key or not all(Path(p).exists() for p in staged)
                or not isinstance(data.get("rows_done"), int) or set(data.get("counts", {})) != set(COUNTS)):
            return cls(path, key)
        return cls(path, key, data["rows_done"], {name: int(data["counts"][name]) for name in COUNTS})

    @property
    def resuming(self) -> bool:
        return self.rows_done > 0

    def save(self, rows_done: int, counts: dict[str, int]) -> None:
        self.rows_done, self.counts = rows_done, dict(counts)
        atomic_write_text(self.path, json.dumps({"key": self.key, "rows_done": rows_done, "counts": counts}) + "\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
