"""reelrec beside the libraries people pick instead, on the identical split, in one invocation.

    pip install -e ".[bench]"       # scikit-surprise, cornac, implicit (not in the core install)
    REELREC_DATA_HOME=../shared/data python benchmarks/peers.py                       # every case
    REELREC_DATA_HOME=../shared/data python benchmarks/peers.py --case ml-100k/u1 --only surprise-svd mf

Rating prediction: every model is fitted on the split's training part (reelrec carves its own
5% validation part from it for early stopping, then refits; peers use their documented
settings) and scored on the test part with RMSE/MAE, predictions clipped to the rating scale;
a test pair whose user or movie the model never saw gets the model's own fallback (Surprise:
its default; cornac: the training mean + the known side's bias where it has one, else the mean).
Reported: RMSE, MAE, fit seconds and each RMSE's ratio to reelrec's best in that case.
Splits (seed 42) are ``docs/benchmarks.md``'s: ``holdout90`` = first 10% of
``default_rng(42).permutation(n)`` as test; ``u1`` = ML-100K's shipped files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
CASES = {
    "ml-100k/u1": ("ml-100k", "u1"),
    "ml-100k/holdout90": ("ml-100k", "holdout90"),
    "ml-latest-small/holdout90": ("ml-latest-small", "holdout90"),
    "ml-1m/holdout90": ("ml-1m-ratings", "holdout90"),
}
REELREC_MODELS = ("bias", "mf", "autorec")


def load(name: str) -> Any:
    from reelrec.data.movielens import data_home, load_movielens
    from reelrec.data.tabular import load_ratings

    if name == "ml-1m-ratings":
        return load_ratings(data_home() / "ml-1m-ratings" / "ratings.csv", name="ml-1m")
    return load_movielens(name)


def frames(split: Any) -> tuple[Any, Any]:
    """Raw-id frames (user, item, rating) of the training (train + validation) and test parts."""
    train = split.train if split.valid is None else split.train.concat(split.valid)
    return train.to_frame(), split.test.to_frame()


# ---------------------------------------------------------------------- peers
def surprise_model(name: str) -> Callable[[Any, Any, tuple[float, float]], np.ndarray]:
    def run(train: Any, test: Any, scale: tuple[float, float]) -> np.ndarray:
        import surprise

        algos = {
            "surprise-svd": lambda: surprise.SVD(random_state=42),
            # the issue's "tuned" SVD: more epochs and stronger regularisation (Surprise docs' grid)
            "surprise-svd-tuned": lambda: surprise.SVD(
                n_epochs=40, lr_all=0.007, reg_all=0.08, random_state=42
            ),
            "surprise-svdpp": lambda: surprise.SVDpp(random_state=42, cache_ratings=True),
            "surprise-knnbaseline": lambda: surprise.KNNBaseline(
                sim_options={"name": "pearson_baseline", "user_based": False}, verbose=False
            ),
            "surprise-baselineonly": lambda: surprise.BaselineOnly(verbose=False),
        }
        reader = surprise.Reader(rating_scale=scale)
        data = surprise.Dataset.load_from_df(train[["user", "item", "rating"]], reader)
        algo = algos[name]()
        algo.fit(data.build_full_trainset())
        pairs = zip(test["user"].tolist(), test["item"].tolist(), test["rating"].tolist(), strict=True)
        return np.array([p.est for p in algo.test(list(pairs))])

    return run


def cornac_dataset(train: Any) -> Any:
    """A cornac Dataset of a raw-id (user, item, rating) frame (ids as strings, seed 42)."""
    import cornac

    uir = list(
        zip(
            train["user"].astype(str),
            train["item"].astype(str),
            train["rating"].astype(float),
            strict=True,
        )
    )
    return cornac.data.Dataset.from_uir(uir, seed=42)


def cornac_model(name: str) -> Callable[[Any, Any, tuple[float, float]], np.ndarray]:
    def run(train: Any, test: Any, scale: tuple[float, float]) -> np.ndarray:
        import cornac

        data = cornac_dataset(train)
        models = {
            "cornac-mf": lambda: cornac.models.MF(
                k=10, max_iter=25, learning_rate=0.01, lambda_reg=0.02, seed=42
            ),
            "cornac-pmf": lambda: cornac.models.PMF(
                k=10, max_iter=100, learning_rate=0.001, lambda_reg=0.001, seed=42
            ),
        }
        model = models[name]()
        model.fit(data)
        mean = float(train["rating"].mean())
        u = np.array([data.uid_map.get(x, -1) for x in test["user"].astype(str)])
        i = np.array([data.iid_map.get(x, -1) for x in test["item"].astype(str)])
        known = (u >= 0) & (i >= 0)
        out = np.full(len(test), mean)
        for k in np.flatnonzero(known):  # cornac scores one (user, item) at a time
            out[k] = float(model.score(int(u[k]), int(i[k])))
        return out

    return run


PEERS: dict[str, Callable[..., Any]] = {
    **{
        n: surprise_model(n)
        for n in (
            "surprise-svd",
            "surprise-svd-tuned",
            "surprise-svdpp",
            "surprise-knnbaseline",
            "surprise-baselineonly",
        )
    },
    **{n: cornac_model(n) for n in ("cornac-mf", "cornac-pmf")},
}


# ---------------------------------------------------------------------- one case
def run_case(case: str, only: list[str] | None, seed: int) -> list[dict]:
    from reelrec.data.split import make_split
    from reelrec.evaluation.metrics import mae, rmse
    from reelrec.evaluation.protocols import evaluate_ratings
    from reelrec.recommender import Recommender

    dataset, split_name = CASES[case]
    ds = load(dataset)
    split = make_split(ds, split_name, seed=seed, valid_fraction=0.05)
    train_frame, test_frame = frames(split)
    truth = test_frame["rating"].to_numpy(dtype=np.float64)
    scale = (float(ds.scale.low), float(ds.scale.high))
    rows = []
    for model in REELREC_MODELS:
        if only and model not in only:
            continue
        start = time.perf_counter()
        rec = Recommender.train(model, split.train, split.valid, seed=seed)
        seconds = time.perf_counter() - start
        test = evaluate_ratings(rec, split.test)
        rows.append(
            {
                "case": case,
                "model": f"reelrec {model}",
                "rmse": test["rmse"],
                "mae": test["mae"],
                "fit_seconds": seconds,
                "reelrec": True,
            }
        )
        print(f"  {case} reelrec {model}: {test['rmse']:.4f} ({seconds:.1f} s)", flush=True)
    for name, fn in PEERS.items():
        if only and name not in only:
            continue
        try:
            start = time.perf_counter()
            pred = np.clip(fn(train_frame, test_frame, scale), *scale)
            seconds = time.perf_counter() - start
        except ImportError as exc:
            print(f"  {name}: not installed ({exc}); pip install -e '.[bench]'", file=sys.stderr)
            continue
        rows.append(
            {
                "case": case,
                "model": name,
                "rmse": float(rmse(pred, truth)),
                "mae": float(mae(pred, truth)),
                "fit_seconds": seconds,
                "reelrec": False,
            }
        )
        print(f"  {case} {name}: {rows[-1]['rmse']:.4f} ({seconds:.1f} s)", flush=True)
    best = min((r["rmse"] for r in rows if r["reelrec"]), default=None)
    for r in rows:
        r["ratio_to_reelrec_best"] = None if best is None else r["rmse"] / best
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", action="append", choices=sorted(CASES))
    ap.add_argument("--only", nargs="*", help="model names to run (reelrec models and peers)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    rows = []
    for case in args.case or list(CASES):
        rows += run_case(case, args.only, args.seed)
    print(f"\npeers, seed {args.seed}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print("| case | model | RMSE | MAE | fit s | RMSE / reelrec best |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        ratio = "" if r["ratio_to_reelrec_best"] is None else f"{r['ratio_to_reelrec_best']:.3f}"
        cells = f"{r['rmse']:.4f} | {r['mae']:.4f} | {r['fit_seconds']:.1f} | {ratio}"
        print(f"| {r['case']} | {r['model']} | {cells} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
