"""Retrain a run on its original data plus the ratings people stored through the service.

The original data is reloaded from the source recorded in the run and split exactly as the run
was (same protocol, seed and validation fraction), so the new run's test figures compare with
the old one's. Every stored rating goes into the *training* part: each stored profile becomes a
new user (integer ids continue after the largest existing id; string ids are ``profile:<id>``),
and the mapping is recorded in the new run's ``config.json``. The old run is never touched.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reelrec.artifacts import _read_json, check_target, verify_run
from reelrec.data.dataset import Dataset, Vocabulary
from reelrec.data.split import make_split
from reelrec.errors import ConfigError, DataError
from reelrec.service.store import RatingStore

log = logging.getLogger(__name__)


def _reindex(part: Dataset, users: Vocabulary, items: Vocabulary) -> Dataset:
    """``part`` expressed in (larger) vocabularies ``users`` and ``items``."""
    return replace(
        part,
        users=users,
        items=items,
        user_index=users.index(part.users.ids[part.user_index]),
        item_index=items.index(part.items.ids[part.item_index]),
    )


def stored_as_users(ds: Dataset, stored: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any], int]:
    """Stored ``(profile, item, rating, timestamp)`` rows as ratings of new users of ``ds``.

    Returns the rows (columns ``user``, ``item``, ``rating``, ``timestamp``) with raw ids of
    ``ds``'s types, the profile -> user id mapping, and how many rows named a movie ``ds`` lacks.
    """
    if stored.empty:
        return pd.DataFrame(columns=["user", "item", "rating", "timestamp"]), {}, 0
    item_text = {str(x): x for x in ds.items.ids.tolist()}
    known = stored["item"].map(lambda s: s in item_text).to_numpy(dtype=bool)
    dropped = int((~known).sum())
    stored = stored[known]
    low, high = ds.scale.low, ds.scale.high
    stored = stored[(stored["rating"] >= low) & (stored["rating"] <= high)]
    profiles = sorted(stored["profile"].unique().tolist())
    if ds.users.is_integer:
        start = int(ds.users.ids.max()) + 1 if len(ds.users) else 1
        mapping: dict[str, Any] = {p: start + k for k, p in enumerate(profiles)}
    else:
        mapping = {p: f"profile:{p}" for p in profiles}
        clash = set(mapping.values()) & {str(x) for x in ds.users.ids.tolist()}
        if clash:
            raise DataError(f"stored profile user id {sorted(clash)[0]!r} already exists in the dataset")
    rows = pd.DataFrame(
        {
            "user": stored["profile"].map(mapping).to_numpy(),
            "item": np.asarray([item_text[s] for s in stored["item"]], dtype=ds.items.ids.dtype),
            "rating": stored["rating"].to_numpy(dtype=np.float32),
            "timestamp": stored["timestamp"].to_numpy(dtype=np.float64).astype(np.int64),
        }
    )
    return rows, mapping, dropped


def retrain(
    run_dir: str | Path,
    store_url: str,
    out: str | Path,
    *,
    data_home: str | None = None,
    device: str = "auto",
    progress: bool = False,
    overwrite: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Train ``run_dir``'s model again on its data plus the store's ratings; save to ``out``."""
    from reelrec.cli import attach_side_data, load_source
    from reelrec.evaluation.protocols import evaluate_ranking, evaluate_ratings
    from reelrec.recommender import Recommender
    from reelrec.training.trainer import TrainConfig

    run_dir, out = Path(run_dir), Path(out)
    verify_run(run_dir)
    if out.resolve() == run_dir.resolve():
        raise ConfigError("--out must be a new run directory: the old run stays as it is")
    check_target(out, overwrite)
    config = _read_json(run_dir / "config.json")
    try:
        source = config["dataset"]["source"]
        split_meta = config["split"]
        model_name = config["model"]["name"]
        model_params = dict(config["model"]["config"])
    except (KeyError, TypeError):
        raise ConfigError(
            f"{run_dir} does not record its dataset, split and model; retrain it by hand"
        ) from None
    ds = load_source(source, data_home)
    side = config.get("side_data") or {}
    if side:
        ds = attach_side_data(
            ds, argparse.Namespace(**{k: side.get(k) for k in ("users", "item_info", "tags")})
        )
    if ds.fingerprint() != config["dataset"].get("fingerprint"):
        log.warning("the dataset at %s changed since %s was trained", source, run_dir)
    seed = int(config.get("seed", split_meta.get("seed", 42)))
    split = make_split(
        ds, split_meta["spec"], seed=seed, valid_fraction=split_meta.get("valid_fraction") or None
    )

    store = RatingStore(store_url)
    try:
        stored = store.all_ratings()
    finally:
        store.close()
    extra, mapping, dropped = stored_as_users(ds, stored)
    if dropped:
        log.warning("%d stored ratings name movies outside the dataset; skipped", dropped)
    users = Vocabulary(
        np.unique(
            np.concatenate([ds.users.ids, np.asarray(list(mapping.values()), dtype=ds.users.ids.dtype)])
        ),
        "user",
    )
    train = _reindex(split.train, users, ds.items)
    valid = _reindex(split.valid, users, ds.items) if split.valid is not None else None
    test = _reindex(split.test, users, ds.items) if split.test is not None else None
    if len(extra):
        part = replace(
            train,
            user_index=users.index(extra["user"].to_numpy()),
            item_index=ds.items.index(extra["item"].to_numpy()),
            rating=extra["rating"].to_numpy(dtype=np.float32),
            timestamp=extra["timestamp"].to_numpy(dtype=np.int64) if train.timestamp is not None else None,
        )
        train = train.concat(part)
    train_cfg = TrainConfig(**config["train"]) if config.get("train") else None
    meta = {
        "dataset": config["dataset"],
        "split": split_meta,
        "seed": seed,
        "side_data": side,
        "retrained_from": str(run_dir.resolve()),
        "store": {
            "url": _redact(store_url),
            "ratings": len(extra),
            "profiles": mapping,
            "skipped": dropped,
        },
    }
    rec = Recommender.train(
        model_name,
        train,
        valid,
        model_params=model_params,
        train_config=train_cfg,
        seed=seed,
        device=device,
        progress=progress,
        meta=meta,
    )
    result = rec.train_result
    metrics: dict[str, Any] = {
        "model": model_name,
        "split": split.name,
        "train_seconds": round(result.seconds, 3),
        "stored_ratings": len(extra),
        "stored_profiles": len(mapping),
    }
    if result.history:
        metrics["epochs"] = len(result.history)
        metrics["best_epoch"] = result.best_epoch
    if result.best_valid is not None:
        metrics[result.valid_metric] = result.best_valid
    if test is not None and len(test):
        if rec.model.predicts_ratings:
            metrics["test"] = evaluate_ratings(rec, test)
        try:
            metrics["test_ranking"] = evaluate_ranking(rec, test)
        except ValueError as exc:
            log.warning("ranking metrics skipped: %s", exc)
    rec.save(str(out), metrics=metrics, overwrite=overwrite)
    return rec, metrics


def _redact(url: str) -> str:
    """The URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable)"
