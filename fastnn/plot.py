"""Plots of a History: learning curves (train vs validation) and per-layer gradient norms.

matplotlib is an optional extra (pip install 'fastnn[plot]'), imported only when a plot is
made. Figures are built with the object-oriented API on an Agg canvas: nothing here touches
pyplot's global state or the user's chosen backend, and no window ever opens.
"""
import io
import os

import numpy as np

from ._files import as_path, atomic_write_bytes

__all__ = ["plot_grad_norms", "plot_history", "plot_learning_curves"]

_METRICS = (("accuracy", "accuracy"), ("r2", "R$^2$"))
_LOG_SPAN = 10.0  # a loss panel whose values span more than this factor is drawn in log scale


def require_matplotlib():
    """matplotlib's Figure and Agg canvas; ImportError with the install hint without it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("fastnn's plots need matplotlib: pip install 'fastnn[plot]' "
                          "(or pip install matplotlib)") from None
    return Figure, FigureCanvasAgg


def _check_history(history):
    # a fastnn.History, recognised by what the plots read (this module imports no trainer)
    if not (isinstance(getattr(history, "history", None), dict)
            and isinstance(getattr(history, "epoch", None), list)):
        raise TypeError(f"history must be a fastnn.History (returned by Trainer.fit), got "
                        f"{type(history).__name__}")
    if not history.epoch:
        raise ValueError("the History has no epochs to plot")


def _epochs(history):
    return np.asarray(history.epoch) + 1  # 1-based on the axis, as progress bars count


def _epoch_axis(ax):
    """Label the x axis "epoch", with ticks on whole epochs only (never 1.25)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def plot_learning_curves(history, ax, key="loss", label=None):
    """Train vs validation curves of `key` (and "val_" + key) on the matplotlib Axes `ax`."""
    _check_history(history)
    if key not in history.history:
        raise ValueError(f"the History has no {key!r}; available: "
                         f"{', '.join(sorted(history.history))}")
    x = _epochs(history)
    ax.plot(x, history[key], label="train", color="C0", marker="." if len(x) < 30 else None)
    val_key = "val_" + key
    if val_key in history.history:
        values = np.asarray(history[val_key], dtype=np.float64)
        ax.plot(x, values, label="validation", color="C1",
                marker="." if len(x) < 30 else None)
        best = int(np.nanargmin(values) if key == "loss" else np.nanargmax(values))
        ax.axvline(x[best], color="0.6", linestyle=":", linewidth=1,
                   label=f"best validation (epoch {x[best]})")
    _epoch_axis(ax)
    ax.set_ylabel(label or key)
    if key == "loss":
        # every point shown: the first epochs' loss is often far above the rest, so when the
        # curves span more than a decade the axis is logarithmic (the validation curve's
        # turn-around stays visible); otherwise linear from 0
        shown = [np.asarray(history[key], dtype=np.float64)]
        if val_key in history.history:
            shown.append(np.asarray(history[val_key], dtype=np.float64))
        values = np.concatenate(shown)
        values = values[np.isfinite(values)]
        if values.size and values.min() > 0 and values.max() > _LOG_SPAN * values.min():
            ax.set_yscale("log")
        elif values.size and values.max() > 0:
            ax.set_ylim(min(0.0, values.min()), 1.05 * values.max())
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def plot_grad_norms(history, ax):
    """Per-layer gradient norms ||dW_l|| over epochs on the Axes `ax` (log scale): vanishing
    gradients show as the early layers' curves lying decades below the last layer's."""
    _check_history(history)
    norms = history.grad_norms
    if norms.size == 0:
        raise ValueError("the History has no per-layer gradient norms (grad_norm)")
    x = _epochs(history)
    L = norms.shape[1]
    try:
        from matplotlib import colormaps
        cmap = colormaps["viridis"]
    except ImportError:  # matplotlib < 3.5
        from matplotlib import cm
        cmap = cm.get_cmap("viridis")
    for l in range(L):
        ax.plot(x, norms[:, l], color=cmap(0.85 * l / max(L - 1, 1)),  # skip pale yellow
                label=f"layer {l}" + (" (input)" if l == 0 else
                                      " (output)" if l == L - 1 and L > 1 else ""))
    if np.any(norms > 0):
        ax.set_yscale("log")
    _epoch_axis(ax)
    ax.set_ylabel("||dW|| (mean over the epoch's steps)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2 if L > 6 else 1)
    return ax


def plot_history(history, path=None, title=None, dpi=100):
    """One figure: loss (train vs validation), the metric (accuracy or R^2) when recorded, and
    the per-layer gradient norms. Writes a PNG (or any format matplotlib infers from the
    extension) atomically when `path` is given. Returns the matplotlib Figure."""
    _check_history(history)
    Figure, FigureCanvasAgg = require_matplotlib()
    panels = [("loss", "loss")]
    panels += [(k, label) for k, label in _METRICS if k in history.history]
    has_norms = history.grad_norms.size > 0
    n = len(panels) + has_norms
    fig = Figure(figsize=(5 * n, 4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (key, label) in zip(axes, panels):
        plot_learning_curves(history, ax, key, label)
        ax.set_title(f"{label}: train vs validation")
    if has_norms:
        plot_grad_norms(history, axes[-1])
        axes[-1].set_title("gradient norm per layer")
    if title:
        fig.suptitle(title)
    if path is not None:
        _save(fig, path, dpi)
    return fig


def _save(fig, path, dpi):
    """Render in memory, then write atomically: a crash never leaves half a PNG."""
    path = as_path(path)
    ext = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=ext, dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
