"""The catalogue side shared by the library and the service: item metadata as shown to people
(raw id, title, year, genres) and the lists built from it.

:class:`~reelrec.recommender.Recommender` builds its :class:`Catalogue` once and turns a
ranked top-n (:class:`reelrec.topn.Ranked`) into a :class:`RankedItems` list of
:class:`ScoredItem` that says how it was ranked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Catalogue", "RankedItems", "ScoredItem"]


@dataclass(frozen=True)
class ScoredItem:
    """One entry of a recommendation or similarity list."""

    item_id: Any
    score: float
    title: str | None = None
    year: int | None = None
    genres: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        item_id = self.item_id.item() if isinstance(self.item_id, np.generic) else self.item_id
        return {
            "item_id": item_id,
            "title": self.title,
            "year": self.year,
            "genres": self.genres,
            "score": round(float(self.score), 6),
        }


class RankedItems(list):
    """A list of :class:`ScoredItem`, best first, that says how it was ranked: ``ranked_by``
    (e.g. ``"predicted rating + popularity prior (novelty -0.25)"``, where the order is not the
    order of the scores shown) and whether it is ``personalised``."""

    def __init__(self, items: list[ScoredItem], ranked_by: str, personalised: bool = True) -> None:
        super().__init__(items)
        self.ranked_by = ranked_by
        self.personalised = personalised


@dataclass(frozen=True)
class Catalogue:
    """Per dense item index: raw id (a Python value), title, year and genres."""

    raw: list[Any]
    titles: list[str | None]
    years: list[int | None]
    genres: list[list[str]]

    @classmethod
    def build(cls, ids: np.ndarray, info: pd.DataFrame | None) -> Catalogue:
        """From the vocabulary's raw ids and the item table aligned with them (``title``,
        ``year``, ``genres`` with ``|`` between genres; any of them may be missing)."""
        raw = [x.item() if isinstance(x, np.generic) else x for x in ids.tolist()]
        n = len(raw)
        titles: list[str | None] = [None] * n
        years: list[int | None] = [None] * n
        genres: list[list[str]] = [[] for _ in range(n)]
        if info is not None:
            if "title" in info:
                titles = [None if pd.isna(t) else str(t) for t in info["title"].tolist()]
            if "year" in info:
                years = [None if y is None or pd.isna(y) else int(y) for y in info["year"].tolist()]
            if "genres" in info:
                genres = [
                    [x for x in g.split("|") if x] if isinstance(g, str) else []
                    for g in info["genres"].tolist()
                ]
        return cls(raw, titles, years, genres)

    def astuple(self) -> tuple[list[Any], list[str | None], list[int | None], list[list[str]]]:
        return self.raw, self.titles, self.years, self.genres


def describe(
    catalogue: tuple[list[Any], list[str | None], list[int | None], list[list[str]]],
    idx: np.ndarray,
    scores: np.ndarray,
    ranked_by: str,
    personalised: bool = True,
) -> RankedItems:
    """Dense indices and their scores as a :class:`RankedItems` list (``catalogue`` as
    :meth:`Catalogue.astuple`)."""
    raw, titles, years, genres = catalogue
    pairs = zip(np.asarray(idx).tolist(), np.asarray(scores).tolist(), strict=True)
    items = [ScoredItem(raw[i], float(s), titles[i], years[i], genres[i]) for i, s in pairs]
    return RankedItems(items, ranked_by, personalised)
