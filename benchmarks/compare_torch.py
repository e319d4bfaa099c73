"""fastnn against PyTorch and JAX (CPU) on the same MLP, initial weights, data and Adam, in one
process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_torch.py
        [--quick] [--nets small,mnist] [--batches 1,8,32] [--repeats 3] [--samples-scale 1.0]
        [--peers torch,jax]

For each network and batch size this prints the training throughput (samples/s) of each, the
ratios fastnn / torch and fastnn / JAX, and each side's fraction of the BLAS ceiling: train
FLOPs per sample (forward 2 W, weight gradient 2 W, input gradient 2 W for every layer but the
first) over the float32 GEMM rate measured in this run: the faster of a large square numpy
matmul (numpy's BLAS, all its threads) and the same product on the BLAS fastnn's loop calls
(MKL when the `mkl` package is installed on an Intel CPU), split by rows over one thread per
core as fastnn splits its GEMMs; best of a few each, measured again after each row (column
GF/s), whose fractions use that row's rate. (Each side's repeats run back to back after a
warm-up fit: on the VM this was measured on, a fit right after the other side's or after an idle
moment ran at up to half speed, so interleaving the two sides' fits measured the machine, not
the libraries.)

PyTorch runs in its strongest plain setup: nn.Sequential of Linear/ReLU, F.cross_entropy,
torch.optim.Adam(fused=True) (foreach where fused is unsupported), batches sliced from a copy
of the data shuffled once per epoch, zero_grad(set_to_none=True), the better of
torch.set_num_threads(1) and (2), and torch.set_flush_denormal(True) (fastnn's training loop
flushes denormals too; without it, Adam's moments of parameters whose gradient stays 0 sink
into the denormal range and torch's steps slow down several-fold: --torch-keep-denormals shows
that). fastnn runs through its public API (Trainer.fit, verbose=0),
which includes everything it does per epoch (shuffle, metrics, divergence checks).

JAX runs the way an expert writes it: the whole epoch is one XLA program (jax.jit of a
jax.lax.scan over the minibatches of a copy of the data shuffled once per epoch by
jax.random.permutation, optax.adam, float32, parameters and optimizer state donated), the
data on the device before timing, compilation excluded (each row's shapes are compiled by the
warm-up fits); XLA's CPU runtime uses its own thread pool over all cores. Without jax installed
(pip install ".[jax]") the column is left out.

The header lists every BLAS library in the process with the kernel it picked (threadpoolctl:
internal_api, version, architecture). OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which some
machines set for old OpenBLAS builds, make a current OpenBLAS pick slower kernels: run with
them unset (the command above); the script says so when they are set.

Both sides train on the same rows with the same initial weights; each measurement is a fit
over a fixed number of samples (several epochs over the 8192 rows for the larger batch sizes,
as a user trains) after two warm-up fits, a short one (JIT compilation and first-epoch
effects) and one like the timed ones (after an idle moment the first fit on this VM ran at
half speed). Repeats report the median and the spread (min..max). torch is an optional extra
(pip install ".[bench]"), jax too (".[jax]").
"""
import argparse
import os
import statistics
import sys
import time
from functools import partial

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


# ------------------------------------------------------------------------------ JAX side
def jax_setup(sizes, model_np, batch, n_rows):
    """(state, run) for JAX: run(state, X, y, epochs) trains `epochs` epochs, each one XLA
    program (jit of a lax.scan over the minibatches of a shuffled copy), and returns (state,
    seconds, last epoch's mean loss). The last partial minibatch, if any, is dropped (every
    batch size here divides the rows)."""
    import jax
    import jax.numpy as jnp
    import optax

    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in zip(model_np.weights,
                                                                 model_np.biases)]
    opt = optax.adam(LR)
    n_batches = max(1, n_rows // batch)

    def loss_fn(params, x, y):
        for W, b in params[:-1]:
            x = jax.nn.relu(x @ W + b)
        W, b = params[-1]
        logits = x @ W + b
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def step(carry, xy):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, *xy)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    @partial(jax.jit, donate_argnums=(0, 1))
    def epoch(params, opt_state, key, X, y):
        key, sub = jax.random.split(key)
        perm = jax.random.permutation(sub, X.shape[0])[:n_batches * batch]
        xs = X[perm].reshape(n_batches, batch, X.shape[1])
        ys = y[perm].reshape(n_batches, batch)
        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (xs, ys))
        return params, opt_state, key, losses.mean()

    def run(state, X, y, epochs=1):
        params, opt_state, key = state
        t = time.perf_counter()
        loss = None
        for _ in range(epochs):
            params, opt_state, key, loss = epoch(params, opt_state, key, X, y)
        loss = float(loss)  # waits for the device
        jax.block_until_ready(params)
        return (params, opt_state, key), time.perf_counter() - t, loss

    return (params, opt.init(params), jax.random.PRNGKey(0)), run


def jax_row(sizes, X, y, Xr, yr, batch, epochs, repeats, n_timed):
    """JAX's rates (samples/s per repeat) and last loss for one row."""
    import jax.numpy as jnp

    import fastnn

    fresh = fastnn.MLP(sizes, activation="relu", output="softmax", dtype="float32", seed=0)
    Xj, yj = jnp.asarray(Xr), jnp.asarray(yr.astype(np.int32))
    state, run = jax_setup(sizes, fresh, batch, Xr.shape[0])
    state, _, _ = run(state, Xj, yj)  # compiles this row's shapes
    state, _, _ = run(state, Xj, yj, epochs)  # an untimed fit like the timed ones
    rates, loss = [], None
    for _ in range(repeats):
        state, seconds, loss = run(state, Xj, yj, epochs)
        rates.append(n_timed / seconds)
    return rates, loss


def blas_report():
    """One line per BLAS/OpenMP library loaded in this process (threadpoolctl), with the kernel
    it picked for this CPU, and the OpenBLAS variables that change that pick."""
    from threadpoolctl import threadpool_info

    lines = [f"  {i.get('internal_api')} {i.get('version') or ''} "
             f"({i.get('architecture') or '-'}) x{i.get('num_threads')}: "
             f"{os.path.basename(i.get('filepath', ''))}" for i in threadpool_info()]
    set_vars = [v for v in OPENBLAS_OVERRIDES if os.environ.get(v)]
    if set_vars:
        lines.append("  WARNING: " + ", ".join(f"{v}={os.environ[v]}" for v in set_vars)
                     + " set: OpenBLAS runs other kernels than it would pick; rerun with "
                     + " ".join(f"-u {v}" for v in set_vars) + " in `env` (benchmarks/README.md)")
    return "\n".join(lines)


OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


# ------------------------------------------------------------------------------ driver
def summarize(rates):
    med = statistics.median(rates)
    return med, min(rates), max(rates)


def compare(net_name, batches, repeats, scale, gflops, torch_threads, out, use_jax=False):
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
              f"{'thr':>3} {'ratio':>6} ")
    if use_jax:
        header += f"{'jax/s':>12} {'spread':>17} {'fn/jax':>6} "
    header += f"{'GF/s':>5} {'fn%ceil':>7} {'pt%ceil':>7} "
    header += f"{'jx%ceil':>7} {'loss fn/pt/jx':>20}" if use_jax else f"{'loss fn/pt':>13}"
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
        jx_rates, jx_loss = (jax_row(sizes, X, y, Xr, yr, batch, epochs, repeats, n_timed)
                             if use_jax else ([float("nan")], float("nan")))
        row_gflops = gemm_ceiling()[0]
        ceiling = row_gflops * 1e9 / flops
        fn_med, fn_lo, fn_hi = summarize(fn_rates)
        pt_med, pt_lo, pt_hi = summarize(pt_rates)
        jx_med, jx_lo, jx_hi = summarize(jx_rates)
        row = (batch, fn_med, fn_lo, fn_hi, pt_med, pt_lo, pt_hi, pt_threads, fn_med / pt_med,
               fn_med / ceiling, pt_med / ceiling, fn_loss, pt_loss, jx_med, jx_lo, jx_hi,
               fn_med / jx_med, jx_med / ceiling, jx_loss)
        rows.append(row)
        line = (f"{batch:>6} {fn_med:>12,.0f} {fn_lo:>8,.0f}..{fn_hi:<8,.0f} {pt_med:>12,.0f} "
                f"{pt_lo:>8,.0f}..{pt_hi:<8,.0f} {pt_threads:>3} {fn_med / pt_med:>6.2f} ")
        if use_jax:
            line += f"{jx_med:>12,.0f} {jx_lo:>8,.0f}..{jx_hi:<8,.0f} {fn_med / jx_med:>6.2f} "
        line += (f"{row_gflops:>5.0f} {100 * fn_med / ceiling:>6.1f}% "
                 f"{100 * pt_med / ceiling:>6.1f}% ")
        if use_jax:
            line += (f"{100 * jx_med / ceiling:>6.1f}% "
                     f"{fn_loss:>6.3f}/{pt_loss:.3f}/{jx_loss:<6.3f}")
        else:
            line += f"{fn_loss:>6.3f}/{pt_loss:<6.3f}"
        print(line, file=out, flush=True)
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
    parser.add_argument("--peers", default="torch,jax",
                        help="libraries to compare with: torch (always), jax (when installed)")
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

    peers = {p.strip() for p in args.peers.split(",") if p.strip()}
    if peers - {"torch", "jax"}:
        parser.error(f"--peers: unknown {sorted(peers - {'torch', 'jax'})}; known: torch, jax")
    use_jax = "jax" in peers
    if use_jax:
        try:
            import jax
            import optax
        except ImportError:
            print("note: jax/optax not installed (pip install '.[jax]'): no JAX column")
            use_jax = False

    import fastnn
    from fastnn import _threads

    gflops, ceiling_text = gemm_ceiling()
    print(f"fastnn {fastnn.__version__}, torch {torch.__version__}, numpy {np.__version__}, "
          f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}", flush=True)
    if use_jax:
        print(f"jax {jax.__version__}, optax {optax.__version__}, devices {jax.devices()}")
    print(f"threads: {_threads.describe()}")
    print(f"BLAS libraries (threadpoolctl):\n{blas_report()}")
    print(f"{ceiling_text}; ceiling from the faster; repeats {repeats}; "
          f"torch threads tried {torch_threads}; torch flushes denormals: {flushing}; "
          f"Adam lr {LR}")
    from fastnn._kernels import blas

    if blas.BACKEND != "mkl" and blas.CPU_VENDOR == "intel":
        print("note: fastnn's GEMMs run on scipy's OpenBLAS here; on Intel CPUs, pip install "
              "\".[mkl]\" puts them on MKL, as PyTorch's are (benchmarks/README.md)")
    for n in nets:
        compare(n, batches, repeats, scale, gflops, torch_threads, sys.stdout, use_jax)
    print(f"\nagain, {gemm_ceiling()[1]}; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
