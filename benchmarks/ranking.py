"""Top-N ranking quality of reelrec's implicit-feedback models on MovieLens.

Reproduces the ranking table of docs/benchmarks.md, with the `implicit` library's ALS and BPR
as peers on the identical splits (``pip install -e ".[bench]"``):

    REELREC_DATA_HOME=../shared/data python benchmarks/ranking.py                 # everything
    REELREC_DATA_HOME=../shared/data python benchmarks/ranking.py --dataset ml-100k --model ease

Protocols (docs/benchmarks.md, the project's benchmark guide): ``temporal-full`` and
``loo-full`` on ml-100k and ml-latest-small, ``loo-sampled`` (99 sampled negatives, seed 42)
on ml-100k. Every rating is an interaction.

Model selection never sees the test set. For each (dataset, protocol) the same protocol is
applied once more to the training part (inner split: its latest interactions per user are the
validation set); every grid point is fitted on the inner training part and scored on the inner
validation part (NDCG@10 for the full-ranking protocols, HR@10 for loo-sampled). The chosen
configuration is then fitted on the whole training part and evaluated once on the test set.
Trainable models (bpr, neumf) early-stop on a random 5% of the part they are fitted on and
then refit on all of it for the best number of epochs. "fit s" is the wall time of that final
fit (CPU, one thread).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

DATASETS = ("ml-100k", "ml-latest-small")
MODELS = ("popularity", "itemknn", "ease", "seqlinear", "bpr", "neumf")
#: peers from the `implicit` library (pip install -e ".[bench]"), run through the same protocols
PEERS = ("implicit-als", "implicit-bpr")

#: (model params, train-config overrides) grids searched on the inner validation split
GRIDS: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {
    "popularity": [({}, {})],
    "itemknn": [
        ({"neighbours": k, "shrink": s}, {}) for k, s in ((20, 10), (50, 10), (100, 10), (200, 10), (50, 50))
    ],
    "ease": [
        ({"reg": lam, "dropout": p}, {})
        for lam, p in ((50, 0), (100, 0), (200, 0), (300, 0), (500, 0), (100, 0.5), (200, 0.25), (300, 0.5))
    ],
    # sequence-aware linear model: set part (EASE) + transition part, see src/reelrec/models/seqlinear.py
    "seqlinear": [
        (p, {})
        for p in (
            {},
            {"set_reg": 500.0},
            {"reg": 500.0, "targets": 3},
            {"alpha": 0.2, "targets": 3},
            {"tau": 5.0, "targets": 3},
            {"set_reg": 500.0, "reg": 500.0, "targets": 3},
        )
    ],
    "bpr": [
        ({"embedding_size": 64, "reg": 1e-4}, {"learning_rate": 2e-3}),
        ({"embedding_size": 128, "reg": 1e-5}, {"learning_rate": 2e-3}),
        ({"embedding_size": 128, "reg": 1e-4}, {"learning_rate": 5e-3}),
    ],
    # NeuMF (He et al. 2017) with its implicit BCE objective: one configuration, not tuned
    "implicit-als": [
        ({"factors": f, "regularization": r, "alpha": a, "iterations": 15}, {})
        for f, r, a in ((64, 0.01, 1.0), (64, 0.1, 10.0), (128, 0.05, 1.0), (128, 0.1, 10.0), (32, 0.05, 5.0))
    ],
    "implicit-bpr": [
        ({"factors": f, "learning_rate": lr, "regularization": r, "iterations": 100}, {})
        for f, lr, r in ((64, 0.01, 0.01), (128, 0.01, 0.01), (64, 0.05, 0.01), (128, 0.05, 0.001))
    ],
    "neumf": [
        (
            # the NeuMF defaults of 2026-11 (the rating defaults changed since), pinned
            {
                "objective": "bce",
                "negatives": 4,
                "gmf_size": 32,
                "hidden": [64, 32, 16],
                "user_reg": 0.0,
                "item_reg": 0.0,
            },
            {"epochs": 30, "batch_size": 1024, "learning_rate": 1e-3, "patience": 3, "refit": True},
        )
    ],
}


def _peer(name: str, train, params: dict, seed: int):
    """An `implicit` model fitted on ``train`` (every rating an interaction), wrapped as a reelrec
    ranking model so that the very same protocol code ranks and scores it."""
    import numpy as np
    import scipy.sparse as sp
    import torch

    from reelrec.models.base import RatingModel
    from reelrec.recommender import Recommender

    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking
    except ImportError:
        raise SystemExit("the implicit peers need: pip install -e '.[bench]'") from None

    class Peer(RatingModel):
        trainable = False

        def __init__(self, n_users: int, n_items: int, k: int) -> None:
            super().__init__(n_users, n_items, RatingModel.config_class())
            self.register_buffer("user_factors", torch.zeros(n_users, k))
            self.register_buffer("item_factors", torch.zeros(n_items, k))

        @property
        def predicts_ratings(self) -> bool:  # type: ignore[override]
            return False

        @torch.no_grad()
        def score_users(self, users: torch.Tensor) -> torch.Tensor:
            return self.user_factors[users] @ self.item_factors.T

        def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
            return (self.user_factors[users] * self.item_factors[items]).sum(-1)

    ui = sp.csr_matrix(
        (np.ones(len(train), dtype=np.float32), (train.user_index, train.item_index)),
        shape=(train.n_users, train.n_items),
    )
    ui.data[:] = 1.0  # repeated pairs count once
    cls = AlternatingLeastSquares if name == "implicit-als" else BayesianPersonalizedRanking
    algo = cls(**params, num_threads=1, random_state=seed)
    algo.fit(ui, show_progress=False)
    users, items = np.asarray(algo.user_factors), np.asarray(algo.item_factors)
    Peer.name = name
    model = Peer(train.n_users, train.n_items, users.shape[1])
    model.user_factors.copy_(torch.as_tensor(users))
    model.item_factors.copy_(torch.as_tensor(items))
    return Recommender.from_training(model, train)


def _fit(model: str, train, params: dict, overrides: dict, seed: int):
    if model in PEERS:
        start = time.perf_counter()
        rec = _peer(model, train, params, seed)
        from reelrec.training.trainer import TrainResult

        rec.train_result = TrainResult(seconds=time.perf_counter() - start)
        return rec
    from reelrec.data.split import carve_validation
    from reelrec.models.registry import model_class
    from reelrec.recommender import Recommender
    from reelrec.training import TrainConfig

    cls = model_class(model)
    cfg = TrainConfig(**{**cls.default_train, **overrides})
    if cls.trainable:
        fit, valid = carve_validation(train, 0.05, seed)
        return Recommender.train(model, fit, valid, model_params=params, train_config=cfg, seed=seed)
    return Recommender.train(model, train, model_params=params, train_config=cfg, seed=seed)


def _select_metric(protocol: str) -> str:
    return "hr@10" if protocol == "loo-sampled" else "ndcg@10"


def run_group(ds, protocols: tuple[str, ...], model: str, seed: int, log) -> list[dict[str, Any]]:
    """Tune ``model`` on the inner split and evaluate it on ``protocols`` (all on one split)."""
    from reelrec.evaluation.protocols import evaluate_protocol, protocol_split

    outer = protocol_split(ds, protocols[0], seed=seed, valid_fraction=None)
    inner = protocol_split(outer.train, protocols[0], seed=seed, valid_fraction=None)
    grid = GRIDS[model]
    scores: list[dict[str, float]] = []
    t0 = time.perf_counter()
    if len(grid) > 1:
        for params, overrides in grid:
            rec = _fit(model, inner.train, params, overrides, seed)
            got = {p: evaluate_protocol(rec, inner.test, p, seed=seed)[_select_metric(p)] for p in protocols}
            scores.append(got)
            log(f"    {model} {params} {overrides}: valid {got}")
    tune_seconds = time.perf_counter() - t0
    rows = []
    fitted: dict[int, tuple[Any, float]] = {}
    for protocol in protocols:
        best = max(range(len(grid)), key=lambda g: scores[g][protocol]) if scores else 0
        if best not in fitted:
            start = time.perf_counter()
            rec = _fit(model, outer.train, *grid[best], seed)
            fitted[best] = (rec, time.perf_counter() - start)
        rec, seconds = fitted[best]
        metrics = evaluate_protocol(rec, outer.test, protocol, seed=seed)
        result = rec.train_result
        rows.append(
            {
                "dataset": ds.name,
                "protocol": protocol,
                "model": model,
                "params": {**grid[best][0], **grid[best][1]},
                "valid": scores[best][protocol] if scores else None,
                "fit_seconds": round(seconds, 2),
                "tune_seconds": round(tune_seconds, 1),
                "epochs": len(result.history) if result.history else None,
                "best_epoch": result.best_epoch,
                **{k: v for k, v in metrics.items() if k != "protocol"},
            }
        )
        log(f"  {ds.name} {protocol} {model}: {_short(rows[-1])}")
    return rows


def _short(row: dict[str, Any]) -> str:
    keys = ("ndcg@10", "recall@20", "hr@10", "coverage@10", "popularity_share@10", "fit_seconds")
    return ", ".join(f"{k} {row[k]:.4f}" if isinstance(row.get(k), float) else f"{k} -" for k in keys)


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else ("" if value is None else str(value))


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | protocol | model | NDCG@10 | Recall@20 | HR@10 | coverage@10 | pop. share@10 "
        "| fit s | chosen on validation |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items() if k != "objective") or "-"
        lines.append(
            f"| {r['dataset']} | {r['protocol']} | {r['model']} | {_fmt(r.get('ndcg@10'))} "
            f"| {_fmt(r.get('recall@20'))} | {_fmt(r.get('hr@10'))} | {_fmt(r.get('coverage@10'))} "
            f"| {_fmt(r.get('popularity_share@10'))} | {r['fit_seconds']:.1f} | {params} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", action="append", choices=DATASETS, help="default: both")
    parser.add_argument("--model", action="append", choices=MODELS + PEERS, help="default: all")
    parser.add_argument("--protocol", action="append", choices=("temporal-full", "loo"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machines are shared)")
    parser.add_argument("--out", help="also write the rows as JSON here")
    args = parser.parse_args()

    import torch

    from reelrec.data.movielens import load_movielens

    torch.set_num_threads(args.threads)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    rows: list[dict[str, Any]] = []
    for name in args.dataset or DATASETS:
        ds = load_movielens(name)
        groups = []
        for proto in args.protocol or ("temporal-full", "loo"):
            if proto == "loo":
                groups.append(("loo-full", "loo-sampled") if name == "ml-100k" else ("loo-full",))
            else:
                groups.append((proto,))
        for protocols in groups:
            for model in args.model or MODELS + PEERS:
                rows.extend(run_group(ds, protocols, model, args.seed, log))
    print(markdown(rows))
    cpu = platform.processor() or platform.machine()
    print(f"\nmachine: {cpu}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
