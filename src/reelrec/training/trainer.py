"""The one training loop: :class:`Trainer` fits every model through the same epochs contract.

A model declares how it is fitted (:meth:`RatingModel.fit_plan
<reelrec.models.base.RatingModel.fit_plan>`: gradient steps, sweeps of its own solver, or a
closed form); the Trainer turns that plan into an epoch object (:mod:`.minibatch`, :mod:`.sweeps`;
the shape is :class:`~reelrec.training.epochs.Epochs`) and runs it in one loop that owns
progress, the per-epoch history, validation (RMSE clipped to the rating scale, or the model's own
loss), early stopping with the best weights restored, the ``on_epoch`` hook (``reelrec tune``
prunes with it) and the data-parallel agreement on the validation score. Nothing here reads the
environment or reseeds the process: the epoch permutations come from the Trainer's ``seed``
through a ``torch.Generator``, and a caller scopes the model's own draws with
:func:`~reelrec.training.seeding.seeded`. A fixed seed gives bit-identical weights on the CPU.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from reelrec.data.dataset import Dataset, RatingScale
from reelrec.errors import ConfigError
from reelrec.models.base import RatingModel
from reelrec.models.fitting import ClosedForm, GradientSteps, Sweeps
from reelrec.training import distributed
from reelrec.training.distributed import DistContext
from reelrec.training.epochs import (
    EarlyStopping,
    Epochs,
    Tick,
    TrainResult,
    _as_tensors,
    as_tensors,
    predict_indices,
    validation_rmse,
    validation_score,
)
from reelrec.training.minibatch import ROW_SPARSE_MIN_ROWS, GradientEpochs
from reelrec.training.seeding import seeded
from reelrec.training.sweeps import ClosedFormEpoch, SweepEpochs

__all__ = [
    "ROW_SPARSE_MIN_ROWS",
    "EarlyStopping",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "_as_tensors",
    "predict_indices",
    "resolve_device",
    "seeded",
    "validation_rmse",
    "validation_score",
]

log = logging.getLogger(__name__)

OptimizerName = Literal["adam", "adamw", "adamax", "sgd", "adagrad", "sparse_adam"]


class TrainConfig(BaseModel):
    """Hyperparameters of the training loop (device and seed are runtime options, not here)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(40, ge=1, le=10_000)
    batch_size: int = Field(4096, ge=1, le=10_000_000)
    learning_rate: float = Field(3e-3, gt=0, le=10)
    optimizer: OptimizerName = "adam"
    weight_decay: float = Field(0.0, ge=0, description="decoupled (adamw) or L2 (others) weight decay")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    lr_schedule: Literal["constant", "cosine", "step", "plateau"] = "constant"
    lr_gamma: float = Field(0.5, gt=0, le=1, description="decay factor of the step/plateau schedules")
    lr_step: int = Field(10, ge=1, description="epochs between decays of the step schedule")
    patience: int = Field(
        3, ge=0, description="epochs without validation improvement before stopping (0: never)"
    )
    min_delta: float = Field(1e-4, ge=0, description="smallest RMSE drop that counts as an improvement")
    grad_clip: float | None = Field(None, gt=0)
    row_sparse: Literal["auto", "on", "off"] = Field(
        "auto",
        description="step only the table rows a batch touches (lazy Adam / SGD, reelrec.training.rows) "
        "for models with embedding tables: 'on', 'off' (dense optimisers: every row every "
        "batch), or 'auto' (on with adam/sgd when the tables have more rows than 4 batches and "
        "at least ROW_SPARSE_MIN_ROWS = 50,000: ML-10M and larger)",
    )
    refit: bool = Field(
        False,
        description="after early stopping, retrain from scratch on train + validation for the best number "
        "of epochs (used by Recommender.train)",
    )
    refit_models: int = Field(
        1,
        ge=1,
        le=16,
        description="with refit, retrain this many models (seeds seed, seed + 1, ...) and average their "
        "predictions; models that can merge the average into one model of their own kind (MF: "
        "concatenated factors) use it, the others keep the first",
    )
    average_validated: bool = Field(
        False,
        description="with refit, also average in the model early-stopped on the training part (models "
        "that can merge an average, MF): one more member without another training",
    )
    decode: Literal["model", "thresholds"] = Field(
        "model",
        description="how the run turns a prediction into a rating level (the class that accuracy scores): "
        "'model': the most probable level of a softmax head, otherwise the rating rounded to the nearest "
        "level; 'thresholds': the predicted rating cut at the points that maximise exact-match accuracy on "
        "the validation part (reelrec.models.decoding; fitted on the early-stopped model before any refit, "
        "saved with the run; needs a validation part and a discrete rating scale)",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.optimizer == "sparse_adam" and self.weight_decay:
            raise ValueError("sparse_adam does not support weight_decay; use the model's reg instead")
        return self


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; anything else is passed to ``torch.device``."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for, but no CUDA GPU is available")
    return dev


class Trainer:
    """Fits a :class:`RatingModel` by the plan it declares, in one epoch loop (see the module).

    Args:
        config: the loop's hyperparameters.
        seed: seeds the epoch permutations (scope the model's initialisation and its own draws
            with :func:`~reelrec.training.seeding.seeded` around building and fitting it).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
        progress: show a tqdm bar with the live loss.
        on_epoch: called after every epoch with its history record; may raise to stop training
            (``reelrec tune`` prunes unpromising trials this way).
    """

    def __init__(
        self,
        config: TrainConfig | None = None,
        *,
        seed: int = 42,
        device: str | torch.device | None = "auto",
        progress: bool = False,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        self.seed = seed
        self.device = resolve_device(device)
        self.progress = progress
        self.on_epoch = on_epoch

    def fit(
        self,
        model: RatingModel,
        train: Dataset,
        valid: Dataset | None = None,
        init_from: dict[str, RatingModel] | None = None,
    ) -> TrainResult:
        """Train ``model`` in place on ``train``; early-stop on ``valid`` when given. ``init_from``:
        pre-trained models (by role) the model starts from (:meth:`RatingModel.init_from`, after
        :meth:`RatingModel.prepare`; see :mod:`reelrec.training.pretrained`)."""
        if len(train) == 0:
            raise ConfigError("cannot train on an empty training set")
        start = time.perf_counter()
        model.to(self.device)
        model.prepare(train)
        if init_from:
            model.init_from({role: other.to(self.device) for role, other in init_from.items()})
        dist = distributed.current()  # the job's ranks, taken once per fit
        epochs = self.epochs(model, train, dist)
        log.info("fitting %s by %s", model.name, epochs.describe())
        valid_t = as_tensors(valid, self.device) if valid is not None and len(valid) else None
        result = self._run(model, epochs, valid_t, train.scale, dist, pretrained=bool(init_from))
        result.seconds = time.perf_counter() - start
        return result

    def epochs(self, model: RatingModel, train: Dataset, dist: DistContext | None = None) -> Epochs:
        """The epoch object of ``model``'s plan on ``train`` (after ``prepare``)."""
        plan = model.fit_plan(train)
        if isinstance(plan, GradientSteps):
            return GradientEpochs(
                model, plan, train, self.config, device=self.device, seed=self.seed, dist=dist
            )
        if isinstance(plan, Sweeps):
            return SweepEpochs(plan, model.name)
        if isinstance(plan, ClosedForm):
            return ClosedFormEpoch(plan)
        raise TypeError(f"{model.name}.fit_plan returned {plan!r}, not a reelrec.models.fitting plan")

    # ------------------------------------------------------------------ the loop
    def _run(
        self,
        model: RatingModel,
        epochs: Epochs,
        valid_t: tuple[torch.Tensor, ...] | None,
        scale: RatingScale,
        dist: DistContext | None,
        *,
        pretrained: bool = False,
    ) -> TrainResult:
        """Run ``epochs`` to the end or to early stopping; the best validated weights restored."""
        result = TrainResult()
        if not epochs.iterative:  # one exact fit, scored once
            epochs.train_epoch(1)
            if valid_t is not None:
                result.valid_metric, result.best_valid = validation_score(model, valid_t, scale)
            epochs.finalize()
            model.eval()
            return result
        stopping = EarlyStopping(self.config, result)

        def validate(epoch: int) -> tuple[str, float]:
            key, v = validation_score(model, valid_t, scale)
            if dist is not None:  # the ranks hold the same model; rank 0's figure decides
                v = dist.broadcast_float(v)
            stopping.update(model, epoch, key, v)
            return key, v

        if pretrained and valid_t is not None:
            # a pre-trained start is the first candidate: fine-tuning that only loses on the
            # validation part keeps it (best_epoch 0), instead of its least bad epoch
            log.info("epoch 0 (the pre-trained start) %s %.5f", *validate(0))
        bar = self._bar(model, epochs, dist)
        model.train()
        try:
            for epoch in range(1, self.config.epochs + 1):
                record = self._epoch(epoch, epochs, bar, validate if valid_t is not None else None)
                result.history.append(record)
                if self.on_epoch is not None:
                    self.on_epoch(epoch, record)
                log.info("epoch %d %s", epoch, {k: round(v, 5) for k, v in record.items() if k != "epoch"})
                if bar is not None:
                    shown = {k: f"{v:.4f}" for k, v in record.items() if k.startswith("valid_")}
                    bar.set_postfix(epoch=epoch, loss=f"{record['train_loss']:.4f}", **shown)
                epochs.end_epoch(record)
                if valid_t is not None and stopping.should_stop(epoch):
                    break
        finally:
            if bar is not None:
                bar.close()
        stopping.restore(model)
        epochs.finalize()
        model.eval()
        return result

    def _epoch(
        self,
        epoch: int,
        epochs: Epochs,
        bar: Any,
        validate: Callable[[int], tuple[str, float]] | None,
    ) -> dict[str, float]:
        """Train epoch ``epoch`` and validate it: its history record."""
        t0 = time.perf_counter()
        stats = epochs.train_epoch(epoch, None if bar is None else _ticker(bar, epoch))
        train_loss = stats.pop("train_loss")
        if not math.isfinite(train_loss):
            raise ConfigError(epochs.divergence(epoch, train_loss))
        record: dict[str, float] = {"epoch": epoch, "train_loss": train_loss}
        if validate is not None:
            key, v = validate(epoch)
            record[key] = v
        record.update(stats)
        record["seconds"] = time.perf_counter() - t0
        if epochs.records_rate:
            record["rows_per_s"] = epochs.size / max(record["seconds"], 1e-9)
        return record

    def _bar(self, model: RatingModel, epochs: Epochs, dist: DistContext | None) -> Any:
        """A tqdm bar counted in the epochs' units (ratings, rows, sweeps): the rate and the ETA
        (to the last epoch; early stopping may end sooner) read directly. Rank 0 only."""
        if not self.progress or (dist is not None and not dist.is_main):
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=self.config.epochs * epochs.size,
            unit=epochs.unit,
            unit_scale=epochs.size > 1,
            desc=f"train {model.name}",
            leave=False,
        )


def _ticker(bar: Any, epoch: int) -> Tick:
    """The progress callback of one epoch: the bar advances by each batch (or sweep), and every
    20th batch shows its loss."""
    calls = 0

    def tick(count: int, loss: Any) -> None:
        nonlocal calls
        bar.update(count)
        if loss is not None and calls % 20 == 0:
            bar.set_postfix(epoch=epoch, loss=f"{float(loss.detach()):.4f}", refresh=False)
        calls += 1

    return tick
