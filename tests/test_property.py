"""Property-based: random shapes, dtypes, values (NaN, inf, overflow), batch sizes and
hyperparameters thrown at the public API. Every call either works, returning finite values
of the right shape, or raises the documented ValueError / TypeError (TrainingDiverged for a
fit that diverges): never a crash, a hang or another exception. Where the input is valid by
the documented rules, the call must work: over-eager refusals fail too."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import optim

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

N_IN, N_OUT = 3, 2
MODELS = {(dt, out): fastnn.MLP([N_IN, 4, N_OUT], activation="tanh", output=out, dtype=dt,
                                seed=0)
          for dt in ("float32", "float64") for out in ("softmax", "sigmoid", "identity")}
DOCUMENTED = (ValueError, TypeError)

# weighted towards valid input, so that both outcomes are common
DTYPES = ["float32", "float64"] * 6 + ["float16", "int8", "int64", "uint8", "bool", "object",
                                       "U3", "complex64", "m8[s]"]


@st.composite
def arrays(draw, rows=None, cols=None):
    """Small arrays of any listed dtype; shapes near the valid ones; values that may hold
    NaN, inf or numbers too large for float32."""
    dtype = draw(st.sampled_from(DTYPES))
    ndim = draw(st.sampled_from([2] * 8 + [1, 0, 3]))
    dims = []
    for axis in range(ndim):
        want = rows if axis == 0 else cols if axis == 1 else None
        # hypothesis favours the first choices when it simplifies: valid ones go first
        choices = ([want] * 12 if want is not None else []) + [1, 2, 3, 5, 6, 0]
        dims.append(draw(st.sampled_from(choices)))
    shape = tuple(dims)
    size = int(np.prod(shape))
    special = draw(st.sampled_from([None] * 10 + [np.nan, np.inf, -np.inf, 1e39]))
    values = draw(st.lists(st.floats(-3, 3), min_size=size, max_size=size))
    data = np.array(values, dtype=np.float64).reshape(shape)
    if special is not None and size:
        data.flat[draw(st.integers(0, size - 1))] = special
    if dtype == "object":
        return data.astype(object)
    if dtype == "U3":
        return data.astype("U3")
    if dtype in ("bool", "int8", "int64", "uint8"):
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(data, posinf=9, neginf=-9).round().astype(dtype)
    if dtype == "m8[s]":
        return np.zeros(shape, dtype)
    with np.errstate(over="ignore"):
        out = data.astype(dtype)
    if draw(st.booleans()) and out.ndim == 2 and out.shape[1] > 1:
        out = out[:, ::-1]  # non-contiguous
    return out


def valid_features(X, model):
    if X.dtype.kind not in "biuf" or X.ndim != 2 or X.shape[0] == 0:
        return False
    if X.shape[1] != model.n_inputs:
        return False
    with np.errstate(over="ignore"):
        return bool(np.isfinite(X.astype(model.dtype)).all())


def valid_targets(y, n, model, loss):
    """The documented target rules (see fastnn._validation.check_targets)."""
    if y.dtype.kind not in "biuf" or y.ndim not in (1, 2) or y.shape[0] != n:
        return False
    with np.errstate(over="ignore", invalid="ignore"):
        as_model = y.astype(model.dtype)
    if loss == "cross_entropy" and y.ndim == 1:
        yf = y.astype(np.float64)
        return bool(np.isfinite(yf).all() and (yf == np.round(yf)).all()
                    and (yf >= 0).all() and (yf < model.n_outputs).all())
    cols = 1 if y.ndim == 1 else y.shape[1]
    if cols != model.n_outputs or not np.isfinite(as_model).all():
        return False
    if loss != "mse":
        return bool(((as_model >= 0) & (as_model <= 1)).all())
    return True


NATURAL_TARGETS = {"softmax": "labels", "sigmoid": "probabilities", "identity": "array"}


@st.composite
def targets(draw, n, output):
    """Mostly the natural kind for the model's output, sometimes any other."""
    kinds = [NATURAL_TARGETS[output]] * 3 + ["labels", "array", "probabilities"]
    kind = draw(st.sampled_from(kinds))
    if kind == "probabilities":
        vals = draw(st.lists(st.floats(0, 1), min_size=n * N_OUT, max_size=n * N_OUT))
        return np.array(vals).reshape(n, N_OUT)
    if kind == "labels":
        # mostly in range: -1 and N_OUT are the out-of-range labels
        vals = draw(st.lists(st.sampled_from([0, 1] * 12 + [-1, N_OUT]), min_size=n,
                             max_size=n))
        return np.array(vals, dtype=draw(st.sampled_from(["int64", "int8", "float64"])))
    return draw(arrays(rows=n, cols=N_OUT))


MODEL_KEYS = st.sampled_from(sorted(MODELS))


@SETTINGS
@given(key=MODEL_KEYS, X=arrays(cols=N_IN),
       batch_size=st.one_of(st.integers(1, 8), st.just(10 ** 9), st.integers(-2, 0),
                            st.booleans(), st.floats(0, 4), st.none()))
def test_predict(key, X, batch_size):
    model = MODELS[key]
    valid = valid_features(X, model) and (isinstance(batch_size, int)
                                          and not isinstance(batch_size, bool)
                                          and batch_size > 0)
    try:
        out = model.predict(X, batch_size=batch_size)
    except DOCUMENTED:
        assert not valid
        return
    assert valid
    assert out.shape == (X.shape[0], N_OUT) and out.dtype == model.dtype
    assert np.isfinite(out).all()


@SETTINGS
@given(key=MODEL_KEYS, X=arrays(cols=N_IN), data=st.data(),
       loss=st.sampled_from([None] * 4 + ["mse", "cross_entropy", "binary_cross_entropy",
                                          "hinge"]))
def test_loss_and_grad(key, X, data, loss):
    model = MODELS[key]
    n = X.shape[0] if X.ndim else 1
    y = data.draw(targets(n, model.output))
    before = model.params.copy()
    resolved = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy",
                "identity": "mse"}[model.output] if loss is None else loss
    loss_ok = resolved == "mse" or {"cross_entropy": "softmax",
                                    "binary_cross_entropy": "sigmoid"}.get(resolved) == model.output
    valid = loss_ok and valid_features(X, model) and valid_targets(y, X.shape[0], model,
                                                                    resolved)
    try:
        value, grad = model.loss_and_grad(X, y, loss=loss)
    except DOCUMENTED:
        assert not valid
        return
    finally:
        np.testing.assert_array_equal(model.params, before)
    assert valid
    assert np.isfinite(value) and grad.shape == model.params.shape
    assert grad.dtype == model.dtype and np.isfinite(grad).all()


HYPER = st.one_of(st.floats(0, 1), st.floats(-1, 2),
                  st.floats(allow_nan=True, allow_infinity=True),
                  st.integers(-2, 3), st.booleans(), st.none(), st.text(max_size=2),
                  st.tuples(st.floats(0, 1), st.floats(0, 1)),
                  st.frozensets(st.floats(0, 1), max_size=2),
                  st.lists(st.one_of(st.floats(0, 1), st.text(max_size=1)), max_size=3))
OPTIMIZER_ARGS = {
    optim.SGD: ["lr", "momentum", "dampening", "weight_decay", "nesterov"],
    optim.Adam: ["lr", "betas", "eps", "weight_decay", "amsgrad"],
    optim.AdamW: ["lr", "betas", "eps", "weight_decay", "amsgrad"],
    optim.Adagrad: ["lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"],
    optim.Adadelta: ["lr", "rho", "eps", "weight_decay"],
    optim.RMSprop: ["lr", "alpha", "eps", "weight_decay", "momentum", "centered"],
}


@st.composite
def optimizers(draw):
    """(class, kwargs) with a random subset of the arguments set to random values."""
    cls = draw(st.sampled_from(sorted(OPTIMIZER_ARGS, key=lambda c: c.__name__)))
    names = draw(st.lists(st.sampled_from(OPTIMIZER_ARGS[cls]), max_size=3, unique=True))
    return cls, {name: draw(HYPER) for name in names}


@SETTINGS
@given(spec=optimizers(), n=st.integers(0, 4), dtype=st.sampled_from(["float32", "float64"]))
def test_optimizers(spec, n, dtype):
    cls, kwargs = spec
    try:
        opt = cls(**kwargs)
    except DOCUMENTED:
        return
    # whatever was accepted reads back as finite floats / bools
    for value in opt.hyperparameters().values():
        values = value if isinstance(value, tuple) else (value,)
        assert all(isinstance(v, (float, bool)) and np.isfinite(v) for v in values)
    params = np.linspace(-1, 1, n).astype(dtype)
    grads = np.linspace(1, -0.5, n).astype(dtype)
    opt.update(params, grads)
    opt.update(params, grads)
    assert params.shape == (n,) and opt.step_count[0] == 2


BAD_MLP_ARGS = {
    "layer_sizes": st.one_of(st.lists(st.one_of(st.integers(-1, 0), st.booleans(),
                                                st.floats(0, 3), st.text(max_size=1),
                                                st.none()), min_size=1, max_size=3),
                             st.integers(1, 3), st.text(max_size=2), st.lists(
                                 st.integers(1, 3), max_size=1)),
    "activation": st.sampled_from(["nope", 3, None, ["relu", "tanh", "elu"], "softmax"]),
    "output": st.sampled_from(["relu", None, 1, "Softmax"]),
    "dtype": st.sampled_from(["float16", int, "x", None, np.complex64, 4]),
    "seed": st.one_of(st.integers(-3, -1), st.floats(0, 1), st.text(max_size=1),
                      st.booleans()),
    "init": st.sampled_from(["zeros", None, 0]),
}


@SETTINGS
@given(sizes=st.lists(st.integers(1, 4), min_size=2, max_size=4),
       activation=st.sampled_from(["relu", "tanh", "gelu", "identity"]),
       output=st.sampled_from(["softmax", "sigmoid", "identity"]),
       dtype=st.sampled_from(["float32", "float64", np.float32, np.dtype("float64")]),
       seed=st.one_of(st.integers(0, 2 ** 63), st.none()),
       init=st.sampled_from(["auto", "he_uniform", "glorot_normal"]),
       data=st.data(), corrupt=st.sampled_from([None] + sorted(BAD_MLP_ARGS)))
def test_mlp_constructor(sizes, activation, output, dtype, seed, init, data, corrupt):
    """Valid arguments, one of them replaced by a bad value half of the time."""
    kwargs = {"layer_sizes": sizes, "activation": activation, "output": output,
              "dtype": dtype, "seed": seed, "init": init}
    if corrupt is not None:
        kwargs[corrupt] = data.draw(BAD_MLP_ARGS[corrupt])
    try:
        model = fastnn.MLP(**kwargs)
    except DOCUMENTED:
        assert corrupt is not None
        return
    # a "bad" activation list can still fit, e.g. one name per hidden layer
    assert corrupt is None or (corrupt == "activation" and len(sizes) == 5)
    assert model.params.shape == (model.n_params,) and np.isfinite(model.params).all()
    assert model.predict(np.ones((2, sizes[0]))).shape == (2, sizes[-1])


@SETTINGS
@given(key=MODEL_KEYS, X=arrays(cols=N_IN), data=st.data(), spec=optimizers(),
       batch_size=st.one_of(st.integers(1, 7), st.none(), st.just(10 ** 6),
                            st.integers(-1, 0), st.booleans(), st.floats(1, 3)),
       epochs=st.one_of(st.integers(1, 2), st.integers(-1, 0), st.booleans()),
       shuffle=st.one_of(st.booleans(), st.integers(0, 2), st.just("yes")),
       clip=st.one_of(st.none(), st.floats(0.1, 10), st.floats(-1, 0),
                      st.floats(allow_nan=True)),
       val=st.sampled_from([None, "same", "split"]))
def test_trainer_fit(key, X, data, spec, batch_size, epochs, shuffle, clip, val):
    model = MODELS[key].copy()
    n = X.shape[0] if X.ndim else 1
    y = data.draw(targets(n, model.output))
    cls, kwargs = spec
    try:
        opt = cls(**kwargs)
        trainer = fastnn.Trainer(model, opt, batch_size=batch_size, epochs=epochs,
                                 shuffle=shuffle, clip_grad_norm=clip, seed=0, verbose=0)
    except DOCUMENTED:
        return
    fit_kwargs = ({"validation_data": (X, y)} if val == "same" else
                  {"validation_split": 0.5} if val == "split" else {})
    try:
        history = trainer.fit(X, y, **fit_kwargs)
    except fastnn.TrainingDiverged:
        assert np.isfinite(model.params).all()
        return
    except DOCUMENTED:
        valid = (valid_features(X, model)
                 and valid_targets(y, X.shape[0], model, trainer.loss)
                 and not (val == "split" and X.shape[0] < 2))
        assert not valid
        return
    assert len(history.epoch) == epochs
    assert np.isfinite(history["loss"]).all()
    assert np.isfinite(model.params).all()
    if val:
        assert np.isfinite(history["val_loss"]).all()
    out = model.predict(X)
    assert out.shape == (X.shape[0], N_OUT) and np.isfinite(out).all()


def test_strategies_reach_both_outcomes():
    """The properties above are only worth something if the strategies produce valid inputs
    too: count how often predict works for drawn inputs."""
    outcomes = {"ok": 0, "refused": 0}

    @settings(max_examples=150, deadline=None, derandomize=True)
    @given(X=arrays(cols=N_IN))
    def probe(X):
        try:
            MODELS[("float32", "softmax")].predict(X)
            outcomes["ok"] += 1
        except DOCUMENTED:
            outcomes["refused"] += 1

    probe()
    assert outcomes["ok"] >= 10 and outcomes["refused"] >= 10, outcomes
