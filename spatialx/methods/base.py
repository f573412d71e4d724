"""The interface every fusion method implements, classical or learned.

A method is built from a :class:`MethodContext`: the task, each role's sensor profile, and the ratios between the
grids. It sees the scene twice. :meth:`FusionMethod.fit` gets a :class:`SceneSample` (the inputs sampled over the
whole scene) and computes the global statistics it needs (regression weights, histogram moments, network
adaptation). :meth:`FusionMethod.fuse` then runs on tiles: it gets every role already on the output grid, padded by
:attr:`FusionMethod.halo` pixels, and returns the fused bands for the same extent. Because the statistics come from
the first pass, a tile's result does not depend on where the tile lies.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from spatialx.errors import MethodError, SensorConfigError
from spatialx.sensors import SensorProfile, get_sensor
from spatialx.tasks import Resampling, TaskSpec, get_task

SensorArg = str | SensorProfile | Mapping[str, str | SensorProfile]


def role_sensor(profile: SensorProfile, part: str) -> SensorProfile:
    """The part of ``profile`` that describes one role's file: all its bands, or its PAN band alone."""
    if part == "bands":
        return profile
    if part == "pan":
        if profile.pan is None:
            raise SensorConfigError(f"sensor {profile.key!r} has no PAN band", path=profile.path,
                                    hint="pansharpening needs a sensor with a panchromatic band")
        return replace(profile, bands=(profile.pan,))
    raise ValueError(f"unknown sensor part {part!r}")


def role_sensors(task: TaskSpec, sensor: SensorArg, roles: tuple[str, ...] | None = None) -> dict[str, SensorProfile]:
    """Each role's sensor profile: one sensor for every role, or a ``{role: sensor}`` mapping."""
    wanted = task.role_names if roles is None else roles
    if isinstance(sensor, Mapping):
        chosen = dict(sensor)
        unknown = sorted(set(chosen) - set(task.role_names))
        if unknown:
            raise MethodError(f"{task.name} has no role {', '.join(unknown)} to give a sensor to",
                              hint=f"its roles are {', '.join(task.role_names)}")
        missing = [role for role in wanted if role not in chosen]
        if missing:
            raise MethodError(f"no sensor given for the {', '.join(task.label(r) for r in missing)} input",
                              hint="name a sensor for every role (see `spatialx sensors`)")
    else:
        chosen = dict.fromkeys(wanted, sensor)
    profiles = {}
    for role in wanted:
        value = chosen[role]
        profile = value if isinstance(value, SensorProfile) else get_sensor(value)
        profiles[role] = role_sensor(profile, task.role(role).sensor_part)
    return profiles


@dataclass(frozen=True)
class MethodContext:
    """What a method is built from: the task, each role's sensor, and the grids' ratios.

    ``ratio`` is the nominal resolution ratio the method's filters assume (the output-like sensor's, e.g. PAN:MS 4,
    or ``--ratio``); ``grid_ratios`` holds, per role, how many output pixels one pixel of the role spans (the guide
    1; a role delivered already resampled onto the output grid 1 too, whatever the sensor's ratio).
    """

    task: TaskSpec
    sensors: Mapping[str, SensorProfile]
    ratio: float
    grid_ratios: Mapping[str, float] = field(default_factory=dict)

    @property
    def output_sensor(self) -> SensorProfile:
        return self.sensors[self.task.output_like]

    @classmethod
    def create(cls, task: str | TaskSpec, sensor: SensorArg, ratio: float | None = None,
               grid_ratios: Mapping[str, float] | None = None) -> MethodContext:
        """A context for ``task`` with ``sensor`` for its roles (the ratio defaults to the output sensor's)."""
        spec = get_task(task)
        sensors = role_sensors(spec, sensor)
        nominal = ratio if ratio is not None else sensors[spec.output_like].ratio
        if nominal is None:
            nominal = max([1.0, *(grid_ratios or {}).values()])
        return cls(spec, sensors, float(nominal), dict(grid_ratios or {}))


@dataclass
class SceneWindow:
    """A contiguous piece of the scene with exact pixel correspondences, for methods that learn from the scene.

    ``arrays`` holds each role on its own grid over the same ground extent; ``scales`` says how many output pixels
    one pixel of the role spans (the guide 1; the pansharpening MS 4; 3/2 for a 15 m / 10 m pair). Windows are cut
    so that their edges are pixel edges of every grid at once (see :func:`spatialx.align.nest`).
    """

    arrays: dict[str, np.ndarray]
    scales: dict[str, Fraction]

    def factor(self, role: str) -> int:
        """The integer number of output pixels per pixel of ``role`` (for methods that need integer ratios)."""
        scale = self.scales[role]
        if scale.denominator != 1:
            raise MethodError(f"this method needs an integer ratio between the grids, found {scale}",
                              hint="resample the input onto a grid nested at an integer ratio")
        return int(scale)


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
    """Base class of all fusion methods. Subclasses set ``name`` and ``roles`` and implement :meth:`fuse`.

    Which tasks a method serves is the registry's business (:mod:`spatialx.methods.registry`), not the class's.
    """

    name: ClassVar[str] = ""
    #: The roles :meth:`fuse` reads; creating the method for a task without them is refused.
    roles: ClassVar[tuple[str, ...]] = ()
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
    #: Tile side the method works best with when the user gives none (None: the pipeline's default).
    preferred_tile: int | None = None
    #: Most tiles fused side by side (None: as many as ``--workers``). A method that uses every core inside one
    #: tile (a network on the CPU) says 1: more tile workers would only compete for the cores and hold more tiles.
    tile_workers: int | None = None
    #: The method judges validity itself: :meth:`fuse` receives NaN where an input holds no data and returns NaN
    #: where it cannot predict (multi-date fusion: one cloudy date does not void a pixel). Otherwise a pixel is
    #: fused only where every input holds data, and the output is nodata elsewhere.
    judges_validity: bool = False
    #: How roles reach the output grid when the method needs otherwise than the task says (role -> kind): the
    #: PolSAR references differ only in this (nearest, bilinear, bicubic).
    resampling: ClassVar[Mapping[str, Resampling]] = {}
    #: Per-pixel layers the method can write besides the product (name -> what it holds), e.g. an uncertainty.
    layers: ClassVar[Mapping[str, str]] = {}
    #: The layers this run wants: :meth:`fuse` appends one plane per name, in this order, after the bands.
    emit: tuple[str, ...] = ()

    def __init__(self, context: MethodContext, **options: Any):
        if options:
            raise TypeError(f"method {self.name!r} does not take {', '.join(sorted(options))}"
                            + (" (it has no learned weights)" if "weights" in options else ""))
        missing = [role for role in self.roles if role not in context.task.role_names]
        if missing:
            raise MethodError(f"method {self.name!r} needs the {', '.join(missing)} input, which task "
                              f"{context.task.name} does not have")
        self.context = context
        #: The output's sensor (for pansharpening the MS): the bands the method produces.
        self.sensor = context.output_sensor
        self.ratio = context.ratio

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
                native: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Run ``method`` on whole in-memory arrays, as the reference toolbox does (no tiling, no padding).

    ``inputs`` maps roles to (bands, rows, cols) arrays already on the output grid (for pansharpening ``pan`` and
    ``ms``, the MS upsampled to PAN size); ``native`` holds the lower-resolution inputs on their own grid (``ms``).
    Statistics are exact: the sample is every pixel.
    """
    guide = method.context.task.guide
    arrays = {role: np.asarray(a, dtype=np.float32) for role, a in inputs.items()}
    native_arrays = {role: np.asarray(a, dtype=np.float32) for role, a in (native or {}).items()}
    rows, cols = arrays[guide].shape[1:]
    scales = {role: Fraction(rows, a.shape[1]) for role, a in native_arrays.items()}
    nested = all(a.shape[2] * scales[role] == cols for role, a in native_arrays.items())
    window = SceneWindow({guide: arrays[guide], **native_arrays}, {guide: Fraction(1), **scales})
    sample = SceneSample(
        inputs=arrays, valid=np.ones((rows, cols), dtype=bool), native=native_arrays,
        windows=[window] if nested else [],
        windows_unavailable="" if nested else "the arrays do not cover the same extent")
    method.fit(sample)
    return np.asarray(method.fuse(arrays), dtype=np.float32)
