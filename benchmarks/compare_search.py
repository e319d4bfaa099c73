"""Model selection on digits: fastnn.search against scikit-learn's GridSearchCV(MLPClassifier).

    python benchmarks/compare_search.py [--repeats 3] [--epochs 30] [--no-dask] [--quick]

The lecture's workflow on scikit-learn's bundled digits (1797 images, 64 pixels): a stratified
70/15/15 train/validation/test split standardized on the training part
(fastnn.data.load_digits_split), a 24-candidate grid (hidden 32/64/128 x lr 1e-3/3e-3 x batch
16/64 x activation relu/tanh, Adam, up to --epochs epochs), candidates ranked on the
validation part, the chosen one scored once on the test part. Rows:

- fastnn.search serial, n_jobs=2 threads, and client= a 2-worker Dask LocalCluster
  (processes, one thread each; cluster start-up not timed). Early stopping: patience 10 on
  the validation loss, best weights kept.
- fastnn.search strategy="halving" (factor 3, rungs 3/10/30 epochs by default) on the same grid.
- scikit-learn GridSearchCV(MLPClassifier(solver="adam", max_iter=epochs, alpha=0), cv= the
  same train/validation split (PredefinedSplit), n_jobs=2, refit=False), then the chosen
  parameters trained once more on the training part for the test score (timed with the
  search: fastnn's search keeps its chosen model). scikit-learn stops on a training-loss
  plateau (its default tol=1e-4, n_iter_no_change=10); both use accuracy on the validation
  part to report, fastnn ranks on validation loss.

Each row runs --repeats times after an untimed warm-up run of the same row (JIT caches,
loky/Dask worker imports); the table shows the median wall time, its range, the speed-up over
scikit-learn's median, and the test accuracy of the chosen model (deterministic for fastnn;
scikit-learn's too, with random_state=0). Absolute times on shared machines drift; ratios hold
better.
"""
import argparse
import statistics
import time
import warnings

import numpy as np

import fastnn
from fastnn.data import load_digits_split

GRID = {"hidden": [[32], [64], [128]], "lr": [1e-3, 3e-3], "batch_size": [16, 64],
        "activation": ["relu", "tanh"]}


def sklearn_grid():
    return {"hidden_layer_sizes": [tuple(h) for h in GRID["hidden"]],
            "learning_rate_init": GRID["lr"], "batch_size": GRID["batch_size"],
            "activation": GRID["activation"]}


def run_fastnn(d, epochs, **kw):
    res = fastnn.search(GRID, d.X_train, d.y_train, validation_data=(d.X_val, d.y_val),
                        max_epochs=epochs, patience=10, seed=0, **kw)
    return res, res.test(d.X_test, d.y_test)["accuracy"]


def run_sklearn(d, epochs):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, PredefinedSplit
    from sklearn.neural_network import MLPClassifier

    X = np.concatenate([d.X_train, d.X_val])
    y = np.concatenate([d.y_train, d.y_val])
    fold = np.r_[np.full(len(d.y_train), -1), np.zeros(len(d.y_val), dtype=int)]
    est = MLPClassifier(solver="adam", max_iter=epochs, alpha=0.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gs = GridSearchCV(est, sklearn_grid(), cv=PredefinedSplit(fold), n_jobs=2,
                          refit=False).fit(X, y)
        best = MLPClassifier(solver="adam", max_iter=epochs, alpha=0.0, random_state=0,
                             **gs.best_params_).fit(d.X_train, d.y_train)
    return gs, float(np.mean(best.predict(d.X_test) == d.y_test))


def timed(fn, repeats):
    fn()  # warm-up: kernels from the cache, worker processes started and imported
    times, acc = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        _, acc = fn()
        times.append(time.perf_counter() - t)
    return times, acc


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--no-dask", action="store_true")
    p.add_argument("--quick", action="store_true", help="1 repeat, 6 epochs")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.epochs = 1, 6
    d = load_digits_split(seed=0)
    rows = {}
    rows["scikit-learn GridSearchCV, n_jobs=2"] = timed(
        lambda: run_sklearn(d, args.epochs), args.repeats)
    rows["fastnn.search serial"] = timed(lambda: run_fastnn(d, args.epochs), args.repeats)
    rows["fastnn.search n_jobs=2 (threads)"] = timed(
        lambda: run_fastnn(d, args.epochs, n_jobs=2), args.repeats)
    if not args.no_dask:
        from dask.distributed import Client, LocalCluster
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            rows["fastnn.search Dask, 2 workers"] = timed(
                lambda: run_fastnn(d, args.epochs, client=client), args.repeats)
    min_epochs = max(1, args.epochs // 9)
    rows[f"fastnn.search halving serial ({min_epochs}..{args.epochs} epochs)"] = timed(
        lambda: run_fastnn(d, args.epochs, strategy="halving", min_epochs=min_epochs),
        args.repeats)
    base = statistics.median(rows["scikit-learn GridSearchCV, n_jobs=2"][0])
    print(f"24 candidates, up to {args.epochs} epochs, digits train {len(d.y_train)} / "
          f"validation {len(d.y_val)} / test {len(d.y_test)}; {args.repeats} timed runs")
    print(f"| {'search':<48} | {'wall s (median, range)':<24} | {'vs sklearn':>10} | "
          f"{'test acc':>8} |")
    print(f"|{'-' * 50}|{'-' * 26}|{'-' * 12}|{'-' * 10}|")
    for name, (times, acc) in rows.items():
        med = statistics.median(times)
        spread = f"{med:.2f} ({min(times):.2f}..{max(times):.2f})"
        print(f"| {name:<48} | {spread:<24} | {base / med:>9.1f}x | {acc:>8.4f} |")


if __name__ == "__main__":
    main()
