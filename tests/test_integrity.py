"""State integrity around the compiled loop: what Python can change while it runs (optimizer
settings, labels, signals), copies (deepcopy, pickle, process pools), threads, optimizer
reuse, files and the command line. Anything that could crash the process if it regressed runs
in a subprocess, so that a regression fails one test instead of killing pytest."""
import concurrent.futures
import copy
import json
import multiprocessing
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import _threads, optim
from fastnn._validation import check_features, check_targets
from fastnn.cli import main as cli_main
from fastnn.data import load_split

ROOT = Path(__file__).resolve().parent.parent


def run_python(code, timeout=600, **env):
    """Run `code` in a fresh interpreter at the repository root; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})


def small_regression(seed=0, n=12):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    y = rng.standard_normal((n, 2))
    model = fastnn.MLP([3, 4, 2], activation="tanh", output="identity", dtype="float64",
                       seed=seed)
    return model, X, y


# ------------------------------------------------------------------------------------------
# 1. optimizer settings that change the state layout, changed by a callback mid-fit
# ------------------------------------------------------------------------------------------
# Full-batch fits (one step per epoch) of 4 epochs; the callback changes settings at the end
# of the epochs given. Run in a subprocess: before the fix these corrupted the heap.
LAYOUT_CASES = {
    "sgd_momentum_on": ("SGD", dict(lr=0.1), {1: dict(momentum=0.9)}),
    "adam_amsgrad_on": ("Adam", dict(lr=0.05), {1: dict(amsgrad=True)}),
    "rmsprop_centered_momentum": ("RMSprop", dict(lr=0.01),
                                  {0: dict(momentum=0.5), 1: dict(centered=True),
                                   2: dict(momentum=0.0)}),
    "adam_amsgrad_off": ("Adam", dict(lr=0.05, amsgrad=True), {1: dict(amsgrad=False)}),
}
LAYOUT_SCRIPT = """
import json, sys
import numpy as np
import fastnn
from fastnn import optim

cases = json.loads(sys.argv[1])
out = {}


class Switch(fastnn.Callback):
    def __init__(self, changes):
        super().__init__()
        self.changes = {int(k): v for k, v in changes.items()}

    def on_epoch_end(self, epoch, logs):
        for key, value in self.changes.get(epoch, {}).items():
            setattr(self.trainer.optimizer, key, value)


for name, (cls, kw, changes) in cases.items():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 3))
    y = rng.standard_normal((12, 2))
    model = fastnn.MLP([3, 4, 2], activation="tanh", output="identity", dtype="float64",
                       seed=0)
    opt = getattr(optim, cls)(**kw)
    fastnn.Trainer(model, opt, loss="mse", batch_size=None, epochs=4, shuffle=False,
                   verbose=0, callbacks=[Switch(changes)]).fit(X, y)
    out[name] = [model.params.tolist(), opt.state.shape[0], int(opt.step_count[0])]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def layout_results():
    result = subprocess.run([sys.executable, "-c", LAYOUT_SCRIPT, json.dumps(LAYOUT_CASES)],
                            check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def reference_fit(cls, kw, changes, epochs=4):
    """The same full-batch fit with the torch update rules written out in float64, state
    created lazily as torch does (SGD's buffer = the first gradient, the others zeros)."""
    model, X, y = small_regression()
    p = model.params.copy()
    s = dict(momentum=0.0, dampening=0.0, amsgrad=False, centered=False, alpha=0.99,
             eps=1e-8, betas=(0.9, 0.999))
    s.update(kw)
    state = {}
    for t in range(1, epochs + 1):
        model.params = p
        g = model.loss_and_grad(X, y, loss="mse")[1]
        lr = s["lr"]
        if cls == "SGD":
            if s["momentum"] != 0:
                buf = state.get("momentum_buffer")
                buf = g.copy() if buf is None else s["momentum"] * buf + (1 - s["dampening"]) * g
                state["momentum_buffer"] = buf
                g = buf
            p = p - lr * g
        elif cls == "Adam":
            b1, b2 = s["betas"]
            m = state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
            v = state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g * g
            if s["amsgrad"]:
                v = state["vmax"] = np.maximum(state.get("vmax", 0.0), v)
            else:
                state.pop("vmax", None)
            denom = np.sqrt(v) / np.sqrt(1 - b2 ** t) + s["eps"]
            p = p - lr / (1 - b1 ** t) * m / denom
        else:  # RMSprop
            a = s["alpha"]
            v = state["v"] = a * state.get("v", 0.0) + (1 - a) * g * g
            if s["centered"]:
                gbar = state["gbar"] = a * state.get("gbar", 0.0) + (1 - a) * g
                v = v - gbar * gbar
            avg = np.sqrt(v) + s["eps"]
            if s["momentum"] > 0:
                buf = state["buf"] = s["momentum"] * state.get("buf", 0.0) + g / avg
                p = p - lr * buf
            else:
                state.pop("buf", None)  # a slot switched off is dropped
                p = p - lr * g / avg
        s.update(changes.get(t - 1, {}))
    return p


@pytest.mark.parametrize("name", sorted(LAYOUT_CASES))
def test_state_layout_change_mid_fit_matches_lazy_torch_state(layout_results, name):
    """momentum 0 -> 0.9, amsgrad and centered switched on (and off) by a callback: the
    state grows (or shrinks) at the epoch boundary; new slots start at torch's values."""
    cls, kw, changes = LAYOUT_CASES[name]
    params, slots, steps = layout_results[name]
    expected = reference_fit(cls, kw, changes)
    got = np.array(params)
    print(f"{name}: largest |diff| {np.max(np.abs(got - expected)):.3g}")
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)
    assert steps == 4
    final = getattr(optim, cls)(**kw)
    for change in changes.values():
        for key, value in change.items():
            setattr(final, key, value)
    assert slots == final.n_slots


def test_sgd_momentum_switched_on_with_dampening_is_refused():
    """torch starts SGD's buffer at the first gradient: with dampening > 0 a buffer starting
    at zero would differ, so the switch is refused at the boundary; the model keeps epoch 0.
    (Subprocess: before the fix the kernel wrote past the state.)"""
    result = run_python("""
        import numpy as np, fastnn
        from fastnn import optim
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((12, 3)), rng.standard_normal((12, 2))
        model = fastnn.MLP([3, 4, 2], activation="tanh", dtype="float64", seed=0)
        opt = optim.SGD(lr=0.1, dampening=0.5)
        kept = []

        class Switch(fastnn.Callback):
            def on_epoch_end(self, epoch, logs):
                kept.append(self.model.params.copy())
                opt.momentum = 0.9

        trainer = fastnn.Trainer(model, opt, batch_size=None, epochs=3, verbose=0,
                                 callbacks=[Switch()])
        try:
            trainer.fit(X, y)
        except ValueError as exc:
            assert "dampening=0.5" in str(exc), exc
        else:
            raise AssertionError("no error")
        np.testing.assert_array_equal(model.params, kept[0])
        assert opt.step_count[0] == 1 and len(trainer.history.epoch) == 1
        print("ok")
    """)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_invalid_setting_mid_fit_is_refused_at_the_boundary():
    """Settings are plain attributes: each epoch boundary checks them all again, as the
    constructor does (subprocess: amsgrad read as true against a 2-slot state wrote past it)."""
    result = run_python("""
        import numpy as np, fastnn
        from fastnn import optim
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((12, 3)), rng.standard_normal((12, 2))
        model = fastnn.MLP([3, 4, 2], activation="tanh", dtype="float64", seed=0)
        opt = optim.Adam()

        class Break(fastnn.Callback):
            def on_epoch_end(self, epoch, logs):
                opt.amsgrad = "yes"
                self.trainer.clip_grad_norm = "no"  # read once per fit: no effect on it

        try:
            fastnn.Trainer(model, opt, batch_size=4, epochs=2, verbose=0,
                           callbacks=[Break()]).fit(X, y)
        except TypeError as exc:
            assert "amsgrad must be True or False" in str(exc), exc
        else:
            raise AssertionError("no error")
        assert opt.step_count[0] == 3  # epoch 0's steps, nothing after
        print("ok")
    """)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_state_and_step_count_cannot_be_rebound():
    opt = optim.Adam()
    with pytest.raises(AttributeError):
        opt.state = np.zeros((2, 3))
    with pytest.raises(AttributeError):
        opt.step_count = np.zeros(0, dtype=np.int64)


# ------------------------------------------------------------------------------------------
# 2. predict / evaluate from several threads at once
# ------------------------------------------------------------------------------------------
def test_predict_and_evaluate_from_threads_equal_serial_results():
    """Four threads hammer one model (the kernels run without the GIL); every result equals
    the serial one bit for bit (a small network runs each call on one thread: the same
    arithmetic). Before the fix every call shared one workspace: wrong rows, or a segfault,
    hence the subprocess."""
    result = run_python("""
        import concurrent.futures, threading
        import numpy as np, fastnn
        model = fastnn.MLP([16, 64, 5], output="softmax", seed=0)
        rng = np.random.default_rng(0)
        inputs = [rng.standard_normal((rng.integers(300, 2000), 16)).astype(np.float32)
                  for _ in range(16)]
        labels = [rng.integers(0, 5, len(x)) for x in inputs]
        serial_p = [model.predict(x, batch_size=256) for x in inputs]
        serial_e = [model.evaluate(x, t, batch_size=256) for x, t in zip(inputs, labels)]
        start = threading.Barrier(4)

        def hammer(k):
            start.wait()
            got = []
            for rep in range(3):
                for i in range(k, len(inputs), 2):
                    got.append((i, model.predict(inputs[i], batch_size=256),
                                model.evaluate(inputs[i], labels[i], batch_size=256)))
            return got

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(hammer, k % 2) for k in range(4)]
            results = [r for f in futures for r in f.result()]
        assert len(results) == 4 * 3 * 8
        wrong_p = sum(int((p != serial_p[i]).any(axis=1).sum()) for i, p, _ in results)
        wrong_e = sum(e != serial_e[i] for i, _, e in results)
        print(f"wrong rows {wrong_p}, wrong evaluations {wrong_e}")
        assert wrong_p == 0 and wrong_e == 0
        print("ok")
    """)
    assert result.returncode == 0 and "ok" in result.stdout, (result.stdout[-500:],
                                                              result.stderr[-2000:])


def test_overlapping_thread_limits_are_restored_by_the_last_call():
    """The BLAS pools are process-wide: two calls that overlap (threads) must leave them as
    they found them whatever order they end in."""
    from threadpoolctl import threadpool_info
    before = [(d["filepath"], d["num_threads"]) for d in threadpool_info()]
    first = _threads.limit([64, 4096, 64], 512)  # big GEMMs: BLAS on all cores
    second = _threads.limit([4, 8, 2], 1)  # tiny: BLAS on one thread
    first()
    second()
    second()  # a second call of a restore changes nothing
    assert [(d["filepath"], d["num_threads"]) for d in threadpool_info()] == before


# ------------------------------------------------------------------------------------------
# 3. copies: deepcopy, pickle, process pools
# ------------------------------------------------------------------------------------------
def assert_whole(model):
    for W, b in zip(model.weights, model.biases):
        assert np.shares_memory(W, model.params) and np.shares_memory(b, model.params)
    model.weights[0][0, 0] = 123.0
    model.biases[-1][0] = -7.0
    assert 123.0 in model.params and -7.0 in model.params


@pytest.mark.parametrize("how", ["deepcopy", "pickle", "copy_method"])
def test_copies_are_whole_models(how, tmp_path):
    model, X, y = small_regression()
    model.note = "kept"  # attributes a user (or a wrapper) attached survive too
    twin = {"deepcopy": copy.deepcopy, "pickle": lambda m: pickle.loads(pickle.dumps(m)),
            "copy_method": lambda m: m.copy()}[how](model)
    assert twin.note == "kept"
    assert not np.shares_memory(twin.params, model.params)
    np.testing.assert_array_equal(twin.params, model.params)
    fastnn.Trainer(twin, optim.Adam(lr=0.05), batch_size=4, epochs=2, verbose=0).fit(X, y)
    assert not np.array_equal(twin.params, model.params)
    twin.save(tmp_path / "twin.safetensors")  # writes the trained weights
    np.testing.assert_array_equal(fastnn.load(tmp_path / "twin.safetensors").params,
                                  twin.params)
    np.testing.assert_array_equal(twin.predict(X), fastnn.load(tmp_path / "twin.safetensors")
                                  .predict(X))
    assert_whole(twin)


def _train_in_worker(model, X, y):
    fastnn.Trainer(model, optim.Adam(lr=0.05), batch_size=4, epochs=2, seed=0,
                   verbose=0).fit(X, y)
    return model


def test_model_trained_in_a_process_pool_comes_back_whole():
    model, X, y = small_regression()
    ref = model.copy()
    _train_in_worker(ref, X, y)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        trained = pool.submit(_train_in_worker, model, X, y).result(timeout=600)
    np.testing.assert_array_equal(trained.params, ref.params)
    np.testing.assert_array_equal(trained.weights[1], ref.weights[1])
    assert_whole(trained)


def test_deepcopy_of_model_and_optimizer_together_stays_bound():
    model, X, y = small_regression()
    opt = optim.Adam(lr=0.05)
    fastnn.Trainer(model, opt, batch_size=4, epochs=1, verbose=0).fit(X, y)
    model2, opt2 = copy.deepcopy((model, opt))
    fastnn.Trainer(model2, opt2, batch_size=4, epochs=1, seed=1, verbose=0).fit(X, y)
    fastnn.Trainer(model, opt, batch_size=4, epochs=1, seed=1, verbose=0).fit(X, y)
    np.testing.assert_array_equal(model2.params, model.params)
    assert opt2.step_count[0] == opt.step_count[0] == 6


# ------------------------------------------------------------------------------------------
# 4. labels (and features) changed after validation
# ------------------------------------------------------------------------------------------
def classification_data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((24, 4))
    y = rng.integers(0, 3, 24)
    Xv = rng.standard_normal((10, 4))
    yv = rng.integers(0, 3, 10)
    return X, y, Xv, yv


def fit_relabelling(X, y, Xv, yv, relabel):
    model = fastnn.MLP([4, 6, 3], output="softmax", dtype="float64", seed=0)

    class Relabel(fastnn.Callback):
        def on_epoch_end(self, epoch, logs):
            relabel(X, y, Xv, yv)

    history = fastnn.Trainer(model, optim.Adam(lr=0.05), batch_size=5, epochs=3, seed=0,
                             verbose=0, callbacks=[Relabel()]).fit(X, y, validation_data=(Xv, yv))
    return model, history


def test_labels_edited_during_fit_do_not_reach_it():
    """Pseudo-labelling in place (here: every label 0) changes nothing in the running fit: it
    trains on the label copies taken at its start."""
    X, y, Xv, yv = classification_data()
    ref_model, ref_history = fit_relabelling(X.copy(), y.copy(), Xv.copy(), yv.copy(),
                                             lambda *a: None)

    def relabel(X, y, Xv, yv):
        y[:] = 0
        yv[:] = 0

    model, history = fit_relabelling(X, y, Xv, yv, relabel)
    np.testing.assert_array_equal(model.params, ref_model.params)
    assert history["val_loss"] == ref_history["val_loss"]


def test_out_of_range_labels_written_mid_fit_cannot_reach_the_kernel():
    """-1 ("unlabelled") and -2**62 written into y and y_val by a callback: before the fix
    the kernels read out of bounds (a segfault); in a subprocess, so a regression fails here."""
    result = run_python("""
        import numpy as np, fastnn
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((64, 4)), rng.integers(0, 3, 64)
        Xv, yv = rng.standard_normal((32, 4)), rng.integers(0, 3, 32)

        class Relabel(fastnn.Callback):
            def on_epoch_end(self, epoch, logs):
                y[::2] = -1
                y[1::2] = -2 ** 62
                yv[:] = 2 ** 62

        def fit(X, y, Xv, yv, callbacks):
            model = fastnn.MLP([4, 6, 3], output="softmax", seed=0)
            return fastnn.Trainer(model, batch_size=8, epochs=4, seed=0, verbose=0,
                                  callbacks=callbacks).fit(X, y, validation_data=(Xv, yv))

        ref = fit(X, y.copy(), Xv, yv.copy(), [])
        h = fit(X, y, Xv, yv, [Relabel()])
        assert h["loss"] == ref["loss"], (h["loss"], ref["loss"])
        assert h["val_loss"] == ref["val_loss"], (h["val_loss"], ref["val_loss"])
        print("ok")
    """)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_validated_targets_share_no_memory_with_the_input():
    y = np.array([0, 1, 2, 1], dtype=np.int64)
    yi, _ = check_targets(y, 4, 3, "cross_entropy", np.float64)
    assert not np.shares_memory(yi, y)
    yf = np.eye(3)[y]
    for loss in ("cross_entropy", "mse", "binary_cross_entropy"):
        _, out = check_targets(yf, 4, 3, loss, np.float64)
        assert not np.shares_memory(out, yf)
    X = np.zeros((4, 2))
    assert check_features(X, 2, np.float64) is X  # fit and predict read such features in place


# ------------------------------------------------------------------------------------------
# 5. signals
# ------------------------------------------------------------------------------------------
SIGNAL_SCRIPT = """
import os, signal, numpy as np, fastnn
signal.signal(signal.SIGINT, {disposition})
rng = np.random.default_rng(0)
X, y = rng.standard_normal((32, 4)), rng.integers(0, 3, 32)
seen = []

class Poke(fastnn.Callback):
    def on_epoch_end(self, epoch, logs):
        seen.append(signal.getsignal(signal.SIGINT))
        if {send}:
            os.kill(os.getpid(), signal.SIGINT)

model = fastnn.MLP([4, 6, 3], output="softmax", seed=0)
h = fastnn.Trainer(model, batch_size=8, epochs=3, verbose=0, callbacks=[Poke()]).fit(X, y)
assert len(h.epoch) == 3, h.epoch
assert all(s == {disposition} for s in seen), seen
assert signal.getsignal(signal.SIGINT) == {disposition}
print("ok")
"""


@pytest.mark.parametrize("disposition,send", [("signal.SIG_IGN", True),
                                              ("signal.SIG_DFL", False)])
def test_sigint_disposition_that_python_does_not_handle_is_left_alone(disposition, send):
    """A background job ignores SIGINT: Ctrl-C in its terminal must not stop its fit. SIG_DFL
    (the process dies) is left as it is too: only a Python handler is wrapped."""
    result = run_python(SIGNAL_SCRIPT.format(disposition=disposition, send=send))
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_python_sigint_handler_is_wrapped_and_restored():
    model, X, y = small_regression()
    seen = []

    class Look(fastnn.Callback):
        def on_epoch_end(self, epoch, logs):
            seen.append(signal.getsignal(signal.SIGINT))

    before = signal.getsignal(signal.SIGINT)
    fastnn.Trainer(model, batch_size=4, epochs=1, verbose=0, callbacks=[Look()]).fit(X, y)
    assert seen[0] is not before and callable(seen[0])
    assert signal.getsignal(signal.SIGINT) is before


# ------------------------------------------------------------------------------------------
# 6. one optimizer, one model
# ------------------------------------------------------------------------------------------
def test_optimizer_reused_for_another_model_raises():
    model, X, y = small_regression()
    opt = optim.Adam(lr=0.05)
    fastnn.Trainer(model, opt, batch_size=4, epochs=1, verbose=0).fit(X, y)
    state, step = opt.state.copy(), int(opt.step_count[0])
    same_size, _, _ = small_regression(seed=1)
    other = fastnn.MLP([3, 5, 2], dtype="float64", seed=0)
    for second in (same_size, other):
        before = second.params.copy()
        with pytest.raises(ValueError, match="bound to another model"):
            fastnn.Trainer(second, opt, batch_size=4, epochs=1, verbose=0).fit(X, y)
        np.testing.assert_array_equal(second.params, before)
    np.testing.assert_array_equal(opt.state, state)
    assert opt.step_count[0] == step
    with pytest.raises(ValueError, match="bound to another model"):
        opt.update(same_size.params.copy(), np.zeros_like(same_size.params))
    # moved on purpose: a fresh optimizer loads the state; reset() starts over
    moved = optim.Adam()
    moved.load_state_dict(opt.state_dict())
    fastnn.Trainer(same_size, moved, batch_size=4, epochs=1, verbose=0).fit(X, y)
    assert moved.step_count[0] == 2 * step
    opt.reset()
    fastnn.Trainer(other, opt, batch_size=4, epochs=1, verbose=0).fit(X, y)
    assert opt.step_count[0] == step and opt.state.shape == (2, other.n_params)


def test_state_for_another_size_is_refused_not_dropped():
    model, X, y = small_regression()
    opt = optim.Adam(lr=0.05)
    fastnn.Trainer(model, opt, batch_size=4, epochs=1, verbose=0).fit(X, y)
    other = fastnn.MLP([3, 5, 2], dtype="float64", seed=0)
    other_opt = optim.Adam()
    other_opt.update(other.params, np.zeros_like(other.params))
    with pytest.raises(ValueError, match=f"bound to a model with {model.n_params}"):
        opt.load_state_dict(other_opt.state_dict())
    unbound = optim.Adam()
    unbound.load_state_dict(opt.state_dict())
    before = other.params.copy()
    with pytest.raises(ValueError, match=f"state is for {model.n_params} parameters"):
        fastnn.Trainer(other, unbound, batch_size=4, epochs=1, verbose=0).fit(X, y)
    np.testing.assert_array_equal(other.params, before)
    assert unbound.step_count[0] == 3  # kept, not silently reset


# ------------------------------------------------------------------------------------------
# 7. malformed files: header first, bounded, ValueError
# ------------------------------------------------------------------------------------------
def write_raw(path, header_bytes, payload=b""):
    path.write_bytes(len(header_bytes).to_bytes(8, "little") + header_bytes + payload)
    return path


@pytest.mark.parametrize("depth", [40, 100_000])
def test_deeply_nested_header_is_a_value_error(tmp_path, depth):
    header = b'{"a": ' + b"[" * depth + b"]" * depth + b"}"
    path = write_raw(tmp_path / "deep.safetensors", header)
    for load in (fastnn.load, fastnn.io.load_state):
        with pytest.raises(ValueError, match="nests .* levels deep"):
            load(path)


def test_deeply_nested_metadata_value_is_a_value_error(tmp_path):
    model = fastnn.MLP([2, 2])
    path = tmp_path / "m.safetensors"
    model.save(path)
    arrays, meta = fastnn.io.load_state(path)
    meta["layer_sizes"] = "[" * 50_000 + "]" * 50_000
    fastnn.io.save_state(path, arrays, meta)
    with pytest.raises(ValueError, match="metadata 'layer_sizes' nests"):
        fastnn.load(path)


def test_header_is_checked_before_the_payload_is_read(tmp_path):
    """A large file whose header does not describe its size is refused after reading the
    header alone (a sparse 256 MB file: before, the whole of it was read first)."""
    path = write_raw(tmp_path / "big.safetensors", b'{"__metadata__": {}}')
    with open(path, "r+b") as f:
        f.truncate(256 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="describes 28 bytes but the file has"):
            fastnn.io.load_state(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_malformed_tensor_entries_are_value_errors(tmp_path):
    for header in (b'{"w": 5}', b'{"w": {"data_offsets": [0, -1]}}',
                   b'{"w": {"data_offsets": "x"}}', b'[1, 2]'):
        with pytest.raises(ValueError):
            fastnn.io.load_state(write_raw(tmp_path / "bad.safetensors", header))


# ------------------------------------------------------------------------------------------
# 8. a failed load_state_dict changes nothing
# ------------------------------------------------------------------------------------------
def test_failed_load_state_dict_changes_nothing():
    opt = optim.Adam(lr=0.01, betas=(0.8, 0.9))
    p = np.zeros(4)
    opt.update(p, np.ones(4))
    before = (opt.hyperparameters(), opt.state.copy(), int(opt.step_count[0]))
    good = optim.Adam(lr=0.5, amsgrad=True)
    good.update(np.zeros(4), np.ones(4))
    sd = good.state_dict()
    for bad in (dict(sd, step=2 ** 64), dict(sd, step=-1), dict(sd, step=True),
                dict(sd, state=np.zeros((2, 4))), dict(sd, state=[[1.0], [2.0, 3.0]]),
                dict(sd, state=np.zeros((3, 5))), dict(sd, hyperparameters=[])):
        with pytest.raises((ValueError, TypeError)):
            opt.load_state_dict(bad)
        assert opt.hyperparameters() == before[0]
        np.testing.assert_array_equal(opt.state, before[1])
        assert opt.step_count[0] == before[2]
    opt.load_state_dict(sd)  # a good one still loads
    assert opt.amsgrad and opt.lr == 0.5 and opt.step_count[0] == 1


# ------------------------------------------------------------------------------------------
# 9. paths: CLI outputs checked first, ModelCheckpoint's directory, mode and symlinks
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("option,name", [("--save", "m.safetensors"), ("--plot", "p.png")])
def test_cli_output_in_a_missing_directory_fails_before_training(tmp_path, capsys, option,
                                                                 name):
    target = tmp_path / "missing" / name
    code = cli_main(["train", "--epochs", "1", "--quiet", option, str(target)])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and option in err
    assert "fastnn: MLP" not in err  # refused before the model was even built


def test_cli_output_that_is_a_directory_fails_before_training(tmp_path, capsys):
    assert cli_main(["train", "--epochs", "1", "--quiet", "--save", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_model_checkpoint_creates_its_directory(tmp_path):
    model, X, y = small_regression()
    path = tmp_path / "runs" / "a" / "m-{epoch}.safetensors"
    fastnn.Trainer(model, batch_size=4, epochs=2, verbose=0,
                   callbacks=[fastnn.ModelCheckpoint(path, monitor="loss")]).fit(X, y)
    np.testing.assert_array_equal(fastnn.load(tmp_path / "runs/a/m-2.safetensors").params,
                                  model.params)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_saving_over_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "m.safetensors"
    model = fastnn.MLP([2, 3])
    model.save(path)
    os.chmod(path, 0o600)
    model.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_saving_to_a_symlink_writes_its_target(tmp_path):
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "model.safetensors"
    link = tmp_path / "latest.safetensors"
    first, second = fastnn.MLP([2, 3], seed=0), fastnn.MLP([2, 3], seed=1)
    first.save(target)
    link.symlink_to(target)
    second.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(fastnn.load(target).params, second.params)
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["model.safetensors"]


# ------------------------------------------------------------------------------------------
# 10. one-hot integer labels in an NPZ
# ------------------------------------------------------------------------------------------
def test_cli_sizes_the_output_layer_from_one_hot_columns(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    labels = rng.integers(0, 3, 60)  # class 3 of 4 never occurs
    np.savez(tmp_path / "d.npz", X=X, y=np.eye(4, dtype=np.int64)[labels])
    code = cli_main(["train", "--data", str(tmp_path / "d.npz"), "--epochs", "1", "--quiet",
                     "--hidden", "5", "--save", str(tmp_path / "m.safetensors")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "test accuracy" in out.out
    model = fastnn.load(tmp_path / "m.safetensors")
    assert model.layer_sizes == (3, 5, 4) and model.classes_.tolist() == [0, 1, 2, 3]


def test_load_split_decides_classes_once(tmp_path):
    onehot = np.eye(4, dtype=np.int64)[[0, 2, 1, 0, 2, 1, 0, 2, 1, 0] * 3]
    X = np.arange(60.0).reshape(30, 2)
    np.savez(tmp_path / "onehot.npz", X=X, y=onehot)
    split = load_split(tmp_path / "onehot.npz", 0.2, 0.2, seed=0)
    assert split.classification and split.classes.tolist() == [0, 1, 2, 3]
    assert np.array_equal(np.sort(np.concatenate(split[3:6])), np.sort(onehot.argmax(1)))
    counts = np.abs(onehot * 3 - 1)  # integers, not one-hot: regression targets under auto
    np.savez(tmp_path / "counts.npz", X=X, y=counts)
    assert not load_split(tmp_path / "counts.npz", 0.2, 0.2).classification
    with pytest.raises(ValueError, match="not one-hot"):
        load_split(tmp_path / "counts.npz", 0.2, 0.2, task="classification")
