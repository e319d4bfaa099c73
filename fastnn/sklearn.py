"""scikit-learn estimators: `MLPClassifier` and `MLPRegressor` with scikit-learn's MLP
parameter names, trained by fastnn's compiled loop.

    from fastnn.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(128,), solver="adam", max_iter=50, random_state=0)
    GridSearchCV(clf, {"learning_rate_init": [1e-3, 3e-3]}, n_jobs=2).fit(X, y)

They are drop-in for sklearn.neural_network's MLPs in Pipeline, GridSearchCV, clone and pickle:
one `max_iter` iteration is one epoch, `tol` / `n_iter_no_change` / `early_stopping` /
`validation_fraction` stop as scikit-learn's do, `partial_fit` runs one epoch and keeps the
optimizer state, `warm_start` keeps the weights (and, as scikit-learn, starts a fresh
optimizer). fastnn's additions: more solvers (torch.optim's rules), `dtype`, `device`,
`clip_grad_norm` and `dropout` / `input_dropout` (fastnn.MLP's inverted dropout, while training
only: predict uses the whole network); the fitted `model_` (a fastnn.MLP) and `history_`
(fastnn.History of the last fit). `coefs_[l]` and `intercepts_[l]` are views into
`model_.params`.

Threads: inside a worker process (GridSearchCV(n_jobs=k)'s loky workers, multiprocessing, a
Dask worker) a fit runs on one training thread with one BLAS thread unless FASTNN_THREADS says
otherwise, so that k workers never run k x cores threads. `n_threads_` is the count used.

Needs scikit-learn (`pip install 'fastnn[sklearn]'`); importing fastnn does not import it.
"""
import multiprocessing
import numbers
import os
import warnings
from contextlib import nullcontext

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _threads
from ._validation import check_dropout
from .callbacks import Callback
from .model import MLP
from .optim import SGD, Adadelta, Adagrad, Adam, AdamW, RMSprop
from .trainer import Trainer

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's names first; fastnn's other hidden activations are accepted too
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
               "sigmoid": "sigmoid", "leaky_relu": "leaky_relu", "elu": "elu", "gelu": "gelu"}
SOLVERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta")
_OUT_NAMES = {"softmax": "softmax", "sigmoid": "logistic", "identity": "identity"}


def in_worker_process():
    """True in a child process (joblib's loky workers, multiprocessing pools, Dask workers):
    there the parent already runs one process per core."""
    return multiprocessing.parent_process() is not None


def one_thread_in_workers():
    """A context that holds BLAS (and with it fastnn's training loop, which never exceeds the
    BLAS limit) to one thread inside a worker process, unless FASTNN_THREADS is set."""
    if not in_worker_process() or os.environ.get("FASTNN_THREADS", "").strip():
        return nullcontext()
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=1, user_api="blas")


def make_optimizer(solver, learning_rate_init, momentum=0.9, nesterovs_momentum=True,
                   beta_1=0.9, beta_2=0.999, epsilon=1e-8):
    """The fastnn.optim optimizer for a scikit-learn solver name (and fastnn's others).

    'sgd' is torch's SGD with `momentum` (Nesterov when nesterovs_momentum), which for a
    constant rate is scikit-learn's velocity form; 'adam'/'adamw' take (beta_1, beta_2) and
    epsilon; 'rmsprop', 'adagrad' and 'adadelta' take epsilon and torch's other defaults."""
    if solver == "sgd":
        return SGD(lr=learning_rate_init, momentum=momentum,
                   nesterov=bool(nesterovs_momentum) and momentum > 0)
    if solver in ("adam", "adamw"):
        cls = Adam if solver == "adam" else AdamW
        return cls(lr=learning_rate_init, betas=(beta_1, beta_2), eps=epsilon)
    if solver == "rmsprop":
        return RMSprop(lr=learning_rate_init, eps=epsilon)
    if solver == "adagrad":
        return Adagrad(lr=learning_rate_init, eps=epsilon)
    if solver == "adadelta":
        return Adadelta(lr=learning_rate_init, eps=epsilon)
    raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}"
                     + (" (fastnn has no L-BFGS: use 'adam')" if solver == "lbfgs" else ""))


def _check_int(value, name, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_real(value, name, low=None, high=None, low_open=False, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
    return float(value)


class _Convergence(Callback):
    """scikit-learn's stopping rule, run after every epoch: records loss_curve_ (and
    validation_scores_), counts epochs without an improvement of more than tol, and stops when
    the count exceeds n_iter_no_change; with early stopping it keeps the best weights."""

    def __init__(self, est, n_samples, early_stopping, incremental):
        super().__init__()
        self.est = est
        self.n_samples = n_samples
        self.early_stopping = early_stopping
        self.incremental = incremental
        self.converged = False
        self.best_params = None

    def on_epoch_end(self, epoch, logs):
        est = self.est
        est.n_iter_ += 1
        est._epochs += 1
        est.t_ += self.n_samples
        loss = est._loss_from_logs(logs)
        est.loss_curve_.append(loss)
        est.loss_ = loss
        if self.early_stopping:
            score = float(logs[est._val_score_key])
            est.validation_scores_.append(score)
            if score < est.best_validation_score_ + est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                self.best_params = self.model.params.copy()
        else:
            if loss > est.best_loss_ - est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            est.best_loss_ = min(est.best_loss_, loss)
        if est._no_improvement_count > est.n_iter_no_change and not self.incremental:
            self.converged = True
            self.trainer.stop_training = True


class _BaseMLP(BaseEstimator):
    """Shared by MLPClassifier and MLPRegressor (scikit-learn's BaseMultilayerPerceptron)."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate_init=0.001, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, dtype="float32", device="cpu", clip_grad_norm=None,
                 dropout=0.0, input_dropout=0.0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.device = device
        self.clip_grad_norm = clip_grad_norm
        self.dropout = dropout
        self.input_dropout = input_dropout

    # ------------------------------------------------------------------ checks
    def _hidden(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = [sizes]
        try:
            sizes = list(sizes)
        except TypeError:
            raise ValueError(f"hidden_layer_sizes must be an int or a sequence of ints, got "
                             f"{self.hidden_layer_sizes!r}") from None
        return [_check_int(s, "hidden_layer_sizes[i]", 1) for s in sizes]

    def _check_params(self):
        """Every parameter validated (scikit-learn: in fit, not __init__); returns the dropout
        rates per site, (input_dropout, hidden layer 1, ...)."""
        rates = check_dropout(self.dropout, self.input_dropout, len(self._hidden()))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got "
                             f"{self.activation!r}")
        if self.solver not in SOLVERS:
            make_optimizer(self.solver, 1e-3)  # raises the clear error
        _check_real(self.alpha, "alpha", low=0.0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _check_int(self.batch_size, "batch_size", 1)
        _check_real(self.learning_rate_init, "learning_rate_init", low=0.0, low_open=True)
        _check_int(self.max_iter, "max_iter", 1)
        _check_real(self.tol, "tol", low=0.0)
        _check_int(self.n_iter_no_change, "n_iter_no_change", 1)
        _check_real(self.momentum, "momentum", low=0.0, high=1.0)
        _check_real(self.validation_fraction, "validation_fraction", low=0.0, high=1.0,
                    high_open=True)
        _check_real(self.beta_1, "beta_1", low=0.0, high=1.0, high_open=True)
        _check_real(self.beta_2, "beta_2", low=0.0, high=1.0, high_open=True)
        _check_real(self.epsilon, "epsilon", low=0.0, low_open=True)
        if self.clip_grad_norm is not None:
            _check_real(self.clip_grad_norm, "clip_grad_norm", low=0.0, low_open=True)
        for name in ("shuffle", "verbose", "warm_start", "nesterovs_momentum",
                     "early_stopping"):
            if not isinstance(getattr(self, name), (bool, np.bool_, numbers.Integral)):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.dtype not in ("float32", "float64", np.float32, np.float64):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        return rates

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y):
        """Train for up to max_iter epochs (scikit-learn's stopping rule); returns self."""
        return self._fit(X, y, incremental=False)

    def _fit(self, X, y, incremental, classes=None):
        rates = self._check_params()
        first = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        dtype = np.dtype(self.dtype)
        X, y = validate_data(self, X, y, reset=first, dtype=(np.float64, np.float32),
                             multi_output=True, y_numeric=not self._is_classifier())
        X = np.ascontiguousarray(X, dtype=dtype)  # once, in the kernels' layout
        targets, n_out, output = self._targets(y, first, incremental, classes)
        if first:
            rs = check_random_state(self.random_state)
            init_seed, self._shuffle_seed, self._split_seed = (
                int(s) for s in rs.randint(0, 2**31 - 1, size=3))
            self.model_ = MLP([X.shape[1], *self._hidden(), n_out],
                              activation=ACTIVATIONS[self.activation], output=output,
                              dtype=dtype.name, seed=init_seed, dropout=rates[1:],
                              input_dropout=rates[0])
            self._epochs = 0  # over all fits: keys the shuffles (Trainer initial_epoch)
            self.t_ = 0
            self.loss_curve_ = []
            self._no_improvement_count = 0
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self._optimizer = None
            self._optimizer_runs = 0
            self.n_layers_ = len(self.model_.layer_sizes)
            self.n_outputs_ = n_out
            self.out_activation_ = _OUT_NAMES[output]
        elif (self.model_.input_dropout, *self.model_.dropout) != rates:
            self._set_dropout(rates)  # changed since the last fit: the weights carry over
        if not incremental or self._optimizer is None:  # scikit-learn: fit() starts afresh
            # the kernels' loss is _loss_scale x scikit-learn's: SGD steps at lr / scale
            lr_scale = 1.0 / self._loss_scale if self.solver == "sgd" else 1.0
            self._optimizer = make_optimizer(self.solver, self.learning_rate_init * lr_scale,
                                             self.momentum, self.nesterovs_momentum,
                                             self.beta_1, self.beta_2, self.epsilon)
            self._optimizer_runs += 1
        self.n_iter_ = 0  # epochs of this call, as scikit-learn counts them
        early = bool(self.early_stopping) and not incremental
        validation = None
        if early:
            stratify = targets if self._is_classifier() and targets.ndim == 1 else None
            X, Xv, targets, yv = train_test_split(
                X, targets, random_state=self._split_seed,
                test_size=self.validation_fraction, stratify=stratify)
            validation = (Xv, yv)
            if self.validation_scores_ is None:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        n = X.shape[0]
        batch = min(200, n) if self.batch_size == "auto" else min(int(self.batch_size), n)
        if self.batch_size != "auto" and int(self.batch_size) > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped", UserWarning, stacklevel=3)
        conv = _Convergence(self, n, early, incremental)
        epochs = 1 if incremental else int(self.max_iter)
        trainer = Trainer(self.model_, self._optimizer, batch_size=batch,
                          epochs=self._epochs + epochs, shuffle=bool(self.shuffle),
                          seed=self._run_seed(), callbacks=[conv],
                          clip_grad_norm=self.clip_grad_norm,
                          verbose=1 if self.verbose else 0, device=self.device,
                          alpha=float(self.alpha) * self._loss_scale)
        with one_thread_in_workers():
            self.n_threads_ = _threads.train_threads(self.model_.layer_sizes, batch)
            self.history_ = trainer.fit(X, targets, validation_data=validation,
                                        initial_epoch=self._epochs)
        if early and conv.best_params is not None:
            self.model_.params = conv.best_params
        if not incremental and not conv.converged:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                          f"reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=3)
        self._set_views()
        return self

    def _run_seed(self):
        """The Trainer's seed for the current optimizer: it keys the shuffles (with the epoch,
        which counts on over all fits) and the dropout masks (with the optimizer's step). The
        first optimizer takes _shuffle_seed itself; each later one (a warm_start fit starts a
        fresh optimizer, whose step count restarts) a seed of its own, so that no (seed, step)
        pair, and no dropout mask, comes back. partial_fit keeps the optimizer and its seed:
        k calls are k epochs of one fit."""
        if self._optimizer_runs == 1:
            return self._shuffle_seed
        return int(np.random.SeedSequence([self._shuffle_seed, self._optimizer_runs])
                   .generate_state(1)[0])

    def _set_dropout(self, rates):
        """model_ with other dropout rates (set_params between warm_start or partial_fit
        calls): the same weights, and the optimizer state moved to the new parameters."""
        old = self.model_
        self.model_ = MLP(old.layer_sizes, activation=list(old.activations), output=old.output,
                          init=old.init, dtype=old.dtype.name, seed=0, dropout=rates[1:],
                          input_dropout=rates[0])
        self.model_.params = old.params
        if self._optimizer is not None:
            opt = type(self._optimizer)(**self._optimizer.hyperparameters())
            opt.load_state_dict(self._optimizer.state_dict())
            self._optimizer = opt

    def _set_views(self):
        m = self.model_
        self.coefs_ = list(m.weights)
        self.intercepts_ = list(m.biases)

    def _predict_raw(self, X):
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.model_.predict(np.ascontiguousarray(X, dtype=self.model_.dtype))

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        # coefs_/intercepts_ are views into model_.params: rebuilt after unpickling (the model
        # and the optimizer bound to its parameters travel together, one buffer for both)
        state = dict(super().__getstate__())
        state.pop("coefs_", None)
        state.pop("intercepts_", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "model_" in state:
            self._set_views()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.target_tags.multi_output = True  # multilabel / multi-output targets
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier (sklearn.neural_network.MLPClassifier's parameters
    and fitted attributes) trained by fastnn.

    Multiclass targets train a softmax output with cross-entropy; binary and multilabel
    targets a logistic (sigmoid) output with binary cross-entropy, as scikit-learn does.
    `validation_scores_` (early_stopping) are the validation accuracies.

    Parameters are scikit-learn's: hidden_layer_sizes, activation ('identity', 'logistic',
    'tanh', 'relu', and fastnn's 'leaky_relu', 'elu', 'gelu'), solver ('sgd', 'adam' and
    fastnn's 'adamw', 'rmsprop', 'adagrad', 'adadelta'), alpha (the L2 penalty on the
    weights, alpha * W / batch in the gradient, fused into the compiled loop), batch_size
    ('auto' = min(200, n)), learning_rate_init, max_iter (epochs), shuffle, random_state, tol,
    verbose, warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction,
    beta_1, beta_2, epsilon, n_iter_no_change; and fastnn's dtype ('float32' or 'float64'),
    device ('cpu' or 'cuda'), clip_grad_norm (None or a max global gradient norm), dropout (a
    drop probability in [0, 1) for every hidden layer's output, or a list of one per hidden
    layer) and input_dropout (the same for the input features): see fastnn.MLP. The masks are
    keyed by random_state and the optimizer's step, so partial_fit calls continue one fit's
    masks, a warm_start fit (a fresh optimizer) draws new ones, and set_params(dropout=)
    between warm_start or partial_fit calls keeps the weights.
    """

    _val_score_key = "val_accuracy"
    _loss_scale = 1.0  # the kernels' loss / scikit-learn's

    def _is_classifier(self):
        return True

    def _targets(self, y, first, incremental, classes):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        kind = type_of_target(y)
        if kind not in ("binary", "multiclass", "multilabel-indicator"):
            raise ValueError(f"Unknown label type: {kind!r}; MLPClassifier takes binary, "
                             f"multiclass or multilabel-indicator targets")
        if first and incremental and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        if first:
            lb = LabelBinarizer()
            lb.fit(classes if classes is not None else y)
            if len(lb.classes_) < 2 and kind != "multilabel-indicator":
                raise ValueError(f"MLPClassifier needs samples of at least 2 classes, got 1 "
                                 f"class ({lb.classes_[0]!r})")
            self._label_binarizer = lb
            self.classes_ = lb.classes_
        elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(f"`classes={list(classes)!r}` is not the same as on the first "
                             f"call to partial_fit, was: {list(self.classes_)!r}")
        lb = self._label_binarizer
        unseen = np.setdiff1d(unique_labels(y), self.classes_) if lb.y_type_ != \
            "multilabel-indicator" else []
        if len(unseen):
            raise ValueError(f"y holds labels {list(unseen)!r} that are not in classes_ "
                             f"{list(self.classes_)!r}")
        if lb.y_type_ == "multiclass":
            return np.searchsorted(self.classes_, y).astype(np.int64), len(self.classes_), \
                "softmax"
        Y = lb.transform(y).astype(np.float64)
        return Y, Y.shape[1], "sigmoid"

    def _loss_from_logs(self, logs):
        return float(logs["loss"])

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y), continuing the weights and the optimizer state; `classes`
        (all labels) is required on the first call."""
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), float64."""
        p = self._predict_raw(X).astype(np.float64)
        if self._label_binarizer.y_type_ == "binary":
            p = np.hstack([1.0 - p, p])
        elif self._label_binarizer.y_type_ == "multiclass":
            p /= p.sum(axis=1, keepdims=True)  # exact normalization after float32 rounding
        return p

    def predict_log_proba(self, X):
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        p = self._predict_raw(X)
        kind = self._label_binarizer.y_type_
        if kind == "multiclass":
            return self.classes_[np.argmax(p, axis=1)]
        if kind == "binary":
            return self.classes_[(p[:, 0] > 0.5).astype(np.int64)]
        return (p > 0.5).astype(np.int64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor (sklearn.neural_network.MLPRegressor's parameters and
    fitted attributes) trained by fastnn: identity output, squared error.

    The kernels minimize the mean squared error (torch's mse), twice scikit-learn's
    squared_error: they train on twice scikit-learn's objective (alpha doubled), `loss_` and
    `loss_curve_` report half of it, and solver='sgd' steps with learning_rate_init / 2, so
    that its steps are scikit-learn's (the adaptive solvers do not depend on the gradient's
    scale). `validation_scores_` (early_stopping) are R^2 values.
    Parameters: see MLPClassifier.
    """

    _val_score_key = "val_r2"
    _loss_scale = 2.0  # the kernels' mse / scikit-learn's squared_error

    def _is_classifier(self):
        return False

    def _targets(self, y, first, incremental, classes):
        y = np.asarray(y, dtype=np.float64)
        if first:
            self._y_ndim = y.ndim
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        if not first and Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {Y.shape[1]} outputs but the model was fitted with "
                             f"{self.n_outputs_}")
        return Y, Y.shape[1], "identity"

    def _loss_from_logs(self, logs):
        return float(logs["loss"]) / 2.0

    def partial_fit(self, X, y):
        """One epoch over (X, y), continuing the weights and the optimizer state."""
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        p = self._predict_raw(X).astype(np.float64)
        return p.ravel() if self._y_ndim == 1 else p
