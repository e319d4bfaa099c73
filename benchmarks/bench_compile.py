"""Time from a new process to the first finished training step: cold (empty Numba cache, so
everything compiles) and cached (the normal case after the first run)."""
import os
import subprocess
import sys
import tempfile

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
