"""fastnn.Trainer with each fastnn.optim optimizer vs torch.optim stepping on the naive
reference's gradients (float64, shuffle=False so that the batch order is known): torch's
results saved in tests/fixtures/torch_optim_torch.npz, and run now as well when torch is
installed."""
import numpy as np
import pytest

import fastnn

import naive
import torch_fixtures

OPTIMIZERS = [
    ("SGD", dict(lr=0.2)),
    ("SGD", dict(lr=0.2, momentum=0.9)),
    ("SGD", dict(lr=0.2, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.2, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.2, momentum=0.5, weight_decay=0.1)),
    ("Adam", dict(lr=0.05)),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.05, amsgrad=True)),
    ("AdamW", dict(lr=0.05)),
    ("AdamW", dict(lr=0.05, weight_decay=0.3, amsgrad=True)),
]


def opt_id(case):
    name, kw = case
    return name + "(" + ",".join(f"{k}={v}" for k, v in kw.items()) + ")"


def torch_fit(torch, params_list, X, y, act, output, loss, opt_name, opt_kw, batch_size,
              epochs, clip=None):
    """Minibatch loop in order, gradients from tests/naive.py, updates by torch.optim: the
    final parameters (flat), then the epoch losses."""
    tparams = [torch.tensor(np.array(p, dtype=np.float64)) for p in params_list]
    opt = getattr(torch.optim, opt_name)(tparams, **opt_kw)
    n = X.shape[0]
    step = n if batch_size is None else batch_size
    losses = []
    for _ in range(epochs):
        total = 0.0
        for start in range(0, n, step):
            idx = np.arange(start, min(start + step, n))
            current = [p.numpy() for p in tparams]
            value, dWs, dbs = naive.loss_and_grads(current, X[idx], y[idx], act, output, loss)
            total += value * len(idx)
            grads = []
            for dW, db in zip(dWs, dbs):
                grads += [dW, db]
            for p, g in zip(tparams, grads):
                p.grad = torch.tensor(g)
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(tparams, clip)
            opt.step()
        losses.append(total / n)
    return naive.flatten([p.numpy() for p in tparams]), np.array(losses)


# the problems (naive.make_problem(sizes, act, output, loss, n=10) when the fixture was made)
PROBLEMS = {
    "softmax": ((3, 5, 3), "tanh", "softmax", "cross_entropy"),
    "identity": ((3, 4, 2), "relu", "identity", "mse"),
    "sigmoid": ((3, 5, 3), "gelu", "sigmoid", "binary_cross_entropy"),
}


def problem(name):
    """(sizes, act, output, loss, params_list, X, y) from the fixture, so that the inputs do
    not depend on NumPy's generator."""
    sizes, act, output, loss = PROBLEMS[name]
    flat, X, y = (torch_fixtures.get("optim_torch", f"problem/{name}/{k}")
                  for k in ("params", "X", "y"))
    return sizes, act, output, loss, naive.unflatten(flat, sizes), X, y


def fit_keys(key):
    """The fixture keys of a torch_fit's (final parameters, epoch losses)."""
    return f"{key}/params", f"{key}/losses"


def make(sizes, act, output, params_list):
    model = fastnn.MLP(layer_sizes=list(sizes), activation=act, output=output, dtype="float64",
                       seed=0)
    model.params[:] = naive.flatten(params_list)
    return model


@pytest.mark.parametrize("batch_size", [None, 3])
@pytest.mark.parametrize("case", OPTIMIZERS, ids=opt_id)
def test_optimizer_matches_torch(case, batch_size):
    opt_name, opt_kw = case
    sizes, act, output, loss, params_list, X, y = problem("softmax")
    model = make(sizes, act, output, params_list)
    opt = getattr(fastnn.optim, opt_name)(**opt_kw)
    hist = fastnn.Trainer(model, opt, loss=loss, batch_size=batch_size, epochs=4, shuffle=False,
                          seed=0, verbose=0).fit(X, y)
    for label, (ref, ref_losses) in torch_fixtures.references(
            "optim_torch", fit_keys(f"fit/{opt_id(case)}/batch{batch_size}"),
            lambda torch: torch_fit(torch, params_list, X, y, act, output, loss, opt_name,
                                    opt_kw, batch_size, 4)):
        np.testing.assert_allclose(model.params, ref, rtol=1e-9, atol=1e-11, err_msg=label)
        np.testing.assert_allclose(hist.history["loss"], ref_losses, rtol=1e-9, err_msg=label)


@pytest.mark.parametrize("case", [OPTIMIZERS[1], OPTIMIZERS[6]], ids=opt_id)
def test_optimizer_state_carries_over_between_fits(case):
    opt_name, opt_kw = case
    sizes, act, output, loss, params_list, X, y = problem("identity")
    model = make(sizes, act, output, params_list)
    opt = getattr(fastnn.optim, opt_name)(**opt_kw)
    for epochs in (2, 1):
        fastnn.Trainer(model, opt, loss=loss, batch_size=4, epochs=epochs, shuffle=False,
                       verbose=0).fit(X, y)
    for label, (ref, _) in torch_fixtures.references(
            "optim_torch", fit_keys(f"resume/{opt_id(case)}"),
            lambda torch: torch_fit(torch, params_list, X, y, act, output, loss, opt_name,
                                    opt_kw, 4, 3)):
        np.testing.assert_allclose(model.params, ref, rtol=1e-9, atol=1e-11, err_msg=label)


@pytest.mark.parametrize("clip", [0.05, 100.0])
def test_clip_grad_norm_matches_torch(clip):
    sizes, act, output, loss, params_list, X, y = problem("sigmoid")
    model = make(sizes, act, output, params_list)
    fastnn.Trainer(model, fastnn.optim.SGD(lr=0.5, momentum=0.9), loss=loss, batch_size=3,
                   epochs=3, shuffle=False, clip_grad_norm=clip, verbose=0).fit(X, y)
    for label, (ref, _) in torch_fixtures.references(
            "optim_torch", fit_keys(f"clip/{clip}"),
            lambda torch: torch_fit(torch, params_list, X, y, act, output, loss, "SGD",
                                    dict(lr=0.5, momentum=0.9), 3, 3, clip=clip)):
        np.testing.assert_allclose(model.params, ref, rtol=1e-9, atol=1e-11, err_msg=label)


def test_many_steps_plain_sgd():
    """Hundreds of steps, so the trainer's compiled loop runs over several chunks."""
    sizes, act, output, loss = (3, 4, 2), "leaky_relu", "softmax", "cross_entropy"
    params_list, X, y = naive.make_problem(sizes, act, output, loss, n=10)
    model = make(sizes, act, output, params_list)
    hist = fastnn.Trainer(model, fastnn.optim.SGD(lr=0.1), loss=loss, batch_size=2, epochs=60,
                          shuffle=False, verbose=0).fit(X, y)
    ref, ref_hist = naive.naive_sgd_fit(params_list, X, y, loss, 0.1, 2, [np.arange(10)] * 60,
                                        activation=act, output=output)
    np.testing.assert_allclose(model.params, naive.flatten(ref), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(hist.history["loss"], ref_hist["loss"], rtol=1e-9)


def torch_fixture(torch):
    """What tests/fixtures/make_torch_fixtures.py saves in torch_optim_torch.npz: each
    problem's inputs, then torch's final parameters and epoch losses."""
    problems = {}
    for name, (sizes, act, output, loss) in PROBLEMS.items():
        params_list, X, y = naive.make_problem(sizes, act, output, loss, n=10)
        problems[name] = (sizes, act, output, loss, params_list, X, y)
        yield f"problem/{name}/params", naive.flatten(params_list)
        yield f"problem/{name}/X", X
        yield f"problem/{name}/y", y

    def fit(key, name, *args, **kwargs):
        _, act, output, loss, params_list, X, y = problems[name]
        return zip(fit_keys(key), torch_fit(torch, params_list, X, y, act, output, loss, *args,
                                            **kwargs))

    for case in OPTIMIZERS:
        for batch_size in (None, 3):
            yield from fit(f"fit/{opt_id(case)}/batch{batch_size}", "softmax", *case,
                           batch_size, 4)
    for case in (OPTIMIZERS[1], OPTIMIZERS[6]):
        yield from fit(f"resume/{opt_id(case)}", "identity", *case, 4, 3)
    for clip in (0.05, 100.0):
        yield from fit(f"clip/{clip}", "sigmoid", "SGD", dict(lr=0.5, momentum=0.9), 3, 3,
                       clip=clip)
