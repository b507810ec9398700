"""The typed side-feature schema: its specs, their inference on the training entities and the
encoding of a side table into dense arrays.

A :class:`FeatureSchema` lists the :class:`FeatureSpec` of one side (``"user"`` or ``"item"``).
Each spec names a column of ``Dataset.user_info`` / ``Dataset.item_info`` and one of three kinds:

* ``categorical``: one value per entity (gender, occupation, the ML-1M age group, a zip-code
  prefix). ``categories`` is the vocabulary; a value's code is ``1 + its position``, and code
  ``0`` is reserved for a missing value or one not in the vocabulary.
* ``multihot``: a ``sep``-joined set of tokens per entity (genres, tags). Column ``0`` of its
  block is set when the entity has no known token, column ``1 + j`` when it has
  ``categories[j]``.
* ``numeric``: a number (release year, the ML-100K age), standardised with ``mean`` / ``std``;
  a missing value becomes 0 and sets the feature's missing-indicator column.

Everything data-dependent in a spec (categories, mean, std) is fitted by :func:`infer_schema` on
the *training* entities only (users/items with at least one training rating), so a schema stored
in a model's config fixes the shapes of the feature tables and reproduces the encoding exactly.
:func:`encode_features` turns a side table into dense arrays aligned to a vocabulary's order.

The side tables themselves (files, joins, MovieLens tags) are :mod:`reelrec.data.features`,
which re-exports every public name of this module.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reelrec.data.dataset import Dataset, Vocabulary, _normalise_ids
from reelrec.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_CATEGORIES",
    "DEFAULT_TOP_TAGS",
    "FeatureKind",
    "FeatureSchema",
    "FeatureSpec",
    "Side",
    "encode_features",
    "infer_schema",
    "parse_feature_requests",
]

FeatureKind = Literal["categorical", "multihot", "numeric"]
Side = Literal["user", "item"]

#: categorical and multi-hot features keep at most this many values (the most frequent ones)
DEFAULT_MAX_CATEGORIES = 1000
#: an integer column with at most this many distinct values is inferred as categorical
DEFAULT_MAX_INT_CATEGORIES = 20
#: tags kept by :func:`reelrec.data.features.attach_tags` (the most widely applied ones)
DEFAULT_TOP_TAGS = 100
#: zip-code digits kept by default (``"prefix:2"``: 100 regions in the US)
DEFAULT_ZIP_PREFIX = 2

_ZIP_NAMES = frozenset({"zip", "zipcode", "postcode", "postalcode"})
_SET_NAMES = frozenset({"genres", "genre", "tags", "tag"})
_LOWER_NAMES = frozenset({"tags", "tag"})
_NUMERIC_NAMES = frozenset({"year"})
_SKIP_NAMES = frozenset({"title", "name", "movietitle"})  # free text: never a default feature
_KIND_RE = re.compile(r"^(categorical|numeric|multihot(?::(?P<sep>.+))?|prefix:(?P<prefix>\d+))$")


def _show(value: Any) -> Any:
    """A value as it reads in a message (``1``, not ``np.int64(1)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _codes(values: pd.Series, categories: list[str]) -> np.ndarray:
    """Position of each value in ``categories`` (``-1`` for missing or unknown values)."""
    return pd.Index(categories, dtype=object).get_indexer(values.to_numpy(dtype=object)).astype(np.int64)


def _norm(name: str) -> str:
    return str(name).lower().replace("_", "").replace("-", "").replace(" ", "")


# ---------------------------------------------------------------------------- the schema
class FeatureSpec(BaseModel):
    """One side feature: where it comes from, its kind and its fitted encoding.

    Attributes:
        name: the feature's name (unique within its schema).
        side: ``"user"`` or ``"item"``.
        kind: ``"categorical"``, ``"multihot"`` or ``"numeric"``.
        column: the side-table column it reads (``None``: the same as ``name``).
        categories: the vocabulary of a categorical/multihot feature, most frequent first;
            index 0 of the encoding is reserved for missing/unknown.
        prefix: a categorical feature of the first ``prefix`` characters (e.g. a zip region).
        sep: the token separator of a multihot column.
        lower: lower-case multihot tokens before matching (tags).
        mean, std: the standardisation of a numeric feature.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    side: Side
    kind: FeatureKind
    column: str | None = None
    categories: list[str] = Field(default_factory=list)
    prefix: int | None = Field(None, ge=1)
    sep: str = Field("|", min_length=1)
    lower: bool = False
    mean: float = 0.0
    std: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> FeatureSpec:
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"feature {self.name!r}: categories must be unique")
        if self.kind == "numeric" and self.categories:
            raise ValueError(f"feature {self.name!r}: a numeric feature has no categories")
        if self.prefix is not None and self.kind != "categorical":
            raise ValueError(f"feature {self.name!r}: only a categorical feature takes a prefix")
        return self

    @property
    def source(self) -> str:
        """The column this feature reads."""
        return self.column if self.column is not None else self.name

    @property
    def width(self) -> int:
        """Encoded width: categories + 1 for categorical/multihot (0 = unknown), 1 for numeric."""
        return 1 if self.kind == "numeric" else len(self.categories) + 1


class FeatureSchema(BaseModel):
    """The side features of users or items, in encoding order (see the module docs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    side: Side
    features: list[FeatureSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> FeatureSchema:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"feature name {dup!r} appears twice")
        for f in self.features:
            if f.side != self.side:
                raise ValueError(f"feature {f.name!r} is a {f.side} feature in a {self.side} schema")
        return self

    def __len__(self) -> int:
        return len(self.features)

    def of_kind(self, kind: FeatureKind) -> list[FeatureSpec]:
        """The features of one kind, in schema order (the order of their encoded columns)."""
        return [f for f in self.features if f.kind == kind]

    @property
    def categorical(self) -> list[FeatureSpec]:
        return self.of_kind("categorical")

    @property
    def multihot(self) -> list[FeatureSpec]:
        return self.of_kind("multihot")

    @property
    def numeric(self) -> list[FeatureSpec]:
        return self.of_kind("numeric")

    @property
    def multihot_widths(self) -> list[int]:
        """Width of each multihot feature's block in the ``"multihot"`` array."""
        return [f.width for f in self.multihot]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what a model config stores)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, obj: Any) -> FeatureSchema:
        """Validate a dict written by :meth:`to_json`; anything malformed is a one-line DataError."""
        try:
            return cls.model_validate(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "schema"
            raise DataError(f"malformed feature schema: {where}: {err['msg']}") from None

    def describe(self) -> str:
        """One line per feature, for logs: ``genres multihot(19)``, ``year numeric``."""
        parts = []
        for f in self.features:
            extra = "" if f.kind == "numeric" else f"({len(f.categories)})"
            parts.append(f"{f.name} {f.kind}{extra}")
        return f"{self.side} features: " + (", ".join(parts) if parts else "none")


# ---------------------------------------------------------------------------- requests and kinds
def parse_feature_requests(requests: list[str]) -> tuple[list[str], dict[str, str]]:
    """Split ``["age=categorical", "gender", "zip=prefix:1"]`` into columns and explicit kinds.

    A request is a column name, optionally followed by ``=KIND`` where KIND is ``categorical``,
    ``numeric``, ``multihot``, ``multihot:SEP`` or ``prefix:N``. Entries may also be
    comma-separated within one string (``"age,gender"``), as the command line gives them.
    """
    columns: list[str] = []
    kinds: dict[str, str] = {}
    for entry in requests:
        for part in str(entry).split(","):
            part = part.strip()
            if not part:
                continue
            column, _, kind = part.partition("=")
            column = column.strip()
            if not column:
                raise ConfigError(f"feature request {part!r} names no column")
            if column in columns:
                raise ConfigError(f"feature {column!r} is requested twice")
            columns.append(column)
            if kind.strip():
                _parse_kind(kind.strip(), column)
                kinds[column] = kind.strip()
    return columns, kinds


def _parse_kind(text: str, column: str) -> tuple[FeatureKind, int | None, str]:
    """``(kind, prefix, sep)`` of a kind string such as ``"prefix:2"`` or ``"multihot:,"``."""
    m = _KIND_RE.match(text.strip())
    if m is None:
        raise ConfigError(
            f"feature {column!r}: unknown kind {text!r} "
            "(use categorical, numeric, multihot, multihot:SEP or prefix:N)"
        )
    if m.group("prefix") is not None:
        if int(m.group("prefix")) < 1:
            raise ConfigError(f"feature {column!r}: a prefix keeps at least 1 character")
        return "categorical", int(m.group("prefix")), "|"
    if text.startswith("multihot"):
        return "multihot", None, m.group("sep") or "|"
    return text, None, "|"  # type: ignore[return-value]


def _infer_kind(name: str, values: pd.Series, max_int_categories: int) -> str:
    """The kind string a column gets when none is given (see :func:`infer_schema`)."""
    key = _norm(name)
    if key in _ZIP_NAMES:
        return f"prefix:{DEFAULT_ZIP_PREFIX}"
    if key in _SET_NAMES:
        return "multihot"
    if key in _NUMERIC_NAMES:
        return "numeric"
    if pd.api.types.is_bool_dtype(values):
        return "categorical"
    if pd.api.types.is_numeric_dtype(values):
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        x = x[np.isfinite(x)]
        if x.size and np.all(x == np.round(x)) and np.unique(x).size <= max_int_categories:
            return "categorical"
        return "numeric"
    text = _as_text(values)
    if text.str.contains("|", regex=False).fillna(False).to_numpy(dtype=bool).any():
        return "multihot"
    return "categorical"


# ---------------------------------------------------------------------------- value helpers
def _as_text(values: pd.Series) -> pd.Series:
    """Values as stripped strings (object dtype) with ``None`` for missing or empty ones.

    Integral numbers lose their ``.0`` so that ``18``, ``18.0`` and ``"18"`` are one category.
    """
    values = values.reset_index(drop=True)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        finite = np.isfinite(x)
        integral = finite & (x == np.round(x))
        as_int = np.where(integral, x, 0).astype(np.int64).astype(str)
        text = np.where(integral, as_int, x.astype(str)).astype(object)
        text[~finite] = None
        return pd.Series(text, dtype=object)
    text = values.astype("string").str.strip()
    text = text.where(text.str.len() > 0)
    return text.astype(object).where(text.notna(), None)


def _categorical_text(spec: FeatureSpec, values: pd.Series) -> pd.Series:
    text = _as_text(values)
    if spec.prefix is not None:
        text = text.str.slice(0, spec.prefix)
    return text


def _tokens(spec: FeatureSpec, values: pd.Series) -> pd.Series:
    """One row per (entity position, token): the index is the entity's row, values the tokens."""
    text = _as_text(values)
    if spec.lower:
        text = text.str.lower()
    tokens = text.str.split(spec.sep, regex=False).explode().astype("string").str.strip()
    return tokens[tokens.notna() & (tokens.str.len() > 0)].astype(object)


def _ranked_values(counts: pd.Series, max_categories: int, min_count: int) -> list[str]:
    """Values by count (descending), then name; the top ``max_categories`` with ``>= min_count``."""
    frame = pd.DataFrame({"value": counts.index.astype(str), "count": counts.to_numpy()})
    frame = frame[frame["count"] >= min_count].sort_values(["count", "value"], ascending=[False, True])
    return frame["value"].head(max_categories).tolist()


def _numeric(spec_name: str, values: pd.Series) -> np.ndarray:
    """Float64 values (NaN where missing); a non-numeric value is a ConfigError."""
    values = values.reset_index(drop=True)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    text = _as_text(values)
    x = pd.to_numeric(text, errors="coerce")
    bad = text.notna() & x.isna()
    if bad.any():
        raise ConfigError(
            f"feature {spec_name!r} is numeric but has the value {text[bad].iloc[0]!r}; "
            "declare it categorical (NAME=categorical)"
        )
    return x.to_numpy(dtype=np.float64, na_value=np.nan)


def _positions(info: pd.DataFrame, ids: np.ndarray, what: str) -> np.ndarray:
    """Row of each id in ``info`` (``-1`` where it has none); ids and index are matched like raw ids."""
    if not info.index.is_unique:
        dup = _show(info.index[info.index.duplicated()][0])
        raise DataError(f"the {what} table lists id {dup!r} more than once")
    if len(info) == 0 or len(ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    vocab = Vocabulary(np.asarray(ids), what)
    index = vocab.coerce(info.index.to_numpy())
    keys = np.asarray(ids)
    if index.dtype.kind != keys.dtype.kind:  # e.g. int ids against an index of free-text ids
        index, keys = index.astype(str), keys.astype(str)
    return pd.Index(index).get_indexer(keys).astype(np.int64)


def _aligned(info: pd.DataFrame, pos: np.ndarray, column: str) -> pd.Series:
    """``info[column]`` reordered to ``pos`` (missing where ``pos < 0``), with a 0..n-1 index."""
    col = info[column]
    if len(col) == 0:
        return pd.Series([None] * len(pos), dtype=object)
    out = col.iloc[np.where(pos >= 0, pos, 0)].reset_index(drop=True)
    return out.where(pd.Series(pos >= 0))


def _side_info(dataset: Dataset, side: Side) -> tuple[pd.DataFrame | None, Vocabulary, np.ndarray]:
    if side == "user":
        return dataset.user_info, dataset.users, dataset.user_counts()
    if side == "item":
        return dataset.item_info, dataset.items, dataset.item_counts()
    raise ConfigError(f"side must be 'user' or 'item', not {side!r}")


# ---------------------------------------------------------------------------- inference
def infer_schema(
    dataset: Dataset,
    side: Side,
    columns: list[str] | None = None,
    kinds: dict[str, str] | None = None,
    *,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
    max_int_categories: int = DEFAULT_MAX_INT_CATEGORIES,
    min_count: int = 1,
) -> FeatureSchema:
    """Fit the feature schema of one side on the dataset's *training* entities.

    Args:
        dataset: the training data; only users/items with at least one rating in it are used to
            fit categories and standardisation (every entity if it holds no ratings at all).
        side: ``"user"`` (reads ``user_info``) or ``"item"`` (reads ``item_info``).
        columns: the columns to use, in order. ``None``: every column of the side table except
            titles, minus columns that carry nothing (a single value, or unique free text). With
            MovieLens this gives genres, year (and tags after :func:`attach_tags`) for items;
            age, gender, occupation and the zip prefix for ml-100k/ml-1m users.
        kinds: explicit kinds by column (``categorical``, ``numeric``, ``multihot[:SEP]``,
            ``prefix:N``). Otherwise a kind is inferred: ``zip``-like names are ``prefix:2``;
            ``genres``/``tags`` multihot (tags lower-cased); ``year`` numeric; a numeric column
            with at most ``max_int_categories`` distinct integer values categorical (the ML-1M
            age groups), other numeric columns numeric; strings containing ``|`` multihot;
            other strings categorical.
        max_categories: a categorical/multihot feature keeps its most frequent values (counted
            over the training entities); the rest encode as unknown.
        max_int_categories: see ``kinds``.
        min_count: values held by fewer training entities encode as unknown.

    Raises:
        ConfigError: a requested column is not in the side table, or a kind is invalid.
        DataError: columns were requested and the dataset has no side table for ``side``.
    """
    info, vocab, n_ratings = _side_info(dataset, side)
    kinds = dict(kinds or {})
    if info is None:
        if columns:
            hint = " (pass a users file)" if side == "user" else " (pass an items file)"
            raise DataError(f"{dataset.name} has no {side} information for features {columns}{hint}")
        return FeatureSchema(side=side)
    explicit = columns is not None
    if columns is None:
        columns = [str(c) for c in info.columns if _norm(c) not in _SKIP_NAMES]
    missing = [c for c in [*columns, *kinds] if c not in info.columns]
    if missing:
        raise ConfigError(
            f"{side} feature {missing[0]!r} is not a column of the {side} table "
            f"(its columns: {', '.join(map(str, info.columns))})"
        )
    pos = _positions(info, vocab.ids, side)
    fit = pos[n_ratings > 0] if n_ratings.sum() > 0 else pos
    fit = fit[fit >= 0]
    specs: list[FeatureSpec] = []
    for column in columns:
        values = info[column].iloc[fit].reset_index(drop=True)
        kind_text = kinds.get(column) or _infer_kind(column, values, max_int_categories)
        kind, prefix, sep = _parse_kind(kind_text, column)
        spec = FeatureSpec(
            name=column, side=side, kind=kind, prefix=prefix, sep=sep, lower=_norm(column) in _LOWER_NAMES
        )
        if kind == "numeric":
            x = _numeric(column, values)
            x = x[np.isfinite(x)]
            if not explicit and np.unique(x).size < 2:
                logger.info("%s feature %s skipped: fewer than two values", side, column)
                continue
            std = float(x.std()) if x.size else 0.0
            fitted = {"mean": float(x.mean()) if x.size else 0.0, "std": std if std > 1e-12 else 1.0}
        else:
            if kind == "categorical":
                counts = _categorical_text(spec, values).value_counts()  # entities per value
                free_text = prefix is None and len(counts) > 2 and counts.max() < 2
            else:  # multihot: count each token once per entity
                tok = _tokens(spec, values)
                pairs = pd.DataFrame({"row": tok.index.to_numpy(), "token": tok.to_numpy()})
                counts = pairs.drop_duplicates()["token"].value_counts()
                free_text = False
            if not explicit and (len(counts) < 2 or free_text):
                logger.info("%s feature %s skipped: a single value or unique free text", side, column)
                continue
            fitted = {"categories": _ranked_values(counts, max_categories, min_count)}
        specs.append(FeatureSpec.model_validate({**spec.model_dump(), **fitted}))
    schema = FeatureSchema(side=side, features=specs)
    logger.info("%s", schema.describe())
    return schema


# ---------------------------------------------------------------------------- encoding
def encode_features(schema: FeatureSchema, info: pd.DataFrame | None, ids: Any) -> dict[str, np.ndarray]:
    """Encode the side table ``info`` for the raw ids ``ids`` (a vocabulary's order).

    An id absent from ``info`` encodes as missing everywhere.

    Returns:
        ``"categorical"``: ``int64 (n, n_categorical)``, one code per categorical feature
        (0 = missing/unknown, ``1 + j`` = ``categories[j]``);
        ``"multihot"``: ``float32 (n, sum of widths)``, each multihot feature's block of width
        ``1 + len(categories)`` side by side (column 0 of a block: no known token);
        ``"numeric"``: ``float32 (n, 2 * n_numeric)``: the standardised values (0 where
        missing) of every numeric feature, then one missing-indicator column per feature.

    Raises:
        DataError: ``info`` lacks a column of the schema or lists an id twice.
    """
    keys = _normalise_ids(ids)
    n = int(keys.shape[0])
    cat_specs, multi_specs, num_specs = schema.categorical, schema.multihot, schema.numeric
    categorical = np.zeros((n, len(cat_specs)), dtype=np.int64)
    multihot = np.zeros((n, sum(schema.multihot_widths)), dtype=np.float32)
    numeric = np.zeros((n, 2 * len(num_specs)), dtype=np.float32)
    out = {"categorical": categorical, "multihot": multihot, "numeric": numeric}
    if not len(schema):
        return out
    if info is None:
        numeric[:, len(num_specs) :] = 1.0
        multihot[:, np.cumsum([0, *schema.multihot_widths[:-1]])] = 1.0
        return out
    lacking = [f.source for f in schema.features if f.source not in info.columns]
    if lacking:
        raise DataError(f"the {schema.side} table has no column {lacking[0]!r} (needed by the model)")
    pos = _positions(info, keys, schema.side)
    for j, spec in enumerate(cat_specs):
        text = _categorical_text(spec, _aligned(info, pos, spec.source))
        categorical[:, j] = _codes(text, spec.categories) + 1
    offset = 0
    for spec in multi_specs:
        tok = _tokens(spec, _aligned(info, pos, spec.source))
        code = _codes(tok, spec.categories)
        known = code >= 0
        multihot[tok.index.to_numpy()[known], offset + 1 + code[known]] = 1.0
        block = multihot[:, offset : offset + spec.width]
        block[block.sum(axis=1) == 0, 0] = 1.0
        offset += spec.width
    k = len(num_specs)
    for j, spec in enumerate(num_specs):
        x = _numeric(spec.name, _aligned(info, pos, spec.source))
        ok = np.isfinite(x)
        numeric[:, j] = np.where(ok, (np.where(ok, x, 0.0) - spec.mean) / spec.std, 0.0)
        numeric[:, k + j] = (~ok).astype(np.float32)
    return out
