"""Per-network training recipes (Adamax, OneCycle, augmentation, exact resume) and full-resolution adaptation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import torch
from typer.testing import CliRunner

from spatialx.errors import SpatialxError
from spatialx.models.registry import create_model
from spatialx.protocols import reduce_scene
from spatialx.sample import generate_scene, write_sample
from spatialx.sensors import get_sensor
from spatialx.training.data import ArrayScene, AugmentedStream, symmetry
from spatialx.training.fullres import (
    FullResolutionLoss,
    FullResolutionPatches,
    FullResolutionStream,
    default_adapt_loss,
)
from spatialx.training.loop import read_checkpoint, train, train_model
from spatialx.training.recipes import recipe_for

QB = get_sensor("qb")
pytestmark = pytest.mark.usefixtures("torch_single_thread")


def state_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def examples():
    scene = generate_scene("qb", 256, seed=5)
    reduced = reduce_scene(scene.pan[None], scene.ms, QB.mtf_gains, 4, 4)
    out = []
    for i in range(0, 64, 32):
        for j in range(0, 64, 32):
            out.append({"target": torch.from_numpy(reduced.reference[:, i:i + 32, j:j + 32] / QB.max_value),
                        "ms": torch.from_numpy(reduced.ms_up[:, i:i + 32, j:j + 32] / QB.max_value),
                        "pan": torch.from_numpy(reduced.pan[:, i:i + 32, j:j + 32] / QB.max_value)})
    return out


def test_recipes_per_network():
    assert recipe_for("pnn")["optimizer"] == "adamw" and recipe_for("pnn")["lr"] == 1e-3
    spax = recipe_for("spaxfus")
    assert (spax["optimizer"], spax["schedule"], spax["lr"], spax["clip"], spax["loss"], spax["augment"]) == \
        ("adamax", "onecycle", 1e-4, 0.1, "l1", True)
    assert recipe_for("spaxfus", lr=3e-4)["lr"] == 3e-4
    with pytest.raises(SpatialxError, match="unknown optimizer 'sgd'"):
        recipe_for("pnn", optimizer="sgd")
    with pytest.raises(SpatialxError, match="unknown schedule 'cosine'"):
        recipe_for("pnn", schedule="cosine")


def test_augmentation_is_consistent_and_seeded(examples):
    example = {"a": torch.arange(16.0).reshape(1, 4, 4), "b": torch.arange(16.0).reshape(1, 4, 4) * 2}
    for which in range(8):
        out = symmetry(example, which)
        assert torch.equal(out["b"], out["a"] * 2)
    assert len({symmetry(example, w)["a"].flatten().tolist().__str__() for w in range(8)}) == 8
    a, b = AugmentedStream(examples, seed=1), AugmentedStream(examples, seed=1)
    assert [a.which(k) for k in range(20)] == [b.which(k) for k in range(20)]
    assert len({a.which(k) for k in range(64)}) > 4


def test_spaxfus_adamax_onecycle_augment_resume_bit_exact(tmp_path, examples):
    recipe = recipe_for("spaxfus")
    kwargs = {"batch_size": 2, "seed": 3, **recipe, "lr": 1e-3}

    def net():
        torch.manual_seed(0)
        return create_model("spaxfus", "tiny")

    whole = train(net(), examples, steps=6, **kwargs)
    checkpoint = tmp_path / "run.ckpt.safetensors"
    train(net(), examples, steps=3, total_steps=6, checkpoint=checkpoint, **kwargs)  # as if stopped at step 3
    tensors, info = read_checkpoint(checkpoint)
    assert info["optimizer"] == "adamax" and info["schedule"] == "onecycle" and info["augment"]
    assert info["scheduler"]["last_epoch"] == 3 and any(k.endswith("/exp_inf") for k in tensors)
    torch.manual_seed(9)
    resumed = train(create_model("spaxfus", "tiny"), examples, steps=6, resume=checkpoint, **kwargs)
    assert resumed.losses == whole.losses[3:]
    assert state_equal(resumed.model, whole.model)
    with pytest.raises(SpatialxError, match="optimizer 'adamax'"):
        train(net(), examples, steps=6, resume=checkpoint, **{**kwargs, "optimizer": "adamw"})


def test_train_model_card_records_recipe(tmp_path):
    scene = write_sample(tmp_path / "s", sensor="qb", size=256, seed=2)
    done = train_model(tmp_path / "w.safetensors", model="spaxfus", config="tiny", sensor="qb",
                       scenes=[(scene["pan"], scene["ms"])], steps=2, batch_size=2, patch=32, device="cpu",
                       val_patches=2)
    training = done.card["training"]
    assert training["recipe"] == recipe_for("spaxfus") and training["optimizer"] == "adamax"
    card = json.loads((tmp_path / "w.json").read_text())
    assert card["training"]["schedule"] == "onecycle"


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spatialx", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_train_cli_bad_optimizer_is_one_line(tmp_path):
    from spatialx.cli.main import app

    result = cli("train", tmp_path / "w.safetensors", "--scene", "a.tif", "b.tif", "--optimizer", "sgd")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "unknown optimizer 'sgd'" in result.stderr
    help_text = CliRunner().invoke(app, ["train", "--help"]).output
    assert "training recipe" in help_text


# ------------------------------------------------------------------------------------------ full resolution
def _consistent_pair(size: int = 64, seed: int = 0):
    """A fused image, its MS exactly as the loss's sensor model sees it, and a PAN made of its bands."""
    scene = generate_scene("qb", size, seed=seed)
    fused = torch.from_numpy(np.asarray(scene.reference, dtype=np.float32) / QB.max_value)[None]
    loss = FullResolutionLoss(QB.mtf_gains, 4)
    ms = loss.degrade(fused).detach()
    pan = fused.mean(dim=1, keepdim=True)
    return loss, fused, ms, pan


def test_full_resolution_loss_behaviour_and_gradients():
    """The spectral term vanishes for an output the MS sensor would have seen as the MS and grows for a blurred or
    shifted one; a shifted output's detail no longer lines up with the PAN's, so the spatial term grows too (the
    spatial term targets the cross-scale correlation, so it does not single out blur: the spectral term does)."""
    loss, fused, ms, pan = _consistent_pair()
    spectral, spatial = loss.terms(fused, ms, pan)
    assert float(spectral) < 1e-6 and float(spatial) < 0.3
    blurred = torch.nn.functional.avg_pool2d(fused, 5, stride=1, padding=2, count_include_pad=False)
    shifted = torch.roll(fused, shifts=(3, 3), dims=(-2, -1))
    for worse in (blurred, shifted):
        assert float(loss.terms(worse, ms, pan)[0]) > float(spectral) + 1e-3
    s, p = loss.terms(shifted, ms, pan)
    assert float(p) > float(spatial) + 0.1
    assert float(s + loss.spatial_weight * p) > float(spectral + loss.spatial_weight * spatial) + 0.1
    x = blurred.clone().requires_grad_(True)
    loss(lambda ms_up, pan_: x, {"ms": x, "pan": pan, "ms_native": ms}).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize(("network", "adapt_loss"), [("pnn", "full"), ("lemamba", "full"), ("pnn", None)])
def test_adapt_loss_full_end_to_end(tmp_path, network, adapt_loss):
    """``full`` when asked for, and by default for an MS on its own grid (the sample's)."""
    from spatialx.tasks.pansharpen import pansharpen

    scene = write_sample(tmp_path / "s", sensor="wv3", size=128, seed=6)
    out = tmp_path / "out.tif"
    chosen = {} if adapt_loss is None else {"adapt_loss": adapt_loss}
    pansharpen(scene["pan"], scene["ms"], out, "wv3", network, tile=128, overwrite=True,
               method_options={"adapt_steps": 2, "adapt_batch": 2, **chosen})
    with rasterio.open(out) as src:
        params = json.loads(src.tags()["SPATIALX_PARAMS"])
        assert np.isfinite(src.read()).all()
    adaptation = params["adaptation"]
    assert adaptation["loss"] == "full" and adaptation["steps"] == 2 and adaptation["spatial_weight"] == 1.0


def test_adapt_loss_bad_values(tmp_path):
    from spatialx.methods import create_method

    with pytest.raises(SpatialxError, match="unknown adaptation loss 'half'"):
        create_method("pnn", "wv3", 4, adapt_steps=2, adapt_loss="half")
    with pytest.raises(SpatialxError, match="pansharpening only"):
        create_method("lemamba", {"hs": "prisma_l2d", "ms": "s2_l2a"}, 3, task="hmif", adapt_steps=2,
                      adapt_loss="full")
    scene = write_sample(tmp_path / "s", sensor="wv3", size=128, seed=6)
    for extra, message in ((["--adapt-steps", "2", "--adapt-loss", "half"], "unknown --adapt-loss 'half'"),
                           (["--adapt-loss", "full"], "add --adapt-steps")):
        result = cli("pansharpen", scene["pan"], scene["ms"], tmp_path / "o.tif", "-m", "pnn", *extra)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_default_adapt_loss_follows_the_ms_grid_and_the_task():
    assert default_adapt_loss("pansharpen", pan_to_ms=4, ratio=4) == "full"  # the MS on its own grid
    assert default_adapt_loss("pansharpen", pan_to_ms=1, ratio=4) == "reduced"  # delivered on the PAN grid
    for task in ("hmif", "stfuse", "polsar"):
        assert default_adapt_loss(task, pan_to_ms=4, ratio=4) == "reduced"


def test_full_resolution_patches_avoid_nodata():
    """Random and held-out full-resolution patches are drawn again where the PAN or the MS holds nodata, as Wald
    patches are; a scene without nodata draws exactly the patches it drew before the check."""
    scene = generate_scene("qb", 128, seed=3)
    pan, ms = scene.pan[None].astype(np.float32), scene.ms.astype(np.float32)
    pan, ms = np.maximum(pan, 1), np.maximum(ms, 1)
    holed_pan, holed_ms = pan.copy(), ms.copy()
    holed_ms[:, :, :8] = 0  # the western 32 PAN columns lie outside the footprint
    holed_pan[:, :, :32] = 0
    gains = QB.mtf_gains
    clean = FullResolutionPatches([ArrayScene(pan, ms, nodata=0)], gains, 4, 32, QB.max_value)
    holed = FullResolutionPatches([ArrayScene(holed_pan, holed_ms, nodata=0)], gains, 4, 32, QB.max_value)
    draws = FullResolutionStream(holed, seed=1)
    queries = [draws.query(k) for k in range(64)]
    assert all(holed.valid(q) for q in queries) and all(col >= 8 for _, _, col in queries)
    assert all(holed.valid(q) for q in FullResolutionStream(holed, fixed=8).queries)
    assert not holed.valid((0, 0, 0)) and clean.valid((0, 0, 0))
    # the clean scene's stream is the stream without the check: the first draw of every example is kept
    plain = FullResolutionStream(clean, seed=1)
    rows, cols = clean.origins(0)
    for k in range(16):
        rng = np.random.default_rng(np.random.SeedSequence([1, 0xF011, k]))
        rng.random()
        assert plain.query(k) == (0, int(rng.integers(rows)), int(rng.integers(cols)))
