"""The real QuickBird Toulouse pair (../shared/data/real) through every classical method, end to end."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning as RasterioNotGeoreferenced

from spatialx.align import NotGeoreferencedWarning
from spatialx.methods import list_methods
from spatialx.tasks.pansharpen import pansharpen


@pytest.fixture(scope="module")
def qb_pair(shared_dir):
    real = shared_dir / "data" / "real"
    pan, xs = real / "qb_toulouse_pan.tif", real / "qb_toulouse_xs.tif"
    if not (pan.exists() and xs.exists()):
        pytest.skip("QuickBird Toulouse files not present")
    return pan, xs


def highpass(image):
    from scipy.ndimage import uniform_filter

    return image - uniform_filter(image, 5)


def read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RasterioNotGeoreferenced)
        with rasterio.open(path) as src:
            return src.read().astype(np.float64), src.crs, src.dtypes[0], src.descriptions


@pytest.mark.parametrize("method", [m.name for m in list_methods("pansharpen") if m.kind == "classical"])
def test_every_classical_method_runs_on_real_quickbird(method, qb_pair, tmp_path):
    pan, xs = qb_pair
    with pytest.warns(NotGeoreferencedWarning, match="not georeferenced"):
        result = pansharpen(pan, xs, tmp_path / "out.tif", "qb", method, tile=192, workers=2,
                            ndvi=tmp_path / "ndvi.tif")
    fused, crs, dtype, names = read(result.output)
    reference, *_ = read(xs)
    assert crs is None  # the files carry no CRS (only the full scene's GCPs): none is invented
    assert fused.shape == (4, 500, 500) and dtype == "uint32"  # the MS container type is kept
    assert names == ("Blue", "Green", "Red", "NIR")
    assert fused.min() >= 1 and fused.max() <= 2047
    for band in range(4):  # the fused bands stay close to the XS bands (Brovey's blue is the loosest, ~0.69)
        assert np.corrcoef(fused[band].ravel(), reference[band].ravel())[0, 1] > 0.6, (method, band)
    if method != "exp":  # PAN detail was injected: the fused high-pass follows the PAN's more than the XS's does
        pan_image, *_ = read(pan)
        detail = highpass(pan_image[0])
        gain = [np.corrcoef(highpass(fused[b]).ravel(), detail.ravel())[0, 1]
                - np.corrcoef(highpass(reference[b]).ravel(), detail.ravel())[0, 1] for b in range(4)]
        assert min(gain) > 0.05, (method, gain)
    ndvi, *_ = read(tmp_path / "ndvi.tif")
    assert ndvi.min() >= -1 and ndvi.max() <= 1 and ndvi.std() > 0.05
