"""fastnn.warmup() and `fastnn warmup`: compile the common kernels ahead of time.

The first fit in a new environment compiles the training loop and the evaluation kernel
(Numba, tens of seconds) and writes them to Numba's on-disk cache; every later process loads
them in a fraction of a second. Run this where that first minute should not be paid by a user:
in a Docker build after `pip install fastnn` (`RUN fastnn warmup`), or once per cluster worker
image. The cache sits next to fastnn's kernel sources (or Numba's user-wide cache directory
when that is read-only; NUMBA_CACHE_DIR chooses another), and it is only valid on the CPU
model it was compiled on: warm up on the kind of machine that will train.

What is compiled: per dtype, everything a fit (with validation), predict and evaluate run. The
optimizer rule and the loss are compile-time choices (a fit compiles only its own; see
fastnn/_kernels/static.py), so the training loop is compiled once per optimizer (SGD, Adam and
AdamW, Adagrad, Adadelta, RMSprop, with cross-entropy) and once per other loss (mse,
binary cross-entropy, with Adam), without dropout; activations and architectures are run-time
data. A fit outside these (SGD with mse, any fit with dropout) compiles its own version once.
"""
import time

import numpy as np

DTYPES = ("float32", "float64")


def _kernels():
    from ._kernels.fpmode import fp_mode, set_fp_mode
    from ._kernels.steps import evaluate_batches, train_steps

    return {"train_steps": train_steps, "evaluate_batches": evaluate_batches,
            "fp_mode": fp_mode, "set_fp_mode": set_fp_mode}


def _counts(kernels):
    return {name: (len(k.stats.cache_hits), len(k.stats.cache_misses))
            for name, k in kernels.items()}


def warmup(dtypes=DTYPES):
    """Compile, or load from Numba's cache, the kernels that `Trainer.fit` (with validation),
    `MLP.predict` and `MLP.evaluate` run, for each of `dtypes` ("float32", "float64").

    Returns a list of dicts, one per dtype: {"dtype", "seconds", "compiled": [kernel names
    compiled in this call], "loaded": [kernel names loaded from the cache]}. A second call in
    a new process (same machine, same fastnn) loads everything and takes well under a second.
    """
    if isinstance(dtypes, str):
        dtypes = (dtypes,)
    dtypes = tuple(dtypes)
    for d in dtypes:
        if d not in DTYPES:
            raise ValueError(f"dtypes: expected values from {DTYPES}, got {d!r}")
    from .model import MLP
    from .optim import SGD, Adadelta, Adagrad, Adam, RMSprop
    from .trainer import Trainer

    kernels = _kernels()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((48, 6))
    y = np.arange(48) % 3
    Y = np.eye(3)[y]  # one-hot: targets for mse and binary cross-entropy
    report = []
    for dtype in dtypes:
        before = _counts(kernels)
        t = time.perf_counter()
        fits = [("softmax", y, opt) for opt in (SGD, Adam, Adagrad, Adadelta, RMSprop)]
        fits += [("identity", Y, Adam), ("sigmoid", Y, Adam)]  # mse, binary cross-entropy
        for output, targets, optimizer in fits:
            model = MLP([6, 8, 3], activation="relu", output=output, dtype=dtype, seed=0)
            Trainer(model, optimizer(lr=1e-3), batch_size=16, epochs=1, verbose=0,
                    seed=0).fit(X, targets, validation_data=(X[:16], targets[:16]))
            model.predict(X)
            model.evaluate(X, targets)
        after = _counts(kernels)
        compiled = [n for n in kernels if after[n][1] > before[n][1]]
        loaded = [n for n in kernels if after[n][0] > before[n][0]]
        report.append({"dtype": dtype, "seconds": time.perf_counter() - t,
                       "compiled": compiled, "loaded": loaded})
    return report


def cache_dir():
    """Where Numba keeps the training loop's cache in this environment."""
    return _kernels()["train_steps"]._cache._cache_path


HELP = "compile and cache the common kernels ahead of time"
DESCRIPTION = ("Compile the kernels that fit, predict and evaluate use and write them to Numba's "
               "on-disk cache (for Docker builds and cluster workers): later processes start "
               "training at once.")


def add_arguments(p):
    """`fastnn warmup`'s arguments (registered in cli.COMMANDS)."""
    p.add_argument("--dtype", default=",".join(DTYPES),
                   help=f"comma-separated, from {', '.join(DTYPES)} (default: both)")


def main(args):
    """`fastnn warmup`: one line per dtype on stderr; returns the exit status."""
    import sys

    dtypes = [d.strip() for d in args.dtype.split(",") if d.strip()]
    for row in warmup(dtypes):
        done = (f"compiled {', '.join(row['compiled'])}" if row["compiled"]
                else "all loaded from the cache")
        print(f"fastnn: warmup {row['dtype']}: {done} ({row['seconds']:.1f} s)", file=sys.stderr)
    print(f"fastnn: kernel cache in {cache_dir()}", file=sys.stderr)
    return 0
