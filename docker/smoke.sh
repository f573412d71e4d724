#!/bin/sh
# Smoke test run INSIDE a spatialx image (installed there as /usr/local/bin/spatialx-smoke):
#   docker run --rm --entrypoint spatialx-smoke spatialx-cpu            # version, sample, pansharpen, full demo
#   docker run --rm --entrypoint spatialx-smoke spatialx-cpu --quick    # skip the demo (the other checks only)
# Exits non-zero on the first failure.
set -eu

QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
WORK=${SMOKE_DIR:-/tmp}

step() { printf '\n==> %s\n' "$*"; }
elapsed() { echo "    ($(( $(date +%s) - $1 )) s)"; }

step "spatialx --version"
spatialx --version

step "python: torch build, GDAL (from the rasterio wheel), pyhdf"
python - <<'EOF'
import sys
import rasterio, torch, pyhdf.SD  # noqa: F401
print("python", sys.version.split()[0])
print("torch", torch.__version__, "cuda", torch.version.cuda, "cuda available", torch.cuda.is_available())
print("rasterio", rasterio.__version__, "GDAL", rasterio.__gdal_version__, "from", rasterio.__file__)
import pyhdf
print("pyhdf", getattr(pyhdf, "__version__", "ok"))
EOF

step "spatialx sample $WORK/s --size 256"
t=$(date +%s)
spatialx sample "$WORK/s" --size 256
elapsed "$t"
ls -l "$WORK/s"

for method in brovey gsa; do
    step "spatialx pansharpen $WORK/s/pan.tif $WORK/s/ms.tif $WORK/s/out_$method.tif -s wv3 -m $method"
    t=$(date +%s)
    spatialx pansharpen "$WORK/s/pan.tif" "$WORK/s/ms.tif" "$WORK/s/out_$method.tif" -s wv3 -m "$method"
    elapsed "$t"
    python -c "import rasterio, sys; d = rasterio.open(sys.argv[1]); print('   ', d.width, 'x', d.height, d.count, 'bands', d.dtypes[0], d.crs)" "$WORK/s/out_$method.tif"
done

step "spatialx pansharpen ... -m pnn --adapt-steps 2 --device cpu (a network, fitted on this scene)"
t=$(date +%s)
spatialx pansharpen "$WORK/s/pan.tif" "$WORK/s/ms.tif" "$WORK/s/out_pnn.tif" -s wv3 -m pnn --adapt-steps 2 --device cpu
elapsed "$t"

if [ "$QUICK" = 1 ]; then
    step "demo skipped (--quick)"
else
    step "python -m spatialx.demo $WORK/demo"
    t=$(date +%s)
    python -m spatialx.demo "$WORK/demo"
    elapsed "$t"
fi

printf '\nSMOKE OK\n'
