"""Resumed fits: Trainer.fit(initial_epoch=) with shuffles keyed by (seed, epoch) continues a
fit bit for bit when the model and the optimizer (state and step count) are carried over."""
import numpy as np
import pytest

import fastnn
from fastnn.trainer import shuffle_order


def problem(n=53, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = (X[:, 0] - X[:, 1] + 0.3 * rng.normal(size=n) > 0).astype(np.int64) \
        + (X[:, 2] > 0.5)
    return X, y


def make(opt_name, dtype):
    model = fastnn.MLP([6, 16, 8, 3], activation="tanh", output="softmax", dtype=dtype, seed=1)
    opt = {"adam": lambda: fastnn.optim.Adam(lr=3e-3),
           "sgd": lambda: fastnn.optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
           "rmsprop": lambda: fastnn.optim.RMSprop(lr=1e-3, momentum=0.5, centered=True)
           }[opt_name]()
    return model, opt


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt_name", ["adam", "sgd", "rmsprop"])
def test_resumed_1_3_9_equals_straight_9(opt_name, dtype):
    """1, then 3, then 9 epochs, each leg a fresh MLP/optimizer/Trainer restored from the last
    leg's parameters and optimizer.state_dict(): bit-identical to one 9-epoch fit, in weights,
    optimizer state, step count and every History value but the timings."""
    X, y = problem()
    Xv, yv = problem(20, seed=1)
    model, opt = make(opt_name, dtype)
    straight = fastnn.Trainer(model, opt, batch_size=7, epochs=9, seed=4, verbose=0).fit(
        X, y, validation_data=(Xv, yv))

    params, opt_state = None, None
    logs = {}
    for start, stop in ((0, 1), (1, 3), (3, 9)):
        m, o = make(opt_name, dtype)
        if params is not None:
            m.params = params
            o.load_state_dict(opt_state)
        hist = fastnn.Trainer(m, o, batch_size=7, epochs=stop, seed=4, verbose=0).fit(
            X, y, validation_data=(Xv, yv), initial_epoch=start)
        assert hist.epoch == list(range(start, stop))
        for key, values in hist.history.items():
            logs.setdefault(key, []).extend(values)
        params, opt_state = m.params.copy(), o.state_dict()

    np.testing.assert_array_equal(params, model.params)
    np.testing.assert_array_equal(opt_state["state"], opt.state)
    assert opt_state["step"] == int(opt.step_count[0]) == 9 * 8  # ceil(53 / 7) steps per epoch
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "grad_norm"):
        assert logs[key] == straight.history[key], key


def test_same_trainer_continues_with_initial_epoch():
    """Keras's usage: fit(epochs=3), then trainer.epochs = 5 and fit(initial_epoch=3)."""
    X, y = problem()
    model, opt = make("adam", "float64")
    ref_model, ref_opt = make("adam", "float64")
    fastnn.Trainer(ref_model, ref_opt, batch_size=8, epochs=5, seed=2, verbose=0).fit(X, y)
    trainer = fastnn.Trainer(model, opt, batch_size=8, epochs=3, seed=2, verbose=0)
    trainer.fit(X, y)
    trainer.epochs = 5
    trainer.fit(X, y, initial_epoch=3)
    np.testing.assert_array_equal(model.params, ref_model.params)


def test_shuffle_order_is_keyed_by_seed_and_epoch():
    a = shuffle_order(3, 5, 40)
    assert a.dtype == np.int64 and sorted(a.tolist()) == list(range(40))
    np.testing.assert_array_equal(a, np.random.default_rng([3, 5]).permutation(40))
    assert not np.array_equal(a, shuffle_order(3, 6, 40))
    assert not np.array_equal(a, shuffle_order(4, 5, 40))


def test_seedless_trainer_draws_one_shuffle_seed():
    model, opt = make("adam", "float64")
    t1 = fastnn.Trainer(model, opt, verbose=0)
    t2 = fastnn.Trainer(model, opt, verbose=0)
    assert t1.shuffle_seed >= 0 and t1.shuffle_seed != t2.shuffle_seed
    gen_seed = fastnn.Trainer(model, opt, seed=np.random.default_rng(0)).shuffle_seed
    assert gen_seed == fastnn.Trainer(model, opt, seed=np.random.default_rng(0)).shuffle_seed


@pytest.mark.parametrize("bad", [-1, 3, 7, 1.0, True, "1"])
def test_initial_epoch_is_checked(bad):
    X, y = problem()
    model, opt = make("adam", "float64")
    trainer = fastnn.Trainer(model, opt, epochs=3, verbose=0)
    before = model.params.copy()
    with pytest.raises(ValueError, match="initial_epoch"):
        trainer.fit(X, y, initial_epoch=bad)
    np.testing.assert_array_equal(model.params, before)
