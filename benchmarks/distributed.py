"""Data-parallel scaling of ``reelrec train``: 1, 2, ... ranks on one machine, one invocation.

    REELREC_DATA_HOME=../shared/data python benchmarks/distributed.py [--ranks 1 2] [--model mf]
        [--dataset ml-1m] [--extra "--no-refit"]
    REELREC_DATA_HOME=/work/scale/5000000 python benchmarks/distributed.py --dataset ml-25m   # synthetic

Each row runs ``reelrec train --nproc N`` (torchrun, gloo on CPU; one CPU thread per rank, so N
ranks use N cores) on ML-1M holdout90 (``ml-1m-ratings/ratings.csv``, seed 42, validation 5% of
the training part) or another MovieLens dataset under ``REELREC_DATA_HOME`` (holdout90), with
the model's defaults plus ``--extra``, and reports the test RMSE, the training seconds, the
whole command's wall seconds, and each rank count's speed-up and RMSE difference against one
process. The bar of issue 11: 2 ranks within 0.005 test RMSE of one process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _source(dataset: str) -> list[str]:
    home = Path(os.environ.get("REELREC_DATA_HOME", "../shared/data"))
    if dataset == "ml-1m":
        return ["--ratings", str(home / "ml-1m-ratings" / "ratings.csv")]
    return ["--dataset", dataset, "--data-home", str(home)]


def run(ranks: int, model: str, dataset: str, extra: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-m", "reelrec", "train", *_source(dataset), "--model", model]
    cmd += ["--split", "holdout90", "--seed", "42", "--threads", "1", "--json", "--out", str(out)]
    cmd += ["--nproc", str(ranks), *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{ranks} ranks failed:\n{proc.stderr[-3000:]}")
    metrics = json.loads(proc.stdout[proc.stdout.index("{") :])
    return {
        "ranks": ranks,
        "rmse": metrics["test"]["rmse"],
        "train_seconds": metrics["train_seconds"],
        "epochs": metrics.get("epochs"),
        "wall_seconds": round(wall, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", default="mf")
    parser.add_argument(
        "--dataset",
        default="ml-1m",
        help="ml-1m (ml-1m-ratings/ratings.csv) or any MovieLens name under REELREC_DATA_HOME, e.g. "
        "ml-25m for benchmarks/synthetic.py's data: past 2M training ratings the row-sparse path",
    )
    parser.add_argument("--extra", default="", help="more `reelrec train` options, as one string")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.ranks:
            rows.append(run(n, args.model, args.dataset, shlex.split(args.extra), Path(tmp) / f"r{n}"))
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    print(
        f"\nmachine: {os.cpu_count()} cores ({platform.machine()}), load {os.getloadavg()[0]:.1f}; "
        f"{args.dataset} holdout90, {args.model} defaults {args.extra}\n"
    )
    print("| ranks | test RMSE | Δ vs 1 | epochs | train s | speed-up | wall s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['ranks']} | {r['rmse']:.4f} | {r['rmse'] - base['rmse']:+.4f} | {r['epochs']} "
            f"| {r['train_seconds']:.1f} | {base['train_seconds'] / r['train_seconds']:.2f}x "
            f"| {r['wall_seconds']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    sys.exit(main())
