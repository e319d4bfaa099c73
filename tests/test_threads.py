"""The multi-threaded training loop (fastnn/_kernels/sync.py, fastnn._steps.cpu.steps_on_threads):
the same fit on 1, 2 and 3 threads gives the same model, optimizer state and History; short
and tiny batches; agreement with the naive NumPy reference; errors on one or all threads stop
every thread without a hang; divergence rolls back as on one thread; FASTNN_THREADS; the work
split of sync.share.

3 threads on a 2-core machine is allowed (the threads then share cores and wait for each
other at barriers through the scheduler), so the 3-thread runs are kept to a few steps each.
"""
import inspect
import math
import threading
import time
import types

import numpy as np
import pytest

import fastnn
import fastnn._steps.cpu
import fastnn.trainer
from fastnn import _threads, optim
from fastnn._kernels import steps as kernel_steps
from fastnn._kernels.sync import ALIGN, SYNC_ABORT, share

import bounds
import naive
from test_robustness import LrJump

GUARD_SECONDS = 30  # a hang fails the test after this long instead of blocking the run
UNTIMED_KEYS = ("time", "samples_per_sec")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _release_leftover_workers(monkeypatch):
    """Raise the abort flag of every sync array a test's fits created, once the test is over:
    a worker that a failing test left waiting in a barrier then stops, instead of spinning for
    the rest of the session."""
    syncs = []
    real_new_sync = fastnn._threads.new_sync

    def recording_new_sync():
        syncs.append(real_new_sync())
        return syncs[-1]

    monkeypatch.setattr(fastnn._threads, "new_sync", recording_new_sync)
    yield syncs
    for sync in syncs:
        sync[SYNC_ABORT] = 1


OPTIMIZERS = {
    "adam": lambda: optim.Adam(lr=1e-2),
    "adam_amsgrad": lambda: optim.Adam(lr=1e-2, weight_decay=1e-3, amsgrad=True),
    "adamw": lambda: optim.AdamW(lr=1e-2),
    "sgd": lambda: optim.SGD(lr=0.1),
    "sgd_momentum": lambda: optim.SGD(lr=0.05, momentum=0.5, dampening=0.1, weight_decay=1e-3),
    "sgd_nesterov": lambda: optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
    "rmsprop": lambda: optim.RMSprop(lr=1e-2),
    "rmsprop_centered": lambda: optim.RMSprop(lr=1e-2, momentum=0.5, centered=True),
    "adagrad": lambda: optim.Adagrad(lr=0.05, lr_decay=1e-3),
    "adadelta": lambda: optim.Adadelta(lr=1.0, weight_decay=1e-3),
}
DEFAULT_LOSS = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy",
                "identity": "mse"}


def make_data(n, sizes, output, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    k = sizes[-1]
    if output == "softmax":
        y = rng.integers(0, k, size=n)
    elif output == "sigmoid":
        y = rng.random((n, k)).astype(dtype)
    else:
        y = rng.normal(size=(n, k)).astype(dtype)
    return X, y


def fit(monkeypatch, threads, sizes, act, output, dtype, opt, batch, X, y, epochs,
        clip=None, validation=None, shuffle=True, seed=3, start=None):
    """One fit on `threads` threads (FASTNN_THREADS); returns (model, optimizer, history).
    `start`: the initial parameters (default: the seed-0 model's), cast to `dtype`, and so are
    X, y and the validation data: the float64 fit from a float32 fit's start and data is the
    computation that fit rounds."""
    monkeypatch.setenv("FASTNN_THREADS", str(threads))
    model = fastnn.MLP(list(sizes), activation=act, output=output, dtype=dtype, seed=0)
    if start is not None:
        model.params[:] = start
    opt = OPTIMIZERS[opt]() if isinstance(opt, str) else opt
    trainer = fastnn.Trainer(model, opt, batch_size=batch, epochs=epochs, seed=seed,
                             clip_grad_norm=clip, shuffle=shuffle, verbose=0)
    X, y = cast(X, y, dtype)
    if validation is not None:
        validation = cast(*validation, dtype)
    history = trainer.fit(X, y, validation_data=validation)
    return model, opt, history


def cast(X, y, dtype):
    return X.astype(dtype), (y if y.dtype.kind in "iu" else y.astype(dtype))


def training_units(sizes, batch, rows, steps, opt):
    """bounds.training_units for a fit of `steps` steps on batches of `batch` of `rows` rows,
    with the optimizer's own amplification (centered RMSprop's)."""
    amplification = 1.0
    if isinstance(opt, optim.RMSprop) and opt.centered:
        amplification = bounds.rmsprop_centered_amplification(opt.alpha, steps)
    return bounds.training_units(sizes, rows if batch is None else min(batch, rows), steps,
                                 amplification)


def training_quantities(result):
    """{name: float64 array} of a fit's (model, optimizer, history) that fits are compared
    on: the parameters, each optimizer state slot, each History key but the timings and the
    accuracies (counts of rows, compared apart)."""
    model, opt, hist = result
    out = {"parameters": model.params.astype(np.float64)}
    if opt.state is not None:
        for slot, values in enumerate(opt.state):
            out[f"optimizer state slot {slot}"] = values.astype(np.float64)
    for key, values in hist.history.items():
        if key not in UNTIMED_KEYS and key not in ACCURACY_KEYS:
            out[f"history {key!r}"] = np.asarray(values, dtype=np.float64)
    return out


ACCURACY_KEYS = ("accuracy", "val_accuracy")
# elements left out of a float32 comparison under an adaptive optimizer: the expected number
# is well under 1 (bounds.py), so more than 3 has a chance of ~1e-4 or less
ILL_CONDITIONED = 3


def assert_close_training(run, ref, units, dtype, rows, amplification=None):
    """(model, optimizer, history) of a fit against those of the same fit computed another way
    (other threads, dtype or path): each of training_quantities within units * eps(dtype) of
    ref's, norm-wise (tests/bounds.py says why norm-wise), times the fit's amplification of
    that quantity (bounds.sensitivity). Accuracies count rows: `rows` = {key: rows counted}; a
    rounding difference may move the argmax of a row that is a near tie, one row at most in
    these small fits (none in float64)."""
    (model, opt, hist), (_, ref_opt, ref_hist) = run, ref
    amplification = amplification or {}
    assert model.params.dtype == np.dtype(dtype)
    assert opt.state is None or opt.state.dtype == np.dtype(dtype)
    assert np.isfinite(model.params).all()
    assert opt.step_count[0] == ref_opt.step_count[0]
    a, b = opt.state_dict(), ref_opt.state_dict()
    assert a["name"] == b["name"] and a["hyperparameters"] == b["hyperparameters"]
    assert a["step"] == b["step"]
    assert (a["state"] is None) == (b["state"] is None)
    assert hist.epoch == ref_hist.epoch
    assert set(hist.history) == set(ref_hist.history)
    got, expected = training_quantities(run), training_quantities(ref)
    assert set(got) == set(expected)
    # float32 with an adaptive optimizer: a gradient element that cancels to rounding level
    # may take any update in +-lr (tests/bounds.py); the float64 cases check every element
    adaptive = np.dtype(dtype) == np.float32 and not isinstance(opt, optim.SGD)
    for name, values in expected.items():
        bounds.assert_close(got[name], values, units * amplification.get(name, 1.0), dtype,
                            name, ill_conditioned=ILL_CONDITIONED if adaptive and
                            not name.startswith("history") else 0)
    for key in ACCURACY_KEYS:
        if key in ref_hist.history:
            one_row = 0.0 if np.dtype(dtype) == np.float64 else 1.0 / rows[key]
            np.testing.assert_allclose(hist.history[key], ref_hist.history[key], rtol=0,
                                       atol=one_row * (1 + 1e-9), err_msg=key)


def assert_threads_train_alike(run, dtype, threads, units, rows, start):
    """run(threads, dtype, start) -> (model, optimizer, history): one fit from `start`.

    float64: the 1-thread fit and each threaded fit round the same sums, in other orders
    where a GEMM is split along its inner dimension (small batches: each thread sums its rows
    of W, then the partial products are added) or where BLAS rounds a split GEMM's edge blocks
    with or without an FMA; each is within `units` eps (times the fit's amplification) of the
    exact result, so they are within twice that of each other.

    float32: the 1-thread and the threaded fits are each compared with the float64 fit from
    the same start and data (the computation both round). Comparing the two float32 fits with
    each other would have to allow their combined error anyway, and would not show that
    either is right."""
    ref = run(1, dtype, start)
    exact = ref if np.dtype(dtype) == np.float64 else run(1, np.float64, start)
    amplification = bounds.sensitivity(
        lambda st: training_quantities(run(1, np.float64, st)), start,
        base=training_quantities(exact))
    if np.dtype(dtype) == np.float64:
        for th in threads:
            assert_close_training(run(th, dtype, start), ref, 2 * units, dtype, rows,
                                  amplification)
        return ref
    assert_close_training(ref, exact, units, dtype, rows, amplification)
    for th in threads:
        assert_close_training(run(th, dtype, start), exact, units, dtype, rows, amplification)
    return ref


def run_guarded(fn, timeout=GUARD_SECONDS):
    """fn() on a daemon thread; returns (result, exception). A hang fails the test."""
    out = {}

    def target():
        try:
            out["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    t = threading.Thread(target=target, daemon=True, name="test-threads-guard")
    t0 = time.perf_counter()
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"still running after {timeout} s: the threads hang"
    return out.get("result"), out.get("error"), time.perf_counter() - t0


def wait_for_thread_count(expected, timeout=5.0):
    """threading.active_count() back at `expected` (workers are joined before fit returns,
    so this should hold at once; the wait only gives a slow machine some slack)."""
    deadline = time.perf_counter() + timeout
    while threading.active_count() != expected and time.perf_counter() < deadline:
        time.sleep(0.01)
    return threading.active_count()


_TRAIN_STEPS_PARAMS = inspect.signature(kernel_steps.train_steps.py_func)


def call_tid(args, kwargs):
    """The `tid` argument of a train_steps call, whatever the signature's layout."""
    team = _TRAIN_STEPS_PARAMS.bind(*args, **kwargs).arguments["team"]
    return team.tid, team.nth


# --------------------------------------------------------------------------------------------
# 1. the same fit on 1, 2 and 3 threads
# --------------------------------------------------------------------------------------------
ODD = (13, 37, 19, 5)  # 37 and 19 split unevenly; 13 and 5 leave later threads empty shares
# over 2**16 parameters: batches of a few rows without clipping take the fused backward +
# update (layer.FUSED_MAX_ROWS, FUSED_MIN_PARAMS), which ODD is too small for
BIG = (300, 221, 7)
BIG2 = (129, 333, 150, 5)


def case(batch, sizes, act, output, dtype, opt, clip=None, n=20, epochs=2, threads=(2, 3),
         validation=False, **marks):
    cid = (f"b{batch}-{'x'.join(map(str, sizes))}-{act if isinstance(act, str) else '+'.join(act)}"
           f"-{output}-{np.dtype(dtype).name}-{opt}" + (f"-clip{clip}" if clip else "")
           + ("-val" if validation else ""))
    return pytest.param(batch, sizes, act, output, dtype, opt, clip, n, epochs, threads,
                        validation, id=cid, **marks)


SAME_FIT_CASES = [
    # float64: the splits must not change any per-element sum
    case(1, ODD, "relu", "softmax", np.float64, "adam", n=9),
    case(1, ODD, "tanh", "sigmoid", np.float64, "sgd_nesterov", clip=0.5, n=9),
    case(2, (13, 37), "identity", "identity", np.float64, "sgd_momentum", n=9),  # no hidden
    case(3, ODD, "gelu", "identity", np.float64, "rmsprop_centered", n=16, validation=True),
    case(3, (29, 41, 7), "sigmoid", "softmax", np.float64, "adagrad", clip=1.0, n=14,
         threads=(2,)),
    case(4, ODD, "tanh", "identity", np.float64, "adam_amsgrad", n=14),
    case(5, (7, 33, 48, 17, 2), "tanh", "softmax", np.float64, "adamw", n=21),
    case(8, ODD, "relu", "identity", np.float64, "adadelta", n=30, threads=(2,)),
    case(8, ODD, "tanh", "softmax", np.float64, "adam", clip=0.1, n=30, validation=True),
    case(17, ODD, "gelu", "sigmoid", np.float64, "sgd_momentum", n=40, threads=(2,)),
    case(17, ODD, "relu", "softmax", np.float64, "rmsprop", clip=0.3, n=40),
    case(64, ODD, "tanh", "identity", np.float64, "adam", n=70, validation=True),
    case(64, ODD, "sigmoid", "softmax", np.float64, "sgd_nesterov", clip=1.0, n=129,
         threads=(2,)),
    case(130, ODD, "relu", "sigmoid", np.float64, "adagrad", n=150),
    case(130, ODD, "gelu", "softmax", np.float64, "adadelta", clip=0.5, n=130, threads=(2,)),
    case(None, ODD, ["relu", "gelu"], "identity", np.float64, "sgd", n=50, epochs=3),
    # large enough for the fused small-batch backward + update
    case(1, BIG, "relu", "softmax", np.float64, "adam", n=7),
    case(1, BIG2, "tanh", "identity", np.float64, "sgd_nesterov", n=5),
    case(3, BIG, "gelu", "sigmoid", np.float64, "rmsprop_centered", n=10),
    case(3, BIG2, "relu", "softmax", np.float64, "adamw", n=10, threads=(2,)),
    case(4, BIG, "tanh", "softmax", np.float64, "adam", clip=1.0, n=9),  # clipping: not fused
    case(8, BIG2, "sigmoid", "identity", np.float64, "adagrad", n=17),
    case(16, BIG, "relu", "identity", np.float64, "adadelta", n=33, threads=(2,)),
    case(17, BIG, "tanh", "softmax", np.float64, "sgd_momentum", n=35, threads=(2,)),
    # 65..128 rows: fused backward and k-split forward only for a large network
    case(100, BIG, "relu", "softmax", np.float64, "adam", n=201, threads=(2,)),
    case(128, BIG2, "gelu", "identity", np.float64, "rmsprop", n=257, threads=(2,)),
    case(128, BIG, "tanh", "softmax", np.float64, "adam", clip=1.0, n=130, threads=(2,)),
    # float32
    case(1, ODD, "gelu", "softmax", np.float32, "adam", n=9),
    case(2, (29, 41, 7), "gelu", "softmax", np.float32, "adam", n=10, threads=(2,)),
    case(3, ODD, "relu", "identity", np.float32, "sgd_momentum", clip=0.5, n=16, threads=(2,)),
    case(4, ODD, "relu", "softmax", np.float32, "sgd_nesterov", n=14),
    case(8, ODD, "tanh", "sigmoid", np.float32, "rmsprop_centered", clip=1.0, n=30,
         threads=(2,)),
    case(17, ODD, "sigmoid", "identity", np.float32, "adagrad", n=40),
    case(64, ODD, "relu", "softmax", np.float32, "adadelta", n=100, threads=(2,)),
    case(130, ODD, "tanh", "identity", np.float32, "adam", clip=0.5, n=140),
    case(1, BIG, "tanh", "softmax", np.float32, "adadelta", n=7),
    case(3, BIG2, "gelu", "sigmoid", np.float32, "sgd", n=10, threads=(2,)),
    case(8, BIG, "relu", "identity", np.float32, "sgd_nesterov", n=17),
    case(12, BIG2, "tanh", "softmax", np.float32, "adam", n=25, threads=(2,)),
    case(96, BIG, "relu", "softmax", np.float32, "sgd_momentum", n=193, threads=(2,)),
]


@pytest.mark.parametrize("batch, sizes, act, output, dtype, opt, clip, n, epochs, threads, "
                         "validation", SAME_FIT_CASES)
def test_threads_give_the_same_training(monkeypatch, batch, sizes, act, output, dtype, opt,
                                        clip, n, epochs, threads, validation):
    X, y = make_data(n, sizes, output, dtype)
    val = make_data(7, sizes, output, dtype, seed=1) if validation else None
    initial = fastnn.MLP(list(sizes), activation=act, output=output, dtype=dtype, seed=0)

    def runner(X, y, epochs):
        def run(th, dt, start):
            return fit(monkeypatch, th, sizes, act, output, dt, opt, batch, X, y, epochs,
                       clip=clip, validation=val, start=start)
        return run

    def units(rows, epochs):
        steps = epochs * math.ceil(rows / (rows if batch is None else min(batch, rows)))
        return training_units(sizes, batch, rows, steps, OPTIMIZERS[opt]())

    baseline = threading.active_count()
    rows = {"accuracy": n, "val_accuracy": 7}
    ref = assert_threads_train_alike(runner(X, y, epochs), dtype, [2], units(n, epochs), rows,
                                     initial.params)
    assert not np.allclose(ref[0].params, initial.params)  # it trained
    assert wait_for_thread_count(baseline) == baseline  # every worker was joined
    if 3 in threads:
        # more threads than cores: the barriers wait for the scheduler, so only a few steps,
        # two full batches and a short one
        m = n if batch is None else min(n, 2 * batch + 1)
        assert_threads_train_alike(runner(X[:m], y[:m], 1), dtype, [3], units(m, 1),
                                   dict(rows, accuracy=m), initial.params)
        assert wait_for_thread_count(baseline) == baseline


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 3, 8, 12, 16, 17, 65, 128, 129])
def test_small_batch_path_matches_the_plain_step(monkeypatch, batch, threads):
    """A clip_grad_norm too large to ever clip takes the plain backward + update; without it,
    small batches of a large network take the fused one. Same training, same History (the
    gradient norms included: the fused path never stores dW whole)."""
    n = 2 * batch + 1
    X, y = make_data(n, BIG, "softmax", np.float64, seed=9)
    plain = fit(monkeypatch, threads, BIG, "tanh", "softmax", np.float64, "adam", batch, X, y,
                2, clip=1e300)
    fused = fit(monkeypatch, threads, BIG, "tanh", "softmax", np.float64, "adam", batch, X, y,
                2)
    # the same sums in another order (the fused path adds each row's outer product into the
    # update): both within units eps of the exact fit
    units = training_units(BIG, batch, n, plain[1].step_count[0], plain[1])
    amplification = bounds.sensitivity(
        lambda st: training_quantities(fit(monkeypatch, 1, BIG, "tanh", "softmax", np.float64,
                                           "adam", batch, X, y, 2, clip=1e300, start=st)),
        fastnn.MLP(list(BIG), activation="tanh", output="softmax", dtype="float64",
                   seed=0).params)
    assert_close_training(fused, plain, 2 * units, np.float64, {"accuracy": n}, amplification)


# --------------------------------------------------------------------------------------------
# 2. short last batches and fewer rows than threads
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, batch, threads", [
    (65, 64, 2),   # last batch: 1 row, row split
    (65, 64, 3),
    (130, 64, 3),  # last batch: 2 rows on 3 threads
    (35, 17, 3),   # last batch: 1 row, column split
    (9, 4, 3),     # small-batch path with a last batch of 1
    (2, 1, 3),     # fewer rows than threads
    (2, None, 3),  # full batch of 2 rows on 3 threads
    (1, None, 2),  # one sample
    (1, 4, 3),     # batch clamped to the single sample
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_short_batches_and_fewer_rows_than_threads(monkeypatch, n, batch, threads, dtype):
    X, y = make_data(n, ODD, "softmax", dtype, seed=2)
    epochs = 2 if n <= 2 else 1  # few steps: 3 threads on 2 cores wait for the scheduler
    start = fastnn.MLP(list(ODD), activation="tanh", output="softmax", dtype=dtype,
                       seed=0).params

    def run(th, dt, start):
        return fit(monkeypatch, th, ODD, "tanh", "softmax", dt, "adam", batch, X, y, epochs,
                   start=start)

    steps_per_epoch = math.ceil(n / (n if batch is None else min(batch, n)))
    units = training_units(ODD, batch, n, epochs * steps_per_epoch, optim.Adam())
    ref = assert_threads_train_alike(run, dtype, [threads], units, {"accuracy": n}, start)
    assert ref[1].step_count[0] == epochs * steps_per_epoch


def test_thread_count_is_read_at_each_fit(monkeypatch):
    """FASTNN_THREADS is read by every fit: a trainer that fits again on another thread count
    continues exactly as one that stays on one thread."""
    X, y = make_data(40, ODD, "softmax", np.float64, seed=4)
    seen = []
    real = fastnn._steps.cpu.train_steps

    def recording(*args, **kwargs):
        seen.append(call_tid(args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(fastnn._steps.cpu, "train_steps", recording)
    runs = {}
    for plan in ((1, 1, 1), (1, 3, 2)):
        model = fastnn.MLP(list(ODD), activation="tanh", output="softmax", dtype="float64",
                           seed=0)
        trainer = fastnn.Trainer(model, optim.Adam(lr=1e-2), batch_size=8, epochs=1, seed=5,
                                 verbose=0)
        losses = []
        for th in plan:
            seen.clear()
            monkeypatch.setenv("FASTNN_THREADS", str(th))
            losses += trainer.fit(X, y)["loss"]
            assert {nth for _, nth in seen} == {th}
            assert sorted({tid for tid, _ in seen}) == list(range(th))
        runs[plan] = (model.params.copy(), losses, trainer.optimizer.state_dict())
    (p1, l1, s1), (p2, l2, s2) = runs.values()
    # the same sums, in another order on 3 threads: both within units eps of the exact fit
    # (amplified as much as a straight 3-epoch fit amplifies a change of its start)
    start = fastnn.MLP(list(ODD), activation="tanh", output="softmax", dtype="float64",
                       seed=0).params
    amplification = bounds.sensitivity(
        lambda st: training_quantities(fit(monkeypatch, 1, ODD, "tanh", "softmax", np.float64,
                                           optim.Adam(lr=1e-2), 8, X, y, 3, seed=5,
                                           start=st)), start)
    units = 2 * training_units(ODD, 8, 40, 15, optim.Adam())
    bounds.assert_close(p2, p1, units * amplification["parameters"], np.float64, "parameters")
    bounds.assert_close(l2, l1, units * amplification["history 'loss'"], np.float64, "losses")
    assert s1["step"] == s2["step"] == 15
    for slot in range(2):
        name = f"optimizer state slot {slot}"
        bounds.assert_close(s2["state"][slot], s1["state"][slot], units * amplification[name],
                            np.float64, name)


# --------------------------------------------------------------------------------------------
# 3. threaded fits against the naive float64 reference
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("act, output, loss, n, batch, shuffle", [
    ("tanh", "softmax", "cross_entropy", 70, 64, False),    # rows split, last batch of 6
    ("sigmoid", "identity", "mse", 10, 3, True),            # columns split, last batch of 1
    ("tanh", "sigmoid", "binary_cross_entropy", 4, 1, False),
])
def test_threaded_sgd_matches_naive(monkeypatch, threads, act, output, loss, n, batch, shuffle):
    monkeypatch.setenv("FASTNN_THREADS", str(threads))
    sizes = ODD
    params_list, X, y = naive.make_problem(sizes, act, output, loss, n=n, margin=0.0)
    model = fastnn.MLP(list(sizes), activation=act, output=output, dtype="float64", seed=0)
    model.params[:] = naive.flatten(params_list)
    epochs, lr, seed = 2, 0.1, 11
    history = fastnn.Trainer(model, optim.SGD(lr=lr), loss=loss, batch_size=batch,
                             epochs=epochs, shuffle=shuffle, seed=seed, verbose=0).fit(X, y)
    orders = [np.random.default_rng([seed, e]).permutation(n) if shuffle else np.arange(n)
              for e in range(epochs)]  # the shuffle keyed by (seed, epoch)
    ref_params, ref_hist = naive.naive_sgd_fit(params_list, X, y, loss, lr, batch, orders,
                                               activation=act, output=output)
    ref_flat = naive.flatten(ref_params)
    assert not np.allclose(ref_flat, naive.flatten(params_list))  # it trained
    np.testing.assert_allclose(model.params, ref_flat, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(history["loss"], ref_hist["loss"], rtol=1e-10)
    if "accuracy" in ref_hist:
        np.testing.assert_allclose(history["accuracy"], ref_hist["accuracy"], rtol=1e-12)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("sizes, act, output, loss, batch, n", [
    (ODD, "tanh", "softmax", "cross_entropy", 1, 5),             # k-split forward, 1 row
    (ODD, "relu", "sigmoid", "binary_cross_entropy", 7, 23),   # short last batch of 2
    (ODD, "gelu", "identity", "mse", 64, 130),                 # last k-split size, then 2 rows
    (BIG, "tanh", "softmax", "cross_entropy", 100, 201),       # large net: k-split to 128 rows
    (BIG, "sigmoid", "identity", "mse", 300, 301),             # rows split, last batch of 1
    (BIG2, "relu", "sigmoid", "binary_cross_entropy", 200, 200),  # columns split (150 wide)
])
def test_predict_and_evaluate_on_threads_match_naive(monkeypatch, threads, sizes, act, output,
                                                      loss, batch, n):
    """predict and evaluate split each batch between the loop's threads (evaluate_batches):
    the same outputs, loss and accuracy as one thread and as the float64 NumPy reference."""
    params_list, X, y = naive.make_problem(sizes, act, output, loss, n=n, seed=2, margin=0.0)
    model = fastnn.MLP(list(sizes), activation=act, output=output, dtype="float64", seed=0)
    model.params[:] = naive.flatten(params_list)
    zs, acts = naive.forward(params_list, X, act, output)
    ref_loss = naive.loss_value(zs[-1], acts[-1], naive.targets_as_matrix(y, sizes[-1], loss),
                                loss)
    used = []
    real_run = _threads.run_on_threads

    def recording(kernel, n_threads, *args, **kwargs):
        used.append(n_threads)
        return real_run(kernel, n_threads, *args, **kwargs)

    monkeypatch.setattr(_threads, "run_on_threads", recording)
    results = {}
    for th in (1, threads):
        monkeypatch.setenv("FASTNN_THREADS", str(th))
        results[th] = (model.predict(X, batch_size=batch),
                       model.evaluate(X, y, loss=loss, batch_size=batch))
    assert used == [1, 1, threads, threads]
    for out, (value, accuracy) in results.values():
        # k-split forwards add the threads' partial products: a different summation order
        np.testing.assert_allclose(out, acts[-1], rtol=1e-11, atol=1e-13)
        assert value == pytest.approx(ref_loss, rel=1e-11)
        if loss == "mse":
            assert accuracy is None
        else:
            correct, counted = naive.accuracy_count(acts[-1], y, loss)
            assert accuracy == correct / counted


def test_predict_error_on_one_thread_stops_every_thread(monkeypatch):
    """A thread of predict failing while the others wait at a barrier: predict raises that
    error and no thread is left behind."""
    monkeypatch.setenv("FASTNN_THREADS", "2")
    real = kernel_steps.evaluate_batches

    def flaky(*args):
        if args[-1].tid == 1:
            time.sleep(0.2)
            raise Boom("thread 1 failed")
        return real(*args)

    monkeypatch.setattr(_threads, "evaluate_batches", flaky)
    model = fastnn.MLP(list(BIG), output="softmax", dtype="float64", seed=0)
    X, _ = make_data(50, BIG, "softmax", np.float64)
    baseline = threading.active_count()
    _, error, seconds = run_guarded(lambda: model.predict(X, batch_size=16))
    assert isinstance(error, Boom) and seconds < 20
    assert wait_for_thread_count(baseline) == baseline
    monkeypatch.setattr(_threads, "evaluate_batches", real)
    np.testing.assert_allclose(model.predict(X, batch_size=16), model.predict(X, batch_size=50),
                               rtol=1e-12)


# --------------------------------------------------------------------------------------------
# 4. errors: on every thread, on one thread, before every thread started
# --------------------------------------------------------------------------------------------
def _broken_optimizer_fit(threads, monkeypatch):
    monkeypatch.setenv("FASTNN_THREADS", str(threads))
    rng = np.random.default_rng(0)
    X = rng.random((24, ODD[0]), dtype=np.float32)
    y = rng.integers(0, ODD[-1], 24)
    model = fastnn.MLP(list(ODD), output="softmax", seed=0)
    before = model.params.copy()
    opt = optim.Adam()
    opt.code = 99  # no such optimizer: the update kernel raises on every thread
    trainer = fastnn.Trainer(model, opt, batch_size=8, epochs=2, verbose=0)
    _, error, seconds = run_guarded(lambda: trainer.fit(X, y))
    return model, before, trainer, error, seconds


@pytest.mark.parametrize("threads", [2, 3])
def test_kernel_error_on_every_thread_raises_without_hanging(monkeypatch, threads):
    baseline = threading.active_count()
    ref_model, ref_before, ref_trainer, ref_error, _ = _broken_optimizer_fit(1, monkeypatch)
    assert isinstance(ref_error, ValueError)
    model, before, trainer, error, seconds = _broken_optimizer_fit(threads, monkeypatch)
    assert isinstance(error, ValueError) and "unknown optimizer code" in str(error)
    assert seconds < 20
    assert wait_for_thread_count(baseline) == baseline
    # the same end state as on one thread: nothing applied, nothing recorded
    assert np.isfinite(model.params).all()
    np.testing.assert_array_equal(model.params, before)
    np.testing.assert_array_equal(ref_model.params, ref_before)
    assert trainer.optimizer.step_count[0] == ref_trainer.optimizer.step_count[0] == 0
    assert trainer.history.epoch == ref_trainer.history.epoch == []
    assert np.float32(1e-20) * np.float32(1e-20) != 0  # the caller's fp mode (denormals) is back


class Boom(RuntimeError):
    pass


def _flaky_train_steps(fail_tid, fail_call=0, delay=0.2):
    """A train_steps that raises Boom on thread `fail_tid` at its `fail_call`-th call (after
    `delay` seconds, so that the other threads are spinning in a barrier by then) and runs the
    real loop otherwise; `returned` collects the real calls' (tid, status, done)."""
    real = kernel_steps.train_steps
    returned = []
    calls = {}

    def flaky(*args, **kwargs):
        tid, _ = call_tid(args, kwargs)
        calls[tid] = calls.get(tid, -1) + 1
        if tid == fail_tid and calls[tid] == fail_call:
            time.sleep(delay)
            raise Boom(f"thread {tid} failed")
        status, done = real(*args, **kwargs)
        returned.append((tid, int(status), int(done)))
        return status, done

    return flaky, returned


@pytest.mark.parametrize("threads, fail_tid", [(2, 1), (2, 0), (3, 2), (3, 0)])
def test_steps_on_threads_error_on_one_thread_aborts_the_others(monkeypatch, threads,
                                                                fail_tid):
    """_steps_on_threads called directly (with the arguments a real fit passes it): one
    thread's exception raises the abort flag, the others leave their barriers with ABORTED,
    and the exception is re-raised on the caller once all have stopped."""
    monkeypatch.setenv("FASTNN_THREADS", str(threads))
    X, y = make_data(48, ODD, "softmax", np.float64, seed=6)
    captured = []
    real_steps_on_threads = fastnn._steps.cpu.steps_on_threads

    def capture(*args, **kwargs):
        captured.append((args, kwargs))
        return real_steps_on_threads(*args, **kwargs)

    monkeypatch.setattr(fastnn._steps.cpu, "steps_on_threads", capture)
    model = fastnn.MLP(list(ODD), activation="tanh", output="softmax", dtype="float64", seed=0)
    fastnn.Trainer(model, optim.Adam(lr=1e-2), batch_size=8, epochs=1, verbose=0).fit(X, y)
    args, kwargs = captured[0]
    assert args[0] == threads
    params = model.params.copy()

    baseline = threading.active_count()
    flaky, returned = _flaky_train_steps(fail_tid)
    monkeypatch.setattr(fastnn._steps.cpu, "train_steps", flaky)
    result, error, seconds = run_guarded(lambda: real_steps_on_threads(*args, **kwargs))
    assert result is None and isinstance(error, Boom), (result, error)
    assert f"thread {fail_tid} failed" in str(error)
    assert seconds < 20
    assert wait_for_thread_count(baseline) == baseline
    # every other thread ran the real loop and stopped at a barrier, before any update
    assert sorted(tid for tid, _, _ in returned) == [t for t in range(threads) if t != fail_tid]
    assert all(status == kernel_steps.ABORTED and done == 0 for _, status, done in returned), returned
    np.testing.assert_array_equal(model.params, params)

    # and the same arguments still train normally afterwards (a fresh sync array per call)
    monkeypatch.setattr(fastnn._steps.cpu, "train_steps", kernel_steps.train_steps)
    (status, done), error, _ = run_guarded(lambda: real_steps_on_threads(*args, **kwargs))
    assert error is None and status == kernel_steps.RAN and done > 0


@pytest.mark.parametrize("threads, fail_tid", [(2, 1), (3, 0)])
def test_fit_error_on_one_thread_mid_epoch_matches_one_thread(monkeypatch, threads, fail_tid):
    """A thread failing in the second chunk of an epoch: fit raises that error, no thread is
    left running, and the model, optimizer and History are where a 1-thread fit failing at the
    same chunk leaves them."""
    X, y = make_data(200, ODD, "softmax", np.float64, seed=7)

    def failing_fit(th, tid):
        monkeypatch.setenv("FASTNN_THREADS", str(th))
        flaky, returned = _flaky_train_steps(tid, fail_call=1, delay=0.05)
        monkeypatch.setattr(fastnn._steps.cpu, "train_steps", flaky)
        model = fastnn.MLP(list(ODD), activation="tanh", output="softmax", dtype="float64",
                           seed=0)
        trainer = fastnn.Trainer(model, optim.Adam(lr=1e-2), batch_size=1, epochs=3, seed=5,
                                 verbose=0)
        _, error, seconds = run_guarded(lambda: trainer.fit(X, y))
        assert isinstance(error, Boom), error
        assert seconds < 20
        return model, trainer, returned

    baseline = threading.active_count()
    ref_model, ref_trainer, _ = failing_fit(1, 0)
    model, trainer, returned = failing_fit(threads, fail_tid)
    assert wait_for_thread_count(baseline) == baseline
    # the first chunk ran on every thread, the second was aborted on the others
    first = [r for r in returned if r[1] == kernel_steps.RAN]
    aborted = [r for r in returned if r[1] == kernel_steps.ABORTED]
    assert sorted(tid for tid, _, _ in first) == list(range(threads))
    assert sorted(tid for tid, _, _ in aborted) == [t for t in range(threads) if t != fail_tid]
    # rolled back to the end of the last completed epoch: here the start of the fit
    assert ref_trainer.optimizer.step_count[0] == trainer.optimizer.step_count[0] == 0
    assert trainer.history.epoch == ref_trainer.history.epoch
    np.testing.assert_allclose(model.params, ref_model.params, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(trainer.optimizer.state, ref_trainer.optimizer.state,
                               rtol=1e-12, atol=1e-14)


def test_error_mid_epoch_leaves_the_last_completed_epoch(monkeypatch):
    monkeypatch.setenv("FASTNN_THREADS", "2")
    X, y = make_data(200, ODD, "softmax", np.float64, seed=7)
    flaky, _ = _flaky_train_steps(1, fail_call=1, delay=0.0)
    monkeypatch.setattr(fastnn._steps.cpu, "train_steps", flaky)
    model = fastnn.MLP(list(ODD), activation="tanh", output="softmax", dtype="float64", seed=0)
    before = model.params.copy()
    trainer = fastnn.Trainer(model, optim.Adam(lr=1e-2), batch_size=1, epochs=3, seed=5,
                             verbose=0)
    _, error, _ = run_guarded(lambda: trainer.fit(X, y))
    assert isinstance(error, Boom), error
    assert trainer.history.epoch == []  # no epoch completed...
    assert trainer.optimizer.step_count[0] == 0  # ...so no step should survive
    np.testing.assert_array_equal(model.params, before)


def test_failed_thread_start_leaves_no_spinning_worker(monkeypatch, _release_leftover_workers):
    """Thread.start() failing for the second worker (a process thread limit): fit raises that
    error and the worker already started leaves its barrier."""
    monkeypatch.setenv("FASTNN_THREADS", "3")
    started = []

    class FailingSecondStart(threading.Thread):
        def start(self):
            if started:
                raise RuntimeError("can't start new thread")
            started.append(self)
            super().start()

    fake_threading = types.SimpleNamespace(
        Thread=FailingSecondStart, current_thread=threading.current_thread,
        main_thread=threading.main_thread)
    monkeypatch.setattr(fastnn._threads, "threading", fake_threading)
    X, y = make_data(16, ODD, "softmax", np.float64)
    model = fastnn.MLP(list(ODD), output="softmax", dtype="float64", seed=0)
    trainer = fastnn.Trainer(model, optim.SGD(lr=0.1), batch_size=4, epochs=1, verbose=0)
    try:
        _, error, _ = run_guarded(lambda: trainer.fit(X, y))
        assert isinstance(error, RuntimeError) and "can't start" in str(error)
        started[0].join(1.0)
        assert not started[0].is_alive(), "a training worker is still spinning after fit raised"
    finally:  # never leave a spinning thread behind for the rest of the session
        for sync in _release_leftover_workers:
            sync[SYNC_ABORT] = 1
        for w in started:
            w.join(GUARD_SECONDS)
        assert not any(w.is_alive() for w in started)


# --------------------------------------------------------------------------------------------
# 5. divergence under threads
# --------------------------------------------------------------------------------------------
def diverging(make_opt, batch, jump, dtype, clip=None, threads=(2,), id=None):
    return pytest.param(make_opt, batch, jump, dtype, clip, threads, id=id)


@pytest.mark.parametrize("make_opt, batch, jump, dtype, clip, threads", [
    # healthy epochs 0 and 1, then the lr jumps: the bad step is inside epoch 2
    diverging(lambda: optim.SGD(lr=0.05, momentum=0.9), 8, 1e30, np.float64, threads=(2, 3),
              id="sgd-jump-b8-f64"),
    diverging(lambda: optim.SGD(lr=0.05, momentum=0.9), 2, 1e30, np.float32,
              id="sgd-jump-b2-f32"),
    diverging(lambda: optim.Adam(lr=0.01), 64, 1e30, np.float32, id="adam-jump-b64-f32"),
    diverging(lambda: optim.RMSprop(lr=0.01), 3, 1e200, np.float64, clip=1.0,
              id="rmsprop-jump-b3-clip-f64"),
    # finite gradients, but lr * step overflows the float32 weights: caught at the epoch's end
    diverging(lambda: optim.Adam(lr=0.01), None, 1e39, np.float32, threads=(2, 3),
              id="adam-overflowing-update-fullbatch"),
    # a huge lr from the start: back to the weights the fit began with
    diverging(lambda: optim.SGD(lr=1e200), 4, None, np.float64, threads=(2, 3),
              id="sgd-huge-lr-b4-f64"),
])
def test_divergence_rolls_back_as_on_one_thread(monkeypatch, make_opt, batch, jump, dtype,
                                                clip, threads):
    X, y = make_data(40, ODD, "identity", dtype, seed=8)

    def train(th, epochs, dt=dtype, start=None):
        monkeypatch.setenv("FASTNN_THREADS", str(th))
        model = fastnn.MLP(list(ODD), activation="relu", output="identity", dtype=dt, seed=0)
        if start is not None:
            model.params[:] = start
        opt = make_opt()
        callbacks = [LrJump(2, jump)] if jump else []
        trainer = fastnn.Trainer(model, opt, batch_size=batch, epochs=epochs, seed=1,
                                 verbose=0, clip_grad_norm=clip, callbacks=callbacks)
        _, error, seconds = run_guarded(lambda: trainer.fit(*cast(X, y, dt)))
        assert seconds < 30
        return model, opt, trainer.history, error

    baseline = threading.active_count()
    ref_model, ref_opt, ref_hist, ref_error = train(1, 5)
    assert isinstance(ref_error, fastnn.TrainingDiverged), ref_error
    good = len(ref_hist.epoch)
    assert good >= 2 if jump else good == 0
    # both fits round the same computation: within units eps of it each, so 2 units of each
    # other (an epoch at lr 1e30 makes the weights ~1e29, the last epoch's update, whose
    # relative error is that of the step it scales), amplified as much as the good epochs
    # amplify a change of their start in float64
    units = training_units(ODD, batch, 40, ref_opt.step_count[0], ref_opt)
    amplification = {}
    if good:
        def good_epochs(start):
            run = train(1, good, np.float64, start)
            assert run[3] is None, run[3]
            return training_quantities(run[:3])
        amplification = bounds.sensitivity(good_epochs, fastnn.MLP(
            list(ODD), activation="relu", output="identity", dtype=dtype, seed=0).params)
    for th in threads:
        model, opt, hist, error = train(th, 5)
        assert wait_for_thread_count(baseline) == baseline
        assert isinstance(error, fastnn.TrainingDiverged), error
        assert str(error) == str(ref_error)
        assert f"diverged in epoch {good}" in str(error)
        assert hist.epoch == list(range(good))
        assert np.isfinite(model.params).all() and np.isfinite(opt.state).all()
        assert_close_training((model, opt, hist), (ref_model, ref_opt, ref_hist), 2 * units,
                              dtype, {}, amplification)
        # rolled back to the end of the last finite epoch: what a fit of `good` epochs on the
        # same threads gives, bit for bit
        replay_model, replay_opt, _, replay_error = train(th, good) if good else (
            fastnn.MLP(list(ODD), activation="relu", output="identity", dtype=dtype, seed=0),
            make_opt(), None, None)
        assert replay_error is None
        np.testing.assert_array_equal(model.params, replay_model.params)
        assert opt.step_count[0] == replay_opt.step_count[0] == ref_opt.step_count[0]
        if replay_opt.state is not None:
            np.testing.assert_array_equal(opt.state, replay_opt.state)
        else:
            assert not opt.state.any()  # bound, but no step survived


# --------------------------------------------------------------------------------------------
# 6. FASTNN_THREADS and the default thread count
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [
    "0", "-1", "abc", "1.5", "2x", "+2", "00",
    "\u00b2",  # str.isdigit() accepts a superscript two
])
def test_invalid_fastnn_threads(monkeypatch, value):
    monkeypatch.setenv("FASTNN_THREADS", value)
    with pytest.raises(ValueError, match="FASTNN_THREADS"):
        _threads.train_threads((4, 3, 2), 1)
    X, y = make_data(8, (4, 3, 2), "softmax", np.float64)
    model = fastnn.MLP([4, 3, 2], output="softmax", dtype="float64", seed=0)
    before = model.params.copy()
    trainer = fastnn.Trainer(model, optim.SGD(lr=0.1), batch_size=4, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="FASTNN_THREADS"):
        trainer.fit(X, y)
    np.testing.assert_array_equal(model.params, before)


def test_fastnn_threads_values(monkeypatch):
    monkeypatch.setenv("FASTNN_THREADS", " 3 ")
    assert _threads.train_threads((4, 3, 2), 1) == 3
    monkeypatch.setenv("FASTNN_THREADS", "1")
    assert _threads.train_threads((784, 512, 256, 10), 32) == 1
    monkeypatch.setenv("FASTNN_THREADS", "")  # empty: the default
    assert _threads.train_threads((4, 3, 2), 1) == 1


def test_default_thread_count(monkeypatch):
    monkeypatch.delenv("FASTNN_THREADS", raising=False)
    assert _threads.train_threads((4, 3, 2), 1) == 1
    assert _threads.train_threads((13, 37, 19, 5), 1) == 1
    assert _threads.train_threads((784, 512, 256, 10), 32) == _threads.cores()


def test_thread_count_on_many_cores(monkeypatch):
    """On a 32-core machine: no more threads than shares of 2^18 multiply-adds per step (at
    least 2 once a step is big enough), never more than the BLAS pool allows."""
    monkeypatch.delenv("FASTNN_THREADS", raising=False)
    monkeypatch.setattr(_threads, "cores", lambda: 32)
    monkeypatch.setattr(_threads, "_current", lambda select: 32)
    mnist, small = (784, 512, 256, 10), (64, 128, 64, 10)
    assert _threads.train_threads(mnist, 1) == 2  # 535k multiply-adds
    assert _threads.train_threads(mnist, 8) == 16
    assert _threads.train_threads(mnist, 2048) == 32
    assert _threads.train_threads(small, 8) == 1
    assert _threads.train_threads(small, 64) == 4
    monkeypatch.setattr(_threads, "_current", lambda select: 3)  # threadpool_limits(3)
    assert _threads.train_threads(mnist, 2048) == 3


# --------------------------------------------------------------------------------------------
# 7. sync.share partitions the work exactly
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("align", [1, 2, 3, ALIGN])
def test_share_partitions_the_range(align):
    for n in list(range(70)) + [100, 127, 128, 129, 1000, 1340, 4097]:
        for nth in range(1, 10):
            pieces = [share(n, tid, nth, align) for tid in range(nth)]
            covered = []
            expected_lo = 0
            for tid, (lo, hi) in enumerate(pieces):
                lo, hi = int(lo), int(hi)
                assert lo == expected_lo, (n, nth, align, tid, pieces)  # in order, no gap
                assert lo <= hi <= n, (n, nth, align, pieces)
                assert lo == n or lo % align == 0, (n, nth, align, pieces)
                covered.extend(range(lo, hi))
                expected_lo = hi
            assert covered == list(range(n)), (n, nth, align, pieces)
            if nth == 1:
                assert pieces == [(0, n)]
            # nearly equal: no share is larger than ceil(n / nth) rounded up to align
            step = -(-n // nth)
            step = -(-step // align) * align
            assert max(hi - lo for lo, hi in pieces) <= max(step, 0)
