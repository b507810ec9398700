"""The reelrec web service: a FastAPI application over one trained run and a ratings store.

Build it with :func:`create_app` (``reelrec serve`` does, through
:func:`reelrec.service.workers.build_app`, then runs it with uvicorn). The app is assembled from

* :mod:`reelrec.service.schemas`: request and response models, parameter types, error answers;
* :mod:`reelrec.service.routes`: one router per resource, each route calling a handler of
  :mod:`reelrec.service.handlers` (one plain function per kind of request);
* :mod:`reelrec.service.hotpath`: the known-user fast lane, through the same handler;
* :mod:`reelrec.service.middleware`: :class:`Guard` (body limit, telemetry once per request).

Every input is validated by pydantic or by the id lookups; a bad request is a 4xx whose body is
``{"detail": "<one line>"}``, never a 500. Model work (scoring, fold-in) runs on the event
loop, one request at a time, so the model is never used from two threads; database work runs
in the thread pool.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from reelrec._version import __version__
from reelrec.errors import ReelrecError, UnknownIdError
from reelrec.service.hotpath import HotPath
from reelrec.service.middleware import Guard, Telemetry
from reelrec.service.routes import ROUTERS, page, recommendations
from reelrec.service.schemas import MAX_BODY, errors, with_rating_range
from reelrec.service.state import Served
from reelrec.service.store import RatingStore, StoreError, default_store_url

__all__ = ["MAX_BODY", "create_app"]

DESCRIPTION = (
    "Movie recommendations from a trained reelrec run: search the catalogue, similar "
    "movies, lists for known users, and for new users from a few ratings (folded in "
    "without retraining). Ratings given to a profile are stored durably."
)


def create_app(
    run_dir: str | os.PathLike[str],
    store_url: str | None = None,
    *,
    admin_token: str | None = None,
    max_body: int = MAX_BODY,
    ann: bool = False,
    fast_lane: bool = True,
) -> FastAPI:
    """The service for run directory ``run_dir`` (verified and loaded once, here) with ratings
    kept in ``store_url`` (default: ``ratings.sqlite`` beside the run directory).

    ``admin_token`` enables ``POST /admin/reload`` (switching to another run without a restart)
    for requests carrying it in ``X-Admin-Token``; without one the endpoint is disabled.
    ``ann`` serves known-user lists and similar movies from faiss HNSW indexes (approximate;
    for catalogues far larger than MovieLens') instead of exact full-catalogue scoring.
    ``fast_lane=False`` leaves the known-user fast lane out (every request through FastAPI: the
    reference the fast lane is tested against); production keeps it.
    """
    served = Served.load(run_dir, ann=ann)
    store = RatingStore(store_url or default_store_url(run_dir))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        lifespan=lifespan,
        responses=errors(413, 422),
        title="reelrec",
        version=__version__,
        description=DESCRIPTION,
    )
    app.state.served = served
    app.state.store = store
    app.state.telemetry = Telemetry()
    app.state.admin_token = admin_token
    app.state.ann = ann
    app.state.reload_lock = threading.Lock()
    app.state.after_reload = None  # set by reelrec.service.workers: tell the other workers
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", page.static_files(), name="static")
    app.include_router(page.router)
    _add_error_handlers(app)
    if fast_lane:  # inside Guard: its answers are size-checked and counted like the route's
        app.add_middleware(HotPath, state=app.state, route=_known_user_route())
    app.add_middleware(Guard, telemetry=app.state.telemetry, max_body=max_body)
    _rate_openapi(app)
    return app


def _known_user_route() -> APIRoute:
    """The FastAPI route of the known-user list (the fast lane names it for telemetry)."""
    for route in recommendations.router.routes:
        if isinstance(route, APIRoute) and route.path == recommendations.KNOWN_USER_PATH:
            return route
    raise LookupError(recommendations.KNOWN_USER_PATH)  # pragma: no cover - the router defines it


# ---------------------------------------------------------------------- errors
_NOT_LOCATIONS = ("body", "query", "path", "header")


def _is_union_tag(part: Any) -> bool:
    """A union member's label in a pydantic error location (``int``, ``constrained-str``,
    ``function-after[...]``), not a field name."""
    text = str(part)
    return isinstance(part, str) and (
        "[" in text or "`" in text or text in ("int", "str", "float", "constrained-int", "constrained-str")
    )


def _first_error(exc: RequestValidationError) -> str:
    """The first validation error as one line: ``field.path: message``."""
    err = exc.errors()[0]
    if err.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    loc = ".".join(str(x) for x in err.get("loc", ()) if x not in _NOT_LOCATIONS and not _is_union_tag(x))
    msg = str(err.get("msg", "invalid input"))
    return f"{loc}: {msg}" if loc else msg


async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _first_error(exc)}, status_code=422)


def _one_line(status: int) -> Any:
    async def handler(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status)

    return handler


def _add_error_handlers(app: FastAPI) -> None:
    """Every error a one-line ``{"detail": ...}``: the first validation error 422; of the user
    errors the most specific class wins: unknown ids 404, store trouble 503, any other 422."""
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    for error, status in ((UnknownIdError, 404), (StoreError, 503), (ReelrecError, 422)):
        app.add_exception_handler(error, _one_line(status))


# ---------------------------------------------------------------------- the OpenAPI document
def _rate_openapi(app: FastAPI) -> None:
    """Make ``app.openapi`` FastAPI's document with the served run's rating scale as the rating
    fields' range (rebuilt after a reload switches runs)."""
    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        s = app.state.served
        if getattr(app.state, "schema_run", None) is not s:
            app.openapi_schema = None
            with_rating_range(base_openapi(), s.rec.scale.low, s.rec.scale.high)
            app.state.schema_run = s
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
