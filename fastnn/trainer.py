"""Trainer: drives the compiled training loop and does everything that happens between chunks.

Python runs once per chunk (an epoch, or about 0.1 s of steps within a long epoch): shuffling,
metrics, progress, callbacks, Ctrl-C and divergence handling. The steps themselves, gather,
forward, loss, backward and the fused optimizer update, run in one Numba call per chunk.
"""
import numbers
import signal
import threading
import time

import numpy as np
from tqdm.auto import tqdm

from ._steps import open_steps
from ._validation import (
    check_flag,
    check_number,
    check_positive_int,
    check_seed,
    check_targets,
)
from .data import validation_split_indices
from .model import MLP, resolve_loss
from .optim import Adam, Optimizer

CHUNK_SECONDS = 0.1  # how long the compiled loop runs before Python looks at the world again


class TrainingDiverged(FloatingPointError):
    """The loss or a gradient became NaN or infinite. The model holds the weights of the last
    finite epoch (or the restored best, with EarlyStopping(restore_best_weights=True))."""


class History:
    """Per-epoch records, Keras-style: history.history["loss"][e] is epoch e's value.

    Keys: loss, val_loss (with validation data), accuracy and val_accuracy (classifiers),
    r2 and val_r2 (mse loss: the coefficient of determination 1 - SSE/SST, variance-weighted
    over outputs, i.e. sklearn's r2_score(multioutput="variance_weighted"), which is the plain
    R^2 for one output; r2, like loss, is averaged over the epoch's steps while the weights
    move), lr, time (seconds), samples_per_sec, grad_norm (per layer: ||dW_l|| averaged over
    the epoch's steps; `grad_norms` gives them as an (epochs, layers) array)."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def record(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"

    @property
    def grad_norms(self):
        """(epochs, layers) float64 array: ||dW_l|| averaged over each epoch's steps."""
        norms = self.history.get("grad_norm", [])
        if not norms:
            return np.empty((0, 0))
        return np.array(norms, dtype=np.float64).reshape(len(norms), -1)

    def plot(self, path=None, **kwargs):
        """Learning curves and per-layer gradient norms (fastnn.plot.plot_history); writes a
        PNG when path is given. Returns the matplotlib Figure. Needs matplotlib."""
        from .plot import plot_history
        return plot_history(self, path, **kwargs)


class Trainer:
    """Minibatch gradient descent on an MLP with a compiled inner loop.

    Parameters
    ----------
    model : MLP
    optimizer : fastnn.optim.Optimizer, default Adam(lr=1e-3)
    loss : "mse", "cross_entropy" or "binary_cross_entropy"; default from the model's output
        (softmax -> cross_entropy, sigmoid -> binary_cross_entropy, identity -> mse).
    batch_size : int, or None for full-batch gradient descent (one step per epoch). The last
        partial batch of an epoch is used, not dropped. A batch_size larger than the training
        set is clamped to its size (one full-batch step per epoch), as Keras and torch do.
    epochs : int, passes over the training data; with fit(initial_epoch=k) the index of the
        last epoch plus one, as in Keras (epochs k .. epochs-1 run).
    shuffle : reshuffle the training rows every epoch. Epoch e walks
        shuffle_order(seed, e, n): the order depends on (seed, epoch) only, so a fit resumed
        at any epoch (fit(initial_epoch=)) replays the uninterrupted one. With seed=None a
        seed is drawn once per Trainer (`trainer.shuffle_seed`).
    seed : int or None, seeds the shuffles and keys the model's dropout masks: the mask of
        optimizer step t is a hash of (seed, t, layer, row, unit), so the same seed gives the
        same fit, and a fit resumed with the same seed and optimizer (its step count) draws
        the masks that the uninterrupted fit would. With None (or a numpy seed object) the
        dropout key is drawn once per Trainer from fresh entropy (from `seed` itself when it
        is a SeedSequence or Generator).
    callbacks : objects with any of on_train_begin(logs), on_epoch_begin(epoch, logs),
        on_epoch_end(epoch, logs), on_train_end(logs), and optionally set_trainer(trainer)
        and on_train_abort() (called instead of on_train_end when fit raises); see
        fastnn.Callback. A callback stops training by setting trainer.stop_training = True.
    clip_grad_norm : float or None, rescale the gradient to this global L2 norm when larger
        (torch.nn.utils.clip_grad_norm_), fused into the update.
    alpha : float >= 0, scikit-learn's L2 penalty on the weight matrices (not the biases): a
        batch of B rows adds alpha / 2 * sum(W^2) / B to its loss (in History's `loss`, not in
        `val_loss`) and alpha * W / B to the weights' gradient, fused into the update after
        clipping (like weight_decay; `grad_norm` is the data gradient's).
    verbose : 0 silent; 1 or 2 a progress bar (2, Keras' one line per epoch, is accepted and
        shows the same bar).
    device : "cpu" (default) or "cuda": the same steps as CUDA kernels, with data, parameters
        and optimizer state on the GPU for the whole fit (fastnn/_steps/cuda.py).
    allow_tf32 : bool, default False. With device="cuda" and float32, lets the cuBLASLt
        GEMMs (when nvmath-python is installed) round their inputs to TF32 on the tensor cores:
        several times faster on Ampere and later, results ~1e-3 relative from FP32. The
        flag of this Trainer's fits, where torch's torch.backends.cuda.matmul.allow_tf32 is
        global; False (the default) keeps FP32 GEMMs, as torch's default does. No effect on
        device="cpu" (like torch's flag, it concerns CUDA matmuls only), in float64, or on
        the Numba GEMM (no tensor cores there).
    """

    def __init__(self, model, optimizer=None, loss=None, batch_size=32, epochs=10, shuffle=True,
                 seed=None, callbacks=None, clip_grad_norm=None, verbose=1,
                 device="cpu", alpha=0.0, allow_tf32=False):
        if not isinstance(model, MLP):
            raise TypeError(f"model must be a fastnn.MLP, got {type(model).__name__}")
        if optimizer is None:
            optimizer = Adam()
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastnn.optim optimizer (e.g. "
                            f"fastnn.optim.Adam()), got {type(optimizer).__name__}")
        self.model = model
        self.optimizer = optimizer
        self.loss = resolve_loss(loss, model.output)
        self.batch_size = check_positive_int(batch_size, "batch_size", allow_none=True)
        self.epochs = check_positive_int(epochs, "epochs")
        self.shuffle = check_flag(shuffle, "shuffle")
        self.seed = check_seed(seed)
        if callbacks is not None and not isinstance(callbacks, (list, tuple)):
            raise TypeError(f"callbacks must be a list of callback objects, got {callbacks!r}")
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not any(hasattr(cb, h) for h in ("on_epoch_end", "on_epoch_begin",
                                                 "on_train_begin", "on_train_end")):
                raise TypeError(f"callback {cb!r} has none of the callback methods "
                                f"(on_epoch_end, on_epoch_begin, on_train_begin, on_train_end)")
        self.clip_grad_norm = (0.0 if clip_grad_norm is None else
                               check_number(clip_grad_norm, "clip_grad_norm", low=0.0,
                                            low_open=True))
        self.alpha = check_number(alpha, "alpha", low=0.0)
        if not (isinstance(verbose, (numbers.Integral, np.bool_)) and verbose in (0, 1, 2)):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        self.verbose = int(verbose)
        if not isinstance(device, str) or device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda":  # fail here, not mid-fit, when no GPU is usable
            from ._kernels.cuda import require_gpu
            require_gpu()
        self.device = device
        self.allow_tf32 = check_flag(allow_tf32, "allow_tf32")
        self.stop_training = False
        self.history = None
        self.shuffle_seed = _shuffle_seed(self.seed)
        self._dropout_seed = _dropout_key(self.seed)
        self._chunk_steps = 8  # adapted so that a chunk takes about CHUNK_SECONDS

    def _callbacks(self, hook, *args):
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(*args)

    def fit(self, X, y, validation_data=None, validation_split=0.0, initial_epoch=0):
        """Train; returns a History. For reconstruction (autoencoders) pass fit(X, X).

        initial_epoch : the epoch to start from (Keras's argument): epochs initial_epoch ..
            self.epochs - 1 run, numbered so in History and callbacks, with those epochs'
            shuffles. A model and optimizer (state and step count) carried over from a fit
            that ended after epoch initial_epoch - 1 continue it bit for bit.

        validation_data : (X_val, y_val) evaluated after every epoch.
        validation_split : fraction in [0, 1) of the LAST samples (before shuffling, as in
            Keras) held out as validation data when validation_data is not given.

        X, y and validation_data are copied when fit starts (as Keras does): changing the
        arrays during fit (a callback relabelling, another thread) does not reach this fit.
        So are the Trainer's own settings (batch_size, clip_grad_norm, ...); the optimizer's
        hyperparameters are checked and read again at every epoch boundary.

        Errors leave a consistent state: the model's weights, the optimizer's state and
        step count, and `trainer.history` all describe the end of the last completed epoch
        (then callbacks such as EarlyStopping(restore_best_weights=True) restore their best).
        A non-finite loss, gradient, weight or validation loss raises TrainingDiverged at
        once; Ctrl-C stops at the next chunk boundary (about CHUNK_SECONDS) and re-raises
        KeyboardInterrupt; a second Ctrl-C interrupts at once, without the roll back.
        """
        # settings are plain attributes (trainer.epochs = 5, then fit again): check them again,
        # a batch_size of 0 would never advance through the data
        if not isinstance(self.model, MLP):
            raise TypeError(f"model must be a fastnn.MLP, got {type(self.model).__name__}")
        if not isinstance(self.optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastnn.optim optimizer, got "
                            f"{type(self.optimizer).__name__}")
        self.batch_size = check_positive_int(self.batch_size, "batch_size", allow_none=True)
        self.epochs = check_positive_int(self.epochs, "epochs")
        self.clip_grad_norm = (0.0 if self.clip_grad_norm is None else
                               check_number(self.clip_grad_norm, "clip_grad_norm", low=0.0))
        self.loss = resolve_loss(self.loss, self.model.output)
        self.allow_tf32 = check_flag(self.allow_tf32, "allow_tf32")
        model = self.model
        dtype = model.dtype
        # fit trains on its own copies (as Keras does): a callback or another thread editing
        # X or y meanwhile cannot change what was validated
        # checked, standardized if the model says so; read in place when already in the model's
        # dtype and layout (no second copy of the data, as torch's TensorDataset): editing the
        # features mid-fit changes what later steps see but can never reach outside the
        # arrays. The labels, which the kernels index with, are always copied
        # (check_targets).
        X = model.preprocess(X, "X")
        y_index, y_float = check_targets(y, X.shape[0], model.n_outputs, self.loss, dtype, "y")
        validation_split = check_number(validation_split, "validation_split", low=0.0, high=1.0,
                                        high_open=True)
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, numbers.Integral) \
                or not 0 <= initial_epoch < self.epochs:
            raise ValueError(f"initial_epoch must be an integer in [0, epochs={self.epochs}), "
                             f"got {initial_epoch!r}")
        self.alpha = check_number(self.alpha, "alpha", low=0.0)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            Xv = model.preprocess(validation_data[0], "validation_data[0]")
            val = (Xv,) + check_targets(validation_data[1], Xv.shape[0], model.n_outputs,
                                        self.loss, dtype, "validation_data[1]")
        elif validation_split > 0:
            train_idx, _ = validation_split_indices(X.shape[0], None, validation_split)
            cut = train_idx.size  # the last samples are validation, as in Keras
            val = (X[cut:], y_index[cut:] if y_index.size else y_index,
                   y_float[cut:] if y_float.size else y_float)
            X = X[:cut]
            y_index = y_index[:cut] if y_index.size else y_index
            y_float = y_float[:cut] if y_float.size else y_float
        return self._run(X, y_index, y_float, val, int(initial_epoch))

    def _run(self, X, y_index, y_float, val, initial_epoch):
        """The epoch loop, once for both devices: the step backend (fastnn/_steps) runs the
        compiled steps, everything between chunks happens here."""
        model, opt = self.model, self.optimizer
        N = X.shape[0]
        batch = N if self.batch_size is None else min(self.batch_size, N)
        # settings checked, the optimizer bound to this model (another model's raises)
        opt_code, hyper, state = opt._kernel_args(model.params)
        classifier = self.loss != "mse"
        # R^2 = 1 - mse / mean_j var(y_j): the target variances are computed once per fit
        train_var = _mean_target_variance(y_float) if not classifier else None
        val_var = (_mean_target_variance(val[2]) if not classifier and val is not None
                   else None)
        # the end of the last completed epoch, restored if training diverges or fails: the
        # backend keeps the weights and state where they live (steps.save), the step count here
        good_step = int(opt.step_count[0])
        committed = True  # whether the model holds the last epoch recorded in History

        self.stop_training = False
        history = self.history = History()
        interrupted = []

        def roll_back():
            # weights, optimizer state and step count together, so that a following fit
            # continues from a consistent point
            steps.restore()
            opt.step_count[0] = good_step

        def diverged(epoch, what):
            roll_back()
            where = f"the end of epoch {epoch - 1}" if epoch else "the start of this fit"
            return TrainingDiverged(
                f"training diverged in epoch {epoch} ({what}); the model holds its last finite "
                f"weights, from {where}, and History its {epoch - initial_epoch} finite "
                f"epoch(s). Try a lower learning rate (lr={opt.lr:g} now) or clip_grad_norm=1.0.")

        # the settings are read once, here (clip_grad_norm validated by fit)
        steps = open_steps(self.device, model, opt, self.loss, batch, self.clip_grad_norm,
                           self.alpha, X, y_index, y_float, val, self._dropout_seed,
                           allow_tf32=self.allow_tf32)
        restore_sigint = bar = None
        try:
            bar = progress_bar((self.epochs - initial_epoch) * N, self.verbose)
            restore_sigint = _catch_sigint(interrupted)
            self._callbacks("set_trainer", self)
            self._callbacks("on_train_begin", {})
            for epoch in range(initial_epoch, self.epochs):
                self._callbacks("on_epoch_begin", epoch, {})
                # read once per epoch: schedules change lr, callbacks any setting; a new state
                # layout (momentum switched on, amsgrad, ...) takes effect here
                opt_code, hyper, state = opt._kernel_args(model.params)
                order = (shuffle_order(self.shuffle_seed, epoch, N) if self.shuffle
                         else np.arange(N, dtype=np.int64))
                steps.begin_epoch(order, opt_code, hyper, state)
                if self.callbacks:  # callbacks may have replaced the weights or the state
                    steps.copy_in()
                steps.save()  # the roll-back point: the end of the last completed epoch
                good_step = int(opt.step_count[0])
                committed = False
                n_steps = 0
                t0 = time.perf_counter()
                pos = 0
                while pos < N:
                    tc = time.perf_counter()
                    bad, done = steps.run(pos, self._chunk_steps)
                    elapsed = time.perf_counter() - tc
                    n_steps += done
                    advanced = min(done * batch, N - pos)
                    pos += advanced
                    bar.update(advanced)
                    if bad:
                        raise diverged(epoch, "non-finite loss or gradient")
                    if interrupted:  # Ctrl-C: stop at this chunk boundary
                        raise KeyboardInterrupt
                    if done and pos < N:  # aim for CHUNK_SECONDS per chunk
                        rate = done / max(elapsed, 1e-6)
                        self._chunk_steps = int(min(max(rate * CHUNK_SECONDS, 1), 1 << 20))
                seconds = time.perf_counter() - t0
                # a finite gradient times a huge lr can still overflow the weights or the state
                if not steps.finite():
                    raise diverged(epoch, "an update made the weights or optimizer state "
                                          "non-finite")
                loss, accuracy = steps.epoch_metrics()
                logs = {"loss": loss}
                if classifier:
                    logs["accuracy"] = accuracy
                else:
                    logs["r2"] = _r2_score(loss, train_var)
                if val is not None:
                    vloss, vacc = steps.evaluate()
                    if not np.isfinite(vloss):
                        raise diverged(epoch, "non-finite validation loss")
                    logs["val_loss"] = vloss
                    if classifier:
                        logs["val_accuracy"] = vacc
                    else:
                        logs["val_r2"] = _r2_score(vloss, val_var)
                logs["lr"] = float(hyper[0])
                logs["time"] = seconds
                logs["samples_per_sec"] = N / seconds if seconds > 0 else float("inf")
                logs["grad_norm"] = steps.grad_norms(n_steps)
                history.record(epoch, logs)
                committed = True
                self._show_epoch(bar, epoch, logs)
                if self.callbacks:  # they see (and may change) the weights on the host
                    steps.copy_back()
                self._callbacks("on_epoch_end", epoch, logs)  # changes reach the steps above
                if interrupted:  # Ctrl-C during validation or callbacks: History is complete
                    raise KeyboardInterrupt
                if self.stop_training:
                    break
            steps.copy_back()  # the host sees the trained weights (the GPU's, at last)
            self._callbacks("on_train_end", {})
        except BaseException:
            if not committed:  # mid-epoch: back to the end of the last completed epoch
                roll_back()
            else:  # the last completed epoch, from the device when it is ahead of the host
                steps.copy_back()
            # callbacks such as EarlyStopping restore their best weights on the way out
            self._callbacks("on_train_abort")
            raise
        finally:
            if bar is not None:
                bar.close()
            if restore_sigint is not None:
                restore_sigint()
            steps.close()
        return history

    def _show_epoch(self, bar, epoch, logs):
        """The epoch's headline metrics beside the progress bar."""
        if self.verbose:
            bar.set_postfix({k: f"{logs[k]:.4g}" for k in
                             ("loss", "accuracy", "val_loss", "val_accuracy")
                             if k in logs} | {"epoch": epoch + 1}, refresh=False)


class _SilentBar:
    """What a fit with verbose=0 updates instead of a tqdm bar (even a disabled tqdm starts
    tqdm's monitor thread on its first use)."""

    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        pass


def shuffle_order(seed, epoch, n):
    """Epoch `epoch`'s row order (int64 permutation of n) for shuffle seed `seed`: a function
    of (seed, epoch) only, np.random.default_rng([seed, epoch]).permutation(n)."""
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)


def _shuffle_seed(seed):
    """The non-negative integer that keys the shuffles, from a Trainer's seed (None: fresh
    entropy; a SeedSequence, BitGenerator or Generator: one draw from it)."""
    if seed is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(seed, np.random.SeedSequence):
        return int(seed.generate_state(2, np.uint64).view(np.uint64)[0])
    if isinstance(seed, np.random.BitGenerator):
        seed = np.random.Generator(seed)
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63, dtype=np.int64))
    return int(seed)


def progress_bar(total, verbose):
    """A tqdm bar over `total` samples, or a silent stand-in for verbose=0."""
    if not verbose:
        return _SilentBar()
    return tqdm(total=total, unit="samples", unit_scale=True, leave=True, dynamic_ncols=True)


def _dropout_key(seed):
    """The dropout masks' key for a Trainer seed: the seed itself when it is an int, else 63
    bits drawn from it (None: fresh entropy), without touching the shuffles' generator."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return int(seed) & 0x7FFFFFFFFFFFFFFF
    if isinstance(seed, np.random.Generator):
        seed = seed.bit_generator.seed_seq
    elif isinstance(seed, np.random.BitGenerator):
        seed = seed.seed_seq
    if not isinstance(seed, np.random.SeedSequence):
        seed = np.random.SeedSequence(seed)
    return int(seed.spawn(1)[0].generate_state(1, np.uint64)[0]) & 0x7FFFFFFFFFFFFFFF


def _mean_target_variance(y_float):
    """mean over output columns of the (population) variance of the targets, in float64."""
    return float(np.mean(np.var(y_float, axis=0, dtype=np.float64)))


def _r2_score(mse, mean_var):
    """1 - SSE/SST from the mean squared error and the mean target variance (both per element),
    with sklearn's convention for constant targets: 1.0 when the fit is perfect, else 0.0."""
    if mean_var > 0:
        return 1.0 - mse / mean_var
    return 1.0 if mse == 0 else 0.0


def _catch_sigint(flag):
    """Turn Ctrl-C into a flag read at the next chunk boundary (the compiled loop cannot be
    interrupted safely mid-step). Returns a function that restores the previous handler.

    Only where Python itself would deliver SIGINT to a Python handler (the main thread, with
    a Python-level handler such as the default KeyboardInterrupt one): an ignored SIGINT
    (SIG_IGN, a background job), the OS default (SIG_DFL: the process dies) and a handler
    installed from C are left exactly as they are."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    try:
        previous = signal.getsignal(signal.SIGINT)
        if not callable(previous):  # SIG_IGN, SIG_DFL, or None (installed from C)
            return lambda: None

        def handler(signum, frame):
            if flag:  # second Ctrl-C: stop waiting for the chunk
                previous(signum, frame)
            flag.append(True)

        signal.signal(signal.SIGINT, handler)
    except ValueError:
        return lambda: None
    return lambda: signal.signal(signal.SIGINT, previous)
