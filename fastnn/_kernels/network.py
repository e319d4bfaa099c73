"""Whole-network kernels and the compiled training loop.

The model is data: `sizes` (L+1,) layer widths, `acts` (L,) activation codes (the last is the
output activation), `w_off`/`b_off` (L,) offsets of W_l and b_l in the flat `params`. Activations
live in flat workspaces: layer l's (B, sizes[l+1]) block starts at B * unit_off[l], where
unit_off = [0, cumsum(sizes[1:])]; `A` holds act(z), `Z` the pre-activations that
keeps_preactivation() asks for, `D` the deltas dL/dz. All are sized for the largest batch, and
a smaller (last) batch uses their leading part, so nothing is allocated per step.

Threads: every function that takes (tid, nth) is run by nth threads at once, each doing its
share of each phase and meeting the others at a barrier between dependent phases (sync.py).
Each thread owns a range of every W's rows (input units) for the whole fit: it computes those
rows of dW and updates them (and its entries of b). Forward GEMMs of up to KSPLIT_MAX_ROWS
rows (FUSED_MAX_ROWS for large networks) are split along that same inner dimension (each
thread reads the W rows it updated, from its own cache, and the partial products are added);
larger ones by batch rows once the batch is at least fan_out, else by output columns; dx
likewise by rows or by the owned columns.
nth == 1 is the serial loop.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .blas import gemm
from .dense import (
    SOFTMAX,
    activation_backward,
    as_variable,
    bias_activation_forward,
    bias_activation_inplace,
    keeps_preactivation,
)
from .losses import loss_forward_backward
from .optim import optimizer_update
from .sync import ALIGN, SYNC_ABORT, SYNC_SIZE, X86, atomic_load, barrier, share

# Denormals: Adam's moments of a parameter whose gradient stays 0 (a dead ReLU unit, an input
# pixel that is always 0) decay into the float32 denormal range and stick there (m - 0.1 m
# rounds back to m), and every later update of them costs a ~100-cycle microcode assist: the
# small net at batch 1 ran 10x slower. train_steps therefore flushes denormals to zero (MXCSR
# FTZ|DAZ, as XLA and TensorFlow do on CPU) and restores the caller's setting on return.
# Values below 1.2e-38 become 0; nothing else changes.
FLUSH_DENORMALS = 0x8040  # MXCSR flush-to-zero (bit 15) | denormals-are-zero (bit 6)


@intrinsic
def _get_fp_mode(typingctx):
    """The x86 MXCSR register (0 elsewhere)."""
    def codegen(context, builder, signature, args):
        if not X86:
            return ir.Constant(ir.IntType(64), 0)
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [slot.type]), "llvm.x86.sse.stmxcsr")
        builder.call(fn, [slot])
        return builder.zext(builder.load(slot), ir.IntType(64))
    return types.int64(), codegen


@intrinsic
def _set_fp_mode(typingctx, mode):
    """Load the x86 MXCSR register (no-op elsewhere)."""
    def codegen(context, builder, signature, args):
        if X86:
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            builder.store(builder.trunc(args[0], ir.IntType(32)), slot)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [slot.type]),
                "llvm.x86.sse.ldmxcsr")
            builder.call(fn, [slot])
        return context.get_dummy_value()
    return types.none(types.int64), codegen


@njit(cache=True)
def fp_mode():
    """The caller's floating-point mode (x86 MXCSR; 0 elsewhere), for set_fp_mode."""
    return _get_fp_mode()


@njit(cache=True)
def set_fp_mode(mode):
    """Restore a mode from fp_mode(). train_steps restores the caller's mode itself when it
    returns, but not when a kernel raises inside it: the trainer calls this in a finally."""
    _set_fp_mode(mode)


@njit(cache=True)
def _block(buf, off, rows, cols):
    return buf[off:off + rows * cols].reshape(rows, cols)


@njit(cache=True)
def _by_rows(B, n_out):
    """Whether threads split a GEMM with B rows and n_out output columns by rows (each thread
    then packs all of the weight matrix and its rows of the input) or by columns (half of
    the weights, all of the input): whichever packs less, rows once B >= n_out. Measured on
    784-512-256-10 with 2 threads: columns 20% faster at batch 64-128, rows 10% faster at
    512-2048; 64-128-64-10: rows 15-40% faster at 128-2048."""
    return B >= n_out


@njit(cache=True)
def layer_forward(tid, nth, A, Z, inp, inp_off, params, fi, fo, w_off, b_off, act, B, out_off):
    """This thread's block of a = act(inp @ W + b) for one layer; inp is the flat buffer holding
    the layer's input (B, fi) at inp_off, a and z land at out_off of A and Z."""
    if act == SOFTMAX or _by_rows(B, fo):  # softmax normalizes whole rows
        r0, r1 = share(B, tid, nth, 1)
        c0, c1 = 0, fo
    else:
        r0, r1 = 0, B
        c0, c1 = share(fo, tid, nth, ALIGN)
    if r1 <= r0 or c1 <= c0:
        return
    keep = keeps_preactivation(act)
    dst = Z if keep else A
    gemm(0, 0, r1 - r0, c1 - c0, fi, inp, inp_off + r0 * fi, fi, params, w_off + c0, fo, 0.0,
         dst, out_off + r0 * fo + c0, fo)
    a = _block(A, out_off, B, fo)
    b = params[b_off:b_off + fo]
    if keep:
        bias_activation_forward(a, _block(Z, out_off, B, fo), b, act, r0, r1, c0, c1)
    else:
        bias_activation_inplace(a, b, act, r0, r1, c0, c1)


# Up to this many rows (and with more than one thread), a layer's x @ W is split between the
# threads along W's rows (input units), the same rows that each thread's fused backward
# updates: every thread reads only the part of W that it wrote itself in the last step (and
# that is still in its core's cache), and the threads add up their (B, fan_out) partial
# products. Splitting by W's columns instead moves half of W from the other core every step.
# Networks large enough for the fused backward (below) split this way up to FUSED_MAX_ROWS
# rows, since that backward leaves each thread's rows of W in its cache; for small networks
# a k-split of tiny GEMMs costs more than it saves above 64 rows (64-128-64-10 at batch 128:
# -20%).
KSPLIT_MAX_ROWS = 64


@njit(cache=True)
def layer_forward_ksplit(tid, nth, sync, A, Z, inp, inp_off, params, fi, fo, w_off, b_off, act,
                         B, out_off, scratch):
    """layer_forward for a few rows, split along the inner dimension (see KSPLIT_MAX_ROWS);
    scratch (nth, >= B * fo) holds each thread's partial product. Contains one barrier."""
    i0, i1 = share(fi, tid, nth, ALIGN)
    gemm(0, 0, B, fo, i1 - i0, inp, inp_off + i0, fi, params, w_off + i0 * fo, fo, 0.0,
         scratch[tid], 0, fo)  # (an empty share writes zeros)
    barrier(sync, nth)
    c0, c1 = share(fo, tid, nth, ALIGN)
    if c1 <= c0:
        return
    keep = keeps_preactivation(act)
    dst = Z if keep else A
    for r in range(B):
        out = dst[out_off + r * fo + c0:out_off + r * fo + c1]
        first = scratch[0, r * fo + c0:r * fo + c1]
        for j in range(c1 - c0):
            out[j] = first[j]
        for t in range(1, nth):
            part = scratch[t, r * fo + c0:r * fo + c1]
            for j in range(c1 - c0):
                out[j] += part[j]
    a = _block(A, out_off, B, fo)
    b = params[b_off:b_off + fo]
    if keep:
        bias_activation_forward(a, _block(Z, out_off, B, fo), b, act, as_variable(0), B, c0,
                                c1)
    else:
        bias_activation_inplace(a, b, act, as_variable(0), B, c0, c1)


@njit(cache=True)
def _forward(tid, nth, sync, A, Z, x, x_off, params, sizes, acts, w_off, b_off, unit_off, B,
             scratch):
    """Forward pass on the batch (B, sizes[0]) at x_off of the flat x; the output lands in A's
    last block. scratch: see layer_forward_ksplit (may have no rows for one thread). Ends with
    every thread past a barrier."""
    inp = x
    inp_off = as_variable(x_off)
    for l in range(acts.shape[0]):
        out_off = B * unit_off[l]
        fi = sizes[l]
        fo = sizes[l + 1]
        ksplit = B <= KSPLIT_MAX_ROWS or (B <= FUSED_MAX_ROWS
                                          and params.shape[0] >= FUSED_MIN_PARAMS)
        if nth > 1 and ksplit and acts[l] != SOFTMAX and B * fo <= scratch.shape[1]:
            layer_forward_ksplit(tid, nth, sync, A, Z, inp, inp_off, params, fi, fo, w_off[l],
                                 b_off[l], acts[l], B, out_off, scratch)
        else:
            layer_forward(tid, nth, A, Z, inp, inp_off, params, fi, fo, w_off[l], b_off[l],
                          acts[l], B, out_off)
        barrier(sync, nth)
        inp = A
        inp_off = out_off


@njit(cache=True)
def bias_grad(db, D, dz_off, fo, B, j0):
    """db = column sums of dz[:, j0:j0 + db.size], dz (B, fo) at dz_off of D (this thread's
    entries of db)."""
    n = db.shape[0]
    zero = db.dtype.type(0.0)
    for j in range(n):
        db[j] = zero
    for r in range(B):
        row = D[dz_off + r * fo + j0:dz_off + r * fo + j0 + n]
        for j in range(n):
            db[j] += row[j]


@njit(cache=True)
def layer_backward(tid, nth, grads, D, A, Z, inp, inp_off, params, fi, fo, w_off, b_off,
                   prev_act, B, dz_off, dprev_off, has_prev):
    """This thread's share of one layer's backward from dz (B, fo) at dz_off of D: rows of
    dW = inp.T @ dz, entries of db = column sums of dz, and (has_prev) a block of
    dprev = (dz @ W.T) * act'(prev) at dprev_off of D."""
    i0, i1 = share(fi, tid, nth, ALIGN)  # dW rows = input units
    if i1 > i0:
        if B == 1:
            # outer product, one write of dW: about 2x faster than sgemm with a unit inner
            # dimension (which OpenBLAS does not forward to ger)
            d0 = D[dz_off:dz_off + fo]
            for i in range(i0, i1):
                c = inp[inp_off + i]
                row = grads[w_off + i * fo:w_off + (i + 1) * fo]
                for j in range(fo):
                    row[j] = c * d0[j]
        else:
            gemm(1, 0, i1 - i0, fo, B, inp, inp_off + i0, fi, D, dz_off, fo, 0.0, grads,
                 w_off + i0 * fo, fo)
    j0, j1 = share(fo, tid, nth, ALIGN)
    if j1 > j0:
        bias_grad(grads[b_off + j0:b_off + j1], D, dz_off, fo, B, j0)
    if not has_prev:
        return
    if _by_rows(B, fi):
        r0, r1 = share(B, tid, nth, 1)
        c0, c1 = 0, fi
    else:
        r0, r1 = 0, B
        c0, c1 = i0, i1
    if r1 <= r0 or c1 <= c0:
        return
    gemm(0, 1, r1 - r0, c1 - c0, fo, D, dz_off + r0 * fo, fo, params, w_off + c0 * fo, fo, 0.0,
         D, dprev_off + r0 * fi + c0, fi)
    activation_backward(_block(D, dprev_off, B, fi), _block(A, inp_off, B, fi),
                        _block(Z, inp_off, B, fi), prev_act, r0, r1, c0, c1)


# Batches of up to this many rows (without gradient clipping, which needs the whole gradient's
# norm before any update) take the fused backward: each thread walks its rows of W once per
# block, computing dx from the old weights, the dW block into a small scratch buffer and the
# optimizer update of those rows, instead of a dW pass, a write of dW and an update pass that
# reads it back. At small batches a step of a large network is bound by streaming W and the
# optimizer state: 784-512-256-10 on 2 threads, batch 1 +17%, 8 +15% (BLAS for the blocks'
# dW and dx above batch 1). With layer_forward_ksplit the same thread then reads those rows
# in the next forward from its own cache (batch 1 +54%, 8 +43%, 64 +15% together). A small
# network's state stays in cache and the extra per-block optimizer calls cost more than they
# save (64-128-64-10: -10% at batch 1). Up to 128 rows the fused backward and the k-split
# forward together still win (784-512-256-10 at batch 128, best of 3 fits: MKL 89,191 ->
# 96,009 samples/s, OpenBLAS 73,369 -> 76,026); at 256 they do not (MKL +1%, OpenBLAS -6%).
FUSED_MAX_ROWS = 128
FUSED_MIN_PARAMS = 1 << 16
FUSED_BLOCK = 32768  # elements of dW per block: 128 KB of float32, stays in L2
FUSED_BLOCK_ONE_ROW = 4096  # at batch 1 (no BLAS calls to amortize) 16 KB, in L1


@njit(cache=True, fastmath={"reassoc", "contract"})
def _dot(u, v):
    """u . v in the arrays' dtype; reassociation lets the reduction vectorize."""
    s = u.dtype.type(0.0)
    for i in range(u.shape[0]):
        s += u[i] * v[i]
    return s


@njit(cache=True)
def layer_backward_update(tid, nth, grads, D, A, Z, inp, inp_off, params, fi, fo, w_off,
                          b_off, prev_act, B, dz_off, dprev_off, has_prev, opt_code, opt_hyper,
                          opt_state, step, scratch, l2):
    """layer_backward for a few rows (B <= FUSED_MAX_ROWS) with the optimizer update of this
    thread's rows of W and entries of b fused in. db stays in grads (the gradient norm reads
    it); dW is never stored whole: returns the sum of squares of this thread's rows of it,
    taken from each block while it is in cache. dx uses the weights from before the update.
    l2 (alpha / B) is the L2 penalty's coefficient on W's rows (biases take none)."""
    j0, j1 = share(fo, tid, nth, ALIGN)
    i0, i1 = share(fi, tid, nth, ALIGN)
    sq_w = 0.0
    block = min(FUSED_BLOCK_ONE_ROW if B == 1 else FUSED_BLOCK, scratch.shape[0])
    rows = max(1, block // fo)  # scratch holds at least one row
    n_blocks = (i1 - i0 + rows - 1) // rows if i1 > i0 else 0
    # block -1 is this thread's part of b; one optimizer call site (each is a large inlined
    # body: fewer of them compile faster)
    for blk in range(-1, n_blocks):
        decay = l2
        if blk < 0:
            if j1 <= j0:
                continue
            g = grads[b_off + j0:b_off + j1]
            bias_grad(g, D, dz_off, fo, B, j0)
            lo = b_off + j0
            hi = b_off + j1
            decay = 0.0
        else:
            ib = i0 + blk * rows
            ie = min(i1, ib + rows)
            if B == 1:  # dot products and an outer product by hand: BLAS calls cost more here
                dz = D[dz_off:dz_off + fo]
                for i in range(ib, ie):
                    w = params[w_off + i * fo:w_off + (i + 1) * fo]
                    gi = scratch[(i - ib) * fo:(i - ib + 1) * fo]
                    c = inp[inp_off + i]
                    if has_prev:
                        D[dprev_off + i] = _dot(w, dz)
                    for j in range(fo):
                        gi[j] = c * dz[j]
            else:
                if has_prev:
                    gemm(0, 1, B, ie - ib, fo, D, dz_off, fo, params, w_off + ib * fo, fo, 0.0,
                         D, dprev_off + ib, fi)
                gemm(1, 0, ie - ib, fo, B, inp, inp_off + ib, fi, D, dz_off, fo, 0.0, scratch,
                     0, fo)
            g = scratch[:(ie - ib) * fo]
            if B > GRAM_NORM_MAX_ROWS:  # else layer_grad_sumsq's Gram products are cheaper
                sq_w += _dot64(g, g)
            lo = w_off + ib * fo
            hi = w_off + ie * fo
        optimizer_update(opt_code, params, g, opt_state, opt_hyper, step, 1.0, lo, hi, decay)
    if has_prev and i1 > i0:
        activation_backward(_block(D, dprev_off, B, fi), _block(A, inp_off, B, fi),
                            _block(Z, inp_off, B, fi), prev_act, as_variable(0), B, i0,
                            i1)
    return sq_w


@njit(cache=True)
def _backward(tid, nth, sync, grads, D, A, Z, x, x_off, params, sizes, acts, w_off, b_off,
              unit_off, B, fused, opt_code, opt_hyper, opt_state, step, scratch, sq_w, l2):
    """Backpropagation in O(L) GEMMs: D's last block holds dL/dz_out on entry (from the loss);
    each layer turns its delta into dW, db and the previous layer's delta. grads is
    overwritten; with `fused`, W is updated instead (layer_backward_update) and only db
    lands in grads and sq_w[l] gets this thread's part of ||dW_l||^2 (l2: the L2 penalty's
    coefficient for the fused update). Ends with every thread past a barrier."""
    L = acts.shape[0]
    for l in range(L - 1, -1, -1):
        has_prev = l > 0
        inp = A if has_prev else x
        inp_off = B * unit_off[l - 1] if has_prev else x_off
        prev_act = acts[l - 1] if has_prev else acts[l]
        if fused:
            sq_w[l] = layer_backward_update(
                tid, nth, grads, D, A, Z, inp, inp_off, params, sizes[l], sizes[l + 1],
                w_off[l], b_off[l], prev_act, B, B * unit_off[l], inp_off, has_prev, opt_code,
                opt_hyper, opt_state, step, scratch, l2)
        else:
            layer_backward(tid, nth, grads, D, A, Z, inp, inp_off, params, sizes[l],
                           sizes[l + 1], w_off[l], b_off[l], prev_act, B, B * unit_off[l],
                           inp_off, has_prev)
        barrier(sync, nth)


@njit(cache=True)
def _loss(tid, nth, D, A, Z, y_index, y_float, sizes, acts, unit_off, loss, stats, B):
    """This thread's rows of the fused loss + output delta; returns their summed loss."""
    L = acts.shape[0]
    k = sizes[L]
    off = B * unit_off[L - 1]
    r0, r1 = share(B, tid, nth, 1)
    if r1 <= r0:
        return 0.0
    yi = y_index[r0:r1] if y_index.shape[0] > 0 else y_index[:0]
    yf = y_float[r0:r1] if y_float.shape[0] > 0 else y_float[:0]
    return loss_forward_backward(_block(D, off, B, k)[r0:r1], _block(Z, off, B, k)[r0:r1],
                                 _block(A, off, B, k)[r0:r1], yi, yf, loss, acts[L - 1], stats,
                                 B)


@njit(cache=True)
def network_forward(A, Z, x, params, sizes, acts, w_off, b_off, unit_off):
    """Forward pass of the whole network on x (B, sizes[0]), one thread; the output lands in
    A's last block."""
    B = x.shape[0]
    sync = sizes[:0]  # one thread: barriers return before reading it
    _forward(as_variable(0), as_variable(1), sync, A, Z, x.reshape(x.size), 0, params, sizes,
             acts, w_off, b_off, unit_off, B, params[:0].reshape(0, 0))


@njit(cache=True)
def network_backward(grads, D, A, Z, x, params, sizes, acts, w_off, b_off, unit_off):
    """Backward pass (one thread) from dL/dz_out in D's last block; grads is overwritten."""
    B = x.shape[0]
    sync = sizes[:0]  # one thread: barriers return before reading it
    _backward(as_variable(0), as_variable(1), sync, grads, D, A, Z, x.reshape(x.size), 0,
              params, sizes, acts, w_off, b_off, unit_off, B, False, 0,
              params[:0].astype(np.float64), params[:0].reshape(0, 0), 0, params[:0],
              params[:0].astype(np.float64), 0.0)


@njit(cache=True)
def forward_loss_backward(grads, D, A, Z, x, y_index, y_float, params, sizes, acts, w_off,
                          b_off, unit_off, loss, stats):
    """One training step's gradient (one thread): forward, fused loss + output delta, backward.
    Returns the batch's summed per-sample loss (stats accumulate as in loss_forward_backward)."""
    B = x.shape[0]
    network_forward(A, Z, x, params, sizes, acts, w_off, b_off, unit_off)
    total = _loss(as_variable(0), as_variable(1), D, A, Z, y_index, y_float, sizes, acts,
                  unit_off, loss, stats, B)
    network_backward(grads, D, A, Z, x, params, sizes, acts, w_off, b_off, unit_off)
    return total


@njit(cache=True)
def gather_batch(tid, nth, xb, yb_index, yb_float, X, y_index, y_float, order, start, B):
    """Copy this thread's share of the rows order[start:start+B] of X and of the targets into
    the batch buffers."""
    n_in = X.shape[1]
    r0, r1 = share(B, tid, nth, 1)
    for i in range(r0, r1):
        src = X[order[start + i]]
        dst = xb[i * n_in:(i + 1) * n_in]
        for j in range(n_in):
            dst[j] = src[j]
    if y_index.shape[0] > 0:
        for i in range(r0, r1):
            yb_index[i] = y_index[order[start + i]]
    else:
        k = y_float.shape[1]
        for i in range(r0, r1):
            src = y_float[order[start + i]]
            dst = yb_float[i * k:(i + 1) * k]
            for j in range(k):
                dst[j] = src[j]


@njit(cache=True, fastmath={"reassoc"})
def _dot64(u, v):
    """u . v accumulated in float64; reassociation lets the reduction vectorize (a serial
    float64 chain ran at a quarter of memory speed)."""
    s = 0.0
    for i in range(u.shape[0]):
        s += float(u[i]) * float(v[i])
    return s


# Up to this many rows, ||dW||^2 comes from the rows' Gram products instead of a read of dW.
GRAM_NORM_MAX_ROWS = 8


@njit(cache=True)
def layer_grad_sumsq(tid, nth, out, grads, x, x_off, D, A, sizes, w_off, b_off, unit_off, B,
                     fused):
    """This thread's part of the squared gradient norms: out[l] = its part of ||dW_l||^2 and
    out[L] its part of sum_l ||db_l||^2 (the threads' parts add up to the whole).

    For a few rows, dW_l = a^T dz is a sum of B outer products and
    ||dW_l||^2 = sum_{r,s} (a_r . a_s)(dz_r . dz_s): O(B^2 (fan_in + fan_out)) work instead of
    a second read of the whole gradient (2 MB for 784-512-256-10); thread 0 does it. In float64
    its rounding is far below float32's. (A float32 overflow inside dW that this misses
    surfaces as a non-finite loss one step later.) Otherwise each thread reads the rows of dW
    it wrote. After a fused backward on more rows, out[:L] already holds the dW parts."""
    L = w_off.shape[0]
    sq_b = 0.0
    for l in range(L):
        fi = sizes[l]
        fo = sizes[l + 1]
        j0, j1 = share(fo, tid, nth, ALIGN)
        db = grads[b_off[l] + j0:b_off[l] + j1]
        sq_b += _dot64(db, db)
        if fused and B > GRAM_NORM_MAX_ROWS:
            continue
        sq_w = 0.0
        if B <= GRAM_NORM_MAX_ROWS:
            if tid == 0:
                inp = _block(x, x_off, B, fi) if l == 0 else _block(A, B * unit_off[l - 1], B,
                                                                      fi)
                dz = _block(D, B * unit_off[l], B, fo)
                for r in range(B):
                    sq_w += _dot64(inp[r], inp[r]) * _dot64(dz[r], dz[r])
                    for q in range(r):
                        sq_w += 2.0 * _dot64(inp[r], inp[q]) * _dot64(dz[r], dz[q])
                if sq_w < 0.0:  # noqa: PLR1730 (cancellation can leave a tiny negative; NaN passes)
                    sq_w = 0.0
        else:
            i0, i1 = share(fi, tid, nth, ALIGN)
            dW = grads[w_off[l] + i0 * fo:w_off[l] + i1 * fo]
            sq_w = _dot64(dW, dW)
        out[l] = sq_w
    out[L] = sq_b


@njit(cache=True)
def _weights_sumsq(tid, nth, params, sizes, w_off):
    """Sum of squares (float64) of this thread's rows of every weight matrix (the rows it
    updates): summed over threads, sum(W^2) for the L2 penalty."""
    total = 0.0
    for l in range(sizes.shape[0] - 1):
        fo = sizes[l + 1]
        i0, i1 = share(sizes[l], tid, nth, ALIGN)
        if i1 > i0:
            w = params[w_off[l] + i0 * fo:w_off[l] + i1 * fo]
            total += _dot64(w, w)
    return total


# status codes returned by train_steps
RAN, DIVERGED, ABORTED = 0, 1, 2


@njit(cache=True, nogil=True)
def train_steps(X, y_index, y_float, order, start, n_steps, batch_size,
                params, grads, sizes, acts, w_off, b_off, unit_off, loss,
                opt_code, opt_hyper, opt_state, opt_step, clip_norm, alpha,
                xb, yb_index, yb_float, A, Z, D, stats, grad_norms, tid, nth, sync, partial,
                scratch):
    """Run up to n_steps minibatch steps over rows order[start:], with no Python in between.

    Step s uses rows order[start + s*batch_size : ... + batch_size] (the last batch may be
    short). Each step: gather, forward, loss, backward, optional norm clipping, fused update.
    alpha > 0 adds scikit-learn's L2 penalty alpha / 2 * sum(W^2) / B to the batch's loss
    (into stats[tid][0], as B times the mean) and alpha * W / B to the weights' gradient, in
    the update (after clipping, like weight_decay).
    opt_step[0] is the optimizer's step counter (incremented per applied step). stats[tid]
    (4,) and grad_norms (thread 0) accumulate (see loss_forward_backward, layer_grad_sumsq).

    Called by nth threads at once with tid = 0..nth-1 and the same arguments otherwise (nogil),
    or by one with tid 0, nth 1. sync (SYNC_SIZE int64, zeroed) and partial (nth, L + 2)
    float64 are shared; scratch (nth, scratch_size(...)) in the parameter dtype holds each
    thread's partial products (layer_forward_ksplit) and dW blocks (fused backward). Every
    thread returns the same (status, steps applied): DIVERGED on a non-finite loss or gradient
    (that step is not counted; a fused backward has already applied it, so the caller must
    restore its last good weights and state), ABORTED when sync's abort flag was raised
    (another thread failed).
    """
    # one function, not a wrapper around the loop: every level of calls re-optimizes all the
    # code inlined below it (about 1.6 s of cold compile per level)
    caller_mode = _get_fp_mode()
    _set_fp_mode(caller_mode | FLUSH_DENORMALS)
    N = order.shape[0]
    L = acts.shape[0]
    k = sizes[L]
    n_params = params.shape[0]
    mine = partial[tid]
    fused = (batch_size <= FUSED_MAX_ROWS and n_params >= FUSED_MIN_PARAMS
             and clip_norm <= 0.0)
    done = 0
    status = RAN
    for s in range(n_steps):
        pos = start + s * batch_size
        if pos >= N:
            break
        B = min(batch_size, N - pos)
        gather_batch(tid, nth, xb, yb_index, yb_float, X, y_index, y_float, order, pos, B)
        barrier(sync, nth)
        step = opt_step[0] + 1  # read after a barrier that thread 0 passes after updating it
        yi = yb_index[:B] if y_index.shape[0] > 0 else yb_index[:0]
        yf = _block(yb_float, 0, B if y_index.shape[0] == 0 else 0, k)
        _forward(tid, nth, sync, A, Z, xb, 0, params, sizes, acts, w_off, b_off, unit_off, B,
                 scratch)
        mine[L + 1] = _loss(tid, nth, D, A, Z, yi, yf, sizes, acts, unit_off, loss, stats[tid],
                            B)
        l2 = alpha / B
        if alpha > 0.0:  # the penalty of the weights this step starts from
            stats[tid, 0] += 0.5 * alpha * _weights_sumsq(tid, nth, params, sizes, w_off)
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
        _backward(tid, nth, sync, grads, D, A, Z, xb, 0, params, sizes, acts, w_off, b_off,
                  unit_off, B, fused, opt_code, opt_hyper, opt_state, step, scratch[tid], mine,
                  l2)
        layer_grad_sumsq(tid, nth, mine, grads, xb, 0, D, A, sizes, w_off, b_off, unit_off, B,
                         fused)
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
            if clip_norm > 0.0:
                norm = math.sqrt(sumsq)
                # torch.nn.utils.clip_grad_norm_: scale by min(1, max_norm / (norm + 1e-6))
                scale = min(1.0, clip_norm / (norm + 1e-6))
            # each thread updates the rows of W (and entries of b) whose gradient it computed:
            # they are still in its core's cache
            for seg in range(2 * L):
                l = seg // 2
                decay = l2
                if seg % 2 == 0:
                    i0, i1 = share(sizes[l], tid, nth, ALIGN)
                    lo = w_off[l] + i0 * sizes[l + 1]
                    hi = w_off[l] + i1 * sizes[l + 1]
                else:
                    j0, j1 = share(sizes[l + 1], tid, nth, ALIGN)
                    lo = b_off[l] + j0
                    hi = b_off[l] + j1
                    decay = 0.0
                if hi > lo:
                    optimizer_update(opt_code, params, grads[lo:hi], opt_state, opt_hyper, step,
                                     scale, lo, hi, decay)
            if not barrier(sync, nth):  # the next step reads every updated parameter
                status = ABORTED
                break
        if tid == 0:
            opt_step[0] = step  # the other threads read it after the next gather's barrier
        done += 1
    if status == RAN and nth > 1 and atomic_load(sync, SYNC_ABORT) != 0:
        status = ABORTED
    _set_fp_mode(caller_mode)
    return status, done




def scratch_size(layer_sizes):
    """Elements per thread of train_steps' scratch for a network with these widths."""
    widest = max(layer_sizes[1:])
    return max(FUSED_BLOCK, max(KSPLIT_MAX_ROWS, FUSED_MAX_ROWS) * widest)


def new_sync():
    """A zeroed sync array for one set of threads running train_steps together."""
    return np.zeros(SYNC_SIZE, dtype=np.int64)


@njit(cache=True, nogil=True)
def evaluate_batches(X, y_index, y_float, batch_size, params, sizes, acts, w_off, b_off,
                     unit_off, loss, xb, A, Z, D, stats, out, tid, nth, sync, scratch):
    """Loss/accuracy over (X, y) in batches without training, and, when out has rows, the
    network outputs written into out (N, k). Pass targets with no rows to only predict.

    Run like train_steps: by nth threads at once (tid = 0..nth-1, sync shared, scratch
    (nth, scratch_size(...)) for the k-split forward), or by one with tid 0, nth 1 (scratch
    may then have no columns). Each thread copies, scores and writes out its share of every
    batch's rows; stats[tid] (4,) accumulates its rows' loss sums (see loss_forward_backward).
    Returns RAN, or ABORTED when sync's abort flag was raised."""
    N = X.shape[0]
    n_in = X.shape[1]
    L = acts.shape[0]
    k = sizes[L]
    has_targets = y_index.shape[0] > 0 or y_float.shape[0] > 0
    status = RAN
    for pos in range(0, N, batch_size):
        B = min(batch_size, N - pos)
        r0, r1 = share(B, tid, nth, 1)
        for i in range(r0, r1):
            src = X[pos + i]
            dst = xb[i * n_in:(i + 1) * n_in]
            for j in range(n_in):
                dst[j] = src[j]
        # every thread is past the previous batch's reads of A, Z and D: the forward may
        # overwrite them
        if not barrier(sync, nth):
            status = ABORTED
            break
        _forward(tid, nth, sync, A, Z, xb, 0, params, sizes, acts, w_off, b_off, unit_off, B,
                 scratch)
        if out.shape[0] > 0:
            a = _block(A, B * unit_off[L - 1], B, k)
            for i in range(r0, r1):
                for j in range(k):
                    out[pos + i, j] = a[i, j]
        if has_targets:
            yi = y_index[pos:pos + B] if y_index.shape[0] > 0 else y_index[:0]
            yf = y_float[pos:pos + B] if y_float.shape[0] > 0 else y_float[:0]
            _loss(tid, nth, D, A, Z, yi, yf, sizes, acts, unit_off, loss, stats[tid], B)
    if status == RAN and nth > 1 and atomic_load(sync, SYNC_ABORT) != 0:
        status = ABORTED
    return status
