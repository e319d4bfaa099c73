"""fastnn/_kernels/blas.py: the row-major block GEMM against float64 NumPy (whichever BLAS this
process bound), and the choice of BLAS by FASTNN_BLAS, each choice in a fresh process (it is
made once, at import). The MKL cases run only where the `mkl` package is installed (CI
installs it)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn._kernels import blas
from fastnn._kernels.blas import gemm

import bounds

MKL_INSTALLED = blas._pip_mkl_runtime() is not None
needs_mkl = pytest.mark.skipif(not MKL_INSTALLED, reason="the mkl package is not installed")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_gemm_blocks_of_flat_buffers(dtype, trans_a, trans_b, beta):
    """C block = op(A block) @ op(B block) + beta C block on strided blocks inside larger flat
    buffers; nothing outside the C block is written."""
    rng = np.random.default_rng(trans_a * 4 + trans_b * 2 + int(beta))
    m, n, k = 5, 7, 9
    # each operand is a block inside a wider, taller matrix, at a row/column offset
    a_shape = (k, m) if trans_a else (m, k)
    b_shape = (n, k) if trans_b else (k, n)
    big_a = rng.standard_normal((a_shape[0] + 3, a_shape[1] + 4)).astype(dtype)
    big_b = rng.standard_normal((b_shape[0] + 2, b_shape[1] + 5)).astype(dtype)
    big_c = rng.standard_normal((m + 4, n + 3)).astype(dtype)
    a = big_a[2:2 + a_shape[0], 1:1 + a_shape[1]]
    b = big_b[1:1 + b_shape[0], 3:3 + b_shape[1]]
    expected_c = big_c.astype(np.float64)
    op_a = a.T if trans_a else a
    op_b = b.T if trans_b else b
    expected_c[3:3 + m, 2:2 + n] = (op_a.astype(np.float64) @ op_b.astype(np.float64)
                                    + beta * expected_c[3:3 + m, 2:2 + n])
    flat_c = big_c.reshape(-1).copy()
    gemm(trans_a, trans_b, m, n, k,
         big_a.reshape(-1), 2 * big_a.shape[1] + 1, big_a.shape[1],
         big_b.reshape(-1), 1 * big_b.shape[1] + 3, big_b.shape[1],
         beta, flat_c, 3 * big_c.shape[1] + 2, big_c.shape[1])
    # each element is k products and beta C added up: within gamma_{k+1} of the sum of their
    # magnitudes, in the GEMM's dtype and again in NumPy's float64; outside the block, equal
    magnitude = np.zeros_like(expected_c)
    magnitude[3:3 + m, 2:2 + n] = (np.abs(op_a).astype(np.float64) @ np.abs(op_b)
                                   + abs(beta) * np.abs(big_c[3:3 + m, 2:2 + n]))
    bound = (bounds.gamma(k + 1, dtype) + bounds.gamma(k + 1, np.float64)) * magnitude
    err = np.abs(flat_c.reshape(big_c.shape) - expected_c)
    assert np.all(err <= bound), f"largest error / bound: {np.max(err / (bound + 1e-300)):.3g}"


@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_gemm_empty_inner_dimension_scales_c(beta):
    c = np.arange(1.0, 7.0, dtype=np.float32)
    gemm(0, 0, 2, 3, 0, np.zeros(1, np.float32), 0, 1, np.zeros(1, np.float32), 0, 3, beta, c,
         0, 3)
    np.testing.assert_array_equal(c, beta * np.arange(1.0, 7.0, dtype=np.float32))


def test_backend_is_named():
    assert blas.BACKEND in ("mkl", "scipy")
    assert (blas.MKL_PATH is not None) == (blas.BACKEND == "mkl")
    # the library the import chose is the one `choose` names for this CPU, setting and install
    requested = os.environ.get("FASTNN_BLAS", "auto").strip().lower() or "auto"
    mkl_found = requested == "mkl" or blas._mkl_runtime(required=False) is not None
    expected, _ = blas.choose(requested, blas.CPU_VENDOR, mkl_found)
    if "MKL failed to load" not in blas.CHOICE_REASON:
        assert blas.BACKEND == expected


@pytest.mark.parametrize("requested, vendor, mkl_installed, expected", [
    # auto: MKL only on Intel, and only when installed
    ("auto", "intel", True, "mkl"),
    ("auto", "amd", True, "scipy"),
    ("auto", "other", True, "scipy"),
    ("auto", "intel", False, "scipy"),
    ("auto", "amd", False, "scipy"),
    # an explicit choice wins over the CPU
    ("mkl", "amd", True, "mkl"),
    ("mkl", "intel", False, "mkl"),  # the caller then raises ImportError
    ("scipy", "intel", True, "scipy"),
    ("scipy", "amd", False, "scipy"),
])
def test_choose_by_vendor_and_availability(requested, vendor, mkl_installed, expected):
    name, reason = blas.choose(requested, vendor, mkl_installed)
    assert name == expected
    if requested == "auto":
        assert reason.startswith("auto: ")
        if not mkl_installed:
            assert "not installed" in reason
        elif vendor == "amd":
            assert "AMD" in reason
    else:
        assert reason == f"FASTNN_BLAS={requested}"


def test_choose_rejects_unknown_requests():
    with pytest.raises(ValueError, match="FASTNN_BLAS must be 'auto', 'mkl' or 'scipy'"):
        blas.choose("openblas", "amd", True)


@pytest.mark.parametrize("text, vendor", [
    ("vendor_id\t: GenuineIntel", "intel"),
    ("vendor_id\t: AuthenticAMD", "amd"),
    ("AMD64 Family 25 Model 17 Stepping 1, AuthenticAMD", "amd"),  # Windows' processor()
    ("Intel64 Family 6 Model 143 Stepping 8, GenuineIntel", "intel"),
    ("vendor_id\t: HygonGenuine", "amd"),  # Zen cores
    ("vendor_id\t: CentaurHauls", None),
    ("", None),
])
def test_vendor_from_cpu_strings(text, vendor):
    assert blas._vendor_from_text(text) == vendor


def test_this_process_recorded_its_choice():
    assert blas.CPU_VENDOR == blas.cpu_vendor() in ("intel", "amd", "other")
    requested = os.environ.get("FASTNN_BLAS", "").strip().lower() or "auto"
    assert (blas.BACKEND, blas.CHOICE_REASON) == blas.choose(
        requested, blas.CPU_VENDOR, requested == "mkl" or MKL_INSTALLED)


def test_choice_is_logged_at_debug_level():
    code = ("import logging\n"
            "logging.basicConfig(level=logging.DEBUG, format='%(name)s %(message)s')\n"
            "import fastnn")
    out = _run(code, FASTNN_BLAS="scipy")
    assert out.returncode == 0, out.stderr
    assert "fastnn GEMMs call scipy's BLAS (" in out.stderr and "FASTNN_BLAS=scipy)" in out.stderr


# a short float64 fit (short_fit, run here too for its sensitivity), printed as JSON by FIT:
# the same in every process for a given BLAS, and equal across BLAS libraries up to rounding
FIT_SIZES, FIT_ROWS, FIT_BATCH, FIT_EPOCHS = (12, 16, 8, 3), 96, 16, 3
SHORT_FIT = f"""
import numpy as np
import fastnn


def short_fit(start=None):
    rng = np.random.default_rng(0)
    X = rng.standard_normal(({FIT_ROWS}, {FIT_SIZES[0]}))
    y = rng.integers(0, {FIT_SIZES[-1]}, {FIT_ROWS})
    model = fastnn.MLP({list(FIT_SIZES)}, output="softmax", dtype="float64", seed=0)
    if start is not None:
        model.params[:] = start
    fastnn.Trainer(model, fastnn.optim.Adam(lr=1e-2), batch_size={FIT_BATCH},
                   epochs={FIT_EPOCHS}, verbose=0, seed=0).fit(X, y)
    return model.params
"""
FIT = SHORT_FIT + """
import json
from fastnn._kernels import blas
print(json.dumps({"backend": blas.BACKEND, "params": short_fit().tolist()}))
"""


def _run(code, **env_vars):
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_BLAS"}
    env.update(env_vars)
    return subprocess.run([sys.executable, "-c", code], check=False, env=env,
                          capture_output=True, text=True, timeout=300)


def _fit(choice):
    out = _run(FIT, FASTNN_BLAS=choice)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_unknown_choice_is_a_clear_error():
    out = _run("import fastnn", FASTNN_BLAS="openblas64")
    assert out.returncode != 0
    assert "ValueError: FASTNN_BLAS must be 'auto', 'mkl' or 'scipy', got 'openblas64'" in (
        out.stderr)


def test_scipy_choice_binds_scipy():
    assert _fit("scipy")["backend"] == "scipy"


@pytest.mark.skipif(MKL_INSTALLED, reason="needs an environment without the mkl package")
def test_mkl_choice_without_mkl_says_how_to_install():
    out = _run("import fastnn", FASTNN_BLAS="mkl")
    if out.returncode == 0:  # an MKL outside pip (conda, system) was found and used
        pytest.skip("an MKL runtime outside pip is installed")
    assert "ImportError" in out.stderr and 'pip install "fastnn[mkl]"' in out.stderr


@needs_mkl
def test_mkl_and_scipy_train_the_same_model():
    """The same float64 fit on MKL and on scipy's OpenBLAS: equal up to rounding (the GEMMs
    sum in different orders), and 'auto' picks MKL when it is installed on an Intel CPU only."""
    on_mkl = _fit("mkl")
    on_scipy = _fit("scipy")
    assert on_mkl["backend"] == "mkl" and on_scipy["backend"] == "scipy"
    assert _fit("auto")["backend"] == ("mkl" if blas.cpu_vendor() == "intel" else "scipy")
    # both round the same fit: each within training_units eps of it, times the fit's
    # amplification of a change of its start (measured here, in float64)
    namespace = {}
    exec(SHORT_FIT, namespace)  # noqa: S102 - the fit's code above, run in this process
    short_fit = namespace["short_fit"]
    start = fastnn.MLP(list(FIT_SIZES), output="softmax", dtype="float64", seed=0).params
    amplification = bounds.sensitivity(lambda st: {"parameters": short_fit(st)}, start)
    steps = FIT_EPOCHS * -(-FIT_ROWS // FIT_BATCH)
    units = 2 * bounds.training_units(FIT_SIZES, FIT_BATCH, steps) * amplification["parameters"]
    bounds.assert_close(on_mkl["params"], on_scipy["params"], units, np.float64, "parameters")


@needs_mkl
def test_mkl_left_to_another_threading_layer_when_asked():
    code = ("from fastnn._kernels import blas; from fastnn import _threads; "
            "print(blas.BACKEND, blas.MKL_SEQUENTIAL, 'MKL (sequential)' in _threads.describe())")
    out = _run(code, FASTNN_BLAS="mkl", MKL_THREADING_LAYER="SEQUENTIAL")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["mkl", "False", "False"]
    out = _run(code, FASTNN_BLAS="mkl")
    assert out.stdout.split() == ["mkl", "True", "True"]
