"""Tests of the naive reference itself (tests/naive.py): no fastnn needed. Against torch's
autograd: torch's results saved in tests/fixtures/torch_reference.npz, and run now as well
when torch is installed."""
import numpy as np
import pytest

import naive
import torch_fixtures

ARCHITECTURES = [(4, 5, 3), (3, 4, 5, 2), (4, 3)]
MIXED_ACTIVATIONS = ["tanh", "gelu"]  # one name per hidden layer of (3, 4, 5, 2)


def arch_activation_cases():
    cases = []
    for sizes in ARCHITECTURES:
        if len(sizes) == 2:  # no hidden layer: the activation is irrelevant
            cases.append((sizes, "relu"))
        else:
            cases += [(sizes, act) for act in naive.HIDDEN_ACTIVATIONS]
    cases.append(((3, 4, 5, 2), MIXED_ACTIVATIONS))
    return cases


# --------------------------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------------------------
Z = np.linspace(-4.0, 4.0, 41) + 0.013  # avoids 0 exactly (kinks)


@pytest.mark.parametrize("name", naive.HIDDEN_ACTIVATIONS)
def test_activation_derivative_matches_finite_differences(name):
    eps = 1e-6
    fd = (naive.activation(name, Z + eps) - naive.activation(name, Z - eps)) / (2 * eps)
    np.testing.assert_allclose(naive.activation_derivative(name, Z), fd, rtol=1e-7, atol=1e-9)


def test_activation_values_at_known_points():
    z = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(naive.activation("relu", z), [0, 0, 0, 0.5, 2.0])
    np.testing.assert_allclose(naive.activation("leaky_relu", z), [-0.02, -0.005, 0, 0.5, 2.0])
    np.testing.assert_allclose(naive.activation("elu", z),
                               [np.expm1(-2.0), np.expm1(-0.5), 0, 0.5, 2.0])
    np.testing.assert_allclose(naive.activation("sigmoid", z), 1 / (1 + np.exp(-z)))
    np.testing.assert_allclose(naive.activation("gelu", np.array([0.0, 1.0])),
                               [0.0, 0.8413447460685429])
    big = np.array([-800.0, 800.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_array_equal(naive.sigmoid(big), [0.0, 1.0])
        np.testing.assert_array_equal(naive.softmax(np.array([[1000.0, 0.0]])), [[1.0, 0.0]])


def test_kink_conventions_match_torch():
    assert naive.activation_derivative("relu", np.array([0.0]))[0] == 0.0
    assert naive.activation_derivative("leaky_relu", np.array([0.0]))[0] == 0.01


def torch_activations(torch):
    F = torch.nn.functional
    return {"identity": lambda t: t, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "relu": torch.relu, "leaky_relu": F.leaky_relu, "elu": F.elu, "gelu": F.gelu}


def torch_activation(torch, name, z):
    """[values, derivatives] of torch's activation `name` at z (float64 autograd)."""
    t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    out = torch_activations(torch)[name](t)
    out.sum().backward()
    return np.array([out.detach().numpy(), t.grad.numpy()])


@pytest.mark.parametrize("name", naive.HIDDEN_ACTIVATIONS)
def test_activation_matches_torch(name):
    z = torch_fixtures.get("reference", "activation/z")
    for label, (values, derivatives) in torch_fixtures.references(
            "reference", f"activation/{name}", lambda torch: torch_activation(torch, name, z)):
        np.testing.assert_allclose(naive.activation(name, z), values, rtol=1e-14, atol=1e-15,
                                   err_msg=label)
        np.testing.assert_allclose(naive.activation_derivative(name, z), derivatives,
                                   rtol=1e-13, atol=1e-15, err_msg=label)


# --------------------------------------------------------------------------------------------
# softmax
# --------------------------------------------------------------------------------------------
def test_softmax_rows_sum_to_one_and_shift_invariant():
    rng = np.random.default_rng(0)
    z = rng.normal(scale=3.0, size=(7, 5))
    p = naive.softmax(z)
    assert np.all(p > 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(naive.softmax(z + 123.0), p, rtol=1e-12)
    np.testing.assert_allclose(naive.log_softmax(z), np.log(p), rtol=1e-12, atol=1e-14)


def test_softmax_jacobian_matches_finite_differences():
    rng = np.random.default_rng(1)
    z = rng.normal(size=4)
    eps = 1e-6
    fd = np.empty((4, 4))
    for j in range(4):
        e = np.zeros(4)
        e[j] = eps
        fd[:, j] = (naive.softmax((z + e)[None])[0] - naive.softmax((z - e)[None])[0]) / (2 * eps)
    np.testing.assert_allclose(naive.softmax_jacobian(naive.softmax(z[None])[0]), fd,
                               rtol=1e-7, atol=1e-10)


# --------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------
def test_flatten_unflatten_roundtrip_and_layout():
    sizes = (3, 4, 2)
    rng = np.random.default_rng(2)
    params_list = naive.random_params(sizes, rng)
    flat = naive.flatten(params_list)
    assert flat.shape == (naive.num_params(sizes),) == (3 * 4 + 4 + 4 * 2 + 2,)
    np.testing.assert_array_equal(flat[:12], params_list[0].ravel())  # W0 first, C order
    np.testing.assert_array_equal(flat[12:16], params_list[1])  # then b0
    np.testing.assert_array_equal(flat[16:24], params_list[2].ravel())
    np.testing.assert_array_equal(flat[24:], params_list[3])
    for a, b in zip(naive.unflatten(flat, sizes), params_list):
        np.testing.assert_array_equal(a, b)
    assert naive.layer_sizes_of(params_list) == sizes
    assert [sl for _, sl in naive.tensor_slices(sizes)] == [
        slice(0, 12), slice(12, 16), slice(16, 24), slice(24, 26)]


def test_make_problem_keeps_margin():
    params_list, X, _ = naive.make_problem((4, 5, 3), "relu", "softmax", "cross_entropy")
    assert naive.min_abs_hidden_preactivation(params_list, X, "relu", "softmax") >= 1e-3


# --------------------------------------------------------------------------------------------
# losses and backward
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("output,loss", naive.VALID_OUTPUT_LOSS)
@pytest.mark.parametrize("sizes,act", arch_activation_cases())
def test_backward_matches_finite_differences(sizes, act, output, loss):
    params_list, X, y = naive.make_problem(sizes, act, output, loss)
    flat = naive.flatten(params_list)
    _, g = naive.loss_and_flat_grad(params_list, X, y, act, output, loss)
    fd = naive.central_difference_gradient(
        lambda v: naive.loss_of_flat(v, sizes, X, y, act, output, loss), flat, eps=1e-6)
    assert naive.per_tensor_rel_error(g, fd, sizes) < 1e-6


def torch_loss_and_grad(torch, params_list, X, y, act, output, loss):
    """[loss, *flat gradient] of the network in torch's autograd (float64)."""
    F = torch.nn.functional
    tparams = [torch.tensor(p, requires_grad=True) for p in params_list]
    names = naive.hidden_activation_names(act, len(params_list) // 2 - 1)
    fns = torch_activations(torch)
    h = torch.tensor(X)
    for layer, name in enumerate(names):
        h = fns[name](h @ tparams[2 * layer] + tparams[2 * layer + 1])
    z = h @ tparams[-2] + tparams[-1]
    if loss == "cross_entropy":
        tl = F.cross_entropy(z, torch.tensor(y))
    elif loss == "binary_cross_entropy":
        tl = F.binary_cross_entropy_with_logits(z, torch.tensor(y))
        # and the same as BCELoss on the probabilities
        np.testing.assert_allclose(
            F.binary_cross_entropy(torch.sigmoid(z), torch.tensor(y)).item(), tl.item(),
            rtol=1e-12)
    else:
        out = {"identity": z, "sigmoid": torch.sigmoid(z), "softmax": torch.softmax(z, 1)}[output]
        tl = F.mse_loss(out, torch.tensor(y))
    tl.backward()
    return np.concatenate([[tl.item()], naive.flatten([p.grad.numpy() for p in tparams])])


def grad_case_key(sizes, act, output, loss):
    act = act if isinstance(act, str) else "+".join(act)
    return f"grad/{'x'.join(map(str, sizes))}-{act}-{output}-{loss}"


@pytest.mark.parametrize("output,loss", naive.VALID_OUTPUT_LOSS)
@pytest.mark.parametrize("sizes,act", arch_activation_cases())
def test_loss_and_grad_match_torch_autograd(sizes, act, output, loss):
    """The problem is naive.make_problem(sizes, act, output, loss) as drawn when the fixture
    was made, read from the fixture."""
    key = grad_case_key(sizes, act, output, loss)
    flat, X, y = (torch_fixtures.get("reference", f"{key}/{k}") for k in ("params", "X", "y"))
    params_list = naive.unflatten(flat, sizes)
    value, g = naive.loss_and_flat_grad(params_list, X, y, act, output, loss)
    for label, expected in torch_fixtures.references(
            "reference", f"{key}/torch",
            lambda torch: torch_loss_and_grad(torch, params_list, X, y, act, output, loss)):
        tg = expected[1:]
        np.testing.assert_allclose(value, expected[0], rtol=1e-13, err_msg=label)
        np.testing.assert_allclose(g, tg, rtol=1e-10, atol=1e-13 * np.max(np.abs(tg)),
                                   err_msg=label)


def test_cross_entropy_labels_equal_onehot():
    sizes = (4, 5, 3)
    params_list, X, labels = naive.make_problem(sizes, "tanh", "softmax", "cross_entropy")
    onehot = naive.targets_as_matrix(labels, 3, "cross_entropy")
    v1, g1 = naive.loss_and_flat_grad(params_list, X, labels, "tanh", "softmax", "cross_entropy")
    v2, g2 = naive.loss_and_flat_grad(params_list, X, onehot, "tanh", "softmax", "cross_entropy")
    assert v1 == pytest.approx(v2, rel=1e-15)
    np.testing.assert_allclose(g1, g2, rtol=1e-14, atol=1e-16)


def test_loss_values_from_definitions():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(5, 3))
    Y = rng.random((5, 3))
    s = 1 / (1 + np.exp(-z))
    bce = -np.mean(Y * np.log(s) + (1 - Y) * np.log(1 - s))
    assert naive.loss_value(z, s, Y, "binary_cross_entropy") == pytest.approx(bce, rel=1e-13)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert naive.loss_value(z, p, Y, "cross_entropy") == pytest.approx(
        -np.sum(Y * np.log(p)) / 5, rel=1e-13)
    assert naive.loss_value(z, z, Y, "mse") == pytest.approx(np.mean((z - Y) ** 2), rel=1e-15)


@pytest.mark.parametrize("output,loss", naive.INVALID_OUTPUT_LOSS)
def test_invalid_output_loss_raises(output, loss):
    params_list, X, y = naive.make_problem((3, 2), "relu", "softmax", "cross_entropy")
    with pytest.raises(ValueError):
        naive.loss_and_grads(params_list, X, y, "relu", output, loss)


# --------------------------------------------------------------------------------------------
# training loop
# --------------------------------------------------------------------------------------------
def test_naive_sgd_full_batch_is_gradient_descent():
    sizes = (3, 4, 2)
    params_list, X, y = naive.make_problem(sizes, "tanh", "identity", "mse", n=10)
    lr = 0.1
    expected = naive.flatten(params_list)
    losses = []
    for _ in range(3):
        value, g = naive.loss_and_flat_grad(naive.unflatten(expected, sizes), X, y, "tanh",
                                            "identity", "mse")
        losses.append(value)
        expected = expected - lr * g
    order = [np.arange(10)] * 3
    for batch_size in (None, 10, 64):
        got, hist = naive.naive_sgd_fit(params_list, X, y, "mse", lr, batch_size, order,
                                        activation="tanh", output="identity")
        np.testing.assert_allclose(naive.flatten(got), expected, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(hist["loss"], losses, rtol=1e-14)


def test_naive_sgd_minibatches_and_weighted_loss():
    sizes = (3, 4, 2)
    params_list, X, y = naive.make_problem(sizes, "relu", "softmax", "cross_entropy", n=10)
    rng = np.random.default_rng(4)
    order = rng.permutation(10)
    flat = naive.flatten(params_list)
    weighted = 0.0
    for idx in (order[0:3], order[3:6], order[6:9], order[9:10]):
        value, g = naive.loss_and_flat_grad(naive.unflatten(flat, sizes), X[idx], y[idx], "relu",
                                            "softmax", "cross_entropy")
        weighted += value * len(idx)
        flat = flat - 0.5 * g
    got, hist = naive.naive_sgd_fit(params_list, X, y, "cross_entropy", 0.5, 3, [order],
                                    activation="relu", output="softmax",
                                    validation_data=(X[:4], y[:4]))
    np.testing.assert_allclose(naive.flatten(got), flat, rtol=1e-14, atol=1e-15)
    assert hist["loss"][0] == pytest.approx(weighted / 10, rel=1e-14)
    assert hist["val_loss"][0] == pytest.approx(
        naive.loss_of_flat(flat, sizes, X[:4], y[:4], "relu", "softmax", "cross_entropy"),
        rel=1e-14)
    assert 0.0 <= hist["accuracy"][0] <= 1.0
    # the input list is not modified
    np.testing.assert_array_equal(naive.flatten(params_list), naive.flatten(
        naive.make_problem(sizes, "relu", "softmax", "cross_entropy", n=10)[0]))


def torch_fixture(torch):
    """What tests/fixtures/make_torch_fixtures.py saves in torch_reference.npz."""
    yield "activation/z", Z
    for name in naive.HIDDEN_ACTIVATIONS:
        yield f"activation/{name}", torch_activation(torch, name, Z)
    for output, loss in naive.VALID_OUTPUT_LOSS:
        for sizes, act in arch_activation_cases():
            key = grad_case_key(sizes, act, output, loss)
            params_list, X, y = naive.make_problem(sizes, act, output, loss)
            yield f"{key}/params", naive.flatten(params_list)
            yield f"{key}/X", X
            yield f"{key}/y", y
            yield f"{key}/torch", torch_loss_and_grad(torch, params_list, X, y, act, output, loss)


@pytest.mark.parametrize("module", torch_fixtures.MODULES)
def test_torch_fixture_records_how_it_was_made(module):
    meta = torch_fixtures.meta(module)
    assert meta["from"] == f"tests/test_{module}.py: torch_fixture(torch)"
    assert meta["torch"] and meta["torch_threads"] == 1
    assert sum(torch_fixtures.path(m).stat().st_size for m in torch_fixtures.MODULES) < 2**20
