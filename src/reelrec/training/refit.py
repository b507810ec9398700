"""Fitting a model the way a run is fitted: early stopping on the validation part, then (with
``refit``) a refit on train + validation for the best number of epochs, and (with
``refit_models > 1``, for models that set ``averageable``) several differently seeded refits
merged by the model's ``average`` into one model of its own kind. A model that starts from
pre-trained weights (:mod:`reelrec.training.pretrained`) gets them before every fit.

:meth:`reelrec.recommender.Recommender.train` wraps the result with its index structures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from reelrec.data.dataset import Dataset
from reelrec.models.base import RatingModel
from reelrec.training import pretrained
from reelrec.training.epochs import TrainResult
from reelrec.training.recipe import recipe
from reelrec.training.seeding import seeded
from reelrec.training.trainer import TrainConfig, Trainer

log = logging.getLogger(__name__)


def fit_model(
    model_name: str,
    train: Dataset,
    valid: Dataset | None,
    *,
    model_params: dict | None,
    train_config: TrainConfig,
    seed: int = 42,
    device: str = "auto",
    progress: bool = False,
    on_validated: Callable[[RatingModel, Dataset, Dataset], None] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    load_run: pretrained.RunLoader | None = None,
    starts: pretrained.Pretraining | None = None,
) -> tuple[RatingModel, Dataset, Dataset | None, TrainResult]:
    """Build ``model_name`` and fit it on ``train`` (early stopping on ``valid``), refitting and
    averaging as ``train_config`` says. ``on_validated(model, train, valid)`` is called with the
    early-stopped model before any refit sees ``valid`` (e.g. to fit class thresholds on it);
    ``on_epoch`` is the first fit's :class:`Trainer` callback (tuning prunes trials with it).
    What the model starts from is ``starts`` when given (a search shares it between trials),
    else resolved here (saved runs its config names are read by ``load_run``).
    Returns the model, the data it was finally fitted on (train + validation after a refit, with
    no validation part left), and the result."""

    # what the model starts from (saved runs, or models trained first): resolved once, on the
    # training part (early-stopped on the validation part), and shared by the refits
    plan = recipe(model_name, model_params, train, recorded=train_config)
    pre = starts
    if pre is None:
        pre = pretrained.resolve(
            model_name,
            plan.config,
            train,
            valid,
            seed=seed,
            device=device,
            progress=progress,
            load_run=load_run,
        )

    def fit(
        part: Dataset,
        check: Dataset | None,
        config: TrainConfig,
        run_seed: int = seed,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    ) -> tuple[RatingModel, TrainResult]:
        with seeded(run_seed, device):
            model = plan.build(part)
            trainer = Trainer(config, seed=run_seed, device=device, progress=progress, on_epoch=on_epoch)
            return model, trainer.fit(model, part, check, init_from=pre.sources)

    model, result = fit(train, valid, train_config, on_epoch=on_epoch)
    result.seconds += pre.seconds
    result.pretraining = pre.record or None
    if on_validated is not None and valid is not None and len(valid):
        on_validated(model, train, valid)
    closed_form = not model.trainable
    validated = model
    if train_config.refit and valid is not None and len(valid) and (result.best_epoch or closed_form):
        # the validation part chose the number of epochs (or only measured a closed-form
        # model); now learn from all the training data
        train, valid = train.concat(valid), None
        epochs = result.best_epoch or 1
        refit_cfg = train_config.model_copy(update={"epochs": epochs, "patience": 0})
        model, again = fit(train, None, refit_cfg)
        result.refit_epochs = result.best_epoch
        result.seconds += again.seconds
        log.info("refit on train+valid for %d epochs", result.best_epoch)
        extra = [validated] if train_config.average_validated and not closed_form else []
        if (train_config.refit_models > 1 or extra) and model.averageable:
            # independently initialised refits differ by their random start and batch order;
            # the mean of their predictions has lower variance than any one of them (the model
            # early-stopped on the training part alone is one more such member, already trained)
            members = [model]
            for k in range(1, train_config.refit_models):
                member, again = fit(train, None, refit_cfg, seed + k)
                members.append(member)
                result.seconds += again.seconds
            model = type(model).average(members + extra)
            result.refit_models = len(members)
            log.info("averaged %d refitted models%s", len(members), " and the validated one" if extra else "")
    if valid is not None and len(valid):
        model.observe(train.concat(valid))  # no refit: the model still reads the whole history
    return model, train, valid, result
