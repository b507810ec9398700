"""What the service holds for one loaded run: the recommender and fast lookup tables.

A :class:`Served` object is immutable once built; switching runs builds a new one and swaps the
reference, so a request that started on the old run finishes on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reelrec.artifacts import SCHEMA_VERSION
from reelrec.data.dataset import Vocabulary
from reelrec.errors import UnknownIdError
from reelrec.recommender import Recommender
from reelrec.topn import Ann


def _lookup(table: dict[str, int], vocab: Vocabulary, raw: Any) -> int | None:
    """The dense index of ``raw``: the exact text first (the hot path), then the vocabulary's
    own reading of other spellings."""
    idx = table.get(str(raw))
    if idx is None:
        found = int(vocab.index([raw], missing="negative")[0])
        idx = found if found >= 0 else None
    return idx


@dataclass
class Served:
    """One loaded run and its lookup tables (raw id text -> dense index, lower-case titles)."""

    rec: Recommender
    run_dir: Path
    loaded_at: str
    item_lookup: dict[str, int] = field(repr=False)
    user_lookup: dict[str, int] = field(repr=False)
    titles_lower: np.ndarray = field(repr=False)
    genre_matrix: np.ndarray = field(repr=False)
    popularity_order: np.ndarray = field(repr=False)
    genres: list[str] = field(repr=False)
    ann: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, run_dir: str | Path, ann: bool = False) -> Served:
        """Verify and load a run directory (manifest, hashes, schema) and index it; with
        ``ann``, also build approximate nearest-neighbour indexes (faiss HNSW)."""
        rec = Recommender.load(str(run_dir))
        raw, titles, _, genres = rec.catalogue()
        item_lookup = {str(x): i for i, x in enumerate(raw)}
        user_lookup = {str(x): i for i, x in enumerate(rec.users.ids.tolist())}
        titles_lower = np.array([(t or str(r)).lower() for t, r in zip(titles, raw, strict=True)], dtype=str)
        order = np.argsort(-rec.item_counts, kind="stable")
        all_genres = sorted({g for gs in genres for g in gs})
        column = {g.lower(): j for j, g in enumerate(all_genres)}
        genre_matrix = np.zeros((len(all_genres), len(raw)), dtype=bool)
        rows = [column[g.lower()] for gs in genres for g in gs]
        cols = [i for i, gs in enumerate(genres) for _ in gs]
        genre_matrix[rows, cols] = True
        index = None
        scorer = rec.topn.scorer  # chosen (an int8 copy built, its pass compiled) before any request
        if ann:
            from reelrec.service.ann import AnnIndex

            index = AnnIndex(rec)
            rec.topn.use(Ann(index, fallback=scorer))  # known users from the index, new users as before
        return cls(
            ann=index,
            rec=rec,
            run_dir=Path(run_dir).resolve(),
            loaded_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            item_lookup=item_lookup,
            user_lookup=user_lookup,
            titles_lower=titles_lower[order],
            genre_matrix=genre_matrix[:, order],
            popularity_order=order,
            genres=all_genres,
        )

    def top_n_for_user(
        self, user: int, n: int, exclude_rated: bool, novelty: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """A known user's top-``n`` (dense indices, model scores) through the run's scorer
        (exact, int8, or the ANN index when there is one)."""
        return self.rec.top_n_for_user(user, n, exclude_rated, novelty)

    def known_user_list(self, user: int, n: int, exclude_rated: bool, novelty: float) -> dict[str, Any]:
        """The body of ``GET /users/{id}/recommendations``: top-``n`` with reasons and how the
        list was ranked."""
        rec = self.rec
        ranked = rec.topn.recommend(user, n, exclude_rated=exclude_rated, novelty=novelty)
        top = ranked.items
        rated, ratings = rec.user_ratings(user)
        because = rec.explain(rated, ratings, top)
        given = None
        if ratings is not None:
            cited = [b for b in because if b >= 0]
            pos = np.searchsorted(rated, cited)  # seen items are sorted per user
            given = dict(zip(cited, ratings[pos].tolist(), strict=True))
        items = self.scored(top, rec.display_scores(ranked.scores), because, given)
        return {"model": rec.model.name, "personalised": True, "ranked_by": ranked.ranked_by, "items": items}

    def new_user_list(self, items: np.ndarray, values: np.ndarray, n: int, novelty: float) -> dict[str, Any]:
        """The body of ``POST /recommendations`` (and a profile's list): a new user's top-``n``
        from dense ``items`` and their ratings, with reasons and how the list was ranked."""
        rec = self.rec
        ranked = rec.new_user_ranked(items, values, n, novelty)
        because = rec.explain(items, values, ranked.items) if ranked.personalised else None
        rated = dict(zip(np.asarray(items).tolist(), np.asarray(values).tolist(), strict=True))
        return {
            "model": rec.model.name,
            "personalised": ranked.personalised,
            "ranked_by": ranked.ranked_by,
            "items": self.scored(ranked.items, ranked.scores, because, rated),
        }

    def similar(self, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` movies nearest to ``item`` by embedding cosine (exact, or the ANN index)."""
        if self.ann is not None and self.ann.item_index is not None:
            return self.ann.similar(item, n)
        return self.rec.similar_indices(item, n)

    # ------------------------------------------------------------------ ids
    def item(self, movie_id: Any) -> int:
        """Dense index of a movie id given as text or a number (any spelling the vocabulary
        accepts: ``"50"``, ``50``, ``"50.0"`` and ``" 50"`` name one movie)."""
        idx = _lookup(self.item_lookup, self.rec.items, movie_id)
        if idx is None:
            raise UnknownIdError(f"unknown movie id {movie_id!r}")
        return idx

    def user(self, user_id: Any) -> int:
        idx = _lookup(self.user_lookup, self.rec.users, user_id)
        if idx is None or self.rec.user_counts[idx] == 0:
            raise UnknownIdError(f"unknown user id {user_id!r} (not a user the model was trained on)")
        return idx

    # ------------------------------------------------------------------ descriptions
    def health(self) -> dict[str, Any]:
        rec = self.rec
        dataset = rec.meta.get("dataset", {})
        return {
            "status": "ok",
            "model": rec.model.name,
            "predicts_ratings": rec.model.ranks_by_rating,
            "dataset": dataset.get("name") if isinstance(dataset, dict) else None,
            "schema_version": SCHEMA_VERSION,
            "run": str(self.run_dir),
            "loaded_at": self.loaded_at,
            "n_users": len(rec.users),
            "n_items": len(rec.items),
            "rating_scale": {"low": rec.scale.low, "high": rec.scale.high, "step": rec.scale.step},
        }

    def movie(self, idx: int) -> dict[str, Any]:
        raw, titles, years, genres = self.rec.catalogue()
        return {
            "movie_id": raw[idx],
            "title": titles[idx],
            "year": years[idx],
            "genres": genres[idx],
            "n_ratings": int(self.rec.item_counts[idx]),
        }

    def scored(
        self,
        idx: np.ndarray,
        scores: np.ndarray,
        because: list[int] | None = None,
        rated: dict[int, float] | None = None,
    ) -> list[dict[str, Any]]:
        """List entries with movie metadata, score and a short reason."""
        raw, titles, years, genres = self.rec.catalogue()
        out = []
        for k, (i, s) in enumerate(zip(np.asarray(idx).tolist(), np.asarray(scores).tolist(), strict=True)):
            reason = None
            src = because[k] if because is not None else -1
            if src >= 0:
                name = titles[src] or f"movie {raw[src]}"
                given = rated.get(src) if rated else None
                stars = f" {given:g}★" if given is not None else ""
                reason = f"because you rated {name}{stars}"
            out.append(
                {
                    "movie_id": raw[i],
                    "title": titles[i],
                    "year": years[i],
                    "genres": genres[i],
                    "score": round(float(s), 4),
                    "reason": reason,
                    "because": raw[src] if src >= 0 else None,
                }
            )
        return out

    def search(self, query: str, genre: str | None, limit: int, offset: int) -> tuple[int, np.ndarray]:
        """Movies whose title contains ``query`` (case-insensitive) and that carry ``genre``,
        most-rated first: (number of matches, dense indices of the requested page). The arrays
        are kept in popularity order, so one vectorised pass answers both filters."""
        order = self.popularity_order
        mask = np.ones(order.shape[0], dtype=bool)
        q = query.strip().lower()
        if q:
            mask &= np.char.find(self.titles_lower, q) >= 0
        if genre:
            g = genre.strip().lower()
            j = [k for k, name in enumerate(self.genres) if name.lower() == g]
            if not j:
                raise UnknownIdError(f"unknown genre {genre!r} (known: {', '.join(self.genres) or 'none'})")
            mask &= self.genre_matrix[j[0]]
        hits = order[mask]
        return int(hits.shape[0]), hits[offset : offset + limit]
