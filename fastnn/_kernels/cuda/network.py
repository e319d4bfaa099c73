"""Whole-network passes and the training steps on the GPU, mirroring fastnn/_kernels/network.py.

Same model-as-data layout (`sizes`, `acts`, `w_off`, `b_off`, `unit_off` are small host int
arrays) and the same flat device buffers: `params`, `grads`, optimizer `state` and the
workspaces `A`, `Z`, `D`, `xb`, `yb_*` sized for the largest batch. The functions here run on
the host and only launch kernels: nothing is copied between host and device inside a step, and
nothing is allocated (device views of the flat buffers are built once and cached on them).

Where the CPU loop keeps running sums (`stats`) and checks each step's loss on the host, the
device path writes per-row losses and correct counts into epoch-sized device buffers
(row_loss, row_correct), computes the gradient norms, clipping scale and a sticky divergence
flag (status) on the device, and the update kernels skip their step once the flag is set. The
host reads `status` once per chunk and the row buffers once per epoch.
"""
import functools
import math

import numpy as np
from numba import cuda

from . import dense as _dense
from .dense import dense_backward, dense_forward
from .losses import loss_forward_backward
from .optim import optimizer_update

NORM_THREADS = 128  # threads per block of the sum-of-squares reduction (a power of two)
NORM_BLOCKS = 32  # blocks per parameter segment; partial sums are added in order on one thread


def _block(buf, off, rows, cols):
    """buf[off:off + rows*cols] as a (rows, cols) device view. Views are cached on the buffer:
    slicing a device array costs Python microseconds that a step should not pay again."""
    cache = buf.__dict__.setdefault("_fastnn_views", {})
    key = (int(off), int(rows), int(cols))
    view = cache.get(key)
    if view is None:
        view = cache[key] = buf[key[0]:key[0] + key[1] * key[2]].reshape(key[1], key[2])
    return view


def _vec(buf, off, n):
    """buf[off:off + n] as a cached device view."""
    cache = buf.__dict__.setdefault("_fastnn_views", {})
    key = (int(off), int(n))
    view = cache.get(key)
    if view is None:
        view = cache[key] = buf[key[0]:key[0] + key[1]]
    return view


# ---------------------------------------------------------------------------- kernels
@cuda.jit
def gather_batch_kernel(xb, yb_index, yb_float, X, y_index, y_float, order, start, B):
    """xb[i*n_in + j] = X[order[start+i], j] and the same rows of the targets."""
    n_in = X.shape[1]
    first = cuda.grid(1)
    stride = cuda.gridsize(1)
    for idx in range(first, B * n_in, stride):
        i = idx // n_in
        xb[idx] = X[order[start + i], idx - i * n_in]
    if y_index.shape[0] > 0:
        for idx in range(first, B, stride):
            yb_index[idx] = y_index[order[start + idx]]
    else:
        k = y_float.shape[1]
        for idx in range(first, B * k, stride):
            i = idx // k
            yb_float[idx] = y_float[order[start + i], idx - i * k]


@functools.cache
def _sumsq_kernel(threads):
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


@cuda.jit
def add_penalty_kernel(row_loss, offset, B, partials, half_alpha):
    """row_loss[offset + r] += alpha / 2 * sum(W^2) / B for the B rows of a batch (so the
    batch's rows sum to the penalty), from the sum-of-squares partials of params' segments
    (weights at the even segments)."""
    r = cuda.grid(1)
    if r >= B:
        return
    sumsq = 0.0
    for s in range(0, partials.shape[0], 2):
        for blk in range(partials.shape[1]):
            sumsq += partials[s, blk]
    row_loss[offset + r] += half_alpha * sumsq / B


# ---------------------------------------------------------------------------- launchers
def network_forward(A, Z, x, params, sizes, acts, w_off, b_off, unit_off):
    """Forward pass of the whole network on x (B, sizes[0]); the output lands in A's last
    block."""
    B = x.shape[0]
    inp = x
    for l in range(acts.shape[0]):
        fi = sizes[l]
        fo = sizes[l + 1]
        W = _block(params, w_off[l], fi, fo)
        b = _vec(params, b_off[l], fo)
        a = _block(A, B * unit_off[l], B, fo)
        z = _block(Z, B * unit_off[l], B, fo)
        dense_forward(a, z, inp, W, b, acts[l])
        inp = a


def network_backward(grads, D, A, Z, x, params, sizes, acts, w_off, b_off, unit_off):
    """Backpropagation: D's last block holds dL/dz_out on entry; grads is overwritten."""
    B = x.shape[0]
    L = acts.shape[0]
    for l in range(L - 1, -1, -1):
        fi = sizes[l]
        fo = sizes[l + 1]
        W = _block(params, w_off[l], fi, fo)
        dW = _block(grads, w_off[l], fi, fo)
        db = _vec(grads, b_off[l], fo)
        dz = _block(D, B * unit_off[l], B, fo)
        if l == 0:
            dense_backward(None, dW, db, dz, x, W)
        else:
            off = B * unit_off[l - 1]
            inp = _block(A, off, B, fi)
            dprev = _block(D, off, B, fi)
            dense_backward(dprev, dW, db, dz, inp, W)
            _dense.activation_backward(dprev, inp, _block(Z, off, B, fi), acts[l - 1])


def forward_loss_backward(grads, D, A, Z, x, y_index, y_float, params, sizes, acts, w_off,
                          b_off, unit_off, loss, row_loss, row_correct, offset, status):
    """One training step's gradient: forward, fused loss + output delta, backward. Row losses
    land in row_loss[offset:offset + B] (see losses.loss_forward_backward)."""
    B = x.shape[0]
    L = acts.shape[0]
    network_forward(A, Z, x, params, sizes, acts, w_off, b_off, unit_off)
    k = sizes[L]
    off = B * unit_off[L - 1]
    loss_forward_backward(_block(D, off, B, k), _block(Z, off, B, k), _block(A, off, B, k),
                          y_index, y_float, loss, acts[L - 1], row_loss, row_correct, offset,
                          status)
    network_backward(grads, D, A, Z, x, params, sizes, acts, w_off, b_off, unit_off)


def gather_batch(xb, yb_index, yb_float, X, y_index, y_float, order, start, B):
    """Copy the rows order[start:start+B] of X and of the targets into the batch buffers."""
    width = max(X.shape[1], 1 if y_index.shape[0] > 0 else y_float.shape[1])
    threads = _dense.THREADS
    blocks = max(min((B * width + threads - 1) // threads, 65536), 1)
    gather_batch_kernel[blocks, threads](xb, yb_index, yb_float, X, y_index, y_float, order,
                                         start, B)


def segment_bounds(sizes, w_off):
    """Host int64 array [w_0, b_0, w_1, b_1, ..., end]: the W and b segments of params."""
    L = w_off.shape[0]
    bounds = np.empty(2 * L + 1, dtype=np.int64)
    for l in range(L):
        bounds[2 * l] = w_off[l]
        bounds[2 * l + 1] = w_off[l] + sizes[l] * sizes[l + 1]
    bounds[2 * L] = bounds[2 * L - 1] + sizes[L]
    return bounds


def layer_grad_norms(grad_norms, grads, bounds, partials, control, clip_norm, status):
    """grad_norms[l] += ||dW_l||; control = [clipping scale, skip] for the update (see
    clip_and_check_kernel). bounds: device segment_bounds(); partials: device float64
    (2 L, NORM_BLOCKS) scratch."""
    threads = NORM_THREADS
    _sumsq_kernel(threads)[(partials.shape[1], partials.shape[0]), threads](
        partials, grads, bounds)
    clip_and_check_kernel[1, 1](control, grad_norms, partials, clip_norm, status)


def train_steps(X, y_index, y_float, order, start, n_steps, batch_size,
                params, grads, sizes, acts, w_off, b_off, unit_off, loss,
                opt_code, opt_hyper, opt_state, opt_step, clip_norm, alpha,
                xb, yb_index, yb_float, A, Z, D, row_loss, row_correct,
                grad_norms, bounds, partials, control, status):
    """Launch up to n_steps minibatch steps over rows order[start:] (device arrays except the
    model description, opt_hyper and opt_step, which live on the host). Each step: gather,
    forward, loss, backward, gradient norms + clipping + divergence check, fused update; the
    update is skipped on the device once status[0] is set. opt_step[0] counts launched
    steps. alpha > 0: scikit-learn's L2 penalty, alpha / 2 * sum(W^2) / B per batch spread
    over its rows' losses and alpha * W / B in the weights' update (as the CPU loop). Returns
    the number of steps launched (nothing is synchronised here)."""
    N = order.shape[0]
    n_in = X.shape[1]
    k = sizes[sizes.shape[0] - 1]
    by_index = y_index.shape[0] > 0
    no_index = _vec(yb_index, 0, 0)
    no_float = _block(yb_float, 0, 0, k)
    done = 0
    for s in range(n_steps):
        pos = start + s * batch_size
        if pos >= N:
            break
        B = min(batch_size, N - pos)
        gather_batch(xb, yb_index, yb_float, X, y_index, y_float, order, pos, B)
        x = _block(xb, 0, B, n_in)
        yi = _vec(yb_index, 0, B) if by_index else no_index
        yf = no_float if by_index else _block(yb_float, 0, B, k)
        forward_loss_backward(grads, D, A, Z, x, yi, yf, params, sizes, acts, w_off, b_off,
                              unit_off, loss, row_loss, row_correct, pos, status)
        if alpha > 0.0:  # the penalty of the weights this step starts from
            _sumsq_kernel(NORM_THREADS)[(partials.shape[1], partials.shape[0]), NORM_THREADS](
                partials, params, bounds)
            add_penalty_kernel[(B + _dense.THREADS - 1) // _dense.THREADS, _dense.THREADS](
                row_loss, pos, B, partials, 0.5 * alpha)
        layer_grad_norms(grad_norms, grads, bounds, partials, control, clip_norm, status)
        opt_step[0] += 1
        optimizer_update(opt_code, params, grads, opt_state, opt_hyper, int(opt_step[0]),
                         control, alpha / B, bounds)
        done += 1
    return done


def evaluate_batches(X, y_index, y_float, batch_size, params, sizes, acts, w_off, b_off,
                     unit_off, loss, A, Z, D, row_loss, row_correct, status, out):
    """Loss/accuracy rows over the device-resident (X, y) in batches without training, and,
    when out (N, k) has rows, the network outputs copied into it. X rows are read in place
    (no gather: the data already lives on the device)."""
    N = X.shape[0]
    L = acts.shape[0]
    k = sizes[L]
    has_targets = y_index.shape[0] > 0 or y_float.shape[0] > 0
    for pos in range(0, N, batch_size):
        B = min(batch_size, N - pos)
        x = X[pos:pos + B]
        network_forward(A, Z, x, params, sizes, acts, w_off, b_off, unit_off)
        off = B * unit_off[L - 1]
        a = _block(A, off, B, k)
        if out.shape[0] > 0:
            out[pos:pos + B].copy_to_device(a)
        if has_targets:
            yi = y_index[pos:pos + B] if y_index.shape[0] > 0 else y_index
            yf = y_float[pos:pos + B] if y_float.shape[0] > 0 else y_float
            loss_forward_backward(_block(D, off, B, k), _block(Z, off, B, k), a, yi, yf, loss,
                                  acts[L - 1], row_loss, row_correct, pos, status)
