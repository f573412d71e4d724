"""Raster input and output: windowed reads that name the file on failure, and the one COG writer."""

from spatialx.io.read import RasterInfo, ThreadLocalReader, open_raster
from spatialx.io.write import RasterWriter, write_array

__all__ = ["RasterInfo", "RasterWriter", "ThreadLocalReader", "open_raster", "write_array"]
