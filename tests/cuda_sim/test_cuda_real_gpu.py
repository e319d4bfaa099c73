"""On a real GPU only (FASTNN_TEST_REAL_GPU=1, without the simulator): the production tile and
block sizes on uneven shapes, a 784-4097-10 net at batch 1000, against the CPU path.

    FASTNN_TEST_REAL_GPU=1 python -m pytest tests/cuda_sim/test_cuda_real_gpu.py
"""
import os

import numpy as np
import pytest

import fastnn

pytestmark = pytest.mark.skipif(
    os.environ.get("FASTNN_TEST_REAL_GPU") != "1"
    or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1",
    reason="needs a real GPU (FASTNN_TEST_REAL_GPU=1, no simulator)")


def _fit(device, X, y, dtype):
    model = fastnn.MLP([784, 4097, 10], activation="relu", output="softmax", dtype=dtype,
                       seed=0)
    opt = fastnn.optim.SGD(lr=0.01, momentum=0.9)
    history = fastnn.Trainer(model, opt, batch_size=1000, epochs=2, shuffle=False,
                             clip_grad_norm=5.0, verbose=0, device=device).fit(X, y)
    return model, opt, history


def test_production_sizes_uneven_shapes_match_cpu():
    from fastnn._kernels.cuda import dense, network
    assert (dense.TILE, dense.TILE_K, dense.WORK, dense.THREADS) == (64, 16, 4, 256)
    assert network.NORM_THREADS == 128
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2500, 784))  # 3 steps per epoch, the last of 500 rows
    y = rng.integers(0, 10, 2500)
    m_cpu, o_cpu, h_cpu = _fit("cpu", X, y, "float64")
    m_gpu, o_gpu, h_gpu = _fit("cuda", X, y, "float64")
    # float64, sums of at most 4097 terms in another order: ~1e-13 relative; 6 SGD steps
    np.testing.assert_allclose(m_gpu.params, m_cpu.params, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(o_gpu.state, o_cpu.state, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(h_gpu["loss"], h_cpu["loss"], rtol=1e-10)
    np.testing.assert_allclose(h_gpu.grad_norms, h_cpu.grad_norms, rtol=1e-9)
    np.testing.assert_allclose(h_gpu["accuracy"], h_cpu["accuracy"], atol=1.5 / 2500)  # a tie
