"""The epochs of models fitted by their own solver: sweeps (ALS) and a closed form (EASE ...).

:class:`SweepEpochs` runs a :class:`~reelrec.models.fitting.Sweeps` plan: one call of the
model's sweep per epoch instead of minibatch gradient steps, and everything else as in gradient
training, from the Trainer's one loop (history with ``train_loss``, the validation score and
``seconds``; early stopping with ``patience`` and ``min_delta``, the best sweep's parameters
restored; the ``on_epoch`` hook; progress). TrainConfig's optimiser settings (learning rate,
batch size, schedules) do not apply. :class:`ClosedFormEpoch` runs a
:class:`~reelrec.models.fitting.ClosedForm` plan: one fit, then one validation score (no history).
"""

from __future__ import annotations

from reelrec.models.fitting import ClosedForm, Sweeps
from reelrec.training.epochs import Tick

__all__ = ["ClosedFormEpoch", "SweepEpochs"]


class SweepEpochs:
    """One sweep of the model's solver per epoch (see the module docs)."""

    iterative = True
    records_rate = False
    size = 1
    unit = "sweep"

    def __init__(self, plan: Sweeps, name: str) -> None:
        self.plan, self.name = plan, name

    def describe(self) -> str:
        return "sweeps of the model's own solver"

    def train_epoch(self, epoch: int, tick: Tick | None = None) -> dict[str, float]:
        loss = self.plan.sweep()
        if tick is not None:
            tick(1, None)
        return {"train_loss": loss}

    def divergence(self, epoch: int, loss: float) -> str:
        return f"{self.name} diverged at sweep {epoch} (objective {loss}); raise reg"

    def end_epoch(self, record: dict[str, float]) -> None:
        pass

    def finalize(self) -> None:
        pass


class ClosedFormEpoch:
    """The model's one exact fit (see the module docs)."""

    iterative = False
    records_rate = False
    size = 1
    unit = "fit"

    def __init__(self, plan: ClosedForm) -> None:
        self.plan = plan

    def describe(self) -> str:
        return "a closed-form fit"

    def train_epoch(self, epoch: int, tick: Tick | None = None) -> dict[str, float]:
        self.plan.fit()
        return {}

    def divergence(self, epoch: int, loss: float) -> str:  # pragma: no cover - no loss to check
        return f"the closed-form fit failed (objective {loss})"

    def end_epoch(self, record: dict[str, float]) -> None:
        pass

    def finalize(self) -> None:
        pass
