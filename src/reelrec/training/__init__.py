"""Training: one epoch loop for every model's fit plan, its optimisers, schedules and early stopping."""

from reelrec.training.seeding import seeded
from reelrec.training.trainer import (
    TrainConfig,
    Trainer,
    TrainResult,
    predict_indices,
    resolve_device,
)

__all__ = ["TrainConfig", "TrainResult", "Trainer", "predict_indices", "resolve_device", "seeded"]
