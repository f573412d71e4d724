"""Bad input: one line naming the file and the fix, exit status 2, no traceback, nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from scenes import write_pair, write_tif


def spatialx_process(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """The real console entry point in a child process."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "spatialx", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_pair(tmp_path_factory.mktemp("pair"), pan_size=(64, 64))


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("spatialx: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def outputs_left(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(("out", ".out")))


def test_missing_file(pair, tmp_path):
    pan, _ = pair
    result = spatialx_process("pansharpen", pan, tmp_path / "nope.tif", "out.tif", "--sensor", "qb", cwd=tmp_path)
    assert_user_error(result, "nope.tif", "MS file does not exist")
    assert outputs_left(tmp_path) == []


def test_not_a_raster(spatialx, pair, tmp_path):
    _, ms = pair
    text = tmp_path / "notes.tif"
    text.write_text("this is not an image\n")
    assert_user_error(spatialx("pansharpen", text, ms, "out.tif", "--sensor", "qb", cwd=tmp_path),
                      "notes.tif", "not a raster")


def test_truncated_tiff(spatialx, pair, tmp_path):
    pan, ms = pair
    broken = tmp_path / "broken.tif"
    broken.write_bytes(ms.read_bytes()[: ms.stat().st_size // 2])
    assert_user_error(spatialx("pansharpen", pan, broken, "out.tif", "--sensor", "qb", cwd=tmp_path),
                      "broken.tif", "truncated")
    assert outputs_left(tmp_path) == []


def test_crs_on_one_input_only(spatialx, tmp_path):
    pan, ms = write_pair(tmp_path, pan_size=(64, 64), ms_crs=None)
    assert_user_error(spatialx("pansharpen", pan, ms, "out.tif", "--sensor", "qb", cwd=tmp_path),
                      "ms.tif", "no CRS")


def test_no_overlap(spatialx, tmp_path):
    pan, ms = write_pair(tmp_path, pan_size=(64, 64), ms_offset=(1000.0, 0.0))
    assert_user_error(spatialx("pansharpen", pan, ms, "out.tif", "--sensor", "qb", cwd=tmp_path),
                      "ms.tif", "does not overlap")


def test_wrong_band_count(spatialx, pair, tmp_path):
    pan, ms = pair
    assert_user_error(spatialx("pansharpen", pan, ms, "out.tif", "--sensor", "wv3", cwd=tmp_path),
                      "ms.tif", "has 4 bands", "expects 8")


def test_unknown_sensor_and_method(spatialx, pair, tmp_path):
    pan, ms = pair
    assert_user_error(spatialx("pansharpen", pan, ms, "out.tif", "--sensor", "landsat99", cwd=tmp_path),
                      "unknown sensor", "wv3")
    assert_user_error(spatialx("pansharpen", pan, ms, "out.tif", "-s", "qb", "-m", "magic", cwd=tmp_path),
                      "unknown method 'magic'", "brovey")


def test_output_directory_missing(spatialx, pair, tmp_path):
    pan, ms = pair
    assert_user_error(spatialx("pansharpen", pan, ms, tmp_path / "missing" / "out.tif", "-s", "qb", cwd=tmp_path),
                      "missing", "does not exist")


def test_output_directory_not_writable(pair, tmp_path, monkeypatch):
    # Root may write anywhere, so the permission check itself is exercised in-process.
    from spatialx.errors import OutputError
    from spatialx.io.write import check_output_path

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(OutputError, match="not writable"):
        check_output_path(tmp_path / "out.tif", overwrite=False)


def test_existing_output_needs_overwrite(spatialx, pair, tmp_path):
    pan, ms = pair
    existing = tmp_path / "out.tif"
    existing.write_bytes(b"keep me")
    assert_user_error(spatialx("pansharpen", pan, ms, existing, "-s", "qb", cwd=tmp_path), "out.tif",
                      "--overwrite")
    assert existing.read_bytes() == b"keep me"
    result = spatialx("pansharpen", pan, ms, existing, "-s", "qb", "--overwrite", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with rasterio.open(existing) as src:
        assert src.count == 4


def test_pixel_space_inputs_need_an_integer_ratio(spatialx, tmp_path):
    write_tif(tmp_path / "pan.tif", np.ones((1, 64, 64), "uint16"), None, None)
    write_tif(tmp_path / "ms.tif", np.ones((4, 20, 20), "uint16"), None, None)
    assert_user_error(spatialx("pansharpen", "pan.tif", "ms.tif", "out.tif", "-s", "qb", cwd=tmp_path),
                      "ms.tif", "integer ratio")


def test_failure_mid_run_leaves_nothing(pair, tmp_path, monkeypatch):
    from spatialx.errors import ReadError
    from spatialx.io.read import ThreadLocalReader
    from spatialx.tasks.pansharpen import pansharpen

    calls = {"n": 0}
    original = ThreadLocalReader.read

    def flaky(self, window, bands=None):
        calls["n"] += 1
        if calls["n"] > 6:
            raise ReadError("read failed (simulated)", path=self.info.path)
        return original(self, window, bands)

    monkeypatch.setattr(ThreadLocalReader, "read", flaky)
    pan, ms = pair
    with pytest.raises(ReadError):
        pansharpen(pan, ms, tmp_path / "out.tif", "qb", "brovey", tile=16, overlap=0)
    assert list(tmp_path.iterdir()) == []


def test_compress_level_trades_size_for_time_and_keeps_the_pixels(spatialx, pair, tmp_path):
    pan, ms = pair
    assert_user_error(spatialx("pansharpen", pan, ms, "out.tif", "-s", "qb", "--compress-level", "0",
                               cwd=tmp_path), "--compress-level 0", "1 to 9")
    assert outputs_left(tmp_path) == []
    sizes, pixels = {}, {}
    for level in ("1", "9"):
        result = spatialx("pansharpen", pan, ms, f"out{level}.tif", "-s", "qb", "-m", "gsa", "-q",
                          "--compress-level", level, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        sizes[level] = (tmp_path / f"out{level}.tif").stat().st_size
        with rasterio.open(tmp_path / f"out{level}.tif") as src:
            pixels[level] = src.read()
    np.testing.assert_array_equal(pixels["1"], pixels["9"])
    assert sizes["9"] < sizes["1"]
