"""Blends of reelrec runs (the issue's "ensemble allowed" figures).

    REELREC_DATA_HOME=../shared/data python benchmarks/blend.py [--case ml-1m/holdout90 ml-100k/u1]
        [--members mf autorec hybrid]

For each case, trains each member once with the CLI (seed 42, 5% validation part carved from
the training part, ``--no-refit`` so that the validation part stays unseen by every member; the
hybrid also reads the users' demographics), then ``reelrec blend`` fits the blend weights on that
validation part and reports the test RMSE of each member and of the blend. ML-1M is
``ml-1m-ratings/ratings.csv`` with ``ml-1m/users.dat``. Runs are kept under
``benchmarks/results/blend/CASE/`` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MEMBERS = ("mf", "autorec", "hybrid")
#: case -> (data arguments of `reelrec train`, extra arguments of the hybrid)
CASES = {
    "ml-1m/holdout90": (
        ["--ratings", "{data}/ml-1m-ratings/ratings.csv", "--split", "holdout90"],
        ["--users", "{data}/ml-1m/users.dat", "--item-features", ""],
    ),
    "ml-100k/u1": (["--dataset", "ml-100k", "--split", "u1"], ["--users", "ml-100k"]),
    "ml-100k/holdout90": (["--dataset", "ml-100k", "--split", "holdout90"], ["--users", "ml-100k"]),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", nargs="+", default=list(CASES), choices=sorted(CASES))
    ap.add_argument("--members", nargs="+", default=list(MEMBERS), choices=MEMBERS)
    ap.add_argument("--out", default=str(HERE / "results" / "blend"))
    args = ap.parse_args()
    from reelrec.cli import main as cli

    data = os.environ.get("REELREC_DATA_HOME", "")
    if not data:
        sys.exit("set REELREC_DATA_HOME (e.g. ../shared/data)")
    for case in args.case:
        data_args, hybrid_args = CASES[case]
        root = Path(args.out) / case.replace("/", "-")
        runs, seconds = [], {}
        for name in args.members:
            run = root / name
            if not (run / "manifest.json").is_file():
                extra = hybrid_args if name == "hybrid" else []
                argv = ["train", *data_args, *extra, "--model", name, "--no-refit", "--no-progress", "--json"]
                start = time.perf_counter()
                if cli([a.format(data=data) for a in argv] + ["--out", str(run), "--overwrite"]):
                    sys.exit(f"{case}: training {name} failed")
                seconds[name] = time.perf_counter() - start
            runs.append(str(run))
        print(f"\n== {case}", flush=True)
        if cli(["blend", *runs, "--out", str(root / "blend"), "--overwrite"]):
            sys.exit(f"{case}: blending failed")
        print(f"(member training s this time: {json.dumps({k: round(v) for k, v in seconds.items()})})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
