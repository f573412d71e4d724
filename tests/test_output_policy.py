"""The one output policy: no run writes over an input or over another of its outputs, replaces an existing file
without --overwrite, or leaves a temporary file behind -- on errors, on SIGINT and on SIGTERM."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from scenes import write_pair

from spatialx.errors import OutputError
from spatialx.io import outputs
from spatialx.io.outputs import OutputPlan, atomic_write_text, new_temporary, publish, remove_temporaries
from spatialx.io.write import BandInfo, OutputSpec, RasterWriter, write_array

DRIVER = Path(__file__).with_name("interrupt_driver.py")


def checksums(*paths: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def error_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The run failed as a user error: status 2, one line, no traceback; returns that line."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("spatialx: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, Path, Path]:
    """pan.tif, ms.tif and a fused.tif on the PAN grid (the MS, pixels repeated: enough for `evaluate`)."""
    pan, ms = write_pair(tmp_path, pan_size=(64, 64))
    with rasterio.open(ms) as src:
        profile, data = src.profile, src.read()
    profile.update(width=64, height=64, transform=profile["transform"] @ Affine.scale(0.25))
    fused = tmp_path / "fused.tif"
    with rasterio.open(fused, "w", **profile) as dst:
        dst.write(np.repeat(np.repeat(data, 4, axis=1), 4, axis=2))
    return pan, ms, fused


# --- the bug report, through the real command line ---------------------------------------------------------------


@pytest.mark.parametrize("args, victim, says", [
    (["evaluate", "compare", "ms.tif", "fused.tif", "-s", "qb", "--csv", "fused.tif"], "fused.tif",
     "CSV output is the same file as the fused input fused.tif"),
    (["evaluate", "compare", "ms.tif", "fused.tif", "-s", "qb", "--json", "ms.tif"], "ms.tif",
     "JSON output is the same file as the reference input ms.tif"),
    (["evaluate", "reduced", "pan.tif", "ms.tif", "-s", "qb", "-m", "brovey", "--csv", "pan.tif"], "pan.tif",
     "the PAN input pan.tif"),
    (["evaluate", "full", "pan.tif", "ms.tif", "fused.tif", "-s", "qb", "--json", "ms.tif", "--overwrite"],
     "ms.tif", "the MS input ms.tif"),
    (["ndvi", "ms.tif", "ms.tif", "-s", "qb", "--overwrite"], "ms.tif", "NDVI is the same file as the MS input"),
    (["pansharpen", "pan.tif", "ms.tif", "pan.tif", "-s", "qb", "--overwrite", "-q"], "pan.tif",
     "output is the same file as the PAN input pan.tif"),
])
def test_an_input_is_never_an_output(spatialx, scene, tmp_path, args, victim, says):
    before = checksums(*scene)
    line = error_line(spatialx(*args, cwd=tmp_path), f"error: {victim}:", says, "inputs are never overwritten")
    assert "--overwrite" not in line  # no option makes an input writable
    assert checksums(*scene) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fused.tif", "ms.tif", "pan.tif"]


def test_side_products_of_pansharpen_are_checked_first(spatialx, scene, tmp_path):
    result = spatialx("pansharpen", "pan.tif", "ms.tif", "out.tif", "-s", "qb", "--ndvi", "out.tif", "-q",
                      cwd=tmp_path)
    error_line(result, "out.tif: NDVI is the same file as the output out.tif")
    (tmp_path / "out.quality.json").write_text("{}")
    error_line(spatialx("pansharpen", "pan.tif", "ms.tif", "out.tif", "-s", "qb", "--report", "-q", cwd=tmp_path),
               "out.quality.json: quality report exists", "--overwrite")
    assert (tmp_path / "out.quality.json").read_text() == "{}"
    assert not (tmp_path / "out.tif").exists()  # refused before the fusion, not after


def test_models_json_refuses_an_existing_file(spatialx, tmp_path):
    existing = tmp_path / "existing.tif"
    existing.write_bytes(b"GeoTIFF bytes")
    error_line(spatialx("models", "--json", "existing.tif", cwd=tmp_path), "existing.tif: JSON output exists",
               "--overwrite")
    assert existing.read_bytes() == b"GeoTIFF bytes"
    (tmp_path / "adir").mkdir()
    error_line(spatialx("models", "--json", "adir", cwd=tmp_path), "adir: JSON output is a directory")


@pytest.mark.parametrize("alias", ["link", "hardlink", "relative", "absolute"])
def test_aliases_of_an_input_are_the_input(spatialx, scene, tmp_path, alias):
    _, ms, _ = scene
    (tmp_path / "sub").mkdir()
    name = {"link": "link.tif", "hardlink": "hard.tif", "relative": "sub/../ms.tif", "absolute": str(ms)}[alias]
    if alias == "link":
        (tmp_path / "link.tif").symlink_to("ms.tif")
    elif alias == "hardlink":
        os.link(ms, tmp_path / "hard.tif")
    before = checksums(ms)
    error_line(spatialx("ndvi", "ms.tif", name, "-s", "qb", "--overwrite", cwd=tmp_path),
               "NDVI is the same file as the MS input")
    # A linked directory is seen through as well.
    (tmp_path / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    error_line(spatialx("evaluate", "compare", "ms.tif", "fused.tif", "-s", "qb", "--csv", "dirlink/fused.tif",
                        cwd=tmp_path), "CSV output is the same file as the fused input")
    assert checksums(ms) == before


def test_two_outputs_of_one_run_are_two_files(spatialx, scene, tmp_path):
    error_line(spatialx("evaluate", "compare", "ms.tif", "fused.tif", "-s", "qb", "--json", "r.txt", "--csv",
                        "./r.txt", cwd=tmp_path), "r.txt: CSV output is the same file as the JSON output r.txt")
    assert not (tmp_path / "r.txt").exists()


def test_overwrite_replaces_outputs_only(spatialx, scene, tmp_path):
    before = checksums(*scene)
    (tmp_path / "r.csv").write_text("old\n")
    args = ["evaluate", "compare", "fused.tif", "fused.tif", "-s", "qb", "--cut", "0", "--csv", "r.csv"]
    error_line(spatialx(*args, cwd=tmp_path), "r.csv: CSV output exists", "pass --overwrite")
    assert (tmp_path / "r.csv").read_text() == "old\n"
    result = spatialx(*args, "--overwrite", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r.csv").read_text().startswith("image,Q2n")

    (tmp_path / "n.qml").write_text("a style the user edited")
    error_line(spatialx("ndvi", "ms.tif", "n.tif", "-s", "qb", cwd=tmp_path), "n.qml: style of the NDVI exists")
    assert not (tmp_path / "n.tif").exists()  # refused before anything was written
    assert spatialx("ndvi", "ms.tif", "n.tif", "-s", "qb", "--overwrite", cwd=tmp_path).returncode == 0
    assert "singlebandpseudocolor" in (tmp_path / "n.qml").read_text()
    assert checksums(*scene) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(outputs.TEMP_PREFIX)]


def test_a_legal_long_name_works(spatialx, scene, tmp_path):
    name = "n" * 236 + ".tif"  # 240 bytes: the hidden temporary names must still fit in 255
    result = spatialx("ndvi", "ms.tif", name, "-s", "qb", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / name).is_file() and (tmp_path / name).with_suffix(".qml").is_file()
    error_line(spatialx("ndvi", "ms.tif", "n" * 300 + ".tif", "-s", "qb", cwd=tmp_path), "304 bytes",
               "choose a shorter name")


def test_bad_output_places_and_names_are_one_line(spatialx, scene, tmp_path):
    error_line(spatialx("ndvi", "ms.tif", "/proc/ndvi.tif", "-s", "qb", cwd=tmp_path), "/proc/ndvi.tif:")
    error_line(spatialx("pansharpen", "pan.tif", "ms.tif", "out.png", "-s", "qb", "-q", cwd=tmp_path),
               "out.png: output must be a GeoTIFF", "name it out.tif")
    error_line(spatialx("ndvi", "ms.tif", "n.jpg", "-s", "qb", cwd=tmp_path), "n.jpg: NDVI must be a GeoTIFF")
    error_line(spatialx("ndvi", "ms.tif", "newdir/", "-s", "qb", cwd=tmp_path), "newdir: NDVI must be a GeoTIFF")
    with pytest.raises(OutputError, match="is a directory name"):  # the library sees the slash the CLI drops
        OutputPlan().add(f"{tmp_path}/newdir/", kind="sidecar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fused.tif", "ms.tif", "pan.tif"]


def test_an_unwritable_dtype_is_one_line_and_leaves_nothing(spatialx, scene, tmp_path):
    error_line(spatialx("pansharpen", "pan.tif", "ms.tif", "out.tif", "-s", "qb", "--dtype", "complex64", "-q",
                        cwd=tmp_path), "complex64")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fused.tif", "ms.tif", "pan.tif"]
    # The writer refuses it too, before any pixel (the COG step cannot average or predict complex values).
    from spatialx.grid import Grid

    grid = Grid(Affine(1, 0, 500000, 0, -1, 4800000), 8, 8, "EPSG:32631")
    with pytest.raises(OutputError, match="cannot write complex64 rasters"):
        write_array(tmp_path / "c.tif", np.ones((1, 8, 8), "complex64"), grid, [BandInfo("a")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fused.tif", "ms.tif", "pan.tif"]


# --- the policy and the registry as a library ---------------------------------------------------------------------


def test_plan_checks_each_output_at_once(tmp_path):
    source = tmp_path / "in.tif"
    source.write_bytes(b"x")
    plan = OutputPlan({"MS": source, "weights": None}, overwrite=False)
    assert plan.add(tmp_path / "a.tif") == tmp_path / "a.tif"
    assert plan.add(tmp_path / "a.json", what="report", kind="sidecar") == tmp_path / "a.json"
    (tmp_path / "sub").mkdir()
    with pytest.raises(OutputError, match="report is the same file as the output"):
        plan.add(tmp_path / "sub" / ".." / "a.tif", what="report")
    OutputPlan([source]).add(tmp_path / "a.tif")  # another plan (run) knows nothing of this one's outputs
    with pytest.raises(OutputError, match="same file as the MS input") as info:
        plan.add(source)
    assert info.value.path == str(source) and info.value.hint
    with pytest.raises(OutputError, match="directory does not exist"):
        plan.add(tmp_path / "missing" / "x.tif")
    with pytest.raises(ValueError, match="kind"):
        plan.add(tmp_path / "c.tif", kind="product")
    (tmp_path / "dangling.tif").symlink_to(tmp_path / "nowhere.tif")
    with pytest.raises(OutputError, match="exists"):  # a link that points nowhere is still a name in use
        plan.add(tmp_path / "dangling.tif")
    os.mkfifo(tmp_path / "fifo.tif")
    with pytest.raises(OutputError, match="not a regular file"):
        OutputPlan((), overwrite=True).add(tmp_path / "fifo.tif")
    assert plan.outputs == [tmp_path / "a.tif", tmp_path / "a.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(outputs.TEMP_PREFIX)]  # the probes are gone


def test_plan_tries_the_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(OutputError, match="not writable"):
        OutputPlan().add(tmp_path / "out.tif")
    monkeypatch.undo()
    target = tmp_path / "ro"
    target.mkdir()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", refuse)  # what a read-only mount does to root, whom access() always lets in
    with pytest.raises(OutputError, match="cannot create the output there: Permission denied"):
        OutputPlan().add(target / "out.tif")


def test_atomic_writes_keep_nothing_half_done(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text("old")
    assert atomic_write_text(path, "new\r\n") == path
    assert path.read_bytes() == b"new\r\n"
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OutputError, match="No space left on device"):
        atomic_write_text(path, "newer")
    assert path.read_bytes() == b"new\r\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_registry_removes_temporaries_not_published_files(tmp_path):
    kept = new_temporary(tmp_path / "a.tif", ".tif")
    assert len(kept.name) < 30 and kept.name.startswith(".sx-") and kept.name.endswith(".tmp.tif")
    published = publish(new_temporary(tmp_path / "b.tif"), tmp_path / "b.tif")
    assert kept in outputs.live_temporaries() and published not in outputs.live_temporaries()
    files, _ = remove_temporaries()
    assert files >= 1 and not kept.exists() and published.exists()
    kept.write_bytes(b"re-created by name, e.g. by a C library")
    assert remove_temporaries()[0] >= 1 and not kept.exists()  # still registered: the next pass gets it too
    outputs.discard(kept)
    assert kept not in outputs.live_temporaries()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tif"]


def test_writer_abort_is_final(tmp_path):
    from spatialx.grid import Grid

    grid = Grid(Affine(1, 0, 500000, 0, -1, 4800000), 32, 32, "EPSG:32631")
    writer = RasterWriter(OutputSpec(path=tmp_path / "out.tif", grid=grid, dtype="uint16", bands=[BandInfo("a")]))
    writer.open()
    assert len(list(tmp_path.iterdir())) == 1
    writer.abort()
    writer.abort()
    with pytest.raises(RuntimeError, match="after commit"):  # a tile worker that arrives late writes nothing
        writer.write(np.zeros((1, 32, 32), "uint16"), rasterio.windows.Window(0, 0, 32, 32))
    assert list(tmp_path.iterdir()) == []
    out = write_array(tmp_path / "ok.tif", np.ones((1, 32, 32), "uint16"), grid, [BandInfo("a")])
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


# --- SIGINT and SIGTERM ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def large_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """640 x 640 PAN: several tiles and one overview level (staging, overview level and COG: three temporary
    files at most)."""
    return write_pair(tmp_path_factory.mktemp("inputs"), pan_size=(640, 640))


def interrupted(point: str, signame: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, str(DRIVER), point, signame, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=120)


def interrupt_line(result: subprocess.CompletedProcess, status: int) -> str:
    assert result.returncode == status, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("spatialx: interrupted"), result.stderr
    return lines[0]


@pytest.mark.parametrize("point, signame, status, files", [
    ("tiles", "INT", 130, 2),  # the staging GeoTIFF and its overview level, built as blocks are written
    ("tiles", "TERM", 143, 2),
    ("cog", "INT", 130, 3),  # staging, overview level, COG
    ("cog", "TERM", 143, 3),
    ("cog-blocked", "TERM", 143, 3),  # the main thread never returns to Python: the watchdog does it all
])
def test_a_signal_leaves_nothing_behind(large_pair, tmp_path, point, signame, status, files):
    pan, ms = large_pair
    before = checksums(pan, ms)
    (tmp_path / "out").mkdir()
    started = time.monotonic()
    result = interrupted(point, signame, "pansharpen", pan, ms, "out/fused.tif", "-s", "qb", "--tile", "128", "-q",
                         cwd=tmp_path)
    line = interrupt_line(result, status)
    assert re.search(rf"; removed {files} temporary files? \([\d.]+ [kMG]?B\); no output was written$", line), line
    assert (signame == "TERM") == ("(SIGTERM)" in line)
    assert list((tmp_path / "out").iterdir()) == []
    assert checksums(pan, ms) == before
    if point == "cog-blocked":  # the blocking call lasts 30 s; the watchdog ends the process 0.5 s after the signal
        assert time.monotonic() - started < 15


@pytest.mark.parametrize("point", ["tiles", "cog"])
def test_a_killed_run_leaves_no_output_and_a_rerun_gives_the_same_product(large_pair, tmp_path, point):
    """kill -9 cannot be caught: the half-written temporaries stay, but no output appears under its name, and the
    same command run again writes the product a run never interrupted writes."""
    pan, ms = large_pair
    args = ("pansharpen", pan, ms, "fused.tif", "-s", "qb", "-m", "gsa", "--tile", "128", "-q")
    result = interrupted(point, "KILL", *args, cwd=tmp_path)
    assert result.returncode == -signal.SIGKILL
    assert not (tmp_path / "fused.tif").exists()
    rerun = subprocess.run([sys.executable, "-m", "spatialx", *map(str, args)], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    (tmp_path / "clean").mkdir()
    clean = subprocess.run([sys.executable, "-m", "spatialx", *map(str, args)], cwd=tmp_path / "clean",
                           capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
    with rasterio.open(tmp_path / "fused.tif") as a, rasterio.open(tmp_path / "clean" / "fused.tif") as b:
        assert np.array_equal(a.read(), b.read()) and a.transform == b.transform and a.crs == b.crs


def test_an_interrupt_keeps_the_existing_output_and_says_what_was_written(large_pair, tmp_path):
    pan, ms = large_pair
    (tmp_path / "fused.tif").write_bytes(b"yesterday's product")
    result = interrupted("cog", "INT", "pansharpen", pan, ms, "fused.tif", "-s", "qb", "--overwrite", "-q",
                         cwd=tmp_path)
    interrupt_line(result, 130)
    assert (tmp_path / "fused.tif").read_bytes() == b"yesterday's product"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fused.tif"]

    # Interrupted in the NDVI's COG step: the product is complete and stays; the line says so.
    (tmp_path / "fused.tif").unlink()
    result = interrupted("cog:2", "INT", "pansharpen", pan, ms, "fused.tif", "-s", "qb", "--ndvi", "ndvi.tif", "-q",
                         cwd=tmp_path)
    line = interrupt_line(result, 130)
    assert "already written: fused.tif" in line and "ndvi" not in line
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "ndvi.tif" not in names and "fused.tif" in names
    assert not [n for n in names if n.startswith(outputs.TEMP_PREFIX)]
    with rasterio.open(tmp_path / "fused.tif") as src:
        assert src.count == 4


def test_the_guard_is_quiet_without_a_signal():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with outputs.signal_guard():
        assert signal.getsignal(signal.SIGINT) is not before[0]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
