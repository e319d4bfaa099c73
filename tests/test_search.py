"""fastnn.search: candidates, strategies, determinism across executors, the journal and
resumption, failures, and the test set scored once."""
import json
import os

import numpy as np
import pytest
import scipy.stats as st

import fastnn
from fastnn.selection import candidate, driver
from fastnn.selection.space import grid, sample

SPACE = {"hidden": [[8], [16]], "lr": [3e-3, 1e-2], "batch_size": [16]}


def problem(n=150, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2, size=(3, 6))
    y = rng.integers(0, 3, n)
    X = centers[y] + rng.normal(size=(n, 6))
    return X, y


def data():
    X, y = problem()
    Xv, yv = problem(60, seed=1)
    return X, y, (Xv, yv)


def deterministic(table):
    """The table without wall-clock seconds."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in table]


def run(**kw):
    X, y, val = data()
    args = dict(validation_data=val, max_epochs=12, patience=3, seed=0) | kw
    return fastnn.search(kw.pop("space", SPACE) if "space" in kw else SPACE, X, y,
                         **{k: v for k, v in args.items() if k != "space"})


def test_grid_order_and_random_draws():
    assert grid({"a": [1, 2], "b": ["x", "y"], "c": 5}) == [
        {"a": 1, "b": "x", "c": 5}, {"a": 1, "b": "y", "c": 5},
        {"a": 2, "b": "x", "c": 5}, {"a": 2, "b": "y", "c": 5}]
    space = {"lr": st.loguniform(1e-4, 1e-1), "hidden": [[8], [16]], "n": st.randint(1, 4)}
    a, b = sample(space, 20, 3), sample(space, 20, 3)
    assert a == b and a != sample(space, 20, 4)
    assert all(1e-4 <= c["lr"] <= 1e-1 and c["hidden"] in ([8], [16])
               and isinstance(c["n"], int) and 1 <= c["n"] <= 3 for c in a)
    with pytest.raises(ValueError, match="strategy='random'"):
        grid(space)


def test_serial_and_threads_give_the_same_table():
    serial = run()
    threads = run(n_jobs=2)
    assert deterministic(serial.table) == deterministic(threads.table)
    assert [r["id"] for r in serial.table] == [0, 1, 2, 3]
    assert [r["params"] for r in serial.table] == grid(SPACE)
    assert all(r["status"] == "done" and r["retries"] == 0 for r in serial.table)
    best = min(serial.table, key=lambda r: (r["score"], r["id"]))
    assert serial.best_id == best["id"] and serial.best_params == best["params"]
    # best_model holds the best epoch's weights: its validation loss is the score
    _, _, (Xv, yv) = data()
    loss, _ = serial.best_model.evaluate(Xv.astype(np.float32), yv)
    np.testing.assert_allclose(loss, serial.best_score, rtol=1e-6)
    assert serial.best_history.history["val_loss"][best["best_epoch"]] == best["score"]


def test_each_candidate_is_an_ordinary_fit():
    """Candidate i of a search is a plain Trainer fit seeded from (seed, i): rebuilt by hand
    from its spec, it reproduces the table's row."""
    res = run(space={"hidden": [[8]], "lr": [1e-2], "alpha": [0.5]}, patience=100)
    X, y, (Xv, yv) = data()
    init_seed, shuffle_seed = np.random.SeedSequence([0, 0]).generate_state(2)
    model = fastnn.MLP([6, 8, 3], output="softmax", seed=int(init_seed))
    hist = fastnn.Trainer(model, fastnn.optim.Adam(lr=1e-2), batch_size=32, epochs=12,
                          seed=int(shuffle_seed), alpha=0.5, verbose=0).fit(X, y,
                                                                 validation_data=(Xv, yv))
    row = res.table[0]
    assert row["score"] == min(hist.history["val_loss"])
    assert row["best_epoch"] == int(np.argmin(hist.history["val_loss"]))


def test_halving_survivors_continue_bit_for_bit():
    """Halving over the grid: promoted candidates resume from their checkpoints, so the
    last rung's rows equal the same candidates trained straight to max_epochs."""
    space = {"hidden": [[4], [8], [16]], "lr": [1e-3, 1e-2, 3e-2]}
    halving = run(space=space, strategy="halving", min_epochs=1, max_epochs=9, factor=3,
                  patience=100)
    straight = run(space=space, max_epochs=9, patience=100)
    rows = halving.table
    survivors = [r for r in rows if r["status"] == "done"]
    assert len(survivors) == 1 and sum(r["status"] == "pruned" for r in rows) == 8
    assert sorted(r["epochs"] for r in rows) == [1] * 6 + [3] * 2 + [9]
    # promotion from the finished rung only: the best 9 // 3 after 1 epoch (ties by id),
    # then the best of those after 3, as the same candidates trained straight show
    after1 = run(space=space, max_epochs=1, patience=100).table
    top3 = sorted(after1, key=lambda r: (r["score"], r["id"]))[:3]
    assert {r["id"] for r in rows if r["epochs"] >= 3} == {r["id"] for r in top3}
    after3 = run(space=space, max_epochs=3, patience=100).table
    top1 = min((after3[r["id"]] for r in top3), key=lambda r: (r["score"], r["id"]))
    assert [r["id"] for r in rows if r["epochs"] == 9] == [top1["id"]]
    s = survivors[0]
    ref = straight.table[s["id"]]
    assert (s["score"], s["best_epoch"], s["epochs"]) == \
        (ref["score"], ref["best_epoch"], ref["epochs"])
    assert halving.best_id == s["id"]  # the longest-trained candidate is the best here


def test_directory_journal_resume_and_test_once(tmp_path, monkeypatch):
    Xt, yt = problem(40, seed=2)
    first = run(directory=tmp_path, strategy="halving", min_epochs=2, max_epochs=6,
                factor=2)
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    assert header["kind"] == "header" and header["seed"] == 0 and header["fastnn"]
    assert len(header["data"]) == 32 and header["rungs"] == [2, 4, 6]
    assert min(os.listdir(tmp_path)).startswith("ckpt-")

    # a finished search reruns without training anything
    def no_training(*args, **kwargs):
        raise AssertionError("a finished candidate was retrained")
    monkeypatch.setattr(candidate, "train", no_training)
    again = run(directory=tmp_path, strategy="halving", min_epochs=2, max_epochs=6, factor=2)
    monkeypatch.undo()
    assert deterministic(again.table) == deterministic(first.table)
    np.testing.assert_array_equal(again.best_model.params, first.best_model.params)

    # cut the journal after the first three records (a crash): the rest is redone, same table
    (tmp_path / "journal.jsonl").write_text("\n".join(lines[:4]) + "\n")
    resumed = run(directory=tmp_path, strategy="halving", min_epochs=2, max_epochs=6,
                  factor=2)
    assert deterministic(resumed.table) == deterministic(first.table)

    score = resumed.test(Xt, yt)
    assert set(score) == {"loss", "accuracy"} and 0 <= score["accuracy"] <= 1
    with pytest.raises(RuntimeError, match="already scored"):
        resumed.test(Xt, yt)
    last = json.loads((tmp_path / "journal.jsonl").read_text().splitlines()[-1])
    assert last["kind"] == "test" and last["score"] == score and last["id"] == resumed.best_id
    # the journal remembers: a resumed search refuses a second test too
    with pytest.raises(RuntimeError, match="already scored"):
        run(directory=tmp_path, strategy="halving", min_epochs=2, max_epochs=6,
            factor=2).test(Xt, yt)

    with pytest.raises(ValueError, match="another search.*seed"):
        run(directory=tmp_path, strategy="halving", min_epochs=2, max_epochs=6, factor=2,
            seed=1)


class FailFor(fastnn.Callback):
    """Raises in every epoch of candidates trained with this learning rate."""

    def __init__(self, lr):
        super().__init__()
        self.lr = lr

    def on_epoch_end(self, epoch, logs):
        if self.trainer.optimizer.lr == self.lr:
            raise OSError("simulated failure")


def test_failing_candidate_is_retried_then_marked_failed():
    res = run(callbacks=[FailFor(1e-2)], max_retries=2)
    failed = [r for r in res.table if r["status"] == "failed"]
    assert [r["params"]["lr"] for r in failed] == [1e-2, 1e-2]
    assert all(r["retries"] == 2 and "simulated failure" in r["error"] for r in failed)
    ok = run()
    for r in res.table:
        if r["status"] != "failed":
            assert r["score"] == ok.table[r["id"]]["score"]
    assert res.best_params["lr"] == 3e-3


def test_a_diverging_candidate_does_not_stop_the_search():
    res = run(space={"optimizer": ["sgd"], "lr": [1e-2, 1e12]})
    assert res.table[0]["status"] == "done"
    assert res.table[1]["status"] == "failed" and "diverged" in res.table[1]["error"]
    assert res.best_id == 0


def test_regression_and_argument_errors():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    y = X @ np.array([1.0, -1.0, 2.0])
    res = fastnn.search({"hidden": [[8]], "lr": [1e-2]}, X, y, val_size=0.25, max_epochs=5)
    assert res.classes is None and res.table[0]["status"] == "done"
    assert set(res.test(X[:10], y[:10])) == {"loss", "r2"}
    with pytest.raises(ValueError, match="val_accuracy"):
        fastnn.search({"lr": [1e-2]}, X, y, objective="val_accuracy")
    Xc, yc, val = data()
    with pytest.raises(ValueError, match="momentum"):
        fastnn.search({"momentum": [0.9]}, Xc, yc, validation_data=val)  # Adam has none
    with pytest.raises(ValueError, match="n_candidates"):
        fastnn.search({"lr": [1e-3]}, Xc, yc, strategy="grid", n_candidates=3)
    # draws without n_candidates: RandomizedSearchCV's 10, halving factor ** rungs
    res = fastnn.search({"lr": st.loguniform(1e-3, 1e-1)}, Xc, yc, validation_data=val,
                        strategy="random", max_epochs=1)
    assert len(res.table) == 10
    res = fastnn.search({"lr": st.loguniform(1e-3, 1e-1)}, Xc, yc, validation_data=val,
                        strategy="halving", min_epochs=1, max_epochs=2, factor=2)
    assert len(res.table) == 4 and sum(r["epochs"] == 2 for r in res.table) == 2
    with pytest.raises(ValueError, match="strategy"):
        fastnn.search(SPACE, Xc, yc, strategy="bayes")
    assert driver._rungs(1, 9, 3) == [1, 3, 9] and driver._rungs(2, 10, 3) == [2, 6, 10]
    assert driver._rungs(11, 100, 3) == [11, 33, 100]  # not 99 and then 1 more


def test_table_prints_and_converts():
    res = run(space={"lr": [1e-2]})
    text = str(res.table)
    assert text.splitlines()[0].split() == list(driver.TABLE_COLUMNS)
    pd = pytest.importorskip("pandas")
    df = res.table.to_pandas()
    assert isinstance(df, pd.DataFrame) and df.loc[0, "status"] == "done"


# ------------------------------------------------------------------ dropout
def test_dropout_candidates_are_ordinary_fits_with_their_rate():
    """A searched dropout rate is the candidate model's: each row equals a straight
    MLP(dropout=, input_dropout=) + Trainer fit seeded from (seed, id), and the rate
    changes the fit."""
    space = {"hidden": [[8]], "lr": [1e-2], "dropout": [0.0, 0.4], "input_dropout": [0.2]}
    res = run(space=space, patience=100, max_epochs=6)
    X, y, (Xv, yv) = data()
    for cid, p in enumerate((0.0, 0.4)):
        init_seed, shuffle_seed = np.random.SeedSequence([0, cid]).generate_state(2)
        model = fastnn.MLP([6, 8, 3], output="softmax", seed=int(init_seed), dropout=p,
                           input_dropout=0.2)
        hist = fastnn.Trainer(model, fastnn.optim.Adam(lr=1e-2), batch_size=32, epochs=6,
                              seed=int(shuffle_seed)).fit(X, y, validation_data=(Xv, yv))
        row = res.table[cid]
        assert row["params"] == {"hidden": [8], "lr": 1e-2, "dropout": p, "input_dropout": 0.2}
        assert row["score"] == min(hist.history["val_loss"])
        assert f"dropout={p}, input_dropout=0.2" in str(res.table).splitlines()[1 + cid]
    assert res.table[0]["score"] != res.table[1]["score"]
    assert res.best_model.dropout == (res.best_params["dropout"],)
    assert res.best_model.input_dropout == 0.2


def test_dropout_halving_resumes_checkpoints_bit_for_bit(tmp_path):
    """Checkpoints keep the optimizer's step count, which keys the masks: a promoted
    candidate, and a search resumed from its directory, continue the same masks."""
    space = {"hidden": [[8], [16]], "lr": [1e-2, 3e-2], "dropout": [[0.5]]}
    kw = dict(space=space, strategy="halving", min_epochs=1, max_epochs=4, factor=2,
              patience=100)
    halving = run(directory=tmp_path, **kw)
    straight = run(space=space, max_epochs=4, patience=100)
    top = [r for r in halving.table if r["epochs"] == 4]
    assert len(top) == 1 and (top[0]["score"], top[0]["best_epoch"]) == \
        (straight.table[top[0]["id"]]["score"], straight.table[top[0]["id"]]["best_epoch"])
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    (tmp_path / "journal.jsonl").write_text("\n".join(lines[:3]) + "\n")  # a crash
    resumed = run(directory=tmp_path, **kw)
    assert deterministic(resumed.table) == deterministic(halving.table)
    assert resumed.best_model.dropout == (0.5,)
    np.testing.assert_array_equal(resumed.best_model.params, halving.best_model.params)


def test_dropout_draws_and_errors():
    res = run(space={"hidden": [[8, 8]], "dropout": st.uniform(0, 0.5),
                     "input_dropout": [0.0, 0.2]}, strategy="random", n_candidates=4,
              max_epochs=1)
    drawn = [r["params"]["dropout"] for r in res.table]
    assert all(0 <= p < 0.5 for p in drawn) and len(set(drawn)) == 4
    assert res.best_model.dropout == (res.best_params["dropout"],) * 2
    for space, strategy, match in [
            ({"dropout": [0.2, 1.0]}, "grid", "dropout must be < 1"),
            ({"input_dropout": [-0.1]}, "grid", "input_dropout must be >= 0"),
            ({"hidden": [[8]], "dropout": [[0.1, 0.2]]}, "grid",
             "dropout lists 2 rates but there are 1 hidden layers"),
            ({"dropout": st.uniform(0, 2)}, "random", r"space\['dropout'\] draws from")]:
        with pytest.raises(ValueError, match=match):
            run(space=space, strategy=strategy)
