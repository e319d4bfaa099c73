"""Model and state files: safetensors containers, written atomically, never pickled.

A model file holds the tensors of the equivalent ``torch.nn.Sequential(Linear, act, Linear,
act, ..., Linear[, output act])`` under the keys of its ``state_dict`` ("0.weight" with shape
(fan_out, fan_in), "0.bias", "2.weight", ...), so ``safetensors.torch.load_file`` +
``load_state_dict`` loads it into torch as is. The architecture lives in the header metadata
(str -> str, JSON-encoded values)::

    format="fastnn-mlp", format_version="1", layer_sizes="[4, 5, 3]",
    activations='["relu"]', output='"softmax"', dtype='"float32"', init='"auto"'

A model that carries what it needs to be applied to raw rows adds (format_version "2")::

    classes='["setosa", "versicolor", "virginica"]'        (MLP.classes_)
    input_mean="[5.84, 3.05, ...]", input_std="[0.83, ...]"  (float64, exact round trip)

Version 2 is written only when one of these is present, so files without them stay
readable by older fastnn; an older fastnn refuses a version 2 file rather than apply it to
raw rows without its standardization. This fastnn reads both.

Every file written by `save_state` also carries a SHA-256 over its metadata and tensors (names,
dtypes, shapes, bytes) in the metadata key ``fastnn.sha256``. `load_state` checks it when
present, and `load_model` requires it, so a flipped weight byte or a renamed metadata key is
refused instead of silently loaded (corruption detection, not a signature against forgery).
"""
import hashlib
import json
import numbers
import os
import struct

import numpy as np

from ._files import as_path, atomic_write_bytes
from .model import DTYPES, HIDDEN_ACTIVATIONS, INITS, MLP, OUTPUT_ACTIVATIONS

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load_model", "load_state", "save_model",
           "save_state"]

FORMAT_NAME = "fastnn-mlp"
FORMAT_VERSION = "2"
_FORMAT_VERSIONS = ("1", "2")  # "1": no classes / input standardization
_CHECKSUM_KEY = "fastnn.sha256"
# safetensors itself refuses headers above 100 MB; checking first avoids decoding junk
_MAX_HEADER = 100_000_000
# a safetensors header nests 3 deep and fastnn's metadata values 1 deep; json.loads recurses
# once per level, so deeper text is refused before it is parsed
_MAX_JSON_DEPTH = 32
_MODEL_KEYS = ("format", "format_version", "layer_sizes", "activations", "output", "dtype")


# --------------------------------------------------------------------------- generic state files
def _checksum(arrays, metadata):
    """SHA-256 hex digest over the metadata items and (name, dtype, shape, bytes) of each
    array, in name order: a renamed metadata key is caught as well as a flipped weight."""
    h = hashlib.sha256()
    h.update(json.dumps(sorted(metadata.items())).encode())
    for name in sorted(arrays):
        # canonical form: dtype name and little-endian bytes, whatever the host byte order
        a = np.asarray(arrays[name])
        a = np.asarray(a, dtype=a.dtype.newbyteorder("<"), order="C")
        h.update(json.dumps([name, a.dtype.name, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _prepare(arrays):
    """Validated little-endian C-contiguous copies-or-views that safetensors can write."""
    if not isinstance(arrays, dict):
        raise TypeError(f"arrays must be a dict of str -> numpy array, got "
                        f"{type(arrays).__name__}")
    out = {}
    for name, a in arrays.items():
        if not isinstance(name, str):
            raise TypeError(f"array names must be str, got {name!r}")
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved by safetensors and cannot name an array")
        a = np.asarray(a)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"array {name!r} has dtype {a.dtype}; only bool, integer and float "
                            f"arrays can be stored")
        # safetensors reads raw memory from data_ptr: a strided view would be written as
        # garbage, so force C order (and little-endian, the format's byte order)
        # (np.asarray, not ascontiguousarray: that one turns 0-d arrays into shape (1,))
        out[name] = np.asarray(a, dtype=a.dtype.newbyteorder("<"), order="C")
    return out


def _check_metadata(metadata):
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict of str -> str, got {type(metadata).__name__}")
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"metadata must map str -> str, got {k!r}: {v!r}")
    if _CHECKSUM_KEY in metadata:
        raise ValueError(f"metadata key {_CHECKSUM_KEY!r} is reserved")
    return dict(metadata)


def save_state(path, arrays, metadata=None):
    """Atomically write named arrays and str -> str metadata to a safetensors file.

    Parameters
    ----------
    path : str or os.PathLike
    arrays : dict of str -> ndarray (bool, integer or float, any shape, including empty).
    metadata : dict of str -> str or None. The key "fastnn.sha256" is reserved (it stores the
        checksum that `load_state` verifies).
    """
    import safetensors.numpy

    path = as_path(path)
    arrays = _prepare(arrays)
    meta = _check_metadata(metadata)
    meta[_CHECKSUM_KEY] = _checksum(arrays, meta)
    data = safetensors.numpy.save(arrays, metadata=meta)
    atomic_write_bytes(path, data)


def _json_depth(raw, chunk=1 << 20):
    """The deepest nesting of [ and { outside strings in the JSON text `raw` (bytes), found
    without recursion, in chunks (numpy, a few passes per MB)."""
    data = np.frombuffer(raw, dtype=np.uint8)
    if np.count_nonzero((data == 0x5B) | (data == 0x7B)) <= _MAX_JSON_DEPTH:
        return 0  # too few brackets to nest deeper than allowed: the common case
    deepest = depth = 0
    in_string = 0
    run = 0  # backslashes right before the current chunk
    for lo in range(0, data.size, chunk):
        c = data[lo:lo + chunk]
        idx = np.arange(c.size)
        # the last non-backslash at or before each position (-1: only backslashes so far)
        last_plain = np.maximum.accumulate(np.where(c == 0x5C, -1, idx))
        before = np.empty(c.size, dtype=np.int64)  # backslashes right before each position
        before[0] = run
        before[1:] = np.where(last_plain[:-1] >= 0, idx[1:] - 1 - last_plain[:-1],
                              idx[1:] + run)
        quote = (c == 0x22) & (before % 2 == 0)  # an unescaped quote opens or closes a string
        quotes_before = np.cumsum(quote) - quote
        outside = ((quotes_before + in_string) % 2 == 0) & ~quote
        step = (((c == 0x5B) | (c == 0x7B)).astype(np.int64)
                - ((c == 0x5D) | (c == 0x7D)).astype(np.int64)) * outside
        levels = depth + np.cumsum(step)
        deepest = max(deepest, int(levels.max()))
        depth = int(levels[-1])
        in_string = (in_string + int(quote.sum())) % 2
        run = int(c.size - 1 - last_plain[-1]) if last_plain[-1] >= 0 else run + c.size
    return deepest


def _parse_json(raw, path, what):
    """json.loads(raw) for file content: nesting bounded, every failure a ValueError."""
    text = raw
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    depth = _json_depth(raw)
    if depth > _MAX_JSON_DEPTH:
        raise ValueError(f"{path}: {what} nests {depth} levels deep (at most "
                         f"{_MAX_JSON_DEPTH} allowed): not a file fastnn wrote")
    try:
        return json.loads(text if isinstance(text, str) else raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: {what} is not valid JSON ({type(exc).__name__}: "
                         f"{exc})") from None


def _header_length(head, size, path):
    """The header length from the first 8 bytes of a file of `size` bytes, checked."""
    if size == 0:
        raise ValueError(f"{path}: the file is empty, not a safetensors file")
    if size < 8:
        raise ValueError(f"{path}: only {size} bytes, too short to be a safetensors file")
    (n,) = struct.unpack("<Q", head[:8])
    if n > size - 8 or n > _MAX_HEADER:
        raise ValueError(f"{path}: not a safetensors file, or truncated: the header claims "
                         f"{n} bytes but the file has {size}")
    return n


def _parse_header(raw, path):
    """The parsed JSON header (bytes after the length); ValueError for anything that is not
    one."""
    header = _parse_json(raw, path, "the safetensors header")
    if not isinstance(header, dict):
        raise ValueError(  # noqa: TRY004  (bad file content, not a bad argument type)
            f"{path}: corrupted safetensors header: expected a JSON object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in meta.items()):
        raise ValueError(f"{path}: corrupted safetensors header: __metadata__ must map "
                         f"str -> str")
    return header


def _payload_size(header, path):
    """Bytes of tensor data that the header describes (the end of its last tensor)."""
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0
                           for o in offsets)):
            raise ValueError(f"{path}: corrupted safetensors header: tensor {name!r} has no "
                             f"valid data_offsets")
        end = max(end, offsets[1])
    return end


def _read_checked(path):
    """The file's bytes, read only after its header was checked: a junk or hostile file
    costs at most its (bounded) header in memory, not its whole size."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        n = _header_length(head, size, path)
        raw = f.read(n)
        if len(raw) != n:
            raise ValueError(f"{path}: truncated while reading the header")
        header = _parse_header(raw, path)
        payload = _payload_size(header, path)
        if size != 8 + n + payload:
            raise ValueError(f"{path}: corrupted or truncated safetensors file: the header "
                             f"describes {8 + n + payload} bytes but the file has {size}")
        # one read of the whole file: it is not held open or mapped (os.replace over it works
        # on Windows too) and the header and tensors we check come from the same bytes
        f.seek(0)
        data = f.read()
    if len(data) != size or data[8:8 + n] != raw:
        raise ValueError(f"{path}: the file changed while it was being read")
    return data, header


def _load_state(path):
    """(arrays, metadata, checksum_verified); see load_state."""
    import safetensors.numpy

    path = as_path(path)
    data, header = _read_checked(path)
    try:
        raw = safetensors.numpy.load(data)
    except Exception as exc:  # noqa: BLE001  SafetensorError & co: bad offsets, dtypes, sizes
        raise ValueError(f"{path}: corrupted or truncated safetensors file: {exc}") from None
    # copies: writable, native byte order, independent of the file's bytes
    arrays = {k: np.array(v, dtype=v.dtype.newbyteorder("=")) for k, v in raw.items()}
    meta = dict(header.get("__metadata__", {}))
    expected = meta.pop(_CHECKSUM_KEY, None)
    if expected is not None and expected != _checksum(arrays, meta):
        raise ValueError(f"{path}: checksum mismatch: the tensors or metadata were modified "
                         f"or corrupted after the file was written")
    return arrays, meta, expected is not None


def load_state(path):
    """Read a safetensors file into (arrays, metadata).

    Returns
    -------
    arrays : dict of str -> ndarray, writable copies in native byte order.
    metadata : dict of str -> str (without the internal checksum key).

    Raises FileNotFoundError if `path` does not exist and ValueError naming the file for
    anything that is not an intact safetensors file (empty, truncated, random bytes, a pickle,
    a corrupted header, a checksum mismatch). Files written by other tools without the fastnn
    checksum load unverified. Nothing is ever unpickled: safetensors holds raw numbers only.
    The 8-byte length and the header (at most 100 MB, JSON nested at most 32 deep) are read
    and checked before the rest: a junk file costs its header, not its size.
    """
    arrays, meta, _ = _load_state(path)
    return arrays, meta


# --------------------------------------------------------------------------- models
def _linear_keys(n_layers):
    """state_dict keys of torch.nn.Sequential(Linear, act, Linear, ...): Linear l at index 2l."""
    return [(f"{2 * l}.weight", f"{2 * l}.bias") for l in range(n_layers)]


def save_model(model, path):
    """Atomically write `model` (an fastnn MLP) to a safetensors file at `path`.

    Tensors: "{2l}.weight" = W_l.T with shape (fan_out, fan_in) and "{2l}.bias" (fan_out,), in
    the model's dtype: the state_dict of the matching torch.nn.Sequential. Metadata: format,
    format_version, layer_sizes, activations, output, dtype, init, and when the model has
    them classes, input_mean and input_std, and for a model with dropout its rates, dropout
    (one per hidden layer) and input_dropout (JSON-encoded strings). Dropout has no
    parameters, so the tensors (and the torch layout) are those of the same network without
    it; files without the dropout keys load with no dropout.
    """
    arrays = {}
    for (wk, bk), W, b in zip(_linear_keys(len(model.weights)), model.weights, model.biases):
        arrays[wk] = np.ascontiguousarray(np.asarray(W).T)  # torch Linear stores (out, in)
        arrays[bk] = np.ascontiguousarray(b)
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "layer_sizes": json.dumps([int(s) for s in model.layer_sizes]),
        "activations": json.dumps(list(model.activations)),
        "output": json.dumps(model.output),
        "dtype": json.dumps(np.dtype(model.dtype).name),
    }
    init = getattr(model, "init", None)
    if isinstance(init, str):
        meta["init"] = json.dumps(init)
    if any(model.dropout) or model.input_dropout:
        meta["dropout"] = json.dumps([float(p) for p in model.dropout])
        meta["input_dropout"] = json.dumps(float(model.input_dropout))
    extras = {"classes": model.classes_, "input_mean": model.input_mean,
              "input_std": model.input_std}
    # tolist: Python str/int/bool/float, and json writes floats as repr (exact round trip)
    meta.update({k: json.dumps(v.tolist()) for k, v in extras.items() if v is not None})
    meta["format_version"] = FORMAT_VERSION if len(meta) > len(_MODEL_KEYS) + 1 else "1"
    save_state(path, arrays, meta)


def _meta_json(meta, key, path):
    return _parse_json(meta[key], path, f"metadata {key!r}")


def _parse_architecture(meta, path):
    """(layer_sizes, activations, output, dtype name, init) from model metadata, validated."""

    fmt = meta.get("format")
    if fmt != FORMAT_NAME:
        what = "has no fastnn metadata" if fmt is None else f"has format {fmt!r}"
        raise ValueError(f"{path}: not a fastnn model file: the safetensors header {what} "
                         f"(expected format={FORMAT_NAME!r})")
    version = meta.get("format_version")
    if version not in _FORMAT_VERSIONS:
        raise ValueError(f"{path}: unsupported fastnn model format version {version!r}; this "
                         f"fastnn reads version {FORMAT_VERSION!r} (a newer fastnn wrote it?)")
    missing = [k for k in _MODEL_KEYS if k not in meta]
    if missing:
        raise ValueError(f"{path}: fastnn model metadata lacks {', '.join(missing)}")

    sizes = _meta_json(meta, "layer_sizes", path)
    if (not isinstance(sizes, list) or len(sizes) < 2
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0
                       for s in sizes)):
        raise ValueError(f"{path}: metadata layer_sizes must be a list of at least two "
                         f"positive integers, got {meta['layer_sizes']!r}")
    acts = _meta_json(meta, "activations", path)
    if not isinstance(acts, list) or len(acts) != len(sizes) - 2:
        raise ValueError(f"{path}: metadata activations must list one name per hidden layer "
                         f"({len(sizes) - 2}), got {meta['activations']!r}")
    for a in acts:
        if not isinstance(a, str) or a not in HIDDEN_ACTIVATIONS:
            raise ValueError(f"{path}: unknown hidden activation {a!r} in metadata; valid: "
                             f"{', '.join(sorted(HIDDEN_ACTIVATIONS))}")
    output = _meta_json(meta, "output", path)
    if not isinstance(output, str) or output not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"{path}: unknown output activation {output!r} in metadata; valid: "
                         f"{', '.join(sorted(OUTPUT_ACTIVATIONS))}")
    dtype = _meta_json(meta, "dtype", path)
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ValueError(f"{path}: unsupported dtype {dtype!r} in metadata; valid: "
                         f"{', '.join(DTYPES)}")
    init = _meta_json(meta, "init", path) if "init" in meta else "auto"
    if not isinstance(init, str) or init not in INITS:
        raise ValueError(f"{path}: unknown init {init!r} in metadata; valid: {', '.join(INITS)}")
    return [int(s) for s in sizes], acts, output, dtype, init


def load_model(path):
    """Read a model written by `save_model` and return a new MLP with bit-identical params,
    and its classes_ and input standardization when the file has them (format_version 2).

    Raises FileNotFoundError if `path` does not exist, and ValueError naming the file and the
    problem for foreign files (no fastnn metadata, a pickle, random bytes, empty), truncated or
    corrupted files, and inconsistent ones (tensor names, shapes or dtypes that disagree with
    the metadata, unknown activations). Non-finite weights are kept as they are.
    """

    path = as_path(path)
    arrays, meta, verified = _load_state(path)
    sizes, acts, output, dtype, init = _parse_architecture(meta, path)
    if not verified:
        # save_model always writes one; without it a renamed or dropped key would go unseen
        raise ValueError(f"{path}: fastnn model file without its {_CHECKSUM_KEY!r} metadata "
                         f"checksum: tampered with, or not written by fastnn.save_model")
    keys = _linear_keys(len(sizes) - 1)
    expected = {k for pair in keys for k in pair}
    if set(arrays) != expected:
        extra = sorted(set(arrays) - expected)
        missing = sorted(expected - set(arrays))
        raise ValueError(f"{path}: tensors do not match layer_sizes {sizes}: "
                         f"missing {missing}, unexpected {extra}")
    # check every tensor before allocating a model whose size the metadata claims
    for l, (wk, bk) in enumerate(keys):
        for key, shape in ((wk, (sizes[l + 1], sizes[l])), (bk, (sizes[l + 1],))):
            a = arrays[key]
            if a.shape != shape:
                raise ValueError(f"{path}: tensor {key!r} has shape {a.shape}, but layer_sizes "
                                 f"{sizes} needs {shape}")
            if a.dtype != np.dtype(dtype):
                raise ValueError(f"{path}: tensor {key!r} has dtype {a.dtype}, but the metadata "
                                 f"says {dtype}")
    dropout = _meta_json(meta, "dropout", path) if "dropout" in meta else 0.0
    input_dropout = _meta_json(meta, "input_dropout", path) if "input_dropout" in meta else 0.0
    try:
        model = MLP(sizes, list(acts), output=output, init=init, dtype=dtype, seed=0,
                    dropout=dropout, input_dropout=input_dropout)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid dropout metadata: {exc}") from None
    for l, (wk, bk) in enumerate(keys):
        # same dtype on both sides: a plain copy of the bits, NaN payloads included
        model.weights[l][...] = arrays[wk].T
        model.biases[l][...] = arrays[bk]
    _load_extras(model, meta, path)
    return model


def _load_extras(model, meta, path):
    """Set classes_ and the input standardization from the metadata, when present."""
    values = {}
    for key in ("classes", "input_mean", "input_std"):
        if key not in meta:
            continue
        v = _meta_json(meta, key, path)
        kinds = {type(x) for x in v} if isinstance(v, list) else {dict}
        # one JSON type for all items (an int list may hold floats written as 1.0: no)
        if not v or len(kinds) != 1 or not kinds <= {str, int, float, bool}:
            raise ValueError(f"{path}: metadata {key!r} must be a non-empty list of values "
                             f"of one type, got {meta[key][:100]!r}")
        values[key] = np.array(v)
    if ("input_mean" in values) != ("input_std" in values):
        raise ValueError(f"{path}: metadata has one of input_mean and input_std without the "
                         f"other")
    try:
        if "classes" in values:
            model.classes_ = values["classes"]
        if "input_mean" in values:
            model.set_input_standardization(values["input_mean"], values["input_std"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: inconsistent metadata: {exc}") from None
