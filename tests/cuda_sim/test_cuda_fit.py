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


def test_fit_with_chunked_column_sums_matches_cpu(monkeypatch):
    from fastnn._kernels.cuda import dense
    monkeypatch.setattr(dense, "COLSUM_ROWS", 2)  # batches of 5: 3 chunks, a short last one
    rng = np.random.default_rng(6)
    X = rng.standard_normal((9, 4))
    y = rng.integers(0, 3, 9)
    out = fit_both(lambda: fastnn.MLP([4, 6, 3], activation="relu", output="softmax",
                                      dtype="float64", seed=7),
                   lambda: fastnn.optim.Adam(lr=0.05), X, y, batch_size=5, epochs=2,
                   shuffle=False)
    check_same(out)


@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_fit_with_l2_penalty_matches_cpu(opt):
    """alpha: the L2 penalty in the update and the loss, on both devices alike."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((9, 4))
    y = rng.integers(0, 3, 9)
    make_opt = {"sgd": lambda: fastnn.optim.SGD(lr=0.2, momentum=0.5),
                "adamw": lambda: fastnn.optim.AdamW(lr=0.05, weight_decay=0.1)}[opt]
    out = fit_both(lambda: fastnn.MLP([4, 6, 5, 3], activation="tanh", output="softmax",
                                      dtype="float64", seed=4),
                   make_opt, X, y, batch_size=4, epochs=2, shuffle=True, seed=2, alpha=0.7)
    check_same(out)


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


HIDDEN = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu"]


@pytest.mark.parametrize("output, loss", [("softmax", "cross_entropy"),
                                          ("sigmoid", "binary_cross_entropy"),
                                          ("identity", "mse")])
def test_z_only_where_kept_every_activation_matches_cpu(monkeypatch, output, loss):
    """The GPU's Z holds only the layers that keep their pre-activation (gelu, sigmoid,
    softmax: keeps_preactivation), the others' backward reads a alone: a net with every
    hidden activation, and each output, trains as on the CPU (whose Z has every layer)."""
    from fastnn._kernels.cuda import network
    from fastnn._steps import cuda as cuda_steps
    made = []

    class Recording(cuda_steps.Workspace):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            made.append(self)

    monkeypatch.setattr(cuda_steps, "Workspace", Recording)
    rng = np.random.default_rng(12)
    X = rng.standard_normal((7, 4))
    k = 2 if output == "identity" else 3
    y = (rng.standard_normal((7, k)) if loss == "mse" else
         rng.integers(0, 2, (7, k)).astype(float) if loss == "binary_cross_entropy" else
         rng.integers(0, k, 7))
    sizes = [4, 3, 5, 4, 3, 5, 4, 3, k]
    out = fit_both(lambda: fastnn.MLP(sizes, activation=HIDDEN, output=output,
                                      dtype="float64", seed=5),
                   lambda: fastnn.optim.Adam(lr=0.05), X, y, (X[:3], y[:3]), loss=loss,
                   batch_size=4, epochs=2, shuffle=False)
    check_same(out)
    acts = out["cuda"][0].layout.acts
    off = network.z_offsets(sizes, acts)
    # sigmoid (layer 1, 5 units) and gelu (layer 6, 3 units), and a sigmoid or softmax output
    kept_out = output != "identity"
    assert off.tolist() == [-1, 0, -1, -1, -1, -1, 5] + ([8] if kept_out else [-1])
    z_units = 5 + 3 + (k if kept_out else 0)
    assert network.kept_units(sizes, acts) == z_units
    assert [ws.Z.shape[0] for ws in made] == [4 * z_units, 3 * z_units]  # train, validation
    assert made[0].A.shape[0] == 4 * sum(sizes[1:])


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


# ---------------------------------------------------------------------------- roll-back on device
def _diverging_fit(device, callbacks=None):
    """A linear net with SGD + momentum that stays finite for two epochs and overflows in the
    third (float64): the roll-back point is a trained epoch, not the start."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((6, 3))
    y = rng.standard_normal((6, 2))
    model = fastnn.MLP([3, 4, 2], activation="identity", output="identity", dtype="float64",
                       seed=3)
    opt = fastnn.optim.SGD(lr=0.8, momentum=0.9)
    trainer = fastnn.Trainer(model, opt, batch_size=2, epochs=40, shuffle=False, verbose=0,
                             device=device, callbacks=callbacks)
    with pytest.raises(TrainingDiverged, match="diverged in epoch 2"):
        trainer.fit(X, y)
    return model, opt, trainer


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator's overflow
def test_diverged_later_epoch_rolls_back_on_device_as_cpu():
    m_cpu, o_cpu, t_cpu = _diverging_fit("cpu")
    m_gpu, o_gpu, t_gpu = _diverging_fit("cuda")
    assert len(t_gpu.history.epoch) == len(t_cpu.history.epoch) == 2
    assert int(o_gpu.step_count[0]) == int(o_cpu.step_count[0]) == 6
    assert np.isfinite(m_gpu.params).all() and np.isfinite(o_gpu.state).all()
    assert np.any(o_gpu.state != 0)  # momentum buffers of the trained epochs came back
    np.testing.assert_allclose(m_gpu.params, m_cpu.params, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(o_gpu.state, o_cpu.state, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(t_gpu.history["loss"], t_cpu.history["loss"], rtol=1e-10)


class _CopyCounter:
    """Counts device-to-host copies by size (patched onto the simulator's device array)."""

    def __init__(self, monkeypatch):
        from numba import cuda
        self.sizes = []
        cls = type(cuda.device_array(1))
        original = cls.copy_to_host

        def counting(arr, *args, **kwargs):
            self.sizes.append(int(arr.size))
            return original(arr, *args, **kwargs)

        monkeypatch.setattr(cls, "copy_to_host", counting)

    def count(self, size):
        return self.sizes.count(size)


@pytest.mark.parametrize("with_callback", [False, True])
def test_parameters_reach_host_only_when_needed(monkeypatch, with_callback):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((7, 3))
    y = rng.integers(0, 2, 7)
    model = fastnn.MLP([3, 5, 2], activation="relu", output="softmax", dtype="float64",
                       seed=5)
    opt = fastnn.optim.Adam(lr=0.01)
    n = model.params.size  # 32; the state is (2, n); X has 7 rows: no size collides
    seen = []

    class Look:
        def on_epoch_end(self, epoch, logs):
            seen.append(model.params.copy())

    counter = _CopyCounter(monkeypatch)
    fastnn.Trainer(model, opt, batch_size=3, epochs=3, shuffle=False, verbose=0,
                   device="cuda", callbacks=[Look()] if with_callback else None).fit(X, y)
    expected = 3 if with_callback else 1  # once per epoch for the callback, else at the end
    assert counter.count(n) == expected, counter.sizes
    assert counter.count(2 * n) == expected, counter.sizes
    assert np.isfinite(model.params).all() and np.any(opt.state != 0)
    if with_callback:
        np.testing.assert_array_equal(seen[-1], model.params)


def test_check_finite_on_device():
    from numba import cuda

    from fastnn._kernels.cuda import network
    for n in (1, 5, 13, 40):  # 1 to 10 blocks of 4 threads (conftest)
        for where in (None, 0, n // 2, n - 1):
            for bad in (np.nan, np.inf, -np.inf):
                arr = np.arange(n, dtype=np.float32)
                if where is not None:
                    arr[where] = bad
                flag = cuda.to_device(np.zeros(1, np.int32))
                network.check_finite(flag, cuda.to_device(arr))
                assert flag.copy_to_host()[0] == (where is not None), (n, where, bad)


# ---------------------------------------------------------------------------- launches per step
LAUNCHES_PER_STEP_3_LAYERS = 18  # see test_kernel_launches_per_step


def test_kernel_launches_per_step(monkeypatch):
    """Kernel launches of one training step of a 3-layer net (softmax output, relu hidden,
    batch within one column-sum chunk): gather 1, forward 3 GEMMs (the softmax folded into
    the loss), loss 1, backward 4 + 4 + 2 (dW GEMM, bias column sum, dx GEMM, activation
    backward; no dx for the first layer), gradient norms 2, update 1 = 18. (Past
    dense.COLSUM_ROWS rows a bias column sum is two launches: 21.)"""
    from numba import cuda
    launches = []
    cls = type(cuda.jit(lambda a: None))
    original = cls.__getitem__

    def counting(kernel, config):
        launches.append(kernel)
        return original(kernel, config)

    monkeypatch.setattr(cls, "__getitem__", counting)
    rng = np.random.default_rng(8)
    counts = {}
    for n_steps in (2, 4):
        X = rng.standard_normal((3 * n_steps, 4))
        y = rng.integers(0, 3, 3 * n_steps)
        model = fastnn.MLP([4, 5, 6, 3], activation="relu", output="softmax",
                           dtype="float64", seed=9)
        del launches[:]
        fastnn.Trainer(model, fastnn.optim.Adam(lr=0.01), batch_size=3, epochs=1,
                       shuffle=False, verbose=0, device="cuda").fit(X, y)
        counts[n_steps] = len(launches)
    per_step = (counts[4] - counts[2]) / 2
    print(f"kernel launches per step (3 layers): {per_step:g}; per 2-step fit: {counts[2]}")
    assert per_step == LAUNCHES_PER_STEP_3_LAYERS
