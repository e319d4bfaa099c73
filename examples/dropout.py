"""What dropout does to a wide network that overfits the digits.

A 64-1024-1024-10 ReLU network on 500 training digits memorizes them: its training loss falls
to about 1e-5 while its validation loss stops improving within a few epochs. The same network
with dropout 0.5 on its hidden layers (and 0.2 on the input, Hinton et al. 2012) trains a
different thinned network every step: its training loss (measured on the dropped-out network,
as Keras and torch report it) stays near 0.1, and the whole network it leaves generalizes
better (lower validation loss at its best, higher validation and test accuracy), with noisier
curves. The test set is scored once per model at the end.

    python examples/dropout.py [dropout.png]      # needs scikit-learn and matplotlib
"""
import sys

import numpy as np

import fastnn
from fastnn.data import load_digits_split

N_TRAIN = 500
EPOCHS = 150
SIZES = [64, 1024, 1024, 10]


def fit(data, dropout, input_dropout):
    model = fastnn.MLP(SIZES, activation="relu", output="softmax", seed=0, dropout=dropout,
                       input_dropout=input_dropout)
    trainer = fastnn.Trainer(model, fastnn.optim.Adam(lr=1e-3), batch_size=32, epochs=EPOCHS,
                             seed=0, verbose=0)
    history = trainer.fit(data.X_train[:N_TRAIN], data.y_train[:N_TRAIN],
                          validation_data=(data.X_val, data.y_val))
    test = float(np.mean(model.predict_classes(data.X_test) == data.y_test))
    return history, test


def main(path="dropout.png"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = load_digits_split(seed=0)
    runs = {"no dropout": fit(data, 0.0, 0.0),
            "dropout 0.5, input 0.2": fit(data, 0.5, 0.2)}
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    epochs = np.arange(1, EPOCHS + 1)
    for i, (name, (h, test)) in enumerate(runs.items()):
        best = int(np.argmin(h["val_loss"]))
        print(f"{name:24s} train loss {h['loss'][-1]:.2e}, validation loss "
              f"{h['val_loss'][-1]:.3f} (minimum {h['val_loss'][best]:.3f} at epoch "
              f"{best + 1}), validation accuracy {h['val_accuracy'][-1]:.4f}, "
              f"test accuracy {test:.4f}")
        loss_ax.plot(epochs, h["loss"], color=f"C{i}", linestyle="--", label=f"{name}: train")
        loss_ax.plot(epochs, h["val_loss"], color=f"C{i}", label=f"{name}: validation")
        acc_ax.plot(epochs, h["val_accuracy"], color=f"C{i}",
                    label=f"{name} (test {test:.3f})")
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    loss_ax.legend(fontsize="small")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("validation accuracy")
    acc_ax.legend(fontsize="small")
    fig.suptitle(f"{N_TRAIN} training digits, {'-'.join(map(str, SIZES))} ReLU, Adam(1e-3), "
                 f"batch 32")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
