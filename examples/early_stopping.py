"""Overfitting, early stopping and model selection on a validation set; the test set once.

A big network on 500 training digits, a quarter of them with a random label, memorizes them
noise and all: the training loss keeps falling while the (clean) validation loss turns around.
EarlyStopping watches the validation loss, stops `patience` epochs after its minimum and
restores that epoch's weights; the test set, used once at the very end, says how well the
selected model generalizes.

    python examples/early_stopping.py [curves.png]      # needs scikit-learn and matplotlib
"""
import sys

import numpy as np

import fastnn
from fastnn.data import load_digits_split

N_TRAIN = 500
LABEL_NOISE = 0.25  # this fraction of the training labels is replaced by a random class
EPOCHS = 100


def noisy_training_labels(data, seed=0):
    rng = np.random.default_rng(seed)
    y = data.y_train[:N_TRAIN].copy()
    noisy = rng.random(N_TRAIN) < LABEL_NOISE
    y[noisy] = rng.integers(0, 10, noisy.sum())
    return y


def fit(data, callbacks=()):
    model = fastnn.MLP([64, 256, 256, 10], activation="relu", output="softmax", seed=0)
    trainer = fastnn.Trainer(model, fastnn.optim.Adam(lr=1e-3), batch_size=16, epochs=EPOCHS,
                             seed=0, verbose=0, callbacks=list(callbacks))
    history = trainer.fit(data.X_train[:N_TRAIN], noisy_training_labels(data),
                          validation_data=(data.X_val, data.y_val))
    return model, history


def test_accuracy(model, data):
    return float(np.mean(model.predict_classes(data.X_test) == data.y_test))


def main(path="early_stopping.png"):
    data = load_digits_split(seed=0)

    full_model, full = fit(data)
    best = int(np.argmin(full["val_loss"]))
    print(f"no early stopping: {EPOCHS} epochs, train loss {full['loss'][-1]:.2e}, "
          f"validation loss {full['val_loss'][-1]:.3f} (its minimum {min(full['val_loss']):.3f} "
          f"was at epoch {best + 1})")

    stopper = fastnn.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    model, _ = fit(data, [stopper])
    print(f"early stopping:    stopped after epoch {stopper.stopped_epoch + 1}, restored epoch "
          f"{stopper.best_epoch + 1} (validation loss {stopper.best:.3f}, "
          f"model.evaluate says {model.evaluate(data.X_val, data.y_val)[0]:.3f})")

    # the test set, once, for the two final models
    print(f"test accuracy: {test_accuracy(full_model, data):.4f} after all {EPOCHS} epochs, "
          f"{test_accuracy(model, data):.4f} for the early-stopped model")

    fig = full.plot(title=f"{N_TRAIN} training digits ({LABEL_NOISE:.0%} random labels), "
                          f"64-256-256-10 ReLU, Adam: the validation loss turns around after "
                          f"epoch {best + 1}")
    loss_ax = fig.axes[0]
    loss_ax.axvline(stopper.stopped_epoch + 1, color="C3", linestyle="--", linewidth=1,
                    label=f"EarlyStopping(patience=10) stops (epoch {stopper.stopped_epoch + 1})")
    loss_ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
