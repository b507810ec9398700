"""A cache of the compact rating arrays beside the data, so a second load of a large file is fast.

After a ratings file is read (:mod:`reelrec.data.fastio`), its arrays and vocabularies are written
as ``.npy`` files into one folder per (file, reading options), with a ``meta.json`` that records
the file's size, modification time and a quick content hash (sha256 of its size and first and last
MiB) and the full sha256 when it was computed while reading. A later load of the same file with
the same options maps the ``.npy`` files into memory (copy-on-write: the arrays are writable, the
cache is never changed) instead of reading the text; each user's rows, stored as runs, are
expanded. A large dataset's movie table is cached the same way, as Parquet.

* Where: ``.reelrec-cache/`` beside the data file when that folder is writable (and has a write
  permission bit) and is not inside a git work tree; otherwise ``<user cache dir>/reelrec/arrays/``
  (platformdirs). ``$REELREC_CACHE_DIR`` overrides both.
* When: files of at least :data:`MIN_BYTES` (4 MiB); smaller files load fast anyway.
* Off: ``cache=False`` in the loaders, ``REELREC_NO_CACHE=1`` or ``reelrec train --no-cache``.
* Safety: an entry is written into a temporary folder and renamed into place, so a reader never
  sees half of one. An entry whose recorded size, mtime or quick hash differs from the file's is
  stale: it is ignored and replaced. An entry that cannot be read or is inconsistent (truncated
  arrays, wrong types, indices out of range: all of the runs, the first and last 4096 of a mapped
  array; the values are not checksummed) is ignored with a warning and replaced; a cache that
  cannot be written is skipped with a warning. The cache never makes a load fail. Writing an
  entry deletes the file's entries left by an older cache version.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import platformdirs

from reelrec.data.dataset import RatingScale
from reelrec.data.fastio import RatingArrays
from reelrec.options import CACHE_DIR_ENV, NO_CACHE_ENV, get_options

logger = logging.getLogger(__name__)

__all__ = [
    "CACHE_DIR_ENV",
    "MIN_BYTES",
    "NO_CACHE_ENV",
    "cache_dir_for",
    "cache_enabled",
    "cached_frame",
    "cached_read",
]

#: files smaller than this are not cached
MIN_BYTES = 4 << 20
VERSION = 2
_HASH_SPAN = 1 << 20
T = TypeVar("T")


def cache_enabled(cache: bool | None = None) -> bool:
    """``cache`` when given, else the process's cache option (off with ``$REELREC_NO_CACHE``,
    read once: :mod:`reelrec.options`)."""
    if cache is not None:
        return cache
    return get_options().cache


def _in_git_tree(folder: Path) -> bool:
    return any((p / ".git").exists() for p in (folder, *folder.parents))


def cache_dir_for(path: Path) -> Path:
    """The folder that holds the cache entries of data file ``path`` (see the module docstring)."""
    override = get_options().cache_dir
    if override:
        return Path(override).expanduser()
    folder = path.resolve().parent
    # a folder without write bits is read-only by intent, even to root (whom os.access lets write)
    writable = os.access(folder, os.W_OK) and folder.stat().st_mode & 0o222
    if writable and not _in_git_tree(folder):
        return folder / ".reelrec-cache"
    return Path(platformdirs.user_cache_dir("reelrec")) / "arrays"


def quick_hash(path: Path, size: int) -> str:
    """sha256 of the file's size and its first and last MiB (cheap; not a content checksum)."""
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        h.update(fh.read(_HASH_SPAN))
        if size > _HASH_SPAN:
            fh.seek(max(_HASH_SPAN, size - _HASH_SPAN))
            h.update(fh.read(_HASH_SPAN))
    return h.hexdigest()


def _identity(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "quick_sha256": quick_hash(path, st.st_size)}


def _entry(path: Path, params: dict[str, Any]) -> Path:
    resolved = path.resolve()
    key = json.dumps({"path": str(resolved), "params": params, "version": VERSION}, sort_keys=True)
    return cache_dir_for(path) / f"{resolved.name}.{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _meta(entry: Path, identity: dict[str, Any], params: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The entry's metadata, ``None`` when there is no entry or it is stale."""
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("version") != VERSION or meta.get("kind") != kind or meta.get("params") != params:
        return None
    if meta.get("source") != identity:
        logger.info("the cache of %s is stale (the file changed); reading the file", entry.name)
        return None
    return meta


def _npy(entry: Path, name: str, kinds: str, *, mapped: bool = False) -> np.ndarray:
    """A 1-d array of ``entry``; ``mapped``: memory-mapped copy-on-write (writable, changes stay in
    this process), so a load costs no read: pages come in as they are first used."""
    arr = np.load(entry / f"{name}.npy", mmap_mode="c" if mapped else None, allow_pickle=False)
    if arr.ndim != 1 or arr.dtype.kind not in kinds:
        raise ValueError(f"{name}.npy: unexpected array {arr.dtype}{arr.shape}")
    return arr.view(np.ndarray) if mapped else arr


def _check_range(name: str, arr: np.ndarray, n_vocab: int, *, sample: bool) -> None:
    """Indices within the vocabulary: all of them, or (``sample``, a mapped array that a full check
    would read from disk) the first and last 4096."""
    part = np.concatenate([arr[:4096], arr[-4096:]]) if sample else arr
    if part.size and (part.min() < 0 or part.max() >= n_vocab):
        raise ValueError(f"{name} points outside the vocabulary")


def _encode_index(folder: Path, name: str, idx: np.ndarray) -> str:
    """Save dense indices as runs (``value, length``) when they come in long runs (a file grouped by
    user: 25M indices become 160k runs), else as the ``int32`` array itself."""
    n = idx.shape[0]
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]]) if n else np.zeros(0, dtype=np.int64)
    if starts.size * 8 < n:
        lengths = np.diff(np.r_[starts, n]).astype(np.int64)
        np.save(folder / f"{name}.values.npy", idx[starts].astype(np.int32), allow_pickle=False)
        np.save(folder / f"{name}.lengths.npy", lengths, allow_pickle=False)
        return "runs"
    np.save(folder / f"{name}.npy", idx.astype(np.int32, copy=False), allow_pickle=False)
    return "plain"


def _decode_index(entry: Path, name: str, encoding: str, n: int, n_vocab: int) -> np.ndarray:
    if encoding == "runs":
        values = _npy(entry, f"{name}.values", "i")
        lengths = _npy(entry, f"{name}.lengths", "i")
        if values.shape != lengths.shape or (lengths.size and lengths.min() < 1) or lengths.sum() != n:
            raise ValueError(f"{name}: inconsistent runs")
        _check_range(name, values, n_vocab, sample=False)
        return np.repeat(values.astype(np.int32, copy=False), lengths)
    arr = _npy(entry, name, "i", mapped=True)
    if arr.shape != (n,) or arr.dtype != np.int32:
        raise ValueError(f"{name}.npy holds {arr.dtype}{arr.shape}, expected int32 ({n},)")
    _check_range(name, arr, n_vocab, sample=True)
    return arr


def _encode_ratings(folder: Path, arrays: RatingArrays) -> dict[str, Any]:
    """Write the arrays into ``folder``; return what ``meta.json`` records about them.

    Indices that come in long runs (each user's rows together, as in MovieLens files) are saved as
    runs; everything else in its final dtype, so a load maps it into memory instead of reading it
    (a second load of 25M ratings takes a fraction of a second; the pages are read as the data is
    first used).
    """
    np.save(folder / "users.npy", arrays.users, allow_pickle=False)
    np.save(folder / "items.npy", arrays.items, allow_pickle=False)
    encoding = {
        "user_index": _encode_index(folder, "user_index", arrays.user_index),
        "item_index": _encode_index(folder, "item_index", arrays.item_index),
    }
    np.save(folder / "rating.npy", arrays.rating.astype(np.float32, copy=False), allow_pickle=False)
    if arrays.timestamp is not None:
        np.save(folder / "timestamp.npy", arrays.timestamp.astype(np.int64, copy=False), allow_pickle=False)
    scale = arrays.scale
    return {
        "n": int(arrays.rating.shape[0]),
        "encoding": encoding,
        "has_timestamp": arrays.timestamp is not None,
        "scale": {"low": scale.low, "high": scale.high, "step": scale.step},
        "sha256": arrays.sha256,
    }


def _decode_ratings(entry: Path, meta: dict[str, Any]) -> RatingArrays:
    """The cached rating arrays; raises ``ValueError``/``OSError``/``KeyError`` when damaged."""
    n = int(meta["n"])
    users = _npy(entry, "users", "iU")
    items = _npy(entry, "items", "iU")
    enc = meta["encoding"]
    user_index = _decode_index(entry, "user_index", enc["user_index"], n, users.shape[0])
    item_index = _decode_index(entry, "item_index", enc["item_index"], n, items.shape[0])
    rating = _npy(entry, "rating", "f", mapped=True)
    if rating.shape != (n,) or rating.dtype != np.float32:
        raise ValueError(f"rating.npy holds {rating.dtype}{rating.shape}, expected float32 ({n},)")
    ts = None
    if meta["has_timestamp"]:
        ts = _npy(entry, "timestamp", "i", mapped=True)
        if ts.shape != (n,) or ts.dtype != np.int64:
            raise ValueError(f"timestamp.npy holds {ts.dtype}{ts.shape}, expected int64 ({n},)")
    scale = meta["scale"]
    return RatingArrays(
        users=users,
        items=items,
        user_index=user_index,
        item_index=item_index,
        rating=rating,
        timestamp=ts,
        scale=RatingScale(float(scale["low"]), float(scale["high"]), scale["step"]),
        sha256=meta.get("sha256"),
    )


def _decode_frame(entry: Path, meta: dict[str, Any]) -> pd.DataFrame:
    import pyarrow.parquet as pq

    frame = pq.read_table(entry / "frame.parquet").to_pandas()
    if len(frame) != int(meta["n"]):
        raise ValueError(f"frame.parquet has {len(frame)} rows, expected {meta['n']}")
    return frame


def _encode_frame(folder: Path, frame: pd.DataFrame) -> dict[str, Any]:
    frame.to_parquet(folder / "frame.parquet")
    return {"n": len(frame)}


def _store(entry: Path, meta: dict[str, Any], encode: Callable[[Path], dict[str, Any]]) -> None:
    """Write an entry into a temporary folder beside ``entry`` and rename it into place."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".tmp", dir=entry.parent))
    try:
        meta = {**meta, **encode(tmp)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        old = None
        if entry.exists():  # a stale or damaged entry: move it aside, then delete it
            old = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".old", dir=entry.parent))
            os.replace(entry, old / "entry")
        os.replace(tmp, entry)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _drop_other_versions(entry)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _drop_other_versions(entry: Path) -> None:
    """Delete the entries of the same data file written by another cache version, whatever their
    reading options (they are never read again); this version's entries are all kept."""
    stem = entry.name.rsplit(".", 1)[0]
    for other in entry.parent.glob(f"{glob.escape(stem)}.*"):
        suffix = other.name[len(stem) + 1 :]
        if other == entry or len(suffix) != 16 or not all(c in "0123456789abcdef" for c in suffix):
            continue
        try:
            version = json.loads((other / "meta.json").read_text()).get("version")
        except (OSError, ValueError, AttributeError):
            continue  # not an entry of ours (or being written): leave it
        if version != VERSION:
            shutil.rmtree(other, ignore_errors=True)


def _cached(
    path: Path,
    kind: str,
    params: dict[str, Any],
    read: Callable[[], T],
    decode: Callable[[Path, dict[str, Any]], T],
    encode: Callable[[Path, T], dict[str, Any]],
    size: Callable[[T], int],
    *,
    cache: bool | None,
    min_bytes: int,
) -> T:
    """``read()`` data file ``path``, or decode its cache entry; store what was read."""
    if not cache_enabled(cache) or path.stat().st_size < min_bytes:
        return read()
    params = json.loads(json.dumps(params))  # the form it takes in meta.json (tuples -> lists)
    identity = _identity(path)
    entry = _entry(path, {"kind": kind, **params})
    start = time.perf_counter()
    found = None
    try:
        meta = _meta(entry, identity, params, kind)
        if meta is not None:
            found = decode(entry, meta)
    except Exception as exc:  # a damaged cache must never stop a load
        logger.warning("ignoring the damaged cache %s (%s); reading %s", entry, exc, path.name)
    if found is not None:
        logger.info(
            "loaded %s from its cache %s (%.0f MB) in %.2f s",
            path.name,
            entry,
            size(found) / 1e6,
            time.perf_counter() - start,
        )
        return found
    value = read()
    if _identity(path) != identity:  # changed while being read: do not cache what may be a mix
        logger.warning("%s changed while it was read; not caching it", path)
        return value
    start = time.perf_counter()
    try:
        _store(entry, {"version": VERSION, "kind": kind, "params": params, "source": identity},
               lambda folder: encode(folder, value))  # fmt: skip
    except (OSError, ValueError, ImportError) as exc:
        logger.warning("cannot write the cache %s (%s); the next load reads the file again", entry, exc)
        with contextlib.suppress(OSError):
            entry.parent.rmdir()  # only if empty
        return value
    logger.info("cached %s in %s (%.0f MB, %.1f s)", path.name, entry, size(value) / 1e6,
                time.perf_counter() - start)  # fmt: skip
    return value


def cached_read(
    path: str | Path,
    params: dict[str, Any],
    read: Callable[[], RatingArrays],
    *,
    cache: bool | None = None,
    min_bytes: int | None = None,
) -> RatingArrays:
    """``read()`` the rating arrays of data file ``path``, or take them from its cache entry.

    Args:
        path: the data file the arrays come from.
        params: everything besides the file's content that decides the arrays (the separator,
            the columns used, ...), JSON-serialisable; a different ``params`` is a different entry.
        read: reads the file (called on a miss, a stale or a damaged entry).
        cache: ``False`` reads without the cache; ``None`` follows ``$REELREC_NO_CACHE``.
        min_bytes: files smaller than this are read directly (default :data:`MIN_BYTES`).
    """
    return _cached(
        Path(path),
        "ratings",
        params,
        read,
        _decode_ratings,
        _encode_ratings,
        lambda a: a.nbytes,
        cache=cache,
        min_bytes=MIN_BYTES if min_bytes is None else min_bytes,
    )


def cached_frame(
    path: str | Path,
    params: dict[str, Any],
    read: Callable[[], pd.DataFrame],
    *,
    cache: bool | None = None,
    min_bytes: int | None = None,
) -> pd.DataFrame:
    """Like :func:`cached_read` for a table read from ``path`` (kept as Parquet, dtypes and index
    included), e.g. the movie table of a large dataset."""
    return _cached(
        Path(path),
        "frame",
        params,
        read,
        _decode_frame,
        _encode_frame,
        lambda f: int(f.memory_usage(deep=False).sum()),
        cache=cache,
        min_bytes=MIN_BYTES if min_bytes is None else min_bytes,
    )
