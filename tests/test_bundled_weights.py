"""Default weights shipped with the package: present, verified, used when no --weights is given, and honest cards."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import rasterio
import torch
from scenes import write_hmif_pair

from spatialx.errors import MethodError, ReadError
from spatialx.methods import create_method
from spatialx.models import bundled
from spatialx.models.bundled import describe_bundled, find_bundled, list_bundled
from spatialx.models.weights import load_model, sha256
from spatialx.sample import write_sample
from spatialx.sensors import get_sensor
from spatialx.tasks.pansharpen import pansharpen

pytestmark = pytest.mark.usefixtures("torch_single_thread")

#: name -> (architecture, bands, sensors its card must name as training data)
EXPECTED = {
    "pnn-wv3": ("pnn", 8, ("wv2", "wv3")),
    "pnn-qb": ("pnn", 4, ("qb", "geoeye1", "ikonos", "gf2")),
    "lemamba-wv3": ("lemamba", 8, ("wv2", "wv3")),
    "lemamba-qb": ("lemamba", 4, ("qb", "geoeye1", "ikonos", "gf2")),
    "spaxfus-qb": ("spaxfus", 4, ("qb", "geoeye1", "ikonos", "gf2")),
    "spaxfus-wv3": ("spaxfus", 8, ("wv2", "wv3")),
    "rwkvfusion-wv3": ("rwkvfusion", 8, ("wv2", "wv3")),
    "rwkvfusion-qb": ("rwkvfusion", 4, ("qb", "geoeye1", "ikonos", "gf2")),
}
#: A task and inputs no bundled weights fit: PRISMA + Sentinel-2 hyperspectral fusion.
HMIF_SENSORS = {"hs": "prisma_l2d", "ms": "s2_l2a"}


@pytest.fixture(scope="module")
def qb_scene(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("qb"), sensor="qb", size=64, seed=11)


@pytest.fixture(scope="module")
def wv3_scene(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("wv3"), sensor="wv3", size=64, seed=12)


def params_of(path):
    with rasterio.open(path) as src:
        return json.loads(src.tags()["SPATIALX_PARAMS"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_weights_load_verified_and_state_their_training_data(name):
    architecture, bands, sensors = EXPECTED[name]
    found = find_bundled(architecture, "pansharpen", bands)
    assert found is not None and found.path.stem == name
    assert found.path.stat().st_size < 10e6  # a few MB at most
    model, card = load_model(found.path, architecture=architecture, bands=bands)  # sha256 checked against the card
    assert all(p.dtype == torch.float32 for p in model.state_dict().values() if p.is_floating_point())
    assert json.loads(found.path.with_suffix(".json").read_text())["sha256"] == sha256(found.path)
    training = card["training"]
    assert training["steps"] > 0 and training["script"] == "scripts/train_default_weights.py"
    assert training["command"].startswith("python scripts/train_default_weights.py")
    for key in ("patch", "batch_size", "lr", "seed", "loss"):
        assert training[key] is not None, key
    sources = training["data"]["sources"]
    generated = [s for s in sources if s["kind"] == "generated"]
    assert tuple(s["sensor"] for s in generated) == sensors
    assert all(s["seeds"] and 0 not in s["seeds"] and s["size_px"] for s in generated)  # seed 0: the demo's
    real = [s for s in sources if s["kind"] == "real"]
    if bands == 4:  # the real QuickBird pair, its northern half only (the benchmark judges the southern half)
        assert real and real[0]["files"] == ["qb_toulouse_pan.tif", "qb_toulouse_xs.tif"]
        assert "northern half" in real[0]["rows"]
    else:
        assert not real
    for sensor in sensors:  # validation on a held-out generated scene of each sensor: better than exp
        figures = card["validation"][sensor]
        assert figures["network"]["Q2n"] > figures["exp"]["Q2n"] and figures["network"]["SAM"] > 0


def test_networks_without_weights_use_the_bundled_ones(qb_scene, tmp_path):
    result = pansharpen(qb_scene["pan"], qb_scene["ms"], tmp_path / "o.tif", "qb", "pnn", tile=64)
    params = params_of(result.output)
    expected = find_bundled("pnn", "pansharpen", 4)
    assert params["weights"] == "pnn-qb.safetensors" and params["weights_source"] == "bundled"
    assert params["weights_sha256"] == expected.sha256 == sha256(expected.path)
    with rasterio.open(result.output) as src:
        fused = src.read().astype(np.float64)
    assert np.isfinite(fused).all() and fused.min() >= 1


def test_lemamba_runs_out_of_the_box_at_64_px(wv3_scene, tmp_path):
    result = pansharpen(wv3_scene["pan"], wv3_scene["ms"], tmp_path / "l.tif", "wv3", "lemamba", tile=64,
                        dtype="float32")
    params = params_of(result.output)
    assert params["weights"] == "lemamba-wv3.safetensors" and params["weights_source"] == "bundled"
    with rasterio.open(result.output) as src, rasterio.open(wv3_scene["reference"]) as ref:
        fused, truth = src.read().astype(np.float64), ref.read().astype(np.float64)
    assert fused.shape == truth.shape and np.isfinite(fused).all()
    assert np.corrcoef(fused.ravel(), truth.ravel())[0, 1] > 0.9


def test_adaptation_fine_tunes_the_bundled_weights_unless_scratch_or_config():
    qb = get_sensor("qb")
    tuned = create_method("pnn", qb, 4, adapt_steps=2)
    assert tuned.weights_source == "bundled" and tuned.adapt_lr == pytest.approx(1e-4)
    assert tuned.params()["weights"] == "pnn-qb.safetensors"
    fresh = create_method("pnn", qb, 4, adapt_steps=2, scratch=True)
    assert fresh.weights_source == "scratch" and fresh.adapt_lr == pytest.approx(1e-3)
    assert fresh.params()["weights"] is None and "weights_sha256" not in fresh.params()
    configured = create_method("pnn", qb, 4, adapt_steps=2, config="qb")
    assert configured.weights_source == "scratch"
    with pytest.raises(MethodError, match="--adapt-steps"):
        create_method("pnn", qb, 4, scratch=True)
    with pytest.raises(MethodError, match="--weights"):
        create_method("pnn", qb, 4, config="qb")  # a fresh network is never run untrained


def test_a_network_without_bundled_weights_is_a_clear_error():
    with pytest.raises(MethodError, match="no bundled weights") as raised:
        create_method("lemamba", HMIF_SENSORS, 3, task="hmif")
    assert "pnn-wv3" in str(raised.value) and "239-band HS" in str(raised.value)
    assert "pnn-wv3 (pansharpen, 8 bands)" in describe_bundled()
    assert create_method("lemamba", HMIF_SENSORS, 3, task="hmif", adapt_steps=1).weights_source == "scratch"


def test_tampered_or_uncarded_bundled_weights_are_refused(tmp_path, monkeypatch):
    source = find_bundled("pnn", "pansharpen", 4).path
    copy = tmp_path / source.name
    shutil.copy(source, copy)
    shutil.copy(source.with_suffix(".json"), copy.with_suffix(".json"))
    monkeypatch.setattr(bundled, "BUNDLED_DIR", tmp_path)
    assert [w.name for w in list_bundled()] == [source.name]
    data = bytearray(copy.read_bytes())
    data[-10] ^= 0xFF  # one flipped byte in the tensors
    copy.write_bytes(bytes(data))
    with pytest.raises(ReadError, match="sha256"):
        create_method("pnn", get_sensor("qb"), 4)
    copy.with_suffix(".json").unlink()  # no card: not offered at all
    with pytest.raises(MethodError, match="no bundled weights"):
        create_method("pnn", get_sensor("qb"), 4)


def error_line(result, *fragments: str) -> str:
    """The run failed as a user error: status 2, one line, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert lines[0].startswith("spatialx: error: ") and all(f in lines[0] for f in fragments), lines[0]
    return lines[0]


def test_cli_bundled_weights_scratch_and_errors(qb_scene, wv3_scene, tmp_path, spatialx):
    done = spatialx("pansharpen", qb_scene["pan"], qb_scene["ms"], "o.tif", "-s", "qb", "-m", "pnn", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "weights: bundled pnn-qb.safetensors" in " ".join((done.stdout + done.stderr).split())
    error_line(spatialx("pansharpen", qb_scene["pan"], qb_scene["ms"], "s.tif", "-s", "qb", "-m", "pnn", "--scratch",
                        cwd=tmp_path), "--scratch", "--adapt-steps")
    (tmp_path / "hmif").mkdir()
    hmif = write_hmif_pair(tmp_path / "hmif", 48)
    error_line(spatialx("hmif", hmif["hs"], hmif["ms"], "x.tif", "-m", "lemamba", cwd=tmp_path),
               "no bundled weights", "pnn-wv3")
    error_line(spatialx("evaluate", "reduced", qb_scene["pan"], qb_scene["ms"], "-s", "qb", "-m", "pnn", "--scratch",
                        cwd=tmp_path), "--adapt-steps")
    assert not (tmp_path / "s.tif").exists() and not (tmp_path / "x.tif").exists()


def test_models_lists_the_bundled_weights(tmp_path, spatialx, monkeypatch):
    from spatialx.cli import models

    # the network sizes (a minute of FLOP counting) are another test's business
    monkeypatch.setattr(models, "_network_rows", lambda: ([], {name: {"params": 1, "gflops": 1.0, "tasks": []}
                                                              for name in ("pnn", "lemamba", "spaxfus")}))
    done = spatialx("models", "--json", "models.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Bundled weights" in done.stdout and "lemamba-qb" in done.stdout
    entries = json.loads((tmp_path / "models.json").read_text())
    listed = {row["file"]: row for row in entries["lemamba"]["bundled"]}
    assert set(listed) == {"lemamba-qb.safetensors", "lemamba-wv3.safetensors"}
    assert listed["lemamba-qb.safetensors"]["bands"] == 4 and "QuickBird" in listed["lemamba-qb.safetensors"]["summary"]
    assert len(listed["lemamba-qb.safetensors"]["sha256"]) == 64


def test_mixed_streams_are_reproducible_and_follow_their_shares():
    from spatialx.training.data import ArrayScene, PatchStream, RandomPatchSampler, WaldPatchDataset, mix_streams

    rng = np.random.default_rng(0)
    streams = []
    for sensor in ("qb", "gf2"):
        top = get_sensor(sensor).max_value
        pan = rng.uniform(1, top, (1, 128, 128)).astype(np.float32)
        ms = rng.uniform(1, top, (4, 32, 32)).astype(np.float32)
        dataset = WaldPatchDataset([ArrayScene(pan, ms)], sensor)
        streams.append(PatchStream(dataset, RandomPatchSampler(dataset, 16, seed=0)))
    first, second = mix_streams(streams, [3, 1], seed=5), mix_streams(streams, [3, 1], seed=5)
    for k in (0, 7, 123):
        a, b = first[k], second[k]
        assert all(torch.equal(a[key], b[key]) for key in a)
    sources = [first.sampler.query(k)[0] for k in range(400)]
    assert 0.65 < sources.count(0) / len(sources) < 0.85
    assert first.bands == 4 and first.ratio == 4 and first.max_value is None  # qb 2047, gf2 1023


def test_training_script_refuses_init_weights_it_cannot_continue(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "train_default_weights.py"
    spec = importlib.util.spec_from_file_location("train_default_weights", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    not_weights = tmp_path / "notes.safetensors"
    not_weights.write_text("not a safetensors file")
    pnn = str(find_bundled("pnn", "pansharpen", 4).path)
    cases = [
        (["--only", "spaxfus-qb", "--init", str(tmp_path / "missing.safetensors")], "no such file"),
        (["--only", "spaxfus-qb", "--init", str(not_weights)], "not a valid safetensors file"),
        (["--only", "spaxfus-qb", "--init", pnn], "weights of 'pnn', not 'spaxfus'"),
        (["--only", "pnn-qb", "--init", pnn], "continues another"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            script.main([*argv, "--out", str(tmp_path / "out")])
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert exit_info.value.code == 2 and message in error, error
    assert not (tmp_path / "out").exists()
