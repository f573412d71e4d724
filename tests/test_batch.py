"""``spatialx batch``: validation before anything runs, one failure not stopping the others, finished jobs
skipped, interrupted jobs resumed, STAC items, the collection and the summary page."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import rasterio
import yaml
from scenes import write_pair

from spatialx.batch import BatchError, load_jobs, run_batch, stac_path


@pytest.fixture
def project(tmp_path) -> Path:
    """A jobs folder with two scenes: jobs.yaml refers to them relatively."""
    for name, seed in (("a", 0), ("b", 1)):
        (tmp_path / "scenes" / name).mkdir(parents=True)
        write_pair(tmp_path / "scenes" / name, pan_size=(256, 256), seed=seed)
    return tmp_path


def _jobs(project: Path, jobs: list[dict]) -> Path:
    path = project / "jobs.yaml"
    path.write_text(yaml.safe_dump(jobs))
    return path


def _good(name: str, method: str = "gsa", **extra) -> dict:
    return {"name": name, "task": "pansharpen", "method": method, "sensor": "qb",
            "inputs": {"pan": f"scenes/{name}/pan.tif", "ms": f"scenes/{name}/ms.tif"},
            "output": f"{name}.tif", "options": {"tile": 64, "report": True}, **extra}


def _run(path: Path, root: Path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the synthetic scenes clip at the sensor's maximum
        return run_batch(path, root, **kwargs)


def test_every_problem_is_listed_before_anything_runs(project):
    jobs = _jobs(project, [
        _good("a"),
        {**_good("b"), "inputs": {"pan": "scenes/b/pan.tif", "ms": "scenes/b/missing.tif"}, "colour": "blue"},
        {**_good("a"), "name": "again"},  # the same output as the first job
        {**_good("b"), "output": "../escaped.tif"},
        {**_good("b"), "output": "/tmp/elsewhere.tif"},
        {**_good("b"), "task": "unmix"},
        {**_good("b"), "method": "magic", "output": "m.tif"},
        {**_good("b"), "options": {"tiles": 64}, "output": "o.tif"},
        {"task": "pansharpen"},
        {**_good("b"), "sensor": None, "output": "s.tif"},
    ])
    with pytest.raises(BatchError) as caught:
        load_jobs(jobs, project / "out")
    text = "\n".join(caught.value.problems)
    for expected in ("job 2 (b): unknown key colour", "job 2 (b) ms: scenes/b/missing.tif does not exist",
                     "job 3 (again): a.tif is also written by job 1 (a)",
                     "job 4 (b): output ../escaped.tif is outside the output root",
                     "job 5 (b): output /tmp/elsewhere.tif is outside the output root",
                     "job 6 (b): unknown task", "job 7 (b):", "job 8 (b): unknown option tiles",
                     "job 9: missing inputs, output, method", "job 10 (b): missing sensor"):
        assert expected in text, (expected, text)
    assert len(caught.value.problems) == 10
    assert not (project / "out").exists()


def test_an_output_over_an_input_is_refused(project):
    jobs = _jobs(project, [{**_good("b"), "output": "scenes/b/pan.tif"}])
    with pytest.raises(BatchError) as caught:
        load_jobs(jobs)
    assert any("would be written over or inside the input" in p for p in caught.value.problems)


def test_a_batch_runs_skips_finished_jobs_and_reports_failures(project):
    root = project / "out"
    jobs = _jobs(project, [_good("a"), _good("b", method="brovey"),
                           {**_good("b", method="pnn"), "name": "untrained", "output": "untrained.tif",
                            "method_options": {"config": "qb"}}])
    outcomes = _run(jobs, root)
    assert [o.status for o in outcomes] == ["done", "done", "failed"]
    assert "needs trained weights" in outcomes[2].reason
    assert "\n" not in outcomes[2].reason
    for name in ("a", "b"):
        product = root / f"{name}.tif"
        with rasterio.open(product) as src:
            job_tag = json.loads(src.tags()["SPATIALX_JOB"])
        assert job_tag["name"] == name
        item = json.loads(stac_path(product).read_text())
        assert item["assets"]["data"]["href"] == f"./{name}.tif"
        assert item["properties"]["spatialx:method"] in ("gsa", "brovey")
        assert "HQNR" in item["properties"]["spatialx:quality"]
    assert not (root / "untrained.tif").exists()
    collection = json.loads((root / "collection.json").read_text())
    assert sorted(link["href"] for link in collection["links"] if link["rel"] == "item") == \
        ["./a.stac.json", "./b.stac.json"]
    page = (root / "summary.html").read_text()
    assert "untrained" in page and "needs trained weights" in page and "HQNR" in page

    again = _run(jobs, root)
    assert [o.status for o in again] == ["skipped", "skipped", "failed"]


def test_a_changed_input_is_not_skipped_and_needs_overwrite(project):
    root = project / "out"
    jobs = _jobs(project, [_good("a")])
    _run(jobs, root)
    pan = project / "scenes/a/pan.tif"
    pan.touch()
    with pytest.raises(BatchError, match="1 problem"):
        load_jobs(jobs, root)
    assert [o.status for o in _run(jobs, root, overwrite=True)] == ["done"]


def test_an_interrupted_batch_resumes_the_job_it_stopped_in(project):
    root = project / "out"
    jobs = _jobs(project, [_good("a"), _good("b")])

    def stop_in_b(job):
        if job.name != "b":
            return None

        def progress(done: int, total: int) -> None:
            if done >= 13:  # 4 x 4 tiles of 64 px: in the fourth row
                raise KeyboardInterrupt

        return progress

    with pytest.raises(KeyboardInterrupt):
        _run(jobs, root, on_job=stop_in_b)
    assert (root / "a.tif").exists() and not (root / "b.tif").exists()
    outcomes = _run(jobs, root)
    assert [o.status for o in outcomes] == ["skipped", "done"]
    assert any(note.startswith("resumed: ") for note in outcomes[1].notes)


def test_the_command_lists_problems_one_per_line_and_exits_2(project, spatialx):
    jobs = _jobs(project, [{**_good("a"), "colour": "blue"}, {**_good("b"), "output": "../x.tif"}])
    done = spatialx("batch", str(jobs), cwd=project)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("job 1 (a): unknown key colour")
    assert lines[1].startswith("job 2 (b): output ../x.tif is outside the output root")
    assert "2 problems in the jobs file" in lines[-1]


def test_the_command_exits_1_when_a_job_failed(project, spatialx):
    jobs = _jobs(project, [_good("a"), {**_good("b", method="pnn"), "method_options": {"config": "qb"}}])
    done = spatialx("batch", str(jobs), "-q", "--output-root", "out", cwd=project)
    assert done.returncode == 1
    assert (project / "out/a.tif").exists() and (project / "out/summary.html").exists()


def test_stfuse_and_polsar_jobs_run_in_a_batch(tmp_path):
    from spatialx.sample import STFUSE_BANDS, STFUSE_PREDICT, write_polsar_sample, write_stfuse_sample

    st = write_stfuse_sample(tmp_path / "st", size=64, seed=0)
    pol = write_polsar_sample(tmp_path / "pol", size=64, seed=0)
    scenes = {**st, **{f"pol_{key}": path for key, path in pol.items()}}
    rel = {key: str(path.relative_to(tmp_path)) for key, path in scenes.items()}
    jobs = _jobs(tmp_path, [
        {"name": "st", "task": "stfuse", "method": "coarse-diff", "output": "st.tif",
         "inputs": {"fine": [rel["fine_t1"], rel["fine_t3"]],
                    "coarse": [rel["coarse_t1"], rel["coarse_t2"], rel["coarse_t3"]]},
         "options": {"predict": STFUSE_PREDICT, "fine_bands": ",".join(STFUSE_BANDS)}},
        {"name": "pol", "task": "polsar", "method": "bicubic", "output": "pol.tif",
         "inputs": {"quad": rel["pol_quad"], "single": rel["pol_single"]}, "options": {"pauli": "pol-pauli.tif"}},
    ])
    outcomes = _run(jobs, tmp_path / "out")
    assert [(o.status, o.reason) for o in outcomes] == [("done", None), ("done", None)]
    st_item = json.loads((tmp_path / "out/st.stac.json").read_text())
    assert st_item["properties"]["datetime"].startswith(STFUSE_PREDICT)
    assert (tmp_path / "out/pol-pauli.tif").exists()
    assert "pauli" in json.loads((tmp_path / "out/pol.stac.json").read_text())["assets"]
