"""The GPU's two bundles that differ from the CPU's (see the top of __init__.py): the other
bundles (Network, Activations, Data, OptimizerState) are fastnn/_kernels/bundles.py's, with
device arrays in their array fields (Network's, OptimizerState's hyper and step_count stay on
the host: the launchers read them)."""
from typing import NamedTuple


class RowStats(NamedTuple):
    """Per-row results on the device, where the CPU keeps running sums (stats (nth, 4)): row
    i's loss and correct predictions land at index i, so a whole epoch's metrics reach the
    host in one copy. A batch's rows go to start, start + 1, ... (the launchers set it per
    batch with network.row_stats)."""
    loss: object  # (rows,) float64 per-sample loss (its mean is the loss)
    correct: object  # (rows,) float64 correct predictions (1 per row for cross_entropy, k
    #                  for binary_cross_entropy, 0 for mse)
    status: object  # (1,) int32 divergence flag: set to 1 by a non-finite loss or gradient;
    #                 the update kernels skip their step once it is set
    start: int = 0  # the index of the batch's first row


class Team(NamedTuple):
    """The GPU's scratch of the gradient-norm reduction, where the CPU's Team is its threads
    (tid, nth, sync, partial, scratch)."""
    bounds: object  # (2 L + 1,) int64 network.segment_bounds(): the W_l and b_l segments
    partials: object  # (2 L, NORM_BLOCKS) float64 per-segment, per-block sums of squares
    control: object  # (2,) float64 [gradient scale (clipping), skip this update]
    colsum: object = None  # (chunks, max fan_out) float64 scratch of the bias-gradient
    #                        column sums (dense.column_sum), or None for one launch per sum
    gemms: object = None  # the fit's cuBLASLt GEMMs (cublaslt.LtGemms), or None for the
    #                       Numba GEMM (dense.gemm)
