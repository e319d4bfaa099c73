"""Every CUDA kernel against its CPU twin (and the GEMM against float64 NumPy), in float32 and
float64, on tiny shapes with tiles patched to 4 (conftest) so that several blocks run.
Run through tests/test_cuda.py (a subprocess with NUMBA_ENABLE_CUDASIM=1)."""
import numpy as np
import pytest
from numba import cuda

from fastnn._kernels import dense as cpu_dense
from fastnn._kernels import losses as cpu_losses
from fastnn._kernels import optim as cpu_optim
from fastnn._kernels import steps as cpu_steps
from fastnn._kernels.bundles import Activations, Data, OptimizerState
from fastnn._kernels.bundles import Team as CpuTeam
from fastnn._kernels.cuda import dense, losses, network, optim, steps
from fastnn._kernels.cuda.bundles import RowStats, Team
from fastnn._kernels.dropout import dropout_sites

DTYPES = [np.float32, np.float64]
TOL = {np.float32: {"rtol": 2e-5, "atol": 2e-6}, np.float64: {"rtol": 1e-12, "atol": 1e-13}}
ACTS = {"identity": cpu_dense.IDENTITY, "sigmoid": cpu_dense.SIGMOID, "tanh": cpu_dense.TANH,
        "relu": cpu_dense.RELU, "leaky_relu": cpu_dense.LEAKY_RELU, "elu": cpu_dense.ELU,
        "gelu": cpu_dense.GELU, "softmax": cpu_dense.SOFTMAX}


def close(got, want, dt, what=""):
    got = np.asarray(got)
    diff = float(np.max(np.abs(got.astype(np.float64) - np.asarray(want, np.float64)),
                        initial=0.0))
    print(f"{what} {np.dtype(dt).name}: max |diff| = {diff:.3g}")
    np.testing.assert_allclose(got, want, **TOL[dt], err_msg=what)


def rand(rng, shape, dt, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dt)


def dense_forward_ref(a, z, x, W, b, act):
    """One layer on the CPU: x @ W by NumPy, the CPU's fused bias + activation."""
    B, n = a.shape
    np.dot(x, W, z)
    cpu_dense.bias_activation_forward(a, z, b, act, 0, B, 0, n)


def dense_backward_ref(dx, dW, db, dz, x, W):
    """dW = x.T @ dz, db = column sums of dz, and dx = dz @ W.T when dx has rows."""
    np.dot(x.T, dz, dW)
    db[:] = dz.sum(axis=0)
    if dx.shape[0] > 0:
        np.dot(dz, W.T, dx)


# ---------------------------------------------------------------------------- dense
@pytest.mark.parametrize("dt", DTYPES)
def test_gemm_three_products_vs_float64_numpy(dt):
    rng = np.random.default_rng(0)
    B, fi, fo = 7, 9, 10  # no multiple of the tile: edge blocks and a partial K slab
    x, W, dz = rand(rng, (B, fi), dt), rand(rng, (fi, fo), dt), rand(rng, (B, fo), dt)
    dx, dW = (cuda.device_array(s, dt) for s in ((B, fi), (fi, fo)))
    out = cuda.device_array((B, fo), dt)
    dense.gemm(out, cuda.to_device(x), cuda.to_device(W))
    dense.gemm(dW, cuda.to_device(x), cuda.to_device(dz), trans_a=True)
    dense.gemm(dx, cuda.to_device(dz), cuda.to_device(W), trans_b=True)
    f = np.float64
    close(out.copy_to_host(), x.astype(f) @ W.astype(f), dt, "x @ W")
    close(dW.copy_to_host(), x.T.astype(f) @ dz.astype(f), dt, "x.T @ dz")
    close(dx.copy_to_host(), dz.astype(f) @ W.T.astype(f), dt, "dz @ W.T")


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("act", list(ACTS))
def test_dense_forward_fused_epilogue(act, dt):
    rng = np.random.default_rng(1)
    B, fi, fo = 6, 5, 9
    code = ACTS[act]
    x, W, b = rand(rng, (B, fi), dt), rand(rng, (fi, fo), dt), rand(rng, fo, dt)
    a_ref, z_ref = np.zeros((B, fo), dt), np.zeros((B, fo), dt)
    dense_forward_ref(a_ref, z_ref, x, W, b, code)
    a, z = cuda.to_device(np.zeros((B, fo), dt)), cuda.to_device(np.zeros((B, fo), dt))
    dense.dense_forward(a, z, cuda.to_device(x), cuda.to_device(W), cuda.to_device(b), code)
    close(a.copy_to_host(), a_ref, dt, f"dense_forward {act} a")
    if cpu_dense.keeps_preactivation(code):
        close(z.copy_to_host(), z_ref, dt, f"dense_forward {act} z")


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("act", ["sigmoid", "gelu", "softmax", "elu"])
def test_bias_activation_forward(act, dt):
    rng = np.random.default_rng(2)
    B, n = 5, 7
    code = ACTS[act]
    z0, b = rand(rng, (B, n), dt), rand(rng, n, dt)
    a_ref, z_ref = np.zeros((B, n), dt), z0.copy()
    cpu_dense.bias_activation_forward(a_ref, z_ref, b, code, 0, B, 0, n)
    a, z = cuda.to_device(np.zeros((B, n), dt)), cuda.to_device(z0)
    dense.bias_activation_forward(a, z, cuda.to_device(b), code, 0, B, 0, n)
    close(a.copy_to_host(), a_ref, dt, f"bias_activation_forward {act}")
    if cpu_dense.keeps_preactivation(code):
        close(z.copy_to_host(), z_ref, dt, f"bias_activation_forward {act} z")


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("act", list(ACTS))
def test_activation_backward(act, dt):
    rng = np.random.default_rng(3)
    B, n = 5, 7
    code = ACTS[act]
    z = rand(rng, (B, n), dt)
    a = np.zeros_like(z)
    cpu_dense.bias_activation_forward(a, z, np.zeros(n, dt), code, 0, B, 0, n)
    g = rand(rng, (B, n), dt)
    ref = g.copy()
    cpu_dense.activation_backward(ref, a, z, code, 0, B, 0, n)
    dz = cuda.to_device(g)
    dense.activation_backward(dz, cuda.to_device(a), cuda.to_device(z), code, 0, B, 0, n)
    close(dz.copy_to_host(), ref, dt, f"activation_backward {act}")


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("first_layer", [False, True])
def test_dense_backward(first_layer, dt):
    rng = np.random.default_rng(4)
    B, fi, fo = 7, 6, 9
    x, W, dz = rand(rng, (B, fi), dt), rand(rng, (fi, fo), dt), rand(rng, (B, fo), dt)
    dW_ref, db_ref = np.zeros((fi, fo), dt), np.zeros(fo, dt)
    dx_ref = np.zeros((0 if first_layer else B, fi), dt)
    dense_backward_ref(dx_ref, dW_ref, db_ref, dz, x, W)
    dW, db = cuda.device_array((fi, fo), dt), cuda.device_array(fo, dt)
    dx = None if first_layer else cuda.device_array((B, fi), dt)
    dense.dense_backward(dx, dW, db, cuda.to_device(dz), cuda.to_device(x), cuda.to_device(W))
    close(dW.copy_to_host(), dW_ref, dt, "dW")
    close(db.copy_to_host(), db_ref, dt, "db")
    if not first_layer:
        close(dx.copy_to_host(), dx_ref, dt, "dx")


# ---------------------------------------------------------------------------- losses
LOSS_CASES = [  # (loss, output activation, targets)
    ("cross_entropy", "softmax", "index"),
    ("cross_entropy", "softmax", "soft"),
    ("binary_cross_entropy", "sigmoid", "binary"),
    ("mse", "identity", "float"),
    ("mse", "sigmoid", "float"),
    ("mse", "softmax", "index"),
    ("mse", "gelu", "float"),
]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("case", LOSS_CASES, ids=lambda c: "-".join(c))
def test_loss_forward_backward(case, dt):
    loss_name, act_name, kind = case
    loss = {"mse": cpu_losses.MSE, "cross_entropy": cpu_losses.CROSS_ENTROPY,
            "binary_cross_entropy": cpu_losses.BINARY_CROSS_ENTROPY}[loss_name]
    act = ACTS[act_name]
    rng = np.random.default_rng(5)
    B, k, offset = 6, 4, 3
    z = rand(rng, (B, k), dt, 3.0)
    z[0, 0] = 40.0  # large logits: the stable forms must hold
    a = np.zeros_like(z)
    cpu_dense.bias_activation_forward(a, z, np.zeros(k, dt), act, 0, B, 0, k)
    y_index = np.zeros(0, np.int64)
    y_float = np.zeros((0, k), dt)
    if kind == "index":
        y_index = rng.integers(0, k, B).astype(np.int64)
    elif kind == "soft":
        y_float = rng.dirichlet(np.ones(k), B).astype(dt)
    elif kind == "binary":
        y_float = rng.integers(0, 2, (B, k)).astype(dt)
    else:
        y_float = rand(rng, (B, k), dt)
    dz_ref = np.zeros_like(z)
    stats = np.zeros(4)
    total = cpu_losses.loss_forward_backward(dz_ref, z, a, y_index, y_float, loss, act, stats,
                                             B)

    dz = cuda.to_device(np.zeros_like(z))
    row_loss = cuda.to_device(np.full(B + offset + 2, -1.0))
    row_correct = cuda.to_device(np.full(B + offset + 2, -1.0))
    status = cuda.to_device(np.zeros(1, np.int32))
    losses.loss_forward_backward(dz, cuda.to_device(z), cuda.to_device(a),
                                 cuda.to_device(y_index), cuda.to_device(y_float), loss, act,
                                 RowStats(row_loss, row_correct, status, offset), B)
    rl, rc = row_loss.copy_to_host(), row_correct.copy_to_host()
    assert np.all(rl[:offset] == -1.0) and np.all(rl[offset + B:] == -1.0)
    close(dz.copy_to_host(), dz_ref, dt, f"{case} dz")
    # float64 sums of float32 terms: the CPU build may round a term differently
    np.testing.assert_allclose(rl[offset:offset + B].sum(), total,
                               rtol=1e-12 if dt == np.float64 else 1e-6)
    assert rc[offset:offset + B].sum() == stats[2]
    assert status.copy_to_host()[0] == 0


def test_loss_non_finite_sets_status():
    B, k = 3, 4
    z = np.zeros((B, k))
    z[1, 2] = np.nan
    a = np.full((B, k), 0.25)
    a[1] = np.nan  # what the softmax forward makes of that row (the loss reads a, as the CPU's)
    status = cuda.to_device(np.zeros(1, np.int32))
    losses.loss_forward_backward(cuda.to_device(np.zeros((B, k))), cuda.to_device(z),
                                 cuda.to_device(a), cuda.to_device(np.array([0, 1, 2])),
                                 cuda.to_device(np.zeros((0, k))), cpu_losses.CROSS_ENTROPY,
                                 cpu_dense.SOFTMAX,
                                 RowStats(cuda.to_device(np.zeros(B)),
                                          cuda.to_device(np.zeros(B)), status), B)
    assert status.copy_to_host()[0] == 1


# ---------------------------------------------------------------------------- network pieces
@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("targets", ["index", "float"])
def test_gather_batch(targets, dt):
    rng = np.random.default_rng(6)
    N, n_in, k, B, start = 9, 5, 3, 4, 2
    X = rand(rng, (N, n_in), dt)
    y_index = rng.integers(0, k, N).astype(np.int64) if targets == "index" else np.zeros(0,
                                                                                         np.int64)
    y_float = rand(rng, (N, k), dt) if targets == "float" else np.zeros((0, k), dt)
    order = rng.permutation(N).astype(np.int64)
    xb, yi, yf = np.zeros(B * n_in, dt), np.zeros(B, np.int64), np.zeros(B * k, dt)
    none = np.zeros(0, dt)
    team = CpuTeam(0, 1, np.zeros(24, np.int64), np.zeros((1, 0)), np.zeros((1, 0), dt))
    no_drop = dropout_sites(np.zeros(2))
    cpu_steps.gather_batch(Activations(xb, yi, yf, none, none, none),
                           Data(X, y_index, y_float), order, start, B, no_drop, 1, team)
    d = [cuda.to_device(np.zeros_like(v)) for v in (xb, yi, yf)]
    steps.gather_batch(Activations(*d, None, None, None),
                       Data(cuda.to_device(X), cuda.to_device(y_index),
                            cuda.to_device(y_float)), cuda.to_device(order), start, B,
                       no_drop, 1, None)
    np.testing.assert_array_equal(d[0].copy_to_host(), xb)
    if targets == "index":
        np.testing.assert_array_equal(d[1].copy_to_host(), yi)
    else:
        np.testing.assert_array_equal(d[2].copy_to_host(), yf)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("clip", [0.0, 1.5, 1e6, "just above the norm"])
def test_layer_grad_norms_and_clip(clip, dt):
    rng = np.random.default_rng(7)
    sizes = np.array([3, 5, 2], np.int64)
    w_off = np.array([0, 20], np.int64)
    grads = rand(rng, 32, dt)
    g64 = grads.astype(np.float64)
    ref = np.array([np.sqrt(np.sum(g64[:15] ** 2)), np.sqrt(np.sum(g64[20:30] ** 2))])
    sumsq = np.sum(g64 ** 2)
    if isinstance(clip, str):  # norm < clip < norm + 1e-6: torch still scales (by < 1)
        clip = float(np.sqrt(sumsq)) + 5e-7
    out = cuda.to_device(np.full(2, 0.5))  # accumulates
    team = Team(cuda.to_device(network.segment_bounds(sizes, w_off)),
                cuda.device_array((4, network.NORM_BLOCKS)),
                cuda.to_device(np.array([7.0, 7.0])))
    control = team.control
    stats = RowStats(None, None, cuda.to_device(np.zeros(1, np.int32)))
    status = stats.status

    def norms(grads):
        network.layer_grad_sumsq(team.partials, cuda.to_device(grads), None, 0, None, False,
                                 team)
        network.clip_and_check(out, clip, stats, team)

    norms(grads)
    np.testing.assert_allclose(out.copy_to_host(), ref + 0.5, rtol=1e-12)
    norm = np.sqrt(sumsq)
    scale = min(1.0, clip / (norm + 1e-6)) if clip > 0 else 1.0
    np.testing.assert_allclose(control.copy_to_host(), [scale, 0.0], rtol=1e-12)
    # a non-finite gradient sets the flag and asks the update to skip
    grads[21] = np.inf
    norms(grads)
    assert status.copy_to_host()[0] == 1 and control.copy_to_host()[1] == 1.0


# ---------------------------------------------------------------------------- optimizers
OPT_CASES = [  # (code, hyper, n_slots, initial state value)
    ("sgd", cpu_optim.SGD, [0.1, 0.0, 0.0, 0.0, 0.0], 0, 0.0),
    ("sgd-momentum-dampening-wd", cpu_optim.SGD, [0.1, 0.9, 0.3, 0.01, 0.0], 1, 0.0),
    ("sgd-nesterov", cpu_optim.SGD, [0.05, 0.8, 0.0, 0.02, 1.0], 1, 0.0),
    ("adam-l2", cpu_optim.ADAM, [0.01, 0.8, 0.95, 1e-6, 0.05, 0.0, 0.0], 2, 0.0),
    ("adamw-amsgrad", cpu_optim.ADAM, [0.01, 0.85, 0.99, 1e-7, 0.1, 1.0, 1.0], 3, 0.0),
    ("adagrad", cpu_optim.ADAGRAD, [0.1, 0.01, 0.02, 0.1, 1e-8], 1, 0.1),
    ("adadelta", cpu_optim.ADADELTA, [0.9, 0.8, 1e-5, 0.01], 2, 0.0),
    ("rmsprop", cpu_optim.RMSPROP, [0.01, 0.9, 1e-6, 0.01, 0.0, 0.0], 1, 0.0),
    ("rmsprop-momentum-centered", cpu_optim.RMSPROP, [0.01, 0.95, 1e-6, 0.0, 0.7, 1.0], 3,
     0.0),
    ("rmsprop-centered", cpu_optim.RMSPROP, [0.01, 0.95, 1e-6, 0.0, 0.0, 1.0], 2, 0.0),
]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("case", OPT_CASES, ids=lambda c: c[0])
def test_optimizer_update(case, dt):
    _, code, hyper, n_slots, init = case
    hyper = np.array(hyper)
    rng = np.random.default_rng(8)
    n = 13
    p = rand(rng, n, dt)
    state = np.full((n_slots, n), init, dt)
    d_p, d_state = cuda.to_device(p), cuda.to_device(state)
    no_count = np.zeros(1, np.int64)  # (the step is passed; the counter is the trainer's)
    for step in range(1, 5):
        g = rand(rng, n, dt)
        scale = 0.7 if step == 2 else 1.0
        cpu_optim.optimizer_update(OptimizerState(code, hyper, state, no_count, 0.0, 0.0), p, g,
                                   step, scale, 0, n, 0.0)
        optim.optimizer_update(OptimizerState(code, hyper, d_state, no_count, 0.0, 0.0), d_p,
                               cuda.to_device(g), step, cuda.to_device(np.array([scale, 0.0])),
                               0, n, 0.0)
        close(d_p.copy_to_host(), p, dt, f"{case[0]} step {step} params")
        close(d_state.copy_to_host(), state, dt, f"{case[0]} step {step} state")
    # the L2 penalty on W_0 = 0:5 and W_1 = 7:12 (l2), not on b_0 = 5:7, b_1 = 12:13
    g = rand(rng, n, dt)
    ones = cuda.to_device(np.array([1.0, 0.0]))
    opt_cpu = OptimizerState(code, hyper, state, no_count, 0.0, 0.0)
    opt_gpu = OptimizerState(code, hyper, d_state, no_count, 0.0, 0.0)
    d_g = cuda.to_device(g)
    for lo, hi, l2 in ((0, 5, 0.3), (5, 7, 0.0), (7, 12, 0.3), (12, 13, 0.0)):
        cpu_optim.optimizer_update(opt_cpu, p, g[lo:hi], 5, 1.0, lo, hi, l2)
        optim.optimizer_update(opt_gpu, d_p, d_g[lo:hi], 5, ones, lo, hi, l2)
    close(d_p.copy_to_host(), p, dt, f"{case[0]} l2 params")
    close(d_state.copy_to_host(), state, dt, f"{case[0]} l2 state")
    # control[1] set: the update is skipped entirely
    before = d_p.copy_to_host()
    optim.optimizer_update(OptimizerState(code, hyper, d_state, no_count, 0.0, 0.0), d_p,
                           cuda.to_device(rand(rng, n, dt)), 6,
                           cuda.to_device(np.array([1.0, 1.0])), 0, n, 0.0)
    np.testing.assert_array_equal(d_p.copy_to_host(), before)


# ---------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("dt", DTYPES)
def test_dropout_step_matches_cpu(dt):
    """One training step's gradient with input and hidden dropout (fastnn/_kernels/dropout.py)
    on both devices: the same masks (bit for bit: where the CPU dropped a unit its input to
    the next layer is exactly 0 on the GPU too) and the same gradient."""
    import fastnn
    from fastnn._kernels import network as cpu_network
    from fastnn.model import Workspace

    rng = np.random.default_rng(9)
    model = fastnn.MLP([7, 11, 9, 3], activation="elu", output="softmax", dtype=dt, seed=2,
                       dropout=[0.5, 0.4], input_dropout=0.3)
    B = 13
    X = rand(rng, (B, 7), dt)
    y = rng.integers(0, 3, B).astype(np.int64)
    no_float = np.zeros((0, 3), dt)
    drop = model.dropout_layout(77)
    ws = Workspace(model, B)
    grads = np.zeros_like(model.params)
    cpu_network.forward_loss_backward(grads, ws.buffers, X, y, no_float, model.params,
                                      model.layout, drop, 5, cpu_losses.CROSS_ENTROPY,
                                      np.zeros(4))
    dws = Workspace(model, B, cuda.device_array)
    dgrads = cuda.to_device(np.zeros_like(model.params))
    stats = RowStats(cuda.device_array(B), cuda.device_array(B),
                     cuda.to_device(np.zeros(1, np.int32)))
    network.forward_loss_backward(dgrads, dws.buffers, cuda.to_device(X), cuda.to_device(y),
                                  cuda.to_device(no_float), cuda.to_device(model.params),
                                  model.layout, drop, 5, losses.CROSS_ENTROPY, stats)
    U = B * model.layout.unit_off[-1]
    for name in ("A", "D"):
        got = getattr(dws, name).copy_to_host()[:U]
        want = getattr(ws, name)[:U]
        hidden = slice(0, B * model.layout.unit_off[2])
        if name == "A":  # the masks: the same zeros
            np.testing.assert_array_equal(got[hidden] == 0, want[hidden] == 0)
        close(got, want, dt, f"dropout step {name}")
    np.testing.assert_array_equal(dws.xb.copy_to_host()[:B * 7] == 0, ws.xb[:B * 7] == 0)
    assert (ws.xb[:B * 7] == 0).any() and (ws.A[:B * 11] == 0).any()
    close(dgrads.copy_to_host(), grads, dt, "dropout step grads")


# ---------------------------------------------------------------------------- NaN semantics
def nan_inputs(dt, B, n):
    """z with NaN, +-inf and ordinary values, so that every branch of every activation sees
    a NaN (the CPU kernels and torch keep NaN: relu(NaN) is NaN, not 0)."""
    rng = np.random.default_rng(11)
    z = rand(rng, (B, n), dt)
    z[0, :] = np.nan  # a whole row (softmax's max and sum see only NaN)
    z[1, 1] = np.nan
    z[2, 2] = np.inf
    z[3, 3] = -np.inf
    return z


def same_with_nan(got, want, dt, what):
    got, want = np.asarray(got), np.asarray(want)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN mask")
    mask = ~np.isnan(want)
    np.testing.assert_array_equal(np.isinf(got[mask]), np.isinf(want[mask]),
                                  err_msg=f"{what}: inf mask")
    fin = mask & np.isfinite(want)
    close(got[fin], want[fin], dt, what)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator's NaN arithmetic
@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("act", list(ACTS))
def test_activations_propagate_nan_as_cpu(act, dt):
    B, n = 5, 6
    code = ACTS[act]
    z0 = nan_inputs(dt, B, n)
    b = np.zeros(n, dt)
    b[4] = np.nan  # a NaN bias reaches a whole column
    a_ref, z_ref = np.zeros((B, n), dt), z0.copy()
    with np.errstate(all="ignore"):
        cpu_dense.bias_activation_forward(a_ref, z_ref, b, code, 0, B, 0, n)
    assert np.isnan(a_ref).any()  # the test means something: NaN reaches the output
    # forward, the elementwise kernel and the GEMM's fused epilogue (x = I, so x @ W = z)
    a, z = cuda.to_device(np.zeros((B, n), dt)), cuda.to_device(z0)
    dense.bias_activation_forward(a, z, cuda.to_device(b), code, 0, B, 0, n)
    same_with_nan(a.copy_to_host(), a_ref, dt, f"bias_activation_forward {act}")
    a2, z2 = cuda.to_device(np.zeros((B, n), dt)), cuda.to_device(np.zeros((B, n), dt))
    eye = np.eye(B, dtype=dt)
    # through the GEMM (0 * NaN would spread a NaN of z over its column): finite z, the NaN
    # reaching the fused epilogue through the bias column
    zf = np.where(np.isfinite(z0), z0, 0).astype(dt)
    a2_ref, z2_ref = np.zeros((B, n), dt), zf.copy()
    with np.errstate(all="ignore"):
        cpu_dense.bias_activation_forward(a2_ref, z2_ref, b, code, 0, B, 0, n)
    dense.dense_forward(a2, z2, cuda.to_device(eye), cuda.to_device(zf), cuda.to_device(b),
                        code)
    same_with_nan(a2.copy_to_host(), a2_ref, dt, f"dense_forward {act}")
    # backward: NaN in the incoming gradient and in the saved outputs
    g = rand(np.random.default_rng(12), (B, n), dt)
    g[4, 0] = np.nan
    ref = g.copy()
    with np.errstate(all="ignore"):
        cpu_dense.activation_backward(ref, a_ref, z_ref, code, 0, B, 0, n)
    dz = cuda.to_device(g)
    dense.activation_backward(dz, cuda.to_device(a_ref), cuda.to_device(z_ref), code,
                              0, B, 0, n)
    same_with_nan(dz.copy_to_host(), ref, dt, f"activation_backward {act}")


# ---------------------------------------------------------------------------- launch sizes
@pytest.mark.parametrize("dt", DTYPES)
def test_column_sum_grid_sized_to_the_batch(monkeypatch, dt):
    monkeypatch.setattr(dense, "COLSUM_ROWS", 2)
    rng = np.random.default_rng(21)
    n = 9  # 3 column blocks of THREADS = 4 (conftest)
    scratch = cuda.device_array((8, n))
    for B, chunks in ((1, 1), (2, 1), (3, 2), (7, 4), (16, 8)):
        assert dense.column_sum_chunks(B) == (chunks, 2)
        dz = rand(rng, (B, n), dt)
        db = cuda.to_device(np.full(n, np.nan, dt))
        dense.column_sum(db, cuda.to_device(dz), scratch)
        close(db.copy_to_host(), dz.astype(np.float64).sum(axis=0), dt, f"column_sum B={B}")
    # past the grid.y limit the chunks grow instead (limit patched to 3)
    monkeypatch.setattr(dense, "MAX_GRID_Y", 3)
    assert dense.column_sum_chunks(16) == (3, 6)
    dz = rand(rng, (16, n), dt)
    db = cuda.to_device(np.zeros(n, dt))
    dense.column_sum(db, cuda.to_device(dz), scratch)
    close(db.copy_to_host(), dz.astype(np.float64).sum(axis=0), dt, "column_sum grid.y limit")
    with pytest.raises(ValueError, match="scratch"):
        dense.column_sum(db, cuda.to_device(dz), cuda.device_array((2, n)))


@pytest.mark.parametrize("dt", DTYPES)
def test_gemm_splits_rows_past_grid_y_limit(monkeypatch, dt):
    monkeypatch.setattr(dense, "MAX_GRID_Y", 1)  # one TILE (4 rows) per launch
    launches = []
    kernel = dense._gemm_kernel(dense.TILE, dense.TILE_K, dense.WORK)

    class Counting:
        def __getitem__(self, config):
            launches.append(config[0])
            return kernel[config]

    monkeypatch.setattr(dense, "_gemm_kernel", lambda *a: Counting())
    rng = np.random.default_rng(22)
    B, fi, fo = 10, 9, 6  # 3 row launches of the batch, 3 of fan_in (the dW product)
    x, W, dz = rand(rng, (B, fi), dt), rand(rng, (fi, fo), dt), rand(rng, (B, fo), dt)
    b = rand(rng, fo, dt)
    a, z = cuda.device_array((B, fo), dt), cuda.device_array((B, fo), dt)
    dense.dense_forward(a, z, cuda.to_device(x), cuda.to_device(W), cuda.to_device(b),
                        cpu_dense.GELU)
    assert [g[1] for g in launches] == [1, 1, 1]
    a_ref, z_ref = np.zeros((B, fo), dt), np.zeros((B, fo), dt)
    dense_forward_ref(a_ref, z_ref, x, W, b, cpu_dense.GELU)
    close(a.copy_to_host(), a_ref, dt, "split forward a")
    close(z.copy_to_host(), z_ref, dt, "split forward z")
    dW, dx = cuda.device_array((fi, fo), dt), cuda.device_array((B, fi), dt)
    dense.gemm(dW, cuda.to_device(x), cuda.to_device(dz), trans_a=True)
    dense.gemm(dx, cuda.to_device(dz), cuda.to_device(W), trans_b=True)
    assert len(launches) == 9
    f = np.float64
    close(dW.copy_to_host(), x.T.astype(f) @ dz.astype(f), dt, "split x.T @ dz")
    close(dx.copy_to_host(), dz.astype(f) @ W.T.astype(f), dt, "split dz @ W.T")


@pytest.mark.parametrize("dt", DTYPES)
def test_gemm_row_split_keeps_dropout_rows(monkeypatch, dt):
    """The epilogue's dropout masks key on the batch row: a GEMM split over several launches
    (rows past grid.y's limit) drops the same units as the CPU's row-by-row epilogue."""
    from fastnn._kernels.dropout import dropout_forward_row, keep_threshold, row_key
    monkeypatch.setattr(dense, "MAX_GRID_Y", 1)  # one TILE (4 rows) per launch: 3 launches
    rng = np.random.default_rng(24)
    B, fi, fo = 10, 5, 7
    x, W, b = rand(rng, (B, fi), dt), rand(rng, (fi, fo), dt), rand(rng, fo, dt)
    p, seed, step, site = 0.5, 123, 4, 2
    drop = (seed, step, site, keep_threshold(p), 1.0 / (1.0 - p))
    a, z = cuda.device_array((B, fo), dt), cuda.device_array((B, fo), dt)
    dense.dense_forward(a, z, cuda.to_device(x), cuda.to_device(W), cuda.to_device(b),
                        cpu_dense.TANH, drop)
    a_ref, z_ref = np.zeros((B, fo), dt), np.zeros((B, fo), dt)
    dense_forward_ref(a_ref, z_ref, x, W, b, cpu_dense.TANH)
    for i in range(B):
        dropout_forward_row(a_ref[i], row_key(seed, step, site, i), 0, fo, drop[3], drop[4])
    got = a.copy_to_host()
    np.testing.assert_array_equal(got == 0, a_ref == 0)
    assert (a_ref[4:] == 0).any() and (a_ref[4:] != 0).any()  # later launches drop some
    close(got, a_ref, dt, "split forward with dropout")


def test_norm_reduction_grid_sized_to_the_gradient(monkeypatch):
    rng = np.random.default_rng(23)
    sizes = np.array([3, 5, 2], np.int64)
    w_off = np.array([0, 20], np.int64)
    team = Team(cuda.to_device(network.segment_bounds(sizes, w_off)),
                cuda.to_device(np.full((4, 3), 1e6)),  # stale partials must not count
                cuda.to_device(np.array([1.0, 0.0])))
    stats = RowStats(None, None, cuda.to_device(np.zeros(1, np.int32)))
    grads = rand(rng, 32, np.float64)
    ref = np.array([np.sqrt(np.sum(grads[:15] ** 2)), np.sqrt(np.sum(grads[20:30] ** 2))])
    # NORM_THREADS 4 (conftest): 32 elements make 32 / (4 items) / 4 threads = 2 blocks with
    # 4 items, 1 with 16, 8 -> capped at the partials' 3 with 1; the columns a launch does
    # not cover hold stale sums (1e6 at first, then the wider launch's)
    for items, blocks in ((16, 1), (1, 3), (4, 2), (16, 1)):
        monkeypatch.setattr(network, "NORM_ITEMS", items)
        assert network.norm_blocks(32, 3) == blocks
        out = cuda.to_device(np.zeros(2))
        network.layer_grad_sumsq(team.partials, cuda.to_device(grads), None, 0, None, False,
                                 team)
        network.clip_and_check(out, 0.0, stats, team)
        np.testing.assert_allclose(out.copy_to_host(), ref, rtol=1e-12, err_msg=str(items))
