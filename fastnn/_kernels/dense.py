"""Dense layer elementwise kernels around the GEMMs (which layer.py calls through blas.gemm).

Forward   z = x @ W + b,  a = act(z)
Backward  dW = x.T @ dz,  db = sum_rows(dz),  dx = dz @ W.T,  dz_prev = dx * act'(prev)

Shapes: x (B, fan_in), W (fan_in, fan_out), b (fan_out,), z/a/dz (B, fan_out).
Every kernel writes into buffers it is given and allocates nothing. Activations are small
integer codes so that one compiled kernel serves every architecture.
"""
import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, ELU, GELU, SOFTMAX = range(8)

LEAKY_RELU_SLOPE = 0.01  # torch.nn.LeakyReLU default
ELU_ALPHA = 1.0  # torch.nn.ELU default


@intrinsic
def as_variable(typingctx, v):
    """v as a plain int64. Numba compiles a separate copy of a callee for every distinct
    literal int argument (Literal[int](0) is its own type, and a jitted identity function
    returns it unchanged); passing as_variable(0) instead of 0 to the large kernels keeps one
    compiled version of each."""
    if not isinstance(v, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return context.cast(builder, args[0], signature.args[0], types.int64)
    return types.int64(v), codegen


@njit(cache=True)
def keeps_preactivation(act):
    """Whether the backward pass (or the loss) needs z itself, not just a = act(z).

    For these the forward writes z to its own buffer; for the others a overwrites z in place.
    Softmax/sigmoid keep z so that cross-entropy uses log-sum-exp on the logits (stable)."""
    return act == GELU or act == SOFTMAX or act == SIGMOID


@njit(cache=True)
def activation_grad(g, a, z, act, like):
    """g * act'(z) for one element, the derivative taken from the output a where it can be (z
    for gelu); `like` (an array) gives the dtype. The elementwise form of activation_backward,
    shared with the GPU (cuda/dense.py compiles it for the device) and the dropout backward."""
    t = like.dtype.type
    zero = t(0.0)
    one = t(1.0)
    if act == RELU:
        return g if a > zero else zero
    if act == LEAKY_RELU:
        return g if a > zero else g * t(LEAKY_RELU_SLOPE)
    if act == TANH:
        return g * (one - a * a)
    if act == ELU:
        return g if a > zero else g * (a + t(ELU_ALPHA))
    if act == SIGMOID:
        return g * (a * (one - a))
    if act == GELU:
        half = t(0.5)
        cdf = half * (one + math.erf(z * t(1.0 / math.sqrt(2.0))))
        pdf = t(1.0 / math.sqrt(2.0 * math.pi)) * math.exp(-half * z * z)
        return g * (cdf + z * pdf)
    return g  # IDENTITY


@njit(cache=True)
def bias_activation_forward(a, z, b, act, r0, r1, c0, c1):
    """z += b (row-broadcast), a = act(z) on rows r0:r1, columns c0:c1 (one thread's block);
    one pass. a may be z itself unless keeps_preactivation. Softmax needs whole rows."""
    n = c1 - c0
    bb = b[c0:c1]
    one = z.dtype.type(1.0)
    zero = z.dtype.type(0.0)
    # one loop per activation so that each inner loop is branch-free and vectorizes
    if act == IDENTITY:
        for i in range(r0, r1):
            ar = a[i, c0:c1]
            zr = z[i, c0:c1]
            for j in range(n):
                ar[j] = zr[j] + bb[j]
    elif act == RELU:
        for i in range(r0, r1):
            ar = a[i, c0:c1]
            zr = z[i, c0:c1]
            for j in range(n):
                v = zr[j] + bb[j]
                ar[j] = zero if v < zero else v  # noqa: FURB136 (a select; NaN stays NaN, as in torch)
    elif act == LEAKY_RELU:
        slope = z.dtype.type(LEAKY_RELU_SLOPE)
        for i in range(r0, r1):
            ar = a[i, c0:c1]
            zr = z[i, c0:c1]
            for j in range(n):
                v = zr[j] + bb[j]
                ar[j] = v if v > zero else slope * v
    elif act == TANH:
        for i in range(r0, r1):
            ar = a[i, c0:c1]
            zr = z[i, c0:c1]
            for j in range(n):
                ar[j] = np.tanh(zr[j] + bb[j])
    elif act == ELU:
        alpha = z.dtype.type(ELU_ALPHA)
        for i in range(r0, r1):
            ar = a[i, c0:c1]
            zr = z[i, c0:c1]
            for j in range(n):
                v = zr[j] + bb[j]
                ar[j] = v if v > zero else alpha * math.expm1(v)
    elif act == SIGMOID:
        for i in range(r0, r1):
            ar = a[i, c0:c1]
            zr = z[i, c0:c1]
            for j in range(n):
                v = zr[j] + bb[j]
                zr[j] = v
                ar[j] = one / (one + np.exp(-v))
    elif act == GELU:
        half = z.dtype.type(0.5)
        inv_sqrt2 = z.dtype.type(1.0 / math.sqrt(2.0))
        for i in range(r0, r1):
            ar = a[i, c0:c1]
            zr = z[i, c0:c1]
            for j in range(n):
                v = zr[j] + bb[j]
                zr[j] = v
                ar[j] = half * v * (one + math.erf(v * inv_sqrt2))
    elif act == SOFTMAX:
        for i in range(r0, r1):
            ar = a[i, c0:c1]
            zr = z[i, c0:c1]
            m = zr[0] + bb[0]
            for j in range(n):
                v = zr[j] + bb[j]
                zr[j] = v
                m = max(m, v)
            s = zero
            for j in range(n):
                e = np.exp(zr[j] - m)
                ar[j] = e
                s += e
            inv = one / s
            for j in range(n):
                ar[j] *= inv


@njit(cache=True)
def activation_backward(dz, a, z, act, r0, r1, c0, c1):
    """dz *= act'(z) in place on rows r0:r1, columns c0:c1, with the derivative taken from the
    output a where it can be (softmax needs whole rows).

    On entry dz holds dL/da; on exit dL/dz. z is read only for gelu (and softmax uses a)."""
    n = c1 - c0
    one = dz.dtype.type(1.0)
    zero = dz.dtype.type(0.0)
    if act == IDENTITY:
        return
    elif act == RELU:  # selects, not branches: the loop vectorizes
        for i in range(r0, r1):
            row = dz[i, c0:c1]
            ar = a[i, c0:c1]
            for j in range(n):
                row[j] = row[j] if ar[j] > zero else zero
    elif act == LEAKY_RELU:
        slope = dz.dtype.type(LEAKY_RELU_SLOPE)
        for i in range(r0, r1):
            row = dz[i, c0:c1]
            ar = a[i, c0:c1]
            for j in range(n):
                row[j] = row[j] if ar[j] > zero else slope * row[j]
    elif act == TANH:
        for i in range(r0, r1):
            dzr = dz[i, c0:c1]
            ar = a[i, c0:c1]
            for j in range(n):
                dzr[j] *= one - ar[j] * ar[j]
    elif act == ELU:
        alpha = dz.dtype.type(ELU_ALPHA)
        for i in range(r0, r1):
            dzr = dz[i, c0:c1]
            ar = a[i, c0:c1]
            for j in range(n):
                if not ar[j] > zero:
                    dzr[j] *= ar[j] + alpha
    elif act == SIGMOID:
        for i in range(r0, r1):
            dzr = dz[i, c0:c1]
            ar = a[i, c0:c1]
            for j in range(n):
                dzr[j] *= ar[j] * (one - ar[j])
    elif act == GELU:
        half = dz.dtype.type(0.5)
        inv_sqrt2 = dz.dtype.type(1.0 / math.sqrt(2.0))
        inv_sqrt2pi = dz.dtype.type(1.0 / math.sqrt(2.0 * math.pi))
        for i in range(r0, r1):
            dzr = dz[i, c0:c1]
            ar = a[i, c0:c1]
            zr = z[i, c0:c1]
            for j in range(n):
                v = zr[j]
                cdf = half * (one + math.erf(v * inv_sqrt2))
                pdf = inv_sqrt2pi * np.exp(-half * v * v)
                dzr[j] *= cdf + v * pdf
    elif act == SOFTMAX:
        # Jacobian-vector product: dz_j = a_j (g_j - sum_k g_k a_k)
        for i in range(r0, r1):
            dzr = dz[i, c0:c1]
            ar = a[i, c0:c1]
            s = zero
            for j in range(n):
                s += dzr[j] * ar[j]
            for j in range(n):
                dzr[j] = ar[j] * (dzr[j] - s)


@njit(cache=True)
def bias_activation_inplace(a, b, act, r0, r1, c0, c1):
    """a = act(a + b) in place (row-broadcast b) on rows r0:r1, columns c0:c1, for the
    activations that do not keep z.

    Reading and writing one array lets LLVM vectorize the loop: with a and z passed as the
    same buffer to bias_activation_forward, its runtime alias check fails and the loop runs
    scalar (about 4x slower)."""
    n = c1 - c0
    bb = b[c0:c1]
    zero = a.dtype.type(0.0)
    if act == IDENTITY:
        for i in range(r0, r1):
            row = a[i, c0:c1]
            for j in range(n):
                row[j] += bb[j]
    elif act == RELU:
        for i in range(r0, r1):
            row = a[i, c0:c1]
            for j in range(n):
                v = row[j] + bb[j]
                row[j] = zero if v < zero else v  # noqa: FURB136 (a select; NaN stays NaN, as in torch)
    elif act == LEAKY_RELU:
        slope = a.dtype.type(LEAKY_RELU_SLOPE)
        for i in range(r0, r1):
            row = a[i, c0:c1]
            for j in range(n):
                v = row[j] + bb[j]
                row[j] = v if v > zero else slope * v
    else:  # tanh, elu (and any other): the general kernel, a doubling as z
        bias_activation_forward(a, a, b, act, r0, r1, c0, c1)
