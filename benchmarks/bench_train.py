"""Training throughput and memory of Trainer.fit, by batch size and network."""
import time
import tracemalloc

from .common import BATCH_SIZES, FIT_SAMPLES, NETWORKS, make_data, make_trainer


class Train:
    params = (BATCH_SIZES, list(NETWORKS))
    param_names = ("batch_size", "network")
    timeout = 300

    def setup(self, batch_size, network):
        self.n = FIT_SAMPLES[batch_size]
        self.X, self.y = make_data(NETWORKS[network], self.n)
        self.model, self.trainer = make_trainer(network, batch_size)
        warm = max(4 * batch_size, 256)
        self.trainer.fit(self.X[:warm], self.y[:warm])  # compile or load the cache

    def track_samples_per_sec(self, batch_size, network):
        """One epoch of Trainer.fit (Adam, cross-entropy), everything included."""
        t = time.perf_counter()
        self.trainer.fit(self.X, self.y)
        return self.n / (time.perf_counter() - t)

    track_samples_per_sec.unit = "samples/s"

    def track_fit_allocated_bytes(self, batch_size, network):
        """Peak bytes allocated (numpy, Python) during a 3-epoch fit: fit's copy of the
        labels, the workspaces, gradient, optimizer state and
        the roll-back copies; flat in the epochs."""
        self.trainer.epochs = 3
        tracemalloc.start()
        try:
            self.trainer.fit(self.X, self.y)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            self.trainer.epochs = 1
        return peak

    track_fit_allocated_bytes.unit = "bytes"


class Dropout:
    """Training throughput with dropout 0.5 on the hidden layers against none, in the same
    process and setup (the mask is a hash fused into the activation epilogue and the
    backward's derivative: the target is at most 15% fewer samples/s on the mnist net)."""
    params = ((128, 2048), ("mnist",), (0.0, 0.5))
    param_names = ("batch_size", "network", "dropout")
    timeout = 300

    def setup(self, batch_size, network, dropout):
        self.n = FIT_SAMPLES[batch_size]
        self.X, self.y = make_data(NETWORKS[network], self.n)
        self.model, self.trainer = make_trainer(network, batch_size, dropout=dropout)
        warm = max(4 * batch_size, 256)
        self.trainer.fit(self.X[:warm], self.y[:warm])

    def track_samples_per_sec(self, batch_size, network, dropout):
        """One epoch of Trainer.fit (Adam, cross-entropy), everything included."""
        t = time.perf_counter()
        self.trainer.fit(self.X, self.y)
        return self.n / (time.perf_counter() - t)

    track_samples_per_sec.unit = "samples/s"


class FitMemory:
    """Peak resident memory of a process that trains (imports and data included)."""
    params = ((32, 2048), tuple(NETWORKS))
    param_names = ("batch_size", "network")

    def setup(self, batch_size, network):
        self.X, self.y = make_data(NETWORKS[network], 8192)
        self.model, self.trainer = make_trainer(network, batch_size, epochs=2)

    def peakmem_fit(self, batch_size, network):
        self.trainer.fit(self.X, self.y)
