"""The neural model family on its benchmark protocols (issue "neural model family").

    REELREC_DATA_HOME=../shared/data python benchmarks/neural.py                 # everything
    REELREC_DATA_HOME=../shared/data python benchmarks/neural.py --only seed001  # one part

Parts:
  presets  seed000, seed001, seed002, seed003, seed004: each seed notebook's own protocol, with
           the notebook's network beside reelrec's best configuration (`reelrec experiment --preset`);
  ml1m     benchmarks/experiments/ml1m-neural.toml: MF, MLP, NeuMF and hybrid (user features) on
           ML-1M holdout90 (test RMSE, s/epoch, train seconds);
  cold     benchmarks/experiments/ml100k-cold.toml: items with no training ratings (cold-items split):
           hybrid vs the global mean and the bias baseline.
Each part writes results.md/results.csv and PNGs under --out (default benchmarks/results/neural/).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = {
    "seed000": ("preset", "seed000"),
    "seed001": ("preset", "seed001"),
    "seed002": ("preset", "seed002"),
    "seed003": ("preset", "seed003"),
    "seed004": ("preset", "seed004"),
    "ml1m": ("file", HERE / "experiments" / "ml1m-neural.toml"),
    "cold": ("file", HERE / "experiments" / "ml100k-cold.toml"),
}


def main() -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--only", action="append", choices=sorted(PARTS))
    parser.add_argument("--out", default=str(HERE / "results" / "neural"))
    args = parser.parse_args()
    from reelrec.experiment import load_spec, preset_names, run_experiment

    for name in args.only or list(PARTS):
        kind, ref = PARTS[name]
        if kind == "preset" and ref not in preset_names():
            print(f"{name}: preset not available", file=sys.stderr)
            continue
        spec = load_spec(ref, preset=kind == "preset")
        start = time.perf_counter()
        run_experiment(spec, Path(args.out) / spec.name)
        print((Path(args.out) / spec.name / "results.md").read_text(encoding="utf-8"))
        print(f"({spec.name}: {time.perf_counter() - start:.0f} s)\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "src"))
    sys.exit(main())
