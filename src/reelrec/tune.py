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
    params: dict[str, Any] | None = None,
    train_values: dict[str, Any] | None = None,
) -> TuneResult:
    """Search ``model_name``'s hyperparameters on ``valid`` (never on a test set).

    Every trial trains with the model's recipe (:func:`reelrec.training.recipe.recipe`) for its
    suggested settings, the suggested training values over it, without a refit.

    Args:
        space: the search space (default: the model's built-in one).
        params, train_values: settings and training values every trial keeps, over its
            suggestions (the command line's own, which the final run keeps too).
        n_trials, timeout: stop after this many trials or seconds, whichever comes first.
        out: a folder for ``trials.csv`` / ``trials.json`` / ``best.json`` (rewritten per trial).
        max_epochs: cap on each trial's epochs (default: the model's recipe).
    """
    try:
        import optuna
    except ImportError:
        raise ConfigError("reelrec tune needs optuna: pip install 'reelrec[tune]'") from None
    from reelrec.models.registry import model_class
    from reelrec.training.recipe import recipe

    if valid is None or not len(valid):
        raise ConfigError("tuning needs a validation part (a --valid-fraction above 0)")
    cls = model_class(model_name)
    if not cls.trainable:
        raise ConfigError(f"model {model_name!r} has no trainable hyperparameters to tune")
    if space is None:
        space = cls.search_space or SPACES.get(model_name)  # the model's own, else the table's
        if space is None:
            raise ConfigError(f"no built-in search space for {model_name!r}; give one with --space FILE.toml")
    caps: dict[str, Any] = {"refit": False} if max_epochs is None else {"epochs": max_epochs, "refit": False}
    folder = Path(out) if out is not None else None
    if folder is not None:
        folder = prepare_output_dir(folder, command="tune", owned=TUNE_NAMES)
    fixed = (dict(params or {}), dict(train_values or {}))
    trials = _Trials(model_name, train, valid, space, fixed, caps, seed=seed, device=device, folder=folder)
    start = time.perf_counter()
    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    defaults = {**recipe(model_name, fixed[0], train).defaults, **caps, **fixed[1]}
    study.enqueue_trial(_default_point(cls, space, defaults), skip_if_exists=True)
    study.optimize(
        trials.objective,
        n_trials=n_trials,
        timeout=timeout,
        callbacks=[trials.record],
        catch=(ReelrecError, RuntimeError),
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
        trials=trials.records,
        seconds=time.perf_counter() - start,
    )


class _Trials:
    """The search's objective and its record: each trial trains ``model_name`` with the recipe
    of its suggested settings under the ``fixed`` ones (settings, training values); what a
    trial starts from (pre-trained models or saved runs) is resolved once per plan and shared;
    each is pruned on its validation score; every finished trial is
    recorded (and written to ``folder``)."""

    def __init__(
        self,
        model_name: str,
        train: Dataset,
        valid: Dataset,
        space: Space,
        fixed: tuple[dict[str, Any], dict[str, Any]],
        caps: dict[str, Any],
        *,
        seed: int,
        device: str,
        folder: Path | None,
    ) -> None:
        self.model_name, self.train, self.valid, self.space = model_name, train, valid, space
        self.fixed, self.caps = fixed, caps
        self.seed, self.device, self.folder = seed, device, folder
        self.records: list[dict[str, Any]] = []
        self.starts: dict[str, Any] = {}  # pre-training plan -> what its trials start from

    def objective(self, trial: Any) -> float:
        import optuna

        from reelrec.artifacts import load_state
        from reelrec.training import pretrained
        from reelrec.training.recipe import recipe
        from reelrec.training.refit import fit_model

        params = {k: _suggest(trial, "model", k, v) for k, v in self.space.get("model", {}).items()}
        values = {k: _suggest(trial, "train", k, v) for k, v in self.space.get("train", {}).items()}
        settings, train_values = {**params, **self.fixed[0]}, {**self.caps, **values, **self.fixed[1]}
        try:
            plan = recipe(self.model_name, settings, self.train, overrides=train_values)
        except ConfigError as exc:
            raise ConfigError(f"trial {trial.number}: invalid setting ({exc})") from None
        trial.set_user_attr("params", params)
        trial.set_user_attr("train", {k: v for k, v in plan.train.model_dump().items() if k in values})

        def report(epoch: int, record: dict[str, float]) -> None:
            value = record.get("valid_rmse", record.get("valid_loss"))
            if value is None:
                return
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        key = pretrained.plan_key(self.model_name, plan.config)
        if key not in self.starts:
            self.starts[key] = pretrained.resolve(
                self.model_name,
                plan.config,
                self.train,
                self.valid,
                seed=self.seed,
                device=self.device,
                load_run=load_state,
            )
        _, _, _, result = fit_model(
            self.model_name,
            self.train,
            self.valid,
            model_params=settings,
            train_config=plan.train.model_copy(update={"refit": False}),  # trials never refit
            seed=self.seed,
            device=self.device,
            on_epoch=report,
            starts=self.starts[key],
        )
        trial.set_user_attr("epochs", result.best_epoch)
        if result.best_valid is None or not math.isfinite(result.best_valid):
            raise ConfigError(f"trial {trial.number} produced no validation score")
        return float(result.best_valid)

    def record(self, study: Any, trial: Any) -> None:
        self.records.append(
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
        if self.folder is not None:
            _write(self.folder, self.records, study)


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
