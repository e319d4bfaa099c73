"""One training step's parts, timed on their own: forward, backward, optimizer update."""
import numpy as np

from fastnn._kernels.losses import CROSS_ENTROPY, loss_forward_backward
from fastnn._kernels.network import network_backward, network_forward
from fastnn._kernels.optim import ADAM, optimizer_update
from fastnn._threads import compute_threads
from fastnn.model import Workspace
from fastnn.optim import Adam

from .common import BATCH_SIZES, NETWORKS, make_data, make_trainer


class Step:
    params = (BATCH_SIZES, list(NETWORKS))
    param_names = ("batch_size", "network")

    def setup(self, batch_size, network):
        sizes = NETWORKS[network]
        self.model, _ = make_trainer(network, batch_size)
        self.X, y = make_data(sizes, batch_size)
        self.ws = Workspace(self.model, batch_size)
        self.grads = np.zeros_like(self.model.params)
        self.args = self.model._kernel_args()
        ws = self.ws
        params, acts, unit_off = self.args[0], self.args[2], self.args[5]
        network_forward(ws.A, ws.Z, self.X, *self.args)
        L = len(sizes) - 1
        k = sizes[-1]
        off = batch_size * unit_off[L - 1]
        block = slice(off, off + batch_size * k)
        loss_forward_backward(ws.D[block].reshape(batch_size, k),
                              ws.Z[block].reshape(batch_size, k),
                              ws.A[block].reshape(batch_size, k), y,
                              np.empty((0, k), np.float32), CROSS_ENTROPY, acts[L - 1],
                              np.zeros(4), batch_size)
        network_backward(self.grads, ws.D, ws.A, ws.Z, self.X, *self.args)
        opt = Adam(lr=1e-3)
        self.state = opt.bind(self.model.n_params, self.model.dtype)
        self.hyper = opt.hyper()
        # one update on the real buffers: compiles, and touches the freshly allocated state
        optimizer_update(ADAM, params, self.grads, self.state, self.hyper, 1, 1.0, 0, params.size,
                         0.0)
        self.threads = compute_threads(sizes, batch_size)
        self.threads.__enter__()

    def teardown(self, batch_size, network):
        self.threads.__exit__(None, None, None)

    def time_forward(self, batch_size, network):
        network_forward(self.ws.A, self.ws.Z, self.X, *self.args)

    def time_backward(self, batch_size, network):
        """Backward from the output delta (which it does not modify): dW, db and deltas."""
        network_backward(self.grads, self.ws.D, self.ws.A, self.ws.Z, self.X, *self.args)

    def time_optimizer_update(self, batch_size, network):
        """Adam over all parameters (independent of the batch size)."""
        optimizer_update(ADAM, self.args[0], self.grads, self.state, self.hyper, 10, 1.0, 0,
                         self.args[0].size, 0.0)
