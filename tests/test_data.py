"""Splits (disjoint, complete, stratified within one sample, reproducible), Keras'
validation_split, the digits loader and the user table loader."""
import os
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn.data import (
    DigitsSplit,
    _digits,
    class_labels,
    encode_labels,
    load_digits_split,
    load_features,
    load_split,
    load_table,
    train_val_test_split,
    validation_split_indices,
)


def check_partition(n, parts):
    """The index parts are disjoint and together cover range(n) exactly once."""
    allidx = np.concatenate(parts)
    assert allidx.size == n
    assert np.array_equal(np.sort(allidx), np.arange(n))


def check_stratified(labels, parts):
    """Each class's count in each part is floor or ceil of its ideal share (< 1 away)."""
    n = labels.size
    for idx in parts:
        for c in np.unique(labels):
            ideal = np.count_nonzero(labels == c) * idx.size / n
            got = np.count_nonzero(labels[idx] == c)
            assert abs(got - ideal) < 1, (c, got, ideal)


# --------------------------------------------------------------------------- split properties
@st.composite
def labelled(draw):
    k = draw(st.integers(1, 5))
    counts = draw(st.lists(st.integers(3, 25), min_size=k, max_size=k))
    y = np.repeat(np.arange(k), counts)
    perm = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).permutation(y.size)
    n = y.size
    as_count = draw(st.booleans())
    if as_count:
        val = draw(st.integers(0, n // 3))
        test = draw(st.integers(0, n // 3))
    else:
        val = draw(st.sampled_from([0.0, 0.1, 0.15, 0.2, 0.3]))
        test = draw(st.sampled_from([0.0, 0.1, 0.15, 0.25, 0.3]))
    return y[perm], val, test, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=300, deadline=None)
@given(labelled())
def test_stratified_split_properties(case):
    y, val, test, seed = case
    n = y.size
    X = np.arange(n)
    try:
        Xtr, Xva, Xte, ytr, yva, yte = train_val_test_split(X, y, val, test, seed=seed)
    except ValueError as exc:  # a fraction too small for n: refused, with the argument named
        assert "rounds to 0" in str(exc)
        return
    check_partition(n, [Xtr, Xva, Xte])
    for Xp, yp in ((Xtr, ytr), (Xva, yva), (Xte, yte)):
        assert np.array_equal(y[Xp], yp)  # X and y rows stay paired
    expect_val = val if isinstance(val, int) else int(np.floor(val * n + 0.5))
    expect_test = test if isinstance(test, int) else int(np.floor(test * n + 0.5))
    assert (Xva.size, Xte.size) == (expect_val, expect_test)
    check_stratified(y, [Xtr, Xva, Xte])


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 200), st.floats(0, 0.45), st.floats(0, 0.45), st.integers(0, 1000))
def test_random_split_properties(n, val, test, seed):
    X = np.arange(n)
    try:
        parts = train_val_test_split(X, None, val, test, seed=seed)
    except ValueError as exc:
        assert "val_size" in str(exc) or "test_size" in str(exc)
        return
    assert len(parts) == 3
    check_partition(n, parts)
    assert parts[0].size >= 1


def test_split_sizes_from_fractions_and_counts():
    X = np.zeros((100, 3))
    y = np.repeat([0, 1], 50)
    tr, va, te, *_ = train_val_test_split(X, y, 0.15, 0.15, seed=0)
    assert (len(tr), len(va), len(te)) == (70, 15, 15)  # 0.15 * 100 is not rounded up to 16
    tr, va, te, *_ = train_val_test_split(X, y, 10, 0.2, seed=0)
    assert (len(tr), len(va), len(te)) == (70, 10, 20)
    tr, va, te = train_val_test_split(X, None, val_size=0.1, test_size=0.0, seed=0)
    assert (len(tr), len(va), len(te)) == (90, 10, 0)


def test_empty_parts_keep_trailing_shape():
    X = np.zeros((20, 3, 2), dtype=np.float32)
    y = np.zeros((20, 4))
    Xtr, Xva, Xte, _, yva, yte = train_val_test_split(X, y, 0, 0, seed=0)
    assert Xtr.shape == (20, 3, 2) and Xva.shape == (0, 3, 2) and Xte.shape == (0, 3, 2)
    assert yva.shape == (0, 4) and yte.shape == (0, 4)
    assert Xva.dtype == np.float32


def test_digits_like_proportions_exact():
    y = np.repeat(np.arange(10), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    parts = train_val_test_split(np.arange(y.size), y, seed=1)
    check_partition(y.size, parts[:3])
    check_stratified(y, parts[:3])


def test_rare_and_imbalanced_classes():
    y = np.array([0] * 94 + [1] * 3 + [2] * 3)
    parts = train_val_test_split(np.arange(100), y, val_size=0.1, test_size=0.1, seed=4)
    check_stratified(y, parts[:3])
    assert np.count_nonzero(parts[3] == 0) in (75, 76)


def test_same_seed_same_split_different_seed_different_split():
    X = np.arange(200)
    y = np.arange(200) % 3
    a = train_val_test_split(X, y, seed=7)
    b = train_val_test_split(X, y, seed=7)
    c = train_val_test_split(X, y, seed=8)
    for pa, pb in zip(a, b):
        assert np.array_equal(pa, pb)
    assert not all(np.array_equal(pa, pc) for pa, pc in zip(a, c))
    gen = train_val_test_split(X, y, seed=np.random.default_rng(7))
    assert all(np.array_equal(pa, pg) for pa, pg in zip(a, gen))


def test_parts_are_shuffled_not_grouped_by_class():
    y = np.repeat([0, 1], 100)
    ytr = train_val_test_split(np.arange(200), y, seed=0)[3]
    assert 0 < np.argmax(ytr == 1) < 20  # classes interleaved within the part


def test_regression_targets_are_not_stratified():
    rng = np.random.default_rng(0)
    y = rng.normal(size=50)  # every value unique: stratifying would fail
    parts = train_val_test_split(np.arange(50), y, seed=0)
    check_partition(50, parts[:3])
    assert class_labels(y) is None
    # integer-valued floats are counts/measurements, not classes
    assert class_labels(np.array([3.0, 5.0, 7.0])) is None


@pytest.mark.parametrize("y,expected", [
    (np.array([2, 0, 2, 1]), [2, 0, 2, 1]),
    (np.array([True, False]), [True, False]),
    (np.array(["cat", "dog"]), ["cat", "dog"]),
    (np.array([1.0, 0.0, 1.0]), [1, 0, 1]),                 # binary float targets
    (np.array([[1], [0], [1]], dtype=np.float32), [1, 0, 1]),
    (np.array([[0, 1, 0], [1, 0, 0]], dtype=np.float64), [1, 0]),   # one-hot
    (np.array([[0.2, 0.8], [1, 0]]), None),                 # soft targets
    (np.array([[1, 1, 0], [1, 0, 0]]), None),               # multi-label
    (np.array([0.5, 1.5]), None),
])
def test_class_labels_rule(y, expected):
    got = class_labels(y)
    if expected is None:
        assert got is None
    else:
        assert got is not None and list(got) == expected


def test_one_hot_and_string_labels_are_stratified():
    labels = np.repeat([0, 1, 2], [30, 12, 18])
    onehot = np.eye(3)[labels]
    Xtr, Xva, Xte, ytr, _, _ = train_val_test_split(np.arange(60), onehot, 0.2, 0.2, seed=3)
    check_stratified(labels, [Xtr, Xva, Xte])
    assert np.array_equal(ytr, onehot[Xtr])
    names = np.array(["a", "b", "c"])[labels]
    parts = train_val_test_split(np.arange(60), names, 0.2, 0.2, seed=3)
    check_stratified(labels, parts[:3])


def test_explicit_stratify_labels_and_stratify_false():
    groups = np.repeat([0, 1], [40, 20])
    y = np.random.default_rng(0).normal(size=60)
    parts = train_val_test_split(np.arange(60), y, 0.25, 0.25, stratify=groups, seed=0)
    check_stratified(groups, parts[:3])
    # stratify=False accepts classes too rare to stratify
    y_rare = np.array([0] * 19 + [1])
    parts = train_val_test_split(np.arange(20), y_rare, 0.2, 0.2, stratify=False, seed=0)
    check_partition(20, parts[:3])


def test_lists_and_sparse_inputs():
    tr, _, _, ytr, _, _ = train_val_test_split([[i, i] for i in range(10)],
                                               [0, 1] * 5, 0.2, 0.2, seed=0)
    assert isinstance(tr, np.ndarray) and tr.shape == (6, 2)
    assert np.array_equal(tr[:, 0] % 2, ytr)
    sparse = pytest.importorskip("scipy.sparse")
    X = sparse.csr_matrix(np.arange(20.0).reshape(10, 2))
    tr, _, _ = train_val_test_split(X, None, 0.2, 0.2, seed=0)
    assert tr.shape == (6, 2) and sparse.issparse(tr)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"val_size": 0.5, "test_size": 0.5}, ValueError, "no samples for training"),
    ({"val_size": 0.6, "test_size": 0.5}, ValueError, "no samples for training"),
    ({"val_size": 50, "test_size": 50}, ValueError, "no samples for training"),
    ({"val_size": -0.1}, ValueError, "val_size"),
    ({"test_size": -1}, ValueError, "test_size"),
    ({"test_size": 1.0}, ValueError, "test_size"),
    ({"val_size": 1.5}, ValueError, "val_size"),
    ({"val_size": 101}, ValueError, "val_size"),
    ({"val_size": float("nan")}, ValueError, "val_size"),
    ({"val_size": "0.1"}, TypeError, "val_size"),
    ({"test_size": True}, TypeError, "test_size"),
    ({"val_size": 0.001}, ValueError, "val_size=0.001 of 100 samples rounds to 0"),
    ({"stratify": np.zeros(5)}, ValueError, "stratify"),
])
def test_bad_arguments(kwargs, exc, match):
    X = np.zeros((100, 2))
    y = np.arange(100) % 2
    with pytest.raises(exc, match=match):
        train_val_test_split(X, y, **kwargs)


def test_bad_data():
    with pytest.raises(ValueError, match="y has 9 samples but X has 10"):
        train_val_test_split(np.zeros((10, 2)), np.zeros(9, dtype=int))
    with pytest.raises(ValueError, match="X is empty"):
        train_val_test_split(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="X must have a sample axis"):
        train_val_test_split(np.float64(3.0))
    with pytest.raises(ValueError, match="stratify: class 1 has only 2 sample"):
        train_val_test_split(np.zeros((20, 2)), np.array([0] * 18 + [1] * 2))
    # two samples are enough when only two parts are non-empty
    parts = train_val_test_split(np.arange(20), np.array([0] * 18 + [1] * 2), 0.2, 0, seed=0)
    check_partition(20, parts[:3])


# --------------------------------------------------------------------------- Keras split
@pytest.mark.parametrize("n", [2, 3, 7, 10, 99, 1000])
@pytest.mark.parametrize("split", [0.1, 0.2, 0.25, 0.3, 1 / 3, 0.5, 0.7, 0.9])
def test_validation_split_matches_keras(n, split):
    split_at = int(np.floor(n * (1.0 - split)))  # keras' train_validation_split
    if split_at in (0, n):
        with pytest.raises(ValueError, match="not enough"):
            validation_split_indices(n, None, split)
        return
    tr, va = validation_split_indices(n, np.zeros(n), split)
    assert np.array_equal(tr, np.arange(split_at))
    assert np.array_equal(va, np.arange(split_at, n))  # the LAST samples, unshuffled


def test_validation_split_values():
    tr, va = validation_split_indices(10, None, 0.2)
    assert list(va) == [8, 9] and list(tr) == list(range(8))
    tr, va = validation_split_indices(10, None, 0.0)
    assert tr.size == 10 and va.size == 0 and va.dtype == np.int64
    with pytest.raises(ValueError, match="validation_split"):
        validation_split_indices(10, None, 1.0)
    with pytest.raises(ValueError, match="validation_split"):
        validation_split_indices(10, None, -0.1)
    with pytest.raises(TypeError, match="validation_split"):
        validation_split_indices(10, None, "0.2")
    with pytest.raises(ValueError, match="y has"):
        validation_split_indices(10, np.zeros(9), 0.2)
    with pytest.raises(TypeError, match="n must be"):
        validation_split_indices(-1, None, 0.2)


# --------------------------------------------------------------------------- digits
def test_load_digits_split():
    pytest.importorskip("sklearn")
    d = load_digits_split(seed=0)
    assert isinstance(d, DigitsSplit) and len(d) == 6
    X_train, _, _, _, _, y_test = d  # unpacks like train_val_test_split's 6-tuple
    assert X_train is d.X_train and y_test is d.y_test
    # mean/std undo the standardization: the raw pixels are integers 0..16
    assert d.mean.shape == d.std.shape == (64,) and d.mean.dtype == np.float32
    raw = d.X_test * d.std + d.mean
    assert np.abs(raw - np.round(raw)).max() < 1e-3 and raw.min() > -1e-3 and raw.max() < 16.01
    assert (d.X_train.shape, d.X_val.shape, d.X_test.shape) == ((1257, 64), (270, 64), (270, 64))
    assert d.y_train.shape == (1257,) and d.y_val.shape == d.y_test.shape == (270,)
    for a in d[:3]:
        assert a.dtype == np.float32 and np.isfinite(a).all()
    for a in d[3:6]:
        assert a.dtype == np.int64 and set(np.unique(a)) == set(range(10))
    # standardized with train statistics: train columns have mean 0 and std 1 (or are constant)
    assert np.abs(d.X_train.mean(axis=0)).max() < 1e-5
    std = d.X_train.std(axis=0)
    assert np.all((np.abs(std - 1) < 1e-4) | (std == 0))
    assert np.any(d.std == 1.0)  # the constant border pixel got std 1, no division by 0
    # the same transform on val: its statistics are not exactly standardized (no leakage)
    assert np.abs(d.X_val.mean(axis=0)).max() > 1e-3
    # class proportions kept: digits has 174..183 samples per class
    assert np.all(np.abs(np.bincount(d.y_val) - np.bincount(d.y_train) * 270 / 1257) < 2)
    again = load_digits_split(seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(d, again))
    other = load_digits_split(seed=1)
    assert not np.array_equal(d.y_train, other.y_train)


def test_digits_read_from_the_file_are_scikit_learns():
    """The digits are read from scikit-learn's CSV without importing scikit-learn (a second of
    the first command's start): the same values and dtypes as its loader gives."""
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = _digits()
    X_ref, y_ref = datasets.load_digits(return_X_y=True)
    assert X.dtype == np.float64 and y.dtype == np.int64
    assert np.array_equal(X, X_ref) and np.array_equal(y, y_ref)


@pytest.mark.parametrize("missing", ["sklearn", "sklearn.datasets"])
def test_load_digits_split_without_sklearn(monkeypatch, missing):
    pytest.importorskip("sklearn")
    if missing == "sklearn":
        monkeypatch.setitem(sys.modules, "sklearn", None)  # not installed
    else:  # its data file elsewhere, and its loader not importable
        monkeypatch.setattr(os.path, "isfile", lambda path: False)
        monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'fastnn\[sklearn\]'"):
        load_digits_split()


# --------------------------------------------------------------------------- tables
def test_load_npz(tmp_path):
    X = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=np.array([0, 1, 2, 1, 0], dtype=np.int32))
    X2, y2 = load_table(path)
    assert X2.dtype == np.float32 and np.array_equal(X2, X)
    assert y2.dtype == np.int64 and list(y2) == [0, 1, 2, 1, 0]
    np.savez(path, X=np.arange(6).reshape(3, 2), y=np.array([1.0, 0.0, 1.0]))
    X2, y2 = load_table(str(path))
    assert X2.dtype == np.float64 and y2.dtype == np.int64  # integral float labels -> int64
    np.savez(path, X=np.arange(6).reshape(3, 2), y=np.array([1.5, 0.0, 1.0]))
    assert load_table(path)[1].dtype == np.float64
    np.savez(path, X=np.arange(6).reshape(3, 2), y=np.eye(3))  # 2-D targets kept
    assert load_table(path)[1].shape == (3, 3)


def test_load_csv_with_and_without_header(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n1,2,0\n3.5, 4 ,1\n\n-1e3,0,2\n")
    X, y = load_table(path)
    assert X.shape == (3, 2) and X.dtype == np.float64
    assert np.array_equal(X, [[1, 2], [3.5, 4], [-1000, 0]])
    assert y.dtype == np.int64 and list(y) == [0, 1, 2]
    path.write_text("1,2,0.5\n3,4,1.25\n")
    X, y = load_table(path)
    assert X.shape == (2, 2) and y.dtype == np.float64 and list(y) == [0.5, 1.25]
    path.write_bytes(b"\xef\xbb\xbfx,y\n1,1\n")  # UTF-8 BOM from spreadsheet exports
    X, y = load_table(path)
    assert X.shape == (1, 1) and list(y) == [1]


@pytest.mark.parametrize("name,content,match", [
    ("d.csv", "", "empty"),
    ("d.csv", "\n\n", "empty"),
    ("d.csv", "a,b,c\n", "only a header"),
    ("d.csv", "a,b,c\n1,x,0\n", r"non-numeric cell 'x' at line 2, column 2"),
    ("d.csv", "a,b\n1,x\n2,3\n", (r"label column \(column 2\) mixes numbers \(line 3: '3'\) "
                                  r"and text \(line 2: 'x'\)")),
    ("d.csv", "1,x\n2, \n", "line 2 has an empty label"),
    ("d.csv", "1,2,3\n4,5\n", "line 2 has 2 columns, expected 3"),
    ("d.csv", "1,label\n2,3\n", "line 1 mixes numbers and text"),
    ("d.csv", "1\n2\n", "at least 2 columns"),
    ("d.csv", "1,nan\n2,3\n", "NaN or infinity"),
    ("d.txt", "1,2\n", "unsupported file type '.txt'"),
    ("d", "1,2\n", "no extension"),
])
def test_bad_csv_and_extension(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        load_table(path)
    assert str(path) in str(info.value)


def test_bad_npz(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"missing array\(s\) y.*holds \['X'\]"):
        load_table(path)
    np.savez(path, X=np.zeros((2, 2)), y=np.array([object(), 1], dtype=object))
    with pytest.raises(ValueError, match="not a readable .npz"):  # pickled: refused
        load_table(path)
    np.savez(path, X=np.zeros((3, 2)), y=np.zeros(2))
    with pytest.raises(ValueError, match="y has 2 samples but X has 3"):
        load_table(path)
    np.savez(path, X=np.zeros(3), y=np.zeros(3))
    with pytest.raises(ValueError, match="X must be 2-D"):
        load_table(path)
    np.savez(path, X=np.array([["a", "b"]]), y=np.zeros(1))
    with pytest.raises(ValueError, match="X must be numeric"):
        load_table(path)
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_table(path)
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    with pytest.raises(ValueError, match="single array"):
        load_table(tmp_path / "single.npz")


def test_missing_table_file(tmp_path):
    for name in ("nope.csv", "nope.npz"):
        with pytest.raises(FileNotFoundError):
            load_table(tmp_path / name)
    with pytest.raises(TypeError, match="path"):
        load_table(3)


# --------------------------------------------------------------------------- text labels
def test_csv_written_by_pandas_with_text_labels(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "iris.csv"
    frame = pd.DataFrame({"sepal length": [5.1, 7.0, 6.3, 4.9], "petal, width": [0.2, 1.4,
                                                                                  2.5, 0.1],
                          "species": ["setosa", "versicolor", "virginica", "setosa"]})
    frame.to_csv(path, index=False)  # the header cell with a comma is quoted
    X, y = load_table(path)
    assert X.dtype == np.float64 and np.array_equal(X, frame.iloc[:, :2].to_numpy())
    assert y.dtype.kind == "U" and y.tolist() == frame["species"].tolist()
    X2, y2 = load_table(path, label_column="species")
    assert np.array_equal(X2, X) and np.array_equal(y2, y)
    with pytest.raises(ValueError, match="non-numeric cell 'setosa' at line 2, column 3"):
        load_table(path, label_column="petal, width")  # the species become a feature


def test_label_column_by_index_and_its_errors(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("1, cat ,3\n4,dog,6\n7,cat,9\n")
    for column in (1, -2, "1", "-2"):
        X, y = load_table(path, label_column=column)
        assert np.array_equal(X, [[1, 3], [4, 6], [7, 9]]) and y.tolist() == ["cat", "dog", "cat"]
    with pytest.raises(ValueError, match=r"line 1 mixes numbers and text \(column 2: ' cat '"):
        load_table(path)  # the last column is the default
    with pytest.raises(ValueError, match=r"index 3 is out of range for 3 columns"):
        load_table(path, label_column=3)
    with pytest.raises(ValueError, match="given by name, but the file has no header"):
        load_table(path, label_column="species")
    with pytest.raises(TypeError, match="label_column"):
        load_table(path, label_column=[1])
    np.savez(tmp_path / "t.npz", X=np.zeros((2, 2)), y=np.zeros(2))
    with pytest.raises(ValueError, match="label_column applies to CSV files"):
        load_table(tmp_path / "t.npz", label_column=0)


def test_npz_text_labels(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, X=np.zeros((3, 2)), y=np.array(["b", "a", "b"]))
    assert load_table(path)[1].tolist() == ["b", "a", "b"]
    np.savez(path, X=np.zeros((3, 2)), y=np.array([b"b", b"a", b"\xc3\xa9"]))  # bytes: UTF-8
    assert load_table(path)[1].tolist() == ["b", "a", "é"]
    np.savez(path, X=np.zeros((3, 2)), y=np.array([["a"], ["b"], ["c"]]))  # (n, 1)
    assert load_table(path)[1].shape == (3,)
    np.savez(path, X=np.zeros((3, 2)), y=np.array([["a", "b"]] * 3))
    with pytest.raises(ValueError, match=r"y must be 1-D \(text labels\)"):
        load_table(path)
    np.savez(path, X=np.zeros((2, 2)), y=np.array(["a", None], dtype=object))
    with pytest.raises(ValueError, match=r"store text labels as a str array"):
        load_table(path)


def test_encode_labels_sorts_like_sklearn_and_names_unknown_labels():
    classes, idx = encode_labels(np.array(["dog", "cat", "emu", "cat"]))
    assert classes.tolist() == ["cat", "dog", "emu"] and idx.tolist() == [1, 0, 2, 0]
    assert idx.dtype == np.int64
    sklearn_preprocessing = pytest.importorskip("sklearn.preprocessing")
    y = np.array([10, -3, 7, 10, 7])
    enc = sklearn_preprocessing.LabelEncoder().fit(y)
    classes, idx = encode_labels(y)
    assert np.array_equal(classes, enc.classes_) and np.array_equal(idx, enc.transform(y))
    # against a model's classes_, in whatever order they name its outputs
    _, idx = encode_labels(["emu", "cat"], classes=np.array(["emu", "cat", "dog"]))
    assert idx.tolist() == [0, 1]
    _, idx = encode_labels(np.array([3, 1]), classes=np.array(["1", "2", "3"]))  # read as ints
    assert idx.tolist() == [2, 0]
    with pytest.raises(ValueError, match=r"unknown class 'fox': the model knows the classes "
                                         r"'cat', 'dog'$"):
        encode_labels(["cat", "fox"], classes=["cat", "dog"])
    with pytest.raises(ValueError, match="unknown class 'cat'"):
        encode_labels(["cat"], classes=[0, 1])
    with pytest.raises(ValueError, match=r"\.\.\. \(12 in all\)"):
        encode_labels([99], classes=np.arange(12))
    with pytest.raises(ValueError, match="1-D"):
        encode_labels(np.zeros((2, 2)))


def test_load_features_takes_rows_with_or_without_the_label(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n1,2,x\n3,4,y\n")
    assert np.array_equal(load_features(path, 2), [[1, 2], [3, 4]])
    assert np.array_equal(load_features(path, 2, label_column=-1), [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="non-numeric cell 'x' at line 2, column 3"):
        load_features(path, 2, label_column="a")
    path.write_text("1,2\n3,4\n")
    assert np.array_equal(load_features(path, 2), [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match=r"2 columns, but the model takes 3 features"):
        load_features(path, 3)
    np.savez(tmp_path / "t.npz", X=np.ones((2, 5), np.float32))  # no y needed
    X = load_features(tmp_path / "t.npz", 5)
    assert X.dtype == np.float32 and X.shape == (2, 5)
    with pytest.raises(ValueError, match="X has 5 features, but the model takes 4"):
        load_features(tmp_path / "t.npz", 4)


def test_load_split_encodes_names_stratifies_and_standardizes_on_train_only(tmp_path):
    rng = np.random.default_rng(0)
    names = np.array(["rare"] * 10 + ["common"] * 50 + ["mid"] * 40)
    X = rng.normal(size=(100, 3)) * [1, 10, 100] + 5
    path = tmp_path / "t.csv"
    with open(path, "w") as f:
        f.write("a,b,c,kind\n")
        f.writelines(f"{a!r},{b!r},{c!r},{k}\n" for (a, b, c), k in zip(X.tolist(), names))
    split = load_split(path, val_size=0.2, test_size=0.2, seed=1)
    assert split.classification and split.classes.tolist() == ["common", "mid", "rare"]
    for part, n in ((split.y_train, 60), (split.y_val, 20), (split.y_test, 20)):
        assert part.dtype == np.int64 and np.bincount(part).tolist() == [n // 2, n * 2 // 5,
                                                                          n // 10]
    np.testing.assert_array_equal(split.mean, split.X_train.mean(axis=0))
    np.testing.assert_array_equal(split.std, split.X_train.std(axis=0))
    assert np.isin(split.X_test, X).all()  # raw rows, not standardized
    with pytest.raises(ValueError, match="task='regression' needs numeric targets"):
        load_split(path, task="regression")


def test_load_split_classification_of_any_sortable_labels(tmp_path):
    path = tmp_path / "t.npz"
    y = np.tile([0.5, 1.5, -2.25], 10)
    np.savez(path, X=np.arange(60.0).reshape(30, 2), y=y)
    assert load_split(path, seed=0).classes is None  # auto: non-integral numbers regress
    split = load_split(path, seed=0, task="classification")
    assert split.classes.tolist() == [-2.25, 0.5, 1.5]
    # stratified: 5 test samples of 3 equal classes, 1 or 2 of each
    assert sorted(np.bincount(split.y_test, minlength=3).tolist()) == [1, 2, 2]
    np.savez(path, X=np.zeros((30, 2)), y=np.tile([True, False], 15))
    assert load_split(path, seed=0).classes.tolist() == [0, 1]
    with pytest.raises(ValueError, match="label_column applies to CSV files"):
        load_features(path, 2, label_column=0)
