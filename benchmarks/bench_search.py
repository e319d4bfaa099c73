"""Model selection on digits: fastnn.search's wall time by executor and strategy, and
scikit-learn's GridSearchCV(MLPClassifier, n_jobs=2) on the same 24-candidate grid
(benchmarks/compare_search.py prints the side-by-side table with test accuracies)."""
from .compare_search import run_fastnn, run_sklearn

EPOCHS = 10


class Search:
    params = (["serial", "threads2", "halving", "sklearn_gridsearch_n_jobs2"],)
    param_names = ("search",)
    timeout = 600
    number = 1
    repeat = 3

    def setup(self, search):
        from fastnn.data import load_digits_split
        self.d = load_digits_split(seed=0)
        self._run(search)  # compile or load the cache; start loky's workers

    def _run(self, search):
        if search == "sklearn_gridsearch_n_jobs2":
            return run_sklearn(self.d, EPOCHS)
        kw = {"threads2": {"n_jobs": 2},
              "halving": {"strategy": "halving", "min_epochs": 1}}.get(search, {})
        return run_fastnn(self.d, EPOCHS, **kw)

    def time_search(self, search):
        """24 candidates up to EPOCHS epochs, the chosen one scored on the test part."""
        self._run(search)

    def track_test_accuracy(self, search):
        return self._run(search)[1]

    track_test_accuracy.unit = "accuracy"
