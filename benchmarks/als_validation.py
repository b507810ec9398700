"""How ALS's defaults were chosen: validation RMSE only (the test part is never read).

    REELREC_DATA_HOME=../shared/data python benchmarks/als_validation.py
    python benchmarks/als_validation.py --grid embedding_size=16,32 --grid reg=0.1   # any grid

ML-1M holdout90 (seed 42): ALS is fitted on the training part without its 5% validation carve
and scored on that carve (RMSE, clipped) after every sweep. Each grid point reports its best
validation RMSE and the sweep it came at; then the exact mean of ``--members`` fits of the
default model (seeds 42, 43, ...: what ``refit_models`` averages) at ``--sweeps`` sweeps.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import load  # noqa: E402  (the benchmarks folder is not a package)

DEFAULT_GRID = {"embedding_size": [8, 16, 32], "reg": [0.07, 0.1, 0.13]}


def fit_and_score(params: dict[str, Any], train: Any, valid: Any, sweeps: int, seed: int) -> list[np.ndarray]:
    """The validation predictions after every sweep of one ALS fit."""
    import torch

    from reelrec.models.als import ALS, ALSConfig
    from reelrec.training import TrainConfig, Trainer
    from reelrec.training.seeding import seeded

    with seeded(seed):  # ALS's random start
        model = ALS(train.n_users, train.n_items, ALSConfig(**params))
        users, items = torch.as_tensor(valid.user_index), torch.as_tensor(valid.item_index)
        preds: list[np.ndarray] = []

        def score(epoch: int, record: dict[str, float]) -> None:
            with torch.no_grad():
                preds.append(model(users, items).clamp(train.scale.low, train.scale.high).double().numpy())

        Trainer(TrainConfig(epochs=sweeps, patience=0), seed=seed, device="cpu", on_epoch=score).fit(
            model, train
        )
    return preds


def value(text: str) -> Any:
    return json.loads(text) if text[:1].isdigit() or text[:1] in "-[{" else text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", action="append", metavar="KEY=V1,V2", help="an ALSConfig field and its values")
    ap.add_argument("--sweeps", type=int, default=12)
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from reelrec.data.split import make_split

    torch.set_num_threads(args.threads)
    grid = DEFAULT_GRID
    if args.grid:
        grid = {k: [value(v) for v in vs.split(",")] for k, vs in (g.split("=", 1) for g in args.grid)}
    ds = load("ml-1m-ratings")
    split = make_split(ds, "holdout90", seed=42, valid_fraction=0.05)
    train, valid = split.train, split.valid
    truth = valid.rating.astype(np.float64)

    def rmse(pred: np.ndarray) -> float:
        return float(np.sqrt(np.mean((pred - truth) ** 2)))

    print("| settings | best valid RMSE | at sweep | seconds |")
    print("|---|---:|---:|---:|")
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        start = time.perf_counter()
        scores = [rmse(p) for p in fit_and_score(params, train, valid, args.sweeps, 42)]
        best = int(np.argmin(scores))
        text = ", ".join(f"{k}={v}" for k, v in params.items())
        print(f"| {text} | {scores[best]:.4f} | {best + 1} | {time.perf_counter() - start:.1f} |", flush=True)

    runs = [fit_and_score({}, train, valid, args.sweeps, 42 + m)[-1] for m in range(args.members)]
    singles = ", ".join(f"{rmse(r):.4f}" for r in runs)
    print(
        f"\ndefaults, {args.sweeps} sweeps: single fits {singles}; exact mean of {args.members}: "
        f"{rmse(np.mean(runs, axis=0)):.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
