"""Networks exported to ONNX: dynamic shapes, the card in the metadata, fusion through ONNX Runtime."""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

from spatialx.errors import MethodError, OutputError, ReadError
from spatialx.models.onnx import OnnxRunner, export_onnx, export_weights, read_card
from spatialx.models.registry import create_model
from spatialx.models.weights import load_model, save_weights
from spatialx.sample import write_sample
from spatialx.tasks.pansharpen import pansharpen

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("pnn", "qb")
    path = tmp_path_factory.mktemp("weights") / "pnn_qb.safetensors"
    return save_weights(model, path, {"architecture": "pnn", "config": {"bands": 4, "ratio": 4}, "sensor": "qb"})


@pytest.fixture(scope="module")
def exported(weights, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "pnn.onnx"
    return export_weights(weights, path, tile=32)


def test_pnn_exports_with_dynamic_shapes_and_agrees_with_pytorch(weights, exported):
    assert exported.path.is_file() and exported.max_abs_diff < 1e-4
    model, _ = load_model(weights)
    runner = OnnxRunner(exported.path, threads=1)
    generator = torch.Generator().manual_seed(1)
    for batch, height, width in ((1, 48, 80), (3, 96, 64)):  # neither is the traced 2 x 32 x 32
        lms = torch.rand(batch, 4, height, width, generator=generator)
        pan = torch.rand(batch, 1, height, width, generator=generator)
        with torch.no_grad():
            expected = model(lms, pan).numpy()
        got = runner.run([lms.numpy(), pan.numpy()])
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-4


def test_card_is_embedded(exported):
    card = read_card(exported.path)
    assert card["architecture"] == "pnn" and card["config"] == {"bands": 4, "ratio": 4}
    assert len(card["sha256"]) == 64 and card["weights"] == "pnn_qb.safetensors"


def test_onnx_backend_products_equal_torch(weights, tmp_path):
    scene = write_sample(tmp_path / "scene", sensor="qb", size=128, seed=3)
    products = {}
    for backend in ("torch", "onnx"):
        result = pansharpen(scene["pan"], scene["ms"], tmp_path / f"{backend}.tif", "qb", "pnn", dtype="float32",
                            tile=64, method_options={"weights": weights, "backend": backend})
        with rasterio.open(result.output) as src:
            products[backend] = src.read().astype(np.float64)
            if backend == "onnx":
                assert '"backend": "onnx"' in src.tags()["SPATIALX_PARAMS"]
    from spatialx.sensors import get_sensor

    low, high = get_sensor("qb").value_range
    # in network units ([0, 1] of the sensor's range)
    assert np.abs(products["onnx"] - products["torch"]).max() / (high - low) < 1e-4


def test_onnx_backend_reads_a_given_file(weights, exported, tmp_path):
    from spatialx.methods import create_method
    from spatialx.sensors import get_sensor

    method = create_method("pnn", get_sensor("qb"), 4, weights=weights, backend="onnx", onnx=exported.path)
    rng = np.random.default_rng(0)
    low, high = get_sensor("qb").value_range
    tile = {"ms": rng.uniform(low, high, (4, 40, 40)), "pan": rng.uniform(low, high, (1, 40, 40))}
    reference = create_method("pnn", get_sensor("qb"), 4, weights=weights)
    assert np.abs(method.fuse(tile) - reference.fuse(tile)).max() / (high - low) < 1e-4
    with pytest.raises(MethodError, match="unknown backend"):
        create_method("pnn", get_sensor("qb"), 4, weights=weights, backend="tensorrt")
    with pytest.raises(ReadError, match="ONNX file does not exist"):
        create_method("pnn", get_sensor("qb"), 4, weights=weights, backend="onnx", onnx=tmp_path / "none.onnx")


def test_export_errors_are_one_line(weights, exported, tmp_path):
    import typer
    from typer.testing import CliRunner

    from spatialx.cli.export import command

    app = typer.Typer()
    app.command()(command)
    app.command("other")(lambda: None)
    runner = CliRunner()
    with pytest.raises(ReadError, match="does not exist"):
        runner.invoke(app, ["command", str(tmp_path / "missing.safetensors"), str(tmp_path / "m.onnx")],
                      catch_exceptions=False)
    with pytest.raises(OutputError, match="exists"):
        runner.invoke(app, ["command", str(weights), str(exported.path)], catch_exceptions=False)
    with pytest.raises(OutputError, match=r"\.onnx"):
        runner.invoke(app, ["command", str(weights), str(tmp_path / "m.bin")], catch_exceptions=False)
    assert not list(tmp_path.iterdir())


@torch.library.custom_op("spatialx_test::mystery", mutates_args=())
def _mystery(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


@_mystery.register_fake
def _(x):
    return torch.empty_like(x)


def test_an_op_that_does_not_export_is_named(tmp_path):
    class Bad(torch.nn.Module):
        bands = 1

        def forward(self, lms, pan):
            return _mystery(lms) + pan

    with pytest.raises(MethodError, match=r"does not export to ONNX.*mystery"):
        export_onnx(Bad(), {"architecture": "bad", "config": {"bands": 1}}, tmp_path / "bad.onnx", tile=16)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SPATIALX_SLOW"), reason="minutes on a CPU; set SPATIALX_SLOW=1")
def test_lemamba_exports_with_dynamic_shapes(tmp_path):
    from spatialx.models.lemamba import LEMamba

    config = {"bands": 4, "width": 8, "depths": [1, 1], "middle_depth": 0, "window_sizes": [4, None],
              "ssm_ratios": [1, 1], "channel_mults": [1, 1], "local_d_state": 4, "global_d_state": 4,
              "drop_path": 0.0}
    model = LEMamba(**config, seed=0).eval()
    result = export_onnx(model, {"architecture": "lemamba", "config": config}, tmp_path / "lem.onnx", tile=16)
    assert result.max_abs_diff < 1e-4
    runner = OnnxRunner(result.path, threads=1)
    lms, pan = torch.rand(1, 4, 24, 40), torch.rand(1, 1, 24, 40)
    with torch.no_grad():
        expected = model(lms, pan).numpy()
    assert np.abs(runner.run([lms.numpy(), pan.numpy()]) - expected).max() < 1e-4


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SPATIALX_SLOW"), reason="minutes on a CPU; set SPATIALX_SLOW=1")
@pytest.mark.parametrize(("name", "tile", "other"), [("spaxfus", 32, (24, 40)), ("ssrfn", 64, (64, 64)),
                                                     ("rwkvfusion", 32, (24, 40))])
def test_scan_networks_export_and_agree_with_pytorch(tmp_path, name, tile, other):
    model = create_model(name, "tiny").eval()
    card = {"architecture": name, "config": {"bands": model.bands, "guide_bands": model.guide_bands}}
    result = export_onnx(model, card, tmp_path / f"{name}.onnx", tile=tile)
    assert result.exporter == "dynamo" and result.max_abs_diff < 1e-4
    lms, guide = torch.rand(1, model.bands, *other), torch.rand(1, model.guide_bands, *other)
    with torch.no_grad():
        expected = model(lms, guide).numpy()
    assert np.abs(OnnxRunner(result.path, threads=1).run([lms.numpy(), guide.numpy()]) - expected).max() < 1e-4


def test_every_scan_caller_is_routed_to_the_exportable_scan_and_restored():
    import importlib

    from spatialx.models import onnx as onnx_module

    callers = [importlib.import_module(name) for name in onnx_module.SCAN_CALLERS]
    originals = [caller.selective_scan for caller in callers]
    model = create_model("spaxfus", "tiny")
    blocks = [m for m in model.modules() if hasattr(m, "scan_backend")]
    assert blocks
    with onnx_module._exportable_scans(model):
        assert all(caller.selective_scan is onnx_module.export_selective_scan for caller in callers)
        assert {block.scan_backend for block in blocks} == {"chunked"}
    assert [caller.selective_scan for caller in callers] == originals
    assert {block.scan_backend for block in blocks} == {"auto"}


def test_export_selective_scan_equals_the_library_scan():
    from spatialx.models.onnx import export_selective_scan
    from spatialx.models.scan import selective_scan

    generator = torch.Generator().manual_seed(3)
    batch, dim, length, n_state = 2, 6, 11, 4
    u = torch.randn(batch, dim, length, generator=generator)
    delta = torch.randn(batch, dim, length, generator=generator)
    A = -torch.rand(dim, n_state, generator=generator) - 0.1
    B = torch.randn(batch, 2, n_state, length, generator=generator)  # grouped, as SpaXFus's channel scan passes them
    C = torch.randn(batch, 2, n_state, length, generator=generator)
    D, bias = torch.randn(dim, generator=generator), torch.randn(dim, generator=generator)
    kwargs = {"delta_bias": bias, "delta_softplus": True}
    with torch.no_grad():
        expected = selective_scan(u, delta, A, B, C, D, **kwargs)
        got = export_selective_scan(u, delta, A, B, C, D, **kwargs)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length", [1, 15, 16, 37])
def test_export_wkv_equals_the_reference_recurrence(length):
    from spatialx.models.onnx import export_wkv
    from spatialx.models.wkv import wkv_reference

    generator = torch.Generator().manual_seed(length)
    batch, heads, n = 2, 2, 8
    r, k, v = (torch.randn(batch, length, heads, n, generator=generator) for _ in range(3))
    w = 3 * torch.randn(heads, n, generator=generator)
    w[0, 0], w[1, 1] = 30.0, -30.0  # a decay of 0 and one of almost 1: nothing overflows
    u = torch.randn(heads, n, generator=generator)
    state = torch.randn(batch, heads, n, n, generator=generator)
    with torch.no_grad():
        got, got_state = export_wkv(r, k, v, w, u, state, return_state=True)
        expected, expected_state = wkv_reference(r, k, v, w, u, state, return_state=True)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got_state, expected_state, rtol=1e-5, atol=1e-4)
