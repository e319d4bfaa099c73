"""Input checks that run before any kernel: Numba does no bounds checking, so a shape the kernel
did not expect would corrupt memory instead of raising. Every error names the argument."""
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


def check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(sorted(choices))}")
    return value


def _numeric(a, name):
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be a numeric array: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                   or arr.dtype == np.bool_):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}")
    return arr


def check_features(X, n_features, dtype, name="X"):
    """X as a C-contiguous (n, n_features) array of the model's dtype (converted, not refused)."""
    arr = _numeric(X, name)
    if arr.ndim != 2:
        hint = " (use X.reshape(-1, 1) for a single feature)" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_samples, {n_features}), got shape "
                         f"{arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 samples")
    if arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features but the model's input layer "
                         f"expects {n_features}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def check_targets(y, n_samples, n_outputs, loss, dtype, name="y"):
    """Targets in the two forms the kernels take: (y_index, y_float).

    cross_entropy: integer labels (n,) in [0, n_outputs) -> y_index, or class probabilities
    (n, n_outputs) -> y_float. binary_cross_entropy: values in [0, 1]. mse: any finite values.
    (n,) is accepted for a single output."""
    arr = _numeric(y, name)
    if arr.ndim == 0 or arr.ndim > 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} samples but X has {n_samples}")
    empty_index = np.empty(0, dtype=np.int64)
    if loss == "cross_entropy" and arr.ndim == 1:
        if not np.isfinite(arr.astype(np.float64, copy=False)).all():
            raise ValueError(f"{name} contains NaN or infinity")
        labels = arr.astype(np.int64)
        if not np.array_equal(labels, arr):
            raise ValueError(f"{name} holds class labels for cross_entropy and must be integers, "
                             f"got non-integral values")
        bad = (labels < 0) | (labels >= n_outputs)
        if bad.any():
            raise ValueError(f"{name} has labels outside [0, {n_outputs}) for the output layer of "
                             f"size {n_outputs}: e.g. {labels[bad][0]}")
        return np.ascontiguousarray(labels), np.empty((0, n_outputs), dtype=dtype)
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
    out = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contains NaN or infinity")
    if loss in ("binary_cross_entropy", "cross_entropy") and ((out < 0) | (out > 1)).any():
        raise ValueError(f"{name} must hold probabilities in [0, 1] for {loss}")
    return empty_index, out
