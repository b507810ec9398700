"""What a new user gets: whole ``reelrec train`` commands with defaults only, beside cornac MF's fit.

    pip install -e ".[bench]"       # cornac
    REELREC_DATA_HOME=../shared/data python benchmarks/defaults.py
    REELREC_DATA_HOME=../shared/data python benchmarks/defaults.py --models global-mean mf

Each model runs as the command a user types, in a child process, timed from start to exit::

    reelrec train --ratings $REELREC_DATA_HOME/ml-1m-ratings/ratings.csv --model NAME --out TMP/NAME

(the default split: holdout90, seed 42, 5% of the training part carved for validation; the
command loads the file, splits, trains with the model's defaults, evaluates on the test part,
ranking metrics included, and saves the run). Reported per model: the whole command's seconds,
its training seconds (``train_seconds`` of the run's metrics.json, pre-training included), the
test RMSE, and the whole command's time as a multiple of cornac MF's fit time.

The reference, cornac MF at its documented settings (``benchmarks/speed.py``'s: k=10,
``max_iter=25``, lr 0.01, lambda 0.02), is fitted ``--repeats`` times on the same training part
(train + validation) before the reelrec commands and again after them; its time is the median
of all those fits, so drift during the run moves both sides. ``global-mean`` shows the start-up
cost every command pays (import, load, split, evaluation, writing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import frames, load  # noqa: E402  (the benchmarks folder is not a package)
from speed import cornac_fitter, rmse  # noqa: E402

#: the bars of the fast-defaults issue: (test RMSE at most, training seconds at most)
BARS: dict[str, tuple[float, float | None]] = {
    "mf": (0.836, None),
    "mlp": (0.850, 300.0),
    "neumf": (0.850, 300.0),
    "hybrid": (0.845, 300.0),
    "als": (0.840, None),
}
#: the whole default MF command, as a multiple of cornac MF's fit time, at most
MF_RATIO_BAR = 40.0


def run_command(
    model: str, ratings: Path, out: Path, extra: list[str], env: dict[str, str] | None = None
) -> dict[str, float]:
    """Run ``reelrec train`` for ``model`` with defaults; its wall seconds and metrics."""
    cmd = [sys.executable, "-m", "reelrec", "train", "--ratings", str(ratings), "--model", model]
    cmd += ["--out", str(out), *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "seconds": seconds,
        "train_seconds": float(metrics["train_seconds"]),
        "rmse": float(metrics["test"]["rmse"]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["global-mean", "mf", "als", "mlp", "neumf", "hybrid"])
    ap.add_argument("--repeats", type=int, default=3, help="cornac fits before and after (each)")
    ap.add_argument("--extra", default="", help="extra flags for every reelrec command (default none)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument(
        "--fresh-kernel-cache",
        action="store_true",
        help="give the commands an empty numba cache (NUMBA_CACHE_DIR), so the first one that uses "
        "MF's compiled kernel compiles it, as on a fresh install (list mf twice to see both)",
    )
    args = ap.parse_args()

    from reelrec.data.movielens import data_home
    from reelrec.data.split import make_split

    ratings = data_home() / "ml-1m-ratings" / "ratings.csv"
    ds = load("ml-1m-ratings")
    split = make_split(ds, "holdout90", seed=42, valid_fraction=0.05)
    train_frame, test_frame = frames(split)
    truth = test_frame["rating"].to_numpy(dtype=np.float64)
    scale = (float(ds.scale.low), float(ds.scale.high))
    cornac_fit = cornac_fitter(train_frame, test_frame)
    cornac_fit(1)  # warm-up, untimed

    def cornac_round() -> list[float]:
        fits = [cornac_fit(25) for _ in range(args.repeats)]
        print(f"cornac MF fits: {', '.join(f'{s:.3f}' for s, _ in fits)} s", flush=True)
        return [s for s, _ in fits]

    times = cornac_round()
    cornac_rmse = rmse(cornac_fit(25)[1], truth, scale)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="reelrec-defaults-") as tmp:
        env = None
        if args.fresh_kernel_cache:
            env = {**os.environ, "NUMBA_CACHE_DIR": str(Path(tmp) / "numba-cache")}
        for k, model in enumerate(args.models):
            label = model if model not in results else f"{model} (again)"
            results[label] = run_command(model, ratings, Path(tmp) / f"{k}-{model}", args.extra.split(), env)
            r = results[label]
            print(
                f"{label}: whole {r['seconds']:.1f} s, train {r['train_seconds']:.1f} s, "
                f"test RMSE {r['rmse']:.4f}",
                flush=True,
            )
    times += cornac_round()
    ref = statistics.median(times)

    print(
        f"\ndefaults, ML-1M holdout90 seed 42, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.1f}; cornac MF (k=10, 25 iterations): {cornac_rmse:.4f} in {ref:.3f} s "
        f"(median of {len(times)} fits, {min(times):.3f}-{max(times):.3f})"
    )
    print("| command | whole s | train s | × cornac fit | test RMSE | bar |")
    print("|---|---:|---:|---:|---:|---|")
    for label, r in results.items():
        model = label.split()[0]
        bar = ""
        if model in BARS:
            most, secs = BARS[model]
            ok = r["rmse"] <= most and (secs is None or r["train_seconds"] <= secs)
            bar = f"≤ {most}" + (f" in ≤ {secs:.0f} s" if secs else "")
            if model == "mf":
                ok = ok and r["seconds"] / ref <= MF_RATIO_BAR
                bar += f", ≤ {MF_RATIO_BAR:.0f}×"
            bar += " ✓" if ok else " ✗"
        print(
            f"| `--model {label}` | {r['seconds']:.1f} | {r['train_seconds']:.1f} | "
            f"{r['seconds'] / ref:.1f} | {r['rmse']:.4f} | {bar} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"cornac": times, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
