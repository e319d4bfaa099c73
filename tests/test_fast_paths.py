"""The performance paths: one-sample backward, cheap gradient norms, denormal flushing in the
training loop, and the BLAS thread settings (fastnn/_threads.py)."""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastnn
from fastnn import _threads

import naive

SIZES = (5, 7, 6, 3)
HIDDEN = ["relu", "leaky_relu", "identity", "tanh", "elu", "sigmoid", "gelu"]


@pytest.mark.parametrize("act", HIDDEN)
def test_single_sample_gradient_matches_naive(act):
    """One row: dW is an outer product (not a GEMM), the forward in-place bias + activation."""
    params, X, y = naive.make_problem(SIZES, act, "softmax", "cross_entropy", n=1, seed=3)
    model = fastnn.MLP(SIZES, activation=act, output="softmax", dtype="float64")
    model.params[:] = naive.flatten(params)
    loss, grad = model.loss_and_grad(X, y)
    ref_loss, ref_grad = naive.loss_and_flat_grad(params, X, y, act, "softmax", "cross_entropy")
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(model.predict(X), naive.predict(params, X, act, "softmax"),
                               rtol=1e-12)


@pytest.mark.parametrize("batch_size", [1, 4, 8, 16])
def test_history_grad_norm_is_mean_of_per_step_norms(batch_size):
    """With lr=0 the weights stay put, so each step's ||dW_l|| is that of loss_and_grad on its
    rows: up to 8 rows from Gram products of activations and deltas, above that by reading
    the gradient."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, SIZES[0]))
    y = rng.integers(0, SIZES[-1], 32)
    model = fastnn.MLP(SIZES, activation="tanh", output="softmax", dtype="float64", seed=1)
    trainer = fastnn.Trainer(model, fastnn.optim.SGD(lr=0.0), batch_size=batch_size,
                             epochs=1, shuffle=False, verbose=0)
    history = trainer.fit(X, y)
    expected = np.zeros(model.n_layers)
    for start in range(0, 32, batch_size):
        _, grad = model.loss_and_grad(X[start:start + batch_size], y[start:start + batch_size])
        for l in range(model.n_layers):
            dW = grad[model._w_off[l]:model._b_off[l]]
            expected[l] += np.linalg.norm(dW)
    np.testing.assert_allclose(history.history["grad_norm"][0], expected / (32 // batch_size),
                               rtol=1e-12)


def test_clip_norm_uses_full_norm_at_batch_one():
    """Clipping at batch 1 (norm from ||a|| ||dz|| plus the biases) equals clipping by hand."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(1, SIZES[0]))
    y = np.array([1])
    model = fastnn.MLP(SIZES, activation="relu", output="softmax", dtype="float64", seed=4)
    start = model.params.copy()
    _, grad = model.loss_and_grad(X, y)
    norm = np.linalg.norm(grad)
    max_norm = norm / 3
    fastnn.Trainer(model, fastnn.optim.SGD(lr=0.1), batch_size=1, epochs=1, verbose=0,
                   clip_grad_norm=max_norm).fit(X, y)
    np.testing.assert_allclose(model.params, start - 0.1 * grad * max_norm / (norm + 1e-6),
                               rtol=1e-12)


def _denormal_count(a):
    tiny = np.finfo(a.dtype).tiny
    return int(np.count_nonzero((a != 0) & (np.abs(a) < tiny)))


def test_training_flushes_denormals_and_restores_the_fp_mode():
    """A feature that turns constant 0 leaves its weights zero gradients, and Adam's first
    moment decays 0.9x per step; in IEEE float32 it sticks in the denormal range (at ~6e-45,
    where every update costs ~100x). Inside train_steps the 0.1 m term flushes to 0 instead,
    so m stays a (tiny) normal number; outside, numpy still produces denormals."""
    rng = np.random.default_rng(0)
    X = rng.random((1500, 4), dtype=np.float32)
    y = (X[:, 0] > X[:, 1]).astype(np.int64)
    model = fastnn.MLP([4, 8, 2], activation="relu", output="softmax", seed=0)
    opt = fastnn.optim.Adam(lr=1e-3)
    trainer = fastnn.Trainer(model, opt, batch_size=1, epochs=1, seed=0, verbose=0)
    trainer.fit(X[:200], y[:200])
    moment = opt.state[0].reshape(-1)[:4 * 8].reshape(4, 8)  # m of W_0
    assert np.count_nonzero(moment[3]) >= 4  # (dead ReLU units have m = 0 already)
    X[:, 3] = 0.0  # from now on W_0[3] gets zero gradients: m decays to below 1e-38
    trainer.fit(X, y)
    assert np.all(np.abs(moment[3]) < 1e-36), moment[3]
    assert _denormal_count(opt.state) == 0
    assert np.float32(1e-20) * np.float32(1e-20) != 0  # the caller's mode is back
    assert np.float32(1e-30) * np.float32(1e-30) == 0  # (a float32 underflow is still 0)


def test_blas_threads_by_gemm_size(monkeypatch):
    monkeypatch.delenv("FASTNN_BLAS_THREADS", raising=False)
    monkeypatch.setattr(_threads, "cores", lambda: 2)
    small, large = [64, 128, 64, 10], [784, 512, 256, 10]
    assert _threads.blas_threads(small, 1) == 1
    assert _threads.blas_threads(small, 128) == 1
    assert _threads.blas_threads(small, 512) == 2  # 512 * 64 * 128 multiply-adds = 2**22
    assert _threads.blas_threads(small, 511) == 1
    assert _threads.blas_threads(large, 1) == 2  # 784 * 512 weights >= 2**18
    assert _threads.blas_threads([600, 400, 10], 1) == 1  # 240,000 weights
    monkeypatch.setenv("FASTNN_BLAS_THREADS", "3")
    assert _threads.blas_threads(small, 1) == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("FASTNN_BLAS_THREADS", bad)
        with pytest.raises(ValueError, match="FASTNN_BLAS_THREADS"):
            _threads.blas_threads(small, 1)


def _kernel_blas_threads():
    kernel, _ = _threads._pools()
    return [c.num_threads for c in kernel.lib_controllers]


def test_limit_sets_and_restores_pools(monkeypatch):
    monkeypatch.setenv("FASTNN_BLAS_THREADS", "1")
    kernel, other = _threads._pools()
    with threadpool_limits(2, user_api="blas"):
        before = _kernel_blas_threads() + [c.num_threads for c in other.lib_controllers]
        with _threads.compute_threads([4, 3], 1):
            assert _kernel_blas_threads() == [1] * len(kernel.lib_controllers)
            assert all(c.num_threads == 1 for c in other.lib_controllers)
        after = _kernel_blas_threads() + [c.num_threads for c in other.lib_controllers]
    assert after == before


def test_outer_limit_wins_during_fit(monkeypatch):
    """A caller's threadpool_limits(1) is never raised, and fit restores every pool."""
    monkeypatch.setenv("FASTNN_BLAS_THREADS", "2")
    seen = []

    class Probe:
        def on_epoch_end(self, epoch, logs):
            seen.append(_kernel_blas_threads())

    X = np.random.default_rng(0).random((16, 4))
    y = np.arange(16) % 2
    with threadpool_limits(1, user_api="blas"):
        model = fastnn.MLP([4, 2], output="softmax")
        fastnn.Trainer(model, batch_size=4, epochs=1, verbose=0, callbacks=[Probe()]).fit(X, y)
        assert seen and all(n == 1 for n in seen[0])
        assert all(n == 1 for n in _kernel_blas_threads())


def test_describe_names_the_pools():
    text = _threads.describe()
    assert "cores" in text and "training GEMMs call" in text and "scipy BLAS" in text


def test_fp_mode_restored_when_a_kernel_raises():
    """train_steps flushes denormals; a kernel that raises inside it skips its own restore,
    so the trainer restores the caller's mode in a finally."""
    rng = np.random.default_rng(0)
    X = rng.random((16, 4), dtype=np.float32)
    y = rng.integers(0, 2, 16)
    model = fastnn.MLP([4, 8, 2], output="softmax", seed=0)
    opt = fastnn.optim.Adam()
    opt.code = 99  # no such optimizer: the update kernel raises inside train_steps
    with pytest.raises(ValueError, match="unknown optimizer code"):
        fastnn.Trainer(model, opt, batch_size=4, epochs=1, verbose=0).fit(X, y)
    assert np.float32(1e-20) * np.float32(1e-20) != 0  # denormals are back


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_propagates_nan_like_torch(dtype):
    from fastnn._kernels import dense

    z = np.array([[np.nan, -1.0, 2.0, -0.0]], dtype=dtype)
    b = np.zeros(4, dtype=dtype)
    for act in (dense.RELU, dense.LEAKY_RELU):
        a = z.copy()
        dense.bias_activation_inplace(a, b, act, 0, 1, 0, 4)
        assert np.isnan(a[0, 0]) and a[0, 2] == 2.0
        out = np.empty_like(z)
        dense.bias_activation_forward(out, z.copy(), b, act, 0, 1, 0, 4)
        assert np.isnan(out[0, 0]) and out[0, 2] == 2.0
    a = z.copy()
    dense.bias_activation_inplace(a, b, dense.RELU, 0, 1, 0, 4)
    assert a[0, 1] == 0.0
