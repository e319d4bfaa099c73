"""Compiled kernels are cached on disk: a second process must not recompile, and an edit to any
kernel file must invalidate the cache of every kernel that inlines it."""
import os
import subprocess
import sys
import textwrap

import numpy as np

from fastnn._kernels import steps

SCRIPT = textwrap.dedent("""
    import numpy as np, fastnn
    from fastnn._kernels.steps import train_steps
    X = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    y = np.arange(40) % 3
    m = fastnn.MLP([4, 6, 3], output="softmax", seed=0)
    fastnn.Trainer(m, fastnn.optim.Adam(), batch_size=8, epochs=1, verbose=0).fit(X, y)
    print(len(train_steps.stats.cache_hits), len(train_steps.stats.cache_misses))
""")


def _run(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    hits, misses = map(int, out.stdout.split()[-2:])
    return hits, misses


def test_second_process_loads_the_training_loop_from_the_cache(tmp_path):
    assert _run(tmp_path) == (0, 1)  # cold: compiled once
    assert _run(tmp_path) == (1, 0)  # warm: loaded, not compiled


def test_kernel_caches_are_stamped_with_every_kernel_source():
    locator = steps.train_steps._cache._impl.locator
    assert type(locator).__name__.startswith("FastnnTree")
    from fastnn._kernels import _tree_stamp
    assert locator.get_source_stamp() == _tree_stamp()


COLD_FIT = textwrap.dedent("""
    import numpy as np, fastnn
    from fastnn._kernels import dropout, losses, optim
    from fastnn._kernels.steps import train_steps
    X = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    y = np.arange(40) % 3
    m = fastnn.MLP([4, 6, 3], output="softmax", seed=0)
    fastnn.Trainer(m, fastnn.optim.Adam(), batch_size=8, epochs=1, verbose=0).fit(
        X, y, validation_data=(X[:8], y[:8]))
    compiled = [f.__name__ for f in (optim.adam_update, optim.sgd_update, optim.rmsprop_update,
                                     losses.cross_entropy_rows, losses.mse_rows,
                                     dropout.dropout_forward_row, dropout.row_key)
                if f.signatures]
    # a callee of the fit, called from Python: compiled (and linked) whole here
    stats = np.zeros(4)
    dz = np.zeros((2, 3), np.float32)
    losses.loss_forward_backward(dz, dz + 1, dz + 1.0 / 3, np.array([0, 1]), np.zeros((0, 3),
                                 np.float32), losses.CROSS_ENTROPY, 7, stats, 2)
    print(" ".join(compiled), "|", len(train_steps.stats.cache_hits), stats[0])
""")


def test_a_fit_compiles_only_its_own_rule_and_loss(tmp_path):
    """An Adam + cross-entropy fit without dropout compiles neither another optimizer, nor
    another loss, nor the dropout hash (static.py, dropout.dropping); a later process loads the
    kernels from the cache and can still call a callee from Python."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", COLD_FIT], env=env, capture_output=True,
                           text=True, timeout=600, check=True).stdout.split("|")
            for _ in range(2)]
    # (the second process loads train_steps whole and compiles none of them)
    assert [compiled.split() for compiled, _ in runs] == [["adam_update", "cross_entropy_rows"],
                                                          []]
    hits = [int(tail.split()[0]) for _, tail in runs]
    assert hits == [0, 1]
    # 2 rows of uniform softmax output: the summed cross-entropy is 2 log 3 (float32 inputs)
    for _, tail in runs:
        assert abs(float(tail.split()[1]) - 2 * np.log(3.0)) < 1e-5
    indexes = {p.name.split("-")[0] for p in tmp_path.rglob("*.nbi")}
    assert {"steps.train_steps", "steps.evaluate_batches", "optim.adam_update"} <= indexes

