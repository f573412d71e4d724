"""One pipeline for any task: a task defined here (two roles, two sensors, a 3:2 grid ratio) runs end to end, and
the pieces it rests on (resampling kinds, rational nesting, one registry, the xarray API) behave."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import rasterio
from affine import Affine
from scenes import CRS, smooth_field, write_pair, write_tif

import spatialx
from spatialx.align import AxisMap, Resampler, kernel_for
from spatialx.errors import InputMismatchError, MethodError, SpatialxError
from spatialx.methods import FusionMethod, SceneSample, create_method, get_method_info, list_methods, register
from spatialx.methods.base import MethodContext
from spatialx.methods.registry import unregister
from spatialx.tasks import PANSHARPEN, Resampling, Role, TaskSpec, get_task, list_tasks

FINE_RES, COARSE_RES = 10.0, 15.0  # a 3:2 ratio: three output pixels span exactly two coarse pixels

TEST_TASK = TaskSpec(
    "sharpen-test", "a test task: a three-band coarse image sharpened by a one-band fine image",
    roles=(Role("fine", "FINE", description="one band, the output grid"),
           Role("coarse", "COARSE", description="three bands at 1.5 times the fine pixel size"),
           Role("mask", "MASK", resampling=Resampling.NEAREST, optional=True)),
    guide="fine", output_like="coarse", network_roles=("coarse", "fine"))


class Modulate(FusionMethod):
    """A trivial method: the coarse bands on the fine grid, times the fine image over its scene mean."""

    name = "modulate-test"
    roles = ("fine", "coarse")
    default_overlap = 0
    seen: ClassVar[list[SceneSample]] = []

    def fit(self, sample: SceneSample) -> None:
        self.mean = float(sample.valid_pixels("fine").mean())
        Modulate.seen.append(sample)

    def fuse(self, inputs):
        return inputs["coarse"] * (inputs["fine"] / self.mean)


@pytest.fixture(scope="module", autouse=True)
def test_method():
    register("modulate-test", Modulate, kind="classical", summary="test", tasks=("sharpen-test",))
    yield
    unregister("modulate-test")


@pytest.fixture
def sensors(tmp_path, monkeypatch):
    (tmp_path / "finecam.yaml").write_text(
        "name: Fine camera\nbit_depth: 12\ndtype: uint16\nnodata: 0\nresolution_m: 10\n"
        "bands:\n  - {name: Intensity, center_nm: 600, width_nm: 300}\n")
    (tmp_path / "coarsecam.yaml").write_text(
        "name: Coarse camera\nbit_depth: 12\ndtype: uint16\nnodata: 0\nresolution_m: 15\n"
        "bands:\n  - {name: Blue, center_nm: 480, width_nm: 60}\n"
        "  - {name: Green, center_nm: 550, width_nm: 60}\n  - {name: Red, center_nm: 660, width_nm: 60}\n")
    monkeypatch.setenv("SPATIALX_SENSOR_PATH", str(tmp_path))
    return {"fine": "finecam", "coarse": "coarsecam"}


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict[str, Path]:
    """A fine image of 150 x 120 px and a coarse one of 100 x 80 px over the same 1500 m x 1200 m."""
    directory = tmp_path_factory.mktemp("task")
    x0, y0 = 500000.0, 4800000.0
    fine = (1000 + 2000 * smooth_field((1, 120, 150), 3, sigma=2.0)).astype("uint16")
    rows, cols = np.mgrid[0:80, 0:100]
    # Linear ramps: cubic convolution reproduces them exactly away from the edges.
    coarse = np.stack([500 + 10 * cols + 3 * rows, 800 + 4 * cols + 7 * rows, 300 + 6 * cols + 2 * rows])
    return {
        "fine": write_tif(directory / "fine.tif", fine, Affine(FINE_RES, 0, x0, 0, -FINE_RES, y0), CRS),
        "coarse": write_tif(directory / "coarse.tif", coarse.astype("uint16"),
                            Affine(COARSE_RES, 0, x0, 0, -COARSE_RES, y0), CRS),
    }


def read(path: Path) -> tuple[np.ndarray, rasterio.Affine, dict]:
    with rasterio.open(path) as src:
        return src.read().astype(np.float64), src.transform, {**src.tags(), "descriptions": src.descriptions}


def test_a_task_defined_here_runs_end_to_end(scene, sensors, tmp_path):
    Modulate.seen.clear()
    result = spatialx.fuse(TEST_TASK, scene, tmp_path / "out.tif", method="modulate-test", sensor=sensors,
                           dtype="float32", tile=48)
    fused, transform, tags = read(result.output)
    with rasterio.open(scene["fine"]) as src:
        fine, fine_transform = src.read(1).astype(np.float64), src.transform
    assert fused.shape == (3, 120, 150) and transform == fine_transform
    assert tags["descriptions"] == ("Blue", "Green", "Red")
    assert tags["SPATIALX_TASK"] == "sharpen-test"
    assert json.loads(tags["SPATIALX_SENSOR"]) == {"FINE": "finecam", "COARSE": "coarsecam"}
    assert json.loads(tags["SPATIALX_PARAMS"])["grid_ratio"] == 1.5
    # Fine pixel (i, j) centre sits at coarse index ((j + 0.5) / 1.5 - 0.5): the ramp's value there.
    rows, cols = np.mgrid[0:120, 0:150]
    u, v = (cols + 0.5) / 1.5 - 0.5, (rows + 0.5) / 1.5 - 0.5
    ramp = 500 + 10 * u + 3 * v
    expected = ramp * fine / fine.mean()
    inner = (slice(3, -3), slice(3, -3))
    np.testing.assert_allclose(fused[0][inner], expected[inner], rtol=1e-5)


def test_scene_windows_are_cut_on_edges_both_grids_share(scene, sensors, tmp_path):
    Modulate.seen.clear()
    spatialx.fuse(TEST_TASK, scene, tmp_path / "out.tif", method="modulate-test", sensor=sensors)
    (window,) = Modulate.seen[0].windows  # a small scene: one window over all of it
    assert window.scales == {"fine": Fraction(1), "coarse": Fraction(3, 2)}
    assert window.arrays["fine"].shape == (1, 120, 150) and window.arrays["coarse"].shape == (3, 80, 100)
    with rasterio.open(scene["coarse"]) as src:
        np.testing.assert_array_equal(window.arrays["coarse"], src.read().astype(np.float32))
    with pytest.raises(MethodError, match="integer ratio"):
        window.factor("coarse")


def test_tiled_equals_whole_scene_for_the_test_task(scene, sensors, tmp_path):
    whole = read(spatialx.fuse(TEST_TASK, scene, tmp_path / "w.tif", method="modulate-test", sensor=sensors,
                               dtype="float32", tile=1024).output)[0]
    tiled = read(spatialx.fuse(TEST_TASK, scene, tmp_path / "t.tif", method="modulate-test", sensor=sensors,
                               dtype="float32", tile=32, workers=2).output)[0]
    np.testing.assert_array_equal(tiled, whole)


def test_the_xarray_api_equals_the_file_path(scene, sensors, tmp_path):
    import rioxarray

    options = {"dtype": "float32", "tile": 40, "overlap": 8}
    on_file = read(spatialx.fuse(TEST_TASK, scene, tmp_path / "f.tif", method="modulate-test", sensor=sensors,
                                 **options).output)[0]
    arrays = {role: rioxarray.open_rasterio(path, chunks={"x": 64, "y": 64}) for role, path in scene.items()}
    lazy = spatialx.xr.fuse(TEST_TASK, arrays, method="modulate-test", sensor=sensors, **options)
    assert lazy.chunks is not None  # nothing fused yet
    assert list(lazy.band.values) == ["Blue", "Green", "Red"]
    assert list(lazy.wavelength.values) == [480, 550, 660]
    with rasterio.open(scene["fine"]) as src:
        assert lazy.rio.crs == src.crs and lazy.rio.transform() == src.transform
    np.testing.assert_array_equal(lazy.values, on_file)


def test_the_xarray_api_equals_the_file_path_for_pansharpening(tmp_path):
    import rioxarray

    from spatialx.sample import write_sample

    paths = write_sample(tmp_path / "s", sensor="qb", size=128, seed=2)
    on_file = read(spatialx.fuse("pansharpen", {"pan": paths["pan"], "ms": paths["ms"]}, tmp_path / "g.tif",
                                 method="mtf-glp", sensor="qb", tile=64, overlap=8).output)[0]
    arrays = {role: rioxarray.open_rasterio(paths[role]) for role in ("pan", "ms")}
    fused = spatialx.xr.fuse("pansharpen", arrays, method="mtf-glp", sensor="qb", tile=64, overlap=8)
    assert fused.dtype == np.uint16 and fused.rio.nodata == 0
    np.testing.assert_array_equal(fused.values, on_file)


def test_roles_are_checked(scene, sensors, tmp_path):
    with pytest.raises(SpatialxError, match="needs the COARSE input"):
        spatialx.fuse(TEST_TASK, {"fine": scene["fine"]}, tmp_path / "o.tif", method="modulate-test",
                      sensor=sensors)
    with pytest.raises(SpatialxError, match="takes no input 'pan'"):
        spatialx.fuse(TEST_TASK, {**scene, "pan": scene["fine"]}, tmp_path / "o.tif", method="modulate-test",
                      sensor=sensors)
    with pytest.raises(MethodError, match="unknown method 'gsa' for sharpen-test"):
        spatialx.fuse(TEST_TASK, scene, tmp_path / "o.tif", method="gsa", sensor=sensors)
    assert not (tmp_path / "o.tif").exists()


def test_a_method_needing_roles_the_task_lacks_is_refused(sensors):
    context = MethodContext.create(TEST_TASK, sensors | {"mask": "finecam"})
    with pytest.raises(MethodError, match="needs the pan, ms input"):
        from spatialx.methods.classical.simple import Brovey

        Brovey(context)


def test_one_registry_network_tasks_come_from_the_model_registry():
    from spatialx.models.registry import get_model_spec

    lemamba = get_method_info("lemamba")
    # The model registry is the one list; of its tasks, those this installation has a pipeline spec for.
    assert set(lemamba.tasks) == set(get_model_spec("lemamba").tasks) & {t.name for t in list_tasks()}
    assert "lemamba" in [m.name for m in list_methods("pansharpen")]
    with pytest.raises(ValueError, match="tasks come from the model registry"):
        register("bad-net", "x:y", kind="network", summary="", model="pnn", tasks=("pansharpen",))
    assert list_tasks()[0].name == "pansharpen" and get_task("PANSHARPEN") is PANSHARPEN
    with pytest.raises(SpatialxError, match="unknown task"):
        get_task("nope")


def test_create_method_from_a_sensor_still_works():
    method = create_method("gsa", spatialx.get_sensor("wv3"), 4)
    assert method.context.task is PANSHARPEN and method.sensor.key == "wv3" and method.ratio == 4
    assert method.context.sensors["pan"].band_names == ("PAN",)


# ------------------------------------------------------------------------------------------- resampling kinds
def _resample(values: np.ndarray, scale: float, kernel: str, out: int) -> np.ndarray:
    axis = AxisMap(scale=scale, offset=0.5 * scale - 0.5, size=values.shape[-1], kernel=kernel)
    resampler = Resampler(None, AxisMap(axis.scale, axis.offset, values.shape[-2], kernel), axis)  # type: ignore[arg-type]
    window = rasterio.windows.Window(0, 0, out, out)
    src = resampler.source_window(window)
    data = values[:, int(src.row_off): int(src.row_off + src.height), int(src.col_off): int(src.col_off + src.width)]
    return resampler.resample(data.astype(np.float32), src, window)


def test_kernels_follow_the_role_kind():
    assert kernel_for(Resampling.AUTO, 0.25) == "cubic" and kernel_for(Resampling.AUTO, 3.0) == "average"
    assert kernel_for(Resampling.COVARIANCE, 0.5) == "linear" and kernel_for(Resampling.COVARIANCE, 2) == "average"
    assert kernel_for(Resampling.NEAREST, 0.5) == "nearest" and kernel_for(Resampling.NEAREST, 3) == "nearest"


def test_coarsening_averages_whole_footprints():
    fine = np.random.default_rng(0).random((2, 60, 60))
    coarse = _resample(fine, 3.0, "average", 20)
    expected = fine.reshape(2, 20, 3, 20, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(coarse, expected, rtol=1e-5)


def test_nearest_keeps_labels():
    labels = np.random.default_rng(1).integers(0, 4, (1, 20, 20)).astype(float) * 8
    up = _resample(labels, 0.4, "nearest", 50)
    assert set(np.unique(up)) <= set(np.unique(labels))
    np.testing.assert_array_equal(up[0, ::5, ::5][:4, :4], labels[0, ::2, ::2][:4, :4])


def _c3_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """A C3 matrix per pixel, rank one (k k^H): PSD but on the boundary, where cubic overshoot breaks it."""
    k = rng.normal(size=(3, size, size)) + 1j * rng.normal(size=(3, size, size))
    c = np.einsum("iyx,jyx->ijyx", k, k.conj())
    return np.stack([c[0, 0].real, c[0, 1].real, c[0, 1].imag, c[0, 2].real, c[0, 2].imag, c[1, 1].real,
                     c[1, 2].real, c[1, 2].imag, c[2, 2].real])


def _min_eigenvalue(channels: np.ndarray) -> float:
    c11, c12r, c12i, c13r, c13i, c22, c23r, c23i, c33 = channels.astype(np.float64)
    c12, c13, c23 = c12r + 1j * c12i, c13r + 1j * c13i, c23r + 1j * c23i
    m = np.stack([np.stack([c11, c12, c13]), np.stack([c12.conj(), c22, c23]), np.stack([c13.conj(), c23.conj(),
                                                                                        c33])])
    eig = np.linalg.eigvalsh(np.moveaxis(m, (0, 1), (-2, -1)))
    trace = (c11 + c22 + c33)[..., None]
    return float((eig / trace).min())


def test_covariance_resampling_keeps_matrices_positive_semidefinite():
    c3 = _c3_field(np.random.default_rng(2), 24)
    assert _min_eigenvalue(_resample(c3, 0.4, "cubic", 50)) < -1e-3  # the reason for the kind
    assert _min_eigenvalue(_resample(c3, 0.4, "linear", 50)) > -1e-5
    assert _min_eigenvalue(_resample(c3, 2.0, "average", 12)) > -1e-5


# ---------------------------------------------------------------------------------------------- --reproject
def test_inputs_in_another_crs_are_refused_unless_reprojected(tmp_path):
    from rasterio.warp import calculate_default_transform, reproject

    pan, ms = write_pair(tmp_path, pan_size=(192, 192), seed=4)
    with rasterio.open(ms) as src:
        transform, width, height = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height,
                                                               *src.bounds)
        warped = np.zeros((src.count, height, width), dtype=np.float32)
        reproject(src.read().astype(np.float32), warped, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=transform, dst_crs="EPSG:4326", resampling=rasterio.enums.Resampling.cubic,
                  dst_nodata=0)
    ms_4326 = write_tif(tmp_path / "ms_4326.tif", warped, transform, "EPSG:4326")
    with pytest.raises(InputMismatchError, match="--reproject"):
        spatialx.fuse("pansharpen", {"pan": pan, "ms": ms_4326}, tmp_path / "o.tif", method="exp", sensor="qb")
    result = spatialx.fuse("pansharpen", {"pan": pan, "ms": ms_4326}, tmp_path / "r.tif", method="exp",
                           sensor="qb", reproject=True, dtype="float32")
    direct = spatialx.fuse("pansharpen", {"pan": pan, "ms": ms}, tmp_path / "d.tif", method="exp", sensor="qb",
                           dtype="float32")
    fused, transform_r, tags = read(result.output)
    reference, transform_d, _ = read(direct.output)
    assert transform_r.a == transform_d.a and "EPSG:4326" in tags["SPATIALX_REPROJECTED"]
    assert any("reprojected on the fly" in note for note in result.notes)
    # Warped twice (there and back) on a smooth field: the interiors agree closely.
    rows = slice(int((transform_r.f - transform_d.f) / transform_d.e), None)
    cols = slice(int((transform_r.c - transform_d.c) / transform_d.a), None)
    overlap = reference[:, rows, cols][:, : fused.shape[1], : fused.shape[2]]
    inner = (slice(None), slice(16, -16), slice(16, -16))
    valid = (fused[inner] > 0) & (overlap[inner] > 0)
    assert valid.mean() > 0.8
    assert np.abs(fused[inner] - overlap[inner])[valid].mean() < 0.01 * overlap[inner][valid].mean()


# ------------------------------------------------------------------------------------ inputs in the wrong role
@pytest.fixture
def qb_pair(tmp_path):
    return write_pair(tmp_path, pan_size=(64, 64))


def test_a_multiband_file_as_pan_is_refused(qb_pair, tmp_path):
    _, ms = qb_pair
    for wrong in (ms, write_tif(tmp_path / "rgb.tif", np.ones((3, 64, 64), "uint16"),
                                Affine(0.5, 0, 500000.0, 0, -0.5, 4800000.0), CRS)):
        with pytest.raises(InputMismatchError, match=r"PAN has \d bands, QuickBird expects 1 \(PAN\)"):
            spatialx.pansharpen(wrong, ms, tmp_path / "o.tif", "qb", "brovey")
    assert not (tmp_path / "o.tif").exists()


def test_repeated_bands_are_refused(qb_pair, tmp_path):
    pan, ms = qb_pair
    with pytest.raises(InputMismatchError, match="names 2 more than once"):
        spatialx.pansharpen(pan, ms, tmp_path / "o.tif", "qb", "brovey", bands="2,2,3,4")


def test_a_pan_coarser_than_the_ms_is_refused(tmp_path):
    pan, ms = write_pair(tmp_path, pan_size=(32, 32), pan_res=4.0, ms_res=2.0, ms_size=(64, 64))
    with pytest.raises(InputMismatchError, match="MS pixels are 2 times finer than the PAN's"):
        spatialx.pansharpen(pan, ms, tmp_path / "o.tif", "qb", "brovey")


def test_cli_lists_tasks_and_methods_per_task():
    from typer.testing import CliRunner

    from spatialx.cli.main import app

    runner = CliRunner()
    listed = runner.invoke(app, ["tasks"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "pansharpen" in listed.output and "panchromatic band" in listed.output
    methods = runner.invoke(app, ["methods", "--task", "pansharpen"], env={"COLUMNS": "200"})
    assert methods.exit_code == 0 and "lemamba" in methods.output and "mtf-glp-hpm" in methods.output
    unknown = runner.invoke(app, ["methods", "--task", "nope"])
    assert unknown.exit_code != 0 and "unknown task" in str(unknown.exception)


@pytest.mark.parametrize("dtype", ["float13", "bool", "complex64", "int8"])
def test_output_types_spatialx_cannot_write_are_refused_before_any_work(qb_pair, tmp_path, dtype):
    pan, ms = qb_pair
    with pytest.raises(SpatialxError, match=f"--dtype {dtype}"):
        spatialx.pansharpen(pan, ms, tmp_path / "o.tif", "qb", "brovey", dtype=dtype)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ms.tif", "pan.tif"]


def test_an_absurd_ratio_is_refused(qb_pair, tmp_path):
    pan, ms = qb_pair
    with pytest.raises(SpatialxError, match="--ratio 1e\\+06 is outside"):
        spatialx.pansharpen(pan, ms, tmp_path / "o.tif", "qb", "gsa", ratio=1e6)
