"""Quicklooks (overview choice, grey / true colour / Pauli, nodata black, the PNG encoder) and the batch summary
page (self-contained, escaped, relative thumbnails, a failing preview that does not fail the page)."""

from __future__ import annotations

import re
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from spatialx.errors import OutputError, ReadError
from spatialx.grid import Grid
from spatialx.io.write import BandInfo, write_array
from spatialx.products.quicklook import C3_BANDS, png_bytes, quicklook, quicklook_png, thumbnail_plan, write_png
from spatialx.products.summary import SummaryEntry, quicklook_folder, write_summary_html

CRS_UTM = CRS.from_epsg(32631)


def grid(width: int, height: int) -> Grid:
    return Grid(Affine(2.0, 0, 500000, 0, -2.0, 4800000), width, height, CRS_UTM)


def read_png(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB, non-interlaced PNG whose rows all use filter 0 (what write_png writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, payload = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + payload)
        chunks.append((kind, payload))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, interlace) == (8, 2, 0)
    raw = zlib.decompress(b"".join(p for k, p in chunks if k == b"IDAT"))
    rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + 3 * width)
    assert not rows[:, 0].any()
    return rows[:, 1:].reshape(height, width, 3)


def test_the_thumbnail_comes_from_the_coarsest_overview_big_enough():
    # A 4096 x 2048 COG has levels 2048, 1024, 512 px wide (factors 2, 4, 8).
    assert thumbnail_plan(4096, 2048, [2, 4, 8], 256) == (2, 128, 256)
    assert thumbnail_plan(4096, 2048, [2, 4, 8], 600) == (1, 300, 600)
    assert thumbnail_plan(4096, 2048, [2, 4, 8], 3000) == (None, 1500, 3000)
    assert thumbnail_plan(4096, 2048, [], 256) == (None, 128, 256)
    assert thumbnail_plan(100, 50, [], 256) == (None, 50, 100)  # never upsampled
    with pytest.raises(ValueError):
        thumbnail_plan(10, 10, [], 0)


def test_a_large_product_is_previewed_from_its_overview(tmp_path, monkeypatch):
    import rasterio

    ramp = np.broadcast_to(np.arange(2048, dtype="float32"), (1, 1536, 2048)).copy()
    path = write_array(tmp_path / "big.tif", ramp, grid(2048, 1536), [BandInfo("x")])
    opened = []
    real_open = rasterio.open

    def spy(*args, **kwargs):
        opened.append(kwargs.get("overview_level"))
        return real_open(*args, **kwargs)

    monkeypatch.setattr("spatialx.products.quicklook.rasterio.open", spy)
    rgb = quicklook(path, 256)
    assert rgb.shape == (192, 256, 3) and rgb.dtype == np.uint8
    with real_open(path) as src:
        assert src.overviews(1) == [2, 4]
    # 2048 -> 1024 -> 512: the 512 px level (index 1) is the coarsest at least 256 px wide.
    assert 1 in opened
    # A left-to-right ramp: grey, and brighter to the right.
    assert (rgb[..., 0] == rgb[..., 1]).all() and rgb[100, 250, 0] > rgb[100, 5, 0]


def test_true_colour_by_wavelength_and_nodata_black(tmp_path):
    bands = [BandInfo("Coastal", 425, 50), BandInfo("Blue", 480, 60), BandInfo("Green", 545, 70),
             BandInfo("Red", 660, 60), BandInfo("NIR", 832, 125)]
    data = np.full((5, 40, 60), 100, "uint16")
    data[3, :, 30:] = 900  # right half red
    data[0] = 1000  # coastal must not be shown: the blue channel is the Blue band
    data[3, :, :2] += 1  # some spread, so the stretch of each channel is not degenerate
    data[1, :, 5:8] = 200
    data[2, :, 5:8] = 200
    data[:, :10, :] = 0  # nodata rows
    path = write_array(tmp_path / "ms.tif", data, grid(60, 40), bands, nodata=0)
    rgb = quicklook(path)
    assert rgb.shape == (40, 60, 3)
    assert not rgb[:10].any()
    assert rgb[20, 45, 0] == 255 and rgb[20, 45, 2] == 0
    assert rgb[20, 15, 0] == 0


def test_single_band_is_grey_and_nan_is_black(tmp_path):
    data = np.linspace(0, 1, 32 * 32, dtype="float32").reshape(1, 32, 32)
    data[0, :, :4] = np.nan
    rgb = quicklook(write_array(tmp_path / "ndvi.tif", data, grid(32, 32), [BandInfo("NDVI")],
                                nodata=float("nan")))
    assert (rgb[..., 0] == rgb[..., 2]).all() and not rgb[:, :4].any() and rgb[-1, -1, 0] == 255


def test_a_c3_product_is_shown_as_pauli(tmp_path):
    # Left: surface scattering (HH = VV in phase: C11 = C33 = Re C13), right: double bounce (Re C13 = -C11),
    # so the left is blue (T11) and the right red (T22); a little volume (C22) everywhere.
    c3 = np.zeros((9, 32, 32), "float32")
    c3[0] = c3[8] = 1.0
    c3[5] = 0.01
    c3[3, :, :16] = 0.99
    c3[3, :, 16:] = -0.99
    c3[:, :, 14:18] *= np.float32(1.2)  # spread for the stretch
    bands = [BandInfo(name) for name in C3_BANDS]
    rgb = quicklook(write_array(tmp_path / "c3.tif", c3, grid(32, 32), bands, nodata=float("nan")))
    left, right = rgb[16, 4].astype(int), rgb[16, 28].astype(int)
    assert left[2] > left[0] and right[0] > right[2]


def test_unknown_bands_fall_back_to_the_first_three(tmp_path):
    data = np.zeros((4, 16, 16), "uint8")
    data[0, :, 8:] = 200
    data[0, :, :1] = 1
    rgb = quicklook(write_array(tmp_path / "u.tif", data + 1, grid(16, 16), [BandInfo(f"q{i}") for i in range(4)]))
    assert rgb[5, 12, 0] == 255 and rgb[5, 3, 0] == 0


def test_png_is_standard(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (7, 11, 3), dtype=np.uint8)
    path = write_png(rgb, tmp_path / "x.png")
    assert np.array_equal(read_png(path), rgb)
    try:
        from PIL import Image
    except ImportError:
        pass
    else:
        with Image.open(path) as image:
            assert np.array_equal(np.asarray(image.convert("RGB")), rgb)
    with pytest.raises(ValueError):
        png_bytes(np.zeros((4, 4), np.uint8))
    with pytest.raises(ReadError, match=r"missing\.tif"):
        quicklook_png(tmp_path / "missing.tif", tmp_path / "m.png")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[dict[str, str]] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        self.urls += [v for k, v in attrs.items() if k in ("src", "href") and v]


def batch(tmp_path: Path) -> list[SummaryEntry]:
    bands = [BandInfo("Blue", 480, 60), BandInfo("Green", 545, 70), BandInfo("Red", 660, 60)]
    data = np.random.default_rng(0).integers(1, 1000, (3, 48, 64)).astype("uint16")
    ms = write_array(tmp_path / "ms.tif", data, grid(64, 48), bands, nodata=0)
    pan = write_array(tmp_path / "pan.tif", data[:1], grid(64, 48), [BandInfo("PAN")], nodata=0)
    fused = write_array(tmp_path / "fused.tif", data, grid(64, 48), bands, nodata=0)
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00garbage")
    return [
        SummaryEntry("run <1> & co", "pansharpen", "gsa", "done", None, 12.25, fused, {"PAN": pan, "MS": ms},
                     {"D_lambda": 0.0213, "D_s": 0.0456, "HQNR": 0.934}),
        SummaryEntry("run 2", "pansharpen", "brovey", "failed", "MS: 3 bands, brovey needs 4\nTraceback ...", 0.5,
                     None, {"PAN": pan, "MS": broken}),
        SummaryEntry("run 3", "hmif", "cnmf", "skipped", "output exists", None, None, {}),
    ]


def test_the_summary_page_is_self_contained_and_escaped(tmp_path):
    out_dir = tmp_path / "report"
    out_dir.mkdir()
    page = write_summary_html(batch(tmp_path), out_dir / "summary.html", "Batch <2024> & friends")
    html = page.read_text()
    parser = _Page()
    parser.feed(html)
    assert "script" not in parser.tags and "link" not in parser.tags
    assert not any(re.match(r"[a-z]+:", url) or url.startswith(("/", "//")) for url in parser.urls)
    assert "<title>Batch &lt;2024&gt; &amp; friends</title>" in html and "run &lt;1&gt; &amp; co" in html
    assert "<1>" not in html
    # The failed run shows the first line of its reason only; the skipped one its reason.
    assert "MS: 3 bands, brovey needs 4" in html and "Traceback" not in html and "output exists" in html
    assert "12.2 s" in html or "12.3 s" in html
    for index in ("D_lambda", "D_s", "HQNR", "0.0213", "0.934"):
        assert index in html

    folder = quicklook_folder(page)
    assert folder == out_dir / "summary_quicklooks" and folder.is_dir()
    sources = [image["src"] for image in parser.images]
    # run 1: PAN, MS, product; run 2: PAN (its MS cannot be read); run 3: no thumbnails.
    assert len(sources) == 4 and all(src.startswith("summary_quicklooks/") for src in sources)
    for src in sources:
        rgb = read_png(out_dir / src)
        assert rgb.shape[2] == 3 and max(rgb.shape[:2]) <= 256 and rgb.any()
    assert "broken.tif &mdash; no preview (" in html


def test_the_page_fails_only_when_it_cannot_be_written(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        write_summary_html([], tmp_path / "nowhere" / "s.html", "t")
    page = write_summary_html([], tmp_path / "empty.html", "nothing")
    assert "no runs" in page.read_text()
    with pytest.raises(ValueError, match="status"):
        SummaryEntry("x", "pansharpen", "gsa", "ok")
