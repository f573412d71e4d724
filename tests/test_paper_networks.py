"""RWKVFusion and SSRFN as spatialx fusion methods: registered once with the papers' sizes, adapted on a scene
(a few steps lower the loss), trained by the one training loop, and loaded back with ``--weights``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from scenes import write_hmif_pair

import spatialx
from spatialx.methods import get_method_info
from spatialx.models.registry import get_model_spec
from spatialx.sample import write_sample
from spatialx.tasks.pansharpen import pansharpen
from spatialx.training.loop import train_model

pytestmark = pytest.mark.usefixtures("torch_single_thread")

HMIF_SENSORS = {"hs": "prisma_l2d", "ms": "s2_l2a"}


@pytest.fixture(scope="module")
def qb(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("qb") / "scene", sensor="qb", size=96, seed=3)


@pytest.fixture(scope="module")
def hmif_pair(tmp_path_factory):
    return write_hmif_pair(tmp_path_factory.mktemp("hmif-paper-nets"), 48)


@pytest.mark.parametrize(("name", "tasks"), [("rwkvfusion", ("pansharpen", "hmif")), ("ssrfn", ("hmif",))])
def test_registered_once_with_the_papers_sizes(name, tasks):
    spec = get_model_spec(name)
    assert spec.tasks == tasks and get_method_info(name).model == name
    assert spec.paper["params"] and spec.paper["gflops"]


def test_rwkvfusion_adapts_on_a_scene_and_lowers_its_loss(qb, tmp_path):
    result = pansharpen(qb["pan"], qb["ms"], tmp_path / "rwkv.tif", "qb", "rwkvfusion",
                        method_options={"config": "tiny", "adapt_steps": 10, "adapt_patch": 32, "adapt_batch": 2})
    adaptation = result.params["adaptation"]
    assert adaptation["final_loss"] < adaptation["initial_loss"]
    with rasterio.open(result.output) as src, rasterio.open(qb["pan"]) as pan:
        assert src.transform == pan.transform and src.count == 4


def test_rwkvfusion_trains_and_fuses_hmif_with_its_weights(hmif_pair, tmp_path):
    weights = tmp_path / "rwkv-hmif.safetensors"
    done = train_model(weights, model="rwkvfusion", config="hmif-tiny", task="hmif", sensors=HMIF_SENSORS,
                       scenes=[(hmif_pair["hs"], hmif_pair["ms"])], steps=2, batch_size=2, patch=12, device="cpu")
    assert (done.card["task"], done.card["config"]["guide_bands"]) == ("hmif", 4)
    result = spatialx.fuse("hmif", {"hs": hmif_pair["hs"], "ms": hmif_pair["ms"]}, tmp_path / "w.tif",
                           method="rwkvfusion", sensor=HMIF_SENSORS, method_options={"weights": weights})
    with rasterio.open(result.output) as src:
        fused = src.read()
        params = json.loads(src.tags()["SPATIALX_PARAMS"])
    assert np.isfinite(fused).all() and params["architecture"] == "rwkvfusion"
    assert params["weights_source"] == "file"


def test_ssrfn_adapts_on_an_hmif_pair_trains_and_loads(hmif_pair, tmp_path):
    inputs = {"hs": hmif_pair["hs"], "ms": hmif_pair["ms"]}
    result = spatialx.fuse("hmif", inputs, tmp_path / "ssrfn.tif", method="ssrfn", sensor=HMIF_SENSORS,
                           method_options={"config": "tiny", "adapt_steps": 8, "adapt_patch": 12, "adapt_batch": 2})
    adaptation = result.params["adaptation"]
    assert adaptation["final_loss"] < adaptation["initial_loss"]
    assert result.params["config"]["ratio"] == 3 and result.params["config"]["bands"] == len(hmif_pair["wavelengths"])
    assert result.params["tile"] % 3 == 0 and result.params["halo"] % 3 == 0  # tiles on the HS grid
    weights = tmp_path / "ssrfn.safetensors"
    done = train_model(weights, model="ssrfn", config="tiny", task="hmif", sensors=HMIF_SENSORS,
                       scenes=[(hmif_pair["hs"], hmif_pair["ms"])], steps=2, batch_size=2, patch=12, device="cpu")
    assert done.card["training"]["recipe"]["optimizer"] == "adam" and done.card["training"]["recipe"]["loss"] == "mse"
    fused = spatialx.fuse("hmif", inputs, tmp_path / "w.tif", method="ssrfn", sensor=HMIF_SENSORS,
                          method_options={"weights": weights})
    with rasterio.open(fused.output) as src:
        assert np.isfinite(src.read()).all()
