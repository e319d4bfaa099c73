"""The search directory: an append-only journal and safetensors checkpoints.

Only the driver writes here (workers return their checkpoints to it), so a cluster needs no
shared file system. `journal.jsonl` starts with a header line (strategy, space, seed, data
hash, fastnn version, ...) followed by one JSON line per finished candidate rung and, last, the
test score; each line is flushed and fsync'ed before the search goes on. Checkpoints are
`ckpt-<id>-r<rung>.safetensors` (fastnn.io.save_state: atomic, checksummed): parameters,
optimizer state and best weights as tensors, the rest as JSON metadata.
"""
import hashlib
import json
import os

import numpy as np

from ..io import load_state, save_state

JOURNAL = "journal.jsonl"


def data_hash(*arrays):
    """blake2b over the arrays' dtypes, shapes and bytes: names the data a search (or a test
    score) was computed on."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class Journal:
    """The journal of one search directory. Opening an existing one checks its header against
    `header` (a clear ValueError naming the differences) and loads its records."""

    def __init__(self, directory, header):
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.path = os.path.join(self.directory, JOURNAL)
        self.records = []
        if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, encoding="utf-8") as f:
                lines = [line for line in f.read().splitlines() if line.strip()]
            old = json.loads(lines[0])
            if old != {"kind": "header", **header}:
                keys = sorted(k for k in set(old) | set(header) | {"kind"}
                              if old.get(k) != {"kind": "header", **header}.get(k))
                raise ValueError(
                    f"{self.path} belongs to another search (its header differs in "
                    f"{', '.join(keys)}); use another directory, or the same space, data "
                    f"and settings to resume it")
            for line in lines[1:]:
                try:
                    self.records.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut short by a crash: the rest is lost
                    break
        else:
            self._write({"kind": "header", **header})

    def _write(self, record):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def append(self, record):
        self._write(record)
        self.records.append(record)

    def save_checkpoint(self, cid, rung, ckpt):
        name = f"ckpt-{cid:05d}-r{rung}.safetensors"
        save_checkpoint(os.path.join(self.directory, name), ckpt)
        return name

    def load_checkpoint(self, name):
        return load_checkpoint(os.path.join(self.directory, name))


def save_checkpoint(path, ckpt):
    opt = ckpt["optimizer"]
    tracker = dict(ckpt["tracker"])
    arrays = {"params": ckpt["params"]}
    if opt["state"] is not None:
        arrays["optimizer_state"] = opt["state"]
    best = tracker.pop("best_params")
    if best is not None:
        arrays["best_params"] = best
    meta = {"optimizer": {k: v for k, v in opt.items() if k != "state"},
            "epoch": ckpt["epoch"], "tracker": tracker, "history": ckpt["history"]}
    save_state(path, arrays, {"fastnn.search": json.dumps(meta)})


def load_checkpoint(path):
    arrays, meta = load_state(path)
    meta = json.loads(meta["fastnn.search"])
    opt = dict(meta["optimizer"], state=arrays.get("optimizer_state"))
    tracker = dict(meta["tracker"], best_params=arrays.get("best_params"))
    return {"params": arrays["params"], "optimizer": opt, "epoch": meta["epoch"],
            "tracker": tracker, "history": meta["history"]}
