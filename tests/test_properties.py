"""Property tests (hypothesis): tiled fusion equals whole-image fusion for any tile, overlap and extent; the indices
keep their invariances (SAM ignores a per-pixel scale, Q and SAM of an image with itself are perfect)."""

from __future__ import annotations

import numpy as np
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenes import write_pair

from spatialx.metrics import q_index, sam
from spatialx.tasks.pansharpen import pansharpen

images = st.integers(0, 2**31 - 1).map(lambda seed: np.random.default_rng(seed).uniform(50, 2000, (4, 40, 40)))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(images, st.floats(0.05, 20.0))
def test_sam_ignores_a_global_scale(image, scale):
    other = image * np.random.default_rng(1).uniform(0.8, 1.2, image.shape)
    assert abs(sam(image, other * scale) - sam(image, other)) < 1e-9


@settings(max_examples=25, deadline=None, derandomize=True)
@given(images)
def test_an_image_against_itself_is_perfect(image):
    assert q_index(image, image) > 1 - 1e-12 and sam(image, image) < 1e-6


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["brovey", "gsa", "mtf-glp"]), st.integers(32, 96), st.integers(0, 12),
       st.sampled_from([(96, 96), (100, 76), (64, 120)]))
def test_tiles_equal_the_whole_image(tmp_path_factory, method, tile, overlap, size):
    directory = tmp_path_factory.mktemp("prop")
    pan, ms = write_pair(directory, pan_size=size)
    whole = pansharpen(pan, ms, directory / "whole.tif", "qb", method, tile=512).output
    tiled = pansharpen(pan, ms, directory / "tiled.tif", "qb", method, tile=tile, overlap=overlap).output
    with rasterio.open(whole) as a, rasterio.open(tiled) as b:
        assert a.transform == b.transform
        assert np.abs(a.read().astype(np.int32) - b.read().astype(np.int32)).max() <= 1
