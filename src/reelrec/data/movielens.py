"""MovieLens' native formats: the readers of each archive's files and the loaders built on them.

The registry of archives, where they live and their verified download are
:mod:`reelrec.data.grouplens` (re-exported here: ``from reelrec.data.movielens import download``
keeps working). The readers know the three formats of its :class:`~reelrec.data.grouplens.Layout`:

* ``100k``: ``u.data`` (tab-separated, no header), ``u.item``/``u.user`` (``|``-separated, Latin-1);
* ``dat`` (ml-1m, ml-10m): ``::``-separated ``ratings.dat``, ``movies.dat`` [, ``users.dat``,
  ``tags.dat``];
* ``csv`` (ml-20m and later): ``ratings.csv``, ``movies.csv``, ``tags.csv`` with headers.

Ratings go through the fast reader (:mod:`reelrec.data.fastio`) behind the array cache, with
pandas as the reference and fallback.
"""

from __future__ import annotations

import csv
import functools
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from reelrec.data import cache as array_cache
from reelrec.data.cache import cached_frame, cached_read
from reelrec.data.dataset import Dataset
from reelrec.data.fastio import RatingArrays, Unsupported, read_text_ratings
from reelrec.data.grouplens import (
    CSV_LAYOUT,
    DATASETS,
    ENV_VAR,
    ML1M_LAYOUT,
    ML10M_LAYOUT,
    ML100K_LAYOUT,
    Layout,
    MovieLensSpec,
    _find,
    _missing,
    _require,
    _resolve,
    data_home,
    download,
    is_present,
    list_datasets,
)
from reelrec.data.tabular import _open_bytes, build_item_info
from reelrec.errors import DataError

logger = logging.getLogger(__name__)

__all__ = [
    "CSV_LAYOUT",
    "DATASETS",
    "ENV_VAR",
    "ML1M_LAYOUT",
    "ML10M_LAYOUT",
    "ML100K_LAYOUT",
    "Layout",
    "MovieLensSpec",
    "data_home",
    "download",
    "is_present",
    "list_datasets",
    "load_items",
    "load_ml100k_split",
    "load_movielens",
    "load_tags",
    "load_users",
]

_data_home = data_home  # the public function's name is shadowed by the parameters below

ML100K_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
# ml-1m README, "USERS FILE DESCRIPTION"
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip


# ---------------------------------------------------------------------------- readers
def _parse_error(path: Path, exc: Exception) -> DataError:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"{path}: cannot parse ({msg})")


def _text(path: Path, encoding: str) -> str:
    data = _open_bytes(path)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        logger.debug("%s is not %s; reading it as latin-1", path, encoding)
        return data.decode("latin-1")


def _lines(path: Path, encoding: str, pattern: str, n_fields: int) -> pd.DataFrame:
    """Match each non-empty line of a ``::`` text file against ``pattern`` (vectorised)."""
    lines = pd.Series(_text(path, encoding).splitlines())
    lines = lines[lines.str.strip() != ""].reset_index(drop=True)
    parts = lines.str.extract(pattern)
    bad = parts[0].isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: line {row + 1} does not have {n_fields} '::'-separated fields")
    return parts


_RATING_COLUMNS = ["user", "item", "rating", "timestamp"]
_RATING_DTYPES = {"user": np.int64, "item": np.int64, "rating": np.float64, "timestamp": np.int64}


def _read_ratings(path: Path, layout: Layout) -> pd.DataFrame:
    """Ratings as a frame ``user, item, rating, timestamp`` in file order."""
    try:
        if layout.format == "100k":
            return pd.read_csv(path, sep="\t", header=None, names=_RATING_COLUMNS, dtype=_RATING_DTYPES)
        if layout.format == "dat":
            # "1::1193::5::978300760" split on ":" gives the fields at 0, 2, 4, 6 (no copy, C parser)
            frame = pd.read_csv(path, sep=":", header=None, usecols=[0, 2, 4, 6])
            frame.columns = _RATING_COLUMNS
            return frame.astype(_RATING_DTYPES)
        frame = pd.read_csv(path, usecols=["userId", "movieId", "rating", "timestamp"])
        frame = frame[["userId", "movieId", "rating", "timestamp"]]
        frame.columns = _RATING_COLUMNS
        return frame.astype(_RATING_DTYPES)
    except (ValueError, pd.errors.ParserError) as exc:
        raise _parse_error(path, exc) from exc


def _genre_names(folder: Path) -> list[str]:
    genre_file = _find(folder, "u.genre")
    if genre_file is None:
        return list(ML100K_GENRES)
    frame = pd.read_csv(
        genre_file,
        sep="|",
        header=None,
        names=["name", "idx"],
        encoding="latin-1",
        dtype={"name": str},
        keep_default_na=False,
    )
    frame = frame[frame["name"] != ""].sort_values("idx")
    return frame["name"].tolist()


def _read_items(path: Path, layout: Layout) -> pd.DataFrame:
    try:
        if layout.format == "100k":
            frame = pd.read_csv(
                path,
                sep="|",
                header=None,
                encoding=layout.encoding,
                dtype=str,
                keep_default_na=False,
                quoting=csv.QUOTE_NONE,
            )
            names = _genre_names(path.parent)
            if frame.shape[1] != 5 + len(names):
                raise DataError(
                    f"{path}: expected {5 + len(names)} '|'-separated fields, found {frame.shape[1]}"
                )
            flags = frame.iloc[:, 5:].to_numpy() == "1"
            genres = pd.Series("", index=frame.index, dtype=object)
            for j, genre in enumerate(names):  # one vectorised step per genre column
                genres = genres + np.where(flags[:, j], genre + "|", "")
            info = build_item_info(
                frame[0].astype(np.int64).to_numpy(), frame[1], genres.str.rstrip("|"), source=str(path)
            )
            # the release date's year only where the title carries none
            release = pd.to_numeric(frame[2].str.extract(r"(\d{4})\s*$")[0], errors="coerce").to_numpy()
            info["year"] = info["year"].fillna(pd.Series(release, index=info.index).astype("Int64"))
            return info
        if layout.format == "dat":
            parts = _lines(path, layout.encoding, r"^\s*(\d+)::(.*)::([^:]*?)\s*$", 3)
            return build_item_info(parts[0].astype(np.int64).to_numpy(), parts[1], parts[2], source=str(path))
        frame = pd.read_csv(
            path,
            usecols=["movieId", "title", "genres"],
            encoding=layout.encoding,
            dtype={"title": str, "genres": str},
            keep_default_na=False,
        )
        return build_item_info(
            frame["movieId"].astype(np.int64).to_numpy(), frame["title"], frame["genres"], source=str(path)
        )
    except (ValueError, pd.errors.ParserError) as exc:
        if isinstance(exc, DataError):
            raise
        raise _parse_error(path, exc) from exc


def _read_users(path: Path, layout: Layout) -> pd.DataFrame:
    try:
        if layout.format == "100k":
            frame = pd.read_csv(
                path,
                sep="|",
                header=None,
                names=["user", "age", "gender", "occupation", "zip"],
                encoding=layout.encoding,
                dtype=str,
                keep_default_na=False,
            )
            frame["age"] = frame["age"].astype(np.int64)
        else:
            frame = pd.read_csv(
                path,
                sep=":",
                header=None,
                usecols=[0, 2, 4, 6, 8],
                dtype=str,
                keep_default_na=False,
                encoding=layout.encoding,
            )
            frame.columns = ["user", "gender", "age", "occupation", "zip"]
            code = frame["occupation"].astype(np.int64).to_numpy()
            if code.size and (code.min() < 0 or code.max() >= len(ML1M_OCCUPATIONS)):
                row = int(np.flatnonzero((code < 0) | (code >= len(ML1M_OCCUPATIONS)))[0])
                raise DataError(f"{path}: line {row + 1} has unknown occupation code {code[row]}")
            frame["occupation"] = np.asarray(ML1M_OCCUPATIONS, dtype=object)[code]
            frame["age"] = frame["age"].astype(np.int64)
    except DataError:
        raise
    except (ValueError, pd.errors.ParserError) as exc:
        raise _parse_error(path, exc) from exc
    frame["user"] = frame["user"].astype(np.int64)
    return frame.set_index("user")[["age", "gender", "occupation", "zip"]]


# ---------------------------------------------------------------------------- public loaders
def _fast_ratings(path: Path, layout: Layout, cache: bool | None, progress: bool) -> RatingArrays:
    """The ratings file read by the fast reader (through the array cache)."""
    header = layout.format == "csv"
    sep = {"100k": "\t", "dat": "::", "csv": ","}[layout.format]
    positions = dict(zip(("user", "item", "rating", "timestamp"), range(4), strict=True))
    if header:  # ratings.csv: find the columns by name, as the pandas path does
        from reelrec.data.tabular import _first_line, _split_header

        columns = _split_header(_first_line(path), ",")
        names = {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"}
        if not set(names.values()) <= set(columns):
            raise Unsupported(f"columns {columns}")
        positions = {role: columns.index(col) for role, col in names.items()}
        n_fields = len(columns)
    else:
        n_fields = 4
    params = {"reader": "movielens", "format": layout.format, "positions": positions, "n_fields": n_fields}
    return cached_read(
        path,
        params,
        lambda: read_text_ratings(
            path,
            sep=sep,
            header=header,
            positions=positions,
            n_fields=n_fields,
            typed=True,
            progress=progress,
        ),
        cache=cache,
    )


def load_movielens(
    name_or_path: str | Path,
    *,
    data_home: str | Path | None = None,
    download: bool = False,
    progress: bool = False,
    cache: bool | None = None,
) -> Dataset:
    """Load a MovieLens dataset by registry name or from an extracted folder.

    Args:
        name_or_path: a registry name (``"ml-100k"``) looked up in the data home, or the path of
            an extracted MovieLens folder (its format is detected from the files in it).
        data_home: see :func:`data_home`.
        download: download a registry dataset that is missing.
        progress: show a progress bar while downloading and reading.
        cache: keep the rating arrays in a cache beside the data and read them from there next
            time (see :mod:`reelrec.data.cache`); ``None`` follows ``$REELREC_NO_CACHE``.

    Returns:
        The ratings in file order, with ``item_info`` (``title`` without the year, ``year`` Int64,
        ``genres`` ``|``-joined) and, for ml-100k and ml-1m, ``user_info`` (``age`` int, which is
        the age-group code for ml-1m, ``gender``, ``occupation`` name, ``zip`` str).
        ``source`` is ``{"kind": "movielens", "name", "path"}``.

    Raises:
        DataError: unknown name, missing files (the message says to run ``reelrec download NAME``
            or set ``REELREC_DATA_HOME``), or a malformed file.
        DownloadError: ``download=True`` and the download failed.
    """
    name, folder, layout, from_registry = _resolve(name_or_path, data_home)
    if from_registry and download and _missing(layout, folder):
        folder = _download(name, data_home, progress=progress)
    ratings_path = _require(name, folder, layout.ratings, "ratings", from_registry)
    movies_path = _require(name, folder, layout.movies, "movies", from_registry)
    users_path = None  # a registry copy must have its user file; a folder given by path may lack it
    if layout.users is not None:
        users_path = (
            _require(name, folder, layout.users, "users", True)
            if from_registry
            else _find(folder, layout.users)
        )
    try:
        arrays: RatingArrays | None = _fast_ratings(ratings_path, layout, cache, progress)
    except Unsupported as exc:  # the pandas path reads it (or names the row it cannot read)
        logger.info("%s: %s; reading it with pandas", ratings_path, exc)
        arrays = None
    if (
        arrays is not None
        and layout.format != "100k"
        and ratings_path.stat().st_size >= array_cache.MIN_BYTES
    ):
        # a large dataset: its movie table is cached too (ml-100k's also depends on u.genre)
        params = {"reader": "movielens-items", "format": layout.format}
        read_items = functools.partial(_read_items, movies_path, layout)
        item_info = cached_frame(movies_path, params, read_items, cache=cache, min_bytes=0)
    else:
        item_info = _read_items(movies_path, layout)
    user_info = None if users_path is None else _read_users(users_path, layout)
    source = {"kind": "movielens", "name": name, "path": str(folder.resolve())}
    if arrays is not None:
        ds = Dataset.from_arrays(arrays, name=name, item_info=item_info, user_info=user_info, source=source)
    else:
        frame = _read_ratings(ratings_path, layout)
        ds = Dataset.from_frame(frame, name=name, item_info=item_info, user_info=user_info, source=source)
    logger.info("loaded %s", ds.describe())
    return ds


_download = download  # ``load_movielens`` has a ``download`` flag


def load_items(name_or_path: str | Path, *, data_home: str | Path | None = None) -> pd.DataFrame:
    """The movie table of a MovieLens dataset (as ``Dataset.item_info``), without reading ratings."""
    name, folder, layout, from_registry = _resolve(name_or_path, data_home)
    return _read_items(_require(name, folder, layout.movies, "movies", from_registry), layout)


def load_users(name_or_path: str | Path, *, data_home: str | Path | None = None) -> pd.DataFrame:
    """The user table of ml-100k or ml-1m (as ``Dataset.user_info``), without reading ratings.

    Raises:
        DataError: the dataset has no user file, or it is missing.
    """
    name, folder, layout, from_registry = _resolve(name_or_path, data_home)
    return _read_users(_require(name, folder, layout.users, "users", from_registry), layout)


def load_tags(name_or_path: str | Path, *, data_home: str | Path | None = None) -> pd.DataFrame:
    """Tag applications (ml-10m and the CSV datasets) as a frame ``user, item, tag, timestamp``.

    Tags are free text, kept as written (UTF-8). Rows keep file order.

    Raises:
        DataError: the dataset has no tag file (ml-100k, ml-1m), or it is missing.
    """
    name, folder, layout, from_registry = _resolve(name_or_path, data_home)
    path = _require(name, folder, layout.tags, "tags", from_registry)
    try:
        if layout.format == "dat":
            parts = _lines(path, layout.encoding, r"^\s*(\d+)::(\d+)::(.*)::(\d+)\s*$", 4)
        else:
            parts = pd.read_csv(
                path,
                usecols=["userId", "movieId", "tag", "timestamp"],
                encoding=layout.encoding,
                dtype={"tag": str},
                keep_default_na=False,
            )
            parts = parts[["userId", "movieId", "tag", "timestamp"]]
        parts.columns = ["user", "item", "tag", "timestamp"]
        return parts.astype({"user": np.int64, "item": np.int64, "tag": object, "timestamp": np.int64})
    except (ValueError, pd.errors.ParserError) as exc:
        raise _parse_error(path, exc) from exc


def load_ml100k_split(
    split: str, *, data_home: str | Path | None = None, path: str | Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The predefined ml-100k train/test files ``<split>.base`` and ``<split>.test``.

    Args:
        split: ``"u1"`` .. ``"u5"`` (5-fold cross-validation; the five test sets partition
            ``u.data``), ``"ua"`` or ``"ub"`` (10 test ratings per user).
        data_home: where ``ml-100k/`` is (see :func:`data_home`); ignored when ``path`` is given.
        path: the ml-100k folder itself.

    Returns:
        ``(base, test)`` frames with columns ``user, item, rating, timestamp`` in file order.
    """
    if split not in ML100K_SPLITS:
        raise DataError(f"unknown ml-100k split {split!r}; known: {', '.join(ML100K_SPLITS)}")
    if path is None:
        name, folder, from_registry = "ml-100k", _data_home(data_home) / "ml-100k", True
    else:
        name, folder, from_registry = "ml-100k", Path(path).expanduser(), False
    return tuple(  # type: ignore[return-value]
        _read_ratings(_require(name, folder, f"{split}.{part}", part, from_registry), ML100K_LAYOUT)
        for part in ("base", "test")
    )
