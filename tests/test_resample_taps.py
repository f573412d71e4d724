"""The separable resampler's phase-by-phase path gives the values of the tap-by-tap gather, bit for bit."""

import numpy as np
import pytest
from rasterio.windows import Window

from spatialx.align import AxisMap, Resampler, _period, apply_taps


def gathered(resampler: Resampler, data: np.ndarray, src_window: Window, window: Window) -> np.ndarray:
    """The reference: every tap gathered with np.take (clipped indexes), summed in tap order."""
    iy, wy, ix, wx = resampler._taps(src_window, window)
    rows = sum(data[:, iy[:, t], :] * wy[None, :, t, None] for t in range(wy.shape[1]))
    return sum(np.take(rows, ix[:, t], axis=2) * wx[None, None, :, t] for t in range(wx.shape[1]))


@pytest.mark.parametrize(("ratio", "kernel", "shift"), [(4, "cubic", 0.0), (4, "cubic", 0.37), (2, "linear", 0.0),
                                                        (1.5, "cubic", 0.0), (3, "cubic", 0.0), (4, "nearest", 0.0),
                                                        (0.5, "average", 0.0), (3.4, "cubic", 0.1)])
def test_phase_path_equals_the_gather_everywhere(ratio, kernel, shift):
    rng = np.random.default_rng(1)
    size = 120
    scale = 1 / ratio
    rows = AxisMap(scale, 0.5 * scale - 0.5 + shift, size, kernel)
    cols = AxisMap(scale, 0.5 * scale - 0.5 - shift / 2, size, kernel)
    resampler = Resampler(None, rows, cols)  # type: ignore[arg-type]
    image = rng.normal(size=(3, size, size)).astype(np.float32)
    out = int(size * ratio)
    # the first and last pixels (taps clipped at the edge), the interior, a one-pixel window
    for window in (Window(0, 0, min(90, out), min(70, out)), Window(13, 29, 61, 47),
                   Window(out - 53, out - 41, 53, 41), Window(7, 5, 1, 1)):
        src = resampler.source_window(window)
        data = image[:, src.row_off: src.row_off + src.height, src.col_off: src.col_off + src.width]
        expected = gathered(resampler, data, src, window)
        got = resampler.resample(data, src, window)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected)


def test_periods_of_nested_ratios_are_found_and_others_gathered():
    index, weights = AxisMap(0.25, -0.375, 100).taps(8, 40, 0, clip=False)
    assert _period(index, weights) == (4, 1)
    index, weights = AxisMap(2 / 3, -1 / 6, 100).taps(0, 30, 0, clip=False)
    assert _period(index, weights) == (3, 2)
    index, weights = AxisMap(1 / 3.4, 0.1, 100).taps(0, 30, 0, clip=False)
    assert _period(index, weights) is None
    data = np.arange(24, dtype=np.float32).reshape(2, 12)
    taps = np.array([[-1, 0], [11, 12]])  # past both edges: the edge value repeats
    np.testing.assert_array_equal(apply_taps(data, taps, np.ones((2, 2), np.float32), axis=1),
                                  [[0.0, 22.0], [24.0, 46.0]])


def test_nodata_validity_read_off_the_pixels_equals_gdals_mask(tmp_path):
    """A file whose mask is its nodata value: read_masked gives GDAL's mask band; with an internal mask as well
    it asks GDAL."""
    import rasterio

    from spatialx.io.read import open_raster

    rng = np.random.default_rng(4)
    data = rng.integers(0, 5, size=(3, 90, 70)).astype(np.uint16)
    profile = {"driver": "GTiff", "width": 70, "height": 90, "count": 3, "dtype": "uint16", "nodata": 0,
               "crs": "EPSG:32631", "transform": rasterio.Affine(2, 0, 500000, 0, -2, 4800000)}
    with rasterio.open(tmp_path / "nodata.tif", "w", **profile) as dst:
        dst.write(data)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), \
            rasterio.open(tmp_path / "masked.tif", "w", **{**profile, "nodata": None}) as dst:
        dst.write(data)
        dst.write_mask(data[0] != 1)
    window = Window(5, 7, 40, 50)
    for name, only in (("nodata.tif", True), ("masked.tif", False)):
        info = open_raster(tmp_path / name, role="MS")
        assert info.has_mask and info.nodata_mask_only is only
        reader = info.reader()
        values, valid = reader.read_masked(window, [1, 2, 3])
        np.testing.assert_array_equal(values, reader.read(window, [1, 2, 3]))
        np.testing.assert_array_equal(valid, reader.read_valid(window, [1, 2, 3]))
        reader.close()
