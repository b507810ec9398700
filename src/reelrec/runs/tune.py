"""``tune_run``: search a model's settings on a run's validation part, then train the best as a
run (the test part is read once, for the chosen configuration only)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from reelrec.data.dataset import Dataset
from reelrec.data.split import Split
from reelrec.errors import ConfigError
from reelrec.runs.train import RunOptions, new_run, run_split
from reelrec.safeio import atomic_write_text
from reelrec.tune import Space, TuneResult, tune


def tune_run(
    ds: Dataset,
    options: RunOptions,
    out: Path,
    *,
    space: Space | None = None,
    n_trials: int = 100,
    timeout: float | None = 1800.0,
    max_epochs: int | None = None,
    on_start: Callable[[Dataset, Split], None] | None = None,
    announce: Callable[[Dataset, Split], None] | None = None,
) -> tuple[TuneResult, dict[str, Any]]:
    """Search ``options.model``'s settings (Optuna, :func:`reelrec.tune.tune`) on the validation
    part of ``options``' split, train the best (``options``' own settings still win) into
    ``out/run`` and write ``out/summary.json``. Returns the search result and the summary."""
    split, _, _ = run_split(ds, options)
    if split.valid is None:
        raise ConfigError("tuning needs a validation part: set --valid-fraction above 0")
    if on_start is not None:
        on_start(ds, split)
    result = tune(
        options.model,
        split.train,
        split.valid,
        space=space,
        n_trials=n_trials,
        timeout=timeout,
        seed=options.seed,
        out=out,
        device=options.device,
        max_epochs=max_epochs,
        params=options.params,  # the run's own settings: every trial keeps them, as the final run does
        train_values=options.train,
    )
    states = [t["state"] for t in result.trials]
    best = replace(
        options,
        params={**result.best_params, **options.params},
        train={**result.best_train, **options.train},
    )
    _, metrics = new_run(
        ds,
        best,
        out=str(out / "run"),
        overwrite=True,
        record_extra={"tuned": {"trials": len(states), "valid_rmse": result.best_value}},
        announce=announce,
    )
    summary = {
        "model": options.model,
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
    return result, summary
