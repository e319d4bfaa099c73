"""Compiled kernels are cached on disk: a second process must not recompile, and an edit to any
kernel file must invalidate the cache of every kernel that inlines it."""
import os
import subprocess
import sys
import textwrap

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
