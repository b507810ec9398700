"""One plain function per kind of request: the served run and validated input in, the answer's
data out. No framework and no I/O here: the routes (:mod:`reelrec.service.routes`) read the
request, fetch stored ratings and call these; the known-user fast lane
(:mod:`reelrec.service.hotpath`) calls :func:`user_recommendations` as its route does, and both
send the body through :func:`json_response`, so the two answer byte for byte alike.

A user error raises a :class:`~reelrec.errors.ReelrecError` (unknown ids:
:class:`~reelrec.errors.UnknownIdError`), which the app answers as a one-line 4xx.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
from fastapi.responses import Response

from reelrec.errors import ReelrecError, UnknownIdError
from reelrec.service.state import Served


def json_response(obj: Any) -> Response:
    """A compact JSON answer built directly (the list endpoints' bodies are plain dicts of
    Python values already checked by construction; the declared response models document them)."""
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Response(body.encode("utf-8"), media_type="application/json")


# ---------------------------------------------------------------------- movies
def movies(s: Served, query: str, genre: str | None, limit: int, offset: int) -> dict[str, Any]:
    """``GET /movies``: a page of the catalogue search, most-rated first, and the match count."""
    total, idx = s.search(query, genre, limit, offset)
    return {"total": total, "movies": [s.movie(i) for i in idx.tolist()]}


def movie(s: Served, movie_id: str) -> dict[str, Any]:
    """``GET /movies/{id}``."""
    return s.movie(s.item(movie_id))


def similar(s: Served, movie_id: str, n: int) -> list[dict[str, Any]]:
    """``GET /movies/{id}/similar``: the ``n`` movies nearest by embedding cosine."""
    i = s.item(movie_id)
    if s.rec.unit_item_vectors() is None:
        raise ReelrecError(f"model {s.rec.model.name!r} has no movie embeddings, so no similar movies")
    if s.rec.item_counts[i] == 0:
        raise UnknownIdError(f"movie {movie_id!r} has no training ratings, so no embedding")
    top, val = s.similar(i, n)
    return s.scored(top, val)


# ---------------------------------------------------------------------- users
def users(s: Served, limit: int) -> list[dict[str, Any]]:
    """``GET /users``: trained users, most active first."""
    rec = s.rec
    k = min(limit, len(rec.users))
    top = np.argsort(-rec.user_counts, kind="stable")[:k]
    raw = rec.users.ids[top].tolist()
    return [
        {"user_id": u, "n_ratings": int(rec.user_counts[i])} for u, i in zip(raw, top.tolist(), strict=True)
    ]


def user_ratings(s: Served, user_id: str, limit: int) -> list[dict[str, Any]]:
    """``GET /users/{id}/ratings``: a known user's training ratings, best first."""
    rated, ratings = s.rec.user_ratings(s.user(user_id))
    if ratings is None:
        ratings = np.full(rated.shape[0], np.nan)
    order = np.argsort(-np.nan_to_num(ratings, nan=0.0), kind="stable")[:limit]
    return [{**s.movie(int(rated[k])), "rating": float(ratings[k])} for k in order.tolist()]


# ---------------------------------------------------------------------- lists and predictions
def user_recommendations(s: Served, user: int, n: int, exclude_rated: bool, novelty: float) -> dict[str, Any]:
    """``GET /users/{id}/recommendations`` for the known user of dense index ``user`` (the route
    resolves the id, the fast lane its exact spelling): top-``n`` with reasons."""
    return s.known_user_list(user, n, exclude_rated, novelty)


def new_user(s: Served, ratings: dict[str, float], n: int, novelty: float) -> dict[str, Any]:
    """``POST /recommendations``: top-``n`` for ``{movie id: rating}`` folded into the model."""
    known = {s.item(k): check_rating(s, v) for k, v in ratings.items()}
    return _for_new_user(s, known, n, novelty)


def profile_recommendations(s: Served, stored: dict[str, float], n: int, novelty: float) -> dict[str, Any]:
    """``GET /profiles/{id}/recommendations`` from the profile's ``stored`` ratings."""
    return _for_new_user(s, _on_catalogue(s, stored), n, novelty)


def predict(s: Served, pairs: Iterable[tuple[Any, Any]]) -> dict[str, Any]:
    """``POST /predict``: predicted ratings for ``(known user id, movie id)`` pairs."""
    pairs = list(pairs)
    u = np.array([s.user(user) for user, _ in pairs], dtype=np.int64)
    i = np.array([s.item(movie) for _, movie in pairs], dtype=np.int64)
    if not s.rec.model.predicts_ratings:
        raise ReelrecError(f"model {s.rec.model.name!r} ranks movies; it does not predict ratings")
    pred = s.rec.predict_indices(u, i)
    users_raw, items_raw = s.rec.users.ids[u].tolist(), s.rec.catalogue()[0]
    return {
        "model": s.rec.model.name,
        "predictions": [
            {"user": uu, "movie": items_raw[ii], "rating": round(float(r), 4)}
            for uu, ii, r in zip(users_raw, i.tolist(), pred.tolist(), strict=True)
        ],
    }


# ---------------------------------------------------------------------- profiles
def profile(s: Served, profile_id: str, stored: dict[str, float]) -> dict[str, Any]:
    """``GET /profiles/{id}``: the ``stored`` ratings on movies of the served catalogue."""
    known = _on_catalogue(s, stored)
    return {"id": profile_id, "ratings": [{**s.movie(i), "rating": r} for i, r in known.items()]}


def rating_to_store(s: Served, movie_id: str, rating: float) -> tuple[Any, float]:
    """``PUT /profiles/{id}/ratings/{movie}``: the movie's id as stored and the checked rating."""
    i = s.item(movie_id)
    return s.rec.catalogue()[0][i], check_rating(s, rating)


def stored_movie_id(s: Served, movie_id: str) -> Any:
    """``DELETE /profiles/{id}/ratings/{movie}``: the id as stored (any spelling of a catalogue
    movie), else as given (a movie a run switch dropped)."""
    try:
        return s.rec.catalogue()[0][s.item(movie_id)]
    except UnknownIdError:
        return movie_id


# ---------------------------------------------------------------------- helpers
def check_rating(s: Served, value: float) -> float:
    """``value`` as a float, refused (422) outside the run's rating scale."""
    low, high = s.rec.scale.low, s.rec.scale.high
    if not np.isfinite(value) or value < low or value > high:  # the value as given, not rounded
        raise ReelrecError(f"rating {value!r} is outside the rating scale {low:g}..{high:g}")
    return float(value)


def _on_catalogue(s: Served, stored: dict[str, float]) -> dict[int, float]:
    """Stored ratings on movies of the served catalogue (a run switch may drop some)."""
    out = {}
    for key, value in stored.items():
        idx = s.item_lookup.get(key)
        if idx is not None:
            out[idx] = value
    return out


def _for_new_user(s: Served, ratings: dict[int, float], n: int, novelty: float) -> dict[str, Any]:
    items = np.fromiter(ratings.keys(), dtype=np.int64, count=len(ratings))
    values = np.fromiter(ratings.values(), dtype=np.float64, count=len(ratings))
    return s.new_user_list(items, values, n, novelty)
