"""fastnn.search: model selection as a driver over ordinary fits.

The driver generates the candidates, sends (candidate, checkpoint, epochs) tasks to an
executor (this thread, threads, or Dask), keeps every candidate's latest checkpoint, writes
the journal, and ranks on the validation data. It never sees a test set: `SearchResult.test`
scores the chosen model once.
"""
import numbers

import numpy as np

from .._validation import check_features, check_positive_int, check_targets
from ..data import class_labels, train_val_test_split
from ..trainer import History
from . import candidate
from . import space as spaces
from .executors import DaskExecutor, SerialExecutor, ThreadExecutor
from .journal import Journal, data_hash

STRATEGIES = ("grid", "random", "halving")
OBJECTIVES = {"val_loss": "min", "val_accuracy": "max"}
TABLE_COLUMNS = ("id", "params", "status", "epochs", "best_epoch", "score", "seconds",
                 "retries")


class SearchTable:
    """One row (a dict) per candidate, by id: id, params, status ('done', 'pruned' or
    'failed'), epochs trained, best_epoch (0-based, of the objective), score (the best
    objective value), seconds (training time, summed over rungs and retries), retries; failed
    rows also carry `error` (the traceback). Prints as a text table; `to_pandas()`."""

    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def to_pandas(self):
        import pandas as pd
        return pd.DataFrame([{k: r.get(k) for k in (*TABLE_COLUMNS, "error")}
                             for r in self.rows]).set_index("id")

    def __str__(self):
        cells = [[str(r["id"]), _short(r["params"]), r["status"], str(r["epochs"]),
                  str(r["best_epoch"]), "-" if r["score"] is None else f"{r['score']:.4f}",
                  f"{r['seconds']:.2f}", str(r["retries"])] for r in self.rows]
        head = list(TABLE_COLUMNS)
        widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
                  for i, h in enumerate(head)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
        return "\n".join(lines)

    __repr__ = __str__


def _short(params):
    return ", ".join(f"{k}={v}" for k, v in params.items())


class SearchResult:
    """What fastnn.search returns.

    table : SearchTable, one row per candidate.
    best_id, best_params, best_score : the chosen candidate (best objective; ties by id).
    best_model : its fastnn.MLP at its best epoch (early stopping's restored weights).
    best_history : its fastnn.History over all its epochs (all rungs).
    classes : the class labels (classification), in the order of the model's outputs.
    test(X_test, y_test) : score best_model on the test set, once.
    """

    def __init__(self, table, best_id, best_params, best_score, best_model, best_history,
                 classes, objective, journal, test_record):
        self.table = table
        self.best_id = best_id
        self.best_params = best_params
        self.best_score = best_score
        self.best_model = best_model
        self.best_history = best_history
        self.classes = classes
        self.objective = objective
        self._journal = journal
        self.test_score = None if test_record is None else test_record["score"]
        self.test_data_hash = None if test_record is None else test_record["data_hash"]

    def test(self, X_test, y_test):
        """The chosen model's loss (and accuracy, or R^2 for regression) on the test set. The
        test set is for one final, unbiased estimate: a second call raises (also after the
        search was resumed from its directory). The score is recorded with a hash of the test
        data (`test_score`, `test_data_hash`, and the journal)."""
        if self.test_score is not None:
            raise RuntimeError(
                f"this search was already scored on a test set (data hash "
                f"{self.test_data_hash}): {self.test_score}. Scoring again, or on another "
                f"test set, would turn the test set into a second validation set")
        if self.best_model is None:
            raise RuntimeError("there is no model to test: " + (
                "no candidate finished" if self.best_id is None else
                "the search ran with refit=False, which keeps no model"))
        model = self.best_model
        loss = "cross_entropy" if self.classes is not None else "mse"
        X = check_features(X_test, model.n_inputs, model.dtype, "X_test")
        if self.classes is not None:
            y = _encode(y_test, self.classes, "y_test")
        else:
            y = check_targets(y_test, X.shape[0], model.n_outputs, loss, model.dtype,
                              "y_test")[1]
        value, acc = model.evaluate(X, y, loss=loss)
        score = {"loss": value}
        if acc is not None:
            score["accuracy"] = acc
        else:
            var = float(np.mean(np.var(np.asarray(y, np.float64), axis=0)))
            score["r2"] = 1.0 - value / var if var > 0 else float(value == 0)
        self.test_score = score
        self.test_data_hash = data_hash(X, y)
        if self._journal is not None:
            self._journal.append({"kind": "test", "id": self.best_id, "score": score,
                                  "data_hash": self.test_data_hash})
        return score

    def __repr__(self):
        return (f"SearchResult({len(self.table)} candidates, best id {self.best_id}: "
                f"{self.best_params}, {self.objective}={self.best_score})")


def _encode(y, classes, name):
    labels = class_labels(y)
    if labels is None:
        raise ValueError(f"{name} must hold class labels like the training targets")
    labels = np.asarray(labels)
    idx = np.searchsorted(classes, labels)
    idx = np.clip(idx, 0, len(classes) - 1)
    if not np.array_equal(classes[idx], labels):
        raise ValueError(f"{name} holds labels not seen in training: "
                         f"{sorted(set(labels.tolist()) - set(classes.tolist()))[:5]}")
    return idx.astype(np.int64)


def _check_rate_distributions(space):
    """A dropout distribution must draw within [0, 1): checked on its support before anything
    is drawn (each drawn candidate is validated again, as every grid value is)."""
    for name in ("dropout", "input_dropout"):
        value = space.get(name)
        if spaces.is_distribution(value) and hasattr(value, "support"):
            low, high = value.support()
            if low < 0 or high > 1:
                raise ValueError(f"space[{name!r}] draws from [{low}, {high}], but a dropout "
                                 f"rate is in [0, 1) (e.g. scipy.stats.uniform(0, 0.5))")


def _rungs(min_epochs, max_epochs, factor):
    """Epoch budgets of successive halving: min_epochs * factor^i while within max_epochs,
    the last stretched to max_epochs (a final rung shorter than the one before it would add
    too little to rank on: 11, 33, 99 of 100 become 11, 33, 100)."""
    out = [min_epochs]
    while out[-1] * factor <= max_epochs:
        out.append(out[-1] * factor)
    if out[-1] < max_epochs:
        if len(out) > 1 and max_epochs - out[-1] < out[-1] - out[-2]:
            out[-1] = max_epochs
        else:
            out.append(max_epochs)
    return out


def search(space, X, y, validation_data=None, val_size=0.2, strategy="grid",
           n_candidates=None, min_epochs=None, max_epochs=100, factor=3,
           objective="val_loss", patience=10, seed=0, n_jobs=1, client=None, directory=None,
           max_retries=2, refit=True, dtype="float32", callbacks=None, verbose=0):
    """Train candidates from `space` with early stopping on validation data and pick the best.

    Parameters
    ----------
    space : dict name -> list of values (grid) or scipy.stats distribution (random draws), or
        a fixed value. Names: hidden (int or list of widths), activation, optimizer (a
        fastnn.optim name), lr, batch_size (None: full batch), clip_grad_norm, alpha (the L2
        penalty, Trainer(alpha=)), dropout (a rate in [0, 1) for every hidden layer or a list
        of one per hidden layer: `[0.0, 0.5]` are two candidates, `[[0.2, 0.5]]` one) and
        input_dropout (fastnn.MLP's), and the chosen optimizer's own arguments (momentum,
        weight_decay, betas, ...); defaults: hidden [64], relu, adam, lr 1e-3, batch_size 32,
        alpha 0, no dropout.
    X, y : training data. Integer/string labels (fastnn.data.class_labels' rule) make it a
        classification (softmax, cross-entropy); other targets a regression (mse).
    validation_data : (X_val, y_val); else `val_size` of X is split off (stratified, seeded).
    strategy : "grid" (every combination), "random" (n_candidates draws, default 10) or "halving"
        (successive halving over epochs with synchronous rungs: every candidate trains
        min_epochs, the best 1/factor continue from their checkpoints to factor x as many
        epochs, ..., up to max_epochs; promotion depends only on the finished rung, ties
        by candidate id). Halving takes the grid of a space of lists when n_candidates is
        None, else n_candidates draws (default factor ** rungs: `factor` reach the last rung).
    min_epochs : halving's first rung (default max_epochs // factor**2), and for every
        strategy the epochs before early stopping may stop a candidate.
    max_epochs, patience : each candidate trains up to max_epochs, stopping after `patience`
        epochs without a better objective; its score is its best objective value and its
        model the weights of that epoch.
    objective : "val_loss" (minimized) or "val_accuracy" (maximized, classification).
    seed : candidate i's initial weights and shuffles come from (seed, i); random draws
        and the validation split from seed.
    n_jobs : candidates trained at once on threads of this process (one training thread each).
    client : a dask.distributed.Client: candidates run as Dask futures instead (data sent to
        each worker once); a candidate whose task fails or whose worker dies is resubmitted
        from its last checkpoint, held by this driver, up to max_retries times, then marked
        failed with its traceback while the search goes on.
    directory : where the journal and checkpoints go; the same search run again with the same
        directory resumes (finished candidates are never retrained), a different one is an
        error.
    refit : keep the chosen candidate's best weights as `best_model` (False: None).
    callbacks : extra callbacks for every candidate's Trainer (copied per fit).
    verbose : 1 shows a progress bar over candidate rungs.

    The table (all but the seconds and retries) is the same serially, on threads and on
    Dask. Returns a SearchResult.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got "
                         f"{objective!r}")
    spaces.check_space(space)
    _check_rate_distributions(space)
    max_epochs = check_positive_int(max_epochs, "max_epochs")
    factor = check_positive_int(factor, "factor")
    if factor < 2:
        raise ValueError(f"factor must be an integer >= 2, got {factor}")
    patience = check_positive_int(patience, "patience")
    if min_epochs is None:
        min_epochs = max(1, max_epochs // factor**2) if strategy == "halving" else 1
    min_epochs = check_positive_int(min_epochs, "min_epochs")
    if min_epochs > max_epochs:
        raise ValueError(f"min_epochs={min_epochs} is more than max_epochs={max_epochs}")
    n_jobs = check_positive_int(n_jobs, "n_jobs")
    if isinstance(max_retries, bool) or not isinstance(max_retries, numbers.Integral) \
            or max_retries < 0:
        raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if client is not None and n_jobs != 1:
        raise ValueError("pass n_jobs or client, not both (the Dask cluster sets the "
                         "parallelism)")
    dtype = np.dtype(dtype).name
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    callbacks = list(callbacks or [])

    # ---- data: validated and converted once, shared by every candidate
    if validation_data is None:
        X, Xv, _, y, yv, _ = train_val_test_split(X, y, val_size=val_size, test_size=0,
                                                  seed=seed)
    else:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (X_val, y_val)")
        Xv, yv = validation_data
    Xa = check_features(X, np.shape(X)[1] if np.ndim(X) == 2 else -1, dtype, "X")
    Xva = check_features(Xv, Xa.shape[1], dtype, "validation_data[0]")
    labels = class_labels(y)
    if labels is not None:
        classes = np.unique(np.asarray(labels))
        if len(classes) < 2:
            raise ValueError(f"y holds a single class ({classes[0]!r}): nothing to classify")
        ya = _encode(y, classes, "y")
        yva = _encode(yv, classes, "validation_data[1]")
        output, n_out = "softmax", len(classes)
    else:
        classes = None
        if objective == "val_accuracy":
            raise ValueError("objective='val_accuracy' needs class labels; these targets are "
                             "a regression (use 'val_loss')")
        y2 = np.asarray(y)
        n_out = 1 if y2.ndim == 1 else y2.shape[1]
        ya = check_targets(y, Xa.shape[0], n_out, "mse", dtype, "y")[1]
        yva = check_targets(yv, Xva.shape[0], n_out, "mse", dtype, "validation_data[1]")[1]
        output = "identity"
    data = (Xa, ya, Xva, yva)

    # ---- candidates
    rungs = _rungs(min_epochs, max_epochs, factor) if strategy == "halving" else [max_epochs]
    draws = any(spaces.is_distribution(v) for v in space.values())
    if strategy == "grid" and n_candidates is not None:
        raise ValueError("strategy='grid' trains every combination; n_candidates is for "
                         "'random' and 'halving'")
    if strategy == "grid" or (strategy == "halving" and n_candidates is None and not draws):
        params_list = spaces.grid(space)
    else:
        if n_candidates is None:
            # RandomizedSearchCV's n_iter=10; halving: enough for `factor` in the last rung
            n_candidates = 10 if strategy == "random" else factor ** len(rungs)
        params_list = spaces.sample(space, n_candidates, [seed, 0x5EA])
    mode = OBJECTIVES[objective]
    specs = []
    for cid, params in enumerate(params_list):
        candidate.settings(params)  # unknown names fail here, before anything trains
        init_seed, shuffle_seed = (int(s) for s in
                                   np.random.SeedSequence([seed, cid]).generate_state(2))
        specs.append({"id": cid, "params": params, "n_inputs": Xa.shape[1], "n_outputs": n_out,
                      "output": output, "dtype": dtype, "init_seed": init_seed,
                      "shuffle_seed": shuffle_seed, "objective": objective, "mode": mode,
                      "patience": patience, "min_epochs": min_epochs})

    journal = None
    if directory is not None:
        from .. import __version__
        header = {"fastnn": __version__, "strategy": strategy, "space": spaces.describe(space),
                  "seed": int(seed), "data": data_hash(*data), "objective": objective,
                  "n_candidates": len(specs), "rungs": rungs, "patience": patience,
                  "dtype": dtype, "classes": None if classes is None else
                  spaces.plain(classes.tolist())}
        journal = Journal(directory, header)

    if client is not None:
        executor = DaskExecutor(client, data, callbacks)
    elif n_jobs > 1:
        executor = ThreadExecutor(data, n_jobs, callbacks)
    else:
        executor = SerialExecutor(data, callbacks)
    try:
        return _drive(specs, rungs, factor, mode, executor, journal, max_retries, refit,
                      classes, objective, verbose)
    finally:
        executor.close()


def _drive(specs, rungs, factor, mode, executor, journal, max_retries, refit, classes,
           objective, verbose):
    from ..trainer import progress_bar

    rows = {s["id"]: {"id": s["id"], "params": s["params"], "status": "pending",
                      "epochs": 0, "best_epoch": None, "score": None, "seconds": 0.0,
                      "retries": 0} for s in specs}
    checkpoints = {}  # id -> latest checkpoint (the driver's copy: retries start here)
    stopped = set()  # early-stopped (or diverged): finished before the last rung
    done_rungs = {}  # (id, rung) -> journal record, when resuming
    test_record = None
    if journal is not None:
        for rec in journal.records:
            if rec["kind"] == "rung":
                done_rungs[(rec["id"], rec["rung"])] = rec
            elif rec["kind"] == "test":
                test_record = rec
    total = sum(max(1, len(specs) // factor ** i) for i in range(len(rungs)))
    if verbose:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, unit="fit", desc="fastnn.search", dynamic_ncols=True)
    else:
        bar = progress_bar(0, 0)
    alive = [s["id"] for s in specs]
    by_id = {s["id"]: s for s in specs}
    try:
        for r, until in enumerate(rungs):
            tasks, attempts = [], {}
            for cid in alive:
                rec = done_rungs.get((cid, r))
                if rec is not None:  # finished in an earlier run of this search
                    _apply(rows[cid], rec)
                    if rec["status"] == "failed":
                        rows[cid]["status"] = "failed"
                    elif rec["checkpoint"] is not None:
                        checkpoints[cid] = rec["checkpoint"]  # a file name: loaded when needed
                    if rec.get("stopped"):
                        stopped.add(cid)
                    bar.update(1)
                    continue
                if cid in stopped:
                    continue
                tasks.append(cid)
            while tasks:
                batch = [(by_id[c], _load(journal, checkpoints.get(c)), until) for c in tasks]
                tasks = []
                for task, ok, value in executor.run(batch):
                    cid = task[0]["id"]
                    row = rows[cid]
                    if ok:
                        result, ckpt = value
                        row["seconds"] += result["seconds"]
                        checkpoints[cid] = ckpt
                        name = (journal.save_checkpoint(cid, r, ckpt) if journal is not None
                                else None)
                        rec = {"kind": "rung", "id": cid, "rung": r, "status": "ok",
                               "epochs": result["epochs"], "best_epoch": result["best_epoch"],
                               "score": result["score"], "stopped": result["stopped"],
                               "seconds": row["seconds"], "retries": row["retries"],
                               "checkpoint": name}
                        if result["diverged"] is not None and result["score"] is None:
                            rec["status"] = "failed"
                            rec["error"] = result["diverged"]
                        _apply(row, rec)
                        if result["stopped"]:
                            stopped.add(cid)
                        bar.update(1)
                    elif attempts.get(cid, 0) < max_retries:
                        attempts[cid] = attempts.get(cid, 0) + 1
                        row["retries"] += 1
                        tasks.append(cid)  # again from the driver's checkpoint
                        continue
                    else:
                        rec = {"kind": "rung", "id": cid, "rung": r, "status": "failed",
                               "epochs": row["epochs"], "best_epoch": row["best_epoch"],
                               "score": row["score"], "stopped": True,
                               "seconds": row["seconds"], "retries": row["retries"],
                               "checkpoint": None, "error": value}
                        _apply(row, rec)
                        bar.update(1)
                    if journal is not None:
                        journal.append(rec)
            # rank the finished rung: failed candidates never advance
            ranked = sorted((c for c in alive if rows[c]["status"] != "failed"
                             and rows[c]["score"] is not None),
                            key=lambda c: (_key(rows[c]["score"], mode), c))
            if r + 1 < len(rungs):
                keep = ranked[:max(1, len(alive) // factor)]
                for c in alive:
                    if c not in keep and rows[c]["status"] != "failed":
                        rows[c]["status"] = "done" if c in stopped else "pruned"
                alive = sorted(keep)
        for c in alive:
            if rows[c]["status"] != "failed":
                rows[c]["status"] = "done"
    finally:
        bar.close()
    table = SearchTable([rows[s["id"]] for s in specs])
    ranked = sorted((r for r in table if r["status"] != "failed" and r["score"] is not None),
                    key=lambda r: (_key(r["score"], mode), r["id"]))
    if not ranked:
        return SearchResult(table, None, None, None, None, None, classes, objective, journal,
                            test_record)
    best = ranked[0]
    ckpt = _load(journal, checkpoints[best["id"]])
    model = candidate.best_model(by_id[best["id"]], ckpt) if refit else None
    if model is not None and classes is not None:
        model.classes_ = classes  # predict_labels gives the labels searched on
    history = History()
    n = len(next(iter(ckpt["history"].values()), []))
    for e in range(n):
        history.record(e, {k: v[e] for k, v in ckpt["history"].items()})
    return SearchResult(table, best["id"], best["params"], best["score"], model, history,
                        classes, objective, journal, test_record)


def _apply(row, rec):
    for key in ("epochs", "best_epoch", "score", "seconds", "retries"):
        row[key] = rec[key]
    if rec["status"] == "failed":
        row["status"] = "failed"
        row["error"] = rec.get("error")
    elif row["status"] == "pending":
        row["status"] = "running"


def _load(journal, ckpt):
    """A checkpoint held in memory, or loaded from the journal's directory by name."""
    if isinstance(ckpt, str):
        return journal.load_checkpoint(ckpt)
    return ckpt


def _key(score, mode):
    return score if mode == "min" else -score
