"""Dropout on the GPU, mirroring fastnn/_kernels/dropout.py: the CPU's counter hash (row_key,
unit_hash) compiled for the device, so a step's mask is the same bits on both devices. The
forward's mask is fused into the GEMM's bias + activation epilogue (dense.gemm), the input's
into the batch gather (steps.gather_batch), and the backward's into the activation derivative
(delta_epilogue below): no pass of its own over memory, nothing stored.
"""
import numpy as np
from numba import cuda

from .. import dropout as _cpu
from ..bundles import Dropout
from . import dense as _dense
from .dense import row_key, unit_hash  # the CPU's hash, compiled for the device

# (host-side, as on the CPU: whether a site drops anything)
dropping = _cpu.dropping.py_func


@cuda.jit(device=True, inline=True)
def dropout_factor(seed, step, site, row, unit, threshold, scale, like):
    """scale if the unit survives, else 0 (in like's dtype)."""
    t = like.dtype.type
    if unit_hash(row_key(seed, step, site, row), unit) >= np.uint64(threshold):
        return t(scale)
    return t(0.0)


@cuda.jit(cache=True)
def dropout_rows_kernel(out, x, seed, step, site, threshold, scale):
    """out[i, j] = x[i, j] * dropout_factor(..., i, j, ...)."""
    B, n = x.shape
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for idx in range(start, B * n, stride):
        i = idx // n
        j = idx - i * n
        out[i, j] = x[i, j] * dropout_factor(seed, step, site, i, j, threshold, scale, out)


@cuda.jit(cache=True)
def dropout_backward_kernel(dz, a, z, act, seed, step, site, threshold, scale, keep):
    """dz = (dz * mask * scale) * act'(.) elementwise, the activation's output recovered from
    the dropped one as a * keep (as the CPU's delta_epilogue)."""
    B, n = dz.shape
    t = dz.dtype.type
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for idx in range(start, B * n, stride):
        i = idx // n
        j = idx - i * n
        g = dz[i, j] * dropout_factor(seed, step, site, i, j, threshold, scale, dz)
        dz[i, j] = _dense.activation_grad(g, a[i, j] * t(keep),
                                          _dense.preactivation(z, i, j, act), act, dz)


def no_dropout(net):
    """The Dropout of inference: no site drops anything."""
    return Dropout(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), 0)


def site_args(drop, step, site):
    """The kernels' scalar arguments of one site: (seed, step, site, threshold, scale),
    threshold 0 when the site drops nothing."""
    if not dropping(drop, site):
        return _dense.NO_DROPOUT
    return (int(drop.seed), int(step), int(site), int(drop.threshold[site]),
            float(drop.scale[site]))


def delta_epilogue(dz, a, z, act, r0, r1, c0, c1, drop, step, site):
    """dz *= act'(z) on rows r0:r1, columns c0:c1 of a hidden layer's delta, fused with the
    backward of the dropout at `site` when it drops units (see the CPU's)."""
    if not dropping(drop, site):
        _dense.activation_backward(dz, a, z, act, r0, r1, c0, c1)
        return
    if r1 <= r0 or c1 <= c0:
        return
    if r0 != 0 or c0 != 0 or r1 != dz.shape[0] or c1 != dz.shape[1]:
        raise ValueError("the GPU's dropout backward takes whole blocks")
    B, n = dz.shape
    threads = _dense.THREADS
    dropout_backward_kernel[max((B * n + threads - 1) // threads, 1), threads](
        dz, a, z, act, *site_args(drop, step, site), float(drop.keep[site]))
