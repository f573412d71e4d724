"""``spatialx ndvi IN OUT --sensor S``."""

from __future__ import annotations

from spatialx.cli import options as opt


def command(source: opt.InputPath, output: opt.OutputPath, sensor: opt.Sensor = "wv3",
            overwrite: opt.Overwrite = False) -> None:
    """Write the NDVI (float32 COG, nodata -9999) of a multispectral image, with a QGIS style (.qml)."""
    from spatialx.cli.progress import console
    from spatialx.products.ndvi import ndvi

    path = ndvi(source, output, sensor, overwrite=overwrite)
    console.print(f"wrote {path} and {path.with_suffix('.qml')}")
