"""NaN and infinity in an input, whatever the file declares as nodata, are invalid pixels: they never spread
through resampling or filters into their neighbours, and the product is nodata there (issue #16)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from scenes import write_pair, write_tif

from spatialx.tasks.pansharpen import pansharpen


@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("method", ["brovey", "gsa", "mtf-glp"])
def test_non_finite_ms_pixels_are_nodata_and_do_not_spread(tmp_path, fill, method):
    pan, ms = write_pair(tmp_path, pan_size=(128, 128))
    with rasterio.open(ms) as src:
        data, profile = src.read().astype(np.float32), src.profile
    data[:, 10:12, 20:22] = fill  # 2 x 2 MS pixels = 8 x 8 PAN pixels at (80..88, 40..48)
    float_ms = write_tif(tmp_path / "ms_float.tif", data, profile["transform"], str(profile["crs"]), nodata=None)
    out = pansharpen(pan, float_ms, tmp_path / "out.tif", "qb", method, dtype="float32").output
    with rasterio.open(out) as src:
        fused = src.read()
        mask = src.read_masks(1) == 0
    assert mask[40:48, 80:88].all()  # the filled pixels are nodata ...
    assert np.isfinite(fused[:, ~mask]).all()  # ... nothing non-finite is written as data ...
    reach = np.zeros_like(mask)
    reach[20:68, 60:108] = True  # ... and beyond the kernels' reach of the hole everything is valid
    assert not mask[~reach].any()


def test_a_nan_pan_pixel_is_nodata_in_the_product(tmp_path):
    pan, ms = write_pair(tmp_path, pan_size=(128, 128))
    with rasterio.open(pan) as src:
        data, profile = src.read().astype(np.float32), src.profile
    data[0, 50, 50] = np.nan
    float_pan = write_tif(tmp_path / "pan_float.tif", data, profile["transform"], str(profile["crs"]), nodata=None)
    out = pansharpen(float_pan, ms, tmp_path / "out.tif", "qb", "brovey", dtype="float32").output
    with rasterio.open(out) as src:
        mask = src.read_masks(1, window=Window(0, 0, 128, 128)) == 0
        fused = src.read()
    assert mask[50, 50] and mask.sum() == 1 and np.isfinite(fused[:, ~mask]).all()


def test_weights_without_their_card_flipped_or_untrained_are_refused(tmp_path):
    import json

    import torch

    from spatialx.errors import ReadError
    from spatialx.models.registry import create_model
    from spatialx.models.weights import card_path, load_model, save_weights
    from spatialx.tasks.pansharpen import pansharpen as run

    torch.manual_seed(0)
    card = {"architecture": "pnn", "config": {"bands": 4, "ratio": 4}, "sensor": "qb"}
    weights = save_weights(create_model("pnn", "qb"), tmp_path / "w.safetensors", card)
    load_model(weights)  # as written: fine
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in the tensors
    flipped = tmp_path / "flipped.safetensors"
    flipped.write_bytes(bytes(data))
    card_path(flipped).write_text(card_path(weights).read_text())
    with pytest.raises(ReadError, match="sha256 of the weights does not match"):
        load_model(flipped)
    lonely = tmp_path / "lonely.safetensors"
    lonely.write_bytes(weights.read_bytes())
    with pytest.raises(ReadError, match=r"card lonely\.json is missing"):
        load_model(lonely)
    untrained = save_weights(create_model("pnn", "qb"), tmp_path / "zero.safetensors",
                             {**card, "training": {"steps": 0}})
    assert json.loads(card_path(untrained).read_text())["training"]["steps"] == 0
    pan, ms = write_pair(tmp_path, pan_size=(64, 64))
    with pytest.raises(ReadError, match="trained for 0 steps"):
        run(pan, ms, tmp_path / "o.tif", "qb", "pnn", method_options={"weights": untrained})
    assert not (tmp_path / "o.tif").exists()


def test_an_all_zero_pan_is_refused_and_nothing_is_written(tmp_path):
    from spatialx.errors import InputMismatchError

    pan, ms = write_pair(tmp_path, pan_size=(64, 64))
    with rasterio.open(pan, "r+") as src:
        src.write(np.zeros((1, 64, 64), dtype="uint16"))  # nodata 0 everywhere
    with pytest.raises(InputMismatchError, match="no output pixel holds data"):
        pansharpen(pan, ms, tmp_path / "out.tif", "qb", "brovey")
    assert not (tmp_path / "out.tif").exists() and not list(tmp_path.glob("*.qml"))


def test_values_above_the_sensor_maximum_give_one_warning_with_the_fraction(tmp_path):
    pan, ms = write_pair(tmp_path, pan_size=(64, 64))
    with rasterio.open(ms, "r+") as src:
        src.write((src.read().astype(np.uint32) * 3).astype("uint16"))  # up to ~5100 DN for an 11-bit sensor
    with pytest.warns(UserWarning, match=r"% above 2047 \(the sensor's maximum in uint16\)") as caught:
        out = pansharpen(pan, ms, tmp_path / "out.tif", "qb", "brovey").output
    assert out.exists() and len([w for w in caught if "clipped" in str(w.message)]) == 1


def test_ndvi_of_non_finite_pixels_is_nodata(tmp_path):
    from spatialx.products.ndvi import NDVI_NODATA, ndvi_array

    red = np.array([[0.1, np.nan, 0.2]], dtype=np.float32)
    nir = np.array([[0.5, 0.4, np.inf]], dtype=np.float32)
    out = ndvi_array(red, nir, np.ones(red.shape, dtype=bool))
    assert out[0, 0] == pytest.approx(0.4 / 0.6) and (out[0, 1:] == NDVI_NODATA).all()


def test_a_sample_size_off_the_ratio_is_one_line(tmp_path, request):
    cli = request.getfixturevalue("spatialx")
    done = cli("sample", tmp_path / "s", "--size", "513", cwd=tmp_path)
    assert done.returncode == 2 and "e.g. --size 512" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_bt_h_takes_each_band_minimum_as_haze_for_eight_bands_as_the_toolbox(tmp_path):
    """The toolbox's 1st-percentile fractions are for B, G, R, NIR only; other band sets use each band's minimum
    (the wavelength interpolation stays an option)."""
    import json

    pan, ms = write_pair(tmp_path, sensor="wv3", pan_size=(96, 96))
    with rasterio.open(ms) as src:
        minimum = src.read().reshape(8, -1).min(axis=1)
    out = pansharpen(pan, ms, tmp_path / "bth.tif", "wv3", "bt-h").output
    with rasterio.open(out) as src:
        params = json.loads(src.tags()["SPATIALX_PARAMS"])
    # the minimum of the MS as resampled onto the PAN grid (cubic undershoots the native minimum a little)
    np.testing.assert_allclose(params["haze"], minimum, rtol=0.06)
    assert (np.asarray(params["haze"]) <= minimum + 0.5).all()
    out = pansharpen(pan, ms, tmp_path / "wl.tif", "wv3", "bt-h", method_options={"haze": "wavelength"}).output
    with rasterio.open(out) as src:
        assert json.loads(src.tags()["SPATIALX_PARAMS"])["haze"] != params["haze"]


def test_int16_inputs_with_negatives_are_clipped_and_never_written_as_nodata(tmp_path):
    pan, ms = write_pair(tmp_path, pan_size=(64, 64))
    with rasterio.open(ms) as src:
        data, profile, names = src.read().astype(np.int16), src.profile, list(src.descriptions)
    data[:, :4, :4] = -50  # negative DN: below any sensor's range
    signed = write_tif(tmp_path / "ms16.tif", data, profile["transform"], str(profile["crs"]), nodata=0,
                       descriptions=names)
    with pytest.warns(UserWarning, match="below 1"):
        out = pansharpen(pan, signed, tmp_path / "out.tif", "qb", "exp").output
    with rasterio.open(out) as src:
        fused, mask = src.read(), src.read_masks(1)
    assert src.dtypes[0] == "int16" and fused.min() >= 0
    assert not ((fused == 0).any(axis=0) & (mask > 0)).any()  # no valid pixel holds the nodata value
