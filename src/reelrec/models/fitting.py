"""How a model is fitted: the plan it hands the training loop.

:meth:`RatingModel.fit_plan <reelrec.models.base.RatingModel.fit_plan>` returns one of three
plans, and :class:`reelrec.training.Trainer` turns it into an epoch object (``train_epoch()`` /
``finalize()``, after lkpy's ``ModelTrainer``) that its one loop runs with the same progress,
history, validation, early stopping, best-weight restore, ``on_epoch`` hook and distributed
reduction, whatever the kind:

* :class:`GradientSteps`: minibatch gradient descent by the loop's optimisers, on rating triples
  or on rows of the model's own (AutoRec's item vectors); the gradient comes from autograd on
  ``training_loss``, or from the model's closed form (:class:`BatchGradient`: MF), which the loop
  takes dense (into ``.grad``) or by rows (the row-sparse optimisers of
  :mod:`reelrec.training.rows`);
* :class:`Sweeps`: repeated passes of the model's own solver, one per epoch (ALS);
* :class:`ClosedForm`: one exact fit (EASE, the baselines, item kNN ...).

The plan is the model's declaration: the loop never calls a model to find out how it trains.
This module holds no training code (models do not import :mod:`reelrec.training`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

__all__ = ["BatchGradient", "ClosedForm", "FitPlan", "GradientSteps", "RowGrad", "Sweeps"]

#: a batch's gradient of one table by rows: (parameter, unique row indices, those rows' gradient)
RowGrad = tuple[nn.Parameter, torch.Tensor, torch.Tensor]


class BatchGradient(Protocol):
    """A model's exact gradient of ``training_loss`` on a batch of rating triples, without
    autograd, in the two forms the loop's optimisers take."""

    def dense(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        """The batch's loss, its gradient written into every trainable table's ``.grad``
        (overwriting it)."""
        ...

    def rows(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor
    ) -> tuple[torch.Tensor, list[RowGrad]]:
        """The batch's loss and the gradient of every trainable parameter as
        ``(parameter, unique rows, rows' gradient)``."""
        ...


@dataclass(frozen=True)
class GradientSteps:
    """Minibatch gradient descent by the loop's optimisers (see the module docs)."""

    #: the model's own training rows (their number) instead of the rating triples; the loop
    #: permutes ``range(rows)`` each epoch and minimises ``rows_loss`` on slices of them
    rows: int | None = None
    rows_loss: Callable[[torch.Tensor], torch.Tensor] | None = None
    #: the model's closed-form gradient on rating triples; ``None``: autograd on ``training_loss``
    gradient: BatchGradient | None = None

    def __post_init__(self) -> None:
        if (self.rows is None) != (self.rows_loss is None):
            raise ValueError("GradientSteps: rows and rows_loss go together")
        if self.rows is not None and self.gradient is not None:
            raise ValueError("GradientSteps: a closed-form gradient is for rating triples, not rows")


@dataclass(frozen=True)
class Sweeps:
    """One pass of the model's own solver per epoch: ``sweep()`` updates the model in place and
    returns the training objective (per rating). The optimiser settings do not apply."""

    sweep: Callable[[], float]


@dataclass(frozen=True)
class ClosedForm:
    """One exact fit: ``fit()`` sets the model's parameters; the loop then scores the validation
    part once (no epochs, no history)."""

    fit: Callable[[], None]


FitPlan = GradientSteps | Sweeps | ClosedForm
