"""The command line's grammar: the ``argparse`` parser of ``reelrec`` and the typed values its
options stand for (:class:`~reelrec.runs.source.DataSource`, :class:`~reelrec.runs.train.RunOptions`).

What each command does and prints is :mod:`reelrec.cli`; nothing else imports either module.
Building the parser imports nothing heavy (no torch, pandas or numba): the layers a command
needs are imported inside the functions that build its values.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from reelrec._defaults import DEFAULT_DUPLICATES, DUPLICATE_POLICIES, LIST_NOVELTY
from reelrec._version import __version__
from reelrec.errors import ConfigError


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
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


def side_data(args: argparse.Namespace) -> Any:
    from reelrec.runs.source import SideData

    return SideData(
        users=getattr(args, "users", None),
        item_info=getattr(args, "item_info", None),
        tags=getattr(args, "tags", None),
        user_id_col=getattr(args, "user_id_col", None) or "user_id",
    )


def data_source(args: argparse.Namespace) -> Any:
    """The :class:`~reelrec.runs.source.DataSource` that --dataset or --ratings/--items, the
    column options and the side-table options name."""
    from reelrec.runs.source import COLUMN_OPTIONS, DataSource

    return DataSource(
        dataset=getattr(args, "dataset", None),
        ratings=getattr(args, "ratings", None),
        items=getattr(args, "items", None),
        columns={k: getattr(args, k) for k in COLUMN_OPTIONS if getattr(args, k, None) is not None},
        download=getattr(args, "download", False),
        cache=False if getattr(args, "no_cache", False) else None,
        duplicates=getattr(args, "duplicates", None) or DEFAULT_DUPLICATES,
        side=side_data(args),
    )


def load_dataset_from_args(args: argparse.Namespace) -> Any:
    """The Dataset the data options of ``args`` name (:func:`reelrec.runs.source.load_dataset`)."""
    from reelrec.runs.source import load_dataset

    return load_dataset(data_source(args), args.data_home, progress=not getattr(args, "no_progress", False))


def run_options(
    args: argparse.Namespace,
    model: str,
    *,
    quiet: bool = False,
    params_extra: dict[str, Any] | None = None,
    train_extra: dict[str, Any] | None = None,
) -> Any:
    """The run that the train options of ``args`` describe (:class:`reelrec.runs.RunOptions`)."""
    from reelrec.runs.train import TRAIN_OPTIONS, RunOptions

    params = {**(params_extra or {}), **parse_params(getattr(args, "param", None))}
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
        side=side_data(args),
        device=args.device,
        progress=not quiet and not getattr(args, "no_progress", False),
    )


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
        "--average-validated",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --refit, also average in the model early-stopped on the training part (mf: on past "
        "0.5M training ratings)",
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


class ModelNames:
    """The registry's model names as ``--model`` choices, read from :mod:`reelrec.models.registry`
    when argparse first needs them (checking a given ``--model``, or ``train --help`` listing them),
    so that building the parser does not import torch."""

    def _names(self) -> list[str]:
        from reelrec.models.registry import MODELS

        return sorted(MODELS)

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def _add_model_option(p: argparse.ArgumentParser) -> None:
    # a metavar, so argparse lists the choices only in the option's help (formatted on demand)
    p.add_argument(
        "--model",
        default="mf",
        choices=ModelNames(),
        metavar="MODEL",
        help="%(default)s (default), or one of: %(choices)s",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reelrec", description="Neural-network movie recommender.")
    parser.add_argument("--version", action="version", version=f"reelrec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("datasets", help="list the MovieLens datasets and which are present")
    _add_data_options(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("download", help="download and unpack a MovieLens archive (sha256-checked)")
    p.add_argument("name")
    _add_data_options(p)
    p.add_argument("--force", action="store_true", help="download again even if present")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("train", help="train a model and save a run directory")
    _add_source_options(p)
    _add_model_option(p)
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

    p = sub.add_parser("tune", help="search hyperparameters on validation data (Optuna), then train the best")
    _add_source_options(p)
    _add_model_option(p)
    _add_train_options(p)
    _add_data_options(p)
    p.add_argument("--trials", type=int, default=100, help="at most this many trials (default 100)")
    p.add_argument("--timeout", type=float, default=1800, help="search budget in seconds (default 1800)")
    p.add_argument("--space", help="search space TOML ([model] and [train] tables; default: built in)")
    p.add_argument("--max-epochs", type=int, help="cap on each trial's epochs")
    p.add_argument("--out", required=True, help="folder for trials.csv/json, best.json and the run")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("blend", help="blend saved rating runs, weights fitted on their validation part")
    p.add_argument("runs", nargs="+", help="run directories trained on the same split with --no-refit")
    p.add_argument("--out", required=True, help="the blend's run directory")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json", action="store_true")
    _add_data_options(p)
    _add_threads_option(p)

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

    p = sub.add_parser("similar", help="movies with the most similar embeddings")
    p.add_argument("run_dir")
    p.add_argument("--movie", required=True)
    p.add_argument("-n", type=int, default=10)
    p.add_argument("--json", action="store_true")

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

    p = sub.add_parser("plot", help="learning curves and movie-embedding maps of a saved run, as PNGs")
    p.add_argument("run_dir")
    p.add_argument("--out", help="folder for the PNGs (default: RUN_DIR/plots)")
    p.add_argument(
        "--tsne", action="store_true", help="also a t-SNE map of the embeddings (needs scikit-learn)"
    )
    p.add_argument("--json", action="store_true")

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

    p = sub.add_parser("demo", help="ml-100k end to end: train MF, compare with the bias baseline, recommend")
    _add_train_options(p, with_split=False)
    _add_data_options(p)
    p.add_argument("--user", help="user to recommend for (default: the first)")
    p.add_argument("--out", default="runs/demo", help="where to save the demo run (default: runs/demo)")
    p.set_defaults(json=False)
    return parser
