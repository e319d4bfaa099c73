"""Losses fused with the output layer's backward: one pass gives the loss and dL/dz_out.

Reductions follow torch: mse is the mean over all B*k elements; cross_entropy the mean over the
B samples; binary_cross_entropy the mean over all B*k elements (nn.BCELoss), computed from the
logits in the stable form of nn.BCEWithLogitsLoss.

Targets come as either `y_index` (B,) int64 class labels, or `y_float` (B, k): exactly one of
them has rows. Shapes: z, a, dz (B, k) output pre-activation, activation, and gradient.
"""
import math

from numba import njit
from numba.extending import overload

from .dense import SOFTMAX, activation_backward, as_variable
from .static import choose

MSE, CROSS_ENTROPY, BINARY_CROSS_ENTROPY = range(3)


# One row of each loss, shared by both devices: the CPU loops over its rows, the GPU runs one
# thread per row (cuda/losses.py compiles these same functions for the device).
@njit(cache=True)
def log_sum_exp_row(z, a, i, act):
    """(log sum_j exp z[i, j], argmax_j z[i, j]) in float64. After a softmax forward,
    a = exp(z - m) / s and a[best] = 1 / s exactly up to its rounding: log-sum-exp without a
    second pass of exponentials (a[best] >= 1/k never underflows)."""
    k = z.shape[1]
    m = z[i, 0]
    best = 0
    for j in range(k):
        if z[i, j] > m:
            m = z[i, j]
            best = j
    m64 = float(m)  # (numba promotes anyway; the CUDA simulator's numpy would not)
    if act == SOFTMAX:
        return m64 - math.log(float(a[i, best])), best
    s = 0.0
    for j in range(k):
        s += math.exp(float(z[i, j]) - m64)
    return m64 + math.log(s), best


@njit(cache=True)
def cross_entropy_row(dz, z, a, y_index, y_float, i, lse, best, inv_b):
    """Row i of softmax cross-entropy: dz[i] = (p * sum(y) - y) / B; returns (the row's loss,
    1.0 when its argmax is the target's)."""
    k = dz.shape[1]
    if y_index.shape[0] > 0:
        c = y_index[i]
        for j in range(k):
            dz[i, j] = a[i, j] * inv_b
        dz[i, c] -= inv_b
        return lse - float(z[i, c]), 1.0 if best == c else 0.0
    ysum = dz.dtype.type(0.0)
    ybest = 0
    total = 0.0
    for j in range(k):
        yj = y_float[i, j]
        ysum += yj
        total += float(yj) * (lse - float(z[i, j]))
        if yj > y_float[i, ybest]:
            ybest = j
    for j in range(k):
        dz[i, j] = (a[i, j] * ysum - y_float[i, j]) * inv_b
    return total, 1.0 if best == ybest else 0.0


@njit(cache=True)
def binary_cross_entropy_row(dz, z, a, y_float, i, inv_n):
    """Row i of sigmoid binary cross-entropy: dz[i] = (p - y) / (B k); returns (the sum of its
    k terms, its correct predictions). Each term max(v, 0) - v y + log(1 + exp(-|v|)) never
    overflows."""
    k = dz.shape[1]
    half = dz.dtype.type(0.5)
    row = 0.0
    correct = 0.0
    for j in range(k):
        v = float(z[i, j])
        yj = y_float[i, j]
        relu_v = v if v > 0.0 else 0.0 * v  # max(v, 0); (numba.cuda's max rejects mixed types)
        row += relu_v - v * float(yj) + math.log1p(math.exp(-abs(v)))
        dz[i, j] = (a[i, j] - yj) * inv_n
        if (a[i, j] > half) == (yj > half):
            correct += 1.0
    return row, correct


@njit(cache=True)
def mse_row(dz, a, y_index, y_float, i, two_over_n):
    """Row i of the mean squared error: dz[i] = dL/da = 2 (a - y) / (B k) (the caller applies
    the activation's derivative); returns the row's sum of squares. Labels count as one-hot
    targets."""
    k = dz.shape[1]
    one = dz.dtype.type(1.0)
    zero = dz.dtype.type(0.0)
    row = 0.0
    for j in range(k):
        if y_index.shape[0] > 0:
            yj = one if y_index[i] == j else zero
        else:
            yj = y_float[i, j]
        d = a[i, j] - yj
        row += float(d) * float(d)
        dz[i, j] = two_over_n * d
    return row


@njit(cache=True)
def cross_entropy_rows(dz, z, a, y_index, y_float, act, batch):
    """The rows of a softmax cross-entropy (see loss_forward_backward): returns (summed loss,
    correct predictions, predictions counted)."""
    B = a.shape[0]
    total = 0.0
    correct = 0.0
    inv_b = dz.dtype.type(1.0 / batch)
    for i in range(B):
        lse, best = log_sum_exp_row(z, a, i, act)
        row, ok = cross_entropy_row(dz, z, a, y_index, y_float, i, lse, best, inv_b)
        total += row
        correct += ok
    return total, correct, B


@njit(cache=True)
def binary_cross_entropy_rows(dz, z, a, y_index, y_float, act, batch):
    """The rows of a sigmoid binary cross-entropy, as cross_entropy_rows."""
    B, k = a.shape
    total = 0.0
    correct = 0.0
    inv_n = dz.dtype.type(1.0 / (batch * k))
    inv_k = 1.0 / k
    for i in range(B):
        row, ok = binary_cross_entropy_row(dz, z, a, y_float, i, inv_n)
        total += row * inv_k
        correct += ok
    return total, correct, B * k


@njit(cache=True)
def mse_rows(dz, z, a, y_index, y_float, act, batch):
    """The rows of the mean squared error on any output activation, then through act, as
    cross_entropy_rows (no predictions counted)."""
    B, k = a.shape
    total = 0.0
    inv_k = 1.0 / k
    two_over_n = dz.dtype.type(2.0 / (batch * k))
    for i in range(B):
        total += mse_row(dz, a, y_index, y_float, i, two_over_n) * inv_k
    activation_backward(dz, a, z, act, as_variable(0), B, as_variable(0), k)
    return total, 0.0, 0


_ROWS = {CROSS_ENTROPY: cross_entropy_rows, BINARY_CROSS_ENTROPY: binary_cross_entropy_rows,
         MSE: mse_rows}


def _rows_any(dz, z, a, y_index, y_float, loss, act, batch):
    """The rows of the loss chosen at run time."""
    if loss == CROSS_ENTROPY:
        return cross_entropy_rows(dz, z, a, y_index, y_float, act, batch)
    if loss == BINARY_CROSS_ENTROPY:
        return binary_cross_entropy_rows(dz, z, a, y_index, y_float, act, batch)
    return mse_rows(dz, z, a, y_index, y_float, act, batch)


def loss_rows(dz, z, a, y_index, y_float, loss, act, batch):
    """(summed loss, correct, counted) of the rows of `loss` (a code; in compiled code a
    static.Static code compiles that loss alone, a plain int all of them)."""
    return _rows_any(dz, z, a, y_index, y_float, loss, act, batch)


@overload(loss_rows)
def _loss_rows_overload(dz, z, a, y_index, y_float, loss, act, batch):
    rows = choose(loss, _ROWS, mse_rows)  # (mse for an unknown code, as _rows_any does)
    if rows is None:
        return _rows_any

    def one_loss(dz, z, a, y_index, y_float, loss, act, batch):
        return rows(dz, z, a, y_index, y_float, act, batch)
    return one_loss


@njit(cache=True)
def loss_forward_backward(dz, z, a, y_index, y_float, loss, act, stats, batch):
    """Write dL/dz into dz (for the mean loss over a batch of `batch` rows, of which these B
    rows are one thread's share) and accumulate into stats (float64):
    stats[0] += sum over samples of the per-sample loss (so stats[0] / B is the batch loss),
    stats[1] += B, stats[2] += correct predictions, stats[3] += predictions counted.
    Returns this batch's summed per-sample loss (non-finite signals divergence).

    `loss`: a code; a static.Static code (the training loop's) compiles that loss alone."""
    total, correct, counted = loss_rows(dz, z, a, y_index, y_float, loss, act, batch)
    stats[0] += total
    stats[1] += a.shape[0]
    stats[2] += correct
    stats[3] += counted
    return total
