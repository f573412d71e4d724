"""Fusion tasks as data: the roles a task takes, and how each one reaches the output grid.

A task (:class:`TaskSpec`) declares its input roles (:class:`Role`), the role whose grid is the output grid, the role
whose bands the output takes, and the roles a network receives, in argument order. The one pipeline
(:mod:`spatialx.pipeline`) reads any task from this description; adding a task means a spec, sensor files and
methods, not a second pipeline. Tasks live in one registry (:func:`register_task`, :func:`get_task`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from spatialx.errors import SpatialxError


class Resampling(str, Enum):
    """How a role's pixels are brought onto the output grid."""

    #: Radiance/reflectance: cubic convolution when the role is coarser than the output grid (refining), area
    #: average when it is finer (coarsening). Area averaging never invents detail the coarser grid cannot hold.
    AUTO = "auto"
    CUBIC = "cubic"
    AVERAGE = "average"
    #: Covariance matrices (PolSAR C3/T3): only non-negative weights (bilinear when refining, area average when
    #: coarsening). A convex combination of positive-semidefinite Hermitian matrices is positive semidefinite;
    #: cubic convolution's negative lobes can make the interpolated matrix indefinite.
    COVARIANCE = "covariance"
    #: Masks, class maps and QA bit fields: values are labels, never blended.
    NEAREST = "nearest"


@dataclass(frozen=True)
class Role:
    """One input of a task."""

    name: str  # key in ``{role: path}`` mappings and in a method's ``inputs``
    label: str  # how messages name it, e.g. "PAN"
    resampling: Resampling = Resampling.AUTO
    #: Which part of a sensor profile describes this role's file: its ``bands``, or its ``pan`` band alone.
    sensor_part: str = "bands"
    optional: bool = False
    #: The role is an acquisition at a date (spatio-temporal fusion); the date is recorded in the provenance.
    dated: bool = False
    #: Fused in physical units (reflectance, K): DN are converted with the sensor's scale and offset on reading.
    #: Needed when two sensors meet in one model (a spectral response matrix relates their values).
    physical: bool = False
    description: str = ""


@dataclass(frozen=True)
class TaskSpec:
    """A fusion task: its roles, its output grid and bands, and what a network receives."""

    name: str
    summary: str
    roles: tuple[Role, ...]
    guide: str  # role whose grid (over the common footprint) is the output grid
    output_like: str  # role whose bands (names, wavelengths) and data type the output takes
    network_roles: tuple[str, ...] = ()  # roles a network receives, in the order of its arguments
    #: The guide must be at least as fine as every other input (a coarser PAN is a swapped pair, not a task).
    guide_finest: bool = True

    def __post_init__(self) -> None:
        names = [role.name for role in self.roles]
        if len(set(names)) != len(names):
            raise ValueError(f"task {self.name!r}: role names must be unique, got {names}")
        for key in (self.guide, self.output_like, *self.network_roles):
            if key not in names:
                raise ValueError(f"task {self.name!r} names role {key!r}, which it does not declare")
        if self.role(self.guide).optional:
            raise ValueError(f"task {self.name!r}: the guide role cannot be optional")

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(role.name for role in self.roles)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(role.name for role in self.roles if not role.optional)

    @property
    def resampled(self) -> tuple[str, ...]:
        """Every role other than the guide: brought onto the guide's grid."""
        return tuple(role.name for role in self.roles if role.name != self.guide)

    def role(self, name: str) -> Role:
        for role in self.roles:
            if role.name == name:
                return role
        raise SpatialxError(f"task {self.name} has no input role {name!r}",
                            hint=f"its roles are {', '.join(self.role_names)}")

    def label(self, name: str) -> str:
        return next((role.label for role in self.roles if role.name == name), name)

    def check_inputs(self, given: set[str]) -> None:
        """Every required role given, nothing unknown."""
        unknown = sorted(given - set(self.role_names))
        if unknown:
            raise SpatialxError(f"{self.name} takes no input {', '.join(map(repr, unknown))}",
                                hint=f"its roles are {', '.join(self.role_names)}")
        missing = [name for name in self.required if name not in given]
        if missing:
            raise SpatialxError(f"{self.name} needs the {', '.join(self.label(m) for m in missing)} input",
                                hint=f"give every role: {', '.join(self.required)}")


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    if spec.name in _TASKS:
        raise ValueError(f"task {spec.name!r} is already registered")
    _TASKS[spec.name] = spec
    return spec


def get_task(task: str | TaskSpec) -> TaskSpec:
    """A task by name (or the spec itself, for tasks defined outside the registry)."""
    if isinstance(task, TaskSpec):
        return task
    spec = _TASKS.get(str(task).lower())
    if spec is None:
        raise SpatialxError(f"unknown task {task!r}", hint=f"choose one of: {', '.join(_TASKS)}")
    return spec


def list_tasks() -> list[TaskSpec]:
    return list(_TASKS.values())


PANSHARPEN = register_task(TaskSpec(
    "pansharpen", "PAN + multispectral: the MS at the PAN's resolution",
    roles=(Role("pan", "PAN", sensor_part="pan", description="panchromatic band, the output grid"),
           Role("ms", "MS", description="multispectral bands, resampled onto the PAN grid")),
    guide="pan", output_like="ms", network_roles=("ms", "pan")))

HMIF = register_task(TaskSpec(
    "hmif", "hyperspectral + multispectral: every hyperspectral band at the multispectral resolution",
    roles=(Role("hs", "HS", physical=True, description="hyperspectral cube (e.g. PRISMA), resampled onto the MS grid"),
           Role("ms", "MS", physical=True, description="multispectral bands (e.g. Sentinel-2 10 m), the output grid")),
    guide="ms", output_like="hs", network_roles=("hs", "ms")))

STFUSE = register_task(TaskSpec(
    "stfuse", "spatio-temporal: the fine image at a date only the coarse sensor saw, from fine/coarse pairs",
    roles=(Role("fine", "fine", dated=True, physical=True,
                description="fine image at a pair date (e.g. Landsat 30 m), one per date; the first is the grid"),
           Role("coarse", "coarse", dated=True, physical=True,
                description="coarse image (e.g. MODIS 500 m) at every pair date and the prediction date, "
                            "reprojected and interpolated onto the fine grid")),
    guide="fine", output_like="fine"))

POLSAR = register_task(TaskSpec(
    "polsar", "quad-pol covariance C3 + single-pol intensity: the full C3 at the single-pol resolution",
    roles=(Role("single", "single-pol", description="single-polarisation intensity at the higher resolution, the "
                                                   "output grid"),
           Role("quad", "quad-pol", resampling=Resampling.COVARIANCE,
                description="quad-pol covariance matrix C3 (9 channels), resampled onto the single-pol grid")),
    guide="single", output_like="quad", network_roles=("quad", "single")))

__all__ = ["HMIF", "PANSHARPEN", "POLSAR", "STFUSE", "Resampling", "Role", "TaskSpec", "get_task", "list_tasks",
           "register_task"]
