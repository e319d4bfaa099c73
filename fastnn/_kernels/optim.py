"""Fused optimizer updates: one loop over the flat parameter, gradient and state buffers.

Each rule is transcribed from the torch.optim documentation (single-tensor, non-foreach form).
Hyperparameters arrive as a float64 array `hyper` whose layout is fixed per optimizer (see
fastnn/optim.py); scalars derived from the step count (bias corrections, decayed lr) are computed
once per step in float64 and cast to the buffer dtype, so the element loop stays in that dtype.
`state` is (n_slots, n_params) in the parameter dtype; `step` counts from 1. `grad_scale`
multiplies every gradient element (gradient-norm clipping), 1 when not clipping. `l2` adds
l2 * p to the gradient after that scaling, like weight_decay (the training loop passes
alpha / B for weight matrices and 0 for biases: scikit-learn's L2 penalty). Each call
updates the elements lo:hi of p and state (the training loop's threads update disjoint ranges,
and a fused backward updates blocks of rows as it goes); g holds the gradient of exactly those
hi - lo elements.

error_model="numpy": division follows IEEE (x/0 is inf or nan, as in torch) instead of Python's
ZeroDivisionError check, whose branch inside the loop stops LLVM from vectorizing it.
"""
import math

import numpy as np
from numba import njit
from numba.extending import overload

from .static import choose

SGD, ADAM, ADAGRAD, ADADELTA, RMSPROP = range(5)


@njit(cache=True, error_model="numpy")
def sgd_update(p, g, state, hyper, step, grad_scale, lo, hi, l2):
    """torch.optim.SGD. hyper = [lr, momentum, dampening, weight_decay, nesterov];
    state[0] = momentum buffer (initialised to the first gradient, as torch does)."""
    p = p[lo:hi]  # a slice keeps the loop index provably >= 0 (no wraparound checks)
    t = p.dtype.type
    lr = t(hyper[0])
    momentum = t(hyper[1])
    damp = t(1.0 - hyper[2])
    wd = t(hyper[3] + l2)
    nesterov = hyper[4] != 0.0
    scale = t(grad_scale)
    if hyper[1] == 0.0:
        for i in range(p.shape[0]):
            gi = g[i] * scale + wd * p[i]
            p[i] -= lr * gi
        return
    buf = state[0][lo:hi]
    first = step == 1
    for i in range(p.shape[0]):
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


@njit(cache=True, error_model="numpy")
def adam_update(p, g, state, hyper, step, grad_scale, lo, hi, l2):
    """torch.optim.Adam / AdamW. hyper = [lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled];
    state[0] = m, state[1] = v, state[2] = max v (amsgrad only).

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    weight decay: g += wd p (Adam), or p *= 1 - lr wd before the step (AdamW, decoupled)."""
    p = p[lo:hi]  # a slice keeps the loop index provably >= 0 (no wraparound checks)
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
    # coupled decay (Adam's weight_decay and the L2 penalty) on the weights before
    # the step; AdamW's decoupled decay shrinks them first
    wd_l2 = t(l2 if decoupled else hyper[4] + l2)
    decay = t(1.0 - lr * hyper[4] if decoupled else 1.0)
    scale = t(grad_scale)
    m = state[0][lo:hi]
    v = state[1][lo:hi]
    if amsgrad:
        vmax = state[2][lo:hi]
        for i in range(p.shape[0]):
            p0 = p[i]
            pi = p0 * decay
            gi = g[i] * scale + wd_l2 * p0
            mi = m[i] + one_m_b1 * (gi - m[i])
            vi = beta2 * v[i] + one_m_b2 * gi * gi
            vm = max(vmax[i], vi)
            m[i] = mi
            v[i] = vi
            vmax[i] = vm
            p[i] = pi - step_size * mi / (np.sqrt(vm) * inv_bc2_sqrt + eps)
    else:
        for i in range(p.shape[0]):
            p0 = p[i]
            pi = p0 * decay
            gi = g[i] * scale + wd_l2 * p0
            mi = m[i] + one_m_b1 * (gi - m[i])
            vi = beta2 * v[i] + one_m_b2 * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] = pi - step_size * mi / (np.sqrt(vi) * inv_bc2_sqrt + eps)


@njit(cache=True, error_model="numpy")
def adagrad_update(p, g, state, hyper, step, grad_scale, lo, hi, l2):
    """torch.optim.Adagrad. hyper = [lr, lr_decay, weight_decay, initial_accumulator_value, eps];
    state[0] = sum of squared gradients (starts at initial_accumulator_value).

    g <- g + weight_decay p;  lr_t = lr / (1 + (t - 1) lr_decay)
    s <- s + g^2;  p <- p - lr_t g / (sqrt(s) + eps)"""
    p = p[lo:hi]  # a slice keeps the loop index provably >= 0 (no wraparound checks)
    t = p.dtype.type
    clr = t(hyper[0] / (1.0 + (step - 1) * hyper[1]))
    wd = t(hyper[2] + l2)
    eps = t(hyper[4])
    scale = t(grad_scale)
    acc = state[0][lo:hi]
    for i in range(p.shape[0]):
        gi = g[i] * scale + wd * p[i]
        si = acc[i] + gi * gi
        acc[i] = si
        p[i] -= clr * gi / (np.sqrt(si) + eps)


@njit(cache=True, error_model="numpy")
def adadelta_update(p, g, state, hyper, step, grad_scale, lo, hi, l2):
    """torch.optim.Adadelta. hyper = [lr, rho, eps, weight_decay];
    state[0] = v (running mean of g^2), state[1] = u (running mean of squared updates).

    g <- g + weight_decay p;  v <- rho v + (1 - rho) g^2
    dx = sqrt(u + eps) / sqrt(v + eps) g   (eps inside both roots)
    u <- rho u + (1 - rho) dx^2;  p <- p - lr dx"""
    p = p[lo:hi]  # a slice keeps the loop index provably >= 0 (no wraparound checks)
    t = p.dtype.type
    lr = t(hyper[0])
    rho = t(hyper[1])
    one_m_rho = t(1.0 - hyper[1])
    eps = t(hyper[2])
    wd = t(hyper[3] + l2)
    scale = t(grad_scale)
    v = state[0][lo:hi]
    u = state[1][lo:hi]
    for i in range(p.shape[0]):
        gi = g[i] * scale + wd * p[i]
        vi = rho * v[i] + one_m_rho * gi * gi
        dx = np.sqrt(u[i] + eps) / np.sqrt(vi + eps) * gi
        v[i] = vi
        u[i] = rho * u[i] + one_m_rho * dx * dx
        p[i] -= lr * dx


@njit(cache=True, error_model="numpy")
def rmsprop_update(p, g, state, hyper, step, grad_scale, lo, hi, l2):
    """torch.optim.RMSprop. hyper = [lr, alpha, eps, weight_decay, momentum, centered];
    state[0] = v (running mean of g^2), then the momentum buffer b (momentum > 0), then the
    running mean of g, gbar (centered).

    g <- g + weight_decay p;  v <- alpha v + (1 - alpha) g^2
    centered: gbar <- alpha gbar + (1 - alpha) g, and v - gbar^2 replaces v below
    d = sqrt(v) + eps   (eps outside the root)
    momentum: b <- momentum b + g / d, p <- p - lr b;  else p <- p - lr g / d"""
    p = p[lo:hi]  # a slice keeps the loop index provably >= 0 (no wraparound checks)
    t = p.dtype.type
    lr = t(hyper[0])
    alpha = t(hyper[1])
    one_m_alpha = t(1.0 - hyper[1])
    eps = t(hyper[2])
    wd = t(hyper[3] + l2)
    momentum = t(hyper[4])
    use_momentum = hyper[4] > 0.0
    centered = hyper[5] != 0.0
    scale = t(grad_scale)
    v = state[0][lo:hi]
    # unused slots alias v; the branches below never touch them
    buf = state[1][lo:hi] if use_momentum else v
    gbar = state[2 if use_momentum else 1][lo:hi] if centered else v
    for i in range(p.shape[0]):
        gi = g[i] * scale + wd * p[i]
        vi = alpha * v[i] + one_m_alpha * gi * gi
        v[i] = vi
        if centered:
            gb = gbar[i] + one_m_alpha * (gi - gbar[i])
            gbar[i] = gb
            vi = vi - gb * gb
        d = np.sqrt(vi) + eps
        if use_momentum:
            bi = momentum * buf[i] + gi / d
            buf[i] = bi
            p[i] -= lr * bi
        else:
            p[i] -= lr * gi / d


def _update_any(opt, p, g, step, grad_scale, lo, hi, l2):
    """optimizer_update with the rule chosen at run time, from opt.code."""
    code = opt.code
    if code == SGD:
        sgd_update(p, g, opt.state, opt.hyper, step, grad_scale, lo, hi, l2)
    elif code == ADAM:
        adam_update(p, g, opt.state, opt.hyper, step, grad_scale, lo, hi, l2)
    elif code == ADAGRAD:
        adagrad_update(p, g, opt.state, opt.hyper, step, grad_scale, lo, hi, l2)
    elif code == ADADELTA:
        adadelta_update(p, g, opt.state, opt.hyper, step, grad_scale, lo, hi, l2)
    elif code == RMSPROP:
        rmsprop_update(p, g, opt.state, opt.hyper, step, grad_scale, lo, hi, l2)
    else:
        raise ValueError("unknown optimizer code")


_UPDATES = {SGD: sgd_update, ADAM: adam_update, ADAGRAD: adagrad_update,
            ADADELTA: adadelta_update, RMSPROP: rmsprop_update}


def optimizer_update(opt, p, g, step, grad_scale, lo, hi, l2):
    """One fused pass of `opt`'s rule (an OptimizerState bundle: code, hyper, state) over
    elements lo:hi of p and opt.state (one thread's share; 0, p.size for all), step number
    `step` (from 1), g the gradient of those hi - lo elements.

    Compiled code with a static opt.code (static.Static: the training loop's) compiles that
    rule alone; with a plain int code, every rule behind a run-time branch."""
    _update_any_compiled(opt, p, g, step, grad_scale, lo, hi, l2)


_update_any_compiled = njit(cache=True)(_update_any)


def _unknown_update(p, g, state, hyper, step, grad_scale, lo, hi, l2):
    raise ValueError("unknown optimizer code")


@overload(optimizer_update)
def _optimizer_update_overload(opt, p, g, step, grad_scale, lo, hi, l2):
    update = choose(opt.types[opt.fields.index("code")], _UPDATES, njit(_unknown_update))
    if update is None:
        return _update_any

    def one_rule(opt, p, g, step, grad_scale, lo, hi, l2):
        update(p, g, opt.state, opt.hyper, step, grad_scale, lo, hi, l2)
    return one_rule
