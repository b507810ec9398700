"""A fast lane for the service's hottest request: a known user's list.

``GET /users/{id}/recommendations`` is what a site asks for on every page view. Through FastAPI
the routing, query validation and dependency resolution of a 10-item list cost more CPU than
its model work (a cProfile of the server). :class:`HotPath` is a pure-ASGI middleware that answers the
plain, valid form of that request itself, with the same body the FastAPI route builds
(:meth:`reelrec.service.state.Served.known_user_list`), and passes everything else through
untouched: any other route or method, a query with any other parameter, a repeated one, an
encoded character or a value outside the canonical valid forms (``n`` 1..100 in digits,
``exclude_rated`` ``true``/``false``, ``novelty`` a plain decimal in -5..5), an unknown user,
a request with a body. So every error answer, and every odd-but-valid spelling, still comes
from FastAPI's validation; the fast lane only ever answers 200 with the route's own body. Its
requests are counted in ``/metrics`` under the route's name like any other.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from reelrec._defaults import LIST_NOVELTY

ROUTE = "GET /users/{user_id}/recommendations"
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

    ``service`` is the FastAPI app whose ``state`` holds the served run and the telemetry."""

    def __init__(self, app: ASGIApp, service: Any) -> None:
        self.app = app
        self.state = service.state

    def _answer(self, scope: Scope) -> bytes | None:
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
        body = served.known_user_list(user, *params)
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        body = self._answer(scope)
        if body is None:
            await self.app(scope, receive, send)
            return
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.state.telemetry.record(ROUTE, 200, time.perf_counter() - start)
