"""Open a product in headless QGIS as a user would, and report what QGIS shows, as JSON on stdout.

Run with the system Python that has PyQGIS (Debian ``python3-qgis``), not the project's virtualenv::

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/qgis/check_product.py product.tif \
        --area water=0,0,10,10 --area vegetation=20,0,30,10 [--png view.png]

Areas are pixel windows ``col0,row0,col1,row1`` (end-exclusive) of the product. Reported:

* ``on_open``: the renderer right after opening, when QGIS has loaded ``product.qml`` beside it by itself;
* ``without_style``: the renderer QGIS picks when no style is loaded (what a user got before the ``.qml``);
* ``styled``: the renderer after ``loadNamedStyle(product.qml)`` explicitly, with its bands, their names and the
  contrast min/max; ``areas``: the mean rendered RGB over each area (``without_style_areas``: the same without
  the style).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# Before Qt is imported: there is no display in CI or on a server.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor


def band_label(layer: QgsRasterLayer, band: int) -> str | None:
    if band < 1:
        return None
    provider = layer.dataProvider()
    # bandDescription is recent; bandName gives "Band 5: Red" where it is missing.
    described = provider.bandDescription(band) if hasattr(provider, "bandDescription") else ""
    return described or layer.bandName(band)


def enhancement(ce: object) -> dict | None:
    if ce is None:
        return None
    return {"min": ce.minimumValue(), "max": ce.maximumValue(), "algorithm": int(ce.contrastEnhancementAlgorithm())}


def describe(layer: QgsRasterLayer) -> dict:
    renderer = layer.renderer()
    kind = renderer.type()
    out: dict = {"type": kind}
    if kind == "multibandcolor":
        for color in ("red", "green", "blue"):
            band = getattr(renderer, f"{color}Band")()
            ce = getattr(renderer, f"{color}ContrastEnhancement")()
            out[color] = {"band": band, "name": band_label(layer, band), **(enhancement(ce) or {})}
    elif kind == "singlebandgray":
        band = renderer.grayBand()
        out["gray"] = {"band": band, "name": band_label(layer, band), **(enhancement(renderer.contrastEnhancement())
                                                                        or {})}
    origin = renderer.minMaxOrigin()
    out["min_max_origin"] = {"limits": origin.limitsString(origin.limits()),
                             "extent": origin.extentString(origin.extent()),
                             "cumulative_cut": [origin.cumulativeCutLower(), origin.cumulativeCutUpper()]}
    return out


def render(layer: QgsRasterLayer, scale: int) -> object:
    """The layer drawn over its full extent at ``scale`` screen pixels per raster pixel, on white."""
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(layer.width() * scale, layer.height() * scale))
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def mean_rgb(image: object, window: tuple[int, int, int, int], scale: int) -> list[float]:
    col0, row0, col1, row1 = (v * scale for v in window)
    # Half a raster pixel in from each edge, so resampling at area borders does not bleed in.
    inset = scale // 2
    total = [0.0, 0.0, 0.0]
    count = 0
    for y in range(row0 + inset, row1 - inset):
        for x in range(col0 + inset, col1 - inset):
            color = image.pixelColor(x, y)
            total[0] += color.red()
            total[1] += color.green()
            total[2] += color.blue()
            count += 1
    return [round(v / max(count, 1), 2) for v in total]


def parse_area(text: str) -> tuple[str, tuple[int, int, int, int]]:
    name, _, box = text.partition("=")
    values = tuple(int(v) for v in box.split(","))
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"area {text!r}: expected NAME=col0,row0,col1,row1")
    return name, values


def inspect(product: Path, style: Path, areas: list, scale: int, png: Path | None) -> dict:
    on_open = QgsRasterLayer(str(product), product.stem, "gdal")
    if not on_open.isValid():
        return {"valid": False, "error": on_open.error().summary()}
    options = QgsRasterLayer.LayerOptions()
    options.loadDefaultStyle = False
    bare = QgsRasterLayer(str(product), product.stem, "gdal", options)
    styled = QgsRasterLayer(str(product), product.stem, "gdal", options)
    message, loaded = styled.loadNamedStyle(str(style))
    provider = styled.dataProvider()
    image, bare_image = render(styled, scale), render(bare, scale)
    if png:
        image.save(str(png))
    return {
        "valid": True,
        "qgis_version": Qgis.QGIS_VERSION,
        "band_count": styled.bandCount(),
        "color_interpretation": [provider.colorInterpretationName(b) for b in range(1, styled.bandCount() + 1)],
        "style": {"path": str(style), "loaded": bool(loaded), "message": message},
        "on_open": describe(on_open),
        "without_style": describe(bare),
        "styled": describe(styled),
        "areas": {name: mean_rgb(image, box, scale) for name, box in areas},
        "without_style_areas": {name: mean_rgb(bare_image, box, scale) for name, box in areas},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("product", type=Path)
    parser.add_argument("--style", type=Path, help="the .qml (default: the product's, beside it)")
    parser.add_argument("--area", type=parse_area, action="append", default=[])
    parser.add_argument("--scale", type=int, default=2, help="screen pixels per raster pixel")
    parser.add_argument("--png", type=Path, help="also save the styled rendering here")
    args = parser.parse_args()

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    # The layers live only inside inspect(): layers still alive at exitQgis() crash the interpreter on exit.
    report = inspect(args.product, args.style or args.product.with_suffix(".qml"), args.area, args.scale, args.png)
    app.exitQgis()
    print(json.dumps(report, indent=1))
    return 0 if report["valid"] and report["style"]["loaded"] else 1


if __name__ == "__main__":
    sys.exit(main())
