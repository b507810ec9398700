"""The reelrec web service: a FastAPI application over one trained run and a ratings store.

Build it with :func:`create_app` (``reelrec serve`` does, then runs it with uvicorn). Every
input is validated by pydantic or by the id lookups; a bad request is a 4xx whose body is
``{"detail": "<one line>"}``, never a 500. Model work (scoring, fold-in) runs on the event
loop, one request at a time, so the model is never used from two threads; database work runs
in the thread pool.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Body, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reelrec._defaults import LIST_NOVELTY
from reelrec._version import __version__
from reelrec.errors import ReelrecError, UnknownIdError
from reelrec.service.state import Served
from reelrec.service.store import RatingStore, StoreError, default_store_url

log = logging.getLogger(__name__)

#: the largest request body accepted, in bytes
MAX_BODY = 1 << 20
MAX_RATINGS = 5000
MAX_PAIRS = 10000
LATENCY_WINDOW = 4096

MovieId = Annotated[
    str, PathParam(min_length=1, max_length=255, description="a movie id of the run's catalogue")
]
ProfileId = Annotated[
    str, PathParam(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="a profile id from POST /profiles")
]
N = Annotated[int, Query(ge=1, le=100, description="list length, 1..100")]
Novelty = Annotated[
    float,
    Query(
        ge=-5,
        le=5,
        description="re-rank against popularity: >0 favours less-watched movies, <0 the mainstream, "
        "0 = the model's ranking as it is",
    ),
]


# ---------------------------------------------------------------------- schemas
def json_int(low: int = -(2**53), high: int = 2**53) -> Any:
    """A JSON integer in ``low..high``: ``5`` or ``5.0`` (JSON Schema's integer), never ``true``,
    ``"5"`` or ``5.5``; the range is checked and documented. The default range is what every
    JSON parser holds exactly (send larger ids as strings)."""

    def not_bool(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("Input should be a valid integer, not true/false")
        return value

    def in_range(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"Input should be in {low}..{high}")
        return value

    return Annotated[
        int,
        Field(strict=False),
        BeforeValidator(not_bool),
        AfterValidator(in_range),
        WithJsonSchema({"type": "integer", "minimum": low, "maximum": high}),
    ]


JsonInt = json_int()


class Strict(BaseModel):
    """A request body: unknown fields refused, and no type coercion (``true`` is not a rating or
    an id, ``"4"`` is not a number)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorBody(BaseModel):
    """Every error answer: one line saying what is wrong."""

    detail: str


_ERROR_TEXT = {
    400: "the request body could not be read",
    403: "reload disabled, or a missing or wrong X-Admin-Token",
    404: "an unknown movie, user or profile id",
    413: f"the request body is larger than {MAX_BODY} bytes (chunked bodies included)",
    422: "invalid input: a parameter or body field of the wrong type, range or shape",
    503: "the ratings store is unavailable",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses (body: :class:`ErrorBody`)."""
    return {code: {"model": ErrorBody, "description": _ERROR_TEXT[code]} for code in codes}


def _check_path(value: str | None) -> str | None:
    """A run path within the file system's limits (checked before the path is used)."""
    if value is None:
        return None
    if "\x00" in value:
        raise ValueError("the run path contains a NUL character")
    if any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in value.split("/")):
        raise ValueError("a component of the run path is longer than 255 bytes")
    return value


class Health(BaseModel):
    status: str
    model: str
    predicts_ratings: bool = Field(description="scores are predicted ratings (else ranking scores)")
    dataset: str | None
    schema_version: int
    run: str
    loaded_at: str
    n_users: int
    n_items: int
    rating_scale: dict[str, float | None]


class Movie(BaseModel):
    movie_id: int | str
    title: str | None
    year: int | None
    genres: list[str]
    n_ratings: int = Field(description="ratings the model learned this movie from")


class MovieList(BaseModel):
    total: int
    movies: list[Movie]


class Scored(BaseModel):
    movie_id: int | str
    title: str | None
    year: int | None
    genres: list[str]
    score: float = Field(description="predicted rating (rating models) or ranking score")
    reason: str | None = Field(None, description='e.g. "because you rated Fargo (1996) 5★"')
    because: int | str | None = Field(None, description="the movie the reason names")


class Recommendations(BaseModel):
    model: str
    personalised: bool = Field(description="false when the list is the popularity fallback")
    ranked_by: str = Field(
        description='how the list is ordered, e.g. "predicted rating + popularity prior (novelty -0.25)"'
    )
    items: list[Scored]


class NewUserRequest(Strict):
    ratings: dict[Annotated[str, Field(min_length=1, max_length=255)], float] = Field(
        default_factory=dict,
        description="{movie id: rating} on the run's rating scale; empty gives the popularity list",
        max_length=MAX_RATINGS,
    )
    n: json_int(1, 100) = 10  # type: ignore[valid-type]
    novelty: float = Field(LIST_NOVELTY, ge=-5, le=5, description="as the query parameter of the GET lists")


IdValue = JsonInt | Annotated[str, Field(min_length=1, max_length=255)]


class Pair(Strict):
    user: IdValue
    movie: IdValue


class PredictRequest(Strict):
    pairs: list[Pair] = Field(min_length=1, max_length=MAX_PAIRS)


class Prediction(BaseModel):
    user: int | str
    movie: int | str
    rating: float


class Predictions(BaseModel):
    model: str
    predictions: list[Prediction]


class RatingBody(Strict):
    rating: float = Field(description="on the run's rating scale (its range is in this schema)")


class ProfileRating(Movie):
    rating: float


class Profile(BaseModel):
    id: str
    ratings: list[ProfileRating]


class UserSummary(BaseModel):
    user_id: int | str
    n_ratings: int


class ReloadRequest(Strict):
    run: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="run directory to switch to (default: reload the current one); at most 4096 "
        "characters, 255 bytes per component",
    )

    _path = field_validator("run")(_check_path)


# ---------------------------------------------------------------------- middleware
class Telemetry:
    """Request counts, status classes and a window of recent latencies per route."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = time.time()
        self.counts: dict[str, int] = defaultdict(int)
        self.statuses: dict[str, int] = defaultdict(int)
        self.latency: dict[str, np.ndarray] = {}
        self.filled: dict[str, int] = defaultdict(int)

    def record(self, route: str, status: int, seconds: float) -> None:
        with self.lock:
            n = self.counts[route]
            self.counts[route] = n + 1
            self.statuses[f"{status // 100}xx"] += 1
            window = self.latency.get(route)
            if window is None:
                window = self.latency[route] = np.zeros(LATENCY_WINDOW)
            window[n % LATENCY_WINDOW] = seconds
            self.filled[route] = min(n + 1, LATENCY_WINDOW)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            routes = {}
            for route, count in sorted(self.counts.items()):
                lat = self.latency[route][: self.filled[route]] * 1000
                routes[route] = {
                    "requests": count,
                    "latency_ms": {
                        "mean": round(float(lat.mean()), 3),
                        "p50": round(float(np.percentile(lat, 50)), 3),
                        "p99": round(float(np.percentile(lat, 99)), 3),
                        "window": int(lat.shape[0]),
                    },
                }
            return {
                "uptime_seconds": round(time.time() - self.started, 1),
                "requests": int(sum(self.counts.values())),
                "status": dict(self.statuses),
                "routes": routes,
            }


class Guard:
    """Pure-ASGI middleware: rejects oversized bodies (413, declared or chunked) and records
    telemetry for every answer, server errors included."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.telemetry = telemetry
        self.max_body = max_body

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body larger than {self.max_body} bytes"}, status_code=413
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}
        try:
            await self._handle(scope, receive, send, status)
        except Exception:
            status["code"] = 500  # answered by Starlette's error middleware; counted here
            raise
        finally:
            route = scope.get("route")
            name = f"{scope['method']} {getattr(route, 'path', None) or '(unmatched)'}"
            if status["code"] == 413 and route is None:
                name = "(rejected)"
            self.telemetry.record(name, status["code"], time.perf_counter() - start)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, status: dict[str, int]) -> None:
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            status["code"] = 413
            await self._reject(scope, receive, send)
            return
        if length is None and scope["method"] not in ("GET", "HEAD", "OPTIONS", "DELETE"):
            # no declared length (chunked): read the body here, up to the limit, then replay it
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    status["code"] = 413
                    await self._reject(scope, receive, send)
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            replayed = {"done": False}

            async def replay() -> Message:
                if not replayed["done"]:
                    replayed["done"] = True
                    return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                return await receive()

            inner_receive: Receive = replay
        else:
            seen = {"bytes": 0}

            async def limited_receive() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    seen["bytes"] += len(message.get("body", b""))
                    if seen["bytes"] > self.max_body:
                        raise BodyTooLarge
                return message

            inner_receive = limited_receive

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, inner_receive, send_wrapper)
        except BodyTooLarge:  # more than the declared length arrived
            status["code"] = 413
            await self._reject(scope, receive, send)


class BodyTooLarge(Exception):
    """A streamed body went past the limit."""


# ---------------------------------------------------------------------- the app
def _fast_json(obj: Any) -> Response:
    """A JSON response built directly (the hot endpoints' bodies are plain dicts of Python
    values already checked by construction; the declared response models document them)."""
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Response(body.encode("utf-8"), media_type="application/json")


_NOT_LOCATIONS = ("body", "query", "path", "header")


def _is_union_tag(part: Any) -> bool:
    """A union member's label in a pydantic error location (``int``, ``constrained-str``,
    ``function-after[...]``), not a field name."""
    text = str(part)
    return isinstance(part, str) and (
        "[" in text or "`" in text or text in ("int", "str", "float", "constrained-int", "constrained-str")
    )


def _first_error(exc: RequestValidationError) -> str:
    err = exc.errors()[0]
    if err.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    loc = ".".join(str(x) for x in err.get("loc", ()) if x not in _NOT_LOCATIONS and not _is_union_tag(x))
    msg = str(err.get("msg", "invalid input"))
    return f"{loc}: {msg}" if loc else msg


def _with_rating_range(schema: dict[str, Any], low: float, high: float) -> None:
    """Write the rating scale into the request schemas that carry ratings."""
    shapes = schema.get("components", {}).get("schemas", {})
    rating = shapes.get("RatingBody", {}).get("properties", {}).get("rating")
    ratings = shapes.get("NewUserRequest", {}).get("properties", {}).get("ratings", {})
    for spot in (rating, ratings.get("additionalProperties")):
        if isinstance(spot, dict):
            spot.update(minimum=low, maximum=high)


def create_app(
    run_dir: str | os.PathLike[str],
    store_url: str | None = None,
    *,
    admin_token: str | None = None,
    max_body: int = MAX_BODY,
    ann: bool = False,
) -> FastAPI:
    """The service for run directory ``run_dir`` (verified and loaded once, here) with ratings
    kept in ``store_url`` (default: ``ratings.sqlite`` beside the run directory).

    ``admin_token`` enables ``POST /admin/reload`` (switching to another run without a restart)
    for requests carrying it in ``X-Admin-Token``; without one the endpoint is disabled.
    ``ann`` serves known-user lists and similar movies from faiss HNSW indexes (approximate;
    for catalogues far larger than MovieLens') instead of exact full-catalogue scoring.
    """
    served = Served.load(run_dir, ann=ann)
    store = RatingStore(store_url or default_store_url(run_dir))
    telemetry = Telemetry()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        lifespan=lifespan,
        responses=_errors(413, 422),
        title="reelrec",
        version=__version__,
        description=(
            "Movie recommendations from a trained reelrec run: search the catalogue, similar "
            "movies, lists for known users, and for new users from a few ratings (folded in "
            "without retraining). Ratings given to a profile are stored durably."
        ),
    )
    app.state.served = served
    app.state.store = store
    app.state.telemetry = telemetry
    app.state.reload_lock = threading.Lock()
    app.state.after_reload = None  # set by reelrec.service.workers: tell the other workers
    app.add_middleware(Guard, telemetry=telemetry, max_body=max_body)

    def current() -> Served:
        return app.state.served

    # ------------------------------------------------------------------ errors
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _first_error(exc)}, status_code=422)

    def one_line(status: int) -> Any:
        async def handler(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=status)

        return handler

    # the most specific class wins: unknown ids 404, store trouble 503, any other user error 422
    for error, status in ((UnknownIdError, 404), (StoreError, 503), (ReelrecError, 422)):
        app.add_exception_handler(error, one_line(status))

    # ------------------------------------------------------------------ helpers
    def check_rating(s: Served, value: float) -> float:
        low, high = s.rec.scale.low, s.rec.scale.high
        if not np.isfinite(value) or value < low or value > high:  # the value as given, not rounded
            raise ReelrecError(f"rating {value!r} is outside the rating scale {low:g}..{high:g}")
        return float(value)

    def for_new_user(s: Served, ratings: dict[int, float], n: int, novelty: float) -> dict[str, Any]:
        items = np.fromiter(ratings.keys(), dtype=np.int64, count=len(ratings))
        values = np.fromiter(ratings.values(), dtype=np.float64, count=len(ratings))
        return s.new_user_list(items, values, n, novelty)

    def profile_ratings(s: Served, stored: dict[str, float]) -> dict[int, float]:
        """Stored ratings on movies of the served catalogue (a run switch may drop some)."""
        out = {}
        for key, value in stored.items():
            idx = s.item_lookup.get(key)
            if idx is not None:
                out[idx] = value
        return out

    # ------------------------------------------------------------------ routes: service
    @app.get("/health", response_model=Health, tags=["service"])
    async def health() -> dict[str, Any]:
        """The served run: model, dataset, artifact schema version and when it was loaded."""
        return current().health()

    @app.get("/metrics", tags=["service"], responses=_errors(503))
    async def metrics() -> dict[str, Any]:
        """Request counts per route, status classes, and p50/p99 latency over recent requests."""
        snap = telemetry.snapshot()
        snap["store"] = await run_in_threadpool(store.counts)
        return snap

    @app.post("/admin/reload", response_model=Health, tags=["service"], responses=_errors(400, 403))
    async def reload(
        body: ReloadRequest | None = None,
        x_admin_token: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Switch to another run directory (or reload this one) without dropping requests:
        the new run is verified and loaded aside, then swapped in; requests already running
        finish on the old one. Needs ``X-Admin-Token`` (``reelrec serve --admin-token``).
        With several workers the one that answers has switched; the others follow within
        about a second (``X-Reelrec-Worker`` names the worker that answered)."""
        if not admin_token:
            return JSONResponse(
                {"detail": "reload is disabled; start the service with --admin-token"}, status_code=403
            )  # type: ignore[return-value]
        # bytes on both sides: constant time, and a non-ASCII header is a mismatch, not an error
        # (Starlette decodes header bytes as latin-1, so encoding back gives the bytes sent)
        given = (x_admin_token or "").encode("latin-1", "replace")
        if not x_admin_token or not hmac.compare_digest(given, admin_token.encode("utf-8")):
            return JSONResponse({"detail": "missing or wrong X-Admin-Token"}, status_code=403)  # type: ignore[return-value]
        target = Path(body.run) if body and body.run else current().run_dir

        def load() -> Served:
            with app.state.reload_lock:
                return Served.load(target, ann=ann)

        try:
            fresh = await run_in_threadpool(load)
        except (ReelrecError, OSError, ValueError) as exc:
            detail = (
                str(exc)
                if isinstance(exc, ReelrecError)
                else f"cannot load run {str(target)[:200]!r} ({exc})"
            )
            return JSONResponse({"detail": detail}, status_code=422)  # type: ignore[return-value]
        app.state.served = fresh
        if app.state.after_reload is not None:
            app.state.after_reload(fresh)
        log.info("now serving %s", fresh.run_dir)
        return fresh.health()

    # ------------------------------------------------------------------ routes: movies
    @app.get("/movies", response_model=MovieList, tags=["movies"], responses=_errors(404))
    async def movies(
        query: Annotated[str, Query(max_length=200, description="part of the title, any case")] = "",
        genre: Annotated[str | None, Query(max_length=100)] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        """Search the catalogue by title and genre, most-rated first."""
        s = current()
        total, idx = s.search(query, genre, limit, offset)
        return {"total": total, "movies": [s.movie(i) for i in idx.tolist()]}

    @app.get("/genres", response_model=list[str], tags=["movies"])
    async def genres() -> list[str]:
        """Every genre of the catalogue."""
        return current().genres

    @app.get("/movies/{movie_id}", response_model=Movie, tags=["movies"], responses=_errors(404))
    async def movie(movie_id: MovieId) -> dict[str, Any]:
        """One movie."""
        s = current()
        return s.movie(s.item(movie_id))

    @app.get(
        "/movies/{movie_id}/similar", response_model=list[Scored], tags=["movies"], responses=_errors(404)
    )
    async def similar(movie_id: MovieId, n: N = 10) -> list[dict[str, Any]]:
        """Movies whose embeddings are most similar (cosine) to this one's."""
        s = current()
        i = s.item(movie_id)
        vectors = s.rec.unit_item_vectors()
        if vectors is None:
            raise ReelrecError(f"model {s.rec.model.name!r} has no movie embeddings, so no similar movies")
        if s.rec.item_counts[i] == 0:
            raise UnknownIdError(f"movie {movie_id!r} has no training ratings, so no embedding")
        top, val = s.similar(i, n)
        return _fast_json(s.scored(top, val))

    # ------------------------------------------------------------------ routes: users
    @app.get("/users", response_model=list[UserSummary], tags=["users"])
    async def users(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
        """Users the model was trained on, most active first (to pick one in the page)."""
        rec = current().rec
        k = min(limit, len(rec.users))
        top = np.argsort(-rec.user_counts, kind="stable")[:k]
        raw = rec.users.ids[top].tolist()
        return [
            {"user_id": u, "n_ratings": int(rec.user_counts[i])}
            for u, i in zip(raw, top.tolist(), strict=True)
        ]

    @app.get(
        "/users/{user_id}/recommendations",
        response_model=Recommendations,
        tags=["users"],
        responses=_errors(404),
    )
    async def user_recommendations(
        user_id: Annotated[str, PathParam(min_length=1, max_length=255)],
        n: N = 10,
        exclude_rated: bool = True,
        novelty: Novelty = LIST_NOVELTY,
    ) -> dict[str, Any]:
        """Top-n for a user the model was trained on (their rated movies excluded by default)."""
        s = current()
        return _fast_json(s.known_user_list(s.user(user_id), n, exclude_rated, novelty))

    @app.get(
        "/users/{user_id}/ratings", response_model=list[ProfileRating], tags=["users"], responses=_errors(404)
    )
    async def user_ratings(
        user_id: Annotated[str, PathParam(min_length=1, max_length=255)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    ) -> list[dict[str, Any]]:
        """A known user's training ratings, best first."""
        s = current()
        rated, ratings = s.rec.user_ratings(s.user(user_id))
        if ratings is None:
            ratings = np.full(rated.shape[0], np.nan)
        order = np.argsort(-np.nan_to_num(ratings, nan=0.0), kind="stable")[:limit]
        return [{**s.movie(int(rated[k])), "rating": float(ratings[k])} for k in order.tolist()]

    @app.post("/recommendations", response_model=Recommendations, tags=["users"], responses=_errors(400, 404))
    async def new_user(body: NewUserRequest) -> dict[str, Any]:
        """Top-n for a **new** user from ``{movie id: rating}``, with no retraining: the user is
        folded into the frozen model (closed form for MF). No ratings: the most-rated movies."""
        s = current()
        ratings = {s.item(k): check_rating(s, v) for k, v in body.ratings.items()}
        return _fast_json(for_new_user(s, ratings, body.n, body.novelty))

    @app.post("/predict", response_model=Predictions, tags=["users"], responses=_errors(400, 404))
    async def predict(body: PredictRequest) -> dict[str, Any]:
        """Predicted ratings for (known user, movie) pairs."""
        s = current()
        u = np.array([s.user(p.user) for p in body.pairs], dtype=np.int64)
        i = np.array([s.item(p.movie) for p in body.pairs], dtype=np.int64)
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

    # ------------------------------------------------------------------ routes: profiles
    @app.post("/profiles", status_code=201, response_model=Profile, tags=["profiles"], responses=_errors(503))
    async def new_profile() -> dict[str, Any]:
        """A new, empty profile with a random id (the web page keeps it in a cookie)."""
        return {"id": await run_in_threadpool(store.create_profile), "ratings": []}

    @app.get("/profiles/{profile_id}", response_model=Profile, tags=["profiles"], responses=_errors(404, 503))
    async def get_profile(profile_id: ProfileId) -> dict[str, Any]:
        """A profile's stored ratings."""
        if not await run_in_threadpool(store.has_profile, profile_id):
            raise UnknownIdError(f"unknown profile {profile_id!r}")
        stored = await run_in_threadpool(store.get_ratings, profile_id)
        s = current()
        known = profile_ratings(s, stored)
        return {"id": profile_id, "ratings": [{**s.movie(i), "rating": r} for i, r in known.items()]}

    @app.put(
        "/profiles/{profile_id}/ratings/{movie_id}",
        response_model=Profile,
        tags=["profiles"],
        responses=_errors(400, 404, 503),
    )
    async def rate(
        profile_id: ProfileId, movie_id: MovieId, body: Annotated[RatingBody, Body()]
    ) -> dict[str, Any]:
        """Store (or change) a rating. When this answers, the rating is committed to disk."""
        s = current()
        i = s.item(movie_id)
        value = check_rating(s, body.rating)
        await run_in_threadpool(store.set_rating, profile_id, s.rec.catalogue()[0][i], value)
        return await get_profile(profile_id)

    @app.delete(
        "/profiles/{profile_id}/ratings/{movie_id}",
        response_model=Profile,
        tags=["profiles"],
        responses=_errors(404, 503),
    )
    async def unrate(profile_id: ProfileId, movie_id: MovieId) -> dict[str, Any]:
        """Remove a rating."""
        s = current()
        try:  # the id as stored (any spelling of a catalogue movie), else as given
            key: Any = s.rec.catalogue()[0][s.item(movie_id)]
        except UnknownIdError:
            key = movie_id
        if not await run_in_threadpool(store.delete_rating, profile_id, key):
            raise UnknownIdError(f"profile {profile_id!r} has no rating for movie {movie_id!r}")
        return await get_profile(profile_id)

    @app.get(
        "/profiles/{profile_id}/recommendations",
        response_model=Recommendations,
        tags=["profiles"],
        responses=_errors(404, 503),
    )
    async def profile_recommendations(
        profile_id: ProfileId, n: N = 10, novelty: Novelty = LIST_NOVELTY
    ) -> dict[str, Any]:
        """Top-n for a profile from its stored ratings (fold-in; popularity while it has none)."""
        if not await run_in_threadpool(store.has_profile, profile_id):
            raise UnknownIdError(f"unknown profile {profile_id!r}")
        stored = await run_in_threadpool(store.get_ratings, profile_id)
        s = current()
        return _fast_json(for_new_user(s, profile_ratings(s, stored), n, novelty))

    # ------------------------------------------------------------------ the OpenAPI document
    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document, with the served run's rating scale as the rating fields' range
        (rebuilt after a reload switches runs)."""
        s = current()
        if getattr(app.state, "schema_run", None) is not s:
            app.openapi_schema = None
            _with_rating_range(base_openapi(), s.rec.scale.low, s.rec.scale.high)
            app.state.schema_run = s
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]

    # ------------------------------------------------------------------ the web page
    static = resources.files("reelrec.service") / "static"
    with resources.as_file(static) as static_dir:
        app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")
        index_html = Path(static_dir) / "index.html"

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(index_html, media_type="text/html")

    return app
