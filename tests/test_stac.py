"""STAC items and collections built from written products: footprint, grid, bands, time, provenance and hrefs.

No schema validation: pystac's validator needs jsonschema and the extension schemas from the network, neither of
which the test machines have; the structure the schemas require is checked field by field instead.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import rasterio.warp
from affine import Affine
from pystac.extensions.eo import EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterExtension
from rasterio.crs import CRS

from spatialx.errors import OutputError, ReadError
from spatialx.grid import Grid
from spatialx.io.write import BandInfo, write_array
from spatialx.products import stac as stac_module
from spatialx.products.stac import COG_MEDIA_TYPE, PROCESSING_SCHEMA, stac_item, write_collection, write_stac_item

# 40 km x 30 km in UTM 33N across its central meridian (15 E): the top edge, a line of constant northing, reaches
# furthest north in its middle, not at a corner.
UTM = Grid(Affine(500.0, 0, 480000, 0, -500.0, 5100000), 80, 60, CRS.from_epsg(32633))
BANDS = [BandInfo("Blue", 480, 60, "blue"), BandInfo("Green", 545, 70, "green"), BandInfo("Red", 660, 60, "red"),
         BandInfo("NIR", 832, 125)]
TAGS = {"SPATIALX_TASK": "pansharpen", "SPATIALX_METHOD": "gsa", "SPATIALX_SENSOR": "wv3",
        "SPATIALX_VERSION": "0.1.0", "SPATIALX_PARAMS": {"ratio": 4, "weights": [0.25, 0.75]},
        "SPATIALX_INPUTS": {"PAN": "pan.tif", "MS": "ms.tif"}}


def product(path: Path, grid: Grid = UTM, bands=BANDS, dtype: str = "uint16", nodata: float | None = 0,
            tags: dict | None = None) -> Path:
    rng = np.random.default_rng(0)
    data = rng.integers(1, 1000, (len(bands), grid.height, grid.width)).astype(dtype)
    return write_array(path, data, grid, bands, nodata=nodata, tags=TAGS if tags is None else tags)


def an_input(path: Path, stamp: str | None = None) -> Path:
    grid = Grid(UTM.transform, 20, 20, UTM.crs)
    written = write_array(path, np.ones((1, 20, 20), "uint16"), grid, [BandInfo("PAN")], cog=False)
    if stamp is not None:
        with rasterio.open(written, "r+") as dst:
            dst.update_tags(TIFFTAG_DATETIME=stamp)
    return written


def test_a_utm_product_has_its_lonlat_footprint_grid_and_bands(tmp_path):
    path = product(tmp_path / "fused.tif")
    item = stac_item(path, inputs={}, quality={"HQNR": np.float64(0.91)}, seconds=12.3456)

    west, south, east, north = rasterio.warp.transform_bounds(UTM.crs, "EPSG:4326", *UTM.bounds, densify_pts=21)
    assert item.bbox == pytest.approx([west, south, east, north], abs=1e-6)
    assert 14.5 < west < 15 < east < 15.5 and 45 < south < north < 46.5
    ring = item.geometry["coordinates"][0]
    assert item.geometry["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) > 5
    # Densified: the northmost point is the middle of the top edge, north of both top corners.
    left, _, right, top = UTM.bounds
    _, corner_lats = rasterio.warp.transform(UTM.crs, "EPSG:4326", [left, right], [top, top])
    assert item.bbox[3] > max(corner_lats) + 1e-4

    proj = ProjectionExtension.ext(item)
    assert proj.code == "EPSG:32633" and proj.shape == [UTM.height, UTM.width]
    assert proj.transform[:6] == list(UTM.transform)[:6]
    assert proj.bbox == pytest.approx(list(UTM.bounds))

    asset = item.assets["data"]
    assert asset.media_type == COG_MEDIA_TYPE and asset.roles == ["data"]
    eo = EOExtension.ext(asset).bands
    assert [b.name for b in eo] == ["Blue", "Green", "Red", "NIR"]
    with rasterio.open(path) as src:
        written = [float(src.tags(i)["wavelength"]) / 1000 for i in range(1, 5)]
    assert [b.center_wavelength for b in eo] == pytest.approx(written)
    assert [b.full_width_half_max for b in eo] == pytest.approx([0.06, 0.07, 0.06, 0.125])
    assert [b.common_name for b in eo] == ["blue", "green", "red", "nir"]
    raster = RasterExtension.ext(asset).bands
    assert {(b.data_type.value, b.nodata, b.spatial_resolution) for b in raster} == {("uint16", 0, 500.0)}
    assert all(b.scale is None and b.offset is None for b in raster)

    props = item.properties
    assert props["spatialx:task"] == "pansharpen" and props["spatialx:method"] == "gsa"
    assert props["spatialx:sensor"] == "wv3" and props["spatialx:params"] == {"ratio": 4, "weights": [0.25, 0.75]}
    assert props["spatialx:quality"] == {"HQNR": 0.91} and props["spatialx:seconds"] == 12.346
    assert props["processing:software"] == {"spatialx": "0.1.0"}
    for ext in (ProjectionExtension, EOExtension, RasterExtension):
        assert ext.get_schema_uri() in item.stac_extensions
    assert PROCESSING_SCHEMA in item.stac_extensions


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_product_without_crs_has_no_footprint(tmp_path):
    grid = Grid(Affine.identity(), 32, 24, None)
    path = product(tmp_path / "plain.tif", grid=grid, bands=[BandInfo("a")])
    item = stac_item(path, inputs={})
    assert item.geometry is None and item.bbox is None
    proj = ProjectionExtension.ext(item)
    assert proj.code is None and proj.wkt2 is None and proj.shape == [24, 32] and proj.transform is None
    assert RasterExtension.ext(item.assets["data"]).bands[0].spatial_resolution is None
    written = write_stac_item(item, tmp_path / "plain.json")
    data = json.loads(written.read_text())
    assert data["geometry"] is None and "bbox" not in data
    assert pystac.Item.from_file(str(written)).geometry is None


def test_a_crs_without_code_is_written_as_wkt2(tmp_path):
    crs = CRS.from_proj4("+proj=tmerc +lat_0=0 +lon_0=11.3 +k=0.9996 +x_0=500000 +y_0=0 +ellps=WGS84 +units=m")
    grid = Grid(Affine(10.0, 0, 500000, 0, -10.0, 5000000), 16, 16, crs)
    proj = ProjectionExtension.ext(stac_item(product(tmp_path / "t.tif", grid=grid), inputs={}))
    assert proj.code is None and proj.wkt2 and "11.3" in proj.wkt2


def test_float_nan_nodata_and_scale(tmp_path):
    from rasterio.windows import Window

    from spatialx.io.write import OutputSpec, RasterWriter, gdal_env

    data = np.full((1, 16, 16), 0.5, "float32")
    data[0, :4] = np.nan
    path = write_array(tmp_path / "f.tif", data, Grid(UTM.transform, 16, 16, UTM.crs), [BandInfo("NDVI")],
                       nodata=float("nan"), tags={})
    band = RasterExtension.ext(stac_item(path, inputs={}).assets["data"]).bands[0]
    assert band.nodata == "nan" and band.data_type.value == "float32"
    spec = OutputSpec(path=tmp_path / "s.tif", grid=Grid(UTM.transform, 16, 16, UTM.crs), dtype="uint16",
                      bands=[BandInfo("B1")], nodata=0, scale=1e-4)
    with gdal_env(), RasterWriter(spec) as writer:
        writer.write(np.ones((1, 16, 16), "uint16"), Window(0, 0, 16, 16))
    scaled = RasterExtension.ext(stac_item(spec.path, inputs={}).assets["data"]).bands[0]
    assert scaled.scale == pytest.approx(1e-4) and scaled.offset is None
    text = write_stac_item(stac_item(path, inputs={}, quality={"bad": float("nan")}), tmp_path / "f.json")
    assert json.loads(text.read_text())["properties"]["spatialx:quality"] == {"bad": None}


def test_the_prediction_date_of_a_series(tmp_path):
    dates = {"fine 2021-05-01": "2021-05-01", "coarse 2021-05-01": "2021-05-01",
             "fine 2021-07-04": "2021-07-04", "coarse 2021-07-04": "2021-07-04",
             "coarse 2021-06-02": "2021-06-02"}
    tags = {"SPATIALX_TASK": "stfuse", "SPATIALX_DATES": dates, "SPATIALX_PARAMS": {"predict": "2021-06-02"}}
    item = stac_item(product(tmp_path / "p.tif", bands=[BandInfo("LST")], tags=tags), inputs={})
    assert item.datetime == dt.datetime(2021, 6, 2, tzinfo=dt.timezone.utc)
    assert item.properties["spatialx:datetime_source"] == "product"
    # Without the method's parameter, the coarse date that no fine image shares is the prediction.
    tags["SPATIALX_PARAMS"] = {}
    item = stac_item(product(tmp_path / "q.tif", bands=[BandInfo("LST")], tags=tags), inputs={})
    assert item.datetime == dt.datetime(2021, 6, 2, tzinfo=dt.timezone.utc)
    # Several dates and no prediction: a range.
    tags = {"SPATIALX_DATES": {"before": "2021-05-01", "after": "2021-07-04T10:00:00Z"}}
    item = stac_item(product(tmp_path / "r.tif", bands=[BandInfo("x")], tags=tags), inputs={})
    assert item.datetime is None
    assert item.common_metadata.start_datetime == dt.datetime(2021, 5, 1, tzinfo=dt.timezone.utc)
    assert item.common_metadata.end_datetime == dt.datetime(2021, 7, 4, 10, tzinfo=dt.timezone.utc)


def test_dates_from_the_inputs(tmp_path, monkeypatch):
    out = product(tmp_path / "p.tif")
    pan = an_input(tmp_path / "pan.tif", "2020:03:04 10:11:12")
    ms = an_input(tmp_path / "ms.tif", "2020:03:04 10:11:12")
    item = stac_item(out, inputs={"PAN": pan, "MS": ms})
    assert item.datetime == dt.datetime(2020, 3, 4, 10, 11, 12, tzinfo=dt.timezone.utc)
    assert item.properties["spatialx:datetime_source"] == "inputs"

    later = an_input(tmp_path / "later.tif", "2020:03:06 00:00:00")
    item = stac_item(out, inputs={"PAN": pan, "MS": later})
    assert item.datetime is None and item.properties["start_datetime"] == "2020-03-04T10:11:12Z"
    assert item.properties["end_datetime"] == "2020-03-06T00:00:00Z"

    # A sensor product's reader states the acquisition in its metadata, which wins over the TIFF tag.
    real = stac_module.open_raster

    def with_metadata(path, role="input", **kwargs):
        from dataclasses import replace

        return replace(real(path, role, **kwargs), metadata={"acquisition_date": "2019-12-31"})

    monkeypatch.setattr(stac_module, "open_raster", with_metadata)
    item = stac_item(out, inputs={"PAN": pan})
    assert item.datetime == dt.datetime(2019, 12, 31, tzinfo=dt.timezone.utc)


def test_no_date_anywhere_falls_back_to_the_file_time(tmp_path):
    out = product(tmp_path / "p.tif")
    item = stac_item(out, inputs={"PAN": an_input(tmp_path / "pan.tif"), "gone": tmp_path / "missing.tif"})
    assert item.properties["spatialx:datetime_source"] == "file"
    assert abs(item.datetime.timestamp() - out.stat().st_mtime) < 1.5


def test_written_items_have_relative_hrefs_and_round_trip(tmp_path):
    (tmp_path / "products").mkdir()
    (tmp_path / "inputs").mkdir()
    (tmp_path / "catalog" / "items").mkdir(parents=True)
    pan = an_input(tmp_path / "inputs" / "pan.tif", "2020:03:04 10:11:12")
    out = product(tmp_path / "products" / "fused.tif")
    qml = tmp_path / "products" / "fused.qml"
    qml.write_text("<qgis/>")
    report = tmp_path / "products" / "fused.quality.json"
    report.write_text("{}")
    ndvi = write_array(tmp_path / "products" / "ndvi.tif", np.zeros((1, UTM.height, UTM.width), "float32"), UTM,
                       [BandInfo("NDVI")], nodata=float("nan"))
    item = stac_item(out, inputs={"PAN": pan}, item_id="run-1",
                     extra_assets={"ndvi": ndvi, "style": qml, "quality": report})
    target = write_stac_item(item, tmp_path / "catalog" / "items" / "run-1.json")

    data = json.loads(target.read_text())
    assert data["type"] == "Feature" and data["stac_version"] == "1.1.0" and data["id"] == "run-1"
    assert {"geometry", "bbox", "properties", "links", "assets"} <= data.keys()
    assert data["assets"]["data"]["href"] == "../../products/fused.tif"
    assert data["assets"]["ndvi"]["roles"] == ["data"] and "raster:bands" in data["assets"]["ndvi"]
    assert data["assets"]["style"]["roles"] == ["metadata"] and data["assets"]["quality"]["roles"] == ["metadata"]
    links = [link for link in data["links"] if link["rel"] == "derived_from"]
    assert links == [{"rel": "derived_from", "href": "../../inputs/pan.tif", "title": "PAN",
                      "type": str(pystac.MediaType.GEOTIFF)}]
    assert not any(link["rel"] == "self" for link in data["links"])
    assert not any(Path(a["href"]).is_absolute() for a in data["assets"].values())

    again = pystac.Item.from_file(str(target))
    assert Path(again.assets["data"].get_absolute_href()) == out
    assert Path(again.get_single_link("derived_from").get_absolute_href()) == pan
    assert again.datetime == item.datetime and again.bbox == pytest.approx(item.bbox)
    assert EOExtension.ext(again.assets["data"]).bands[2].center_wavelength == pytest.approx(0.66)


def test_a_collection_spans_its_items_and_leaves_them_alone(tmp_path):
    other = Grid(Affine(500.0, 0, 650000, 0, -500.0, 5150000), 40, 40, CRS.from_epsg(32633))
    first = stac_item(product(tmp_path / "a.tif", tags={"SPATIALX_DATES": {"x": "2021-01-01"}}), inputs={})
    second = stac_item(product(tmp_path / "b.tif", grid=other, tags={"SPATIALX_DATES": {"x": "2021-02-01"}}),
                       inputs={})
    (tmp_path / "items").mkdir()
    paths = [write_stac_item(item, tmp_path / "items" / f"{item.id}.json") for item in (first, second)]
    before = [p.read_bytes() for p in paths]

    written = write_collection([first, second], tmp_path / "collection.json", "batch", "a batch <of> runs")
    assert [p.read_bytes() for p in paths] == before
    data = json.loads(written.read_text())
    assert data["type"] == "Collection" and data["id"] == "batch" and data["description"] == "a batch <of> runs"
    assert [link["href"] for link in data["links"] if link["rel"] == "item"] == ["./items/a.json", "./items/b.json"]
    bbox = data["extent"]["spatial"]["bbox"][0]
    assert bbox[0] == pytest.approx(min(first.bbox[0], second.bbox[0]))
    assert bbox[3] == pytest.approx(max(first.bbox[3], second.bbox[3]))
    assert data["extent"]["temporal"]["interval"] == [["2021-01-01T00:00:00Z", "2021-02-01T00:00:00Z"]]
    loaded = pystac.Collection.from_file(str(written))
    assert sorted(item.id for item in loaded.get_items()) == ["a", "b"]

    unwritten = stac_item(product(tmp_path / "c.tif"), inputs={})
    with pytest.raises(OutputError, match="has not been written"):
        write_collection([unwritten], tmp_path / "c.json", "c", "c")


def test_missing_and_unreadable_products_name_the_file(tmp_path):
    with pytest.raises(ReadError, match=r"missing\.tif: product does not exist"):
        stac_item(tmp_path / "missing.tif", inputs={})
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a tiff")
    with pytest.raises(ReadError, match=r"junk\.tif"):
        stac_item(junk, inputs={})
    with pytest.raises(ReadError, match="side product 'ndvi' does not exist"):
        stac_item(product(tmp_path / "p.tif"), inputs={}, extra_assets={"ndvi": tmp_path / "nope.tif"})


def test_an_item_of_a_real_fusion(tmp_path):
    import spatialx
    from spatialx.sample import write_sample
    from spatialx.sensors import get_sensor

    scene = write_sample(tmp_path / "scene", sensor="qb", size=64, seed=1)
    result = spatialx.fuse("pansharpen", {"pan": scene["pan"], "ms": scene["ms"]}, tmp_path / "brovey.tif",
                           method="brovey", sensor="qb")
    item = stac_item(result.output, inputs={"PAN": scene["pan"], "MS": scene["ms"]}, seconds=result.seconds,
                     extra_assets={key: path for key, path in result.products.items() if key != "product"})
    props = item.properties
    assert props["spatialx:task"] == "pansharpen" and props["spatialx:method"] == "brovey"
    assert props["spatialx:sensor"] == "qb" and isinstance(props["spatialx:params"], dict)
    assert props["spatialx:datetime_source"] == "file"  # the synthetic scene states no acquisition date
    assert item.assets["style"].roles == ["metadata"] and item.assets["style"].href.endswith(".qml")
    profile = get_sensor("qb")
    eo = EOExtension.ext(item.assets["data"]).bands
    assert [b.center_wavelength for b in eo] == pytest.approx([b.center_nm / 1000 for b in profile.bands])
    with rasterio.open(result.output) as src:
        bounds = rasterio.warp.transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
        assert ProjectionExtension.ext(item).code == f"EPSG:{src.crs.to_epsg()}"
    assert item.bbox == pytest.approx(list(bounds), abs=1e-6)
    assert all(math.isfinite(v) for v in item.bbox)
    target = write_stac_item(item, tmp_path / "brovey.json")
    assert {link.title for link in pystac.Item.from_file(str(target)).get_links("derived_from")} == {"PAN", "MS"}
