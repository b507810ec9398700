"""The GPU path, ready to measure: SASRec and MF epochs on the CPU and on CUDA, same metrics.

One short script (a few minutes) to run whenever a GPU machine is at hand::

    REELREC_DATA_HOME=../shared/data python benchmarks/gpu.py [--epochs 5]

For each device (the CPU, then ``cuda`` when torch sees one): SASRec at its defaults on ML-100K
(leave-last, validated on each user's latest training interaction; bf16 autocast for the
transformer on CUDA) and MF at its defaults on ML-100K holdout90, each for ``--epochs`` epochs
from the same seed. Prints seconds per epoch (median over the epochs after the first, which
pays for warm-up), the validation metric (SASRec: 1 - NDCG@10; MF: RMSE) and the ratio CPU/GPU;
exits 1 when the GPU's metric is further from the CPU's than bf16 / kernel-order noise allows
(SASRec 0.02 of NDCG after a few epochs, MF 0.005 RMSE).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

TOLERANCE = {"sasrec": 0.02, "mf": 0.005}


def fit(model: str, split: Any, device: str, epochs: int) -> dict[str, Any]:
    from reelrec.training.recipe import recipe
    from reelrec.training.seeding import seeded
    from reelrec.training.trainer import Trainer

    plan = recipe(model, None, split.train, overrides={"epochs": epochs, "patience": 0, "refit": False})
    with seeded(0, device):
        net = plan.build(split.train)
        start = time.perf_counter()
        result = Trainer(plan.train, seed=0, device=device).fit(net, split.train, split.valid)
        total = time.perf_counter() - start
    per_epoch = [h["seconds"] for h in result.history]
    steady = per_epoch[1:] or per_epoch
    return {
        "model": model,
        "device": device,
        "epochs": len(per_epoch),
        "s_per_epoch": statistics.median(steady),
        "first_epoch_s": per_epoch[0] if per_epoch else None,
        "total_s": total,
        "valid": result.history[-1].get("valid_loss", result.history[-1].get("valid_rmse")),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=5)
    args = p.parse_args()
    if "REELREC_DATA_HOME" not in os.environ:
        p.error("set REELREC_DATA_HOME to the MovieLens folder")
    import torch

    from reelrec.data.movielens import load_movielens
    from reelrec.data.split import make_split

    ds = load_movielens("ml-100k")
    splits = {
        "sasrec": make_split(ds, "leave-last", seed=42, validation="last"),
        "mf": make_split(ds, "holdout90", seed=42),
    }
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    gpu = torch.cuda.get_device_name(0) if "cuda" in devices else "none"
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, GPU: {gpu}")
    rows = [fit(m, splits[m], d, args.epochs) for m in splits for d in devices]
    for row in rows:
        print(json.dumps(row))
    ok = True
    for model in splits:
        by = {r["device"]: r for r in rows if r["model"] == model}
        if "cuda" not in by:
            print(f"{model}: no GPU here; CPU {by['cpu']['s_per_epoch']:.2f} s/epoch")
            continue
        cpu, cuda = by["cpu"], by["cuda"]
        gap = abs(cpu["valid"] - cuda["valid"])
        ok &= gap <= TOLERANCE[model]
        print(
            f"{model}: CPU {cpu['s_per_epoch']:.3f} s/epoch, GPU {cuda['s_per_epoch']:.3f} s/epoch "
            f"({cpu['s_per_epoch'] / cuda['s_per_epoch']:.1f}x); validation {cpu['valid']:.4f} vs "
            f"{cuda['valid']:.4f} (gap {gap:.4f}, allowed {TOLERANCE[model]})"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
