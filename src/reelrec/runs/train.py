"""``train_run``: the one place a run is trained, measured and saved.

``reelrec train``, ``tune`` (its final run), ``experiment``, ``demo`` and ``retrain`` all come
here with a split, a model name and its settings, and get back the :class:`Recommender` and its
metrics (validation score, test RMSE/MAE, ranking metrics by the run's protocol); with ``out``
the run is saved there, its ``config.json`` holding the :class:`RunRecord`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reelrec.data.dataset import Dataset
from reelrec.data.split import Split
from reelrec.errors import ReelrecError
from reelrec.recommender import Recommender
from reelrec.runs.record import RunRecord, SplitRecord
from reelrec.runs.source import SideData
from reelrec.training.recipe import recipe
from reelrec.training.trainer import TrainConfig

log = logging.getLogger("reelrec")

#: a rating run's automatic full-ranking metrics are skipped past this many (user, movie) pairs
#: for models that score pairs one by one (no inner-product form): ML-1M has 2.2e7 (about 35 s
#: through the MLP here), ML-10M 7.5e8, ML-25M 1.0e10
AUTO_RANKING_PAIRS = 1e8

#: the training settings a command may set (``TrainConfig`` fields), in the CLI's order
TRAIN_OPTIONS = (
    "epochs",
    "batch_size",
    "learning_rate",
    "optimizer",
    "weight_decay",
    "lr_schedule",
    "patience",
    "refit",
    "refit_models",
    "row_sparse",
    "average_validated",
    "decode",
)


@dataclass
class RunOptions:
    """Everything a new run is made of besides its data: the model and its settings, the
    training values over the model's recipe, the split and protocol, the side tables, the seed."""

    model: str = "mf"
    #: model settings (config fields)
    params: dict[str, Any] = field(default_factory=dict)
    #: ``TrainConfig`` values over the model's ``train_defaults``
    train: dict[str, Any] = field(default_factory=dict)
    #: split spec (default: the protocol's split, else holdout90)
    split: str | None = None
    seed: int = 42
    valid_fraction: float | None = 0.05
    protocol: str | None = None
    side: SideData = field(default_factory=SideData)
    device: str = "auto"
    progress: bool = True


def new_run(
    ds: Dataset,
    options: RunOptions,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    record_extra: dict[str, Any] | None = None,
    announce: Callable[[Dataset, Split], None] | None = None,
) -> tuple[Recommender, dict[str, Any]]:
    """A new run of ``options`` on ``ds``: refuse a model too large for the data before the
    split, make the split, train, measure and (with ``out``) save; ``announce`` is called with
    the data and the split before the training starts."""
    refuse_early(options.model, ds, options.params)
    split, spec, protocol = run_split(ds, options)
    plan = recipe(options.model, options.params, split.train, overrides=options.train)
    record = RunRecord.new(
        ds,
        options.side,
        split=SplitRecord(
            name=split.name,
            spec=spec,
            seed=options.seed,
            valid_fraction=options.valid_fraction,
            validation=validation_kind(options.model),
        ),
        seed=options.seed,
        protocol=protocol,
        **(record_extra or {}),
    )
    if announce is not None:
        announce(ds, split)
    return train_run(
        options.model,
        split,
        record,
        params=options.params,
        config=plan.train,
        seed=options.seed,
        device=options.device,
        progress=options.progress,
        out=out,
        overwrite=overwrite,
    )


def train_config(
    model: str, n_train: int, values: dict[str, Any] | None = None, params: dict[str, Any] | None = None
) -> TrainConfig:
    """``model``'s training recipe for ``n_train`` training ratings with the settings ``params``,
    ``values`` over it: :func:`reelrec.training.recipe.recipe` without the data (kept for
    callers of the earlier API; give the training part to ``recipe`` to complete the config)."""
    return recipe(model, params, n_ratings=n_train, overrides=values).train


def refuse_early(model: str, ds: Dataset, params: dict[str, Any]) -> None:
    """A model that cannot train on data of this size refuses before the split (seconds, not
    minutes): the whole dataset's shape bounds the training part's. Settings the model rejects are
    left for the full check after the split to report."""
    from reelrec.models.registry import check_scale, make_config, model_class

    try:
        config = make_config(model, params)
    except ReelrecError:
        return
    check_scale(model_class(model), ds.n_users, ds.n_items, len(ds), config)


def validation_kind(model: str | None) -> str:
    """How ``model`` is validated: ``random`` rows of the training part, or (sequence models,
    ``validation_split = "last"``) each user's latest training interaction."""
    from reelrec.models.registry import model_class

    return "random" if model is None else model_class(model).validation_split


def run_split(ds: Dataset, options: RunOptions) -> tuple[Split, str, str | None]:
    """:func:`make_run_split` with everything ``options`` says about the split."""
    return make_run_split(
        ds,
        options.split,
        seed=options.seed,
        valid_fraction=options.valid_fraction,
        protocol=options.protocol,
        model=options.model,
    )


def make_run_split(
    ds: Dataset,
    spec: str | None,
    *,
    seed: int,
    valid_fraction: float | None,
    protocol: str | None,
    model: str | None = None,
) -> tuple[Split, str, str | None]:
    """The split a new run of ``model`` trains on: ``spec`` (default: the ``protocol``'s split,
    else holdout90), with the validation part the model is validated on. Returns the split, the
    spec used and the protocol (the split's own by default), checked against the split."""
    from reelrec.data.split import make_split
    from reelrec.evaluation.protocols import PROTOCOL_SPLITS, check_protocol, protocol_for_split

    if spec is None:
        spec = PROTOCOL_SPLITS[check_protocol(protocol)] if protocol else "holdout90"
    split = make_split(
        ds, spec, seed=seed, valid_fraction=valid_fraction or None, validation=validation_kind(model)
    )
    protocol = protocol or protocol_for_split(split.name)
    if protocol:
        check_protocol(protocol, split.name)
    return split, spec, protocol


def train_run(
    model: str,
    split: Split,
    record: RunRecord,
    *,
    params: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    seed: int = 42,
    device: str = "auto",
    progress: bool = False,
    out: str | Path | None = None,
    overwrite: bool = False,
    metrics_extra: dict[str, Any] | None = None,
    ranking: bool = True,
) -> tuple[Recommender, dict[str, Any]]:
    """Train ``model`` on ``split`` (early stopping on its validation part), measure it on the
    test part and, with ``out``, save the run there with ``record`` as its ``config.json``.

    Args:
        record: the run's dataset, split, seed, protocol and side data (``record.protocol``
            picks the ranking protocol of the test metrics; none: full ranking).
        params, config: the model's settings and the training recipe (default: the model's
            own for this much data).
        metrics_extra: entries placed after ``train_seconds`` in the metrics.
        ranking: also measure the test part's ranking metrics (an experiment's table has none).
    """
    from reelrec.evaluation.protocols import evaluate_ratings

    if config is None:
        config = recipe(model, params, split.train).train
    rec = Recommender.train(
        model,
        split.train,
        split.valid,
        model_params=params,
        train_config=config,
        seed=seed,
        device=device,
        progress=progress,
        meta=record.meta(),
    )
    result = rec.train_result
    metrics: dict[str, Any] = {
        "model": model,
        "split": split.name,
        "train_seconds": round(result.seconds, 3),
        **(metrics_extra or {}),
    }
    if result.history:
        metrics["epochs"] = len(result.history)
        metrics["best_epoch"] = result.best_epoch
        metrics["seconds_per_epoch"] = round(
            sum(h["seconds"] for h in result.history) / len(result.history), 4
        )
    if result.best_valid is not None:
        metrics[result.valid_metric] = result.best_valid
    if split.test is not None and len(split.test):
        if rec.model.predicts_ratings:
            metrics["test"] = evaluate_ratings(rec, split.test)
        if ranking:
            _ranking_metrics(rec, split.test, record.protocol, seed, metrics)
    if out:
        save_run(rec, out, metrics, overwrite=overwrite)
    return rec, metrics


def save_run(rec: Recommender, out: str | Path, metrics: dict[str, Any], *, overwrite: bool = False) -> None:
    """Write ``rec`` and its ``metrics`` to run directory ``out``: every run reelrec makes (a
    trained one by :func:`train_run`, a blend) is saved here."""
    rec.save(str(out), metrics=metrics, overwrite=overwrite)


def _ranking_metrics(
    rec: Recommender, test: Dataset, protocol: str | None, seed: int, metrics: dict[str, Any]
) -> None:
    """``metrics["test_ranking"]``: by ``protocol``, else full ranking where affordable."""
    from reelrec.evaluation.protocols import evaluate_protocol, evaluate_ranking

    try:
        pairs = test.n_users * test.n_items
        if protocol:
            metrics["test_ranking"] = evaluate_protocol(rec, test, protocol, seed=seed)
        elif pairs > AUTO_RANKING_PAIRS and rec.model.retrieval_vectors() is None:
            # a network scores each (user, movie) pair through its layers: ranking every movie
            # for every user of a large dataset takes hours, so a rating run skips it here
            log.warning(
                "full-ranking metrics skipped: %s scores %.1e (user, movie) pairs one by one; "
                "train with --protocol temporal-full and run `reelrec evaluate` to get them",
                rec.name,
                pairs,
            )
        else:
            metrics["test_ranking"] = evaluate_ranking(rec, test)
    except ValueError as exc:
        log.warning("ranking metrics skipped: %s", exc)
