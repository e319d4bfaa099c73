"""fastnn.search on a Dask cluster (a 2-worker LocalCluster of processes), a worker that dies
mid-search, and GridSearchCV over fastnn's estimators under joblib's Dask backend.

Each test is bounded: a watchdog (faulthandler) ends the run with tracebacks if the module
takes more than DASK_TIMEOUT seconds."""
import faulthandler
import os
import sys
import warnings

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

import fastnn

DASK_TIMEOUT = 600
SPACE = {"hidden": [[8], [16]], "lr": [3e-3, 1e-2], "batch_size": [16]}


def problem(n=150, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2, size=(3, 6))
    y = rng.integers(0, 3, n)
    return centers[y] + rng.normal(size=(n, 6)), y


def deterministic(table, skip=("seconds",)):
    return [{k: v for k, v in row.items() if k not in skip} for row in table]


def run(**kw):
    X, y = problem()
    Xv, yv = problem(60, seed=1)
    return fastnn.search(SPACE, X, y, validation_data=(Xv, yv), max_epochs=10, patience=3,
                         seed=0, **kw)


@pytest.fixture(scope="module")
def client():
    import cloudpickle
    # the test callbacks below travel to the workers by value (tests/ is not a package)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    faulthandler.dump_traceback_later(DASK_TIMEOUT, exit=True)
    # a worker's death reaches the driver as KilledWorker at once (no rescheduling by the
    # scheduler), so that the driver's own retry from its checkpoint is what is tested
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as cluster, \
            distributed.Client(cluster, timeout=120) as c:
        yield c
    faulthandler.cancel_dump_traceback_later()


def test_dask_table_equals_serial(client, monkeypatch):
    scattered = []
    real_scatter = client.scatter

    def counting_scatter(data, **kwargs):
        scattered.append(kwargs.get("broadcast"))
        return real_scatter(data, **kwargs)

    monkeypatch.setattr(client, "scatter", counting_scatter)
    on_dask = run(client=client)
    assert scattered == [True]  # the data went to every worker once, not once per candidate
    assert deterministic(on_dask.table) == deterministic(run().table)
    np.testing.assert_array_equal(on_dask.best_model.params, run().best_model.params)


class DieOnFirstTry(fastnn.Callback):
    """Kills its worker process (os._exit) in the first epoch of the first try of the
    candidate with this learning rate; the marker file says a try already happened."""

    def __init__(self, lr, marker):
        super().__init__()
        self.lr, self.marker = lr, marker

    def on_epoch_end(self, epoch, logs):
        if self.trainer.optimizer.lr == self.lr and epoch == 2 \
                and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)


def test_worker_death_is_retried_from_the_driver_checkpoint(client, tmp_path):
    marker = str(tmp_path / "died")
    disturbed = run(client=client, callbacks=[DieOnFirstTry(1e-2, marker)])
    assert os.path.exists(marker)  # a worker did die
    retried = [r for r in disturbed.table if r["retries"]]
    assert retried and all(r["params"]["lr"] == 1e-2 for r in retried)
    assert all(r["status"] == "done" for r in disturbed.table)
    undisturbed = run()
    assert deterministic(disturbed.table, ("seconds", "retries")) == \
        deterministic(undisturbed.table, ("seconds", "retries"))


def test_grid_search_cv_under_joblib_dask_backend(client):
    pytest.importorskip("sklearn")
    import joblib
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV

    from fastnn.sklearn import MLPClassifier

    X, y = problem(90)
    est = MLPClassifier(hidden_layer_sizes=(8,), alpha=0.0, max_iter=15, batch_size=16,
                        random_state=0, dtype="float64")
    grid = {"hidden_layer_sizes": [(4,), (16,)], "learning_rate_init": [1e-4, 1e-2]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        serial = GridSearchCV(est, grid, cv=3).fit(X, y)
        with joblib.parallel_backend("dask"):
            on_dask = GridSearchCV(est, grid, cv=3, n_jobs=-1).fit(X, y)
    assert on_dask.best_params_ == serial.best_params_
    np.testing.assert_array_equal(on_dask.cv_results_["mean_test_score"],
                                  serial.cv_results_["mean_test_score"])


def test_cli_search_on_a_scheduler(client, capsys):
    pytest.importorskip("sklearn")
    from fastnn import cli
    argv = ["search", "--hidden", "16,32", "--lr", "1e-2", "--max-epochs", "3", "--quiet",
            "--scheduler", client.scheduler.address]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["id", "params", "status"] and out[3].startswith("chosen")
    assert out[4].startswith("test: loss")
