"""One candidate: an ordinary fit, resumable at any epoch.

`train(spec, data, checkpoint, until)` continues candidate `spec` from `checkpoint` (None: a
fresh model) up to epoch `until` (or an earlier early stop) and returns its result and the new
checkpoint. It is a pure function of its arguments: the model and shuffle seeds come from
(search seed, candidate id), the optimizer state and the early-stopping state travel in the
checkpoint, and Trainer.fit(initial_epoch=) replays the shuffles, so training 1, then 3, then
9 epochs gives the same numbers as 9 at once, on any thread, process or Dask worker.
"""
import copy
import inspect
import time
import traceback

from .._validation import check_dropout
from ..callbacks import Callback
from ..model import MLP
from ..optim import OPTIMIZERS
from ..trainer import Trainer, TrainingDiverged

# what a space may set besides the chosen optimizer's own arguments (torch's names)
MODEL_KEYS = ("hidden", "activation", "optimizer", "lr", "batch_size", "clip_grad_norm",
              "alpha", "dropout", "input_dropout")
DEFAULTS = {"hidden": [64], "activation": "relu", "optimizer": "adam", "lr": 1e-3,
            "batch_size": 32, "clip_grad_norm": None, "alpha": 0.0, "dropout": 0.0,
            "input_dropout": 0.0}
HISTORY_SKIP = ("time", "samples_per_sec")  # wall-clock values: not part of a result


def settings(params):
    """params merged over DEFAULTS, with hidden as a list; ValueError for a name that neither
    the model nor the chosen optimizer takes, or a dropout rate outside [0, 1) (or a list of
    rates that is not one per hidden layer)."""
    full = dict(DEFAULTS)
    full.update(params)
    hidden = full["hidden"]
    full["hidden"] = [hidden] if isinstance(hidden, int) else list(hidden)
    check_dropout(full["dropout"], full["input_dropout"], len(full["hidden"]))
    name = str(full["optimizer"]).lower()
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {full['optimizer']!r} in the search space; "
                         f"valid: {', '.join(sorted(OPTIMIZERS))}")
    accepted = set(inspect.signature(OPTIMIZERS[name]).parameters) - {"lr"}
    extra = set(full) - set(MODEL_KEYS)
    unknown = extra - accepted
    if unknown:
        raise ValueError(f"the search space sets {sorted(unknown)}, which neither the model "
                         f"({', '.join(MODEL_KEYS)}) nor {OPTIMIZERS[name].__name__} "
                         f"({', '.join(sorted(accepted))}) takes")
    return full


def build(spec):
    """(model, optimizer) for a candidate spec, freshly initialized from its seed."""
    s = settings(spec["params"])
    model = MLP([spec["n_inputs"], *s["hidden"], spec["n_outputs"]], activation=s["activation"],
                output=spec["output"], dtype=spec["dtype"], seed=spec["init_seed"],
                dropout=s["dropout"], input_dropout=s["input_dropout"])
    opt_args = {k: v for k, v in s.items() if k not in MODEL_KEYS}
    optimizer = OPTIMIZERS[str(s["optimizer"]).lower()](lr=s["lr"], **opt_args)
    return model, optimizer


class Tracker(Callback):
    """Early stopping on the objective that survives checkpoints: the best value, its epoch
    and weights, and the epochs since. Stops after `patience` epochs without a strict
    improvement, never before `min_epochs` epochs."""

    def __init__(self, monitor, mode, patience, min_epochs, state=None):
        super().__init__()
        self.monitor, self.mode = monitor, mode
        self.patience, self.min_epochs = patience, min_epochs
        state = state or {}
        self.best = state.get("best")
        self.best_epoch = state.get("best_epoch", -1)
        self.wait = state.get("wait", 0)
        self.stopped = state.get("stopped", False)
        self.best_params = state.get("best_params")

    def on_epoch_end(self, epoch, logs):
        value = float(logs[self.monitor])
        better = self.best is None or (value < self.best if self.mode == "min"
                                       else value > self.best)
        if better:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self.best_params = self.model.params.copy()
        else:
            self.wait += 1
        if self.wait >= self.patience and epoch + 1 >= self.min_epochs:
            self.stopped = True
            self.trainer.stop_training = True

    def state(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped": self.stopped, "best_params": self.best_params}


def train(spec, data, checkpoint, until, callbacks=()):
    """Continue candidate `spec` from `checkpoint` to epoch `until`.

    data : (X, y, X_val, y_val), validated by the driver in the model's dtype.
    checkpoint : None or the dict a previous call returned.
    Returns (result, checkpoint): result has id, epochs, best_epoch, score, stopped,
    diverged (None or the message), seconds; the checkpoint has the model's parameters, the
    optimizer's state_dict, the epoch reached, the tracker's state and the history.
    TrainingDiverged is a result (not retried: it would diverge again); any other exception
    propagates to the executor, which retries from the same checkpoint.
    """
    t0 = time.perf_counter()
    X, y, Xv, yv = data
    model, optimizer = build(spec)
    epoch = 0
    history = {}
    tracker_state = None
    if checkpoint is not None:
        model.params = checkpoint["params"]
        optimizer.load_state_dict(checkpoint["optimizer"])
        epoch = checkpoint["epoch"]
        history = copy.deepcopy(checkpoint["history"])
        tracker_state = checkpoint["tracker"]
    tracker = Tracker(spec["objective"], spec["mode"], spec["patience"], spec["min_epochs"],
                      tracker_state)
    diverged = None
    if epoch < until and not tracker.stopped:
        s = settings(spec["params"])
        trainer = Trainer(model, optimizer, batch_size=s["batch_size"], epochs=until,
                          seed=spec["shuffle_seed"], clip_grad_norm=s["clip_grad_norm"],
                          alpha=s["alpha"],
                          callbacks=[tracker, *(copy.deepcopy(cb) for cb in callbacks)],
                          verbose=0)
        try:
            h = trainer.fit(X, y, validation_data=(Xv, yv), initial_epoch=epoch)
        except TrainingDiverged as exc:
            diverged = str(exc)
            h = trainer.history
        for key, values in h.history.items():
            if key not in HISTORY_SKIP:
                history.setdefault(key, []).extend(values)
        epoch += len(h.epoch)
    ckpt = {"params": model.params.copy(), "optimizer": optimizer.state_dict(),
            "epoch": epoch, "tracker": tracker.state(), "history": history}
    result = {"id": spec["id"], "epochs": epoch, "best_epoch": tracker.best_epoch,
              "score": tracker.best, "stopped": tracker.stopped or diverged is not None,
              "diverged": diverged, "seconds": time.perf_counter() - t0}
    return result, ckpt


def format_error(exc):
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def best_model(spec, checkpoint):
    """The candidate's model at its best epoch (its own weights when it never improved)."""
    model, _ = build(spec)
    best = checkpoint["tracker"]["best_params"]
    model.params = best if best is not None else checkpoint["params"]
    return model
