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

from reelrec import __version__
from reelrec._defaults import LIST_NOVELTY
from reelrec.data.dataset import DEFAULT_DUPLICATES, DUPLICATE_POLICIES
from reelrec.errors import ConfigError, DataError, ReelrecError

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


def load_dataset_from_args(args: argparse.Namespace):
    """The Dataset named by --dataset or --ratings/--items and the column options."""
    cache = False if getattr(args, "no_cache", False) else None  # None: unless REELREC_NO_CACHE is set
    if getattr(args, "ratings", None):
        from reelrec.data.tabular import load_ratings

        kwargs: dict[str, Any] = {}
        for opt in ("user_col", "item_col", "rating_col", "timestamp_col", "sep", "items"):
            value = getattr(args, opt, None)
            if value is not None:
                kwargs["items_path" if opt == "items" else opt] = value
        progress = not getattr(args, "no_progress", False)
        ds = load_ratings(args.ratings, cache=cache, progress=progress, **kwargs)
    else:
        from reelrec.data.movielens import load_movielens

        ds = load_movielens(
            args.dataset, data_home=args.data_home, download=args.download, progress=True, cache=cache
        )
    ds = ds.deduplicate(getattr(args, "duplicates", None) or DEFAULT_DUPLICATES)  # before any split
    return attach_side_data(ds, args)


def attach_side_data(ds: Any, args: argparse.Namespace) -> Any:
    """Join --users / --item-info tables and --tags into the dataset (for hybrid models)."""
    if not (getattr(args, "users", None) or getattr(args, "item_info", None) or getattr(args, "tags", None)):
        return ds
    from reelrec.data.features import (
        attach_tags,
        load_item_info,
        load_user_info,
        with_item_info,
        with_user_info,
    )

    if args.users:
        ds = with_user_info(ds, load_user_info(args.users, id_col=args.user_id_col, data_home=args.data_home))
    if args.item_info:
        ds = with_item_info(ds, load_item_info(args.item_info, data_home=args.data_home))
    if args.tags:
        ds = attach_tags(ds, top_n=args.tags)
    return ds


def load_source(source: dict[str, Any], data_home: str | None = None):
    """Reload the dataset a run was trained on, from the ``source`` recorded in its config
    (repeated pairs merged again by the policy it records)."""
    ds = _load_source(source, data_home)
    return ds.deduplicate(source.get("duplicates") or DEFAULT_DUPLICATES)


def _load_source(source: dict[str, Any], data_home: str | None = None):
    kind = source.get("kind")
    if kind == "movielens":
        from reelrec.data.movielens import load_movielens

        name = source.get("name")
        try:
            return load_movielens(name, data_home=data_home)
        except ReelrecError:
            if source.get("path") and Path(source["path"]).is_dir():
                return load_movielens(source["path"])
            raise
    if kind == "file":
        from reelrec.data.tabular import reload_source

        return reload_source(source)
    raise DataError(f"the run's dataset source {source!r} cannot be reloaded")


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


def _resolve_split(args: argparse.Namespace) -> None:
    """``--split`` defaults to the ``--protocol``'s split, else holdout90."""
    from reelrec.evaluation.protocols import PROTOCOL_SPLITS, check_protocol

    if args.split is None:
        protocol = getattr(args, "protocol", None)
        args.split = PROTOCOL_SPLITS[check_protocol(protocol)] if protocol else "holdout90"


def _train_and_save(
    args: argparse.Namespace,
    ds: Any,
    model: str,
    out: str | None,
    *,
    meta_extra: dict[str, Any] | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    params_extra: dict[str, Any] | None = None,
    train_extra: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    from reelrec.data.split import make_split
    from reelrec.evaluation.protocols import (
        check_protocol,
        evaluate_protocol,
        evaluate_ranking,
        evaluate_ratings,
        protocol_for_split,
    )
    from reelrec.recommender import Recommender
    from reelrec.training.trainer import TrainConfig

    protocol = getattr(args, "protocol", None)
    _refuse_early(model, ds, params_extra, getattr(args, "param", None))
    _resolve_split(args)
    split = make_split(ds, args.split, seed=args.seed, valid_fraction=args.valid_fraction or None)
    protocol = protocol or protocol_for_split(split.name)
    if protocol:
        check_protocol(protocol, split.name)
    params = {**(params_extra or {}), **_parse_params(getattr(args, "param", None))}
    for flag, key in (("embedding_size", "embedding_size"), ("reg", "reg")):
        value = getattr(args, flag, None)
        if value is not None:
            params[key] = value
    for key in ("user_features", "item_features"):
        value = getattr(args, key, None)
        if value is not None:
            params[key] = [v.strip() for v in value.split(",") if v.strip()]
    train_values = {
        k: getattr(args, k)
        for k in (
            "epochs",
            "batch_size",
            "learning_rate",
            "optimizer",
            "weight_decay",
            "lr_schedule",
            "patience",
            "refit",
            "refit_models",
            "row_sparse",
            "decode",
        )
        if getattr(args, k, None) is not None
    }
    train_values = {**(train_extra or {}), **train_values}
    from pydantic import ValidationError

    from reelrec.models.registry import model_class

    try:
        train_cfg = TrainConfig(**{**model_class(model).train_defaults(len(split.train)), **train_values})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{'.'.join(map(str, err['loc'])) or 'training'}: {err['msg']}") from None
    meta = {
        "dataset": {
            "name": ds.name,
            "source": ds.source,
            "fingerprint": ds.fingerprint(),
            "n_ratings": len(ds),
        },
        "split": {
            "name": split.name,
            "spec": args.split,
            "seed": args.seed,
            "valid_fraction": args.valid_fraction,
        },
        "seed": args.seed,
        "protocol": protocol,
        "side_data": {
            k: getattr(args, k, None) for k in ("users", "item_info", "tags") if getattr(args, k, None)
        },
        **(meta_extra or {}),
    }
    if not quiet:
        print(ds.describe())
        parts = [f"train {len(split.train):,}"]
        if split.valid is not None:
            parts.append(f"valid {len(split.valid):,}")
        if split.test is not None:
            parts.append(f"test {len(split.test):,}")
        print(f"split {split.name}: " + ", ".join(parts))
    rec = Recommender.train(
        model,
        split.train,
        split.valid,
        model_params=params,
        train_config=train_cfg,
        seed=args.seed,
        device=args.device,
        progress=not quiet and not getattr(args, "no_progress", False),
        meta=meta,
    )
    result = rec.train_result
    metrics: dict[str, Any] = {"model": model, "split": split.name, "train_seconds": round(result.seconds, 3)}
    if result.history:
        metrics["epochs"] = len(result.history)
        metrics["best_epoch"] = result.best_epoch
        metrics["seconds_per_epoch"] = round(
            sum(h["seconds"] for h in result.history) / len(result.history), 4
        )
    if result.best_valid is not None:
        metrics[result.valid_metric] = result.best_valid
    if split.test is not None and len(split.test):
        if rec.model.predicts_ratings:
            metrics["test"] = evaluate_ratings(rec, split.test)
        try:
            pairs = split.test.n_users * split.test.n_items
            if protocol:
                metrics["test_ranking"] = evaluate_protocol(rec, split.test, protocol, seed=args.seed)
            elif pairs > AUTO_RANKING_PAIRS and rec.model.retrieval_vectors() is None:
                # a network scores each (user, movie) pair through its layers: ranking every movie
                # for every user of a large dataset takes hours, so a rating run skips it here
                log.warning(
                    "full-ranking metrics skipped: %s scores %.1e (user, movie) pairs one by one; "
                    "train with --protocol temporal-full and run `reelrec evaluate` to get them",
                    model,
                    pairs,
                )
            else:
                metrics["test_ranking"] = evaluate_ranking(rec, split.test)
        except ValueError as exc:
            log.warning("ranking metrics skipped: %s", exc)
    if out:
        rec.save(out, metrics=metrics, overwrite=overwrite)
    return rec, metrics


#: a rating run's automatic full-ranking metrics are skipped past this many (user, movie) pairs
#: for models that score pairs one by one (no inner-product form): ML-1M has 2.2e7, ML-25M 1.0e10
AUTO_RANKING_PAIRS = 1e9


def _refuse_early(model: str, ds: Any, params_extra: dict[str, Any] | None, pairs: list[str] | None) -> None:
    """A model that cannot train on data of this size refuses before the split (seconds, not
    minutes): the whole dataset's shape bounds the training part's. Settings the model rejects are
    left for the full check after the split to report."""
    from reelrec.models.registry import check_scale, make_config, model_class

    try:
        config = make_config(model, {**(params_extra or {}), **_parse_params(pairs)})
    except ReelrecError:
        return
    check_scale(model_class(model), ds.n_users, ds.n_items, len(ds), config)


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
    from reelrec.data.split import make_split
    from reelrec.safeio import atomic_write_text, prepare_output_dir
    from reelrec.tune import TUNE_NAMES, load_space, tune

    out = prepare_output_dir(args.out, command="tune", owned=TUNE_NAMES, overwrite=args.overwrite)
    space = load_space(args.space) if args.space else None  # fail before loading data
    ds = load_dataset_from_args(args)
    _resolve_split(args)
    split = make_split(ds, args.split, seed=args.seed, valid_fraction=args.valid_fraction or None)
    if split.valid is None:
        raise ConfigError("tuning needs a validation part: set --valid-fraction above 0")
    if not args.json:
        print(
            f"tuning {args.model} on {ds.name} {split.name}: validation {len(split.valid):,} ratings, "
            f"at most {args.trials} trials / {args.timeout:g} s"
        )
    result = tune(
        args.model,
        split.train,
        split.valid,
        space=space,
        n_trials=args.trials,
        timeout=args.timeout,
        seed=args.seed,
        out=out,
        device=args.device,
        max_epochs=args.max_epochs,
    )
    states = [t["state"] for t in result.trials]
    # the test split is read once, now, for the chosen configuration only
    _, metrics = _train_and_save(
        args,
        ds,
        args.model,
        str(out / "run"),
        overwrite=True,
        quiet=args.json,
        params_extra=result.best_params,
        train_extra=result.best_train,
        meta_extra={"tuned": {"trials": len(states), "valid_rmse": result.best_value}},
    )
    summary = {
        "model": args.model,
        "trials": len(states),
        "complete": states.count("complete"),
        "pruned": states.count("pruned"),
        "failed": states.count("fail"),
        "search_seconds": round(result.seconds, 1),
        "default_valid": result.default_value,
        "best_valid": result.best_value,
        "best_params": result.best_params,
        "best_train": result.best_train,
        "final": metrics,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
    text = (
        f"{len(states)} trials in {result.seconds:.0f} s ({summary['complete']} complete, "
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
    from reelrec.data.split import make_split
    from reelrec.evaluation.protocols import (
        check_protocol,
        evaluate_protocol,
        evaluate_ranking,
        evaluate_ratings,
        protocol_for_split,
    )
    from reelrec.recommender import Recommender

    rec = Recommender.load(args.run_dir)
    dataset = rec.meta.get("dataset") or {}
    split_meta = rec.meta.get("split") or {}
    if split_meta.get("spec", "none") == "none":
        raise ConfigError(
            f"{args.run_dir} was trained with --split none: it has no test split to evaluate on"
        )
    ds = load_source(dataset.get("source", {}), args.data_home)
    if dataset.get("fingerprint") and ds.fingerprint() != dataset["fingerprint"]:
        raise DataError(
            f"the data at {ds.source.get('path', ds.name)} differs from the data this run was trained on"
        )
    split = make_split(
        ds,
        split_meta["spec"],
        seed=split_meta.get("seed", 42),
        valid_fraction=split_meta.get("valid_fraction") or None,
    )
    protocol = args.protocol or rec.meta.get("protocol") or protocol_for_split(split.name)
    if protocol:
        check_protocol(protocol, split.name)  # a protocol only fits the split the model was trained on
    metrics: dict[str, Any] = {"run": str(args.run_dir), "model": rec.name, "split": split.name}
    lines = [f"{rec.name} on {ds.name} ({split.name}, {len(split.test):,} test ratings)"]
    if rec.model.predicts_ratings:
        metrics.update(evaluate_ratings(rec, split.test))
        lines.append(
            f"  RMSE {metrics['rmse']:.4f}  MAE {metrics['mae']:.4f}"
            f"  (fallback used for {metrics['n_fallback']} pairs)"
        )
    if protocol:
        metrics["ranking"] = evaluate_protocol(rec, split.test, protocol, seed=split_meta.get("seed", 42))
        lines.append(f"  protocol {protocol}")
    else:
        metrics["ranking"] = evaluate_ranking(rec, split.test)
    lines += [f"  {k:<22} {v:.4f}" for k, v in metrics["ranking"].items() if isinstance(v, float)]
    _emit(args, metrics, "\n".join(lines))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import pandas as pd

    from reelrec.recommender import Recommender
    from reelrec.safeio import atomic_path, check_file_target

    path = Path(args.pairs)
    if path.is_dir():
        raise DataError(f"--pairs {path} is a directory, not a CSV file")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    # refuse a bad destination before any work: a folder, the pairs file, a file without --overwrite
    check_file_target(args.out, overwrite=args.overwrite, inputs=[path])
    rec = Recommender.load(args.run_dir)
    source = (rec.meta.get("dataset") or {}).get("source") or {}
    inputs = [path, *(p for p in (source.get("path"), (source.get("items") or {}).get("path")) if p)]
    check_file_target(args.out, overwrite=args.overwrite, inputs=inputs)  # nor the run's own data
    try:
        pairs = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text (save it as UTF-8 CSV)") from None
    missing = {"user_id", "item_id"} - set(pairs.columns)
    if missing:
        raise DataError(f"{path}: needs columns user_id,item_id (missing {', '.join(sorted(missing))})")
    pred = rec.predict(pairs["user_id"].to_numpy(), pairs["item_id"].to_numpy(), unknown=args.unknown)
    out = pd.DataFrame({"user_id": pairs["user_id"], "item_id": pairs["item_id"], "prediction": pred})
    dest = Path(args.out)
    with atomic_path(dest, inputs=inputs, overwrite=args.overwrite) as tmp:
        out.to_csv(tmp, index=False, float_format="%.6f")
    n_nan = int(out["prediction"].isna().sum())
    print(f"wrote {len(out):,} predictions to {dest}" + (f" ({n_nan} unknown -> empty)" if n_nan else ""))
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
            "count" if rec.name == "popularity" else "predicted" if rec.model.predicts_ratings else "score"
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
        args, ds, "mf", str(out), meta_extra={"created_by": DEMO_MARK}, overwrite=overwrite
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
    p.add_argument(
        "--decode",
        choices=["model", "thresholds"],
        help="rating level of a prediction: the model's own (default), or cut points fitted on validation",
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
