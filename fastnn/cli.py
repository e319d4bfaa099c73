"""`fastnn train`: train an MLP from the command line.

Without --data it trains on scikit-learn's bundled digits (offline), split into
train/validation/test and standardized on the training part, and prints the test accuracy.
"""
import argparse
import sys

import numpy as np


def _int_list(text):
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return sizes


def _dropout_rate(text):
    try:
        p = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text!r}") from None
    if not 0.0 <= p < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return p


def _int_at_least(low):
    """An argparse type: an integer >= low, with a one-line error otherwise."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value
    return parse


_non_negative_int = _int_at_least(0)
_positive_int = _int_at_least(1)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: "fastnn train: error: ... (see fastnn train --help)"."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    parser = _Parser(prog="fastnn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train an MLP and report its test metric",
                       description="Train an MLP on the bundled digits data or on --data, with "
                                   "a train/validation/test split; prints the test metric once.")
    t.add_argument("--data", help="a .npz file with arrays X and y, or a .csv whose last column "
                                  "is the label (default: scikit-learn's digits)")
    t.add_argument("--hidden", type=_int_list, default=[128],
                   help="hidden layer sizes, comma-separated (default: 128)")
    t.add_argument("--activation", default="relu",
                   help="hidden activation: identity, sigmoid, tanh, relu, leaky_relu, elu, gelu")
    t.add_argument("--dropout", type=_dropout_rate, default=0.0, metavar="P",
                   help="drop each hidden unit with probability P while training (inverted "
                        "dropout, as torch's nn.Dropout; default: 0)")
    t.add_argument("--input-dropout", type=_dropout_rate, default=0.0, metavar="P",
                   help="the same for the input features (default: 0)")
    t.add_argument("--task", choices=("auto", "classification", "regression"), default="auto",
                   help="auto: classification when the labels are integers")
    t.add_argument("--optimizer", default="adam", help="sgd, adagrad, adadelta, rmsprop, adam, "
                                                        "adamw (default: adam)")
    t.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
    t.add_argument("--batch-size", type=_non_negative_int, default=32,
                   help="minibatch size; 0 for full-batch gradient descent (default: 32)")
    t.add_argument("--epochs", type=_positive_int, default=30, help="passes over the data (default: 30)")
    t.add_argument("--val-size", type=float, default=0.15,
                   help="validation fraction (default: 0.15)")
    t.add_argument("--test-size", type=float, default=0.15, help="test fraction (default: 0.15)")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    t.add_argument("--seed", type=int, default=0, help="seeds the split, init and shuffling")
    t.add_argument("--patience", type=_non_negative_int, default=None, metavar="N",
                   help="early stopping: stop after N epochs without a lower validation loss "
                        "and restore the best epoch's weights (default: off)")
    t.add_argument("--save", metavar="FILE", help="write the trained (best) model to FILE "
                                                  "(.safetensors, loads with fastnn.load)")
    t.add_argument("--plot", metavar="FILE.png", help="write learning curves and per-layer "
                                                      "gradient norms to FILE.png (matplotlib)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def train(args):
    import fastnn

    from .data import load_split

    if args.patience is not None and args.val_size == 0:
        raise ValueError("--patience needs a validation set: pass --val-size > 0")
    if args.plot is not None:
        from .plot import require_matplotlib
        try:
            require_matplotlib()  # fail before training, not after it
        except ImportError as exc:
            raise ValueError(f"--plot: {exc}") from None
    X_train, X_val, X_test, y_train, y_val, y_test, classification = load_split(
        args.data, args.val_size, args.test_size, args.seed, args.task)
    if classification:
        labels = np.concatenate([y_train, y_val, y_test])
        if labels.min() < 0:
            raise ValueError("class labels must be 0, 1, ..., n_classes - 1")
        n_out, output, metric = int(labels.max()) + 1, "softmax", "accuracy"
    else:
        n_out = 1 if np.ndim(y_train) == 1 else np.shape(y_train)[1]
        output, metric = "identity", "R^2"
    sizes = [X_train.shape[1], *args.hidden, n_out]
    model = fastnn.MLP(sizes, activation=args.activation, output=output, dtype=args.dtype,
                       seed=args.seed, dropout=args.dropout, input_dropout=args.input_dropout)
    optimizer = fastnn.optim.get_optimizer(args.optimizer, lr=args.lr)
    batch_size = None if args.batch_size == 0 else args.batch_size
    has_val = len(X_val) > 0
    print(f"fastnn: {model}; {len(X_train)} train / {len(X_val)} validation / {len(X_test)} "
          f"test samples; {optimizer}, batch_size={batch_size}, epochs={args.epochs}",
          file=sys.stderr)
    callbacks = []
    if args.patience is not None:
        if not has_val:
            raise ValueError("--patience needs a validation set, but the split left none: "
                             "raise --val-size")
        stopper = fastnn.EarlyStopping(monitor="val_loss", patience=args.patience,
                                       restore_best_weights=True)
        callbacks.append(stopper)
    trainer = fastnn.Trainer(model, optimizer, batch_size=batch_size, epochs=args.epochs,
                             seed=args.seed, callbacks=callbacks,
                             verbose=0 if args.quiet else 1)
    history = trainer.fit(X_train, y_train,
                          validation_data=(X_val, y_val) if has_val else None)
    shown = ("loss", "accuracy", "r2", "val_loss", "val_accuracy", "val_r2")
    epoch = len(history.epoch) - 1
    what = "last epoch"
    if callbacks:
        epoch = history.epoch.index(stopper.best_epoch)
        stopped = (f"stopped early after epoch {stopper.stopped_epoch + 1}; "
                   if stopper.stopped_epoch else "")
        what = f"{stopped}restored the best epoch ({stopper.best_epoch + 1})"
    print(f"fastnn: {what}: " + ", ".join(f"{k}={history[k][epoch]:.4g}" for k in shown
                                          if k in history.history), file=sys.stderr)
    if args.save is not None:
        model.save(args.save)
        print(f"fastnn: saved the model to {args.save}", file=sys.stderr)
    if args.plot is not None:
        history.plot(args.plot)
        print(f"fastnn: wrote {args.plot}", file=sys.stderr)
    if len(X_test) == 0:
        return 0
    if classification:
        score = float(np.mean(model.predict_classes(X_test) == y_test))
    else:
        pred = model.predict(X_test).reshape(np.shape(y_test))
        resid = np.sum((pred - y_test) ** 2)
        total = np.sum((y_test - np.mean(y_test, axis=0)) ** 2)
        score = float(1.0 - resid / total) if total > 0 else float("nan")
    print(f"test {metric}: {score:.4f}")
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return train(args)
    except (ValueError, TypeError, OSError, FloatingPointError, MemoryError) as exc:
        # one line, whatever the message holds (numpy's can span several)
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"fastnn: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastnn: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
