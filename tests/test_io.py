"""Model and state files: exact round trips, torch compatibility, refusal of bad files,
atomic writes."""
import json
import os
import pathlib
import pickle

import numpy as np
import pytest
import safetensors.numpy

from fastnn import _files
from fastnn.io import load_model, load_state, save_model, save_state
from fastnn.model import MLP

import bounds
import torch_fixtures

ARCHS = [
    ([4, 3], [], "identity"),
    ([4, 5, 3], ["relu"], "softmax"),
    ([3, 6, 5, 2], ["tanh", "gelu"], "sigmoid"),
    ([5, 4, 4, 4, 3], ["leaky_relu", "elu", "sigmoid"], "softmax"),
    ([2, 7, 1], ["identity"], "identity"),
]


def bits(a):
    """The raw bits of a float array, so NaN payloads and -0.0 compare exactly."""
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def make(sizes=(4, 5, 3), acts=("relu",), output="softmax", dtype="float32", seed=0):
    return MLP(list(sizes), list(acts), output=output, dtype=dtype, seed=seed)


def test_path_arguments(tmp_path):
    m = make()
    save_model(m, str(tmp_path / "a.safetensors"))
    save_model(m, tmp_path / "b.safetensors")  # pathlib
    assert np.array_equal(load_model(str(tmp_path / "b.safetensors")).params, m.params)
    assert np.array_equal(load_model(tmp_path / "a.safetensors").params, m.params)
    with pytest.raises(TypeError, match="path"):
        save_model(m, 123)
    with pytest.raises(TypeError, match="path"):
        load_model(None)


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes,acts,output", ARCHS)
def test_round_trip_bit_identical(tmp_path, sizes, acts, output, dtype):
    m = make(sizes, acts, output, dtype, seed=3)
    rng = np.random.default_rng(1)
    m.params[...] = rng.normal(size=m.params.size)  # nonzero biases too
    path = tmp_path / "m.safetensors"
    save_model(m, path)
    m2 = load_model(path)
    assert isinstance(m2, MLP)
    assert m2.layer_sizes == tuple(sizes)
    assert m2.activations == tuple(acts)
    assert m2.output == output
    assert m2.dtype == np.dtype(dtype)
    assert m2.params.dtype == np.dtype(dtype)
    assert np.array_equal(bits(m2.params), bits(m.params))
    for l in range(len(sizes) - 1):
        assert np.array_equal(m2.weights[l], m.weights[l])
        assert np.array_equal(m2.biases[l], m.biases[l])
    X = rng.normal(size=(7, sizes[0]))
    assert np.array_equal(m2.predict(X), m.predict(X))
    # the loaded model owns its memory: changing it leaves the original alone
    m2.params[0] += 1
    assert m2.params[0] != m.params[0]


def test_round_trip_keeps_non_finite_and_signed_zero(tmp_path):
    m = make(dtype="float64")
    m.params[0] = np.nan
    m.params[1] = np.inf
    m.params[2] = -np.inf
    m.params[3] = -0.0
    m.params[4:5].view(np.uint64)[0] = 0x7FF8_0000_0000_1234  # a NaN with a payload
    save_model(m, tmp_path / "m.safetensors")
    m2 = load_model(tmp_path / "m.safetensors")
    assert np.array_equal(bits(m2.params), bits(m.params))


def test_round_trip_keeps_init(tmp_path):
    m = MLP([3, 4, 2], "tanh", output="softmax", init="he_uniform", seed=0)
    save_model(m, tmp_path / "m.safetensors")
    assert load_model(tmp_path / "m.safetensors").init == "he_uniform"


def test_model_save_method_writes_the_same_format(tmp_path):
    m = make()
    m.save(tmp_path / "m.safetensors")
    assert np.array_equal(load_model(tmp_path / "m.safetensors").params, m.params)


def test_file_layout_matches_torch_state_dict(tmp_path):
    m = make((4, 5, 6, 3), ("relu", "tanh"), "softmax", "float64", seed=2)
    path = tmp_path / "m.safetensors"
    save_model(m, path)
    tensors = safetensors.numpy.load_file(str(path))
    assert set(tensors) == {"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"}
    for l, idx in enumerate((0, 2, 4)):
        W = tensors[f"{idx}.weight"]
        assert W.shape == (m.layer_sizes[l + 1], m.layer_sizes[l])  # (out, in)
        assert W.dtype == np.float64
        assert np.array_equal(W, m.weights[l].T)
        assert np.array_equal(tensors[f"{idx}.bias"], m.biases[l])
    with safetensors.safe_open(str(path), framework="np") as f:
        meta = f.metadata()
    assert meta["format"] == "fastnn-mlp"
    assert meta["format_version"] == "1"
    assert json.loads(meta["layer_sizes"]) == [4, 5, 6, 3]
    assert json.loads(meta["activations"]) == ["relu", "tanh"]
    assert json.loads(meta["output"]) == "softmax"
    assert json.loads(meta["dtype"]) == "float64"


def test_no_pickle_in_file(tmp_path):
    save_model(make(), tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    assert not data.startswith(b"\x80")  # pickle protocol marker
    assert data[8:9] == b"{"  # u64 header length, then the JSON header


# --------------------------------------------------------------------------- torch
TORCH_ACT = {
    "identity": lambda nn: nn.Identity(),
    "sigmoid": lambda nn: nn.Sigmoid(),
    "tanh": lambda nn: nn.Tanh(),
    "relu": lambda nn: nn.ReLU(),
    "leaky_relu": lambda nn: nn.LeakyReLU(0.01),
    "elu": lambda nn: nn.ELU(1.0),
    "gelu": lambda nn: nn.GELU(),
}


def torch_sequential(torch, model):
    nn = torch.nn
    layers = []
    sizes = model.layer_sizes
    for l in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[l], sizes[l + 1]))
        if l < len(sizes) - 2:
            layers.append(TORCH_ACT[model.activations[l]](nn))
    if model.output == "softmax":
        layers.append(nn.Softmax(dim=1))
    elif model.output == "sigmoid":
        layers.append(nn.Sigmoid())
    net = nn.Sequential(*layers)
    return net.double() if model.dtype == np.float64 else net


def torch_load_and_predict(torch, path, model, X):
    """The torch.nn.Sequential of `model`'s architecture, loaded (strictly: every key and
    shape) from the file at `path`: (its state_dict layout as JSON, its predictions on X)."""
    import safetensors.torch

    net = torch_sequential(torch, model)
    layout = json.dumps({k: list(v.shape) for k, v in net.state_dict().items()})
    net.load_state_dict(safetensors.torch.load_file(str(path)))
    with torch.no_grad():
        expected = net(torch.from_numpy(X)).numpy()
    assert expected.dtype == model.dtype
    return layout, expected


def saved_layout(path):
    """{tensor name: shape} of a model file, as torch_load_and_predict gives the state_dict's."""
    return {k: list(v.shape) for k, v in safetensors.numpy.load_file(str(path)).items()}


def torch_case(sizes, acts, output, dtype):
    key = f"load/{'x'.join(map(str, sizes))}-{'+'.join(acts)}-{output}-{dtype}"
    return key, (f"{key}/layout", f"{key}/predictions")


def torch_case_inputs(sizes, acts, output, dtype):
    """The model (parameters normal(0, 0.5)) and the inputs of a torch loading case."""
    m = make(sizes, acts, output, dtype, seed=5)
    m.params[...] = np.random.default_rng(0).normal(0, 0.5, m.params.size)
    X = np.random.default_rng(1).normal(size=(16, sizes[0])).astype(dtype)
    return m, X


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes,acts,output", ARCHS)
def test_loads_in_torch_with_same_predictions(tmp_path, sizes, acts, output, dtype):
    """The file holds a torch.nn.Sequential's state_dict (its keys and shapes) and torch,
    loading it, predicts what fastnn predicts. Both round the same forward pass in `dtype`,
    each within bounds.step_units eps of it (norm-wise), so within twice that of each
    other."""
    key, keys = torch_case(sizes, acts, output, dtype)
    m = make(sizes, acts, output, dtype)
    m.params[...] = torch_fixtures.get("io", f"{key}/params")
    X = torch_fixtures.get("io", f"{key}/X")
    path = tmp_path / "m.safetensors"
    save_model(m, path)
    for label, (layout, expected) in torch_fixtures.references(
            "io", keys, lambda torch: torch_load_and_predict(torch, path, m, X)):
        assert saved_layout(path) == json.loads(str(layout)), label
        assert expected.dtype == np.dtype(dtype)
        bounds.assert_close(m.predict(X), expected, 2 * bounds.step_units(sizes, 1), dtype,
                            label)


def torch_saved_file(torch, path):
    """The bytes of a torch.save file."""
    torch.save({"0.weight": torch.zeros(2, 3)}, path)
    return np.frombuffer(path.read_bytes(), dtype=np.uint8)


def test_torch_save_file_refused(tmp_path):
    path = tmp_path / "m.pt"
    for label, data in torch_fixtures.references(
            "io", "torch_save_file", lambda torch: torch_saved_file(torch, tmp_path / "t.pt")):
        path.write_bytes(data.tobytes())
        with pytest.raises(ValueError, match=str(path).replace("\\", "\\\\")):
            load_model(path)


def torch_fixture(torch):
    """What tests/fixtures/make_torch_fixtures.py saves in torch_io.npz."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for dtype in ("float32", "float64"):
            for sizes, acts, output in ARCHS:
                key, keys = torch_case(sizes, acts, output, dtype)
                m, X = torch_case_inputs(sizes, acts, output, dtype)
                save_model(m, tmp / "m.safetensors")
                yield f"{key}/params", m.params
                yield f"{key}/X", X
                yield from zip(keys, torch_load_and_predict(torch, tmp / "m.safetensors", m, X))
        yield "torch_save_file", torch_saved_file(torch, tmp / "m.pt")


@pytest.mark.parametrize("classes", [["setosa", "versicolor", "virginica"], [3, 7, 11],
                                     [-0.5, 0.25, 1e300], ["b", "a", "ç"]])
def test_classes_and_input_standardization_round_trip_exactly(tmp_path, classes):
    rng = np.random.default_rng(3)
    m = make((4, 5, 3), ("relu",), "softmax", "float32", seed=1)
    mean, std = rng.normal(size=4) * 1e3, rng.uniform(1e-7, 1e7, size=4)
    m.set_input_standardization(mean, std)
    m.classes_ = classes
    path = tmp_path / "m.safetensors"
    save_model(m, path)
    with safetensors.safe_open(str(path), framework="np") as f:
        assert f.metadata()["format_version"] == "2"
    loaded = load_model(path)
    assert loaded.classes_.dtype.kind == np.asarray(classes).dtype.kind
    assert loaded.classes_.tolist() == classes  # order kept, even when unsorted
    assert np.array_equal(bits(loaded.input_mean), bits(mean))  # float64, bit for bit
    assert np.array_equal(bits(loaded.input_std), bits(std))
    X = rng.normal(size=(7, 4)) * std + mean
    assert np.array_equal(loaded.predict(X), m.predict(X))
    assert loaded.predict_labels(X).tolist() == m.predict_labels(X).tolist()


def test_file_with_extras_still_loads_in_torch_strictly(tmp_path):
    """Classes, standardization and dropout rates go to the metadata: the tensors are still
    exactly the torch.nn.Sequential's state_dict."""
    m = MLP([4, 5, 3], ["relu"], output="softmax", seed=0, dropout=0.3, input_dropout=0.1)
    m.classes_ = ["x", "y", "z"]
    m.set_input_standardization(np.ones(4), np.full(4, 2.0))
    path = tmp_path / "m.safetensors"
    save_model(m, path)
    _, (layout_key, _) = torch_case((4, 5, 3), ("relu",), "softmax", "float32")
    X = np.zeros((1, 4), np.float32)
    for label, layout in torch_fixtures.references(
            "io", layout_key, lambda torch: torch_load_and_predict(torch, path, m, X)[0]):
        assert saved_layout(path) == json.loads(str(layout)), label


def test_model_without_extras_writes_format_version_1(tmp_path):
    save_model(make(), tmp_path / "m.safetensors")
    with safetensors.safe_open(str(tmp_path / "m.safetensors"), framework="np") as f:
        meta = f.metadata()
    assert meta["format_version"] == "1"
    assert not {"classes", "input_mean", "input_std"} & set(meta)


# --------------------------------------------------------------------------- refused files
@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(make((3, 4, 2), ("relu",), "softmax"), path)
    return path


def header_len(data):
    return 8 + int.from_bytes(data[:8], "little")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError):
        load_state(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("content,match", [
    (b"", "empty"),
    (b"\x01\x02\x03", "too short"),
    (pickle.dumps({"0.weight": [1.0, 2.0]}), "not a safetensors file"),
    (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "safetensors"),
    (b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!", "not valid JSON"),
    (b"\x02\x00\x00\x00\x00\x00\x00\x00[]", "JSON object"),
    (b"hello, this is a plain text file\n" * 10, "safetensors"),
])
def test_foreign_files_refused(tmp_path, content, match):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    for loader in (load_model, load_state):
        with pytest.raises(ValueError, match=match) as info:
            loader(path)
        assert str(path) in str(info.value)


def test_pickle_is_never_unpickled(tmp_path, monkeypatch):
    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Boom()))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    with pytest.raises(ValueError):
        load_model(path)


def test_every_truncation_refused(model_file):
    data = model_file.read_bytes()
    for cut in range(len(data)):
        model_file.write_bytes(data[:cut])
        with pytest.raises(ValueError):
            load_model(model_file)


def test_trailing_garbage_refused(model_file):
    model_file.write_bytes(model_file.read_bytes() + b"\x00" * 8)
    with pytest.raises(ValueError, match="corrupted or truncated"):
        load_model(model_file)


@pytest.mark.parametrize("mask", [0x01, 0x20, 0x80])
def test_every_flipped_header_byte_refused(model_file, mask):
    data = model_file.read_bytes()
    for i in range(header_len(data)):
        bad = bytearray(data)
        bad[i] ^= mask
        model_file.write_bytes(bytes(bad))
        with pytest.raises(ValueError):
            load_model(model_file)


def test_flipped_data_bytes_refused_by_checksum(model_file):
    data = model_file.read_bytes()
    for i in range(header_len(data), len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        model_file.write_bytes(bytes(bad))
        with pytest.raises(ValueError, match="checksum"):
            load_model(model_file)


def good_parts():
    m = make((3, 4, 2), ("relu",), "softmax", "float32")
    tensors = {"0.weight": np.ascontiguousarray(m.weights[0].T), "0.bias": m.biases[0].copy(),
               "2.weight": np.ascontiguousarray(m.weights[1].T), "2.bias": m.biases[1].copy()}
    meta = {"format": "fastnn-mlp", "format_version": "1", "layer_sizes": "[3, 4, 2]",
            "activations": '["relu"]', "output": '"softmax"', "dtype": '"float32"'}
    return tensors, meta


def test_file_without_init_loads(tmp_path):
    tensors, meta = good_parts()
    path = tmp_path / "m.safetensors"
    save_state(path, tensors, meta)
    m = load_model(path)
    assert np.array_equal(m.weights[0], tensors["0.weight"].T)
    assert np.array_equal(m.biases[1], tensors["2.bias"])
    assert m.init == "auto"


def test_model_file_without_checksum_refused(tmp_path):
    """Without the checksum a renamed or dropped metadata key could go unnoticed."""
    tensors, meta = good_parts()
    path = tmp_path / "m.safetensors"
    safetensors.numpy.save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ValueError, match="checksum"):
        load_model(path)
    arrays, meta2 = load_state(path)  # the generic reader accepts unverified files
    assert meta2 == meta and set(arrays) == set(tensors)


def test_foreign_safetensors_file_refused(tmp_path):
    tensors, _ = good_parts()
    path = tmp_path / "m.safetensors"
    safetensors.numpy.save_file(tensors, str(path))  # e.g. written from a torch state_dict
    with pytest.raises(ValueError, match="not a fastnn model"):
        load_model(path)


def test_metadata_edit_caught_by_checksum(model_file):
    """A byte change that keeps the header valid JSON: "init" renamed to "hnit"."""
    data = model_file.read_bytes()
    assert data.count(b'"init"') == 1
    model_file.write_bytes(data.replace(b'"init"', b'"hnit"'))
    with pytest.raises(ValueError, match="checksum"):
        load_model(model_file)
    with pytest.raises(ValueError, match="checksum"):
        load_state(model_file)


def _drop(d, key):
    d = dict(d)
    del d[key]
    return d


BAD_META = [
    (lambda m: None, "no fastnn metadata"),
    (lambda m: {**m, "format": "something-else"}, "not a fastnn model"),
    (lambda m: _drop(m, "format"), "not a fastnn model"),
    (lambda m: {**m, "format_version": "3"}, "version"),
    (lambda m: {**m, "classes": '["a", "b", "c"]'}, "classes_ must list 2 labels"),
    (lambda m: {**m, "classes": '["a", "a"]'}, "repeat"),
    (lambda m: {**m, "classes": '["a", 1]'}, "list of values of one type"),
    (lambda m: {**m, "classes": '"ab"'}, "list of values"),
    (lambda m: {**m, "classes": "[]"}, "non-empty list"),
    (lambda m: {**m, "input_mean": "[0.0, 1.0, 2.0]"}, "without the other"),
    (lambda m: {**m, "input_mean": "[0.0, 1.0]", "input_std": "[1.0, 1.0]"}, r"shape \(3,\)"),
    (lambda m: {**m, "input_mean": "[0, 0, 0]", "input_std": "[1.0, 0.0, 1.0]"}, "std must be > 0"),
    (lambda m: {**m, "input_mean": '["a", 0, 0]', "input_std": "[1, 1, 1]"}, "one type"),
    (lambda m: {**m, "input_mean": '["a", "b", "c"]', "input_std": "[1, 1, 1]"}, "numeric"),
    (lambda m: _drop(m, "layer_sizes"), "layer_sizes"),
    (lambda m: _drop(m, "dtype"), "dtype"),
    (lambda m: {**m, "layer_sizes": "[3, 4"}, "not valid JSON"),
    (lambda m: {**m, "layer_sizes": "[3, 5, 2]"}, "shape"),
    (lambda m: {**m, "layer_sizes": "[3, 4, 2, 2]", "activations": '["relu", "relu"]'},
     "missing"),
    (lambda m: {**m, "layer_sizes": "[3]", "activations": "[]"}, "layer_sizes"),
    (lambda m: {**m, "layer_sizes": "[3, 0, 2]"}, "layer_sizes"),
    (lambda m: {**m, "layer_sizes": "[3, true, 2]"}, "layer_sizes"),
    (lambda m: {**m, "layer_sizes": '{"a": 1}'}, "layer_sizes"),
    (lambda m: {**m, "activations": '["swish"]'}, "unknown hidden activation 'swish'"),
    (lambda m: {**m, "activations": '["relu", "relu"]'}, "one name per hidden layer"),
    (lambda m: {**m, "activations": '"relu"'}, "one name per hidden layer"),
    (lambda m: {**m, "activations": "[1]"}, "unknown hidden activation"),
    (lambda m: {**m, "output": '"tanh"'}, "unknown output activation"),
    (lambda m: {**m, "output": "softmax"}, "not valid JSON"),
    (lambda m: {**m, "dtype": '"float16"'}, "unsupported dtype"),
    (lambda m: {**m, "dtype": '"float64"'}, "dtype float32"),
    (lambda m: {**m, "init": '"zeros"'}, "unknown init"),
]


@pytest.mark.parametrize("edit,match", BAD_META)
def test_inconsistent_metadata_refused(tmp_path, edit, match):
    tensors, meta = good_parts()
    path = tmp_path / "m.safetensors"
    save_state(path, tensors, edit(meta))  # valid checksum: the consistency checks must tell
    with pytest.raises(ValueError, match=match) as info:
        load_model(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("edit,match", [
    (lambda t: {**t, "0.weight": np.ascontiguousarray(t["0.weight"].T)}, "shape"),  # (in, out)
    (lambda t: {**t, "2.bias": np.zeros(3, np.float32)}, "shape"),
    (lambda t: {**t, "0.bias": t["0.bias"].astype(np.float64)}, "dtype float64"),
    (lambda t: {**t, "1.weight": np.zeros((2, 2), np.float32)}, "unexpected"),
    (lambda t: _drop(t, "2.bias"), "missing"),
    (lambda t: {**t, "0.weight": t["0.weight"].astype(np.int32)}, "dtype int32"),
])
def test_inconsistent_tensors_refused(tmp_path, edit, match):
    tensors, meta = good_parts()
    path = tmp_path / "m.safetensors"
    save_state(path, edit(tensors), meta)  # valid checksum: the consistency checks must tell
    with pytest.raises(ValueError, match=match):
        load_model(path)


def test_optimizer_state_file_is_not_a_model(tmp_path):
    path = tmp_path / "opt.safetensors"
    save_state(path, {"m": np.zeros(3)}, {"kind": "adam"})
    with pytest.raises(ValueError, match="not a fastnn model"):
        load_model(path)


# --------------------------------------------------------------------------- generic state
def test_state_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "f32": rng.normal(size=(3, 4)).astype(np.float32),
        "f64": rng.normal(size=7),
        "i64": np.arange(5, dtype=np.int64),
        "u8": np.arange(4, dtype=np.uint8),
        "flag": np.array([True, False]),
        "empty": np.zeros((0, 3)),
        "scalar": np.array(2.5),
        "strided": np.arange(12.0).reshape(3, 4).T,  # not contiguous: must not be garbled
        "big_endian": np.arange(3, dtype=">f8"),
    }
    meta = {"step": "10", "note": "ünïcode ok"}
    save_state(tmp_path / "s.safetensors", arrays, meta)
    back, meta2 = load_state(tmp_path / "s.safetensors")
    assert meta2 == meta
    assert set(back) == set(arrays)
    for k, a in arrays.items():
        assert back[k].shape == a.shape, k
        assert back[k].dtype == a.dtype.newbyteorder("="), k
        assert np.array_equal(back[k], a), k
        assert back[k].flags.writeable and back[k].flags.c_contiguous, k


def test_state_without_metadata(tmp_path):
    save_state(tmp_path / "s.safetensors", {"a": np.ones(2)})
    arrays, meta = load_state(tmp_path / "s.safetensors")
    assert meta == {} and np.array_equal(arrays["a"], np.ones(2))


@pytest.mark.parametrize("arrays,metadata,exc", [
    ({"a": np.array(["x"])}, None, TypeError),
    ({"a": np.array([object()])}, None, TypeError),
    ({"a": np.ones(2, np.complex128)}, None, TypeError),
    ({1: np.ones(2)}, None, TypeError),
    ([np.ones(2)], None, TypeError),
    ({"a": np.ones(2)}, {"k": 1}, TypeError),
    ({"a": np.ones(2)}, {"fastnn.sha256": "x"}, ValueError),
    ({"__metadata__": np.ones(2)}, None, ValueError),
])
def test_state_bad_arguments(tmp_path, arrays, metadata, exc):
    with pytest.raises(exc):
        save_state(tmp_path / "s.safetensors", arrays, metadata)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- atomic writes
def test_overwrite_replaces_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(make(seed=1), path)
    m2 = make(seed=2)
    save_model(m2, path)
    assert np.array_equal(load_model(path).params, m2.params)
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_permissions_follow_umask(tmp_path):
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    path = tmp_path / "m.safetensors"
    save_model(make(), path)
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)


@pytest.mark.parametrize("target,error", [
    ("replace", OSError("disk on fire")),
    ("fsync", OSError("I/O error")),
    ("replace", KeyboardInterrupt()),
])
def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, target, error):
    path = tmp_path / "m.safetensors"
    old = make(seed=1)
    save_model(old, path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(_files.os, target, fail)
    with pytest.raises(type(error)):
        save_model(make(seed=2), path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["m.safetensors"]
    assert path.read_bytes() == before
    assert np.array_equal(load_model(path).params, old.params)


def test_failed_write_of_new_file_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("no space left on device")
    monkeypatch.setattr(_files.os, "fsync", fail)
    with pytest.raises(OSError, match="no space"):
        save_state(tmp_path / "s.safetensors", {"a": np.ones(3)})
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_write_into_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        save_model(make(), tmp_path / "no" / "such" / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_temp_file_is_in_target_directory(tmp_path, monkeypatch):
    """os.replace is only atomic within one file system: the temp file must be a sibling."""
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((pathlib.Path(src), pathlib.Path(dst)))
        return real_replace(src, dst)
    monkeypatch.setattr(_files.os, "replace", spy)
    save_model(make(), tmp_path / "m.safetensors")
    (src, dst), = seen
    assert src.parent == dst.parent == tmp_path
    assert src.name.startswith(".m.safetensors.") and src.name.endswith(".tmp")


def test_long_file_name(tmp_path):
    """The temp name is capped: a 252-character target name must still work."""
    path = tmp_path / ("m" * 240 + ".safetensors")
    save_model(make(), path)
    assert np.array_equal(load_model(path).params, make().params)
    assert os.listdir(tmp_path) == [path.name]


# --------------------------------------------------------------------------- files from before
FIXTURES = pathlib.Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name, classes", [("softmax_float32", True),
                                           ("identity_float64", False)])
def test_a_file_saved_by_an_earlier_fastnn_still_loads_and_predicts_the_same(name, classes):
    # written by fastnn before models carried preprocessing and class names (format_version
    # "1", commit 5c704d4), with the predictions that fastnn made on X at the time
    model = load_model(FIXTURES / f"v1_{name}.safetensors")
    ref = np.load(FIXTURES / "v1_predictions.npz")
    expected = ref[name]
    # another BLAS may round differently: the saved and the current predictions are each
    # within one forward pass's rounding of the exact ones (tests/bounds.py), so within twice
    # that of each other rather than the same bits
    bounds.assert_close(model.predict(ref["X"]), expected,
                        2 * bounds.step_units(model.layer_sizes, 1), expected.dtype, name)
    if classes:
        assert np.array_equal(model.predict_classes(ref["X"]), ref[f"{name}_classes"])
        assert np.array_equal(model.predict_labels(ref["X"]), ref[f"{name}_classes"])
    assert model.classes_ is None and model.input_mean is None and model.input_std is None
