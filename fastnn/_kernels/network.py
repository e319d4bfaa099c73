"""The whole network, layer after layer: forward, the loss on the output, backward, and the
per-layer gradient norms.

Arguments are bundles (bundles.py): `net` the Network (sizes, activation codes, offsets of W_l
and b_l in the flat params), `ws` the Activations workspace (layer l's (B, sizes[l+1]) block of
A, Z and D starts at B * unit_off[l]; sized for the largest batch, a smaller batch uses the
leading part, so nothing is allocated per step), `team` the threads (a function that takes
one is run by all of them at once; see layer.py for how the work is split). `x` is the batch
input, B rows of sizes[0], flat.
"""
import numpy as np
from numba import njit

from .bundles import OptimizerState, Team
from .dense import SOFTMAX, as_variable
from .dropout import dropout_forward_row, dropping, row_key
from .layer import (
    FUSED_MAX_ROWS,
    FUSED_MIN_PARAMS,
    GRAM_NORM_MAX_ROWS,
    KSPLIT_MAX_ROWS,
    block,
    dot64,
    layer_backward,
    layer_backward_update,
    layer_forward,
    layer_forward_ksplit,
)
from .losses import loss_forward_backward
from .sync import ALIGN, barrier, share


@njit(cache=True)
def network_forward(ws, x, B, params, net, drop, step, team):
    """Forward pass on the batch x; the output lands in A's last block. Every hidden layer's
    output goes through its dropout (`drop`, the mask of step `step`; the input's dropout is
    the caller's, applied to x: see steps.gather_batch). team.scratch: see
    layer_forward_ksplit (may have no rows for one thread). Ends with every thread past a
    barrier."""
    for l in range(net.acts.shape[0]):
        fo = net.sizes[l + 1]
        ksplit = B <= KSPLIT_MAX_ROWS or (B <= FUSED_MAX_ROWS
                                          and params.shape[0] >= FUSED_MIN_PARAMS)
        if (team.nth > 1 and ksplit and net.acts[l] != SOFTMAX
                and B * fo <= team.scratch.shape[1]):
            layer_forward_ksplit(ws, x, B, params, net, drop, step, l, team)
        else:
            layer_forward(ws, x, B, params, net, drop, step, l, team)
        barrier(team.sync, team.nth)


@njit(cache=True)
def network_backward_update(grads, ws, x, B, params, net, drop, fused, opt, step, sq_w, team):
    """Backpropagation in O(L) GEMMs: D's last block holds dL/dz_out on entry (from the loss);
    each layer turns its delta into dW, db and the previous layer's delta (through the
    forward's dropout masks, step `step` of `drop`). grads is
    overwritten; with `fused`, W is updated instead (layer_backward_update, step number `step`
    of `opt`) and only db lands in grads and sq_w[l] gets this thread's part of ||dW_l||^2.
    Ends with every thread past a barrier."""
    for l in range(net.acts.shape[0] - 1, -1, -1):
        if fused:
            sq_w[l] = layer_backward_update(grads, ws, x, B, params, net, drop, l, opt, step,
                                            team)
        else:
            layer_backward(grads, ws, x, B, params, net, drop, step, l, team)
        barrier(team.sync, team.nth)


@njit(cache=True)
def network_loss(ws, y_index, y_float, B, net, loss, stats, team):
    """This thread's rows of the fused loss + output delta (losses.loss_forward_backward), the
    targets' rows 0:B given; stats (4,) are this thread's sums. Returns their summed loss."""
    L = net.acts.shape[0]
    k = net.sizes[L]
    off = B * net.unit_off[L - 1]
    r0, r1 = share(B, team.tid, team.nth, 1)
    if r1 <= r0:
        return 0.0
    yi = y_index[r0:r1] if y_index.shape[0] > 0 else y_index[:0]
    yf = y_float[r0:r1] if y_float.shape[0] > 0 else y_float[:0]
    return loss_forward_backward(block(ws.D, off, B, k)[r0:r1], block(ws.Z, off, B, k)[r0:r1],
                                 block(ws.A, off, B, k)[r0:r1], yi, yf, loss, net.acts[L - 1],
                                 stats, B)


@njit(cache=True)
def layer_grad_sumsq(out, grads, ws, B, net, fused, team):
    """This thread's part of the squared gradient norms of the step on the batch in ws.xb:
    out[l] = its part of ||dW_l||^2 and out[L] its part of sum_l ||db_l||^2 (the threads' parts
    add up to the whole).

    For a few rows, dW_l = a^T dz is a sum of B outer products and
    ||dW_l||^2 = sum_{r,s} (a_r . a_s)(dz_r . dz_s): O(B^2 (fan_in + fan_out)) work instead of
    a second read of the whole gradient (2 MB for 784-512-256-10); thread 0 does it. In float64
    its rounding is far below float32's. (A float32 overflow inside dW that this misses
    surfaces as a non-finite loss one step later.) Otherwise each thread reads the rows of dW
    it wrote. After a fused backward on more rows, out[:L] already holds the dW parts."""
    tid, nth = team.tid, team.nth
    L = net.w_off.shape[0]
    sq_b = 0.0
    for l in range(L):
        fi = net.sizes[l]
        fo = net.sizes[l + 1]
        j0, j1 = share(fo, tid, nth, ALIGN)
        db = grads[net.b_off[l] + j0:net.b_off[l] + j1]
        sq_b += dot64(db, db)
        if fused and B > GRAM_NORM_MAX_ROWS:
            continue
        sq_w = 0.0
        if B <= GRAM_NORM_MAX_ROWS:
            if tid == 0:
                inp = (block(ws.xb, as_variable(0), B, fi) if l == 0
                       else block(ws.A, B * net.unit_off[l - 1], B, fi))
                dz = block(ws.D, B * net.unit_off[l], B, fo)
                for r in range(B):
                    sq_w += dot64(inp[r], inp[r]) * dot64(dz[r], dz[r])
                    for q in range(r):
                        sq_w += 2.0 * dot64(inp[r], inp[q]) * dot64(dz[r], dz[q])
                if sq_w < 0.0:  # noqa: PLR1730 (cancellation can leave a tiny negative; NaN passes)
                    sq_w = 0.0
        else:
            i0, i1 = share(fi, tid, nth, ALIGN)
            dW = grads[net.w_off[l] + i0 * fo:net.w_off[l] + i1 * fo]
            sq_w = dot64(dW, dW)
        out[l] = sq_w
    out[L] = sq_b


# ---------------------------------------------------------------------------- one thread
@njit(cache=True)
def one_thread(params, net):
    """The team of the calling thread alone (barriers return before reading sync)."""
    return Team(as_variable(0), as_variable(1), net.sizes[:0], np.zeros((1, 0)),
                params[:0].reshape(0, 0))


@njit(cache=True)
def network_backward(grads, ws, x, B, params, net, drop, step, team):
    """Backward pass from dL/dz_out in D's last block, through the dropout masks of step
    `step` of `drop`; grads is overwritten (no fused update)."""
    no_opt = OptimizerState(as_variable(0), np.zeros(0), params[:0].reshape(0, 0),
                            net.sizes[:0], 0.0, 0.0)
    network_backward_update(grads, ws, x, B, params, net, drop, False, no_opt, step,
                            np.zeros(0), team)


@njit(cache=True)
def forward_loss_backward(grads, ws, x, y_index, y_float, params, net, drop, step, loss,
                          stats):
    """One training step's gradient on x (B, sizes[0]), one thread: forward, fused loss +
    output delta, backward, with the dropout masks of step `step` of `drop` (the input's
    applied to a copy of x in ws.xb; row i of x is row i of the step's batch). Returns the
    batch's summed per-sample loss (stats (4,) accumulate as in loss_forward_backward)."""
    B = x.shape[0]
    n_in = net.sizes[0]
    flat = x.reshape(x.size)
    if drop is not None and dropping(drop, 0):
        flat = ws.xb[:B * n_in]
        for r in range(B):
            row = flat[r * n_in:(r + 1) * n_in]
            row[:] = x[r]
            dropout_forward_row(row, row_key(drop.seed, step, 0, r), 0, n_in, drop.threshold[0],
                                drop.scale[0])
    team = one_thread(params, net)
    network_forward(ws, flat, B, params, net, drop, step, team)
    total = network_loss(ws, y_index, y_float, B, net, loss, stats, team)
    network_backward(grads, ws, flat, B, params, net, drop, step, team)
    return total
