"""Nested validation for MF (and other rating models') settings: choices without the test set.

Each case's *training* part (the test ratings are never read) is split again at random into an
inner training part and an outer validation part (``--outer`` of it, one carve per ``--carves``
seed). ``Recommender.train`` then runs exactly as in benchmarks/accuracy.py on the inner part
(its own 5% early-stopping carve, refit, ...), and the outer part scores it. A setting is
compared with the defaults on the same carves, so differences are paired.

    REELREC_DATA_HOME=../shared/data python benchmarks/mf_validation.py \\
        --case ml-100k/u1 --carves 3 --variant base --variant 'refit_models=3' \\
        --variant 'init_std=0.003'

A variant is ``key=value[,key=value...]``; keys of TrainConfig go to the trainer, the rest to
the model. ``base`` is the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import CASES, _load


def _parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_variant(spec: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``key=value,...`` -> (model params, train-config overrides)."""
    from reelrec.training import TrainConfig

    model_params: dict[str, Any] = {}
    train_params: dict[str, Any] = {}
    if spec == "base":
        return model_params, train_params
    for part in spec.split(","):
        key, _, value = part.partition("=")
        target = train_params if key in TrainConfig.model_fields else model_params
        target[key.strip()] = _parse_value(value.strip())
    return model_params, train_params


def carve_users(train, fraction: float, seed: int):
    """Half of the users (at random) each lose ``fraction`` of their ratings (at random)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    chosen = rng.random(train.n_users) < 0.5
    order = np.lexsort((rng.random(len(train)), train.user_index))
    counts = np.bincount(train.user_index, minlength=train.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(train), dtype=np.int64)
    rank[order] = np.arange(len(train)) - np.repeat(starts, counts)
    out = chosen[train.user_index] & (rank < np.round(fraction * counts[train.user_index]))
    return train.subset(np.flatnonzero(~out)), train.subset(np.flatnonzero(out))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", action="append", choices=sorted(CASES), required=True)
    parser.add_argument("--model", default="mf")
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--carves", type=int, default=3)
    parser.add_argument("--outer", type=float, default=0.1, help="fraction held out as the outer validation")
    parser.add_argument(
        "--outer-mode",
        choices=("random", "users"),
        default="random",
        help="random: a uniform carve of the ratings; users: half of the users lose --outer-user of "
        "their ratings (the shape of ML-100K's u1..u5 test files, whose users lose ~40%%)",
    )
    parser.add_argument("--outer-user", type=float, default=0.4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    import numpy as np

    from reelrec.data.split import carve_validation, make_split
    from reelrec.evaluation.protocols import evaluate_ratings
    from reelrec.models.registry import model_class
    from reelrec.recommender import Recommender
    from reelrec.training import TrainConfig

    rows = []
    for case in args.case:
        dataset, split_name = CASES[case]
        split = make_split(_load(dataset), split_name, seed=args.seed, valid_fraction=None)
        scores: dict[str, list[float]] = {v: [] for v in args.variant}
        for carve in range(args.carves):
            if args.outer_mode == "random":
                inner, outer = carve_validation(split.train, args.outer, seed=1000 + carve)
            else:
                inner, outer = carve_users(split.train, args.outer_user, seed=1000 + carve)
            fit, valid = carve_validation(inner, 0.05, seed=args.seed)
            for variant in args.variant:
                model_params, train_params = parse_variant(variant)
                train_config = TrainConfig(**{**model_class(args.model).default_train, **train_params})
                start = time.perf_counter()
                rec = Recommender.train(
                    args.model,
                    fit,
                    valid,
                    model_params=model_params,
                    train_config=train_config,
                    seed=args.seed,
                )
                seconds = time.perf_counter() - start
                rmse = evaluate_ratings(rec, outer)["rmse"]
                scores[variant].append(rmse)
                row = {
                    "case": case,
                    "carve": carve,
                    "variant": variant,
                    "rmse": round(rmse, 5),
                    "seconds": round(seconds, 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
        base = np.asarray(scores[args.variant[0]])
        print(f"\n{case} ({args.outer_mode} outer, {args.carves} carves; diff vs {args.variant[0]!r})")
        for variant, values in scores.items():
            v = np.asarray(values)
            print(
                f"  {variant:50s} mean {v.mean():.5f}  diff {np.mean(v - base):+.5f}  "
                f"per carve {np.round(v - base, 5).tolist()}"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
