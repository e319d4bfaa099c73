"""The MLP: architecture as small integer arrays, all parameters in one flat buffer."""
import copy
import threading
from contextlib import contextmanager

import numpy as np

from . import _threads
from ._kernels import dense as _dense
from ._kernels import losses as _losses
from ._kernels.bundles import Activations, Network
from ._kernels.dropout import dropout_sites, with_seed
from ._kernels.layer import scratch_size
from ._kernels.network import forward_loss_backward
from ._kernels.static import Static
from ._validation import (
    all_finite,
    as_numeric,
    check_choice,
    check_dropout,
    check_features,
    check_flag,
    check_positive_int,
    check_seed,
    check_targets,
)

HIDDEN_ACTIVATIONS = {
    "identity": _dense.IDENTITY,
    "sigmoid": _dense.SIGMOID,
    "tanh": _dense.TANH,
    "relu": _dense.RELU,
    "leaky_relu": _dense.LEAKY_RELU,
    "elu": _dense.ELU,
    "gelu": _dense.GELU,
}
OUTPUT_ACTIVATIONS = {
    "identity": _dense.IDENTITY,
    "sigmoid": _dense.SIGMOID,
    "softmax": _dense.SOFTMAX,
}
LOSSES = {
    "mse": _losses.MSE,
    "cross_entropy": _losses.CROSS_ENTROPY,
    "binary_cross_entropy": _losses.BINARY_CROSS_ENTROPY,
}
# the output activation each loss is defined on (mse takes any)
LOSS_OUTPUT = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}
DEFAULT_LOSS = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy",
                "identity": "mse"}
INITS = ("auto", "he_uniform", "he_normal", "glorot_uniform", "glorot_normal")
DTYPES = ("float32", "float64")
_RELU_FAMILY = ("relu", "leaky_relu", "elu", "gelu")
# predict/evaluate workspaces kept per model for reuse; concurrent calls beyond this many
# allocate their own (each call holds one workspace for itself while the kernel runs)
WORKSPACE_POOL = 4


def resolve_loss(loss, output):
    """Validated loss name for a model output; None picks the natural one for the output."""
    if loss is None:
        return DEFAULT_LOSS[output]
    check_choice(loss, "loss", LOSSES)
    need = LOSS_OUTPUT.get(loss)
    if need is not None and output != need:
        raise ValueError(f"loss={loss!r} needs output={need!r}, but the model's output is "
                         f"{output!r}")
    return loss


class Workspace:
    """Activation, pre-activation and delta buffers for batches of up to `capacity` rows;
    `empty(shape, dtype=...)` allocates them (np.empty; numba.cuda.device_array for the GPU).
    z_units: the units Z holds per row, all of them by default (the CPU kernels find layer l's
    block of Z at the same offset as its block of A); the GPU asks for only the layers that
    keep their pre-activation (cuda/network.py z_block)."""

    def __init__(self, model, capacity, empty=np.empty, z_units=None):
        units = int(np.sum(model.layer_sizes[1:]))
        dt = model.dtype
        self.capacity = capacity
        self.A = empty(capacity * units, dtype=dt)  # act(z), every layer
        # pre-activations kept for the backward
        self.Z = empty(capacity * (units if z_units is None else int(z_units)), dtype=dt)
        self.D = empty(capacity * units, dtype=dt)  # deltas dL/dz
        self.xb = empty(capacity * model.layer_sizes[0], dtype=dt)  # gathered batch
        self.yb_index = empty(capacity, dtype=np.int64)
        self.yb_float = empty(capacity * model.layer_sizes[-1], dtype=dt)
        # the same buffers as the kernels take them
        self.buffers = Activations(self.xb, self.yb_index, self.yb_float, self.A, self.Z,
                                   self.D)


class MLP:
    """A fully-connected network y = act_L(... act_1(x @ W_0 + b_0) ... @ W_{L-1} + b_{L-1}).

    Parameters
    ----------
    layer_sizes : sequence of int, the widths [n_in, hidden..., n_out] (at least two).
    activation : str or list of str, hidden activation(s), one for all or one per hidden layer:
        identity, sigmoid, tanh, relu, leaky_relu (slope 0.01), elu (alpha 1), gelu (erf form).
    output : "identity", "sigmoid" or "softmax".
    init : "auto" (He normal before ReLU-family activations, Glorot uniform elsewhere),
        "he_uniform", "he_normal", "glorot_uniform" or "glorot_normal". Biases start at 0.
    dtype : "float32" (default) or "float64".
    seed : int or None, seeds the initialization.
    dropout : float or list of floats in [0, 1), one for all or one per hidden layer: during
        training each hidden unit's output is zeroed with this probability and the survivors
        are scaled by 1 / (1 - p) (torch's nn.Dropout, inverted dropout). predict, evaluate,
        validation and loss_and_grad use the whole network (unless loss_and_grad is asked for
        training=True). The mask is a hash of (seed, optimizer step, layer, row, unit): the
        same on every thread count and device, and a resumed fit draws the same masks.
    input_dropout : float in [0, 1), the same for the input features (0.2 in Hinton et al.).

    All parameters live in one flat array `params` laid out [W_0, b_0, W_1, b_1, ...];
    `weights[l]` (fan_in, fan_out) and `biases[l]` (fan_out,) are writable views into it.

    What the model needs to be applied to raw data travels with it (and in its file):
    `set_input_standardization(mean, std)` makes every entry point (predict, evaluate,
    Trainer.fit, ...) take raw features and feed (X - mean) / std to the network, like a Keras
    Normalization layer in front of it; `classes_` names the classes of a classifier's outputs
    (scikit-learn's attribute), which `predict_labels` returns.

    copy.deepcopy, pickle (process pools, joblib) and `copy()` give a whole model: its weights
    and biases view its own params. predict and evaluate may run on one model from several
    threads at once (each call computes in a workspace of its own).
    """

    def __init__(self, layer_sizes, activation="relu", output="identity", init="auto",
                 dtype="float32", seed=None, dropout=0.0, input_dropout=0.0):
        if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__"):
            raise TypeError(f"layer_sizes must be a sequence of positive integers, got "
                            f"{layer_sizes!r}")
        if len(layer_sizes) < 2:
            raise ValueError(f"layer_sizes needs at least an input and an output size, got "
                             f"{list(layer_sizes)!r}")
        sizes = tuple(check_positive_int(s, f"layer_sizes[{i}]")
                      for i, s in enumerate(layer_sizes))
        n_hidden = len(sizes) - 2
        if isinstance(activation, str):
            check_choice(activation, "activation", HIDDEN_ACTIVATIONS)  # even with no hidden
            acts = (activation,) * n_hidden
        else:
            try:
                acts = tuple(activation)
            except TypeError:
                raise TypeError(f"activation must be a name or a list of names, got "
                                f"{activation!r}") from None
            if len(acts) != n_hidden:
                raise ValueError(f"activation lists {len(acts)} names but there are {n_hidden} "
                                 f"hidden layers")
        for a in acts:
            check_choice(a, "activation", HIDDEN_ACTIVATIONS)
        check_choice(output, "output", OUTPUT_ACTIVATIONS)
        check_choice(init, "init", INITS)
        if isinstance(dtype, str):
            check_choice(dtype, "dtype", DTYPES)
        try:
            if dtype is None:  # np.dtype(None) would silently be float64
                raise TypeError
            dt = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
        if dt.name not in DTYPES:
            raise ValueError(f"unknown dtype {dt.name!r}; valid: {', '.join(DTYPES)}")

        seed = check_seed(seed)
        rates = check_dropout(dropout, input_dropout, n_hidden)

        # read-only properties below: the kernels trust the private copies, so a rebound
        # layer_sizes or dtype must not let a wrong-width or wrong-dtype X through the checks
        self._layer_sizes = sizes
        self._activations = acts
        self._output = output
        self._init = init
        self._dtype = dt
        L = len(sizes) - 1
        # the architecture as data for the kernels
        self._sizes = np.array(sizes, dtype=np.int64)
        self._acts = np.array([HIDDEN_ACTIVATIONS[a] for a in acts]
                              + [OUTPUT_ACTIVATIONS[output]], dtype=np.int64)
        self._unit_off = np.concatenate([[0], np.cumsum(sizes[1:])]).astype(np.int64)
        self._w_off = np.empty(L, dtype=np.int64)
        self._b_off = np.empty(L, dtype=np.int64)
        off = 0
        for l in range(L):
            self._w_off[l] = off
            off += sizes[l] * sizes[l + 1]
            self._b_off[l] = off
            off += sizes[l + 1]
        self._params = np.zeros(off, dtype=dt)
        self._dropout_rates = rates  # (input_dropout, hidden layer 1, ...): one per site
        self._dropout = dropout_sites(rates)  # the kernels' Dropout bundle (its own arrays)
        self._derived()
        self._classes = None      # (n_classes,) labels of the outputs, or None
        self._input_mean = None   # float64 (n_inputs,) standardization, or None
        self._input_std = None
        self.initialize(seed)

    # derived attributes, rebuilt rather than copied: views into _params and the workspace pool
    _DERIVED = ("_weights", "_biases", "_layout", "_ws_pool", "_ws_lock")

    def _derived(self):
        sizes, L = self._layer_sizes, len(self._layer_sizes) - 1
        if (self._params.ndim != 1 or not self._params.flags.c_contiguous
                or self._params.dtype != self._dtype
                or self._params.size != int(self._b_off[-1]) + sizes[-1]):
            raise ValueError("corrupted MLP state: params do not match the architecture")
        self._weights = tuple(
            self._params[self._w_off[l]:self._b_off[l]].reshape(sizes[l], sizes[l + 1])
            for l in range(L))
        self._biases = tuple(self._params[self._b_off[l]:self._b_off[l] + sizes[l + 1]]
                             for l in range(L))
        self._layout = Network(self._sizes, self._acts, self._w_off, self._b_off,
                               self._unit_off)
        self._ws_pool = []  # idle predict/evaluate workspaces
        self._ws_lock = threading.Lock()

    def __getstate__(self):
        # weights/biases would be unpickled as arrays of their own, no longer views of params
        return {k: v for k, v in self.__dict__.items() if k not in self._DERIVED}

    def __setstate__(self, state):
        state = dict(state)
        state.pop("_predict_ws", None)  # a shared workspace, before the pool
        self.__dict__.update(state)
        self._derived()

    # ------------------------------------------------------------------ structure
    @property
    def init(self):
        """The initialization scheme name (read-only: it is part of the saved architecture)."""
        return self._init

    @property
    def layer_sizes(self):
        """(n_in, hidden..., n_out), fixed at construction."""
        return self._layer_sizes

    @property
    def activations(self):
        """The hidden activations' names, one per hidden layer."""
        return self._activations

    @property
    def output(self):
        return self._output

    @property
    def dtype(self):
        return self._dtype

    @property
    def dropout(self):
        """The drop probability of each hidden layer's output (a tuple, read-only: it is part of
        the saved architecture)."""
        return self._dropout_rates[1:]

    @property
    def input_dropout(self):
        """The drop probability of the input features."""
        return self._dropout_rates[0]

    def dropout_layout(self, seed):
        """The dropout as the kernels read it: a Dropout bundle (fastnn/_kernels/bundles.py) of
        this model's sites keyed by `seed` (a non-negative int)."""
        return with_seed(self._dropout, seed)

    @property
    def params(self):
        """All parameters, one flat (n_params,) array [W_0, b_0, W_1, b_1, ...].

        `model.params = values` copies into this buffer (weights, biases and the kernels keep
        pointing at it) after checking that values has n_params numbers."""
        return self._params

    @params.setter
    def params(self, values):
        arr = as_numeric(values, "params")
        if arr.shape != self._params.shape:
            raise ValueError(f"params must have shape ({self._params.size},) for layer_sizes "
                             f"{list(self.layer_sizes)}, got {arr.shape}")
        self._params[...] = arr

    @property
    def weights(self):
        """Tuple of the (fan_in, fan_out) views W_l into params (assign with W[...] = ...)."""
        return self._weights

    @property
    def biases(self):
        """Tuple of the (fan_out,) views b_l into params."""
        return self._biases

    @property
    def n_layers(self):
        """Number of dense layers (weight matrices)."""
        return len(self.layer_sizes) - 1

    @property
    def n_params(self):
        return self.params.size

    @property
    def n_inputs(self):
        return self.layer_sizes[0]

    @property
    def n_outputs(self):
        return self.layer_sizes[-1]

    @property
    def classes_(self):
        """The class labels of a classifier's outputs (1-D array), or None (the default).

        Output j (softmax), or 0/1 for a single sigmoid output, is class classes_[j]; as
        scikit-learn's classifiers, `fastnn train` stores the sorted labels (np.unique).
        Assign a sequence of unique labels (str, int, bool or float) to set it, None to
        clear it. Used by `predict_labels` and saved with the model."""
        return None if self._classes is None else self._classes.copy()

    @classes_.setter
    def classes_(self, classes):
        if classes is None:
            self._classes = None
            return
        arr = np.asarray(classes)
        if arr.dtype.kind == "S":
            arr = np.char.decode(arr, "utf-8")
        if arr.ndim != 1 or arr.dtype.kind not in "biufU":
            raise TypeError(f"classes_ must be a 1-D sequence of str, int, bool or float "
                            f"labels, got {arr.dtype} with shape {arr.shape}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError("classes_ must not contain NaN or infinity")
        need = {"softmax": self.n_outputs,
                "sigmoid": 2 if self.n_outputs == 1 else None}.get(self.output)
        if need is None:
            raise ValueError(f"classes_ names the classes of a softmax output or of a single "
                             f"sigmoid output; this model has output={self.output!r} with "
                             f"{self.n_outputs} output(s)")
        if arr.size != need:
            raise ValueError(f"classes_ must list {need} labels for this model's "
                             f"{self.output} output, got {arr.size}")
        if np.unique(arr).size != arr.size:
            raise ValueError("classes_ must not repeat a label")
        self._classes = arr.copy()

    @property
    def input_mean(self):
        """float64 (n_inputs,) subtracted from every input, or None (no standardization)."""
        return None if self._input_mean is None else self._input_mean.copy()

    @property
    def input_std(self):
        """float64 (n_inputs,) dividing every centred input, or None."""
        return None if self._input_std is None else self._input_std.copy()

    def set_input_standardization(self, mean, std):
        """From now on, the network sees (X - mean) / std for raw features X.

        mean, std : (n_inputs,) finite numbers, std > 0 (e.g. `fastnn.data.standardization`
            of the training features), kept in float64; both None removes the step. The
            arithmetic is done in float64, then the result cast to the model's dtype.
        Returns the model."""
        if mean is None and std is None:
            self._input_mean = self._input_std = None
            return self
        arrays = []
        for value, name in ((mean, "mean"), (std, "std")):
            if value is None:
                raise ValueError(f"{name} is None: pass both mean and std, or both None")
            arr = as_numeric(value, name).astype(np.float64)
            if arr.shape != (self.n_inputs,):
                raise ValueError(f"{name} must have shape ({self.n_inputs},), one value per "
                                 f"input, got {arr.shape}")
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} contains NaN or infinity")
            arrays.append(arr)
        if not (arrays[1] > 0).all():
            raise ValueError("std must be > 0 everywhere (replace a constant feature's 0 by 1)")
        self._input_mean, self._input_std = arrays
        return self

    def preprocess(self, X, name="X"):
        """X (n, n_inputs) as the input layer sees it: checked (2-D, finite, n_inputs
        columns), standardized when the model has an input standardization, C-contiguous in
        the model's dtype. Every entry point calls it; `name` is used in error messages.
        X itself when it already is that and needs no standardization (no copy)."""
        if self._input_mean is None:
            return check_features(X, self.n_inputs, self.dtype, name)
        arr = as_numeric(X, name)
        # checked in its own float dtype (no copy), standardized in float64 blocks of about
        # 8 MB: no float64 copy of a large X beside the result
        arr = check_features(arr, self.n_inputs,
                             arr.dtype if arr.dtype.kind == "f" else np.float64, name)
        out = np.empty(arr.shape, dtype=self.dtype)
        step = max(1, 2**20 // arr.shape[1])
        with np.errstate(over="ignore"):  # a float32 overflow is caught just below
            for i in range(0, arr.shape[0], step):
                block = arr[i:i + step].astype(np.float64)
                out[i:i + step] = (block - self._input_mean) / self._input_std
        if not all_finite(out):
            raise ValueError(f"{name} standardized has values too large for the model's "
                             f"dtype {self.dtype}")
        return out

    def config(self):
        """The constructor arguments that rebuild this architecture."""
        return {"layer_sizes": list(self.layer_sizes), "activation": list(self.activations),
                "output": self.output, "init": self.init, "dtype": self.dtype.name,
                "dropout": list(self.dropout), "input_dropout": self.input_dropout}

    def __repr__(self):
        acts = self.activations
        act = repr(acts[0]) if acts and len(set(acts)) == 1 else repr(list(acts))
        init = f", init={self.init!r}" if self.init != "auto" else ""
        drop = ""
        if any(self._dropout_rates):
            drop = (f", dropout=[{', '.join(f'{p:g}' for p in self.dropout)}], "
                    f"input_dropout={self.input_dropout:g}")
        extra = [f"{self.n_params} params"]
        if self._input_mean is not None:
            extra.append("standardized inputs")
        if self._classes is not None:
            extra.append(f"classes {_short_list(self._classes)}")
        return (f"MLP({list(self.layer_sizes)}, activation={act}, output={self.output!r}"
                f"{init}, dtype={self.dtype.name!r}{drop}; {', '.join(extra)})")

    def summary(self, print_fn=print):
        """Print a Keras-like table of the layers: name, input and output shapes (None is
        the batch axis), activation and parameter count, then the totals. `print_fn` receives
        the whole text (e.g. lambda s: print(s, file=sys.stderr)); returns None."""
        rows = [("Layer", "Input shape", "Output shape", "Activation", "Params")]
        if self._input_mean is not None:
            shape = f"(None, {self.n_inputs})"
            rows.append(("standardize", shape, shape, "(x - mean) / std", "-"))
        acts = list(self.activations) + [self.output]
        for l, W in enumerate(self.weights):
            fan_in, fan_out = W.shape
            p = self._dropout_rates[l]
            if p:  # the dropout of this layer's input (Keras lists a Dropout layer)
                rows.append((f"dropout_{l}", f"(None, {fan_in})", f"(None, {fan_in})",
                             f"p={p:g} (training)", "-"))
            rows.append((f"dense_{l}", f"(None, {fan_in})", f"(None, {fan_out})", acts[l],
                         f"{fan_in * fan_out + fan_out:,}"))
        widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]

        def line(row):  # params right-aligned, the rest left
            return "  ".join(c.rjust(w) if k == 4 else c.ljust(w)
                             for k, (c, w) in enumerate(zip(row, widths))).rstrip()

        rule = "-" * len(line(rows[0]))
        nbytes = self.n_params * self.dtype.itemsize
        title = (f"MLP: {self.n_inputs} inputs -> {self.n_outputs} outputs, "
                 f"dtype {self.dtype.name}, init {self.init}")
        text = [title, rule, line(rows[0]), rule, *(line(r) for r in rows[1:]), rule,
                f"Total params: {self.n_params:,} ({_human_bytes(nbytes)})"]
        if self._classes is not None:
            text.append(f"Classes ({self._classes.size}): {_short_list(self._classes, 10)}")
        print_fn("\n".join(text))

    def initialize(self, seed=None):
        """Draw fresh weights (biases to zero) with the model's init scheme."""
        rng = np.random.default_rng(check_seed(seed))
        for l, W in enumerate(self.weights):
            fan_in, fan_out = W.shape
            follows = self.activations[l] if l < len(self.activations) else self.output
            scheme = self.init
            if scheme == "auto":
                scheme = "he_normal" if follows in _RELU_FAMILY else "glorot_uniform"
            if scheme == "he_normal":
                W[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), W.shape)
            elif scheme == "he_uniform":
                lim = np.sqrt(6.0 / fan_in)
                W[...] = rng.uniform(-lim, lim, W.shape)
            elif scheme == "glorot_normal":
                W[...] = rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), W.shape)
            else:
                lim = np.sqrt(6.0 / (fan_in + fan_out))
                W[...] = rng.uniform(-lim, lim, W.shape)
            self.biases[l][...] = 0
        return self

    def copy(self):
        """An independent model with the same architecture and parameters (copy.deepcopy)."""
        return copy.deepcopy(self)

    # ------------------------------------------------------------------ compute
    @property
    def layout(self):
        """The architecture as the kernels read it: a Network bundle (fastnn/_kernels/
        bundles.py) of int64 arrays, sizes, acts, w_off, b_off and unit_off."""
        return self._layout

    @contextmanager
    def _workspace(self, batch_size):
        """A workspace of capacity >= batch_size for this call alone (the kernels run without
        the GIL, so concurrent calls must not share one), taken from and returned to a small
        per-model pool."""
        with self._ws_lock:
            fits = [i for i, w in enumerate(self._ws_pool) if w.capacity >= batch_size]
            ws = self._ws_pool.pop(fits[0]) if fits else None
        if ws is None:
            ws = Workspace(self, batch_size)
        try:
            yield ws
        finally:
            with self._ws_lock:
                if len(self._ws_pool) < WORKSPACE_POOL:
                    self._ws_pool.append(ws)

    def predict(self, X, batch_size=1024):
        """Network output for X (n, n_inputs): probabilities for softmax/sigmoid outputs.
        (X is standardized first when the model has an input standardization.)"""
        X = self.preprocess(X)
        batch_size = check_positive_int(batch_size, "batch_size")
        B = min(batch_size, X.shape[0])
        out = np.empty((X.shape[0], self.n_outputs), dtype=self.dtype)
        # (no targets, so no loss is computed; the fit's loss shares the fit's compiled kernel)
        self._evaluate_batches(X, np.empty(0, np.int64),
                               np.empty((0, self.n_outputs), self.dtype), B,
                               LOSSES[resolve_loss(None, self.output)], out)
        return out

    def predict_classes(self, X, batch_size=1024):
        """Class indices: argmax for softmax outputs (n,), p > 0.5 for sigmoid outputs
        (n, n_outputs); `predict_labels` maps them to `classes_`."""
        p = self.predict(X, batch_size)
        if self.output == "softmax":
            return np.argmax(p, axis=1)
        if self.output == "sigmoid":
            return (p > 0.5).astype(np.int64)
        raise ValueError("predict_classes needs a softmax or sigmoid output; this model's "
                         f"output is {self.output!r}")

    def predict_labels(self, X, batch_size=1024):
        """Predicted class labels: classes_[predict_classes(X)], shape (n,); the class indices
        when the model has no classes_ (for a single sigmoid output, 0/1 of shape (n,))."""
        indices = self.predict_classes(X, batch_size)
        if self.output == "sigmoid" and self.n_outputs == 1:
            indices = indices[:, 0]
        return indices if self._classes is None else self._classes[indices]

    def evaluate(self, X, y, loss=None, batch_size=1024):
        """Mean loss (torch reduction) and accuracy (None for mse) on (X, y). y holds class
        indices (or targets), as in fit; `fastnn.data.encode_labels(y, model.classes_)`
        turns labels into indices."""
        loss = resolve_loss(loss, self.output)
        X = self.preprocess(X)
        y_index, y_float = check_targets(y, X.shape[0], self.n_outputs, loss, self.dtype)
        batch_size = check_positive_int(batch_size, "batch_size")
        B = min(batch_size, X.shape[0])
        stats = self._evaluate_batches(X, y_index, y_float, B, LOSSES[loss],
                                       np.empty((0, self.n_outputs), self.dtype))
        return _loss_from_stats(stats), _accuracy_from_stats(stats, loss)

    def _evaluate_batches(self, X, y_index, y_float, B, loss_code, out):
        """evaluate_batches over X in batches of B on all cores that the work warrants (the
        training loop's rule, _threads.train_threads); returns the summed loss stats (4,)."""
        n_threads = _threads.train_threads(self.layer_sizes, B)
        scratch = np.empty((n_threads, scratch_size(self.layer_sizes) if n_threads > 1 else 0),
                           self.dtype)
        with _threads.compute_threads(self.layer_sizes, B, n_threads), self._workspace(B) as ws:
            return _threads.evaluate_on_threads(self.layout, self.params, X, y_index, y_float,
                                                B, loss_code, out, ws, n_threads, scratch)

    def loss_and_grad(self, X, y, loss=None, training=False, seed=0, step=1):
        """Full-batch mean loss and its gradient: (float, flat array in the layout of params).

        training=True applies the model's dropout as a training step would: the masks of
        optimizer step `step` (from 1) under dropout seed `seed` (a Trainer's seed), with row i
        of X as row i of the step's batch. The masks are a function of these counters, so
        repeated calls (a finite-difference gradient check) see the same network."""
        loss = resolve_loss(loss, self.output)
        X = self.preprocess(X)
        y_index, y_float = check_targets(y, X.shape[0], self.n_outputs, loss, self.dtype)
        training = check_flag(training, "training")
        seed = check_dropout_seed(seed, "seed")
        step = check_positive_int(step, "step")
        rates = self._dropout_rates if training else (0.0,) * len(self._dropout_rates)
        drop = with_seed(dropout_sites(rates), seed)
        ws = Workspace(self, X.shape[0])
        grad = np.empty_like(self.params)
        stats = np.zeros(4)
        with _threads.compute_threads(self.layer_sizes, X.shape[0]):
            forward_loss_backward(grad, ws.buffers, X, y_index, y_float, self.params,
                                  self.layout, drop, step, Static(LOSSES[loss]), stats)
        return _loss_from_stats(stats), grad

    def save(self, path):
        """Write the model to a safetensors file (see fastnn.load)."""
        from .io import save_model
        save_model(self, path)


def check_dropout_seed(seed, name):
    """A dropout key: a non-negative int below 2^63."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be a non-negative integer, got {seed!r}")
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"{name} must be a non-negative integer below 2**63, got {seed!r}")
    return int(seed)


def _short_list(values, keep=5):
    """['a', 'b', ..., 'z'] of a 1-D array, at most `keep` items shown."""
    items = [repr(v) for v in values.tolist()]
    if len(items) > keep:
        items = items[:keep - 1] + ["...", items[-1]]
    return "[" + ", ".join(items) + "]"


def _human_bytes(n):
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _loss_from_stats(stats):
    """The mean per-sample loss from summed stats (see losses.loss_forward_backward)."""
    return float(stats[0] / stats[1]) if stats[1] else float("nan")


def _accuracy_from_stats(stats, loss):
    """Correct over counted predictions; None for mse (no classes)."""
    if loss == "mse" or not stats[3]:
        return None
    return float(stats[2] / stats[3])
