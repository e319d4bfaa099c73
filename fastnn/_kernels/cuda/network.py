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

from .. import dense as _cpu_dense
from . import dense as _dense
from .dense import dense_backward, dense_forward
from .dropout import delta_epilogue, dropout_rows_kernel, dropping, site_args
from .losses import loss_forward_backward

NORM_THREADS = 128  # threads per block of the sum-of-squares reduction (a power of two)
NORM_ITEMS = 16  # elements per thread the reduction's grid is sized for
NORM_BLOCKS = 1024  # at most this many blocks per parameter segment (team.partials' width);
#                    the partial sums are added in order on one thread
# (host-side: the CPU's rule, whether a layer keeps its pre-activation)
_keeps_z = _cpu_dense.keeps_preactivation.py_func


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


def z_offsets(sizes, acts):
    """Host int64 (L,): layer l's block of the GPU's Z starts at B * z_offsets[l] (its layers
    that keep their pre-activation, keeps_preactivation, one after the other), -1 for the
    layers that keep none: their forward writes act(z) over z in their block of A and their
    backward reads only a. The last entry's end, kept_units, is Z's width per row."""
    off = np.full(len(acts), -1, dtype=np.int64)
    pos = 0
    for l, act in enumerate(acts):
        if _keeps_z(int(act)):
            off[l] = pos
            pos += int(sizes[l + 1])
    return off


def kept_units(sizes, acts):
    """Units per row of the GPU's Z (Workspace's z_units): the layers keeping z."""
    return sum(int(sizes[l + 1]) for l, act in enumerate(acts)
               if _keeps_z(int(act)))


def z_block(ws, net, l, B, a):
    """Layer l's (B, fan_out) pre-activation: its block of ws.Z where the layer keeps it
    (z_offsets, cached on the buffer), else a, its block of A (z is written over in place)."""
    cache = ws.Z.__dict__.setdefault("_fastnn_views", {})
    off = cache.get("z_off")
    if off is None:
        off = cache["z_off"] = z_offsets(net.sizes, net.acts)
    if off[l] < 0:
        return a
    return block(ws.Z, B * off[l], B, a.shape[1])


# ---------------------------------------------------------------------------- kernels
@functools.cache
def sumsq_kernel(threads):
    """Sum-of-squares partials with a shared-memory tree of `threads` (a power of two)."""

    @cuda.jit(cache=True)
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
            # columns past this launch's grid: zero, so that the final sum can read them all
            for blk in range(cuda.blockIdx.x + cuda.gridDim.x, partials.shape[1],
                             cuda.gridDim.x):
                partials[seg, blk] = 0.0

    return sumsq_partials_kernel


@cuda.jit(cache=True)
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


@cuda.jit(cache=True)
def check_finite_kernel(flag, arr):
    """flag[0] = 1 when any element of arr (1-d) is NaN or infinite; grid-stride."""
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for i in range(start, arr.shape[0], stride):
        if not math.isfinite(arr[i]):
            flag[0] = 1


# ---------------------------------------------------------------------------- launchers
def network_forward(ws, x, B, params, net, drop, step, team):
    """Forward pass on the batch x ((B, sizes[0]), or flat); the output lands in A's last
    block. Hidden outputs go through their dropout (`drop`, step `step`) in the GEMM's
    epilogue."""
    forward_for_loss(ws, x, B, params, net, drop, step, True,
                     None if team is None else team.gemms)


def forward_for_loss(ws, x, B, params, net, drop, step, output_softmax, gemms=None):
    """network_forward; output_softmax=False leaves a softmax output layer's row pass to the
    loss kernel (training: losses.loss_forward_backward computes it in its own launch).
    gemms: the fit's cuBLASLt GEMMs (cublaslt.LtGemms), or None for the Numba GEMM."""
    if x.ndim == 1:
        x = block(x, 0, B, net.sizes[0])
    inp = x
    L = net.acts.shape[0]
    for l in range(L):
        fi = net.sizes[l]
        fo = net.sizes[l + 1]
        W = block(params, net.w_off[l], fi, fo)
        b = vec(params, net.b_off[l], fo)
        a = block(ws.A, B * net.unit_off[l], B, fo)
        z = z_block(ws, net, l, B, a)
        act = net.acts[l]
        rows = output_softmax or l < L - 1  # a softmax's row pass here, not in the loss
        if gemms is not None:
            if not gemms.forward(l, a, z, inp, W, b, act):  # x @ W in z: bias, activation
                _dense.bias_activation_forward(a, z, b, act, 0, B, 0, fo)
            elif act == _dense.SOFTMAX and rows:
                _dense.softmax_rows(a, z)
        elif act == _dense.SOFTMAX and not rows:
            _dense.gemm(a, inp, W, bias=b, act=act, Z=z)  # logits z; the loss fills a
        else:
            dense_forward(a, z, inp, W, b, act, site_args(drop, step, l + 1))
        inp = a


def network_backward(grads, ws, x, B, params, net, drop, step, team):
    """Backpropagation: D's last block holds dL/dz_out on entry; grads is overwritten. Deltas
    go back through the forward's dropout masks (`drop`, step `step`)."""
    if x.ndim == 1:
        x = block(x, 0, B, net.sizes[0])
    colsum = None if team is None else team.colsum
    gemms = None if team is None else team.gemms
    for l in range(net.acts.shape[0] - 1, -1, -1):
        fi = net.sizes[l]
        fo = net.sizes[l + 1]
        W = block(params, net.w_off[l], fi, fo)
        dW = block(grads, net.w_off[l], fi, fo)
        db = vec(grads, net.b_off[l], fo)
        dz = block(ws.D, B * net.unit_off[l], B, fo)
        if l == 0:
            if gemms is not None:
                gemms.backward(l, net.acts, None, dW, db, dz, x, W, None)
            else:
                dense_backward(None, dW, db, dz, x, W, colsum)
            continue
        off = B * net.unit_off[l - 1]
        inp = block(ws.A, off, B, fi)
        dprev = block(ws.D, off, B, fi)
        if gemms is not None:
            db_prev = vec(grads, net.b_off[l - 1], fi)
            if gemms.backward(l, net.acts, dprev, dW, db, dz, inp, W, db_prev):
                continue  # relu' applied by the GEMM's epilogue
        else:
            dense_backward(dprev, dW, db, dz, inp, W, colsum)
        delta_epilogue(dprev, inp, z_block(ws, net, l - 1, B, inp), net.acts[l - 1], 0, B, 0,
                       fi, drop, step, l)


def network_loss(ws, y_index, y_float, B, net, loss, stats, team):
    """The fused loss + output delta of the batch's B rows (losses.loss_forward_backward);
    stats: RowStats whose start is the batch's first row."""
    L = net.acts.shape[0]
    k = net.sizes[L]
    off = B * net.unit_off[L - 1]
    a = block(ws.A, off, B, k)
    loss_forward_backward(block(ws.D, off, B, k), z_block(ws, net, L - 1, B, a), a, y_index,
                          y_float, loss, net.acts[L - 1], stats, B)


def layer_grad_sumsq(out, grads, ws, B, net, fused, team):
    """out[s, blk] = block blk's part of the sum of squares of segment s of grads (segments
    alternate W_l and b_l, team.bounds; out is team.partials). The GPU always reads the whole
    gradient (no Gram shortcut, no fused backward: ws, B and fused are the CPU's).

    Grid (norm_blocks(n_params, out.shape[1]), segments): sized to the gradient, so that a
    thread reads about NORM_ITEMS elements of the largest segment."""
    blocks = norm_blocks(grads.shape[0], out.shape[1])
    sumsq_kernel(NORM_THREADS)[(blocks, out.shape[0]), NORM_THREADS](out, grads, team.bounds)


def norm_blocks(n, most):
    """Blocks per segment of the sum-of-squares reduction over n elements:
    ceil(n / (NORM_THREADS * NORM_ITEMS)), between 1 and `most` (the partials' width)."""
    return min(max(-(-n // (NORM_THREADS * NORM_ITEMS)), 1), most)


def clip_and_check(grad_norms, clip_norm, stats, team):
    """After layer_grad_sumsq: grad_norms[l] += ||dW_l||; team.control = [clipping scale,
    skip] for the update; stats.status set on a non-finite gradient."""
    clip_and_check_kernel[1, 1](team.control, grad_norms, team.partials, clip_norm,
                                stats.status)


FINITE_MAX_BLOCKS = 4096  # check_finite: blocks at most (a grid-stride loop does the rest)


def check_finite(flag, arr):
    """flag[0] = 1 (int32 device array) when the 1-d device array arr holds a NaN or an
    infinity; flag is left alone otherwise (the caller zeroes it). ceil(n / THREADS) blocks,
    at most FINITE_MAX_BLOCKS."""
    n = arr.shape[0]
    if n == 0:
        return
    threads = _dense.THREADS
    blocks = min((n + threads - 1) // threads, FINITE_MAX_BLOCKS)
    check_finite_kernel[blocks, threads](flag, arr)


def flat(arr):
    """A contiguous device array as a cached 1-d view."""
    if arr.ndim == 1:
        return arr
    cache = arr.__dict__.setdefault("_fastnn_views", {})
    view = cache.get("flat")
    if view is None:
        view = cache["flat"] = arr.reshape(arr.size)
    return view


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
    forward_for_loss(ws, x, B, params, net, drop, step, False)
    network_loss(ws, y_index, y_float, B, net, loss, stats, None)
    network_backward(grads, ws, x, B, params, net, drop, step, None)

