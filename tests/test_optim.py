"""fastnn.optim against the torch.optim documentation's pseudo-code, transcribed step by step
below in plain float64 NumPy (one function per optimizer, variable names as in the docs), and
against torch.optim itself: its trajectories saved in tests/fixtures/torch_optim.npz, and run
now as well when torch is installed."""
import json

import numpy as np
import pytest

import fastnn
from fastnn import optim

import bounds
import naive
import torch_fixtures

N_PARAMS = 37
N_STEPS = 10


# ------------------------------------------------------------------------------------------
# reference transcriptions of https://pytorch.org/docs/stable/optim.html (algorithm boxes)
# ------------------------------------------------------------------------------------------
def ref_sgd(theta, grads, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
            nesterov=False):
    theta = theta.copy()
    b = None
    out = []
    for t, g in enumerate(grads, start=1):
        if weight_decay != 0:
            g = g + weight_decay * theta
        if momentum != 0:
            if t > 1:
                b = momentum * b + (1 - dampening) * g
            else:
                b = g
            if nesterov:
                g = g + momentum * b
            else:
                g = b
        theta = theta - lr * g
        out.append(theta)
    return out


def ref_adagrad(theta, grads, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                initial_accumulator_value=0.0, eps=1e-10):
    theta = theta.copy()
    state_sum = np.full_like(theta, initial_accumulator_value)
    out = []
    for t, g in enumerate(grads, start=1):
        lr_t = lr / (1 + (t - 1) * lr_decay)
        if weight_decay != 0:
            g = g + weight_decay * theta
        state_sum = state_sum + g * g
        theta = theta - lr_t * g / (np.sqrt(state_sum) + eps)
        out.append(theta)
    return out


def ref_adadelta(theta, grads, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0):
    theta = theta.copy()
    v = np.zeros_like(theta)  # square avg
    u = np.zeros_like(theta)  # accumulate variables
    out = []
    for g in grads:
        if weight_decay != 0:
            g = g + weight_decay * theta
        v = v * rho + g * g * (1 - rho)
        dx = np.sqrt(u + eps) / np.sqrt(v + eps) * g
        u = u * rho + dx * dx * (1 - rho)
        theta = theta - lr * dx
        out.append(theta)
    return out


def ref_rmsprop(theta, grads, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                centered=False):
    theta = theta.copy()
    v = np.zeros_like(theta)
    b = np.zeros_like(theta)
    g_ave = np.zeros_like(theta)
    out = []
    for g in grads:
        if weight_decay != 0:
            g = g + weight_decay * theta
        v = alpha * v + (1 - alpha) * g * g
        v_tilde = v
        if centered:
            g_ave = g_ave * alpha + (1 - alpha) * g
            v_tilde = v_tilde - g_ave * g_ave
        if momentum > 0:
            b = momentum * b + g / (np.sqrt(v_tilde) + eps)
            theta = theta - lr * b
        else:
            theta = theta - lr * g / (np.sqrt(v_tilde) + eps)
        out.append(theta)
    return out


def ref_adam(theta, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
             amsgrad=False, decoupled=False):
    beta1, beta2 = betas
    theta = theta.copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    v_max = np.zeros_like(theta)
    out = []
    for t, g in enumerate(grads, start=1):
        if decoupled:  # AdamW
            theta = theta - lr * weight_decay * theta
        elif weight_decay != 0:
            g = g + weight_decay * theta
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t)
        if amsgrad:
            v_max = np.maximum(v_max, v)
            v_hat = v_max / (1 - beta2**t)
        else:
            v_hat = v / (1 - beta2**t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(theta)
    return out


def ref_adamw(theta, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
              amsgrad=False):
    return ref_adam(theta, grads, lr, betas, eps, weight_decay, amsgrad, decoupled=True)


REFERENCES = {"SGD": ref_sgd, "Adagrad": ref_adagrad, "Adadelta": ref_adadelta,
              "RMSprop": ref_rmsprop, "Adam": ref_adam, "AdamW": ref_adamw}

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.8, weight_decay=0.1, nesterov=True)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.02, initial_accumulator_value=0.3,
                     eps=1e-6)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.05)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.02, momentum=0.7,
                     centered=True)),
    ("RMSprop", dict(lr=0.02, alpha=0.8, centered=True)),
    ("RMSprop", dict(lr=0.02, momentum=0.5)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1, amsgrad=True)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.3, amsgrad=True)),
]


def case_id(case):
    name, kw = case
    return name + "(" + ",".join(f"{k}={v}" for k, v in kw.items()) + ")"


def problem(seed=0):
    """Start point and N_STEPS gradients whose scale shrinks and jumps (so that amsgrad's
    running max and the adaptive denominators matter)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=N_PARAMS)
    scales = [3.0, 0.1, 1.0, 0.01, 2.0, 0.5, 0.05, 1.5, 0.2, 0.02]
    grads = [s * rng.normal(size=N_PARAMS) for s in scales[:N_STEPS]]
    return theta, grads


def fastnn_trajectory(name, kw, theta, grads, dtype=np.float64):
    opt = getattr(optim, name)(**kw)
    p = theta.astype(dtype)
    out = []
    for g in grads:
        opt.update(p, g.astype(dtype))
        out.append(p.copy())
    return out, opt


def assert_trajectories_close(actual, expected, rtol, atol=0.0):
    worst = max(float(np.max(np.abs(a - e) / (np.abs(e) + atol / rtol + 1e-300)))
                for a, e in zip(actual, expected))
    print(f"largest relative difference over {len(actual)} steps: {worst:.3g}")
    for t, (a, e) in enumerate(zip(actual, expected), start=1):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=f"step {t}")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_ten_steps_match_documented_formula(case):
    name, kw = case
    theta, grads = problem()
    actual, opt = fastnn_trajectory(name, kw, theta, grads)
    expected = REFERENCES[name](theta, grads, **kw)
    assert opt.step_count[0] == N_STEPS
    assert not np.array_equal(actual[-1], theta)
    assert_trajectories_close(actual, expected, rtol=1e-10, atol=1e-14)


def torch_trajectory(torch, name, kw, theta, grads):
    """torch.optim's iterates, float64, fed the given gradients."""
    p = torch.tensor(theta.copy(), dtype=torch.float64)
    topt = getattr(torch.optim, name)([p], **kw)
    out = []
    for g in grads:
        p.grad = torch.tensor(g)
        topt.step()
        out.append(p.detach().numpy().copy())
    return np.array(out)


def torch_problem():
    """The start and gradients of the torch comparisons (problem(seed=1) when the fixture was
    made), from the fixture, so that they do not depend on NumPy's generator."""
    return torch_fixtures.get("optim", "theta"), list(torch_fixtures.get("optim", "grads"))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_ten_steps_match_torch(case):
    name, kw = case
    theta, grads = torch_problem()
    actual, _ = fastnn_trajectory(name, kw, theta, grads)
    for label, expected in torch_fixtures.references(
            "optim", f"trajectory/{case_id(case)}",
            lambda torch: torch_trajectory(torch, name, kw, theta, grads)):
        print(label)
        assert_trajectories_close(actual, list(expected), rtol=1e-10, atol=1e-14)


def torch_defaults(torch, name):
    """torch.optim's defaults for the hyperparameters fastnn has, as JSON (tuples as lists)."""
    ours = getattr(optim, name)().hyperparameters()
    theirs = getattr(torch.optim, name)([torch.zeros(1)]).defaults
    return json.dumps({key: theirs[key] for key in ours})


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_defaults_match_torch(name):
    ours = json.loads(json.dumps(getattr(optim, name)().hyperparameters()))
    for label, theirs in torch_fixtures.references(
            "optim", f"defaults/{name}", lambda torch: torch_defaults(torch, name)):
        assert json.loads(str(theirs)) == ours, label


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_float32_stays_float32_and_tracks_float64(case):
    name, kw = case
    theta, grads = problem(seed=2)
    actual, opt = fastnn_trajectory(name, kw, theta, grads, dtype=np.float32)
    expected = REFERENCES[name](theta, grads, **kw)
    assert all(a.dtype == np.float32 for a in actual)
    assert opt.state.dtype == np.float32
    # elementwise arithmetic only, on inputs rounded to float32: each step rounds each element
    # a bounded number of times (weight decay, the moments, a square root, a division, the
    # bias corrections: under 16), relative to the size of the step or of the parameter, and
    # the gradients are given, so nothing feeds back but weight decay: after t steps within
    # 16 t eps, norm-wise
    for t, (a, e) in enumerate(zip(actual, expected), start=1):
        bounds.assert_close(a, e, 16 * t, np.float32, f"step {t}")


def test_optimizer_state_slots():
    """State in the parameter layout: slot k is one flat buffer per state variable."""
    theta, grads = problem()
    for name, kw, slots in [("SGD", {}, 0), ("SGD", dict(momentum=0.9), 1),
                            ("Adagrad", dict(initial_accumulator_value=0.25), 1),
                            ("Adadelta", {}, 2), ("RMSprop", {}, 1),
                            ("RMSprop", dict(momentum=0.5, centered=True), 3),
                            ("Adam", {}, 2), ("Adam", dict(amsgrad=True), 3)]:
        opt = getattr(optim, name)(**kw)
        assert opt.n_slots == slots
        state = opt.bind(np.zeros(N_PARAMS))
        assert state.shape == (slots, N_PARAMS)
    # the Adagrad sum starts at initial_accumulator_value; Adam's m after one step is (1-b1) g
    opt = optim.Adagrad(initial_accumulator_value=0.25)
    assert np.all(opt.bind(np.zeros(5)) == 0.25)
    opt = optim.Adam(betas=(0.75, 0.5))
    opt.update(theta.copy(), grads[0])
    np.testing.assert_allclose(opt.state[0], 0.25 * grads[0], rtol=1e-15)
    np.testing.assert_allclose(opt.state[1], 0.5 * grads[0] ** 2, rtol=1e-15)


def test_grad_scale_multiplies_gradient_first():
    """update(..., grad_scale=c) is a step on c * g (clipping), weight decay unscaled."""
    theta, grads = problem()
    for name, kw in [("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
                     ("RMSprop", dict(momentum=0.5, weight_decay=0.1)),
                     ("Adam", dict(weight_decay=0.1))]:
        opt = getattr(optim, name)(**kw)
        p = theta.copy()
        for g in grads:
            opt.update(p, g, grad_scale=0.3)
        expected = REFERENCES[name](theta, [0.3 * g for g in grads], **kw)[-1]
        np.testing.assert_allclose(p, expected, rtol=1e-10, atol=1e-14)


# ------------------------------------------------------------------------------------------
# inside the compiled training loop, clipping, resuming
# ------------------------------------------------------------------------------------------
def small_regression(n=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = np.column_stack([np.sin(X[:, 0]) + X[:, 1] * X[:, 2], X[:, 0] - X[:, 2]])
    model = fastnn.MLP([3, 5, 2], activation="tanh", dtype="float64", seed=seed)
    return model, X, y


@pytest.mark.parametrize("case", [c for c in CASES if c[1]], ids=case_id)
def test_trainer_runs_each_optimizer_in_the_compiled_loop(case):
    """Full batch: epoch e's gradient is taken at the parameters after e steps, so the Trainer's
    trajectory is the reference optimizer fed the gradients of its own iterates."""
    name, kw = case
    model, X, y = small_regression()
    start = model.params.copy()
    epochs = 4
    hist = fastnn.Trainer(model, getattr(optim, name)(**kw), loss="mse", batch_size=None,
                          epochs=epochs, shuffle=False, verbose=0).fit(X, y)
    probe = model.copy()
    probe.params[:] = start
    grads = []
    for _ in range(epochs):
        grads.append(probe.loss_and_grad(X, y, loss="mse")[1])
        probe.params[:] = REFERENCES[name](start, grads, **kw)[-1]
    np.testing.assert_allclose(model.params, probe.params, rtol=1e-10, atol=1e-14)
    assert hist.history["lr"] == [kw.get("lr", getattr(optim, name)().lr)] * epochs


@pytest.mark.parametrize("clip", [0.05, 100.0])
@pytest.mark.parametrize("name,kw", [("Adam", dict(lr=0.05, amsgrad=True)),
                                     ("Adagrad", dict(lr=0.1, lr_decay=0.1)),
                                     ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True))])
def test_clip_grad_norm_in_trainer_matches_manual_clip_then_step(name, kw, clip):
    model, X, y = small_regression()
    start = model.params.copy()
    epochs = 3
    fastnn.Trainer(model, getattr(optim, name)(**kw), loss="mse", batch_size=None,
                   epochs=epochs, shuffle=False, clip_grad_norm=clip, verbose=0).fit(X, y)
    probe = model.copy()
    probe.params[:] = start
    grads = []
    clipped = False
    for _ in range(epochs):
        g = probe.loss_and_grad(X, y, loss="mse")[1]
        norm = np.sqrt(np.sum(g * g))
        coef = clip / (norm + 1e-6)  # torch.nn.utils.clip_grad_norm_
        clipped |= coef < 1
        grads.append(g * min(coef, 1.0))
        probe.params[:] = REFERENCES[name](start, grads, **kw)[-1]
    assert clipped == (clip < 1)
    np.testing.assert_allclose(model.params, probe.params, rtol=1e-10, atol=1e-14)


CLIP_KW = dict(lr=0.05, betas=(0.8, 0.9), weight_decay=0.1)
CLIP_SIZES = (3, 5, 2)  # small_regression's network: tanh, identity output, mse


def torch_clipped_adamw(torch, start, X, y):
    """3 full-batch AdamW steps with torch.nn.utils.clip_grad_norm_(0.1), on the naive
    reference's gradients."""
    p = torch.tensor(start.copy())
    topt = torch.optim.AdamW([p], **CLIP_KW)
    for _ in range(3):
        params_list = naive.unflatten(p.detach().numpy(), CLIP_SIZES)
        p.grad = torch.tensor(naive.loss_and_flat_grad(params_list, X, y, "tanh", "identity",
                                                       "mse")[1])
        torch.nn.utils.clip_grad_norm_([p], 0.1)
        topt.step()
    return p.detach().numpy().copy()


def test_clip_grad_norm_matches_torch_clip_grad_norm():
    start, X, y = (torch_fixtures.get("optim", f"clip/{k}") for k in ("start", "X", "y"))
    model = fastnn.MLP(list(CLIP_SIZES), activation="tanh", dtype="float64")
    model.params[:] = start
    fastnn.Trainer(model, optim.AdamW(**CLIP_KW), loss="mse", batch_size=None, epochs=3,
                   shuffle=False, clip_grad_norm=0.1, verbose=0).fit(X, y)
    for label, expected in torch_fixtures.references(
            "optim", "clip/params", lambda torch: torch_clipped_adamw(torch, start, X, y)):
        np.testing.assert_allclose(model.params, expected, rtol=1e-10, atol=1e-14,
                                   err_msg=label)


@pytest.mark.parametrize("case", [c for c in CASES if c[1]], ids=case_id)
def test_resume_from_state_dict_is_exact(case):
    """2 epochs, save, a NEW optimizer loads the state, 2 more == 4 epochs straight."""
    name, kw = case
    model, X, y = small_regression(n=11)
    straight = model.copy()
    fit = dict(loss="mse", batch_size=4, shuffle=False, verbose=0)
    fastnn.Trainer(straight, getattr(optim, name)(**kw), epochs=4, **fit).fit(X, y)

    first = getattr(optim, name)(**kw)
    fastnn.Trainer(model, first, epochs=2, **fit).fit(X, y)
    saved = first.state_dict()
    first.state[...] += 1.0  # saved is a copy
    first.step_count[0] += 1
    resumed = getattr(optim, name)(lr=123.0)  # hyperparameters come from the state_dict
    resumed.load_state_dict(saved)
    assert resumed.hyperparameters() == getattr(optim, name)(**kw).hyperparameters()
    assert resumed.step_count[0] == 6  # 3 steps per epoch
    fastnn.Trainer(model, resumed, epochs=2, **fit).fit(X, y)
    np.testing.assert_array_equal(model.params, straight.params)


def test_state_dict_from_float64_resumes_float32_buffers():
    theta, grads = problem()
    opt = optim.Adam(lr=0.01)
    p = theta.copy()
    for g in grads[:5]:
        opt.update(p, g)
    resumed = optim.Adam()
    resumed.load_state_dict(opt.state_dict())
    p32 = theta.astype(np.float32)
    state = resumed.bind(p32)
    assert state.dtype == np.float32 and resumed.step_count[0] == 5
    np.testing.assert_array_equal(state, opt.state.astype(np.float32))  # kept, rounded once
    resumed.update(p32, grads[5].astype(np.float32))
    assert resumed.step_count[0] == 6


def test_load_state_dict_rejects_mismatches():
    opt = optim.Adam()
    opt.update(np.zeros(4), np.ones(4))
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="'Adam', not AdamW"):
        optim.AdamW().load_state_dict(sd)
    opt = optim.Adam(amsgrad=True)
    opt.load_state_dict(sd)  # the saved hyperparameters win, as in torch
    assert not opt.amsgrad and opt.n_slots == 2
    bad = dict(sd, hyperparameters=dict(sd["hyperparameters"], amsgrad=True))
    with pytest.raises(ValueError, match=r"shape \(3, n_params\)"):
        optim.Adam().load_state_dict(bad)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam().load_state_dict(dict(sd, hyperparameters=dict(sd["hyperparameters"],
                                                                   betas=(1.0, 0.9))))
    with pytest.raises(ValueError, match="step"):
        optim.Adam().load_state_dict(dict(sd, step=-1))
    with pytest.raises(ValueError, match="lacks"):
        optim.Adam().load_state_dict({"name": "Adam"})


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------
BAD = [
    (optim.SGD, dict(lr=-0.1), ValueError, "lr must be >= 0"),
    (optim.SGD, dict(lr=float("nan")), ValueError, "lr must be finite"),
    (optim.SGD, dict(lr="0.1"), TypeError, "lr must be a real number"),
    (optim.SGD, dict(momentum=-0.5), ValueError, "momentum must be >= 0"),
    (optim.SGD, dict(weight_decay=-1e-4), ValueError, "weight_decay"),
    (optim.SGD, dict(nesterov=True), ValueError, "nesterov=True requires momentum > 0"),
    (optim.SGD, dict(momentum=0.9, dampening=0.1, nesterov=True), ValueError, "dampening = 0"),
    (optim.SGD, dict(momentum=0.9, nesterov="yes"), TypeError, "nesterov must be True or False"),
    (optim.Adagrad, dict(lr_decay=-0.1), ValueError, "lr_decay"),
    (optim.Adagrad, dict(initial_accumulator_value=-1), ValueError,
     "initial_accumulator_value"),
    (optim.Adagrad, dict(eps=-1e-10), ValueError, "eps"),
    (optim.Adadelta, dict(rho=1.5), ValueError, "rho must be <= 1"),
    (optim.Adadelta, dict(rho=-0.1), ValueError, "rho must be >= 0"),
    (optim.Adadelta, dict(lr=-1.0), ValueError, "lr"),
    (optim.RMSprop, dict(alpha=1.01), ValueError, "alpha must be <= 1"),
    (optim.RMSprop, dict(momentum=-0.9), ValueError, "momentum"),
    (optim.RMSprop, dict(eps=-1.0), ValueError, "eps"),
    (optim.RMSprop, dict(centered=2), TypeError, "centered"),
    (optim.Adam, dict(betas=(1.0, 0.999)), ValueError, r"betas\[0\] must be < 1"),
    (optim.Adam, dict(betas=(0.9, -0.1)), ValueError, r"betas\[1\] must be >= 0"),
    (optim.Adam, dict(betas=0.9), ValueError, "betas must be a pair"),
    (optim.Adam, dict(betas=(0.9, 0.99, 0.999)), ValueError, "betas must be a pair"),
    (optim.Adam, dict(eps=-1e-8), ValueError, "eps"),
    (optim.Adam, dict(amsgrad=None), TypeError, "amsgrad"),
    (optim.AdamW, dict(weight_decay=-0.01), ValueError, "weight_decay"),
    (optim.AdamW, dict(betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be < 1"),
]


@pytest.mark.parametrize("cls,kw,exc,match", BAD,
                         ids=[f"{c.__name__}-{i}" for i, (c, *_) in enumerate(BAD)])
def test_bad_hyperparameters_raise(cls, kw, exc, match):
    with pytest.raises(exc, match=match):
        cls(**kw)


def test_bad_lr_assignment_and_update_arguments_raise():
    opt = optim.RMSprop()
    with pytest.raises(ValueError, match="lr must be >= 0"):
        opt.lr = -1e-3
    assert opt.lr == 1e-2
    p = np.zeros(4)
    with pytest.raises(ValueError, match="one shape and dtype"):
        opt.update(p, np.zeros(5))
    with pytest.raises(ValueError, match="one shape and dtype"):
        opt.update(p, np.zeros(4, dtype=np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        opt.update(np.zeros(4, np.int64), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="grad_scale"):
        opt.update(p, np.zeros(4), grad_scale=-1.0)
    assert opt.step_count[0] == 0 and opt.state is None  # nothing ran


def test_get_optimizer_and_repr():
    opt = optim.get_optimizer("RMSprop", lr=0.5, centered=True)
    assert isinstance(opt, optim.RMSprop) and opt.lr == 0.5 and opt.centered
    assert repr(opt).startswith("RMSprop(lr=0.5, alpha=0.99")
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        optim.get_optimizer("lion")


def torch_fixture(torch):
    """What tests/fixtures/make_torch_fixtures.py saves in torch_optim.npz."""
    theta, grads = problem(seed=1)
    yield "theta", theta
    yield "grads", np.array(grads)
    for case in CASES:
        yield f"trajectory/{case_id(case)}", torch_trajectory(torch, *case, theta, grads)
    for name in sorted(REFERENCES):
        yield f"defaults/{name}", torch_defaults(torch, name)
    model, X, y = small_regression()
    yield "clip/start", model.params
    yield "clip/X", X
    yield "clip/y", y
    yield "clip/params", torch_clipped_adamw(torch, model.params, X, y)
