"""Losses fused with the output layer's backward, on the GPU: one thread per sample row gives
that row's loss and its row of dL/dz_out. Mirrors fastnn/_kernels/losses.py (same codes, same
torch reductions, the same stable forms: log-sum-exp for softmax cross-entropy, the
BCEWithLogits form for sigmoid outputs).

Instead of the CPU kernel's running sums, `stats` is a RowStats bundle (bundles.py): each row
writes its loss (float64, the per-sample loss whose mean is the batch loss) into
stats.loss[stats.start + i] and its count of correct predictions into stats.correct[...], so that a whole epoch's metrics
stay on the device and reach the host in one copy. A non-finite row loss sets
stats.status[0] = 1 (divergence), which the update kernels read before touching the
parameters.
"""
import math

from numba import cuda

from ..dense import SOFTMAX
from ..losses import BINARY_CROSS_ENTROPY, CROSS_ENTROPY, MSE  # noqa: F401 (codes)
from . import dense as _dense
from .dense import activation_grad


@cuda.jit
def loss_forward_backward_kernel(dz, z, a, y_index, y_float, loss, act, row_loss, row_correct,
                                 offset, status, batch):
    B, k = a.shape
    i = cuda.grid(1)
    if i >= B:
        return
    t = dz.dtype.type
    one = t(1.0)
    zero = t(0.0)
    by_index = y_index.shape[0] > 0
    total = 0.0
    correct = 0.0
    if loss == CROSS_ENTROPY:  # softmax output: dz = (p * sum(y) - y) / B
        inv_b = t(1.0 / batch)
        m = z[i, 0]
        best = 0
        for j in range(k):
            if z[i, j] > m:
                m = z[i, j]
                best = j
        m64 = float(m)  # the CPU kernel promotes to float64 here; the simulator would not
        s = 0.0
        for j in range(k):
            s += math.exp(float(z[i, j]) - m64)
        lse = m64 + math.log(s)
        if by_index:
            c = y_index[i]
            total = lse - float(z[i, c])
            for j in range(k):
                dz[i, j] = a[i, j] * inv_b
            dz[i, c] -= inv_b
            if best == c:
                correct = 1.0
        else:
            ysum = zero
            ybest = 0
            for j in range(k):
                yj = y_float[i, j]
                ysum += yj
                total += float(yj) * (lse - float(z[i, j]))
                if yj > y_float[i, ybest]:
                    ybest = j
            for j in range(k):
                dz[i, j] = (a[i, j] * ysum - y_float[i, j]) * inv_b
            if best == ybest:
                correct = 1.0
    elif loss == BINARY_CROSS_ENTROPY:  # sigmoid output: dz = (p - y) / (B k)
        inv_n = t(1.0 / (batch * k))
        half = t(0.5)
        row = 0.0
        for j in range(k):
            v = float(z[i, j])
            yj = y_float[i, j]
            # max(v, 0) - v y + log(1 + exp(-|v|)): never overflows
            relu_v = v if v > 0.0 else 0.0 * v  # max(v, 0): numba.cuda's max rejects mixed types
            row += relu_v - v * float(yj) + math.log1p(math.exp(-abs(v)))
            dz[i, j] = (a[i, j] - yj) * inv_n
            if (a[i, j] > half) == (yj > half):
                correct += 1.0
        total = row * (1.0 / k)
    else:  # MSE on any output activation: dL/da = 2 (a - y) / (B k), then through act
        two_over_n = t(2.0 / (batch * k))
        row = 0.0
        for j in range(k):
            if by_index:  # labels as one-hot targets
                yj = one if y_index[i] == j else zero
            else:
                yj = y_float[i, j]
            d = a[i, j] - yj
            row += float(d) * float(d)
            dz[i, j] = two_over_n * d
        total = row * (1.0 / k)
        if act == SOFTMAX:  # Jacobian-vector product along the row
            s = zero
            for j in range(k):
                s += dz[i, j] * a[i, j]
            for j in range(k):
                dz[i, j] = a[i, j] * (dz[i, j] - s)
        else:
            for j in range(k):
                dz[i, j] = activation_grad(dz[i, j], a[i, j], z[i, j], act, dz)
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
    labels or y_float (B, k); exactly one has rows."""
    B = a.shape[0]
    if B == 0:
        return
    threads = _dense.THREADS
    loss_forward_backward_kernel[(B + threads - 1) // threads, threads](
        dz, z, a, y_index, y_float, loss, act, stats.loss, stats.correct, stats.start,
        stats.status, batch)
