#!/usr/bin/env bash
# Render a batch summary page (spatialx.products.summary) in headless Chromium and check the screenshot shows it:
# not blank, and with coloured thumbnails where the first card's images are.
#
# Usage: scripts/check_summary_browser.sh [WORK_DIR]   (default: a temporary folder, removed at the end)
# Installs nothing. Exit 0: page rendered; 1: the check failed; 77: no Chromium (the automake "skipped" status).
# Environment: PYTHON (default .venv/bin/python, else python3), CHROMIUM (default: chromium on PATH or
# /usr/bin/chromium).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python="python3"; fi
fi
chromium="${CHROMIUM:-$(command -v chromium || true)}"
if [[ -z "$chromium" && -x /usr/bin/chromium ]]; then chromium=/usr/bin/chromium; fi
if [[ -z "$chromium" ]]; then
    echo "check_summary_browser: chromium not found; install it with: apt-get install chromium" >&2
    exit 77
fi

if [[ $# -ge 1 ]]; then
    work="$1"
    mkdir -p "$work"
else
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
fi
work="$(cd "$work" && pwd)"

# A small batch of synthetic products: a true-colour one, a single band with NaN nodata, a C3 (Pauli), plus a
# failed and a skipped run, so that every kind of card is on the page.
OMP_NUM_THREADS=1 "$python" - "$work" <<'PY'
import sys
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from spatialx.grid import Grid
from spatialx.io.write import BandInfo, write_array
from spatialx.products.quicklook import C3_BANDS
from spatialx.products.summary import SummaryEntry, write_summary_html

work = Path(sys.argv[1])
for name in ("ms.tif", "pan.tif", "fused.tif", "ndvi.tif", "c3.tif", "summary.html"):
    (work / name).unlink(missing_ok=True)
rng = np.random.default_rng(0)
grid = Grid(Affine(2.0, 0, 500000, 0, -2.0, 4800000), 192, 128, CRS.from_epsg(32631))
rows, cols = np.mgrid[0:128, 0:192]
rgb_bands = [BandInfo("Blue", 480, 60), BandInfo("Green", 545, 70), BandInfo("Red", 660, 60)]
scene = np.stack([200 + 3 * cols, 200 + 4 * rows, 900 - 3 * cols]) + rng.integers(0, 40, (3, 128, 192))
fused = write_array(work / "fused.tif", scene.astype("uint16"), grid, rgb_bands, nodata=0)
ms = write_array(work / "ms.tif", (scene // 2 + 1).astype("uint16"), grid, rgb_bands, nodata=0)
pan = write_array(work / "pan.tif", scene.mean(axis=0, keepdims=True).astype("uint16"), grid, [BandInfo("PAN")],
                  nodata=0)
ndvi = np.sin(cols / 20.0)[None].astype("float32")
ndvi[:, :16] = np.nan
ndvi_path = write_array(work / "ndvi.tif", ndvi, grid, [BandInfo("NDVI")], nodata=float("nan"))
c3 = np.zeros((9, 128, 192), "float32")
c3[0] = c3[8] = 1.0 + rng.random((128, 192))
c3[5] = 0.05 + 0.2 * rng.random((128, 192))
c3[3] = np.where(cols < 96, 0.9, -0.9) * c3[0]
c3_path = write_array(work / "c3.tif", c3, grid, [BandInfo(n) for n in C3_BANDS], nodata=float("nan"))
entries = [
    SummaryEntry("wv3 scene <A>", "pansharpen", "gsa", "done", None, 3.2, fused, {"PAN": pan, "MS": ms},
                 {"D_lambda": 0.021, "D_s": 0.046, "HQNR": 0.934}),
    SummaryEntry("ndvi", "pansharpen", "brovey", "done", None, 1.0, ndvi_path, {"MS": ms}),
    SummaryEntry("radarsat2", "polsar", "sar-fusion", "done", None, 75.0, c3_path, {"C3": c3_path}),
    SummaryEntry("broken", "hmif", "cnmf", "failed", "HSI: not a raster GDAL can read", 0.1, None,
                 {"HSI": work / "missing.tif"}),
    SummaryEntry("again", "pansharpen", "gsa", "skipped", "output exists", None, None, {}),
]
print(write_summary_html(entries, work / "summary.html", "spatialx batch check"))
PY

shot="$work/summary.png"
rm -f "$shot"
# --virtual-time-budget lets the page (local files only) finish loading before the screenshot.
timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=5000 \
    --screenshot="$shot" --window-size=1280,1600 "file://$work/summary.html" >"$work/chromium.log" 2>&1 || {
    echo "check_summary_browser: chromium failed (log: $work/chromium.log)" >&2
    tail -n 5 "$work/chromium.log" >&2
    exit 1
}

"$python" - "$shot" <<'PY'
import struct
import sys
import zlib
from pathlib import Path

import numpy as np


def decode(path: Path) -> np.ndarray:
    """PNG -> (H, W, 3) uint8: with Pillow when it is there, else this decoder for 8-bit RGB(A) (all five row
    filters, which Chromium uses)."""
    try:
        from PIL import Image
    except ImportError:
        pass
    else:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path}: not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, payload = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", payload)
        elif kind == b"IDAT":
            idat.append(payload)
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        raise SystemExit(f"{path}: unexpected PNG layout (depth {depth}, colour type {colour}, interlace {interlace})")
    channels = 3 if colour == 2 else 4
    stride = width * channels
    raw = zlib.decompress(b"".join(idat))
    out = bytearray(height * stride)
    previous = [0] * stride
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)]
        row = [0] * stride
        for x in range(stride):
            left = row[x - channels] if x >= channels else 0
            up = previous[x]
            if kind == 0:
                value = 0
            elif kind == 1:
                value = left
            elif kind == 2:
                value = up
            elif kind == 3:
                value = (left + up) >> 1
            else:
                upleft = previous[x - channels] if x >= channels else 0
                p = left + up - upleft
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
                value = left if pa <= pb and pa <= pc else up if pb <= pc else upleft
            row[x] = (line[x] + value) & 255
        out[y * stride:(y + 1) * stride] = bytes(row)
        previous = row
    return np.frombuffer(bytes(out), np.uint8).reshape(height, width, channels)[..., :3]


shot = Path(sys.argv[1])
if not shot.is_file() or shot.stat().st_size == 0:
    raise SystemExit(f"check_summary_browser: no screenshot at {shot}")
image = decode(shot).astype(np.float64)
variance = float(image.var())
if variance < 100.0:
    raise SystemExit(f"check_summary_browser: the screenshot is blank (pixel variance {variance:.1f})")
# The first card's thumbnails sit below its header and quality table: in that band of the page there must be
# saturated (not grey, not white) pixels, which only the images have.
band = image[150:700]
saturation = band.max(axis=2) - band.min(axis=2)
coloured = float((saturation > 60).mean())
non_white = float((band.min(axis=2) < 200).mean())
if coloured < 0.01 or non_white < 0.05:
    raise SystemExit(f"check_summary_browser: no thumbnails drawn (coloured {coloured:.3%}, "
                     f"non-white {non_white:.3%} of the thumbnail area)")
print(f"check_summary_browser: ok ({shot}: {image.shape[1]}x{image.shape[0]}, variance {variance:.0f}, "
      f"coloured {coloured:.1%} of the thumbnail area)")
PY
