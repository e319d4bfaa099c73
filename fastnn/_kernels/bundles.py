"""The named bundles that kernel arguments travel in (llm.c's ParameterTensors /
ActivationTensors): a kernel takes a few named things instead of dozens of positional arrays.
The same bundles serve both devices: on the CPU their fields are NumPy arrays passed into the
compiled kernels (Numba types a NamedTuple of arrays as one argument), on the GPU device arrays
that the launchers hand to the CUDA kernels. What differs between the devices (the thread team,
the loss sums) is written once, at the top of fastnn/_kernels/cuda/__init__.py. Shapes: L layers, B batch rows, N data rows,
U = sum(sizes[1:]) units.
"""
from typing import NamedTuple

import numpy as np


class Network(NamedTuple):
    """The model as data; one compilation serves every architecture of a dtype."""
    sizes: np.ndarray  # (L + 1,) int64 layer widths [n_in, hidden..., n_out]
    acts: np.ndarray  # (L,) int64 activation codes (dense.py), the last one the output's
    w_off: np.ndarray  # (L,) int64 offset of W_l (fan_in, fan_out) in the flat params
    b_off: np.ndarray  # (L,) int64 offset of b_l (fan_out,) in the flat params
    unit_off: np.ndarray  # (L + 1,) int64 [0, cumsum(sizes[1:])]: layer l's block starts
    #                       at B * unit_off[l] of the workspace buffers


class Dropout(NamedTuple):
    """Inverted dropout at each layer's input (dropout.py): site s is the input of layer s
    (s = 0 the input features, s >= 1 the output of hidden layer s - 1). The mask is a hash of
    (seed, step, site, row, unit), so nothing else travels with it."""
    threshold: np.ndarray  # (L,) int64 keep a unit when its 32-bit hash >= threshold[s];
    #                        0 = no dropout at site s (the last site is always 0)
    scale: np.ndarray  # (L,) float64 1 / (1 - p_s), the survivors' factor
    keep: np.ndarray  # (L,) float64 1 - p_s
    seed: int  # int64, >= 0


class Activations(NamedTuple):
    """The workspace of batches of up to `capacity` rows: layer l's (B, sizes[l+1]) block of
    A, Z and D starts at B * unit_off[l]; a smaller batch uses their leading part."""
    xb: np.ndarray  # (capacity * n_in,) the gathered batch
    yb_index: np.ndarray  # (capacity,) int64 its labels (cross_entropy with labels)
    yb_float: np.ndarray  # (capacity * n_out,) or its float targets
    A: np.ndarray  # (capacity * U,) act(z), every layer
    Z: np.ndarray  # (capacity * U,) pre-activations where keeps_preactivation(act)
    D: np.ndarray  # (capacity * U,) deltas dL/dz


class Data(NamedTuple):
    """Samples and targets; exactly one of y_index and y_float has rows (none to predict)."""
    X: np.ndarray  # (N, n_in)
    y_index: np.ndarray  # (N,) int64 class labels, or (0,)
    y_float: np.ndarray  # (N, n_out) targets, or (0, n_out)


class OptimizerState(NamedTuple):
    """One optimizer's rule, hyper-parameters and state (fastnn/_kernels/optim.py)."""
    code: int  # SGD, ADAM, ... (optim.py)
    hyper: np.ndarray  # float64, the rule's layout (fastnn/optim.py, Optimizer.hyper())
    state: np.ndarray  # (n_slots, n_params) in the parameter dtype
    step_count: np.ndarray  # (1,) int64 steps taken so far (torch's "step")
    clip_norm: float  # rescale the gradient to this global L2 norm when larger; 0 = off
    alpha: float  # scikit-learn's L2 penalty on the weights (steps.train_steps); 0 = off


class Team(NamedTuple):
    """The CPU threads running one kernel together (sync.py): every function that takes a team
    is run by nth threads at once, tid = 0..nth-1, each doing its share of each phase and
    meeting the others at barriers; nth == 1 is the serial loop."""
    tid: int  # this thread
    nth: int  # threads in the team
    sync: np.ndarray  # (SYNC_SIZE,) int64, shared, zeroed (sync.new_sync)
    partial: np.ndarray  # (nth, L + 2) float64, shared: each thread's per-step sums
    scratch: np.ndarray  # (nth, layer.scratch_size(...)) parameter dtype: per-thread blocks
