"""Exact-match accuracy on the seed003 protocol: which model and decoding, chosen by validation.

    REELREC_DATA_HOME=../shared/data python benchmarks/seed003_accuracy.py              # every candidate
    REELREC_DATA_HOME=../shared/data python benchmarks/seed003_accuracy.py --only mf    # some

Protocol of ``reelrec experiment --preset seed003``: ML-100K + genres, holdout90 (split seed
42), 1/9 of the rest as validation, training seed 42. Every candidate is trained on the training
part only, early-stopped on the validation part (no refit), so the validation part stays
held out for the choice. For each one the table gives the validation and test accuracy of

* the model's own class ("own": the most probable level of a softmax head, the rating rounded to
  the nearest level for regression);
* class thresholds (``decode = "thresholds"``, :mod:`reelrec.models.decoding`) on the predicted
  rating. Fitted on the whole validation part (as a run does) they are optimistic there, so the
  validation column is 2-fold cross-fitted: cut points fitted on one random half of the
  validation part score the other half, and the other way round.

The choice is made on the validation columns only; the test columns are reported after.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent

#: notebook-style network: ids + genres -> tower -> softmax (see the seed003 preset)
_GENRES = {"item_features": ["genres"], "user_features": []}
#: the softmax hybrid whose tower sees the ids and the genres (every parameter explicit)
_SOFTMAX_IDS = {
    **_GENRES,
    "output": "softmax",
    "embedding_size": 32,
    "feature_embedding_size": 16,
    "hidden": [64],
    "tower_ids": True,
    "dot": True,
    "id_dropout": 0.0,
    "user_id_dropout": 0.0,
    "embedding_dropout": 0.3,
    "dropout": 0.2,
    "init": "normal",
    "init_std": 0.01,
    "user_reg": 0.05,
    "item_reg": 0.01,
    "reg_alpha": 0.5,
    "bias_init": "zero",
}
_ADAM = {"optimizer": "adam", "learning_rate": 3e-3, "batch_size": 1024, "epochs": 40, "patience": 3}

#: the MF-like hybrids (dot branch, genres tower) of the search: softmax or ordinal heads
_SOFTMAX_DOT = {**_SOFTMAX_IDS, "embedding_size": 64, "hidden": [32], "tower_ids": False}
_SOFTMAX_DOT.update(embedding_dropout=0.0, dropout=0.0)
_ORDINAL_MF = {**_SOFTMAX_DOT, "output": "ordinal", "item_features": [], "hidden": []}

#: name -> (model, params, train settings); train settings get refit = False here
CANDIDATES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "mf": ("mf", {}, {}),
    "notebook-softmax": (
        "hybrid",
        {
            **_GENRES,
            "output": "softmax",
            "embedding_size": 64,
            "feature_embedding_size": 64,
            "hidden": [32],
            "tower_ids": True,
            "dot": False,
            "id_dropout": 0.0,
            "embedding_dropout": 0.05,
            "dropout": 0.05,
            "init": "he",
            "user_reg": 0.001,
            "item_reg": 0.001,
            "reg_alpha": 1.0,
            "bias_init": "zero",
        },
        {"optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "batch_size": 256, "epochs": 30},
    ),
    "softmax-dot": ("hybrid", _SOFTMAX_DOT, _ADAM),
    "softmax-ids": ("hybrid", _SOFTMAX_IDS, _ADAM),
    "softmax-ids emb 64": ("hybrid", {**_SOFTMAX_IDS, "embedding_size": 64}, _ADAM),
    "softmax-ids emb-dropout 0.5": ("hybrid", {**_SOFTMAX_IDS, "embedding_dropout": 0.5}, _ADAM),
    "softmax-ids reg 0.2/0.03": ("hybrid", {**_SOFTMAX_IDS, "user_reg": 0.2, "item_reg": 0.03}, _ADAM),
    "softmax-ids no dot": ("hybrid", {**_SOFTMAX_IDS, "dot": False}, _ADAM),
    "softmax-ids hidden 128": ("hybrid", {**_SOFTMAX_IDS, "hidden": [128]}, _ADAM),
    "softmax-ids emb 64, hidden 128": (
        "hybrid",
        {**_SOFTMAX_IDS, "embedding_size": 64, "hidden": [128]},
        _ADAM,
    ),
    "softmax-ids emb 64, hidden 128, emb-dropout 0.5": (
        "hybrid",
        {**_SOFTMAX_IDS, "embedding_size": 64, "hidden": [128], "embedding_dropout": 0.5},
        _ADAM,
    ),
    "softmax-ids emb 64, hidden 128-64": (
        "hybrid",
        {**_SOFTMAX_IDS, "embedding_size": 64, "hidden": [128, 64]},
        _ADAM,
    ),
    "ordinal-mf": ("hybrid", _ORDINAL_MF, _ADAM),
    "ordinal-mf reg 0.2/0.03": ("hybrid", {**_ORDINAL_MF, "user_reg": 0.2, "item_reg": 0.03}, _ADAM),
    "ordinal-dot": ("hybrid", {**_SOFTMAX_DOT, "output": "ordinal"}, _ADAM),
    "ordinal-ids": ("hybrid", {**_SOFTMAX_IDS, "output": "ordinal"}, _ADAM),
}


def _accuracy(levels: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.isclose(levels, truth)))


def _cross_fitted(pred: np.ndarray, truth: np.ndarray, levels: np.ndarray, seed: int = 0) -> float:
    """Accuracy of cut points fitted on one random half of the validation part on the other half."""
    from reelrec.models.decoding import apply_thresholds, fit_thresholds

    half = np.random.default_rng(seed).random(pred.size) < 0.5
    out = np.empty(pred.size)
    for part in (half, ~half):
        cuts = fit_thresholds(pred[~part], truth[~part], levels)
        out[part] = apply_thresholds(pred[part], cuts, levels)
    return _accuracy(out, truth)


def evaluate(name: str, split: Any) -> dict[str, Any]:
    """Train one candidate on the training part; its validation and test accuracies."""
    from reelrec.evaluation.protocols import _indices_in
    from reelrec.models.decoding import apply_thresholds, fit_thresholds
    from reelrec.models.registry import model_class
    from reelrec.recommender import Recommender
    from reelrec.training.trainer import TrainConfig

    model, params, train = CANDIDATES[name]
    cfg = TrainConfig(**{**model_class(model).train_defaults(len(split.train)), **train, "refit": False})
    start = time.perf_counter()
    rec = Recommender.train(model, split.train, split.valid, model_params=params, train_config=cfg, seed=42)
    seconds = time.perf_counter() - start
    levels = rec.scale.levels()
    row: dict[str, Any] = {"name": name, "epochs": rec.train_result.best_epoch, "seconds": seconds}
    preds = {}
    for part_name, part in (("valid", split.valid), ("test", split.test)):
        u, i = _indices_in(rec, part)
        truth = part.rating.astype(np.float64)
        pred = rec.predict_indices(u, i)
        preds[part_name] = (pred, truth)
        row[f"{part_name}_own"] = _accuracy(rec.predict_levels_indices(u, i), truth)
        row[f"{part_name}_rmse"] = float(np.sqrt(np.mean((pred - truth) ** 2)))
    cuts = fit_thresholds(*preds["valid"], levels)
    row["cuts"] = cuts
    row["valid_cuts"] = _cross_fitted(*preds["valid"], levels)
    row["test_cuts"] = _accuracy(apply_thresholds(preds["test"][0], cuts, levels), preds["test"][1])
    return row


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", choices=sorted(CANDIDATES))
    parser.add_argument("--data-home", default=os.environ.get("REELREC_DATA_HOME"))
    args = parser.parse_args()
    from reelrec.data.split import make_split
    from reelrec.experiment import load_data, load_spec

    spec = load_spec("seed003", preset=True)
    ds = load_data(spec.data, args.data_home)
    split = make_split(
        ds, spec.data.split, seed=spec.data.split_seed, valid_fraction=spec.data.valid_fraction
    )
    print(
        f"seed003 protocol: train {len(split.train):,}, valid {len(split.valid):,}, test {len(split.test):,}"
    )
    print()
    print(
        "| candidate | best epoch | valid own | valid thresholds (cross-fitted) | test own | test thresholds "
        "| valid RMSE | test RMSE | cut points | train s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for name in args.only or list(CANDIDATES):
        r = evaluate(name, split)
        cuts = ", ".join(f"{c:.2f}" for c in r["cuts"])
        print(
            f"| {name} | {r['epochs']} | {r['valid_own']:.4f} | {r['valid_cuts']:.4f} | {r['test_own']:.4f} "
            f"| {r['test_cuts']:.4f} | {r['valid_rmse']:.4f} | {r['test_rmse']:.4f} | {cuts} "
            f"| {r['seconds']:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "src"))
    sys.exit(main())
