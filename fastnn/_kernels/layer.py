"""One dense layer's forward and backward, this thread's share of it: the GEMMs through
blas.gemm on blocks of the flat buffers, the elementwise work fused around them (dense.py).

Every function takes layer `l` of the network `net` (a Network bundle, bundles.py), the
workspace `ws` (an Activations bundle), the batch input `x` (flat, B rows of sizes[0]) and the
thread team `team` (tid of nth, their shared sync array and scratch; see sync.py): layer l
reads its input from x (l == 0) or A's block l - 1, writes act(z) to A's block l (z to Z's
where keeps_preactivation asks for it), and its backward reads dz from D's block l and writes
the previous layer's delta to D's block l - 1.

Splitting: each thread owns a range of every W's rows (input units) for the whole fit: it
computes those rows of dW and updates them (and its entries of b). Forward GEMMs of up to
KSPLIT_MAX_ROWS rows (FUSED_MAX_ROWS for large networks) are split along that same inner
dimension (each thread reads the W rows it updated, from its own cache, and the partial
products are added); larger ones by batch rows once the batch is at least fan_out, else by
output columns; dx likewise by rows or by the owned columns.
"""
from numba import njit

from .blas import gemm
from .dense import SOFTMAX, as_variable, keeps_preactivation
from .dropout import delta_epilogue, output_epilogue
from .optim import optimizer_update
from .sync import ALIGN, barrier, share

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

# Up to this many rows, ||dW||^2 comes from the rows' Gram products instead of a read of dW
# (network.layer_grad_norms); the fused backward then skips its own sum of squares.
GRAM_NORM_MAX_ROWS = 8


def scratch_size(layer_sizes):
    """Elements per thread of the team's scratch (partial products of layer_forward_ksplit,
    dW blocks of layer_backward_update) for a network with these widths."""
    widest = max(layer_sizes[1:])
    return max(FUSED_BLOCK, max(KSPLIT_MAX_ROWS, FUSED_MAX_ROWS) * widest)


@njit(cache=True)
def block(buf, off, rows, cols):
    """buf[off:off + rows * cols] as a (rows, cols) view."""
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
def layer_forward(ws, x, B, params, net, drop, step, l, team):
    """This thread's block of a = act(inp @ W_l + b_l) for layer l, with the dropout of its
    output (site l + 1 of `drop` in step `step`) fused in."""
    fi = net.sizes[l]
    fo = net.sizes[l + 1]
    act = net.acts[l]
    inp = x if l == 0 else ws.A
    inp_off = 0 if l == 0 else B * net.unit_off[l - 1]
    out_off = B * net.unit_off[l]
    if act == SOFTMAX or _by_rows(B, fo):  # softmax normalizes whole rows
        r0, r1 = share(B, team.tid, team.nth, 1)
        c0, c1 = 0, fo
    else:
        r0, r1 = 0, B
        c0, c1 = share(fo, team.tid, team.nth, ALIGN)
    if r1 <= r0 or c1 <= c0:
        return
    keep = keeps_preactivation(act)
    dst = ws.Z if keep else ws.A
    gemm(0, 0, r1 - r0, c1 - c0, fi, inp, inp_off + r0 * fi, fi, params, net.w_off[l] + c0, fo,
         0.0, dst, out_off + r0 * fo + c0, fo)
    a = block(ws.A, out_off, B, fo)
    b = params[net.b_off[l]:net.b_off[l] + fo]
    output_epilogue(a, block(ws.Z, out_off, B, fo) if keep else a, b, act, r0, r1, c0, c1,
                    drop, step, l + 1)


@njit(cache=True)
def layer_forward_ksplit(ws, x, B, params, net, drop, step, l, team):
    """layer_forward for a few rows, split along the inner dimension (see KSPLIT_MAX_ROWS);
    team.scratch (nth, >= B * fo) holds each thread's partial product. Contains one barrier."""
    tid, nth = team.tid, team.nth
    scratch = team.scratch
    fi = net.sizes[l]
    fo = net.sizes[l + 1]
    act = net.acts[l]
    inp = x if l == 0 else ws.A
    inp_off = 0 if l == 0 else B * net.unit_off[l - 1]
    out_off = B * net.unit_off[l]
    i0, i1 = share(fi, tid, nth, ALIGN)
    gemm(0, 0, B, fo, i1 - i0, inp, inp_off + i0, fi, params, net.w_off[l] + i0 * fo, fo, 0.0,
         scratch[tid], 0, fo)  # (an empty share writes zeros)
    barrier(team.sync, nth)
    c0, c1 = share(fo, tid, nth, ALIGN)
    if c1 <= c0:
        return
    keep = keeps_preactivation(act)
    dst = ws.Z if keep else ws.A
    for r in range(B):
        out = dst[out_off + r * fo + c0:out_off + r * fo + c1]
        first = scratch[0, r * fo + c0:r * fo + c1]
        for j in range(c1 - c0):
            out[j] = first[j]
        for t in range(1, nth):
            part = scratch[t, r * fo + c0:r * fo + c1]
            for j in range(c1 - c0):
                out[j] += part[j]
    a = block(ws.A, out_off, B, fo)
    b = params[net.b_off[l]:net.b_off[l] + fo]
    output_epilogue(a, block(ws.Z, out_off, B, fo) if keep else a, b, act, as_variable(0), B,
                    c0, c1, drop, step, l + 1)


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
def layer_backward(grads, ws, x, B, params, net, drop, step, l, team):
    """This thread's share of layer l's backward from dz (B, fo) in D's block l: rows of
    dW = inp.T @ dz, entries of db = column sums of dz, and (l > 0) a block of
    dprev = (dz @ W.T) * act'(prev) in D's block l - 1 (through the dropout of site l when it
    drops units, the mask of step `step`)."""
    tid, nth = team.tid, team.nth
    D = ws.D
    fi = net.sizes[l]
    fo = net.sizes[l + 1]
    w_off = net.w_off[l]
    b_off = net.b_off[l]
    has_prev = l > 0
    inp = ws.A if has_prev else x
    inp_off = B * net.unit_off[l - 1] if has_prev else 0
    dz_off = B * net.unit_off[l]
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
         D, inp_off + r0 * fi + c0, fi)
    delta_epilogue(block(D, inp_off, B, fi), block(ws.A, inp_off, B, fi),
                   block(ws.Z, inp_off, B, fi), net.acts[l - 1], r0, r1, c0, c1, drop, step, l)


@njit(cache=True, fastmath={"reassoc", "contract"})
def _dot(u, v):
    """u . v in the arrays' dtype; reassociation lets the reduction vectorize."""
    s = u.dtype.type(0.0)
    for i in range(u.shape[0]):
        s += u[i] * v[i]
    return s


@njit(cache=True, fastmath={"reassoc"})
def dot64(u, v):
    """u . v accumulated in float64; reassociation lets the reduction vectorize (a serial
    float64 chain ran at a quarter of memory speed)."""
    s = 0.0
    for i in range(u.shape[0]):
        s += float(u[i]) * float(v[i])
    return s


@njit(cache=True)
def layer_backward_update(grads, ws, x, B, params, net, drop, l, opt, step, team):
    """layer_backward for a few rows (B <= FUSED_MAX_ROWS) with the optimizer update (step
    number `step` of `opt`, an OptimizerState bundle) of this thread's rows of W and entries of
    b fused in. db stays in grads (the gradient norm reads it); dW is never stored whole:
    returns the sum of squares of this thread's rows of it, taken from each block while it is
    in cache. dx uses the weights from before the update; the dropout of site l (step `step`)
    is fused into its activation derivative as in layer_backward. The rows of W take
    opt.alpha's L2 penalty, alpha / B (biases none)."""
    tid, nth = team.tid, team.nth
    scratch = team.scratch[tid]
    D = ws.D
    fi = net.sizes[l]
    fo = net.sizes[l + 1]
    w_off = net.w_off[l]
    b_off = net.b_off[l]
    has_prev = l > 0
    inp = ws.A if has_prev else x
    inp_off = B * net.unit_off[l - 1] if has_prev else 0
    dz_off = B * net.unit_off[l]
    dprev_off = inp_off
    j0, j1 = share(fo, tid, nth, ALIGN)
    i0, i1 = share(fi, tid, nth, ALIGN)
    sq_w = 0.0
    size = min(FUSED_BLOCK_ONE_ROW if B == 1 else FUSED_BLOCK, scratch.shape[0])
    rows = max(1, size // fo)  # scratch holds at least one row
    n_blocks = (i1 - i0 + rows - 1) // rows if i1 > i0 else 0
    # block -1 is this thread's part of b; one optimizer call site (each is a large inlined
    # body: fewer of them compile faster)
    for blk in range(-1, n_blocks):
        decay = opt.alpha / B
        if blk < 0:
            decay = 0.0
            if j1 <= j0:
                continue
            g = grads[b_off + j0:b_off + j1]
            bias_grad(g, D, dz_off, fo, B, j0)
            lo = b_off + j0
            hi = b_off + j1
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
            if B > GRAM_NORM_MAX_ROWS:  # else layer_grad_norms' Gram products are cheaper
                sq_w += dot64(g, g)
            lo = w_off + ib * fo
            hi = w_off + ie * fo
        optimizer_update(opt, params, g, step, 1.0, lo, hi, decay)
    if has_prev and i1 > i0:
        delta_epilogue(block(D, dprev_off, B, fi), block(ws.A, inp_off, B, fi),
                       block(ws.Z, inp_off, B, fi), net.acts[l - 1], as_variable(0), B, i0, i1,
                       drop, step, l)
    return sq_w
