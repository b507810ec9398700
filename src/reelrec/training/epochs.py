"""The training contract: the epoch object a fit runs, and what the one loop keeps around it.

:class:`reelrec.training.Trainer` turns a model's plan (:mod:`reelrec.models.fitting`) into an
object of the :class:`Epochs` shape (after lkpy's ``ModelTrainer``): :class:`.minibatch.GradientEpochs`
(minibatch gradients: dense, closed-form or row-sparse), :class:`.sweeps.SweepEpochs` (a solver's
sweeps) or :class:`.sweeps.ClosedFormEpoch` (one exact fit). Its one loop calls ``train_epoch``
once per epoch and owns everything else: progress, the history record, validation, early
stopping with a copy of the best weights (:class:`EarlyStopping`, restored at the end), the
``on_epoch`` hook, and the data-parallel agreement on the validation score. This module also holds
the result record (:class:`TrainResult`) and the validation score.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from reelrec.data.dataset import Dataset, RatingScale
from reelrec.models.base import RatingModel

if TYPE_CHECKING:
    from reelrec.training.trainer import TrainConfig


#: the loop's progress callback: ``tick(units done, the batch's loss or None)``
Tick = Callable[[int, Any], None]


class Epochs(Protocol):
    """What the loop runs (see the module docs)."""

    #: False for a one-shot fit (closed form): one call, no history, no early stopping
    iterative: bool
    #: whether the history records ``rows_per_s`` (units of :attr:`size` per second)
    records_rate: bool
    #: units of work per epoch (ratings, rows, sweeps) and their name, for progress
    size: int
    unit: str

    def describe(self) -> str:
        """One line for the log: how this fit trains."""
        ...

    def train_epoch(self, epoch: int, tick: Tick | None = None) -> dict[str, float]:
        """Run epoch ``epoch`` (from 1); its ``train_loss`` first, then any other figures the
        history records (the learning rate)."""
        ...

    def divergence(self, epoch: int, loss: float) -> str:
        """The error message when an epoch's ``train_loss`` is not finite."""
        ...

    def end_epoch(self, record: dict[str, float]) -> None:
        """After the epoch's record is complete (validation included): e.g. step the schedules."""
        ...

    def finalize(self) -> None:
        """After the last epoch and the best weights' restore: drop training-time state."""
        ...


@dataclass
class TrainResult:
    """What a fit produced: per-epoch history and where the best validation score was."""

    history: list[dict[str, float]] = field(default_factory=list)
    #: the epoch whose parameters were kept; 0 when a pre-trained start scored best on the
    #: validation part (no epoch of fine-tuning improved it)
    best_epoch: int | None = None
    best_valid: float | None = None
    #: what ``best_valid`` measures: "valid_rmse" (rating models) or "valid_loss" (the model's own)
    valid_metric: str = "valid_rmse"
    seconds: float = 0.0
    stopped_early: bool = False
    refit_epochs: int | None = None
    #: how many refitted models were averaged into the returned one
    refit_models: int | None = None
    #: what the model started from (reelrec.training.pretrained), by role
    pretraining: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_valid": self.best_valid,
            "valid_metric": self.valid_metric,
            "seconds": self.seconds,
            "stopped_early": self.stopped_early,
            "refit_epochs": self.refit_epochs,
            "refit_models": self.refit_models,
            "pretraining": self.pretraining,
        }


class EarlyStopping:
    """The loop's validation bookkeeping: the best score and epoch into ``result``, a copy of the
    best parameters (the checkpoint restored at the end), and whether ``patience`` epochs have
    passed without an improvement of at least ``min_delta``."""

    def __init__(self, config: TrainConfig, result: TrainResult) -> None:
        self.config, self.result = config, result
        self.best, self.bad_epochs = math.inf, 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def update(self, model: nn.Module, epoch: int, key: str, value: float) -> None:
        self.result.valid_metric = key
        if value < self.best - self.config.min_delta:
            self.best, self.bad_epochs = value, 0
            self.result.best_epoch, self.result.best_valid = epoch, value
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_epochs += 1

    def should_stop(self, epoch: int) -> bool:
        stop = bool(self.config.patience) and self.bad_epochs >= self.config.patience
        if stop:
            self.result.stopped_early = epoch < self.config.epochs
        return stop

    def restore(self, model: nn.Module) -> None:
        """Load the best epoch's parameters (if any epoch was validated)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


def as_tensors(ds: Dataset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A dataset's (users, items, ratings) as long, long and float32 tensors on ``device``."""
    return (
        torch.as_tensor(ds.user_index, dtype=torch.long, device=device),
        torch.as_tensor(ds.item_index, dtype=torch.long, device=device),
        torch.as_tensor(ds.rating, dtype=torch.float32, device=device),
    )


_as_tensors = as_tensors  # the former name


@torch.no_grad()
def predict_indices(
    model: RatingModel, users: torch.Tensor, items: torch.Tensor, batch_size: int = 1 << 16
) -> torch.Tensor:
    """Model predictions for index tensors, in large batches, in eval mode."""
    was_training = model.training
    model.eval()
    out = [
        model(users[s : s + batch_size], items[s : s + batch_size]) for s in range(0, len(users), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, device=users.device)


def validation_score(
    model: RatingModel, data: tuple[torch.Tensor, ...], scale: RatingScale
) -> tuple[str, float]:
    """(name, value) of the early-stopping criterion: the model's own loss, else clipped RMSE."""
    was_training = model.training
    model.eval()
    own = model.validation_loss(*data)
    model.train(was_training)
    if own is not None:
        return "valid_loss", own
    return "valid_rmse", validation_rmse(model, data, scale)


def validation_rmse(model: RatingModel, data: tuple[torch.Tensor, ...], scale: RatingScale) -> float:
    users, items, ratings = data
    pred = predict_indices(model, users, items).clamp(scale.low, scale.high)
    return float(torch.sqrt(torch.mean((pred - ratings) ** 2)))
