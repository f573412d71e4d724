#!/usr/bin/env bash
# Download, here (PyPI reachable), the wheels a GPU machine of the `device` tool lacks for spatialx: its image has
# Python 3.12 with CUDA torch, numba, xarray, h5py, typer, rich, safetensors, onnx and onnxruntime, but not rasterio,
# dask or rioxarray (see /work/.library/device/KINDS.md). scripts/gpu_check.sh installs them from .whl/ there.
#   scripts/gpu_wheels.sh        # then run scripts/gpu_check.sh on the device with carry [".whl"]
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# The names below and what they need that the image does not hold (pyhdf is left out: only the MODIS HDF4 reader
# uses it, and it has no manylinux wheel).
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
    -d .whl rasterio affine cligj click-plugins dask partd locket rioxarray pyproj
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl sewar
ls -la .whl
du -sh .whl
