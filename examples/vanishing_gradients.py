"""Vanishing gradients, measured: 10-layer sigmoid vs tanh vs ReLU networks on the digits.

Backpropagation multiplies the output error by W_l^T and A'(z_l) once per layer, and the
sigmoid's derivative is at most 1/4, so the gradient reaching the first layer of a deep sigmoid
network is orders of magnitude smaller than the last layer's: the early layers barely train.
ReLU (derivative 1 where active, He initialization) keeps the norms comparable.

    python examples/vanishing_gradients.py [out.png]      # needs scikit-learn and matplotlib
"""
import sys

import numpy as np

import fastnn
from fastnn.data import load_digits_split

DEPTH = 10  # weight matrices: 9 hidden layers of WIDTH units, then the output layer
WIDTH = 64
EPOCHS = 15


def train(activation, data):
    model = fastnn.MLP([64] + [WIDTH] * (DEPTH - 1) + [10], activation=activation,
                       output="softmax", seed=0)
    trainer = fastnn.Trainer(model, fastnn.optim.SGD(lr=0.02, momentum=0.9), batch_size=32,
                             epochs=EPOCHS, seed=0, verbose=0)
    return trainer.fit(data.X_train, data.y_train, validation_data=(data.X_val, data.y_val))


def main(path="vanishing_gradients.png"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = load_digits_split(seed=0)
    histories = {act: train(act, data) for act in ("sigmoid", "tanh", "relu")}

    fig = Figure(figsize=(15, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    by_layer, ratio, accuracy = fig.subplots(1, 3)
    layers = np.arange(DEPTH)
    for (act, history), color in zip(histories.items(), ("C3", "C2", "C0")):
        norms = history.grad_norms
        report = fastnn.diagnose(history, epoch=0)
        print(f"--- {act}: first-epoch report\n{report}\n"
              f"    final validation accuracy {history['val_accuracy'][-1]:.3f}\n")
        by_layer.plot(layers, norms[0], "o-", color=color, label=f"{act} (epoch 1)")
        by_layer.plot(layers, norms[-1], "o:", color=color, alpha=0.6,
                      label=f"{act} (epoch {EPOCHS})")
        ratio.plot(np.arange(1, EPOCHS + 1), norms[:, 0] / norms[:, -1], "-", color=color,
                   label=act)
        accuracy.plot(np.arange(1, EPOCHS + 1), history["val_accuracy"], "-", color=color,
                      label=act)
    by_layer.set(yscale="log", xlabel="layer (0 = input side)", ylabel="||dW_l||",
                 title=f"gradient norm per layer, {DEPTH}-layer networks")
    by_layer.set_xticks(layers)
    ratio.axhline(1e-3, color="0.5", linestyle=":", label="diagnose threshold")
    ratio.set(yscale="log", xlabel="epoch", ylabel="||dW_0|| / ||dW_last||",
              title="first-layer / last-layer gradient norm")
    accuracy.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0, 1),
                 title="what it costs: validation accuracy")
    for ax in (by_layer, ratio, accuracy):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
