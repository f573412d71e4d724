#!/usr/bin/env bash
# The device checks, as one prepared script for a session that is lent a GPU machine (the `device` tool):
#   run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=540)     # after scripts/gpu_wheels.sh here
# It installs the carried wheels, runs the CUDA tests (mamba_ssm's kernel where it imports, the bfloat16 paths),
# the bare networks on the GPU (Mpx/s, peak GPU memory, the projected hours for a 40k x 40k scene) and one CLI run
# on a generated 4096 px WorldView-3 scene, writing the logs and JSON under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    python3 -c "import spatialx.models.scan as s; print('mamba_ssm kernel:', s.mamba_selective_scan_fn() is not None)"
} 2>&1 | tee "$OUT/env.txt"
timeout 200 python3 -m pytest -q -x -p no:cacheprovider tests/test_scan.py tests/test_ss2d.py tests/test_metrics_torch.py \
    tests/test_lemamba.py 2>&1 | tail -30 | tee "$OUT/tests.txt"
timeout 200 python3 benchmarks/bench_networks.py --device cuda --tile 1024 --batch 2 --repeat 3 --skip-cli \
    --workdir /tmp/bench 2>&1 | tee "$OUT/bench_networks.txt"
cp /tmp/bench/networks.json "$OUT/networks_cuda.json" 2>/dev/null
timeout 120 python3 benchmarks/bench_networks.py --device cuda --networks lemamba --sizes 4096 --repeat 1 \
    --workdir /tmp/bench 2>&1 | tail -5 | tee "$OUT/bench_cli_4096.txt"
