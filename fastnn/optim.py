"""Optimizers with torch.optim's argument names, defaults and update rules.

An optimizer is a small description (a kernel code and a float64 hyperparameter array) plus its
state: `n_slots` flat buffers in the parameter layout and a step counter. The update itself is
one fused loop in fastnn/_kernels/optim.py, run inside the compiled training loop.

As in torch, an optimizer belongs to one set of parameters: the first fit (or `update`) binds it
to that model's parameter buffer, and its step count and moments describe that model only. Using
it for another model raises; make one optimizer per model (`type(opt)(**opt.hyperparameters())`
is a fresh copy), or call `reset()` first, or move a state on purpose with
`new.load_state_dict(opt.state_dict())`.
"""
import numbers

import numpy as np

from ._kernels import optim as _k
from ._kernels.bundles import OptimizerState
from ._validation import check_flag, check_number


def _check_betas(betas):
    if (not isinstance(betas, (tuple, list, np.ndarray))
            or (isinstance(betas, np.ndarray) and betas.ndim != 1) or len(betas) != 2):
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    return (check_number(betas[0], "betas[0]", low=0.0, high=1.0, high_open=True),
            check_number(betas[1], "betas[1]", low=0.0, high=1.0, high_open=True))



_STEP_MAX = np.iinfo(np.int64).max
# the length of `hyper` each update kernel reads (fastnn/_kernels/optim.py)
_HYPER_SIZE = {_k.SGD: 5, _k.ADAM: 7, _k.ADAGRAD: 5, _k.ADADELTA: 4, _k.RMSPROP: 6}


def _slot_names(code, hyper):
    """The state rows the update kernel for `code` reads with these hyperparameters, in its
    order, named as torch names them (the one description of the state layout). An unknown
    code reads none: its kernel raises before touching the state."""
    if code == _k.SGD:
        return ("momentum_buffer",) if hyper[1] != 0.0 else ()
    if code == _k.ADAM:
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if hyper[5] != 0.0 else ())
    if code == _k.ADAGRAD:
        return ("sum",)
    if code == _k.ADADELTA:
        return ("square_avg", "acc_delta")
    if code == _k.RMSPROP:
        return (("square_avg",) + (("momentum_buffer",) if hyper[4] > 0.0 else ())
                + (("grad_avg",) if hyper[5] != 0.0 else ()))
    return ()


class Optimizer:
    """Base: holds hyperparameters and flat state; subclasses define `code`,
    `hyperparameters()` (the constructor arguments) and `hyper()` (the float64 array layout the
    kernel reads); the state layout follows from both (`_slot_names`).

    Every hyperparameter may be changed between epochs (the schedules in fastnn.schedules
    change `lr`; a callback may warm up `momentum`): the Trainer checks them all again at each
    epoch boundary. A change that needs another state layout (momentum from 0, amsgrad,
    centered) takes effect there, as torch creates state lazily: a new slot starts at torch's
    initial value (zeros; Adagrad's sum at initial_accumulator_value), a slot switched off is
    dropped. SGD's momentum buffer is the exception when dampening > 0: torch starts it at the
    first gradient, which fastnn can do only at step 1, so switching it on later raises.

    An optimizer is bound to the parameter buffer it first updates (see the module docstring):
    another model raises ValueError instead of receiving this one's step count and moments."""

    code = -1

    def __init__(self, lr):
        self.lr = lr
        self._state = None  # (n_slots, n_params), allocated on first use
        self._slots = ()  # the names of the state rows (_slot_names)
        self._params = None  # the parameter buffer this optimizer is bound to
        self._n_params = None  # its size, also known from a loaded state before binding
        self._step_count = np.zeros(1, dtype=np.int64)  # steps taken so far (torch's "step")

    @property
    def state(self):
        """(n_slots, n_params) array in the parameter layout, or None before the first step
        (read-only attribute: the compiled loop holds this buffer; use load_state_dict)."""
        return self._state

    @property
    def step_count(self):
        """(1,) int64 array: steps taken so far (torch's "step"); the compiled loop advances
        it in place, so the attribute itself cannot be rebound."""
        return self._step_count

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = check_number(value, "lr", low=0.0)

    @property
    def n_slots(self):
        """State rows the update reads with the current settings."""
        return len(_slot_names(self.code, self.hyper()))

    def hyperparameters(self):
        """The constructor arguments, by name: type(opt)(**opt.hyperparameters()) is a copy
        without state."""
        raise NotImplementedError

    def hyper(self):
        raise NotImplementedError

    def _checked(self):
        """A stateless copy built from the current settings: every attribute validated again,
        as the constructor does (they are plain attributes, changeable at any time)."""
        return type(self)(**self.hyperparameters())

    def bind(self, params):
        """Bind to the flat parameter buffer `params` (on the first call) and return the state,
        laid out for the current settings: allocated on first use, converted to the params'
        dtype, grown or shrunk when a setting changed the layout. ValueError for another
        model's buffer, or a state loaded for another size."""
        self._kernel_args(params)
        return self._state

    def _kernel_args(self, params):
        """(code, hyper, state) for the compiled update, checked against each other: the
        settings validated, the state bound to `params` and holding every row that the kernel
        for `code` reads with `hyper`. The Trainer calls this at each epoch boundary."""
        code = self.code
        if isinstance(code, bool) or not isinstance(code, numbers.Integral):
            raise TypeError(f"{type(self).__name__}.code must be an integer kernel code, got "
                            f"{code!r}")
        code = int(code)
        hyper = np.ascontiguousarray(self._checked().hyper(), dtype=np.float64)
        if code in _HYPER_SIZE and hyper.shape != (_HYPER_SIZE[code],):
            raise ValueError(f"{type(self).__name__}.hyper() must have {_HYPER_SIZE[code]} "
                             f"values for kernel code {code}, got shape {hyper.shape}")
        self._bind_params(params)
        dtype = params.dtype
        names = _slot_names(code, hyper)
        shape = (len(names), params.size)
        state = self._state
        if state is None:
            self._state = self._new_state(names, shape, dtype)
            self._step_count[0] = 0
        else:
            if state.dtype != dtype:
                # e.g. a float64 state_dict loaded for a float32 model: keep it, as torch does
                state = state.astype(dtype)
            if tuple(self._slots) != names:
                state = self._relayout(state, names, shape, dtype)
            self._state = state
        self._slots = names
        return code, hyper, self._state

    def _bind_params(self, params):
        if not isinstance(params, np.ndarray) or params.ndim != 1:
            raise TypeError("params must be a flat NumPy array (model.params)")
        if self._params is not None and self._params is not params:
            raise ValueError(
                f"this {type(self).__name__} is bound to another model's parameters (it holds "
                f"that model's step count and moments, as a torch optimizer does): create one "
                f"optimizer per model, e.g. {type(self).__name__}(**opt.hyperparameters()), "
                f"call opt.reset() to start over, or move the state on purpose with "
                f"new.load_state_dict(opt.state_dict())")
        if self._n_params is not None and self._n_params != params.size:
            raise ValueError(
                f"this {type(self).__name__}'s state is for {self._n_params} parameters (loaded "
                f"by load_state_dict, or left by another model), but the model has "
                f"{params.size}: create a new optimizer for it or call opt.reset()")
        self._params = params
        self._n_params = params.size

    def _new_state(self, names, shape, dtype):
        state = np.empty(shape, dtype=dtype)
        for i, name in enumerate(names):
            state[i] = self._initial_value(name)
        return state

    def _initial_value(self, name):
        """A fresh slot's value: torch's, zeros for every slot but Adagrad's sum."""
        return 0.0

    def _relayout(self, state, names, shape, dtype):
        """The state for new slot names: kept rows by name, new ones at their initial value."""
        old = dict(zip(self._slots, state)) if state.shape[0] == len(self._slots) else {}
        new = np.empty(shape, dtype=dtype)
        for i, name in enumerate(names):
            if name in old:
                new[i] = old[name]
            else:
                if self._step_count[0] > 0:
                    self._check_late_slot(name)
                new[i] = self._initial_value(name)
        return new

    def _check_late_slot(self, name):
        """Raise if slot `name` cannot start mid-training the way torch would start it."""

    def reset(self):
        """Forget the state and the model it was bound to: the next step is step 1 again."""
        self._state = None
        self._slots = ()
        self._params = None
        self._n_params = None
        self._step_count[0] = 0

    def state_dict(self):
        """Everything needed to resume exactly: hyperparameters (as set now, e.g. by a
        schedule), the step count and a copy of the state buffers."""
        return {"name": type(self).__name__, "hyperparameters": self.hyperparameters(),
                "step": int(self._step_count[0]),
                "state": None if self._state is None else self._state.copy()}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters, step count and state saved by state_dict(), as torch's
        Optimizer.load_state_dict does; the next fit continues where the saved one stopped.

        Everything is checked before anything changes: on an error the optimizer is as it
        was. A state for another number of parameters than the model this optimizer is bound
        to is refused here; an unbound optimizer refuses it at the next fit."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict from Optimizer.state_dict(), got "
                            f"{type(state_dict).__name__}")
        missing = {"name", "hyperparameters", "step", "state"} - set(state_dict)
        if missing:
            raise ValueError(f"state_dict lacks the keys {sorted(missing)}")
        if state_dict["name"] != type(self).__name__:
            raise ValueError(f"state_dict is for {state_dict['name']!r}, not "
                             f"{type(self).__name__}")
        if not isinstance(state_dict["hyperparameters"], dict):
            raise TypeError("state_dict['hyperparameters'] must be a dict")
        # validated by the constructor before anything of self changes
        restored = type(self)(**state_dict["hyperparameters"])
        step = state_dict["step"]
        if (isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral)
                or not 0 <= step <= _STEP_MAX):
            raise ValueError(f"state_dict['step'] must be an integer in [0, 2**63), got "
                             f"{step!r}")
        state = state_dict["state"]
        names = _slot_names(self.code, restored.hyper())
        if state is not None:
            try:
                state = np.array(state, copy=True)
            except Exception as exc:  # noqa: BLE001 - ragged lists & co: not a state
                raise ValueError(f"state_dict['state'] is not an array: {exc}") from None
            if (state.ndim != 2 or state.shape[0] != len(names)
                    or state.dtype not in (np.float32, np.float64)):
                raise ValueError(f"state_dict['state'] must be a float32 or float64 array of "
                                 f"shape ({len(names)}, n_params) for these "
                                 f"hyperparameters, got {state.dtype} {state.shape}")
            if self._n_params is not None and state.shape[1] != self._n_params:
                raise ValueError(f"state_dict['state'] is for {state.shape[1]} parameters, but "
                                 f"this optimizer is bound to a model with {self._n_params}")
            state = np.ascontiguousarray(state)
        # all checked: now assign, nothing below can fail
        for key, value in vars(restored).items():
            if key.startswith("_") and key != "_lr":
                continue
            setattr(self, key, value)
        self._state = state
        self._slots = names if state is not None else ()
        if state is not None:
            self._n_params = state.shape[1]
        self._step_count[0] = int(step)  # in place: the Trainer hands this array to the kernel

    def update(self, params, grads, grad_scale=1.0):
        """Apply one step to flat params in place (outside the training loop; for tests and
        for users driving their own loop with model.loss_and_grad). grad_scale multiplies the
        gradient first (1 unless clipping). The first call binds the optimizer to `params`
        (pass the same array every step, e.g. model.params)."""
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
        code, hyper, state = self._kernel_args(params)
        self._step_count[0] += 1
        _k.optimizer_update(OptimizerState(code, hyper, state, self._step_count, 0.0, 0.0),
                            params, grads, int(self._step_count[0]), grad_scale, 0,
                            params.size, 0.0)

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
        self.nesterov = check_flag(nesterov, "nesterov")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(f"nesterov=True requires momentum > 0 and dampening = 0, got "
                             f"momentum={self.momentum}, dampening={self.dampening}")


    def _check_late_slot(self, name):
        if self.dampening != 0:
            raise ValueError(
                f"SGD momentum switched on after step {int(self.step_count[0])} with "
                f"dampening={self.dampening}: torch starts the momentum buffer at the first "
                f"gradient, which fastnn does only at step 1. Set momentum before the first "
                f"step, or use dampening=0 (then a buffer starting at zero is the same)")

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


    def _initial_value(self, name):
        return self.initial_accumulator_value

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
        self.centered = check_flag(centered, "centered")


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
        self.amsgrad = check_flag(amsgrad, "amsgrad")


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
