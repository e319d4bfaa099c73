"""Every public entry point refuses bad input with a ValueError or TypeError that names the
argument, before any kernel runs (Numba does no bounds checks), and converts what it can."""
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import optim
from fastnn.cli import main as cli_main

RNG = np.random.default_rng(0)
X4 = RNG.normal(size=(6, 3))
LABELS = np.array([0, 1, 2, 0, 1, 2])


def clf(dtype="float32"):
    return fastnn.MLP([3, 5, 3], output="softmax", dtype=dtype, seed=0)


def reg(n_out=1, dtype="float32"):
    return fastnn.MLP([3, 4, n_out], output="identity", dtype=dtype, seed=0)


# --------------------------------------------------------------------------- MLP(...)
@pytest.mark.parametrize("kwargs, exc, match", [
    ({"layer_sizes": 5}, TypeError, "layer_sizes"),
    ({"layer_sizes": "3,4"}, TypeError, "layer_sizes"),
    ({"layer_sizes": [3]}, ValueError, "layer_sizes"),
    ({"layer_sizes": []}, ValueError, "layer_sizes"),
    ({"layer_sizes": [3, 0]}, ValueError, r"layer_sizes\[1\]"),
    ({"layer_sizes": [3, -2]}, ValueError, r"layer_sizes\[1\]"),
    ({"layer_sizes": [3, 2.0]}, TypeError, r"layer_sizes\[1\]"),
    ({"layer_sizes": [True, 2]}, TypeError, r"layer_sizes\[0\]"),
    ({"layer_sizes": [3, "4"]}, TypeError, r"layer_sizes\[1\]"),
    ({"layer_sizes": [3, None]}, TypeError, r"layer_sizes\[1\]"),
    ({"activation": 5}, TypeError, "activation"),
    ({"activation": "swish"}, ValueError, "activation"),
    ({"activation": ["relu", "tanh"]}, ValueError, "activation"),
    ({"activation": [None]}, ValueError, "activation"),
    ({"output": "relu"}, ValueError, "output"),
    ({"output": None}, ValueError, "output"),
    ({"init": "zeros"}, ValueError, "init"),
    ({"dtype": "float16"}, ValueError, "dtype"),
    ({"dtype": np.int32}, ValueError, "dtype"),
    ({"dtype": 5}, TypeError, "dtype"),
    ({"dtype": "nonsense"}, ValueError, "dtype"),
    ({"seed": -1}, ValueError, "seed"),
    ({"seed": 1.5}, TypeError, "seed"),
    ({"seed": "0"}, TypeError, "seed"),
    ({"seed": True}, TypeError, "seed"),
])
def test_mlp_arguments_refused(kwargs, exc, match):
    args = {"layer_sizes": [3, 4, 2]} | kwargs
    with pytest.raises(exc, match=match):
        fastnn.MLP(**args)


def test_mlp_accepts_numpy_integers_and_generators():
    m = fastnn.MLP(np.array([3, 4, 2]), seed=np.int64(3))
    assert m.layer_sizes == (3, 4, 2) and all(type(s) is int for s in m.layer_sizes)
    a = fastnn.MLP([3, 2], seed=np.random.default_rng(5)).params
    b = fastnn.MLP([3, 2], seed=np.random.default_rng(5)).params
    np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="seed"):
        m.initialize(seed="x")


# --------------------------------------------------------------------------- model state
def test_params_assignment_copies_into_the_buffer_with_shape_check():
    m = reg()
    buf = m.params
    new = np.arange(m.n_params, dtype=np.float64)
    m.params = new
    assert m.params is buf  # the kernels and the views still see the same memory
    np.testing.assert_array_equal(m.params, new.astype(np.float32))
    np.testing.assert_array_equal(m.weights[0].ravel(), new[:12].astype(np.float32))
    for bad, exc in [(np.zeros(m.n_params + 1), ValueError),
                     (np.zeros((m.n_params, 1)), ValueError),
                     (np.zeros(3), ValueError), (np.array(["a"] * m.n_params), TypeError),
                     (None, TypeError)]:
        with pytest.raises(exc, match="params"):
            m.params = bad
    np.testing.assert_array_equal(m.params, new.astype(np.float32))  # unchanged by refusals
    assert m.predict(X4).shape == (6, 1)


def test_architecture_cannot_be_rebound():
    m = reg()
    for name, value in [("layer_sizes", (5, 4, 1)), ("dtype", np.dtype("float64")),
                        ("output", "softmax"), ("activations", ("tanh",)),
                        ("weights", ()), ("biases", ())]:
        with pytest.raises(AttributeError):
            setattr(m, name, value)
    with pytest.raises(TypeError):
        m.weights[0] = np.zeros((3, 4))
    with pytest.raises(ValueError, match="3"):  # still checked against the real architecture
        m.predict(np.zeros((2, 5)))


# --------------------------------------------------------------------------- X
BAD_X = [
    (np.zeros(3), ValueError, "2-D"),
    (np.zeros((2, 3, 1)), ValueError, "2-D"),
    (np.float64(1.0), ValueError, "2-D"),
    (np.zeros((0, 3)), ValueError, "empty"),
    (np.zeros((4, 2)), ValueError, "features"),
    (np.zeros((4, 0)), ValueError, "features"),
    ([[1, 2, 3], [1, 2]], TypeError, "numeric"),
    (np.array([["a", "b", "c"]]), TypeError, "dtype"),
    (np.array([[b"a", b"b", b"c"]]), TypeError, "dtype"),
    (np.zeros((2, 3), dtype=object), TypeError, "dtype"),
    (np.zeros((2, 3), dtype=complex), TypeError, "dtype"),
    (np.zeros((2, 3), dtype="M8[s]"), TypeError, "dtype"),
    (np.zeros((2, 3), dtype="m8[s]"), TypeError, "dtype"),
    (None, TypeError, "dtype"),
    (np.array([[1.0, np.nan, 0.0]]), ValueError, "NaN or infinity"),
    (np.array([[1.0, -np.inf, 0.0]]), ValueError, "NaN or infinity"),
    (np.array([[1e39, 0.0, 0.0]]), ValueError, "too large"),  # overflows float32
]


@pytest.mark.parametrize("X, exc, match", BAD_X)
@pytest.mark.parametrize("entry", ["predict", "evaluate", "loss_and_grad", "fit", "val"])
def test_bad_features_refused_everywhere(entry, X, exc, match):
    m = clf()
    before = m.params.copy()
    try:
        n = len(X)
    except TypeError:  # None, 0-d
        n = 1
    y = np.zeros(n, dtype=np.int64)
    name = "X"
    with pytest.raises(exc, match=match) as info:
        if entry == "predict":
            m.predict(X)
        elif entry == "evaluate":
            m.evaluate(X, y)
        elif entry == "loss_and_grad":
            m.loss_and_grad(X, y)
        elif entry == "fit":
            fastnn.Trainer(m, epochs=1, verbose=0).fit(X, y)
        else:
            name = "validation_data[0]"
            fastnn.Trainer(m, epochs=1, verbose=0).fit(X4, LABELS, validation_data=(X, y))
    assert name in str(info.value) or exc is TypeError and "dtype" in str(info.value)
    np.testing.assert_array_equal(m.params, before)  # no step was taken


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inputs_are_converted_not_refused(dtype):
    m = clf(dtype)
    ref = m.predict(np.ascontiguousarray(X4, dtype=dtype))
    big = np.zeros((12, 6))
    big[::2, ::2] = X4
    variants = [X4, big[::2, ::2], np.asfortranarray(X4), X4.tolist(), X4.astype(">f8")]
    if dtype == "float32":  # float64 -> float32 is exact only that way round
        variants.append(X4.astype(np.float32))
    for v in variants:
        out = m.predict(v)
        assert out.dtype == np.dtype(dtype) and out.flags.c_contiguous
        np.testing.assert_array_equal(out, ref)
    ints = np.array([[1, 2, 3], [0, -1, 4]])
    for v in [ints, ints.astype(np.int8), ints.astype(np.float16), ints > 0]:
        np.testing.assert_array_equal(m.predict(v), m.predict(np.asarray(v, dtype=dtype)))
    loss, grad = m.loss_and_grad(big[::2, ::2], LABELS.astype(np.uint8))
    loss2, grad2 = m.loss_and_grad(X4.astype(dtype), LABELS)
    assert loss == loss2
    np.testing.assert_array_equal(grad, grad2)


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-1, ValueError), (True, TypeError),
                                      (2.0, TypeError), ("8", TypeError)])
def test_predict_batch_size_refused(bad, exc):
    with pytest.raises(exc, match="batch_size"):
        clf().predict(X4, batch_size=bad)
    with pytest.raises(exc, match="batch_size"):
        clf().evaluate(X4, LABELS, batch_size=bad)


def test_batch_larger_than_data_is_clamped():
    m = clf()
    np.testing.assert_array_equal(m.predict(X4, batch_size=10**9), m.predict(X4, batch_size=6))
    runs = []
    for bs in (10**6, None):
        m = clf()
        h = fastnn.Trainer(m, optim.SGD(lr=0.1), batch_size=bs, epochs=3, seed=0,
                           verbose=0).fit(X4, LABELS)
        runs.append((m.params.copy(), h["loss"]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]


# --------------------------------------------------------------------------- y
@pytest.mark.parametrize("model, loss, y, exc, match", [
    ("clf", None, np.array([0, 1, 3, 0, 1, 2]), ValueError, r"outside \[0, 3\)"),
    ("clf", None, np.array([0, 1, -1, 0, 1, 2]), ValueError, r"outside \[0, 3\)"),
    ("clf", None, np.array([0, 1, 2 ** 64 - 1, 0, 1, 2], dtype=np.uint64), ValueError,
     "outside"),
    ("clf", None, np.array([0, 1, 0.5, 0, 1, 2]), ValueError, "integers"),
    ("clf", None, np.array([0, 1, np.nan, 0, 1, 2]), ValueError, "NaN"),
    ("clf", None, np.array([0, 1, 2, 0, 1]), ValueError, "5 samples but X has 6"),
    ("clf", None, np.array([0, 1, 2, 0, 1, 2, 0]), ValueError, "7 samples"),
    ("clf", None, np.zeros((6, 2)), ValueError, "2 columns"),
    ("clf", None, np.full((6, 3), 2.0), ValueError, r"\[0, 1\]"),
    ("clf", None, np.zeros((6, 3, 1)), ValueError, "1-D or 2-D"),
    ("clf", None, np.int64(1), ValueError, "1-D or 2-D"),
    ("clf", None, np.array(["a"] * 6), TypeError, r"(y|validation_data\[1\]) must be a numeric"),
    ("clf", None, np.array([None] * 6), TypeError, r"(y|validation_data\[1\]) must be a numeric"),
    ("clf", "mse", LABELS, ValueError, "1-D but the model has 3 outputs"),
    ("clf", "binary_cross_entropy", LABELS, ValueError, "output"),
    ("reg", None, np.zeros((6, 2)), ValueError, "2 columns"),
    ("reg", None, np.array([1.0, np.inf, 0, 0, 0, 0]), ValueError, "NaN or infinity"),
    ("reg", None, np.full(6, 1e39), ValueError, "too large"),
    ("reg", "cross_entropy", LABELS, ValueError, "softmax"),
    ("reg", "hinge", LABELS, ValueError, "loss"),
    ("reg", 3, LABELS, ValueError, "loss"),
])
@pytest.mark.parametrize("entry", ["evaluate", "loss_and_grad", "fit", "val"])
def test_bad_targets_refused_everywhere(entry, model, loss, y, exc, match):
    m = clf() if model == "clf" else reg()
    before = m.params.copy()
    with pytest.raises(exc, match=match):
        if entry == "evaluate":
            m.evaluate(X4, y, loss=loss)
        elif entry == "loss_and_grad":
            m.loss_and_grad(X4, y, loss=loss)
        elif entry == "fit":
            fastnn.Trainer(m, loss=loss, epochs=1, verbose=0).fit(X4, y)
        else:
            good = (X4[:, :1] if model == "reg" else
                    np.full((6, 3), 0.5) if loss == "mse" else LABELS)
            fastnn.Trainer(m, loss=loss, epochs=1, verbose=0).fit(
                X4, good, validation_data=(X4, y))
    np.testing.assert_array_equal(m.params, before)


def test_bce_targets_must_be_probabilities():
    m = fastnn.MLP([3, 2], output="sigmoid", seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        m.loss_and_grad(X4, np.full((6, 2), 1.5))
    loss, grad = m.loss_and_grad(X4, np.ones((6, 2), dtype=bool))
    assert np.isfinite(loss) and np.isfinite(grad).all()


# --------------------------------------------------------------------------- Trainer
@pytest.mark.parametrize("kwargs, exc, match", [
    ({"model": "model"}, TypeError, "model"),
    ({"optimizer": "adam"}, TypeError, "optimizer"),
    ({"optimizer": optim.Adam}, TypeError, "optimizer"),
    ({"loss": "hinge"}, ValueError, "loss"),
    ({"loss": "mse"}, None, None),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": -3}, ValueError, "batch_size"),
    ({"batch_size": 2.5}, TypeError, "batch_size"),
    ({"batch_size": True}, TypeError, "batch_size"),
    ({"epochs": 0}, ValueError, "epochs"),
    ({"epochs": 1.0}, TypeError, "epochs"),
    ({"epochs": False}, TypeError, "epochs"),
    ({"shuffle": "no"}, TypeError, "shuffle"),
    ({"shuffle": 2}, TypeError, "shuffle"),
    ({"seed": -5}, ValueError, "seed"),
    ({"seed": 0.5}, TypeError, "seed"),
    ({"callbacks": 5}, TypeError, "callbacks"),
    ({"callbacks": object()}, TypeError, "callbacks"),
    ({"callbacks": [object()]}, TypeError, "callback"),
    ({"clip_grad_norm": 0}, ValueError, "clip_grad_norm"),
    ({"clip_grad_norm": -1.0}, ValueError, "clip_grad_norm"),
    ({"clip_grad_norm": float("nan")}, ValueError, "clip_grad_norm"),
    ({"clip_grad_norm": "1"}, TypeError, "clip_grad_norm"),
    ({"verbose": 3}, ValueError, "verbose"),
    ({"verbose": np.array([1, 2])}, ValueError, "verbose"),
    ({"verbose": "1"}, ValueError, "verbose"),
    ({"allow_tf32": "yes"}, TypeError, "allow_tf32"),
    ({"allow_tf32": None}, TypeError, "allow_tf32"),
    ({"allow_tf32": 2}, TypeError, "allow_tf32"),
])
def test_trainer_arguments(kwargs, exc, match):
    args = {"model": clf()} | kwargs
    if exc is None:
        fastnn.Trainer(**args)
        return
    with pytest.raises(exc, match=match):
        fastnn.Trainer(**args)


@pytest.mark.parametrize("attr, value, exc", [
    ("batch_size", 0, ValueError), ("batch_size", 1.5, TypeError), ("epochs", 0, ValueError),
    ("epochs", None, TypeError), ("clip_grad_norm", -1.0, ValueError),
    ("loss", "binary_cross_entropy", ValueError), ("optimizer", None, TypeError),
    ("model", None, TypeError), ("allow_tf32", "no", TypeError),
])
def test_settings_changed_after_init_are_checked_at_fit(attr, value, exc):
    # a batch_size of 0 reaching the loop would never advance: checked again at fit
    m = fastnn.MLP([3, 3], output="softmax", seed=0)
    trainer = fastnn.Trainer(m, epochs=1, verbose=0)
    before = m.params.copy()
    setattr(trainer, attr, value)
    with pytest.raises(exc, match=attr if attr != "loss" else "sigmoid"):
        trainer.fit(X4, LABELS)
    np.testing.assert_array_equal(m.params, before)


def test_allow_tf32_has_no_effect_on_the_cpu():
    """Like torch's torch.backends.cuda.matmul.allow_tf32, the flag concerns CUDA GEMMs: a
    CPU fit with it is the same fit, bit for bit."""
    params = []
    for tf32 in (False, True):
        m = fastnn.MLP([3, 4, 3], output="softmax", seed=0)
        trainer = fastnn.Trainer(m, batch_size=2, epochs=2, verbose=0, seed=0,
                                 allow_tf32=tf32)
        assert trainer.allow_tf32 is tf32
        trainer.fit(X4, LABELS)
        params.append(m.params.copy())
    np.testing.assert_array_equal(params[0], params[1])


def test_changed_epochs_and_batch_size_are_used():
    m = clf()
    trainer = fastnn.Trainer(m, epochs=1, verbose=0)
    trainer.epochs, trainer.batch_size = 3, 2
    h = trainer.fit(X4, LABELS)
    assert h.epoch == [0, 1, 2]
    assert trainer.optimizer.step_count[0] == 9  # 3 epochs of 3 batches of 2


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"validation_data": (X4,)}, ValueError, "validation_data"),
    ({"validation_data": (X4, LABELS, LABELS)}, ValueError, "validation_data"),
    ({"validation_data": X4}, ValueError, "validation_data"),
    ({"validation_data": (X4[:3], LABELS)}, ValueError, "3 samples|6 samples"),
    ({"validation_split": 1.0}, ValueError, "validation_split"),
    ({"validation_split": -0.1}, ValueError, "validation_split"),
    ({"validation_split": True}, TypeError, "validation_split"),
    ({"validation_split": "0.2"}, TypeError, "validation_split"),
    ({"validation_split": 1e-17}, ValueError, "validation_split"),  # empty validation set
])
def test_fit_validation_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fastnn.Trainer(clf(), epochs=1, verbose=0).fit(X4, LABELS, **kwargs)


# --------------------------------------------------------------------------- optimizers
@pytest.mark.parametrize("cls, kwargs, exc, match", [
    (optim.SGD, {"lr": -0.1}, ValueError, "lr"),
    (optim.SGD, {"lr": float("inf")}, ValueError, "lr"),
    (optim.SGD, {"lr": "0.1"}, TypeError, "lr"),
    (optim.SGD, {"lr": None}, TypeError, "lr"),
    (optim.SGD, {"lr": True}, TypeError, "lr"),
    (optim.SGD, {"momentum": -0.5}, ValueError, "momentum"),
    (optim.SGD, {"weight_decay": -1}, ValueError, "weight_decay"),
    (optim.SGD, {"nesterov": True}, ValueError, "nesterov"),
    (optim.SGD, {"nesterov": "yes", "momentum": 0.9}, TypeError, "nesterov"),
    (optim.Adam, {"betas": 0.9}, ValueError, "betas"),
    (optim.Adam, {"betas": (0.9,)}, ValueError, "betas"),
    (optim.Adam, {"betas": {0.9, 0.99}}, ValueError, "betas"),
    (optim.Adam, {"betas": np.array(0.9)}, ValueError, "betas"),
    (optim.Adam, {"betas": np.array([[0.9], [0.99]])}, ValueError, "betas"),
    (optim.Adam, {"betas": (1.0, 0.999)}, ValueError, r"betas\[0\]"),
    (optim.Adam, {"betas": (0.9, -0.1)}, ValueError, r"betas\[1\]"),
    (optim.Adam, {"betas": (0.9, "x")}, TypeError, r"betas\[1\]"),
    (optim.Adam, {"eps": -1e-8}, ValueError, "eps"),
    (optim.Adam, {"eps": float("nan")}, ValueError, "eps"),
    (optim.Adam, {"amsgrad": None}, TypeError, "amsgrad"),
    (optim.AdamW, {"weight_decay": -0.01}, ValueError, "weight_decay"),
    (optim.Adagrad, {"lr_decay": -1}, ValueError, "lr_decay"),
    (optim.Adagrad, {"initial_accumulator_value": -1}, ValueError, "initial_accumulator"),
    (optim.Adadelta, {"rho": 1.5}, ValueError, "rho"),
    (optim.RMSprop, {"alpha": 1.5}, ValueError, "alpha"),
    (optim.RMSprop, {"momentum": -1}, ValueError, "momentum"),
    (optim.RMSprop, {"centered": "true"}, TypeError, "centered"),
])
def test_optimizer_arguments(cls, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cls(**kwargs)


def test_lr_assignment_is_checked():
    opt = optim.Adam()
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1.0
    assert opt.lr == 1e-3
    with pytest.raises(ValueError, match="optimizer"):
        optim.get_optimizer("adamax")


@pytest.mark.parametrize("params, grads, exc", [
    ([1.0, 2.0], [1.0, 2.0], TypeError),
    (np.zeros(3, np.float32), np.zeros(4, np.float32), ValueError),
    (np.zeros(3, np.float32), np.zeros(3, np.float64), ValueError),
    (np.zeros((3, 1), np.float32), np.zeros((3, 1), np.float32), ValueError),
    (np.zeros(3, np.int64), np.zeros(3, np.int64), TypeError),
    (np.zeros(3, np.float16), np.zeros(3, np.float16), TypeError),
    (np.zeros(6, np.float32)[::2], np.zeros(6, np.float32)[::2], ValueError),
])
def test_optimizer_update_arguments(params, grads, exc):
    opt = optim.Adam()
    with pytest.raises(exc, match="params"):
        opt.update(params, grads)
    assert opt.step_count[0] == 0 and opt.state is None
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        opt.update(frozen, np.zeros(3))
    with pytest.raises(ValueError, match="grad_scale"):
        opt.update(np.zeros(3), np.zeros(3), grad_scale=float("nan"))


# --------------------------------------------------------------------------- load
def test_load_arguments(tmp_path):
    with pytest.raises(TypeError, match="path"):
        fastnn.load(3)
    with pytest.raises(FileNotFoundError):
        fastnn.load(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x80\x04junk")
    with pytest.raises(ValueError, match="junk.safetensors"):
        fastnn.load(tmp_path / "junk.safetensors")


# --------------------------------------------------------------------------- command line
@pytest.fixture
def tiny_npz(tmp_path):
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, X=rng.normal(size=(40, 3)), y=rng.integers(0, 2, 40))
    return str(path)


@pytest.mark.parametrize("argv, rc", [
    (["--lr", "-1"], 2), (["--lr", "nan"], 2), (["--lr", "abc"], 2), (["--epochs", "0"], 2),
    (["--batch-size", "-2"], 2), (["--hidden", "4,-1"], 2), (["--hidden", "a"], 2),
    (["--activation", "swish"], 2), (["--optimizer", "adamax"], 2),
    (["--val-size", "1.5"], 2), (["--data", "missing.npz"], 2), (["--data", "x.txt"], 2),
    (["--dtype", "float16"], 2), (["--bogus"], 2),
])
def test_cli_bad_arguments_print_one_line(argv, rc, tiny_npz, capsys):
    if "--data" not in argv:
        argv = argv + ["--data", tiny_npz]
    try:
        code = cli_main(["train", "--quiet", "--epochs", "1"] + argv if "--epochs" not in argv
                        else ["train", "--quiet"] + argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == rc
    # the error is one line, the last; before it at most the one-line run summary
    errors = [line for line in err.splitlines() if ": error:" in line]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
    if argv[0] in ("--lr", "--epochs", "--batch-size", "--hidden", "--bogus", "--dtype"):
        assert len(err.strip().splitlines()) == 1, err  # refused before any work


def test_cli_divergence_is_one_line(tiny_npz, capsys):
    code = cli_main(["train", "--quiet", "--data", tiny_npz, "--optimizer", "sgd",
                     "--lr", "1e30", "--epochs", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("fastnn: error: training diverged") and "lower" in err[-1]


def test_cli_process_exit_code(tiny_npz):
    r = subprocess.run(check=False, args=[sys.executable, "-m", "fastnn.cli", "train", "--data", tiny_npz,
                        "--lr", "-1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and lines[-1].startswith("fastnn: error:")
    assert "lr" in lines[-1]
