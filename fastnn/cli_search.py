"""`fastnn search`: model selection from the command line (fastnn.search).

Grid values are comma lists: `fastnn search --hidden 32,64,128-64 --lr 1e-3,3e-3
--batch-size 16,64 --dropout 0,0.2,0.5` (a hidden value of several layers joins widths with
'-', and a dropout value of one rate per hidden layer its rates: 0.5-0.2). Without --data it
searches on scikit-learn's bundled digits like `fastnn train`: split into train / validation /
test, standardized on the training part; candidates are ranked on the validation part and the
chosen one is scored on the test part once.
"""
import argparse


def _list(convert, what):
    def parse(text):
        try:
            values = [convert(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma list of {what}, got "
                                             f"{text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected at least one {what[:-1]}")
        return values
    return parse


def _hidden(text):
    sizes = [int(s) for s in text.split("-")]
    if any(s <= 0 for s in sizes):
        raise ValueError(text)
    return sizes


def _rate(text):
    p = float(text)
    if not 0.0 <= p < 1.0:
        raise ValueError(text)
    return p


def _rates(text):
    """One dropout value: a rate, or one per hidden layer joined with '-' (0.5-0.2)."""
    rates = [_rate(p) for p in text.split("-")]
    return rates[0] if len(rates) == 1 else rates


def _batch(text):
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return None if value == 0 else value


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


SEARCH_DESCRIPTION = ("Search hyperparameters (comma lists are grid values) with early "
                      "stopping on the validation part of the bundled digits data or of --data; "
                      "prints the table, the chosen parameters and one test score.")


def add_search_arguments(s):
    """The arguments of `fastnn search` (registered in fastnn/cli.py's COMMANDS)."""
    s.add_argument("--data", help="a .npz file with arrays X and y, or a .csv whose last column "
                                  "is the label (default: scikit-learn's digits)")
    s.add_argument("--label-column", metavar="NAME|INDEX", default=None,
                   help="the CSV column holding the labels (default: the last)")
    s.add_argument("--task", choices=("auto", "classification", "regression"), default="auto")
    s.add_argument("--hidden", type=_list(_hidden, "layer widths"), default=[[64]],
                   help="hidden layers per candidate, comma-separated; 128-64 is two layers "
                        "(default: 64)")
    s.add_argument("--activation", type=_list(str, "names"), default=["relu"])
    s.add_argument("--optimizer", type=_list(str, "names"), default=["adam"])
    s.add_argument("--lr", type=_list(float, "numbers"), default=[1e-3])
    s.add_argument("--batch-size", type=_list(_batch, "integers"), default=[32],
                   help="0 is full batch (default: 32)")
    s.add_argument("--dropout", type=_list(_rates, "dropout rates"), default=None,
                   help="hidden-layer dropout in [0, 1) per candidate, comma-separated; "
                        "0.5-0.2 is one rate per hidden layer (default: none)")
    s.add_argument("--input-dropout", type=_list(_rate, "dropout rates"), default=None,
                   help="input-feature dropout in [0, 1) per candidate, comma-separated "
                        "(default: none)")
    s.add_argument("--strategy", choices=("grid", "random", "halving"), default="grid")
    s.add_argument("--n-candidates", type=_positive, default=None,
                   help="random draws from the lists (random; halving draws when given)")
    s.add_argument("--min-epochs", type=_positive, default=None)
    s.add_argument("--max-epochs", type=_positive, default=30)
    s.add_argument("--factor", type=_positive, default=3)
    s.add_argument("--patience", type=_positive, default=5)
    s.add_argument("--objective", choices=("val_loss", "val_accuracy"), default="val_loss")
    s.add_argument("--jobs", type=_positive, default=1, help="candidates on threads at once")
    s.add_argument("--scheduler", metavar="ADDRESS",
                   help="a Dask scheduler (tcp://host:8786): candidates run on its cluster")
    s.add_argument("--dir", metavar="DIR", help="journal and checkpoints; rerun to resume")
    s.add_argument("--val-size", type=float, default=0.15)
    s.add_argument("--test-size", type=float, default=0.15)
    s.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true", help="no progress bar")


def search_command(args):
    import fastnn

    from .data import load_split

    if args.val_size <= 0:
        raise ValueError("fastnn search ranks candidates on validation data: --val-size > 0")
    split = load_split(args.data, args.val_size, args.test_size, args.seed, args.task,
                       args.label_column)
    # standardized with the training part's statistics only
    X_train, X_val, X_test = ((x - split.mean) / split.std
                              for x in (split.X_train, split.X_val, split.X_test))
    y_train, y_val, y_test = split.y_train, split.y_val, split.y_test
    space = {"hidden": args.hidden, "activation": args.activation,
             "optimizer": args.optimizer, "lr": args.lr, "batch_size": args.batch_size}
    for name in ("dropout", "input_dropout"):  # in the table only when searched
        if getattr(args, name) is not None:
            space[name] = getattr(args, name)
    client = None
    if args.scheduler:
        try:
            from dask.distributed import Client
        except ImportError:
            raise ValueError("--scheduler needs Dask: pip install 'fastnn[dask]'") from None
        client = Client(args.scheduler)
    try:
        res = fastnn.search(space, X_train, y_train, validation_data=(X_val, y_val),
                            strategy=args.strategy, n_candidates=args.n_candidates,
                            min_epochs=args.min_epochs, max_epochs=args.max_epochs,
                            factor=args.factor, objective=args.objective,
                            patience=args.patience, seed=args.seed, n_jobs=args.jobs,
                            client=client, directory=args.dir, dtype=args.dtype,
                            verbose=0 if args.quiet else 1)
    finally:
        if client is not None:
            client.close()
    print(res.table)
    if res.best_model is None:
        raise ValueError("every candidate failed: see the table's errors")
    print(f"chosen: candidate {res.best_id}: "
          + ", ".join(f"{k}={v}" for k, v in res.best_params.items())
          + f" ({args.objective} {res.best_score:.4f})")
    if len(X_test) == 0:
        return 0
    if res.test_score is not None:
        print(f"test (scored earlier, data {res.test_data_hash}): "
              + ", ".join(f"{k} {v:.4f}" for k, v in res.test_score.items()))
        return 0
    score = res.test(X_test, y_test)
    print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in score.items()))
    return 0


