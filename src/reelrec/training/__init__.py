"""Training: the shared minibatch loop, optimisers, schedules and early stopping."""

from reelrec.training.trainer import (
    TrainConfig,
    Trainer,
    TrainResult,
    predict_indices,
    resolve_device,
    seed_everything,
)

__all__ = ["TrainConfig", "TrainResult", "Trainer", "predict_indices", "resolve_device", "seed_everything"]
