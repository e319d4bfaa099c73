"""The cuBLASLt seam (fastnn/_kernels/cuda/cublaslt.py) without a GPU: which epilogue runs
where, when the Numba GEMM runs instead and why, the plans made once per layer and batch
shape, and a whole fit through LtGemms with a NumPy stand-in for nvmath's Matmul (its
semantics as nvmath documents them: C = A @ B in place, bias per row of C, BGRADA the sums
over A's columns, the relu_aux mask of RELU_AUX_BIAS read back by DRELU_BGRAD) against the CPU
path. The stand-in checks every operand's shape, so the transposed products (the row-major
buffers read column-major) are checked too. nvmath itself runs only on a real GPU
(test_cuda_real_gpu.py)."""
import os

import numpy as np
import pytest
from test_cuda_fit import check_same, fit_both  # this folder (rootdir-relative imports)

import fastnn
from fastnn._kernels.dense import ELU, GELU, IDENTITY, LEAKY_RELU, RELU, SIGMOID, SOFTMAX, TANH

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
pytestmark = pytest.mark.skipif(not SIMULATED, reason="the stand-in reads simulator arrays")


def host(arr):
    """The NumPy array behind a simulator device array (a view: writes reach the device)."""
    return arr._ary  # numba's simulator keeps device arrays as NumPy arrays here


class FakeMatmul:
    def __init__(self, a, b, c, epilog, inputs, tf32):
        M, K = a.shape
        assert b.shape[0] == K and c.shape == (M, b.shape[1]), (a.shape, b.shape, c.shape)
        self.a, self.b, self.c, self.epilog, self.tf32 = a, b, c, epilog, tf32
        self.inputs = dict(inputs or {})
        if epilog in ("BIAS", "RELU_AUX_BIAS"):
            assert self.inputs["bias"].shape == (M,)
        if epilog == "DRELU_BGRAD":
            assert self.inputs["relu_aux"].shape == (M, b.shape[1])

    def execute(self):
        r = self.a.astype(np.float64) @ self.b.astype(np.float64)
        out = {}
        if self.epilog in ("BIAS", "RELU_AUX_BIAS"):
            r = r + self.inputs["bias"][:, None]
        if self.epilog == "RELU_AUX_BIAS":
            mask = r > 0
            out["relu_aux"] = mask
            r = np.where(mask, r, 0.0)
        if self.epilog == "DRELU_BGRAD":
            r = np.where(self.inputs["relu_aux"], r, 0.0)
            out["drelu_bgrad"] = r.sum(axis=1)
        if self.epilog == "BGRADA":
            out["bgrada"] = self.a.astype(np.float64).sum(axis=1)
        self.c[...] = r
        return out


class FakeBackend:
    """cublaslt.NvmathBackend's calls, on the simulator's NumPy arrays."""

    def __init__(self):
        self.planned = []
        self.resets = 0
        self.executed = 0
        self.copies = 0

    @staticmethod
    def pointer(arr):
        return host(arr).__array_interface__["data"][0]

    @staticmethod
    def wrap(arr):
        return host(arr)

    def plan(self, a, b, c, epilog, inputs, allow_tf32):
        mm = FakeMatmul(a, b, c, epilog, inputs, allow_tf32)
        self.planned.append(mm)
        return mm

    def execute(self, mm):
        self.executed += 1
        return mm.execute()

    def reset_inputs(self, mm, inputs):
        self.resets += 1
        mm.inputs.update(inputs)

    def copy(self, dst, src):
        self.copies += 1
        dst[...] = src.reshape(dst.shape)


def test_epilogue_per_activation():
    from fastnn._kernels.cuda import cublaslt
    expected = {RELU: "RELU_AUX_BIAS", IDENTITY: "BIAS", SOFTMAX: "BIAS", SIGMOID: None,
                TANH: None, LEAKY_RELU: None, ELU: None, GELU: None}
    assert {act: cublaslt.forward_epilog(act) for act in expected} == expected
    acts = [RELU, RELU, TANH, IDENTITY, RELU, SOFTMAX]
    got = [cublaslt.backward_epilogs(acts, l) for l in range(len(acts))]
    # (dW, dx): a relu layer's db comes from the next layer's DRELU_BGRAD
    assert got == [(None, None), (None, "DRELU_BGRAD"), ("BGRADA", "DRELU_BGRAD"),
                   ("BGRADA", None), (None, None), ("BGRADA", "DRELU_BGRAD")]


def test_numba_gemm_where_cublaslt_does_not_apply():
    from fastnn._kernels.cuda import cublaslt
    fake = FakeBackend()
    cases = {(np.float32, True, False): "simulator", (np.float64, False, False): "float32",
             (np.float32, False, True): "dropout"}
    for (dt, simulated, dropout), why in cases.items():
        gemms, reason = cublaslt.gemms_or_reason(np.dtype(dt), simulated, dropout, False, fake)
        assert gemms is None and why in reason
    # here nvmath-python / CuPy are not installed (or not usable): the Numba GEMM, and why
    gemms, reason = cublaslt.gemms_or_reason(np.dtype(np.float32), False, False, False)
    try:
        cublaslt.NvmathBackend()
    except ImportError:
        assert gemms is None and "pip install 'fastnn[cuda]'" in reason
    gemms, reason = cublaslt.gemms_or_reason(np.dtype(np.float32), False, False, False, fake,
                                             choice="numba")
    assert gemms is None and "FASTNN_CUDA_GEMM=numba" in reason
    with pytest.raises(ValueError, match="FASTNN_CUDA_GEMM"):
        cublaslt.gemms_or_reason(np.dtype(np.float32), False, False, False, fake, choice="lt")
    for tf32 in (False, True):
        gemms, reason = cublaslt.gemms_or_reason(np.dtype(np.float32), False, False, tf32,
                                                 fake)
        assert reason is None and gemms.backend is fake and gemms.allow_tf32 is tf32


def test_simulator_fit_keeps_the_numba_gemm(monkeypatch):
    """Under the simulator a float32 fit plans nothing: gemms_or_reason says why and the
    Numba path runs (its launches are counted in test_cuda_fit)."""
    from fastnn._kernels.cuda import cublaslt
    seen = []
    original = cublaslt.gemms_or_reason

    def recording(*args, **kw):
        out = original(*args, **kw)
        seen.append((args, out))
        return out

    monkeypatch.setattr(cublaslt, "gemms_or_reason", recording)
    rng = np.random.default_rng(0)
    fastnn.Trainer(fastnn.MLP([3, 4, 2], output="softmax", seed=0), batch_size=3, epochs=1,
                   verbose=0, device="cuda", allow_tf32=True).fit(
        rng.standard_normal((5, 3)), rng.integers(0, 2, 5))
    (args, (gemms, reason)), = seen
    assert args == (np.dtype(np.float32), True, False, True)  # dtype, simulated, dropout, tf32
    assert gemms is None and "simulator" in reason


def _through_fake(monkeypatch, fake, tf32_seen):
    from fastnn._kernels.cuda import cublaslt

    def with_fake(dtype, simulated, dropout_hidden, allow_tf32, backend=None, choice="auto"):
        tf32_seen.append(allow_tf32)
        return cublaslt.LtGemms(fake, allow_tf32), None

    monkeypatch.setattr(cublaslt, "gemms_or_reason", with_fake)


@pytest.mark.parametrize("acts, output, loss", [
    (["relu", "relu", "tanh", "identity", "relu"], "softmax", "cross_entropy"),
    (["gelu", "relu", "sigmoid"], "sigmoid", "binary_cross_entropy"),
    (["relu", "elu", "leaky_relu"], "identity", "mse"),
])
def test_fit_through_cublaslt_seam_matches_cpu(monkeypatch, acts, output, loss):
    """A fit whose GEMMs go through LtGemms (epilogues, transposed products, bias gradients
    from BGRADA / DRELU_BGRAD, the Numba passes around them) equals the CPU fit, and plans
    each product once per layer, batch rows and buffers: the full and the short last batch,
    and the validation batch, over two epochs."""
    fake = FakeBackend()
    tf32_seen = []
    _through_fake(monkeypatch, fake, tf32_seen)
    rng = np.random.default_rng(4)
    k = 2 if output == "identity" else 3
    X = rng.standard_normal((7, 4))
    y = (rng.standard_normal((7, k)) if loss == "mse" else
         rng.integers(0, 2, (7, k)).astype(float) if loss == "binary_cross_entropy" else
         rng.integers(0, k, 7))
    sizes = [4] + [5, 3, 4, 5, 3][:len(acts)] + [k]
    out = fit_both(lambda: fastnn.MLP(sizes, activation=acts, output=output,
                                      dtype="float64", seed=3),
                   lambda: fastnn.optim.Adam(lr=0.05), X, y, (X[:3], y[:3]), loss=loss,
                   batch_size=4, epochs=2, shuffle=True, seed=1, allow_tf32=True)
    check_same(out)
    assert tf32_seen == [True]
    assert all(mm.tf32 is True for mm in fake.planned)
    L = len(acts) + 1
    train = 2 * (L + L + (L - 1))  # batches of 4 and 3: forward, dW, dx (none for layer 0)
    assert len(fake.planned) == train + L  # and the validation forward (3 rows)
    relu_next = sum(1 for l in range(1, L) if acts[l - 1] == "relu")
    # the masks of this step reach the cached DRELU_BGRAD plans (4 steps, 2 planned)
    assert fake.resets == relu_next * (4 - 2)


def test_launches_per_step_through_the_seam(monkeypatch):
    """A 3-layer relu / softmax step through cuBLASLt: 3 forward GEMMs (RELU_AUX_BIAS, BIAS),
    5 backward (BGRADA for the output layer, DRELU_BGRAD for both dx, plain dW for the relu
    layers) with 3 bias-gradient copies, and of the Numba kernels only gather, loss, the
    gradient norms (2) and the update: no column sum, no activation pass."""
    from numba import cuda
    fake = FakeBackend()
    _through_fake(monkeypatch, fake, [])
    launches = []
    cls = type(cuda.jit(lambda a: None))
    original = cls.__getitem__

    def counting(kernel, config):
        launches.append(kernel)
        return original(kernel, config)

    monkeypatch.setattr(cls, "__getitem__", counting)
    rng = np.random.default_rng(8)
    counts = {}
    for n_steps in (2, 4):
        X = rng.standard_normal((3 * n_steps, 4))
        y = rng.integers(0, 3, 3 * n_steps)
        model = fastnn.MLP([4, 5, 6, 3], activation="relu", output="softmax",
                           dtype="float64", seed=9)
        del launches[:]
        fake.executed = fake.copies = 0
        fastnn.Trainer(model, fastnn.optim.Adam(lr=0.01), batch_size=3, epochs=1,
                       shuffle=False, verbose=0, device="cuda").fit(X, y)
        counts[n_steps] = np.array([len(launches), fake.executed, fake.copies])
    numba_kernels, gemms, copies = (counts[4] - counts[2]) / 2
    assert (numba_kernels, gemms, copies) == (5, 8, 3)
