"""Blend saved runs into one (``reelrec blend``): weights fitted on validation data only.

Every member must be a rating model trained on the same data and split (protocol, seed,
validation fraction), without a refit on train+validation, so that the split's validation part
is data no member has seen. The blend's weights are the ridge least-squares fit of the members'
validation predictions (with an intercept); the test part is read once, to report the blend.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from reelrec.artifacts import check_target
from reelrec.errors import ConfigError
from reelrec.models.registry import model_class
from reelrec.runs.record import RunRecord, load_run_data, read_record, rebuild_split
from reelrec.runs.train import save_run

log = logging.getLogger(__name__)

#: ridge on the blend weights (in squared-rating units per validation rating)
BLEND_RIDGE = 1e-3


def _member_config(path: Path) -> RunRecord:
    config = read_record(path)
    if config.model is None or config.dataset is None or config.split is None:
        raise ConfigError(f"{path} does not record its dataset, split and model; it cannot be blended")
    if model_class(config.model.name).composite:
        raise ConfigError(f"{path} is already a blend; blend its members instead")
    train = config.train or {}
    # every model, closed-form ones too: Recommender.train refits them on train+validation
    if train.get("refit"):
        raise ConfigError(
            f"{path} was refitted on train+validation, so its validation predictions are not held out; "
            "train the members with --no-refit"
        )
    return config


def fit_weights(preds: np.ndarray, truth: np.ndarray, ridge: float = BLEND_RIDGE) -> tuple[np.ndarray, float]:
    """Ridge least squares ``truth ~ intercept + preds @ w`` (intercept unpenalised)."""
    n, k = preds.shape
    x = np.concatenate([np.ones((n, 1)), preds], axis=1)
    penalty = np.full(k + 1, ridge * n)
    penalty[0] = 0.0
    coef = np.linalg.solve(x.T @ x + np.diag(penalty), x.T @ truth)
    return coef[1:], float(coef[0])


def blend_runs(
    runs: list[str | Path], out: str | Path, *, data_home: str | None = None, overwrite: bool = False
) -> tuple[Any, dict[str, Any]]:
    """Fit blend weights of ``runs`` on their shared validation part; save the blend to ``out``."""
    from reelrec.evaluation.protocols import evaluate_ratings
    from reelrec.recommender import Recommender
    from reelrec.training.recipe import recipe

    if len(runs) < 2:
        raise ConfigError("give at least two runs to blend")
    paths = [Path(r) for r in runs]
    check_target(out, overwrite)
    configs = [_member_config(p) for p in paths]
    first = configs[0]
    same = ("spec", "seed", "valid_fraction")
    for p, c in zip(paths[1:], configs[1:], strict=True):
        if c.dataset.fingerprint != first.dataset.fingerprint:
            raise ConfigError(f"{p} was trained on other data than {paths[0]}")
        if c.split.model_dump(include=set(same)) != first.split.model_dump(include=set(same)):
            raise ConfigError(f"{p} was trained on another split than {paths[0]}")
    if not first.split.valid_fraction:
        raise ConfigError("the members have no validation part to fit the blend on")
    ds = load_run_data(first, data_home)
    split = rebuild_split(first, ds)
    members = [Recommender.load(str(p)) for p in paths]
    if any(not m.model.predicts_ratings for m in members):
        raise ConfigError("only rating models can be blended")
    vu, vi = split.valid.user_index, split.valid.item_index
    preds = np.stack([m.predict_indices(vu, vi) for m in members], axis=1)
    truth = split.valid.rating.astype(np.float64)
    weights, intercept = fit_weights(preds, truth)
    member_valid = [float(np.sqrt(np.mean((ds.scale.clip(p) - truth) ** 2))) for p in preds.T]
    blended = ds.scale.clip(intercept + preds @ weights)
    valid_rmse = float(np.sqrt(np.mean((blended - truth) ** 2)))
    config = {
        "members": [{"name": m.model.name, "config": m.model.config.model_dump()} for m in members],
        "weights": weights.tolist(),
        "intercept": intercept,
    }
    model = recipe("blend", config, split.train).build(split.train)  # validated, members built
    for k, m in enumerate(members):
        model.members[k].load_state_dict(m.model.state_dict())
    model.global_mean.fill_(float(members[0].model.global_mean))
    meta = RunRecord(
        dataset=first.dataset,
        data=first.data,  # the members' data spec: the blend reloads from it too
        split=first.split,
        seed=first.seed if first.seed is not None else first.split.seed,
        blend_of=[str(p.resolve()) for p in paths],
    ).meta()
    rec = Recommender.from_training(model, split.train, split.valid, meta=meta)
    metrics: dict[str, Any] = {
        "model": "blend",
        "split": split.name,
        "train_seconds": 0.0,
        "valid_rmse": valid_rmse,
        "members": [
            {"run": str(p), "model": m.model.name, "weight": float(w), "valid_rmse": v}
            for p, m, w, v in zip(paths, members, weights, member_valid, strict=True)
        ],
        "intercept": intercept,
    }
    if split.test is not None and len(split.test):
        metrics["test"] = evaluate_ratings(rec, split.test)
        metrics["members_test_rmse"] = [evaluate_ratings(m, split.test)["rmse"] for m in members]
    save_run(rec, out, metrics, overwrite=overwrite)
    return rec, metrics
