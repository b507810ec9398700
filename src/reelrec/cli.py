"""The ``reelrec`` command line.

Every subcommand validates its input at the boundary; any error a user can cause ends with
one line on stderr (``reelrec: error: ...``) and a non-zero exit, never a traceback
(``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from reelrec._defaults import LIST_NOVELTY
from reelrec._version import __version__
from reelrec.cli_args import build_parser, load_dataset_from_args, run_options
from reelrec.errors import ConfigError, ReelrecError

log = logging.getLogger("reelrec")

DEMO_MARK = "demo"


# ---------------------------------------------------------------------- helpers
def _emit(args: argparse.Namespace, obj: Any, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(obj, indent=1, default=str))
    else:
        print(text)


def _fmt_items(items: list[Any], score_label: str) -> str:
    lines = []
    for rank, it in enumerate(items, 1):
        title = it.title if it.title is not None else f"item {it.item_id}"
        year = f" ({it.year})" if it.year else ""
        genres = f"  [{', '.join(it.genres)}]" if it.genres else ""
        lines.append(f"{rank:>3}. {title}{year}  id={it.item_id}  {score_label}={it.score:.3f}{genres}")
    return "\n".join(lines) if lines else "(no items)"


# ---------------------------------------------------------------------- commands
def cmd_datasets(args: argparse.Namespace) -> int:
    from reelrec.data.grouplens import data_home, list_datasets

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
    from reelrec.data.grouplens import download

    path = download(args.name, args.data_home, progress=not args.quiet, force=args.force)
    print(f"{args.name}: {path}")
    return 0


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

    options = run_options(args, model, quiet=quiet)
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


def _check_run(args: argparse.Namespace) -> int:
    """Everything a rank of ``train --nproc`` would refuse, checked once before any starts:
    ``--out``, the model and its settings, the data (loaded: columns, values; this also writes its
    array cache once for the ranks), the split and protocol, the training values. Returns the
    number of ratings each rank will load."""
    from reelrec.artifacts import check_target
    from reelrec.cli_args import data_source
    from reelrec.runs.source import load_dataset
    from reelrec.runs.train import refuse_early, run_split
    from reelrec.training.recipe import recipe

    check_target(args.out, args.overwrite)
    options = run_options(args, args.model, quiet=True)
    recipe(options.model, options.params, overrides=options.train)  # before reading the data
    ds = load_dataset(data_source(args), args.data_home, progress=False)
    refuse_early(options.model, ds, options.params)
    split, _, _ = run_split(ds, options)  # as each rank will make it
    recipe(options.model, options.params, split.train, overrides=options.train)
    return len(ds)


def _launch_ranks(args: argparse.Namespace) -> int:
    """``train --nproc N`` (N > 1): check once, then run N ranks until they have all ended."""
    from reelrec.training import distributed  # launch_local looked up now, so a test may replace it
    from reelrec.training.launcher import check_nproc
    from reelrec.training.trainer import resolve_device

    resolve_device(args.device)  # a device this machine has, before counting its GPUs
    check_nproc(args.nproc, args.device)
    check_nproc(args.nproc, args.device, n_ratings=_check_run(args))  # memory for its data too
    end = distributed.launch_local(args.argv, args.nproc, out=args.out, debug=args.debug)
    if end.message:
        print(f"reelrec: {end.message}", file=sys.stderr)
    return end.status


def cmd_train(args: argparse.Namespace) -> int:
    from reelrec.training.distributed import current
    from reelrec.training.launcher import rank_guard

    ctx = current()
    if args.nproc is not None and args.nproc != 1 and ctx is None:
        return _launch_ranks(args)
    if ctx is None:
        return _train_here(args, None)
    with rank_guard(ctx.rank, ctx.world, args.rank_dir, debug=args.debug):
        return _train_here(args, ctx)


def _train_here(args: argparse.Namespace, ctx: Any) -> int:
    """Train in this process: alone, or as one rank of a job (``ctx``; rank 0 prints and saves)."""
    from reelrec.artifacts import check_target

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
        run_options(args, args.model, quiet=args.json),
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
        items = rec.recommend_for_ratings(ratings, n=_list_length(args, rec), novelty=args.novelty)
        who = (
            f"a new user with {len(ratings)} ratings" if ratings else "a new user (no ratings: most popular)"
        )
        label = ("predicted" if rec.model.ranks_by_rating else "score") if ratings else "count"
        user_json: Any = None
    else:
        items = rec.recommend(
            args.user, n=_list_length(args, rec), exclude_rated=not args.include_seen, novelty=args.novelty
        )
        who = f"user {args.user}"
        label = (
            # rating models show predicted ratings; popularity its training counts; ranking models scores
            "predicted" if rec.model.ranks_by_rating else "count" if rec.model.predicts_ratings else "score"
        )
        user_json = args.user
    _emit(
        args,
        {
            "user_id": user_json,
            "model": rec.name,
            "ranked_by": items.ranked_by,
            "items": [i.to_json() for i in items],
        },
        f"top {len(items)} for {who} ({rec.name}), ranked by {items.ranked_by}:\n" + _fmt_items(items, label),
    )
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    from reelrec.recommender import Recommender

    rec = Recommender.load(args.run_dir)
    items = rec.similar_items(args.movie, n=_list_length(args, rec))
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
    print(
        f"\ntop 10 unwatched movies for user {user}, ranked by {items.ranked_by}:\n"
        + _fmt_items(items, "predicted")
    )
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
    config = ServeConfig(
        run_dir=args.run_dir,
        store=store,
        ann=args.ann,
        threads=max(1, args.threads),
        store_explicit=args.store is not None,
    )
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

    start = time.perf_counter()
    _, metrics = retrain(
        args.run_dir,
        args.store,  # None: the default place, where only a reelrec store is used
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


def _bound_threads(args: argparse.Namespace) -> None:
    """``--threads`` past this machine's cores is cut to them, with a one-line warning (thousands
    of threads only fail to start)."""
    cores = os.cpu_count() or 1
    if getattr(args, "threads", None) is not None and args.threads > cores:
        logging.getLogger("reelrec").warning(
            "--threads %d: this machine has %d cores; using %d", args.threads, cores, cores
        )
        args.threads = cores


def _list_length(args: argparse.Namespace, rec: Any) -> int:
    """``-n`` capped at the catalogue: a longer list cannot exist (and must not be allocated)."""
    return max(1, min(args.n, len(rec.items)))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.func = globals()[f"cmd_{args.command}"]  # looked up now, so a test may replace one
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    _bound_threads(args)
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
