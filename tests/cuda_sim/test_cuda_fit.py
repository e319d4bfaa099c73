"""Trainer(device="cuda") against Trainer(device="cpu"): the same steps, so in float64 the same
parameters, optimizer state and History to rounding. Simulator, tiles patched small."""
import numpy as np
import pytest

import fastnn
from fastnn.trainer import TrainingDiverged

KEYS_TIMING = ("time", "samples_per_sec")


def fit_both(make_model, make_opt, X, y, val=None, **kw):
    out = {}
    for device in ("cpu", "cuda"):
        model, opt = make_model(), make_opt()
        trainer = fastnn.Trainer(model, opt, verbose=0, device=device, **kw)
        out[device] = (model, opt, trainer.fit(X, y, validation_data=val))
    return out


def check_same(out):
    (m_cpu, o_cpu, h_cpu), (m_gpu, o_gpu, h_gpu) = out["cpu"], out["cuda"]
    diff = np.max(np.abs(m_gpu.params - m_cpu.params))
    print(f"params max |diff| = {diff:.3g}")
    np.testing.assert_allclose(m_gpu.params, m_cpu.params, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(o_gpu.state, o_cpu.state, rtol=1e-10, atol=1e-10)
    assert int(o_gpu.step_count[0]) == int(o_cpu.step_count[0])
    assert sorted(h_gpu.history) == sorted(h_cpu.history)
    assert h_gpu.epoch == h_cpu.epoch
    for key, values in h_cpu.history.items():
        if key in KEYS_TIMING:
            continue
        np.testing.assert_allclose(np.array(h_gpu[key], dtype=float),
                                   np.array(values, dtype=float), rtol=1e-10, atol=1e-12,
                                   err_msg=key)


def test_fit_softmax_adam_clip_matches_cpu():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 5))
    y = rng.integers(0, 3, 10)
    Xv, yv = rng.standard_normal((5, 5)), rng.integers(0, 3, 5)
    out = fit_both(lambda: fastnn.MLP([5, 7, 3], activation="tanh", output="softmax",
                                      dtype="float64", seed=1),
                   lambda: fastnn.optim.Adam(lr=0.05, amsgrad=True),
                   X, y, (Xv, yv), batch_size=4, epochs=2, shuffle=False, clip_grad_norm=0.5)
    check_same(out)
    assert "val_accuracy" in out["cuda"][2].history


def test_fit_mse_sgd_nesterov_shuffled_matches_cpu():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((8, 4))
    y = rng.standard_normal((8, 2))
    out = fit_both(lambda: fastnn.MLP([4, 6, 2], activation="gelu", output="identity",
                                      dtype="float64", seed=2),
                   lambda: fastnn.optim.SGD(lr=0.1, momentum=0.9, nesterov=True,
                                            weight_decay=0.01),
                   X, y, batch_size=3, epochs=2, shuffle=True, seed=5)
    check_same(out)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator's overflow
def test_fit_diverged_rolls_back():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((6, 3)) * 1e3
    y = rng.integers(0, 2, 6)
    model = fastnn.MLP([3, 4, 2], activation="relu", output="softmax", dtype="float64",
                       seed=3)
    start = model.params.copy()
    opt = fastnn.optim.SGD(lr=1e300)
    trainer = fastnn.Trainer(model, opt, batch_size=3, epochs=2, shuffle=False, verbose=0,
                             device="cuda")
    with pytest.raises(TrainingDiverged):
        trainer.fit(X, y)
    np.testing.assert_array_equal(model.params, start)
    assert int(opt.step_count[0]) == 0
    assert np.isfinite(model.params).all()


def test_callback_sees_and_replaces_weights():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((6, 3))
    y = rng.integers(0, 2, 6)
    seen = []

    class Zero:
        def on_epoch_end(self, epoch, logs):
            seen.append(model.params.copy())
            model.params[...] = 0.0  # the device must continue from these

    model = fastnn.MLP([3, 4, 2], activation="relu", output="softmax", dtype="float64",
                       seed=4)
    start = model.params.copy()
    fastnn.Trainer(model, fastnn.optim.SGD(lr=0.1), batch_size=6, epochs=2, shuffle=False,
                   verbose=0, callbacks=[Zero()], device="cuda").fit(X, y)
    assert not np.array_equal(seen[0], start)  # the first epoch's weights reached the host
    # from all-zero weights (relu hidden layer), one SGD step moves only the output bias
    np.testing.assert_array_equal(seen[1][:24], 0.0)
    assert np.any(seen[1][24:] != 0.0)


@pytest.mark.parametrize("act", ["relu", "tanh", "gelu"])
def test_fit_with_dropout_matches_cpu(act):
    """The same counters give the same masks on both devices: a fit with input and hidden
    dropout (several blocks of every kernel, tiles patched small) matches the CPU's."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((12, 6))
    y = rng.integers(0, 3, 12)
    out = fit_both(lambda: fastnn.MLP([6, 9, 7, 3], activation=act, output="softmax",
                                      dtype="float64", seed=4, dropout=[0.5, 0.3],
                                      input_dropout=0.2),
                   lambda: fastnn.optim.Adam(lr=0.05),
                   X, y, (X[:5], y[:5]), batch_size=5, epochs=2, shuffle=True, seed=8)
    check_same(out)
    plain = fit_both(lambda: fastnn.MLP([6, 9, 7, 3], activation=act, output="softmax",
                                        dtype="float64", seed=4),
                     lambda: fastnn.optim.Adam(lr=0.05),
                     X, y, batch_size=5, epochs=2, shuffle=True, seed=8)
    assert not np.allclose(plain["cuda"][0].params, out["cuda"][0].params)  # it dropped


class _SwitchSettings(fastnn.Callback):
    """Epoch 0's end: amsgrad on (a third state row); epoch 1's start: the weights scaled."""

    def on_epoch_end(self, epoch, logs):
        if epoch == 0:
            self.trainer.optimizer.amsgrad = True

    def on_epoch_begin(self, epoch, logs):
        if epoch == 1:
            self.model.params *= 0.5


def test_state_layout_change_and_epoch_begin_edits_match_cpu():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((9, 4))
    y = rng.integers(0, 3, 9)
    out = fit_both(lambda: fastnn.MLP([4, 5, 3], activation="relu", output="softmax",
                                      dtype="float64", seed=4),
                   lambda: fastnn.optim.Adam(lr=0.05),
                   X, y, batch_size=4, epochs=3, shuffle=False, callbacks=[_SwitchSettings()])
    check_same(out)
    assert out["cuda"][1].state.shape[0] == 3
