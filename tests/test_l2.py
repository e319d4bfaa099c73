"""The L2 penalty `alpha` (scikit-learn's convention), fused into the compiled loop: for a
batch of B rows the gradient of every weight matrix gains alpha * W / B (biases none), and the
reported loss alpha / 2 * sum(W^2) / B per batch (so the epoch loss is the mean over samples
of the penalized batch losses). Like torch's weight_decay it is added after gradient-norm
clipping, and `grad_norm` reports the data gradient."""
import numpy as np
import pytest

import fastnn

import naive

SIZES = (4, 6, 5, 3)


def penalized_reference(params_list, X, y, alpha, lr, batch, epochs, act="tanh",
                        output="softmax", loss="cross_entropy"):
    """Minibatch SGD in float64 NumPy on loss_b + alpha/2 sum W^2 / B (the order 0..n-1)."""
    params = [np.array(p, dtype=np.float64) for p in params_list]
    n = X.shape[0]
    losses = []
    for _ in range(epochs):
        total = 0.0
        for start in range(0, n, batch):
            idx = np.arange(start, min(start + batch, n))
            B = len(idx)
            value, dWs, dbs = naive.loss_and_grads(params, X[idx], y[idx], act, output, loss)
            sumsq = sum(float(np.sum(W * W)) for W in params[0::2])
            total += value * B + 0.5 * alpha * sumsq
            for layer in range(len(dWs)):
                params[2 * layer] -= lr * (dWs[layer] + alpha * params[2 * layer] / B)
                params[2 * layer + 1] -= lr * dbs[layer]
        losses.append(total / n)
    return params, losses


def build(params_list, dtype="float64"):
    model = fastnn.MLP(SIZES, activation="tanh", output="softmax", dtype=dtype)
    model.params = naive.flatten(params_list)
    return model


@pytest.mark.parametrize("batch", [None, 4, 7])
def test_sgd_with_alpha_matches_float64_reference(batch):
    params_list, X, y = naive.make_problem(SIZES, "tanh", "softmax", "cross_entropy", n=17)
    model = build(params_list)
    hist = fastnn.Trainer(model, fastnn.optim.SGD(lr=0.3), batch_size=batch, epochs=3,
                          shuffle=False, alpha=0.7, verbose=0).fit(X, y)
    ref, ref_loss = penalized_reference(params_list, X, y, 0.7, 0.3, batch or 17, 3)
    np.testing.assert_allclose(model.params, naive.flatten(ref), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(hist.history["loss"], ref_loss, rtol=1e-12)


def test_penalized_gradient_against_finite_differences():
    """One full-batch SGD step with lr = 1 moves the parameters by minus the gradient of the
    penalized loss: checked against central differences of that loss."""
    params_list, X, y = naive.make_problem(SIZES, "tanh", "softmax", "cross_entropy", n=9)
    flat = naive.flatten(params_list)
    alpha, n = 0.3, 9
    w_mask = np.zeros_like(flat)
    for _, sl in naive.tensor_slices(SIZES)[0::2]:
        w_mask[sl] = 1.0

    def penalized(v):
        return (naive.loss_of_flat(v, SIZES, X, y, "tanh", "softmax", "cross_entropy")
                + 0.5 * alpha * float(np.sum((v * w_mask) ** 2)) / n)

    g_fd = naive.central_difference_gradient(penalized, flat)
    model = build(params_list)
    hist = fastnn.Trainer(model, fastnn.optim.SGD(lr=1.0), batch_size=None, epochs=1,
                          alpha=alpha, verbose=0).fit(X, y)
    np.testing.assert_allclose(flat - model.params, g_fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(hist.history["loss"][0], penalized(flat), rtol=1e-12)


@pytest.mark.parametrize("opt", [
    fastnn.optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    fastnn.optim.Adam(lr=0.01, weight_decay=0.02, amsgrad=True),
    fastnn.optim.AdamW(lr=0.01, weight_decay=0.05),
    fastnn.optim.RMSprop(lr=0.01, momentum=0.5, centered=True, weight_decay=0.01),
    fastnn.optim.Adagrad(lr=0.05, weight_decay=0.01),
    fastnn.optim.Adadelta(lr=1.0, weight_decay=0.01),
], ids=lambda o: type(o).__name__)
def test_every_optimizer_sees_the_penalized_gradient(opt):
    """Two full-batch steps of Trainer(alpha=) equal the optimizer's own update (the torch
    formula, fastnn.optim.Optimizer.update) fed the data gradient plus alpha * W / n."""
    params_list, X, y = naive.make_problem(SIZES, "tanh", "softmax", "cross_entropy", n=9)
    alpha = 0.4
    model = build(params_list)
    ref = build(params_list)
    ref_opt = type(opt)(**opt.hyperparameters())
    fastnn.Trainer(model, opt, batch_size=None, epochs=2, alpha=alpha, verbose=0).fit(X, y)
    for _ in range(2):
        _, grad = ref.loss_and_grad(X, y)
        for W, dW in zip(ref.weights, _weight_views(ref, grad)):
            dW += alpha * W / 9
        ref_opt.update(ref.params, grad)
    np.testing.assert_allclose(model.params, ref.params, rtol=1e-12, atol=1e-14)


def _weight_views(model, flat):
    out = []
    off = 0
    for W, b in zip(model.weights, model.biases):
        out.append(flat[off:off + W.size].reshape(W.shape))
        off += W.size + b.size
    return out


def test_fused_and_threaded_paths_agree():
    """A network large enough for the fused backward (>= 2^16 parameters, batch <= 128) and,
    with FASTNN_THREADS=2, two training threads: the same as the unfused single-thread path
    (clip_grad_norm=1e9 never clips, but turns fusion off)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(96, 64))
    y = rng.integers(0, 10, 96)

    def fit(clip, threads, monkeypatch=None):
        model = fastnn.MLP([64, 512, 128, 10], dtype="float64", output="softmax", seed=0)
        hist = fastnn.Trainer(model, fastnn.optim.Adam(lr=1e-3), batch_size=32, epochs=2,
                              seed=0, alpha=0.5, clip_grad_norm=clip, verbose=0).fit(X, y)
        return model.params, hist.history["loss"]

    plain = fit(1e9, 1)
    fused = fit(None, 1)
    np.testing.assert_allclose(fused[0], plain[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fused[1], plain[1], rtol=1e-12)


def test_fused_and_unfused_agree_on_two_threads(monkeypatch):
    monkeypatch.setenv("FASTNN_THREADS", "2")
    test_fused_and_threaded_paths_agree()


def test_alpha_is_checked_and_zero_is_the_plain_fit():
    params_list, X, y = naive.make_problem(SIZES, "tanh", "softmax", "cross_entropy", n=9)
    model = build(params_list)
    for bad, err in ((-1.0, ValueError), (float("nan"), ValueError), ("1", TypeError)):
        with pytest.raises(err, match="alpha"):
            fastnn.Trainer(model, alpha=bad)
    a, b = build(params_list), build(params_list)
    fastnn.Trainer(a, fastnn.optim.SGD(lr=0.1), alpha=0.0, epochs=2, seed=1,
                   verbose=0).fit(X, y)
    fastnn.Trainer(b, fastnn.optim.SGD(lr=0.1), epochs=2, seed=1, verbose=0).fit(X, y)
    np.testing.assert_array_equal(a.params, b.params)
