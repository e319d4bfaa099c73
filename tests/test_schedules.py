"""fastnn.schedules: lr sequences against the closed forms, against
torch.optim.lr_scheduler (its sequences saved in tests/fixtures/torch_schedules.npz, and run now
as well when torch is installed), and inside Trainer.fit (history["lr"])."""
import math

import numpy as np
import pytest

import fastnn
from fastnn import optim, schedules

import torch_fixtures

LR0 = 0.1


def lr_sequence(schedule, epochs, metrics=None):
    """The lr each epoch trains with: read, then step at the epoch's end."""
    out = []
    for e in range(epochs):
        out.append(schedule.optimizer.lr)
        if metrics is None:
            schedule.step()
        else:
            schedule.step(metrics[e])
    return out


def torch_lr_sequence(torch, name, kw, epochs, metrics=None, lr=LR0):
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    out = []
    for e in range(epochs):
        out.append(topt.param_groups[0]["lr"])
        topt.step()
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[e])
    return out


def closed_form(name, kw, e):
    if name == "StepLR":
        return LR0 * kw.get("gamma", 0.1) ** (e // kw["step_size"])
    if name == "ExponentialLR":
        return LR0 * kw["gamma"] ** e
    eta_min = kw.get("eta_min", 0.0)
    return eta_min + (LR0 - eta_min) * (1 + math.cos(math.pi * e / kw["T_max"])) / 2


EPOCH_SCHEDULES = [
    ("StepLR", dict(step_size=3)),
    ("StepLR", dict(step_size=2, gamma=0.5)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=5)),
    ("CosineAnnealingLR", dict(T_max=4, eta_min=0.01)),
    ("CosineAnnealingLR", dict(T_max=1, eta_min=0.02)),
]


def sched_id(case):
    name, kw = case
    return name + "(" + ",".join(f"{k}={v}" for k, v in kw.items()) + ")"


@pytest.mark.parametrize("case", EPOCH_SCHEDULES, ids=sched_id)
def test_epoch_schedules_follow_closed_form(case):
    """Over several cosine periods too (torch's recursion continues the cosine)."""
    name, kw = case
    sched = getattr(schedules, name)(optim.SGD(lr=LR0), **kw)
    seq = lr_sequence(sched, 25)
    expected = [closed_form(name, kw, e) for e in range(25)]
    np.testing.assert_allclose(seq, expected, rtol=1e-12, atol=1e-15)
    assert sched.get_last_lr() == [sched.optimizer.lr]
    assert sched.last_epoch == 25


@pytest.mark.parametrize("case", EPOCH_SCHEDULES, ids=sched_id)
def test_epoch_schedules_match_torch(case):
    name, kw = case
    seq = lr_sequence(getattr(schedules, name)(optim.Adam(lr=LR0), **kw), 25)
    for label, expected in torch_fixtures.references(
            "schedules", f"epoch/{sched_id(case)}",
            lambda torch: torch_lr_sequence(torch, name, kw, 25)):
        np.testing.assert_allclose(seq, expected, rtol=1e-14, atol=1e-17, err_msg=label)


CHAIN_EPOCHS, CHAIN_CUT = 10, 3  # the lr is halved from outside before epoch 3's step


def torch_chained_lrs(torch):
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR0)
    tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=6, eta_min=0.001)
    lrs = []
    for e in range(CHAIN_EPOCHS):
        if e == CHAIN_CUT:
            topt.param_groups[0]["lr"] *= 0.5
        topt.step()
        tsched.step()
        lrs.append(topt.param_groups[0]["lr"])
    return lrs


def test_schedules_chain_with_outside_lr_changes_like_torch():
    """torch's rules are recursive in the current lr; so are ours."""
    opt = optim.SGD(lr=LR0)
    sched = schedules.CosineAnnealingLR(opt, T_max=6, eta_min=0.001)
    lrs = []
    for e in range(CHAIN_EPOCHS):
        if e == CHAIN_CUT:
            opt.lr *= 0.5
        sched.step()
        lrs.append(opt.lr)
    for label, expected in torch_fixtures.references("schedules", "chain", torch_chained_lrs):
        np.testing.assert_allclose(lrs, expected, rtol=1e-14, atol=0, err_msg=label)


# metrics with improvements, small (below-threshold) improvements, a plateau and a NaN
PLATEAU_METRICS = [1.0, 0.9, 0.8, 0.79995, 0.8, 0.81, 0.7, 0.7, 0.7, 0.7, 0.69999, 0.6,
                   float("nan"), 0.6, 0.6, 0.6, 0.6, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
PLATEAU_CASES = [
    dict(patience=1),
    dict(patience=2, factor=0.5, cooldown=2),
    dict(patience=0, factor=0.5, min_lr=0.02),
    dict(patience=1, threshold=0.05, threshold_mode="abs"),
    dict(mode="max", patience=1, factor=0.3),
    dict(mode="max", patience=2, threshold=0.01, threshold_mode="abs", cooldown=1),
    dict(patience=0, factor=0.9, eps=0.005),
]


def plateau_id(kw):
    return ",".join(f"{k}={v}" for k, v in kw.items())


@pytest.mark.parametrize("kw", PLATEAU_CASES, ids=plateau_id)
def test_reduce_on_plateau_matches_torch(kw):
    sched = schedules.ReduceLROnPlateau(optim.SGD(lr=LR0), **kw)
    seq = lr_sequence(sched, len(PLATEAU_METRICS), PLATEAU_METRICS)
    for label, expected in torch_fixtures.references(
            "schedules", f"plateau/{plateau_id(kw)}",
            lambda torch: torch_lr_sequence(torch, "ReduceLROnPlateau", kw,
                                            len(PLATEAU_METRICS), PLATEAU_METRICS)):
        # products of the factor, the same operations in the same order: equal
        assert seq == list(expected), label


def test_reduce_on_plateau_by_hand():
    """patience=1: the lr drops after the second epoch in a row without improvement
    (by more than 1e-4 relative), then a cooldown of 1 epoch ignores one bad epoch."""
    sched = schedules.ReduceLROnPlateau(optim.SGD(lr=1.0), factor=0.5, patience=1, cooldown=1)
    metrics = [1.0, 0.5, 0.49999, 0.5, 0.6, 0.7, 0.8, 0.4, 0.4]
    #            best  best  bad(1)  bad(2)->cut+cool  cool  bad(1) bad(2)->cut  best  bad(1)
    assert lr_sequence(sched, 9, metrics) == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert sched.best == 0.4 and sched.num_bad_epochs == 1


def fit_problem(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(12, 3))
    y = X @ rng.normal(size=(3, 2))
    model = fastnn.MLP([3, 4, 2], activation="tanh", dtype="float64", seed=seed)
    return model, X, y


@pytest.mark.parametrize("case", EPOCH_SCHEDULES[1:4], ids=sched_id)
def test_trainer_records_scheduled_lr(case):
    name, kw = case
    model, X, y = fit_problem()
    opt = optim.SGD(lr=LR0, momentum=0.5)
    sched = getattr(schedules, name)(opt, **kw)
    hist = fastnn.Trainer(model, opt, batch_size=5, epochs=6, callbacks=[sched], seed=0,
                          verbose=0).fit(X, y)
    expected = [closed_form(name, kw, e) for e in range(7)]
    np.testing.assert_allclose(hist.history["lr"], expected[:6], rtol=1e-12)
    assert opt.lr == pytest.approx(expected[6], rel=1e-12)  # stepped after the last epoch too


def test_trainer_uses_scheduled_lr_in_each_epoch():
    """Full batch SGD with StepLR: each epoch's step uses that epoch's lr."""
    model, X, y = fit_problem()
    start = model.params.copy()
    opt = optim.SGD(lr=LR0)
    fastnn.Trainer(model, opt, batch_size=None, epochs=4, shuffle=False, verbose=0,
                   callbacks=[schedules.StepLR(opt, step_size=2, gamma=0.5)]).fit(X, y)
    probe = model.copy()
    probe.params[:] = start
    for lr in [LR0, LR0, LR0 / 2, LR0 / 2]:
        probe.params -= lr * probe.loss_and_grad(X, y)[1]
    np.testing.assert_allclose(model.params, probe.params, rtol=1e-12)


def test_trainer_reduce_on_plateau_monitors_val_loss():
    """Each epoch's val_loss goes to the schedule, and the lr it sets is the next epoch's: the
    recorded lrs are those of a ReduceLROnPlateau (ours, checked against torch's above, and
    torch's own when installed) stepped on the recorded val_loss values."""
    model, X, y = fit_problem()
    opt = optim.SGD(lr=0.5)
    kw = dict(patience=0, factor=0.5, threshold=0.05)
    sched = schedules.ReduceLROnPlateau(opt, **kw)
    hist = fastnn.Trainer(model, opt, batch_size=4, epochs=8, callbacks=[sched], seed=0,
                          verbose=0).fit(X[:8], y[:8], validation_data=(X[8:], y[8:]))
    val_loss = hist.history["val_loss"]
    expected = lr_sequence(schedules.ReduceLROnPlateau(optim.SGD(lr=0.5), **kw), 8, val_loss)
    assert hist.history["lr"] == expected
    assert min(expected) < 0.5  # the schedule did act
    torch = torch_fixtures.installed_torch()
    if torch is not None:
        assert hist.history["lr"] == torch_lr_sequence(torch, "ReduceLROnPlateau", kw, 8,
                                                       val_loss, lr=0.5)


def torch_fixture(torch):
    """What tests/fixtures/make_torch_fixtures.py saves in torch_schedules.npz."""
    for case in EPOCH_SCHEDULES:
        name, kw = case
        yield f"epoch/{sched_id(case)}", torch_lr_sequence(torch, name, kw, 25)
    yield "chain", torch_chained_lrs(torch)
    for kw in PLATEAU_CASES:
        yield f"plateau/{plateau_id(kw)}", torch_lr_sequence(
            torch, "ReduceLROnPlateau", kw, len(PLATEAU_METRICS), PLATEAU_METRICS)


def test_reduce_on_plateau_without_monitored_key_raises():
    model, X, y = fit_problem()
    opt = optim.SGD(lr=0.1)
    trainer = fastnn.Trainer(model, opt, epochs=2, verbose=0,
                             callbacks=[schedules.ReduceLROnPlateau(opt)])
    with pytest.raises(ValueError, match="'val_loss'.*validation_data"):
        trainer.fit(X, y)
    sched = schedules.ReduceLROnPlateau(opt, monitor="loss", patience=0)
    fastnn.Trainer(model, opt, epochs=2, verbose=0, callbacks=[sched]).fit(X, y)
    assert sched.last_epoch == 2


def test_state_dict_resumes_schedule():
    opt = optim.SGD(lr=LR0)
    sched = schedules.CosineAnnealingLR(opt, T_max=7, eta_min=0.001)
    straight = lr_sequence(sched, 12)
    opt = optim.SGD(lr=LR0)
    sched = schedules.CosineAnnealingLR(opt, T_max=7, eta_min=0.001)
    first = lr_sequence(sched, 5)
    saved_opt, saved_sched = opt.state_dict(), sched.state_dict()
    opt2 = optim.SGD(lr=LR0)
    sched2 = schedules.CosineAnnealingLR(opt2, T_max=1)
    opt2.load_state_dict(saved_opt)  # carries the scheduled lr
    sched2.load_state_dict(saved_sched)
    assert first + lr_sequence(sched2, 7) == straight


@pytest.mark.parametrize("make,exc,match", [
    (lambda o: schedules.StepLR(o, step_size=0), ValueError, "step_size"),
    (lambda o: schedules.StepLR(o, step_size=2.5), TypeError, "step_size"),
    (lambda o: schedules.StepLR(o, step_size=2, gamma=-0.1), ValueError, "gamma"),
    (lambda o: schedules.ExponentialLR(o, gamma=0), ValueError, "gamma"),
    (lambda o: schedules.CosineAnnealingLR(o, T_max=0), ValueError, "T_max"),
    (lambda o: schedules.CosineAnnealingLR(o, T_max=5, eta_min=-1), ValueError, "eta_min"),
    (lambda o: schedules.ReduceLROnPlateau(o, factor=1.0), ValueError, "factor must be < 1"),
    (lambda o: schedules.ReduceLROnPlateau(o, mode="lowest"), ValueError, "mode"),
    (lambda o: schedules.ReduceLROnPlateau(o, threshold_mode="pct"), ValueError,
     "threshold_mode"),
    (lambda o: schedules.ReduceLROnPlateau(o, patience=-1), ValueError, "patience"),
    (lambda o: schedules.ReduceLROnPlateau(o, cooldown=1.5), TypeError, "cooldown"),
    (lambda o: schedules.ReduceLROnPlateau(o, min_lr=-1e-3), ValueError, "min_lr"),
    (lambda o: schedules.ReduceLROnPlateau(o).step("low"), TypeError, "metrics"),
    (lambda o: schedules.StepLR("sgd", step_size=1), TypeError, "optimizer"),
])
def test_bad_schedule_arguments_raise(make, exc, match):
    with pytest.raises(exc, match=match):
        make(optim.SGD(lr=0.1))
