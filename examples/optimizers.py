"""Train one network on the digits data with every fastnn optimizer; plot the loss curves.

    python examples/optimizers.py [out.png] [--epochs 30]

The network, data, batch order and initial weights are the same for every optimizer, so the
curves differ only by the update rule. Learning rates are each rule's usual good value for
this problem, not its torch default (SGD's 1e-3 barely moves in 30 epochs).
"""
import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import fastnn
from fastnn import optim

OPTIMIZERS = {
    "SGD (lr=0.05)": lambda: optim.SGD(lr=0.05),
    "SGD momentum (lr=0.05, 0.9)": lambda: optim.SGD(lr=0.05, momentum=0.9),
    "SGD Nesterov (lr=0.05, 0.9)": lambda: optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
    "Adagrad (lr=0.05)": lambda: optim.Adagrad(lr=0.05),
    "Adadelta (lr=1)": lambda: optim.Adadelta(lr=1.0),
    "RMSprop (lr=1e-3)": lambda: optim.RMSprop(lr=1e-3),
    "Adam (lr=1e-3)": lambda: optim.Adam(lr=1e-3),
    "AdamW (lr=1e-3, wd=1e-2)": lambda: optim.AdamW(lr=1e-3),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="optimizers.png", help="PNG to write")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()

    X, y = load_digits(return_X_y=True)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.25, random_state=0,
                                                      stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_val = scaler.transform(X_train), scaler.transform(X_val)
    initial = fastnn.MLP([64, 64, 10], activation="relu", output="softmax", seed=0)

    fig, (ax_train, ax_val) = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for label, make in OPTIMIZERS.items():
        model = initial.copy()
        t0 = time.perf_counter()
        hist = fastnn.Trainer(model, make(), batch_size=32, epochs=args.epochs, seed=0,
                              verbose=0).fit(X_train, y_train,
                                             validation_data=(X_val, y_val))
        seconds = time.perf_counter() - t0
        h = hist.history
        print(f"{label:28s} train loss {h['loss'][-1]:.4f}  val loss {h['val_loss'][-1]:.4f}  "
              f"val acc {h['val_accuracy'][-1]:.3f}  ({seconds:.2f} s)")
        epochs = np.arange(1, len(h["loss"]) + 1)
        line, = ax_train.plot(epochs, h["loss"], label=label)
        ax_val.plot(epochs, h["val_loss"], color=line.get_color(), label=label)

    for ax, title in ((ax_train, "training loss"), (ax_val, "validation loss")):
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax_train.set_ylabel("cross-entropy")
    ax_val.legend(fontsize=8)
    fig.suptitle("digits (8x8), MLP 64-64-10 ReLU, batch 32: the same start for every "
                 "optimizer")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
