"""Resumable runs: an interrupted run keeps its finished tile rows, and a rerun of the same job continues from them
to the very bytes of an uninterrupted run."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
from scenes import write_pair

import spatialx
from spatialx.io.write import partial_path


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    return write_pair(tmp_path_factory.mktemp("resume"), pan_size=(256, 256))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Stop(KeyboardInterrupt):
    """What an operator's Ctrl-C is, raised from the progress callback after some tiles."""


def _run(pair, out: Path, calls: list | None = None, stop_after: int | None = None, **options):
    pan, ms = pair

    def progress(done: int, total: int) -> None:
        if calls is not None:
            calls.append(done)
        if stop_after is not None and done >= stop_after:
            raise Stop

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the synthetic scene clips at the sensor's maximum
        return spatialx.fuse("pansharpen", {"pan": pan, "ms": ms}, out, method="gsa", sensor="qb", tile=64,
                             progress=progress, **options)


@pytest.mark.parametrize("scheduler", [None, "local:2"])
def test_an_interrupted_run_resumes_after_its_finished_rows(pair, tmp_path, scheduler):
    expected = _run(pair, tmp_path / "expected.tif", resume="job-1")
    assert not partial_path(expected.output, ".json").exists()

    out = tmp_path / "out.tif"
    with pytest.raises(Stop):
        _run(pair, out, stop_after=13, resume="job-1", scheduler=scheduler)  # 4 x 4 tiles: 2 or 3 rows finished
    assert not out.exists()
    assert partial_path(out, ".tif").exists()
    rows_done = json.loads(partial_path(out, ".json").read_text())["rows_done"]
    # Threads finish rows in order; a cluster's workers may finish a later row first (row 0 at least is done).
    assert rows_done == 3 if scheduler is None else rows_done >= 1

    calls: list[int] = []
    result = _run(pair, out, calls, resume="job-1", scheduler=scheduler)
    assert any(note.startswith(f"resumed: {rows_done} of 4 tile rows") for note in result.notes)
    # The finished rows but the last are not fused again (the last one's cells shared with the next were not done).
    assert len(calls) == 16 - 4 * (rows_done - 1)
    assert _sha(result.output) == _sha(expected.output)
    assert not partial_path(out, ".tif").exists() and not partial_path(out, ".json").exists()


def test_another_job_does_not_resume_a_partial_it_did_not_stage(pair, tmp_path):
    out = tmp_path / "out.tif"
    with pytest.raises(Stop):
        _run(pair, out, stop_after=10, resume="job-1")
    calls: list[int] = []
    result = _run(pair, out, calls, resume="job-2")
    assert not any(note.startswith("resumed") for note in result.notes)
    assert len(calls) == 16


def test_a_run_stopped_before_any_row_leaves_nothing(pair, tmp_path):
    out = tmp_path / "out.tif"
    with pytest.raises(Stop):
        _run(pair, out, stop_after=1, resume="job-1")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
