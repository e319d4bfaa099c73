"""The CPU step backend: train_steps on fastnn's own threads (fastnn/_kernels/sync.py), over
model.params and optimizer.state in place.

Set up once per fit: the workspaces, the gradient buffer, the per-thread sums and the k-split
scratch, the BLAS pools (fastnn/_threads.py) and the floating-point mode (train_steps flushes
denormals and restores the caller's mode; close() restores it even if a kernel raised inside).
"""
import numpy as np

from .. import _threads
from .._kernels.bundles import Data, OptimizerState
from .._kernels.fpmode import fp_mode, set_fp_mode
from .._kernels.layer import scratch_size
from .._kernels.static import Static
from .._kernels.steps import ABORTED, DIVERGED, train_steps
from .._validation import all_finite
from ..model import Workspace
from .base import StepsBase

EVAL_BATCH = 1024  # validation rows per batch


class CpuSteps(StepsBase):
    """See fastnn._steps for the protocol."""

    def __init__(self, model, optimizer, loss, batch, clip_norm, alpha, X, y_index, y_float,
                 val, dropout_seed=0):
        super().__init__(model, optimizer, loss, batch, clip_norm, alpha, dropout_seed)
        self.data = Data(X, y_index, y_float)
        self.val = val
        # without dropout the kernels get None and compile no dropout code (dropout.dropping)
        self.kernel_drop = self.drop if np.any(self.drop.threshold) else None
        self.N = X.shape[0]
        self.ws = Workspace(model, batch)
        self.val_ws = (Workspace(model, min(EVAL_BATCH, val[0].shape[0])) if val is not None
                       else None)
        self.grads = np.zeros_like(model.params)
        self.n_threads = _threads.train_threads(model.layer_sizes, batch)
        self.stats = np.zeros((self.n_threads, 4))  # one row per thread, summed per epoch
        self.norms = np.zeros(model.n_layers)
        self.partial = np.zeros((self.n_threads, model.n_layers + 2))  # shared per step
        self.scratch = np.empty((self.n_threads, scratch_size(model.layer_sizes)), model.dtype)
        self.order = None
        self.opt = None  # the epoch's OptimizerState
        self.state = None  # the optimizer state (bound at begin_epoch)
        self.good_params = np.empty_like(model.params)  # the roll-back point (save)
        self.good_state = None
        self._caller_fp_mode = fp_mode()
        self._restore_threads = _threads.limit(model.layer_sizes, batch, self.n_threads)

    def begin_epoch(self, order, code, hyper, state):
        self.order = order
        self.state = state
        # the rule's code as a compile-time choice: the fit compiles only its own rule
        self.opt = OptimizerState(Static(code), hyper, state, self.optimizer.step_count,
                                  self.clip_norm, self.alpha)
        self.stats[:] = 0
        self.norms[:] = 0

    def run(self, start, n_steps):
        model = self.model
        status, done = steps_on_threads(
            self.n_threads, self.partial, self.scratch,
            self.data, self.order, start, n_steps, self.batch, model.params, self.grads,
            model.layout, self.kernel_drop, Static(self.loss_code), self.opt, self.ws.buffers,
            self.stats, self.norms)
        return status == DIVERGED, done

    def epoch_metrics(self):
        totals = self.stats.sum(axis=0)
        return float(totals[0] / totals[1]), (float(totals[2] / totals[3]) if totals[3]
                                              else None)

    def grad_norms(self, n_steps):
        return (self.norms / max(n_steps, 1)).tolist()

    def evaluate(self):
        """Validation loss and accuracy, on the training loop's threads."""
        Xv, yi, yf = self.val
        model = self.model
        stats = _threads.evaluate_on_threads(
            model.layout, model.params, Xv, yi, yf, self.val_ws.capacity, self.loss_code,
            np.empty((0, model.n_outputs), model.dtype), self.val_ws, self.n_threads,
            self.scratch)
        return float(stats[0] / stats[1]), (float(stats[2] / stats[3]) if stats[3] else None)

    def save(self):
        np.copyto(self.good_params, self.model.params)
        if self.good_state is None or self.good_state.shape != self.state.shape:
            self.good_state = np.empty_like(self.state)
        np.copyto(self.good_state, self.state)

    def restore(self):
        np.copyto(self.model.params, self.good_params)
        if self.good_state is not None and self.good_state.shape == self.state.shape:
            np.copyto(self.state, self.good_state)

    def finite(self):
        return all_finite(self.model.params) and all_finite(self.state)

    def copy_back(self):
        pass  # the kernels trained model.params and optimizer.state themselves

    def copy_in(self):
        pass

    def close(self):
        set_fp_mode(self._caller_fp_mode)
        self._restore_threads()


def steps_on_threads(n_threads, partial, scratch, *args):
    """train_steps(*args) run by n_threads threads together (_threads.run_on_threads);
    returns its (status, steps done)."""
    status, done = _threads.run_on_threads(train_steps, n_threads, args, partial, scratch)
    if status == ABORTED:  # pragma: no cover - only after an error, raised above
        raise RuntimeError("a training thread stopped without an error")
    return status, done
