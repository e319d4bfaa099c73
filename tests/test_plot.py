"""Learning-curve and gradient-norm plots (matplotlib, Agg, no pyplot state)."""
import sys

import numpy as np
import pytest

import fastnn
from fastnn.plot import plot_history, plot_learning_curves

pytest.importorskip("matplotlib")


def small_history(regression=False, validation=True, epochs=4):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 5))
    if regression:
        y = X[:, :1] - X[:, 1:2]
        model = fastnn.MLP([5, 8, 8, 1], activation="tanh", seed=0)
    else:
        y = (X[:, 0] > 0).astype(np.int64)
        model = fastnn.MLP([5, 8, 8, 2], output="softmax", seed=0)
    trainer = fastnn.Trainer(model, batch_size=16, epochs=epochs, verbose=0, seed=0)
    return trainer.fit(X, y, validation_split=0.25 if validation else 0.0)


def read_png(path):
    from matplotlib.image import imread
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    return imread(path)


def line_data(ax):
    return {line.get_label(): line.get_ydata() for line in ax.get_lines()}


def test_history_plot_writes_a_png_with_loss_accuracy_and_grad_norm_panels(tmp_path):
    history = small_history()
    path = tmp_path / "curves.png"
    fig = history.plot(path, dpi=50)
    image = read_png(path)
    assert image.shape[:2] == (200, 750)  # figsize (15, 4) inches at 50 dpi
    assert image.std() > 0.05  # not a blank canvas
    loss_ax, acc_ax, norm_ax = fig.axes
    np.testing.assert_array_equal(line_data(loss_ax)["train"], history["loss"])
    np.testing.assert_array_equal(line_data(loss_ax)["validation"], history["val_loss"])
    np.testing.assert_array_equal(line_data(acc_ax)["validation"], history["val_accuracy"])
    np.testing.assert_array_equal(loss_ax.get_lines()[0].get_xdata(), [1, 2, 3, 4])
    best = int(np.argmin(history["val_loss"])) + 1
    assert f"best validation (epoch {best})" in line_data(loss_ax)
    norms = line_data(norm_ax)
    assert list(norms) == ["layer 0 (input)", "layer 1", "layer 2 (output)"]
    np.testing.assert_array_equal(norms["layer 1"], history.grad_norms[:, 1])
    assert norm_ax.get_yscale() == "log"
    assert not list(tmp_path.glob(".*.tmp"))  # the temp file was renamed away


def test_regression_history_plots_r2_and_no_validation_curve(tmp_path):
    history = small_history(regression=True, validation=False)
    fig = plot_history(history, tmp_path / "r.png", title="regression")
    loss_ax, r2_ax, _ = fig.axes
    assert list(line_data(loss_ax)) == ["train"]
    np.testing.assert_array_equal(line_data(r2_ax)["train"], history["r2"])
    assert fig._suptitle.get_text() == "regression"
    read_png(tmp_path / "r.png")


def test_plot_without_path_returns_the_figure_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fig = small_history(epochs=2).plot()
    assert len(fig.axes) == 3 and list(tmp_path.iterdir()) == []


def test_plot_does_not_touch_pyplot_or_the_backend():
    import matplotlib
    backend = matplotlib.get_backend()
    small_history(epochs=1).plot()
    assert matplotlib.get_backend() == backend
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_missing_matplotlib_gives_an_install_hint(monkeypatch):
    history = small_history(epochs=1)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'fastnn\[plot\]'"):
        history.plot()


def test_plot_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match="history"):
        plot_history({"loss": [1.0]})
    with pytest.raises(ValueError, match="no epochs"):
        fastnn.History().plot()
    with pytest.raises(TypeError, match="path"):
        small_history(epochs=1).plot(3)
    from matplotlib.figure import Figure
    ax = Figure().subplots()
    with pytest.raises(ValueError, match="available: .*loss"):
        plot_learning_curves(small_history(epochs=1), ax, key="val_mae")


def recorded_history(loss, val_loss, accuracy):
    history = fastnn.History()
    for e, (lo, vl, acc) in enumerate(zip(loss, val_loss, accuracy)):
        history.record(e, {"loss": lo, "val_loss": vl, "accuracy": acc, "val_accuracy": acc,
                           "grad_norm": [1e-3 * (e + 1), 0.5]})
    return history


@pytest.mark.parametrize("loss, val_loss, scale", [
    ([1.85, 1.0, 0.9, 0.95, 0.93], [1.02, 0.98, 0.97, 1.01, 1.0], "linear"),  # the issue's
    ([2.3, 0.2, 0.05, 0.02, 0.015], [0.5, 0.1, 0.04, 0.03, 0.035], "log"),    # two decades
])
def test_every_point_is_inside_the_axes_and_epoch_ticks_are_whole(tmp_path, loss, val_loss,
                                                                  scale):
    history = recorded_history(loss, val_loss, [0.5, 0.6, 0.7, 0.8, 0.9])
    fig = history.plot(tmp_path / "c.png", dpi=50)
    fig.canvas.draw()
    loss_ax = fig.axes[0]
    assert loss_ax.get_yscale() == scale
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert len(ticks) >= 2 and all(t == int(t) for t in ticks)
        assert all(label.get_text() in ("", *map(str, range(7)))
                   for label in ax.get_xticklabels())
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        for line in ax.get_lines():
            if line.get_label().startswith("best"):
                continue  # the vertical marker spans the axes by construction
            x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
            assert np.all((x >= x0) & (x <= x1)), (ax.get_title(), line.get_label())
            assert np.all((y >= y0) & (y <= y1)), (ax.get_title(), line.get_label(), y, y0, y1)
