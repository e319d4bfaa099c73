"""Shared set-up for the asv suites: the two benchmark networks and their data."""
import numpy as np

import fastnn

NETWORKS = {"small": [64, 128, 64, 10], "mnist": [784, 512, 256, 10]}
BATCH_SIZES = [1, 8, 32, 128, 512, 2048]
# samples per timed fit, by batch size: a few tenths of a second on a 2-core machine
FIT_SAMPLES = {1: 1024, 8: 4096, 32: 8192, 128: 16384, 512: 32768, 2048: 32768}


def make_data(sizes, n, seed=0):
    """MNIST-shaped float32 inputs in [0, 1) and labels from a random ReLU teacher."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, sizes[0]), dtype=np.float32)
    W1 = rng.standard_normal((sizes[0], 64)) / np.sqrt(sizes[0])
    W2 = rng.standard_normal((64, sizes[-1])) / 8.0
    y = np.argmax(np.maximum((X - 0.5) @ W1, 0.0) @ W2, axis=1).astype(np.int64)
    return X, y


def make_trainer(network, batch_size, epochs=1, dropout=0.0):
    model = fastnn.MLP(NETWORKS[network], activation="relu", output="softmax", seed=0,
                       dropout=dropout)
    trainer = fastnn.Trainer(model, fastnn.optim.Adam(lr=1e-3), loss="cross_entropy",
                             batch_size=batch_size, epochs=epochs, seed=0, verbose=0)
    return model, trainer
