"""Where a run's ratings come from: load them (a MovieLens name, any ratings file), join the side
data of hybrid models, and reload the dataset a saved run recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reelrec.data.dataset import DEFAULT_DUPLICATES, Dataset
from reelrec.errors import DataError, ReelrecError

#: the column options of a ratings file (``--user-col`` ...), as ``load_ratings`` names them
COLUMN_OPTIONS = ("user_col", "item_col", "rating_col", "timestamp_col", "sep")


@dataclass(frozen=True)
class SideData:
    """Side tables joined into the dataset for hybrid models (``--users``, ``--item-info``,
    ``--tags``); recorded in a run's ``config.json`` as ``side_data``."""

    users: str | None = None
    item_info: str | None = None
    tags: int | None = None
    user_id_col: str = "user_id"

    def __bool__(self) -> bool:
        return bool(self.users or self.item_info or self.tags)

    def to_json(self) -> dict[str, Any]:
        """The record written into ``config.json`` (the given tables only)."""
        out: dict[str, Any] = {
            k: v for k, v in (("users", self.users), ("item_info", self.item_info), ("tags", self.tags)) if v
        }
        if self.users and self.user_id_col != "user_id":
            out["user_id_col"] = self.user_id_col
        return out

    @classmethod
    def from_json(cls, record: dict[str, Any] | None) -> SideData:
        record = record or {}
        return cls(
            users=record.get("users"),
            item_info=record.get("item_info"),
            tags=record.get("tags"),
            user_id_col=record.get("user_id_col") or "user_id",
        )


@dataclass(frozen=True)
class DataSource:
    """A dataset to load: a MovieLens name or folder, or a ratings file and its options."""

    dataset: str | None = None
    ratings: str | None = None
    items: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    download: bool = False
    cache: bool | None = None  # None: unless REELREC_NO_CACHE is set
    duplicates: str = DEFAULT_DUPLICATES
    side: SideData = field(default_factory=SideData)


def load_dataset(source: DataSource, data_home: str | None = None, *, progress: bool = True) -> Dataset:
    """The dataset ``source`` names, repeated pairs merged by its policy, side data joined."""
    if source.ratings:
        from reelrec.data.tabular import load_ratings

        kwargs: dict[str, Any] = {k: v for k, v in source.columns.items() if v is not None}
        if source.items is not None:
            kwargs["items_path"] = source.items
        ds = load_ratings(source.ratings, cache=source.cache, progress=progress, **kwargs)
    else:
        from reelrec.data.movielens import load_movielens

        ds = load_movielens(
            source.dataset,
            data_home=data_home,
            download=source.download,
            progress=progress,
            cache=source.cache,
        )
    ds = ds.deduplicate(source.duplicates or DEFAULT_DUPLICATES)  # before any split
    return attach_side_data(ds, source.side, data_home)


def attach_side_data(ds: Dataset, side: SideData, data_home: str | None = None) -> Dataset:
    """Join the ``side`` tables (users, item info, tags) into ``ds`` (for hybrid models)."""
    if not side:
        return ds
    from reelrec.data.features import (
        attach_tags,
        load_item_info,
        load_user_info,
        with_item_info,
        with_user_info,
    )

    if side.users:
        ds = with_user_info(ds, load_user_info(side.users, id_col=side.user_id_col, data_home=data_home))
    if side.item_info:
        ds = with_item_info(ds, load_item_info(side.item_info, data_home=data_home))
    if side.tags:
        ds = attach_tags(ds, top_n=side.tags)
    return ds


def load_source(source: dict[str, Any], data_home: str | None = None) -> Dataset:
    """Reload the dataset a run was trained on, from the ``source`` recorded in its config
    (repeated pairs merged again by the policy it records)."""
    ds = _load_source(source, data_home)
    return ds.deduplicate(source.get("duplicates") or DEFAULT_DUPLICATES)


def _load_source(source: dict[str, Any], data_home: str | None = None) -> Dataset:
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
