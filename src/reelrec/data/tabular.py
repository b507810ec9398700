"""Load any ratings file (CSV, TSV, ``::``/``|``-separated text or Parquet) into a :class:`Dataset`.

The format comes from the extension (``.parquet``/``.pq`` is Parquet, anything else is delimited
text, optionally ``.gz``-compressed). The separator of a text file is sniffed from its first line
unless given. Column names are matched exactly first; a default-like name that is absent falls back
to its common aliases (``userId``/``user``/``user_id``, ``movieId``/``item``/``itemId``/``item_id``,
``rating``/``score``, ``timestamp``/``time``), case- and underscore-insensitively.

:func:`build_item_info` is shared with :mod:`reelrec.data.movielens`: it turns raw titles such as
``"Heat (1995)"`` into ``title="Heat"``, ``year=1995``.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reelrec._files import sha256_file
from reelrec.data.cache import cached_read
from reelrec.data.dataset import Dataset, _ids_from_text, _normalise_ids, check_id_lengths
from reelrec.data.fastio import RatingArrays, Unsupported, read_parquet_ratings, read_text_ratings
from reelrec.errors import DataError

logger = logging.getLogger(__name__)

__all__ = ["build_item_info", "load_ratings", "sniff_sep"]

_PARQUET_EXTS = (".parquet", ".pq")
_SEP_CANDIDATES = ("\t", ",", ";", "|")
# normalised alias (lower case, no "_", "-" or " ") -> role
_ALIASES: dict[str, frozenset[str]] = {
    "user": frozenset({"userid", "user", "uid"}),
    "item": frozenset({"itemid", "item", "movieid", "movie", "iid"}),
    "rating": frozenset({"rating", "score", "ratings"}),
    "timestamp": frozenset({"timestamp", "time", "ts"}),
    "title": frozenset({"title", "name", "movietitle"}),
    "genres": frozenset({"genres", "genre"}),
    "year": frozenset({"year"}),
}
_NO_GENRES = "(no genres listed)"
#: load_ratings' default column names: only these fall back to their aliases
_DEFAULT_COLUMNS = {"user": "user_id", "item": "item_id", "rating": "rating", "timestamp": "timestamp"}
# "Title (1995)", "Title (2006–2007)", "Title (2016– )", with optional trailing spaces
_YEAR_RE = r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:\s*[-–]\s*\d{0,4}\s*)?\)\s*$"


def _norm(name: str) -> str:
    return str(name).lower().replace("_", "").replace("-", "").replace(" ", "")


# ---------------------------------------------------------------------------- item info
def build_item_info(
    ids: Any,
    titles: pd.Series | np.ndarray,
    genres: pd.Series | np.ndarray | None = None,
    years: pd.Series | np.ndarray | None = None,
    *,
    genres_sep: str = "|",
    source: str = "items",
) -> pd.DataFrame:
    """Item metadata in the shape :class:`Dataset` expects.

    Args:
        ids: raw item ids (normalised like the ratings' ids: integral values become ``int64``).
        titles: raw titles; a trailing ``"(YYYY)"`` (or ``"(YYYY-YYYY)"``) is removed from the title
            and becomes the year.
        genres: genre names joined by ``genres_sep``; ``"(no genres listed)"`` and missing values
            become ``""``.
        years: explicit years; where missing (or not given) the year parsed from the title is used.
        genres_sep: separator of ``genres`` in the input; the output always uses ``"|"``.
        source: what to call the input in error messages (a file name).

    Returns:
        A frame indexed by raw item id (index name ``"item"``) with columns ``title`` (str),
        ``year`` (nullable ``Int64``) and ``genres`` (``|``-joined str).

    Raises:
        DataError: an item id appears twice.
    """
    index = pd.Index(_normalise_ids(np.asarray(ids)), name="item")
    dup = index.duplicated()
    if dup.any():
        raise DataError(f"{source}: item id {index[dup].tolist()[0]!r} appears more than once")
    raw = pd.Series(np.asarray(titles, dtype=object), index=index).fillna("").astype(str)
    parts = raw.str.extract(_YEAR_RE)
    has_year = parts["title"].notna()
    title = parts["title"].where(has_year, raw).str.strip()
    year = pd.to_numeric(parts["year"], errors="coerce").astype("Int64")
    if years is not None:
        given = pd.to_numeric(pd.Series(np.asarray(years, dtype=object), index=index), errors="coerce")
        year = given.round().astype("Int64").fillna(year)
    if genres is None:
        genre = pd.Series("", index=index, dtype=object)
    else:
        genre = pd.Series(np.asarray(genres, dtype=object), index=index).fillna("").astype(str).str.strip()
        if genres_sep != "|":
            genre = genre.str.replace(genres_sep, "|", regex=False)
        genre = genre.str.replace(r"\s*\|\s*", "|", regex=True)
        genre = genre.where(genre != _NO_GENRES, "")
    return pd.DataFrame({"title": title.astype(str), "year": year, "genres": genre.astype(str)})


# ---------------------------------------------------------------------------- text helpers
def _open_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as fh:
            return fh.read()
    return path.read_bytes()


def _first_line(path: Path) -> str:
    """The first line of a text file (``.gz`` allowed), without BOM or line ending."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        head = fh.readline(1 << 16)
    return head.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")


_WIDE_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


def _check_encoding(path: Path) -> None:
    """Refuse text that is not UTF-8 or a one-byte encoding (UTF-16/32, binary), naming it."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4096)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    for bom, name in _WIDE_BOMS.items():
        if head.startswith(bom):
            raise DataError(f"{path}: the file is {name} text; save it as UTF-8 (CSV UTF-8) and retry")
    if b"\x00" in head:
        raise DataError(
            f"{path}: the file holds NUL bytes (UTF-16/32 text without a byte-order mark, or not text); "
            "save it as UTF-8"
        )


def sniff_sep(line: str) -> str:
    """The separator of a delimited line: ``"::"`` if present, else the most frequent of tab, ``,``,
    ``;`` and ``|``.

    Raises:
        DataError: none of them occurs.
    """
    if "::" in line:
        return "::"
    counts = [line.count(c) for c in _SEP_CANDIDATES]
    best = int(np.argmax(counts))
    if counts[best] == 0:
        raise DataError(f"cannot tell the separator from the first line {line[:60]!r}; pass sep=")
    return _SEP_CANDIDATES[best]


def _split_header(line: str, sep: str) -> list[str]:
    if len(sep) > 1:
        return [c.strip() for c in line.split(sep)]
    return [c.strip() for c in next(csv.reader([line], delimiter=sep))]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_text(
    path: Path,
    sep: str,
    *,
    header: bool,
    names: list[str] | None,
    text_cols: list[str] | None = None,
    id_cols: list[str] | None = None,
) -> pd.DataFrame:
    """Read a delimited file with pandas' C parser (multi-character separators are rewritten).

    ``text_cols`` are read as strings, with empty fields as ``""`` (so a title "NA" stays "NA");
    ``id_cols`` as strings too, missing values staying missing (an id is never a float).
    """
    kwargs: dict[str, Any] = {
        "header": 0 if header else None,
        "names": names,
        "engine": "c",
        "skipinitialspace": True,
    }
    if id_cols:
        kwargs["dtype"] = dict.fromkeys(id_cols, str)
    if text_cols:
        dtype = {**kwargs.get("dtype", {}), **dict.fromkeys(text_cols, str)}
        kwargs.update(dtype=dtype, keep_default_na=False, na_values={})
    if len(sep) > 1:
        src: Any = io.BytesIO(_open_bytes(path).replace(sep.encode(), b"\x1f"))
        kwargs.update(sep="\x1f", quoting=csv.QUOTE_NONE)
    else:
        src = path
        kwargs.update(sep=sep)
    # index_col=False: a row with more fields than the header is an error, never a silent shift of
    # every column by one (pandas would take the first column as the index)
    kwargs["index_col"] = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)  # mixed ids: read again as text
            try:
                return pd.read_csv(src, encoding="utf-8", **kwargs)
            except UnicodeDecodeError:
                if isinstance(src, io.BytesIO):
                    src.seek(0)
                return pd.read_csv(src, encoding="latin-1", **kwargs)
    except pd.errors.ParserWarning:
        raise DataError(
            f"{path}: data rows have more fields than the header (check the header and --sep)"
        ) from None
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: the file is empty") from exc
    except (pd.errors.ParserError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot parse ({msg})") from exc


def _read_table(path: Path, sep: str | None) -> tuple[pd.DataFrame | None, list[str], str | None, bool]:
    """Columns of a table file and, for Parquet, the frame itself.

    Returns ``(frame_or_None, columns, sep, has_header)``; text files are read later, once their
    columns are resolved.
    """
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a ratings file (give the file inside it)")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.name.lower().endswith(_PARQUET_EXTS):
        try:
            frame = pd.read_parquet(path)
        except ImportError as exc:
            raise DataError(
                f"{path}: reading Parquet needs pyarrow (pip install 'reelrec[parquet]')"
            ) from exc
        except Exception as exc:  # pyarrow raises its own error types for corrupt files
            raise DataError(f"{path}: cannot read Parquet ({exc})") from exc
        return frame, [str(c) for c in frame.columns], None, True
    _check_encoding(path)
    line = _first_line(path)
    if not line.strip():
        raise DataError(f"{path}: the file is empty (or its first line is blank)")
    if sep is None:
        try:
            sep = sniff_sep(line)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
    columns = _split_header(line, sep)
    has_header = not all(_is_number(c) for c in columns if c)
    return None, columns, sep, has_header


def _resolve(
    columns: list[str],
    want: str | None,
    role: str,
    path: Path,
    *,
    required: bool,
    default: str | None = None,
) -> str | None:
    """The column used for ``role``: ``want`` itself, else (when ``want`` is the role's ``default``,
    i.e. not a name the user chose, and a default-like name such as ``"userId"``) the first column
    that is one of the role's aliases. A name the user chose is never swapped for another column.
    ``want=None`` disables the role.
    """
    if want is None or want in columns:
        return want
    if default is not None and want != default:
        same = [c for c in columns if _norm(c) == _norm(want)]  # only case / "_" / "-" differ
        if same:
            return same[0]
        raise DataError(f"{path}: no {role} column {want!r}; the file has columns {columns}")
    if _norm(want) in _ALIASES[role]:
        found = [c for c in columns if _norm(c) in _ALIASES[role]]
        if found:
            logger.info("%s: using column %r for %s (no column %r)", path.name, found[0], role, want)
            return found[0]
        if not required:
            return None
    raise DataError(f"{path}: no {role} column {want!r}; the file has columns {columns}")


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _load_frame(
    path: Path, sep: str | None, wanted: dict[str, tuple[str | None, bool]]
) -> tuple[pd.DataFrame, dict[str, str | None], str | None]:
    """Read ``path`` and return a frame with one column per resolved role, the mapping and the sep.

    ``wanted`` maps role -> (requested column name, required).
    """
    frame, columns, sep, has_header = _read_table(path, sep)
    parquet = frame is not None
    if not has_header:
        # a first line of numbers: no header; columns are user, item, rating[, timestamp] by position
        if len(columns) not in (3, 4):
            raise DataError(
                f"{path}: the first line {columns} looks like data, not a header; add a header row"
            )
        positional = ["user", "item", "rating", "timestamp"][: len(columns)]
        frame = _read_text(path, sep, header=False, names=positional)
        mapping = {role: (role if role in positional else None) for role in wanted}
        reread = functools.partial(_read_text, path, sep, header=False, names=positional)
        _exact_ids(frame, path, {"user": "user", "item": "item"}, reread)
        return frame, mapping, sep
    mapping = {
        role: _resolve(columns, want, role, path, required=req, default=_DEFAULT_COLUMNS.get(role))
        for role, (want, req) in wanted.items()
    }
    _check_distinct(mapping, path, columns)
    if frame is None:  # all columns, so that a row with too many fields is an error
        frame = _read_text(path, sep, header=True, names=None)
    out = pd.DataFrame({role: frame[col] for role, col in mapping.items() if col is not None})
    if not parquet:
        reread = functools.partial(_read_text, path, sep, header=True, names=None)
        _exact_ids(out, path, {"user": mapping["user"], "item": mapping["item"]}, reread)
    return out, mapping, sep


def _check_distinct(mapping: dict[str, str | None], path: Path, columns: list[str]) -> None:
    """One column cannot play two roles (``--rating-col userId``), nor a column be named twice in the
    header (which of the two would be read?)."""
    seen: dict[str, str] = {}
    for role, col in mapping.items():
        if col is not None and columns.count(col) > 1:
            raise DataError(f"{path}: the header names column {col!r} {columns.count(col)} times; rename one")
        if col is not None and col in seen:
            raise DataError(
                f"{path}: column {col!r} is named for both the {seen[col]} and the {role}; "
                "each role needs its own column"
            )
        if col is not None:
            seen[col] = role


def _exact_ids(frame: pd.DataFrame, path: Path, columns: dict[str, str | None], reread: Any) -> None:
    """Id columns normalised exactly as the fast reader does
    (:func:`~reelrec.data.dataset._ids_from_text`: integers within int64 as ``int64``, ids past it
    as their text, never floats that merge).

    ``columns`` maps the frame's id columns to the file's. Integer columns stay as pandas read them
    (cheap); columns pandas read as floats, ``uint64`` or a mix of types are read again as text
    (``reread(id_cols=...)``). A column with a missing id is left for its error; an id longer than
    256 characters is refused before any array as wide as it is made.
    """
    todo = []
    for col in columns:
        values = frame[col]
        if values.dtype.kind == "O":
            check_id_lengths(values.to_numpy(), col, str(path))
        if values.dtype.kind in "iO" and pd.api.types.infer_dtype(values) in ("integer", "string", "empty"):
            if values.dtype.kind == "O" and not values.isna().any():
                codes, uniques = pd.factorize(values.to_numpy())
                frame[col] = _ids_from_text(np.asarray(uniques, dtype=str))[codes]
            continue
        if values.dtype.kind in "fuO" and not values.isna().any():
            todo.append(col)
    if not todo:
        return
    text = reread(id_cols=[columns[c] for c in todo])
    for col in todo:
        values = text[columns[col]].to_numpy(dtype=object)
        check_id_lengths(values, col, str(path))
        if pd.isna(values).any():  # an empty field read as a number before: left for its error
            continue
        codes, uniques = pd.factorize(values)
        frame[col] = _ids_from_text(np.asarray(uniques, dtype=str))[codes]


# ---------------------------------------------------------------------------- public loader
def load_ratings(
    path: str | Path,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    rating_col: str = "rating",
    timestamp_col: str | None = "timestamp",
    sep: str | None = None,
    items_path: str | Path | None = None,
    item_id_col: str = "item_id",
    title_col: str = "title",
    genres_col: str | None = "genres",
    genres_sep: str = "|",
    name: str | None = None,
    cache: bool | None = None,
    progress: bool = False,
) -> Dataset:
    """Load a ratings file (and optionally an items file) into a :class:`Dataset`.

    Large files are read by pyarrow's multithreaded reader into compact arrays
    (:mod:`reelrec.data.fastio`) and cached beside the file (:mod:`reelrec.data.cache`); files it
    does not read exactly like pandas (missing values, odd separators, ...) go through pandas.

    A text file needs a header row, except that a first line made only of numbers is taken as data,
    with columns user, item, rating[, timestamp] by position (so MovieLens' ``u.data`` and
    ``ratings.dat`` load too). Rows keep file order.

    Args:
        path: ``.csv``, ``.tsv``, ``.dat``, ``.txt`` (optionally ``.gz``) or ``.parquet``/``.pq``.
        user_col, item_col, rating_col: column names; default-like names that are absent fall back
            to common aliases (see the module docstring).
        timestamp_col: column of epoch seconds. The default ``"timestamp"`` (or an alias) is
            optional: a file without such a column loads without timestamps. ``None``: ignore
            timestamps.
        sep: separator of a text file (``"::"`` allowed); ``None`` sniffs it from the first line.
        items_path: optional CSV/TSV/Parquet file of item metadata, giving ``item_info``.
        item_id_col: item id column of the items file (aliases as for ``item_col``).
        title_col: title column of the items file; a trailing ``"(YYYY)"`` becomes the year unless
            the file has a ``year`` column.
        genres_col: genres column of the items file (``None``: no genres).
        genres_sep: separator of the genre names in ``genres_col``.
        name: the dataset's name; defaults to the file's name.
        cache: read and write the array cache (``None``: unless ``$REELREC_NO_CACHE`` is set).
        progress: show a progress bar while reading.

    Returns:
        The dataset. ``source`` is ``{"kind": "file", "path", "sha256", "sep", "columns",
        "items"}``, where ``columns`` maps user/item/rating/timestamp to the columns used and
        ``items`` is ``None`` or ``{"path", "sha256", "sep", "columns", "genres_sep"}``; calling
        ``load_ratings`` again with those values gives the same dataset.

    Raises:
        DataError: missing or empty file, missing column (the message lists the columns), a
            non-numeric rating or timestamp or a missing id (the message names the data row).
    """
    path = Path(path).expanduser().resolve()
    wanted = {
        "user": (user_col, True),
        "item": (item_col, True),
        "rating": (rating_col, True),
        "timestamp": (timestamp_col, False),
    }
    fast = _fast_load(path, sep, wanted, cache=cache, progress=progress)
    if fast is not None:
        arrays, mapping, used_sep = fast
        item_info, items_source = _items(items_path, item_id_col, title_col, genres_col, genres_sep)
        source = _file_source(path, arrays.sha256, used_sep, mapping, items_source)
        ds = Dataset.from_arrays(arrays, name=name or path.name, item_info=item_info, source=source)
        logger.info("loaded %s", ds.describe())
        return ds
    frame, mapping, used_sep = _load_frame(path, sep, wanted)
    if len(frame) == 0:
        raise DataError(f"{path}: no ratings (the file has a header but no data rows)")
    for role in ("user", "item"):
        missing = frame[role].isna().to_numpy()
        if missing.any():
            raise DataError(f"{path}: data row {_first_bad(missing) + 1} has no {role} id")
    for role in ("rating", "timestamp"):
        if role not in frame.columns:
            continue
        values = pd.to_numeric(frame[role], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=np.float64, na_value=np.nan))
        if bad.any():
            row = _first_bad(bad)
            value = frame[role].iloc[row : row + 1].tolist()[0]
            what = "empty" if pd.isna(value) else f"not a number ({value!r})"
            raise DataError(f"{path}: {role} on data row {row + 1} is {what}")
        frame[role] = values

    item_info, items_source = _items(items_path, item_id_col, title_col, genres_col, genres_sep)
    source = _file_source(path, None, used_sep, mapping, items_source)
    ds = Dataset.from_frame(frame, name=name or path.name, item_info=item_info, source=source)
    logger.info("loaded %s", ds.describe())
    return ds


def _items(
    items_path: str | Path | None, id_col: str, title_col: str, genres_col: str | None, genres_sep: str
) -> tuple[pd.DataFrame | None, dict[str, Any] | None]:
    if items_path is None:
        return None, None
    return _load_items(Path(items_path).expanduser().resolve(), id_col, title_col, genres_col, genres_sep)


def _file_source(
    path: Path,
    sha256: str | None,
    sep: str | None,
    mapping: dict[str, str | None],
    items_source: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "kind": "file",
        "path": str(path),
        "sha256": sha256 or sha256_file(path),
        "sep": sep,
        "columns": mapping,
        "items": items_source,
    }


def _fast_load(
    path: Path,
    sep: str | None,
    wanted: dict[str, tuple[str | None, bool]],
    *,
    cache: bool | None,
    progress: bool,
) -> tuple[RatingArrays, dict[str, str | None], str | None] | None:
    """``(arrays, columns used, sep)`` from the fast reader (through the cache), or ``None`` where
    the pandas path must read the file (it then also reports any error, naming the row)."""
    try:
        if not path.is_file():
            return None
        if path.name.lower().endswith(_PARQUET_EXTS):
            import pyarrow.parquet as pq

            columns, used_sep, has_header = [str(c) for c in pq.read_schema(path).names], None, True
        else:
            line = _first_line(path)
            used_sep = sep or sniff_sep(line)
            columns = _split_header(line, used_sep)
            has_header = not all(_is_number(c) for c in columns if c)
        if not has_header:  # user, item, rating[, timestamp] by position, as _load_frame reads them
            positional = ["user", "item", "rating", "timestamp"][: len(columns)]
            if len(columns) not in (3, 4):
                return None
            mapping = {role: (role if role in positional else None) for role in wanted}
            positions = {role: (positional.index(role) if role in positional else None) for role in wanted}
        else:
            mapping = {
                role: _resolve(columns, w, role, path, required=r, default=_DEFAULT_COLUMNS.get(role))
                for role, (w, r) in wanted.items()
            }
            _check_distinct(mapping, path, columns)
            positions = {role: (None if col is None else columns.index(col)) for role, col in mapping.items()}
    except Exception as exc:  # the pandas path gives the proper error, if any
        logger.debug("%s: fast reader not used (%s)", path, exc)
        return None
    try:
        if used_sep is None:
            params: dict[str, Any] = {"reader": "parquet", "columns": mapping}
            read = functools.partial(read_parquet_ratings, path, names=mapping, progress=progress)
            arrays = cached_read(path, params, read, cache=cache)
        else:
            params = {"reader": "table", "sep": used_sep, "header": has_header, "positions": positions,
                      "n_fields": len(columns)}  # fmt: skip
            arrays = cached_read(
                path,
                params,
                lambda: read_text_ratings(
                    path,
                    sep=used_sep,
                    header=has_header,
                    positions=positions,
                    n_fields=len(columns),
                    progress=progress,
                ),
                cache=cache,
            )
    except Unsupported as exc:
        logger.info("%s: %s; reading it with pandas", path.name, exc)
        return None
    return arrays, mapping, used_sep


def _load_items(
    path: Path, id_col: str, title_col: str, genres_col: str | None, genres_sep: str
) -> tuple[pd.DataFrame, dict[str, Any]]:
    frame, columns, sep, has_header = _read_table(path, None)
    parquet = frame is not None
    if frame is None and columns and _is_number(columns[0]) and len(columns) in (2, 3):
        # no header, MovieLens style (``1::Toy Story (1995)::Animation|...``): id, title[, genres]
        names = ["item", "title", "genres"][: len(columns)]
        frame = _read_text(path, sep, header=False, names=names, text_cols=names[1:])
        reread = functools.partial(_read_text, path, sep, header=False, names=names)
        columns, has_header = names, True
        id_col, title_col = "item", "title"
        genres_col = "genres" if len(columns) == 3 else None
    if not has_header:
        raise DataError(f"{path}: the items file needs a header row; it has {columns}")
    mapping = {
        "item": _resolve(columns, id_col, "item", path, required=True),
        "title": _resolve(columns, title_col, "title", path, required=True),
        "genres": _resolve(columns, genres_col, "genres", path, required=False),
        "year": _resolve(columns, "year", "year", path, required=False),
    }
    if frame is None:
        text = [c for c in (mapping["title"], mapping["genres"]) if c is not None]
        frame = _read_text(path, sep, header=True, names=None, text_cols=text)
        reread = functools.partial(_read_text, path, sep, header=True, names=None)
    if not parquet:  # ids as exactly as the ratings' (past int64: their text)
        item_col = mapping["item"]
        ids = frame[[item_col]].rename(columns={item_col: "item"})
        _exact_ids(ids, path, {"item": item_col}, reread)
        frame[item_col] = ids["item"].to_numpy()
    ids = frame[mapping["item"]]
    missing = (ids.isna() | (ids.astype(str).str.strip() == "")).to_numpy()
    if missing.any():
        raise DataError(f"{path}: data row {_first_bad(missing) + 1} has no item id")
    info = build_item_info(
        frame[mapping["item"]].to_numpy(),
        frame[mapping["title"]],
        None if mapping["genres"] is None else frame[mapping["genres"]],
        None if mapping["year"] is None else frame[mapping["year"]],
        genres_sep=genres_sep,
        source=str(path),
    )
    source = {
        "path": str(path),
        "sha256": sha256_file(path),
        "sep": sep,
        "columns": mapping,
        "genres_sep": genres_sep,
    }
    return info, source


def reload_source(source: dict[str, Any]) -> Dataset:
    """Load the file a ``source`` dict (from :func:`load_ratings`) describes, checking its sha256.

    Used by ``reelrec evaluate`` to rebuild a run's test split from the very same file.
    """
    try:
        path = Path(source["path"])
        cols = source["columns"]
        items = source.get("items") or {}
    except (KeyError, TypeError) as exc:
        raise DataError(f"malformed ratings-file source in the run config ({exc})") from None
    if not path.is_file():
        raise DataError(f"{path}: the ratings file this run was trained on is gone; restore it to evaluate")
    if source.get("sha256") and sha256_file(path) != source["sha256"]:
        raise DataError(
            f"{path} changed since the run was trained (sha256 differs); cannot rebuild its test split"
        )
    kwargs: dict[str, Any] = {
        "user_col": cols["user"],
        "item_col": cols["item"],
        "rating_col": cols["rating"],
        "timestamp_col": cols.get("timestamp"),
        "sep": source.get("sep"),
    }
    if items:
        icols = items.get("columns", {})
        kwargs.update(
            items_path=items["path"],
            item_id_col=icols.get("item", "item_id"),
            title_col=icols.get("title", "title"),
            genres_col=icols.get("genres"),
            genres_sep=items.get("genres_sep", "|"),
        )
    ds = load_ratings(path, **kwargs)
    if source.get("sha256") and ds.source.get("sha256") != source["sha256"]:
        # the file is the recorded one (checked above): whatever gave other data, read it itself
        logger.warning("%s: the array cache gave other data than the file; reading the file", path.name)
        ds = load_ratings(path, cache=False, **kwargs)
    return ds
