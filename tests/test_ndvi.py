"""NDVI: values on known spectra, nodata, band lookup by description, QGIS style."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from scenes import write_tif

from spatialx.products.ndvi import NDVI_NODATA, ndvi, ndvi_array
from spatialx.sensors import get_sensor

AFFINE = rasterio.Affine(2.0, 0, 500000, 0, -2.0, 4800000)


def test_ndvi_array_on_known_values():
    red = np.array([[100.0, 300.0, 0.0, 50.0]])
    nir = np.array([[300.0, 100.0, 0.0, 50.0]])
    valid = np.array([[True, True, True, False]])
    out = ndvi_array(red, nir, valid)
    assert out.dtype == np.float32
    assert out[0, 0] == pytest.approx(0.5) and out[0, 1] == pytest.approx(-0.5)
    assert out[0, 2] == NDVI_NODATA  # 0/0 is undefined, not zero
    assert out[0, 3] == NDVI_NODATA


def test_ndvi_of_vegetation_water_and_soil_spectra(tmp_path):
    """Typical reflectances (x 1000 DN) for WV3 bands: vegetation, water, bare soil."""
    sensor = get_sensor("wv3")
    spectra = {  # Coastal, Blue, Green, Yellow, Red, RedEdge, NIR1, NIR2
        "vegetation": [40, 45, 90, 70, 40, 250, 450, 460],
        "water": [80, 70, 60, 40, 30, 20, 10, 8],
        "soil": [100, 120, 160, 190, 210, 230, 260, 280],
    }
    data = np.zeros((8, 3, 4), dtype="uint16")
    for row, values in enumerate(spectra.values()):
        data[:, row, :] = np.array(values)[:, None]
    src = write_tif(tmp_path / "ms.tif", data, AFFINE, "EPSG:32631", nodata=0)
    out = ndvi(src, tmp_path / "ndvi.tif", sensor)
    with rasterio.open(out) as ds:
        values = ds.read(1)
        assert ds.nodata == NDVI_NODATA and ds.dtypes[0] == "float32"
        assert ds.crs.to_epsg() == 32631 and ds.transform == AFFINE
    red, nir = sensor.band_index("Red"), sensor.band_index("NIR1")
    for row, spectrum in enumerate(spectra.values()):
        expected = (spectrum[nir] - spectrum[red]) / (spectrum[nir] + spectrum[red])
        assert np.allclose(values[row], expected, atol=1e-6)
    assert values[0, 0] > 0.8 and values[1, 0] < 0 and 0 < values[2, 0] < 0.2
    style = (tmp_path / "ndvi.qml").read_text()
    assert "singlebandpseudocolor" in style and 'classificationMin="-1"' in style


def test_bands_are_found_by_description(tmp_path):
    data = np.stack([np.full((2, 2), 300), np.full((2, 2), 100)]).astype("uint16")  # NIR first, then Red
    src = write_tif(tmp_path / "two.tif", data, AFFINE, "EPSG:32631", descriptions=["NIR", "Red"])
    with rasterio.open(ndvi(src, tmp_path / "n.tif", "qb")) as ds:
        assert np.allclose(ds.read(1), 0.5)


def test_nodata_pixels_become_ndvi_nodata(tmp_path):
    data = np.full((4, 2, 2), 500, dtype="uint16")
    data[:, 0, 0] = 0
    src = write_tif(tmp_path / "ms.tif", data, AFFINE, "EPSG:32631", nodata=0)
    with rasterio.open(ndvi(src, tmp_path / "n.tif", "qb")) as ds:
        values = ds.read(1)
    assert values[0, 0] == NDVI_NODATA and values[1, 1] == pytest.approx(0.0)
