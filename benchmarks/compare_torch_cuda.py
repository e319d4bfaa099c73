"""fastnn (device="cuda") against PyTorch (CUDA) on the same MLP, data and Adam, on one GPU.

    python benchmarks/compare_torch_cuda.py [--batches 512,2048,8192] [--samples 16384]
        [--epochs 3] [--sizes 784,4096,4096,10 --sizes 784,512,256,10] [--precision fp32,tf32]
        [--gemm auto,numba]

For each net, precision and batch size this prints the training throughput (samples/s) of
fastnn (per GEMM path: "auto" is cuBLASLt through nvmath-python where it applies, "numba" the
Numba GEMM, FASTNN_CUDA_GEMM=numba) and of torch, and the ratio fastnn / torch. Precision
fp32 is FP32 GEMMs on both sides (torch's default, allow_tf32=False); tf32 lets both use TF32
tensor cores (fastnn.Trainer(allow_tf32=True), torch.backends.cuda.matmul.allow_tf32 = True).
Without a usable GPU (numba.cuda.is_available() False) it says so and exits 0; without torch
(or torch without CUDA) it reports fastnn alone.

fastnn runs through its public API: Trainer(..., device="cuda").fit, whose History records
samples/s per epoch (the data is already on the device then); the first fit per batch size is
a warm-up (kernel compilation, cuBLASLt plans) and the reported rate is the median over the
epochs of a second fit. torch runs in its strong plain setup: nn.Sequential of Linear/ReLU on
the GPU, the data resident on the GPU, a torch.randperm per epoch and index_select per batch,
F.cross_entropy, torch.optim.Adam(fused=True), zero_grad(set_to_none=True), timed between
torch.cuda.synchronize() calls after one warm-up epoch.
"""
import argparse
import itertools
import os
import statistics
import sys
import time

import numpy as np

LR = 1e-3


def make_data(sizes, n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0])).astype(np.float32)
    W = rng.standard_normal((sizes[0], sizes[-1])).astype(np.float32)
    y = np.argmax(X @ W, axis=1).astype(np.int64)  # a learnable labelling
    return X, y


def fastnn_rate(sizes, X, y, batch, epochs, tf32=False, gemm="auto"):
    import fastnn
    old = os.environ.get("FASTNN_CUDA_GEMM")
    os.environ["FASTNN_CUDA_GEMM"] = gemm
    try:
        for warm in (True, False):
            model = fastnn.MLP(sizes, activation="relu", output="softmax", dtype="float32",
                               seed=0)
            trainer = fastnn.Trainer(model, fastnn.optim.Adam(lr=LR), batch_size=batch,
                                     epochs=1 if warm else epochs, shuffle=True, seed=0,
                                     verbose=0, device="cuda", allow_tf32=tf32)
            hist = trainer.fit(X, y)
    finally:
        if old is None:
            del os.environ["FASTNN_CUDA_GEMM"]
        else:
            os.environ["FASTNN_CUDA_GEMM"] = old
    return statistics.median(hist["samples_per_sec"]), hist["loss"][-1]


def torch_rate(sizes, X, y, batch, epochs, tf32=False):
    import torch
    import torch.nn.functional as F
    torch.backends.cuda.matmul.allow_tf32 = tf32
    dev = torch.device("cuda")
    torch.manual_seed(0)
    layers = []
    for i, (fi, fo) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(fi, fo))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=LR, fused=True)
    Xt = torch.from_numpy(X).to(dev)
    yt = torch.from_numpy(y).to(dev)
    n = Xt.shape[0]
    gen = torch.Generator(device=dev)
    gen.manual_seed(0)

    def epoch():
        order = torch.randperm(n, device=dev, generator=gen)
        loss = None
        for pos in range(0, n, batch):
            idx = order[pos:pos + batch]
            xb = Xt.index_select(0, idx)
            yb = yt.index_select(0, idx)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(xb), yb)
            loss.backward()
            opt.step()
        return loss

    epoch()  # warm-up: cuBLAS handles, kernel selection, the caching allocator
    torch.cuda.synchronize()
    rates = []
    for _ in range(epochs):
        t = time.perf_counter()
        loss = epoch()
        torch.cuda.synchronize()
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates), float(loss)


def have_torch_cuda():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def gemm_path(gemm, tf32):
    """What fastnn's fit will use for its GEMMs: "cuBLASLt" or "numba (why)"."""
    import numba
    import numpy as np

    from fastnn._kernels.cuda import cublaslt
    gemms, reason = cublaslt.gemms_or_reason(np.dtype(np.float32),
                                             bool(numba.config.ENABLE_CUDASIM), False, tf32,
                                             choice=gemm)
    return "cuBLASLt" if gemms is not None else f"numba ({reason})"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="512,2048,8192")
    parser.add_argument("--samples", type=int, default=16384, help="training rows")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per side")
    parser.add_argument("--sizes", action="append",
                        help="layer widths, e.g. 784,512,256,10 (repeat for several nets; "
                             "default 784,4096,4096,10 and 784,512,256,10)")
    parser.add_argument("--precision", default="fp32,tf32",
                        help="fp32 and/or tf32 (comma-separated)")
    parser.add_argument("--gemm", default="auto,numba",
                        help="fastnn's GEMM paths: auto (cuBLASLt where it applies) and/or "
                             "numba (comma-separated)")
    args = parser.parse_args(argv)
    args.nets = [[int(v) for v in s.split(",")]
                 for s in (args.sizes or ["784,4096,4096,10", "784,512,256,10"])]
    args.batch_list = [int(b) for b in args.batches.split(",")]
    args.precisions = args.precision.split(",")
    args.gemms = args.gemm.split(",")
    for p in args.precisions:
        if p not in ("fp32", "tf32"):
            parser.error(f"--precision: fp32 or tf32, got {p!r}")
    for g in args.gemms:
        if g not in ("auto", "numba"):
            parser.error(f"--gemm: auto or numba, got {g!r}")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        from numba import cuda
        gpu = cuda.is_available()
    except Exception:  # noqa: BLE001 numba without its CUDA target
        gpu = False
    if not gpu:
        print("no usable CUDA GPU (numba.cuda.is_available() is False): nothing to compare")
        return 0
    with_torch = have_torch_cuda()
    from fastnn._kernels.cuda import dense
    try:
        name = cuda.get_current_device().name
        name = name.decode() if isinstance(name, bytes) else name
    except Exception:  # noqa: BLE001 the simulator has no device
        name = "?"
    print(f"GPU: {name}  {args.samples} samples  Adam(lr={LR})  float32  Numba GEMM tile "
          f"{dense.TILE}x{dense.TILE}x{dense.TILE_K}, {dense.WORK}x{dense.WORK}/thread"
          + ("" if with_torch else "  (torch with CUDA not found: fastnn only)"))
    for gemm in args.gemms:
        for p in args.precisions:
            print(f"fastnn gemm={gemm} {p}: {gemm_path(gemm, p == 'tf32')}")
    print(f"{'net':>18} {'prec':>5} {'batch':>6} {'gemm':>6} {'fastnn/s':>12} {'torch/s':>12} "
          f"{'ratio':>7}  final losses")
    for sizes in args.nets:
        net = "-".join(map(str, sizes))
        X, y = make_data(sizes, args.samples)
        for p in args.precisions:
            tf32 = p == "tf32"
            for batch in args.batch_list:
                t_rate = t_loss = None
                if with_torch:
                    t_rate, t_loss = torch_rate(sizes, X, y, batch, args.epochs, tf32)
                for gemm in args.gemms:
                    f_rate, f_loss = fastnn_rate(sizes, X, y, batch, args.epochs, tf32, gemm)
                    if t_rate is None:
                        print(f"{net:>18} {p:>5} {batch:>6} {gemm:>6} {f_rate:>12,.0f} "
                              f"{'-':>12} {'-':>7}  {f_loss:.4f}", flush=True)
                    else:
                        print(f"{net:>18} {p:>5} {batch:>6} {gemm:>6} {f_rate:>12,.0f} "
                              f"{t_rate:>12,.0f} {f_rate / t_rate:>7.2f}  "
                              f"{f_loss:.4f} / {t_loss:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
