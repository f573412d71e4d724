"""Networks on stfuse: SpaXFus's spatio-temporal configuration behind the stfuse adapter (the nearest pair's fine
image and the coarse images of its date and the prediction date in, the t2 half of the output kept), and scene
adaptation on the triples of the run's own pairs."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from spatialx.errors import MethodError, SpatialxError
from spatialx.models.registry import get_model_spec
from spatialx.sample import STFUSE_BANDS, STFUSE_DATES, STFUSE_PREDICT, write_stfuse_sample
from spatialx.tasks.stfuse import stfuse
from spatialx.training.loop import train_model
from spatialx.training.temporal import TemporalPatchDataset, TemporalPatchSampler, temporal_patch

T1, T2, T3 = STFUSE_DATES
TINY = {"config": "stfuse-tiny", "adapt_patch": 16, "adapt_batch": 2}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_stfuse_sample(tmp_path_factory.mktemp("stfuse-net") / "scene", size=64, seed=4)


def run(scene, out, method="spaxfus", pairs=("fine_t1", "fine_t3"), **options):
    coarse = [scene[f"coarse_{p.split('_')[1]}"] for p in pairs] + [scene["coarse_t2"]]
    return stfuse(out, [scene[p] for p in pairs], coarse, STFUSE_PREDICT, method=method,
                  fine_bands=",".join(STFUSE_BANDS), method_options=options)


def test_spaxfus_stfuse_configuration_is_the_notes_and_takes_the_band_count():
    spec = get_model_spec("spaxfus")
    assert {k: spec.config("stfuse")[k] for k in ("bands", "guide_bands", "ratio", "mid", "groups")} == \
        {"bands": 8, "guide_bands": 4, "ratio": 16, "mid": 48, "groups": 2}  # the notes' (4, 8, 16, 48, 2)
    name, kwargs = spec.config_for("stfuse", 12, 6, ratio=15)
    assert name == "stfuse" and (kwargs["bands"], kwargs["guide_bands"], kwargs["ratio"]) == (12, 6, 15)
    assert spec.config_for("hmif", 8, 1)[0] == "hmif"  # a pansharpening configuration never serves another task


def test_triples_pair_every_ordered_two_dates_and_avoid_clouds():
    rng = np.random.default_rng(0)
    fines = [rng.random((2, 40, 40), dtype=np.float32) for _ in range(3)]
    coarses = [rng.random((2, 40, 40), dtype=np.float32) for _ in range(3)]
    fines[1][:, :, :20] = np.nan  # the left half of date 1 is cloudy
    dataset = TemporalPatchDataset(fines, coarses, ratio=4)
    sampler = TemporalPatchSampler(dataset, 16, seed=3)
    assert sorted(sampler.pairs) == [(a, b) for a in range(3) for b in range(3) if a != b]
    seen = set()
    for k in range(60):
        query = sampler.query(k)
        assert query == TemporalPatchSampler(dataset, 16, seed=3).query(k)  # a function of (seed, k)
        example = dataset[query]
        window = np.s_[:, query.row:query.row + 16, query.col:query.col + 16]
        np.testing.assert_array_equal(example["fine"], fines[query.a][window])
        np.testing.assert_array_equal(example["coarse"], np.concatenate([coarses[query.a][window],
                                                                         coarses[query.b][window]]))
        np.testing.assert_array_equal(example["target"], np.concatenate([fines[query.a][window],
                                                                         fines[query.b][window]]))
        seen.add((query.a, query.b))
    assert len(seen) == 6
    assert temporal_patch(15, 16) == 60 and temporal_patch(4, 18) == 20


def test_spaxfus_adapts_on_the_series_and_predicts_the_date(scene, tmp_path):
    result = run(scene, tmp_path / "net.tif", adapt_steps=4, **TINY)
    with rasterio.open(result.output) as src, rasterio.open(scene["reference"]) as reference:
        assert src.transform == reference.transform and src.crs == reference.crs
        assert src.count == len(STFUSE_BANDS)
        fused = src.read()
    assert np.isfinite(fused).all() and fused.min() >= 0.0 and fused.max() <= 1.0
    params = result.params
    assert (params["pair"], params["predict"]) == (T1, T2)  # T1 is 32 days before T2, T3 32 after: the first
    assert params["config"]["bands"] == 2 * len(STFUSE_BANDS) and params["config"]["ratio"] >= 15
    adaptation = params["adaptation"]
    assert adaptation["task"] == "stfuse" and adaptation["pairs"] == 2 and adaptation["steps"] == 4
    assert adaptation["patch"] % params["config"]["ratio"] == 0


def test_one_pair_or_no_weights_is_refused_in_one_line(scene, tmp_path):
    with pytest.raises(SpatialxError, match="two or more fine/coarse pairs of one date series; this one has one"):
        run(scene, tmp_path / "one.tif", pairs=("fine_t1",), adapt_steps=2, **TINY)
    with pytest.raises(MethodError, match="no bundled weights for stfuse"):
        run(scene, tmp_path / "none.tif")
    assert not list(tmp_path.iterdir())


def test_weights_trained_on_a_series_fuse_it_and_say_their_task(scene, tmp_path):
    weights = tmp_path / "spaxfus-stfuse.safetensors"
    done = train_model(weights, model="spaxfus", config="stfuse-tiny", task="stfuse",
                       scenes=[(scene["fine_t1"], scene["coarse_t1"]), (scene["fine_t3"], scene["coarse_t3"])],
                       select_bands={"fine": ",".join(STFUSE_BANDS)}, steps=2, batch_size=2, patch=16, device="cpu")
    card = done.card
    assert (card["task"], card["roles"], card["bands"]) == ("stfuse", ["coarse", "fine"], list(STFUSE_BANDS))
    assert card["training"]["data"]["dates"] == [T1, T3]
    assert card["config"]["bands"] == 2 * len(STFUSE_BANDS) and card["config"]["ratio"] >= 15
    result = run(scene, tmp_path / "w.tif", weights=weights)
    assert result.params["weights_source"] == "file"
    with rasterio.open(result.output) as src:
        fused = src.read()
    assert np.isfinite(fused).mean() > 0.9
    with pytest.raises(SpatialxError, match="one date series"):
        train_model(tmp_path / "one.safetensors", model="spaxfus", config="stfuse-tiny", task="stfuse",
                    scenes=[(scene["fine_t1"], scene["coarse_t1"])], select_bands={"fine": ",".join(STFUSE_BANDS)},
                    steps=1, device="cpu")
