"""spatialx: fuse satellite images with classical methods and deep networks, tile by tile, georeferenced.

The public API is importable from here; heavy modules load on first use so that ``import spatialx`` stays cheap.
"""

from __future__ import annotations

from spatialx._lazy import lazy_attributes

__version__ = "0.1.0"

_LAZY = {
    "fuse": "spatialx.pipeline:fuse",
    "RunOptions": "spatialx.options:RunOptions",
    "xr": "spatialx.xr",
    "pansharpen": "spatialx.tasks.pansharpen:pansharpen",
    "ndvi": "spatialx.products.ndvi:ndvi",
    "get_task": "spatialx.tasks:get_task",
    "list_tasks": "spatialx.tasks:list_tasks",
    "list_methods": "spatialx.methods.registry:list_methods",
    "create_method": "spatialx.methods.registry:create_method",
    "get_sensor": "spatialx.sensors:get_sensor",
    "list_sensors": "spatialx.sensors:list_sensors",
    "open_raster": "spatialx.io.read:open_raster",
    "SpatialxError": "spatialx.errors:SpatialxError",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = ["__version__", *_LAZY]
