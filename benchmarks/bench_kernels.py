"""One training step's parts, timed on their own: forward, backward, optimizer update."""
import numpy as np

from fastnn._kernels.bundles import OptimizerState
from fastnn._kernels.losses import CROSS_ENTROPY, loss_forward_backward
from fastnn._kernels.network import network_backward, network_forward, one_thread
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
        params, net = self.model.params, self.model.layout
        self.x = self.X.reshape(-1)
        self.args = (batch_size, params, net, self.model.dropout_layout(0), 1,
                     one_thread(params, net))
        ws = self.ws
        acts, unit_off = net.acts, net.unit_off
        network_forward(ws.buffers, self.x, *self.args)
        L = len(sizes) - 1
        k = sizes[-1]
        off = batch_size * unit_off[L - 1]
        block = slice(off, off + batch_size * k)
        loss_forward_backward(ws.D[block].reshape(batch_size, k),
                              ws.Z[block].reshape(batch_size, k),
                              ws.A[block].reshape(batch_size, k), y,
                              np.empty((0, k), np.float32), CROSS_ENTROPY, acts[L - 1],
                              np.zeros(4), batch_size)
        network_backward(self.grads, ws.buffers, self.x, *self.args)
        opt = Adam(lr=1e-3)
        self.opt = OptimizerState(ADAM, opt.hyper(), opt.bind(self.model.params),
                                  opt.step_count, 0.0, 0.0)
        # one update on the real buffers: compiles, and touches the freshly allocated state
        optimizer_update(self.opt, params, self.grads, 1, 1.0, 0, params.size, 0.0)
        self.threads = compute_threads(sizes, batch_size)
        self.threads.__enter__()

    def teardown(self, batch_size, network):
        self.threads.__exit__(None, None, None)

    def time_forward(self, batch_size, network):
        network_forward(self.ws.buffers, self.x, *self.args)

    def time_backward(self, batch_size, network):
        """Backward from the output delta (which it does not modify): dW, db and deltas."""
        network_backward(self.grads, self.ws.buffers, self.x, *self.args)

    def time_optimizer_update(self, batch_size, network):
        """Adam over all parameters (independent of the batch size)."""
        params = self.args[1]
        optimizer_update(self.opt, params, self.grads, 10, 1.0, 0, params.size, 0.0)
