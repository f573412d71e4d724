"""Networks go through the same pipeline as classical methods: weights, scene adaptation, tiled inference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

from spatialx.errors import MethodError, ReadError
from spatialx.evaluate import evaluate_reduced
from spatialx.models.registry import create_model
from spatialx.models.weights import save_weights
from spatialx.sample import write_sample
from spatialx.tasks.pansharpen import pansharpen

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("scene"), sensor="qb", size=192, seed=7)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("pnn", "qb")
    path = tmp_path_factory.mktemp("weights") / "pnn_qb.safetensors"
    return save_weights(model, path, {"architecture": "pnn", "config": {"bands": 4, "ratio": 4}, "sensor": "qb"})


def read(path):
    with rasterio.open(path) as src:
        return src.read().astype(np.float64), src.tags()


def test_untrained_network_is_refused(scene, tmp_path):
    # --config builds a fresh network (the bundled weights are not used): without adaptation it is refused
    with pytest.raises(MethodError, match="--weights FILE"):
        pansharpen(scene["pan"], scene["ms"], tmp_path / "out.tif", "qb", "pnn", method_options={"config": "qb"})
    assert not (tmp_path / "out.tif").exists()


def test_weights_run_tiled_and_equal_whole_image(scene, weights, tmp_path):
    options = {"weights": weights}
    whole, tags = read(pansharpen(scene["pan"], scene["ms"], tmp_path / "w.tif", "qb", "pnn",
                                  method_options=options, dtype="float32", tile=512).output)
    tiled, _ = read(pansharpen(scene["pan"], scene["ms"], tmp_path / "t.tif", "qb", "pnn", method_options=options,
                               dtype="float32", tile=64, workers=2).output)
    # PNN's receptive field (8 px) fits the halo, so tiles agree up to float rounding
    assert np.abs(tiled - whole).max() < 0.05
    params = json.loads(tags["SPATIALX_PARAMS"])
    assert params["architecture"] == "pnn" and params["weights"] == "pnn_qb.safetensors"
    assert len(params["weights_sha256"]) == 64


def test_mismatched_or_corrupt_weights_are_one_line_errors(scene, weights, tmp_path):
    with pytest.raises(ReadError, match="4 bands, the input has 8"):
        from spatialx.methods import create_method
        from spatialx.sensors import get_sensor

        create_method("pnn", get_sensor("wv3"), 4, weights=weights)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ReadError, match="safetensors"):
        pansharpen(scene["pan"], scene["ms"], tmp_path / "o.tif", "qb", "pnn", method_options={"weights": broken})
    with pytest.raises(ReadError, match="does not exist"):
        pansharpen(scene["pan"], scene["ms"], tmp_path / "o.tif", "qb", "pnn",
                   method_options={"weights": tmp_path / "missing.safetensors"})


def test_adaptation_runs_end_to_end_and_lowers_the_scene_loss(scene, tmp_path):
    result = pansharpen(scene["pan"], scene["ms"], tmp_path / "a.tif", "qb", "pnn",
                        method_options={"adapt_steps": 6, "adapt_patch": 32, "adapt_batch": 4, "adapt_lr": 1e-3,
                                        "scratch": True})
    fused, tags = read(result.output)
    adaptation = json.loads(tags["SPATIALX_PARAMS"])["adaptation"]
    assert adaptation["steps"] == 6 and adaptation["final_loss"] < adaptation["initial_loss"]
    assert fused.shape == (4, 192, 192) and fused.min() >= 1


def test_evaluate_reduced_adapts_on_the_reduced_inputs(tmp_path):
    scene = write_sample(tmp_path, sensor="qb", size=512, seed=8)
    result = evaluate_reduced(scene["pan"], scene["ms"], "qb", ["pnn"],
                              method_options={"adapt_steps": 4, "adapt_patch": 16, "adapt_batch": 2})
    assert 0 < result["pnn"]["Q2n"] <= 1


@pytest.fixture(scope="module")
def lemamba_weights(tmp_path_factory):
    from spatialx.models.registry import model_config

    model = create_model("lemamba", "qb", seed=0)
    path = tmp_path_factory.mktemp("lemamba") / "lemamba_qb.safetensors"
    return save_weights(model, path, {"architecture": "lemamba", "config": model_config("lemamba", "qb"),
                                      "sensor": "qb"})


def test_lemamba_tiled_inference_on_the_sample(tmp_path, lemamba_weights):
    scene = write_sample(tmp_path, sensor="qb", size=64, seed=9)
    result = pansharpen(scene["pan"], scene["ms"], tmp_path / "out.tif", "qb", "lemamba", tile=32, overlap=8,
                        workers=2, method_options={"weights": lemamba_weights})
    fused, tags = read(result.output)
    assert result.tiles == 4 and fused.shape == (4, 64, 64) and np.isfinite(fused).all()
    with rasterio.open(result.output) as src, rasterio.open(scene["pan"]) as pan:
        assert src.crs == pan.crs and src.transform == pan.transform
    assert json.loads(tags["SPATIALX_PARAMS"])["architecture"] == "lemamba"


def test_lemamba_adapts_with_a_handful_of_steps(tmp_path):
    scene = write_sample(tmp_path, sensor="qb", size=64, seed=10)
    result = pansharpen(scene["pan"], scene["ms"], tmp_path / "out.tif", "qb", "lemamba", tile=64,
                        method_options={"adapt_steps": 2, "adapt_patch": 16, "adapt_batch": 2})
    adaptation = json.loads(read(result.output)[1]["SPATIALX_PARAMS"])["adaptation"]
    assert adaptation["steps"] == 2 and np.isfinite(adaptation["final_loss"])


def test_weights_for_another_task_are_refused(scene, weights, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from spatialx.models.weights import sha256

    with safe_open(str(weights), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - safetensors API
        card = json.loads(handle.metadata()["spatialx_card"])
    card.update(task="hmif", roles=["hsi", "msi"])
    other = tmp_path / "other.safetensors"
    save_file(tensors, str(other), metadata={"spatialx_card": json.dumps(card)})
    other.with_suffix(".json").write_text(json.dumps({**card, "sha256": sha256(other)}))
    with pytest.raises(ReadError, match="trained for hmif with inputs hsi, msi, not pansharpen"):
        pansharpen(scene["pan"], scene["ms"], tmp_path / "o.tif", "qb", "pnn", method_options={"weights": other})
