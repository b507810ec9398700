"""The neural model family on its benchmark protocols (issue "neural model family").

    REELREC_DATA_HOME=../shared/data python benchmarks/neural.py                 # everything
    REELREC_DATA_HOME=../shared/data python benchmarks/neural.py --only seed001  # one part

Parts:
  presets  seed000, seed001, seed002, seed003, seed004: each seed notebook's own protocol, with
           the notebook's network beside reelrec's best configuration (`reelrec experiment --preset`;
           seed003's candidates, chosen by validation accuracy: benchmarks/seed003_accuracy.py);
  ml1m     benchmarks/experiments/ml1m-neural.toml: MF, MLP, NeuMF and hybrid (user features) on
           ML-1M holdout90 (test RMSE, s/epoch, train seconds);
  cold     benchmarks/experiments/ml100k-cold.toml: items with no training ratings (cold-items split):
           hybrid vs the global mean and the bias baseline.
  ml1m-mlp-mf  the MLP started from a trained MF run (`--param pretrained_mf=RUN`) on ML-1M holdout90:
           MF trained on the training part only (early-stopped on the validation part, no refit),
           then the MLP from its factors (early-stopped on the same validation part, refit on
           train+validation); its time includes the MF run's.
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
    "ml1m-mlp-mf": ("function", "mlp_from_mf"),
}

#: the MLP of the ml1m-mlp-mf part (chosen on the validation part)
MLP_FROM_MF = {
    "embedding_size": 128,
    "hidden": [64],
    "inputs": "concat_product",
    "user_reg": 0.2,
    "item_reg": 0.03,
    "reg_alpha": 0.5,
    "embedding_dropout": 0.1,
}
MLP_FROM_MF_TRAIN = {"epochs": 20, "batch_size": 4096, "learning_rate": 1e-4, "patience": 3, "refit": True}


def mlp_from_mf(out: Path) -> str:
    """Train MF (train part only), then the MLP from its factors; a markdown table of both."""
    import os

    from reelrec.data.split import make_split
    from reelrec.data.tabular import load_ratings
    from reelrec.evaluation.protocols import evaluate_ratings
    from reelrec.models.registry import model_class
    from reelrec.recommender import Recommender
    from reelrec.training.trainer import TrainConfig

    data = Path(os.environ.get("REELREC_DATA_HOME", HERE.parent.parent / "shared" / "data"))
    ds = load_ratings(data / "ml-1m-ratings" / "ratings.csv", name="ml-1m")
    split = make_split(ds, "holdout90", seed=42, valid_fraction=0.05)
    rows = []
    mf_cfg = TrainConfig(**{**model_class("mf").default_train, "refit": False})
    mf = Recommender.train("mf", split.train, split.valid, train_config=mf_cfg, seed=42)
    mf.save(str(out / "mf"), overwrite=True)
    rows.append(("mf (train part only)", mf, evaluate_ratings(mf, split.test), mf.train_result.seconds))
    params = {**MLP_FROM_MF, "pretrained_mf": str(out / "mf")}
    mlp = Recommender.train(
        "mlp",
        split.train,
        split.valid,
        model_params=params,
        train_config=TrainConfig(**MLP_FROM_MF_TRAIN),
        seed=42,
    )
    seconds = mlp.train_result.seconds + mf.train_result.seconds
    rows.append(("mlp from mf", mlp, evaluate_ratings(mlp, split.test), seconds))
    lines = [
        "ML-1M holdout90 (seed 42), MLP started from MF:",
        "",
        "| run | best epoch | valid RMSE | test RMSE | test MAE | train s (incl. MF) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, rec, test, secs in rows:
        r = rec.train_result
        rmse, mae = test["rmse"], test["mae"]
        lines.append(
            f"| {name} | {r.best_epoch} | {r.best_valid:.4f} | {rmse:.4f} | {mae:.4f} | {secs:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text, encoding="utf-8")
    return text


def main() -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--only", action="append", choices=sorted(PARTS))
    parser.add_argument("--out", default=str(HERE / "results" / "neural"))
    args = parser.parse_args()
    from reelrec.experiment import load_spec, preset_names, run_experiment

    for name in args.only or list(PARTS):
        kind, ref = PARTS[name]
        if kind == "function":
            start = time.perf_counter()
            print(globals()[ref](Path(args.out) / name))
            print(f"({name}: {time.perf_counter() - start:.0f} s)\n", flush=True)
            continue
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
