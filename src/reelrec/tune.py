"""Hyperparameter search (``reelrec tune``): Optuna TPE with median pruning, validation data only.

Every trial trains on the split's training part and is scored on the validation part carved
from it (the same part early stopping uses); the test part is read once, after the search, to
report the chosen configuration. The model's hand-tuned default is always trial 0, so the search
can only match or improve on it (on validation). Every trial is recorded (``trials.csv``,
``trials.json``, rewritten after each trial), with its parameters, validation RMSE, epochs,
seconds and state (complete / pruned / failed).

A search space maps config fields to distributions; built-in spaces exist for the trainable
models, and a TOML file can replace them::

    [model]
    embedding_size = {choices = [32, 64, 128]}
    reg = {low = 0.02, high = 1.0, log = true}
    reg_alpha = 0.5                       # a fixed value
    [train]
    learning_rate = {low = 3e-4, high = 3e-3, log = true}
"""

from __future__ import annotations

import json
import logging
import math
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reelrec.data.dataset import Dataset
from reelrec.errors import ConfigError, ReelrecError
from reelrec.safeio import atomic_write_text, prepare_output_dir

log = logging.getLogger(__name__)

Space = dict[str, dict[str, Any]]

#: built-in search spaces: {"model": {field: spec}, "train": {field: spec}}
#: what ``reelrec tune`` writes into its folder (a folder holding only these is reelrec's to rewrite)
TUNE_NAMES = ("trials.json", "trials.csv", "best.json", "summary.json", "run")

SPACES: dict[str, Space] = {
    "mf": {
        "model": {
            "embedding_size": {"choices": [32, 64, 128, 256]},
            "reg": {"low": 0.02, "high": 1.0, "log": True},
            "item_reg_ratio": {"low": 0.05, "high": 1.0, "log": True},
            "reg_alpha": {"low": 0.2, "high": 1.0},
            "bias_reg": {"low": 1e-4, "high": 0.05, "log": True},
        },
        "train": {
            "learning_rate": {"low": 3e-4, "high": 3e-3, "log": True},
            "batch_size": {"choices": [1024, 2048, 4096, 8192]},
        },
    },
    "als": {
        "model": {
            "embedding_size": {"choices": [8, 16, 32, 64]},
            "reg": {"low": 0.03, "high": 0.3, "log": True},
            "item_reg_ratio": {"low": 0.3, "high": 3.0, "log": True},
            "reg_alpha": {"low": 0.2, "high": 0.8},
            "bias_reg": {"low": 0.005, "high": 0.5, "log": True},
        },
        "train": {},
    },
    "mlp": {
        "model": {
            "embedding_size": {"choices": [32, 64, 128]},
            "hidden": {"choices": [[64], [128, 64], [64, 32], [256, 128, 64]]},
            "inputs": {"choices": ["concat", "concat_product"]},
            "user_reg": {"low": 1e-3, "high": 0.5, "log": True},
            "item_reg": {"low": 1e-3, "high": 0.5, "log": True},
            "reg_alpha": {"low": 0.3, "high": 1.0},
            "embedding_dropout": {"low": 0.0, "high": 0.5},
            "dropout": {"low": 0.0, "high": 0.5},
            "bias_init": "baseline",
        },
        "train": {
            "learning_rate": {"low": 3e-4, "high": 3e-3, "log": True},
            "batch_size": {"choices": [1024, 2048, 4096]},
        },
    },
    "gmf": {
        "model": {
            "gmf_size": {"choices": [32, 64, 128]},
            "user_reg": {"low": 1e-3, "high": 0.5, "log": True},
            "item_reg": {"low": 1e-3, "high": 0.5, "log": True},
            "bias_init": "baseline",
        },
        "train": {"learning_rate": {"low": 3e-4, "high": 3e-3, "log": True}},
    },
    "neumf": {
        "model": {
            "gmf_size": {"choices": [32, 64, 128]},
            "embedding_size": {"choices": [16, 32, 64]},
            "hidden": {"choices": [[64, 32], [32, 16], [128, 64]]},
            "user_reg": {"low": 1e-3, "high": 0.5, "log": True},
            "item_reg": {"low": 1e-3, "high": 0.5, "log": True},
            "embedding_dropout": {"low": 0.0, "high": 0.5},
            "bias_init": "baseline",
        },
        "train": {"learning_rate": {"low": 3e-4, "high": 3e-3, "log": True}},
    },
    "hybrid": {
        "model": {
            "embedding_size": {"choices": [32, 64, 128]},
            "user_reg": {"low": 0.02, "high": 1.0, "log": True},
            "item_reg": {"low": 0.005, "high": 0.5, "log": True},
        },
        "train": {"learning_rate": {"low": 3e-4, "high": 3e-3, "log": True}},
    },
}


def load_space(path: str | Path) -> Space:
    """A search space from a TOML file (``[model]`` and ``[train]`` tables)."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such search-space file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    unknown = set(raw) - {"model", "train"}
    if unknown:
        raise ConfigError(f"{p}: unknown table(s) {sorted(unknown)}; use [model] and [train]")
    space = {"model": dict(raw.get("model", {})), "train": dict(raw.get("train", {}))}
    for part in space.values():
        for name, spec in part.items():
            _check_spec(name, spec)
    return space


def _check_spec(name: str, spec: Any) -> None:
    if not isinstance(spec, dict):
        return  # a fixed value
    if "choices" in spec:
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            raise ConfigError(f"search space {name}: choices must be a non-empty list")
        return
    if not {"low", "high"} <= set(spec):
        raise ConfigError(f"search space {name}: give choices=[...] or low/high (and optionally log)")
    if not spec["low"] < spec["high"]:
        raise ConfigError(f"search space {name}: low must be below high")
    if spec.get("log") and spec["low"] <= 0:
        raise ConfigError(f"search space {name}: a log range needs low > 0")


def _suggest(trial: Any, prefix: str, name: str, spec: Any) -> Any:
    if not isinstance(spec, dict):
        return spec
    key = f"{prefix}.{name}"
    if "choices" in spec:
        choices = spec["choices"]
        labels = [json.dumps(c) for c in choices]  # optuna wants hashable scalars
        return choices[labels.index(trial.suggest_categorical(key, labels))]
    low, high, is_log = spec["low"], spec["high"], bool(spec.get("log"))
    if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool):
        return trial.suggest_int(key, low, high, log=is_log)
    return trial.suggest_float(key, float(low), float(high), log=is_log)


@dataclass
class TuneResult:
    """The search's outcome: best trial's values, every trial's record, the default's score."""

    best_params: dict[str, Any]
    best_train: dict[str, Any]
    best_value: float
    default_value: float | None
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def tune(
    model_name: str,
    train: Dataset,
    valid: Dataset,
    *,
    space: Space | None = None,
    n_trials: int = 100,
    timeout: float | None = 1800.0,
    seed: int = 42,
    out: str | Path | None = None,
    device: str = "auto",
    max_epochs: int | None = None,
) -> TuneResult:
    """Search ``model_name``'s hyperparameters on ``valid`` (never on a test set).

    Args:
        space: the search space (default: the model's built-in one).
        n_trials, timeout: stop after this many trials or seconds, whichever comes first.
        out: a folder for ``trials.csv`` / ``trials.json`` / ``best.json`` (rewritten per trial).
        max_epochs: cap on each trial's epochs (default: the model's ``default_train``).
    """
    try:
        import optuna
    except ImportError:
        raise ConfigError("reelrec tune needs optuna: pip install 'reelrec[tune]'") from None
    from reelrec.models.registry import build_model, make_config, model_class
    from reelrec.training import pretrained
    from reelrec.training.seeding import seeded
    from reelrec.training.trainer import TrainConfig, Trainer

    if valid is None or not len(valid):
        raise ConfigError("tuning needs a validation part (a --valid-fraction above 0)")
    cls = model_class(model_name)
    if not cls.trainable:
        raise ConfigError(f"model {model_name!r} has no trainable hyperparameters to tune")
    if space is None:
        if model_name not in SPACES:
            raise ConfigError(f"no built-in search space for {model_name!r}; give one with --space FILE.toml")
        space = SPACES[model_name]
    base_train = cls.train_defaults(len(train))
    if max_epochs is not None:
        base_train["epochs"] = max_epochs
    base_train["refit"] = False
    folder = Path(out) if out is not None else None
    if folder is not None:
        folder = prepare_output_dir(folder, command="tune", owned=TUNE_NAMES)
    records: list[dict[str, Any]] = []
    starts: dict[str, Any] = {}  # pre-training plan -> what its trials start from
    start = time.perf_counter()

    def objective(trial: Any) -> float:
        params = {k: _suggest(trial, "model", k, v) for k, v in space.get("model", {}).items()}
        train_values = {k: _suggest(trial, "train", k, v) for k, v in space.get("train", {}).items()}
        try:
            cfg = TrainConfig(**{**base_train, **train_values})
        except Exception as exc:  # pydantic: a space value the config refuses
            raise ConfigError(f"trial {trial.number}: invalid training setting ({exc})") from None
        trial.set_user_attr("params", params)
        trial.set_user_attr("train", {k: v for k, v in cfg.model_dump().items() if k in train_values})

        def report(epoch: int, record: dict[str, float]) -> None:
            value = record.get("valid_rmse", record.get("valid_loss"))
            if value is None:
                return
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        # what the trial's model starts from (pretrained runs, an MF trained first): once per plan
        config = make_config(model_name, cls.configure(dict(params), train))
        key = json.dumps([cls.pretrained_runs(config), cls.pretraining(config)], sort_keys=True)
        if key not in starts:
            starts[key] = pretrained.resolve(model_name, config, train, valid, seed=seed, device=device)
        with seeded(seed, device):
            model = build_model(model_name, train.n_users, train.n_items, params, train=train)
            trainer = Trainer(cfg, seed=seed, device=device, on_epoch=report)
            result = trainer.fit(model, train, valid, init_from=starts[key].sources)
        trial.set_user_attr("epochs", result.best_epoch)
        if result.best_valid is None or not math.isfinite(result.best_valid):
            raise ConfigError(f"trial {trial.number} produced no validation score")
        return float(result.best_valid)

    def record(study: Any, trial: Any) -> None:
        records.append(
            {
                "number": trial.number,
                "state": trial.state.name.lower(),
                "value": trial.value,
                "best_epoch": trial.user_attrs.get("epochs"),
                "seconds": None if trial.duration is None else round(trial.duration.total_seconds(), 2),
                "params": trial.user_attrs.get("params"),
                "train": trial.user_attrs.get("train"),
            }
        )
        if folder is not None:
            _write(folder, records, study)

    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    study.enqueue_trial(_default_point(cls, space, base_train), skip_if_exists=True)
    study.optimize(
        objective, n_trials=n_trials, timeout=timeout, callbacks=[record], catch=(ReelrecError, RuntimeError)
    )
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise ConfigError("no trial completed; widen the time budget or check the search space")
    best = study.best_trial
    default = study.trials[0]
    return TuneResult(
        best_params=best.user_attrs["params"],
        best_train=best.user_attrs["train"],
        best_value=float(best.value),
        default_value=float(default.value) if default.value is not None else None,
        trials=records,
        seconds=time.perf_counter() - start,
    )


def _default_point(cls: Any, space: Space, base_train: dict[str, Any]) -> dict[str, Any]:
    """The model's hand-tuned default as an Optuna point (trial 0), where the space can hold it."""
    defaults = cls.config_class().model_dump()
    point: dict[str, Any] = {}
    for prefix, values in (("model", defaults), ("train", base_train)):
        for name, spec in space.get(prefix, {}).items():
            if not isinstance(spec, dict) or name not in values:
                continue
            value = values[name]
            if "choices" in spec:
                labels = [json.dumps(c) for c in spec["choices"]]
                if json.dumps(value) in labels:
                    point[f"{prefix}.{name}"] = json.dumps(value)
            elif spec["low"] <= value <= spec["high"]:
                point[f"{prefix}.{name}"] = value
    return point


def _write(folder: Path, records: list[dict[str, Any]], study: Any) -> None:
    import pandas as pd

    atomic_write_text(folder / "trials.json", json.dumps(records, indent=1, default=str))
    flat = []
    for r in records:
        row = {k: v for k, v in r.items() if k not in ("params", "train")}
        row.update(
            {
                f"model.{k}": json.dumps(v) if isinstance(v, list) else v
                for k, v in (r["params"] or {}).items()
            }
        )
        row.update({f"train.{k}": v for k, v in (r["train"] or {}).items()})
        flat.append(row)
    atomic_write_text(folder / "trials.csv", pd.DataFrame(flat).to_csv(index=False))
    complete = [r for r in records if r["state"] == "complete" and r["value"] is not None]
    if complete:
        best = min(complete, key=lambda r: r["value"])
        atomic_write_text(folder / "best.json", json.dumps(best, indent=1, default=str))
