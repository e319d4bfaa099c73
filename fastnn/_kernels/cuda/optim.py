"""Fused optimizer updates on the GPU: one kernel per rule, one thread per parameter element.

Mirrors fastnn/_kernels/optim.py (torch.optim's single-tensor formulas, the same `hyper`
layouts and state slots). As in llm.c's adamw.cuh, everything that depends only on the step
(bias corrections, decayed lr) is computed once per step on the host in float64 and passed as
scalars, which the kernel casts to the buffer dtype exactly as the CPU kernel does.

The CPU kernels take `grad_scale` as a number; here the gradient-norm clipping and divergence
check run on the device (see network.clip_and_check), so `grad_scale` is the team's `control`, a
float64 device array: control[0] multiplies every gradient element (clipping, 1 otherwise),
and control[1] != 0 means "do not update" (a non-finite loss or gradient in this step).
p (n,) and state (n_slots, n) are device arrays in the parameter dtype, of which elements lo:hi
are updated, g the (hi - lo,) gradient of those; hyper is the host float64 array; step counts
from 1. `l2` joins the weight decay (scikit-learn's L2 penalty on the weight matrices:
the training loop updates their segments with alpha / B, the biases with 0).
"""
import math

from numba import cuda

from ..optim import ADADELTA, ADAGRAD, ADAM, RMSPROP, SGD
from . import dense as _dense


# ---------------------------------------------------------------------------- kernels
@cuda.jit(cache=True)
def sgd_kernel(p, g, state, lr_, momentum_, damp_, wd_, nesterov, first, control):
    if control[1] != 0.0:
        return
    t = p.dtype.type
    lr = t(lr_)
    momentum = t(momentum_)
    damp = t(damp_)
    wd = t(wd_)
    scale = t(control[0])
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for i in range(start, p.shape[0], stride):
        gi = g[i] * scale + wd * p[i]
        if momentum_ != 0.0:
            if first:
                bi = gi
            else:
                bi = momentum * state[0, i] + damp * gi
            state[0, i] = bi
            if nesterov:
                gi = gi + momentum * bi
            else:
                gi = bi
        p[i] -= lr * gi


@cuda.jit(cache=True)
def adam_kernel(p, g, state, step_size_, inv_bc2_sqrt_, eps_, one_m_b1_, beta2_, one_m_b2_,
                wd_l2_, decay_, amsgrad, control):
    if control[1] != 0.0:
        return
    t = p.dtype.type
    step_size = t(step_size_)
    inv_bc2_sqrt = t(inv_bc2_sqrt_)
    eps = t(eps_)
    one_m_b1 = t(one_m_b1_)
    beta2 = t(beta2_)
    one_m_b2 = t(one_m_b2_)
    wd_l2 = t(wd_l2_)
    decay = t(decay_)
    scale = t(control[0])
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for i in range(start, p.shape[0], stride):
        p0 = p[i]
        pi = p0 * decay
        gi = g[i] * scale + wd_l2 * p0
        mi = state[0, i] + one_m_b1 * (gi - state[0, i])
        vi = beta2 * state[1, i] + one_m_b2 * gi * gi
        state[0, i] = mi
        state[1, i] = vi
        if amsgrad:
            vmax = state[2, i]
            vi = vmax if vmax > vi else vi  # noqa: FURB136 (numba.cuda's max() fails to type)
            state[2, i] = vi
        p[i] = pi - step_size * mi / (math.sqrt(vi) * inv_bc2_sqrt + eps)


@cuda.jit(cache=True)
def adagrad_kernel(p, g, state, clr_, wd_, eps_, control):
    if control[1] != 0.0:
        return
    t = p.dtype.type
    clr = t(clr_)
    wd = t(wd_)
    eps = t(eps_)
    scale = t(control[0])
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for i in range(start, p.shape[0], stride):
        gi = g[i] * scale + wd * p[i]
        si = state[0, i] + gi * gi
        state[0, i] = si
        p[i] -= clr * gi / (math.sqrt(si) + eps)


@cuda.jit(cache=True)
def adadelta_kernel(p, g, state, lr_, rho_, one_m_rho_, eps_, wd_, control):
    if control[1] != 0.0:
        return
    t = p.dtype.type
    lr = t(lr_)
    rho = t(rho_)
    one_m_rho = t(one_m_rho_)
    eps = t(eps_)
    wd = t(wd_)
    scale = t(control[0])
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for i in range(start, p.shape[0], stride):
        gi = g[i] * scale + wd * p[i]
        vi = rho * state[0, i] + one_m_rho * gi * gi
        dx = math.sqrt(state[1, i] + eps) / math.sqrt(vi + eps) * gi
        state[0, i] = vi
        state[1, i] = rho * state[1, i] + one_m_rho * dx * dx
        p[i] -= lr * dx


@cuda.jit(cache=True)
def rmsprop_kernel(p, g, state, lr_, alpha_, one_m_alpha_, eps_, wd_, momentum_, centered,
                   buf_slot, gbar_slot, control):
    if control[1] != 0.0:
        return
    t = p.dtype.type
    lr = t(lr_)
    alpha = t(alpha_)
    one_m_alpha = t(one_m_alpha_)
    eps = t(eps_)
    wd = t(wd_)
    momentum = t(momentum_)
    scale = t(control[0])
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for i in range(start, p.shape[0], stride):
        gi = g[i] * scale + wd * p[i]
        vi = alpha * state[0, i] + one_m_alpha * gi * gi
        state[0, i] = vi
        if centered:
            gb = state[gbar_slot, i] + one_m_alpha * (gi - state[gbar_slot, i])
            state[gbar_slot, i] = gb
            vi = vi - gb * gb
        d = math.sqrt(vi) + eps
        if momentum_ > 0.0:
            bi = momentum * state[buf_slot, i] + gi / d
            state[buf_slot, i] = bi
            p[i] -= lr * bi
        else:
            p[i] -= lr * gi / d


# ---------------------------------------------------------------------------- launchers
def _elements(p, state, lo, hi):
    """p[lo:hi] and state[:, lo:hi], without slicing when that is all of them."""
    if lo == 0 and hi == p.shape[0]:
        return p, state
    return p[lo:hi], state[:, lo:hi]


def _grid(n):
    threads = _dense.THREADS
    return max(min((n + threads - 1) // threads, 65536), 1), threads


def sgd_update(p, g, state, hyper, step, grad_scale, lo, hi, l2):
    """torch.optim.SGD. hyper = [lr, momentum, dampening, weight_decay, nesterov];
    state[0] = momentum buffer (the first gradient at step 1, as torch)."""
    p, state = _elements(p, state, lo, hi)
    grid, threads = _grid(p.shape[0])
    sgd_kernel[grid, threads](p, g, state, float(hyper[0]), float(hyper[1]),
                              1.0 - float(hyper[2]), float(hyper[3]) + l2, hyper[4] != 0.0,
                              step == 1, grad_scale)


def adam_update(p, g, state, hyper, step, grad_scale, lo, hi, l2):
    """torch.optim.Adam / AdamW. hyper = [lr, beta1, beta2, eps, weight_decay, amsgrad,
    decoupled]; state[0] = m, state[1] = v, state[2] = max v (amsgrad).
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps); the two bias corrections are
    host scalars."""
    p, state = _elements(p, state, lo, hi)
    lr, b1, b2 = float(hyper[0]), float(hyper[1]), float(hyper[2])
    decoupled = hyper[6] != 0.0
    bc1 = 1.0 - b1**step
    bc2 = 1.0 - b2**step
    grid, threads = _grid(p.shape[0])
    adam_kernel[grid, threads](p, g, state, lr / bc1, 1.0 / math.sqrt(bc2), float(hyper[3]),
                               1.0 - b1, b2, 1.0 - b2,
                               l2 if decoupled else float(hyper[4]) + l2,
                               1.0 - lr * float(hyper[4]) if decoupled else 1.0,
                               hyper[5] != 0.0, grad_scale)


def adagrad_update(p, g, state, hyper, step, grad_scale, lo, hi, l2):
    """torch.optim.Adagrad. hyper = [lr, lr_decay, weight_decay, initial_accumulator_value,
    eps]; state[0] = sum of squared gradients. lr_t = lr / (1 + (t - 1) lr_decay) on the host."""
    p, state = _elements(p, state, lo, hi)
    grid, threads = _grid(p.shape[0])
    adagrad_kernel[grid, threads](p, g, state, float(hyper[0]) / (1.0 + (step - 1) * hyper[1]),
                                  float(hyper[2]) + l2, float(hyper[4]), grad_scale)


def adadelta_update(p, g, state, hyper, step, grad_scale, lo, hi, l2):
    """torch.optim.Adadelta. hyper = [lr, rho, eps, weight_decay]; state = [v, u]."""
    p, state = _elements(p, state, lo, hi)
    grid, threads = _grid(p.shape[0])
    adadelta_kernel[grid, threads](p, g, state, float(hyper[0]), float(hyper[1]),
                                   1.0 - float(hyper[1]), float(hyper[2]), float(hyper[3]) + l2,
                                   grad_scale)


def rmsprop_update(p, g, state, hyper, step, grad_scale, lo, hi, l2):
    """torch.optim.RMSprop. hyper = [lr, alpha, eps, weight_decay, momentum, centered];
    state = [v, momentum buffer (momentum > 0), mean gradient (centered)]."""
    p, state = _elements(p, state, lo, hi)
    use_momentum = hyper[4] > 0.0
    centered = hyper[5] != 0.0
    grid, threads = _grid(p.shape[0])
    rmsprop_kernel[grid, threads](p, g, state, float(hyper[0]), float(hyper[1]),
                                  1.0 - float(hyper[1]), float(hyper[2]), float(hyper[3]) + l2,
                                  float(hyper[4]), centered, 1, 2 if use_momentum else 1,
                                  grad_scale)


_UPDATES = {SGD: sgd_update, ADAM: adam_update, ADAGRAD: adagrad_update,
            ADADELTA: adadelta_update, RMSPROP: rmsprop_update}


def optimizer_update(opt, p, g, step, grad_scale, lo, hi, l2):
    """One fused kernel launch of `opt`'s rule (an OptimizerState bundle: code, hyper on the
    host, state on the device) over elements lo:hi, step number `step`."""
    try:
        update = _UPDATES[opt.code]
    except KeyError:
        raise ValueError(f"unknown optimizer code {opt.code!r}") from None
    update(p, g, opt.state, opt.hyper, step, grad_scale, lo, hi, float(l2))
