"""A blend of reelrec runs on ML-1M holdout90 (the issue's "ensemble allowed" figure).

    REELREC_DATA_HOME=../shared/data python benchmarks/blend.py [--members mf autorec hybrid]

Trains each member once with the CLI on ``ml-1m-ratings/ratings.csv`` (holdout90, seed 42, 5%
validation part, ``--no-refit`` so that the validation part stays unseen by every member; the
hybrid also reads ``ml-1m/users.dat``), then ``reelrec blend`` fits the blend weights on that
validation part and reports the test RMSE of each member and of the blend. Runs are kept under
``benchmarks/results/blend/`` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MEMBERS = {
    "mf": [],
    "autorec": [],
    "hybrid": ["--users", "{data}/ml-1m/users.dat", "--item-features", ""],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", nargs="+", default=["mf", "autorec", "hybrid"], choices=sorted(MEMBERS))
    ap.add_argument("--out", default=str(HERE / "results" / "blend"))
    args = ap.parse_args()
    from reelrec.cli import main as cli

    data = os.environ.get("REELREC_DATA_HOME")
    if not data:
        sys.exit("set REELREC_DATA_HOME (e.g. ../shared/data)")
    root = Path(args.out)
    ratings = str(Path(data) / "ml-1m-ratings" / "ratings.csv")
    runs, seconds = [], {}
    for name in args.members:
        run = root / name
        if not (run / "manifest.json").is_file():
            extra = [a.format(data=data) for a in MEMBERS[name]]
            argv = ["train", "--ratings", ratings, "--model", name, "--no-refit", "--no-progress", "--json"]
            start = time.perf_counter()
            if cli([*argv, *extra, "--out", str(run), "--overwrite"]):
                sys.exit(f"training {name} failed")
            seconds[name] = time.perf_counter() - start
        runs.append(str(run))
    start = time.perf_counter()
    if cli(["blend", *runs, "--out", str(root / "blend"), "--overwrite", "--json"]):
        sys.exit("blending failed")
    print(
        f"(blend fitted and evaluated in {time.perf_counter() - start:.0f} s; member training s: "
        f"{json.dumps({k: round(v) for k, v in seconds.items()})})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
