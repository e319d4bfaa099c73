"""Step backends: what runs the compiled training steps for `fastnn.Trainer`, one per device.

The Trainer owns the epoch loop once (chunks, roll-back on divergence, Ctrl-C, callbacks,
History, progress); a backend owns the buffers and the kernels of one device and answers the
same few calls:

    steps = open_steps(device, model, optimizer, loss, batch, clip_norm, alpha, X, y_index,
                       y_float, val, dropout_seed,  # bind the (validated) data, allocate
                       allow_tf32=False)            # everything once
    steps.begin_epoch(order, code, hyper, state)  # the epoch's row order and optimizer
                                          # (optimizer._kernel_args()); zero its sums
    bad, done = steps.run(start, n)       # up to n steps from row start: (diverged?, steps)
    steps.epoch_metrics()                 # (mean loss, accuracy or None) of the epoch's steps
    steps.grad_norms(n_steps)             # per-layer ||dW_l|| averaged over the epoch's steps
    steps.evaluate()                      # (validation loss, accuracy or None)
    steps.save()                          # the parameters and optimizer state now are the
                                          # roll-back point (kept where they live)
    steps.restore()                       # back to that point, in model.params and
                                          # optimizer.state too
    steps.finite()                        # whether the parameters and state are all finite
    steps.copy_back()                     # the device's parameters and optimizer state ->
                                          # model.params and optimizer.state (when stale)
    steps.copy_in()                       # model.params and optimizer.state -> the device
    steps.close()                         # restore what the backend changed (threads, FP mode)

The Trainer decides when to save, restore and check (the epoch loop); a backend keeps no
History and calls no callback. On the CPU the kernels train model.params and optimizer.state
in place (copy_back/copy_in do nothing); on the GPU they train device copies, the roll-back
point and the finiteness check stay on the device, and the host sees the parameters only when
the Trainer asks (copy_back: before callbacks, at the end of fit, after an error). A new
per-step feature goes into the kernels of both devices and into `run` here, once per device.
"""
from .cpu import CpuSteps

__all__ = ["CpuSteps", "open_steps"]


def open_steps(device, model, optimizer, loss, batch, clip_norm, alpha, X, y_index, y_float,
               val, dropout_seed=0, allow_tf32=False):
    """The backend for `device` ("cpu" or "cuda"), bound to this fit's data (see the module
    docstring). val: None or (X_val, y_val_index, y_val_float); dropout_seed keys the model's
    dropout masks (model.dropout_layout) together with the optimizer's step count;
    allow_tf32: TF32 in the GPU's cuBLASLt GEMMs (the CPU has no such mode)."""
    args = (model, optimizer, loss, batch, clip_norm, alpha, X, y_index, y_float, val,
            dropout_seed)
    if device == "cuda":
        from .cuda import CudaSteps  # numba.cuda is imported only when a GPU fit runs
        return CudaSteps(*args, allow_tf32=allow_tf32)
    return CpuSteps(*args)
