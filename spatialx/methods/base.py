"""The interface every fusion method implements, classical or learned.

A method sees the scene twice. :meth:`FusionMethod.fit` gets a :class:`SceneSample` (the inputs sampled over the
whole scene) and computes the global statistics it needs (regression weights, histogram moments, network
adaptation). :meth:`FusionMethod.fuse` then runs on tiles: it gets every input already on the output grid, padded by
:attr:`FusionMethod.halo` pixels, and returns the fused bands for the same extent. Because the statistics come from
the first pass, a tile's result does not depend on where the tile lies.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from spatialx.sensors import SensorProfile


@dataclass
class SceneWindow:
    """A contiguous piece of the scene with exact pixel correspondences, for methods that learn from the scene.

    ``guide`` is on the output grid (e.g. the PAN, (1, rows, cols)); ``native`` holds each lower-resolution role
    on its own grid over the same extent, ``factor`` times smaller (e.g. the MS, (bands, rows/f, cols/f)).
    """

    guide: np.ndarray
    native: dict[str, np.ndarray]
    factor: int


@dataclass
class SceneSample:
    """Inputs over the whole scene, for global statistics.

    ``inputs`` holds every role on the output grid, sampled every ``stride`` output pixels (stride 1 for scenes
    small enough to hold: then statistics are exact). ``native`` holds the lower-resolution inputs on their own
    grid over the same footprint (also strided when large). ``valid`` marks sampled pixels where all inputs hold
    data.
    """

    inputs: dict[str, np.ndarray]
    valid: np.ndarray
    native: dict[str, np.ndarray] = field(default_factory=dict)
    stride: int = 1
    #: Contiguous windows (the whole scene when it fits the budget); empty when the grids are not nested.
    windows: list[SceneWindow] = field(default_factory=list)
    #: Why there are no windows, for methods that need them.
    windows_unavailable: str = ""

    def valid_pixels(self, role: str) -> np.ndarray:
        """The role's valid samples as a (bands, n) matrix."""
        return self.inputs[role][:, self.valid]


class FusionMethod(ABC):
    """Base class of all fusion methods. Subclasses set ``name``/``tasks`` and implement :meth:`fuse`."""

    name: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = ()
    #: Pixels of context each side that a tile needs so that its centre equals the whole-image result.
    halo: int = 0
    #: Default width of the cross-fade between neighbouring tiles.
    default_overlap: int = 16
    #: Tiles start on multiples of this (e.g. the ratio, for methods that decimate).
    align: int = 1
    #: Where tensors go ("cpu" or "cuda"); set by the pipeline, used by networks.
    device: str = "cpu"
    #: Neighbouring tiles handed to :meth:`fuse_batch` at once (networks batch them on the device).
    batch_tiles: int = 1

    def __init__(self, sensor: SensorProfile, ratio: float, **options: Any):
        if options:
            raise TypeError(f"method {self.name!r} does not take {', '.join(sorted(options))}"
                            + (" (it has no learned weights)" if "weights" in options else ""))
        self.sensor = sensor
        self.ratio = ratio

    def fit(self, sample: SceneSample) -> None:  # noqa: B027 - optional hook, most methods need no statistics
        """Compute global statistics from the first pass. Default: none needed."""

    @abstractmethod
    def fuse(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Fuse one tile. ``inputs`` maps roles to float32 arrays (bands, rows, cols) on the output grid."""

    def fuse_batch(self, batch: list[Mapping[str, np.ndarray]]) -> list[np.ndarray]:
        """Fuse several tiles; methods that gain from batching override this."""
        return [self.fuse(inputs) for inputs in batch]

    def params(self) -> dict[str, Any]:
        """Parameters and fitted statistics, recorded in the output's provenance tags."""
        return {}


def fuse_arrays(method: FusionMethod, inputs: Mapping[str, np.ndarray],
                native: Mapping[str, np.ndarray] | None = None, guide: str = "pan") -> np.ndarray:
    """Run ``method`` on whole in-memory arrays, as the reference toolbox does (no tiling, no padding).

    ``inputs`` maps roles to (bands, rows, cols) arrays already on the output grid (for pansharpening ``pan`` and
    ``ms``, the MS upsampled to PAN size); ``native`` holds the lower-resolution inputs on their own grid (``ms``).
    Statistics are exact: the sample is every pixel.
    """
    arrays = {role: np.asarray(a, dtype=np.float32) for role, a in inputs.items()}
    native_arrays = {role: np.asarray(a, dtype=np.float32) for role, a in (native or {}).items()}
    rows, cols = arrays[guide].shape[1:]
    factors = {rows // a.shape[1] for a in native_arrays.values()}
    nested = len(factors) == 1 and all(a.shape[1] * f == rows and a.shape[2] * f == cols
                                       for a in native_arrays.values() for f in factors)
    sample = SceneSample(
        inputs=arrays, valid=np.ones((rows, cols), dtype=bool), native=native_arrays,
        windows=[SceneWindow(arrays[guide], native_arrays, factors.pop())] if nested else [],
        windows_unavailable="" if nested else "the arrays are not nested at an integer ratio")
    method.fit(sample)
    return np.asarray(method.fuse(arrays), dtype=np.float32)
