"""Optimizers with torch.optim's argument names, defaults and update rules.

An optimizer is a small description (a kernel code and a float64 hyperparameter array) plus its
state: `n_slots` flat buffers in the parameter layout and a step counter. The update itself is
one fused loop in fastnn/_kernels/optim.py, run inside the compiled training loop.
"""
import numpy as np

from ._kernels import optim as _k
from ._validation import check_number


class Optimizer:
    """Base: holds hyperparameters and flat state; subclasses define `code`, `n_slots`,
    and `hyper()` (the float64 array layout the kernel reads)."""

    code = -1

    def __init__(self, lr):
        self.lr = check_number(lr, "lr", low=0.0)
        self.state = None  # (n_slots, n_params), allocated on first use
        self.step_count = np.zeros(1, dtype=np.int64)  # steps taken so far (torch's "step")

    @property
    def n_slots(self):
        return 0

    def hyper(self):
        raise NotImplementedError

    def bind(self, n_params, dtype):
        """Allocate (or keep) the state for a parameter buffer of this size and dtype."""
        shape = (self.n_slots, n_params)
        if self.state is None or self.state.shape != shape or self.state.dtype != dtype:
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
        """Everything needed to resume exactly: hyperparameters, step, state buffers."""
        return {"name": type(self).__name__, "hyper": self.hyper().copy(),
                "step": int(self.step_count[0]),
                "state": None if self.state is None else self.state.copy()}

    def load_state_dict(self, sd):
        if sd.get("name") != type(self).__name__:
            raise ValueError(f"state_dict is for {sd.get('name')!r}, not {type(self).__name__}")
        self.state = None if sd["state"] is None else np.array(sd["state"], copy=True)
        self.step_count[0] = int(sd["step"])

    def update(self, params, grads, grad_scale=1.0):
        """Apply one step to flat params in place (outside the training loop; for tests and
        for users driving their own loop with model.loss_and_grad)."""
        if params.shape != grads.shape or params.dtype != grads.dtype or params.ndim != 1:
            raise ValueError(f"params and grads must be flat arrays of one shape and dtype, got "
                             f"{params.shape} {params.dtype} and {grads.shape} {grads.dtype}")
        state = self.bind(params.size, params.dtype)
        self.step_count[0] += 1
        _k.optimizer_update(self.code, params, grads, state, self.hyper(),
                            int(self.step_count[0]), float(grad_scale))

    def _repr_args(self):
        return f"lr={self.lr}"

    def __repr__(self):
        return f"{type(self).__name__}({self._repr_args()})"


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
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov=True requires momentum > 0 and dampening = 0")

    @property
    def n_slots(self):
        return 1 if self.momentum != 0 else 0

    def hyper(self):
        return np.array([self.lr, self.momentum, self.dampening, self.weight_decay,
                         float(self.nesterov)])

    def _repr_args(self):
        return (f"lr={self.lr}, momentum={self.momentum}, dampening={self.dampening}, "
                f"weight_decay={self.weight_decay}, nesterov={self.nesterov}")


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
        if not hasattr(betas, "__len__") or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (check_number(betas[0], "betas[0]", low=0.0, high=1.0, high_open=True),
                      check_number(betas[1], "betas[1]", low=0.0, high=1.0, high_open=True))
        self.eps = check_number(eps, "eps", low=0.0)
        self.weight_decay = check_number(weight_decay, "weight_decay", low=0.0)
        self.amsgrad = bool(amsgrad)

    @property
    def n_slots(self):
        return 3 if self.amsgrad else 2

    def hyper(self):
        return np.array([self.lr, self.betas[0], self.betas[1], self.eps, self.weight_decay,
                         float(self.amsgrad), float(self._decoupled)])

    def _repr_args(self):
        return (f"lr={self.lr}, betas={self.betas}, eps={self.eps}, "
                f"weight_decay={self.weight_decay}, amsgrad={self.amsgrad}")


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, p <- p (1 - lr weight_decay) before
    the Adam step (the gradient itself is not decayed)."""

    _decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(lr, betas, eps, weight_decay, amsgrad)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def get_optimizer(name, **kwargs):
    """An optimizer by case-insensitive name, e.g. get_optimizer("adam", lr=1e-3)."""
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(sorted(OPTIMIZERS))}")
    return OPTIMIZERS[key](**kwargs)
