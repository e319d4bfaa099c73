"""Dropout masks as a function of counters, shared by both devices (cuda/dropout.py compiles
these same functions for the GPU).

Inverted dropout (torch's nn.Dropout): during training each unit of a dropout site is zeroed
with probability p and the survivors are scaled by 1 / (1 - p), so the expected activation is
unchanged and inference uses the network as it is. Site s is the input of layer s: site 0 the
input features, site s >= 1 the output of hidden layer s - 1.

Whether unit j of row i is kept at site s in optimizer step t is a hash of the counters
(seed, t, s, i, j): nothing random is stored or shared between threads, the backward pass
recomputes the mask it needs, and the mask of a step is the same on any thread count and on
either device (the row is the sample's position in the step's batch, which no thread split
changes). The hash chains the 32-bit "lowbias32" integer mix (an avalanche mix of the
splitmix / murmur finalizer family) over the counters' 32-bit words: a per-row key is mixed
once from (seed, step, site, row), and each unit then costs one mix of key ^ unit (unit_hash).
All arithmetic is in uint64 with every product masked back to 32 bits, so it never wraps (the
CUDA simulator runs it on NumPy scalars) and the per-unit loop vectorizes. A unit is kept when
its 32-bit hash is >= threshold = round(p * 2^32), computed once on the host (keep_threshold;
a p below 2^-33 rounds to no dropout); threshold 0 means no dropout at that site, checked once
per layer, so a model without dropout runs the same code as before.
"""
import numpy as np
from numba import njit

from .bundles import Dropout
from .dense import (
    GELU,
    IDENTITY,
    LEAKY_RELU,
    RELU,
    activation_backward,
    activation_grad,
    as_variable,
    bias_activation_forward,
    bias_activation_inplace,
    keeps_preactivation,
)

_M32 = np.uint64(0xFFFFFFFF)
_C1 = np.uint64(0x7FEB352D)
_C2 = np.uint64(0x846CA68B)
_S15 = np.uint64(15)
_S16 = np.uint64(16)
_S32 = np.uint64(32)
_GOLDEN = np.uint64(0x9E3779B9)  # 2^32 / golden ratio: spreads the seed's first word


def keep_threshold(p):
    """The integer threshold of drop probability p in [0, 1): a unit whose 32-bit hash is
    >= it is kept, so P(keep) = 1 - threshold / 2^32 (within 2^-33 of 1 - p)."""
    return min(round(float(p) * 2.0**32), 2**32 - 1)


def dropout_sites(rates):
    """A Dropout bundle for the per-site drop probabilities `rates` (L,) (site 0 the input
    features, site s the output of hidden layer s - 1), with seed 0 (see with_seed)."""
    rates = np.asarray(rates, dtype=np.float64)
    threshold = np.array([keep_threshold(p) for p in rates], dtype=np.int64)
    scale = np.where(threshold > 0, 1.0 / (1.0 - rates), 1.0)
    return Dropout(threshold, scale, 1.0 - rates, 0)


def with_seed(drop, seed):
    """The same sites with another seed (a non-negative int below 2^63)."""
    return drop._replace(seed=int(seed) & 0x7FFFFFFFFFFFFFFF)


@njit(cache=True)
def no_dropout(net):
    """The Dropout of inference: no site drops anything."""
    return Dropout(net.sizes[:0], np.zeros(0), np.zeros(0), as_variable(0))


@njit(cache=True)
def unit_hash(key, unit):
    """The 32-bit hash of unit `unit` in the row whose key is `key`: lowbias32 (Chris
    Wellons' integer hash search), a bijective avalanche mix of the low 32 bits of key ^ unit.
    (No calls inside: the GPU compiles this same function, cuda/dropout.py.)"""
    x = (key ^ np.uint64(unit)) & _M32
    x = x ^ (x >> _S16)
    x = (x * _C1) & _M32
    x = x ^ (x >> _S15)
    x = (x * _C2) & _M32
    return x ^ (x >> _S16)


@njit(cache=True)
def row_key(seed, step, site, row):
    """The 32-bit key of one row of one dropout site in one step (the counters as
    non-negative int64): the lowbias32 mix chained over the counters' 32-bit words."""
    s = np.uint64(seed)
    t = np.uint64(step)
    k = _GOLDEN
    for w in (s & _M32, s >> _S32, t & _M32, t >> _S32, np.uint64(site), np.uint64(row)):
        x = (k ^ w) & _M32
        x = x ^ (x >> _S16)
        x = (x * _C1) & _M32
        x = x ^ (x >> _S15)
        x = (x * _C2) & _M32
        k = x ^ (x >> _S16)
    return k


@njit(cache=True)
def dropout_forward_row(a, key, c0, n, threshold, scale):
    """a[j] *= scale if unit c0 + j is kept, else 0, for j < n: the inverted-dropout epilogue
    of one row of a layer's output (a: that row's columns c0:c0 + n), and the first half of
    its backward (the same factor on the row's delta)."""
    t = a.dtype.type
    s = t(scale)
    zero = t(0.0)
    thr = np.uint64(threshold)
    for j in range(n):
        a[j] = a[j] * (s if unit_hash(key, c0 + j) >= thr else zero)


@njit(cache=True)
def recovered_activation_backward_row(dz, a, z, act, n, keep):
    """dz[j] *= act'(.) for j < n, the activation's output taken as a[j] * keep: a is a row of
    a dropout site's output (scaled by 1 / keep where kept; where dropped, dz is already 0).
    For the activations whose derivative needs the output's value (tanh, sigmoid, elu)."""
    q = dz.dtype.type(keep)
    for j in range(n):
        dz[j] = activation_grad(dz[j], a[j] * q, z[j], act, dz)


@njit(cache=True)
def dropping(drop, site):
    """Whether dropout site `site` (the input of layer `site`) drops anything: checked once
    per layer, so a network without dropout runs no dropout code. `drop` None (a fit without
    dropout, inference) is a compile-time "never": the kernels test `drop is None` on their
    argument, which Numba resolves before typing, so no dropout code is even compiled."""
    if drop is None:
        return False
    return site < drop.threshold.shape[0] and drop.threshold[site] > 0


@njit(cache=True)
def output_epilogue(a, z, b, act, r0, r1, c0, c1, drop, step, site):
    """Bias + activation on rows r0:r1, columns c0:c1 of a layer's output (a, z its (B, fo)
    blocks; z is a itself when the activation keeps no pre-activation), then, when `site`
    drops units, the dropout of each row while it is in cache."""
    keep = keeps_preactivation(act)
    if drop is None or not dropping(drop, site):
        if keep:
            bias_activation_forward(a, z, b, act, r0, r1, c0, c1)
        else:
            bias_activation_inplace(a, b, act, r0, r1, c0, c1)
        return
    for r in range(r0, r1):
        if keep:
            bias_activation_forward(a, z, b, act, r, r + 1, c0, c1)
        else:
            bias_activation_inplace(a, b, act, r, r + 1, c0, c1)
        dropout_forward_row(a[r, c0:c1], row_key(drop.seed, step, site, r), c0, c1 - c0,
                            drop.threshold[site], drop.scale[site])


@njit(cache=True)
def delta_epilogue(dz, a, z, act, r0, r1, c0, c1, drop, step, site):
    """dz *= act'(z) on rows r0:r1, columns c0:c1 of a hidden layer's delta (dz, a, z its
    (B, fo) blocks), fused with the backward of the dropout at `site` (its output) when it
    drops units: dz = (dz * mask / (1 - p)) * act'(z), the mask recomputed from its counters,
    row by row while the row is in cache. a holds the dropped output: for relu, leaky_relu,
    identity and gelu (z) the derivative of a kept unit reads the same from it, for the others
    the output is recovered as a * (1 - p)."""
    if drop is None or not dropping(drop, site):
        activation_backward(dz, a, z, act, r0, r1, c0, c1)
        return
    thr, scale = drop.threshold[site], drop.scale[site]
    exact = act == RELU or act == LEAKY_RELU or act == IDENTITY or act == GELU
    for r in range(r0, r1):
        dropout_forward_row(dz[r, c0:c1], row_key(drop.seed, step, site, r), c0, c1 - c0, thr,
                            scale)
        if exact:
            activation_backward(dz, a, z, act, r, r + 1, c0, c1)
        else:
            recovered_activation_backward_row(dz[r, c0:c1], a[r, c0:c1], z[r, c0:c1], act,
                                              c1 - c0, drop.keep[site])
