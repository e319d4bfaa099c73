"""Nothing the user trained is lost: divergence and Ctrl-C leave the model, the optimizer and
History at the end of the last completed epoch; saves are atomic; runs are reproducible; many
fits in one process hold memory flat."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastnn
import fastnn.trainer
from fastnn import optim
from fastnn._kernels.steps import train_steps

RNG = np.random.default_rng(0)
X_REG = RNG.normal(size=(24, 3))
Y_REG = RNG.normal(size=(24, 1))


def linear(seed=0):
    return fastnn.MLP([3, 1], output="identity", seed=seed)


def replay(make_opt, batch_size, epochs):
    """A fresh model + optimizer trained `epochs` epochs with the same seeds."""
    model, opt = linear(), make_opt()
    if epochs:
        fastnn.Trainer(model, opt, batch_size=batch_size, epochs=epochs, seed=1,
                       verbose=0).fit(X_REG, Y_REG)
    return model, opt


class LrJump:
    """Sets the optimizer's lr to `lr` at the start of epoch `epoch` (a user's bad schedule)."""

    def __init__(self, epoch, lr):
        self.epoch, self.lr = epoch, lr

    def set_trainer(self, trainer):
        self.trainer = trainer

    def on_epoch_begin(self, epoch, logs):
        if epoch == self.epoch:
            self.trainer.optimizer.lr = self.lr


# --------------------------------------------------------------------------- divergence
DIVERGING = [
    # slow geometric blow-up: dozens of finite epochs first (full batch: 1 step per epoch)
    pytest.param(lambda: optim.SGD(lr=1.5, momentum=0.5), None, None, id="sgd-fullbatch-slow"),
    # several shuffled steps per epoch: the bad step is in the middle of an epoch
    pytest.param(lambda: optim.SGD(lr=0.8, momentum=0.5), 5, None, id="sgd-minibatch-slow"),
    # healthy epochs, then the lr jumps: the last good epoch is a sane point to go on from
    pytest.param(lambda: optim.SGD(lr=0.05, momentum=0.9), 5, 1e30, id="sgd-jump"),
    pytest.param(lambda: optim.Adam(lr=0.01), 5, 1e30, id="adam-jump"),
    pytest.param(lambda: optim.RMSprop(lr=0.01), 5, 1e30, id="rmsprop-jump"),
    # finite gradients, but lr * step overflows the float32 weights: caught at the epoch's end
    pytest.param(lambda: optim.Adam(lr=0.01), None, 1e39, id="adam-overflowing-update"),
]


@pytest.mark.parametrize("make_opt, batch_size, jump", DIVERGING)
def test_divergence_keeps_last_finite_epoch_bit_for_bit(make_opt, batch_size, jump):
    model, opt = linear(), make_opt()
    callbacks = [LrJump(4, jump)] if jump else []
    trainer = fastnn.Trainer(model, opt, batch_size=batch_size, epochs=400, seed=1, verbose=0,
                             callbacks=callbacks)
    t0 = time.perf_counter()
    with pytest.raises(fastnn.TrainingDiverged) as info:
        trainer.fit(X_REG, Y_REG)
    assert time.perf_counter() - t0 < 10  # stops at once, not after 400 epochs of NaN
    assert isinstance(info.value, FloatingPointError)
    good = len(trainer.history.epoch)
    message = str(info.value)
    assert f"diverged in epoch {good}" in message
    assert "lower learning rate" in message and "clip_grad_norm" in message
    # History: only the finite epochs, numbered 0..good-1
    assert trainer.history.epoch == list(range(good))
    assert len(trainer.history["loss"]) == good if good else "loss" not in trainer.history.history
    assert np.isfinite(trainer.history.history.get("loss", [])).all()
    # weights, optimizer state and step count equal a run that stopped after `good` epochs
    ref_model, ref_opt = replay(make_opt, batch_size, good)
    assert np.isfinite(model.params).all()
    np.testing.assert_array_equal(model.params, ref_model.params)
    assert opt.step_count[0] == ref_opt.step_count[0]
    if ref_opt.state is not None:
        np.testing.assert_array_equal(opt.state, ref_opt.state)
    else:
        assert not opt.state.any()  # bound, but no step survived
    if not jump:  # the last finite weights of a slow blow-up are on the brink
        return
    assert good == 4
    # the optimizer is usable: a smaller lr trains on from there
    opt.lr = 1e-3
    history = fastnn.Trainer(model, opt, batch_size=batch_size, epochs=3, seed=2,
                             verbose=0).fit(X_REG, Y_REG)
    assert len(history["loss"]) == 3 and np.isfinite(history["loss"]).all()
    assert np.isfinite(model.params).all()


def test_divergence_in_first_epoch_keeps_initial_weights():
    model = linear()
    before = model.params.copy()
    trainer = fastnn.Trainer(model, optim.SGD(lr=1e30), batch_size=4, epochs=5, verbose=0)
    with pytest.raises(fastnn.TrainingDiverged, match="start of this fit"):
        trainer.fit(X_REG, Y_REG)
    np.testing.assert_array_equal(model.params, before)
    assert trainer.history.epoch == [] and trainer.optimizer.step_count[0] == 0


def test_non_finite_validation_loss_is_divergence():
    model = linear()
    before = model.params.copy()
    X_val = np.full((4, 3), 3e38, dtype=np.float32)  # finite, but x @ W overflows float32
    trainer = fastnn.Trainer(model, optim.SGD(lr=1e-3), batch_size=8, epochs=3, verbose=0)
    with pytest.raises(fastnn.TrainingDiverged, match="validation loss"):
        trainer.fit(X_REG, Y_REG, validation_data=(X_val, np.zeros(4)))
    assert trainer.history.epoch == []
    np.testing.assert_array_equal(model.params, before)
    assert trainer.optimizer.step_count[0] == 0


def test_divergence_with_early_stopping_restores_best():
    # the loss grows from the first epoch on, so the best epoch is epoch 0
    make_opt = DIVERGING[0].values[0]  # the loss grows from epoch 0 on

    def stopper():
        return fastnn.EarlyStopping(monitor="loss", patience=10 ** 6,
                                    restore_best_weights=True)

    model, opt = linear(), make_opt()
    trainer = fastnn.Trainer(model, opt, batch_size=None, epochs=400, seed=1, verbose=0,
                             callbacks=[stopper()])
    with pytest.raises(fastnn.TrainingDiverged):
        trainer.fit(X_REG, Y_REG)
    losses = trainer.history["loss"]
    best = int(np.argmin(losses))
    ref_model, _ = replay(make_opt, None, best + 1)
    np.testing.assert_array_equal(model.params, ref_model.params)


# --------------------------------------------------------------------------- Ctrl-C
class SignalAt:
    """Sends a real SIGINT to this process from a callback hook at one epoch."""

    def __init__(self, hook, epoch):
        self.hook, self.epoch = hook, epoch
        self.survived = False  # the trainer's handler only sets a flag: no raise in here

    def _fire(self, epoch):
        if epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGINT)
            self.survived = True

    def on_epoch_begin(self, epoch, logs):
        if self.hook == "on_epoch_begin":
            self._fire(epoch)

    def on_epoch_end(self, epoch, logs):
        if self.hook == "on_epoch_end":
            self._fire(epoch)


@pytest.mark.parametrize("hook, epoch, kept", [
    ("on_epoch_begin", 0, 0),  # during the first epoch: back to the initial weights
    ("on_epoch_begin", 3, 3),  # mid-fit: the first chunk of epoch 3 is rolled back
    ("on_epoch_end", 2, 3),    # between epochs: epoch 2 completed and is kept
    ("on_epoch_end", 5, 6),    # after the last epoch: fit must not swallow it
])
def test_ctrl_c_stops_with_consistent_state(hook, epoch, kept):
    make_opt = lambda: optim.Adam(lr=0.01)
    handler = signal.getsignal(signal.SIGINT)
    model, opt = linear(), make_opt()
    sender = SignalAt(hook, epoch)
    trainer = fastnn.Trainer(model, opt, batch_size=5, epochs=6, seed=1, verbose=0,
                             callbacks=[sender])
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(X_REG, Y_REG)
    assert sender.survived  # stopped by the trainer at a boundary, not inside the callback
    assert signal.getsignal(signal.SIGINT) is handler  # our handler is gone again
    assert trainer.history.epoch == list(range(kept))
    ref_model, ref_opt = replay(make_opt, 5, kept)
    np.testing.assert_array_equal(model.params, ref_model.params)
    assert opt.step_count[0] == ref_opt.step_count[0] == 5 * kept
    if kept:
        np.testing.assert_array_equal(opt.state, ref_opt.state)
    # and training goes on from there
    h = fastnn.Trainer(model, opt, batch_size=5, epochs=2, verbose=0).fit(X_REG, Y_REG)
    assert np.isfinite(h["loss"]).all() and opt.step_count[0] == 5 * kept + 10


def test_ctrl_c_restores_best_weights_when_asked():
    make_opt = DIVERGING[0].values[0]  # loss grows: epoch 0 is the best
    stopper = fastnn.EarlyStopping(monitor="loss", patience=100, restore_best_weights=True)
    model = linear()
    trainer = fastnn.Trainer(model, make_opt(), batch_size=None, epochs=10, seed=1, verbose=0,
                             callbacks=[stopper, SignalAt("on_epoch_begin", 4)])
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(X_REG, Y_REG)
    assert len(trainer.history.epoch) == 4
    best = int(np.argmin(trainer.history["loss"]))
    ref_model, _ = replay(make_opt, None, best + 1)
    np.testing.assert_array_equal(model.params, ref_model.params)


def test_ctrl_c_from_another_thread_mid_epoch(monkeypatch):
    """A real asynchronous SIGINT during long epochs of many chunks: the fit stops within a
    chunk or so, rolled back to the end of the last completed epoch."""
    monkeypatch.setattr(fastnn.trainer, "CHUNK_SECONDS", 0.005)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40_000, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    epoch_ends = []

    class Watch:
        def on_epoch_end(self, epoch, logs):
            epoch_ends.append(time.perf_counter())
            if time.perf_counter() - start > 60:  # safety net: never hang the suite
                trainer.stop_training = True

    def make():
        return (fastnn.MLP([4, 8, 2], output="softmax", seed=0),
                optim.SGD(lr=0.01, momentum=0.9))

    model, opt = make()
    trainer = fastnn.Trainer(model, opt, batch_size=1, epochs=10 ** 6, seed=3, verbose=0,
                             callbacks=[Watch()])
    fired = []
    timer = threading.Timer(0.4, lambda: (fired.append(time.perf_counter()),
                                          os.kill(os.getpid(), signal.SIGINT)))
    start = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            trainer.fit(X, y)
        stopped = time.perf_counter()
    finally:
        timer.cancel()
        timer.join()
    assert fired and stopped - fired[0] < 2.0  # the next chunk boundary, not the epoch's end
    kept = len(trainer.history.epoch)
    assert kept == len(epoch_ends)
    assert trainer._chunk_steps < X.shape[0]  # epochs really were cut into several chunks
    assert np.isfinite(model.params).all()
    ref_model, ref_opt = make()
    if kept:
        fastnn.Trainer(ref_model, ref_opt, batch_size=1, epochs=kept, seed=3,
                       verbose=0).fit(X, y)
    np.testing.assert_array_equal(model.params, ref_model.params)
    assert opt.step_count[0] == ref_opt.step_count[0] == kept * X.shape[0]
    h = fastnn.Trainer(model, opt, batch_size=64, epochs=1, verbose=0).fit(X, y)
    assert np.isfinite(h["loss"]).all()


def test_sigint_handler_restored_after_errors():
    handler = signal.getsignal(signal.SIGINT)
    trainer = fastnn.Trainer(linear(), optim.SGD(lr=1e30), epochs=2, verbose=0)
    with pytest.raises(fastnn.TrainingDiverged):
        trainer.fit(X_REG, Y_REG)
    assert signal.getsignal(signal.SIGINT) is handler

    class Boom:
        def on_epoch_end(self, epoch, logs):
            raise RuntimeError("callback failed")

    model = linear()
    trainer = fastnn.Trainer(model, optim.SGD(lr=0.01), epochs=3, verbose=0, seed=1,
                             batch_size=None, callbacks=[Boom()])
    with pytest.raises(RuntimeError, match="callback failed"):
        trainer.fit(X_REG, Y_REG)
    assert signal.getsignal(signal.SIGINT) is handler
    ref, _ = replay(lambda: optim.SGD(lr=0.01), None, 1)  # the recorded epoch is kept
    np.testing.assert_array_equal(model.params, ref.params)


# --------------------------------------------------------------------------- files
def test_crash_mid_save_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    old = fastnn.MLP([3, 4, 2], output="softmax", seed=0)
    old.save(path)
    new = fastnn.MLP([3, 4, 2], output="softmax", seed=1)
    real_fdopen = os.fdopen

    class HalfWriter:
        """Writes half the bytes, then the process 'dies' (KeyboardInterrupt)."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:len(data) // 2])
            self.f.flush()
            raise KeyboardInterrupt

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(KeyboardInterrupt):
        new.save(path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]  # no temp left
    loaded = fastnn.load(path)
    np.testing.assert_array_equal(loaded.params, old.params)


# --------------------------------------------------------------------------- reproducibility
def _seeded_run():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(200, 6))
    y = rng.integers(0, 3, 200)
    model = fastnn.MLP([6, 16, 16, 3], activation="tanh", output="softmax", seed=11)
    history = fastnn.Trainer(model, optim.Adam(lr=3e-3), batch_size=16, epochs=4, seed=5,
                             verbose=0).fit(X, y, validation_split=0.2)
    return model.params.copy(), history.history


def test_same_seed_same_weights_in_one_process():
    p1, h1 = _seeded_run()
    p2, h2 = _seeded_run()
    np.testing.assert_array_equal(p1, p2)
    assert h1["loss"] == h2["loss"] and h1["val_loss"] == h2["val_loss"]
    m1 = fastnn.MLP([6, 16, 16, 3], seed=11)
    m2 = fastnn.MLP([6, 16, 16, 3], seed=12)
    assert not np.array_equal(m1.params, m2.params)  # the seed matters


def test_same_seed_same_weights_across_processes():
    script = textwrap.dedent("""
        import hashlib, sys
        sys.path.insert(0, sys.argv[1])
        from test_robustness import _seeded_run
        params, _ = _seeded_run()
        print(hashlib.sha256(params.tobytes()).hexdigest())
    """)
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2",
               MKL_NUM_THREADS="2", NUMBA_NUM_THREADS="2")
    digests = []
    for _ in range(2):
        r = subprocess.run(check=False, args=[sys.executable, "-c", script, os.path.dirname(__file__)],
                           capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        digests.append(r.stdout.strip().splitlines()[-1])
    assert len(digests[0]) == 64 and digests[0] == digests[1]


# --------------------------------------------------------------------------- resources
def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_a_thousand_fits_hold_memory_flat():
    rng = np.random.default_rng(0)
    # float64 data for a float32 model: every fit converts a 64 KiB copy, so leaking the
    # copy, a workspace or the optimizer state would add tens of MB over 1,000 fits
    X = rng.normal(size=(512, 32))
    y = rng.integers(0, 3, 512)

    def one(i):
        model = fastnn.MLP([32, 8, 3], output="softmax", seed=i)
        fastnn.Trainer(model, optim.Adam(lr=1e-2), batch_size=128, epochs=1, seed=i,
                       verbose=0).fit(X, y, validation_data=(X[:64], y[:64]))
        model.predict(X)
        model.loss_and_grad(X[:32], y[:32])

    for i in range(50):  # warm up: compilation, caches, allocator pools
        one(i)
    signatures = len(train_steps.signatures)
    threads = threading.active_count()
    handler = signal.getsignal(signal.SIGINT)
    before = _rss_bytes()
    t0 = time.perf_counter()
    for i in range(1000):
        one(i)
    grown = _rss_bytes() - before
    assert grown < 16 * 2 ** 20, f"RSS grew by {grown / 2 ** 20:.1f} MiB over 1,000 fits"
    assert len(train_steps.signatures) == signatures  # no recompilation per fit
    assert threading.active_count() == threads
    assert signal.getsignal(signal.SIGINT) is handler
    assert time.perf_counter() - t0 < 60
