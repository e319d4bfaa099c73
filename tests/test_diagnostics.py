"""Per-layer gradient norms, vanishing/exploding diagnosis, and History's R^2."""
import numpy as np
import pytest

import fastnn
from fastnn.diagnostics import GradientReport, layer_grad_norms

import naive


def deep_net_data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(256, 16)), rng.integers(0, 4, 256)


def deep_history(activation, seed=0):
    """One epoch of a 10-layer (9 hidden x 32) network on the same data; per-layer ||dW_l||."""
    X, y = deep_net_data()
    model = fastnn.MLP([16] + [32] * 9 + [4], activation=activation, output="softmax",
                       dtype="float64", seed=seed)
    return fastnn.Trainer(model, fastnn.optim.SGD(lr=0.1), batch_size=32, epochs=1, seed=0,
                          verbose=0).fit(X, y)


@pytest.mark.parametrize("seed", [0, 1])
def test_sigmoid_gradients_vanish_and_relu_gradients_do_not(seed):
    sigmoid = deep_history("sigmoid", seed).grad_norms[0]
    relu = deep_history("relu", seed).grad_norms[0]
    assert sigmoid.shape == relu.shape == (10,)
    # sigmoid: every layer multiplies the delta by A' <= 1/4 -> orders of magnitude
    assert sigmoid[0] / sigmoid[-1] < 1e-2
    assert np.all(np.diff(np.log10(sigmoid)) > 0)  # the norm shrinks layer after layer
    # ReLU with He init: the first layer's gradient is within 10x of the last layer's
    assert 0.1 < relu[0] / relu[-1] < 10

    sig_report = fastnn.diagnose(deep_history("sigmoid", seed))
    relu_report = fastnn.diagnose(deep_history("relu", seed))
    assert not sig_report.ok and 0 in sig_report.vanishing and sig_report.exploding == []
    assert relu_report.ok and relu_report.flags == ["ok"] * 10
    assert "vanishing gradients in layer(s) [0" in str(sig_report)


def test_history_grad_norms_equal_the_reference_gradient():
    # full batch, one epoch: the recorded norms are those of the gradient at the initial
    # weights, which the float64 reference computes independently
    X, y = deep_net_data()
    model = fastnn.MLP([16, 8, 6, 4], activation="tanh", output="softmax", dtype="float64",
                       seed=3)
    params = [a.copy() for pair in zip(model.weights, model.biases) for a in pair]
    history = fastnn.Trainer(model, fastnn.optim.SGD(lr=0.1), batch_size=None, epochs=2,
                             verbose=0).fit(X, y)
    _, dWs, _ = naive.loss_and_grads(params, X, y, "tanh", "softmax", "cross_entropy")
    expected = [np.linalg.norm(dW) for dW in dWs]
    assert history.grad_norms.shape == (2, 3)
    np.testing.assert_allclose(history.grad_norms[0], expected, rtol=1e-10)
    np.testing.assert_array_equal(history.grad_norms, np.array(history["grad_norm"]))


def test_diagnose_model_uses_the_full_batch_gradient():
    X, y = deep_net_data()
    model = fastnn.MLP([16, 8, 6, 4], activation="sigmoid", output="softmax", dtype="float64",
                       seed=1)
    params = [a.copy() for pair in zip(model.weights, model.biases) for a in pair]
    _, dWs, _ = naive.loss_and_grads(params, X, y, "sigmoid", "softmax", "cross_entropy")
    expected = np.array([np.linalg.norm(dW) for dW in dWs])
    report = fastnn.diagnose(model, X, y)
    np.testing.assert_allclose(report.grad_norms, expected, rtol=1e-10)
    np.testing.assert_allclose(report.ratios, expected / expected[-1], rtol=1e-10)
    assert report.source == "model gradient on 256 samples"
    _, grad = model.loss_and_grad(X, y)
    np.testing.assert_allclose(layer_grad_norms(model, grad), expected, rtol=1e-10)


@pytest.mark.parametrize("norms, flags", [
    ([1e-5, 1e-2, 1.0], ["vanishing", "ok", "ok"]),
    ([2e3, 5.0, 1.0], ["exploding", "ok", "ok"]),
    ([np.inf, 1.0, 1.0], ["non-finite", "ok", "ok"]),
    ([1.0, np.nan, 1.0], ["ok", "non-finite", "ok"]),
    ([1.0, 1.0, np.inf], ["ok", "ok", "non-finite"]),
    ([0.0, 0.0, 0.0], ["ok", "ok", "ok"]),
    ([1.0, 0.0, 0.0], ["exploding", "ok", "ok"]),
    ([0.0, 1.0, 1.0], ["vanishing", "ok", "ok"]),
    ([0.5], ["ok"]),
])
def test_report_flags(norms, flags):
    report = GradientReport(norms, 1e-3, 1e3, "test")
    assert report.flags == flags
    assert report.vanishing == [i for i, f in enumerate(flags) if f == "vanishing"]
    assert report.exploding == [i for i, f in enumerate(flags)
                                if f in ("exploding", "non-finite")]
    assert report.ok == all(f == "ok" for f in flags)
    assert report.as_dict()["flags"] == flags
    text = str(report)
    assert text.count("  layer ") == len(norms)
    assert ("no vanishing or exploding gradients" in text) == report.ok
    assert ("vanishing gradients in layer(s)" in text) == bool(report.vanishing)
    assert ("exploding gradients in layer(s)" in text) == bool(report.exploding)


def test_diagnose_thresholds_and_epoch_choice():
    history = fastnn.History()
    history.record(0, {"loss": 1.0, "grad_norm": [1e-2, 1.0]})
    history.record(1, {"loss": 0.5, "grad_norm": [1e-4, 1.0]})
    assert fastnn.diagnose(history).vanishing == [0]  # the last epoch by default
    assert fastnn.diagnose(history, epoch=0).ok
    assert fastnn.diagnose(history, epoch=-2).source == "history epoch 0"
    assert fastnn.diagnose(history, epoch=0, vanishing_ratio=0.1).vanishing == [0]
    assert fastnn.diagnose(history, exploding_ratio=2, vanishing_ratio=1e-5).ok


@pytest.mark.parametrize("call, error, match", [
    (lambda h, m: fastnn.diagnose("history"), TypeError, "History or a fastnn.MLP"),
    (lambda h, m: fastnn.diagnose(m), ValueError, "needs data X"),
    (lambda h, m: fastnn.diagnose(h, epoch=5), ValueError, "out of range"),
    (lambda h, m: fastnn.diagnose(h, epoch=1.0), TypeError, "epoch"),
    (lambda h, m: fastnn.diagnose(h, X=np.zeros((2, 2))), ValueError, "only used with a model"),
    (lambda h, m: fastnn.diagnose(fastnn.History()), ValueError, "no epochs"),
    (lambda h, m: fastnn.diagnose(h, vanishing_ratio=0), ValueError, "vanishing_ratio"),
    (lambda h, m: fastnn.diagnose(h, exploding_ratio=1e-4), ValueError, "exploding_ratio"),
    (lambda h, m: layer_grad_norms(m, np.zeros(3)), ValueError, "grad has shape"),
])
def test_diagnose_rejects_bad_input(call, error, match):
    history = fastnn.History()
    history.record(0, {"grad_norm": [1.0, 1.0]})
    model = fastnn.MLP([2, 3, 1], seed=0)
    with pytest.raises(error, match=match):
        call(history, model)


def test_empty_history_grad_norms_shape():
    assert fastnn.History().grad_norms.shape == (0, 0)


# --------------------------------------------------------------------------- R^2 in History
def r2_variance_weighted(y, pred):
    """sklearn.metrics.r2_score(y, pred, multioutput="variance_weighted"), written out."""
    sse = np.sum((y - pred) ** 2)
    sst = np.sum((y - y.mean(axis=0)) ** 2)
    return 1.0 - sse / sst


def regression_data(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    # two outputs with very different variances: variance-weighted != uniform average
    y = np.column_stack([X[:, 0] - X[:, 1], 10 * X[:, 2] + 3]) + 0.1 * rng.normal(size=(n, 2))
    return X, y


def test_r2_matches_its_definition_and_sklearn():
    X, y = regression_data(200, 0)
    Xv, yv = regression_data(100, 1)
    model = fastnn.MLP([3, 16, 2], activation="tanh", dtype="float64", seed=0)
    initial = model.copy()
    history = fastnn.Trainer(model, fastnn.optim.Adam(lr=1e-2), batch_size=None, epochs=3,
                             verbose=0).fit(X, y, validation_data=(Xv, yv))
    # full batch: epoch 0's training loss (and R^2) is measured at the initial weights
    assert history["r2"][0] == pytest.approx(r2_variance_weighted(y, initial.predict(X)),
                                             rel=1e-10)
    # validation R^2 is measured after the epoch, i.e. at the final weights for the last one
    expected = r2_variance_weighted(yv, model.predict(Xv))
    assert history["val_r2"][-1] == pytest.approx(expected, rel=1e-10)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    assert history["val_r2"][-1] == pytest.approx(
        sklearn_metrics.r2_score(yv, model.predict(Xv), multioutput="variance_weighted"),
        rel=1e-10)
    assert "accuracy" not in history.history and "val_accuracy" not in history.history


def test_r2_constant_target_follows_sklearn_convention():
    X, _ = regression_data(50, 0)
    y = np.full((50, 1), 2.0)
    model = fastnn.MLP([3, 1], dtype="float64", seed=0)
    history = fastnn.Trainer(model, epochs=1, verbose=0).fit(X, y)
    assert history["r2"] == [0.0]  # imperfect fit of a constant: 0, not -inf


def test_classifiers_record_accuracy_not_r2():
    X, y = deep_net_data()
    model = fastnn.MLP([16, 4], output="softmax", seed=0)
    history = fastnn.Trainer(model, epochs=1, verbose=0).fit(X, y, validation_split=0.25)
    assert "r2" not in history.history and "val_r2" not in history.history
    assert 0 <= history["val_accuracy"][0] <= 1
