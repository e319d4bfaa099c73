#!/usr/bin/env bash
# The CUDA path's checks on a real GPU, in one run (about 10 minutes on an H200):
#   1. the CUDA tests on the GPU (tests/cuda_sim with FASTNN_TEST_REAL_GPU=1: every kernel at
#      production tile sizes, the 784-4097-10 batch-1000 fits against the CPU, cuBLASLt in
#      FP32 and TF32 against the float64 CPU gradient),
#   2. launches per step (benchmarks/launches_per_step.py), both GEMM paths,
#   3. benchmarks/compare_torch_cuda.py: FP32 and TF32, batches 512-8192, 784-4096-4096-10 and
#      784-512-256-10, fastnn's cuBLASLt and Numba GEMMs against torch.
# Everything is printed and also written under $OUT (or ./gpu_check_out) as logs.
#
# What it needs: numba-cuda, nvmath-python, CuPy, torch with CUDA (pip install '.[cuda]' torch).
# On a machine that reaches PyPI, FASTNN_GPU_CHECK_INSTALL=1 installs them. A machine with no
# network (the device tool's nvidia-h200 image has torch, CuPy and numba-cuda, not
# nvmath-python) takes nvmath-python as a wheel in .whl/, fetched beforehand on a machine with
# a network, from the repository root:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 -d .whl nvmath-python==1.0.0
# then (device tool) run: command "bash benchmarks/gpu_check.sh", carry [".whl"], timeout_s 600.
set -u
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-gpu_check_out}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/fastnn_site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/fastnn_site"
fi
if [ "${FASTNN_GPU_CHECK_INSTALL:-0}" = 1 ]; then
    $PY -m pip install -q '.[cuda]' torch
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
$PY - <<'EOF' 2>&1 | tee "$OUT_DIR/versions.log"
import importlib
for name in ("numpy", "numba", "numba.cuda", "nvmath", "cupy", "torch"):
    try:
        m = importlib.import_module(name)
        print(f"{name} {getattr(m, '__version__', '')}")
    except Exception as exc:  # noqa: BLE001
        print(f"{name}: NOT IMPORTABLE ({type(exc).__name__}: {exc})")
from numba import cuda
print("numba.cuda.is_available():", cuda.is_available())
from fastnn._kernels.cuda import cublaslt
import numpy as np
for tf32 in (False, True):
    g, why = cublaslt.gemms_or_reason(np.dtype(np.float32), False, False, tf32)
    print(f"float32 allow_tf32={tf32}: {'cuBLASLt' if g else 'Numba GEMM: ' + why}")
EOF

echo "== 1. tests on the GPU (the production-size ones first, then the kernel suite)"
start=$(date +%s)
FASTNN_TEST_REAL_GPU=1 timeout 200 $PY -m pytest -q -p no:cacheprovider -rs \
    tests/cuda_sim/test_cuda_real_gpu.py 2>&1 | tee "$OUT_DIR/tests_real_gpu.log" | tail -30
FASTNN_TEST_REAL_GPU=1 timeout 120 $PY -m pytest -q -p no:cacheprovider --maxfail=5 \
    tests/cuda_sim --ignore=tests/cuda_sim/test_cuda_real_gpu.py \
    2>&1 | tee "$OUT_DIR/tests.log" | tail -30
echo "(tests: $(( $(date +%s) - start )) s)"

echo "== 2. launches per step"
timeout 45 $PY benchmarks/launches_per_step.py --sizes 784,512,256,10 --batch 512 \
    2>&1 | tee "$OUT_DIR/launches.log"

echo "== 3. fastnn against torch (CUDA)"
timeout 200 $PY benchmarks/compare_torch_cuda.py --batches 512,2048,8192 --samples 16384 \
    --epochs 3 --sizes 784,4096,4096,10 --sizes 784,512,256,10 --precision fp32,tf32 \
    --gemm auto,numba 2>&1 | tee "$OUT_DIR/compare.log"
echo "== done in $SECONDS s"
