"""Pre-training: the weights a model starts from, resolved before it trains.

Two sources, both handed to the model's pure :meth:`~reelrec.models.base.RatingModel.init_from`
(models do no I/O, and neither does this module):

* **saved runs** named in the config (``pretrained_mf`` of the MLP, ``pretrained_gmf`` /
  ``pretrained_mlp`` of NeuMF: :meth:`~reelrec.models.base.RatingModel.pretrained_runs`), read by
  the ``load_run`` callable the layer above hands down (``artifacts.load_state`` from
  :meth:`reelrec.recommender.Recommender.train` and ``reelrec tune``) and checked here to hold
  the same users and movies as the training data;
* **pre-training inside the same fit**, as the model's config declares it
  (:meth:`~reelrec.models.base.RatingModel.pretraining`: a :class:`~reelrec.models.base.Pretrain`
  per role, e.g. an MF as wide as the table it initialises): each trained with its own
  :func:`~reelrec.training.recipe.recipe` on the training part, early-stopped on the validation
  part, without a refit (so the validation part stays unseen by the network's own early
  stopping). It is trained once; the network's refits start from it too.

What was pre-trained, for how long and how well is recorded in the run's training result
(:attr:`Pretraining.record`, saved in history.json under ``pretraining``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from reelrec.data.dataset import Dataset, Vocabulary
from reelrec.errors import ConfigError
from reelrec.models.base import ModelConfig, Pretrain, RatingModel
from reelrec.models.registry import model_class
from reelrec.training.recipe import recipe
from reelrec.training.seeding import seeded
from reelrec.training.trainer import Trainer

log = logging.getLogger(__name__)

#: the training values of every model trained first: early stopping on the validation part, no
#: refit (which would show it the validation part) and one model
PRETRAIN_TRAIN = {"refit": False, "refit_models": 1}


class SavedRun(Protocol):
    """What a loaded run gives pre-training: its model and the vocabularies it was trained on
    (``artifacts.RunState`` is one)."""

    model: RatingModel
    users: Vocabulary
    items: Vocabulary


#: reads the saved run at a path (the layer above hands one down: ``artifacts.load_state``)
RunLoader = Callable[[str], SavedRun]


@dataclass
class Pretraining:
    """The models a fit starts from (by the role the receiving model gives them) and a record of
    how they were obtained."""

    sources: dict[str, RatingModel] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def check_source(run: SavedRun, train: Dataset, role: str, path: str) -> RatingModel:
    """The model of the saved run at ``path``, which must hold ``train``'s users and movies."""
    if not (
        np.array_equal(run.users.ids, train.users.ids) and np.array_equal(run.items.ids, train.items.ids)
    ):
        raise ConfigError(f"pretrained_{role}: {path} was trained on different users or movies")
    return run.model


def pretrain(
    spec: Pretrain,
    train: Dataset,
    valid: Dataset | None,
    *,
    seed: int,
    device: str,
    progress: bool = False,
) -> tuple[RatingModel, dict[str, Any]]:
    """The model ``spec`` names, trained with its own recipe on ``train`` (early-stopped on
    ``valid``, no refit), and a record of it."""
    plan = recipe(spec.model, spec.params, train, overrides=PRETRAIN_TRAIN)
    with seeded(seed, device):
        model = plan.build(train)
        result = Trainer(plan.train, seed=seed, device=device, progress=progress).fit(model, train, valid)
    record = {
        "model": spec.model,
        **spec.params,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "valid_rmse": result.best_valid,
        "seconds": round(result.seconds, 3),
    }
    log.info("pre-trained %s %s for %d epochs: %s", spec.model, spec.params, len(result.history), record)
    return model, record


def plan_key(name: str, config: ModelConfig) -> str:
    """What decides the models ``name`` with ``config`` starts from (equal keys: equal starts)."""
    cls = model_class(name)
    runs = sorted(cls.pretrained_runs(config).items())
    trained = sorted((role, s.model, sorted(s.params.items())) for role, s in cls.pretraining(config).items())
    return repr((runs, trained))


def resolve(
    name: str,
    config: ModelConfig,
    train: Dataset,
    valid: Dataset | None,
    *,
    seed: int,
    device: str,
    progress: bool = False,
    load_run: RunLoader | None = None,
) -> Pretraining:
    """Everything model ``name`` with ``config`` starts from: the saved runs its config names
    (read by ``load_run``) and the models its pre-training plan asks for, trained here on
    ``train`` (early-stopped on ``valid``)."""
    cls = model_class(name)
    out = Pretraining()
    start = time.perf_counter()
    for role, path in cls.pretrained_runs(config).items():
        if load_run is None:
            raise ConfigError(
                f"pretrained_{role}: {path} is a saved run, and no loader was given to read it "
                "(train through reelrec.runs or Recommender.train)"
            )
        out.sources[role] = check_source(load_run(path), train, role, path)
        out.record[role] = {"run": path}
    for role, spec in cls.pretraining(config).items():
        if role in out.sources:
            continue
        out.sources[role], out.record[role] = pretrain(
            spec, train, valid, seed=seed, device=device, progress=progress
        )
    out.seconds = time.perf_counter() - start
    return out
