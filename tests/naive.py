"""Slow, obviously-correct float64 NumPy reference for fastnn's tests.

Nothing here is fused or clever: every layer's pre-activation ``z`` and activation ``a`` are
kept, the losses are written straight from their definitions (torch reductions), the backward
pass is the plain chain rule (softmax through its explicit per-row Jacobian), and the training
loop is a Python ``for`` over minibatches.

Conventions (fastnn's public contract):

* ``y = x @ W + b`` with ``W`` of shape ``(fan_in, fan_out)`` and ``b`` of shape ``(fan_out,)``.
* A network is a list of arrays in fastnn's flat layout order: ``[W0, b0, W1, b1, ...]``
  (called ``params_list`` below); ``flatten`` / ``unflatten`` convert to and from the single
  flat vector (each ``W`` in C order).
* ``activation`` is one hidden-activation name, or one name per hidden layer; ``output`` is the
  output activation.
"""
import math

import numpy as np

HIDDEN_ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu")
OUTPUT_ACTIVATIONS = ("identity", "sigmoid", "softmax")
LOSSES = ("mse", "cross_entropy", "binary_cross_entropy")
# (output activation, loss) pairs that fastnn accepts
VALID_OUTPUT_LOSS = (
    ("identity", "mse"),
    ("sigmoid", "mse"),
    ("softmax", "mse"),
    ("softmax", "cross_entropy"),
    ("sigmoid", "binary_cross_entropy"),
)
INVALID_OUTPUT_LOSS = (
    ("identity", "cross_entropy"),
    ("sigmoid", "cross_entropy"),
    ("identity", "binary_cross_entropy"),
    ("softmax", "binary_cross_entropy"),
)

LEAKY_RELU_SLOPE = 0.01  # torch.nn.LeakyReLU default
ELU_ALPHA = 1.0  # torch.nn.ELU default


# --------------------------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------------------------
def sigmoid(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))  # never overflows
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softmax(z):
    """Row-wise softmax of a 2-D array."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    for i in range(z.shape[0]):
        e = np.exp(z[i] - np.max(z[i]))
        out[i] = e / np.sum(e)
    return out


def log_softmax(z):
    """Row-wise log-softmax of a 2-D array: z - logsumexp(z)."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    for i in range(z.shape[0]):
        m = np.max(z[i])
        out[i] = z[i] - (m + np.log(np.sum(np.exp(z[i] - m))))
    return out


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _std_normal_cdf(z):
    return 0.5 * (1.0 + _erf(z / math.sqrt(2.0)))


def _std_normal_pdf(z):
    return np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def activation(name, z):
    """Elementwise activation (or row-wise softmax) of z."""
    z = np.asarray(z, dtype=np.float64)
    if name == "identity":
        return z.copy()
    if name == "sigmoid":
        return sigmoid(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.where(z > 0, z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, LEAKY_RELU_SLOPE * z)
    if name == "elu":
        return np.where(z > 0, z, ELU_ALPHA * (np.exp(np.minimum(z, 0.0)) - 1.0))
    if name == "gelu":  # exact form: z * Phi(z)
        return z * _std_normal_cdf(z)
    if name == "softmax":
        return softmax(z)
    raise ValueError(f"unknown activation {name!r}")


def activation_derivative(name, z):
    """Elementwise d act / d z (not defined for softmax, see ``softmax_backward``).

    At the kinks (z == 0) the convention is torch's: relu' = 0, leaky_relu' = slope."""
    z = np.asarray(z, dtype=np.float64)
    if name == "identity":
        return np.ones_like(z)
    if name == "sigmoid":
        s = sigmoid(z)
        return s * (1.0 - s)
    if name == "tanh":
        t = np.tanh(z)
        return 1.0 - t * t
    if name == "relu":
        return np.where(z > 0, 1.0, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, LEAKY_RELU_SLOPE)
    if name == "elu":
        return np.where(z > 0, 1.0, ELU_ALPHA * np.exp(np.minimum(z, 0.0)))
    if name == "gelu":  # d/dz [z Phi(z)] = Phi(z) + z phi(z)
        return _std_normal_cdf(z) + z * _std_normal_pdf(z)
    raise ValueError(f"no elementwise derivative for {name!r}")


def softmax_jacobian(a_row):
    """J[i, j] = d a_i / d z_j = a_i (delta_ij - a_j) for one row's softmax output."""
    return np.diag(a_row) - np.outer(a_row, a_row)


def softmax_backward(a, da):
    """dL/dz from dL/da through the softmax, one row at a time with the explicit Jacobian."""
    dz = np.empty_like(da)
    for i in range(a.shape[0]):
        dz[i] = softmax_jacobian(a[i]).T @ da[i]
    return dz


def activation_backward(name, z, a, da):
    """dL/dz from dL/da for one layer."""
    if name == "softmax":
        return softmax_backward(a, da)
    return da * activation_derivative(name, z)


# --------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------
def num_params(layer_sizes):
    return sum(n_in * n_out + n_out for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]))


def flatten(params_list):
    """[W0, b0, W1, b1, ...] -> one flat float64 vector (each W in C order)."""
    return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in params_list])


def unflatten(flat, layer_sizes):
    """One flat vector -> [W0, b0, W1, b1, ...] (float64 copies)."""
    flat = np.asarray(flat, dtype=np.float64)
    assert flat.shape == (num_params(layer_sizes),), (flat.shape, num_params(layer_sizes))
    out = []
    pos = 0
    for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        out.append(flat[pos:pos + n_in * n_out].reshape(n_in, n_out).copy())
        pos += n_in * n_out
        out.append(flat[pos:pos + n_out].copy())
        pos += n_out
    return out


def flatten_grads(dWs, dbs):
    """Gradient lists -> one flat vector in fastnn's layout [dW0, db0, dW1, db1, ...]."""
    interleaved = []
    for dW, db in zip(dWs, dbs):
        interleaved += [dW, db]
    return flatten(interleaved)


def tensor_slices(layer_sizes):
    """(name, slice) of every W_i and b_i inside the flat layout."""
    out = []
    pos = 0
    for i, (n_in, n_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])):
        out.append((f"W{i}", slice(pos, pos + n_in * n_out)))
        pos += n_in * n_out
        out.append((f"b{i}", slice(pos, pos + n_out)))
        pos += n_out
    return out


def layer_sizes_of(params_list):
    Ws = params_list[0::2]
    return tuple([Ws[0].shape[0]] + [W.shape[1] for W in Ws])


def random_params(layer_sizes, rng, bias_scale=0.5):
    """Random float64 [W0, b0, ...]: W ~ N(0, 1/fan_in), b ~ N(0, bias_scale^2)."""
    out = []
    for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        out.append(rng.normal(0.0, 1.0 / math.sqrt(n_in), size=(n_in, n_out)))
        out.append(rng.normal(0.0, bias_scale, size=n_out))
    return out


def hidden_activation_names(activation_spec, n_hidden):
    if isinstance(activation_spec, str):
        return [activation_spec] * n_hidden
    names = list(activation_spec)
    assert len(names) == n_hidden, (names, n_hidden)
    return names


# --------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------
def forward(params_list, X, activation_spec, output):
    """Return (zs, activations): zs[l] is layer l's pre-activation, activations[0] = X and
    activations[l + 1] = act(zs[l]); activations[-1] is the network output."""
    Ws, bs = params_list[0::2], params_list[1::2]
    names = hidden_activation_names(activation_spec, len(Ws) - 1) + [output]
    a = np.asarray(X, dtype=np.float64)
    zs, acts = [], [a]
    for W, b, name in zip(Ws, bs, names):
        z = a @ np.asarray(W, dtype=np.float64) + np.asarray(b, dtype=np.float64)
        a = activation(name, z)
        zs.append(z)
        acts.append(a)
    return zs, acts


def predict(params_list, X, activation_spec, output):
    return forward(params_list, X, activation_spec, output)[1][-1]


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------
def targets_as_matrix(y, n_out, loss):
    """Targets as a float64 (n, n_out) matrix: integer labels become one-hot rows (cross
    entropy only); a 1-D float target is a column when n_out == 1."""
    y = np.asarray(y)
    if loss == "cross_entropy" and y.ndim == 1:
        assert np.issubdtype(y.dtype, np.integer), y.dtype
        Y = np.zeros((y.shape[0], n_out))
        Y[np.arange(y.shape[0]), y] = 1.0
        return Y
    y = y.astype(np.float64)
    if y.ndim == 1:
        assert n_out == 1, (y.shape, n_out)
        y = y.reshape(-1, 1)
    return y


def check_output_loss(output, loss):
    if (output, loss) not in VALID_OUTPUT_LOSS:
        raise ValueError(f"loss {loss!r} cannot follow output {output!r}")


def loss_value(z_out, a_out, Y, loss):
    """The batch loss (torch reductions). Y is the (n, k) target matrix."""
    n, k = a_out.shape
    if loss == "mse":  # mean over all n * k elements
        return float(np.sum((a_out - Y) ** 2) / (n * k))
    if loss == "cross_entropy":  # -sum_j y_ij log p_ij, mean over the n samples
        return float(-np.sum(Y * log_softmax(z_out)) / n)
    if loss == "binary_cross_entropy":
        # -(y log s(z) + (1 - y) log(1 - s(z))), written stably in the logits z;
        # mean over all n * k elements
        per_element = np.maximum(z_out, 0.0) - z_out * Y + np.log1p(np.exp(-np.abs(z_out)))
        return float(np.sum(per_element) / (n * k))
    raise ValueError(f"unknown loss {loss!r}")


def loss_grad_wrt_output(a_out, Y, loss):
    """dL/da_out for the batch loss (the output activation comes after, by the chain rule)."""
    n, k = a_out.shape
    if loss == "mse":
        return 2.0 * (a_out - Y) / (n * k)
    if loss == "cross_entropy":  # d/dp of -sum y log p / n; zero where y is zero
        safe_a = np.where(Y != 0, a_out, 1.0)
        return np.where(Y != 0, -Y / (safe_a * n), 0.0)
    if loss == "binary_cross_entropy":  # d/da of -(y log a + (1 - y) log(1 - a)) / (n k)
        return (a_out - Y) / (a_out * (1.0 - a_out) * n * k)
    raise ValueError(f"unknown loss {loss!r}")


def accuracy_count(a_out, y, loss):
    """(correct, counted) predictions. cross_entropy: one per sample, argmax of the output vs
    the label (or the target row's argmax); binary_cross_entropy: one per element,
    (a > 0.5) == (y > 0.5)."""
    y = np.asarray(y)
    if loss == "cross_entropy":
        labels = y if y.ndim == 1 else np.argmax(y, axis=1)
        return int(np.sum(np.argmax(a_out, axis=1) == labels)), a_out.shape[0]
    if loss == "binary_cross_entropy":
        Y = targets_as_matrix(y, a_out.shape[1], loss)
        return int(np.sum((a_out > 0.5) == (Y > 0.5))), a_out.size
    raise ValueError(f"no accuracy for loss {loss!r}")


# --------------------------------------------------------------------------------------------
# backward
# --------------------------------------------------------------------------------------------
def loss_and_grads(params_list, X, y, activation_spec, output, loss):
    """Return (loss, dWs, dbs) for the mean batch loss, by the chain rule layer by layer."""
    check_output_loss(output, loss)
    Ws = params_list[0::2]
    names = hidden_activation_names(activation_spec, len(Ws) - 1) + [output]
    zs, acts = forward(params_list, X, activation_spec, output)
    Y = targets_as_matrix(y, acts[-1].shape[1], loss)
    assert Y.shape == acts[-1].shape, (Y.shape, acts[-1].shape)
    value = loss_value(zs[-1], acts[-1], Y, loss)

    dWs = [None] * len(Ws)
    dbs = [None] * len(Ws)
    da = loss_grad_wrt_output(acts[-1], Y, loss)
    for layer in reversed(range(len(Ws))):
        dz = activation_backward(names[layer], zs[layer], acts[layer + 1], da)
        dWs[layer] = acts[layer].T @ dz
        dbs[layer] = np.sum(dz, axis=0)
        da = dz @ np.asarray(Ws[layer], dtype=np.float64).T
    return value, dWs, dbs


def loss_and_flat_grad(params_list, X, y, activation_spec, output, loss):
    value, dWs, dbs = loss_and_grads(params_list, X, y, activation_spec, output, loss)
    return value, flatten_grads(dWs, dbs)


def loss_of_flat(flat, layer_sizes, X, y, activation_spec, output, loss):
    """The loss as a function of one flat parameter vector (for finite differences)."""
    params_list = unflatten(flat, layer_sizes)
    zs, acts = forward(params_list, X, activation_spec, output)
    Y = targets_as_matrix(y, acts[-1].shape[1], loss)
    return loss_value(zs[-1], acts[-1], Y, loss)


# --------------------------------------------------------------------------------------------
# finite differences
# --------------------------------------------------------------------------------------------
def central_difference_gradient(f, v, eps=1e-6):
    """(f(v + eps e_i) - f(v - eps e_i)) / (2 eps) for every coordinate i of the flat float64
    vector v. f must not keep references to its argument."""
    v = np.array(v, dtype=np.float64)
    g = np.empty_like(v)
    for i in range(v.size):
        old = v[i]
        v[i] = old + eps
        f_plus = f(v.copy())
        v[i] = old - eps
        f_minus = f(v.copy())
        v[i] = old
        g[i] = (f_plus - f_minus) / (2.0 * eps)
    return g


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def naive_sgd_fit(params_list, X, y, loss, lr, batch_size, order_per_epoch, *,
                  activation, output, validation_data=None):
    """Plain minibatch SGD: for each epoch, walk ``order_per_epoch[e]`` (a permutation of the
    sample indices) in consecutive chunks of ``batch_size`` (the last chunk may be smaller;
    ``None`` means one full batch), and do ``p -= lr * grad(batch mean loss)`` per chunk.

    Returns (final params_list, history) where history has, per epoch:
    "loss": sample-weighted mean of the minibatch losses (each taken before its step),
    "accuracy" (classification losses only, see ``accuracy_count``; counts pooled over the
    epoch), and with validation_data "val_loss" (and "val_accuracy") at the end-of-epoch
    parameters.
    """
    params = [np.array(p, dtype=np.float64) for p in params_list]
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    n = X.shape[0]
    step = n if batch_size is None else int(batch_size)
    classifier = loss in ("cross_entropy", "binary_cross_entropy")
    history = {"loss": []}
    if classifier:
        history["accuracy"] = []
    if validation_data is not None:
        history["val_loss"] = []
        if classifier:
            history["val_accuracy"] = []

    for order in order_per_epoch:
        order = np.asarray(order)
        assert sorted(order.tolist()) == list(range(n)), "each epoch order must be a permutation"
        weighted_loss = 0.0
        correct = 0
        counted = 0
        for start in range(0, n, step):
            idx = order[start:start + step]
            value, dWs, dbs = loss_and_grads(params, X[idx], y[idx], activation, output, loss)
            weighted_loss += value * len(idx)
            if classifier:
                out = predict(params, X[idx], activation, output)
                c, m = accuracy_count(out, y[idx], loss)
                correct += c
                counted += m
            for layer in range(len(dWs)):
                params[2 * layer] = params[2 * layer] - lr * dWs[layer]
                params[2 * layer + 1] = params[2 * layer + 1] - lr * dbs[layer]
        history["loss"].append(weighted_loss / n)
        if classifier:
            history["accuracy"].append(correct / counted)
        if validation_data is not None:
            Xv, yv = validation_data
            zs, acts = forward(params, Xv, activation, output)
            Yv = targets_as_matrix(yv, acts[-1].shape[1], loss)
            history["val_loss"].append(loss_value(zs[-1], acts[-1], Yv, loss))
            if classifier:
                c, m = accuracy_count(acts[-1], yv, loss)
                history["val_accuracy"].append(c / m)
    return params, history


# --------------------------------------------------------------------------------------------
# test problems
# --------------------------------------------------------------------------------------------
def random_targets(rng, n, n_out, output, loss, y_kind="default"):
    """Targets for a loss: mse -> N(0, 1) for identity outputs, U(0, 1) otherwise;
    cross_entropy -> int64 labels ("default"/"labels"), one-hot ("onehot") or random class
    probabilities ("probs"); binary_cross_entropy -> U(0, 1) soft targets ("default") or 0/1."""
    if loss == "cross_entropy":
        labels = rng.integers(0, n_out, size=n).astype(np.int64)
        if y_kind in ("default", "labels"):
            return labels
        if y_kind == "onehot":
            return targets_as_matrix(labels, n_out, loss)
        if y_kind == "probs":
            p = rng.random((n, n_out)) + 0.1
            return p / p.sum(axis=1, keepdims=True)
        raise ValueError(y_kind)
    if loss == "binary_cross_entropy":
        if y_kind == "binary":
            return (rng.random((n, n_out)) > 0.5).astype(np.float64)
        return rng.random((n, n_out))
    if output == "identity":
        return rng.normal(size=(n, n_out))
    return rng.random((n, n_out))


def min_abs_hidden_preactivation(params_list, X, activation_spec, output):
    zs, _ = forward(params_list, X, activation_spec, output)
    hidden = zs[:-1]
    return min((float(np.min(np.abs(z))) for z in hidden), default=np.inf)


def make_problem(layer_sizes, activation_spec, output, loss, n=6, seed=0, y_kind="default",
                 margin=1e-3):
    """Deterministic (params_list, X, y) with every hidden pre-activation at least ``margin``
    away from 0, so that finite differences never straddle a relu/leaky_relu kink."""
    for attempt in range(1000):
        rng = np.random.default_rng([seed, attempt])
        params_list = random_params(layer_sizes, rng)
        X = rng.normal(size=(n, layer_sizes[0]))
        if min_abs_hidden_preactivation(params_list, X, activation_spec, output) < margin:
            continue
        y = random_targets(rng, n, layer_sizes[-1], output, loss, y_kind)
        return params_list, X, y
    raise RuntimeError("no problem with the requested margin found")


def per_tensor_rel_error(g, g_ref, layer_sizes):
    """max over the tensors W_i, b_i of max|g - g_ref| / max|g_ref| (floored by 1e-3 of the
    largest gradient anywhere, so a near-zero tensor does not blow the measure up)."""
    g = np.asarray(g, dtype=np.float64)
    g_ref = np.asarray(g_ref, dtype=np.float64)
    floor = 1e-3 * max(np.max(np.abs(g_ref)), 1e-12)
    worst = 0.0
    for _, sl in tensor_slices(layer_sizes):
        denom = max(np.max(np.abs(g_ref[sl])), floor)
        worst = max(worst, np.max(np.abs(g[sl] - g_ref[sl])) / denom)
    return worst


# --------------------------------------------------------------------------------------------
# dropout
# --------------------------------------------------------------------------------------------
_M32 = 0xFFFFFFFF


def lowbias32(x):
    """Chris Wellons' lowbias32 integer hash of the low 32 bits of x, in Python ints."""
    x &= _M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def dropout_row_key(seed, step, site, row):
    """The documented key of one row of one dropout site in one step: lowbias32 chained over
    the 32-bit words (seed lo, seed hi, step lo, step hi, site, row), from 0x9E3779B9."""
    k = 0x9E3779B9
    for w in (seed & _M32, seed >> 32, step & _M32, step >> 32, site, row):
        k = lowbias32(k ^ w)
    return k


def dropout_mask(seed, step, site, n_rows, n_units, p):
    """(n_rows, n_units) float64 0/1: unit j of row i is kept when
    lowbias32(key(i) ^ j) >= round(p * 2^32)."""
    threshold = min(round(p * 2.0**32), 2**32 - 1)
    keep = np.zeros((n_rows, n_units))
    for i in range(n_rows):
        key = dropout_row_key(seed, step, site, i)
        for j in range(n_units):
            keep[i, j] = lowbias32(key ^ j) >= threshold
    return keep


def dropout_masks(rates, seed, step, n_rows, layer_sizes):
    """Per site s (the input of layer s): the scaled mask m / (1 - p_s), or None when p_s = 0."""
    return [dropout_mask(seed, step, s, n_rows, layer_sizes[s], p) / (1.0 - p) if p > 0
            else None for s, p in enumerate(rates)]


def dropout_loss_and_grads(params_list, X, y, activation_spec, output, loss, masks):
    """(loss, dWs, dbs) of a training step with inverted dropout: the input of layer s is
    multiplied by masks[s] (0 or 1 / (1 - p); None for none), layer s's input being the
    features (s = 0) or hidden layer s - 1's output; by the chain rule, the delta reaching a
    dropped input is multiplied by the same mask before its activation's derivative."""
    check_output_loss(output, loss)
    Ws = [np.asarray(W, dtype=np.float64) for W in params_list[0::2]]
    bs = [np.asarray(b, dtype=np.float64) for b in params_list[1::2]]
    names = hidden_activation_names(activation_spec, len(Ws) - 1) + [output]
    a = np.asarray(X, dtype=np.float64)
    inputs, zs, outs = [], [], []
    for layer, (W, b, name) in enumerate(zip(Ws, bs, names)):
        if masks[layer] is not None:
            a = a * masks[layer]
        inputs.append(a)
        z = a @ W + b
        a = activation(name, z)
        zs.append(z)
        outs.append(a)
    Y = targets_as_matrix(y, outs[-1].shape[1], loss)
    value = loss_value(zs[-1], outs[-1], Y, loss)
    dWs = [None] * len(Ws)
    dbs = [None] * len(Ws)
    da = loss_grad_wrt_output(outs[-1], Y, loss)
    for layer in reversed(range(len(Ws))):
        dz = activation_backward(names[layer], zs[layer], outs[layer], da)
        dWs[layer] = inputs[layer].T @ dz
        dbs[layer] = np.sum(dz, axis=0)
        da = dz @ Ws[layer].T
        if masks[layer] is not None:
            da = da * masks[layer]
    return value, dWs, dbs
