"""Work splitting and a spinning barrier for the threads of one training loop.

With more than one core, `train_steps` runs as the same compiled loop on every thread (SPMD:
thread `tid` of `nth`), each doing its share of every phase of a step (its rows or columns of
each GEMM, its range of the optimizer update) and meeting the others at a barrier between
phases that depend on each other. One pool of threads does everything: BLAS is called
single-threaded from each of them, so no second pool (OpenBLAS's, OpenMP's) ever spins against
it. The threads are plain Python threads running the nogil loop; `sync` is a small int64 array
they share (one cache line per field).

With nth == 1 every share is the whole range and barriers return at once: the serial loop is
the same code.
"""
import ctypes
import ctypes.util
import platform

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# sync layout: int64 fields 64 bytes apart so that spinning on one does not share its line
SYNC_COUNT, SYNC_GENERATION, SYNC_ABORT = 0, 8, 16
SYNC_SIZE = 24
# shares of columns/elements start on 64-byte boundaries (16 floats): no false sharing of lines
ALIGN = 16
X86 = platform.machine().lower() in ("x86_64", "amd64", "x86", "i386", "i686")


def new_sync():
    """A zeroed sync array for one team of threads running a kernel together."""
    return np.zeros(SYNC_SIZE, dtype=np.int64)


# A thread that has spun this many times at a barrier yields its core on every further check:
# on a machine with more runnable threads than cores (another process, a test runner), a
# thread spinning for a partner that is not scheduled would otherwise burn the partner's time
# slice (measured: 10-40x slower steps). About 50 us of `pause`s; barrier waits between the
# evenly split phases of a step are far shorter on an idle machine.
SPIN_LIMIT = 1000
_YIELD_SYMBOL = "fastnn_yield_cpu"


def _register_yield():
    """Make the OS's yield-the-CPU call (sched_yield; SwitchToThread on Windows) linkable by
    name from compiled (and cached) code."""
    fn = None
    try:
        if platform.system() == "Windows":
            fn = ctypes.windll.kernel32.SwitchToThread
        else:
            fn = ctypes.CDLL(ctypes.util.find_library("c") or None).sched_yield
    except (OSError, AttributeError):
        try:
            fn = ctypes.CDLL(None).sched_yield
        except (OSError, AttributeError):
            fn = None
    if fn is None:  # pragma: no cover - every supported OS has one
        raise ImportError("fastnn: no sched_yield/SwitchToThread found for the training threads")
    llvm.add_symbol(_YIELD_SYMBOL, ctypes.cast(fn, ctypes.c_void_p).value)


_register_yield()


def _int64_ptr(context, builder, signature, args):
    """Pointer to arr[idx] for an intrinsic called as f(arr, idx, ...)."""
    data = context.make_array(signature.args[0])(context, builder, args[0]).data
    idx = context.cast(builder, args[1], signature.args[1], types.intp)
    return builder.gep(data, [idx])


def _int64_value(context, builder, signature, args):
    """The `value` argument of f(arr, idx, value) as an int64."""
    return context.cast(builder, args[2], signature.args[2], types.int64)


@intrinsic
def atomic_add(typingctx, arr, idx, value):
    """arr[idx] += value atomically (sequentially consistent); returns the old value."""
    if arr.dtype != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.atomic_rmw("add", _int64_ptr(context, builder, signature, args),
                                  _int64_value(context, builder, signature, args), "seq_cst")
    return types.int64(arr, idx, value), codegen


@intrinsic
def atomic_load(typingctx, arr, idx):
    """arr[idx], read with acquire ordering (never hoisted out of a spin loop)."""
    if arr.dtype != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_int64_ptr(context, builder, signature, args), "acquire", 8)
    return types.int64(arr, idx), codegen


@intrinsic
def atomic_store(typingctx, arr, idx, value):
    """arr[idx] = value with release ordering."""
    if arr.dtype != types.int64:
        return None

    def codegen(context, builder, signature, args):
        builder.store_atomic(_int64_value(context, builder, signature, args),
                             _int64_ptr(context, builder, signature, args), "release", 8)
        return context.get_dummy_value()
    return types.none(arr, idx, value), codegen


@intrinsic
def cpu_relax(typingctx):
    """x86 `pause` in a spin loop (frees the core's pipeline for the sibling thread); elsewhere
    a compiler barrier only."""
    def codegen(context, builder, signature, args):
        if X86:
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.none(), codegen


@intrinsic
def yield_cpu(typingctx):
    """Give the core to another runnable thread (sched_yield)."""
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(32), []), _YIELD_SYMBOL)
        builder.call(fn, [])
        return context.get_dummy_value()
    return types.none(), codegen


@njit(cache=True)
def barrier(sync, nth):
    """Wait until all nth threads have arrived (no-op for one thread). Returns False when a
    thread has set the abort flag (an exception on another thread): the caller stops early."""
    if nth == 1:
        return True
    generation = atomic_load(sync, SYNC_GENERATION)
    if atomic_add(sync, SYNC_COUNT, 1) == nth - 1:
        atomic_store(sync, SYNC_COUNT, 0)
        atomic_add(sync, SYNC_GENERATION, 1)
        return atomic_load(sync, SYNC_ABORT) == 0
    spins = 0
    while atomic_load(sync, SYNC_GENERATION) == generation:
        if atomic_load(sync, SYNC_ABORT) != 0:
            return False
        if spins < SPIN_LIMIT:
            spins += 1
            cpu_relax()
        else:
            yield_cpu()
    return atomic_load(sync, SYNC_ABORT) == 0


@njit(cache=True)
def share(n, tid, nth, align):
    """This thread's range [lo, hi) of n items: nth nearly equal parts, each starting on a
    multiple of align (the last ones may be empty)."""
    if nth == 1:
        return 0, n
    step = (n + nth - 1) // nth
    step = (step + align - 1) // align * align
    lo = min(n, tid * step)
    return lo, min(n, lo + step)
