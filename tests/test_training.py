"""Training: PNN, PanCollection HDF5 and Wald-patch data, the loop (EMA, checkpoints, exact resume), weights
files, scene adaptation, and ``spatialx train``. Small networks and patches so that all of it runs in seconds on
a CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from spatialx.errors import InputMismatchError, OutputError, ReadError, SpatialxError
from spatialx.models.registry import create_model, get_model_spec
from spatialx.models.weights import load_model, save_weights
from spatialx.protocols import reduce_scene
from spatialx.sample import generate_scene, write_sample
from spatialx.sensors import get_sensor
from spatialx.training.adapt import adapt
from spatialx.training.data import (
    ArrayScene,
    GridPatchSampler,
    PanCollectionDataset,
    PatchQuery,
    PatchStream,
    RandomPatchSampler,
    WaldPatchDataset,
    wald_patches,
)
from spatialx.training.loop import read_checkpoint, train, train_model, validate

QB = get_sensor("qb")
PATCH = 32


pytestmark = pytest.mark.usefixtures("torch_single_thread")


def small_pnn(seed: int = 0, bands: int = 4) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("pnn", "qb", bands=bands, width1=16, width2=16)


def state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def h5_file(tmp_path_factory) -> Path:
    """A PanCollection-format file: 16 reduced-resolution 32-px patches of a synthetic QuickBird scene."""
    import h5py

    scene = generate_scene("qb", 512, seed=3)
    reduced = reduce_scene(scene.pan[None], scene.ms, QB.mtf_gains, 4, 4)
    rows = {key: [] for key in ("gt", "ms", "lms", "pan")}
    for i in range(0, 128, PATCH):
        for j in range(0, 128, PATCH):
            window = np.s_[:, i:i + PATCH, j:j + PATCH]
            rows["gt"].append(reduced.reference[window])
            rows["lms"].append(reduced.ms_up[window])
            rows["pan"].append(reduced.pan[window])
            rows["ms"].append(reduced.ms_lr[:, i // 4:(i + PATCH) // 4, j // 4:(j + PATCH) // 4])
    path = tmp_path_factory.mktemp("h5") / "train.h5"
    with h5py.File(path, "w") as handle:
        for key, values in rows.items():
            handle.create_dataset(key, data=np.stack(values).astype(np.float64))
    return path


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory) -> dict[str, Path]:
    return write_sample(tmp_path_factory.mktemp("scene"), "qb", 512, seed=5)


# ------------------------------------------------------------------------------------------------------ PNN
def test_pnn_registered_with_sensor_configs():
    spec = get_model_spec("pnn")
    assert spec.tasks == ("pansharpen",)
    assert {name: cfg["bands"] for name, cfg in spec.configs.items()} == {"wv3": 8, "qb": 4, "gf2": 4}
    model = create_model("pnn", "wv3")
    assert sum(p.numel() for p in model.parameters()) == (9 * 9 * 9 * 64 + 64) + (64 * 5 * 5 * 32 + 32) + (
        32 * 5 * 5 * 8 + 8)
    lms, pan = torch.rand(2, 8, 24, 24), torch.rand(2, 1, 24, 24)
    assert model(lms, pan).shape == lms.shape
    with torch.no_grad():  # residual on lms: a zero last layer returns the upsampled MS unchanged
        model.conv3.weight.zero_()
        model.conv3.bias.zero_()
    assert torch.equal(model(lms, pan), lms)
    with pytest.raises(ValueError, match="expects"):
        model(torch.rand(1, 4, 24, 24), torch.rand(1, 1, 24, 24))


# --------------------------------------------------------------------------------------------- PanCollection
def test_pancollection_dataset_reads_lazily_and_scales(h5_file):
    data = PanCollectionDataset(h5_file, QB.max_value)
    assert (len(data), data.bands, data.patch, data.ratio) == (16, 4, PATCH, 4)
    example = data[5]
    assert {k: tuple(v.shape) for k, v in example.items()} == {
        "target": (4, 32, 32), "ms_native": (4, 8, 8), "ms": (4, 32, 32), "pan": (1, 32, 32)}
    assert all(v.dtype == torch.float32 for v in example.values())
    assert 0.0 < float(example["target"].mean()) < 1.0
    batch = data.__getitems__([7, 2, 7])
    assert torch.equal(batch[0]["pan"], data[7]["pan"]) and torch.equal(batch[1]["target"], data[2]["target"])
    import pickle  # the dataset must travel to DataLoader workers (the h5py handle is reopened there)

    data2 = pickle.loads(pickle.dumps(data))
    assert torch.equal(data2[3]["ms"], data[3]["ms"])


def test_pancollection_errors_name_the_file(tmp_path, h5_file):
    import h5py

    with pytest.raises(ReadError, match="does not exist") as info:
        PanCollectionDataset(tmp_path / "missing.h5", 2047)
    assert "missing.h5" in str(info.value)
    not_h5 = tmp_path / "text.h5"
    not_h5.write_text("hello")
    with pytest.raises(ReadError, match="not a readable HDF5 file") as info:
        PanCollectionDataset(not_h5, 2047)
    assert "text.h5" in str(info.value)
    lacking = tmp_path / "lacking.h5"
    with h5py.File(lacking, "w") as handle:
        handle["gt"] = np.zeros((2, 4, 16, 16))
        handle["lms"] = np.zeros((2, 4, 16, 16))
    with pytest.raises(ReadError, match=r"lacks the key.*pan") as info:
        PanCollectionDataset(lacking, 2047)
    assert "lacking.h5" in str(info.value)
    wrong = tmp_path / "wrong.h5"
    with h5py.File(wrong, "w") as handle:
        handle["gt"] = np.zeros((2, 4, 16, 16))
        handle["lms"] = np.zeros((2, 4, 16, 16))
        handle["pan"] = np.zeros((2, 1, 8, 8))
    with pytest.raises(ReadError, match="pan is not N x 1 x H x W"):
        PanCollectionDataset(wrong, 2047)


def test_training_on_pancollection_reduces_the_loss(h5_file):
    data = PanCollectionDataset(h5_file, QB.max_value)
    model = small_pnn()
    before = validate(model, data, max_value=QB.max_value, ratio=4, batch_size=8)
    calls = []
    result = train(model, data, steps=30, batch_size=4, seed=1, ema=0.9, val_data=data, val_every=15,
                   progress=lambda *args: calls.append(args))
    after = validate(model, data, max_value=QB.max_value, ratio=4, batch_size=8)
    assert len(result.losses) == 30 and result.steps == 30
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10])
    assert after["loss"] < 0.8 * before["loss"]
    assert after["ERGAS"] < before["ERGAS"] and after["Q2n"] > before["Q2n"]
    assert set(result.val_metrics) == {"loss", "Q2n", "SAM", "ERGAS", "SCC", "PSNR"}
    assert [step for step, _ in result.val_history] == [15, 30]
    assert result.val_metrics == pytest.approx(after)  # the model holds the EMA weights that were validated
    assert [c[0] for c in calls] == list(range(1, 31)) and all(c[1] == 30 and c[3] > 0 for c in calls)
    assert calls[14][4] is not None and calls[13][4] is None


# ----------------------------------------------------------------------------------------------- Wald patches
def test_wald_sampler_is_deterministic_and_aligned(scene_files):
    data = WaldPatchDataset([(scene_files["pan"], scene_files["ms"])], "qb")
    sampler = RandomPatchSampler(data, PATCH, seed=7, length=6)
    queries = list(sampler)
    assert queries == list(RandomPatchSampler(data, PATCH, seed=7, length=6))
    assert queries != list(RandomPatchSampler(data, PATCH, seed=8, length=6))
    assert sampler.query(1000) == RandomPatchSampler(data, PATCH, seed=7).query(1000)  # stateless in k
    for q in queries:
        assert q.row % 4 == 0 and q.col % 4 == 0 and 0 <= q.row <= 128 - PATCH and 0 <= q.col <= 128 - PATCH
    a, b = PatchStream(data, sampler), PatchStream(data, RandomPatchSampler(data, PATCH, seed=7))
    for k in (0, 3):
        ea, eb = a[k], b[k]
        assert {key: tuple(v.shape) for key, v in ea.items()} == {
            "target": (4, 32, 32), "ms": (4, 32, 32), "pan": (1, 32, 32), "ms_native": (4, 8, 8)}
        assert all(torch.equal(ea[key], eb[key]) for key in ea)
        assert all(v.dtype == torch.float32 and float(v.max()) <= 1.0 for v in ea.values())


def test_wald_patches_are_crops_of_the_whole_scene_protocol(scene_files):
    """Away from the scene's edges an example is the crop of Wald's protocol run on the whole scene; files and
    in-memory arrays give the same examples."""
    with rasterio.open(scene_files["pan"]) as src:
        pan = src.read().astype(np.float32)
    with rasterio.open(scene_files["ms"]) as src:
        ms = src.read().astype(np.float32)
    whole = reduce_scene(pan, ms, QB.mtf_gains, 4, 4)
    from_files = WaldPatchDataset([(scene_files["pan"], scene_files["ms"])], QB)
    from_arrays = WaldPatchDataset([ArrayScene(pan, ms)], QB)
    query = PatchQuery(0, 48, 64, PATCH)
    example, same = from_files[query], from_arrays[query]
    assert all(torch.equal(example[key], same[key]) for key in example)
    window = np.s_[:, 48:48 + PATCH, 64:64 + PATCH]
    expected = {"target": whole.reference[window], "pan": whole.pan[window], "ms": whole.ms_up[window],
                "ms_native": whole.ms_lr[:, 12:20, 16:24]}
    for key, reference in expected.items():
        np.testing.assert_allclose(example[key].numpy() * QB.max_value, reference, atol=1e-3, err_msg=key)


def test_held_out_patches_do_not_overlap_training_windows(scene_files):
    train_stream, val = wald_patches([(scene_files["pan"], scene_files["ms"])], "qb", patch=PATCH, seed=0,
                                     holdout=0.3, val_patches=4)
    assert val is not None and len(val) == 4
    first_val_row = min(q.row for q in val.sampler)
    assert all(train_stream.sampler.query(k).row + PATCH <= first_val_row for k in range(200))
    with pytest.raises(InputMismatchError, match="large enough"):
        RandomPatchSampler(train_stream.dataset, 512)
    with pytest.raises(SpatialxError, match="multiple of the ratio"):
        GridPatchSampler(train_stream.dataset, 30)


def test_wald_patches_export_to_pancollection(tmp_path, scene_files):
    from spatialx.training.data import write_pancollection

    stream, _ = wald_patches([(scene_files["pan"], scene_files["ms"])], "qb", patch=PATCH, seed=1)
    examples = [stream[k] for k in range(3)]
    data = PanCollectionDataset(write_pancollection(tmp_path / "x.h5", examples, QB.max_value), QB.max_value)
    assert (len(data), data.ratio) == (3, 4)
    for example, back in zip(examples, data.__getitems__([0, 1, 2]), strict=True):
        for key in example:
            torch.testing.assert_close(back[key], example[key], rtol=1e-6, atol=1e-7)


def test_nodata_windows_are_redrawn():
    scene = generate_scene("qb", 256, seed=2)
    ms = scene.ms.copy()
    ms[:, :16, :] = 0  # the top quarter of the MS is nodata
    data = WaldPatchDataset([ArrayScene(scene.pan, ms, nodata=0)], "qb")
    stream = PatchStream(data, RandomPatchSampler(data, 16, seed=0))
    assert data.example(PatchQuery(0, 8, 8, 16), require_valid=True) is None
    assert all(float(stream[k]["target"].min()) > 0 for k in range(6))


# ---------------------------------------------------------------------------------------- checkpoint / resume
class DropoutPNN(torch.nn.Module):
    """PNN behind a dropout layer: training draws from the global RNG, as drop-path networks do."""

    def __init__(self, seed: int):
        super().__init__()
        self.net = small_pnn(seed)

    def forward(self, lms, pan):
        return self.net(torch.nn.functional.dropout(lms, 0.2, self.training), pan)


def test_resume_continues_bit_identically(tmp_path, h5_file):
    data = PanCollectionDataset(h5_file, QB.max_value)
    kwargs = {"batch_size": 3, "seed": 4, "ema": 0.9, "lr": 2e-3}
    whole = train(DropoutPNN(1), data, steps=7, **kwargs)
    checkpoint = tmp_path / "run.ckpt.safetensors"
    first = train(DropoutPNN(1), data, steps=3, checkpoint=checkpoint, **kwargs)
    tensors, info = read_checkpoint(checkpoint)
    assert info["step"] == 3 and info["batch_size"] == 3 and "torch" in info["rng"]
    assert any(k.startswith("ema/") for k in tensors) and any(k.startswith("optim/") for k in tensors)
    assert not state_equal(first.model, whole.model)
    resumed = train(DropoutPNN(99), data, steps=7, resume=checkpoint, **kwargs)  # other init: all state is loaded
    assert resumed.start_step == 3 and resumed.steps == 7 and len(resumed.losses) == 4
    assert resumed.losses == whole.losses[3:]
    assert state_equal(resumed.model, whole.model)
    with pytest.raises(ReadError, match="does not fit"):
        train(small_pnn(), data, steps=8, resume=checkpoint, **kwargs)
    save_weights(small_pnn(), tmp_path / "w.safetensors", {"architecture": "pnn", "config": {"bands": 4}})
    with pytest.raises(ReadError, match="not a spatialx training checkpoint"):
        train(DropoutPNN(0), data, steps=8, resume=tmp_path / "w.safetensors", **kwargs)


# ------------------------------------------------------------------------------------------------ weights
def test_weights_round_trip_and_bad_files(tmp_path):
    model = small_pnn(2)
    path = save_weights(model, tmp_path / "pnn.safetensors",
                        {"architecture": "pnn", "config": {"bands": 4, "ratio": 4, "width1": 16, "width2": 16}})
    loaded, card = load_model(path, architecture="pnn", bands=4)
    assert state_equal(loaded, model) and card["config"]["width1"] == 16
    with pytest.raises(ReadError, match="does not exist"):
        load_model(tmp_path / "absent.safetensors")
    with pytest.raises(ReadError, match="for 4 bands"):
        load_model(path, bands=8)
    mismatched = save_weights(model, tmp_path / "mismatch.safetensors",
                              {"architecture": "pnn", "config": {"bands": 4, "ratio": 4}})  # default widths
    with pytest.raises(ReadError, match="do not fit"):
        load_model(mismatched)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReadError, match=r"truncated\.safetensors"):
        load_model(truncated)
    path.write_bytes(data[:-4] + b"\0\0\0\0")  # same length, other bytes: the card's sha256 catches it
    with pytest.raises(ReadError, match="sha256"):
        load_model(path)


# ------------------------------------------------------------------------------------------------ adaptation
def test_adaptation_reduces_the_reduced_resolution_loss():
    scene = generate_scene("qb", 256, seed=11)
    model = small_pnn(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = adapt(model, scene.pan[None], scene.ms, "qb", steps=12, patch=PATCH, batch_size=4, lr=2e-3, seed=0)
    assert stats["final_loss"] < 0.8 * stats["initial_loss"]
    assert stats["steps"] == 12 and stats["patch"] == PATCH and stats["seconds"] > 0
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # fine-tuned in place
    tiny = generate_scene("qb", 64, seed=1)  # MS 16 x 16: the patch shrinks to fit
    assert adapt(small_pnn(), tiny.pan, tiny.ms, "qb", steps=1, batch_size=2)["patch"] == 16


# --------------------------------------------------------------------------------------------- spatialx train
def test_train_model_writes_weights_and_card(tmp_path, scene_files):
    out = tmp_path / "pnn-qb.safetensors"
    done = train_model(out, model="pnn", sensor="qb", scenes=[(scene_files["pan"], scene_files["ms"])],
                       steps=3, batch_size=2, patch=PATCH, device="cpu", val_patches=2)
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["architecture"] == "pnn" and card["config_name"] == "qb" and card["sensor"] == "qb"
    assert card["config"] == {"bands": 4, "ratio": 4} and card["training"]["steps"] == 3
    assert card["training"]["data"]["kind"] == "wald-patches"
    assert set(card["validation"]) == {"loss", "Q2n", "SAM", "ERGAS", "SCC", "PSNR"}
    model, _ = load_model(out, architecture="pnn", bands=4)
    assert state_equal(model, done.result.model)
    again = train_model(tmp_path / "again.safetensors", sensor="qb", device="cpu", steps=3, batch_size=2,
                        patch=PATCH, val_patches=2, scenes=[(scene_files["pan"], scene_files["ms"])])
    assert state_equal(again.result.model, model)  # the seed fixes the initial weights and the patches
    with pytest.raises(OutputError, match="exists"):
        train_model(out, sensor="qb", scenes=[(scene_files["pan"], scene_files["ms"])], steps=1)
    with pytest.raises(OutputError, match=r"\.safetensors"):
        train_model(tmp_path / "w.pt", sensor="qb", scenes=[(scene_files["pan"], scene_files["ms"])], steps=1)
    with pytest.raises(SpatialxError, match="either --h5"):
        train_model(tmp_path / "x.safetensors", sensor="qb", steps=1)
    with pytest.raises(InputMismatchError, match="8 bands"):
        train_model(tmp_path / "y.safetensors", sensor="qb", config="wv3",
                    scenes=[(scene_files["pan"], scene_files["ms"])], steps=1)


def test_train_command_line(tmp_path, h5_file, scene_files):
    import typer
    from typer.testing import CliRunner

    from spatialx.cli import train as train_cli

    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("train", cls=train_cli.TrainCommand)(train_cli.command)
    app.command("other")(lambda: None)
    out = tmp_path / "h5.safetensors"
    ckpt = tmp_path / "h5.ckpt.safetensors"
    result = CliRunner().invoke(app, ["train", str(out), "--h5", str(h5_file), "--sensor", "qb", "--steps", "2",
                                      "--batch", "2", "--device", "cpu", "--checkpoint", str(ckpt), "--quiet"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and ckpt.is_file()
    assert json.loads(out.with_suffix(".json").read_text())["training"]["data"]["kind"] == "pancollection-h5"
    result = CliRunner().invoke(app, ["train", str(tmp_path / "s.safetensors"), "--scene", str(scene_files["pan"]),
                                      str(scene_files["ms"]), "--sensor", "qb", "--steps", "1", "--batch", "1",
                                      "--patch", "32", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    assert train_cli.join_scene_pairs(["o", "--scene", "a", "b", "--scene=c", "d", "--", "--scene"]) == [
        "o", "--scene", "a\0b", "--scene=c\0d", "--", "--scene"]
    with pytest.raises(SpatialxError, match="PAN MS"):
        train_cli.split_scene_pairs(["only-one"])
