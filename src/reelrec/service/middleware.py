"""The service's pure-ASGI middleware: :class:`Guard` (body limit and telemetry, around every
request, the fast lane's included) and the :class:`Telemetry` it records into."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reelrec.service.schemas import MAX_BODY

LATENCY_WINDOW = 4096


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
        """Count one answer of ``route`` with HTTP ``status`` that took ``seconds``."""
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
        """Uptime, totals, status classes and per-route counts with mean/p50/p99 latency (ms)."""
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


class BodyTooLarge(Exception):
    """A streamed body went past the limit."""


class Guard:
    """Pure-ASGI middleware: rejects oversized bodies (413, declared or chunked) and records
    telemetry once for every answer, server errors and the fast lane's answers included, under
    the name of the route that answered (``scope["route"]``)."""

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
            body = await self._read_chunked(receive)
            if body is None:
                status["code"] = 413
                await self._reject(scope, receive, send)
                return
            if body is False:
                return  # the client went away
            inner_receive = _replay(body, receive)
        else:
            inner_receive = self._limited(receive)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, inner_receive, send_wrapper)
        except BodyTooLarge:  # more than the declared length arrived
            status["code"] = 413
            await self._reject(scope, receive, send)

    async def _read_chunked(self, receive: Receive) -> bytes | bool | None:
        """The whole body of a request without a declared length; ``None`` past the limit,
        ``False`` when the client went away."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that raises :class:`BodyTooLarge` once more than the limit arrived."""
        seen = {"bytes": 0}

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > self.max_body:
                    raise BodyTooLarge
            return message

        return limited_receive


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that hands out ``body`` once, then defers to the real one."""
    replayed = {"done": False}

    async def replay() -> Message:
        if not replayed["done"]:
            replayed["done"] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
