"""spatialx: fuse satellite images with classical methods and deep networks, tile by tile, georeferenced.

The public API is importable from here; heavy modules load on first use so that ``import spatialx`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "pansharpen": "spatialx.tasks.pansharpen:pansharpen",
    "ndvi": "spatialx.products.ndvi:ndvi",
    "fuse_scene": "spatialx.pipeline:fuse_scene",
    "list_methods": "spatialx.methods.registry:list_methods",
    "create_method": "spatialx.methods.registry:create_method",
    "get_sensor": "spatialx.sensors:get_sensor",
    "list_sensors": "spatialx.sensors:list_sensors",
    "open_raster": "spatialx.io.read:open_raster",
    "SpatialxError": "spatialx.errors:SpatialxError",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'spatialx' has no attribute {name!r}")
    module, _, attribute = _LAZY[name].partition(":")
    return getattr(import_module(module), attribute)


__all__ = ["__version__", *_LAZY]
