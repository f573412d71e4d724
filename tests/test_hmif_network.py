"""Networks on hmif: LE-Mamba's configuration for any HS/MS band count, Wald's protocol with the HS as reference
for adaptation and training, and weights that know their task and inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from scenes import write_hmif_pair

import spatialx
from spatialx.errors import MethodError, SpatialxError
from spatialx.evaluate import read_hmif
from spatialx.models.registry import get_model_spec
from spatialx.protocols import reduce_hmif
from spatialx.training.data import ArrayScene, HMIFWaldPatchDataset, PatchQuery
from spatialx.training.loop import train_model

SENSORS = {"hs": "prisma_l2d", "ms": "s2_l2a"}
#: The small network and short runs keep these tests to seconds on a CPU.
TINY = {"config": "hmif-tiny", "adapt_patch": 12, "adapt_batch": 2}


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict:
    return write_hmif_pair(tmp_path_factory.mktemp("hmif-net"), 48)


def test_spaxfus_hmif_configuration_is_the_notes_and_takes_the_inputs_band_counts():
    spec = get_model_spec("spaxfus")
    assert {k: spec.config("hmif")[k] for k in ("bands", "guide_bands", "ratio", "mid", "groups")} == \
        {"bands": 128, "guide_bands": 4, "ratio": 4, "mid": 48, "groups": 1}  # Chikusei (4, 128, 4, 48, 1)
    name, kwargs = spec.config_for("hmif", 230, 4, ratio=3)
    assert name == "hmif" and (kwargs["bands"], kwargs["guide_bands"], kwargs["ratio"]) == (230, 4, 3)


def test_lemamba_takes_the_band_counts_of_the_hmif_inputs():
    spec = get_model_spec("lemamba")
    name, kwargs = spec.config_for("hmif", 230, 4, ratio=3)
    assert name == "hmif" and (kwargs["bands"], kwargs["guide_bands"], kwargs["ratio"], kwargs["width"]) == \
        (230, 4, 3, 64)
    name, kwargs = spec.config_for("hmif", 63, 4, "hmif-tiny")
    assert (kwargs["bands"], kwargs["guide_bands"], kwargs.get("width", 32)) == (63, 4, 32)
    assert spec.config_for("pansharpen", 4, 1)[0] == "qb"  # exact band counts pick a sensor's configuration
    with pytest.raises(MethodError, match="no configuration for 6 bands"):
        spec.config_for("pansharpen", 6, 1)
    with pytest.raises(MethodError, match="takes 4 bands"):
        spec.config_for("pansharpen", 8, 1, "qb")
    with pytest.raises(MethodError, match="not a network for hmif"):
        get_model_spec("pnn").config_for("hmif", 230, 4)


def test_hmif_patches_are_crops_of_the_whole_scene_protocol(pair):
    """Away from the edges an example is the crop of :func:`reduce_hmif` on the whole scene, each role scaled by
    its sensor's value range."""
    scene = read_hmif(pair["hs"], pair["ms"], SENSORS)
    assert scene.grid_ratio == 3
    whole = reduce_hmif(scene.hs, scene.ms, scene.sensors, 3)
    dataset = HMIFWaldPatchDataset([ArrayScene(scene.ms, scene.hs, pan_to_ms=3, guide_bands=None)], scene.sensors,
                                   ratio=3, margin=6)
    example = dataset[PatchQuery(0, 3, 3, 6)]
    assert set(example) == {"target", "hs", "ms", "hs_native"}
    window = np.s_[:, 3:9, 3:9]
    expected = {"target": whole.reference[window], "hs": whole.hs_up[window], "ms": whole.ms[window],
                "hs_native": whole.hs_lr[:, 1:3, 1:3]}
    for key, reference in expected.items():
        low, high = scene.sensors["ms" if key == "ms" else "hs"].value_range
        np.testing.assert_allclose(example[key].numpy() * (high - low) + low, reference, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("method", ["lemamba", "spaxfus"])
def test_networks_adapt_and_fuse_an_hmif_scene(pair, tmp_path, method):
    result = spatialx.fuse("hmif", {"hs": pair["hs"], "ms": pair["ms"]}, tmp_path / "net.tif", method=method,
                           sensor=SENSORS, method_options={"adapt_steps": 2, **TINY})
    with rasterio.open(result.output) as src, rasterio.open(pair["ms"] / "B02.tif") as ms:
        assert src.transform == ms.transform and src.crs == ms.crs
        assert src.count == len(pair["wavelengths"]) and src.dtypes[0] == "float32"
        fused = src.read()
        params = json.loads(src.tags()["SPATIALX_PARAMS"])
    assert np.isfinite(fused).all() and fused.min() >= 0.0 and fused.max() <= 1.0
    assert params["adaptation"]["task"] == "hmif" and params["adaptation"]["steps"] == 2
    assert (params["config"]["bands"], params["config"]["guide_bands"], params["config"]["ratio"]) == \
        (len(pair["wavelengths"]), 4, 3)


def test_hmif_weights_train_load_and_refuse_other_inputs(pair, tmp_path):
    weights = tmp_path / "lem-hmif.safetensors"
    done = train_model(weights, model="lemamba", config="hmif-tiny", task="hmif", sensors=SENSORS,
                       scenes=[(pair["hs"], pair["ms"])], steps=2, batch_size=2, patch=12, device="cpu")
    card = done.card
    assert (card["task"], card["roles"], card["sensor"]) == ("hmif", ["hs", "ms"], SENSORS)
    assert card["config"]["bands"] == len(pair["wavelengths"]) and card["config"]["guide_bands"] == 4
    inputs = {"hs": pair["hs"], "ms": pair["ms"]}
    result = spatialx.fuse("hmif", inputs, tmp_path / "w.tif", method="lemamba", sensor=SENSORS,
                           method_options={"weights": weights})
    # the same weights, whole-scene inference through the tiler: output in range and georeferenced
    with rasterio.open(result.output) as src:
        assert src.count == len(pair["wavelengths"]) and np.isfinite(src.read()).all()
    with pytest.raises(SpatialxError, match="take a 4-band MS, the input has 3"):
        spatialx.fuse("hmif", inputs, tmp_path / "three.tif", method="lemamba", sensor=SENSORS,
                      method_options={"weights": weights}, read_options={"ms": {"bands": ("B02", "B03", "B04")}})
    with pytest.raises(SpatialxError, match="carry their own"):
        spatialx.fuse("hmif", inputs, tmp_path / "c.tif", method="lemamba", sensor=SENSORS,
                      method_options={"weights": weights, "config": "hmif"})
    assert not list(Path(tmp_path).glob("three*")) and not list(Path(tmp_path).glob("c.*"))
    with pytest.raises(SpatialxError, match="HDF5 file does not exist"):
        train_model(tmp_path / "h.safetensors", model="lemamba", task="hmif", h5=tmp_path / "x.h5")


def test_hmif_adaptation_from_the_command_line(pair, tmp_path, request):
    cli = request.getfixturevalue("spatialx")  # the in-process CLI (the name is taken by the package here)
    out = tmp_path / "cli.tif"
    done = cli("hmif", pair["hs"], pair["ms"], out, "-m", "lemamba", "--adapt-steps", "1", "--config", "hmif-tiny",
               "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert out.exists()
    done = cli("hmif", pair["hs"], pair["ms"], tmp_path / "x.tif", "-m", "lemamba", "--adapt-steps", "1",
               "--config", "wv3", "-q", cwd=tmp_path)
    assert done.returncode == 2 and "takes 8 bands" in done.stderr and not (tmp_path / "x.tif").exists()
    assert len(done.stderr.strip().splitlines()) == 1


def _write_hsi_h5(path: Path, keys: dict[str, tuple[int, ...]], seed: int = 0) -> Path:
    import h5py

    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as handle:
        for key, shape in keys.items():
            handle.create_dataset(key, data=rng.random(shape))
    return path


def test_hyperspectral_hdf5_sets_train_hmif_networks(tmp_path):
    """CAVE-style files (GT, LRHSI, RGB in [0, 1], HSI_up optional: bicubic from LRHSI when absent) train an hmif
    network; missing or inconsistent keys are one-line errors naming the file."""
    from spatialx.training.data import HSIDataset

    n, bands, size, ratio = 6, 31, 16, 4
    shapes = {"GT": (n, bands, size, size), "LRHSI": (n, bands, size // ratio, size // ratio),
              "RGB": (n, 3, size, size)}
    h5 = _write_hsi_h5(tmp_path / "cave.h5", shapes)
    data = HSIDataset(h5)
    assert (len(data), data.bands, data.ratio, data.guide_bands) == (n, bands, ratio, 3)
    example = data[2]
    assert set(example) == {"target", "hs", "ms", "hs_native"}
    assert example["hs"].shape == (bands, size, size) and example["ms"].shape == (3, size, size)
    done = train_model(tmp_path / "lem.safetensors", model="lemamba", config="hmif-tiny", task="hmif", h5=h5,
                       steps=2, batch_size=2)
    card = done.card
    assert (card["task"], card["roles"], card["bands"]) == ("hmif", ["hs", "ms"], bands)
    assert (card["config"]["bands"], card["config"]["guide_bands"], card["ratio"]) == (bands, 3, ratio)
    assert card["training"]["data"]["kind"] == "hyperspectral-h5"
    lacking = _write_hsi_h5(tmp_path / "lacking.h5", {"GT": shapes["GT"], "RGB": shapes["RGB"]})
    with pytest.raises(SpatialxError, match="lacks the key\\(s\\) LRHSI"):
        HSIDataset(lacking)
    no_ms = _write_hsi_h5(tmp_path / "no-ms.h5", {"GT": shapes["GT"], "LRHSI": shapes["LRHSI"]})
    with pytest.raises(SpatialxError, match="one high-resolution MS, RGB or HRMSI"):
        HSIDataset(no_ms)
    with pytest.raises(SpatialxError, match=r"hold pansharpening .* or hmif"):
        train_model(tmp_path / "p.safetensors", model="spaxfus", task="polsar", h5=h5, steps=1)
