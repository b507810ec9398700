"""Time to accuracy: test RMSE against fit seconds on ML-1M holdout90, reelrec beside its peers.

    pip install -e ".[bench]"       # cornac, scikit-surprise
    REELREC_DATA_HOME=../shared/data python benchmarks/speed.py --plot docs/img/speed-ml1m.png

Every method is fitted on the split's whole training part (train + reelrec's 5% validation
carve, as in benchmarks/peers.py; seed 42) and scored on the test part (RMSE, predictions clipped
to the rating scale; a test pair with an unseen user or movie gets each library's own fallback,
as in peers.py). Only fitting is timed: loading, conversion to each library's data structure and
scoring are not. Curves:

* reelrec ALS (``--model als``'s model defaults): ``--members`` fits of ``--sweeps`` sweeps
  (seeds 42, 43, ...); a Trainer callback scores the test part after every sweep and its own time
  is subtracted, so the point at sweep ``s`` is the fit time of an ALS stopped after ``s`` sweeps
  (setup included). "one fit": seed 42's RMSE at the median time of the fits; "mean of N fits":
  the RMSE of the members' mean prediction (what ``ALS.average`` merges the recipe's refits into)
  at the sum of their times;
* reelrec MF (``--model mf``'s model and optimiser defaults, one model, no early stopping, no
  refit): the same per-epoch callback over ``--mf-epochs`` epochs;
* cornac MF (peers.py's settings: k=10, lr 0.01, lambda 0.02) and Surprise SVD (defaults): one
  fit from scratch per point, ``max_iter`` / ``n_epochs`` in ``--cornac-iters`` / ``--svd-epochs``
  (their documented settings are 25 and 20).

The reference is cornac MF at its documented ``max_iter=25``: its fit time (median of
``--repeats`` fits) and test RMSE. Reported for each curve: the fit time at which it first reaches
that RMSE and the ratio to cornac's time; the best RMSE and its time. Single points: the whole
``reelrec train`` recipes (``Recommender.train`` with validation, early stopping and refit) of
ALS and (with ``--mf-recipe``) MF.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import cornac_dataset, frames, load  # noqa: E402  (the benchmarks folder is not a package)

Curve = list[tuple[float, float]]  # (fit seconds, test RMSE) per point


def rmse(pred: np.ndarray, truth: np.ndarray, scale: tuple[float, float]) -> float:
    return float(np.sqrt(np.mean((np.clip(pred, *scale) - truth) ** 2)))


# ---------------------------------------------------------------------- reelrec
def reelrec_curve(
    name: str,
    params: dict[str, Any],
    epochs: int,
    train: Any,
    test: Any,
    train_cfg: dict[str, Any],
    seed: int = 42,
) -> list[tuple[float, np.ndarray]]:
    """The test predictions after every epoch/sweep of one fit, with the fit time so far (the
    scoring inside the callback excluded)."""
    from reelrec.models.registry import build_model
    from reelrec.recommender import Recommender
    from reelrec.training import TrainConfig, Trainer
    from reelrec.training.seeding import seeded

    with seeded(seed):  # the model's initialisation and its own draws while training
        model = build_model(name, train.n_users, train.n_items, params, train=train)
        rec = Recommender.from_training(model, train)  # wraps the very model the Trainer updates in place
        users, items = test.users.ids[test.user_index], test.items.ids[test.item_index]
        points: list[tuple[float, np.ndarray]] = []
        outside = 0.0  # seconds spent scoring inside the callback

        def score(epoch: int, record: dict[str, float]) -> None:
            nonlocal outside
            t0 = time.perf_counter()
            points.append((t0 - start - outside, np.asarray(rec.predict(users, items), dtype=np.float64)))
            model.train()
            outside += time.perf_counter() - t0

        cfg = TrainConfig(**{**train_cfg, "epochs": epochs, "patience": 0, "refit": False, "refit_models": 1})
        start = time.perf_counter()
        Trainer(cfg, seed=seed, device="cpu", on_epoch=score).fit(model, train)
    return points


def reelrec_recipe(name: str, split: Any) -> tuple[float, float]:
    """(seconds, test RMSE) of ``Recommender.train`` with the model's defaults: what ``reelrec
    train --model NAME`` does (validation, early stopping, refit)."""
    from reelrec.evaluation.protocols import evaluate_ratings
    from reelrec.recommender import Recommender

    start = time.perf_counter()
    rec = Recommender.train(name, split.train, split.valid, seed=42, device="cpu")
    seconds = time.perf_counter() - start
    return seconds, float(evaluate_ratings(rec, split.test)["rmse"])


# ---------------------------------------------------------------------- peers
def cornac_fitter(train_frame: Any, test_frame: Any) -> Callable[[int], tuple[float, np.ndarray]]:
    import cornac

    data = cornac_dataset(train_frame)
    u = np.array([data.uid_map.get(x, -1) for x in test_frame["user"].astype(str)])
    i = np.array([data.iid_map.get(x, -1) for x in test_frame["item"].astype(str)])
    mean = float(train_frame["rating"].mean())

    def fit(iters: int) -> tuple[float, np.ndarray]:
        model = cornac.models.MF(
            k=10, max_iter=iters, learning_rate=0.01, lambda_reg=0.02, seed=42, verbose=False
        )
        start = time.perf_counter()
        model.fit(data)
        seconds = time.perf_counter() - start
        # cornac's own score(), vectorised: mu + b_u + b_i + p_u . q_i (peers.py's fallback elsewhere)
        out = np.full(len(u), mean)
        ok = (u >= 0) & (i >= 0)
        p, q = model.u_factors[u[ok]], model.i_factors[i[ok]]
        out[ok] = model.global_mean + model.u_biases[u[ok]] + model.i_biases[i[ok]] + (p * q).sum(1)
        return seconds, out

    return fit


def surprise_fitter(train_frame: Any, test_frame: Any, scale: tuple[float, float]) -> Callable[[int], Any]:
    import surprise

    reader = surprise.Reader(rating_scale=scale)
    trainset = surprise.Dataset.load_from_df(
        train_frame[["user", "item", "rating"]], reader
    ).build_full_trainset()
    pairs = list(
        zip(
            test_frame["user"].tolist(),
            test_frame["item"].tolist(),
            test_frame["rating"].tolist(),
            strict=True,
        )
    )

    def fit(epochs: int) -> tuple[float, np.ndarray]:
        algo = surprise.SVD(n_epochs=epochs, random_state=42)
        start = time.perf_counter()
        algo.fit(trainset)
        seconds = time.perf_counter() - start
        return seconds, np.array([p.est for p in algo.test(pairs)])

    return fit


# ---------------------------------------------------------------------- summary
def first_reaching(curve: Curve, target: float) -> float | None:
    """The fit time of the first point at or below ``target`` RMSE (no interpolation)."""
    return next((s for s, r in curve if r <= target), None)


def plot(
    curves: dict[str, Curve], points: dict[str, tuple[float, float]], target: tuple[float, float], path: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for label, curve in curves.items():
        xs, ys = zip(*curve, strict=True)
        ax.plot(xs, ys, marker="o", markersize=3, label=label)
    for label, (s, r) in points.items():
        ax.scatter([s], [r], marker="*", s=120, zorder=5, label=label)
    ax.axhline(target[1], color="grey", linestyle=":", linewidth=1)
    ax.axvline(target[0], color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_ylim(0.82, 0.95)
    ax.set_xlabel("fit seconds (log scale)")
    ax.set_ylabel("test RMSE")
    ax.set_title("ML-1M holdout90 (seed 42): test RMSE against fit time; dotted: cornac MF (25 iterations)")
    ax.title.set_fontsize(9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--sweeps", type=int, default=15, help="ALS sweeps per curve")
    ap.add_argument(
        "--members", type=int, default=4, help="ALS fits (seeds 42, 43, ...) for the averaged curve"
    )
    ap.add_argument("--mf-epochs", type=int, default=20, help="MF epochs (0: no MF curve)")
    ap.add_argument("--cornac-iters", type=ints, default=ints("1,2,5,10,15,20,25,35,50"))
    ap.add_argument("--svd-epochs", type=ints, default=ints("1,2,5,10,20,30"), help="'' : no Surprise")
    ap.add_argument("--repeats", type=int, default=3, help="fits of cornac MF at 25 iterations (median time)")
    ap.add_argument("--mf-recipe", action="store_true", help="also time the whole MF recipe (1-2 min idle)")
    ap.add_argument("--plot", help="write the PNG here")
    ap.add_argument("--json", help="write the curves here")
    args = ap.parse_args()

    import torch

    from reelrec.data.split import make_split
    from reelrec.models.mf import MatrixFactorization

    torch.set_num_threads(args.threads)
    ds = load("ml-1m-ratings")
    split = make_split(ds, "holdout90", seed=42, valid_fraction=0.05)
    train = split.train.concat(split.valid)
    train_frame, test_frame = frames(split)
    truth = test_frame["rating"].to_numpy(dtype=np.float64)
    scale = (float(ds.scale.low), float(ds.scale.high))

    curves: dict[str, Curve] = {}
    points: dict[str, tuple[float, float]] = {}

    # cornac MF: the reference (median of repeated 25-iteration fits), then its curve
    cornac_fit = cornac_fitter(train_frame, test_frame)
    cornac_fit(1)  # warm-up, untimed (as for every library below)
    ref_runs = [cornac_fit(25) for _ in range(args.repeats)]
    ref_seconds = statistics.median(s for s, _ in ref_runs)
    ref_rmse = rmse(ref_runs[0][1], truth, scale)
    print(
        f"cornac MF (25 iterations): {ref_rmse:.4f} in {ref_seconds:.3f} s "
        f"(fits: {', '.join(f'{s:.3f}' for s, _ in ref_runs)})",
        flush=True,
    )
    curves["cornac MF (k=10)"] = []
    for it in args.cornac_iters:
        s, pred = (ref_seconds, ref_runs[0][1]) if it == 25 else cornac_fit(it)
        curves["cornac MF (k=10)"].append((s, rmse(pred, truth, scale)))

    # reelrec ALS: one fit per seed; the defaults' recipe averages four (refit_models = 4)
    reelrec_curve("als", {"embedding_size": 4}, 1, train, split.test, {})  # warm-up
    members = [
        reelrec_curve("als", {}, args.sweeps, train, split.test, {}, seed=42 + m) for m in range(args.members)
    ]
    curves["reelrec ALS (k=16, one fit)"] = [
        (statistics.median(run[k][0] for run in members), rmse(members[0][k][1], truth, scale))
        for k in range(args.sweeps)
    ]
    curves[f"reelrec ALS (k=16, mean of {args.members} fits)"] = [
        (
            sum(run[k][0] for run in members),
            rmse(np.mean([run[k][1] for run in members], axis=0), truth, scale),
        )
        for k in range(args.sweeps)
    ]
    for label in list(curves)[-2:]:
        print(f"{label}: " + " ".join(f"{s:.2f}s/{r:.4f}" for s, r in curves[label]), flush=True)

    # reelrec MF: the default model and optimiser, one model, per-epoch curve
    if args.mf_epochs:
        mf_train = dict(MatrixFactorization.default_train)
        label = "reelrec MF (defaults, one model)"
        curves[label] = [
            (s, rmse(pred, truth, scale))
            for s, pred in reelrec_curve("mf", {}, args.mf_epochs, train, split.test, mf_train)
        ]
        print("reelrec MF: " + " ".join(f"{s:.1f}s/{r:.4f}" for s, r in curves[label]), flush=True)

    # Surprise SVD
    try:
        svd_fit = surprise_fitter(train_frame, test_frame, scale) if args.svd_epochs else None
    except ImportError as exc:
        svd_fit = None
        print(f"surprise: not installed ({exc}); pip install -e '.[bench]'", file=sys.stderr)
    if svd_fit is not None:
        curves["Surprise SVD"] = []
        for ep in args.svd_epochs:
            s, pred = svd_fit(ep)
            curves["Surprise SVD"].append((s, rmse(pred, truth, scale)))
            print(f"surprise SVD {ep} epochs: {curves['Surprise SVD'][-1][1]:.4f} in {s:.2f} s", flush=True)

    # whole recipes
    points["reelrec train --model als (recipe)"] = reelrec_recipe("als", split)
    if args.mf_recipe:
        points["reelrec train --model mf (recipe)"] = reelrec_recipe("mf", split)

    print(
        f"\nspeed, ML-1M holdout90 seed 42, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {args.threads} torch threads; reference: cornac MF (25 iterations) "
        f"{ref_rmse:.4f} in {ref_seconds:.3f} s"
    )
    print("| method | fit s to reach cornac's RMSE | × cornac's time | best RMSE | fit s at best |")
    print("|---|---:|---:|---:|---:|")
    for label, curve in curves.items():
        reach = first_reaching(curve, ref_rmse)
        best_s, best_r = min(curve, key=lambda p: p[1])
        cells = ("not reached", "") if reach is None else (f"{reach:.3f}", f"{reach / ref_seconds:.2f}")
        print(f"| {label} | {cells[0]} | {cells[1]} | {best_r:.4f} | {best_s:.2f} |")
    for label, (s, r) in points.items():
        print(f"| {label} | {s:.2f} (whole recipe) | {s / ref_seconds:.1f} | {r:.4f} | {s:.2f} |")
    if args.plot:
        plot(curves, points, (ref_seconds, ref_rmse), args.plot)
        print(f"plot: {args.plot}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"reference": [ref_seconds, ref_rmse], "curves": curves, "points": points}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
