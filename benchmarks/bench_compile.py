"""Time from a new process to the first finished training step: cold (empty Numba cache, so
everything compiles) and cached (the normal case after the first run); and the README's first
command, `fastnn train --quiet` on the digits default, cold, cached and after `fastnn warmup`."""
import os
import subprocess
import sys
import tempfile
import time

FIRST_STEP = """
import time
t0 = time.perf_counter()
import numpy as np
t1 = time.perf_counter()
import fastnn
model = fastnn.MLP([64, 128, 64, 10], activation="relu", output="softmax", seed=0)
X = np.random.default_rng(0).random((32, 64), dtype=np.float32)
y = np.arange(32) % 10
fastnn.Trainer(model, batch_size=32, epochs=1, verbose=0).fit(X, y)
print(time.perf_counter() - t1)
"""


def run_first_step(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", FIRST_STEP], env=env, check=True,
                         capture_output=True, text=True)
    return float(out.stdout.split()[-1])


class FirstStep:
    timeout = 600
    number = 1
    repeat = 1
    warmup_time = 0

    def setup(self):
        self.cached = tempfile.mkdtemp(prefix="fastnn-numba-cache-")
        run_first_step(self.cached)  # fill the cache

    def track_cold_seconds(self):
        """import fastnn + compile every kernel + one step, in a fresh process with an empty
        Numba cache (numpy's import not counted)."""
        with tempfile.TemporaryDirectory(prefix="fastnn-numba-cold-") as cold:
            return run_first_step(cold)

    track_cold_seconds.unit = "seconds"

    def track_cached_seconds(self):
        """The same with a warm cache: import fastnn, load the compiled kernels, one step."""
        return run_first_step(self.cached)

    track_cached_seconds.unit = "seconds"


def run_cli(cache_dir, *argv):
    """Seconds of `python -m fastnn.cli ARGV` in a new process with this Numba cache."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fastnn.cli", *argv], env=env, check=True,
                   capture_output=True, text=True)
    return time.perf_counter() - t


class FirstFit:
    """`fastnn train --quiet` (digits, 64-128-10, 30 epochs with validation, then the test
    accuracy): the whole command, process start included."""
    timeout = 900
    number = 1
    repeat = 1
    warmup_time = 0

    def setup(self):
        self.warmed = tempfile.mkdtemp(prefix="fastnn-numba-warmed-")
        run_cli(self.warmed, "warmup", "--dtype", "float32")

    def track_cold_seconds(self):
        """Empty Numba cache: everything the fit uses compiles."""
        with tempfile.TemporaryDirectory(prefix="fastnn-numba-cold-") as cold:
            return run_cli(cold, "train", "--quiet")

    track_cold_seconds.unit = "seconds"

    def track_after_warmup_seconds(self):
        """After `fastnn warmup --dtype float32`: nothing compiles."""
        return run_cli(self.warmed, "train", "--quiet")

    track_after_warmup_seconds.unit = "seconds"
