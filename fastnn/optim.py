"""Optimizers with torch.optim's argument names, defaults and update rules.

An optimizer is a small description (a kernel code and a float64 hyperparameter array) plus its
state: `n_slots` flat buffers in the parameter layout and a step counter. The update itself is
one fused loop in fastnn/_kernels/optim.py, run inside the compiled training loop.
"""
import numbers

import numpy as np

from ._kernels import optim as _k
from ._validation import check_number


def _check_betas(betas):
    if (not isinstance(betas, (tuple, list, np.ndarray))
            or (isinstance(betas, np.ndarray) and betas.ndim != 1) or len(betas) != 2):
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    return (check_number(betas[0], "betas[0]", low=0.0, high=1.0, high_open=True),
            check_number(betas[1], "betas[1]", low=0.0, high=1.0, high_open=True))


def _check_flag(value, name):
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral)
                                               and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


class Optimizer:
    """Base: holds hyperparameters and flat state; subclasses define `code`, `n_slots`,
    `hyperparameters()` (the constructor arguments) and `hyper()` (the float64 array layout the
    kernel reads).

    `lr` may be changed between epochs (that is what the schedules in fastnn.schedules do); the
    Trainer reads `hyper()` once per epoch."""

    code = -1

    def __init__(self, lr):
        self.lr = lr
        self.state = None  # (n_slots, n_params), allocated on first use
        self.step_count = np.zeros(1, dtype=np.int64)  # steps taken so far (torch's "step")

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = check_number(value, "lr", low=0.0)

    @property
    def n_slots(self):
        return 0

    def hyperparameters(self):
        """The constructor arguments, by name: type(opt)(**opt.hyperparameters()) is a copy
        without state."""
        raise NotImplementedError

    def hyper(self):
        raise NotImplementedError

    def bind(self, n_params, dtype):
        """Allocate (or keep) the state for a parameter buffer of this size and dtype."""
        shape = (self.n_slots, n_params)
        if self.state is not None and self.state.shape == shape and self.state.dtype != dtype:
            # e.g. a float64 state_dict loaded for a float32 model: keep it, as torch does
            self.state = self.state.astype(dtype)
        if self.state is None or self.state.shape != shape:
            self.state = self._initial_state(shape, dtype)
            self.step_count[0] = 0
        return self.state

    def _initial_state(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def reset(self):
        """Forget the state: the next step is step 1 again."""
        self.state = None
        self.step_count[0] = 0

    def state_dict(self):
        """Everything needed to resume exactly: hyperparameters (as set now, e.g. by a
        schedule), the step count and a copy of the state buffers."""
        return {"name": type(self).__name__, "hyperparameters": self.hyperparameters(),
                "step": int(self.step_count[0]),
                "state": None if self.state is None else self.state.copy()}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters, step count and state saved by state_dict(), as torch's
        Optimizer.load_state_dict does; the next fit continues where the saved one stopped."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict from Optimizer.state_dict(), got "
                            f"{type(state_dict).__name__}")
        missing = {"name", "hyperparameters", "step", "state"} - set(state_dict)
        if missing:
            raise ValueError(f"state_dict lacks the keys {sorted(missing)}")
        if state_dict["name"] != type(self).__name__:
            raise ValueError(f"state_dict is for {state_dict['name']!r}, not "
                             f"{type(self).__name__}")
        # validated by the constructor before anything of self changes
        restored = type(self)(**state_dict["hyperparameters"])
        step = state_dict["step"]
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"state_dict['step'] must be a non-negative integer, got {step!r}")
        state = state_dict["state"]
        if state is not None:
            state = np.array(state, copy=True)
            if (state.ndim != 2 or state.shape[0] != restored.n_slots
                    or state.dtype not in (np.float32, np.float64)):
                raise ValueError(f"state_dict['state'] must be a float32 or float64 array of "
                                 f"shape ({restored.n_slots}, n_params) for these "
                                 f"hyperparameters, got {state.dtype} {state.shape}")
        for key, value in vars(restored).items():
            if key not in ("state", "step_count"):
                setattr(self, key, value)
        self.state = state
        self.step_count[0] = int(step)  # in place: the Trainer hands this array to the kernel

    def update(self, params, grads, grad_scale=1.0):
        """Apply one step to flat params in place (outside the training loop; for tests and
        for users driving their own loop with model.loss_and_grad). grad_scale multiplies the
        gradient first (1 unless clipping)."""
        if not (isinstance(params, np.ndarray) and isinstance(grads, np.ndarray)):
            raise TypeError("params and grads must be NumPy arrays")
        if params.shape != grads.shape or params.dtype != grads.dtype or params.ndim != 1:
            raise ValueError(f"params and grads must be flat arrays of one shape and dtype, got "
                             f"{params.shape} {params.dtype} and {grads.shape} {grads.dtype}")
        if params.dtype not in (np.float32, np.float64):
            raise TypeError(f"params must be float32 or float64, got {params.dtype}")
        if not (params.flags.c_contiguous and grads.flags.c_contiguous):
            raise ValueError("params and grads must be contiguous")
        if not params.flags.writeable:
            raise ValueError("params must be writeable")
        grad_scale = check_number(grad_scale, "grad_scale", low=0.0)
        hyper = self.hyper()
        state = self.bind(params.size, params.dtype)
        self.step_count[0] += 1
        _k.optimizer_update(self.code, params, grads, state, hyper,
                            int(self.step_count[0]), grad_scale, 0, params.size, 0.0)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """torch.optim.SGD.

    g <- g + weight_decay * p
    b <- g (first step), else momentum * b + (1 - dampening) * g
    g <- g + momentum * b (nesterov) or b;   p <- p - lr * g
    """

    code = _k.SGD

    def __init__(self, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(lr)
        self.momentum = check_number(momentum, "momentum", low=0.0)
        self.dampening = check_number(dampening, "dampening")
        self.weight_decay = check_number(weight_decay, "weight_decay", low=0.0)
        self.nesterov = _check_flag(nesterov, "nesterov")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(f"nesterov=True requires momentum > 0 and dampening = 0, got "
                             f"momentum={self.momentum}, dampening={self.dampening}")

    @property
    def n_slots(self):
        return 1 if self.momentum != 0 else 0

    def hyperparameters(self):
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov}

    def hyper(self):
        return np.array([self.lr, self.momentum, self.dampening, self.weight_decay,
                         float(self.nesterov)])


class Adagrad(Optimizer):
    """torch.optim.Adagrad: per-parameter steps shrink with the accumulated squared gradients.

    g <- g + weight_decay * p;   lr_t = lr / (1 + (t - 1) * lr_decay)
    s <- s + g^2   (s starts at initial_accumulator_value)
    p <- p - lr_t * g / (sqrt(s) + eps)
    """

    code = _k.ADAGRAD

    def __init__(self, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10):
        super().__init__(lr)
        self.lr_decay = check_number(lr_decay, "lr_decay", low=0.0)
        self.weight_decay = check_number(weight_decay, "weight_decay", low=0.0)
        self.initial_accumulator_value = check_number(
            initial_accumulator_value, "initial_accumulator_value", low=0.0)
        self.eps = check_number(eps, "eps", low=0.0)

    @property
    def n_slots(self):
        return 1

    def _initial_state(self, shape, dtype):
        return np.full(shape, self.initial_accumulator_value, dtype=dtype)

    def hyperparameters(self):
        return {"lr": self.lr, "lr_decay": self.lr_decay, "weight_decay": self.weight_decay,
                "initial_accumulator_value": self.initial_accumulator_value, "eps": self.eps}

    def hyper(self):
        return np.array([self.lr, self.lr_decay, self.weight_decay,
                         self.initial_accumulator_value, self.eps])


class Adadelta(Optimizer):
    """torch.optim.Adadelta: Adagrad's sum replaced by decaying averages, and the step scaled
    by the running RMS of past updates (eps inside both square roots).

    g <- g + weight_decay * p;   v <- rho v + (1 - rho) g^2
    dx = sqrt(u + eps) / sqrt(v + eps) * g;   u <- rho u + (1 - rho) dx^2
    p <- p - lr * dx
    """

    code = _k.ADADELTA

    def __init__(self, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0):
        super().__init__(lr)
        self.rho = check_number(rho, "rho", low=0.0, high=1.0)
        self.eps = check_number(eps, "eps", low=0.0)
        self.weight_decay = check_number(weight_decay, "weight_decay", low=0.0)

    @property
    def n_slots(self):
        return 2

    def hyperparameters(self):
        return {"lr": self.lr, "rho": self.rho, "eps": self.eps,
                "weight_decay": self.weight_decay}

    def hyper(self):
        return np.array([self.lr, self.rho, self.eps, self.weight_decay])


class RMSprop(Optimizer):
    """torch.optim.RMSprop (eps outside the square root).

    g <- g + weight_decay * p;   v <- alpha v + (1 - alpha) g^2
    centered: gbar <- alpha gbar + (1 - alpha) g, and v - gbar^2 replaces v below
    momentum > 0: b <- momentum b + g / (sqrt(v) + eps);  p <- p - lr * b
    otherwise:    p <- p - lr * g / (sqrt(v) + eps)
    """

    code = _k.RMSPROP

    def __init__(self, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(lr)
        # torch accepts any alpha >= 0, but alpha > 1 makes v negative: NaN at the first root
        self.alpha = check_number(alpha, "alpha", low=0.0, high=1.0)
        self.eps = check_number(eps, "eps", low=0.0)
        self.weight_decay = check_number(weight_decay, "weight_decay", low=0.0)
        self.momentum = check_number(momentum, "momentum", low=0.0)
        self.centered = _check_flag(centered, "centered")

    @property
    def n_slots(self):
        return 1 + (self.momentum > 0) + self.centered

    def hyperparameters(self):
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps,
                "weight_decay": self.weight_decay, "momentum": self.momentum,
                "centered": self.centered}

    def hyper(self):
        return np.array([self.lr, self.alpha, self.eps, self.weight_decay, self.momentum,
                         float(self.centered)])


class Adam(Optimizer):
    """torch.optim.Adam.

    g <- g + weight_decay * p;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    (amsgrad: v_max <- max(v_max, v), used in place of v)
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    code = _k.ADAM
    _decoupled = False

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(lr)
        self.betas = _check_betas(betas)
        self.eps = check_number(eps, "eps", low=0.0)
        self.weight_decay = check_number(weight_decay, "weight_decay", low=0.0)
        self.amsgrad = _check_flag(amsgrad, "amsgrad")

    @property
    def n_slots(self):
        return 3 if self.amsgrad else 2

    def hyperparameters(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps,
                "weight_decay": self.weight_decay, "amsgrad": self.amsgrad}

    def hyper(self):
        return np.array([self.lr, self.betas[0], self.betas[1], self.eps, self.weight_decay,
                         float(self.amsgrad), float(self._decoupled)])


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, p <- p (1 - lr weight_decay) before
    the Adam step (the gradient itself is not decayed)."""

    _decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(lr, betas, eps, weight_decay, amsgrad)


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "adadelta": Adadelta, "rmsprop": RMSprop,
              "adam": Adam, "adamw": AdamW}


def get_optimizer(name, **kwargs):
    """An optimizer by case-insensitive name, e.g. get_optimizer("adam", lr=1e-3)."""
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(sorted(OPTIMIZERS))}")
    return OPTIMIZERS[key](**kwargs)
