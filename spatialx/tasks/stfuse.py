"""``spatialx stfuse``: spatio-temporal fusion (fine images at some dates + coarse images at more dates -> the fine
image at a date only the coarse sensor saw), as a library call over :func:`spatialx.fuse`.

The registered task (:data:`spatialx.tasks.STFUSE`) names the two kinds of input; a run has one role per
acquisition, built here from the dates: ``fine@2016-02-05``, ``coarse@2016-02-05``, ..., ``coarse@2016-03-08``
(the prediction date). The first fine image's grid is the output grid; every other image is brought onto it
(coarse images reprojected to its CRS, then interpolated from their footprint averages). Methods read the layout
back with :func:`temporal_layout`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from spatialx.errors import SpatialxError
from spatialx.options import RunOptions
from spatialx.tasks import STFUSE, Role, TaskSpec

__all__ = ["StfuseInputs", "TemporalLayout", "parse_date", "stfuse", "stfuse_inputs", "stfuse_task",
           "temporal_layout"]

#: ``{date: path}``, or paths (their dates from the products' metadata) and ``(date or None, path)`` pairs.
Dated = Mapping[str, str | PathLike[str]] | Sequence[str | PathLike[str] | tuple[str | None, str | PathLike[str]]]


def parse_date(text: str, what: str = "date") -> str:
    """``YYYY-MM-DD`` (also ``YYYYMMDD``) as an ISO date string, or a one-line error."""
    value = str(text).strip()
    for pattern in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(value, pattern).date().isoformat()
        except ValueError:
            continue
    raise SpatialxError(f"{what} {value!r} is not a date", hint="write dates as YYYY-MM-DD, e.g. 2016-03-08")


def role_name(kind: str, date: str) -> str:
    return f"{kind}@{date}"


@dataclass(frozen=True)
class TemporalLayout:
    """The acquisitions of one run: input pairs (date, fine role, coarse role), in time order, and the prediction
    (date, coarse role)."""

    pairs: tuple[tuple[str, str, str], ...]
    target: tuple[str, str]

    def days(self, date: str) -> int:
        """Days from ``date`` to the prediction date (negative: after it)."""
        return (dt.date.fromisoformat(self.target[0]) - dt.date.fromisoformat(date)).days


def stfuse_task(pair_dates: Sequence[str], predict: str | None) -> TaskSpec:
    """The task spec of one run: a fine and a coarse role per pair date, and the coarse role of the prediction
    (``predict`` None: the pairs alone, a series to train on)."""
    dates = sorted({parse_date(d) for d in pair_dates})
    if not dates:
        raise SpatialxError("stfuse needs at least one fine/coarse pair", hint="give --fine DATE=PATH")
    if predict is not None:
        predict = parse_date(predict, "prediction date")
        if predict in dates:
            raise SpatialxError(f"the prediction date {predict} is the date of an input fine image",
                                hint="predict a date that only the coarse sensor saw")
    fine, coarse = STFUSE.role("fine"), STFUSE.role("coarse")
    roles: list[Role] = []
    for date in dates:
        roles.append(Role(role_name("fine", date), f"fine {date}", fine.resampling, dated=True, physical=True,
                          description=fine.description))
        roles.append(Role(role_name("coarse", date), f"coarse {date}", coarse.resampling, dated=True,
                          physical=True, description=coarse.description))
    if predict is not None:
        roles.append(Role(role_name("coarse", predict), f"coarse {predict}", coarse.resampling, dated=True,
                          physical=True, description="the coarse image at the prediction date"))
    guide = role_name("fine", dates[0])
    return TaskSpec(STFUSE.name, STFUSE.summary, tuple(roles), guide=guide, output_like=guide)


def temporal_layout(task: TaskSpec) -> TemporalLayout:
    """The pairs and the prediction of a run's task spec (:func:`stfuse_task`)."""
    fine = {r.name.split("@", 1)[1]: r.name for r in task.roles if r.name.startswith("fine@")}
    coarse = {r.name.split("@", 1)[1]: r.name for r in task.roles if r.name.startswith("coarse@")}
    targets = sorted(set(coarse) - set(fine))
    if not fine or len(targets) != 1 or not set(fine) <= set(coarse):
        raise SpatialxError(f"task {task.name} does not describe fine/coarse pairs and one prediction date",
                            hint="build it with spatialx.tasks.stfuse.stfuse_task")
    return TemporalLayout(tuple((d, fine[d], coarse[d]) for d in sorted(fine)), (targets[0], coarse[targets[0]]))


def _dated(given: Dated, kind: str, read_options: Mapping[str, Any] | None) -> dict[str, str | PathLike[str]]:
    """``{date: path}`` from :data:`Dated`; a path without a date takes it from its product's metadata."""
    from spatialx.io.read import open_raster

    pairs = list(given.items()) if isinstance(given, Mapping) else \
        [item if isinstance(item, tuple) else (None, item) for item in given]
    out: dict[str, str | PathLike[str]] = {}
    for date, path in pairs:
        if date is None:
            date = open_raster(path, role=kind, options=_product_options(path, read_options)).metadata.get("acquired")
            if not date:
                raise SpatialxError(f"{kind} image: its acquisition date is not in its metadata", path=Path(path),
                                    hint=f"write its date before the path: YYYY-MM-DD={path}")
            date = str(date)[:10]
        iso = parse_date(str(date), f"--{kind} date")
        if iso in out:
            raise SpatialxError(f"two {kind} images for {iso}", path=Path(path), hint="give each image its date")
        out[iso] = path
    return out


def _product_options(path: str | PathLike[str], options: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """Reader options apply to sensor products only (a plain GeoTIFF takes its band selection elsewhere)."""
    from spatialx.io.read import product_format_name

    return options if options and product_format_name(path) else None


def _sensor(given: str, kind: str, path: str | PathLike[str], read_options: Mapping[str, Any] | None) -> str:
    """``given``, or for ``"auto"`` the sensor profile the product's reader names (Landsat C2 L2, MODIS)."""
    if given != "auto":
        return given
    from spatialx.io.read import open_raster

    found = open_raster(path, role=kind, options=_product_options(path, read_options)).metadata.get("sensor")
    if not found:
        raise SpatialxError(f"{kind} image: not a sensor product whose sensor spatialx can tell", path=Path(path),
                            hint=f"name it with --{kind}-sensor (see `spatialx sensors`; `lst` for float kelvin)")
    return str(found)


@dataclass(frozen=True)
class StfuseInputs:
    """What a run of the pipeline needs for a date series: the task spec, each role's file and sensor, and the run
    options the dates and band selections become (:func:`stfuse_inputs`)."""

    task: TaskSpec
    inputs: dict[str, str | PathLike[str]]
    sensors: dict[str, str]
    read_options: dict[str, dict[str, Any]]
    bands: dict[str, str]
    dates: dict[str, str]

    def run_options(self, options: RunOptions | None = None, **changes: Any) -> RunOptions:
        """``options`` with ``changes``, the coarse images reprojected onto the fine CRS, and the series' dates,
        reader options and band selections."""
        run = RunOptions.of(options, **{"reproject": True, **changes})
        return run.updated(read_options={**self.read_options, **dict(run.read_options)},
                           bands={**self.bands, **dict(run.bands or {})} if self.bands else run.bands,
                           dates=self.dates)


def stfuse_inputs(fine: Dated, coarse: Dated, predict: str | None, *, fine_sensor: str = "auto",
                  coarse_sensor: str = "auto", fine_bands: str | None = None, coarse_bands: str | None = None,
                  read_options: Mapping[str, Mapping[str, Any]] | None = None) -> StfuseInputs:
    """The roles of a date series (:func:`stfuse` explains the arguments), every input checked: each fine date has
    its coarse image, the coarse images cover ``predict`` and no other date (``predict`` None: a series of pairs to
    train on, :mod:`spatialx.training.temporal`)."""
    from spatialx.io.read import product_format_name

    reader_options = {kind: dict((read_options or {}).get(kind, {})) for kind in ("fine", "coarse")}
    selections = {"fine": fine_bands, "coarse": coarse_bands}
    fine_dated = _dated(fine, "fine", reader_options["fine"] or None)
    coarse_dated = _dated(coarse, "coarse", reader_options["coarse"] or None)
    if not fine_dated:
        raise SpatialxError("stfuse needs at least one fine image", hint="give --fine DATE=PATH")
    if predict is not None:
        predict = parse_date(predict, "prediction date")
        if predict in fine_dated:
            raise SpatialxError(f"the prediction date {predict} is the date of an input fine image",
                                path=Path(fine_dated[predict]), hint="predict a date that only the coarse sensor saw")
    unpaired = sorted(set(fine_dated) - set(coarse_dated))
    if unpaired:
        raise SpatialxError(f"no coarse image for the fine image of {', '.join(unpaired)}",
                            path=Path(fine_dated[unpaired[0]]), hint="each fine image pairs with a coarse image of "
                                                                     "its date: add --coarse DATE=PATH")
    if predict is not None and predict not in coarse_dated:
        raise SpatialxError(f"no coarse image at the prediction date {predict}",
                            hint=f"add --coarse {predict}=PATH (dates given: {', '.join(sorted(coarse_dated))})")
    extra = sorted(set(coarse_dated) - set(fine_dated) - {predict})
    if extra:
        raise SpatialxError(f"the coarse image of {extra[0]} pairs with no fine image"
                            + (" and is not the prediction date" if predict is not None else ""),
                            path=Path(coarse_dated[extra[0]]),
                            hint="drop it, or predict that date" if predict is not None else "drop it")
    task = stfuse_task(sorted(fine_dated), predict)
    inputs: dict[str, str | PathLike[str]] = {}
    for date in sorted(fine_dated):
        inputs[role_name("fine", date)], inputs[role_name("coarse", date)] = fine_dated[date], coarse_dated[date]
    if predict is not None:
        inputs[role_name("coarse", predict)] = coarse_dated[predict]
    first_fine = inputs[role_name("fine", min(fine_dated))]
    first_coarse = inputs[role_name("coarse", predict if predict is not None else min(fine_dated))]
    chosen = {"fine": _sensor(fine_sensor, "fine", first_fine, reader_options["fine"]),
              "coarse": _sensor(coarse_sensor, "coarse", first_coarse, reader_options["coarse"])}
    sensors: dict[str, str] = {}
    per_role: dict[str, dict[str, Any]] = {}
    band_selection: dict[str, str] = {}
    for role, path in inputs.items():
        kind = role.split("@", 1)[0]
        sensors[role] = chosen[kind]
        options_here = dict(reader_options[kind])
        if selections[kind]:
            if product_format_name(path):  # a product's reader picks its bands (and checks their grid)
                options_here["bands"] = selections[kind]
            else:
                band_selection[role] = str(selections[kind])
        if options_here:
            per_role[role] = options_here
    return StfuseInputs(task, inputs, sensors, per_role, band_selection,
                        {role: role.split("@", 1)[1] for role in inputs})


def stfuse(output: str | PathLike[str], fine: Dated, coarse: Dated, predict: str, *, method: str = "starfm",
           fine_sensor: str = "auto", coarse_sensor: str = "auto",
           fine_bands: str | None = None, coarse_bands: str | None = None,
           read_options: Mapping[str, Mapping[str, Any]] | None = None,
           options: RunOptions | None = None, **changes: Any):
    """Predict the fine image at ``predict`` into the COG ``output``.

    ``fine`` and ``coarse`` are ``{date: path}`` mappings, or lists of product paths whose metadata states the date
    (Landsat MTL, MODIS). Every fine date needs a coarse image of the same date (a pair); the coarse images also
    cover ``predict``. Sensors ``"auto"`` are the ones the product readers name (plain GeoTIFFs need a name).
    ``fine_bands``/``coarse_bands`` select bands (names or numbers; for a product, the reader's band names, e.g.
    ``ST_B10``); ``read_options`` holds each kind's reader options (``{"fine": {...}}``). Coarse images in another
    CRS are reprojected onto the fine grid's. ``changes`` are :class:`~spatialx.options.RunOptions` fields
    (``tile``, ``workers``, ``ndvi``, ``layers={"uncertainty": path}``, ...).
    """
    from spatialx.pipeline import fuse

    series = stfuse_inputs(fine, coarse, predict, fine_sensor=fine_sensor, coarse_sensor=coarse_sensor,
                           fine_bands=fine_bands, coarse_bands=coarse_bands, read_options=read_options)
    return fuse(series.task, series.inputs, output, method=method, sensor=series.sensors,
                options=series.run_options(options, **changes))
