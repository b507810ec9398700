"""Experiments: several model configurations (and seeds) on one protocol, compared in a table.

An experiment is a TOML file::

    name = "ml100k-mf-vs-mlp"
    [data]
    dataset = "ml-100k"            # a MovieLens name, or: ratings = "file.csv" (+ items, users)
    split = "holdout90"
    split_seed = 42                # the split is the same for every run and seed
    valid_fraction = 0.05
    seeds = [42, 43]               # training seeds; the table reports mean (and std)
    duplicates = "last"            # a pair rated twice: "last" (default), "mean" or "error"

    [[runs]]
    name = "mf"
    model = "mf"
    [runs.params]                  # the model's config fields
    embedding_size = 64
    [runs.train]                   # TrainConfig fields (merged over the model's defaults)
    learning_rate = 0.001

``reelrec experiment FILE... --out DIR`` writes ``results.csv`` and ``results.md`` (test RMSE,
MAE, accuracy, valid score, epochs, s/epoch, parameters, train seconds; mean ± std over seeds),
``comparison.png``, one learning-curve PNG per run and a PCA movie map of the best run.
Named presets (``--preset seed001``) reproduce the seed notebooks' protocols.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import time
import tomllib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reelrec.data.dataset import DEFAULT_DUPLICATES, Dataset, DuplicatePolicy
from reelrec.errors import ConfigError, DataError
from reelrec.models.registry import model_class
from reelrec.safeio import atomic_write_text, prepare_output_dir
from reelrec.training.recipe import recipe

if TYPE_CHECKING:
    from reelrec.runs.source import DataSource

log = logging.getLogger(__name__)


class DataSpec(BaseModel):
    """Where the ratings come from and how they are split."""

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = None
    ratings: str | None = None
    items: str | None = None
    users: str | None = None
    columns: dict[str, str] = Field(
        default_factory=dict, description="user_col/item_col/rating_col/timestamp_col"
    )
    split: str = "holdout90"
    split_seed: int = 42
    valid_fraction: float = Field(0.05, ge=0, lt=1)
    seeds: list[int] = Field(default_factory=lambda: [42], min_length=1)
    duplicates: DuplicatePolicy = DEFAULT_DUPLICATES

    @model_validator(mode="after")
    def _source(self) -> DataSpec:
        if (self.dataset is None) == (self.ratings is None):
            raise ValueError("give exactly one of data.dataset and data.ratings")
        return self

    def source(self, data_home: str | None = None) -> DataSource:
        """Where the ratings come from, as the one spec every command loads
        (:class:`reelrec.runs.source.DataSource`), its paths expanded."""
        from reelrec.runs.source import DataSource, SideData

        def path(value: str | None) -> str | None:
            return None if value is None else _path(value, data_home)

        return DataSource(
            dataset=self.dataset,
            ratings=path(self.ratings),
            items=path(self.items),
            columns=dict(self.columns),
            duplicates=self.duplicates,
            side=SideData(users=path(self.users)),
        )


class RunSpec(BaseModel):
    """One configuration to train and evaluate."""

    model_config = ConfigDict(extra="forbid")

    name: str
    model: str
    params: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    description: str = ""


class ExperimentSpec(BaseModel):
    """A whole experiment file."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    data: DataSpec
    runs: list[RunSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> ExperimentSpec:
        names = [r.name for r in self.runs]
        if len(set(names)) != len(names):
            raise ValueError("run names must be unique")
        return self


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "file"
    return f"{loc}: {err['msg']}"


def preset_names() -> list[str]:
    """Names of the packaged presets (``reelrec experiment --preset NAME``)."""
    return sorted(
        p.name[:-5] for p in resources.files("reelrec.presets").iterdir() if p.name.endswith(".toml")
    )


def load_spec(path_or_preset: str | Path, *, preset: bool = False) -> ExperimentSpec:
    """Read and validate an experiment file (or a packaged preset); one-line ConfigError if invalid."""
    if preset:
        name = str(path_or_preset)
        if name not in preset_names():
            raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(preset_names())}")
        text = resources.files("reelrec.presets").joinpath(f"{name}.toml").read_text(encoding="utf-8")
        where = f"preset {name}"
    else:
        path = Path(path_or_preset)
        if not path.is_file():
            raise ConfigError(f"{path}: no such experiment file")
        text = path.read_text(encoding="utf-8")
        where = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None
    try:
        spec = ExperimentSpec(**raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_first_error(exc)}") from None
    for run in spec.runs:  # fail before loading data: model names and training values must be valid
        model_class(run.model)  # an unknown model is named as such
        try:  # the training values over the model's recipe (its settings are checked on the data)
            recipe(run.model, overrides=run.train)
        except ConfigError as exc:
            raise ConfigError(f"{where}: run {run.name}: train.{exc}") from None
    return spec


def _path(value: str, data_home: str | None) -> str:
    """Expand ``~`` and ``${VARS}`` (``${REELREC_DATA_HOME}`` defaults to the data home)."""
    from reelrec.data.movielens import data_home as resolve_home

    value = value.replace("${REELREC_DATA_HOME}", str(resolve_home(data_home)))
    expanded = os.path.expanduser(os.path.expandvars(value))
    if "$" in expanded:
        raise ConfigError(f"{value}: an environment variable in this path is not set")
    return expanded


def load_data(spec: DataSpec, data_home: str | None = None, *, progress: bool = False) -> Dataset:
    """The dataset an experiment names (with its users file attached when given)."""
    from reelrec.runs.source import load_dataset

    return load_dataset(spec.source(data_home), data_home, progress=progress)


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def run_experiment(
    spec: ExperimentSpec,
    out: str | Path,
    *,
    data_home: str | None = None,
    device: str = "auto",
    progress: bool = False,
    save_runs: bool = False,
    plots: bool = True,
) -> list[dict[str, Any]]:
    """Train and evaluate every run of ``spec`` for every seed; write the table and plots to ``out``."""
    from reelrec.data.split import make_split
    from reelrec.runs.record import RunRecord, SplitRecord
    from reelrec.runs.train import train_run

    out_dir = prepare_output_dir(out, command="experiment", owned=EXPERIMENT_NAMES)
    source = spec.data.source(data_home)
    ds = load_data(spec.data, data_home, progress=progress)
    split = make_split(
        ds, spec.data.split, seed=spec.data.split_seed, valid_fraction=spec.data.valid_fraction or None
    )
    if split.test is None:
        raise DataError("an experiment needs a test split; data.split = 'none' has none")
    # every run's recipe (model config and training values) must be valid before the first trains
    plans = {run.name: recipe(run.model, run.params, split.train, overrides=run.train) for run in spec.runs}
    split_record = SplitRecord(
        name=split.name,
        spec=spec.data.split,
        seed=spec.data.split_seed,
        valid_fraction=spec.data.valid_fraction,
    )
    rows: list[dict[str, Any]] = []
    best: tuple[float, Any, str] | None = None
    for run in spec.runs:
        per_seed: list[dict[str, Any]] = []
        for seed in spec.data.seeds:
            log.info("experiment %s: run %s seed %d", spec.name, run.name, seed)
            start = time.perf_counter()
            rec, metrics = train_run(
                run.model,
                split,
                RunRecord.new(ds, source.side, split=split_record, seed=seed),
                params=run.params,
                config=plans[run.name].train,
                seed=seed,
                device=device,
                progress=progress,
                out=out_dir / "runs" / f"{run.name}-seed{seed}" if save_runs else None,
                overwrite=True,
                ranking=False,
            )
            seconds = time.perf_counter() - start
            test = metrics.get("test", {})
            result = rec.train_result
            hist = result.history
            per_seed.append(
                {
                    "rmse": test.get("rmse"),
                    "mae": test.get("mae"),
                    "accuracy": test.get("accuracy"),
                    "valid": result.best_valid,
                    "epochs": len(hist) or None,
                    "refit_epochs": result.refit_epochs,
                    "seconds_per_epoch": (sum(h["seconds"] for h in hist) / len(hist)) if hist else None,
                    "train_seconds": seconds,
                }
            )
            if plots and hist and seed == spec.data.seeds[0]:
                from reelrec.plots import plot_learning_curves

                plot_learning_curves(
                    result.to_json(), out_dir / f"curves_{run.name}.png", title=f"{spec.name}: {run.name}"
                )
            rmse_value = test.get("rmse")
            if rmse_value is not None and (best is None or rmse_value < best[0]):
                best = (rmse_value, rec, run.name)
        row: dict[str, Any] = {
            "name": run.name,
            "model": run.model,
            "seeds": len(per_seed),
            "parameters": int(sum(p.numel() for p in rec.model.parameters())),
        }
        for key in ("rmse", "mae", "accuracy", "valid", "epochs", "seconds_per_epoch", "train_seconds"):
            mean, std = _mean_std([r[key] for r in per_seed])
            row[key] = mean
            if len(per_seed) > 1:
                row[f"{key}_std"] = std
        rows.append(row)
    _write_tables(spec, split.name, rows, out_dir)
    if plots:
        from reelrec.plots import plot_comparison, plot_embedding_map

        if any(math.isfinite(r["rmse"]) for r in rows):
            plot_comparison(rows, out_dir / "comparison.png", metric="rmse", title=f"{spec.name}: test RMSE")
        if best is not None and best[1].model.item_vectors() is not None:
            plot_embedding_map(best[1], out_dir / f"embeddings_{best[2]}.png")
    return rows


#: what an experiment writes into its folder (a folder holding only these is reelrec's to rewrite)
EXPERIMENT_NAMES = ("results.csv", "results.md", "comparison.png", "curves_*.png", "embeddings_*.png", "runs")

COLUMNS = [
    ("name", "run"),
    ("model", "model"),
    ("rmse", "test RMSE"),
    ("mae", "test MAE"),
    ("accuracy", "accuracy"),
    ("valid", "valid"),
    ("epochs", "epochs"),
    ("seconds_per_epoch", "s/epoch"),
    ("train_seconds", "train s"),
    ("parameters", "parameters"),
    ("seeds", "seeds"),
]


def _fmt(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        digits = 4 if key in ("rmse", "mae", "accuracy", "valid") else 2
        text = f"{value:.{digits}f}"
        std = row.get(f"{key}_std")
        return (
            f"{text} ± {std:.{digits}f}"
            if std is not None and math.isfinite(std) and row["seeds"] > 1
            else text
        )
    return str(value)


def _csv_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value


def _write_tables(spec: ExperimentSpec, split_name: str, rows: list[dict[str, Any]], out_dir: Path) -> None:
    keys = [k for k, _ in COLUMNS] + sorted({k for r in rows for k in r if k.endswith("_std")})
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _csv_value(r.get(k)) for k in keys})
    atomic_write_text(out_dir / "results.csv", buffer.getvalue())
    seeds = ", ".join(map(str, spec.data.seeds))
    lines = [
        f"# {spec.name}",
        "",
        spec.description or "",
        "",
        f"Data: {spec.data.dataset or spec.data.ratings}; split {split_name} "
        f"(split seed {spec.data.split_seed}, validation {spec.data.valid_fraction:g} of train); "
        f"training seeds {seeds}.",
        "",
        "| " + " | ".join(label for _, label in COLUMNS) + " |",
        "|" + "|".join("---" if k in ("name", "model") else "---:" for k, _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(_fmt(r, k) for k, _ in COLUMNS) + " |" for r in rows]
    atomic_write_text(out_dir / "results.md", "\n".join(lines) + "\n")
