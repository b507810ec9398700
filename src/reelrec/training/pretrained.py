"""Pre-training: the weights a model starts from, resolved before it trains.

Two sources, both handed to the model's pure :meth:`~reelrec.models.base.RatingModel.init_from`
(models do no I/O):

* **saved runs** named in the config (``pretrained_mf`` of the MLP, ``pretrained_gmf`` /
  ``pretrained_mlp`` of NeuMF: :meth:`~reelrec.models.base.RatingModel.pretrained_runs`), loaded
  here and checked to hold the same users and movies as the training data;
* **pre-training inside the same fit** (``pretrain = "auto" | "mf"``:
  :meth:`~reelrec.models.base.RatingModel.pretraining`): an MF with MF's defaults, as wide as the
  table it initialises, trained on the training part and early-stopped on the validation part
  (no refit, so the validation part stays unseen by the network's own early stopping). It is
  trained once; the network's refits start from it too.

What was pre-trained, for how long and how well is recorded in the run's training result
(:attr:`Pretraining.record`, saved in history.json under ``pretraining``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reelrec.artifacts import load_state
from reelrec.data.dataset import Dataset
from reelrec.errors import ConfigError
from reelrec.models.base import ModelConfig, RatingModel
from reelrec.models.registry import build_model, model_class
from reelrec.training.seeding import seeded
from reelrec.training.trainer import TrainConfig, Trainer

log = logging.getLogger(__name__)


@dataclass
class Pretraining:
    """The models a fit starts from (by the role the receiving model gives them) and a record of
    how they were obtained."""

    sources: dict[str, RatingModel] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def load_source(path: str, train: Dataset, role: str) -> RatingModel:
    """The model of the saved run at ``path``, which must hold ``train``'s users and movies."""
    other = load_state(path)
    if not (
        np.array_equal(other.users.ids, train.users.ids) and np.array_equal(other.items.ids, train.items.ids)
    ):
        raise ConfigError(f"pretrained_{role}: {path} was trained on different users or movies")
    return other.model


def pretrain_mf(
    width: int,
    train: Dataset,
    valid: Dataset | None,
    *,
    seed: int,
    device: str,
    progress: bool = False,
) -> tuple[RatingModel, dict[str, Any]]:
    """An MF with MF's defaults and ``width`` factors, early-stopped on ``valid``, no refit."""
    mf_cls = model_class("mf")
    cfg = TrainConfig(**{**mf_cls.train_defaults(len(train)), "refit": False, "refit_models": 1})
    with seeded(seed, device):
        mf = build_model("mf", train.n_users, train.n_items, {"embedding_size": width}, train=train)
        result = Trainer(cfg, seed=seed, device=device, progress=progress).fit(mf, train, valid)
    record = {
        "model": "mf",
        "embedding_size": width,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "valid_rmse": result.best_valid,
        "seconds": round(result.seconds, 3),
    }
    log.info("pre-trained an MF (%d factors) for %d epochs: %s", width, len(result.history), record)
    return mf, record


def resolve(
    name: str,
    config: ModelConfig,
    train: Dataset,
    valid: Dataset | None,
    *,
    seed: int,
    device: str,
    progress: bool = False,
) -> Pretraining:
    """Everything model ``name`` with ``config`` starts from: saved runs its config names and the
    models its pre-training plan asks for, trained here on ``train`` (early-stopped on ``valid``)."""
    cls = model_class(name)
    out = Pretraining()
    start = time.perf_counter()
    for role, path in cls.pretrained_runs(config).items():
        out.sources[role] = load_source(path, train, role)
        out.record[role] = {"run": path}
    for role, width in cls.pretraining(config).items():
        if role in out.sources:
            continue
        out.sources[role], out.record[role] = pretrain_mf(
            width, train, valid, seed=seed, device=device, progress=progress
        )
    out.seconds = time.perf_counter() - start
    return out
