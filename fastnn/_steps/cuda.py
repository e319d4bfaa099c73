"""The CUDA step backend (device="cuda"): the same steps as the CPU loop, launched as CUDA
kernels over buffers that stay on the GPU for the whole fit.

Copied to the device once per fit: the training (and validation) data and targets, the
parameters and the optimizer state. Per epoch: the row order (N int64), and back to the host
the per-row losses and correct counts (2 N float64), the per-layer gradient norms and one
4-byte finiteness flag. Per chunk (about CHUNK_SECONDS of steps): one 4-byte divergence flag,
which is also the synchronisation point for the progress bar and Ctrl-C.

The roll-back point (save/restore) is a device copy of the parameters and optimizer state,
and the end-of-epoch check that they are finite runs on the device (network.check_finite):
nothing the size of the model crosses to the host per epoch. The host model and optimizer are
brought up to date (copy_back) only when the Trainer asks: before callbacks, at the end of the
fit, after an error (restore also writes the roll-back point to the host); what the callbacks
leave in model.params goes back to the device (copy_in). The update kernels skip every step
from the first non-finite loss or gradient on.

The GEMMs go through cuBLASLt (nvmath-python) where _kernels/cuda/cublaslt.py finds that it
applies (float32 on a real GPU, no hidden dropout, FASTNN_CUDA_GEMM not "numba"; allow_tf32
for TF32), else through the Numba GEMM; `gemm_note` says why not.

Nothing here imports numba.cuda until a fit runs, and `require_gpu()` turns a missing GPU
into one clear error.
"""
import os

import numba
import numpy as np

from .._kernels.bundles import Data, OptimizerState
from .._kernels.cuda import require_gpu
from ..model import LOSSES, Workspace
from .base import StepsBase
from .cpu import EVAL_BATCH


def _to_device(cuda, y, shape_if_empty, dtype):
    if y.shape[0] == 0:
        return cuda.device_array(shape_if_empty, dtype=dtype)
    return cuda.to_device(np.ascontiguousarray(y))


class CudaSteps(StepsBase):
    """See fastnn._steps for the protocol."""

    def __init__(self, model, optimizer, loss, batch, clip_norm, alpha, X, y_index, y_float,
                 val, dropout_seed=0, allow_tf32=False):
        cuda = require_gpu()
        from .._kernels.cuda import cublaslt, network, steps
        from .._kernels.cuda.bundles import RowStats, Team
        from .._kernels.cuda.dropout import dropping
        super().__init__(model, optimizer, loss, batch, clip_norm, alpha, dropout_seed)
        self.kernels = steps
        dt = model.dtype
        k = model.n_outputs
        L = model.n_layers
        self.N = N = X.shape[0]
        # predictions counted per row: one for cross_entropy, k for binary_cross_entropy
        self.per_row = k if loss == "binary_cross_entropy" else 1
        # everything the fit touches, on the device once
        self.data = Data(cuda.to_device(np.ascontiguousarray(X)),
                         _to_device(cuda, y_index, 0, np.int64),
                         _to_device(cuda, y_float, (0, k), dt))
        # Z only for the layers whose backward (or loss) reads z
        z_units = network.kept_units(model.layout.sizes, model.layout.acts)
        self.ws = Workspace(model, batch, cuda.device_array, z_units)
        self.params = cuda.to_device(model.params)
        self.grads = cuda.to_device(np.zeros_like(model.params))
        self.cuda = cuda
        self.network = network
        self.host_state = self.state = None  # bound at begin_epoch
        self.good_params = cuda.device_array_like(self.params)  # the roll-back point
        self.good_state = None
        self.stale = False  # whether the device has moved on from model.params / state
        self.finite_flag = cuda.device_array(1, dtype=np.int32)
        self.opt = None  # the epoch's OptimizerState
        self.order = cuda.device_array(N, dtype=np.int64)
        self.stats = RowStats(cuda.device_array(N, dtype=np.float64),
                              cuda.device_array(N, dtype=np.float64),
                              cuda.device_array(1, dtype=np.int32))
        self.norms = cuda.device_array(L, dtype=np.float64)
        # the GEMMs: cuBLASLt where it applies, else the Numba GEMM (gemm_note says why)
        self.gemms, self.gemm_note = cublaslt.gemms_or_reason(
            dt, bool(numba.config.ENABLE_CUDASIM),
            any(dropping(self.drop, s) for s in range(1, L)), allow_tf32,
            choice=os.environ.get("FASTNN_CUDA_GEMM", "auto"))
        self.team = Team(cuda.to_device(network.segment_bounds(model.layout.sizes,
                                                               model.layout.w_off)),
                         cuda.device_array((2 * L, network.NORM_BLOCKS), dtype=np.float64),
                         cuda.to_device(np.array([1.0, 0.0])), self._colsum_scratch(batch),
                         self.gemms)
        self._zeros_l = np.zeros(L)
        self._zero_status = np.zeros(1, dtype=np.int32)
        self.val = None
        if val is not None:
            Xv, yvi, yvf = val
            Nv = Xv.shape[0]
            self.val = Data(cuda.to_device(np.ascontiguousarray(Xv)),
                            _to_device(cuda, yvi, 0, np.int64), _to_device(cuda, yvf, (0, k), dt))
            self.val_ws = Workspace(model, min(EVAL_BATCH, Nv), cuda.device_array, z_units)
            self.val_stats = RowStats(cuda.device_array(Nv, dtype=np.float64),
                                      cuda.device_array(Nv, dtype=np.float64),
                                      cuda.device_array(1, dtype=np.int32))
            self.no_out = cuda.device_array((0, k), dtype=dt)

    def _colsum_scratch(self, batch):
        """The bias-gradient column sums' scratch (dense.column_sum), None for one chunk."""
        from .._kernels.cuda import dense
        chunks, _ = dense.column_sum_chunks(batch)
        if chunks == 1:
            return None
        width = int(max(self.model.layout.sizes[1:]))
        return self.cuda.device_array((chunks, width), dtype=np.float64)

    def begin_epoch(self, order, code, hyper, state):
        if state is not self.host_state:  # the first epoch, or a new layout or loaded state
            self.host_state = state
            self.state = self.cuda.to_device(state)
            self.good_state = self.cuda.device_array_like(self.state)
        self.opt = OptimizerState(code, hyper, self.state, self.optimizer.step_count,
                                  self.clip_norm, self.alpha)
        self.order.copy_to_device(order)
        self.norms.copy_to_device(self._zeros_l)
        self.stats.status.copy_to_device(self._zero_status)

    def run(self, start, n_steps):
        done = self.kernels.train_steps(
            self.data, self.order, start, n_steps, self.batch, self.params, self.grads,
            self.model.layout, self.drop, self.loss_code, self.opt, self.ws.buffers, self.stats,
            self.norms, self.team)
        self.stale = True
        bad = self.stats.status.copy_to_host()[0] != 0  # waits for the chunk's kernels
        return bad, done

    def _metrics(self, stats):
        """(mean loss, accuracy or None) from the per-row results."""
        n = stats.loss.shape[0]
        loss = float(stats.loss.copy_to_host().sum() / n)
        if self.loss_code == LOSSES["mse"]:
            return loss, None
        return loss, float(stats.correct.copy_to_host().sum() / (n * self.per_row))

    def epoch_metrics(self):
        return self._metrics(self.stats)

    def grad_norms(self, n_steps):
        return (self.norms.copy_to_host() / max(n_steps, 1)).tolist()

    def evaluate(self):
        self.kernels.evaluate_batches(self.val, self.val_ws.capacity, self.params,
                                      self.model.layout, self.loss_code, self.val_ws.buffers,
                                      self.val_stats, self.no_out, self.team)
        return self._metrics(self.val_stats)

    def save(self):
        self.good_params.copy_to_device(self.params)  # device to device
        if self.host_state.size:
            self.good_state.copy_to_device(self.state)

    def restore(self):
        self.params.copy_to_device(self.good_params)
        if self.host_state.size:
            self.state.copy_to_device(self.good_state)
        self.stale = True
        self.copy_back()

    def finite(self):
        flag = self.finite_flag
        flag.copy_to_device(self._zero_status)
        self.network.check_finite(flag, self.params)
        if self.host_state.size:
            self.network.check_finite(flag, self.network.flat(self.state))
        return flag.copy_to_host()[0] == 0

    def copy_back(self):
        if not self.stale:
            return
        self.params.copy_to_host(self.model.params)
        if self.host_state.size:
            self.state.copy_to_host(self.host_state)
        self.stale = False

    def copy_in(self):
        self.params.copy_to_device(self.model.params)
        if self.host_state.size:
            self.state.copy_to_device(self.host_state)
        self.stale = False

    def close(self):
        pass
