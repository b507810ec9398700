"""The catalogue side shared by the library and the service: item metadata as shown to people
(raw id, title, year, genres) and the novelty re-ranking against popularity.

:class:`~reelrec.recommender.Recommender` builds its :class:`Catalogue` and popularity once and
re-ranks through :func:`shift_batch` / :func:`shift_row`; the service's exact path goes through
the recommender, and its approximate (faiss) path re-ranks what it retrieved with
:func:`shift_row` as well, so both give the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from reelrec.errors import ConfigError

#: the largest |novelty| accepted (5 already puts popularity far above any rating difference)
MAX_NOVELTY = 100.0


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


def popularity_z(item_counts: np.ndarray) -> np.ndarray:
    """Standardised ``log(1 + training count)`` of every item (mean 0, std 1 over trained items)."""
    logc = np.log1p(item_counts.astype(np.float64))
    trained = item_counts > 0
    mean = logc[trained].mean() if trained.any() else 0.0
    std = logc[trained].std() if trained.sum() > 1 else 1.0
    return ((logc - mean) / max(std, 1e-12)).astype(np.float32)


def shift_batch(scores: torch.Tensor, z: np.ndarray, novelty: float, ranks_by_rating: bool) -> torch.Tensor:
    """``scores - novelty * unit * z_pop`` for a batch of score rows: the novelty knob. ``unit`` is
    one rating for models that rank by predicted rating and each row's score spread otherwise, so
    ``novelty=1`` moves a movie one popularity standard deviation above average down by one star
    (or one spread)."""
    if not abs(novelty) <= MAX_NOVELTY:  # NaN too: it would silently empty every list
        raise ConfigError(f"novelty must lie in -{MAX_NOVELTY:g}..{MAX_NOVELTY:g}, got {novelty!r}")
    zt = torch.as_tensor(z, device=scores.device)
    if ranks_by_rating:
        unit = torch.ones(scores.shape[0], 1, device=scores.device)
    else:
        finite = torch.where(torch.isfinite(scores), scores, torch.nan)
        unit = torch.nan_to_num(
            torch.sqrt(
                torch.nanmean((finite - torch.nanmean(finite, 1, keepdim=True)) ** 2, 1, keepdim=True)
            ),
            nan=1.0,
        )
    return scores - novelty * unit * zt


def shift_row(scores: np.ndarray, z: np.ndarray, novelty: float, ranks_by_rating: bool) -> np.ndarray:
    """One score row (``z`` aligned with it) with the novelty knob applied; ``-inf`` entries stay
    ``-inf``. For rating rankers the shift is one fixed vector (unit = one rating): numpy, no torch
    round trip, the float32 product of :func:`shift_batch`, so both give the same bits."""
    if not novelty:
        return scores
    if ranks_by_rating:
        return scores - (np.float32(novelty) * z).astype(np.float64)
    return shift_batch(torch.as_tensor(scores, dtype=torch.float64)[None, :], z, novelty, False)[0].numpy()
