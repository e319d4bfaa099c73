"""Dropout (fastnn/_kernels/dropout.py): the counter hash against its plain-Python definition,
the training step's loss and gradient against the float64 NumPy reference and central finite
differences, the statistics of the masks, inference without dropout, reproducible fits on any
thread count, validation and persistence."""
import copy
import math
import pickle

import numpy as np
import pytest
from test_threads import assert_close_training, make_data, training_units

import fastnn
from fastnn._kernels.dropout import dropout_forward_row, keep_threshold, row_key, unit_hash

import naive

ACTS = ["relu", "tanh", "sigmoid", "elu", "leaky_relu", "gelu", "identity"]


def test_hash_matches_its_definition():
    """The compiled hash is the documented one (naive.py, Python ints) on counters that use
    all of their 64 bits."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        seed = int(rng.integers(0, 2**63))
        step = int(rng.integers(1, 2**63))
        site, row, unit = (int(v) for v in rng.integers(0, 5000, 3))
        key = row_key(seed, step, site, row)
        assert int(key) == naive.dropout_row_key(seed, step, site, row)
        assert int(unit_hash(key, unit)) == naive.lowbias32(int(key) ^ unit)


def _keep_mask(n_rows, n_units, p, seed=7, step=3, site=1):
    """The kernel's mask, read back through dropout_forward_row on rows of ones."""
    out = np.ones((n_rows, n_units))
    thr, scale = keep_threshold(p), 1.0 / (1.0 - p)
    for r in range(n_rows):
        dropout_forward_row(out[r], row_key(seed, step, site, r), 0, n_units, thr, scale)
    return out / scale


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_keep_rate_is_one_minus_p(p):
    """Over a 512 x 2048 layer the kept fraction is binomial(n, 1 - p): within 4 standard
    deviations of 1 - p; and across rows and steps the masks differ."""
    n_rows, n_units = 512, 2048
    kept = _keep_mask(n_rows, n_units, p)
    assert set(np.unique(kept)) <= {0.0, 1.0}
    n = kept.size
    sd = math.sqrt(n * p * (1 - p))
    assert abs(kept.sum() - n * (1 - p)) <= 4 * sd, (kept.sum() / n, 1 - p)
    # each unit's keep rate over the rows, and each row's over the units, are binomial too:
    # none of them more than 6 sd off (a stuck unit or row would be far out)
    for axis, m in ((0, n_rows), (1, n_units)):
        rates = kept.mean(axis=axis)
        assert np.max(np.abs(rates - (1 - p))) <= 6 * math.sqrt(p * (1 - p) / m)
    other_step = _keep_mask(4, n_units, p, step=4)
    assert not np.array_equal(other_step, kept[:4])
    assert not np.array_equal(kept[0], kept[1])


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_expected_activation_is_preserved(p):
    """Inverted dropout keeps the mean: sum_j a_j m_j / (1 - p) has mean sum_j a_j and variance
    sum_j a_j^2 p / (1 - p) (independent masks); the sum over a large layer lies within 4
    standard deviations of the sum of the activations."""
    rng = np.random.default_rng(1)
    n_rows, n_units = 256, 1024
    a = rng.uniform(0.0, 2.0, (n_rows, n_units))
    out = a.copy()
    thr, scale = keep_threshold(p), 1.0 / (1.0 - p)
    for r in range(n_rows):
        dropout_forward_row(out[r], row_key(11, 5, 2, r), 0, n_units, thr, scale)
    sd = math.sqrt(np.sum(a * a) * p / (1 - p))
    assert abs(out.sum() - a.sum()) <= 4 * sd, (out.sum(), a.sum(), sd)
    kept = out != 0
    np.testing.assert_allclose(out[kept], a[kept] * scale, rtol=1e-15)


def test_keep_threshold():
    assert keep_threshold(0.0) == 0
    assert keep_threshold(0.5) == 2**31
    assert keep_threshold(0.999999999999) == 2**32 - 1


# ---------------------------------------------------------------------------- the training step
def _problem(act, output="softmax", sizes=(5, 7, 6, 3), n=9, seed=0, dropout=(0.3, 0.5),
             input_dropout=0.2):
    model = fastnn.MLP(list(sizes), activation=act, output=output, dtype="float64", seed=seed,
                       dropout=list(dropout), input_dropout=input_dropout)
    rng = np.random.default_rng(seed + 1)
    model.params[...] += 0.1 * rng.standard_normal(model.n_params)  # nonzero biases
    X = rng.standard_normal((n, sizes[0]))
    y = (rng.integers(0, sizes[-1], n) if output == "softmax"
         else rng.standard_normal((n, sizes[-1])))
    return model, X, y


@pytest.mark.parametrize("act", ACTS)
def test_training_loss_and_grad_match_the_naive_reference(act):
    model, X, y = _problem(act)
    loss, grad = model.loss_and_grad(X, y, training=True, seed=123, step=17)
    masks = naive.dropout_masks((0.2, 0.3, 0.5), 123, 17, X.shape[0], model.layer_sizes)
    params = naive.unflatten(model.params, model.layer_sizes)
    want, dWs, dbs = naive.dropout_loss_and_grads(params, X, y, act, "softmax",
                                                  "cross_entropy", masks)
    want_grad = naive.flatten_grads(dWs, dbs)
    print(f"{act}: |loss diff| {abs(loss - want):.3g}, max |grad diff| "
          f"{np.max(np.abs(grad - want_grad)):.3g}")
    # float64 sums of a few dozen terms, and the kept activations recovered as
    # (a / (1 - p)) * (1 - p): a few ulps
    assert loss == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-13)
    assert any(m is not None and (m == 0).any() for m in masks)  # something was dropped


@pytest.mark.parametrize("act", ["relu", "tanh", "gelu"])
@pytest.mark.parametrize("output", ["softmax", "identity"])
def test_training_gradient_matches_central_differences(act, output):
    """The mask is a function of (seed, step, layer, row, unit): every evaluation of the loss
    sees the same network, so central differences of loss_and_grad(training=True) check its
    gradient."""
    model, X, y = _problem(act, output)
    kw = dict(training=True, seed=5, step=2)
    _, grad = model.loss_and_grad(X, y, **kw)
    flat = model.params

    def f(v):
        old = flat.copy()
        flat[...] = v
        try:
            return model.loss_and_grad(X, y, **kw)[0]
        finally:
            flat[...] = old

    num = naive.central_difference_gradient(f, flat.copy())
    print(f"{act}/{output}: max |grad - fd| = {np.max(np.abs(grad - num)):.3g}")
    # eps = 1e-6: truncation O(eps^2 f''') ~ 1e-12 and rounding O(1e-16 / eps) ~ 1e-10; relu
    # and its kink: no pre-activation lies within eps of 0 for these draws
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)
    plain = fastnn.MLP(list(model.layer_sizes), activation=act, output=output,
                       dtype="float64")
    plain.params[...] = model.params
    assert not np.allclose(grad, plain.loss_and_grad(X, y)[1])  # dropout changed it


def test_inference_uses_the_whole_network():
    model, X, y = _problem("relu")
    plain = fastnn.MLP(list(model.layer_sizes), activation="relu", output="softmax",
                       dtype="float64")
    plain.params[...] = model.params
    np.testing.assert_array_equal(model.predict(X), plain.predict(X))
    assert model.evaluate(X, y) == plain.evaluate(X, y)
    loss, grad = model.loss_and_grad(X, y)
    want_loss, want_grad = plain.loss_and_grad(X, y)
    assert loss == want_loss
    np.testing.assert_array_equal(grad, want_grad)


# ---------------------------------------------------------------------------- fits
def _fit(sizes, dropout, input_dropout, seed=3, threads=None, monkeypatch=None, epochs=2,
         batch=16, opt=None, dtype="float64", n=96):
    if threads is not None:
        monkeypatch.setenv("FASTNN_THREADS", str(threads))
    X, y = make_data(n, sizes, "softmax", dtype)
    kw = {} if dropout is None else dict(dropout=dropout, input_dropout=input_dropout)
    model = fastnn.MLP(list(sizes), output="softmax", dtype=dtype, seed=0, **kw)
    opt = opt or fastnn.optim.Adam(lr=1e-2)
    hist = fastnn.Trainer(model, opt, batch_size=batch, epochs=epochs, seed=seed,
                          verbose=0).fit(X, y, validation_data=(X[:20], y[:20]))
    return model, opt, hist


def _without_times(hist):
    return {k: v for k, v in hist.history.items() if k not in ("time", "samples_per_sec")}


@pytest.mark.parametrize("sizes", [(6, 12, 8, 3), (300, 256, 3)])  # the second: fused backward
def test_dropout_zero_trains_bit_identically(sizes):
    ref = _fit(sizes, None, None, dtype="float32")
    for rates in (0.0, [0.0] * (len(sizes) - 2)):
        model, opt, hist = _fit(sizes, rates, 0.0, dtype="float32")
        np.testing.assert_array_equal(model.params, ref[0].params)
        np.testing.assert_array_equal(opt.state, ref[1].state)
        assert _without_times(hist) == _without_times(ref[2])


def test_same_seed_same_fit_other_seed_other_fit():
    a = _fit((6, 12, 8, 3), 0.5, 0.2)
    b = _fit((6, 12, 8, 3), 0.5, 0.2)
    np.testing.assert_array_equal(a[0].params, b[0].params)
    assert _without_times(a[2]) == _without_times(b[2])
    c = _fit((6, 12, 8, 3), 0.5, 0.2, seed=4)
    assert not np.array_equal(a[0].params, c[0].params)
    plain = _fit((6, 12, 8, 3), None, None)
    assert not np.array_equal(a[0].params, plain[0].params)


@pytest.mark.parametrize(("sizes", "batch"), [((6, 12, 8, 3), 16), ((6, 12, 8, 3), 5),
                                              ((300, 256, 3), 8), ((300, 256, 3), 96)])
def test_one_and_two_threads_train_the_same(monkeypatch, sizes, batch):
    """The mask of a step does not depend on how the threads split it (rows, columns, the
    inner dimension, the fused backward's blocks)."""
    ref = _fit(sizes, 0.5, 0.2, threads=1, monkeypatch=monkeypatch, batch=batch)
    run = _fit(sizes, 0.5, 0.2, threads=2, monkeypatch=monkeypatch, batch=batch)
    # the same sums in other orders (test_threads): each fit within `units` eps of the exact
    units = training_units(sizes, batch, 96, 2 * math.ceil(96 / batch), ref[1])
    assert_close_training(run, ref, 2 * units, np.float64, {"accuracy": 96, "val_accuracy": 20})


def test_a_resumed_fit_draws_the_same_masks():
    """The mask's step is the optimizer's: one fit of 3 epochs and fits of 1 + 2 epochs (same
    seed, same optimizer, no shuffling) end with the same weights."""
    sizes = (6, 12, 8, 3)
    X, y = make_data(64, sizes, "softmax", "float64")

    def run(epochs_list):
        model = fastnn.MLP(list(sizes), output="softmax", dtype="float64", seed=0,
                           dropout=0.5, input_dropout=0.2)
        opt = fastnn.optim.Adam(lr=1e-2)
        for epochs in epochs_list:
            fastnn.Trainer(model, opt, batch_size=16, epochs=epochs, shuffle=False, seed=9,
                           verbose=0).fit(X, y)
        return model

    np.testing.assert_array_equal(run([3]).params, run([1, 2]).params)


def test_unseeded_trainers_draw_different_masks():
    sizes = (6, 12, 8, 3)
    X, y = make_data(64, sizes, "softmax", "float64")
    out = []
    for _ in range(2):
        model = fastnn.MLP(list(sizes), output="softmax", dtype="float64", seed=0, dropout=0.5)
        fastnn.Trainer(model, fastnn.optim.SGD(lr=0.1), batch_size=16, epochs=1,
                       shuffle=False, verbose=0).fit(X, y)
        out.append(model.params.copy())
    assert not np.array_equal(*out)


# ---------------------------------------------------------------------------- the API
@pytest.mark.parametrize(("kw", "match"), [
    (dict(dropout=1.0), "dropout must be < 1"),
    (dict(dropout=-0.1), "dropout must be >= 0"),
    (dict(dropout=[0.1, 1.5]), r"dropout\[1\] must be < 1"),
    (dict(dropout=[0.1]), "dropout lists 1 rates but there are 2 hidden layers"),
    (dict(input_dropout=1), "input_dropout must be < 1"),
    (dict(dropout=float("nan")), "dropout must be finite"),
])
def test_bad_rates_are_value_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        fastnn.MLP([4, 5, 6, 2], **kw)


@pytest.mark.parametrize("bad", ["0.5", None, True])
def test_non_numbers_are_type_errors(bad):
    with pytest.raises(TypeError, match="dropout"):
        fastnn.MLP([4, 5, 2], dropout=bad)


def test_loss_and_grad_arguments_are_checked():
    model, X, y = _problem("relu")
    with pytest.raises(TypeError, match="training"):
        model.loss_and_grad(X, y, training="yes")
    with pytest.raises(ValueError, match="seed"):
        model.loss_and_grad(X, y, training=True, seed=-1)
    with pytest.raises(ValueError, match="step"):
        model.loss_and_grad(X, y, training=True, step=0)


def test_rates_are_read_only_and_survive_copies(tmp_path):
    model = fastnn.MLP([4, 5, 6, 2], dropout=[0.1, 0.25], input_dropout=0.2, output="softmax")
    assert model.dropout == (0.1, 0.25) and model.input_dropout == 0.2
    assert fastnn.MLP([4, 5, 6, 2], dropout=0.3).dropout == (0.3, 0.3)
    with pytest.raises(AttributeError):
        model.dropout = 0.5
    assert "dropout=[0.1, 0.25], input_dropout=0.2" in repr(model)
    assert "dropout" not in repr(fastnn.MLP([4, 5, 2]))
    path = tmp_path / "m.safetensors"
    model.save(path)
    for other in (model.copy(), copy.deepcopy(model), pickle.loads(pickle.dumps(model)),
                  fastnn.load(path)):
        assert other.dropout == model.dropout and other.input_dropout == model.input_dropout
        np.testing.assert_array_equal(other.params, model.params)
        X = np.ones((3, 4), np.float32)
        np.testing.assert_array_equal(other.loss_and_grad(X, [0, 1, 1], training=True)[1],
                                      model.loss_and_grad(X, [0, 1, 1], training=True)[1])
