"""fastnn: train, apply and evaluate MLPs from the command line.

`fastnn train` fits an MLP on a data file (or, without --data, scikit-learn's bundled digits,
offline), split into train/validation/test, and prints the test metric; the saved model carries
its input standardization and class names. `fastnn predict` applies a saved model to raw
rows, `fastnn evaluate` reports its metric on a labelled file. `fastnn warmup` compiles and
caches the kernels ahead of time (fastnn/_warmup.py). `fastnn search` selects
hyperparameters on the validation part and scores the chosen model on the test part once
(fastnn/cli_search.py).

Each subcommand is one `_Command`: a function that adds its arguments and one that runs it;
`COMMANDS` lists them (add a new one there).
"""
import argparse
import csv
import io
import os
import sys
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from . import _warmup
from .cli_search import SEARCH_DESCRIPTION, add_search_arguments, search_command


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


class _Command(NamedTuple):
    name: str
    help: str
    description: str
    add_arguments: Callable  # (parser) -> None
    run: Callable            # (args) -> exit status


def _add_data_arguments(p, data_help, required):
    p.add_argument("--data", metavar="FILE", required=required, help=data_help)
    p.add_argument("--label-column", metavar="NAME|INDEX", default=None,
                   help="the CSV column holding the labels: a header name, or a 0-based index "
                        "(-1 = the last; default: the last column)")


def _add_train_arguments(t):
    _add_data_arguments(t, "a .npz file with arrays X and y, or a .csv of numeric features and "
                           "a label column (numbers or names) (default: scikit-learn's digits)",
                        required=False)
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
                   help="auto: classification when the labels are integers or names")
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
    t.add_argument("--save", metavar="FILE", help="write the trained (best) model, with its "
                                                  "input standardization and class names, to "
                                                  "FILE (.safetensors; for fastnn predict and "
                                                  "fastnn.load)")
    t.add_argument("--plot", metavar="FILE.png", help="write learning curves and per-layer "
                                                      "gradient norms to FILE.png (matplotlib)")
    t.add_argument("--quiet", action="store_true", help="no model summary, no progress bar")


def _add_model_argument(p):
    p.add_argument("model", metavar="MODEL", help="a model file written by fastnn train --save "
                                                  "or model.save")
    p.add_argument("--batch-size", type=_positive_int, default=1024, metavar="N",
                   help="rows per forward pass (default: 1024)")


def _add_predict_arguments(p):
    _add_model_argument(p)
    _add_data_arguments(p, "a .csv of raw feature rows (the model's inputs, optionally with a "
                           "label column, which is ignored), or a .npz with an array X",
                        required=True)
    p.add_argument("--output", metavar="FILE.csv",
                   help="write the predictions there (default: standard output)")
    p.add_argument("--proba", action="store_true",
                   help="class probabilities, one column per class, instead of labels")


def _add_evaluate_arguments(p):
    _add_model_argument(p)
    _add_data_arguments(p, "a labelled .csv or .npz, read as fastnn train reads its data",
                        required=True)


def build_parser():
    parser = _Parser(prog="fastnn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.description)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def _is_classifier(model):
    """A softmax output, or a single sigmoid output: one class label per row."""
    return model.output == "softmax" or (model.output == "sigmoid" and model.n_outputs == 1)


def _test_metric(model, X, y):
    """("accuracy", value) for classifiers, ("R^2", value) otherwise, of the model on raw
    rows X and class indices (or targets) y."""
    if model.output != "identity":
        if np.ndim(y) == 1 and _is_classifier(model):
            indices = model.predict_classes(X).reshape(len(X), -1)[:, 0]
            return "accuracy", float(np.mean(indices == y))
        return "accuracy", model.evaluate(X, y)[1]
    pred = model.predict(X).reshape(np.shape(y))
    resid = np.sum((pred - y) ** 2)
    total = np.sum((y - np.mean(y, axis=0)) ** 2)
    return "R^2", float(1.0 - resid / total) if total > 0 else float("nan")


def _stderr(text):
    print(text, file=sys.stderr)


def check_output_path(path, option):
    """Fail before the work, not after it: `path` (what `option` writes) must name a file in
    an existing, writable directory (a symlink counts as its target)."""
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    if os.path.isdir(target):
        raise ValueError(f"{option} {path}: is a directory, not a file name")
    if not os.path.isdir(directory):
        raise ValueError(f"{option} {path}: the directory {os.path.dirname(path) or '.'} does "
                         f"not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: the directory {os.path.dirname(path) or '.'} is "
                         f"not writable")
    if os.path.exists(target) and not os.access(target, os.W_OK):
        raise ValueError(f"{option} {path}: the file is not writable")


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
    for option, path in (("--save", args.save), ("--plot", args.plot)):
        if path is not None:
            check_output_path(path, option)
    split = load_split(args.data, args.val_size, args.test_size, args.seed, args.task,
                       args.label_column)
    X_train, X_val, X_test, y_train, y_val, y_test = split[:6]
    if split.classification:  # load_split decides the classes, one-hot columns included
        n_out, output = len(split.classes), "softmax"
    else:
        n_out = 1 if np.ndim(y_train) == 1 else np.shape(y_train)[1]
        output = "identity"
    sizes = [X_train.shape[1], *args.hidden, n_out]
    model = fastnn.MLP(sizes, activation=args.activation, output=output, dtype=args.dtype,
                       seed=args.seed, dropout=args.dropout, input_dropout=args.input_dropout)
    # the model takes raw rows from now on: fit, predict and the saved file standardize them
    model.set_input_standardization(split.mean, split.std)
    model.classes_ = split.classes
    optimizer = fastnn.optim.get_optimizer(args.optimizer, lr=args.lr)
    batch_size = None if args.batch_size == 0 else args.batch_size
    has_val = len(X_val) > 0
    if not args.quiet:
        model.summary(print_fn=_stderr)
    _stderr(f"fastnn: {len(X_train)} train / {len(X_val)} validation / {len(X_test)} "
            f"test samples; {optimizer}, batch_size={batch_size}, epochs={args.epochs}")
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
    _stderr(f"fastnn: {what}: " + ", ".join(f"{k}={history[k][epoch]:.4g}" for k in shown
                                            if k in history.history))
    if args.save is not None:
        model.save(args.save)
        print(f"fastnn: saved the model to {args.save}", file=sys.stderr)
    if args.plot is not None:
        history.plot(args.plot)
        print(f"fastnn: wrote {args.plot}", file=sys.stderr)
    if len(X_test) == 0:
        return 0
    metric, score = _test_metric(model, X_test, y_test)
    print(f"test {metric}: {score:.4f}")
    return 0


def _cells(values):
    """The CSV cells of one row: floats in the shortest form that reads back the same value
    in their dtype (numpy's str of a float32 scalar, not of the float64 it widens to)."""
    return [str(v) for v in values]


def predict(args):
    import fastnn

    from ._files import atomic_write_bytes
    from .data import load_features

    if args.output is not None:
        check_output_path(args.output, "--output")
    model = fastnn.load(args.model)
    X = load_features(args.data, model.n_inputs, args.label_column)
    classes = model.classes_
    if args.proba:
        if model.output == "identity":
            raise ValueError("--proba needs a classifier (softmax or sigmoid output); this "
                             "model is a regression model (identity output)")
        rows = model.predict(X, args.batch_size)
        if _is_classifier(model) and model.output == "sigmoid":
            rows = np.concatenate([1 - rows, rows], axis=1)  # P(class 0), P(class 1)
        header = classes.tolist() if classes is not None else list(range(rows.shape[1]))
    elif _is_classifier(model):
        rows = model.predict_labels(X, args.batch_size)[:, None]
        header = ["prediction"]
    elif model.output == "sigmoid":  # several sigmoid outputs: one 0/1 label per output
        rows = model.predict_classes(X, args.batch_size)
        header = [f"prediction_{j}" for j in range(rows.shape[1])]
    else:
        rows = model.predict(X, args.batch_size)
        header = (["prediction"] if rows.shape[1] == 1 else
                  [f"prediction_{j}" for j in range(rows.shape[1])])
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(_cells(row) for row in rows)
    if args.output is None:
        sys.stdout.write(text.getvalue())
    else:
        atomic_write_bytes(args.output, text.getvalue().encode())
        _stderr(f"fastnn: wrote {len(rows)} predictions to {args.output}")
    return 0


def evaluate(args):
    import fastnn

    from .data import encode_labels, load_table

    model = fastnn.load(args.model)
    X, y = load_table(args.data, args.label_column)
    if X.shape[1] != model.n_inputs:
        raise ValueError(f"{args.data}: {X.shape[1]} feature columns besides the label, but "
                         f"the model takes {model.n_inputs} features")
    if _is_classifier(model) and np.ndim(y) == 1:
        if model.classes_ is not None:
            _, y = encode_labels(y, model.classes_)
        elif y.dtype.kind not in "iu":
            raise ValueError(f"{args.data}: the labels are not class indices (e.g. "
                             f"{y[0].tolist()!r}) and the model has no class names "
                             f"(classes_) to map them to its outputs")
    elif y.dtype.kind == "U":
        raise ValueError(f"{args.data}: the labels are names (e.g. {y[0]!r}), but the model "
                         f"has {model.output} outputs, not a classifier's")
    loss, _ = model.evaluate(X, y, batch_size=args.batch_size)
    metric, score = _test_metric(model, X, y)
    _stderr(f"fastnn: {len(X)} samples, loss={loss:.4g}")
    print(f"test {metric}: {score:.4f}")
    return 0


COMMANDS = (
    _Command("train", "train an MLP and report its test metric",
             "Train an MLP on the bundled digits data or on --data, with a "
             "train/validation/test split; prints the test metric once.",
             _add_train_arguments, train),
    _Command("predict", "apply a saved model to raw rows",
             "Predict the labels (or, for regression, the outputs) of the rows of --data with "
             "a saved model, its input standardization and class names included; one CSV row "
             "per input row, after a header row.",
             _add_predict_arguments, predict),
    _Command("evaluate", "a saved model's metric on a labelled file",
             "Print a saved model's accuracy (classifiers) or R^2 (regression) on the labelled "
             "rows of --data, as fastnn train prints its test metric, and its loss.",
             _add_evaluate_arguments, evaluate),
    _Command("warmup", _warmup.HELP, _warmup.DESCRIPTION, _warmup.add_arguments, _warmup.main),
    _Command("search", "search hyperparameters on validation data, test once",
             SEARCH_DESCRIPTION, add_search_arguments, search_command),
)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError, FloatingPointError, MemoryError) as exc:
        # one line, whatever the message holds (numpy's can span several)
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"fastnn: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
