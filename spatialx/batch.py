"""``spatialx batch JOBS.yaml``: many fusion jobs, validated before any runs, resumable, with STAC and a summary.

A jobs file is a YAML list of jobs, or a mapping with ``jobs`` and ``defaults`` (merged under each job)::

    - name: toulouse-gsa
      task: pansharpen
      inputs: {pan: scenes/toulouse/pan.tif, ms: scenes/toulouse/ms.tif}
      output: toulouse/gsa.tif
      method: gsa
      sensor: qb
      options: {tile: 256, ndvi: toulouse/gsa-ndvi.tif, report: true}
      method_options: {weights: weights/pnn-qb.safetensors}

Inputs (and files in ``method_options``) are paths relative to the jobs file's folder; outputs are relative to the
output root and may not leave it. Every problem in the file is reported, one line each, before anything runs.

A job is *finished* when its product exists, carries this job's digest (``SPATIALX_JOB``: the task, method,
sensor, options and the inputs' paths, sizes and modification times) and its STAC item exists; a rerun skips it.
A job that was interrupted resumes after its last staged tile row (:mod:`spatialx.io.journal`). One failed job
does not stop the others; each product gets ``OUT.stac.json``, the batch ``collection.json`` and ``summary.html``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from spatialx import __version__
from spatialx.errors import SpatialxError

JOB_KEYS = ("name", "task", "inputs", "output", "method", "sensor", "options", "method_options")
REQUIRED = ("task", "inputs", "output", "method")
#: RunOptions a job may not set: the batch decides them.
BATCH_DECIDES = ("progress", "resume", "provenance", "overwrite", "scheduler")
#: Options (and method options) that name files: read ones resolve against the jobs file, written ones against
#: the output root.
WRITTEN_OPTIONS = ("ndvi", "pauli", "decomposition")
READ_METHOD_OPTIONS = ("weights", "onnx")
DEFAULT_METHOD = {"pansharpen": "brovey", "hmif": "gsa", "stfuse": "starfm", "polsar": "bicubic"}


class BatchError(SpatialxError):
    """The jobs file has problems; ``problems`` holds one line each."""

    def __init__(self, problems: Sequence[str], path: Path):
        self.problems = list(problems)
        super().__init__(f"{len(problems)} problem{'s' * (len(problems) != 1)} in the jobs file", path=path,
                         hint="fix them and run again; nothing was run")


@dataclass
class Job:
    """One validated job: paths resolved, options split into the run's and the method's."""

    index: int
    name: str
    task: str
    method: str
    inputs: dict[str, Any]  # role -> Path (stfuse: fine/coarse -> {date: Path})
    output: Path
    sensor: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    method_options: dict[str, Any] = field(default_factory=dict)

    def input_files(self) -> dict[str, Path]:
        """Every input file, by a label (stfuse dates appended to the role)."""
        files = {}
        for role, value in self.inputs.items():
            if isinstance(value, Mapping):
                files.update({f"{role}@{date}": Path(path) for date, path in value.items()})
            elif isinstance(value, list):
                files.update({f"{role}{index}": Path(path) for index, path in enumerate(value, start=1)})
            else:
                files[role] = Path(value)
        return files

    def outputs(self) -> list[Path]:
        """The product and every file written beside it."""
        paths = [self.output, self.output.with_suffix(".qml"), stac_path(self.output)]
        if self.options.get("report"):
            paths.append(self.output.with_name(self.output.stem + ".quality.json"))
        for key in WRITTEN_OPTIONS:
            if self.options.get(key):
                paths += [Path(self.options[key]), Path(self.options[key]).with_suffix(".qml")]
        paths += [Path(p) for p in dict(self.options.get("layers") or {}).values()]
        return paths

    def digest(self) -> str:
        """What makes the product this job's: a rerun skips a product whose tag holds the same digest."""
        def identity(path: Path) -> list[Any]:
            stat = path.stat()
            return [str(path), stat.st_size, stat.st_mtime_ns]

        described = {"spatialx": __version__, "task": self.task, "method": self.method, "sensor": self.sensor,
                     "options": self.options, "method_options": self.method_options,
                     "inputs": {label: identity(path) for label, path in sorted(self.input_files().items())}}
        text = json.dumps(described, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass
class Outcome:
    job: Job
    status: str  # done, skipped, failed
    reason: str | None = None
    seconds: float | None = None
    quality: dict[str, float] | None = None
    item: Any = None
    notes: list[str] = field(default_factory=list)


def stac_path(output: Path) -> Path:
    return output.with_name(output.name + ".stac.json") if output.suffix == "" else output.with_suffix(".stac.json")


def _task_keywords(task: str) -> set[str]:
    """Keyword arguments of the task's library function besides RunOptions (polsar's looks, stfuse's predict)."""
    function = _runner(task)
    skip = {"output", "options", "changes", "method", "quad", "single", "fine", "coarse", "pan", "ms", "task",
            "inputs", "sensor"}
    return {name for name, p in inspect.signature(function).parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and name not in skip}


def _runner(task: str) -> Callable[..., Any]:
    if task == "polsar":
        from spatialx.tasks.polsar import polsar

        return polsar
    if task == "stfuse":
        from spatialx.tasks.stfuse import stfuse

        return stfuse
    from spatialx.pipeline import fuse

    return fuse


def load_jobs(path: str | Path, output_root: str | Path | None = None, overwrite: bool = False) -> list[Job]:
    """Read and validate the jobs file; raise :class:`BatchError` listing every problem."""
    import yaml

    from spatialx.options import RunOptions

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpatialxError(f"cannot read the jobs file ({exc.strerror or exc})", path=path) from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise SpatialxError(f"not valid YAML{line}", path=path, hint="check the indentation and quoting") from None
    defaults: Mapping[str, Any] = {}
    if isinstance(document, Mapping):
        unknown = sorted(set(document) - {"jobs", "defaults"})
        if unknown:
            raise BatchError([f"unknown top-level key {', '.join(unknown)} (expected jobs, defaults)"], path)
        defaults = document.get("defaults") or {}
        document = document.get("jobs")
    if not isinstance(document, list) or not document:
        raise SpatialxError("a jobs file is a YAML list of jobs (or a mapping with a jobs list)", path=path,
                            hint="see `spatialx batch --help` for an example")
    base, root = path.parent.resolve(), Path(output_root or path.parent).resolve()
    run_keys = {f.name for f in fields(RunOptions)} - set(BATCH_DECIDES) - {"method_options"}
    problems: list[str] = []
    jobs: list[Job] = []
    for index, raw in enumerate(document, start=1):
        where = f"job {index}"
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: a job is a mapping of {', '.join(JOB_KEYS)}")
            continue
        raw = {**defaults, **raw, "options": {**dict(defaults.get("options") or {}), **dict(raw.get("options") or {})}}
        if raw.get("name"):
            where = f"job {index} ({raw['name']})"
        found = _job(raw, index, where, base, root, run_keys, problems)
        if found is not None:
            jobs.append(found)
    _check_outputs(jobs, root, overwrite, problems)
    if problems:
        raise BatchError(problems, path)
    return jobs


def _job(raw: Mapping[str, Any], index: int, where: str, base: Path, root: Path, run_keys: set[str],
         problems: list[str]) -> Job | None:
    from spatialx.methods import get_method_info
    from spatialx.tasks import get_task

    start = len(problems)
    unknown = sorted(set(raw) - set(JOB_KEYS))
    if unknown:
        problems.append(f"{where}: unknown key {', '.join(map(str, unknown))} (a job has {', '.join(JOB_KEYS)})")
    missing = [key for key in REQUIRED if not raw.get(key)]
    if missing:
        problems.append(f"{where}: missing {', '.join(missing)}")
        return None
    try:
        task = get_task(str(raw["task"]))
        get_method_info(str(raw["method"]), task.name)
    except SpatialxError as exc:
        problems.append(f"{where}: {exc.message}")
        return None
    if task.name in ("polsar", "stfuse") and raw.get("sensor"):
        named = "quad_sensor, single_sensor" if task.name == "polsar" else "fine_sensor, coarse_sensor"
        problems.append(f"{where}: {task.name} names its sensors in options ({named}), not with sensor")
    if task.name not in ("polsar", "stfuse"):
        _check_sensor(raw.get("sensor"), task, where, problems)
    if task.name == "stfuse" and not (raw.get("options") or {}).get("predict"):
        problems.append(f"{where}: stfuse needs options: {{predict: YYYY-MM-DD}} (the date to predict)")
    inputs = _inputs(raw["inputs"], task, where, base, problems)
    output = _output(raw["output"], where, root, problems)
    options = dict(raw.get("options") or {})
    allowed = run_keys | _task_keywords(task.name)
    bad = sorted(set(options) - allowed)
    if bad:
        problems.append(f"{where}: unknown option {', '.join(map(str, bad))} for {task.name} "
                        f"(options are {', '.join(sorted(allowed))})")
    for key in WRITTEN_OPTIONS:
        if options.get(key):
            options[key] = _output(options[key], f"{where} {key}", root, problems)
    if options.get("layers"):
        options["layers"] = {name: _output(p, f"{where} layer {name}", root, problems)
                             for name, p in dict(options["layers"]).items()}
    method_options = dict(raw.get("method_options") or {})
    for key in READ_METHOD_OPTIONS:
        if method_options.get(key):
            method_options[key] = _existing(method_options[key], f"{where} {key}", base, problems)
    if len(problems) > start or output is None or inputs is None:
        return None
    name = str(raw.get("name") or output.relative_to(root))
    return Job(index, name, task.name, str(raw["method"]), inputs, output, raw.get("sensor"), options,
               method_options)


def _check_sensor(sensor: Any, task: Any, where: str, problems: list[str]) -> None:
    from spatialx.sensors import get_sensor

    if not sensor:
        problems.append(f"{where}: missing sensor (one for every input, e.g. sensor: wv3, or one per role: "
                        f"{{{', '.join(f'{role}: ...' for role in task.role_names)}}})")
        return
    names = sensor.values() if isinstance(sensor, Mapping) else [sensor]
    for name in names:
        try:
            get_sensor(str(name))
        except SpatialxError as exc:
            problems.append(f"{where}: {exc.message}")


def _existing(value: Any, where: str, base: Path, problems: list[str]) -> Path | None:
    path = (base / str(value)).resolve()
    if not path.exists():
        problems.append(f"{where}: {value} does not exist (paths are relative to the jobs file's folder)")
        return None
    return path


def _inputs(raw: Any, task: Any, where: str, base: Path, problems: list[str]) -> dict[str, Any] | None:
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: inputs is a mapping of role to file ({', '.join(task.role_names)})")
        return None
    roles = ("fine", "coarse") if task.name == "stfuse" else task.role_names
    unknown = sorted(set(raw) - set(roles))
    missing = [role for role in roles if role not in raw and (task.name == "stfuse" or not task.role(role).optional)]
    if unknown or missing:
        problems.append(f"{where}: inputs of {task.name} are {', '.join(roles)}" +
                        (f"; unknown {', '.join(map(str, unknown))}" if unknown else "") +
                        (f"; missing {', '.join(missing)}" if missing else ""))
        return None
    resolved: dict[str, Any] = {}
    for role, value in raw.items():
        if task.name == "stfuse":
            if isinstance(value, list) and value:  # products whose metadata states their date
                resolved[role] = [_existing(p, f"{where} {role}", base, problems) for p in value]
            elif isinstance(value, Mapping) and value:
                resolved[role] = {str(date): _existing(p, f"{where} {role} {date}", base, problems)
                                  for date, p in value.items()}
            else:
                problems.append(f"{where}: {role} is a mapping of date (YYYY-MM-DD) to file, or a list of products "
                                "that state their date")
        else:
            resolved[role] = _existing(value, f"{where} {role}", base, problems)
    return resolved


def _output(value: Any, where: str, root: Path, problems: list[str]) -> Path | None:
    text = str(value)
    path = (root / text).resolve()
    if not path.is_relative_to(root):
        problems.append(f"{where}: output {text} is outside the output root {root} (no .., no absolute paths "
                        "elsewhere)")
        return None
    if path == root:
        problems.append(f"{where}: output {text} is the output root itself")
        return None
    return path


def _check_outputs(jobs: Sequence[Job], root: Path, overwrite: bool, problems: list[str]) -> None:
    """Outputs unique across the batch, never an input or inside an input product's folder, and not an existing
    file another job or run wrote unless ``overwrite``."""
    owner: dict[Path, str] = {}
    for job in jobs:
        where = f"job {job.index} ({job.name})"
        inputs = [p for p in job.input_files().values() if p is not None]
        shared = [path for path in job.outputs() if path in owner]
        if shared:  # the product, or else its first side file: one line per job
            problems.append(f"{where}: {shared[0].relative_to(root)} is also written by {owner[shared[0]]}")
        for path in job.outputs():
            owner.setdefault(path, where)
            for source in inputs:
                if path == source or (source.is_dir() and path.is_relative_to(source)):
                    problems.append(f"{where}: {path.relative_to(root)} would be written over or inside the input "
                                    f"{source}")
        if job.output.exists() and not overwrite and finished(job) is None:
            problems.append(f"{where}: {job.output.relative_to(root)} exists and is not this job's product; pass "
                            "--overwrite to replace it")


def finished(job: Job) -> str | None:
    """The product's job digest when it is this job's finished product, else None."""
    import rasterio

    if not job.output.exists() or not stac_path(job.output).exists():
        return None
    try:
        with rasterio.open(job.output) as src:
            recorded = json.loads(src.tags().get("SPATIALX_JOB", "{}")).get("digest")
    except (rasterio.errors.RasterioError, ValueError, AttributeError):
        return None
    return recorded if recorded == job.digest() else None


def run_job(job: Job, overwrite: bool, scheduler: str | None = None, workers: int = 1,
            progress: Callable[[int, int], None] | None = None) -> Outcome:
    """Run one job unless it is finished; a user mistake or a failure becomes the outcome's one-line reason."""
    if finished(job):
        return Outcome(job, "skipped", seconds=0.0, quality=_quality(job), item=_stac(job, None))
    started = time.perf_counter()
    for path in job.outputs():  # folders under the output root are the batch's to make
        path.parent.mkdir(parents=True, exist_ok=True)
    digest = job.digest()
    changes: dict[str, Any] = {"workers": workers, **job.options, "overwrite": overwrite or job.output.exists(),
                               "scheduler": scheduler, "resume": digest, "progress": progress,
                               "method_options": job.method_options,
                               "provenance": {"job": {"digest": digest, "name": job.name}}}
    runner = _runner(job.task)
    try:
        if job.task == "stfuse":
            predict = changes.pop("predict", None)
            result = runner(job.output, job.inputs["fine"], job.inputs["coarse"], predict, method=job.method,
                            **changes)
        elif job.task == "polsar":
            result = runner(job.inputs["quad"], job.inputs["single"], job.output, method=job.method, **changes)
        else:
            result = runner(job.task, job.inputs, job.output, method=job.method, sensor=job.sensor, **changes)
    except SpatialxError as exc:
        return Outcome(job, "failed", reason=str(exc).splitlines()[0], seconds=time.perf_counter() - started)
    except Exception as exc:  # a bug in one job must not stop the others: its line says what it was
        return Outcome(job, "failed", reason=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                       seconds=time.perf_counter() - started)
    seconds = time.perf_counter() - started
    return Outcome(job, "done", seconds=seconds, quality=_quality(job), item=_stac(job, seconds),
                   notes=list(result.notes))


def _quality(job: Job) -> dict[str, float] | None:
    report = job.output.with_name(job.output.stem + ".quality.json")
    try:
        return dict(json.loads(report.read_text())["indices"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _stac(job: Job, seconds: float | None) -> Any:
    """The product's STAC item, written next to it (skipped jobs: read back)."""
    import pystac

    from spatialx.products.stac import stac_item, write_stac_item

    path = stac_path(job.output)
    if seconds is None and path.exists():
        return pystac.Item.from_file(str(path))
    extra = {kind: p for kind, p in (("style", job.output.with_suffix(".qml")),
                                     ("quality", job.output.with_name(job.output.stem + ".quality.json")),
                                     *((key, Path(job.options[key])) for key in WRITTEN_OPTIONS
                                       if job.options.get(key))) if p.exists()}
    item = stac_item(job.output, inputs=job.input_files(), quality=_quality(job), seconds=seconds,
                     item_id=job.name.replace("/", "-"), extra_assets=extra)
    write_stac_item(item, path)
    return item


def run_batch(jobs_file: str | Path, output_root: str | Path | None = None, *, overwrite: bool = False,
              scheduler: str | None = None, workers: int = 1,
              on_job: Callable[[Job], Callable[[int, int], None] | None] | None = None,
              on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Validate ``jobs_file`` and run its jobs; write the STAC collection and ``summary.html`` in the output root.

    ``scheduler`` is one cluster for the whole batch (``local:N`` is started once). ``on_job(job)`` may return a
    tile progress callback for it; ``on_outcome`` hears each outcome as it comes.
    """
    from spatialx.cluster import serve

    jobs = load_jobs(jobs_file, output_root, overwrite)
    root = Path(output_root or Path(jobs_file).parent).resolve()
    outcomes = []
    root.mkdir(parents=True, exist_ok=True)
    with serve(scheduler, workers) as address:
        for job in jobs:
            outcome = run_job(job, overwrite, address, workers, on_job(job) if on_job else None)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
    write_catalog(outcomes, root)
    return outcomes


def write_catalog(outcomes: Sequence[Outcome], root: Path) -> dict[str, Path]:
    """The collection of the batch's products and its ``summary.html``."""
    from spatialx.products.stac import write_collection
    from spatialx.products.summary import SummaryEntry, write_summary_html

    written = {}
    items = [o.item for o in outcomes if o.item is not None]
    if items:
        written["collection"] = write_collection(items, root / "collection.json", collection_id=root.name or "batch",
                                                 description=f"spatialx batch: {len(items)} products")
    entries = [SummaryEntry(name=o.job.name, task=o.job.task, method=o.job.method, status=o.status,
                            reason=o.reason, seconds=o.seconds, product=o.job.output if o.status != "failed" else None,
                            inputs=o.job.input_files(), quality=o.quality) for o in outcomes]
    written["summary"] = write_summary_html(entries, root / "summary.html", title=f"spatialx batch: {root.name}")
    return written
