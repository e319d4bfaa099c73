"""fastnn.sklearn: scikit-learn's estimator checks, its MLP's behaviour, threads in workers."""
import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastnn.sklearn import MLPClassifier, MLPRegressor

# Expected failures, each with its reason.
EXPECTED_FAILURES = {
    "MLPRegressor": {
        # float32 models: BLAS sums each GEMM in blocks whose rounding depends on the number
        # of rows, so predictions on a subset agree to float32 precision (a few 1e-7
        # relative), not to the check's rtol=1e-7; float64 models pass it
        "check_methods_subset_invariance": "float32 GEMM rounding depends on the row count",
    },
}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILURES.get(type(estimator).__name__, {})


@parametrize_with_checks([MLPClassifier(max_iter=100), MLPRegressor(max_iter=100),
                          MLPClassifier(max_iter=100, dropout=0.2, input_dropout=0.1)],
                         expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def blobs(n=120, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(n_classes, 5))
    y = rng.integers(0, n_classes, n)
    return centers[y] + rng.normal(size=(n, 5)), y


def quiet(cls, **kw):
    base = dict(hidden_layer_sizes=(16,), alpha=0.0, random_state=0, dtype="float64",
                batch_size=16)
    return cls(**(base | kw))


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_partial_fit_epochs_equal_fit_bit_for_bit(dropout):
    """k partial_fit calls (one epoch each, optimizer state and step count kept, shuffles keyed
    by epoch, dropout masks by step) are k epochs of one fit."""
    X, y = blobs()
    a = quiet(MLPClassifier, max_iter=4, n_iter_no_change=100, dropout=dropout)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        a.fit(X, y)
    b = quiet(MLPClassifier, dropout=dropout)
    for _ in range(4):
        b.partial_fit(X, y, classes=np.unique(y))
    np.testing.assert_array_equal(a.model_.params, b.model_.params)
    # scikit-learn counts n_iter_ per call (one per partial_fit), t_ and loss_curve_ overall
    assert a.loss_curve_ == b.loss_curve_ and b.n_iter_ == 1 and b.t_ == 4 * len(y)
    with pytest.raises(ValueError, match="classes must be passed"):
        quiet(MLPClassifier).partial_fit(X, y)


def test_warm_start_keeps_weights_and_counts_iterations():
    X, y = blobs()
    clf = quiet(MLPClassifier, max_iter=3, warm_start=True)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        clf.fit(X, y)
    first = clf.model_.params.copy()
    model = clf.model_
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        clf.fit(X, y)
    assert clf.model_ is model and clf.n_iter_ == 3 and len(clf.loss_curve_) == 6
    assert not np.array_equal(first, clf.model_.params)
    cold = clone(clf).set_params(warm_start=False)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        cold.fit(X, y)
    assert cold.n_iter_ == 3


def test_early_stopping_restores_best_validation_weights():
    X, y = blobs(200)
    clf = quiet(MLPClassifier, early_stopping=True, n_iter_no_change=3, max_iter=300,
                learning_rate_init=0.05)
    clf.fit(X, y)
    scores = clf.validation_scores_
    assert len(scores) == clf.n_iter_ < 300 and clf.best_validation_score_ == max(scores)
    assert clf.best_loss_ is None
    # scikit-learn's rule: stop once n_iter_no_change + 1 epochs in a row failed to beat
    # the best by tol
    best = int(np.argmax(scores))
    assert clf.n_iter_ - 1 - best >= clf.n_iter_no_change


def test_stops_on_training_loss_plateau():
    X, y = blobs()
    clf = quiet(MLPClassifier, tol=1.0, n_iter_no_change=2, max_iter=100)
    clf.fit(X, y)
    # tol=1: no epoch improves the loss by more than 1 after the first, so the count reaches
    # n_iter_no_change + 1 at epoch 4, as in scikit-learn's own MLP
    from sklearn.neural_network import MLPClassifier as SkMLP
    sk = SkMLP(hidden_layer_sizes=(16,), tol=1.0, n_iter_no_change=2, random_state=0).fit(X, y)
    assert clf.n_iter_ == sk.n_iter_ == 4
    assert clf.best_loss_ == min(clf.loss_curve_) and clf.loss_ == clf.loss_curve_[-1]


def test_fitted_attributes_are_views_and_survive_pickle():
    X, y = blobs()
    clf = quiet(MLPClassifier, max_iter=5, hidden_layer_sizes=(8, 4))
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        clf.fit(X, y)
    assert [W.shape for W in clf.coefs_] == [(5, 8), (8, 4), (4, 3)]
    assert clf.n_layers_ == 4 and clf.n_outputs_ == 3 and clf.out_activation_ == "softmax"
    p = clf.predict_proba(X)
    for copy in (pickle.loads(pickle.dumps(clf)), __import__("copy").deepcopy(clf)):
        np.testing.assert_array_equal(copy.predict_proba(X), p)
        copy.coefs_[0][...] = 0  # still a view into model_.params
        assert not copy.model_.params[:40].any()
        np.testing.assert_array_equal(clf.predict_proba(X), p)  # the original is untouched
        copy.partial_fit(X, y)  # the optimizer is still bound to the copy's parameters
    assert clone(clf).get_params() == clf.get_params()


def test_binary_and_multilabel_use_a_logistic_output():
    X, y = blobs(n_classes=2)
    clf = quiet(MLPClassifier, max_iter=50, tol=1e-2).fit(X, np.array(["no", "yes"])[y])
    assert clf.out_activation_ == "logistic" and clf.coefs_[-1].shape == (16, 1)
    assert list(clf.classes_) == ["no", "yes"] and clf.score(X, np.array(["no", "yes"])[y]) > .9
    np.testing.assert_allclose(clf.predict_proba(X).sum(axis=1), 1.0, rtol=1e-12)
    Y = np.stack([y, 1 - y, y], axis=1)
    ml = quiet(MLPClassifier, max_iter=50, tol=1e-2).fit(X, Y)
    assert ml.predict(X).shape == (len(y), 3) and ml.out_activation_ == "logistic"


def test_regressor_reports_half_mse_like_sklearn():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1
    reg = quiet(MLPRegressor, max_iter=1, batch_size=64, learning_rate_init=1e-12,
                solver="sgd", momentum=0.0)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        reg.fit(X, y)
    # one full-batch step with a negligible rate: the epoch loss is the initial model's
    half_mse = 0.5 * np.mean((reg.predict(X) - y) ** 2)
    np.testing.assert_allclose(reg.loss_, half_mse, rtol=1e-9)
    assert reg.predict(X).shape == (64,)


@pytest.mark.parametrize("params, match", [
    (dict(alpha=-1e-4), "alpha"),
    (dict(solver="lbfgs"), "L-BFGS"),
    (dict(activation="softplus"), "activation"),
    (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes"),
    (dict(batch_size=0), "batch_size"),
    (dict(validation_fraction=1.0), "validation_fraction"),
    (dict(dropout=1.0), "dropout must be < 1"),
    (dict(dropout=[0.1, 0.2]), "dropout lists 2 rates but there are 1 hidden layers"),
    (dict(hidden_layer_sizes=(4, 4), dropout=[0.1, -0.2]), r"dropout\[1\] must be >= 0"),
    (dict(input_dropout=1.5), "input_dropout must be < 1"),
])
def test_bad_parameters_are_clear_errors(params, match):
    X, y = blobs()
    with pytest.raises(ValueError, match=match):
        MLPClassifier(**({"alpha": 0.0} | params)).fit(X, y)


def _fit_big_and_count(seed):
    """Runs in a loky worker: fit a network large enough for several training threads."""
    X, y = blobs(64, seed=seed)
    X = np.repeat(X, 13, axis=1)  # 65 features
    clf = MLPClassifier(hidden_layer_sizes=(2048,), alpha=0.0, max_iter=1, batch_size=64,
                        random_state=0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    return clf.n_threads_


def test_one_training_thread_per_worker_process():
    """GridSearchCV(n_jobs=k) runs fits in loky processes: each must train on one thread
    (and one BLAS thread), while the same fit in the main process uses every core."""
    from fastnn._threads import cores
    if cores() < 2:
        pytest.skip("needs 2 cores to tell one thread from several")
    from joblib import Parallel, delayed
    main = _fit_big_and_count(0)
    assert main >= 2
    in_workers = Parallel(n_jobs=2, backend="loky")(delayed(_fit_big_and_count)(s)
                                                    for s in range(2))
    assert in_workers == [1, 1]


def test_grid_search_cv_picks_the_same_as_serial_with_processes():
    from sklearn.model_selection import GridSearchCV
    X, y = blobs(90)
    grid = {"hidden_layer_sizes": [(4,), (16,)], "learning_rate_init": [1e-4, 1e-2]}
    est = quiet(MLPClassifier, max_iter=20)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        serial = GridSearchCV(est, grid, cv=3).fit(X, y)
        parallel = GridSearchCV(est, grid, cv=3, n_jobs=2).fit(X, y)
    assert serial.best_params_ == parallel.best_params_
    np.testing.assert_array_equal(serial.cv_results_["mean_test_score"],
                                  parallel.cv_results_["mean_test_score"])


@pytest.mark.parametrize("kind", ["classifier", "binary", "regressor"])
def test_sgd_trajectory_equals_sklearns_mlp(kind):
    """From the same weights, solver='sgd' (Nesterov momentum, minibatches with a short last
    one, no shuffling, the L2 penalty alpha) takes scikit-learn's steps: same loss_curve_ (its
    loss formula, penalty included) and weights in float64."""
    from sklearn import neural_network as sk_nn
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))
    if kind == "regressor":
        y = X @ np.array([1.0, -0.5, 0.25, 2.0]) + 0.1 * rng.normal(size=50)
        ours_cls, sk_cls = MLPRegressor, sk_nn.MLPRegressor
    else:
        y = (X[:, 0] + X[:, 1] > 0).astype(int) + (kind == "classifier") * (X[:, 2] > 0.5)
        ours_cls, sk_cls = MLPClassifier, sk_nn.MLPClassifier
    common = dict(hidden_layer_sizes=(7, 5), activation="tanh", solver="sgd", alpha=0.3,
                  batch_size=16, learning_rate_init=0.05, momentum=0.9,
                  nesterovs_momentum=True, shuffle=False, n_iter_no_change=1000,
                  max_iter=1, warm_start=True, random_state=0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        sk = sk_cls(**common).fit(X, y)
        ours = ours_cls(**common, dtype="float64").fit(X, y)
        for W, b, sW, sb in zip(ours.coefs_, ours.intercepts_, sk.coefs_, sk.intercepts_):
            W[...] = sW
            b[...] = sb
        sk.set_params(max_iter=6).fit(X, y)
        ours.set_params(max_iter=6).fit(X, y)
    np.testing.assert_allclose(ours.loss_curve_[1:], sk.loss_curve_[1:], rtol=1e-12)
    for W, sW in zip(ours.coefs_ + ours.intercepts_, sk.coefs_ + sk.intercepts_):
        np.testing.assert_allclose(W, sW, rtol=1e-10, atol=1e-12)
    assert ours.n_iter_ == sk.n_iter_ == 6 and ours.t_ == sk.t_ == 7 * 50
    np.testing.assert_allclose(ours.predict(X) if kind == "regressor" else
                               ours.predict_proba(X),
                               sk.predict(X) if kind == "regressor" else sk.predict_proba(X),
                               rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ dropout
def _fastnn_fit(X, y, n_out, output, epochs, dropout, input_dropout, random_state=0):
    """What the estimator's fit should run: fastnn.MLP + Trainer with the seeds scikit-learn's
    random_state gives (init, shuffles/masks, split), Adam at scikit-learn's defaults."""
    from sklearn.utils import check_random_state

    from fastnn import MLP, Trainer
    from fastnn.optim import Adam
    init_seed, shuffle_seed, _ = check_random_state(random_state).randint(0, 2**31 - 1, size=3)
    model = MLP([X.shape[1], 16, n_out], activation="relu", output=output, dtype="float64",
                seed=int(init_seed), dropout=dropout, input_dropout=input_dropout)
    Trainer(model, Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8), batch_size=16, epochs=epochs,
            seed=int(shuffle_seed)).fit(X, y)
    return model


def test_dropout_fit_is_fastnns_fit_and_predict_uses_the_whole_network():
    X, y = blobs()
    fits = {}
    for p, p_in in ((0.0, 0.0), (0.5, 0.2)):
        clf = quiet(MLPClassifier, max_iter=5, n_iter_no_change=100, dropout=[p],
                    input_dropout=p_in)
        with pytest.warns(sklearn.exceptions.ConvergenceWarning):
            clf.fit(X, y)
        assert clf.dropout == [p] and clf.model_.dropout == (p,)  # the parameter unchanged
        assert clf.model_.input_dropout == p_in
        ref = _fastnn_fit(X, y, 3, "softmax", 5, p, p_in)
        np.testing.assert_array_equal(clf.model_.params, ref.params)
        # predict: the network as it is, no mask (float64 NumPy forward of the coefficients)
        h = np.maximum(X @ clf.coefs_[0] + clf.intercepts_[0], 0.0)
        z = h @ clf.coefs_[1] + clf.intercepts_[1]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        np.testing.assert_allclose(clf.predict_proba(X), e / e.sum(axis=1, keepdims=True),
                                   rtol=1e-12, atol=1e-15)
        fits[p] = clf.model_.params
    assert not np.allclose(fits[0.0], fits[0.5], rtol=1e-3)  # dropout changed the fit
    Xr = X[:, :4]
    reg = quiet(MLPRegressor, max_iter=3, n_iter_no_change=100, dropout=0.3)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        reg.fit(Xr, X[:, 4])
    np.testing.assert_array_equal(
        reg.model_.params, _fastnn_fit(Xr, X[:, 4:], 1, "identity", 3, 0.3, 0.0).params)


def test_warm_start_with_dropout_draws_fresh_masks_and_set_params_changes_the_rate():
    """A warm_start fit starts a fresh optimizer (scikit-learn), whose step count restarts:
    it trains with a seed of its own, so its masks are not the first fit's again."""
    from fastnn import Trainer
    from fastnn.optim import Adam
    X, y = blobs()
    clf = quiet(MLPClassifier, max_iter=3, n_iter_no_change=100, warm_start=True, dropout=0.5)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        clf.fit(X, y)
    start = clf.model_.copy()
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        clf.fit(X, y)
    seed = clf._run_seed()
    assert seed != clf._shuffle_seed
    for s, same in ((seed, True), (clf._shuffle_seed, False)):
        m = start.copy()
        Trainer(m, Adam(lr=1e-3), batch_size=16, epochs=6, seed=s).fit(X, y, initial_epoch=3)
        assert np.array_equal(m.params, clf.model_.params) == same
    # another rate between partial_fit calls: the weights and the optimizer's steps carry over
    from fastnn import MLP
    inc = quiet(MLPClassifier, dropout=0.5)
    inc.partial_fit(X, y, classes=np.unique(y))
    before, state = inc.model_.params.copy(), inc._optimizer.state_dict()
    inc.set_params(dropout=0.1, input_dropout=0.2).partial_fit(X, y)
    assert inc.model_.dropout == (0.1,) and inc.model_.input_dropout == 0.2
    assert int(inc._optimizer.step_count[0]) == 2 * 8  # 120 rows in batches of 16, twice
    assert np.shares_memory(inc.coefs_[0], inc.model_.params)
    m = MLP([5, 16, 3], output="softmax", dtype="float64", dropout=0.1, input_dropout=0.2)
    m.params = before
    opt = Adam(lr=1e-3)
    opt.load_state_dict(state)
    Trainer(m, opt, batch_size=16, epochs=2, seed=inc._shuffle_seed).fit(X, y, initial_epoch=1)
    np.testing.assert_array_equal(m.params, inc.model_.params)


def test_dropout_estimator_clones_pickles_and_grid_searches():
    from sklearn.model_selection import GridSearchCV, cross_val_score
    X, y = blobs(90)
    est = quiet(MLPClassifier, max_iter=10, hidden_layer_sizes=(8, 8), dropout=[0.1, 0.3],
                input_dropout=0.2)
    assert clone(est).get_params() == est.get_params()
    assert est.set_params(dropout=0.4).get_params()["dropout"] == 0.4
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        est.fit(X, y)
        back = pickle.loads(pickle.dumps(est))
        assert back.model_.dropout == (0.4, 0.4) and back.model_.input_dropout == 0.2
        np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
        grid = GridSearchCV(est, {"dropout": [0.0, [0.5, 0.2]]}, cv=3).fit(X, y)
        for i, params in enumerate(grid.cv_results_["params"]):
            straight = cross_val_score(clone(est).set_params(**params), X, y, cv=3)
            assert grid.cv_results_["mean_test_score"][i] == np.mean(straight)
    best = grid.best_params_["dropout"]
    rates = (best,) * 2 if np.isscalar(best) else tuple(best)
    assert grid.best_estimator_.model_.dropout == rates
