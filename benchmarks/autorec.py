"""Validation-only search over AutoRec settings: how the defaults in AutoRecConfig were chosen.

    REELREC_DATA_HOME=../shared/data OMP_NUM_THREADS=1 python benchmarks/autorec.py \\
        --case ml-100k/holdout90 --grid reg=10,100,300 --grid input_dropout=0,0.5

Each combination of the ``--grid`` values (model settings; ``--train KEY=VALUE`` overrides a
TrainConfig field for every run) is trained on the case's training part with 5% carved out for
early stopping, seed 42, and reported by its best *validation* RMSE. The test part is never
read: test figures come from ``benchmarks/accuracy.py --model autorec`` with the chosen defaults.
Runs are sequential, one process.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--case", default="ml-100k/holdout90")
    parser.add_argument("--grid", action="append", default=[], help="KEY=V1,V2,... (model setting)")
    parser.add_argument("--train", action="append", default=[], help="KEY=VALUE (TrainConfig field)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    import torch

    from accuracy import CASES, _load
    from reelrec.data.split import make_split
    from reelrec.models.autorec import AutoRec
    from reelrec.recommender import Recommender
    from reelrec.training import TrainConfig

    dataset, split_name = CASES[args.case]
    split = make_split(_load(dataset), split_name, seed=args.seed, valid_fraction=0.05)
    train_values = dict(AutoRec.default_train)
    for item in args.train:
        key, _, value = item.partition("=")
        train_values[key] = _value(value)
    cfg = TrainConfig(**{**train_values, "refit": False})
    keys = [g.partition("=")[0] for g in args.grid]
    values = [[_value(v) for v in g.partition("=")[2].split(",")] for g in args.grid]
    print(f"{args.case}, seed {args.seed}, torch threads {torch.get_num_threads()}, train {cfg.model_dump()}")
    print("| settings | valid RMSE | best epoch | epochs | train s |\n|---|---:|---:|---:|---:|")
    for combo in itertools.product(*values):
        params = dict(zip(keys, combo, strict=True))
        start = time.perf_counter()
        rec = Recommender.train(
            "autorec", split.train, split.valid, model_params=params, train_config=cfg, seed=args.seed
        )
        r = rec.train_result
        print(
            f"| {json.dumps(params)} | {r.best_valid:.4f} | {r.best_epoch} | {len(r.history)} "
            f"| {time.perf_counter() - start:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "src"))
    sys.exit(main())
