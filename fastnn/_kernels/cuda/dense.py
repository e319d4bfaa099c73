"""Dense layer on the GPU: a tiled shared-memory GEMM with the bias + activation epilogue fused.

Forward   z = x @ W + b,  a = act(z)                      (one GEMM launch, epilogue fused)
Backward  dW = x.T @ dz,  db = sum_rows(dz),  dx = dz @ W.T,  dz_prev = dx * act'(prev)

Mirrors fastnn/_kernels/dense.py: same function names, argument order, shapes and activation
codes; arguments are device arrays (C-contiguous) and the launchers allocate nothing. Shapes:
x (B, fan_in), W (fan_in, fan_out), b (fan_out,), z/a/dz (B, fan_out).

GEMM: each block computes a TILE x TILE tile of C, staging TILE_K-deep slabs of op(A) and
op(B) through shared memory; each of its (TILE/WORK)^2 threads keeps a WORK x WORK register
tile of C, strided by TILE/WORK so that neighbouring threads touch neighbouring columns. The
constants are read at launch time and the kernel is built (and cached) per value, so the tests
patch them small to make several blocks run in the simulator.
"""
import functools
import math

import numpy as np
from numba import cuda

from .. import dense as _cpu
from .. import dropout as _dropout
from ..dense import (
    ELU,
    ELU_ALPHA,
    GELU,
    IDENTITY,
    LEAKY_RELU,
    LEAKY_RELU_SLOPE,
    RELU,
    SIGMOID,
    SOFTMAX,
    TANH,
)

MAX_GRID_Y = 65535  # the CUDA limit on gridDim.y (gridDim.x goes to 2^31 - 1)
COLSUM_ROWS = 128  # column_sum: rows one thread sums (before the grid.y limit stretches it)

TILE = 64  # side of the C tile one block computes
TILE_K = 16  # depth of the shared-memory slabs of op(A) and op(B)
WORK = 4  # each thread computes WORK x WORK outputs: (TILE / WORK)^2 threads per block
THREADS = 256  # threads per block of the elementwise and per-row kernels

NO_EPILOGUE = -1  # gemm: plain C = op(A) @ op(B)
NO_DROPOUT = (0, 0, 0, 0, 1.0)  # gemm's epilogue dropout (seed, step, site, threshold, scale)


# the CPU kernel's rule, compiled for the device: the backward (or the loss) needs z itself
keeps_preactivation = cuda.jit(device=True, inline=True)(_cpu.keeps_preactivation.py_func)
# and its elementwise derivative
activation_grad = cuda.jit(device=True, inline=True)(_cpu.activation_grad.py_func)
# the dropout masks' hash (fastnn/_kernels/dropout.py; cuda/dropout.py holds the rest of the
# GPU's dropout, which needs this module)
row_key = cuda.jit(device=True, inline=True)(_dropout.row_key.py_func)
unit_hash = cuda.jit(device=True, inline=True)(_dropout.unit_hash.py_func)


# ---------------------------------------------------------------------------- device functions
@cuda.jit(device=True, inline=True)
def preactivation(z, i, j, act):
    """z[i, j] where keeps_preactivation(act), else 0 without reading z: the derivative of the
    other activations comes from their output, and their layers have no block of Z of their
    own (network.z_block)."""
    if keeps_preactivation(act):
        return z[i, j]
    return z.dtype.type(0.0)


@cuda.jit(device=True, inline=True)
def activate(v, act, like):
    """act(v) for the elementwise activations (softmax is done per row). `like` gives the dtype
    so that constants stay in float32 for float32 buffers."""
    t = like.dtype.type
    zero = t(0.0)
    one = t(1.0)
    if act == RELU:
        return zero if v < zero else v  # noqa: FURB136 (a select: NaN stays NaN, as on the CPU)
    if act == LEAKY_RELU:
        return v if v > zero else t(LEAKY_RELU_SLOPE) * v
    if act == TANH:
        return math.tanh(v)
    if act == ELU:
        return v if v > zero else t(ELU_ALPHA) * math.expm1(v)
    if act == SIGMOID:
        return one / (one + math.exp(-v))
    if act == GELU:
        return t(0.5) * v * (one + math.erf(v * t(1.0 / math.sqrt(2.0))))
    return v  # IDENTITY


# ---------------------------------------------------------------------------- kernels
@functools.cache
def _gemm_kernel(tile, tile_k, work):
    """The tiled GEMM for one (TILE, TILE_K, WORK): shared and register tile shapes must be
    compile-time constants, so they are closure constants of a kernel built per value."""
    threads = tile // work  # per block side
    n_threads = threads * threads
    slab = tile_k * tile
    loads = (slab + n_threads - 1) // n_threads  # elements of each slab one thread loads

    @cuda.jit(cache=True)
    def gemm_kernel(C, Z, A, Bm, bias, trans_a, trans_b, act, row0, seed, step, site,
                    threshold, scale):
        """C (M, N) = op(A) @ op(B); op(A) = A.T when trans_a (A stored (K, M)), op(B) = B.T
        when trans_b (B stored (N, K)). With act >= 0 the epilogue adds bias (N,) and applies
        the activation: z = acc + b is stored in Z when keeps_preactivation(act), and
        C = act(z) unless act is softmax (done per row afterwards); with threshold > 0 C goes
        through the dropout of `site` in step `step` (batch row row0 + m, unit n;
        fastnn/_kernels/dropout.py; row0: where this launch's rows start, see gemm)."""
        t = C.dtype.type
        zero = t(0.0)
        M, N = C.shape
        K = A.shape[0] if trans_a else A.shape[1]
        As = cuda.shared.array((tile_k, tile), C.dtype)  # As[kk, mm] = op(A)[m0+mm, k0+kk]
        Bs = cuda.shared.array((tile_k, tile), C.dtype)  # Bs[kk, nn] = op(B)[k0+kk, n0+nn]
        acc = cuda.local.array((work, work), C.dtype)
        ra = cuda.local.array(work, C.dtype)
        rb = cuda.local.array(work, C.dtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * threads + tx
        m0 = cuda.blockIdx.y * tile
        n0 = cuda.blockIdx.x * tile
        for i in range(work):
            for j in range(work):
                acc[i, j] = zero
        for k0 in range(0, K, tile_k):
            # stage the slabs; the fastest-varying index follows the contiguous memory axis
            for s in range(loads):
                e = tid + s * n_threads
                if e < slab:
                    if trans_a:  # A[k, m]: m contiguous
                        kk = e // tile
                        mm = e % tile
                    else:  # A[m, k]: k contiguous
                        mm = e // tile_k
                        kk = e % tile_k
                    m = m0 + mm
                    k = k0 + kk
                    v = zero
                    if m < M and k < K:
                        v = A[k, m] if trans_a else A[m, k]
                    As[kk, mm] = v
                    if trans_b:  # B[n, k]: k contiguous
                        nn = e // tile_k
                        kk = e % tile_k
                    else:  # B[k, n]: n contiguous
                        kk = e // tile
                        nn = e % tile
                    n = n0 + nn
                    k = k0 + kk
                    v = zero
                    if n < N and k < K:
                        v = Bm[n, k] if trans_b else Bm[k, n]
                    Bs[kk, nn] = v
            cuda.syncthreads()
            for kk in range(tile_k):
                for i in range(work):
                    ra[i] = As[kk, ty + i * threads]
                for j in range(work):
                    rb[j] = Bs[kk, tx + j * threads]
                for i in range(work):
                    for j in range(work):
                        acc[i, j] += ra[i] * rb[j]
            cuda.syncthreads()
        for i in range(work):
            m = m0 + ty + i * threads
            if m < M:
                for j in range(work):
                    n = n0 + tx + j * threads
                    if n < N:
                        v = acc[i, j]
                        if act < 0:
                            C[m, n] = v
                        else:
                            v += bias[n]
                            if keeps_preactivation(act):
                                Z[m, n] = v
                            if act != SOFTMAX:
                                v = activate(v, act, C)
                                if threshold > 0:
                                    key = row_key(seed, step, site, row0 + m)
                                    if unit_hash(key, n) >= np.uint64(threshold):
                                        v = v * t(scale)
                                    else:
                                        v = zero
                                C[m, n] = v

    return gemm_kernel


@cuda.jit(cache=True)
def bias_activation_kernel(a, z, b, act):
    """a = act(z + b) elementwise; z = z + b kept when keeps_preactivation(act). Softmax:
    only z + b here, the row pass follows."""
    B, n = z.shape
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for idx in range(start, B * n, stride):
        i = idx // n
        j = idx - i * n
        v = z[i, j] + b[j]
        if keeps_preactivation(act):
            z[i, j] = v
        if act != SOFTMAX:
            a[i, j] = activate(v, act, a)


@cuda.jit(cache=True)
def softmax_rows_kernel(a, z):
    """a[i] = softmax(z[i]) with the row max subtracted; one thread per row."""
    i = cuda.grid(1)
    if i >= z.shape[0]:
        return
    softmax_row(a, z, i)


@cuda.jit(device=True, inline=True)
def softmax_row(a, z, i):
    """a[i] = softmax(z[i]) with the row max subtracted (also run by the loss kernel, which
    folds the output layer's softmax into its own launch during training)."""
    n = z.shape[1]
    t = a.dtype.type
    m = z[i, 0]
    for j in range(n):
        if z[i, j] > m:  # noqa: PLR1730 (no max() in numba.cuda)
            m = z[i, j]
    s = t(0.0)
    for j in range(n):
        e = math.exp(z[i, j] - m)
        a[i, j] = e
        s += e
    inv = t(1.0) / s
    for j in range(n):
        a[i, j] *= inv


@cuda.jit(cache=True)
def activation_backward_kernel(dz, a, z, act):
    """dz *= act'(z) elementwise (every activation but softmax); z is read only where
    keeps_preactivation(act) (gelu; sigmoid's derivative comes from a)."""
    B, n = dz.shape
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for idx in range(start, B * n, stride):
        i = idx // n
        j = idx - i * n
        dz[i, j] = activation_grad(dz[i, j], a[i, j], preactivation(z, i, j, act), act, dz)


@cuda.jit(cache=True)
def softmax_backward_rows_kernel(dz, a):
    """Softmax Jacobian-vector product per row: dz_j = a_j (g_j - sum_k g_k a_k)."""
    B, n = dz.shape
    i = cuda.grid(1)
    if i >= B:
        return
    s = dz.dtype.type(0.0)
    for j in range(n):
        s += dz[i, j] * a[i, j]
    for j in range(n):
        dz[i, j] = a[i, j] * (dz[i, j] - s)


@cuda.jit(cache=True)
def column_sum_kernel(out, dz, rows):
    """out[r, j] = sum of dz[i, j] over the rows i of chunk r (rows r*rows ... r*rows + rows -
    1, in order, accumulated in out's dtype); grid (ceil(n / THREADS), chunks): one thread per
    column and chunk, neighbouring threads on neighbouring columns (coalesced reads)."""
    B, n = dz.shape
    j = cuda.grid(1)
    r = cuda.blockIdx.y
    if j >= n:
        return
    end = r * rows + rows
    if end > B:  # noqa: PLR1730 (no min() of a pair in numba.cuda)
        end = B
    s = out.dtype.type(0.0)
    for i in range(r * rows, end):
        s += dz[i, j]
    out[r, j] = s


@cuda.jit(cache=True)
def column_finish_kernel(db, partials, chunks):
    """db[j] = sum of partials[0:chunks, j], in order; one thread per column."""
    j = cuda.grid(1)
    if j >= db.shape[0]:
        return
    s = partials.dtype.type(0.0)
    for r in range(chunks):
        s += partials[r, j]
    db[j] = s


# ---------------------------------------------------------------------------- launchers
def _blocks(n):
    return max((n + THREADS - 1) // THREADS, 1)


def gemm(C, A, B, trans_a=False, trans_b=False, bias=None, act=NO_EPILOGUE, Z=None,
         drop=NO_DROPOUT):
    """C = op(A) @ op(B), op = transpose where asked; with act >= 0 the bias + activation
    epilogue (see gemm_kernel) writes a = C and, when kept, z = Z; drop: the epilogue's
    dropout (seed, step, site, threshold, scale), threshold 0 for none.

    Grid (ceil(N / TILE), ceil(M / TILE)). Past gridDim.y's limit (M > MAX_GRID_Y * TILE,
    about 4.19M rows with TILE 64) the rows are split over several launches of at most
    MAX_GRID_Y * TILE rows each."""
    M, N = C.shape
    if M == 0 or N == 0:
        return
    threads = TILE // WORK
    kernel = _gemm_kernel(TILE, TILE_K, WORK)
    Z = C if Z is None else Z
    bias = C[0] if bias is None else bias
    rows = MAX_GRID_Y * TILE
    for m0 in range(0, M, rows):
        m1 = min(m0 + rows, M)
        if m0 == 0 and m1 == M:
            Cp, Zp, Ap = C, Z, A
        else:
            Cp, Zp = C[m0:m1], Z[m0:m1]
            Ap = A[:, m0:m1] if trans_a else A[m0:m1]
        grid = ((N + TILE - 1) // TILE, (m1 - m0 + TILE - 1) // TILE)
        kernel[grid, (threads, threads)](Cp, Zp, Ap, B, bias, trans_a, trans_b, act, m0,
                                         *drop)


def softmax_rows(a, z):
    """a = softmax(z) row by row (B, n), one thread per row."""
    softmax_rows_kernel[_blocks(a.shape[0]), THREADS](a, z)


def _part(arr, r0, r1, c0, c1):
    """arr[r0:r1, c0:c1], without slicing (Python microseconds) when that is all of arr."""
    if r0 == 0 and c0 == 0 and r1 == arr.shape[0] and c1 == arr.shape[1]:
        return arr
    return arr[r0:r1, c0:c1]


def bias_activation_forward(a, z, b, act, r0, r1, c0, c1):
    """z += b (row-broadcast), a = act(z) on rows r0:r1, columns c0:c1. a may be z itself
    unless keeps_preactivation. Softmax needs whole rows."""
    if r1 <= r0 or c1 <= c0:
        return
    a, z = _part(a, r0, r1, c0, c1), _part(z, r0, r1, c0, c1)
    if c0 != 0 or c1 != b.shape[0]:
        b = b[c0:c1]
    B, n = z.shape
    bias_activation_kernel[_blocks(B * n), THREADS](a, z, b, act)
    if act == SOFTMAX:
        softmax_rows(a, z)


def activation_backward(dz, a, z, act, r0, r1, c0, c1):
    """dz *= act'(z) in place (dL/da in, dL/dz out) on rows r0:r1, columns c0:c1; z is read
    only where keeps_preactivation(act) (else it may be a itself); softmax needs whole rows."""
    if act == IDENTITY or r1 <= r0 or c1 <= c0:
        return
    dz, a, z = (_part(v, r0, r1, c0, c1) for v in (dz, a, z))
    B, n = dz.shape
    if act == SOFTMAX:
        softmax_backward_rows_kernel[_blocks(B), THREADS](dz, a)
    else:
        activation_backward_kernel[_blocks(B * n), THREADS](dz, a, z, act)


def column_sum_chunks(B):
    """(chunks, rows): column_sum's row chunks for a batch of B rows: chunks = ceil(B / rows)
    with rows = COLSUM_ROWS, stretched to ceil(B / MAX_GRID_Y) when that many chunks would
    pass gridDim.y's limit."""
    rows = max(COLSUM_ROWS, -(-B // MAX_GRID_Y))
    return max(-(-B // rows), 1), rows


def column_sum(db, dz, scratch=None):
    """db = column sums of dz (B, n), with a grid sized to the work: ceil(n / THREADS) x
    chunks blocks (column_sum_chunks), each thread summing at most `rows` rows of one column
    into the float64 scratch (at least (chunks, n)), then one thread per column adding the
    chunks in order. One chunk (B <= COLSUM_ROWS), or no scratch: a single launch writing db.
    Deterministic: no atomics, the same order every time."""
    B, n = dz.shape
    if n == 0:
        return
    chunks, rows = column_sum_chunks(B)
    col_blocks = _blocks(n)
    if chunks == 1 or scratch is None:
        column_sum_kernel[(col_blocks, 1), THREADS](_row(db), dz, max(B, 1))
        return
    if scratch.shape[0] < chunks or scratch.shape[1] < n:
        raise ValueError(f"column_sum: scratch {scratch.shape} is smaller than the "
                         f"({chunks}, {n}) partial sums of a ({B}, {n}) batch")
    column_sum_kernel[(col_blocks, chunks), THREADS](scratch, dz, rows)
    column_finish_kernel[col_blocks, THREADS](db, scratch, chunks)


def _row(v):
    """The 1-d device array v as a cached (1, n) view."""
    cache = v.__dict__.setdefault("_fastnn_views", {})
    view = cache.get("row")
    if view is None:
        view = cache["row"] = v.reshape(1, v.shape[0])
    return view


def dense_forward(a, z, x, W, b, act, drop=NO_DROPOUT):
    """a = act(x @ W + b): one GEMM launch with the epilogue fused (plus a row pass for
    softmax), and the dropout `drop` ((seed, step, site, threshold, scale), see gemm) of a.
    z receives the pre-activation when keeps_preactivation(act), else it is unused (and may
    be a itself)."""
    gemm(a, x, W, bias=b, act=act, Z=z, drop=drop)
    if act == SOFTMAX:
        softmax_rows(a, z)


def dense_backward(dx, dW, db, dz, x, W, scratch=None):
    """dW = x.T @ dz, db = column sums of dz (both overwritten), and dx = dz @ W.T when dx has
    rows (pass None or an empty dx for the first layer). scratch: column_sum's."""
    gemm(dW, x, dz, trans_a=True)
    column_sum(db, dz, scratch)
    if dx is not None and dx.shape[0] > 0:
        gemm(dx, dz, W, trans_b=True)
