"""Where a run's ratings come from: one spec (:class:`DataSource`) and one loader
(:func:`load_dataset`) for every way in: the command line's data options, an experiment file's
``[data]`` table, and a saved run's record (its ``data``), from which evaluate, retrain and blend
reload exactly what the run was trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reelrec.data.dataset import DEFAULT_DUPLICATES, Dataset, DuplicatePolicy
from reelrec.errors import DataError, ReelrecError

#: the column options of a ratings file (``--user-col`` ...), as ``load_ratings`` names them
COLUMN_OPTIONS = ("user_col", "item_col", "rating_col", "timestamp_col", "sep")


class SideData(BaseModel):
    """Side tables joined into the dataset for hybrid models (``--users``, ``--item-info``,
    ``--tags``); part of a run's recorded :class:`DataSource` (``data.side``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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


class DataSource(BaseModel):
    """A dataset to load: a MovieLens name or folder (``dataset``), a ratings file and its
    options (``ratings``), or what a saved run recorded (``origin``); the policy for repeated
    pairs and the side tables joined in apply to all three.

    A run records the spec it was loaded from as ``DataSource.of(dataset, side)``: the ``origin``
    the data layer wrote (resolved path, checksum, columns), so a reload reads the very same data.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str | None = Field(None, description="a MovieLens name or an extracted folder")
    ratings: str | None = Field(None, description="a ratings file: CSV, TSV or Parquet")
    items: str | None = Field(None, description="an item file with titles/genres (with ratings)")
    columns: dict[str, str] = Field(default_factory=dict, description="user_col/item_col/rating_col/...")
    download: bool = False
    cache: bool | None = Field(None, description="None: unless REELREC_NO_CACHE is set")
    duplicates: DuplicatePolicy = DEFAULT_DUPLICATES
    side: SideData = Field(default_factory=SideData)
    origin: dict[str, Any] | None = Field(
        None, description="a saved run's source, as the data layer described it (kind, path, sha256, ...)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataSource:
        if sum(x is not None for x in (self.dataset, self.ratings, self.origin)) > 1:
            raise ValueError("give one of dataset, ratings or a recorded origin")
        return self

    @classmethod
    def of(cls, ds: Dataset, side: SideData | None = None) -> DataSource:
        """The spec a run records for ``ds`` (loaded with ``side``): reloads it exactly."""
        policy = ds.source.get("duplicates") or DEFAULT_DUPLICATES
        return cls(origin=dict(ds.source), duplicates=policy, side=side or SideData())

    def record(self) -> dict[str, Any]:
        """The JSON a run's ``config.json`` holds (``data``): set fields only."""
        out = self.model_dump(exclude_defaults=True, exclude={"side"})
        out["duplicates"] = self.duplicates
        out["side"] = self.side.to_json()
        return out


def load_dataset(source: DataSource, data_home: str | None = None, *, progress: bool = True) -> Dataset:
    """The dataset ``source`` names, repeated pairs merged by its policy, side data joined."""
    if source.origin is not None:
        ds = _load_origin(source.origin, data_home)
    elif source.ratings:
        from reelrec.data.tabular import load_ratings

        kwargs: dict[str, Any] = {k: v for k, v in source.columns.items() if v is not None}
        if source.items is not None:
            kwargs["items_path"] = source.items
        ds = load_ratings(source.ratings, cache=source.cache, progress=progress, **kwargs)
    elif source.dataset:
        from reelrec.data.movielens import load_movielens

        ds = load_movielens(
            source.dataset,
            data_home=data_home,
            download=source.download,
            progress=progress,
            cache=source.cache,
        )
    else:
        raise DataError("no data given: name a dataset or a ratings file")
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
    """Reload the dataset a run was trained on from the ``source`` the data layer recorded
    (repeated pairs merged again by the policy it records); ``load_dataset`` of
    ``DataSource(origin=source)`` without side tables."""
    policy = source.get("duplicates") or DEFAULT_DUPLICATES
    return load_dataset(DataSource(origin=source, duplicates=policy), data_home, progress=False)


def _load_origin(source: dict[str, Any], data_home: str | None = None) -> Dataset:
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
