"""How far two runs of one computation may differ by rounding alone: bounds that follow from the
computation (its dtype's epsilon, the lengths of its sums, its step count, the magnitude of the
quantity), not from what one CPU produced. Another BLAS (MKL, OpenBLAS's AVX2 or AVX-512
kernels), another thread split or a fused path adds the same terms in another order or with or
without FMAs; each result then carries different rounding errors, of the sizes below.

The comparisons are norm-wise (||a - b||_2 <= bound * ||b||_2), per quantity: the parameters,
each optimizer state slot, each History key. Element-wise bounds do not exist for what the
adaptive optimizers compute: Adam's m / sqrt(v), RMSprop's g / sqrt(v) and Adagrad's
g / sqrt(sum) are ratios of one gradient element to its own running magnitude, so an element
whose gradient cancels to a few roundings of its terms (sum_i a_i d_i over the batch) takes an
update anywhere in +-lr. Such elements are rare (the chance that a sum lands within k eps of its
terms' size of zero is ~k eps; Adam's and RMSprop's eps in the denominator also damp them), and
norm-wise they are a small share of the whole; bounding every element would need a bound of lr
per step, which tests nothing. In float32 on a large network, though, one such element can
outweigh the norm-wise bound: `assert_close(..., ill_conditioned=K)` leaves out the K largest
element deviations (which must stay within the quantity's range); the float64 runs of the same
paths, where such an element has a chance of ~1e-9, check every element.
"""
import math

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7
EPS64 = float(np.finfo(np.float64).eps)  # 2.22e-16


def eps(dtype):
    return float(np.finfo(dtype).eps)


def gamma(n, dtype):
    """gamma_n = n u / (1 - n u), u = eps / 2: a sum of n products in floating point is within
    gamma_n * sum |terms| of the exact sum, whatever the order and with or without FMAs
    (Higham, sec. 3.1): the element-wise worst case."""
    u = eps(dtype) / 2
    return n * u / (1 - n * u)


def step_units(layer_sizes, rows):
    """Rounding errors, in units of eps and norm-wise, that one training step (forward, backward,
    update) of an MLP on a batch of `rows` rows puts into the parameters, relative to their
    size: each layer's GEMMs add up k terms per element (the fan-in forward, the fan-out
    backward, the rows for dW), k <= max(max(layer_sizes), rows), whose independent rounding
    errors grow like sqrt(k) eps (Higham, Accuracy and Stability of Numerical Algorithms, 2nd
    ed., sec. 2.8; the worst case k eps is never approached by sums of mixed signs); the layers'
    errors add up, one sqrt(k) eps per layer, and the elementwise activations and optimizer
    arithmetic add a few eps more (the + 4)."""
    k = max(max(layer_sizes), rows)
    return (len(layer_sizes) - 1) * math.sqrt(k) + 4


def training_units(layer_sizes, rows, steps, amplification=1.0):
    """The same for `steps` steps: each step adds its own errors, and the later steps carry
    them to the end of the fit, magnified by at most the fit's sensitivity to its start
    (`sensitivity`, measured per quantity; an error made later has fewer steps left to grow),
    so they add up to steps * step_units times that. `amplification` is a condition number of
    the optimizer's own arithmetic when it has one (centered RMSprop's v - g_ave^2, see
    rmsprop_centered_amplification)."""
    return max(steps, 1) * step_units(layer_sizes, rows) * amplification


PERTURBATION = 1e-7  # relative: far above float64 rounding, small enough to stay linear


def sensitivity(quantities, start, base=None, seed=0):
    """How much a fit magnifies a relative change of its starting parameters, per quantity:
    {name: max(1, relative change of the quantity / relative change of the start)}, from
    `quantities(start)` -> {name: array}, a float64 fit run from `start` and from `start` with
    every element moved by +-PERTURBATION relative. An adaptive optimizer's per-element
    learning rate lr / sqrt(v) is large where a gradient element is small, so a fit can
    magnify what rounding does to its early steps; this measures by how much, on the
    computation itself (in float64, so the same on every CPU). `base`: quantities(start) if
    already computed."""
    start = np.asarray(start, dtype=np.float64)
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=start.shape)
    base = quantities(start) if base is None else base
    moved = quantities(start * (1 + PERTURBATION * signs))
    change = normwise_error(start * (1 + PERTURBATION * signs), start)
    return {name: max(1.0, normwise_error(moved[name], value) / change)
            for name, value in base.items()}


def rmsprop_centered_amplification(alpha, steps):
    """Centered RMSprop divides by sqrt(v - g_ave^2), a difference that could cancel. It does
    not, by much, early on: with the weights w_i = (1 - alpha) alpha^(t-i) (sum W = 1 - alpha^t),
    v = sum w_i g_i^2 and g_ave = sum w_i g_i, so by Cauchy-Schwarz g_ave^2 <= W v and
    v - g_ave^2 >= alpha^t v: the difference's relative error is at most alpha^-t times that of
    v."""
    return float(alpha) ** -max(steps, 1)


def normwise_error(actual, expected):
    """||actual - expected||_2 / ||expected||_2 (0 when both are 0), in float64."""
    a = np.asarray(actual, dtype=np.float64).ravel()
    e = np.asarray(expected, dtype=np.float64).ravel()
    assert a.shape == e.shape, (a.shape, e.shape)
    scale = np.linalg.norm(e)
    diff = np.linalg.norm(a - e)
    return 0.0 if diff == 0 else float(diff / scale) if scale > 0 else math.inf


def assert_close(actual, expected, units, dtype, what="", ill_conditioned=0):
    """actual within units * eps(dtype) of expected, norm-wise relative to ||expected||. The
    `ill_conditioned` elements that deviate most are left out of the norm (see the module
    docstring) and need only be within the range of expected: |a - e| <= 2 max|expected|."""
    a = np.asarray(actual, dtype=np.float64).ravel()
    e = np.asarray(expected, dtype=np.float64).ravel()
    assert a.shape == e.shape, (what, a.shape, e.shape)
    if ill_conditioned and a.size > ill_conditioned:
        worst = np.argsort(-np.abs(a - e))[:ill_conditioned]
        assert np.all(np.abs(a[worst] - e[worst]) <= 2 * np.max(np.abs(e))), (
            f"{what}: elements {worst} deviate beyond the range of the expected values")
        keep = np.ones(a.size, dtype=bool)
        keep[worst] = False
        a, e = a[keep], e[keep]
    bound = units * eps(dtype)
    err = normwise_error(a, e)
    assert err <= bound, (f"{what}: norm-wise relative difference {err:.3g} > bound {bound:.3g} "
                          f"({units:.3g} eps of {np.dtype(dtype).name})")
