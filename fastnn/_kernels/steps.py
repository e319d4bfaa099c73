"""The compiled training loop: whole runs of minibatch steps with no Python in between, and the
batched evaluation that predict, evaluate and fit's validation share.

Arguments are bundles (bundles.py): `data` the samples and targets, `net` the architecture,
`opt` the optimizer, `ws` the workspace, `team` the threads (every function here is run by
team.nth threads at once, or by one; see sync.py).
"""
import math

from numba import njit

from .dense import as_variable
from .dropout import dropout_forward_row, dropping, row_key
from .fpmode import FLUSH_DENORMALS, read_fp_mode, write_fp_mode
from .layer import FUSED_MAX_ROWS, FUSED_MIN_PARAMS, block, dot64
from .network import layer_grad_sumsq, network_backward_update, network_forward, network_loss
from .optim import optimizer_update
from .sync import ALIGN, SYNC_ABORT, atomic_load, barrier, share


@njit(cache=True)
def weights_sumsq(params, net, team):
    """Sum of squares (float64) of this thread's rows of every weight matrix (the rows it
    updates): summed over the team, sum(W^2) for the L2 penalty."""
    total = 0.0
    for l in range(net.sizes.shape[0] - 1):
        fo = net.sizes[l + 1]
        i0, i1 = share(net.sizes[l], team.tid, team.nth, ALIGN)
        if i1 > i0:
            w = params[net.w_off[l] + i0 * fo:net.w_off[l] + i1 * fo]
            total += dot64(w, w)
    return total


# status codes returned by train_steps and evaluate_batches
RAN, DIVERGED, ABORTED = 0, 1, 2


@njit(cache=True)
def gather_batch(ws, data, order, start, B, drop, step, team):
    """Copy this thread's share of the rows order[start:start+B] of data.X and of the targets
    into the batch buffers ws.xb, ws.yb_index / ws.yb_float; the input's dropout (site 0 of
    `drop`, the mask of step `step`, row i of the batch) is applied to each row as it lands."""
    X = data.X
    n_in = X.shape[1]
    r0, r1 = share(B, team.tid, team.nth, 1)
    drop_input = dropping(drop, 0)
    for i in range(r0, r1):
        src = X[order[start + i]]
        dst = ws.xb[i * n_in:(i + 1) * n_in]
        for j in range(n_in):
            dst[j] = src[j]
        if drop is not None and drop_input:
            dropout_forward_row(dst, row_key(drop.seed, step, 0, i), 0, n_in,
                                drop.threshold[0], drop.scale[0])
    if data.y_index.shape[0] > 0:
        for i in range(r0, r1):
            ws.yb_index[i] = data.y_index[order[start + i]]
    else:
        k = data.y_float.shape[1]
        for i in range(r0, r1):
            src = data.y_float[order[start + i]]
            dst = ws.yb_float[i * k:(i + 1) * k]
            for j in range(k):
                dst[j] = src[j]


@njit(cache=True, nogil=True)
def train_steps(data, order, start, n_steps, batch_size, params, grads, net, drop, loss, opt,
                ws, stats, grad_norms, team):
    """Run up to n_steps minibatch steps over rows order[start:], with no Python in between.

    Step s uses rows order[start + s*batch_size : ... + batch_size] (the last batch may be
    short). Each step: gather, forward, loss, backward, optional norm clipping
    (opt.clip_norm), fused update. opt.alpha > 0 adds scikit-learn's L2 penalty: alpha / 2 *
    sum(W^2) / B to the batch's loss (into stats[tid][0], B times the mean) and alpha * W / B
    to the weights' gradient, in the update (after clipping, like weight_decay).
    opt.step_count[0] is the optimizer's step counter (incremented per applied step); step
    number t (counting from 1) draws the dropout masks of `drop` (a Dropout bundle, or None:
    no dropout code compiled, see dropout.dropping) at step t, so a resumed fit draws the
    uninterrupted one's masks. stats[tid] (4,) and grad_norms (thread 0) accumulate (see
    loss_forward_backward, layer_grad_sumsq). `loss` and opt.code may be static.Static codes:
    then only that loss and rule are compiled.

    Called by team.nth threads at once with the same arguments but their own team.tid (nogil),
    or by one. team.sync (zeroed) and team.partial (nth, L + 2) are shared; team.scratch
    holds each thread's partial products (layer_forward_ksplit) and dW blocks (fused
    backward). Every thread returns the same (status, steps applied): DIVERGED on a non-finite
    loss or gradient (that step is not counted; a fused backward has already applied it, so
    the caller must restore its last good weights and state), ABORTED when sync's abort flag
    was raised (another thread failed).
    """
    # one function, not a wrapper around the loop: every level of calls re-optimizes all the
    # code inlined below it (about 1.6 s of cold compile per level)
    caller_mode = read_fp_mode()
    write_fp_mode(caller_mode | FLUSH_DENORMALS)
    tid, nth, sync, partial = team.tid, team.nth, team.sync, team.partial
    N = order.shape[0]
    L = net.acts.shape[0]
    k = net.sizes[L]
    by_index = data.y_index.shape[0] > 0
    mine = partial[tid]
    fused = (batch_size <= FUSED_MAX_ROWS and params.shape[0] >= FUSED_MIN_PARAMS
             and opt.clip_norm <= 0.0)
    done = 0
    status = RAN
    # thread 0 counts the steps in opt.step_count as they are applied; each thread numbers
    # them from the count on entry (no thread has passed the first step's barriers yet)
    first_step = opt.step_count[0] + 1
    for s in range(n_steps):
        pos = start + s * batch_size
        if pos >= N:
            break
        B = min(batch_size, N - pos)
        step = first_step + s
        gather_batch(ws, data, order, pos, B, drop, step, team)
        barrier(sync, nth)
        yi = ws.yb_index[:B] if by_index else ws.yb_index[:0]
        yf = block(ws.yb_float, as_variable(0), 0 if by_index else B, k)
        network_forward(ws, ws.xb, B, params, net, drop, step, team)
        mine[L + 1] = network_loss(ws, yi, yf, B, net, loss, stats[tid], team)
        if opt.alpha > 0.0:  # the penalty of the weights this step starts from
            stats[tid, 0] += 0.5 * opt.alpha * weights_sumsq(params, net, team)
        if not barrier(sync, nth):
            status = ABORTED
            break
        if fused:  # a non-finite loss stops the step before the fused backward updates anything
            total = 0.0
            for t in range(nth):
                total += partial[t, L + 1]
            if not math.isfinite(total):
                status = DIVERGED
                break
        network_backward_update(grads, ws, ws.xb, B, params, net, drop, fused, opt, step, mine,
                                team)
        layer_grad_sumsq(mine, grads, ws, B, net, fused, team)
        if not barrier(sync, nth):
            status = ABORTED
            break
        # every thread sums the parts in the same order: all take the same decisions below
        total = 0.0
        sumsq = 0.0
        for t in range(nth):
            total += partial[t, L + 1]
            for l in range(L + 1):
                sumsq += partial[t, l]
        if not (math.isfinite(total) and math.isfinite(sumsq)):
            # (after a fused backward the weights already took this step: the trainer rolls
            # back to its last good copy on DIVERGED)
            status = DIVERGED
            break
        if tid == 0:
            for l in range(L):
                sq_w = 0.0
                for t in range(nth):
                    sq_w += partial[t, l]
                grad_norms[l] += math.sqrt(sq_w)
        if not fused:
            scale = 1.0
            if opt.clip_norm > 0.0:
                norm = math.sqrt(sumsq)
                # torch.nn.utils.clip_grad_norm_: scale by min(1, max_norm / (norm + 1e-6))
                scale = min(1.0, opt.clip_norm / (norm + 1e-6))
            # each thread updates the rows of W (and entries of b) whose gradient it computed:
            # they are still in its core's cache
            for seg in range(2 * L):
                l = seg // 2
                decay = opt.alpha / B
                if seg % 2 == 0:
                    i0, i1 = share(net.sizes[l], tid, nth, ALIGN)
                    lo = net.w_off[l] + i0 * net.sizes[l + 1]
                    hi = net.w_off[l] + i1 * net.sizes[l + 1]
                else:
                    j0, j1 = share(net.sizes[l + 1], tid, nth, ALIGN)
                    lo = net.b_off[l] + j0
                    hi = net.b_off[l] + j1
                    decay = 0.0
                if hi > lo:
                    optimizer_update(opt, params, grads[lo:hi], step, scale, lo, hi, decay)
            if not barrier(sync, nth):  # the next step reads every updated parameter
                status = ABORTED
                break
        if tid == 0:
            opt.step_count[0] = step
        done += 1
    if status == RAN and nth > 1 and atomic_load(sync, SYNC_ABORT) != 0:
        status = ABORTED
    write_fp_mode(caller_mode)
    return status, done


@njit(cache=True, nogil=True)
def evaluate_batches(data, batch_size, params, net, loss, ws, stats, out, team):
    """Loss/accuracy over (data.X, targets) in batches without training, and, when out has
    rows, the network outputs written into out (N, k). Pass targets with no rows to only
    predict.

    Run like train_steps, by a team of threads (team.scratch for the k-split forward; it may
    have no columns for one thread). Each thread copies, scores and writes out its share of
    every batch's rows; stats[tid] (4,) accumulates its rows' loss sums (see
    loss_forward_backward). Returns RAN, or ABORTED when sync's abort flag was raised."""
    tid, nth, sync = team.tid, team.nth, team.sync
    X = data.X
    N = X.shape[0]
    n_in = X.shape[1]
    L = net.acts.shape[0]
    k = net.sizes[L]
    has_index = data.y_index.shape[0] > 0
    has_targets = has_index or data.y_float.shape[0] > 0
    status = RAN
    for pos in range(0, N, batch_size):
        B = min(batch_size, N - pos)
        r0, r1 = share(B, tid, nth, 1)
        for i in range(r0, r1):
            src = X[pos + i]
            dst = ws.xb[i * n_in:(i + 1) * n_in]
            for j in range(n_in):
                dst[j] = src[j]
        # every thread is past the previous batch's reads of A, Z and D: the forward may
        # overwrite them
        if not barrier(sync, nth):
            status = ABORTED
            break
        network_forward(ws, ws.xb, B, params, net, None, as_variable(0), team)
        if out.shape[0] > 0:
            a = block(ws.A, B * net.unit_off[L - 1], B, k)
            for i in range(r0, r1):
                for j in range(k):
                    out[pos + i, j] = a[i, j]
        if has_targets:
            yi = data.y_index[pos:pos + B] if has_index else data.y_index[:0]
            yf = data.y_float[pos:pos + B] if not has_index else data.y_float[:0]
            network_loss(ws, yi, yf, B, net, loss, stats[tid], team)
    if status == RAN and nth > 1 and atomic_load(sync, SYNC_ABORT) != 0:
        status = ABORTED
    return status
