"""Data helpers: exact stratified train/validation/test splits, Keras' validation_split, the
bundled digits data set, and loaders for user tables (.npz / .csv, numeric features, labels
numbers or names). Pure numpy; the digits come from scikit-learn's package data (read without
importing scikit-learn when its file is where scikit-learn keeps it)."""
import csv
import importlib.util
import math
import numbers
import os
from typing import NamedTuple

import numpy as np

__all__ = ["DigitsSplit", "TableSplit", "class_labels", "encode_labels", "load_digits_split",
           "load_features", "load_split", "load_table", "standardization", "train_val_test_split",
           "validation_split_indices"]


# --------------------------------------------------------------------------- arguments
def _as_samples(a, name):
    """`a` as an array with samples along axis 0 (scipy sparse matrices kept as CSR)."""
    if hasattr(a, "tocsr") and hasattr(a, "shape"):  # scipy.sparse, without importing scipy
        return a.tocsr()
    arr = np.asarray(a)
    if arr.ndim == 0:
        raise ValueError(f"{name} must have a sample axis, got a scalar")
    return arr


def _part_size(value, n, name):
    """A part size as a sample count: an int is a count, a float in [0, 1) a fraction of n."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a fraction in [0, 1) or an integer count, got "
                        f"{value!r}")
    if isinstance(value, numbers.Integral):
        count = int(value)
        if count < 0:
            raise ValueError(f"{name} must be >= 0, got {count}")
        if count > n:
            raise ValueError(f"{name}={count} is more than the {n} samples available")
        return count
    value = float(value)
    if not (0.0 <= value < 1.0):
        raise ValueError(f"{name} as a fraction must be in [0, 1), got {value!r} (pass an "
                         f"int for a sample count)")
    # round to nearest: ceil would turn 0.15 * 100 = 15.000000000000002 into 16
    count = math.floor(value * n + 0.5)
    if value > 0 and count == 0:
        raise ValueError(f"{name}={value!r} of {n} samples rounds to 0 samples; pass "
                         f"{name}=0 for no such part, or a larger fraction")
    return count


def class_labels(y):
    """The class labels that `y` encodes, as a 1-D array, or None for regression targets.

    The rule (for y of length n):
      * 1-D (or (n, 1)) of integer, bool or string dtype: the values are the labels;
      * 1-D (or (n, 1)) float whose every value is 0 or 1: binary labels;
      * 2-D (n, k>1) one-hot rows (each row one 1, the rest 0, any numeric dtype): the argmax;
      * anything else (other floats, multi-label or soft 2-D targets): None, i.e. regression.
    Integer-valued floats other than 0/1 are not taken as classes: they are more often counts
    or measurements than labels; convert labels to an integer dtype to stratify them.
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 1:
        if y.dtype.kind in "biuUS":
            return y
        if y.dtype.kind == "f" and np.all((y == 0) | (y == 1)):
            return y.astype(np.int64)
        return None
    if y.ndim == 2 and y.dtype.kind in "biuf" and y.shape[0] > 0:
        is01 = (y == 0) | (y == 1)
        if is01.all() and np.all(np.count_nonzero(y, axis=1) == 1):
            return np.argmax(y, axis=1)
    return None


# --------------------------------------------------------------------------- splitting
def _round_matrix(counts, parts, rng):
    """Integer allocation x (K classes, P parts) of class counts to part sizes.

    x[c, p] is floor or ceil of the ideal counts[c] * parts[p] / n, rows sum to counts and
    columns to parts exactly. Such a rounding always exists (Bacharach 1966); we take the
    floors and route the leftover units with augmenting paths on the bipartite graph
    class -> part (edges where the ideal has a fractional part), visiting classes and parts
    in random order so that which class gets the extra sample is not biased."""
    n = int(counts.sum())
    K, P = len(counts), len(parts)
    prod = counts[:, None].astype(np.int64) * np.asarray(parts, dtype=np.int64)[None, :]
    x = prod // n                       # exact integer floors
    can_up = (prod % n) != 0            # entries with a fractional part may take one more
    row_need = counts - x.sum(axis=1)   # units each class still has to place
    col_need = np.asarray(parts) - x.sum(axis=0)
    up = np.zeros((K, P), dtype=bool)   # the entries rounded up
    part_order = [int(p) for p in rng.permutation(P)]

    def augment(c, seen):
        # find a part for one unit of class c, moving other classes' units along if needed
        for p in part_order:
            if not can_up[c, p] or up[c, p] or p in seen:
                continue
            seen.add(p)
            if col_need[p] > 0:
                col_need[p] -= 1
                up[c, p] = True
                return True
            for c2 in range(K):  # p is full: try to move a unit of another class elsewhere
                if up[c2, p] and augment(c2, seen):
                    up[c2, p] = False
                    up[c, p] = True
                    return True
        return False

    for c in rng.permutation(K):
        for _ in range(int(row_need[c])):
            if not augment(int(c), set()):  # cannot happen by the theorem; guard anyway
                raise RuntimeError("internal error: no exact stratified allocation found")
    return x + up


def _split_indices(n, sizes, labels, rng):
    """Index arrays, one per entry of `sizes` (sum n), each in random order."""
    if labels is None:
        perm = rng.permutation(n)
        bounds = np.cumsum(sizes)[:-1]
        return np.split(perm, bounds)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    alloc = _round_matrix(counts, sizes, rng)
    # the sample indices of each class, grouped in one O(n log n) sort
    groups = np.split(np.argsort(inverse.ravel(), kind="stable"), np.cumsum(counts)[:-1])
    parts = [[] for _ in sizes]
    for c, group in enumerate(groups):
        members = rng.permutation(group)
        for p, chunk in enumerate(np.split(members, np.cumsum(alloc[c])[:-1])):
            parts[p].append(chunk)
    # mix the classes inside each part: no part is ordered by class
    return [rng.permutation(np.concatenate(chunks)) if chunks else np.empty(0, np.intp)
            for chunks in parts]


def train_val_test_split(X, y=None, val_size=0.15, test_size=0.15, stratify=True, seed=None):
    """Split samples into disjoint train, validation and test parts covering all of them.

    Parameters
    ----------
    X : array-like (n, ...) features; samples along axis 0 (a scipy sparse matrix works too).
    y : array-like (n,) or (n, k) targets, or None.
    val_size, test_size : float in [0, 1), a fraction of n rounded to the nearest count, or
        int >= 0, a count. 0 gives an empty part of shape (0, ...). At least one sample must
        remain for training.
    stratify : bool or array-like (n,). True stratifies by the classes of y when y holds class
        labels (see `class_labels` for the rule) and splits at random for regression targets;
        an array gives the labels to stratify by explicitly; False never stratifies.
        Stratified parts hold each class in proportion: every per-class count is the floor
        or ceil of class_count * part_size / n (so within one sample), and part sizes are
        exact.
    seed : int, numpy.random.Generator or None, passed to numpy.random.default_rng. The same
        seed gives the same split.

    Returns
    -------
    (X_train, X_val, X_test, y_train, y_val, y_test), or (X_train, X_val, X_test) when y is
    None. Parts are arrays indexed from X and y, each in random order.
    """
    X = _as_samples(X, "X")
    n = X.shape[0]
    if n == 0:
        raise ValueError("X is empty: it has 0 samples")
    if y is not None:
        y = _as_samples(y, "y")
        if y.shape[0] != n:
            raise ValueError(f"y has {y.shape[0]} samples but X has {n}")
    n_val = _part_size(val_size, n, "val_size")
    n_test = _part_size(test_size, n, "test_size")
    if n_val + n_test >= n:
        raise ValueError(f"val_size={val_size!r} and test_size={test_size!r} leave no samples "
                         f"for training ({n_val} + {n_test} of {n}); their sum must be < 1 "
                         f"(fractions) or < n_samples (counts)")

    if isinstance(stratify, (bool, np.bool_)):
        labels = class_labels(y) if (stratify and y is not None
                                     and not hasattr(y, "tocsr")) else None
    elif stratify is None:
        labels = None
    else:
        labels = np.asarray(stratify)
        if labels.ndim != 1 or labels.shape[0] != n:
            raise ValueError(f"stratify as labels must be 1-D with one label per sample ({n}), "
                             f"got shape {labels.shape}")
    if labels is not None:
        n_parts = sum(s > 0 for s in (n - n_val - n_test, n_val, n_test))
        classes, counts = np.unique(labels, return_counts=True)
        if counts.min() < n_parts:
            c = classes[np.argmin(counts)].tolist()  # a plain int/str in the message
            raise ValueError(f"stratify: class {c!r} has only {counts.min()} sample(s), too few "
                             f"to appear in each of the {n_parts} non-empty parts; pass "
                             f"stratify=False or merge rare classes")

    rng = np.random.default_rng(seed)
    train, val, test = _split_indices(n, [n - n_val - n_test, n_val, n_test], labels, rng)
    out = (X[train], X[val], X[test])
    if y is None:
        return out
    return out + (y[train], y[val], y[test])


def validation_split_indices(n, y=None, validation_split=0.0):
    """Keras' `validation_split`: the LAST fraction of the samples, before any shuffling.

    Parameters
    ----------
    n : int, the number of samples.
    y : array-like or None, only checked to have n samples (Keras never stratifies here).
    validation_split : float in [0, 1). 0 gives no validation samples.

    Returns
    -------
    (train_idx, val_idx) : int64 arrays, arange(0, split_at) and arange(split_at, n) with
    split_at = floor(n * (1 - validation_split)), exactly as Keras computes it. Raises
    ValueError, like Keras, when a nonzero split leaves either part empty.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise TypeError(f"n must be a non-negative integer, got {n!r}")
    n = int(n)
    if y is not None and np.shape(y)[:1] != (n,):
        raise ValueError(f"y has {np.shape(y)[:1] or 'no'} samples but n={n}")
    if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real):
        raise TypeError(f"validation_split must be a float in [0, 1), got {validation_split!r}")
    if not (0.0 <= validation_split < 1.0):
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
    if validation_split == 0:
        return np.arange(n, dtype=np.int64), np.empty(0, dtype=np.int64)
    split_at = math.floor(n * (1.0 - validation_split))
    if split_at == 0 or split_at == n:
        raise ValueError(f"{n} samples are not enough to split into training and validation "
                         f"sets with validation_split={validation_split!r}")
    return np.arange(split_at, dtype=np.int64), np.arange(split_at, n, dtype=np.int64)


# --------------------------------------------------------------------------- bundled data
class _DigitsParts(NamedTuple):
    X_train: np.ndarray
    X_val: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_val: np.ndarray
    y_test: np.ndarray


class DigitsSplit(_DigitsParts):
    """scikit-learn's 8x8 digits, split 70/15/15 and standardized with train statistics.

    A 6-tuple (X_train, X_val, X_test, y_train, y_val, y_test), so it unpacks like
    `train_val_test_split`'s result. X_* : float32 (n_part, 64); y_* : int64 (n_part,),
    labels 0..9. Attributes `mean` and `std`: float32 (64,), the train statistics applied
    (std 0 replaced by 1), e.g. to standardize new samples the same way."""

    # a tuple subclass without __slots__ has a __dict__: room for mean/std outside the tuple
    mean: np.ndarray
    std: np.ndarray


def _digits():
    """scikit-learn's digits: X (1797, 64) float64 and y (1797,) int64, as
    sklearn.datasets.load_digits(return_X_y=True) gives them. Read straight from the CSV that
    scikit-learn ships (its loader parses the same file) when it is there: importing
    scikit-learn takes about a second, more than the first command's training. ImportError
    without scikit-learn."""
    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError, AttributeError):  # (a module entry set to None)
        spec = None
    if spec is None or spec.origin is None:
        raise ImportError("scikit-learn is not installed")
    path = os.path.join(os.path.dirname(spec.origin), "datasets", "data", "digits.csv.gz")
    if os.path.isfile(path):
        data = np.loadtxt(path, delimiter=",")
        return data[:, :-1], data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # another layout: scikit-learn's own loader

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float64), y.astype(np.int64)


def load_digits_split(seed=0):
    """The digits data set (1797 samples, bundled with scikit-learn, no download), split
    stratified 70/15/15 with `train_val_test_split` and standardized with the mean and std of
    the train part only (no leakage from validation/test); returns a `DigitsSplit`."""
    try:
        X, y = _digits()
    except ImportError as exc:
        raise ImportError("load_digits_split needs scikit-learn: pip install "
                          "'fastnn[sklearn]'") from exc
    X_tr, X_va, X_te, y_tr, y_va, y_te = train_val_test_split(
        X, y, val_size=0.15, test_size=0.15,
        stratify=True, seed=seed)
    mean, std = standardization(X_tr)  # constant pixels (the digits' borders) stay 0
    f32 = [((a - mean) / std).astype(np.float32) for a in (X_tr, X_va, X_te)]
    out = DigitsSplit(*f32, y_tr, y_va, y_te)
    out.mean, out.std = mean.astype(np.float32), std.astype(np.float32)
    return out


# --------------------------------------------------------------------------- user tables
def standardization(X):
    """(mean, std) of X's columns in float64, the statistics a model's input standardization
    takes (`MLP.set_input_standardization`); a constant column's std 0 becomes 1, so that it
    maps to 0 instead of NaN."""
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std[std == 0] = 1.0
    return mean, std


def encode_labels(y, classes=None):
    """Class labels as indices into `classes`, as scikit-learn's LabelEncoder does.

    Parameters
    ----------
    y : 1-D labels (n,) (or (n, 1)): integers, bools, strings, floats.
    classes : None, or the known classes (1-D, unique), e.g. a model's `classes_`. None takes
        np.unique(y): the labels sorted, as scikit-learn's `classes_`.

    Returns
    -------
    (classes, indices): indices int64 (n,) with classes[indices] == y. ValueError naming the
    first label that is not among `classes`.
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"class labels must be 1-D (one label per sample), got shape {y.shape}")
    if classes is None:
        classes, indices = np.unique(y, return_inverse=True)
        return classes, indices.reshape(-1).astype(np.int64)
    classes = np.asarray(classes)
    if classes.dtype.kind == "U" and y.dtype.kind in "biuf":
        y = y.astype(str)  # a file whose labels all look like numbers, for a model with names
    known = y.dtype.kind == classes.dtype.kind == "U" or (y.dtype.kind in "biuf"
                                                          and classes.dtype.kind in "biuf")
    order = np.argsort(classes, kind="stable")  # classes_ need not be sorted
    if known and len(classes):
        pos = np.minimum(np.searchsorted(classes[order], y), len(classes) - 1)
        indices = order[pos].astype(np.int64)
        found = classes[indices] == y
    else:
        indices, found = np.zeros(len(y), np.int64), np.zeros(len(y), bool)
    if not found.all():
        bad = y[np.argmin(found)].tolist()
        shown = ", ".join(repr(c) for c in classes[:10].tolist())
        more = f", ... ({len(classes)} in all)" if len(classes) > 10 else ""
        raise ValueError(f"unknown class {bad!r}: the model knows the classes {shown}{more}")
    return classes, indices


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _finish_table(X, y, path):
    """Shared checks: X 2-D float, y int64 when integral, str for text labels, else float;
    lengths and finiteness."""
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: X must be numeric, got dtype {X.dtype}")
    if y.dtype.kind == "S":
        y = np.char.decode(y, "utf-8")
    if y.dtype.kind not in "biufU":
        raise ValueError(f"{path}: y must hold numbers or text labels, got dtype {y.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{path}: X must be 2-D (n_samples, n_features), got shape {X.shape}")
    if y.ndim not in (1, 2) or (y.dtype.kind == "U" and y.ndim == 2 and y.shape[1] != 1):
        raise ValueError(f"{path}: y must be 1-D{' (text labels)' if y.dtype.kind == 'U' else ''}"
                         f" or 2-D, got shape {y.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{path}: the table has no samples")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"{path}: y has {y.shape[0]} samples but X has {X.shape[0]}")
    X = X if X.dtype in (np.float32, np.float64) else X.astype(np.float64)
    if not np.isfinite(X).all():
        raise ValueError(f"{path}: X contains NaN or infinity")
    if y.dtype.kind == "U":
        return np.ascontiguousarray(X), np.ascontiguousarray(y.reshape(-1))
    yf = y.astype(np.float64)
    if not np.isfinite(yf).all():
        raise ValueError(f"{path}: y contains NaN or infinity")
    # labels: integral values that int64 holds exactly become int64, anything else stays float
    if y.dtype.kind in "biu" or (np.all(yf == np.round(yf)) and np.all(np.abs(yf) <= 2**53)):
        y = yf.astype(np.int64) if y.dtype.kind == "f" else y.astype(np.int64)
    else:
        y = y if y.dtype in (np.float32, np.float64) else yf
    return np.ascontiguousarray(X), np.ascontiguousarray(y)


def _load_npz(path, need_y=True):
    with open(path, "rb") as fh:  # FileNotFoundError & co. surface as they are
        try:
            f = np.load(fh, allow_pickle=False)  # never unpickle user files
            if not isinstance(f, np.lib.npyio.NpzFile):
                raise ValueError(  # noqa: TRY004  (bad file content)
                    "it holds a single array, not named arrays X and y")
            with f:
                keys = list(f.files)
                arrays = {k: f[k] for k in ("X", "y") if k in keys}
        except Exception as exc:  # noqa: BLE001  BadZipFile, EOFError, pickled data, bad members
            hint = (" (object arrays need pickle, which fastnn never uses: store text labels "
                    "as a str array, y.astype(str))" if "allow_pickle" in str(exc) else "")
            raise ValueError(f"{path}: not a readable .npz file: {exc}{hint}") from None
    missing = [k for k in (("X", "y") if need_y else ("X",)) if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing array(s) {', '.join(missing)}; the .npz holds "
                         f"{keys or 'nothing'} (save with np.savez(path, X=X, y=y))")
    return arrays["X"], arrays.get("y")


def _read_csv(path):
    """(header or None, [(line number, cells), ...]) of a CSV file; blank lines skipped. The
    first row is a header when none of its cells is a number."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        try:
            rows = [(i, r) for i, r in enumerate(csv.reader(f), start=1)
                    if r and any(c.strip() for c in r)]  # blank lines are skipped
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ValueError(f"{path}: not a readable text CSV file: {exc}") from None
    if not rows:
        raise ValueError(f"{path}: the file is empty")
    header = None
    if not any(_is_number(c) for c in rows[0][1]):
        header = [c.strip() for c in rows[0][1]]
        rows = rows[1:]
        if not rows:
            raise ValueError(f"{path}: only a header row, no data")
    width = len(rows[0][1]) if header is None else len(header)
    for line, cells in rows:
        if len(cells) != width:
            raise ValueError(f"{path}: line {line} has {len(cells)} columns, expected {width}")
    return header, rows


def _label_index(label_column, header, width, path):
    """The 0-based index of the label column: a header name, or an int (negative from the
    end); None is the last column."""
    if label_column is None:
        return width - 1
    if isinstance(label_column, str) and not _is_number(label_column):
        if header is None:
            raise ValueError(f"{path}: label column {label_column!r} given by name, but the "
                             f"file has no header row (pass its index instead)")
        if label_column not in header:
            raise ValueError(f"{path}: no column named {label_column!r}; the header has "
                             f"{', '.join(repr(h) for h in header)}")
        return header.index(label_column)
    try:
        index = int(label_column)
    except (TypeError, ValueError):
        raise TypeError(f"label_column must be a column name or an integer index, got "
                        f"{label_column!r}") from None
    if isinstance(label_column, float) and index != label_column:
        raise TypeError(f"label_column must be an integer index, got {label_column!r}")
    if not -width <= index < width:
        raise ValueError(f"{path}: label column index {index} is out of range for {width} "
                         f"columns (0-based: 0..{width - 1}, or -1 for the last)")
    return index % width


def _csv_features(rows, columns, path):
    """The float64 (n, len(columns)) table of the given columns; ValueError at a text cell."""
    table = np.empty((len(rows), len(columns)), dtype=np.float64)
    for r, (line, cells) in enumerate(rows):
        for k, j in enumerate(columns):
            try:
                table[r, k] = float(cells[j])
            except ValueError:
                if r == 0 and line == 1:  # a first row of names and numbers
                    raise ValueError(f"{path}: line 1 mixes numbers and text (column {j + 1}: "
                                     f"{cells[j]!r}); a header row must be all names, data "
                                     f"all numbers") from None
                raise ValueError(f"{path}: non-numeric cell {cells[j]!r} at line {line}, "
                                 f"column {j + 1}") from None
    return table


def _csv_labels(rows, j, path):
    """The label column j: float64 when every cell is a number, else str (stripped)."""
    cells = [(line, c[j].strip()) for line, c in rows]
    numeric = [_is_number(c) for _, c in cells]
    if all(numeric):
        return np.array([float(c) for _, c in cells], dtype=np.float64)
    for line, c in cells:
        if not c:
            raise ValueError(f"{path}: line {line} has an empty label (column {j + 1})")
    if any(numeric):
        (nl, nc), (tl, tc) = (cells[numeric.index(True)], cells[numeric.index(False)])
        if tl == 1 and numeric.count(False) == 1:
            raise ValueError(f"{path}: line 1 mixes numbers and text (column {j + 1}: {tc!r}); "
                             f"a header row must be all names, data all numbers")
        raise ValueError(f"{path}: the label column (column {j + 1}) mixes numbers (line {nl}: "
                         f"{nc!r}) and text (line {tl}: {tc!r}); labels must be all numbers or "
                         f"all names")
    return np.array([c for _, c in cells], dtype=str)


def _load_csv(path, label_column):
    """(X, y) of a CSV: numeric features, the label column numbers or text."""
    header, rows = _read_csv(path)
    width = len(rows[0][1])
    if width < 2:
        raise ValueError(f"{path}: needs at least 2 columns (features, then the label), got "
                         f"{width}")
    j = _label_index(label_column, header, width, path)
    X = _csv_features(rows, [k for k in range(width) if k != j], path)
    return X, _csv_labels(rows, j, path)


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".npz", ".csv"):
        raise ValueError(f"{path}: unsupported file type {ext or '(no extension)'!r}; "
                         f"expected .npz or .csv")
    return path, ext


def load_table(path, label_column=None):
    """Load a labelled data set (what `fastnn train` and `fastnn evaluate` read).

    `.npz`: arrays "X" (n, d) and "y" (n,) or (n, k), read without pickle; y may hold text
    labels (a str array).
    `.csv`: comma-separated, one sample per line, numeric features and one label column: the
    LAST one, or `label_column` (a header name, or a 0-based index, negative from the end).
    Labels are numbers, or names ("setosa"; whitespace around them is dropped). The first
    row is a header when none of its cells is a number. Blank lines are ignored.

    Returns (X, y): X float (n, d) (float32 kept, everything else float64); y int64 when every
    label is integral (e.g. 0.0, 1.0, 2.0), str (n,) for text labels, else float. ValueError
    for a wrong extension, a missing key, non-numeric feature cells, a label column mixing
    numbers and names, an empty file, ragged rows, NaN/inf, length mismatch.
    """
    path, ext = _check_path(path)
    if ext == ".npz":
        if label_column is not None:
            raise ValueError(f"{path}: label_column applies to CSV files; an .npz holds its "
                             f"labels in the array y")
        X, y = _load_npz(path)
    else:
        X, y = _load_csv(path, label_column)
    return _finish_table(X, y, path)


def load_features(path, n_features, label_column=None):
    """The feature rows of a data file for a model with `n_features` inputs (what
    `fastnn predict` reads): a CSV of n_features columns, or of n_features + 1 whose label
    column (see `load_table`) is dropped; an .npz's array X (y, if any, is not read).

    Returns X float (n, n_features). ValueError naming the file for a wrong column count."""
    path, ext = _check_path(path)
    if ext == ".npz":
        if label_column is not None:
            raise ValueError(f"{path}: label_column applies to CSV files; an .npz holds its "
                             f"features in the array X")
        X, _ = _load_npz(path, need_y=False)
        if X.dtype.kind not in "biuf" or X.ndim != 2:
            raise ValueError(f"{path}: X must be a numeric 2-D array, got dtype {X.dtype} and "
                             f"shape {X.shape}")
    else:
        header, rows = _read_csv(path)
        width = len(rows[0][1])
        if width == n_features:
            columns = list(range(width))
        elif width == n_features + 1:
            j = _label_index(label_column, header, width, path)
            columns = [k for k in range(width) if k != j]
        else:
            raise ValueError(f"{path}: {width} columns, but the model takes {n_features} "
                             f"features (a file may have {n_features} columns, or "
                             f"{n_features + 1} with a label column)")
        X = _csv_features(rows, columns, path)
    if X.shape[1] != n_features:
        raise ValueError(f"{path}: X has {X.shape[1]} features, but the model takes "
                         f"{n_features}")
    if X.shape[0] == 0:
        raise ValueError(f"{path}: the table has no samples")
    X = X if X.dtype in (np.float32, np.float64) else X.astype(np.float64)
    if not np.isfinite(X).all():
        raise ValueError(f"{path}: X contains NaN or infinity")
    return np.ascontiguousarray(X)


class TableSplit(NamedTuple):
    """`load_split`'s result: unpacks like `train_val_test_split`'s six parts, plus what a
    model needs to be applied to raw rows afterwards."""
    X_train: np.ndarray   # raw features, as read
    X_val: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray   # class indices into `classes` (classification), else the targets
    y_val: np.ndarray
    y_test: np.ndarray
    classes: object       # 1-D array of the class labels, sorted (np.unique); None otherwise
    mean: np.ndarray      # float64 (d,), the training part's standardization
    std: np.ndarray
    classification: bool


def load_split(path=None, val_size=0.15, test_size=0.15, seed=0, task="auto",
               label_column=None):
    """A data file (or scikit-learn's digits when path is None) split train/validation/test.

    task : "auto" (classification when the labels are integers or names), "classification"
        (any 1-D labels, e.g. 0.5 and 1.5 too) or "regression". Class labels are encoded as
        indices into the sorted classes (as scikit-learn's classes_), and the split is
        stratified by them. One-hot rows y (n, k) are k classes 0..k-1, one per column (also
        a class no sample has); other 2-D integer y are regression targets under "auto".
    Returns a `TableSplit`: raw features (unscaled), the standardization (mean, std) of the
    training part only, and the classes."""
    if path is None:
        try:
            X, y = _digits()
        except ImportError:
            raise ValueError("the default data set needs scikit-learn: pip install "
                             "'fastnn[sklearn]', or pass a data file") from None
    else:
        X, y = load_table(path, label_column)
    if task not in ("auto", "classification", "regression"):
        raise ValueError(f"task must be 'auto', 'classification' or 'regression', got {task!r}")
    text = y.dtype.kind == "U"
    if text and task == "regression":
        raise ValueError(f"task='regression' needs numeric targets, but the labels are names "
                         f"such as {y[0]!r}")
    classification = task == "classification" or (task == "auto" and y.dtype.kind in "iuU")
    classes = None
    if classification and y.ndim == 2 and y.shape[1] > 1:
        # one-hot rows: one class per column, also a class that no sample has
        indices = class_labels(y)
        if indices is not None:
            classes, y = np.arange(y.shape[1]), indices.astype(np.int64)
        elif task == "classification":
            raise ValueError(f"task='classification' needs one label per sample or one-hot "
                             f"rows, got y of shape {y.shape} that is not one-hot")
        else:  # integer columns that are not one-hot (counts): regression targets
            classification = False
    elif classification:
        # any labels np.unique can sort: names, integers, and (task="classification" only)
        # other numbers, as scikit-learn's classifiers take them
        classes, y = encode_labels(y)
    parts = train_val_test_split(X, y, val_size=val_size, test_size=test_size,
                                 stratify=classification, seed=seed)
    mean, std = standardization(parts[0])
    return TableSplit(*parts, classes, mean, std, classification)
