"""The training steps and the batched evaluation on the GPU, mirroring
fastnn/_kernels/steps.py: the same bundles, but the loop runs on the host and launches kernels
(nothing synchronises inside it). Where the CPU loop keeps running sums and checks each step's
loss on the host, the device path writes per-row losses and correct counts into epoch-sized
RowStats, computes the gradient norms, clipping scale and a sticky divergence flag on the
device, and the update kernels skip their step once the flag is set; the host reads the flag
once per chunk and the rows once per epoch.
"""
from numba import cuda

from . import dense as _dense
from .dropout import dropout_factor, no_dropout, site_args
from .network import (
    NORM_THREADS,
    block,
    clip_and_check,
    forward_for_loss,
    layer_grad_sumsq,
    network_backward,
    network_forward,
    network_loss,
    segment_bounds,
    sumsq_kernel,
    vec,
)
from .optim import optimizer_update


@cuda.jit(cache=True)
def gather_batch_kernel(xb, yb_index, yb_float, X, y_index, y_float, order, start, B, seed,
                        step, site, threshold, scale):
    """xb[i*n_in + j] = X[order[start+i], j] (through the input's dropout when threshold > 0)
    and the same rows of the targets."""
    n_in = X.shape[1]
    first = cuda.grid(1)
    stride = cuda.gridsize(1)
    for idx in range(first, B * n_in, stride):
        i = idx // n_in
        j = idx - i * n_in
        v = X[order[start + i], j]
        if threshold > 0:
            v = v * dropout_factor(seed, step, site, i, j, threshold, scale, xb)
        xb[idx] = v
    if y_index.shape[0] > 0:
        for idx in range(first, B, stride):
            yb_index[idx] = y_index[order[start + idx]]
    else:
        k = y_float.shape[1]
        for idx in range(first, B * k, stride):
            i = idx // k
            yb_float[idx] = y_float[order[start + i], idx - i * k]


def gather_batch(ws, data, order, start, B, drop, step, team):
    """Copy the rows order[start:start+B] of data.X and of the targets into the batch buffers
    ws.xb, ws.yb_index / ws.yb_float, through the input's dropout (site 0 of `drop`, step
    `step`)."""
    X, y_index, y_float = data
    width = max(X.shape[1], 1 if y_index.shape[0] > 0 else y_float.shape[1])
    threads = _dense.THREADS
    blocks = max(min((B * width + threads - 1) // threads, 65536), 1)
    gather_batch_kernel[blocks, threads](ws.xb, ws.yb_index, ws.yb_float, X, y_index, y_float,
                                         order, start, B, *site_args(drop, step, 0))


@cuda.jit
def add_penalty_kernel(row_loss, offset, B, partials, half_alpha):
    """row_loss[offset + r] += alpha / 2 * sum(W^2) / B for the B rows of a batch (so its
    rows sum to the penalty), from the sum-of-squares partials of params' segments (the
    weights at the even ones)."""
    r = cuda.grid(1)
    if r >= B:
        return
    sumsq = 0.0
    for s in range(0, partials.shape[0], 2):
        for blk in range(partials.shape[1]):
            sumsq += partials[s, blk]
    row_loss[offset + r] += half_alpha * sumsq / B


def add_penalty(row_loss, offset, B, params, half_alpha, team):
    """The L2 penalty of the current weights, spread over the batch's rows of row_loss."""
    sumsq_kernel(NORM_THREADS)[(team.partials.shape[1], team.partials.shape[0]),
                               NORM_THREADS](team.partials, params, team.bounds)
    threads = _dense.THREADS
    add_penalty_kernel[(B + threads - 1) // threads, threads](row_loss, offset, B,
                                                             team.partials, half_alpha)


def train_steps(data, order, start, n_steps, batch_size, params, grads, net, drop, loss, opt,
                ws, stats, grad_norms, team):
    """Launch up to n_steps minibatch steps over rows order[start:] (device arrays except net,
    opt.hyper and opt.step_count, which live on the host). Each step: gather, forward, loss,
    backward, gradient norms + clipping + divergence check, fused update; the update is skipped
    on the device once stats.status[0] is set. opt.step_count[0] counts launched steps; step t
    (from 1) draws the dropout masks of step t of `drop`, as on the CPU.
    opt.alpha > 0: scikit-learn's L2 penalty, alpha / 2 * sum(W^2) / B per batch spread over
    its rows' losses and alpha * W / B in the weights' update, segment by segment (as the
    CPU loop).
    Returns the number of steps launched (nothing is synchronised here)."""
    N = order.shape[0]
    n_in = net.sizes[0]
    k = net.sizes[net.sizes.shape[0] - 1]
    by_index = data.y_index.shape[0] > 0
    no_index = vec(ws.yb_index, 0, 0)
    no_float = block(ws.yb_float, 0, 0, k)
    n_params = params.shape[0]
    # the chunk's batches: up to n_steps, the last one short when the rows run out
    done = min(n_steps, max(0, (N - start + batch_size - 1) // batch_size))
    for pos in range(start, start + done * batch_size, batch_size):
        B = min(batch_size, N - pos)
        step = int(opt.step_count[0]) + 1
        gather_batch(ws, data, order, pos, B, drop, step, team)
        x = block(ws.xb, 0, B, n_in)
        yi = vec(ws.yb_index, 0, B) if by_index else no_index
        yf = no_float if by_index else block(ws.yb_float, 0, B, k)
        # the loss kernel does a softmax output
        forward_for_loss(ws, x, B, params, net, drop, step, False, team.gemms)
        network_loss(ws, yi, yf, B, net, loss, stats._replace(start=pos), team)
        if opt.alpha > 0.0:  # the penalty of the weights this step starts from
            add_penalty(stats.loss, pos, B, params, 0.5 * opt.alpha, team)
        network_backward(grads, ws, x, B, params, net, drop, step, team)
        layer_grad_sumsq(team.partials, grads, ws, B, net, False, team)
        clip_and_check(grad_norms, opt.clip_norm, stats, team)
        opt.step_count[0] = step
        if opt.alpha > 0.0:  # the weights' segments with the penalty, the biases without
            bounds = segment_bounds(net.sizes, net.w_off)
            for s in range(bounds.shape[0] - 1):
                lo, hi = int(bounds[s]), int(bounds[s + 1])
                optimizer_update(opt, params, grads[lo:hi], step, team.control, lo, hi,
                                 opt.alpha / B if s % 2 == 0 else 0.0)
        else:
            optimizer_update(opt, params, grads, step, team.control, 0, n_params, 0.0)
    return done


def evaluate_batches(data, batch_size, params, net, loss, ws, stats, out, team):
    """Loss/accuracy rows (stats, a RowStats over the N rows) over the device-resident data in
    batches without training, and, when out (N, k) has rows, the network outputs copied into
    it. X rows are read in place (no gather: the data already lives on the device)."""
    X, y_index, y_float = data
    N = X.shape[0]
    L = net.acts.shape[0]
    k = net.sizes[L]
    has_targets = y_index.shape[0] > 0 or y_float.shape[0] > 0
    no_drop = no_dropout(net)
    for pos in range(0, N, batch_size):
        B = min(batch_size, N - pos)
        x = X[pos:pos + B]
        network_forward(ws, x, B, params, net, no_drop, 0, team)
        if out.shape[0] > 0:
            out[pos:pos + B].copy_to_device(block(ws.A, B * net.unit_off[L - 1], B, k))
        if has_targets:
            yi = y_index[pos:pos + B] if y_index.shape[0] > 0 else y_index
            yf = y_float[pos:pos + B] if y_float.shape[0] > 0 else y_float
            network_loss(ws, yi, yf, B, net, loss, stats._replace(start=pos), team)
