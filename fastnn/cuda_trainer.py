"""The device="cuda" training path of fastnn.Trainer: the same steps as the CPU loop, launched
as CUDA kernels over buffers that stay on the GPU for the whole fit.

Copied to the device once per fit: the training (and validation) data and targets, the
parameters and the optimizer state. Per epoch: the row order (N int64), and back to the host
the per-row losses and correct counts (2 N float64) and the per-layer gradient norms. Per chunk
(about CHUNK_SECONDS of steps): one 4-byte divergence flag, which is also the synchronisation
point for the progress bar and Ctrl-C. The parameters and optimizer state come back to the
host at the end of every epoch (a few MB: small next to an epoch), are checked to be finite and
only then replace the model's; callbacks may read or replace model.params, and what they leave
there goes back to the device.

Guarantees kept from the CPU path: during an epoch the host model and optimizer hold the end
of the last completed epoch, so on divergence (non-finite loss or gradient, where the update
kernels skip every step from the first bad one; non-finite weights, state or validation loss),
on Ctrl-C or on any error mid-epoch, the model, optimizer state and step count describe that
epoch, as History does.

Nothing here imports numba.cuda until a fit runs, and `require_gpu()` turns a missing GPU
into one clear error.
"""
import time

import numpy as np

from .model import LOSSES
from .trainer import (
    CHUNK_SECONDS,
    EVAL_BATCH,
    History,
    TrainingDiverged,
    _catch_sigint,
    _mean_target_variance,
    _r2_score,
    progress_bar,
    shuffle_order,
)

DEVICES = ("cpu", "cuda")


class DeviceWorkspace:
    """Device activation, pre-activation and delta buffers for batches of up to `capacity`
    rows (the layout of fastnn.model.Workspace)."""

    def __init__(self, cuda, model, capacity):
        units = int(np.sum(model.layer_sizes[1:]))
        dt = model.dtype
        self.capacity = capacity
        self.A = cuda.device_array(capacity * units, dtype=dt)  # act(z), every layer
        self.Z = cuda.device_array(capacity * units, dtype=dt)  # kept pre-activations
        self.D = cuda.device_array(capacity * units, dtype=dt)  # deltas dL/dz
        self.xb = cuda.device_array(capacity * model.layer_sizes[0], dtype=dt)  # gathered batch
        self.yb_index = cuda.device_array(capacity, dtype=np.int64)
        self.yb_float = cuda.device_array(capacity * model.layer_sizes[-1], dtype=dt)


def _to_device(cuda, y, shape_if_empty, dtype):
    if y.shape[0] == 0:
        return cuda.device_array(shape_if_empty, dtype=dtype)
    return cuda.to_device(np.ascontiguousarray(y))


def fit_cuda(trainer, X, y_index, y_float, val, initial_epoch=0):
    """Trainer._run for device="cuda": same arguments (validated host arrays), same History."""
    from ._kernels.cuda import require_gpu
    cuda = require_gpu()
    from ._kernels.cuda import network as K

    model, opt = trainer.model, trainer.optimizer
    dt = model.dtype
    N = X.shape[0]
    k = model.n_outputs
    L = model.n_layers
    batch = N if trainer.batch_size is None else min(trainer.batch_size, N)
    loss_code = LOSSES[trainer.loss]
    classifier = trainer.loss != "mse"
    per_row = k if trainer.loss == "binary_cross_entropy" else 1  # predictions counted per row
    train_var = _mean_target_variance(y_float) if not classifier else None
    val_var = _mean_target_variance(val[2]) if not classifier and val is not None else None
    sizes, acts, w_off, b_off, unit_off = model._kernel_args()[1:]
    code, hyper, state = opt._kernel_args(model.params)  # checked, bound to this model
    clip = trainer.clip_grad_norm  # read once: validated by fit

    # everything the fit touches, on the device once
    d_X = cuda.to_device(np.ascontiguousarray(X))
    d_yi = _to_device(cuda, y_index, 0, np.int64)
    d_yf = _to_device(cuda, y_float, (0, k), dt)
    ws = DeviceWorkspace(cuda, model, batch)
    d_params = cuda.to_device(model.params)
    d_grads = cuda.to_device(np.zeros_like(model.params))
    d_state = cuda.to_device(state)
    d_order = cuda.device_array(N, dtype=np.int64)
    row_loss = cuda.device_array(N, dtype=np.float64)
    row_correct = cuda.device_array(N, dtype=np.float64)
    d_grad_norms = cuda.device_array(L, dtype=np.float64)
    bounds = cuda.to_device(K.segment_bounds(sizes, w_off))
    partials = cuda.device_array((2 * L, K.NORM_BLOCKS), dtype=np.float64)
    control = cuda.to_device(np.array([1.0, 0.0]))
    status = cuda.device_array(1, dtype=np.int32)
    zeros_l = np.zeros(L)
    zero_status = np.zeros(1, dtype=np.int32)
    # the epoch's result lands here first and reaches the model only once it is all finite
    new_params = np.empty_like(model.params)
    new_state = np.empty_like(state)
    if val is not None:
        Xv, yvi, yvf = val
        Nv = Xv.shape[0]
        dv = (cuda.to_device(np.ascontiguousarray(Xv)), _to_device(cuda, yvi, 0, np.int64),
              _to_device(cuda, yvf, (0, k), dt))
        val_ws = DeviceWorkspace(cuda, model, min(EVAL_BATCH, Nv))
        val_loss = cuda.device_array(Nv, dtype=np.float64)
        val_correct = cuda.device_array(Nv, dtype=np.float64)
        val_status = cuda.device_array(1, dtype=np.int32)
        no_out = cuda.device_array((0, k), dtype=dt)

    trainer.stop_training = False
    history = trainer.history = History()
    interrupted = []
    restore_sigint = _catch_sigint(interrupted)
    # Between epochs the host model and optimizer equal the device copies; during an epoch
    # the host keeps the last completed epoch, which is the roll-back point.
    good_step = int(opt.step_count[0])
    committed = True

    def diverged(epoch, what):
        opt.step_count[0] = good_step  # the host weights and state were never overwritten
        where = f"the end of epoch {epoch - 1}" if epoch else "the start of this fit"
        return TrainingDiverged(
            f"training diverged in epoch {epoch} ({what}); the model holds its last finite "
            f"weights, from {where}, and History its {epoch - initial_epoch} finite "
            f"epoch(s). Try a lower learning rate (lr={opt.lr:g} now) or clip_grad_norm=1.0.")

    bar = progress_bar((trainer.epochs - initial_epoch) * N, trainer.verbose)
    try:
        trainer._callbacks("set_trainer", trainer)
        trainer._callbacks("on_train_begin", {})
        for epoch in range(initial_epoch, trainer.epochs):
            trainer._callbacks("on_epoch_begin", epoch, {})
            # read once per epoch: schedules change lr, callbacks any setting; a new state
            # layout (momentum switched on, amsgrad, ...) takes effect here
            code, hyper, bound = opt._kernel_args(model.params)
            if bound is not state:  # a new layout, or a state loaded or reset by a callback
                state = bound
                d_state = cuda.to_device(state)
                new_state = np.empty_like(state)
            if trainer.callbacks:  # callbacks may replace the weights or the state
                d_params.copy_to_device(model.params)
                if state.size:
                    d_state.copy_to_device(state)
            good_step = int(opt.step_count[0])
            committed = False
            order = (shuffle_order(trainer.shuffle_seed, epoch, N) if trainer.shuffle
                     else np.arange(N, dtype=np.int64))
            d_order.copy_to_device(order)
            d_grad_norms.copy_to_device(zeros_l)
            status.copy_to_device(zero_status)
            steps = 0
            t0 = time.perf_counter()
            pos = 0
            while pos < N:
                tc = time.perf_counter()
                done = K.train_steps(
                    d_X, d_yi, d_yf, d_order, pos, trainer._chunk_steps, batch,
                    d_params, d_grads, sizes, acts, w_off, b_off, unit_off, loss_code,
                    code, hyper, d_state, opt.step_count, clip, trainer.alpha,
                    ws.xb, ws.yb_index, ws.yb_float, ws.A, ws.Z, ws.D, row_loss, row_correct,
                    d_grad_norms, bounds, partials, control, status)
                bad = status.copy_to_host()[0] != 0  # waits for the chunk's kernels
                elapsed = time.perf_counter() - tc
                steps += done
                advanced = min(done * batch, N - pos)
                pos += advanced
                bar.update(advanced)
                if bad:
                    raise diverged(epoch, "non-finite loss or gradient")
                if interrupted:  # Ctrl-C: stop at this chunk boundary, roll back
                    opt.step_count[0] = good_step
                    raise KeyboardInterrupt
                if done and pos < N:  # aim for CHUNK_SECONDS per chunk
                    rate = done / max(elapsed, 1e-6)
                    trainer._chunk_steps = int(min(max(rate * CHUNK_SECONDS, 1), 1 << 20))
            seconds = time.perf_counter() - t0
            d_params.copy_to_host(new_params)
            if state.size:
                d_state.copy_to_host(new_state)
            # a finite gradient times a huge lr can still overflow the weights or the state
            if not (np.isfinite(new_params).all() and np.isfinite(new_state).all()):
                raise diverged(epoch, "an update made the weights or optimizer state "
                                      "non-finite")
            logs = {"loss": float(row_loss.copy_to_host().sum() / N)}
            if classifier:
                logs["accuracy"] = float(row_correct.copy_to_host().sum() / (N * per_row))
            else:
                logs["r2"] = _r2_score(logs["loss"], train_var)
            if val is not None:
                K.evaluate_batches(dv[0], dv[1], dv[2], val_ws.capacity, d_params, sizes, acts,
                                   w_off, b_off, unit_off, loss_code, val_ws.A, val_ws.Z,
                                   val_ws.D, val_loss, val_correct, val_status, no_out)
                vloss = float(val_loss.copy_to_host().sum() / Nv)
                if not np.isfinite(vloss):
                    raise diverged(epoch, "non-finite validation loss")
                logs["val_loss"] = vloss
                if classifier:
                    logs["val_accuracy"] = float(val_correct.copy_to_host().sum()
                                                 / (Nv * per_row))
                else:
                    logs["val_r2"] = _r2_score(vloss, val_var)
            logs["lr"] = float(hyper[0])
            logs["time"] = seconds
            logs["samples_per_sec"] = N / seconds if seconds > 0 else float("inf")
            logs["grad_norm"] = (d_grad_norms.copy_to_host() / max(steps, 1)).tolist()
            np.copyto(model.params, new_params)
            np.copyto(state, new_state)
            committed = True
            history.record(epoch, logs)
            trainer._show_epoch(bar, epoch, logs)
            trainer._callbacks("on_epoch_end", epoch, logs)  # changes reach the device above
            if interrupted:  # Ctrl-C during validation or callbacks: History is complete
                raise KeyboardInterrupt
            if trainer.stop_training:
                break
        trainer._callbacks("on_train_end", {})
    except BaseException:
        if not committed:  # an error mid-epoch: the host holds the last completed epoch
            opt.step_count[0] = good_step
        # callbacks such as EarlyStopping restore their best weights on the way out
        trainer._callbacks("on_train_abort")
        raise
    finally:
        bar.close()
        restore_sigint()
    return history
