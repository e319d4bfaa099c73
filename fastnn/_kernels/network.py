"""Whole-network kernels and the compiled training loop.

The model is data: `sizes` (L+1,) layer widths, `acts` (L,) activation codes (the last is the
output activation), `w_off`/`b_off` (L,) offsets of W_l and b_l in the flat `params`. Activations
live in flat workspaces: layer l's (B, sizes[l+1]) block starts at B * unit_off[l], where
unit_off = [0, cumsum(sizes[1:])]; `A` holds act(z), `Z` the pre-activations that
keeps_preactivation() asks for, `D` the deltas dL/dz. All are sized for the largest batch, and
a smaller (last) batch uses their leading part, so nothing is allocated per step.
"""
import math
import platform

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .dense import activation_backward, dense_backward, dense_forward
from .losses import loss_forward_backward
from .optim import optimizer_update

# Denormals: Adam's moments of a parameter whose gradient stays 0 (a dead ReLU unit, an input
# pixel that is always 0) decay into the float32 denormal range and stick there (m - 0.1 m
# rounds back to m), and every later update of them costs a ~100-cycle microcode assist: the
# small net at batch 1 ran 10x slower. train_steps therefore flushes denormals to zero (MXCSR
# FTZ|DAZ, as XLA and TensorFlow do on CPU) and restores the caller's setting on return.
# Values below 1.2e-38 become 0; nothing else changes.
_X86 = platform.machine().lower() in ("x86_64", "amd64", "x86", "i386", "i686")
FLUSH_DENORMALS = 0x8040  # MXCSR flush-to-zero (bit 15) | denormals-are-zero (bit 6)


@intrinsic
def _get_fp_mode(typingctx):
    """The x86 MXCSR register (0 elsewhere)."""
    def codegen(context, builder, signature, args):
        if not _X86:
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
        if _X86:
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
def network_forward(A, Z, x, params, sizes, acts, w_off, b_off, unit_off):
    """Forward pass of the whole network on x (B, sizes[0]); the output lands in A's last block."""
    B = x.shape[0]
    inp = x
    for l in range(acts.shape[0]):
        fi = sizes[l]
        fo = sizes[l + 1]
        W = _block(params, w_off[l], fi, fo)
        b = params[b_off[l]:b_off[l] + fo]
        a = _block(A, B * unit_off[l], B, fo)
        z = _block(Z, B * unit_off[l], B, fo)
        dense_forward(a, z, inp, W, b, acts[l])
        inp = a


@njit(cache=True)
def network_backward(grads, D, A, Z, x, params, sizes, acts, w_off, b_off, unit_off):
    """Backpropagation in O(L) GEMMs: D's last block holds dL/dz_out on entry (from the loss);
    each layer turns its delta into dW, db and the previous layer's delta. grads is overwritten."""
    B = x.shape[0]
    L = acts.shape[0]
    empty = D[:0].reshape(0, sizes[0])
    for l in range(L - 1, -1, -1):
        fi = sizes[l]
        fo = sizes[l + 1]
        W = _block(params, w_off[l], fi, fo)
        dW = _block(grads, w_off[l], fi, fo)
        db = grads[b_off[l]:b_off[l] + fo]
        dz = _block(D, B * unit_off[l], B, fo)
        if l == 0:
            dense_backward(empty, dW, db, dz, x, W)
        else:
            off = B * unit_off[l - 1]
            inp = _block(A, off, B, fi)
            dprev = _block(D, off, B, fi)
            dense_backward(dprev, dW, db, dz, inp, W)
            activation_backward(dprev, inp, _block(Z, off, B, fi), acts[l - 1])


@njit(cache=True)
def forward_loss_backward(grads, D, A, Z, x, y_index, y_float, params, sizes, acts, w_off,
                          b_off, unit_off, loss, stats):
    """One training step's gradient: forward, fused loss + output delta, backward.
    Returns the batch's summed per-sample loss (stats accumulate as in loss_forward_backward)."""
    B = x.shape[0]
    L = acts.shape[0]
    network_forward(A, Z, x, params, sizes, acts, w_off, b_off, unit_off)
    k = sizes[L]
    off = B * unit_off[L - 1]
    total = loss_forward_backward(_block(D, off, B, k), _block(Z, off, B, k),
                                  _block(A, off, B, k), y_index, y_float, loss, acts[L - 1],
                                  stats)
    network_backward(grads, D, A, Z, x, params, sizes, acts, w_off, b_off, unit_off)
    return total


@njit(cache=True)
def gather_batch(xb, yb_index, yb_float, X, y_index, y_float, order, start, B):
    """Copy the rows order[start:start+B] of X and of the targets into the batch buffers."""
    n_in = X.shape[1]
    for i in range(B):
        r = order[start + i]
        for j in range(n_in):
            xb[i * n_in + j] = X[r, j]
    if y_index.shape[0] > 0:
        for i in range(B):
            yb_index[i] = y_index[order[start + i]]
    else:
        k = y_float.shape[1]
        for i in range(B):
            r = order[start + i]
            for j in range(k):
                yb_float[i * k + j] = y_float[r, j]


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
def layer_grad_norms(out, grads, x, D, A, sizes, w_off, b_off, unit_off):
    """out[l] += ||dW_l|| for each layer; returns the squared global norm (all W and b).

    x (B, n_in), D and A are the step's input, deltas and activations. For a few rows,
    dW_l = a^T dz is a sum of B outer products and
    ||dW_l||^2 = sum_{r,s} (a_r . a_s)(dz_r . dz_s): O(B^2 (fan_in + fan_out)) work instead of
    a second read of the whole gradient (2 MB for 784-512-256-10). In float64 its rounding is
    far below float32's. (A float32 overflow inside dW that this misses surfaces as a
    non-finite loss one step later.)"""
    B = x.shape[0]
    total = 0.0
    for l in range(w_off.shape[0]):
        fi = sizes[l]
        fo = sizes[l + 1]
        db = grads[b_off[l]:b_off[l] + fo]
        sq_b = _dot64(db, db)
        if B <= GRAM_NORM_MAX_ROWS:
            inp = x if l == 0 else _block(A, B * unit_off[l - 1], B, fi)
            dz = _block(D, B * unit_off[l], B, fo)
            sq_w = 0.0
            for r in range(B):
                sq_w += _dot64(inp[r], inp[r]) * _dot64(dz[r], dz[r])
                for q in range(r):
                    sq_w += 2.0 * _dot64(inp[r], inp[q]) * _dot64(dz[r], dz[q])
            if sq_w < 0.0:  # noqa: PLR1730 (cancellation can leave a tiny negative; NaN passes)
                sq_w = 0.0
        else:
            dW = grads[w_off[l]:w_off[l] + fi * fo]
            sq_w = _dot64(dW, dW)
        out[l] += math.sqrt(sq_w)
        total += sq_w + sq_b
    return total


# status codes returned by train_steps
RAN, DIVERGED = 0, 1


@njit(cache=True)
def train_steps(X, y_index, y_float, order, start, n_steps, batch_size,
                params, grads, sizes, acts, w_off, b_off, unit_off, loss,
                opt_code, opt_hyper, opt_state, opt_step, clip_norm,
                xb, yb_index, yb_float, A, Z, D, stats, grad_norms):
    """Run up to n_steps minibatch steps over rows order[start:], with no Python in between.

    Step s uses rows order[start + s*batch_size : ... + batch_size] (the last batch may be
    short). Each step: gather, forward, loss, backward, optional norm clipping, fused update.
    opt_step[0] is the optimizer's step counter (incremented per applied step). stats and
    grad_norms accumulate (see loss_forward_backward / layer_grad_norms).
    Returns (status, steps applied). On a non-finite loss or gradient the step is not applied
    and status is DIVERGED.
    """
    caller_mode = _get_fp_mode()
    _set_fp_mode(caller_mode | FLUSH_DENORMALS)
    status, done = _train_steps(X, y_index, y_float, order, start, n_steps, batch_size,
                                params, grads, sizes, acts, w_off, b_off, unit_off, loss,
                                opt_code, opt_hyper, opt_state, opt_step, clip_norm,
                                xb, yb_index, yb_float, A, Z, D, stats, grad_norms)
    _set_fp_mode(caller_mode)
    return status, done


@njit(cache=True)
def _train_steps(X, y_index, y_float, order, start, n_steps, batch_size,
                 params, grads, sizes, acts, w_off, b_off, unit_off, loss,
                 opt_code, opt_hyper, opt_state, opt_step, clip_norm,
                 xb, yb_index, yb_float, A, Z, D, stats, grad_norms):
    N = order.shape[0]
    n_in = X.shape[1]
    k = sizes[sizes.shape[0] - 1]
    done = 0
    for s in range(n_steps):
        pos = start + s * batch_size
        if pos >= N:
            break
        B = min(batch_size, N - pos)
        gather_batch(xb, yb_index, yb_float, X, y_index, y_float, order, pos, B)
        x = _block(xb, 0, B, n_in)
        yi = yb_index[:B] if y_index.shape[0] > 0 else yb_index[:0]
        yf = _block(yb_float, 0, B if y_index.shape[0] == 0 else 0, k)
        total = forward_loss_backward(grads, D, A, Z, x, yi, yf, params, sizes, acts, w_off,
                                      b_off, unit_off, loss, stats)
        sumsq = layer_grad_norms(grad_norms, grads, x, D, A, sizes, w_off, b_off, unit_off)
        if not (math.isfinite(total) and math.isfinite(sumsq)):
            return DIVERGED, done
        scale = 1.0
        if clip_norm > 0.0:
            norm = math.sqrt(sumsq)
            # torch.nn.utils.clip_grad_norm_: scale by min(1, max_norm / (norm + 1e-6))
            scale = min(1.0, clip_norm / (norm + 1e-6))
        opt_step[0] += 1
        optimizer_update(opt_code, params, grads, opt_state, opt_hyper, opt_step[0], scale)
        done += 1
    return RAN, done


@njit(cache=True)
def evaluate_batches(X, y_index, y_float, batch_size, params, sizes, acts, w_off, b_off,
                     unit_off, loss, xb, A, Z, D, stats, out):
    """Loss/accuracy over (X, y) in batches without training (stats accumulate), and, when out
    has rows, the network outputs written into out (N, k). Pass targets with no rows to only
    predict."""
    N = X.shape[0]
    n_in = X.shape[1]
    L = acts.shape[0]
    k = sizes[L]
    has_targets = y_index.shape[0] > 0 or y_float.shape[0] > 0
    for pos in range(0, N, batch_size):
        B = min(batch_size, N - pos)
        for i in range(B):
            for j in range(n_in):
                xb[i * n_in + j] = X[pos + i, j]
        x = _block(xb, 0, B, n_in)
        network_forward(A, Z, x, params, sizes, acts, w_off, b_off, unit_off)
        off = B * unit_off[L - 1]
        a = _block(A, off, B, k)
        if out.shape[0] > 0:
            for i in range(B):
                for j in range(k):
                    out[pos + i, j] = a[i, j]
        if has_targets:
            yi = y_index[pos:pos + B] if y_index.shape[0] > 0 else y_index[:0]
            yf = y_float[pos:pos + B] if y_float.shape[0] > 0 else y_float[:0]
            loss_forward_backward(_block(D, off, B, k), _block(Z, off, B, k), a, yi, yf, loss,
                                  acts[L - 1], stats)
