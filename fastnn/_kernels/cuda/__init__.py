"""CUDA mirrors of the CPU kernels in fastnn/_kernels (numba.cuda), stumpy's stump/gpu_stump
pairing: module `fastnn._kernels.cuda.X` holds the device version of `fastnn._kernels.X`, with
the same function names and argument order, operating on device arrays.

Nothing in fastnn imports this package unless device="cuda" is asked for, so importing fastnn
never needs a GPU, a driver or the CUDA toolkit. Call `require_gpu()` first: it turns "no
usable GPU" into one clear error instead of a failure deep inside a launch.

Under NUMBA_ENABLE_CUDASIM=1 (set before numba is first imported) every kernel runs in Numba's
CUDA simulator; the tests use that on machines without a GPU.
"""


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
