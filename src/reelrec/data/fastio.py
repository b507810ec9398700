"""Fast reading of large ratings files into compact arrays.

pyarrow's streaming CSV reader (parsing in parallel threads) or its Parquet reader gives the user,
item, rating and timestamp columns; raw ids become dense ``int32`` indices with vectorised numpy:
a lookup table for integer ids in a compact range (MovieLens), a sort otherwise, pyarrow's
dictionary encoding for string ids. Ratings become ``float32``, timestamps ``int64``. Peak memory
is the raw columns (8 bytes a value) plus the result, about two to three times the final arrays.

The result is exactly what the pandas path gives (:meth:`Dataset.from_frame` on the file read by
pandas): the same sorted vocabularies (ids normalised by the same rule) and the same values.
Whatever this reader does not handle exactly as pandas does (a missing or ``NA`` value, a
non-numeric rating or timestamp, a row of the wrong width, a string id with leading blanks, an
unknown column type, no rows) raises :class:`Unsupported`, and the callers fall back to the
pandas path, whose error messages name the offending row.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reelrec._files import byte_progress
from reelrec.data.dataset import RATING_LIMIT, RatingScale, _normalise_ids

logger = logging.getLogger(__name__)

__all__ = ["ROLES", "RatingArrays", "Unsupported", "factorize", "read_parquet_ratings", "read_text_ratings"]

ROLES = ("user", "item", "rating", "timestamp")
#: pandas' default missing-value markers (``pandas._libs.parsers.STR_NA_VALUES``): a field that
#: pandas reads as missing is missing here too, so the fallback reports it by row
NA_VALUES = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
    "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip
BLOCK_BYTES = 16 << 20
#: files smaller than this read in well under a second: no progress bar
PROGRESS_MIN_BYTES = 32 << 20
#: integer ids spanning at most this many values (or the number of rows) use a lookup table
LUT_MIN_SPAN = 1 << 22


class Unsupported(Exception):
    """The fast reader cannot read this file exactly like the pandas path; use that path."""


@dataclass(frozen=True)
class RatingArrays:
    """Ratings as compact parallel arrays over two sorted vocabularies.

    Attributes:
        users, items: sorted unique raw ids (``int64`` or unicode strings).
        user_index, item_index: ``int32`` dense indices into them, one per rating, in file order.
        rating: ``float32``.
        timestamp: ``int64`` or ``None``.
        scale: the rating scale.
        sha256: hex sha256 of the source file, when it was computed while reading.
    """

    users: np.ndarray
    items: np.ndarray
    user_index: np.ndarray
    item_index: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray | None
    scale: RatingScale
    sha256: str | None = None

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (vocabularies included)."""
        arrays = (self.users, self.items, self.user_index, self.item_index, self.rating, self.timestamp)
        return int(sum(a.nbytes for a in arrays if a is not None))


# ---------------------------------------------------------------------------- id mapping
def factorize(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(uniques, codes)`` of a numeric array: ``uniques`` sorted, ``codes`` ``int32`` with
    ``uniques[codes] == raw``. Integer ids in a compact range use a lookup table (linear time);
    anything else is sorted once."""
    n = raw.shape[0]
    if raw.dtype.kind in "iu" and n:
        lo, hi = int(raw.min()), int(raw.max())
        span = hi - lo + 1
        if span <= max(n, LUT_MIN_SPAN):
            shifted = raw if lo >= 0 else raw - lo  # a table from 0 avoids a copy of the ids
            size = hi + 1 if lo >= 0 else span
            present = np.zeros(size, dtype=bool)
            present[shifted] = True
            uniques = np.flatnonzero(present)
            lut = np.cumsum(present, dtype=np.int32)
            lut -= 1
            codes = lut[shifted]
            return (uniques if lo >= 0 else uniques + lo).astype(raw.dtype), codes
    order = np.argsort(raw, kind="stable")
    ordered = raw[order]
    first = np.empty(n, dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    codes = np.empty(n, dtype=np.int32)
    codes[order] = np.cumsum(first, dtype=np.int32) - 1
    return ordered[first], codes


def _vocabulary(uniques: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vocabulary and dense indices from raw uniques and codes, normalising the ids exactly as
    :meth:`Dataset.from_frame` does (``"12"`` and ``12.0`` become the integer 12)."""
    norm = _normalise_ids(uniques)
    if norm.dtype.kind == "i" and uniques.dtype.kind in "iu":
        return norm, codes  # integers: already sorted and unique
    vocab = np.unique(norm)
    remap = np.searchsorted(vocab, norm).astype(np.int32)
    return vocab, remap[codes]


def _compact(role: str, arr: Any) -> Any:
    """One batch of a column, made compact as soon as it is read: integer ids as ``int32`` where they
    fit, ratings as ``float32``, timestamps as ``int64`` (numpy); string ids stay pyarrow arrays."""
    import pyarrow as pa

    if arr.null_count:
        raise Unsupported(f"missing {role} values")
    typ = arr.type
    if pa.types.is_dictionary(typ):
        arr, typ = arr.dictionary_decode(), typ.value_type
    is_int = pa.types.is_integer(typ) and not pa.types.is_uint64(typ)
    if role in ("user", "item"):
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            return arr
        if not (is_int or pa.types.is_floating(typ)):
            raise Unsupported(f"{role} column of type {typ}")
        raw = arr.to_numpy()
        if raw.dtype.kind == "f":
            if not np.all(np.isfinite(raw)):
                raise Unsupported(f"{role} ids that are not finite numbers")
            return raw.astype(np.float64, copy=False)
        small = np.iinfo(np.int32)
        if raw.size and small.min <= raw.min() and raw.max() <= small.max:
            return raw.astype(np.int32)
        return raw.astype(np.int64, copy=False)
    if role == "timestamp":
        if not is_int:
            raise Unsupported(f"timestamp column of type {typ}")
        return arr.to_numpy().astype(np.int64, copy=False)
    if not (is_int or pa.types.is_floating(typ)):
        raise Unsupported(f"rating column of type {typ}")
    values = arr.to_numpy().astype(np.float64, copy=False)
    if not np.all(np.isfinite(values)) or (values.size and np.abs(values).max() > RATING_LIMIT):
        # the pandas path names the row and the limit (Dataset.from_frame)
        raise Unsupported("ratings that are not finite numbers within the sane range")
    return values.astype(np.float32)


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    out = np.concatenate(parts) if len(parts) > 1 else parts[0]
    parts.clear()
    return out


def _id_column(role: str, parts: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Vocabulary and ``int32`` indices of an id column from its compact batches."""
    if isinstance(parts[0], np.ndarray):
        return _vocabulary(*factorize(_concat(parts)))
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(pa.chunked_array(parts))
    parts.clear()
    encoded = pa.table({"c": encoded}).unify_dictionaries().column("c")
    uniques = encoded.chunk(0).dictionary.to_numpy(zero_copy_only=False)
    if any(s[:1].isspace() for s in uniques):
        raise Unsupported(f"{role} ids with leading blanks")
    codes = np.concatenate([c.indices.to_numpy() for c in encoded.chunks]).astype(np.int32, copy=False)
    return _vocabulary(uniques.astype(str), codes)


class _Columns:
    """The compact batches of each role, collected while a file is read."""

    def __init__(self, roles: list[str]) -> None:
        self.parts: dict[str, list[Any]] = {role: [] for role in roles}

    def add(self, role: str, arr: Any) -> None:
        self.parts[role].append(_compact(role, arr))

    def assemble(self, sha256: str | None) -> RatingArrays:
        parts = self.parts
        if not parts["rating"] or sum(len(p) for p in parts["rating"]) == 0:
            raise Unsupported("no rows")
        start = time.perf_counter()
        users, user_index = _id_column("user", parts["user"])
        items, item_index = _id_column("item", parts["item"])
        rating = _concat(parts["rating"])
        scale = RatingScale.infer(rating)  # from the float32 values, as Dataset does
        timestamp = _concat(parts["timestamp"]) if "timestamp" in parts else None
        logger.debug("indexed %d ratings in %.2f s", rating.shape[0], time.perf_counter() - start)
        return RatingArrays(users, items, user_index, item_index, rating, timestamp, scale, sha256)


# ---------------------------------------------------------------------------- readers
class _Tee(io.RawIOBase):
    """A readable file that hashes (sha256) and counts what is read through it, for a progress bar."""

    def __init__(self, fh: Any, bar: Any) -> None:
        self.fh, self.bar, self.digest = fh, bar, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = self.fh.readinto(buf)
        if n:
            view = memoryview(buf)[:n]
            self.digest.update(view)
            self.bar.update(n)
        return n or 0


def _first_data_fields(path: Path, sep: str, header: bool, quoting: bool) -> list[str]:
    """The fields of the first data line (for the column-count check), split like the CSV parser."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        lines = [fh.readline(1 << 20) for _ in range(2 if header else 1)]
    line = lines[-1].decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
    if sep == "::":
        return line.split(":")
    return next(csv.reader([line], delimiter=sep, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE))


def read_text_ratings(
    path: str | Path,
    *,
    sep: str,
    header: bool,
    positions: dict[str, int | None],
    n_fields: int,
    quoting: bool = True,
    typed: bool = False,
    progress: bool = False,
) -> RatingArrays:
    """Read a delimited ratings file (``.gz`` allowed) with pyarrow.

    Args:
        path: the file.
        sep: a one-character separator, or ``"::"`` (MovieLens ``.dat``; fields then hold no ``:``).
        header: whether the first line is a header (skipped).
        positions: field number (0-based) of ``user``, ``item``, ``rating`` and, unless ``None``,
            ``timestamp``.
        n_fields: the number of fields every line must have.
        quoting: ``"``-quoted fields (``False`` reads quotes as data, as the ``::`` files need).
        typed: read the ids as ``int64`` (MovieLens files); otherwise their type is inferred
            (integers, numbers or strings). Ratings are read as ``float64``, timestamps as ``int64``.
        progress: show a tqdm bar over the bytes read.

    Raises:
        Unsupported: the file needs the pandas path (see the module docstring).
    """
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError as exc:  # pragma: no cover - pyarrow is a dependency
        raise Unsupported("pyarrow is not installed") from exc
    path = Path(path)
    double = sep == "::"
    if not double and len(sep) != 1:
        raise Unsupported(f"separator {sep!r}")
    if double:
        quoting = False
    fields = _first_data_fields(path, sep, header, quoting)
    if len(fields) != (2 * n_fields - 1 if double else n_fields):
        raise Unsupported(f"the first data line has {len(fields)} fields, not {n_fields}")
    wanted = {role: pos for role, pos in positions.items() if pos is not None}
    physical = {role: (2 * pos if double else pos) for role, pos in wanted.items()}
    names = {role: f"f{p}" for role, p in physical.items()}
    types: dict[str, Any] = {names["rating"]: pa.float64()}
    if "timestamp" in names:
        types[names["timestamp"]] = pa.int64()
    if typed:
        types.update({names[r]: pa.int64() for r in ("user", "item")})
    if double:  # the empty fields between the ':' must stay empty
        types.update({f"f{2 * k + 1}": pa.null() for k in range(n_fields - 1)})
    read_opts = pacsv.ReadOptions(
        skip_rows=1 if header else 0, autogenerate_column_names=True, block_size=BLOCK_BYTES
    )
    parse_opts = pacsv.ParseOptions(delimiter=":" if double else sep, quote_char='"' if quoting else False)
    convert_opts = pacsv.ConvertOptions(
        column_types=types,
        include_columns=None if double else list(names.values()),
        null_values=list(NA_VALUES),
        strings_can_be_null=True,
    )
    columns = _Columns(list(names))
    size = path.stat().st_size
    start = time.perf_counter()
    show = progress and size >= PROGRESS_MIN_BYTES
    with path.open("rb") as raw, byte_progress(size, path.name, show) as bar:
        tee = _Tee(raw, bar)
        source: Any = pa.PythonFile(io.BufferedReader(tee, 1 << 20), mode="r")
        if path.suffix == ".gz":
            source = pa.CompressedInputStream(source, "gzip")
        try:
            reader = pacsv.open_csv(
                source, read_options=read_opts, parse_options=parse_opts, convert_options=convert_opts
            )
            for batch in reader:
                for role, name in names.items():
                    columns.add(role, batch.column(name))
        except (pa.ArrowException, OSError, EOFError) as exc:
            raise Unsupported(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)) from exc
        sha256 = tee.digest.hexdigest()
    logger.info("read %s (%.0f MB) in %.1f s", path.name, size / 1e6, time.perf_counter() - start)
    return columns.assemble(sha256)


def read_parquet_ratings(
    path: str | Path, *, names: dict[str, str | None], progress: bool = False
) -> RatingArrays:
    """Read the ``names`` columns (role -> column name) of a Parquet file with pyarrow.

    Raises:
        Unsupported: the file needs the pandas path.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a dependency
        raise Unsupported("pyarrow is not installed") from exc
    from tqdm.auto import tqdm

    from reelrec._files import sha256_file

    path = Path(path)
    wanted = {role: name for role, name in names.items() if name is not None}
    columns = _Columns(list(wanted))
    start = time.perf_counter()
    try:
        pf = pq.ParquetFile(path)
        with tqdm(
            total=pf.metadata.num_rows, unit=" rows", unit_scale=True, desc=path.name,
            disable=not progress or path.stat().st_size < PROGRESS_MIN_BYTES, leave=False,
        ) as bar:  # fmt: skip
            for batch in pf.iter_batches(batch_size=1 << 20, columns=list(dict.fromkeys(wanted.values()))):
                for role, name in wanted.items():
                    columns.add(role, batch.column(name))
                bar.update(batch.num_rows)
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise Unsupported(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)) from exc
    logger.info("read %s in %.1f s", path.name, time.perf_counter() - start)
    return columns.assemble(sha256_file(path))
