"""Side tables of users and items: read from files, joined into a :class:`Dataset`, and MovieLens
tags; with the typed feature schema (:mod:`reelrec.data.feature_schema`) re-exported, so
``from reelrec.data.features import FeatureSchema, infer_schema`` keeps working.

Side tables come with the MovieLens loaders, from :func:`load_user_info` / :func:`load_item_info`
(any CSV/TSV/``::``/Parquet file, or MovieLens' own ``u.user`` / ``users.dat``) joined in with
:func:`with_user_info` / :func:`with_item_info`, and, for MovieLens tags, :func:`attach_tags`.
A :class:`FeatureSchema` fitted on the training entities (:func:`infer_schema`) encodes them
(:func:`encode_features`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from reelrec.data.dataset import Dataset, _normalise_ids
from reelrec.data.feature_schema import (
    DEFAULT_MAX_CATEGORIES,
    DEFAULT_TOP_TAGS,
    FeatureKind,
    FeatureSchema,
    FeatureSpec,
    Side,
    _positions,
    _ranked_values,
    _show,
    encode_features,
    infer_schema,
    parse_feature_requests,
)
from reelrec.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_CATEGORIES",
    "DEFAULT_TOP_TAGS",
    "FeatureKind",
    "FeatureSchema",
    "FeatureSpec",
    "Side",
    "attach_tags",
    "encode_features",
    "infer_schema",
    "load_item_info",
    "load_user_info",
    "parse_feature_requests",
    "with_item_info",
    "with_user_info",
]


# ---------------------------------------------------------------------------- tags
def attach_tags(
    dataset: Dataset,
    tags: pd.DataFrame | None = None,
    *,
    top_n: int = DEFAULT_TOP_TAGS,
    column: str = "tags",
) -> Dataset:
    """The dataset with a ``tags`` column in ``item_info``: each movie's kept tags, ``|``-joined.

    Tags are lower-cased and stripped (a ``|`` inside a tag becomes ``/``); the ``top_n`` tags
    applied to the most movies are kept, and each movie lists the kept tags it has, most widely
    applied first. Movies without kept tags get ``""``.

    Args:
        dataset: a MovieLens dataset (ml-10m, ml-latest*, ml-20m+) or any dataset when ``tags``
            is given.
        tags: tag applications with columns ``item`` and ``tag`` (as :func:`load_tags` returns);
            ``None`` reads the dataset's own tag file.
        top_n: how many distinct tags to keep.
        column: the item_info column to write.

    Raises:
        DataError: ``tags`` is ``None`` and the dataset has no tag file.
    """
    if top_n < 1:
        raise ConfigError(f"top_n must be at least 1, got {top_n}")
    if tags is None:
        from reelrec.data.movielens import load_tags

        source = dataset.source or {}
        if source.get("kind") != "movielens" or not source.get("path"):
            raise DataError(f"{dataset.name} is not a MovieLens folder with a tag file; pass the tags")
        tags = load_tags(source["path"])
    missing = {"item", "tag"} - set(tags.columns)
    if missing:
        raise DataError(f"tags need columns item and tag (missing {', '.join(sorted(missing))})")
    tag = tags["tag"].astype("string").str.strip().str.lower().str.replace("|", "/", regex=False)
    frame = pd.DataFrame({"item": _normalise_ids(tags["item"].to_numpy()), "tag": tag.astype(object)})
    frame = frame[tag.notna().to_numpy() & (tag.str.len() > 0).fillna(False).to_numpy()]
    frame = frame.drop_duplicates()
    kept = _ranked_values(frame["tag"].value_counts(), top_n, 1)
    rank = pd.Series(np.arange(len(kept)), index=kept)
    frame = frame[frame["tag"].isin(rank.index)].assign(rank=lambda f: rank.reindex(f["tag"]).to_numpy())
    joined = frame.sort_values(["item", "rank"]).groupby("item", sort=True)["tag"].agg("|".join)
    info = dataset.item_info
    if info is None:
        info = pd.DataFrame(index=pd.Index(dataset.items.ids, name="item"))
    pos = _positions(pd.DataFrame(index=joined.index), _normalise_ids(info.index.to_numpy()), "item")
    values = np.full(len(info), "", dtype=object)
    values[pos >= 0] = joined.to_numpy(dtype=object)[pos[pos >= 0]]
    info = info.assign(**{column: pd.Series(values, index=info.index, dtype=object)})
    logger.info("tags: kept %d tags; %d movies have one", len(kept), int((pos >= 0).sum()))
    return replace(dataset, item_info=info)


# ---------------------------------------------------------------------------- side tables from files
def _convert_numeric(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns read as text become numbers where every value is one (but ``"02460"`` stays text)."""
    out = {}
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_string_dtype(s) or s.dtype == object:
            text = s.astype("string").str.strip()
            text = text.where(text.str.len() > 0)
            x = pd.to_numeric(text, errors="coerce")
            leading_zero = text.str.match(r"^[+-]?0\d").fillna(False).to_numpy(dtype=bool).any()
            if text.notna().any() and not (text.notna() & x.isna()).any() and not leading_zero:
                xs = x.to_numpy(dtype=np.float64, na_value=np.nan)
                fin = xs[np.isfinite(xs)]
                out[col] = x.astype("Int64") if np.all(fin == np.round(fin)) else x.astype("float64")
            else:
                out[col] = text.astype(object).where(text.notna(), None)
        else:
            out[col] = s
    return pd.DataFrame(out, index=frame.index)


def _load_side_table(
    path: Path, role: Literal["user", "item"], id_col: str, columns: list[str] | None, sep: str | None
) -> pd.DataFrame:
    from reelrec.data.tabular import _read_table, _read_text
    from reelrec.data.tabular import _resolve as resolve_column

    frame, cols, used_sep, has_header = _read_table(path, sep)
    if not has_header:
        raise DataError(f"{path}: the {role} file needs a header row; its first line is {cols}")
    id_name = resolve_column(cols, id_col, role, path, required=True)
    if frame is None:
        frame = _read_text(path, used_sep, header=True, names=None, text_cols=cols)
    wanted = [c for c in (columns if columns is not None else cols) if c != id_name]
    absent = [c for c in wanted if c not in frame.columns]
    if absent:
        raise DataError(f"{path}: no column {absent[0]!r}; the file has columns {cols}")
    ids = frame[id_name]
    blank = (ids.isna() | (ids.astype("string").str.strip() == "")).to_numpy(dtype=bool)
    if blank.any():
        raise DataError(f"{path}: data row {int(np.flatnonzero(blank)[0]) + 1} has no {role} id")
    table = _convert_numeric(frame[wanted].reset_index(drop=True))
    table.index = pd.Index(_normalise_ids(ids.astype("string").str.strip().to_numpy()), name=role)
    return table


def _finish(table: pd.DataFrame, path: Path, role: str) -> pd.DataFrame:
    dup = table.index.duplicated()
    if dup.any():
        raise DataError(f"{path}: {role} id {_show(table.index[dup][0])!r} appears more than once")
    logger.info("%s: %d %ss, columns %s", path, len(table), role, list(table.columns))
    return table


def load_user_info(
    path: str | Path,
    *,
    id_col: str = "user_id",
    columns: list[str] | None = None,
    sep: str | None = None,
    data_home: str | Path | None = None,
) -> pd.DataFrame:
    """A user table indexed by raw user id, for :func:`with_user_info`.

    Args:
        path: a MovieLens registry name (``"ml-1m"``) or folder with a user file; MovieLens'
            ``u.user`` / ``users.dat`` (``UserID::Gender::Age::Occupation::Zip``, occupations
            decoded to names); or any CSV/TSV/``::``-separated text (with a header row) or
            Parquet file. Text columns whose values are all numbers become numbers, except
            codes with a leading zero (zip codes stay text).
        id_col: the user id column of a generic file (``user_id``, ``userId``, ``user`` ... are
            found automatically).
        columns: the columns to keep (default: all).
        sep: separator of a generic text file (default: sniffed).
        data_home: where registry names are looked up.

    Raises:
        DataError: a missing or malformed file, no id column, a repeated id.
    """
    return _load_info(path, "user", id_col, columns, sep, data_home)


def load_item_info(
    path: str | Path,
    *,
    id_col: str = "item_id",
    columns: list[str] | None = None,
    sep: str | None = None,
    data_home: str | Path | None = None,
) -> pd.DataFrame:
    """An item table indexed by raw item id, for :func:`with_item_info`.

    Like :func:`load_user_info`; MovieLens movie files (``u.item``, ``movies.dat``,
    ``movies.csv``, registry names, folders) give ``title``, ``year`` and ``genres``.
    """
    return _load_info(path, "item", id_col, columns, sep, data_home)


def _load_info(
    path: str | Path,
    role: Literal["user", "item"],
    id_col: str,
    columns: list[str] | None,
    sep: str | None,
    data_home: str | Path | None,
) -> pd.DataFrame:
    from reelrec.data import movielens as ml

    # MovieLens' own headerless formats, recognised by file name
    native = {
        "user": {"u.user": ml.ML100K_LAYOUT, "users.dat": ml.ML1M_LAYOUT},
        "item": {"u.item": ml.ML100K_LAYOUT, "movies.dat": ml.ML1M_LAYOUT, "movies.csv": ml.CSV_LAYOUT},
    }[role]
    reader = ml._read_users if role == "user" else ml._read_items
    p = Path(path).expanduser()
    if p.is_dir():
        found = [(ml._find(p, name), layout) for name, layout in native.items() if ml._find(p, name)]
        if not found:
            raise DataError(f"{p}: no {' or '.join(native)} in this folder")
        table = reader(*found[0])
    elif str(path) in ml.DATASETS:
        loader = ml.load_users if role == "user" else ml.load_items
        table = loader(str(path), data_home=data_home)
    elif p.name.removesuffix(".gz") in native and not p.name.startswith("movies.csv"):  # CSV: generic
        if not p.is_file():
            raise DataError(f"{p}: no such file")
        table = reader(p, native[p.name.removesuffix(".gz")])
    else:
        return _finish(_load_side_table(p.resolve(), role, id_col, columns, sep), p, role)
    if columns is not None:
        absent = [c for c in columns if c not in table.columns]
        if absent:
            raise DataError(f"{p}: no column {absent[0]!r}; it has {list(table.columns)}")
        table = table[columns]
    return _finish(table, p, role)


def _with_info(dataset: Dataset, info: pd.DataFrame, side: Side) -> Dataset:
    vocab = dataset.users if side == "user" else dataset.items
    table = info.copy()
    table.index = pd.Index(_normalise_ids(table.index.to_numpy()), name=side)
    if not table.index.is_unique:
        dup = _show(table.index[table.index.duplicated()][0])
        raise DataError(f"the {side} table lists id {dup!r} more than once")
    found = int((_positions(table, vocab.ids, side) >= 0).sum())
    if found == 0:
        raise DataError(
            f"none of the {len(vocab):,} {side}s of {dataset.name} is in the {side} table "
            f"({len(table):,} rows); do the ids match?"
        )
    logger.info("%s table covers %d of %d %ss", side, found, len(vocab), side)
    current = dataset.user_info if side == "user" else dataset.item_info
    if current is not None:
        cur = current.copy()
        cur.index = pd.Index(_normalise_ids(cur.index.to_numpy()), name=side)
        overlap = [c for c in table.columns if c in cur.columns]
        if cur.index.dtype.kind != table.index.dtype.kind:
            cur.index, table.index = cur.index.astype(str), table.index.astype(str)
        table = cur.drop(columns=overlap).join(table, how="outer")
    return replace(dataset, **{f"{side}_info": table})


def with_user_info(dataset: Dataset, info: pd.DataFrame) -> Dataset:
    """The dataset with ``info``'s columns joined into ``user_info`` (``info`` wins on a name clash).

    Raises:
        DataError: no user of the dataset is in ``info`` (the ids do not match), or a repeated id.
    """
    return _with_info(dataset, info, "user")


def with_item_info(dataset: Dataset, info: pd.DataFrame) -> Dataset:
    """The dataset with ``info``'s columns joined into ``item_info`` (``info`` wins on a name clash).

    Raises:
        DataError: no item of the dataset is in ``info`` (the ids do not match), or a repeated id.
    """
    return _with_info(dataset, info, "item")
