"""uvicorn's HTTP protocols with the service's error body on the answers uvicorn gives itself.

A request the HTTP parser cannot read (a malformed request line or header, or one longer than
the parser takes: a 100,000-character URL, say) never reaches the app: uvicorn answers it with a
plain-text ``400 Invalid HTTP request received.``. The subclasses here answer the same status with
the documented JSON body, ``{"detail": "<one line>"}``, so every error of the service is JSON.
:func:`http_protocol` picks the parser as uvicorn's ``http="auto"`` does (httptools where it is
installed, else h11); :func:`reelrec.service.workers.serve` and the workers pass
:func:`server_options` to uvicorn.
"""

from __future__ import annotations

import json
from typing import Any

#: the body of an answer to a request the HTTP parser could not read
BAD_REQUEST_DETAIL = (
    "invalid HTTP request: the request line or a header is malformed or longer than the server reads"
)


def error_body(detail: str) -> bytes:
    """The service's error body for ``detail`` (as the app's error answers write it)."""
    return json.dumps({"detail": detail}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _h11_protocol() -> type:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class JsonH11Protocol(H11Protocol):
        """h11 with a JSON body on the parser's 400."""

        def send_400_response(self, msg: str) -> None:
            body = error_body(BAD_REQUEST_DETAIL)
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"connection", b"close"),
            ]
            event = h11.Response(status_code=400, headers=headers, reason=b"Bad Request")
            self.transport.write(self.conn.send(event))
            self.transport.write(self.conn.send(event=h11.Data(data=body)))
            self.transport.write(self.conn.send(event=h11.EndOfMessage()))
            self.transport.close()

    return JsonH11Protocol


def _httptools_protocol() -> type:
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    class JsonHttpToolsProtocol(HttpToolsProtocol):
        """httptools with a JSON body on the parser's 400."""

        def send_400_response(self, msg: str) -> None:
            body = error_body(BAD_REQUEST_DETAIL)
            content = [STATUS_LINE[400]]
            for name, value in self.server_state.default_headers:
                content.extend([name, b": ", value, b"\r\n"])
            content.extend(
                [
                    b"content-type: application/json\r\n",
                    b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                    b"connection: close\r\n",
                    b"\r\n",
                    body,
                ]
            )
            self.transport.write(b"".join(content))
            self.transport.close()

    return JsonHttpToolsProtocol


def http_protocol(kind: str = "auto") -> Any:
    """The protocol class for uvicorn's ``http`` option: ``"h11"``, ``"httptools"``, or
    ``"auto"`` (httptools when installed, else h11), each answering unreadable requests in JSON."""
    if kind in ("auto", "httptools"):
        try:
            return _httptools_protocol()
        except ImportError:
            if kind == "httptools":
                raise
    return _h11_protocol()


def server_options(kind: str = "auto") -> dict[str, Any]:
    """uvicorn options every server of the service runs with: the JSON-answering protocol, and
    no websocket handling (the service has no websocket route; an ``Upgrade: websocket`` request
    is plain HTTP, not the websockets library's plain-text 400)."""
    return {"http": http_protocol(kind), "ws": "none"}
