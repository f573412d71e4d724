"""Fusion on dask.distributed: the same bytes as the threads scheduler, a lost worker survived, clear errors."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from scenes import write_pair

import spatialx
from spatialx.cluster import check_scheduler, scheduler_option
from spatialx.errors import SpatialxError

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    return write_pair(tmp_path_factory.mktemp("cluster"), pan_size=(256, 256))


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local:
        yield local


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fuse(pair: tuple[Path, Path], out: Path, method: str, **options) -> spatialx.FusionResult:
    pan, ms = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the synthetic scene's values clip at the sensor's maximum
        return spatialx.fuse("pansharpen", {"pan": pan, "ms": ms}, out, method=method, sensor="qb", tile=64,
                             **options)


def test_local_cluster_writes_the_threads_schedulers_bytes(pair, tmp_path):
    threads = _fuse(pair, tmp_path / "threads.tif", "gsa", workers=2)
    local = _fuse(pair, tmp_path / "local.tif", "gsa", scheduler="local:2")
    assert threads.tiles == 16
    assert _sha(local.output) == _sha(threads.output)
    assert local.params == threads.params


def _tags_without_timing(path: Path) -> dict:
    with rasterio.open(path) as src:
        tags = src.tags()
        pixels = src.read()
    params = json.loads(tags.pop("SPATIALX_PARAMS"))
    for key in ("seconds", "samples_per_s"):
        params["adaptation"].pop(key)
    return {"tags": tags, "params": params, "pixels": pixels}


def test_network_adapted_on_a_worker_equals_the_threads_run(pair, tmp_path, cluster):
    """The scene adaptation runs once, on a worker, and the fitted network is what every tile runs.

    The threads run is a fresh process too, on one torch thread like dask's workers: in this process, the tests
    before it can leave torch in a state where one float sum rounds one pixel of 262,144 the other way."""
    pan, ms = pair
    threads = tmp_path / "threads.tif"
    subprocess.run([sys.executable, "-m", "spatialx", "pansharpen", str(pan), str(ms), str(threads), "-s", "qb",
                    "-m", "pnn", "--adapt-steps", "2", "--tile", "64", "--device", "cpu", "-q"], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    remote = _fuse(pair, tmp_path / "remote.tif", "pnn", scheduler=cluster.scheduler_address,
                   method_options={"adapt_steps": 2})
    a, b = _tags_without_timing(threads), _tags_without_timing(remote.output)
    np.testing.assert_array_equal(a["pixels"], b["pixels"])
    assert a["tags"] == b["tags"] and a["params"] == b["params"]
    assert b["params"]["adaptation"]["steps"] == 2


def test_a_worker_killed_mid_run_still_completes_the_product(pair, tmp_path, cluster):
    expected = _fuse(pair, tmp_path / "threads.tif", "gsa")
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        pids = list(client.run(os.getpid).values())
    killed = []

    def kill_one_worker(done: int, total: int) -> None:
        if done == 2 and not killed:
            os.kill(pids[0], signal.SIGKILL)  # the nanny starts a new worker; dask reruns the lost tasks
            killed.append(pids[0])

    result = _fuse(pair, tmp_path / "survived.tif", "gsa", scheduler=cluster.scheduler_address,
                   progress=kill_one_worker)
    assert killed
    assert _sha(result.output) == _sha(expected.output)


@pytest.mark.parametrize("text", ["local:two", "localhost", "10.0.0.5:8786", "local"])
def test_malformed_scheduler_options_are_refused(text):
    with pytest.raises(SpatialxError):
        check_scheduler(text)


def test_scheduler_and_cluster_exclude_each_other():
    with pytest.raises(SpatialxError, match="exclude each other"):
        scheduler_option("tcp://127.0.0.1:8786", "local:2")
    assert scheduler_option(None, "local:3") == "local:3"


def test_an_unreachable_scheduler_is_one_line_and_leaves_nothing(pair, tmp_path, spatialx, monkeypatch):
    monkeypatch.setattr("spatialx.cluster.CONNECT_TIMEOUT", "2s")
    pan, ms = pair
    out = tmp_path / "out.tif"
    done = spatialx("pansharpen", str(pan), str(ms), str(out), "-s", "qb", "--scheduler", "tcp://127.0.0.1:9",
                    cwd=tmp_path)
    assert done.returncode == 2
    assert "cannot reach the dask scheduler at tcp://127.0.0.1:9" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []
