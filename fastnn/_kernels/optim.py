"""Fused optimizer updates: one loop over the flat parameter, gradient and state buffers.

Each rule is transcribed from the torch.optim documentation (single-tensor, non-foreach form).
Hyperparameters arrive as a float64 array `hyper` whose layout is fixed per optimizer (see
fastnn/optim.py); scalars derived from the step count (bias corrections, decayed lr) are computed
once per step in float64 and cast to the buffer dtype, so the element loop stays in that dtype.
`state` is (n_slots, n_params) in the parameter dtype; `step` counts from 1. `grad_scale`
multiplies every gradient element (gradient-norm clipping), 1 when not clipping.
"""
import math

import numpy as np
from numba import njit

SGD, ADAM, ADAGRAD, ADADELTA, RMSPROP = range(5)


@njit(cache=True)
def sgd_update(p, g, state, hyper, step, grad_scale):
    """torch.optim.SGD. hyper = [lr, momentum, dampening, weight_decay, nesterov];
    state[0] = momentum buffer (initialised to the first gradient, as torch does)."""
    t = p.dtype.type
    lr = t(hyper[0])
    momentum = t(hyper[1])
    damp = t(1.0 - hyper[2])
    wd = t(hyper[3])
    nesterov = hyper[4] != 0.0
    scale = t(grad_scale)
    n = p.shape[0]
    if hyper[1] == 0.0:
        for i in range(n):
            gi = g[i] * scale + wd * p[i]
            p[i] -= lr * gi
        return
    buf = state[0]
    first = step == 1
    for i in range(n):
        gi = g[i] * scale + wd * p[i]
        if first:
            bi = gi
        else:
            bi = momentum * buf[i] + damp * gi
        buf[i] = bi
        if nesterov:
            gi = gi + momentum * bi
        else:
            gi = bi
        p[i] -= lr * gi


@njit(cache=True)
def adam_update(p, g, state, hyper, step, grad_scale):
    """torch.optim.Adam / AdamW. hyper = [lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled];
    state[0] = m, state[1] = v, state[2] = max v (amsgrad only).

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    weight decay: g += wd p (Adam), or p *= 1 - lr wd before the step (AdamW, decoupled)."""
    t = p.dtype.type
    lr = hyper[0]
    b1 = hyper[1]
    b2 = hyper[2]
    amsgrad = hyper[5] != 0.0
    decoupled = hyper[6] != 0.0
    bc1 = 1.0 - b1**step
    bc2 = 1.0 - b2**step
    step_size = t(lr / bc1)
    inv_bc2_sqrt = t(1.0 / math.sqrt(bc2))
    eps = t(hyper[3])
    one_m_b1 = t(1.0 - b1)
    beta2 = t(b2)
    one_m_b2 = t(1.0 - b2)
    wd_l2 = t(0.0 if decoupled else hyper[4])
    decay = t(1.0 - lr * hyper[4] if decoupled else 1.0)
    scale = t(grad_scale)
    m = state[0]
    v = state[1]
    n = p.shape[0]
    if amsgrad:
        vmax = state[2]
        for i in range(n):
            pi = p[i] * decay
            gi = g[i] * scale + wd_l2 * pi
            mi = m[i] + one_m_b1 * (gi - m[i])
            vi = beta2 * v[i] + one_m_b2 * gi * gi
            vm = max(vmax[i], vi)
            m[i] = mi
            v[i] = vi
            vmax[i] = vm
            p[i] = pi - step_size * mi / (np.sqrt(vm) * inv_bc2_sqrt + eps)
    else:
        for i in range(n):
            pi = p[i] * decay
            gi = g[i] * scale + wd_l2 * pi
            mi = m[i] + one_m_b1 * (gi - m[i])
            vi = beta2 * v[i] + one_m_b2 * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] = pi - step_size * mi / (np.sqrt(vi) * inv_bc2_sqrt + eps)


@njit(cache=True)
def optimizer_update(code, p, g, state, hyper, step, grad_scale):
    """Dispatch on the optimizer code; every branch is one fused pass over the buffers."""
    if code == SGD:
        sgd_update(p, g, state, hyper, step, grad_scale)
    elif code == ADAM:
        adam_update(p, g, state, hyper, step, grad_scale)
