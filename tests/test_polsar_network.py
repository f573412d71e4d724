"""Networks on polsar: SpaXFus's PolSAR configuration, Wald's protocol with the C3 as reference (block-averaged,
brought back as the pipeline resamples a covariance image), SAR scenes scaled by their level, fused C3 that stay
positive semidefinite, and weights that know their task."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from spatialx.errors import MethodError, SpatialxError
from spatialx.metrics.polsar import is_psd
from spatialx.models.registry import create_model, get_model_spec
from spatialx.models.weights import save_weights
from spatialx.protocols import block_mean, expand_linear, polsar_level, reduce_polsar
from spatialx.sample import write_polsar_sample
from spatialx.tasks.polsar import polsar, read_polsar_pair
from spatialx.training.data import ArrayScene, PatchQuery, PolSARWaldPatchDataset
from spatialx.training.loop import train_model

#: The small network and short runs keep these tests to seconds on a CPU.
TINY = {"config": "polsar-tiny", "adapt_patch": 16, "adapt_batch": 2}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_polsar_sample(tmp_path_factory.mktemp("polsar-net") / "scene", size=64, seed=5)


def test_spaxfus_polsar_configuration_is_the_notes_and_takes_one_intensity_band():
    spec = get_model_spec("spaxfus")
    assert {k: spec.config("polsar")[k] for k in ("bands", "guide_bands", "ratio", "mid", "groups")} == \
        {"bands": 9, "guide_bands": 2, "ratio": 2, "mid": 96, "groups": 3}  # the notes' (2, 9, 2, 96, 3)
    name, kwargs = spec.config_for("polsar", 9, 1, ratio=2)
    assert name == "polsar" and (kwargs["bands"], kwargs["guide_bands"], kwargs["ratio"]) == (9, 1, 2)


def test_the_reduced_c3_is_re_expanded_as_the_pipeline_resamples_it(scene, tmp_path):
    """``expand_linear`` of the quad-pol C3 is what the bilinear method (the pipeline's covariance resampling onto
    the single-pol grid) writes: adaptation trains on inputs shaped as the fused scene's."""
    intensity, c3, grid_ratio = read_polsar_pair(scene["single"], scene["quad"])
    assert grid_ratio == 2 and intensity.shape[1:] == (2 * c3.shape[1], 2 * c3.shape[2])
    fused = polsar(scene["quad"], scene["single"], tmp_path / "bilinear.tif", method="bilinear").output
    with rasterio.open(fused) as src:
        resampled = src.read().astype(np.float64)
    expanded = expand_linear(c3, 2)
    scale = np.abs(resampled).max()
    np.testing.assert_allclose(expanded, resampled, atol=1e-5 * scale)
    reduced = reduce_polsar(c3, intensity, grid_ratio)
    np.testing.assert_allclose(reduced.quad_lr, block_mean(c3, 2), rtol=1e-6)
    np.testing.assert_allclose(reduced.single, block_mean(intensity, 2), rtol=1e-6)
    assert is_psd(reduced.quad_up.astype(np.float64), tol=1e-4).all()


def test_polsar_patches_are_crops_of_the_whole_scene_protocol_in_units_of_the_level(scene):
    intensity, c3, grid_ratio = read_polsar_pair(scene["single"], scene["quad"])
    whole = reduce_polsar(c3, intensity, grid_ratio)
    dataset = PolSARWaldPatchDataset([ArrayScene(intensity, c3, pan_to_ms=grid_ratio)], ratio=2, margin=4)
    level = polsar_level(intensity)
    assert dataset.levels == [level] and 0 < level < np.inf
    example = dataset[PatchQuery(0, 8, 6, 8)]
    assert set(example) == {"target", "quad", "single", "quad_native"}
    window = np.s_[:, 8:16, 6:14]
    expected = {"target": whole.reference[window], "quad": whole.quad_up[window], "single": whole.single[window],
                "quad_native": whole.quad_lr[:, 4:8, 3:7]}
    for key, reference in expected.items():
        np.testing.assert_allclose(example[key].numpy() * level, reference, rtol=1e-5, atol=1e-6 * level,
                                   err_msg=key)


def test_spaxfus_adapts_on_a_polsar_scene_and_writes_a_covariance_image(scene, tmp_path):
    result = polsar(scene["quad"], scene["single"], tmp_path / "net.tif", method="spaxfus",
                    method_options={"adapt_steps": 3, **TINY})
    with rasterio.open(result.output) as src, rasterio.open(scene["single"]) as single:
        assert src.transform == single.transform and src.crs == single.crs and src.count == 9
        fused = src.read().astype(np.float64)
        params = json.loads(src.tags()["SPATIALX_PARAMS"])
    assert np.isfinite(fused).all() and is_psd(fused, tol=1e-4).all()
    assert fused[[0, 5, 8]].mean() > 0  # the diagonal is power, not the [0, 1] a network works in
    assert params["adaptation"]["task"] == "polsar" and params["adaptation"]["steps"] == 3
    assert params["scene_level"] > 0 and params["config"]["guide_bands"] == 1


def test_polsar_weights_train_load_and_refuse_another_task(scene, tmp_path):
    weights = tmp_path / "spaxfus-polsar.safetensors"
    done = train_model(weights, model="spaxfus", config="polsar-tiny", task="polsar",
                       scenes=[(scene["single"], scene["quad"])], steps=2, batch_size=2, patch=16, device="cpu")
    card = done.card
    assert (card["task"], card["roles"]) == ("polsar", ["quad", "single"])
    result = polsar(scene["quad"], scene["single"], tmp_path / "w.tif", method="spaxfus",
                    method_options={"weights": weights})
    with rasterio.open(result.output) as src:
        assert is_psd(src.read().astype(np.float64), tol=1e-4).all()
    other = tmp_path / "pansharpen-card.safetensors"
    model = create_model("spaxfus", card["config_name"], **card["config"])
    save_weights(model, other, {**card, "task": "pansharpen", "roles": ["ms", "pan"]})
    with pytest.raises(SpatialxError, match="trained for pansharpen with inputs ms, pan, not polsar"):
        polsar(scene["quad"], scene["single"], tmp_path / "x.tif", method="spaxfus",
               method_options={"weights": other})
    assert not (tmp_path / "x.tif").exists()


def test_polsar_without_weights_or_adaptation_is_refused(scene, tmp_path):
    with pytest.raises(MethodError, match="no bundled weights for polsar"):
        polsar(scene["quad"], scene["single"], tmp_path / "n.tif", method="spaxfus")
    with pytest.raises(MethodError, match="implemented for pansharpening only"):
        polsar(scene["quad"], scene["single"], tmp_path / "f.tif", method="spaxfus",
               method_options={"adapt_steps": 1, "adapt_loss": "full", **TINY})
