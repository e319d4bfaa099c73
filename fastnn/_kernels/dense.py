"""Dense layer: GEMM through BLAS, bias + activation fused into one pass around it.

Forward   z = x @ W + b,  a = act(z)
Backward  dW = x.T @ dz,  db = sum_rows(dz),  dx = dz @ W.T,  dz_prev = dx * act'(prev)

Shapes: x (B, fan_in), W (fan_in, fan_out), b (fan_out,), z/a/dz (B, fan_out).
Every kernel writes into buffers it is given and allocates nothing. Activations are small
integer codes so that one compiled kernel serves every architecture.
"""
import math

import numpy as np
from numba import njit

IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, ELU, GELU, SOFTMAX = range(8)

LEAKY_RELU_SLOPE = 0.01  # torch.nn.LeakyReLU default
ELU_ALPHA = 1.0  # torch.nn.ELU default


@njit(cache=True)
def keeps_preactivation(act):
    """Whether the backward pass (or the loss) needs z itself, not just a = act(z).

    For these the forward writes z to its own buffer; for the others a overwrites z in place.
    Softmax/sigmoid keep z so that cross-entropy uses log-sum-exp on the logits (stable)."""
    return act == GELU or act == SOFTMAX or act == SIGMOID


@njit(cache=True)
def bias_activation_forward(a, z, b, act):
    """z += b (row-broadcast), a = act(z); one pass. a may be z itself unless keeps_preactivation."""
    B, n = z.shape
    one = z.dtype.type(1.0)
    zero = z.dtype.type(0.0)
    # one loop per activation so that each inner loop is branch-free and vectorizes
    if act == IDENTITY:
        for i in range(B):
            for j in range(n):
                a[i, j] = z[i, j] + b[j]
    elif act == RELU:
        for i in range(B):
            for j in range(n):
                v = z[i, j] + b[j]
                a[i, j] = zero if v < zero else v  # noqa: FURB136 (a select; NaN stays NaN, as in torch)
    elif act == LEAKY_RELU:
        slope = z.dtype.type(LEAKY_RELU_SLOPE)
        for i in range(B):
            for j in range(n):
                v = z[i, j] + b[j]
                a[i, j] = v if v > zero else slope * v
    elif act == TANH:
        for i in range(B):
            for j in range(n):
                a[i, j] = np.tanh(z[i, j] + b[j])
    elif act == ELU:
        alpha = z.dtype.type(ELU_ALPHA)
        for i in range(B):
            for j in range(n):
                v = z[i, j] + b[j]
                a[i, j] = v if v > zero else alpha * math.expm1(v)
    elif act == SIGMOID:
        for i in range(B):
            for j in range(n):
                v = z[i, j] + b[j]
                z[i, j] = v
                a[i, j] = one / (one + np.exp(-v))
    elif act == GELU:
        half = z.dtype.type(0.5)
        inv_sqrt2 = z.dtype.type(1.0 / math.sqrt(2.0))
        for i in range(B):
            for j in range(n):
                v = z[i, j] + b[j]
                z[i, j] = v
                a[i, j] = half * v * (one + math.erf(v * inv_sqrt2))
    elif act == SOFTMAX:
        for i in range(B):
            m = z[i, 0] + b[0]
            for j in range(n):
                v = z[i, j] + b[j]
                z[i, j] = v
                m = max(m, v)
            s = zero
            for j in range(n):
                e = np.exp(z[i, j] - m)
                a[i, j] = e
                s += e
            inv = one / s
            for j in range(n):
                a[i, j] *= inv


@njit(cache=True)
def activation_backward(dz, a, z, act):
    """dz *= act'(z) in place, with the derivative taken from the output a where it can be.

    On entry dz holds dL/da; on exit dL/dz. z is read only for gelu (and softmax uses a)."""
    B, n = dz.shape
    one = dz.dtype.type(1.0)
    zero = dz.dtype.type(0.0)
    if act == IDENTITY:
        return
    elif act == RELU:  # selects, not branches: the loop vectorizes
        for i in range(B):
            row = dz[i]
            ar = a[i]
            for j in range(n):
                row[j] = row[j] if ar[j] > zero else zero
    elif act == LEAKY_RELU:
        slope = dz.dtype.type(LEAKY_RELU_SLOPE)
        for i in range(B):
            row = dz[i]
            ar = a[i]
            for j in range(n):
                row[j] = row[j] if ar[j] > zero else slope * row[j]
    elif act == TANH:
        for i in range(B):
            for j in range(n):
                dz[i, j] *= one - a[i, j] * a[i, j]
    elif act == ELU:
        alpha = dz.dtype.type(ELU_ALPHA)
        for i in range(B):
            for j in range(n):
                if not a[i, j] > zero:
                    dz[i, j] *= a[i, j] + alpha
    elif act == SIGMOID:
        for i in range(B):
            for j in range(n):
                dz[i, j] *= a[i, j] * (one - a[i, j])
    elif act == GELU:
        half = dz.dtype.type(0.5)
        inv_sqrt2 = dz.dtype.type(1.0 / math.sqrt(2.0))
        inv_sqrt2pi = dz.dtype.type(1.0 / math.sqrt(2.0 * math.pi))
        for i in range(B):
            for j in range(n):
                v = z[i, j]
                cdf = half * (one + math.erf(v * inv_sqrt2))
                pdf = inv_sqrt2pi * np.exp(-half * v * v)
                dz[i, j] *= cdf + v * pdf
    elif act == SOFTMAX:
        # Jacobian-vector product: dz_j = a_j (g_j - sum_k g_k a_k)
        for i in range(B):
            s = zero
            for j in range(n):
                s += dz[i, j] * a[i, j]
            for j in range(n):
                dz[i, j] = a[i, j] * (dz[i, j] - s)


@njit(cache=True)
def bias_activation_inplace(a, b, act):
    """a = act(a + b) in place (row-broadcast b) for the activations that do not keep z.

    Reading and writing one array lets LLVM vectorize the loop: with a and z passed as the
    same buffer to bias_activation_forward, its runtime alias check fails and the loop runs
    scalar (about 4x slower)."""
    B, n = a.shape
    zero = a.dtype.type(0.0)
    if act == IDENTITY:
        for i in range(B):
            row = a[i]
            for j in range(n):
                row[j] += b[j]
    elif act == RELU:
        for i in range(B):
            row = a[i]
            for j in range(n):
                v = row[j] + b[j]
                row[j] = zero if v < zero else v  # noqa: FURB136 (a select; NaN stays NaN, as in torch)
    elif act == LEAKY_RELU:
        slope = a.dtype.type(LEAKY_RELU_SLOPE)
        for i in range(B):
            row = a[i]
            for j in range(n):
                v = row[j] + b[j]
                row[j] = v if v > zero else slope * v
    else:  # tanh, elu (and any other): the general kernel, a doubling as z
        bias_activation_forward(a, a, b, act)


@njit(cache=True)
def dense_forward(a, z, x, W, b, act):
    """a = act(x @ W + b). z is scratch for the pre-activation (may be a itself when
    keeps_preactivation(act) is False; then only a is written)."""
    if keeps_preactivation(act):
        np.dot(x, W, z)
        bias_activation_forward(a, z, b, act)
    else:
        np.dot(x, W, a)
        bias_activation_inplace(a, b, act)


@njit(cache=True)
def dense_backward(dx, dW, db, dz, x, W):
    """dW = x.T @ dz, db = column sums of dz (both overwritten), and dx = dz @ W.T when dx
    has rows (pass an empty dx for the first layer: the input needs no gradient)."""
    B, n = dz.shape
    if B == 1:
        # outer product, one write of dW: about 2x faster than sgemm with a unit inner dimension
        # (which OpenBLAS does not forward to ger); gemm m=1 is already forwarded to gemv
        d0 = dz[0]
        for i in range(x.shape[1]):
            row = dW[i]
            c = x[0, i]
            for j in range(n):
                row[j] = c * d0[j]
    else:
        np.dot(x.T, dz, dW)
    zero = db.dtype.type(0.0)
    for j in range(n):
        db[j] = zero
    for i in range(B):
        row = dz[i]
        for j in range(n):
            db[j] += row[j]
    if dx.shape[0] > 0:
        np.dot(dz, W.T, dx)
