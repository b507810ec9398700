"""Core data containers: :class:`Vocabulary` (raw id <-> dense index) and :class:`Dataset`.

Raw ids (whatever the file holds: ints or strings) live at every public boundary; dense
indices ``0..n-1`` live inside arrays and tensors (``int32`` in a :class:`Dataset`, to keep 25M+
ratings compact; :meth:`Vocabulary.index` returns ``int64``). A vocabulary is sorted, so mapping
is a vectorised ``searchsorted``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from reelrec._defaults import DEFAULT_DUPLICATES, DUPLICATE_POLICIES, DuplicatePolicy
from reelrec.errors import DataError, UnknownIdError

if TYPE_CHECKING:
    from reelrec.data.fastio import RatingArrays

logger = logging.getLogger(__name__)

#: ratings must be finite numbers within +-RATING_LIMIT (ratings are float32, exact to ~7
#: digits; no rating scale comes near it, so a value past it is a corrupt or misplaced field)
RATING_LIMIT = 1e6
#: a discrete scale has at most this many levels (``low, low+step, ..., high``); a wider one is
#: treated as continuous, so nothing ever allocates in proportion to a rating value
MAX_SCALE_LEVELS = 1000


def _normalise_ids(raw: Any) -> np.ndarray:
    """Return raw ids as an ``int64`` array when they are all integral, else as strings."""
    arr = np.asarray(raw)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":  # integral floats within 2**53 (exact) are ints; 1e30 stays text
        if arr.size and np.all(np.abs(arr) <= 2.0**53) and np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
        return arr.astype(str)
    # object / string: integral strings become ints so "12" and 12 name the same movie
    as_str = arr.astype(str)
    if as_str.size:
        try:
            as_int = as_str.astype(np.int64)
        except (ValueError, OverflowError):
            return as_str
        if np.array_equal(as_int.astype(str), np.char.strip(as_str)):
            return as_int
    return as_str


def _int_keys(arr: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Raw ids as ``int64`` keys and a mask of those that name an integer at all (vectorised,
    element by element: one bad id does not change how the others are read)."""
    if arr.dtype.kind == "i":
        yield arr.astype(np.int64, copy=False), np.ones(arr.shape, dtype=bool)
    elif arr.dtype.kind == "u":
        ok = arr <= np.iinfo(np.int64).max
        yield np.where(ok, arr, 0).astype(np.int64), ok
    elif arr.dtype.kind == "b":  # true/false name no id
        yield np.zeros(arr.shape, dtype=np.int64), np.zeros(arr.shape, dtype=bool)
    elif arr.dtype.kind == "f":
        yield _integral(arr.astype(np.float64))
    else:
        text = _texts(arr).str.strip()
        keys = np.zeros(text.shape[0], dtype=np.int64)
        ok = np.array(text.str.fullmatch(r"[+-]?\d{1,18}"), dtype=bool)
        if ok.any():
            keys[ok] = text[ok].astype(np.int64).to_numpy()
        rest = ~ok & (text != "").to_numpy(dtype=bool)
        if rest.any():  # "196.0", "1.96e2": numbers that are integral
            num = pd.to_numeric(text[rest], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            keys[rest], ok[rest] = _integral(num)
        yield keys.reshape(arr.shape), ok.reshape(arr.shape)


def _integral(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(x) & (np.abs(x) < 2.0**53)
    ok[ok] = x[ok] == np.round(x[ok])
    return np.where(ok, x, 0).astype(np.int64), ok


def _texts(arr: np.ndarray) -> pd.Series:
    """Raw ids as text ("" for None/NaN), flattened."""
    flat = pd.Series(arr.ravel(), dtype=object)
    return flat.where(~flat.isna(), "").astype(str)


def _str_keys(arr: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Candidate text keys of raw ids for a string vocabulary, tried in turn for the ids not yet
    found: as written, stripped, and (for an integral number) the integer's text."""
    shape = arr.shape
    if arr.dtype.kind == "U":
        yield arr, np.ones(shape, dtype=bool)
    text = _texts(arr)
    valid = (text != "").to_numpy(dtype=bool).reshape(shape)
    if arr.dtype.kind != "U":
        yield text.to_numpy(dtype=str).reshape(shape), valid
    stripped = text.str.strip()
    yield stripped.to_numpy(dtype=str).reshape(shape), valid
    keys, ok = next(_int_keys(stripped.to_numpy(dtype=object)))
    yield np.where(ok, keys.astype(str), "").reshape(shape), ok.reshape(shape) & valid


@dataclass(frozen=True)
class Vocabulary:
    """A sorted set of raw ids and the dense index of each.

    Attributes:
        ids: the raw ids, sorted and unique (``int64`` or unicode strings).
        name: what the ids are ("user" or "item"), used in error messages.
    """

    ids: np.ndarray
    name: str = "id"

    @classmethod
    def from_raw(cls, raw: Any, name: str = "id") -> Vocabulary:
        """Build a vocabulary from raw ids in any order, with repeats."""
        return cls(np.unique(_normalise_ids(raw)), name)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def is_integer(self) -> bool:
        return self.ids.dtype.kind == "i"

    def coerce(self, raw: Any) -> np.ndarray:
        """Raw ids converted to this vocabulary's dtype (ints stay ints, strings stay strings)."""
        arr = _normalise_ids(raw)
        if self.is_integer and arr.dtype.kind != "i":
            return arr  # strings that are not integers never match an int vocabulary
        if not self.is_integer and arr.dtype.kind == "i":
            return arr.astype(str)
        return arr

    def index(self, raw: Any, missing: Literal["error", "negative"] = "error") -> np.ndarray:
        """Dense indices of ``raw`` ids, each id judged on its own.

        An id matches when it names a vocabulary entry in any spelling the data loaders accept:
        ``196``, ``"196"``, ``" 196 "``, ``196.0`` and ``"196.0"`` all name user 196 of an
        integer vocabulary; a blank, non-numeric or fractional id never matches one (and never
        changes how the other ids of the same call are read). For a string vocabulary the text
        is compared as written, then stripped, then (for an integral number) as its integer.

        Args:
            raw: one raw id or an array of them.
            missing: ``"error"`` raises :class:`UnknownIdError` naming the first unknown id;
                ``"negative"`` returns ``-1`` for unknown ids.
        """
        arr = np.asarray(raw)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        found = np.zeros(arr.shape, dtype=bool)
        pos = np.zeros(arr.shape, dtype=np.int64)
        if len(self) and arr.size:
            candidates = _int_keys(arr) if self.is_integer else _str_keys(arr)
            for keys, ok in candidates:
                if found.all():
                    break
                todo = ok & ~found
                if not todo.any():
                    continue
                at = np.minimum(np.searchsorted(self.ids, keys[todo]), len(self) - 1)
                hit = self.ids[at] == keys[todo]
                rows = np.flatnonzero(todo)[hit]
                pos[rows] = at[hit]
                found[rows] = True
        if missing == "error" and not np.all(found):
            bad = arr[~found][0]
            bad = bad.item() if isinstance(bad, np.generic) else bad
            raise UnknownIdError(f"unknown {self.name} id {bad!r} (not in the training data)")
        return np.where(found, pos, -1).astype(np.int64)

    def __contains__(self, raw: object) -> bool:
        return bool(self.index(raw, missing="negative")[0] >= 0)

    def raw(self, idx: Any) -> np.ndarray:
        """Raw ids of dense indices."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"{self.name} index out of range 0..{len(self) - 1}")
        return self.ids[idx]

    def to_json(self) -> dict[str, Any]:
        kind = "int" if self.is_integer else "str"
        return {"name": self.name, "kind": kind, "ids": self.ids.tolist()}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Vocabulary:
        try:
            kind = obj["kind"]
            ids = np.asarray(obj["ids"], dtype=np.int64 if kind == "int" else str)
            name = str(obj.get("name", "id"))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed vocabulary: {exc}") from exc
        if ids.ndim != 1 or (ids.size > 1 and not np.all(ids[1:] > ids[:-1])):
            raise DataError("malformed vocabulary: ids must be a sorted list of unique values")
        return cls(ids, name)


@dataclass(frozen=True)
class RatingScale:
    """The lowest and highest rating of a dataset, and its step (``None`` if continuous)."""

    low: float
    high: float
    step: float | None = None

    @classmethod
    def infer(cls, ratings: np.ndarray) -> RatingScale:
        if ratings.size == 0:
            raise DataError("no ratings to infer a rating scale from")
        low, high = float(ratings.min()), float(ratings.max())
        levels = np.unique(ratings)
        step = None
        if levels.size > 1 and levels.size <= 100:
            diffs = np.diff(levels)
            cand = float(diffs.min())
            if (
                cand > 0
                and (high - low) / cand < MAX_SCALE_LEVELS
                and np.allclose(np.round((levels - low) / cand) * cand + low, levels)
            ):
                step = cand
        elif levels.size == 1:
            step = 1.0
        return cls(low, high, step)

    def clip(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.low, self.high)

    def levels(self) -> np.ndarray | None:
        """The discrete rating levels (``low, low+step, ..., high``), or ``None`` if continuous."""
        if self.step is None or not self.step > 0 or (self.high - self.low) / self.step >= MAX_SCALE_LEVELS:
            return None
        return np.round(np.arange(self.low, self.high + self.step / 2, self.step), 6)

    def nearest_level(self, x: np.ndarray) -> np.ndarray:
        """Each value rounded to the nearest level of a discrete scale (clipped to it); values
        as they are on a continuous one. Memory is that of ``x``, whatever the scale."""
        levels = self.levels()
        if levels is None:
            return np.asarray(x, dtype=np.float64)
        midpoints = (levels[1:] + levels[:-1]) / 2.0
        return levels[np.searchsorted(midpoints, np.asarray(x, dtype=np.float64), side="right")]


@dataclass(frozen=True)
class Dataset:
    """Ratings as parallel arrays over two vocabularies, plus optional side tables.

    Rows keep the order of the source file (the benchmark protocols index rows by file order).

    Attributes:
        name: a short label ("ml-100k", or the file's name).
        users, items: vocabularies of every user and item that has at least one rating.
        user_index, item_index: ``int32`` dense indices, one per rating (other integer arrays
            given are converted). Multiply them as ``int64`` (``u.astype(np.int64) * n_items``):
            ``user * n_items + item`` keys overflow ``int32`` at MovieLens 25M sizes.
        rating: ``float32`` ratings (converted if given otherwise).
        timestamp: ``int64`` seconds since the epoch per rating, or ``None``.
        item_info: item metadata indexed by raw item id: ``title`` (str), ``year`` (Int64,
            may be missing) and ``genres`` (``|``-separated str); may cover more items than
            the vocabulary. ``None`` when unknown.
        user_info: user metadata indexed by raw user id (e.g. age, gender, occupation, zip).
        scale: the rating scale.
        source: how to reload this data (kept in a run's config for ``reelrec evaluate``).
    """

    name: str
    users: Vocabulary
    items: Vocabulary
    user_index: np.ndarray
    item_index: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray | None = None
    item_info: pd.DataFrame | None = None
    user_info: pd.DataFrame | None = None
    scale: RatingScale | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if max(len(self.users), len(self.items)) >= np.iinfo(np.int32).max:
            raise DataError("more than 2**31 - 1 users or items")
        for label, dtype in (
            ("user_index", np.int32),
            ("item_index", np.int32),
            ("rating", np.float32),
            ("timestamp", np.int64),
        ):
            arr = getattr(self, label)
            if arr is not None and (not isinstance(arr, np.ndarray) or arr.dtype != dtype):
                object.__setattr__(self, label, np.asarray(arr).astype(dtype))
        n = self.rating.shape[0]
        for label, arr in (("user_index", self.user_index), ("item_index", self.item_index)):
            if arr.shape != (n,):
                raise DataError(f"{label} has shape {arr.shape}, expected ({n},)")
        if self.timestamp is not None and self.timestamp.shape != (n,):
            raise DataError(f"timestamp has shape {self.timestamp.shape}, expected ({n},)")
        if self.scale is None and n:
            object.__setattr__(self, "scale", RatingScale.infer(self.rating))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        name: str,
        item_info: pd.DataFrame | None = None,
        user_info: pd.DataFrame | None = None,
        scale: RatingScale | None = None,
        source: dict[str, Any] | None = None,
    ) -> Dataset:
        """Build a dataset from a frame with columns ``user``, ``item``, ``rating`` [, ``timestamp``]."""
        missing = {"user", "item", "rating"} - set(frame.columns)
        if missing:
            raise DataError(f"{name}: missing column(s) {sorted(missing)}")
        if len(frame) == 0:
            raise DataError(f"{name}: the ratings file holds no ratings")
        for column in ("user", "item", "rating"):
            if pd.api.types.is_bool_dtype(frame[column].dtype):
                raise DataError(f"{name}: the {column} column holds true/false values, not {column}s")
        users_raw = _normalise_ids(frame["user"].to_numpy())
        items_raw = _normalise_ids(frame["item"].to_numpy())
        rating = pd.to_numeric(frame["rating"], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(rating)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{name}: rating on data row {row + 1} is not a number ({frame['rating'].iloc[row]!r})"
            )
        bad = np.abs(rating) > RATING_LIMIT
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{name}: rating on data row {row + 1} is {rating[row]:.7g}, outside the sane range "
                f"-{RATING_LIMIT:.0e}..{RATING_LIMIT:.0e} (a corrupt value or the wrong --rating-col?)"
            )
        users = Vocabulary(np.unique(users_raw), "user")
        items = Vocabulary(np.unique(items_raw), "item")
        ts = None
        if "timestamp" in frame.columns:
            ts_num = pd.to_numeric(frame["timestamp"], errors="coerce")
            if ts_num.isna().any():
                row = int(np.flatnonzero(ts_num.isna().to_numpy())[0])
                raise DataError(f"{name}: timestamp on data row {row + 1} is not a number")
            huge = (ts_num.abs() > 2**62).to_numpy()
            if huge.any():
                row = int(np.flatnonzero(huge)[0])
                raise DataError(f"{name}: timestamp on data row {row + 1} is out of range (seconds expected)")
            ts = ts_num.to_numpy(dtype=np.int64)
        return cls(
            name=name,
            users=users,
            items=items,
            user_index=np.searchsorted(users.ids, users_raw).astype(np.int32),
            item_index=np.searchsorted(items.ids, items_raw).astype(np.int32),
            rating=rating.astype(np.float32),
            timestamp=ts,
            item_info=item_info,
            user_info=user_info,
            scale=scale,
            source=dict(source or {}),
        )

    @classmethod
    def from_arrays(
        cls,
        arrays: RatingArrays,
        *,
        name: str,
        item_info: pd.DataFrame | None = None,
        user_info: pd.DataFrame | None = None,
        source: dict[str, Any] | None = None,
    ) -> Dataset:
        """Build a dataset from the compact arrays of :mod:`reelrec.data.fastio` (no copy)."""
        return cls(
            name=name,
            users=Vocabulary(arrays.users, "user"),
            items=Vocabulary(arrays.items, "item"),
            user_index=arrays.user_index,
            item_index=arrays.item_index,
            rating=arrays.rating,
            timestamp=arrays.timestamp,
            item_info=item_info,
            user_info=user_info,
            scale=arrays.scale,
            source=dict(source or {}),
        )

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return int(self.rating.shape[0])

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def subset(self, rows: np.ndarray | Sequence[int]) -> Dataset:
        """The ratings at ``rows`` (indices or a boolean mask), keeping both vocabularies."""
        rows = np.asarray(rows)
        return replace(
            self,
            user_index=self.user_index[rows],
            item_index=self.item_index[rows],
            rating=self.rating[rows],
            timestamp=None if self.timestamp is None else self.timestamp[rows],
        )

    def concat(self, other: Dataset) -> Dataset:
        """This dataset's ratings followed by ``other``'s (both must share the vocabularies)."""
        if not (
            np.array_equal(self.users.ids, other.users.ids)
            and np.array_equal(self.items.ids, other.items.ids)
        ):
            raise DataError("can only concatenate parts of the same dataset (the vocabularies differ)")
        ts = None
        if self.timestamp is not None and other.timestamp is not None:
            ts = np.concatenate([self.timestamp, other.timestamp])
        return replace(
            self,
            user_index=np.concatenate([self.user_index, other.user_index]),
            item_index=np.concatenate([self.item_index, other.item_index]),
            rating=np.concatenate([self.rating, other.rating]),
            timestamp=ts,
        )

    def deduplicate(self, policy: DuplicatePolicy = DEFAULT_DUPLICATES) -> Dataset:
        """One rating per (user, item) pair, so that no pair can sit on both sides of a split.

        ``policy``: ``"error"`` refuses a repeated pair (naming it and its data rows); ``"last"``
        keeps the latest rating (by timestamp, then file order); ``"mean"`` keeps their average
        (with the latest one's timestamp). Kept rows stay in file order; the policy is recorded
        in ``source["duplicates"]`` so a reload applies it again. Memory and time: one sort.
        """
        if policy not in DUPLICATE_POLICIES:
            raise DataError(
                f"duplicates policy must be one of {', '.join(DUPLICATE_POLICIES)}, not {policy!r}"
            )
        source = {**self.source, "duplicates": policy}
        keys = self.user_index.astype(np.int64) * max(1, self.n_items) + self.item_index
        sorted_keys = np.sort(keys)
        if not (sorted_keys[1:] == sorted_keys[:-1]).any():
            return replace(self, source=source)
        order = (
            np.argsort(keys, kind="stable") if self.timestamp is None else np.lexsort((self.timestamp, keys))
        )
        keys = keys[order]
        first = np.r_[True, keys[1:] != keys[:-1]]
        last = np.r_[keys[1:] != keys[:-1], True]
        n_repeats = int((~first).sum())
        if policy == "error":
            row = int(order[np.flatnonzero(~first)[0]])
            start = int(order[np.flatnonzero(first & ~last)[0]])
            u, i = self.users.ids[self.user_index[row]], self.items.ids[self.item_index[row]]
            raise DataError(
                f"{self.name}: user {u.item()!r} rated movie {i.item()!r} more than once (data rows "
                f"{min(start, row) + 1} and {max(start, row) + 1}; {n_repeats} repeated pairs in all); "
                "choose --duplicates last or mean"
            )
        keep = order[last]
        rating = self.rating
        if policy == "mean":
            group = np.cumsum(first) - 1
            sums = np.bincount(group, weights=self.rating[order].astype(np.float64))
            mean = (sums / np.bincount(group)).astype(np.float32)
            rating = self.rating.copy()
            rating[keep] = mean
        rows = np.sort(keep)
        logger.warning(
            "%s: %d repeated (user, movie) ratings merged (--duplicates %s)", self.name, n_repeats, policy
        )
        return replace(self.subset(rows), rating=rating[rows], source=source)

    def to_frame(self) -> pd.DataFrame:
        """Ratings as a frame of raw ids: ``user``, ``item``, ``rating`` [, ``timestamp``]."""
        out = {
            "user": self.users.ids[self.user_index],
            "item": self.items.ids[self.item_index],
            "rating": self.rating,
        }
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp
        return pd.DataFrame(out)

    def user_counts(self) -> np.ndarray:
        return np.bincount(self.user_index, minlength=self.n_users)

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.item_index, minlength=self.n_items)

    def fingerprint(self) -> str:
        """A short hash of the ratings (ids, ratings, order), to check a reload is the same data."""
        import hashlib

        h = hashlib.sha256()
        for arr in (self.users.ids[self.user_index], self.items.ids[self.item_index], self.rating):
            h.update(
                np.ascontiguousarray(arr).tobytes() if arr.dtype.kind != "U" else "\x1f".join(arr).encode()
            )
        return h.hexdigest()[:16]

    def describe(self) -> str:
        density = len(self) / max(1, self.n_users * self.n_items)
        return (
            f"{self.name}: {len(self):,} ratings, {self.n_users:,} users, {self.n_items:,} items, "
            f"density {density:.4f}, scale {self.scale.low:g}..{self.scale.high:g}"
        )
