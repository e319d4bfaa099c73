"""The dense layers' GEMMs through cuBLASLt (nvmath-python), with its fused epilogues, on a
real GPU in float32: the one seam between fastnn and nvmath. Where this does not apply (the
simulator, float64, hidden dropout, nvmath or CuPy not importable) the Numba GEMM
(dense.gemm) runs, exactly as before; `gemms_or_reason` says which and why.

Layout. fastnn's buffers are row-major (C order); cuBLASLt's bias is per row of the result
and its bias gradients reduce over an operand's K, so each product is asked for transposed,
which is the same memory read column-major (nothing is copied or transposed in memory):

    forward   z.T (fo, B)  = W.T (fo, fi) @ x.T (fi, B)    epilog BIAS / RELU_AUX_BIAS, bias b
    dW        dW.T (fo, fi) = dz.T (fo, B) @ x (B, fi)     epilog BGRADA: db = sum_rows(dz)
    dx        dx.T (fi, B) = W (fi, fo) @ dz.T (fo, B)     epilog DRELU_BGRAD: dx *= relu'
                                                            (the forward's relu_aux bit mask),
                                                            and the previous layer's db

(BGRADA here is BGRADB of the row-major product dW = x.T @ dz: the batch is K either way.)
Which epilogue runs where (forward_epilog, backward_epilogs):
    relu      forward RELU_AUX_BIAS; the next layer's dx GEMM applies relu' and sums the bias
              gradient (DRELU_BGRAD), so this layer's dW GEMM needs no epilogue
    identity  forward BIAS
    softmax   forward BIAS into Z (the loss kernel, or one row pass, makes the softmax)
    others    (sigmoid, tanh, leaky_relu, elu, gelu) a plain GEMM, then the Numba bias +
              activation pass, and the Numba activation backward
A layer whose bias gradient no epilogue produced gets it from BGRADA.

Plans. One nvmath Matmul per (product, layer, batch rows, operand addresses), planned on
first use and kept for the fit (the last short batch and each validation batch have their
own); every operand is a CuPy view of the Numba device array (CUDA Array Interface, no
copy), the result is written in place (beta 0). Everything runs on the legacy default stream
(STREAM), where Numba launches its kernels. FP32 compute by default; TF32
(COMPUTE_32F_FAST_TF32) only with allow_tf32.

Outputs that nvmath allocates per execution (the relu_aux masks, the bias gradients: from
CuPy's memory pool, no cudaMalloc after the first step) are read where they are: a mask is
handed to the next backward with reset_operands, a bias gradient is copied into db (one
small copy per layer, in place of the Numba column sum).

cuBLASLt's ReLU is max(z, 0), which turns NaN into 0 where the Numba kernels and the CPU keep
NaN: a fit that diverges still stops (the loss and the gradient norm become non-finite, and
the parameters are checked at the end of every epoch), possibly one step later than on the
CPU.
"""
from ..dense import IDENTITY, RELU, SOFTMAX

STREAM = 0  # the legacy default stream: Numba's launches without a stream, CuPy's default

BIAS = "BIAS"
RELU_AUX_BIAS = "RELU_AUX_BIAS"
BGRADA = "BGRADA"
DRELU_BGRAD = "DRELU_BGRAD"


def forward_epilog(act):
    """The cuBLASLt epilogue of a layer's forward with activation `act`, or None for a plain
    GEMM followed by the Numba bias + activation pass."""
    if act == RELU:
        return RELU_AUX_BIAS
    if act in (IDENTITY, SOFTMAX):
        return BIAS
    return None


def backward_epilogs(acts, l):
    """(dW epilogue, dx epilogue) of layer l's backward (acts: the layers' activation codes):
    dx of a layer after a relu layer applies relu' and sums that layer's bias gradient
    (DRELU_BGRAD); dW sums this layer's bias gradient (BGRADA) unless that was done so. The
    first layer has no dx (None)."""
    dx = None
    if l > 0 and acts[l - 1] == RELU:
        dx = DRELU_BGRAD
    dw = None if acts[l] == RELU else BGRADA
    return dw, dx


GEMM_CHOICES = ("auto", "numba")  # FASTNN_CUDA_GEMM: numba forces the Numba GEMM


def gemms_or_reason(dtype, simulated, dropout_hidden, allow_tf32, backend=None,
                    choice="auto"):
    """(LtGemms, None) when cuBLASLt can run this fit's GEMMs, else (None, why) and the
    Numba GEMM runs. backend: the nvmath binding (NvmathBackend() by default; tests pass a
    stand-in); choice: "auto", or "numba" for the Numba GEMM whatever is installed (the
    FASTNN_CUDA_GEMM environment variable)."""
    if choice not in GEMM_CHOICES:
        raise ValueError(f"FASTNN_CUDA_GEMM must be one of {GEMM_CHOICES}, got {choice!r}")
    if choice == "numba":
        return None, "FASTNN_CUDA_GEMM=numba asks for the Numba GEMM"
    if simulated:
        return None, "the CUDA simulator runs the Numba kernels"
    if str(dtype) != "float32":
        return None, "cuBLASLt GEMMs are used for float32 only"
    if dropout_hidden:
        return None, "hidden dropout is fused into the Numba GEMM's epilogue"
    if backend is None:
        try:
            backend = NvmathBackend()
        except ImportError as exc:
            return None, (f"nvmath-python and CuPy are needed for cuBLASLt "
                          f"(pip install 'fastnn[cuda]'): {exc}")
    return LtGemms(backend, allow_tf32), None


class NvmathBackend:
    """nvmath-python's Matmul on CuPy views of Numba device arrays."""

    def __init__(self):
        import cupy
        import nvmath
        from nvmath.linalg.advanced import Matmul, MatmulEpilog, MatmulOptions
        self.cupy = cupy
        self.Matmul = Matmul
        self.MatmulEpilog = MatmulEpilog
        self.MatmulOptions = MatmulOptions
        self.ComputeType = nvmath.linalg.ComputeType

    @staticmethod
    def pointer(arr):
        return arr.__cuda_array_interface__["data"][0]

    def wrap(self, arr):
        """A CuPy view of a Numba device array (CUDA Array Interface: no copy)."""
        return self.cupy.asarray(arr)

    def compute_type(self, allow_tf32):
        ct = self.ComputeType
        return ct.COMPUTE_32F_FAST_TF32 if allow_tf32 else ct.COMPUTE_32F

    def plan(self, a, b, c, epilog, inputs, allow_tf32):
        """A planned in-place Matmul c = a @ b (then the epilogue); a, b, c wrapped."""
        options = self.MatmulOptions(inplace=True, compute_type=self.compute_type(allow_tf32))
        mm = self.Matmul(a, b, c=c, beta=0.0, options=options, stream=STREAM)
        mm.plan(epilog=None if epilog is None else getattr(self.MatmulEpilog, epilog),
                epilog_inputs=inputs, stream=STREAM)
        return mm

    @staticmethod
    def execute(mm):
        """Run a planned Matmul; returns its auxiliary outputs ({} without)."""
        out = mm.execute(stream=STREAM)
        return out[1] if isinstance(out, tuple) else {}

    @staticmethod
    def reset_inputs(mm, inputs):
        mm.reset_operands(epilog_inputs=inputs, stream=STREAM)

    @staticmethod
    def copy(dst, src):
        """dst[...] = src on the device (dst wrapped, src an nvmath output)."""
        dst[...] = src.reshape(dst.shape)


class LtGemms:
    """The cuBLASLt GEMMs of one fit (see the module docstring); network.py calls forward and
    backward per layer in place of dense.dense_forward / dense_backward."""

    def __init__(self, backend, allow_tf32):
        self.backend = backend
        self.allow_tf32 = bool(allow_tf32)
        self.plans = {}  # key -> (Matmul, wrapped bias-gradient target or None)
        self.relu_aux = {}  # layer -> the relu_aux mask of its last forward

    def _plan(self, key, operands, epilog, inputs, bgrad):
        """The plan of `key` (product, layer, rows, operand addresses), made on first use:
        operands(wrap) gives the wrapped (A, B, C) of C = A @ B; bgrad: the Numba array a bias
        gradient output goes to, or None. Returns ((Matmul, wrapped bgrad), was cached)."""
        entry = self.plans.get(key)
        if entry is not None:
            return entry, True
        bk = self.backend
        if inputs is not None and "bias" in inputs:
            inputs = {"bias": bk.wrap(inputs["bias"])}
        mm = bk.plan(*operands(bk.wrap), epilog, inputs, self.allow_tf32)
        entry = self.plans[key] = (mm, None if bgrad is None else bk.wrap(bgrad))
        return entry, False

    def forward(self, l, a, z, x, W, b, act):
        """Layer l's z = x @ W + b, a = act(z) where the epilogue does it; returns True when a
        is done, False when the Numba bias + activation pass (dense.bias_activation_forward)
        still has to run on z, which then holds x @ W (no bias). softmax: z = x @ W + b, the
        row pass left to the caller."""
        epilog = forward_epilog(act)
        out = a if act in (RELU, IDENTITY) else z
        ptr = self.backend.pointer
        key = ("fwd", l, a.shape[0], ptr(x), ptr(W), ptr(out))
        # out.T (fo, B) = W.T (fo, fi) @ x.T (fi, B)
        (mm, _), _ = self._plan(key, lambda wrap: (wrap(W).T, wrap(x).T, wrap(out).T), epilog,
                                None if epilog is None else {"bias": b}, None)
        aux = self.backend.execute(mm)
        if epilog == RELU_AUX_BIAS:
            self.relu_aux[l] = aux["relu_aux"]
        return epilog is not None

    def backward(self, l, acts, dx, dW, db, dz, x, W, db_prev):
        """Layer l's dW = x.T @ dz and db (BGRADA, unless the layer after it gave db already),
        and dx = dz @ W.T when dx is not None, with relu' and db_prev (the previous layer's
        bias gradient) fused when that layer is relu (DRELU_BGRAD). Returns True when dx is
        the previous layer's delta already (or there is no dx), False when the Numba
        activation backward still has to run on it."""
        dw_epilog, dx_epilog = backward_epilogs(acts, l)
        bk = self.backend
        ptr = bk.pointer
        B = dz.shape[0]
        # dW.T (fo, fi) = dz.T (fo, B) @ x (B, fi)
        key = ("dW", l, B, ptr(dz), ptr(x), ptr(dW))
        (mm, target), _ = self._plan(key, lambda wrap: (wrap(dz).T, wrap(x), wrap(dW).T),
                                     dw_epilog, None, None if dw_epilog is None else db)
        aux = bk.execute(mm)
        if dw_epilog is not None:
            bk.copy(target, aux["bgrada"])
        if dx is None:
            return True
        # dx.T (fi, B) = W (fi, fo) @ dz.T (fo, B)
        inputs = None if dx_epilog is None else {"relu_aux": self.relu_aux[l - 1]}
        key = ("dx", l, B, ptr(dz), ptr(W), ptr(dx))
        (mm, target), cached = self._plan(key, lambda wrap: (wrap(W), wrap(dz).T, wrap(dx).T),
                                          dx_epilog, inputs,
                                          None if dx_epilog is None else db_prev)
        if cached and inputs is not None:  # this step's mask
            bk.reset_inputs(mm, inputs)
        aux = bk.execute(mm)
        if dx_epilog is None:
            return False
        bk.copy(target, aux["drelu_bgrad"])
        return True
