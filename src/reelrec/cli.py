"""The ``reelrec`` command line.

Every subcommand validates its input at the boundary; any error a user can cause ends with
one line on stderr (``reelrec: error: ...``) and a non-zero exit, never a traceback
(``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from reelrec._defaults import LIST_NOVELTY
from reelrec._version import __version__
from reelrec.data.dataset import DEFAULT_DUPLICATES, DUPLICATE_POLICIES
from reelrec.errors import ConfigError, ReelrecError

log = logging.getLogger("reelrec")

DEMO_MARK = "demo"


# ---------------------------------------------------------------------- helpers
def _emit(args: argparse.Namespace, obj: Any, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(obj, indent=1, default=str))
    else:
        print(text)


def _parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``key=value`` strings -> dict, values parsed as JSON when they are JSON (numbers, bools)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--param {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


def _fmt_items(items: list[Any], score_label: str) -> str:
    lines = []
    for rank, it in enumerate(items, 1):
        title = it.title if it.title is not None else f"item {it.item_id}"
        year = f" ({it.year})" if it.year else ""
        genres = f"  [{', '.join(it.genres)}]" if it.genres else ""
        lines.append(f"{rank:>3}. {title}{year}  id={it.item_id}  {score_label}={it.score:.3f}{genres}")
    return "\n".join(lines) if lines else "(no items)"


def _side_data(args: argparse.Namespace) -> Any:
    from reelrec.runs.source import SideData

    return SideData(
        users=getattr(args, "users", None),
        item_info=getattr(args, "item_info", None),
        tags=getattr(args, "tags", None),
        user_id_col=getattr(args, "user_id_col", None) or "user_id",
    )


def load_dataset_from_args(args: argparse.Namespace) -> Any:
    """The Dataset named by --dataset or --ratings/--items and the column options."""
    from reelrec.runs.source import COLUMN_OPTIONS, DataSource, load_dataset

    source = DataSource(
        dataset=getattr(args, "dataset", None),
        ratings=getattr(args, "ratings", None),
        items=getattr(args, "items", None),
        columns={k: getattr(args, k) for k in COLUMN_OPTIONS if getattr(args, k, None) is not None},
        download=getattr(args, "download", False),
        cache=False if getattr(args, "no_cache", False) else None,
        duplicates=getattr(args, "duplicates", None) or DEFAULT_DUPLICATES,
        side=_side_data(args),
    )
    return load_dataset(source, args.data_home, progress=not getattr(args, "no_progress", False))


# ---------------------------------------------------------------------- commands
def cmd_datasets(args: argparse.Namespace) -> int:
    from reelrec.data.movielens import data_home, list_datasets

    rows = list_datasets(args.data_home)
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    print(f"data home: {data_home(args.data_home)}")
    for row in rows:
        mark = "present" if row["present"] else "-"
        print(f"  {row['name']:<16} {mark:<8} {row.get('description', '')}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from reelrec.data.movielens import download

    path = download(args.name, args.data_home, progress=not args.quiet, force=args.force)
    print(f"{args.name}: {path}")
    return 0


def _run_options(
    args: argparse.Namespace,
    model: str,
    *,
    quiet: bool = False,
    params_extra: dict[str, Any] | None = None,
    train_extra: dict[str, Any] | None = None,
) -> Any:
    """The run that the train options of ``args`` describe (:class:`reelrec.runs.RunOptions`)."""
    from reelrec.runs.train import TRAIN_OPTIONS, RunOptions

    params = {**(params_extra or {}), **_parse_params(getattr(args, "param", None))}
    for key in ("embedding_size", "reg"):
        if getattr(args, key, None) is not None:
            params[key] = getattr(args, key)
    for key in ("user_features", "item_features"):
        if getattr(args, key, None) is not None:
            params[key] = [v.strip() for v in getattr(args, key).split(",") if v.strip()]
    train = {k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k, None) is not None}
    return RunOptions(
        model=model,
        params=params,
        train={**(train_extra or {}), **train},
        split=args.split,
        seed=args.seed,
        valid_fraction=args.valid_fraction,
        protocol=getattr(args, "protocol", None),
        side=_side_data(args),
        device=args.device,
        progress=not quiet and not getattr(args, "no_progress", False),
    )


def _announce(ds: Any, split: Any) -> None:
    print(ds.describe())
    parts = [f"train {len(split.train):,}"]
    if split.valid is not None:
        parts.append(f"valid {len(split.valid):,}")
    if split.test is not None:
        parts.append(f"test {len(split.test):,}")
    print(f"split {split.name}: " + ", ".join(parts))


def _train_and_save(
    args: argparse.Namespace, ds: Any, model: str, out: str | None, *, quiet: bool = False, **kwargs: Any
) -> tuple[Any, dict[str, Any]]:
    """The run ``args`` describe, trained on ``ds`` (:func:`reelrec.runs.new_run`); ``kwargs``:
    ``overwrite``, ``record_extra``."""
    from reelrec.runs.train import new_run

    options = _run_options(args, model, quiet=quiet)
    return new_run(ds, options, out=out, announce=None if quiet else _announce, **kwargs)


def _metrics_text(metrics: dict[str, Any]) -> str:
    parts = []
    if "epochs" in metrics:
        parts.append(f"epochs {metrics['epochs']} (best {metrics.get('best_epoch')})")
    parts.append(f"train {metrics['train_seconds']:.1f}s")
    if "valid_rmse" in metrics:
        parts.append(f"valid RMSE {metrics['valid_rmse']:.4f}")
    test = metrics.get("test")
    if test:
        parts.append(f"test RMSE {test['rmse']:.4f}  MAE {test['mae']:.4f}")
    rank = metrics.get("test_ranking")
    if rank:
        shown = [("NDCG@10", "ndcg@10"), ("Recall@20", "recall@20"), ("HR@10", "hr@10")]
        text = "  ".join(f"{label} {rank[key]:.4f}" for label, key in shown if key in rank)
        parts.append(f"{rank['protocol']}: {text}" if "protocol" in rank else text)
    return ", ".join(parts)


def _launch_ranks(args: argparse.Namespace) -> int:
    """``reelrec train --nproc N``: the same command as N local ranks under torchrun."""
    argv = list(args.argv)
    for i, token in enumerate(argv):  # drop --nproc N / --nproc=N
        if token == "--nproc":
            del argv[i : i + 2]
            break
        if token.startswith("--nproc="):
            del argv[i]
            break
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}"]
    cmd += ["-m", "reelrec", *argv]
    log.info("launching %s", " ".join(cmd))
    import subprocess

    return subprocess.run(cmd, check=False).returncode


def cmd_train(args: argparse.Namespace) -> int:
    from reelrec.artifacts import check_target
    from reelrec.training.distributed import current

    if args.nproc is not None and args.nproc < 1:
        raise ConfigError(f"--nproc must be at least 1 (got {args.nproc})")
    if (args.nproc or 1) > 1 and current() is None:
        return _launch_ranks(args)
    ctx = current()
    main_rank = ctx is None or ctx.is_main
    check_target(args.out, args.overwrite)  # fail before a long training, not after
    ds = load_dataset_from_args(args)
    start = time.perf_counter()
    # every rank trains; only rank 0 prints and writes the run
    _, metrics = _train_and_save(
        args,
        ds,
        args.model,
        args.out if main_rank else None,
        overwrite=args.overwrite,
        quiet=args.json or not main_rank,
    )
    metrics["wall_seconds"] = round(time.perf_counter() - start, 3)
    if ctx is not None:
        metrics["ranks"] = ctx.world
    if main_rank:
        _emit(args, metrics, f"{args.model}: {_metrics_text(metrics)}\nsaved run: {args.out}")
    return 0


def _fmt4(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def cmd_tune(args: argparse.Namespace) -> int:
    from reelrec.runs.tune import tune_run
    from reelrec.safeio import prepare_output_dir
    from reelrec.tune import TUNE_NAMES, load_space

    out = prepare_output_dir(args.out, command="tune", owned=TUNE_NAMES, overwrite=args.overwrite)
    space = load_space(args.space) if args.space else None  # fail before loading data
    ds = load_dataset_from_args(args)

    def on_start(ds: Any, split: Any) -> None:
        print(
            f"tuning {args.model} on {ds.name} {split.name}: validation {len(split.valid):,} ratings, "
            f"at most {args.trials} trials / {args.timeout:g} s"
        )

    result, summary = tune_run(
        ds,
        _run_options(args, args.model, quiet=args.json),
        out,
        space=space,
        n_trials=args.trials,
        timeout=args.timeout,
        max_epochs=args.max_epochs,
        on_start=None if args.json else on_start,
        announce=None if args.json else _announce,
    )
    metrics = summary["final"]
    text = (
        f"{summary['trials']} trials in {result.seconds:.0f} s ({summary['complete']} complete, "
        f"{summary['pruned']} pruned, {summary['failed']} failed)\n"
        f"validation RMSE: default {_fmt4(result.default_value)} -> best {result.best_value:.4f}\n"
        f"best: {json.dumps(result.best_params)} {json.dumps(result.best_train)}\n"
        f"final run ({_metrics_text(metrics)}) saved to {out / 'run'}; trials in {out / 'trials.csv'}"
    )
    _emit(args, summary, text)
    return 0


def cmd_blend(args: argparse.Namespace) -> int:
    from reelrec.blend import blend_runs

    _, metrics = blend_runs(args.runs, args.out, data_home=args.data_home, overwrite=args.overwrite)
    lines = [f"{'run':<40} {'model':<10} {'weight':>8} {'valid RMSE':>11} {'test RMSE':>10}"]
    tests = metrics.get("members_test_rmse") or [None] * len(metrics["members"])
    for m, t in zip(metrics["members"], tests, strict=True):
        shown = f"{t:.4f}" if t is not None else "-"
        lines.append(
            f"{m['run']:<40} {m['model']:<10} {m['weight']:>8.3f} {m['valid_rmse']:>11.4f} {shown:>10}"
        )
    test = metrics.get("test", {}).get("rmse")
    lines.append(
        f"{'blend':<40} {'':<10} {'':>8} {metrics['valid_rmse']:>11.4f} "
        f"{(f'{test:.4f}' if test is not None else '-'):>10}\nsaved run: {args.out}"
    )
    _emit(args, metrics, "\n".join(lines))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from reelrec.runs.evaluate import evaluate_run

    result = evaluate_run(args.run_dir, protocol=args.protocol, data_home=args.data_home)
    metrics, name = result.metrics, result.rec.name
    lines = [f"{name} on {result.dataset} ({result.split}, {result.n_test:,} test ratings)"]
    if "rmse" in metrics:
        lines.append(
            f"  RMSE {metrics['rmse']:.4f}  MAE {metrics['mae']:.4f}"
            f"  (fallback used for {metrics['n_fallback']} pairs)"
        )
    if result.protocol:
        lines.append(f"  protocol {result.protocol}")
    lines += [f"  {k:<22} {v:.4f}" for k, v in metrics["ranking"].items() if isinstance(v, float)]
    _emit(args, metrics, "\n".join(lines))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from reelrec.runs.predict import predict_file

    n, n_nan, dest = predict_file(
        args.run_dir, args.pairs, args.out, unknown=args.unknown, overwrite=args.overwrite
    )
    print(f"wrote {n:,} predictions to {dest}" + (f" ({n_nan} unknown -> empty)" if n_nan else ""))
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from reelrec.recommender import Recommender

    rec = Recommender.load(args.run_dir)
    if args.user is None:  # a new user, described by --rate MOVIE=RATING
        ratings: dict[str, float] = {}
        for pair in args.rate or []:
            movie, sep, value = pair.partition("=")
            if movie.strip() in ratings:
                raise ConfigError(
                    f"--rate: movie {movie.strip()!r} is rated twice; give one rating per movie"
                )
            try:
                ratings[movie.strip()] = float(value)
            except ValueError:
                raise ConfigError(f"--rate {pair!r}: expected MOVIE_ID=RATING") from None
            if not sep:
                raise ConfigError(f"--rate {pair!r}: expected MOVIE_ID=RATING")
        items = rec.recommend_for_ratings(ratings, n=args.n, novelty=args.novelty)
        who = (
            f"a new user with {len(ratings)} ratings" if ratings else "a new user (no ratings: most popular)"
        )
        label = "predicted" if ratings else "count"
        user_json: Any = None
    else:
        items = rec.recommend(args.user, n=args.n, exclude_seen=not args.include_seen, novelty=args.novelty)
        who = f"user {args.user}"
        label = (
            # rating models show predicted ratings; popularity its training counts; ranking models scores
            "predicted" if rec.model.ranks_by_rating else "count" if rec.model.predicts_ratings else "score"
        )
        user_json = args.user
    _emit(
        args,
        {"user_id": user_json, "model": rec.name, "items": [i.to_json() for i in items]},
        f"top {len(items)} for {who} ({rec.name}):\n" + _fmt_items(items, label),
    )
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    from reelrec.recommender import Recommender

    rec = Recommender.load(args.run_dir)
    items = rec.similar_items(args.movie, n=args.n)
    _emit(
        args,
        {"item_id": args.movie, "items": [i.to_json() for i in items]},
        f"{len(items)} movies most similar to {args.movie}:\n" + _fmt_items(items, "cosine"),
    )
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from reelrec.experiment import load_spec, preset_names, run_experiment

    if args.list_presets:
        print("\n".join(preset_names()))
        return 0
    specs = [load_spec(p) for p in args.configs] + [load_spec(p, preset=True) for p in args.preset or []]
    if not specs:
        raise ConfigError("give one or more experiment files, or --preset NAME (see --list-presets)")
    for spec in specs:
        out = Path(args.out) / spec.name if len(specs) > 1 or args.out is None else Path(args.out)
        if args.out is None:
            out = Path("experiments") / spec.name
        print(f"experiment {spec.name}: {len(spec.runs)} runs x {len(spec.data.seeds)} seeds -> {out}")
        rows = run_experiment(
            spec,
            out,
            data_home=args.data_home,
            device=args.device,
            progress=not args.no_progress,
            save_runs=args.save_runs,
        )
        print((out / "results.md").read_text(encoding="utf-8"))
        if args.json:
            print(json.dumps(rows, indent=1, default=str))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from reelrec.plots import plot_run

    paths = plot_run(args.run_dir, args.out, tsne=args.tsne)
    if not paths:
        text = f"{args.run_dir}: nothing to plot (no per-epoch history and no movie embeddings)"
    else:
        text = "\n".join(f"wrote {p}" for p in paths)
    _emit(args, {"run": str(args.run_dir), "files": [str(p) for p in paths]}, text)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from reelrec.data.movielens import load_movielens

    print(f"reelrec {__version__} demo: MovieLens 100K, holdout90, seed {args.seed}")
    ds = load_movielens("ml-100k", data_home=args.data_home, download=True, progress=True)
    out = Path(args.out)
    overwrite = False
    if out.exists() and any(out.iterdir()):
        cfg = out / "config.json"
        try:
            created_by = json.loads(cfg.read_text(encoding="utf-8")).get("created_by")
        except (OSError, ValueError, AttributeError):
            created_by = None
        if created_by == DEMO_MARK:
            overwrite = True  # a previous demo run: replace it
        else:
            raise ConfigError(
                f"{out} already holds files that are not a demo run; pass --out to another folder"
            )
    args.split, args.valid_fraction = "holdout90", 0.05
    _, base = _train_and_save(args, ds, "bias", None, quiet=True)
    rec, mf = _train_and_save(
        args, ds, "mf", str(out), record_extra={"created_by": DEMO_MARK}, overwrite=overwrite
    )
    print(f"bias baseline: test RMSE {base['test']['rmse']:.4f}")
    print(f"matrix factorisation: {_metrics_text(mf)}")
    user = rec.users.ids[0].item() if args.user is None else args.user
    items = rec.recommend(user, n=10, novelty=LIST_NOVELTY)
    print(f"\ntop 10 unwatched movies for user {user}:\n" + _fmt_items(items, "predicted"))
    print(
        f"\nsaved run: {out}   (try: reelrec recommend {out} --user {user}; reelrec similar {out} --movie 50;"
        f" reelrec serve {out})"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    try:
        from reelrec.service.store import default_store_url
        from reelrec.service.workers import ServeConfig, default_workers, serve
    except ImportError as exc:  # pragma: no cover - the service deps are core dependencies
        raise ConfigError(f"the service needs FastAPI and uvicorn ({exc}); reinstall reelrec") from None
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be 1..65535, got {args.port}")
    workers = default_workers() if args.workers is None else args.workers
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    token = args.admin_token or os.environ.get("REELREC_ADMIN_TOKEN") or None
    store = args.store or default_store_url(args.run_dir)
    config = ServeConfig(run_dir=args.run_dir, store=store, ann=args.ann, threads=max(1, args.threads))
    serve(
        config,
        workers=workers,
        admin_token=token,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
    )
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from reelrec.service.retrain import retrain
    from reelrec.service.store import default_store_url

    store = args.store or default_store_url(args.run_dir)
    start = time.perf_counter()
    _, metrics = retrain(
        args.run_dir,
        store,
        args.out,
        data_home=args.data_home,
        device=args.device,
        progress=not args.no_progress and not args.json,
        overwrite=args.overwrite,
    )
    metrics["wall_seconds"] = round(time.perf_counter() - start, 3)
    text = (
        f"{metrics['model']}: {metrics['stored_ratings']} stored ratings from {metrics['stored_profiles']} "
        f"profiles added; {_metrics_text(metrics)}\nsaved run: {args.out}"
    )
    _emit(args, metrics, text)
    return 0


# ---------------------------------------------------------------------- parser
def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-home", default=None, help="where MovieLens lives (default: $REELREC_DATA_HOME or cache)"
    )


def _add_train_options(p: argparse.ArgumentParser, with_split: bool = True) -> None:
    if with_split:
        p.add_argument(
            "--split",
            default=None,
            help="holdout90 (default), holdoutNN, cvN:K, temporal, leave-last, u1..u5, ua, ub, none",
        )
        p.add_argument(
            "--protocol",
            choices=["loo-sampled", "loo-full", "temporal-full"],
            help="top-N protocol of the benchmark guide: picks its split (leave-last or temporal) and "
            "evaluates with it (default: loo-full for leave-last, temporal-full for temporal)",
        )
        p.add_argument(
            "--valid-fraction",
            type=float,
            default=0.05,
            help="part of the training data held out for early stopping (0: none)",
        )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", "--lr", type=float, dest="learning_rate")
    p.add_argument("--optimizer", choices=["adam", "adamw", "adamax", "sgd", "adagrad", "sparse_adam"])
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--lr-schedule", choices=["constant", "cosine", "step", "plateau"])
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: off)")
    p.add_argument(
        "--row-sparse",
        choices=["auto", "on", "off"],
        help="step only the embedding rows a batch touches (auto: when the tables exceed 4 batches)",
    )
    p.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after early stopping, retrain on train+validation for the best epoch count (mf: on)",
    )
    p.add_argument(
        "--refit-models",
        type=int,
        metavar="N",
        help="with --refit, retrain N differently seeded models and average them (mf: 2, merged into one MF)",
    )
    p.add_argument("--embedding-size", type=int, help="factors per user/movie (mf)")
    p.add_argument("--reg", type=float, help="L2 weight on the factors (mf)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="any other model hyperparameter")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    _add_threads_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads for training and scoring (default: the cores idle when the command starts)",
    )


def _add_source_options(p: argparse.ArgumentParser) -> None:
    """--dataset | --ratings and the column, side-data and feature options of train/tune."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a MovieLens name (see `reelrec datasets`) or an extracted folder")
    src.add_argument("--ratings", help="any ratings file: CSV, TSV or Parquet")
    p.add_argument("--items", help="item file with titles/genres (with --ratings)")
    p.add_argument("--user-col", help="user column of --ratings (default: user_id, userId, user)")
    p.add_argument("--item-col", help="item column of --ratings (default: item_id, movieId, item)")
    p.add_argument("--rating-col", help="rating column of --ratings (default: rating)")
    p.add_argument("--timestamp-col", help="timestamp column of --ratings (optional)")
    p.add_argument("--sep", help="field separator of --ratings (default: sniffed)")
    p.add_argument("--download", action="store_true", help="download the MovieLens archive if missing")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="read the ratings file itself, not its array cache (.reelrec-cache/ beside it), and "
        "write no cache (or set REELREC_NO_CACHE=1)",
    )
    p.add_argument(
        "--duplicates",
        choices=DUPLICATE_POLICIES,
        default=DEFAULT_DUPLICATES,
        help="a (user, movie) pair rated more than once: refuse the file (error), keep the latest "
        f"rating (last) or their average (mean), before the split (default: {DEFAULT_DUPLICATES})",
    )
    p.add_argument(
        "--users", help="user table for side features: CSV/TSV/Parquet, u.user, users.dat or a name"
    )
    p.add_argument("--user-id-col", default="user_id", help="user id column of --users")
    p.add_argument(
        "--item-info", help="extra item columns for side features (CSV/TSV/Parquet with an item id)"
    )
    p.add_argument(
        "--tags",
        type=int,
        nargs="?",
        const=100,
        metavar="N",
        help="add each movie's top-N tags (ml-latest*) as an item feature",
    )
    p.add_argument(
        "--user-features",
        help="hybrid: COL or COL=KIND,... (categorical, numeric, multihot[:SEP], "
        "prefix:N); '' for none; default: every informative column",
    )
    p.add_argument("--item-features", help="hybrid: as --user-features; default: genres, year, tags")


def build_parser() -> argparse.ArgumentParser:
    from reelrec.models.registry import MODELS

    parser = argparse.ArgumentParser(prog="reelrec", description="Neural-network movie recommender.")
    parser.add_argument("--version", action="version", version=f"reelrec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("datasets", help="list the MovieLens datasets and which are present")
    _add_data_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("download", help="download and unpack a MovieLens archive (sha256-checked)")
    p.add_argument("name")
    _add_data_options(p)
    p.add_argument("--force", action="store_true", help="download again even if present")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("train", help="train a model and save a run directory")
    _add_source_options(p)
    p.add_argument("--model", default="mf", choices=sorted(MODELS))
    _add_train_options(p)
    _add_data_options(p)
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train data-parallel in N local processes (torchrun; see docs/scaling.md)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", help="search hyperparameters on validation data (Optuna), then train the best")
    _add_source_options(p)
    p.add_argument("--model", default="mf", choices=sorted(MODELS))
    _add_train_options(p)
    _add_data_options(p)
    p.add_argument("--trials", type=int, default=100, help="at most this many trials (default 100)")
    p.add_argument("--timeout", type=float, default=1800, help="search budget in seconds (default 1800)")
    p.add_argument("--space", help="search space TOML ([model] and [train] tables; default: built in)")
    p.add_argument("--max-epochs", type=int, help="cap on each trial's epochs")
    p.add_argument("--out", required=True, help="folder for trials.csv/json, best.json and the run")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("blend", help="blend saved rating runs, weights fitted on their validation part")
    p.add_argument("runs", nargs="+", help="run directories trained on the same split with --no-refit")
    p.add_argument("--out", required=True, help="the blend's run directory")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json", action="store_true")
    _add_data_options(p)
    _add_threads_option(p)
    p.set_defaults(func=cmd_blend)

    p = sub.add_parser("evaluate", help="metrics of a saved run on its test split")
    p.add_argument("run_dir")
    p.add_argument(
        "--protocol",
        choices=["loo-sampled", "loo-full", "temporal-full"],
        help="top-N protocol (must fit the run's split; default: the run's own, else full ranking)",
    )
    _add_data_options(p)
    p.add_argument("--json", action="store_true")
    _add_threads_option(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict ratings for a CSV of user_id,item_id pairs")
    p.add_argument("run_dir")
    p.add_argument("--pairs", required=True, help="CSV with columns user_id,item_id")
    p.add_argument("--out", required=True, help="CSV to write: user_id,item_id,prediction")
    p.add_argument(
        "--unknown",
        choices=["fallback", "nan", "error"],
        default="fallback",
        help="unknown user/movie: bias-baseline fallback (default), empty, or an error",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it is an existing file")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("recommend", help="top-n unwatched movies for a user")
    p.add_argument("run_dir")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a user of the training data")
    who.add_argument(
        "--rate",
        action="append",
        metavar="MOVIE=RATING",
        help="a new user's rating (repeatable; folded in without retraining)",
    )
    p.add_argument("-n", type=int, default=10)
    p.add_argument("--include-seen", action="store_true", help="also rank movies the user already rated")
    p.add_argument(
        "--novelty",
        type=float,
        default=LIST_NOVELTY,
        help=f"re-rank against popularity: >0 favours less-watched movies, <0 the mainstream, 0 = the "
        f"model's ranking as it is (default {LIST_NOVELTY:g}, a light popularity prior)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("similar", help="movies with the most similar embeddings")
    p.add_argument("run_dir")
    p.add_argument("--movie", required=True)
    p.add_argument("-n", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_similar)

    p = sub.add_parser("experiment", help="train several configurations and compare them (table + plots)")
    p.add_argument("configs", nargs="*", help="experiment TOML files")
    p.add_argument("--preset", action="append", help="a packaged preset (seed000, seed001, ...)")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    p.add_argument("--out", help="output folder (default: experiments/NAME)")
    p.add_argument("--save-runs", action="store_true", help="also save every trained run directory")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true")
    _add_data_options(p)
    _add_threads_option(p)
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("plot", help="learning curves and movie-embedding maps of a saved run, as PNGs")
    p.add_argument("run_dir")
    p.add_argument("--out", help="folder for the PNGs (default: RUN_DIR/plots)")
    p.add_argument(
        "--tsne", action="store_true", help="also a t-SNE map of the embeddings (needs scikit-learn)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("serve", help="REST API + web page over a saved run (FastAPI, uvicorn)")
    p.add_argument("run_dir")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--store",
        help="ratings database URL: sqlite:///PATH (default: ratings.sqlite beside the run) or "
        "postgresql+psycopg://USER:PASS@HOST/DB",
    )
    p.add_argument(
        "--admin-token",
        help="enables POST /admin/reload with this X-Admin-Token (or $REELREC_ADMIN_TOKEN)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default: 1)")
    p.add_argument(
        "--workers",
        type=int,
        help="worker processes sharing the memory-mapped weights and the ratings store "
        "(default: one per available core)",
    )
    p.add_argument(
        "--ann",
        action="store_true",
        help="approximate retrieval with faiss HNSW (large catalogues; pip install 'reelrec[ann]')",
    )
    p.add_argument(
        "--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"]
    )
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("retrain", help="train a run again on its data plus the ratings in a store")
    p.add_argument("run_dir")
    p.add_argument("--store", help="ratings database URL (default: ratings.sqlite beside the run)")
    p.add_argument("--out", required=True, help="the new run directory (the old run is kept)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true")
    _add_data_options(p)
    _add_threads_option(p)
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("demo", help="ml-100k end to end: train MF, compare with the bias baseline, recommend")
    _add_train_options(p, with_split=False)
    _add_data_options(p)
    p.add_argument("--user", help="user to recommend for (default: the first)")
    p.add_argument("--out", default="runs/demo", help="where to save the demo run (default: runs/demo)")
    p.set_defaults(func=cmd_demo, json=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if getattr(args, "n", 1) is not None and getattr(args, "n", 1) < 1:
        parser.exit(2, "reelrec: error: -n must be at least 1\n")
    try:
        if args.command != "serve" and hasattr(args, "threads"):
            from reelrec.threads import available_cores, set_threads
            from reelrec.training.distributed import init_from_env, local_world

            # under torchrun (WORLD_SIZE > 1) join the job; its ranks share this machine's cores
            ctx = init_from_env(args.device) if args.command == "train" else None
            set_threads(args.threads or (max(1, available_cores() // local_world()) if ctx else None))
        return int(args.func(args) or 0)
    except ReelrecError as exc:
        if args.debug:
            raise
        print(f"reelrec: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("reelrec: interrupted", file=sys.stderr)
        return 130
    except (OSError, MemoryError) as exc:
        if args.debug:
            raise
        text = str(exc)
        if isinstance(exc, MemoryError):
            text = f"out of memory{f' ({text})' if text else ''}; use a smaller model, batch or dataset"
        print(f"reelrec: error: {text}", file=sys.stderr)
        return 1
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"reelrec: internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
