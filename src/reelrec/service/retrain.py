"""Retrain a run on its original data plus the ratings people stored through the service.

The original data is reloaded from the source recorded in the run and split exactly as the run
was (same protocol, seed and validation fraction), so the new run's test figures compare with
the old one's. Every stored rating goes into the *training* part: each stored profile becomes a
new user (integer ids continue after the largest existing id; string ids are ``profile:<id>``),
and the mapping is recorded in the new run's ``config.json``. The old run is never touched.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reelrec.artifacts import check_target
from reelrec.data.dataset import Dataset, Vocabulary
from reelrec.data.split import Split
from reelrec.errors import ConfigError, DataError
from reelrec.runs.record import RunRecord, load_run_data, read_record, rebuild_split
from reelrec.runs.train import train_run
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
    """Train ``run_dir``'s model again on its data plus the store's ratings; save to ``out``.

    The data is reloaded and split as the run recorded (a dataset that changed since is refused),
    and the test metrics follow the run's protocol, so they compare with the old run's."""
    from reelrec.training.recipe import recipe

    run_dir, out = Path(run_dir), Path(out)
    record = read_record(run_dir)
    if out.resolve() == run_dir.resolve():
        raise ConfigError("--out must be a new run directory: the old run stays as it is")
    check_target(out, overwrite)
    if record.dataset is None or record.split is None or record.model is None:
        raise ConfigError(f"{run_dir} does not record its dataset, split and model; retrain it by hand")
    ds = load_run_data(record, data_home, side_data=True)
    split = rebuild_split(record, ds)

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
    seed = record.seed if record.seed is not None else record.split_seed  # the run's training seed
    new_record = RunRecord(
        dataset=record.dataset,
        data=record.data,  # the old run's data spec: the new run reloads from it too
        split=record.split,
        seed=seed,
        protocol=record.protocol,  # the old run's protocol: test figures that compare with its own
        retrained_from=str(run_dir.resolve()),
        store={"url": _redact(store_url), "ratings": len(extra), "profiles": mapping, "skipped": dropped},
    )
    params = dict(record.model.config)
    # the run's recorded training settings as they were (none recorded: the model's recipe)
    plan = recipe(record.model.name, params, train, recorded=record.train or None)
    return train_run(
        record.model.name,
        Split(name=split.name, train=train, valid=valid, test=test),
        new_record,
        params=params,
        config=plan.train,
        seed=seed,
        device=device,
        progress=progress,
        out=out,
        overwrite=overwrite,
        metrics_extra={"stored_ratings": len(extra), "stored_profiles": len(mapping)},
    )


def _redact(url: str) -> str:
    """The URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable)"
