"""Dropout's cost: samples/s of one epoch of Trainer.fit on 784-512-256-10 (Adam,
cross-entropy) with dropout 0.5 on the hidden layers against none, batch 128 and 2048, the two
trainers alternating round by round in one process (the machine's drift hits both).

    python benchmarks/compare_dropout.py [rounds]      # default 5
"""
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks.common import FIT_SAMPLES, NETWORKS, make_data, make_trainer


def main(rounds=5):
    for batch in (128, 2048):
        n = FIT_SAMPLES[batch]
        X, y = make_data(NETWORKS["mnist"], n)
        trainers = {p: make_trainer("mnist", batch, dropout=p)[1] for p in (0.0, 0.5)}
        warm = max(4 * batch, 256)
        for t in trainers.values():
            t.fit(X[:warm], y[:warm])
        rates = {p: [] for p in trainers}
        for _ in range(rounds):
            for p, t in trainers.items():
                t0 = time.perf_counter()
                t.fit(X, y)
                rates[p].append(n / (time.perf_counter() - t0))
        r0, r5 = np.array(rates[0.0]), np.array(rates[0.5])
        ratio = r5 / r0
        print(f"batch {batch}: no dropout {np.median(r0):,.0f} samples/s "
              f"[{r0.min():,.0f}..{r0.max():,.0f}], dropout 0.5 {np.median(r5):,.0f} "
              f"[{r5.min():,.0f}..{r5.max():,.0f}]; dropout / none per round: median "
              f"{np.median(ratio):.3f} [{ratio.min():.3f}..{ratio.max():.3f}]", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
