"""A fast lane for the service's hottest request: a known user's list.

``GET /users/{id}/recommendations`` is what a site asks for on every page view. Through FastAPI
the routing, query validation and dependency resolution of a 10-item list cost more CPU than
its model work (a cProfile of the server). :class:`HotPath` is a pure-ASGI middleware, part of
every app :func:`reelrec.service.app.create_app` builds, that answers the plain, valid form of
that request itself, through the route's own handler and serialiser
(:func:`reelrec.service.handlers.user_recommendations`, :func:`~reelrec.service.handlers.json_response`),
so the bytes are the route's. It passes everything else through untouched: any other route or
method, a query with any other parameter, a repeated one, an encoded character or a value
outside the canonical valid forms (``n`` 1..100 in digits, ``exclude_rated`` ``true``/``false``,
``novelty`` a plain decimal in -5..5), a user id that is not the exact spelling of a trained user,
a request with a body. So every error answer, and every odd-but-valid spelling, still comes from
FastAPI's validation; the fast lane only ever answers 200 with the route's own body.

It sits inside :class:`reelrec.service.middleware.Guard`, and names the route it answered for in
``scope["route"]``, so its requests are counted once in ``/metrics`` under the route's name.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from reelrec._defaults import LIST_NOVELTY
from reelrec.service.handlers import json_response, user_recommendations

_PATH = re.compile(r"/users/([^/]{1,255})/recommendations")
_N = re.compile(rb"[1-9][0-9]?|100")
_NOVELTY = re.compile(rb"-?[0-9](\.[0-9]{1,6})?")
_BOOL = {b"true": True, b"false": False}


def parse_query(query: bytes) -> tuple[int, bool, float] | None:
    """``(n, exclude_rated, novelty)`` of a canonical valid query string, else ``None``."""
    n, exclude, novelty = 10, True, LIST_NOVELTY
    if not query:
        return n, exclude, novelty
    if b"%" in query or b"+" in query:
        return None
    seen = set()
    for part in query.split(b"&"):
        key, eq, value = part.partition(b"=")
        if not eq or key in seen:
            return None
        seen.add(key)
        if key == b"n" and _N.fullmatch(value):
            n = int(value)
        elif key == b"exclude_rated" and value in _BOOL:
            exclude = _BOOL[value]
        elif key == b"novelty" and _NOVELTY.fullmatch(value) and -5 <= float(value) <= 5:
            novelty = float(value)
        else:
            return None
    return n, exclude, novelty


class HotPath:
    """Pure-ASGI middleware: known-user lists answered without the framework (see the module).

    ``state`` is the app's state (its ``served`` run is read per request, so a reload is seen);
    ``route`` is the FastAPI route of the same request, named in the scope of the answers given
    here (for telemetry)."""

    def __init__(self, app: ASGIApp, state: Any, route: Any) -> None:
        self.app = app
        self.state = state
        self.route = route

    def _params(self, scope: Scope) -> tuple[Any, int, tuple[int, bool, float]] | None:
        """``(served run, user index, query)`` of a request this lane answers, else ``None``."""
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            return None
        match = _PATH.fullmatch(scope["path"])
        if match is None:
            return None
        for name, value in scope.get("headers") or ():
            if name in (b"content-length", b"transfer-encoding") and value != b"0":
                return None
        params = parse_query(scope.get("query_string") or b"")
        if params is None:
            return None
        served = self.state.served
        user = served.user_lookup.get(match.group(1))
        if user is None or served.rec.user_counts[user] == 0:
            return None  # FastAPI answers the 404
        return served, user, params

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._params(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        served, user, params = found
        scope["route"] = self.route
        await json_response(user_recommendations(served, user, *params))(scope, receive, send)
