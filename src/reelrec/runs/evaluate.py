"""``evaluate_run``: a saved run measured again on its own test part."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelrec.errors import ConfigError
from reelrec.recommender import Recommender
from reelrec.runs.record import RunRecord, load_run_data, rebuild_split


@dataclass
class Evaluation:
    """What :func:`evaluate_run` measured: the metrics and what they were measured on."""

    rec: Recommender
    dataset: str
    split: str
    n_test: int
    protocol: str | None
    metrics: dict[str, Any]


def evaluate_run(
    run_dir: str | Path, *, protocol: str | None = None, data_home: str | None = None
) -> Evaluation:
    """Load ``run_dir``, rebuild its split from its recorded data (refused if that data changed)
    and measure it on the test part: RMSE/MAE for rating models, ranking metrics by ``protocol``
    (default: the run's own, else the split's, else full ranking)."""
    from reelrec.evaluation.protocols import (
        check_protocol,
        evaluate_protocol,
        evaluate_ranking,
        evaluate_ratings,
        protocol_for_split,
    )

    rec = Recommender.load(str(run_dir))
    record = RunRecord.model_validate(rec.meta)
    if record.split is None or record.split.spec == "none":
        raise ConfigError(f"{run_dir} was trained with --split none: it has no test split to evaluate on")
    ds = load_run_data(record, data_home)
    split = rebuild_split(record, ds)
    protocol = protocol or record.protocol or protocol_for_split(split.name)
    if protocol:
        check_protocol(protocol, split.name)  # a protocol only fits the split the model was trained on
    metrics: dict[str, Any] = {"run": str(run_dir), "model": rec.name, "split": split.name}
    if rec.model.predicts_ratings:
        metrics.update(evaluate_ratings(rec, split.test))
    if protocol:
        metrics["ranking"] = evaluate_protocol(rec, split.test, protocol, seed=record.split.seed)
    else:
        metrics["ranking"] = evaluate_ranking(rec, split.test)
    return Evaluation(rec, ds.name, split.name, len(split.test), protocol, metrics)
