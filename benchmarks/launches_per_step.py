"""Launches per training step of Trainer(device="cuda"): Numba kernels, and cuBLASLt GEMMs
and CuPy copies (the bias gradients) when the fit runs its GEMMs through nvmath-python.

    python benchmarks/launches_per_step.py [--sizes 784,512,256,10] [--batch 512]
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/launches_per_step.py --sizes 4,5,6,3 --batch 3

Counted by wrapping the launch points (Numba's dispatcher [grid, block], the cuBLASLt
backend's execute and copy) over fits of 2 and 4 steps; the difference over 2 steps is one
step's, without the per-fit and per-epoch work. Per GEMM path (FASTNN_CUDA_GEMM auto and
numba). A cuBLASLt execution may itself launch more than one kernel (split-K reductions).
"""
import argparse
import os
import sys

import numpy as np


def count(sizes, batch, gemm):
    from numba import cuda

    import fastnn
    from fastnn._kernels.cuda import cublaslt
    counts = {"numba": 0, "cublaslt": 0, "copy": 0}
    cls = type(cuda.jit(lambda a: None))
    getitem = cls.__getitem__
    execute, copy = cublaslt.NvmathBackend.execute, cublaslt.NvmathBackend.copy

    def counting_getitem(kernel, config):
        counts["numba"] += 1
        return getitem(kernel, config)

    def counting_execute(mm):
        counts["cublaslt"] += 1
        return execute(mm)

    def counting_copy(dst, src):
        counts["copy"] += 1
        return copy(dst, src)

    cls.__getitem__ = counting_getitem
    cublaslt.NvmathBackend.execute = staticmethod(counting_execute)
    cublaslt.NvmathBackend.copy = staticmethod(counting_copy)
    os.environ["FASTNN_CUDA_GEMM"] = gemm
    rng = np.random.default_rng(0)
    totals = {}
    try:
        for n_steps in (2, 4):
            X = rng.standard_normal((batch * n_steps, sizes[0])).astype(np.float32)
            y = rng.integers(0, sizes[-1], batch * n_steps)
            model = fastnn.MLP(sizes, activation="relu", output="softmax", seed=0)
            for key in counts:
                counts[key] = 0
            fastnn.Trainer(model, fastnn.optim.Adam(lr=1e-3), batch_size=batch, epochs=1,
                           shuffle=False, verbose=0, device="cuda").fit(X, y)
            totals[n_steps] = dict(counts)
    finally:
        cls.__getitem__ = getitem
        cublaslt.NvmathBackend.execute = staticmethod(execute)
        cublaslt.NvmathBackend.copy = staticmethod(copy)
        del os.environ["FASTNN_CUDA_GEMM"]
    return {k: (totals[4][k] - totals[2][k]) / 2 for k in counts}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="784,512,256,10")
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    for gemm in ("auto", "numba"):
        c = count(sizes, args.batch, gemm)
        total = sum(c.values())
        print(f"net {'-'.join(map(str, sizes))} batch {args.batch} FASTNN_CUDA_GEMM={gemm}: "
              f"{total:g} launches per step (Numba kernels {c['numba']:g}, cuBLASLt GEMMs "
              f"{c['cublaslt']:g}, CuPy bias-gradient copies {c['copy']:g})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
