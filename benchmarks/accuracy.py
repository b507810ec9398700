"""Rating-prediction accuracy and training cost of reelrec's models on MovieLens.

Reproduces the foundation table of docs/benchmarks.md:

    REELREC_DATA_HOME=../shared/data python benchmarks/accuracy.py            # every case
    REELREC_DATA_HOME=../shared/data python benchmarks/accuracy.py --case ml-1m/holdout90 --model mf

Cases (protocols from docs/benchmarks.md, seed 42, validation 5% carved from train):
  ml-100k/holdout90, ml-100k/u1  (MovieLens loader),
  ml-1m/holdout90                (ml-1m-ratings/ratings.csv through the generic ratings-file loader),
  ml-latest-small/holdout90      (MovieLens loader).
Each (case, model) runs in its own process so its peak resident memory is its own.
Reported: test RMSE/MAE (clipped to the scale), training wall seconds (fit only, data loading
excluded), seconds per epoch, epochs run (+ refit epochs, times the number of averaged refits
when there are several), peak RSS of the process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "ml-100k/holdout90": ("ml-100k", "holdout90"),
    "ml-100k/u1": ("ml-100k", "u1"),
    "ml-1m/holdout90": ("ml-1m-ratings", "holdout90"),
    "ml-latest-small/holdout90": ("ml-latest-small", "holdout90"),
}
MODELS = ("bias", "mf", "autorec")


def _load(name: str):
    from reelrec.data.movielens import data_home, load_movielens
    from reelrec.data.tabular import load_ratings

    if name == "ml-1m-ratings":
        return load_ratings(data_home() / "ml-1m-ratings" / "ratings.csv", name="ml-1m")
    return load_movielens(name)


def run_one(case: str, model: str, seed: int) -> dict:
    import torch

    from reelrec.data.split import make_split
    from reelrec.evaluation.protocols import evaluate_ratings
    from reelrec.recommender import Recommender

    dataset, split_name = CASES[case]
    ds = _load(dataset)
    split = make_split(ds, split_name, seed=seed, valid_fraction=0.05)
    start = time.perf_counter()
    rec = Recommender.train(model, split.train, split.valid, seed=seed)
    seconds = time.perf_counter() - start
    test = evaluate_ratings(rec, split.test)
    hist = rec.train_result.history
    return {
        "case": case,
        "model": model,
        "rmse": round(test["rmse"], 4),
        "mae": round(test["mae"], 4),
        "train_seconds": round(seconds, 2),
        "seconds_per_epoch": round(sum(h["seconds"] for h in hist) / len(hist), 3) if hist else None,
        "epochs": len(hist) or None,
        "refit_epochs": rec.train_result.refit_epochs,
        "refit_models": rec.train_result.refit_models,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": torch.get_num_threads(),
    }


def _epochs(row: dict) -> str:
    if not row["epochs"]:
        return ""
    if not row.get("refit_epochs"):
        return f"{row['epochs']}"
    models = f"{row['refit_models']}×" if (row.get("refit_models") or 1) > 1 else ""
    return f"{row['epochs']} (+{models}{row['refit_epochs']})"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    parser.add_argument("--model", choices=MODELS, action="append")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true", help="print one JSON object per run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cases = args.case or list(CASES)
    models = args.model or list(MODELS)
    if args.child:
        print(json.dumps(run_one(cases[0], models[0], args.seed)))
        return 0
    rows = []
    for case in cases:
        for model in models:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                "--case",
                case,
                "--model",
                model,
                "--seed",
                str(args.seed),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), check=False)
            if proc.returncode != 0:
                print(f"{case} {model}: failed\n{proc.stderr.strip()}", file=sys.stderr)
                return 1
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
    if not args.json:
        cpu = platform.processor() or platform.machine()
        print(
            f"machine: {os.cpu_count()} cores ({cpu}), torch threads {rows[0]['threads']}, seed {args.seed}\n"
        )
        print("| case | model | RMSE | MAE | train s | s/epoch | epochs (+refit) | peak RSS MiB |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            spe = "" if r["seconds_per_epoch"] is None else f"{r['seconds_per_epoch']:.2f}"
            print(
                f"| {r['case']} | {r['model']} | {r['rmse']:.4f} | {r['mae']:.4f} | {r['train_seconds']:.1f} "
                f"| {spe} | {_epochs(r)} | {r['peak_rss_mib']} |"
            )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    sys.exit(main())
