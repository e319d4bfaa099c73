"""Compile every CUDA kernel to PTX for real GPU targets (sm_80 and sm_90), without a GPU, in
float32 and float64: the simulator runs kernels as Python and accepts code that NVVM's typing rejects
(numba.cuda's max() of two values, for one), so this is the check that the kernels build.

    python tests/cuda_sim/compile_ptx.py    # exit 0: all built; 77: no CUDA toolkit (NVVM)

Run by tests/test_cuda.py in its own process: it stubs numba's current-device lookup (device
functions ask the driver for the compute capability) with each target's.
"""
import sys
import time
import types

import numba.cuda.dispatcher as _dispatcher
from numba import cuda
from numba import types as T

NO_TOOLKIT = 77
CCS = ((8, 0), (9, 0))  # Ampere (A100), Hopper (H100, H200)
CC = CCS[0]
_dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=CC)


def kernels(dt):
    from fastnn._kernels.cuda import dense, dropout, losses, network, optim, steps
    a1, a2 = dt[::1], dt[:, ::1]
    f8, i8, b1 = T.float64, T.int64, T.boolean
    f1, f2, i1, s1 = T.float64[::1], T.float64[:, ::1], T.int64[::1], T.int32[::1]
    return [
        (dense._gemm_kernel(dense.TILE, dense.TILE_K, dense.WORK),
         (a2, a2, a2, a2, a1, b1, b1, i8, i8, i8, i8, i8, i8, f8)),
        (dense.bias_activation_kernel, (a2, a2, a1, i8)),
        (dense.softmax_rows_kernel, (a2, a2)),
        (dense.activation_backward_kernel, (a2, a2, a2, i8)),
        (dense.softmax_backward_rows_kernel, (a2, a2)),
        (dense.column_sum_kernel, (a2, a2, i8)),
        (dense.column_sum_kernel, (f2, a2, i8)),
        (dense.column_finish_kernel, (a1, f2, i8)),
        (network.check_finite_kernel, (s1, a1)),
        (losses.loss_forward_backward_kernel, (a2, a2, a2, i1, a2, i8, i8, f1, f1, i8, s1, i8)),
        (steps.gather_batch_kernel, (a1, i1, a1, a2, i1, a2, i1, i8, i8, i8, i8, i8, i8, f8)),
        (dropout.dropout_rows_kernel, (a2, a2, i8, i8, i8, i8, f8)),
        (dropout.dropout_backward_kernel, (a2, a2, a2, i8, i8, i8, i8, i8, f8, f8)),
        (network.sumsq_kernel(network.NORM_THREADS), (f2, a1, i1)),
        (network.clip_and_check_kernel, (f1, f1, f2, f8, s1)),
        (optim.sgd_kernel, (a1, a1, a2, f8, f8, f8, f8, b1, b1, f1)),
        (optim.adam_kernel, (a1, a1, a2) + (f8,) * 8 + (b1, f1)),
        (optim.adagrad_kernel, (a1, a1, a2, f8, f8, f8, f1)),
        (optim.adadelta_kernel, (a1, a1, a2) + (f8,) * 5 + (f1,)),
        (optim.rmsprop_kernel, (a1, a1, a2) + (f8,) * 6 + (b1, i8, i8, f1)),
    ]


def main():
    global CC
    def probe(a):
        a[0] = 1.0

    try:
        cuda.compile_ptx(probe, (T.float32[::1],), cc=CC)
    except Exception as exc:  # noqa: BLE001 no NVVM / toolkit on this machine
        print(f"no CUDA toolkit to compile with: {type(exc).__name__}: {exc}")
        return NO_TOOLKIT
    for CC in CCS:
        for dt in (T.float32, T.float64):
            for kernel, sig in kernels(dt):
                t = time.perf_counter()
                ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=CC)
                f64 = ptx.count(".f64") if dt == T.float32 else 0
                print(f"sm_{CC[0]}{CC[1]} {dt} {kernel.py_func.__name__}: "
                      f"{time.perf_counter() - t:.2f} s, {len(ptx.splitlines())} PTX lines"
                      + (f", {f64} f64 ops" if f64 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
