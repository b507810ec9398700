"""The recipe: (model name, settings, training data) -> the model's config and its TrainConfig.

One function, :func:`recipe`, is how every trainer of a model learns what it trains: a run
(:mod:`reelrec.runs.train`), a retrain (the run's recorded settings), every tuning trial
(:mod:`reelrec.tune`), every experiment row (:mod:`reelrec.experiment`), the fit itself
(:mod:`reelrec.training.refit` builds each part's model from it) and the models trained first
inside a fit (:mod:`reelrec.training.pretrained`). The steps, always in this order:

1. the settings given, completed from the training data (``configure``: softmax levels, feature
   schemas, ...) and validated (``registry.make_config``: a one-line ``ConfigError``);
2. the model's training defaults for that config and that much data (``train_defaults``);
3. the caller's training values over them (``overrides``), or a complete recorded
   ``TrainConfig`` used as it is (``recorded``: a saved run's ``train``), validated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from reelrec.data.dataset import Dataset
from reelrec.errors import ConfigError
from reelrec.models.base import ModelConfig, RatingModel
from reelrec.models.registry import build_model, make_config, model_class
from reelrec.training.trainer import TrainConfig

__all__ = ["Recipe", "make_train_config", "recipe"]


@dataclass(frozen=True)
class Recipe:
    """What model ``model`` trains as: the settings given, their validated config (completed
    from the training data when it was given), the model's own training defaults for it and the
    resulting :class:`TrainConfig`."""

    model: str
    #: the settings as given (each fitted part completes them again from its own data)
    params: dict[str, Any]
    config: ModelConfig
    train: TrainConfig
    #: the model's training defaults for this config and data size, before any override
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def model_class(self) -> type[RatingModel]:
        return model_class(self.model)

    def build(self, part: Dataset) -> RatingModel:
        """The model, built for ``part`` (its config completed from ``part``, its scale checked)."""
        return build_model(self.model, part.n_users, part.n_items, self.params, train=part)


def make_train_config(values: Mapping[str, Any]) -> TrainConfig:
    """A validated :class:`TrainConfig`; an invalid value is a one-line ``ConfigError`` naming it
    (``epochs: Input should be greater than or equal to 1``)."""
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{'.'.join(map(str, err['loc'])) or 'training'}: {err['msg']}") from None


def recipe(
    model: str,
    params: Mapping[str, Any] | None = None,
    train: Dataset | None = None,
    *,
    n_ratings: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    recorded: Mapping[str, Any] | TrainConfig | None = None,
) -> Recipe:
    """The recipe of ``model`` with settings ``params`` for the training data ``train``.

    Args:
        train: the training part: completes the config (``configure``) and sizes the defaults.
            Without it (checking a file before any data is loaded) the config is the settings
            alone and ``n_ratings`` sizes the defaults (``None``: the small-data recipe).
        overrides: training values over the model's defaults (the command line's ``--epochs``,
            an experiment's ``[runs.train]``, a trial's suggestions).
        recorded: a complete recorded training configuration (a saved run's ``train``) used as
            it is: fields it lacks take :class:`TrainConfig`'s defaults, not the model's, so a
            run recorded before a field existed keeps training as it did.
    """
    if overrides is not None and recorded is not None:
        raise ValueError("give overrides or a recorded training configuration, not both")
    cls = model_class(model)
    given = dict(params or {})
    values = cls.configure(dict(given), train) if train is not None else given
    config = make_config(model, values)
    defaults = cls.train_defaults(len(train) if train is not None else n_ratings, config)
    if isinstance(recorded, TrainConfig):
        train_config = recorded
    elif recorded is not None:
        train_config = make_train_config(recorded)
    else:
        train_config = make_train_config({**defaults, **(overrides or {})})
    return Recipe(model=model, params=given, config=config, train=train_config, defaults=defaults)
