"""Fusion on dask.distributed: ``--cluster local:N`` (a LocalCluster of N worker processes) or ``--scheduler
ADDRESS`` (a running ``dask scheduler``).

What leaves the process is data, not closures: a :class:`~spatialx.pipeline.TileFuser` (the inputs' paths and
grids, the method) pickles without its open readers and opens its own on each worker. The method is fitted once,
on one worker (one that advertises a ``GPU`` resource when any does: ``dask worker --resources GPU=1``), by a task
whose result stays in the cluster; every tile task depends on it, so dask ships the fitted method to the workers
that need it, and recomputes it should the worker holding it be lost. Tiles are gathered to the calling process,
which stitches and writes them (one writer, one COG): the output crosses the network once as float32 blocks, and
the inputs must be on a filesystem every worker sees under the same paths. A lost worker's tiles are rerun by the
scheduler; the product is byte-identical to the threads scheduler's.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from spatialx.errors import SpatialxError

#: Tile rows in flight at once: the next row's tiles start while the current row's finish, and memory stays bounded
#: by two rows of tiles whatever the scene size.
ROWS_AHEAD = 2
_LOCAL = re.compile(r"local:(\d+)$")
#: How long to wait for a scheduler to answer before saying it cannot be reached.
CONNECT_TIMEOUT = "10s"


def check_scheduler(text: str | None) -> None:
    """Refuse a scheduler option that is neither ``local:N`` nor an address, before any work."""
    if text is None or _LOCAL.match(text) or re.match(r"^(tcp|tls|inproc|ucx|ws|wss)://\S+$", text):
        return
    if text.startswith("local"):
        raise SpatialxError(f"--cluster {text}: expected local:N with N worker processes",
                            hint="e.g. --cluster local:2")
    raise SpatialxError(f"--scheduler {text}: not a dask scheduler address",
                        hint="give the address `dask scheduler` prints, e.g. tcp://10.0.0.5:8786")


def scheduler_option(scheduler: str | None, cluster: str | None) -> str | None:
    """The one run option behind the CLI's ``--scheduler`` and ``--cluster`` (they exclude each other)."""
    if scheduler and cluster:
        raise SpatialxError("--scheduler and --cluster exclude each other",
                            hint="--scheduler joins a running cluster, --cluster local:N starts one")
    if cluster is not None and not _LOCAL.match(cluster):
        check_scheduler(cluster if cluster.startswith("local") else f"local{cluster}")
    return scheduler or cluster


@contextlib.contextmanager
def connect(text: str | None, threads: int = 1) -> Iterator[Any]:
    """A ``distributed.Client`` for ``text`` (``local:N`` starts a LocalCluster of N processes with ``threads``
    threads each, closed on exit), or None for the local threads scheduler."""
    if text is None:
        yield None
        return
    check_scheduler(text)
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SpatialxError("dask.distributed is not installed", hint="pip install 'distributed'") from None
    local = _LOCAL.match(text)
    with contextlib.ExitStack() as stack:
        if local:
            processes = int(local.group(1))
            if processes < 1:
                raise SpatialxError(f"--cluster {text}: at least one worker process", hint="e.g. --cluster local:2")
            try:
                cluster = stack.enter_context(LocalCluster(n_workers=processes, threads_per_worker=max(1, threads),
                                                           processes=True, dashboard_address=None))
            except (RuntimeError, OSError) as exc:
                raise SpatialxError(f"--cluster {text}: cannot start the local dask cluster ({_first_line(exc)})",
                                    hint="a script that calls spatialx.fuse with a local cluster needs an "
                                         "`if __name__ == \"__main__\":` guard (workers are new processes)") from None
            address = cluster.scheduler_address
        else:
            address = text
        try:
            client = stack.enter_context(Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False))
        except (OSError, TimeoutError) as exc:
            raise SpatialxError(f"cannot reach the dask scheduler at {address} ({_first_line(exc)})",
                                hint="start it with `dask scheduler` and its workers with `dask worker ADDRESS`, "
                                     "or use --cluster local:N") from None
        yield client


@contextlib.contextmanager
def serve(text: str | None, threads: int = 1) -> Iterator[str | None]:
    """One cluster for many runs (``spatialx batch``): ``local:N`` is started once and its address yielded, an
    address is yielded as it is, None stays None (the threads scheduler)."""
    local = _LOCAL.match(text) if text else None
    if local is None:
        check_scheduler(text)
        yield text
        return
    with connect(text, threads) as client:
        yield client.scheduler.address


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _gpu_resources(client: Any) -> dict[str, float] | None:
    """``{"GPU": 1}`` when some worker advertises a GPU resource, else None (any worker)."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return {"GPU": 1} if any(w.get("resources", {}).get("GPU") for w in workers.values()) else None


def _fit(fuser: Any, needs_fit: bool) -> tuple[Any, dict[str, Any], list[str]]:
    """On a worker: the first pass and the method's fit; the fitted fuser, its params and the warnings raised."""
    from spatialx.io.write import gdal_env
    from spatialx.scene import first_pass

    with warnings.catch_warnings(record=True) as caught, gdal_env(1):
        warnings.simplefilter("always")
        if needs_fit:
            with fuser.scene:
                fuser.fusion.fit(first_pass(fuser.scene))
            fuser.scene.readers = {}  # closed: the tiles open their own (TileFuser)
        params = fuser.fusion.params()
    return fuser, params, [str(w.message) for w in caught]


def _fuser_of(fitted: tuple[Any, dict[str, Any], list[str]]) -> Any:
    return fitted[0]


def _fuse_group(fuser: Any, row: int, cols: tuple[int, ...]) -> np.ndarray:
    from spatialx.io.write import gdal_env

    with gdal_env(1):
        return fuser.group(row, cols)


class RemoteFusion:
    """A fuser fitted on the cluster: :meth:`run` computes its tile groups there and hands each block back."""

    def __init__(self, client: Any, fuser: Any, needs_fit: bool):
        self.client = client
        self.resources = _gpu_resources(client)
        # Tiles need the device the method was fitted for: on a GPU cluster, the GPU workers.
        on_gpu = str(getattr(fuser.fusion, "device", "cpu")).startswith("cuda")
        self.tile_resources = self.resources if on_gpu else None
        fitted = client.submit(_fit, fuser, needs_fit, pure=False, resources=self.resources)
        self._fuser = client.submit(_fuser_of, fitted, pure=False)
        _, self.params, messages = fitted.result()
        for message in messages:
            warnings.warn(message, stacklevel=3)

    def run(self, rows: Sequence[int], groups: Sequence[tuple[int, ...]],
            take: Callable[[int, tuple[int, ...], np.ndarray], None], row_finished: Callable[[int], None]) -> None:
        """Fuse every group of each of ``rows``; ``take(row, group, block)`` is called in this process as blocks
        arrive, ``row_finished(row)`` once a row's last block was taken; at most :data:`ROWS_AHEAD` rows are
        submitted ahead."""
        from distributed import as_completed

        index: dict[str, tuple[int, tuple[int, ...]]] = {}

        def submit(row: int) -> list[Any]:
            # Earlier rows first: a row completes (is stitched, checkpointed, released) before later ones start.
            futures = [self.client.submit(_fuse_group, self._fuser, row, group, pure=False, priority=-row,
                                          resources=self.tile_resources) for group in groups]
            index.update({future.key: (row, group) for future, group in zip(futures, groups, strict=True)})
            return futures

        if not rows:
            return
        submitted = min(len(rows), ROWS_AHEAD)
        pending = as_completed([future for row in rows[:submitted] for future in submit(row)],
                               loop=self.client.loop)
        finished_in_row: dict[int, int] = {}
        for future in pending:
            row, group = index.pop(future.key)
            take(row, group, future.result())
            future.release()
            finished_in_row[row] = finished_in_row.get(row, 0) + 1
            if finished_in_row[row] == len(groups):
                row_finished(row)
                if submitted < len(rows):
                    pending.update(submit(rows[submitted]))
                    submitted += 1


def worker_pids(client: Any) -> dict[str, int]:
    """Each worker's process id, by address (what a test or an operator kills to see a worker lost)."""
    return client.run(os.getpid)
