"""fastnn.MLP / fastnn.Trainer against the naive float64 reference (tests/naive.py)."""
import numpy as np
import pytest

import fastnn

import bounds
import naive

ARCHITECTURES = [(4, 5, 3), (3, 4, 5, 2), (4, 3)]
MIXED_ACTIVATIONS = ["elu", "leaky_relu"]  # one per hidden layer of (3, 4, 5, 2)


def arch_activation_cases():
    """(layer_sizes, activation) pairs: every hidden activation on one- and two-hidden-layer
    nets, a per-layer list, and a net without hidden layers."""
    cases = []
    for sizes in ARCHITECTURES:
        if len(sizes) == 2:
            cases.append((sizes, "relu"))
        else:
            cases += [(sizes, act) for act in naive.HIDDEN_ACTIVATIONS]
    cases.append(((3, 4, 5, 2), MIXED_ACTIVATIONS))
    return cases


def case_id(value):
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    if isinstance(value, list):
        return "+".join(value)
    return None


ARCH_ACT = pytest.mark.parametrize("sizes,act", arch_activation_cases(), ids=case_id)
OUTPUT_LOSS = pytest.mark.parametrize("output,loss", naive.VALID_OUTPUT_LOSS)


def build(sizes, act, output, dtype="float64", params_list=None, seed=0):
    """An MLP, with its parameters overwritten by params_list (in fastnn's layout) if given."""
    model = fastnn.MLP(layer_sizes=list(sizes), activation=act, output=output, dtype=dtype,
                       seed=seed)
    if params_list is not None:
        model.params[:] = naive.flatten(params_list).astype(model.dtype)
    return model


def assert_grad_close(g, g_ref, layer_sizes, rtol):
    err = naive.per_tensor_rel_error(g, g_ref, layer_sizes)
    assert err < rtol, f"per-tensor relative gradient error {err:.3e} >= {rtol:.0e}"


# --------------------------------------------------------------------------------------------
# construction, layout, views
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("sizes", ARCHITECTURES, ids=case_id)
def test_attributes_and_layout(sizes, dtype):
    model = build(sizes, "relu", "softmax", dtype)
    assert model.layer_sizes == tuple(sizes)
    assert isinstance(model.layer_sizes, tuple)
    assert model.dtype == np.dtype(dtype)
    assert model.params.dtype == np.dtype(dtype)
    assert model.params.shape == (naive.num_params(sizes),)
    assert np.all(np.isfinite(model.params))
    assert len(model.weights) == len(model.biases) == len(sizes) - 1
    slices = naive.tensor_slices(sizes)
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W, b = model.weights[i], model.biases[i]
        assert W.shape == (n_in, n_out) and b.shape == (n_out,)
        assert W.dtype == b.dtype == np.dtype(dtype)
        assert np.shares_memory(W, model.params) and np.shares_memory(b, model.params)
        np.testing.assert_array_equal(W, model.params[slices[2 * i][1]].reshape(n_in, n_out))
        np.testing.assert_array_equal(b, model.params[slices[2 * i + 1][1]])


def test_seed_reproducible():
    a = build((4, 5, 3), "tanh", "softmax", seed=7)
    b = build((4, 5, 3), "tanh", "softmax", seed=7)
    c = build((4, 5, 3), "tanh", "softmax", seed=8)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)
    assert np.any(a.params != 0)


def test_weights_and_biases_are_writable_views():
    sizes = (4, 5, 3)
    params_list, X, _ = naive.make_problem(sizes, "tanh", "softmax", "cross_entropy")
    model = build(sizes, "tanh", "softmax", params_list=params_list)
    before = model.predict(X).copy()

    model.weights[1][2, 1] = 0.75
    assert model.params[4 * 5 + 5 + 2 * 3 + 1] == 0.75  # W1 starts after W0, b0; C order
    model.biases[0][:] = -0.25
    np.testing.assert_array_equal(model.params[4 * 5:4 * 5 + 5], -0.25)

    params_list[2][2, 1] = 0.75
    params_list[1][:] = -0.25
    after = model.predict(X)
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, naive.predict(params_list, X, "tanh", "softmax"),
                               rtol=1e-12, atol=1e-14)

    # and writing params shows through the views
    model.params[:] = 0.5
    assert np.all(model.weights[0] == 0.5) and np.all(model.biases[1] == 0.5)


# --------------------------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("output", naive.OUTPUT_ACTIVATIONS)
@ARCH_ACT
def test_predict_matches_naive(sizes, act, output):
    params_list, X, _ = naive.make_problem(sizes, act, output, "mse", n=7)
    model = build(sizes, act, output, params_list=params_list)
    got = model.predict(X)
    assert got.shape == (7, sizes[-1])
    np.testing.assert_allclose(got, naive.predict(params_list, X, act, output), rtol=1e-12,
                               atol=1e-14)
    if output == "softmax":
        np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-14)


@pytest.mark.parametrize("output", naive.OUTPUT_ACTIVATIONS)
@pytest.mark.parametrize("act", naive.HIDDEN_ACTIVATIONS)
def test_predict_float32(act, output):
    sizes = (4, 5, 3)
    params_list, X, _ = naive.make_problem(sizes, act, output, "mse", n=7)
    model = build(sizes, act, output, "float32", params_list=params_list)
    params32 = naive.unflatten(model.params.astype(np.float64), sizes)
    X32 = X.astype(np.float32)
    expected = naive.predict(params32, X32.astype(np.float64), act, output)
    # the float64 forward of the same float32 inputs, rounded: one step's forward errors
    bounds.assert_close(model.predict(X32), expected, bounds.step_units(sizes, 7), np.float32,
                        "predictions")


def test_predict_single_sample_and_large_logits():
    sizes = (4, 3)
    params_list, X, _ = naive.make_problem(sizes, "relu", "softmax", "cross_entropy")
    params_list[0] *= 300.0  # logits in the hundreds: softmax/sigmoid must not overflow
    for output in ("softmax", "sigmoid"):
        model = build(sizes, "relu", output, params_list=params_list)
        got = model.predict(X)
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, naive.predict(params_list, X, "relu", output),
                                   rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(model.predict(X[:1]), got[:1], rtol=1e-12)


# --------------------------------------------------------------------------------------------
# loss and gradient, float64
# --------------------------------------------------------------------------------------------
@OUTPUT_LOSS
@ARCH_ACT
def test_loss_and_grad_match_naive_float64(sizes, act, output, loss):
    params_list, X, y = naive.make_problem(sizes, act, output, loss)
    model = build(sizes, act, output, params_list=params_list)
    params_before = model.params.copy()
    value, grad = model.loss_and_grad(X, y, loss=loss)
    ref_value, ref_grad = naive.loss_and_flat_grad(params_list, X, y, act, output, loss)

    assert isinstance(value, float)
    assert grad.shape == model.params.shape and grad.dtype == np.float64
    np.testing.assert_array_equal(model.params, params_before)  # not modified
    assert value == pytest.approx(ref_value, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10,
                               atol=1e-12 * max(np.max(np.abs(ref_grad)), 1e-300))


@OUTPUT_LOSS
@ARCH_ACT
def test_grad_matches_finite_differences_of_own_loss(sizes, act, output, loss):
    """fastnn's analytic gradient vs central differences of fastnn's own loss. make_problem
    keeps every hidden pre-activation >= 1e-3 away from 0, so eps = 1e-6 never crosses a
    relu kink."""
    params_list, X, y = naive.make_problem(sizes, act, output, loss)
    model = build(sizes, act, output, params_list=params_list)
    _, grad = model.loss_and_grad(X, y, loss=loss)

    def fastnn_loss(v):
        model.params[:] = v
        return model.loss_and_grad(X, y, loss=loss)[0]

    fd = naive.central_difference_gradient(fastnn_loss, naive.flatten(params_list), eps=1e-6)
    assert_grad_close(grad, fd, sizes, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# loss and gradient, float32
# --------------------------------------------------------------------------------------------
@OUTPUT_LOSS
@pytest.mark.parametrize("sizes,act", [c for c in arch_activation_cases() if len(c[0]) <= 3],
                         ids=case_id)
def test_loss_and_grad_match_naive_float32(sizes, act, output, loss):
    params_list, X, y = naive.make_problem(sizes, act, output, loss)
    model = build(sizes, act, output, "float32", params_list=params_list)
    X32 = X.astype(np.float32)
    y32 = y if loss == "cross_entropy" else y.astype(np.float32)
    value, grad = model.loss_and_grad(X32, y32, loss=loss)
    # the reference sees exactly the float32-rounded inputs and parameters
    params32 = naive.unflatten(model.params.astype(np.float64), sizes)
    ref_value, ref_grad = naive.loss_and_flat_grad(params32, X32.astype(np.float64),
                                                   y32 if loss == "cross_entropy"
                                                   else y32.astype(np.float64),
                                                   act, output, loss)
    assert isinstance(value, float)
    assert grad.dtype == np.float32 and grad.shape == model.params.shape
    # the float64 computation on the same float32 inputs, rounded: one step's errors
    # (tests/bounds.py), relative to the loss and norm-wise to the whole gradient
    units = bounds.step_units(sizes, X.shape[0])
    bounds.assert_close([value], [ref_value], units, np.float32, "loss")
    bounds.assert_close(grad, ref_grad, units, np.float32, "gradient")


def test_float32_model_accepts_float64_inputs():
    sizes = (4, 5, 3)
    params_list, X, y = naive.make_problem(sizes, "gelu", "softmax", "cross_entropy")
    model = build(sizes, "gelu", "softmax", "float32", params_list=params_list)
    v64, g64 = model.loss_and_grad(X, y, loss="cross_entropy")
    v32, g32 = model.loss_and_grad(X.astype(np.float32), y, loss="cross_entropy")
    # X is rounded to float32 once, then the same computation runs: the same result
    assert v64 == v32
    np.testing.assert_array_equal(g64, g32)


# --------------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("label_dtype", [np.int64, np.int32])
def test_cross_entropy_integer_labels_equal_onehot(label_dtype):
    sizes = (4, 5, 3)
    params_list, X, labels = naive.make_problem(sizes, "relu", "softmax", "cross_entropy", n=8)
    model = build(sizes, "relu", "softmax", params_list=params_list)
    onehot = naive.targets_as_matrix(labels, 3, "cross_entropy")
    v1, g1 = model.loss_and_grad(X, labels.astype(label_dtype), loss="cross_entropy")
    v2, g2 = model.loss_and_grad(X, onehot, loss="cross_entropy")
    assert v1 == pytest.approx(v2, rel=1e-14)
    np.testing.assert_allclose(g1, g2, rtol=1e-12, atol=1e-15)
    ref_value, ref_grad = naive.loss_and_flat_grad(params_list, X, labels, "relu", "softmax",
                                                   "cross_entropy")
    assert v1 == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(g1, ref_grad, rtol=1e-10, atol=1e-14)


def test_cross_entropy_soft_labels():
    sizes = (4, 5, 3)
    params_list, X, probs = naive.make_problem(sizes, "tanh", "softmax", "cross_entropy",
                                               y_kind="probs")
    model = build(sizes, "tanh", "softmax", params_list=params_list)
    value, grad = model.loss_and_grad(X, probs, loss="cross_entropy")
    ref_value, ref_grad = naive.loss_and_flat_grad(params_list, X, probs, "tanh", "softmax",
                                                   "cross_entropy")
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("y_kind", ["default", "binary"])
def test_binary_cross_entropy_targets(y_kind):
    sizes = (4, 5, 1)
    params_list, X, y = naive.make_problem(sizes, "tanh", "sigmoid", "binary_cross_entropy",
                                           y_kind=y_kind)
    model = build(sizes, "tanh", "sigmoid", params_list=params_list)
    v2d, g2d = model.loss_and_grad(X, y, loss="binary_cross_entropy")
    v1d, g1d = model.loss_and_grad(X, y[:, 0], loss="binary_cross_entropy")  # (n,) for k == 1
    ref_value, ref_grad = naive.loss_and_flat_grad(params_list, X, y, "tanh", "sigmoid",
                                                   "binary_cross_entropy")
    assert v2d == pytest.approx(ref_value, rel=1e-12)
    assert v1d == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(g2d, ref_grad, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g1d, ref_grad, rtol=1e-10, atol=1e-14)


def test_binary_cross_entropy_is_stable_for_large_logits():
    sizes = (3, 2)
    params_list, X, y = naive.make_problem(sizes, "relu", "sigmoid", "binary_cross_entropy",
                                           y_kind="binary")
    params_list[0] *= 200.0  # |logits| in the hundreds: sigmoid saturates to exactly 0 or 1
    model = build(sizes, "relu", "sigmoid", params_list=params_list)
    value, grad = model.loss_and_grad(X, y, loss="binary_cross_entropy")
    zs, acts = naive.forward(params_list, X, "relu", "sigmoid")
    ref_value = naive.loss_value(zs[-1], acts[-1], y, "binary_cross_entropy")
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert value == pytest.approx(ref_value, rel=1e-12)
    # dL/dz = (sigmoid(z) - y) / (n k), written without the (cancelling) chain through a(1-a)
    dz = (naive.sigmoid(zs[-1]) - y) / y.size
    np.testing.assert_allclose(grad, naive.flatten([X.T @ dz, dz.sum(axis=0)]), rtol=1e-10,
                               atol=1e-14)


@pytest.mark.parametrize("output", naive.OUTPUT_ACTIVATIONS)
def test_mse_multi_output_targets(output):
    sizes = (3, 5, 4)
    params_list, X, y = naive.make_problem(sizes, "gelu", output, "mse", n=9)
    assert y.shape == (9, 4)
    model = build(sizes, "gelu", output, params_list=params_list)
    value, grad = model.loss_and_grad(X, y, loss="mse")
    ref_value, ref_grad = naive.loss_and_flat_grad(params_list, X, y, "gelu", output, "mse")
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("output", ["identity", "sigmoid"])
def test_mse_reconstruction_target(output):
    """Autoencoder-style: the target is the input itself."""
    sizes = (5, 3, 5)
    params_list, X, _ = naive.make_problem(sizes, "tanh", output, "mse", n=8)
    if output == "sigmoid":
        X = 1.0 / (1.0 + np.exp(-X))  # targets in (0, 1)
    model = build(sizes, "tanh", output, params_list=params_list)
    value, grad = model.loss_and_grad(X, X, loss="mse")
    ref_value, ref_grad = naive.loss_and_flat_grad(params_list, X, X, "tanh", output, "mse")
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("output,loss", naive.INVALID_OUTPUT_LOSS)
def test_invalid_output_loss_raises(output, loss):
    sizes = (3, 4, 2)
    params_list, X, _ = naive.make_problem(sizes, "relu", output, "mse")
    y = np.array([0, 1, 1, 0, 1, 0]) if loss == "cross_entropy" else np.full((6, 2), 0.5)
    model = build(sizes, "relu", output, params_list=params_list)
    with pytest.raises(ValueError):
        model.loss_and_grad(X, y, loss=loss)


def test_unknown_names_raise():
    with pytest.raises(ValueError):
        fastnn.MLP(layer_sizes=[3, 4, 2], activation="swish", output="softmax")
    with pytest.raises(ValueError):
        fastnn.MLP(layer_sizes=[3, 4, 2], activation="relu", output="relu")
    with pytest.raises(ValueError):  # one name per hidden layer
        fastnn.MLP(layer_sizes=[3, 4, 5, 2], activation=["relu"], output="softmax")
    model = build((3, 4, 2), "relu", "softmax")
    with pytest.raises(ValueError):
        model.loss_and_grad(np.zeros((2, 3)), np.array([0, 1]), loss="hinge")


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
TRAIN_CASES = [
    ("relu", "softmax", "cross_entropy"),
    ("tanh", "identity", "mse"),
    ("gelu", "sigmoid", "binary_cross_entropy"),
    ("elu", "softmax", "mse"),
]


def fit(model, X, y, loss, lr, batch_size, epochs, shuffle=False, seed=0, validation_data=None):
    trainer = fastnn.Trainer(model, fastnn.optim.SGD(lr=lr), loss=loss, batch_size=batch_size,
                             epochs=epochs, shuffle=shuffle, seed=seed, verbose=0)
    return trainer.fit(X, y, validation_data=validation_data)


def assert_history_matches(hist, ref_hist, rtol):
    assert len(hist.history["loss"]) == len(ref_hist["loss"])
    np.testing.assert_allclose(hist.history["loss"], ref_hist["loss"], rtol=rtol)
    if "val_loss" in ref_hist:
        np.testing.assert_allclose(hist.history["val_loss"], ref_hist["val_loss"], rtol=rtol)
    for key in ("accuracy", "val_accuracy"):  # classification losses only
        if key in ref_hist:
            assert hist.history.get(key) is not None, f"history has no {key!r}"
            np.testing.assert_allclose(hist.history[key], ref_hist[key], rtol=1e-12)


@pytest.mark.parametrize("act,output,loss", TRAIN_CASES)
def test_sgd_minibatches_match_naive(act, output, loss):
    """batch_size 3 on 10 samples: batches of 3, 3, 3 and a partial last batch of 1."""
    sizes = (3, 5, 3)
    params_list, X, y = naive.make_problem(sizes, act, output, loss, n=14)
    Xt, yt, Xv, yv = X[:10], y[:10], X[10:], y[10:]
    model = build(sizes, act, output, params_list=params_list)
    epochs = 4
    hist = fit(model, Xt, yt, loss, lr=0.3, batch_size=3, epochs=epochs,
               validation_data=(Xv, yv))
    ref_params, ref_hist = naive.naive_sgd_fit(
        params_list, Xt, yt, loss, 0.3, 3, [np.arange(10)] * epochs, activation=act,
        output=output, validation_data=(Xv, yv))
    ref_flat = naive.flatten(ref_params)
    np.testing.assert_allclose(model.params, ref_flat, rtol=1e-10, atol=1e-12)
    assert not np.allclose(ref_flat, naive.flatten(params_list))  # it did train
    assert_history_matches(hist, ref_hist, rtol=1e-10)


@pytest.mark.parametrize("act,output,loss", TRAIN_CASES)
def test_full_batch_is_one_step_per_epoch(act, output, loss):
    sizes = (3, 4, 2)
    params_list, X, y = naive.make_problem(sizes, act, output, loss, n=10)
    model = build(sizes, act, output, params_list=params_list)
    hist = fit(model, X, y, loss, lr=0.5, batch_size=None, epochs=3)
    flat = naive.flatten(params_list)
    losses = []
    for _ in range(3):  # plain gradient descent written out
        value, g = naive.loss_and_flat_grad(naive.unflatten(flat, sizes), X, y, act, output, loss)
        losses.append(value)
        flat = flat - 0.5 * g
    np.testing.assert_allclose(model.params, flat, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hist.history["loss"], losses, rtol=1e-10)


def test_full_batch_does_not_depend_on_shuffle():
    sizes = (3, 4, 2)
    params_list, X, y = naive.make_problem(sizes, "tanh", "softmax", "cross_entropy", n=10)
    a = build(sizes, "tanh", "softmax", params_list=params_list)
    b = build(sizes, "tanh", "softmax", params_list=params_list)
    fit(a, X, y, "cross_entropy", lr=0.5, batch_size=None, epochs=3, shuffle=False)
    fit(b, X, y, "cross_entropy", lr=0.5, batch_size=None, epochs=3, shuffle=True, seed=3)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12, atol=1e-14)


def test_shuffled_training_is_reproducible_and_a_permutation_replay():
    sizes = (3, 4, 2)
    params_list, X, y = naive.make_problem(sizes, "relu", "softmax", "cross_entropy", n=10)
    runs = []
    for seed in (5, 5, 6):
        model = build(sizes, "relu", "softmax", params_list=params_list)
        hist = fit(model, X, y, "cross_entropy", lr=0.3, batch_size=3, epochs=2, shuffle=True,
                   seed=seed)
        runs.append((model.params.copy(), hist.history["loss"]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert not np.array_equal(runs[0][0], runs[2][0])
    # shuffling must differ from the unshuffled order (with overwhelming probability)
    model = build(sizes, "relu", "softmax", params_list=params_list)
    fit(model, X, y, "cross_entropy", lr=0.3, batch_size=3, epochs=2, shuffle=False)
    assert not np.allclose(runs[0][0], model.params)


@pytest.mark.parametrize("act,output,loss", TRAIN_CASES)
def test_shuffled_training_replays_with_numpy_permutations(act, output, loss):
    """Pins the shuffling scheme: epoch e walks np.random.default_rng([seed, e]).permutation(n)
    (keyed by (seed, epoch), so that resumed fits replay). If fastnn changes its scheme on
    purpose, update the orders here; the shuffle=False tests above stay the scheme-free check."""
    sizes = (3, 5, 3)
    params_list, X, y = naive.make_problem(sizes, act, output, loss, n=10)
    model = build(sizes, act, output, params_list=params_list)
    hist = fit(model, X, y, loss, lr=0.3, batch_size=4, epochs=3, shuffle=True, seed=11)
    orders = [np.random.default_rng([11, e]).permutation(10) for e in range(3)]
    ref_params, ref_hist = naive.naive_sgd_fit(params_list, X, y, loss, 0.3, 4, orders,
                                               activation=act, output=output)
    np.testing.assert_allclose(model.params, naive.flatten(ref_params), rtol=1e-10, atol=1e-12)
    assert_history_matches(hist, ref_hist, rtol=1e-10)


@pytest.mark.parametrize("act,output,loss", TRAIN_CASES)
def test_fit_float32_close_to_naive(act, output, loss):
    sizes = (3, 5, 3)
    params_list, X, y = naive.make_problem(sizes, act, output, loss, n=10)
    model = build(sizes, act, output, "float32", params_list=params_list)
    params32 = naive.unflatten(model.params.astype(np.float64), sizes)
    X32 = X.astype(np.float32)
    y32 = y if loss == "cross_entropy" else y.astype(np.float32)
    hist = fit(model, X32, y32, loss, lr=0.3, batch_size=3, epochs=3)
    y_ref = y32 if loss == "cross_entropy" else y32.astype(np.float64)
    ref_params, ref_hist = naive.naive_sgd_fit(params32, X32.astype(np.float64), y_ref, loss,
                                               0.3, 3, [np.arange(10)] * 3, activation=act,
                                               output=output)
    assert model.params.dtype == np.float32
    # the naive float64 fit of the same float32 start and data, rounded: 12 steps' errors,
    # times what the fit makes of a change of its start (measured on the naive fit)
    start = naive.flatten(params32)

    def naive_fit(flat):
        params, history = naive.naive_sgd_fit(
            naive.unflatten(flat, sizes), X32.astype(np.float64), y_ref, loss, 0.3, 3,
            [np.arange(10)] * 3, activation=act, output=output)
        return {"parameters": naive.flatten(params), "loss": np.array(history["loss"])}

    amplification = bounds.sensitivity(naive_fit, start)
    units = bounds.training_units(sizes, 3, 12)
    bounds.assert_close(model.params, naive.flatten(ref_params),
                        units * amplification["parameters"], np.float32, "parameters")
    bounds.assert_close(hist.history["loss"], ref_hist["loss"], units * amplification["loss"],
                        np.float32, "losses")


def test_zero_learning_rate_epoch_loss_is_full_data_loss():
    """With lr = 0 the parameters never move, so the sample-weighted mean of the minibatch
    losses must equal the full-data loss whatever the batching and shuffling."""
    sizes = (3, 4, 2)
    params_list, X, y = naive.make_problem(sizes, "tanh", "identity", "mse", n=11)
    full = naive.loss_and_flat_grad(params_list, X, y, "tanh", "identity", "mse")[0]
    for batch_size, shuffle in ((4, True), (3, False), (None, True), (64, False)):
        model = build(sizes, "tanh", "identity", params_list=params_list)
        hist = fit(model, X, y, "mse", lr=0.0, batch_size=batch_size, epochs=2, shuffle=shuffle)
        np.testing.assert_allclose(hist.history["loss"], [full, full], rtol=1e-12)
        np.testing.assert_array_equal(model.params, naive.flatten(params_list))


def test_batch_size_larger_than_data_is_full_batch():
    sizes = (3, 4, 2)
    params_list, X, y = naive.make_problem(sizes, "relu", "softmax", "cross_entropy", n=7)
    a = build(sizes, "relu", "softmax", params_list=params_list)
    b = build(sizes, "relu", "softmax", params_list=params_list)
    ha = fit(a, X, y, "cross_entropy", lr=0.5, batch_size=100, epochs=2)
    hb = fit(b, X, y, "cross_entropy", lr=0.5, batch_size=None, epochs=2)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-13)


def test_fit_twice_continues_training_and_views_survive():
    sizes = (3, 5, 3)
    params_list, X, y = naive.make_problem(sizes, "gelu", "softmax", "cross_entropy", n=10)
    model = build(sizes, "gelu", "softmax", params_list=params_list)
    W0, b1 = model.weights[0], model.biases[1]
    fit(model, X, y, "cross_entropy", lr=0.3, batch_size=4, epochs=2)
    fit(model, X, y, "cross_entropy", lr=0.3, batch_size=4, epochs=1)
    ref_params, _ = naive.naive_sgd_fit(params_list, X, y, "cross_entropy", 0.3, 4,
                                        [np.arange(10)] * 3, activation="gelu", output="softmax")
    np.testing.assert_allclose(model.params, naive.flatten(ref_params), rtol=1e-10, atol=1e-12)
    # views taken before training still look at the trained parameters
    np.testing.assert_array_equal(W0, model.weights[0])
    np.testing.assert_array_equal(b1, model.biases[1])
    assert np.shares_memory(model.weights[0], model.params)
    np.testing.assert_allclose(W0, ref_params[0], rtol=1e-10, atol=1e-12)


def test_non_contiguous_inputs():
    sizes = (4, 5, 3)
    params_list, X, y = naive.make_problem(sizes, "elu", "softmax", "cross_entropy", n=8)
    model = build(sizes, "elu", "softmax", params_list=params_list)
    wide = np.zeros((8, 8))
    wide[:, ::2] = X
    Xs = wide[:, ::2]  # strided view
    Xf = np.asfortranarray(X)
    ref_value, ref_grad = naive.loss_and_flat_grad(params_list, X, y, "elu", "softmax",
                                                   "cross_entropy")
    ref_pred = naive.predict(params_list, X, "elu", "softmax")
    for Xi in (Xs, Xf, X.tolist()):
        np.testing.assert_allclose(model.predict(Xi), ref_pred, rtol=1e-12, atol=1e-14)
        value, grad = model.loss_and_grad(Xi, y, loss="cross_entropy")
        assert value == pytest.approx(ref_value, rel=1e-12)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-14)


def test_many_samples():
    """Enough rows to cross any internal chunking of predict / loss_and_grad."""
    sizes = (4, 6, 3)
    params_list, X, y = naive.make_problem(sizes, "tanh", "softmax", "cross_entropy", n=2500,
                                           margin=0.0)
    model = build(sizes, "tanh", "softmax", params_list=params_list)
    np.testing.assert_allclose(model.predict(X), naive.predict(params_list, X, "tanh", "softmax"),
                               rtol=1e-12, atol=1e-14)
    value, grad = model.loss_and_grad(X, y, loss="cross_entropy")
    ref_value, ref_grad = naive.loss_and_flat_grad(params_list, X, y, "tanh", "softmax",
                                                   "cross_entropy")
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-13)


# --------------------------------------------------------------------------------------------
# what a model needs to be applied: input standardization, class names, summary
# --------------------------------------------------------------------------------------------
def standardized_problem(seed=0):
    rng = np.random.default_rng(seed)
    mean, std = rng.normal(size=4) * 100, rng.uniform(0.01, 50, size=4)
    X_raw = rng.normal(size=(12, 4)) * std + mean
    y = rng.integers(0, 3, size=12)
    return X_raw, y, mean, std


def test_input_standardization_is_applied_by_every_entry_point():
    X_raw, y, mean, std = standardized_problem()
    X_std = (X_raw - mean) / std
    params_list, _, _ = naive.make_problem((4, 5, 3), "tanh", "softmax", "cross_entropy", n=2)
    model = build((4, 5, 3), "tanh", "softmax", params_list=params_list)
    bare = model.copy()
    assert model.set_input_standardization(mean, std) is model
    np.testing.assert_allclose(model.predict(X_raw),
                               naive.predict(params_list, X_std, "tanh", "softmax"),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(model.preprocess(X_raw), X_std)
    assert model.evaluate(X_raw, y) == bare.evaluate(X_std, y)
    loss, grad = model.loss_and_grad(X_raw, y)
    bare_loss, bare_grad = bare.loss_and_grad(X_std, y)
    assert loss == bare_loss and np.array_equal(grad, bare_grad)
    # fit sees the same standardized rows: the same training, step for step
    h = fastnn.Trainer(model, fastnn.optim.SGD(lr=0.1), batch_size=4, epochs=3, seed=1,
                       verbose=0).fit(X_raw[:9], y[:9], validation_data=(X_raw[9:], y[9:]))
    hb = fastnn.Trainer(bare, fastnn.optim.SGD(lr=0.1), batch_size=4, epochs=3, seed=1,
                        verbose=0).fit(X_std[:9], y[:9], validation_data=(X_std[9:], y[9:]))
    assert np.array_equal(model.params, bare.params)
    assert h["val_loss"] == hb["val_loss"]
    np.testing.assert_array_equal(X_raw, standardized_problem()[0])  # the caller's X untouched
    model.set_input_standardization(None, None)
    assert model.input_mean is None and np.array_equal(model.predict(X_std), bare.predict(X_std))


def test_input_standardization_is_validated():
    model = build((3, 2), (), "identity", "float32")
    with pytest.raises(ValueError, match=r"mean must have shape \(3,\)"):
        model.set_input_standardization(np.zeros(4), np.ones(3))
    with pytest.raises(ValueError, match="std must be > 0"):
        model.set_input_standardization(np.zeros(3), [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="mean contains NaN"):
        model.set_input_standardization([0.0, np.nan, 0.0], np.ones(3))
    with pytest.raises(ValueError, match="std is None"):
        model.set_input_standardization(np.zeros(3), None)
    with pytest.raises(TypeError, match="numeric"):
        model.set_input_standardization(["a", "b", "c"], np.ones(3))
    model.set_input_standardization(np.zeros(3), np.full(3, 1e-300))  # 1e300: not a float32
    with pytest.raises(ValueError, match="X standardized"):
        model.predict(np.ones((2, 3)))
    assert model.input_mean.dtype == np.float64
    model.input_mean[0] = 5.0  # a copy: the model is not changed through it
    assert model.input_mean[0] == 0.0


def test_classes_name_the_outputs_and_predict_labels_uses_them():
    X_raw, _, _, _ = standardized_problem()
    model = build((4, 6, 3), "relu", "softmax", seed=3)
    assert model.classes_ is None
    indices = model.predict_classes(X_raw)
    assert np.array_equal(model.predict_labels(X_raw), indices)
    model.classes_ = ["virginica", "setosa", "versicolor"]  # any order: output j is classes_[j]
    labels = model.predict_labels(X_raw)
    assert labels.tolist() == [model.classes_[i] for i in indices]
    assert np.array_equal(model.predict_classes(X_raw), indices)  # still indices
    model.classes_[0] = "changed"  # a copy
    assert model.classes_[0] == "virginica"
    assert model.copy().classes_.tolist() == model.classes_.tolist()
    binary = build((4, 1), (), "sigmoid")
    binary.classes_ = [b"no", b"yes"]  # bytes become str
    p = binary.predict(X_raw)[:, 0]
    assert binary.predict_labels(X_raw).tolist() == [("yes" if v > 0.5 else "no") for v in p]
    model.classes_ = None
    assert model.classes_ is None


@pytest.mark.parametrize("output, n_out, classes, error, match", [
    ("softmax", 3, ["a", "b"], ValueError, "must list 3 labels"),
    ("softmax", 3, ["a", "b", "a"], ValueError, "repeat"),
    ("softmax", 3, [["a", "b", "c"]], TypeError, "1-D"),
    ("softmax", 3, np.array([None, 1, 2], dtype=object), TypeError, "1-D sequence of str"),
    ("softmax", 3, [0.0, np.nan, 1.0], ValueError, "NaN"),
    ("sigmoid", 1, ["a", "b", "c"], ValueError, "must list 2 labels"),
    ("sigmoid", 3, ["a", "b", "c"], ValueError, "single sigmoid output"),
    ("identity", 3, ["a", "b", "c"], ValueError, "output='identity'"),
])
def test_classes_are_validated(output, n_out, classes, error, match):
    model = build((2, n_out), (), output)
    with pytest.raises(error, match=match):
        model.classes_ = classes
    assert model.classes_ is None


def test_summary_and_repr():
    model = fastnn.MLP([4, 16, 8, 3], activation=["relu", "tanh"], output="softmax",
                       init="he_uniform", seed=0)
    assert repr(model) == ("MLP([4, 16, 8, 3], activation=['relu', 'tanh'], output='softmax', "
                           "init='he_uniform', dtype='float32'; 243 params)")
    printed = []
    model.summary(print_fn=printed.append)
    (text,) = printed
    lines = text.splitlines()
    assert lines[0] == "MLP: 4 inputs -> 3 outputs, dtype float32, init he_uniform"
    rows = [line.split() for line in lines if line.startswith("dense_")]
    assert rows == [["dense_0", "(None,", "4)", "(None,", "16)", "relu", "80"],
                    ["dense_1", "(None,", "16)", "(None,", "8)", "tanh", "136"],
                    ["dense_2", "(None,", "8)", "(None,", "3)", "softmax", "27"]]
    assert sum(int(r[-1]) for r in rows) == model.n_params
    assert lines[-1] == "Total params: 243 (972 B)"
    model.set_input_standardization(np.zeros(4), np.ones(4))
    model.classes_ = [f"class {i}" for i in range(3)]
    assert repr(model).endswith("; 243 params, standardized inputs, classes ['class 0', "
                                "'class 1', 'class 2'])")
    printed.clear()
    model.summary(print_fn=printed.append)
    assert "standardize  (None, 4)" in printed[0]
    assert printed[0].splitlines()[-1] == "Classes (3): ['class 0', 'class 1', 'class 2']"
    wide = fastnn.MLP([2, 1000], output="softmax")
    wide.classes_ = np.arange(1000) * 2
    assert repr(wide).endswith("classes [0, 2, 4, 6, ..., 1998])")
    assert repr(fastnn.MLP([2, 3])) == ("MLP([2, 3], activation=[], output='identity', "
                                        "dtype='float32'; 9 params)")


@pytest.mark.parametrize("x_dtype", [np.float32, np.float64, np.int32])
def test_preprocess_standardizes_large_inputs_in_blocks_exactly(x_dtype):
    n = 2**19 + 3  # more than one block of 2**20 values for 2 features
    X = (np.random.default_rng(0).normal(size=(n, 2)) * 1000).astype(x_dtype)
    mean, std = np.array([3.25, -1e3]), np.array([7.0, 0.1])
    model = build((2, 1), (), "identity", "float32").set_input_standardization(mean, std)
    expected = ((X.astype(np.float64) - mean) / std).astype(np.float32)
    got = model.preprocess(X)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(model.preprocess(X[::-1]), expected[::-1])  # strided
