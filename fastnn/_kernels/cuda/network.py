"""The whole network on the GPU, layer after layer, mirroring fastnn/_kernels/network.py:
forward, the loss on the output, backward, and the per-layer gradient sums of squares.

The same bundles as the CPU (fastnn/_kernels/bundles.py): `net` on the host (the launchers
read it), `ws` device buffers sized for the largest batch. The functions here run on the host
and only launch kernels: nothing is copied between host and device inside a step, and nothing
is allocated (device views of the flat buffers are built once and cached on them). Where the
CPU's team is its threads, the GPU's holds the norm reduction's scratch (cuda/bundles.py).
"""
import functools
import math

import numpy as np
from numba import cuda

from . import dense as _dense
from .dense import dense_backward, dense_forward
from .dropout import delta_epilogue, dropout_rows_kernel, dropping, site_args
from .losses import loss_forward_backward

NORM_THREADS = 128  # threads per block of the sum-of-squares reduction (a power of two)
NORM_BLOCKS = 32  # blocks per parameter segment; partial sums are added in order on one thread


def block(buf, off, rows, cols):
    """buf[off:off + rows*cols] as a (rows, cols) device view. Views are cached on the buffer:
    slicing a device array costs Python microseconds that a step should not pay again."""
    cache = buf.__dict__.setdefault("_fastnn_views", {})
    key = (int(off), int(rows), int(cols))
    view = cache.get(key)
    if view is None:
        view = cache[key] = buf[key[0]:key[0] + key[1] * key[2]].reshape(key[1], key[2])
    return view


def vec(buf, off, n):
    """buf[off:off + n] as a cached device view."""
    cache = buf.__dict__.setdefault("_fastnn_views", {})
    key = (int(off), int(n))
    view = cache.get(key)
    if view is None:
        view = cache[key] = buf[key[0]:key[0] + key[1]]
    return view


# ---------------------------------------------------------------------------- kernels
@functools.cache
def sumsq_kernel(threads):
    """Sum-of-squares partials with a shared-memory tree of `threads` (a power of two)."""

    @cuda.jit
    def sumsq_partials_kernel(partials, grads, bounds):
        """partials[s, blk] = sum of grads[i]^2 (float64) over block blk's share of segment s,
        grads[bounds[s]:bounds[s+1]]; grid (n_blocks, n_segments)."""
        cache = cuda.shared.array(threads, partials.dtype)
        tid = cuda.threadIdx.x
        seg = cuda.blockIdx.y
        hi = bounds[seg + 1]
        acc = 0.0
        for i in range(bounds[seg] + cuda.blockIdx.x * threads + tid, hi,
                       cuda.gridDim.x * threads):
            v = float(grads[i])
            acc += v * v
        cache[tid] = acc
        cuda.syncthreads()
        half = threads // 2
        while half > 0:
            if tid < half:
                cache[tid] += cache[tid + half]
            cuda.syncthreads()
            half //= 2
        if tid == 0:
            partials[seg, cuda.blockIdx.x] = cache[0]

    return sumsq_partials_kernel


@cuda.jit
def clip_and_check_kernel(control, grad_norms, partials, clip_norm, status):
    """One thread: grad_norms[l] += ||dW_l|| (segments alternate W_l, b_l), the global norm,
    the divergence flag and the clipping scale (torch's clip_grad_norm_: min(1, max_norm /
    (norm + 1e-6))). control = [grad scale, skip this update]."""
    if cuda.grid(1) != 0:
        return
    total = 0.0
    for s in range(partials.shape[0]):
        ps = 0.0
        for blk in range(partials.shape[1]):
            ps += partials[s, blk]
        if s % 2 == 0:
            grad_norms[s // 2] += math.sqrt(ps)
        total += ps
    if not math.isfinite(total):
        status[0] = 1
    scale = 1.0
    if clip_norm > 0.0:  # as the CPU loop: min(1, max_norm / (norm + 1e-6))
        scale = clip_norm / (math.sqrt(total) + 1e-6)
        if scale > 1.0:  # noqa: PLR1730 (numba.cuda's min() of a pair fails to type)
            scale = 1.0
    control[0] = scale
    control[1] = 1.0 if status[0] != 0 else 0.0


# ---------------------------------------------------------------------------- launchers
def network_forward(ws, x, B, params, net, drop, step, team):
    """Forward pass on the batch x ((B, sizes[0]), or flat); the output lands in A's last
    block. Hidden outputs go through their dropout (`drop`, step `step`) in the GEMM's
    epilogue."""
    if x.ndim == 1:
        x = block(x, 0, B, net.sizes[0])
    inp = x
    for l in range(net.acts.shape[0]):
        fi = net.sizes[l]
        fo = net.sizes[l + 1]
        W = block(params, net.w_off[l], fi, fo)
        b = vec(params, net.b_off[l], fo)
        a = block(ws.A, B * net.unit_off[l], B, fo)
        z = block(ws.Z, B * net.unit_off[l], B, fo)
        dense_forward(a, z, inp, W, b, net.acts[l], site_args(drop, step, l + 1))
        inp = a


def network_backward(grads, ws, x, B, params, net, drop, step, team):
    """Backpropagation: D's last block holds dL/dz_out on entry; grads is overwritten. Deltas
    go back through the forward's dropout masks (`drop`, step `step`)."""
    if x.ndim == 1:
        x = block(x, 0, B, net.sizes[0])
    for l in range(net.acts.shape[0] - 1, -1, -1):
        fi = net.sizes[l]
        fo = net.sizes[l + 1]
        W = block(params, net.w_off[l], fi, fo)
        dW = block(grads, net.w_off[l], fi, fo)
        db = vec(grads, net.b_off[l], fo)
        dz = block(ws.D, B * net.unit_off[l], B, fo)
        if l == 0:
            dense_backward(None, dW, db, dz, x, W)
        else:
            off = B * net.unit_off[l - 1]
            inp = block(ws.A, off, B, fi)
            dprev = block(ws.D, off, B, fi)
            dense_backward(dprev, dW, db, dz, inp, W)
            delta_epilogue(dprev, inp, block(ws.Z, off, B, fi), net.acts[l - 1], 0, B, 0, fi,
                           drop, step, l)


def network_loss(ws, y_index, y_float, B, net, loss, stats, team):
    """The fused loss + output delta of the batch's B rows (losses.loss_forward_backward);
    stats: RowStats whose start is the batch's first row."""
    L = net.acts.shape[0]
    k = net.sizes[L]
    off = B * net.unit_off[L - 1]
    loss_forward_backward(block(ws.D, off, B, k), block(ws.Z, off, B, k),
                          block(ws.A, off, B, k), y_index, y_float, loss, net.acts[L - 1],
                          stats, B)


def layer_grad_sumsq(out, grads, ws, B, net, fused, team):
    """out[s, blk] = block blk's part of the sum of squares of segment s of grads (segments
    alternate W_l and b_l, team.bounds; out is team.partials). The GPU always reads the whole
    gradient (no Gram shortcut, no fused backward: ws, B and fused are the CPU's)."""
    sumsq_kernel(NORM_THREADS)[(out.shape[1], out.shape[0]), NORM_THREADS](
        out, grads, team.bounds)


def clip_and_check(grad_norms, clip_norm, stats, team):
    """After layer_grad_sumsq: grad_norms[l] += ||dW_l||; team.control = [clipping scale,
    skip] for the update; stats.status set on a non-finite gradient."""
    clip_and_check_kernel[1, 1](team.control, grad_norms, team.partials, clip_norm,
                                stats.status)


def segment_bounds(sizes, w_off):
    """Host int64 array [w_0, b_0, w_1, b_1, ..., end]: the W and b segments of params."""
    L = w_off.shape[0]
    bounds = np.empty(2 * L + 1, dtype=np.int64)
    for l in range(L):
        bounds[2 * l] = w_off[l]
        bounds[2 * l + 1] = w_off[l] + sizes[l] * sizes[l + 1]
    bounds[2 * L] = bounds[2 * L - 1] + sizes[L]
    return bounds


def forward_loss_backward(grads, ws, x, y_index, y_float, params, net, drop, step, loss,
                          stats):
    """One training step's gradient on x (B, sizes[0]): forward, fused loss + output delta,
    backward, with the dropout masks of step `step` of `drop` (the input's applied to a copy
    of x in ws.xb); stats: RowStats whose start is the batch's first row."""
    B = x.shape[0]
    if dropping(drop, 0):
        xin = block(ws.xb, 0, B, net.sizes[0])
        threads = _dense.THREADS
        dropout_rows_kernel[max((x.size + threads - 1) // threads, 1), threads](
            xin, x, *site_args(drop, step, 0))
        x = xin
    network_forward(ws, x, B, params, net, drop, step, None)
    network_loss(ws, y_index, y_float, B, net, loss, stats, None)
    network_backward(grads, ws, x, B, params, net, drop, step, None)

