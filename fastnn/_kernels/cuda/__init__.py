"""CUDA mirrors of the CPU kernels in fastnn/_kernels (numba.cuda), stumpy's stump/gpu_stump
pairing: module `fastnn._kernels.cuda.X` holds the device version of `fastnn._kernels.X`, with
the same function names and argument order, taking the same bundles (fastnn/_kernels/bundles.py:
Network, Activations, Data, OptimizerState) with device arrays in them
(tests/test_layout.py checks the names and argument lists).

Where the GPU cannot follow the CPU, the difference is this, and only this:
- `team`: on the CPU the threads running a kernel together (bundles.Team: tid, nth, sync,
  partial, scratch; each thread does its share, barriers between phases). A GPU kernel's
  threads come from its launch grid (cuda.grid), so the launchers here compute grid sizes
  instead, and their `team` (cuda/bundles.py Team: bounds, partials, control) is the scratch
  of the gradient-norm reduction; launchers that need none ignore it.
- `stats`: on the CPU running sums per thread ((nth, 4) float64: loss, rows, correct,
  counted); here per-row device buffers (cuda/bundles.py RowStats: loss, correct, a sticky
  divergence flag `status`, and `start`, the batch's first row), read by the host once per
  epoch, so that no step waits for the device.
- `grad_scale`: on the CPU a number (the clipping scale, computed by the loop); here the
  team's `control` device array [scale, skip], computed and checked on the device.
- Shapes: the CPU takes the batch as a flat buffer and blocks of the workspace by offset;
  the launchers here take (rows, cols) device views where a kernel wants them (cached on the
  flat buffers, network.block), and accept a flat batch too.
- Kernels (`@cuda.jit`, named `..._kernel`) and device functions have no CPU twin; nor have
  the launchers in DEVICE_ONLY below. The CPU has functions the GPU does not need (its
  per-thread layer.py, the fused backward + update, the Gram-product norms, the FP mode).
- `keeps_preactivation` is the CPU's rule (dense.py), compiled once more for the device; the
  GPU's Z holds only the layers it keeps (network.z_block), the CPU's every layer.
- The GEMMs of a float32 fit on a real GPU go through cuBLASLt (cublaslt.py, nvmath-python),
  a module with no CPU twin (DEVICE_ONLY_MODULES); dense.gemm is the fallback and the
  simulator's path.

Nothing in fastnn imports this package's kernels unless device="cuda" is asked for, so
importing fastnn never needs a GPU, a driver or the CUDA toolkit. Call `require_gpu()` first:
it turns "no usable GPU" into one clear error instead of a failure deep inside a launch.

Under NUMBA_ENABLE_CUDASIM=1 (set before numba is first imported) every kernel runs in Numba's
CUDA simulator; the tests use that on machines without a GPU.
"""

# modules with no CPU twin: the cuBLASLt GEMMs through nvmath-python (the CPU's GEMMs are
# BLAS calls, blas.py)
DEVICE_ONLY_MODULES = ("cublaslt",)

# launchers with no CPU twin, by module: what the GPU does in its own way
DEVICE_ONLY = {
    "dense": ("gemm", "column_sum", "column_sum_chunks",  # the tiled GEMM (the CPU calls
              #                                             BLAS: blas.gemm), bias sums
              "dense_forward", "dense_backward",  # a whole layer per launch (CPU: layer.py)
              "softmax_rows"),  # the row pass after a GEMM (the CPU's is in its epilogue)
    "dropout": ("site_args",),  # the kernels' scalar arguments of one dropout site
    "network": ("block", "vec",  # cached device views of the flat buffers
                # Z only for the layers that keep z (the CPU's Z has every layer's block)
                "z_offsets", "kept_units", "z_block",
                "clip_and_check",  # norms, clipping and divergence flag on the device
                "check_finite", "flat",  # the end-of-epoch finiteness check on the device
                "forward_for_loss",  # the forward leaving a softmax output to the loss kernel
                "segment_bounds", "norm_blocks"),  # the W_l / b_l segments for the norm reduction
    # the L2 penalty's sum of W^2 as a device reduction into the batch's per-row losses (the
    # CPU adds each thread's part into its running loss sum: steps.weights_sumsq)
    "steps": ("add_penalty",),
}


def require_gpu():
    """Raise RuntimeError unless numba.cuda can launch kernels here (a GPU and driver, or the
    simulator). Returns the numba.cuda module."""
    try:
        from numba import cuda
    except Exception as exc:  # numba built without its CUDA target, broken toolkit, ...
        raise RuntimeError(
            "device='cuda' needs numba's CUDA target, which failed to import "
            f"({type(exc).__name__}: {exc}). Install it with pip install 'fastnn[cuda]' "
            "(numba-cuda), or use device='cpu'.") from exc
    try:
        available = cuda.is_available()
    except Exception:  # noqa: BLE001 a driver that fails to initialise
        available = False
    if not available:
        raise RuntimeError(
            "device='cuda' needs an NVIDIA GPU with a working driver, but numba.cuda finds "
            "none (numba.cuda.is_available() is False; numba.cuda.detect() says why). "
            "Use device='cpu'.")
    return cuda
