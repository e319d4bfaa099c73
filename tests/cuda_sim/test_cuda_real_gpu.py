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


# ---------------------------------------------------------------------------- cuBLASLt
EPS_TF32 = 2.0 ** -10  # TF32 keeps 10 of FP32's 23 mantissa bits (inputs; FP32 accumulation)


def _lt_gemms_used(monkeypatch):
    """Record which GEMMs each CUDA fit gets (cublaslt.gemms_or_reason's answer)."""
    from fastnn._kernels.cuda import cublaslt
    try:
        cublaslt.NvmathBackend()
    except ImportError as exc:
        pytest.skip(f"nvmath-python / CuPy not importable: {exc}")
    seen = []
    original = cublaslt.gemms_or_reason

    def recording(*args, **kw):
        out = original(*args, **kw)
        seen.append(out)
        return out

    monkeypatch.setattr(cublaslt, "gemms_or_reason", recording)
    return seen


@pytest.mark.parametrize("tf32", [False, True], ids=["fp32", "tf32"])
@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_cublaslt_step_matches_cpu_float64(monkeypatch, act, tf32):
    """One full-batch SGD step (lr 1, so the update is the gradient) on 784-4097-10 at batch
    1000 through cuBLASLt (relu: RELU_AUX_BIAS forward, DRELU_BGRAD / BGRADA backward; gelu:
    plain GEMMs, Numba passes, BGRADA), against the float64 gradient of the CPU path. Bound:
    one step's rounding (bounds.step_units, in FP32 or TF32 epsilons) plus the rounding of
    the float32 subtraction p - g (||p|| / ||g|| FP32 epsilons)."""
    from bounds import EPS32, assert_close, step_units
    seen = _lt_gemms_used(monkeypatch)
    sizes = [784, 4097, 10]
    rng = np.random.default_rng(1)
    X = rng.standard_normal((1000, 784)).astype(np.float32)
    y = rng.integers(0, 10, 1000)
    model = fastnn.MLP(sizes, activation=act, output="softmax", dtype="float32", seed=0)
    start = model.params.copy()
    fastnn.Trainer(model, fastnn.optim.SGD(lr=1.0), batch_size=1000, epochs=1, shuffle=False,
                   verbose=0, device="cuda", allow_tf32=tf32).fit(X, y)
    (gemms, reason), = seen
    assert gemms is not None, reason
    assert gemms.allow_tf32 is tf32 and len(gemms.plans) == 2 + 2 + 1  # forward, dW, dx
    grad_gpu = start.astype(np.float64) - model.params.astype(np.float64)
    ref = fastnn.MLP(sizes, activation=act, output="softmax", dtype="float64", seed=0)
    ref.params[...] = start
    _, grad = ref.loss_and_grad(X.astype(np.float64), y, loss="cross_entropy")
    units = (step_units(sizes, 1000) * (EPS_TF32 / EPS32 if tf32 else 1.0)
             + np.linalg.norm(start) / np.linalg.norm(grad))
    assert_close(grad_gpu, grad, units, np.float32, f"{act} {'tf32' if tf32 else 'fp32'} grad")


def test_cublaslt_fit_uneven_batches_matches_numba_path(monkeypatch):
    """Two epochs of Adam at batch 1000 over 2500 rows (a short last batch, its own plans) and
    a validation set: cuBLASLt FP32 against the Numba GEMM on the same GPU, within the
    rounding of the steps (bounds.training_units, FP32)."""
    from bounds import assert_close, training_units
    seen = _lt_gemms_used(monkeypatch)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((2500, 784)).astype(np.float32)
    y = rng.integers(0, 10, 2500)
    val = (X[:300], y[:300])
    sizes = [784, 4097, 10]
    out = {}
    for gemm in ("numba", "auto"):
        monkeypatch.setenv("FASTNN_CUDA_GEMM", gemm)
        model = fastnn.MLP(sizes, activation="relu", output="softmax", dtype="float32", seed=0)
        h = fastnn.Trainer(model, fastnn.optim.SGD(lr=0.01, momentum=0.9), batch_size=1000,
                           epochs=2, shuffle=False, verbose=0, device="cuda").fit(
            X, y, validation_data=val)
        out[gemm] = (model.params.copy(), h)
    assert seen[0][0] is None and seen[1][0] is not None, seen
    # forward, dW, dx per batch size (1000 and 500) and the validation forward (300 rows)
    assert len(seen[1][0].plans) == 2 * (2 + 2 + 1) + 2
    units = training_units(sizes, 1000, 6)
    assert_close(out["auto"][0], out["numba"][0], units, np.float32, "params")
    for key in ("loss", "val_loss"):
        assert_close(out["auto"][1][key], out["numba"][1][key], units, np.float32, key)
