"""Thread settings around fit, evaluate and predict.

Why this exists: the numpy and scipy wheels each ship their own OpenBLAS, each with its own
thread pool, and fastnn's kernels call scipy's (or MKL, sequential, when it is installed and
the CPU is an Intel one: _kernels/blas.py). An OpenBLAS worker keeps spinning for a while
after each call, so two pools (or one pool and another process) busy on the same cores slow
GEMMs severalfold (a 2-thread pool with another process on the second core made 64-128-64-10
steps 7.6x slower here). fastnn therefore decides:

- the training loop itself, and evaluate/predict, run on `train_threads(...)` threads
  (`run_on_threads`): all cores when a step has enough work (fastnn/_kernels/sync.py: each
  thread does its share of every phase and calls BLAS single-threaded), else one;
- scipy's BLAS pool is then held at 1 thread; with one thread it gets `blas_threads(...)`:
  all allowed cores when the step's largest GEMM is big enough to gain from them, else 1
  (OpenBLAS splits mid-sized GEMMs too, and the hand-off costs more than it saves there:
  64-128-64-10 at batch 128 ran 18% slower on 2 threads, at batch 512 13% faster);
- numpy's BLAS pool (unused by fastnn's kernels) is held at 1 thread during the call, so that
  a pool left spinning by the caller's own numpy work cannot compete;
- numba's own thread pool is left alone: fastnn's kernels use no prange, so it never starts.

Limits only ever go down: an outer `threadpoolctl.threadpool_limits(...)` or
OPENBLAS_NUM_THREADS that allows fewer threads wins, for the training loop's threads too.
FASTNN_BLAS_THREADS=n fixes the BLAS count, FASTNN_THREADS=n the training loop's.
Everything is restored when the call returns. Measurements behind the thresholds:
benchmarks/README.md.
"""
import os
import threading
from contextlib import contextmanager

import numpy as np

from ._kernels import blas
from ._kernels.bundles import Data, Team
from ._kernels.static import Static
from ._kernels.steps import evaluate_batches
from ._kernels.sync import SYNC_ABORT, new_sync

# BLAS runs on all cores when the step's largest GEMM has at least this many multiply-adds,
# or its weight matrix at least this many elements; else on one thread.
PARALLEL_GEMM_MIN_MACS = 1 << 22
PARALLEL_GEMM_MIN_WEIGHTS = 1 << 18

_controllers = None  # (scipy's BLAS pools, numpy's other BLAS pools), found once


def _pools():
    global _controllers
    if _controllers is None:
        # the BLAS numba calls; importing it first puts its library in the process
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import ThreadpoolController

        blas = ThreadpoolController().select(user_api="blas")
        libs = blas.lib_controllers
        kernel = [c.filepath for c in libs if "scipy" in os.path.basename(
            os.path.dirname(c.filepath))]
        if not kernel:  # one shared BLAS (conda, system packages): that is the one
            kernel = [c.filepath for c in libs]
        other = [c.filepath for c in libs if c.filepath not in kernel]
        _controllers = (blas.select(filepath=kernel), blas.select(filepath=other))
    return _controllers


def cores():
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _env_count(name):
    """The positive integer in environment variable `name`, or None when it is unset/empty."""
    fixed = os.environ.get(name, "").strip()
    if not fixed:
        return None
    if not (fixed.isascii() and fixed.isdigit()) or int(fixed) < 1:
        raise ValueError(f"{name} must be a positive integer, got {fixed!r}")
    return int(fixed)


def blas_threads(layer_sizes, batch):
    """BLAS threads for steps on `batch` rows of a network with these layer widths."""
    fixed = _env_count("FASTNN_BLAS_THREADS")
    if fixed is not None:
        return fixed
    weights = max(fi * fo for fi, fo in zip(layer_sizes[:-1], layer_sizes[1:]))
    big = batch * weights >= PARALLEL_GEMM_MIN_MACS or weights >= PARALLEL_GEMM_MIN_WEIGHTS
    return cores() if big else 1


# The training loop runs on all cores (fastnn/_kernels/sync.py) when a step has at least this
# many weight multiply-adds (batch x weights), or the network this many weights (streaming
# weights and optimizer state is memory-bound: two cores stream faster even at batch 1);
# below, one thread: barriers and split GEMMs cost more than they save (64-128-64-10, 17k
# weights: 2 threads 45% slower at batch 1, 36% at 32; 31% faster at 128).
PARALLEL_STEP_MIN_MACS = 1 << 20
PARALLEL_STEP_MIN_WEIGHTS = 1 << 17
MACS_PER_THREAD = 1 << 18


def train_threads(layer_sizes, batch):
    """Threads for fastnn's training loop on `batch` rows of a network with these widths:
    all cores for enough work, never more than the BLAS pool currently allows (a caller's
    threadpool_limits(1) or OPENBLAS_NUM_THREADS=1 means one). FASTNN_THREADS=n fixes it."""
    fixed = _env_count("FASTNN_THREADS")
    if fixed is not None:
        return fixed
    weights = sum(fi * fo for fi, fo in zip(layer_sizes[:-1], layer_sizes[1:]))
    big = batch * weights >= PARALLEL_STEP_MIN_MACS or weights >= PARALLEL_STEP_MIN_WEIGHTS
    if not big:
        return 1
    # on many cores, no more threads than shares of >= MACS_PER_THREAD multiply-adds: every
    # step has ~2L+4 barriers that all threads must reach (only 2 cores were measured)
    useful = max(2, batch * weights // MACS_PER_THREAD)
    return max(1, min(cores(), _current(_pools()[0]), useful))


def _current(select):
    counts = [c.num_threads for c in select.lib_controllers]
    return min(counts) if counts else 1


# The BLAS pools are process-wide: calls that overlap (predict from several threads, a fit
# beside a predict) share one setting, made by the first and restored by the last. Without
# the count, one call's restore could leave the pools at another call's limits for good.
_limits_lock = threading.Lock()
_limits_users = 0
_limits_restore = None


def limit(layer_sizes, batch, loop_threads=1):
    """Set the pools for steps on `batch` rows: kernel BLAS at blas_threads(...) (never above
    its current setting), or at 1 when fastnn's own loop runs on loop_threads > 1 threads
    (each calls BLAS single-threaded); numpy's BLAS at 1. Returns a function that restores
    them. While another fastnn call holds the pools (another thread, or a fit around this
    call) they stay as that call set them, and are restored when the last call ends."""
    global _limits_users, _limits_restore
    with _limits_lock:
        if _limits_users == 0:
            kernel, other = _pools()
            wanted = 1 if loop_threads > 1 else blas_threads(layer_sizes, batch)
            n = min(wanted, _current(kernel))
            kernel_limit = kernel.limit(limits=n)
            other_limit = other.limit(limits=1)

            def restore_pools():
                other_limit.restore_original_limits()
                kernel_limit.restore_original_limits()
            _limits_restore = restore_pools
        _limits_users += 1
    released = []

    def restore():
        global _limits_users, _limits_restore
        with _limits_lock:
            if released:  # a second call of the same restore changes nothing
                return
            released.append(True)
            _limits_users -= 1
            if _limits_users == 0:
                _limits_restore, undo = None, _limits_restore
                undo()
    return restore


@contextmanager
def compute_threads(layer_sizes, batch, loop_threads=1):
    """limit(...) as a context manager (evaluate, predict)."""
    restore = limit(layer_sizes, batch, loop_threads)
    try:
        yield
    finally:
        restore()


def run_on_threads(kernel, n_threads, args, partial, scratch):
    """kernel(*args, team) run by n_threads threads together, the calling thread as thread 0,
    team = Team(tid, n_threads, sync, partial, scratch) (fastnn/_kernels/bundles.py:
    train_steps, evaluate_batches);
    returns thread 0's result. An exception on any thread raises the shared abort flag, so the
    others leave their barriers, and is re-raised here once all have stopped."""
    sync = new_sync()
    if n_threads == 1:
        return kernel(*args, Team(0, 1, sync, partial, scratch))
    results = [None] * n_threads
    errors = []

    def work(tid):
        try:
            results[tid] = kernel(*args, Team(tid, n_threads, sync, partial, scratch))
        except BaseException as e:  # noqa: BLE001 - re-raised on the calling thread
            errors.append(e)
            sync[SYNC_ABORT] = 1

    workers = []
    try:
        for tid in range(1, n_threads):
            workers.append(threading.Thread(target=work, args=(tid,), name=f"fastnn-{tid}",
                                            daemon=True))
            workers[-1].start()
        results[0] = kernel(*args, Team(0, n_threads, sync, partial, scratch))
    except BaseException:
        sync[SYNC_ABORT] = 1  # workers already started leave their barriers
        raise
    finally:
        for w in workers:
            if w.ident is not None:  # started
                w.join()
    if errors:
        raise errors[0]
    return results[0]


def evaluate_on_threads(network, params, X, y_index, y_float, B, loss_code, out, ws, n_threads,
                        scratch):
    """evaluate_batches over X in batches of B on n_threads threads, with workspace ws
    (capacity >= B) and the k-split scratch; the caller has set the BLAS pools (limit). The
    one runner of predict, evaluate and fit's validation. Returns the summed stats (4,).
    The loss code is a compile-time choice (static.Static): only that loss is compiled."""
    stats = np.zeros((n_threads, 4))
    run_on_threads(evaluate_batches, n_threads,
                   (Data(X, y_index, y_float), B, params, network, Static(loss_code), ws.buffers,
                    stats, out), _NO_PARTIAL, scratch)
    return stats.sum(axis=0)


_NO_PARTIAL = np.zeros((1, 0))  # evaluate_batches keeps no per-step sums


def describe():
    """One line: which BLAS the training loop's GEMMs call, and the BLAS pools fastnn sees with
    their current thread counts."""
    kernel, other = _pools()
    parts = [f"scipy BLAS {c.internal_api} {c.version} "
             f"({getattr(c, 'architecture', '?')}) x{c.num_threads}" for c in kernel.lib_controllers]
    parts += [f"{'fastnn' if c.filepath == blas.MKL_PATH else 'other'} BLAS {c.internal_api} "
              f"{c.version} x{c.num_threads}" for c in other.lib_controllers]
    gemms = "scipy's BLAS"
    if blas.BACKEND == "mkl":
        gemms = "MKL (sequential)" if blas.MKL_SEQUENTIAL else "MKL"
    return (f"{cores()} cores; training GEMMs call {gemms} ({blas.CHOICE_REASON}); "
            + "; ".join(parts))
