"""fastnn against PyTorch (CPU) on the same MLP, initial weights, data and Adam, in one process.

    python benchmarks/compare_torch.py [--quick] [--nets small,mnist] [--batches 1,8,32]
                                       [--repeats 3] [--samples-scale 1.0]

For each network and batch size this prints the training throughput (samples/s) of both, the
ratio fastnn / torch, and each side's fraction of the BLAS ceiling: train FLOPs per sample
(forward 2 W, weight gradient 2 W, input gradient 2 W for every layer but the first) over the
float32 GEMM rate measured in this run: the faster of a large square numpy matmul (numpy's
BLAS, all its threads) and the same product on the BLAS fastnn's loop calls (MKL when the
`mkl` package is installed), split by rows over one thread per core as fastnn splits its
GEMMs; best of a few each, measured again after each row (column GF/s), whose fractions use
that row's rate. (Each side's repeats run back to back after a warm-up fit: on the VM this
was measured on, a fit right after the other side's or after an idle moment ran at up to
half speed, so interleaving the two sides' fits measured the machine, not the libraries.)

PyTorch runs in its strongest plain setup: nn.Sequential of Linear/ReLU, F.cross_entropy,
torch.optim.Adam(fused=True) (foreach where fused is unsupported), batches sliced from a copy
of the data shuffled once per epoch, zero_grad(set_to_none=True), the better of
torch.set_num_threads(1) and (2), and torch.set_flush_denormal(True) (fastnn's training loop
flushes denormals too; without it, Adam's moments of parameters whose gradient stays 0 sink
into the denormal range and torch's steps slow down several-fold: --torch-keep-denormals shows
that). fastnn runs through its public API (Trainer.fit, verbose=0),
which includes everything it does per epoch (shuffle, metrics, divergence checks).

Both sides train on the same rows with the same initial weights; each measurement is a fit
over a fixed number of samples (several epochs over the 8192 rows for the larger batch sizes,
as a user trains) after two warm-up fits, a short one (JIT compilation and first-epoch
effects) and one like the timed ones (after an idle moment the first fit on this VM ran at
half speed). Repeats report the median and the spread (min..max). torch is an optional extra
(pip install ".[bench]").
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

NETS = {"small": [64, 128, 64, 10], "mnist": [784, 512, 256, 10]}
BATCHES = [1, 8, 32, 128, 512, 2048]
N_SAMPLES = 8192
LR = 1e-3
# samples per timed fit, by batch size: about 0.3-1 s of work per side on a 2-core machine
TIMED_SAMPLES = {1: 2048, 8: 8192, 32: 16384, 128: 32768, 512: 65536, 2048: 65536}
# the small network is ~25x cheaper per sample: more samples keep its fits (fastnn's are the
# shorter) above ~0.1 s, where a scheduler hiccup no longer moves the median
NET_SAMPLES_SCALE = {"small": 8, "mnist": 1}


def train_flops_per_sample(sizes):
    """Multiply-adds x 2 of one training step per sample: x @ W (forward), x.T @ dz (dW) and
    dz @ W.T (dx, not needed for the first layer). Elementwise work and Adam are not counted."""
    flops = 0
    for layer, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
        flops += (4 if layer == 0 else 6) * fi * fo
    return flops


def measure_sgemm_gflops(n=2048, repeats=5):
    """Float32 GEMM rate of numpy's BLAS (all its threads) on an n x n x n product, best of
    `repeats`."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best / 1e9


_GEMM_ROWS = []


def _gemm_rows_kernel():
    """A nogil kernel computing rows r0:r1 of c = a @ b (n x n) with fastnn's gemm (compiled
    once per process)."""
    if not _GEMM_ROWS:
        from numba import njit

        from fastnn._kernels.blas import gemm

        @njit(nogil=True)
        def rows(a, b, c, r0, r1, n):
            gemm(0, 0, r1 - r0, n, n, a, r0 * n, n, b, 0, n, 0.0, c, r0 * n, n)

        _GEMM_ROWS.append(rows)
    return _GEMM_ROWS[0]


def measure_fastnn_gemm_gflops(n=2048, repeats=5):
    """Float32 GEMM rate of the BLAS that fastnn's training loop calls, used the way the loop
    uses it: every core runs one single-threaded gemm on its share of the rows of an n x n x n
    product. Best of `repeats`."""
    import threading

    from threadpoolctl import threadpool_limits

    from fastnn import _threads

    rows = _gemm_rows_kernel()
    rng = np.random.default_rng(0)
    a = rng.standard_normal(n * n, dtype=np.float32)
    b = rng.standard_normal(n * n, dtype=np.float32)
    c = np.empty(n * n, dtype=np.float32)
    nth = _threads.cores()
    bounds = np.linspace(0, n, nth + 1).astype(np.int64)
    rows(a, b, c, 0, 1, n)  # compile
    best = float("inf")
    with threadpool_limits(1, user_api="blas"):
        for _ in range(repeats + 1):
            workers = [threading.Thread(target=rows, args=(a, b, c, bounds[t], bounds[t + 1], n))
                       for t in range(nth)]
            t0 = time.perf_counter()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def gemm_ceiling():
    """(best float32 GFLOP/s, description) from numpy's BLAS and fastnn's."""
    from fastnn._kernels.blas import BACKEND

    numpy_rate = measure_sgemm_gflops()
    fastnn_rate = measure_fastnn_gemm_gflops()
    text = (f"sgemm 2048^3: numpy {numpy_rate:.1f} GFLOP/s, fastnn's BLAS ({BACKEND}, one "
            f"thread per core) {fastnn_rate:.1f} GFLOP/s")
    return max(numpy_rate, fastnn_rate), text


def make_data(sizes, n, seed=0):
    """MNIST-shaped inputs in [0, 1) and labels from a random ReLU teacher, so the loss can
    go down."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, sizes[0]), dtype=np.float32)
    hidden = 64
    W1 = rng.standard_normal((sizes[0], hidden)) / np.sqrt(sizes[0])
    W2 = rng.standard_normal((hidden, sizes[-1])) / np.sqrt(hidden)
    logits = np.maximum((X - 0.5) @ W1, 0.0) @ W2
    y = np.argmax(logits, axis=1).astype(np.int64)
    return X, y


# ------------------------------------------------------------------------------ fastnn side
def fastnn_setup(sizes, X, y, batch):
    import fastnn

    model = fastnn.MLP(sizes, activation="relu", output="softmax", dtype="float32", seed=0)
    opt = fastnn.optim.Adam(lr=LR)
    trainer = fastnn.Trainer(model, opt, loss="cross_entropy", batch_size=batch, epochs=1,
                             shuffle=True, seed=0, verbose=0)
    return model, trainer


def fastnn_run(trainer, X, y, epochs=1):
    """Train `epochs` epochs over (X, y) in one fit; returns (seconds, last epoch's loss)."""
    trainer.epochs = epochs
    t = time.perf_counter()
    history = trainer.fit(X, y)
    return time.perf_counter() - t, history.history["loss"][-1]


# ------------------------------------------------------------------------------ torch side
def torch_setup(sizes, model_np, batch):
    import torch

    layers = []
    for l in range(len(sizes) - 1):
        lin = torch.nn.Linear(sizes[l], sizes[l + 1])
        with torch.no_grad():  # the same initial weights: fastnn's W is (fan_in, fan_out)
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(model_np.weights[l].T)))
            lin.bias.copy_(torch.from_numpy(model_np.biases[l].copy()))
        layers.append(lin)
        if l < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    try:
        opt = torch.optim.Adam(net.parameters(), lr=LR, fused=True)
        kind = "fused"
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.Adam(net.parameters(), lr=LR, foreach=True)
        kind = "foreach"
    return net, opt, kind


def torch_run(net, opt, X, y, batch, generator, epochs=1):
    """`epochs` epochs, each: shuffle a copy once, slice batches from it. Returns (seconds,
    last epoch's mean loss)."""
    import torch
    import torch.nn.functional as F

    t = time.perf_counter()
    n = X.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator)
        Xs = X[perm]
        ys = y[perm]
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, n, batch):
            xb = Xs[start:start + batch]
            yb = ys[start:start + batch]
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * xb.shape[0]
    seconds = time.perf_counter() - t
    return seconds, float(total) / n


# ------------------------------------------------------------------------------ driver
def summarize(rates):
    med = statistics.median(rates)
    return med, min(rates), max(rates)


def compare(net_name, batches, repeats, scale, gflops, torch_threads, out):
    import torch

    import fastnn

    sizes = NETS[net_name]
    flops = train_flops_per_sample(sizes)
    X, y = make_data(sizes, N_SAMPLES)
    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y)
    print(f"\n{net_name} {'-'.join(map(str, sizes))}: {flops / 1e6:.2f} MFLOP/sample, "
          f"ceiling {gflops * 1e9 / flops:,.0f} samples/s at {gflops:.0f} GFLOP/s "
          f"(each row: at its own GEMM rate, column GF/s)", file=out)
    header = (f"{'batch':>6} {'fastnn/s':>12} {'spread':>17} {'torch/s':>12} {'spread':>17} "
              f"{'thr':>3} {'ratio':>6} {'GF/s':>5} {'fn%ceil':>7} {'pt%ceil':>7} "
              f"{'loss fn/pt':>13}")
    print(header, file=out)
    rows = []
    for batch in batches:
        # a timed fit: `epochs` epochs over the first `n_rows` rows (all when more
        # samples are asked than there are rows), as a user would train
        n_timed = max(batch, int(TIMED_SAMPLES.get(batch, 65536) * scale
                                 * NET_SAMPLES_SCALE[net_name]))
        n_rows = min(n_timed, N_SAMPLES)
        epochs = max(1, n_timed // n_rows)
        n_timed = n_rows * epochs
        Xr, yr = X[:n_rows], y[:n_rows]
        warm = min(N_SAMPLES, max(4 * batch, 256))

        _, trainer = fastnn_setup(sizes, X, y, batch)
        fastnn_run(trainer, X[:warm], y[:warm])  # compile / load cache, first-epoch effects
        fastnn_run(trainer, Xr, yr, epochs)  # an untimed fit like the timed ones: cores awake
        fn_rates, fn_loss = [], None
        for _ in range(repeats):
            seconds, fn_loss = fastnn_run(trainer, Xr, yr, epochs)
            fn_rates.append(n_timed / seconds)

        best = None
        for threads in torch_threads:
            torch.set_num_threads(threads)
            fresh = fastnn.MLP(sizes, activation="relu", output="softmax", dtype="float32",
                               seed=0)
            net, opt, _ = torch_setup(sizes, fresh, batch)
            gen = torch.Generator().manual_seed(0)
            torch_run(net, opt, Xt[:warm], yt[:warm], batch, gen)
            torch_run(net, opt, torch.from_numpy(Xr), torch.from_numpy(yr), batch, gen, epochs)
            pt_rates, pt_loss = [], None
            for _ in range(repeats):
                seconds, pt_loss = torch_run(net, opt, torch.from_numpy(Xr),
                                             torch.from_numpy(yr), batch, gen, epochs)
                pt_rates.append(n_timed / seconds)
            if best is None or statistics.median(pt_rates) > statistics.median(best[0]):
                best = (pt_rates, pt_loss, threads)
        pt_rates, pt_loss, pt_threads = best
        row_gflops = gemm_ceiling()[0]
        ceiling = row_gflops * 1e9 / flops
        fn_med, fn_lo, fn_hi = summarize(fn_rates)
        pt_med, pt_lo, pt_hi = summarize(pt_rates)
        row = (batch, fn_med, fn_lo, fn_hi, pt_med, pt_lo, pt_hi, pt_threads, fn_med / pt_med,
               fn_med / ceiling, pt_med / ceiling, fn_loss, pt_loss)
        rows.append(row)
        print(f"{batch:>6} {fn_med:>12,.0f} {fn_lo:>8,.0f}..{fn_hi:<8,.0f} {pt_med:>12,.0f} "
              f"{pt_lo:>8,.0f}..{pt_hi:<8,.0f} {pt_threads:>3} {fn_med / pt_med:>6.2f} "
              f"{row_gflops:>5.0f} {100 * fn_med / ceiling:>6.1f}% {100 * pt_med / ceiling:>6.1f}% "
              f"{fn_loss:>6.3f}/{pt_loss:<6.3f}", file=out, flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer samples per measurement, 1 repeat, batches 1,32,512")
    parser.add_argument("--nets", default="small,mnist",
                        help=f"comma-separated, from {', '.join(NETS)}")
    parser.add_argument("--batches", default=None,
                        help=f"comma-separated batch sizes (default {BATCHES})")
    parser.add_argument("--repeats", type=int, default=None, help="timed fits per side")
    parser.add_argument("--samples-scale", type=float, default=None,
                        help="multiply the samples per timed fit")
    parser.add_argument("--torch-threads", default="1,2",
                        help="torch.set_num_threads values to try; the best is reported")
    parser.add_argument("--torch-keep-denormals", action="store_true",
                        help="leave torch's default (no flush of denormals to zero)")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        sys.exit("compare_torch needs PyTorch: pip install '.[bench]'")
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    for n in nets:
        if n not in NETS:
            parser.error(f"--nets: unknown network {n!r}; known: {', '.join(NETS)}")
    if args.batches:
        batches = [int(b) for b in args.batches.split(",")]
    else:
        batches = [1, 32, 512] if args.quick else BATCHES
    if any(b < 1 for b in batches):
        parser.error("--batches: batch sizes must be positive")
    repeats = args.repeats or (1 if args.quick else 3)
    scale = args.samples_scale or (0.25 if args.quick else 1.0)
    torch_threads = [int(t) for t in args.torch_threads.split(",")]
    # set_flush_denormal returns whether the CPU supports it, not the new setting
    flushing = torch.set_flush_denormal(not args.torch_keep_denormals) and not args.torch_keep_denormals

    import fastnn
    from fastnn import _threads

    gflops, ceiling_text = gemm_ceiling()
    print(f"fastnn {fastnn.__version__}, torch {torch.__version__}, numpy {np.__version__}, "
          f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"threads: {_threads.describe()}")
    print(f"{ceiling_text}; ceiling from the faster; repeats {repeats}; "
          f"torch threads tried {torch_threads}; torch flushes denormals: {flushing}; "
          f"Adam lr {LR}")
    from fastnn._kernels.blas import BACKEND

    if BACKEND != "mkl":
        print("note: fastnn's GEMMs run on scipy's OpenBLAS here; on x86-64, pip install "
              "\".[mkl]\" puts them on MKL, as PyTorch's are (benchmarks/README.md)")
    for n in nets:
        compare(n, batches, repeats, scale, gflops, torch_threads, sys.stdout)
    print(f"\nagain, {gemm_ceiling()[1]}; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
