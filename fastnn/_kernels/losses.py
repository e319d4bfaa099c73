"""Losses fused with the output layer's backward: one pass gives the loss and dL/dz_out.

Reductions follow torch: mse is the mean over all B*k elements; cross_entropy the mean over the
B samples; binary_cross_entropy the mean over all B*k elements (nn.BCELoss), computed from the
logits in the stable form of nn.BCEWithLogitsLoss.

Targets come as either `y_index` (B,) int64 class labels, or `y_float` (B, k): exactly one of
them has rows. Shapes: z, a, dz (B, k) output pre-activation, activation, and gradient.
"""
import math

from numba import njit

from .dense import SOFTMAX, activation_backward, as_variable

MSE, CROSS_ENTROPY, BINARY_CROSS_ENTROPY = range(3)


@njit(cache=True)
def loss_forward_backward(dz, z, a, y_index, y_float, loss, act, stats, batch):
    """Write dL/dz into dz (for the mean loss over a batch of `batch` rows, of which these B
    rows are one thread's share) and accumulate into stats (float64):
    stats[0] += sum over samples of the per-sample loss (so stats[0] / B is the batch loss),
    stats[1] += B, stats[2] += correct predictions, stats[3] += predictions counted.
    Returns this batch's summed per-sample loss (non-finite signals divergence)."""
    B, k = a.shape
    one = dz.dtype.type(1.0)
    zero = dz.dtype.type(0.0)
    by_index = y_index.shape[0] > 0
    total = 0.0
    correct = 0
    counted = 0
    if loss == CROSS_ENTROPY:  # softmax output: dz = (p * sum(y) - y) / B
        inv_b = dz.dtype.type(1.0 / batch)
        for i in range(B):
            m = z[i, 0]
            best = 0
            for j in range(k):
                if z[i, j] > m:
                    m = z[i, j]
                    best = j
            if act == SOFTMAX:
                # a = exp(z - m) / s from the forward, and a[best] = 1 / s exactly up to its
                # rounding: log-sum-exp without a second pass of exponentials (a[best] >= 1/k
                # never underflows)
                lse = float(m) - math.log(float(a[i, best]))
            else:
                s = 0.0
                for j in range(k):
                    s += math.exp(float(z[i, j]) - m)
                lse = m + math.log(s)
            if by_index:
                c = y_index[i]
                total += lse - float(z[i, c])
                for j in range(k):
                    dz[i, j] = a[i, j] * inv_b
                dz[i, c] -= inv_b
                correct += best == c
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
                correct += best == ybest
            counted += 1
    elif loss == BINARY_CROSS_ENTROPY:  # sigmoid output: dz = (p - y) / (B k)
        inv_n = dz.dtype.type(1.0 / (batch * k))
        inv_k = 1.0 / k
        half = dz.dtype.type(0.5)
        for i in range(B):
            row = 0.0
            for j in range(k):
                v = float(z[i, j])
                yj = y_float[i, j]
                # max(v, 0) - v y + log(1 + exp(-|v|)): never overflows
                row += max(v, 0.0) - v * float(yj) + math.log1p(math.exp(-abs(v)))
                dz[i, j] = (a[i, j] - yj) * inv_n
                correct += (a[i, j] > half) == (yj > half)
            total += row * inv_k
            counted += k
    else:  # MSE on any output activation: dL/da = 2 (a - y) / (B k), then through act
        inv_k = 1.0 / k
        two_over_n = dz.dtype.type(2.0 / (batch * k))
        for i in range(B):
            row = 0.0
            for j in range(k):
                if by_index:  # labels as one-hot targets
                    yj = one if y_index[i] == j else zero
                else:
                    yj = y_float[i, j]
                d = a[i, j] - yj
                row += float(d) * float(d)
                dz[i, j] = two_over_n * d
            total += row * inv_k
        activation_backward(dz, a, z, act, as_variable(0), B, as_variable(0), k)
    stats[0] += total
    stats[1] += B
    stats[2] += correct
    stats[3] += counted
    return total
