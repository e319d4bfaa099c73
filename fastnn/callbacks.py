"""Callbacks: code that runs between epochs, never inside the compiled loop.

The protocol is duck-typed (any object with some of these methods works); `Callback` is the
base class with every hook as a no-op. The Trainer calls, in order:

    set_trainer(trainer)             once per fit, before anything else
    on_train_begin(logs)             logs = {}
    on_epoch_begin(epoch, logs)      epoch counts from 0
    on_epoch_end(epoch, logs)        logs: the History keys (loss, val_loss, accuracy, r2, ...)
    on_train_end(logs)               after the last epoch, or after a callback stopped training
    on_train_abort()                 instead of on_train_end when fit raises (TrainingDiverged,
                                     Ctrl-C, an error in a callback); the exception propagates

A callback stops training by setting `self.trainer.stop_training = True` in on_epoch_end.
EarlyStopping and ModelCheckpoint follow Keras 3 (keras.callbacks), argument for argument.
"""
import math
import os
import warnings

import numpy as np

from ._validation import check_choice, check_count, check_flag, check_number

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint"]


class Callback:
    """Base class for callbacks: every hook is a no-op; override the ones you need.

    After `set_trainer`, `self.trainer` is the running Trainer and `self.model` its MLP.
    """

    def __init__(self):
        self.trainer = None
        self.model = None

    def set_trainer(self, trainer):
        self.trainer = trainer
        self.model = trainer.model

    def on_train_begin(self, logs):
        pass

    def on_epoch_begin(self, epoch, logs):
        pass

    def on_epoch_end(self, epoch, logs):
        pass

    def on_train_end(self, logs):
        pass

    def on_train_abort(self):
        pass


def _resolve_mode(mode, monitor):
    """"min" or "max" for a monitored quantity; "auto" maximizes accuracies and R^2 (Keras)."""
    check_choice(mode, "mode", ("auto", "min", "max"))
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    return "max" if ("acc" in name or "r2" in name) else "min"


def _check_monitor(monitor):
    if not isinstance(monitor, str) or not monitor:
        raise TypeError(f"monitor must be a non-empty str such as 'val_loss', got {monitor!r}")
    return monitor



def _missing_key_message(what, monitor, logs):
    available = ", ".join(sorted(logs)) or "none"
    hint = (" (pass validation_data or validation_split to fit)"
            if monitor.startswith("val_") else "")
    return (f"{what} monitors {monitor!r}, which is not in the epoch logs{hint}; "
            f"available: {available}")


class EarlyStopping(Callback):
    """Stop training when a monitored quantity stops improving (keras.callbacks.EarlyStopping).

    Parameters
    ----------
    monitor : key of the epoch logs, e.g. "val_loss" (default), "val_accuracy", "loss".
    min_delta : an improvement must beat the best so far by more than |min_delta|.
    patience : epochs without improvement after which training stops.
    mode : "min", "max" or "auto" (max for names containing "acc" or "r2", else min).
    baseline : training stops after `patience` epochs unless the monitored value beats the
        baseline (the counter only resets on improvements over both the best and the baseline).
    restore_best_weights : at the end of training, put back the parameters of the epoch with the
        best monitored value. This happens whether or not training stopped early, and also when
        fit raises (divergence, Ctrl-C): see `on_train_abort`.
    start_from_epoch : epochs before this one are not monitored (warm-up).
    verbose : 1 prints when training stops and when weights are restored.

    After fit: `stopped_epoch` (0 when training ran to the end, as in Keras), `best_epoch`,
    `best` (the best monitored value, None if never seen), `wait`.

    As in Keras, the first monitored epoch's weights are kept until an epoch beats them,
    an improving epoch never triggers the stop, training never stops at epoch 0, and a NaN
    monitored value is never an improvement. Unlike Keras, an unknown mode or a negative
    patience is an error, not a warning.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor = _check_monitor(monitor)
        self.min_delta = abs(check_number(min_delta, "min_delta"))
        self.patience = check_count(patience, "patience")
        self.verbose = int(verbose)
        self.mode = _resolve_mode(mode, self.monitor)
        self.baseline = None if baseline is None else check_number(baseline, "baseline")
        self.restore_best_weights = check_flag(restore_best_weights, "restore_best_weights")
        self.start_from_epoch = check_count(start_from_epoch, "start_from_epoch")
        self._best_params = None  # preallocated copy of model.params (restore_best_weights)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = 0
        self._have_best_params = False
        self._warned = False

    def _is_improvement(self, value, reference):
        if math.isnan(value):
            return False
        if reference is None:
            return True
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def _keep_params(self):
        params = self.model.params
        if self._best_params is None or self._best_params.shape != params.shape \
                or self._best_params.dtype != params.dtype:
            self._best_params = np.empty_like(params)
        np.copyto(self._best_params, params)
        self._have_best_params = True

    def on_train_begin(self, logs):
        if self.model is None:
            raise RuntimeError("EarlyStopping needs set_trainer(trainer) before training")
        self._reset()  # a callback can be reused across fits
        if self.restore_best_weights and (self._best_params is None or
                                          self._best_params.shape != self.model.params.shape):
            self._best_params = np.empty_like(self.model.params)  # once per fit, not per epoch

    def on_epoch_end(self, epoch, logs):
        value = logs.get(self.monitor)
        if value is None:
            if not self._warned:
                warnings.warn(_missing_key_message("EarlyStopping", self.monitor, logs),
                              RuntimeWarning, stacklevel=2)
                self._warned = True
            return
        if epoch < self.start_from_epoch:
            return
        value = float(value)
        if self.restore_best_weights and not self._have_best_params:
            # the first monitored epoch's weights are the best until something beats them
            self._keep_params()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(value, self.best):
            self.best = value
            self.best_epoch = epoch
            if self.restore_best_weights:
                self._keep_params()
            if self.baseline is None or self._is_improvement(value, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True

    def _restore(self):
        if self.restore_best_weights and self._have_best_params:
            if self.verbose:
                print(f"EarlyStopping: restoring model weights from the end of the best epoch "
                      f"({self.best_epoch + 1}, {self.monitor}={self.best})")
            np.copyto(self.model.params, self._best_params)

    def on_train_end(self, logs):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"EarlyStopping: stopped at epoch {self.stopped_epoch + 1}")
        self._restore()

    def on_train_abort(self):
        self._restore()

    def __repr__(self):
        return (f"EarlyStopping(monitor={self.monitor!r}, min_delta={self.min_delta}, "
                f"patience={self.patience}, mode={self.mode!r}, baseline={self.baseline}, "
                f"restore_best_weights={self.restore_best_weights}, "
                f"start_from_epoch={self.start_from_epoch})")


class ModelCheckpoint(Callback):
    """Save the model after epochs (keras.callbacks.ModelCheckpoint), atomically, in
    safetensors (fastnn.io.save_model: a crash never leaves a half-written file).

    Parameters
    ----------
    filepath : str or os.PathLike; may hold str.format fields filled from the epoch (counted
        from 1, as in Keras) and the epoch logs, e.g. "m-{epoch:03d}-{val_loss:.3f}.safetensors".
    monitor : logs key compared for save_best_only.
    save_best_only : save only when the monitored value improves on the best so far (with a
        fixed filepath the file always holds the best model).
    mode : "min", "max" or "auto" (max for names containing "acc" or "r2", else min).
    initial_value_threshold : a value the first save must beat (Keras), or None.
    verbose : 1 prints each save.

    Missing directories in the path are created when the first file is saved (as Keras
    does). After fit: `best` (best monitored value seen) and `last_saved` (the last path
    written, or None).
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 mode="auto", initial_value_threshold=None):
        super().__init__()
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"filepath must be a str or os.PathLike, got "
                            f"{type(filepath).__name__}")
        self.filepath = os.fspath(filepath)
        self.monitor = _check_monitor(monitor)
        self.verbose = int(verbose)
        self.save_best_only = check_flag(save_best_only, "save_best_only")
        self.mode = _resolve_mode(mode, self.monitor)
        self.initial_value_threshold = (None if initial_value_threshold is None else
                                        check_number(initial_value_threshold,
                                                     "initial_value_threshold"))
        self.best = None
        self.last_saved = None

    def on_train_begin(self, logs):
        if self.model is None:
            raise RuntimeError("ModelCheckpoint needs set_trainer(trainer) before training")
        if self.initial_value_threshold is not None:
            self.best = self.initial_value_threshold
        else:
            self.best = math.inf if self.mode == "min" else -math.inf
        self._warned = False

    def _path(self, epoch, logs):
        try:
            return self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint: cannot format filepath {self.filepath!r} "
                             f"({type(exc).__name__}: {exc}); available fields: epoch, "
                             f"{', '.join(sorted(logs))}") from None

    def on_epoch_end(self, epoch, logs):
        from .io import save_model

        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                if not self._warned:
                    warnings.warn(_missing_key_message("ModelCheckpoint(save_best_only=True)",
                                                       self.monitor, logs),
                                  RuntimeWarning, stacklevel=2)
                    self._warned = True
                return
            value = float(value)
            better = value < self.best if self.mode == "min" else value > self.best
            if not better:  # NaN never improves
                return
            self.best = value
        path = self._path(epoch, logs)
        directory = os.path.dirname(path)
        if directory:  # Keras creates the checkpoint directory too
            os.makedirs(directory, exist_ok=True)
        save_model(self.model, path)
        self.last_saved = path
        if self.verbose:
            print(f"ModelCheckpoint: epoch {epoch + 1}: saved {path}")

    def __repr__(self):
        return (f"ModelCheckpoint({self.filepath!r}, monitor={self.monitor!r}, "
                f"save_best_only={self.save_best_only}, mode={self.mode!r})")
