"""Row-major GEMM on sub-blocks of flat buffers, straight into BLAS.

numba's np.dot wants whole contiguous arrays and always computes C = A @ B. Splitting a GEMM
between threads needs more: a block of columns of W has a leading dimension wider than the
block, and dW = x.T @ dz on a range of x's columns reads a strided transposed operand. `gemm`
takes a pointer (array + element offset) and a leading dimension per operand, like cblas, and
calls the Fortran BLAS sgemm/dgemm through the symbols `fastnn_sgemm`/`fastnn_dgemm`. Those are
bound at import to one BLAS (below); compiled code resolves them by name when it is loaded, so
every kernel that calls them stays cacheable and one cache serves either BLAS.

Which BLAS (environment variable FASTNN_BLAS, read at import):
- "auto" (default): the faster of the two on this CPU (`choose`): Intel MKL on Intel CPUs when
  the `mkl` package from PyPI is installed (`pip install "fastnn[mkl]"`), else scipy's BLAS
  (the OpenBLAS in scipy's wheel). MKL picks its fast kernels by CPU vendor: on AMD it runs
  generic code at about half of OpenBLAS's speed (Zen 4, AVX-512: 784-512-256-10 at batch
  2048 62,805 vs 125,170 samples/s), so `auto` never picks it there;
- "mkl": MKL, or ImportError; also finds an MKL runtime installed outside pip;
- "scipy": scipy's BLAS, the one numba's np.dot uses.
The decision is a pure function of the CPU vendor (/proc/cpuinfo, the OS's processor string or
LLVM's host CPU name) and of whether MKL is installed; it is logged at DEBUG level on the
"fastnn" logger and shown by `fastnn._threads.describe()` (CHOICE_REASON).
On Intel, one thread per GEMM as the training loop calls it, MKL's sgemm was 10-14% faster than
OpenBLAS's on 784-512-256-10's GEMMs at 256-1024 rows and 1.2-1.9x on the forward GEMMs at
32-64 rows (benchmarks/README.md).

fastnn calls BLAS from its own training threads, one BLAS thread each, so an MKL that fastnn
loads itself is switched to its sequential threading layer (no OpenMP pool, nothing left
spinning), unless MKL_THREADING_LAYER is set or another library loaded that MKL first.
"""
import ctypes
import ctypes.util
import glob
import logging
import os
import platform
import sys
from importlib import metadata

import llvmlite.binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

_KINDS = {types.float32: "s", types.float64: "d"}
_MKL_THREADING_SEQUENTIAL = 1  # mkl_set_threading_layer's code for the sequential layer
MKL_SEQUENTIAL = False  # whether fastnn switched the MKL it loaded to the sequential layer


def _capsule_address(capsule):
    """The C function pointer inside a Cython __pyx_capi__ capsule."""
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))


def _scipy_gemm():
    """{"s": address, "d": address} of scipy's Fortran-convention sgemm/dgemm (LP64 ints)."""
    from scipy.linalg import cython_blas

    return {k: _capsule_address(cython_blas.__pyx_capi__[k + "gemm"]) for k in "sd"}


def _pip_mkl_runtime():
    """Path of libmkl_rt from the `mkl` wheel (installed as a data file beside the
    environment's lib/ or Library/bin/), or None."""
    try:
        files = metadata.files("mkl") or []
        dist = metadata.distribution("mkl")
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        name = os.path.basename(str(f))
        if name.startswith(("libmkl_rt.so", "libmkl_rt.", "mkl_rt.")) and not name.endswith(
                (".py", ".pc", ".txt")):
            path = os.path.abspath(str(dist.locate_file(f)))
            if os.path.exists(path):
                return path
    return None


def _mkl_runtime(required):
    """Path (or name for the loader) of MKL's single dynamic library, or None."""
    path = _pip_mkl_runtime()
    if path is None and required:
        patterns = ("lib/libmkl_rt.so*", "lib/libmkl_rt*.dylib", "Library/bin/mkl_rt*.dll")
        for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
            for pattern in patterns:
                found = sorted(glob.glob(os.path.join(prefix, pattern)))
                if found:
                    return found[0]
        path = ctypes.util.find_library("mkl_rt")
    return path


def _mkl_gemm(required):
    """({"s": address, "d": address} of MKL's sgemm/dgemm, its library's path), or None when
    MKL is not there."""
    path = _mkl_runtime(required)
    if path is None:
        return None
    global MKL_SEQUENTIAL
    lib = ctypes.CDLL(path)
    if not os.environ.get("MKL_THREADING_LAYER"):
        # the first MKL call fixes the layer; when another library got there first this
        # changes nothing and that library's choice (and thread settings) stays
        lib.MKL_Set_Threading_Layer.restype = ctypes.c_int
        layer = lib.MKL_Set_Threading_Layer(ctypes.c_int(_MKL_THREADING_SEQUENTIAL))
        MKL_SEQUENTIAL = layer == _MKL_THREADING_SEQUENTIAL
    return ({k: ctypes.cast(getattr(lib, k + "gemm"), ctypes.c_void_p).value for k in "sd"},
            path)


# LLVM host CPU names (llvmlite.binding.get_host_cpu_name) by vendor, for when neither
# /proc/cpuinfo nor the OS names the vendor
_AMD_CPU_PREFIXES = ("znver", "bdver", "btver", "amdfam", "k8", "athlon", "opteron", "barcelona")
_INTEL_CPU_PREFIXES = (
    "skylake", "cascadelake", "cooperlake", "icelake", "tigerlake", "sapphirerapids",
    "emeraldrapids", "graniterapids", "alderlake", "raptorlake", "meteorlake", "arrowlake",
    "lunarlake", "pantherlake", "rocketlake", "cannonlake", "haswell", "broadwell",
    "sandybridge", "ivybridge", "nehalem", "westmere", "core2", "penryn", "goldmont",
    "tremont", "gracemont", "sierraforest", "grandridge", "clearwaterforest", "knl", "knm",
    "silvermont", "bonnell", "atom", "diamondrapids")


def _vendor_from_text(text):
    """'intel', 'amd' or None from a vendor id or processor string."""
    text = text or ""
    if "GenuineIntel" in text:
        return "intel"
    if "AuthenticAMD" in text or "HygonGenuine" in text:  # Hygon: AMD Zen cores
        return "amd"
    return None


def cpu_vendor():
    """'intel', 'amd' or 'other' for the CPU this process runs on (x86 vendor id), read without
    loading any library: /proc/cpuinfo, else the OS's processor string (Windows names the
    vendor), else LLVM's host CPU name."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    vendor = _vendor_from_text(line)
                    if vendor:
                        return vendor
                    break
    except OSError:
        pass
    vendor = _vendor_from_text(platform.processor())
    if vendor:
        return vendor
    try:
        name = llvm.get_host_cpu_name().lower()
    except Exception:  # noqa: BLE001 - an unknown CPU is 'other', not an import error
        return "other"
    if name.startswith(_AMD_CPU_PREFIXES):
        return "amd"
    if name.startswith(_INTEL_CPU_PREFIXES):
        return "intel"
    return "other"


def choose(requested, vendor, mkl_installed):
    """Which BLAS the GEMMs call: ("mkl" or "scipy", why). A pure function of FASTNN_BLAS's
    value ("auto", "mkl", "scipy"), the CPU vendor ("intel", "amd", "other") and whether an
    MKL runtime is installed; "mkl" is returned for requested="mkl" even when none is (the
    caller then raises ImportError)."""
    if requested == "scipy":
        return "scipy", "FASTNN_BLAS=scipy"
    if requested == "mkl":
        return "mkl", "FASTNN_BLAS=mkl"
    if requested != "auto":
        raise ValueError(f"FASTNN_BLAS must be 'auto', 'mkl' or 'scipy', got {requested!r}")
    if not mkl_installed:
        return "scipy", "auto: MKL is not installed"
    if vendor == "intel":
        return "mkl", "auto: Intel CPU, MKL is faster there (small row counts most)"
    if vendor == "amd":
        return "scipy", ("auto: AMD CPU, MKL runs its generic kernels there at about half "
                         "of OpenBLAS's speed")
    return "scipy", "auto: CPU vendor not Intel, MKL's fast kernels are not certain there"


def _choose_backend():
    """Bind fastnn_sgemm/fastnn_dgemm to the BLAS that FASTNN_BLAS and the CPU select; returns
    its name ("mkl" or "scipy"), for MKL the library's path, the CPU vendor and why."""
    raw = os.environ.get("FASTNN_BLAS", "")
    requested = raw.strip().lower() or "auto"
    if requested not in ("auto", "mkl", "scipy"):
        raise ValueError(f"FASTNN_BLAS must be 'auto', 'mkl' or 'scipy', got {raw!r}")
    vendor = cpu_vendor()
    mkl_installed = requested == "mkl" or _mkl_runtime(required=False) is not None
    name, reason = choose(requested, vendor, mkl_installed)
    functions, path = None, None
    if name == "mkl":
        found = _mkl_gemm(required=requested == "mkl")
        if found is None and requested == "mkl":
            raise ImportError("FASTNN_BLAS=mkl but no MKL runtime (libmkl_rt) was found: "
                              "pip install \"fastnn[mkl]\" (Intel MKL from PyPI), or unset "
                              "FASTNN_BLAS")
        if found is None:  # pragma: no cover - installed but not loadable: scipy's then
            name, reason = "scipy", reason + "; MKL failed to load"
        else:
            functions, path = found
    if functions is None:
        functions = _scipy_gemm()
    for kind, address in functions.items():
        llvm.add_symbol(f"fastnn_{kind}gemm", address)
    logging.getLogger("fastnn").debug("GEMMs call %s (%s CPU; %s)",
                                      "MKL" if name == "mkl" else "scipy's BLAS", vendor, reason)
    return name, path, vendor, reason


# which BLAS the kernels' GEMMs run on: "mkl" or "scipy"; MKL_PATH is MKL's library, if used;
# CPU_VENDOR and CHOICE_REASON: what the choice was made from
BACKEND, MKL_PATH, CPU_VENDOR, CHOICE_REASON = _choose_backend()


@intrinsic
def _xxgemm(typingctx, transa, transb, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off,
            ldc):
    """Column-major BLAS gemm: c = op(a) @ op(b) + beta c, the operands given as array data
    pointers advanced by *_off elements. transa/transb: 0 = 'n', 1 = 't'. Calls the Fortran
    interface (every argument by pointer, 32-bit ints)."""
    dtype = c.dtype
    if dtype not in _KINDS or a.dtype != dtype or b.dtype != dtype:
        return None
    sig = types.none(transa, transb, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc)

    def codegen(context, builder, signature, args):
        (ta, tb, m_, n_, k_, a_, aoff, lda_, b_, boff, ldb_, beta_, c_, coff, ldc_) = args
        tys = signature.args
        intp = context.get_value_type(types.intp)
        char = ir.IntType(8)
        int32 = ir.IntType(32)
        real = context.get_value_type(dtype)

        def ptr(arr, aty, off, offty):
            data = context.make_array(aty)(context, builder, arr).data
            return builder.gep(data, [context.cast(builder, off, offty, types.intp)])

        def trans(flag, fty):
            flag = context.cast(builder, flag, fty, types.intp)
            is_t = builder.icmp_signed("!=", flag, ir.Constant(intp, 0))
            return cgutils.alloca_once_value(builder, builder.select(
                is_t, ir.Constant(char, ord("T")), ir.Constant(char, ord("N"))))

        def int_arg(v, ty):
            return cgutils.alloca_once_value(builder, context.cast(builder, v, ty, types.int32))

        alpha = cgutils.alloca_once_value(builder, ir.Constant(real, 1.0))
        beta = cgutils.alloca_once_value(builder, context.cast(builder, beta_, tys[11], dtype))
        cp, ip, rp = char.as_pointer(), int32.as_pointer(), real.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [cp, cp, ip, ip, ip, rp, rp, ip, rp, ip, rp, rp,
                                               ip])
        fn = cgutils.get_or_insert_function(builder.module, fnty,
                                            f"fastnn_{_KINDS[dtype]}gemm")
        builder.call(fn, [trans(ta, tys[0]), trans(tb, tys[1]), int_arg(m_, tys[2]),
                          int_arg(n_, tys[3]), int_arg(k_, tys[4]), alpha,
                          ptr(a_, tys[5], aoff, tys[6]), int_arg(lda_, tys[7]),
                          ptr(b_, tys[8], boff, tys[9]), int_arg(ldb_, tys[10]), beta,
                          ptr(c_, tys[12], coff, tys[13]), int_arg(ldc_, tys[14])])
        return context.get_dummy_value()

    return sig, codegen


def gemm(trans_a, trans_b, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc):
    """Row-major C (m, n) = op(A) (m, k) @ op(B) (k, n) + beta C (see _gemm).

    Callable from compiled code and from Python. Compiled callers get one version per
    argument types, whatever constants they pass (the transpose flags, an offset of 0): an
    @njit function would compile one version per combination of literal arguments (five for
    one fit, about 0.2 s of cold compile each)."""
    return _gemm_python(trans_a, trans_b, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off,
                        ldc)


def _gemm(trans_a, trans_b, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc):
    """Row-major C (m, n) = op(A) (m, k) @ op(B) (k, n) + beta C.

    Each operand is a flat (1-D) array, the element offset of its first entry and its row stride (leading
    dimension): A is stored (m, k) with stride lda, or (k, m) when trans_a. Nothing is checked:
    the caller guarantees the blocks lie inside the arrays. A row-major C is a column-major C^T
    = op(B)^T op(A)^T, so BLAS sees the operands swapped and the same transpose flags."""
    if m == 0 or n == 0:
        return
    if k == 0:  # BLAS would read nothing and scale C by beta; be explicit
        zero = c.dtype.type(0.0)
        for i in range(m):
            for j in range(n):
                c[c_off + i * ldc + j] = zero if beta == 0.0 else c[c_off + i * ldc + j] * beta
        return
    _xxgemm(trans_b, trans_a, n, m, k, b, b_off, ldb, a, a_off, lda, beta, c, c_off, ldc)


_gemm_python = njit(cache=True)(_gemm)


@overload(gemm, prefer_literal=False)
def _gemm_overload(trans_a, trans_b, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off,
                   ldc):
    return _gemm
