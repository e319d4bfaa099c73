"""Learning-rate schedules with torch.optim.lr_scheduler's names, arguments and epoch semantics.

A schedule wraps an optimizer and sets `optimizer.lr` once per epoch. Use it as a Trainer
callback (its on_epoch_end calls step()), or call step() yourself after each epoch as in torch:

    opt = fastnn.optim.SGD(lr=0.1, momentum=0.9)
    sched = fastnn.schedules.StepLR(opt, step_size=30, gamma=0.1)
    fastnn.Trainer(model, opt, epochs=90, callbacks=[sched]).fit(X, y)

Epoch e (counting from 0) trains with the lr the schedule gives at e, which the Trainer records as
history["lr"][e]; the compiled loop never leaves for a schedule, since the lr changes only at epoch
ends. The rules are torch's chainable ("recursive") forms, so a schedule composes with changes made
to optimizer.lr by others exactly as in torch.
"""
import math

from ._validation import check_choice, check_count, check_number, check_positive_int
from .optim import Optimizer


class LRSchedule:
    """Base: `step()` advances one epoch and writes the new lr into the optimizer.

    Attributes: optimizer, base_lr (the lr when the schedule was made), last_epoch (steps
    taken). get_last_lr() returns [lr] like torch's (one parameter group)."""

    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastnn.optim optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        self._last_lr = [optimizer.lr]

    def _next_lr(self, lr):
        """The lr for epoch self.last_epoch (already advanced), given the current lr."""
        raise NotImplementedError

    def step(self):
        """Call once at the end of every epoch."""
        self.last_epoch += 1
        self.optimizer.lr = self._next_lr(self.optimizer.lr)
        self._last_lr = [self.optimizer.lr]

    def get_last_lr(self):
        return list(self._last_lr)

    def on_epoch_end(self, epoch, logs=None):
        self.step()

    def state_dict(self):
        """The schedule's counters and settings (not the optimizer), to resume with."""
        return {key: value for key, value in vars(self).items() if key != "optimizer"}

    def load_state_dict(self, state_dict):
        unknown = set(state_dict) - set(self.state_dict())
        if unknown:
            raise ValueError(f"state_dict has keys {sorted(unknown)} that "
                             f"{type(self).__name__} does not have")
        self.__dict__.update(state_dict)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.state_dict().items()
                         if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class StepLR(LRSchedule):
    """lr <- lr * gamma every step_size epochs: lr_e = base_lr * gamma^(e // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer)
        self.step_size = check_positive_int(step_size, "step_size")
        self.gamma = check_number(gamma, "gamma", low=0.0, low_open=True)

    def _next_lr(self, lr):
        if self.last_epoch % self.step_size != 0:
            return lr
        return lr * self.gamma


class ExponentialLR(LRSchedule):
    """lr <- lr * gamma every epoch: lr_e = base_lr * gamma^e."""

    def __init__(self, optimizer, gamma):
        super().__init__(optimizer)
        self.gamma = check_number(gamma, "gamma", low=0.0, low_open=True)

    def _next_lr(self, lr):
        return lr * self.gamma


class CosineAnnealingLR(LRSchedule):
    """Cosine from base_lr down to eta_min over T_max epochs (then back up, periodically):
    lr_e = eta_min + (base_lr - eta_min) (1 + cos(pi e / T_max)) / 2, computed recursively
    from the current lr as torch does."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        super().__init__(optimizer)
        self.T_max = check_positive_int(T_max, "T_max")
        self.eta_min = check_number(eta_min, "eta_min", low=0.0)

    def _next_lr(self, lr):
        e, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        if (e - 1 - T) % (2 * T) == 0:  # leaving the minimum: the ratio below would be 0/0
            return lr + (self.base_lr - eta_min) * (1 - math.cos(math.pi / T)) / 2
        return ((1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T))
                * (lr - eta_min) + eta_min)


class ReduceLROnPlateau(LRSchedule):
    """lr <- max(lr * factor, min_lr) once the monitored quantity has not improved for more
    than `patience` epochs (torch.optim.lr_scheduler.ReduceLROnPlateau).

    mode : "min" (lower is better, e.g. a loss) or "max".
    threshold, threshold_mode : an improvement must beat best * (1 - threshold) ("rel", mode
        min), best * (1 + threshold) ("rel", max), best - threshold or best + threshold ("abs").
    cooldown : epochs to wait after a reduction before counting bad epochs again.
    eps : reductions smaller than this are skipped.
    monitor : the History key read by on_epoch_end ("val_loss" needs validation data).
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8, monitor="val_loss"):
        super().__init__(optimizer)
        self.mode = check_choice(mode, "mode", ("min", "max"))
        self.factor = check_number(factor, "factor", low=0.0, high=1.0, high_open=True)
        self.patience = check_count(patience, "patience")
        self.threshold = check_number(threshold, "threshold", low=0.0)
        self.threshold_mode = check_choice(threshold_mode, "threshold_mode", ("rel", "abs"))
        self.cooldown = check_count(cooldown, "cooldown")
        self.min_lr = check_number(min_lr, "min_lr", low=0.0)
        self.eps = check_number(eps, "eps", low=0.0)
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a History key such as 'val_loss', got "
                            f"{monitor!r}")
        self.monitor = monitor
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _is_better(self, value):
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return value < self.best * (1.0 - self.threshold)
            return value < self.best - self.threshold
        if self.threshold_mode == "rel":
            return value > self.best * (self.threshold + 1.0)
        return value > self.best + self.threshold

    def step(self, metrics):
        """Call once at the end of every epoch with the monitored value."""
        try:
            value = float(metrics)  # NaN is allowed, as in torch: it never counts as better
        except (TypeError, ValueError):
            raise TypeError(f"metrics must be a number, got {metrics!r}") from None
        self.last_epoch += 1
        if self._is_better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs during the cooldown do not count
        if self.num_bad_epochs > self.patience:
            old_lr = self.optimizer.lr
            new_lr = max(old_lr * self.factor, self.min_lr)
            if old_lr - new_lr > self.eps:
                self.optimizer.lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [self.optimizer.lr]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            hint = (" (pass validation_data or validation_split to fit, or monitor='loss')"
                    if self.monitor.startswith("val_") else "")
            raise ValueError(f"ReduceLROnPlateau monitors {self.monitor!r}, which is not among "
                             f"this epoch's logs {sorted(logs)}{hint}")
        self.step(logs[self.monitor])
