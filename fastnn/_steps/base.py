"""What both step backends keep of a fit's settings (fastnn._steps describes the protocol)."""
from ..model import LOSSES


class StepsBase:
    """The settings a fit reads once, stored alike by CpuSteps and CudaSteps."""

    def __init__(self, model, optimizer, loss, batch, clip_norm, alpha, dropout_seed):
        self.model = model
        self.optimizer = optimizer
        self.loss_code = LOSSES[loss]
        self.batch = batch
        self.clip_norm = clip_norm
        self.drop = model.dropout_layout(dropout_seed)
        self.alpha = alpha  # the L2 penalty
