"""The CUDA path without a GPU: import safety and device validation here; every kernel and the
device fit in Numba's CUDA simulator (tests/cuda_sim, its own process, because
NUMBA_ENABLE_CUDASIM must be set before numba is imported); and every kernel compiled to PTX
for a real GPU when the CUDA toolkit is installed (tests/cuda_sim/compile_ptx.py)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastnn

ROOT = Path(__file__).resolve().parent.parent


def _run(args, **env):
    return subprocess.run([sys.executable, *args], check=False, cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=900)


def test_import_fastnn_does_not_import_numba_cuda():
    code = "import sys, fastnn; print('numba.cuda' in sys.modules)"
    out = _run(["-c", code])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_device_is_validated():
    model = fastnn.MLP([3, 2], output="softmax")
    for bad in ("gpu", "CUDA", None, 0):
        with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
            fastnn.Trainer(model, device=bad)
    assert fastnn.Trainer(model).device == "cpu"


def test_cuda_without_gpu_is_a_clear_error():
    from numba import cuda
    if cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="needs an NVIDIA GPU"):
        fastnn.Trainer(fastnn.MLP([3, 2], output="softmax"), device="cuda")


def test_cuda_kernels_in_simulator(tmp_path):
    """The simulator suite, split round-robin over one process per core (at most 2): the
    simulator runs each kernel thread as Python, on one core."""
    shards = max(1, min(2, os.cpu_count() or 1))
    logs = [tmp_path / f"shard{k}.log" for k in range(shards)]
    procs = []
    for k, log in enumerate(logs):
        with open(log, "w") as f:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/cuda_sim"],
                cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1",
                     "FASTNN_SIM_SHARD": f"{k}/{shards}"}))
    try:
        for p in procs:
            p.wait(timeout=900)
    finally:
        for p in procs:
            p.kill()
    for k, (p, log) in enumerate(zip(procs, logs)):
        out = log.read_text()
        print(f"shard {k}/{shards}:", out[-3000:])
        assert p.returncode == 0, out[-6000:]
        assert " passed" in out


def test_cuda_kernels_compile_to_ptx():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "tests/cuda_sim/compile_ptx.py"], check=False,
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    print(out.stdout[-3000:], out.stderr[-3000:])
    if out.returncode == 77:
        pytest.skip("no CUDA toolkit (NVVM) to compile PTX with")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
