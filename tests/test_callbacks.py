"""Callbacks: the protocol, EarlyStopping (Keras semantics) and ModelCheckpoint."""
import warnings

import numpy as np
import pytest

import fastnn


# --------------------------------------------------------------------------- helpers
def overfit_problem(seed=0):
    """A problem built to overfit: 60 training samples with 20% flipped labels, a 2x128 net,
    and 300 validation samples from the same noisy distribution."""
    rng = np.random.default_rng(seed)

    def sample(n):
        X = rng.normal(size=(n, 10))
        y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64)
        flip = rng.random(n) < 0.2
        y[flip] = 1 - y[flip]
        return X, y

    return sample(60), sample(300)


def fit_overfit(callbacks, epochs=300):
    (X, y), (Xv, yv) = overfit_problem()
    model = fastnn.MLP([10, 128, 128, 2], output="softmax", dtype="float64", seed=0)
    trainer = fastnn.Trainer(model, fastnn.optim.Adam(lr=3e-4), batch_size=16, epochs=epochs,
                             seed=0, verbose=0, callbacks=callbacks)
    history = trainer.fit(X, y, validation_data=(Xv, yv))
    return model, history, (Xv, yv)


class FakeTrainer:
    """Stands in for a Trainer when feeding EarlyStopping hand-made logs."""

    def __init__(self, n_params=3):
        self.model = fastnn.MLP([1, n_params - 1], dtype="float64", seed=0)
        self.stop_training = False


def drive(callback, values, key="val_loss", trainer=None):
    """Run the callback over a sequence of monitored values like the Trainer would; params
    are set to the epoch number so restores are visible. Returns (epochs run, trainer)."""
    trainer = trainer or FakeTrainer()
    trainer.stop_training = False  # as Trainer.fit does
    callback.set_trainer(trainer)
    callback.on_train_begin({})
    ran = 0
    for epoch, value in enumerate(values):
        callback.on_epoch_begin(epoch, {})
        trainer.model.params[:] = epoch
        callback.on_epoch_end(epoch, {"loss": 1.0, key: value})
        ran += 1
        if trainer.stop_training:
            break
    callback.on_train_end({})
    return ran, trainer


# --------------------------------------------------------------------------- EarlyStopping
def test_early_stopping_restores_the_best_epoch_on_an_overfitting_problem():
    stopper = fastnn.EarlyStopping(patience=5, restore_best_weights=True)
    model, history, (Xv, yv) = fit_overfit([stopper])
    val = history["val_loss"]
    assert len(history.epoch) < 300  # stopped long before the epoch limit
    assert 0 < stopper.best_epoch < len(val) - 1  # the curve went down, then up
    assert stopper.stopped_epoch == len(val) - 1 == stopper.best_epoch + 5
    assert history["loss"][-1] < min(val) - 0.2  # it really overfits: train far below val
    restored_loss, _ = model.evaluate(Xv, yv)
    assert restored_loss == pytest.approx(min(val), rel=1e-12)
    assert val[stopper.best_epoch] == min(val)


def test_early_stopping_without_restore_keeps_the_last_epoch():
    stopper = fastnn.EarlyStopping(patience=5, restore_best_weights=False)
    model, history, (Xv, yv) = fit_overfit([stopper])
    val = history["val_loss"]
    assert len(history.epoch) < 300
    last_loss, _ = model.evaluate(Xv, yv)
    assert last_loss == pytest.approx(val[-1], rel=1e-12)
    assert last_loss > min(val) + 1e-3


def test_early_stopping_restores_best_even_without_stopping_early():
    # Keras >= 2.11: the best weights come back at the end of training whenever they exist
    stopper = fastnn.EarlyStopping(patience=1000, restore_best_weights=True)
    model, history, (Xv, yv) = fit_overfit([stopper], epochs=20)
    val = history["val_loss"]
    assert len(val) == 20 and stopper.stopped_epoch == 0
    assert int(np.argmin(val)) != 19  # the best is not the last epoch here
    assert model.evaluate(Xv, yv)[0] == pytest.approx(min(val), rel=1e-12)


class RaiseAt:
    """Raises `exc` in on_epoch_end of epoch `at` (after the callbacks before it ran)."""

    def __init__(self, at, exc):
        self.at, self.exc = at, exc

    def on_epoch_end(self, epoch, logs):
        if epoch == self.at:
            raise self.exc


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), fastnn.TrainingDiverged("boom")],
                         ids=["ctrl-c", "diverged"])
def test_early_stopping_restores_best_when_training_is_aborted(exc):
    stopper = fastnn.EarlyStopping(patience=1000, restore_best_weights=True)
    history_seen = []

    class Keep(fastnn.Callback):
        def set_trainer(self, trainer):
            history_seen.append(trainer)

    with pytest.raises(type(exc)):
        fit_overfit([Keep(), stopper, RaiseAt(25, exc)], epochs=40)
    trainer = history_seen[0]
    val = trainer.history["val_loss"]
    assert len(val) == 26 and int(np.argmin(val)) < 25
    (_, _), (Xv, yv) = overfit_problem()
    assert trainer.model.evaluate(Xv, yv)[0] == pytest.approx(min(val), rel=1e-12)


def test_keras_docs_example_runs_four_epochs():
    # keras.callbacks.EarlyStopping docs: patience=3 on a loss that never improves after
    # the first epoch -> "Only 4 epochs are run."
    ran, _ = drive(fastnn.EarlyStopping(monitor="loss", patience=3), [1.0, 2, 3, 4, 5, 6, 7],
                   key="loss")
    assert ran == 4


@pytest.mark.parametrize("kwargs, values, key, ran, stopped, best_epoch", [
    # patience 0 never stops at epoch 0, then stops at the first non-improvement
    ({}, [5, 6, 7], "val_loss", 2, 1, 0),
    # improvements reset the counter
    ({"patience": 2}, [5, 4, 3, 3.5, 2, 2.5, 2.6, 1], "val_loss", 7, 6, 4),
    # ran to the end: stopped_epoch stays 0
    ({"patience": 2}, [5, 4, 3, 3.5, 2], "val_loss", 5, 0, 4),
    # min_delta: 4.95 and 4.92 are not better than 5 by more than 0.1
    ({"patience": 2, "min_delta": 0.1}, [5, 4.95, 4.92, 1], "val_loss", 3, 2, 0),
    # min_delta's sign is ignored (Keras takes abs)
    ({"patience": 2, "min_delta": -0.1}, [5, 4.95, 4.92, 1], "val_loss", 3, 2, 0),
    # accuracy and R^2 are maximized in auto mode
    ({"patience": 1}, [0.5, 0.6, 0.55, 0.58], "val_accuracy", 3, 2, 1),
    ({"patience": 1}, [0.5, 0.6, 0.55, 0.58], "val_r2", 3, 2, 1),
    # an explicit mode wins over the name
    ({"patience": 1, "mode": "min"}, [0.5, 0.6, 0.7, 0.1], "val_accuracy", 2, 1, 0),
    # warm-up epochs are not monitored at all
    ({"patience": 0, "start_from_epoch": 3}, [9, 9, 9, 1, 2, 0], "val_loss", 5, 4, 3),
    # baseline: improvements that do not beat the baseline do not reset the counter, so it
    # stops one epoch earlier than without the baseline ...
    ({"patience": 2, "baseline": 1.0}, [3, 2.5, 2.6, 2.7, 2.8], "val_loss", 3, 2, 1),
    ({"patience": 2}, [3, 2.5, 2.6, 2.7, 2.8], "val_loss", 4, 3, 1),
    # ... while improvements beyond the baseline reset it as usual
    ({"patience": 2, "baseline": 1.0}, [3, 0.9, 0.8, 0.85, 0.86, 0.87], "val_loss", 5, 4, 2),
    # as in Keras, an improving epoch never triggers the stop, baseline or not
    ({"patience": 1, "baseline": 1.0}, [3, 2.5, 2, 1.5], "val_loss", 4, 0, 3),
])
def test_early_stopping_follows_keras_rules(kwargs, values, key, ran, stopped, best_epoch):
    stopper = fastnn.EarlyStopping(monitor=key, restore_best_weights=True, **kwargs)
    n, trainer = drive(stopper, values, key=key)
    assert n == ran
    assert stopper.stopped_epoch == stopped
    assert stopper.best_epoch == best_epoch
    assert stopper.best == values[best_epoch]
    np.testing.assert_array_equal(trainer.model.params, best_epoch)  # restored


def test_early_stopping_never_takes_nan_as_best():
    stopper = fastnn.EarlyStopping(patience=2, restore_best_weights=True)
    n, trainer = drive(stopper, [float("nan"), 3.0, 2.0, 2.5, 2.6])
    assert n == 5 and stopper.best == 2.0 and stopper.best_epoch == 2
    np.testing.assert_array_equal(trainer.model.params, 2.0)


def test_early_stopping_reuses_its_weight_buffer_and_can_be_reused():
    stopper = fastnn.EarlyStopping(patience=1, restore_best_weights=True)
    trainer = FakeTrainer()
    drive(stopper, [3.0, 2.0, 1.0, 2.0], trainer=trainer)
    buffer = stopper._best_params
    assert buffer is not None and stopper.stopped_epoch == 3
    # a second fit starts from scratch (counter, best) but keeps the same buffer
    n, _ = drive(stopper, [5.0, 6.0, 7.0], trainer=trainer)
    assert n == 2 and stopper.best == 5.0 and stopper._best_params is buffer
    np.testing.assert_array_equal(trainer.model.params, 0.0)


def test_early_stopping_without_restore_leaves_params_alone():
    stopper = fastnn.EarlyStopping(patience=1)
    n, trainer = drive(stopper, [1.0, 2.0, 3.0])
    assert n == 2 and stopper._best_params is None
    np.testing.assert_array_equal(trainer.model.params, 1.0)  # the last epoch's


def test_missing_monitor_warns_with_the_available_keys():
    stopper = fastnn.EarlyStopping(monitor="val_loss", patience=0)
    (X, y), _ = overfit_problem()
    model = fastnn.MLP([10, 4, 2], output="softmax", seed=0)
    with pytest.warns(RuntimeWarning, match=r"'val_loss'.*validation_data.*accuracy.*loss"):
        history = fastnn.Trainer(model, epochs=3, verbose=0, callbacks=[stopper]).fit(X, y)
    assert len(history.epoch) == 3  # nothing to monitor: training runs to the end


def test_missing_monitor_warns_once_per_fit():
    stopper = fastnn.EarlyStopping(monitor="val_accuracy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drive(stopper, [1.0, 2.0, 3.0], key="val_loss")
    assert len(caught) == 1 and "val_loss" in str(caught[0].message)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"mode": "best"}, ValueError, "mode"),
    ({"patience": -1}, ValueError, "patience"),
    ({"patience": 1.5}, TypeError, "patience"),
    ({"start_from_epoch": -2}, ValueError, "start_from_epoch"),
    ({"min_delta": "0.1"}, TypeError, "min_delta"),
    ({"min_delta": float("nan")}, ValueError, "min_delta"),
    ({"monitor": 3}, TypeError, "monitor"),
    ({"baseline": float("inf")}, ValueError, "baseline"),
])
def test_early_stopping_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        fastnn.EarlyStopping(**kwargs)


# --------------------------------------------------------------------------- ModelCheckpoint
def test_checkpoint_save_best_only_keeps_the_best_model(tmp_path):
    path = tmp_path / "best.safetensors"
    checkpoint = fastnn.ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    model, history, (Xv, yv) = fit_overfit([checkpoint], epochs=25)
    val = history["val_loss"]
    assert int(np.argmin(val)) < 24  # the last epoch is not the best: the file must not be it
    best = fastnn.load(path)
    assert best.evaluate(Xv, yv)[0] == pytest.approx(min(val), rel=1e-12)
    assert checkpoint.best == min(val) and checkpoint.last_saved == str(path)
    assert model.evaluate(Xv, yv)[0] == pytest.approx(val[-1], rel=1e-12)


def test_checkpoint_formats_the_path_with_epoch_and_logs(tmp_path):
    pattern = str(tmp_path / "m-{epoch:02d}-{val_loss:.3f}.safetensors")
    checkpoint = fastnn.ModelCheckpoint(pattern)
    model, history, _ = fit_overfit([checkpoint], epochs=3)
    names = sorted(p.name for p in tmp_path.iterdir())
    expected = [f"m-{e + 1:02d}-{v:.3f}.safetensors" for e, v in enumerate(history["val_loss"])]
    assert names == expected
    last = fastnn.load(tmp_path / expected[-1])
    np.testing.assert_array_equal(last.params, model.params)


def test_checkpoint_bad_format_field_names_the_available_keys(tmp_path):
    checkpoint = fastnn.ModelCheckpoint(str(tmp_path / "m-{val_acc}.safetensors"))
    with pytest.raises(ValueError, match=r"val_acc.*available fields: epoch.*val_loss"):
        fit_overfit([checkpoint], epochs=1)


def test_checkpoint_max_mode_and_threshold(tmp_path):
    path = tmp_path / "m.safetensors"
    checkpoint = fastnn.ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True,
                                        initial_value_threshold=0.7)
    drive(checkpoint, [0.6, 0.65, 0.8, 0.75], key="val_accuracy")
    assert checkpoint.best == 0.8
    np.testing.assert_array_equal(fastnn.load(path).params, 2.0)  # saved at epoch 2 only


def test_checkpoint_rejects_bad_arguments():
    with pytest.raises(TypeError, match="filepath"):
        fastnn.ModelCheckpoint(3)
    with pytest.raises(ValueError, match="mode"):
        fastnn.ModelCheckpoint("m.safetensors", mode="smallest")


# --------------------------------------------------------------------------- protocol
def test_callback_subclass_sees_hooks_in_order_and_can_stop_training():
    calls = []

    class Recorder(fastnn.Callback):
        def on_train_begin(self, logs):
            calls.append(("begin", self.model is model, self.trainer is trainer))

        def on_epoch_begin(self, epoch, logs):
            calls.append(("epoch_begin", epoch))

        def on_epoch_end(self, epoch, logs):
            calls.append(("epoch_end", epoch, sorted(logs)))
            if epoch == 1:
                self.trainer.stop_training = True

        def on_train_end(self, logs):
            calls.append(("end",))

    (X, y), (Xv, yv) = overfit_problem()
    model = fastnn.MLP([10, 4, 2], output="softmax", seed=0)
    trainer = fastnn.Trainer(model, epochs=10, verbose=0, callbacks=[Recorder()])
    history = trainer.fit(X, y, validation_data=(Xv, yv))
    keys = ["accuracy", "grad_norm", "loss", "lr", "samples_per_sec", "time", "val_accuracy",
            "val_loss"]
    assert calls == [("begin", True, True), ("epoch_begin", 0), ("epoch_end", 0, keys),
                     ("epoch_begin", 1), ("epoch_end", 1, keys), ("end",)]
    assert len(history.epoch) == 2


def test_base_callback_hooks_do_nothing():
    (X, y), _ = overfit_problem()
    model = fastnn.MLP([10, 4, 2], output="softmax", seed=0)
    callback = fastnn.Callback()
    assert callback.trainer is None and callback.model is None
    history = fastnn.Trainer(model, epochs=2, verbose=0, callbacks=[callback]).fit(X, y)
    assert len(history.epoch) == 2 and callback.model is model
