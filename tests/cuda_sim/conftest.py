"""CUDA kernels under Numba's CUDA simulator.

NUMBA_ENABLE_CUDASIM=1 must be set before numba is first imported, so these tests run in their
own pytest process: tests/test_cuda.py launches `python -m pytest tests/cuda_sim` with it set.
In any other process (a plain `python -m pytest` from the root) this directory is skipped,
unless FASTNN_TEST_REAL_GPU=1 asks for the same tests on a real GPU:
    FASTNN_TEST_REAL_GPU=1 python -m pytest tests/cuda_sim
Under the simulator the fixture below patches the tile and block sizes small so that every
kernel runs several blocks (and the GEMM several K slabs) on shapes the simulator handles in
seconds; on a real GPU the production sizes run (test_cuda_real_gpu.py adds uneven production
shapes there).
"""
import os

import pytest

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
REAL_GPU = os.environ.get("FASTNN_TEST_REAL_GPU") == "1"
if not (SIMULATED or REAL_GPU):
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch):
    if not SIMULATED:  # a real GPU runs the production tile and block sizes
        return
    from fastnn._kernels.cuda import dense, network
    monkeypatch.setattr(dense, "TILE", 4)
    monkeypatch.setattr(dense, "TILE_K", 4)
    monkeypatch.setattr(dense, "WORK", 2)
    monkeypatch.setattr(dense, "THREADS", 4)
    monkeypatch.setattr(network, "NORM_THREADS", 4)
    monkeypatch.setattr(network, "NORM_BLOCKS", 3)


def pytest_collection_modifyitems(config, items):
    """FASTNN_SIM_SHARD=k/n keeps every n-th test from the k-th: tests/test_cuda.py runs the
    simulator suite as n such processes at once (the simulator is single-threaded Python)."""
    shard = os.environ.get("FASTNN_SIM_SHARD")
    if not shard:
        return
    k, n = (int(part) for part in shard.split("/"))
    dropped = [item for i, item in enumerate(items) if i % n != k]
    items[:] = [item for i, item in enumerate(items) if i % n == k]
    config.hook.pytest_deselected(items=dropped)
