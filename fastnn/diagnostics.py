"""Gradient diagnostics: vanishing and exploding gradients from per-layer gradient norms.

Backpropagation multiplies the output delta by W_l^T and A'(z_l) once per layer on its way to the
input (lecture notes: "gradients are products of many A'(...)"), so ||dW_l|| of the early layers
can be many orders of magnitude below (vanishing: sigmoid, whose A' <= 1/4) or above (exploding)
the last layer's. `diagnose` compares each layer's norm with the last layer's.
"""
import math

import numpy as np

__all__ = ["GradientReport", "diagnose", "layer_grad_norms"]

VANISHING_RATIO = 1e-3
EXPLODING_RATIO = 1e3


def layer_grad_norms(model, grad):
    """||dW_l|| (Frobenius, weights only) of each layer from a flat gradient in the params
    layout, e.g. the second value of model.loss_and_grad(X, y). Returns an (L,) float64 array."""
    grad = np.asarray(grad)
    if grad.shape != model.params.shape:
        raise ValueError(f"grad has shape {grad.shape} but the model has {model.n_params} "
                         f"parameters")
    return np.array([np.linalg.norm(grad[model._w_off[l]:model._b_off[l]].astype(np.float64))
                     for l in range(model.n_layers)])


class GradientReport:
    """What `diagnose` found.

    Attributes
    ----------
    grad_norms : (L,) float64, ||dW_l|| for layers 0 (input side) .. L-1 (output).
    ratios : (L,) grad_norms / grad_norms[-1] (the last layer's ratio is 1).
    flags : list of L str: "ok", "vanishing", "exploding" or "non-finite".
    vanishing, exploding : lists of layer indices so flagged ("non-finite" counts as exploding).
    ok : True when no layer is flagged.
    source : where the norms came from ("history epoch 3", "model gradient on 128 samples").
    """

    def __init__(self, grad_norms, vanishing_ratio, exploding_ratio, source):
        norms = np.asarray(grad_norms, dtype=np.float64)
        self.grad_norms = norms
        self.vanishing_ratio = vanishing_ratio
        self.exploding_ratio = exploding_ratio
        self.source = source
        last = norms[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            self.ratios = norms / last
        self.flags = []
        for l, (norm, ratio) in enumerate(zip(norms, self.ratios)):
            if not math.isfinite(norm):
                flag = "non-finite"
            elif l == len(norms) - 1 or not math.isfinite(last):
                flag = "ok"  # the reference itself, or nothing finite to compare with
            elif ratio < vanishing_ratio:
                flag = "vanishing"
            elif ratio > exploding_ratio:  # also norm > 0 with a zero last layer (ratio inf)
                flag = "exploding"
            else:
                flag = "ok"  # includes 0 / 0
            self.flags.append(flag)
        self.vanishing = [l for l, f in enumerate(self.flags) if f == "vanishing"]
        self.exploding = [l for l, f in enumerate(self.flags) if f in ("exploding", "non-finite")]
        self.ok = not (self.vanishing or self.exploding)

    def as_dict(self):
        """Plain Python types (JSON-serializable except for non-finite floats)."""
        return {"grad_norms": self.grad_norms.tolist(), "ratios": self.ratios.tolist(),
                "flags": list(self.flags), "vanishing": list(self.vanishing),
                "exploding": list(self.exploding), "ok": self.ok, "source": self.source}

    def __str__(self):
        header = (f"gradient norms per layer ({self.source}; ratio = norm / last layer's, "
                  f"flagged below {self.vanishing_ratio:g} or above {self.exploding_ratio:g}):")
        lines = [header]
        for l, (norm, ratio, flag) in enumerate(zip(self.grad_norms, self.ratios, self.flags)):
            mark = "" if flag == "ok" else f"  <- {flag}"
            lines.append(f"  layer {l:3d}  ||dW|| = {norm:10.3e}  ratio = {ratio:10.3e}{mark}")
        if self.ok:
            lines.append("no vanishing or exploding gradients")
        else:
            if self.vanishing:
                lines.append(f"vanishing gradients in layer(s) {self.vanishing}: these layers "
                             f"barely train; try ReLU-family activations, He initialization, "
                             f"or fewer layers")
            if self.exploding:
                lines.append(f"exploding gradients in layer(s) {self.exploding}: try a lower "
                             f"learning rate, clip_grad_norm, or a smaller initialization")
        return "\n".join(lines)

    def __repr__(self):
        return (f"GradientReport(ok={self.ok}, vanishing={self.vanishing}, "
                f"exploding={self.exploding})")


def diagnose(source, X=None, y=None, loss=None, epoch=-1, vanishing_ratio=VANISHING_RATIO,
             exploding_ratio=EXPLODING_RATIO):
    """Flag layers whose gradients vanish or explode, relative to the last layer's.

    Parameters
    ----------
    source : a History (uses the per-layer norms recorded during training, epoch `epoch`,
        default the last) or an MLP (computes the full-batch gradient on X, y with
        model.loss_and_grad).
    X, y, loss : data and loss for an MLP source (loss defaults from the model's output).
    epoch : which History epoch to inspect (an index into history.epoch order, negative from
        the end).
    vanishing_ratio, exploding_ratio : layer l is flagged when ||dW_l|| / ||dW_last|| is below
        / above these; any non-finite norm is flagged "non-finite".

    Returns a GradientReport (str() gives a readable table).
    """
    from ._validation import check_number
    from .model import MLP
    from .trainer import History

    vanishing_ratio = check_number(vanishing_ratio, "vanishing_ratio", low=0.0, low_open=True)
    exploding_ratio = check_number(exploding_ratio, "exploding_ratio", low=vanishing_ratio,
                                   low_open=True)
    if isinstance(source, History):
        if X is not None or y is not None:
            raise ValueError("X and y are only used with a model; a History already holds "
                             "the gradient norms")
        norms = source.grad_norms
        if norms.shape[0] == 0:
            raise ValueError("the History has no epochs with gradient norms (grad_norm)")
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
            raise TypeError(f"epoch must be an int, got {epoch!r}")
        n = norms.shape[0]
        if not -n <= epoch < n:
            raise ValueError(f"epoch={epoch} is out of range for a History of {n} epochs")
        index = epoch % n
        return GradientReport(norms[index], vanishing_ratio, exploding_ratio,
                              f"history epoch {source.epoch[index]}")
    if isinstance(source, MLP):
        if X is None or y is None:
            raise ValueError("diagnose(model, X, y): a model needs data X and targets y to "
                             "compute gradients")
        _, grad = source.loss_and_grad(X, y, loss=loss)
        return GradientReport(layer_grad_norms(source, grad), vanishing_ratio, exploding_ratio,
                              f"model gradient on {np.shape(X)[0]} samples")
    raise TypeError(f"source must be a fastnn.History or a fastnn.MLP, got "
                    f"{type(source).__name__}")
