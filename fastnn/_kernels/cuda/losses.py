"""Losses fused with the output layer's backward, on the GPU: one thread per sample row gives
that row's loss and its row of dL/dz_out. Mirrors fastnn/_kernels/losses.py (same codes, same
torch reductions, the same stable forms: log-sum-exp for softmax cross-entropy, the
BCEWithLogits form for sigmoid outputs).

The rows themselves are the CPU's functions (log_sum_exp_row, cross_entropy_row, ...), compiled
for the device. Instead of the CPU kernel's running sums, `stats` is a RowStats bundle
(bundles.py): each row writes its loss (float64, the per-sample loss whose mean is the batch
loss) into stats.loss[stats.start + i] and its count of correct predictions into
stats.correct[stats.start + i], so that a whole epoch's metrics stay on the device and reach
the host in one copy. A non-finite row loss sets
stats.status[0] = 1 (divergence), which the update kernels read before touching the
parameters.
"""
import math

from numba import cuda

from .. import losses as _cpu
from ..dense import SOFTMAX
from ..losses import BINARY_CROSS_ENTROPY, CROSS_ENTROPY, MSE  # noqa: F401 (codes)
from . import dense as _dense
from .dense import activation_grad, preactivation, softmax_row

# the CPU's rows (fastnn/_kernels/losses.py), compiled for the device
log_sum_exp_row = cuda.jit(device=True, inline=True)(_cpu.log_sum_exp_row.py_func)
cross_entropy_row = cuda.jit(device=True, inline=True)(_cpu.cross_entropy_row.py_func)
binary_cross_entropy_row = cuda.jit(device=True, inline=True)(
    _cpu.binary_cross_entropy_row.py_func)
mse_row = cuda.jit(device=True, inline=True)(_cpu.mse_row.py_func)


@cuda.jit(cache=True)
def loss_forward_backward_kernel(dz, z, a, y_index, y_float, loss, act, row_loss, row_correct,
                                 offset, status, batch):
    B, k = a.shape
    i = cuda.grid(1)
    if i >= B:
        return
    if act == SOFTMAX:  # the output softmax, folded in here (the forward leaves a alone)
        softmax_row(a, z, i)
    total = 0.0
    correct = 0.0
    if loss == CROSS_ENTROPY:
        lse, best = log_sum_exp_row(z, a, i, act)
        total, correct = cross_entropy_row(dz, z, a, y_index, y_float, i, lse, best,
                                           dz.dtype.type(1.0 / batch))
    elif loss == BINARY_CROSS_ENTROPY:
        row, correct = binary_cross_entropy_row(dz, z, a, y_float, i,
                                                dz.dtype.type(1.0 / (batch * k)))
        total = row * (1.0 / k)
    else:  # MSE, then through the output activation
        total = mse_row(dz, a, y_index, y_float, i, dz.dtype.type(2.0 / (batch * k))) * (1.0 / k)
        if act == SOFTMAX:  # Jacobian-vector product along the row
            s = dz.dtype.type(0.0)
            for j in range(k):
                s += dz[i, j] * a[i, j]
            for j in range(k):
                dz[i, j] = a[i, j] * (dz[i, j] - s)
        else:
            for j in range(k):
                dz[i, j] = activation_grad(dz[i, j], a[i, j], preactivation(z, i, j, act), act,
                                           dz)
    row_loss[offset + i] = total
    row_correct[offset + i] = correct
    if not math.isfinite(total):
        status[0] = 1


def loss_forward_backward(dz, z, a, y_index, y_float, loss, act, stats, batch):
    """Write dL/dz into dz (B, k) for the mean loss over a batch of `batch` rows (these B rows),
    each row's loss into stats.loss[stats.start + i] and its correct predictions into
    stats.correct[stats.start + i]
    (float64 device arrays; a row counts 1 for cross_entropy, k for binary_cross_entropy, 0
    for mse), and set stats.status[0] = 1 on a non-finite loss. Targets: y_index (B,) int64
    labels or y_float (B, k); exactly one has rows. A softmax output is computed here, from
    z, into a (one launch less per step: the training forward skips its row pass)."""
    B = a.shape[0]
    if B == 0:
        return
    threads = _dense.THREADS
    loss_forward_backward_kernel[(B + threads - 1) // threads, threads](
        dz, z, a, y_index, y_float, loss, act, stats.loss, stats.correct, stats.start,
        stats.status, batch)
