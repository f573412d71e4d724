"""The options of one fusion run, in one object shared by the library entry, every CLI command and the xarray API."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from os import PathLike
from typing import Any

from spatialx.errors import SpatialxError

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RunOptions:
    """How a scene is fused and what is written besides the product.

    ``bands`` selects bands (numbers or sensor band names, see ``--bands``): of the output-like role, or per role
    as ``{role: "B02,B03,B04,B08"}``; ``ratio``
    overrides the resolution ratio the method's filters assume; ``dates`` gives acquisition dates of dated roles
    (recorded in the provenance); ``reproject`` warps inputs in another CRS onto the guide's CRS on the fly.
    """

    method_options: Mapping[str, Any] = field(default_factory=dict)
    bands: str | Mapping[str, str] | None = None
    ratio: float | None = None
    tile: int | None = None  # output pixels per tile side; None: 512, or 256 for outputs of over 32 bands
    overlap: int | None = None
    workers: int = 1
    device: str = "cpu"
    dtype: str | None = None
    #: Deflate level of the outputs, 1 (fastest) to 9 (smallest); None: the default
    #: (:data:`spatialx.io.write.DEFAULT_COMPRESS_LEVEL`).
    compress_level: int | None = None
    overwrite: bool = False
    reproject: bool = False
    #: Fuse even when the alignment preflight finds the low-resolution content more than 3 of its pixels off.
    allow_misregistration: bool = False
    #: ``"auto"``: move the low-resolution input's georeferencing by the shift the preflight measures, then fuse.
    align_shift: str | None = None
    ndvi: str | PathLike[str] | None = None
    style: bool = True
    report: bool = False
    dates: Mapping[str, str] = field(default_factory=dict)
    #: Per-pixel layers the method writes besides the product, by name: ``{"uncertainty": "unc.tif"}``.
    layers: Mapping[str, str | PathLike[str]] = field(default_factory=dict)
    #: Per role, options of the sensor product's reader (e.g. ``{"hs": {"keep_overlap": True}}``).
    read_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: Where tiles run: None (the threads of this process, ``workers`` of them), ``"local:N"`` (a dask LocalCluster
    #: of N worker processes with ``workers`` threads each) or a dask scheduler's address (:mod:`spatialx.cluster`).
    scheduler: str | None = None
    #: A key naming this run (``spatialx batch``: the job's digest): its pixels are staged where a rerun with the
    #: same key finds them, and an interrupted run resumes after its last finished tile row
    #: (:mod:`spatialx.io.journal`).
    resume: str | None = None
    #: Extra provenance recorded in the product's tags, as ``SPATIALX_<KEY>`` (``spatialx batch``: the job).
    provenance: Mapping[str, Any] = field(default_factory=dict)
    progress: Progress | None = field(default=None, compare=False)

    def updated(self, **changes: Any) -> RunOptions:
        """A copy with ``changes``; unknown names are a clear error (a typo must not be silently ignored)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise SpatialxError(f"unknown run option {', '.join(unknown)}", hint=f"options are {', '.join(known)}")
        # None for a mapping option means none given, as its empty default does
        mappings = {f.name for f in fields(self) if f.default_factory is dict}
        return replace(self, **{k: ({} if v is None and k in mappings else v) for k, v in changes.items()})

    @classmethod
    def of(cls, options: RunOptions | None = None, **changes: Any) -> RunOptions:
        return (options or cls()).updated(**changes)
