"""fastnn: fully-connected networks trained by Numba-compiled loops over flat buffers.

    model = fastnn.MLP([64, 128, 10], activation="relu", output="softmax", seed=0)
    history = fastnn.Trainer(model, fastnn.optim.Adam(lr=1e-3), batch_size=32,
                             epochs=20).fit(X, y, validation_data=(Xv, yv))
"""
from . import optim, schedules
from ._warmup import warmup
from .callbacks import Callback, EarlyStopping, ModelCheckpoint
from .data import train_val_test_split
from .diagnostics import GradientReport, diagnose
from .io import load_model as load
from .model import MLP
from .selection import SearchResult, search
from .trainer import History, Trainer, TrainingDiverged

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "Callback",
    "EarlyStopping",
    "GradientReport",
    "History",
    "ModelCheckpoint",
    "SearchResult",
    "Trainer",
    "TrainingDiverged",
    "diagnose",
    "load",
    "optim",
    "schedules",
    "search",
    "train_val_test_split",
    "warmup",
]
