"""Input checks that run before any kernel: Numba does no bounds checking, so a shape the kernel
did not expect would corrupt memory instead of raising. Every error names the argument.

One vocabulary for every public entry point (MLP, Trainer, optimizers, schedules, callbacks,
data, io): a value of the wrong kind (a str for a number, a float for a count, a bool where an
integer or a flag is meant) is a TypeError; a value of the right kind outside its range is a
ValueError, and so is anything that is not one of a fixed set of choices (check_choice)."""
import numbers

import numpy as np


def check_positive_int(value, name, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_count(value, name):
    """A non-negative integer (patience, cooldown, epochs to wait)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def check_number(value, name, low=None, high=None, low_open=False, high_open=False):
    """A real, finite float within [low, high] (open ends where asked)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        op = ">" if low_open else ">="
        raise ValueError(f"{name} must be {op} {low}, got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        op = "<" if high_open else "<="
        raise ValueError(f"{name} must be {op} {high}, got {value!r}")
    return value


def check_dropout(dropout, input_dropout, n_hidden):
    """(input_dropout, p_1, ..., p_n_hidden) as floats in [0, 1), validated: `dropout` a rate
    for every hidden layer or a list of one per hidden layer (MLP, the estimators, search)."""
    def rate(p, name):
        return check_number(p, name, low=0.0, high=1.0, high_open=True)

    if isinstance(dropout, (str, bytes)):
        raise TypeError(f"dropout must be a number or a list of numbers, got {dropout!r}")
    if hasattr(dropout, "__len__"):
        if len(dropout) != n_hidden:
            raise ValueError(f"dropout lists {len(dropout)} rates but there are {n_hidden} "
                             f"hidden layers")
        hidden = tuple(rate(p, f"dropout[{i}]") for i, p in enumerate(dropout))
    else:
        hidden = (rate(dropout, "dropout"),) * n_hidden
    return (rate(input_dropout, "input_dropout"),) + hidden


def check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(sorted(choices))}")
    return value


def check_flag(value, name):
    """True/False (also numpy bools and the integers 0 and 1); anything else is a TypeError,
    so that shuffle="no" is not silently truthy."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral)
                                               and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def check_seed(seed, name="seed"):
    """None, a non-negative integer, or a numpy SeedSequence / BitGenerator / Generator: what
    np.random.default_rng takes, minus its quirks (bools, floats, negative numbers)."""
    if seed is None or isinstance(seed, (np.random.SeedSequence, np.random.BitGenerator,
                                         np.random.Generator)):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be None or a non-negative integer, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{name} must be None or a non-negative integer, got {seed!r}")
    return int(seed)


def as_numeric(a, name):
    """np.asarray(a), refused unless its dtype is bool, integer or real floating point (no
    object, str, bytes, complex, datetime, timedelta or structured arrays)."""
    try:
        arr = np.asarray(a)
    except Exception as exc:  # noqa: BLE001 - ragged lists, failing __array__, ...: all mean "not numeric"
        raise TypeError(f"{name} must be a numeric array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric (bool, integer or float) array, got dtype "
                        f"{arr.dtype}")
    return arr


def all_finite(arr):
    """No NaN and no infinity, without a boolean temporary as large as arr: min and max
    propagate NaN and expose +-inf (two vectorized passes, no allocation)."""
    if arr.size == 0 or arr.dtype.kind != "f":
        return True
    with np.errstate(invalid="ignore"):
        return bool(np.isfinite(arr.min()) and np.isfinite(arr.max()))


def _own(out, arr, copy):
    """out, or a copy of it when copy is asked and out may share memory with the input arr."""
    if copy and np.may_share_memory(out, arr):
        return out.copy()
    return out


def _as_finite(arr, dtype, name, copy=False):
    """arr as a C-contiguous array of `dtype` (a private copy when `copy`); ValueError if it
    holds NaN or infinity, or values that overflow `dtype` (1e39 in a float32 model). The
    result itself is checked: another thread writing into arr meanwhile cannot slip past."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = _own(np.ascontiguousarray(arr, dtype=dtype), arr, copy)
    if not all_finite(out):  # one pass over what the kernels will read; arr only to explain
        raise ValueError(f"{name} contains NaN or infinity" if not all_finite(arr) else
                         f"{name} has values too large for the model's dtype {np.dtype(dtype)}")
    return out


def check_features(X, n_features, dtype, name="X"):
    """X as a C-contiguous (n, n_features) array of the model's dtype (converted, not refused;
    X itself when it already is one)."""
    arr = as_numeric(X, name)
    if arr.ndim != 2:
        hint = " (use X.reshape(-1, 1) for a single feature)" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_samples, {n_features}), got shape "
                         f"{arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 samples")
    if arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features but the model's input layer "
                         f"expects {n_features}")
    return _as_finite(arr, dtype, name)


def check_targets(y, n_samples, n_outputs, loss, dtype, name="y"):
    """Targets in the two forms the kernels take: (y_index, y_float).

    cross_entropy: integer labels (n,) in [0, n_outputs) -> y_index, or class probabilities
    (n, n_outputs) -> y_float. binary_cross_entropy: values in [0, 1]. mse: any finite values.
    (n,) is accepted for a single output.

    Both results are fastnn's own arrays, never views of y, and are checked after the copy:
    the kernels index memory by the labels, so a label changed after this check (by a
    callback, or by another thread while a kernel runs) must not reach them."""
    arr = as_numeric(y, name)
    if arr.ndim == 0 or arr.ndim > 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} samples but X has {n_samples}")
    empty_index = np.empty(0, dtype=np.int64)
    if loss == "cross_entropy" and arr.ndim == 1:
        arr = np.array(arr, copy=True)  # checked below, then only this copy is used
        if arr.dtype.kind == "f":
            if not all_finite(arr):
                raise ValueError(f"{name} contains NaN or infinity")
            if (arr != np.floor(arr)).any():
                raise ValueError(f"{name} holds class labels for cross_entropy and must be "
                                 f"integers, got non-integral values")
        # compared before any cast: uint64 2**64-1 must not wrap to -1
        bad = (arr < 0) | (arr >= n_outputs)
        if bad.any():
            raise ValueError(f"{name} has labels outside [0, {n_outputs}) for the output layer of "
                             f"size {n_outputs}: e.g. {arr[bad][0]}")
        labels = np.ascontiguousarray(arr, dtype=np.int64)  # arr is already our own
        return labels, np.empty((0, n_outputs), dtype=dtype)
    if arr.ndim == 1:
        if n_outputs != 1:
            raise ValueError(f"{name} is 1-D but the model has {n_outputs} outputs: pass "
                             f"shape (n, {n_outputs})"
                             + (" or integer labels with loss='cross_entropy'"
                                if loss != "cross_entropy" else ""))
        arr = arr.reshape(-1, 1)
    if arr.shape[1] != n_outputs:
        raise ValueError(f"{name} has {arr.shape[1]} columns but the model has {n_outputs} "
                         f"outputs")
    out = _as_finite(arr, dtype, name, copy=True)
    if loss in ("binary_cross_entropy", "cross_entropy") and ((out < 0) | (out > 1)).any():
        raise ValueError(f"{name} must hold probabilities in [0, 1] for {loss}")
    return empty_index, out
