"""Issue 13, case 5: the service under hostile input (token bytes, path limits, chunked bodies,
strict body types, rating messages, 5xx telemetry and the OpenAPI document)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from conftest import small_dataset
from reelrec.data.dataset import Dataset
from reelrec.recommender import Recommender
from reelrec.service.app import MAX_BODY, create_app
from reelrec.service.store import sqlite_url
from reelrec.training import TrainConfig

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> str:
    rec = Recommender.train("mf", small_dataset(), train_config=TrainConfig(epochs=2, batch_size=256))
    path = tmp_path_factory.mktemp("runs") / "mf"
    rec.save(str(path))
    return str(path)


@pytest.fixture
def app(run_dir, tmp_path):
    return create_app(run_dir, sqlite_url(tmp_path / "ratings.sqlite"), admin_token=TOKEN)


@pytest.fixture
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _five_xx(client: TestClient) -> int:
    return client.get("/metrics").json()["status"].get("5xx", 0)


def test_non_ascii_admin_token_is_a_403_not_a_500(client) -> None:
    for raw in ("é".encode(), "s3cret-tokén".encode(), b"\xff\xfe", b"s3cret-token" + b"\xc3\xa9"):
        r = client.post("/admin/reload", json={}, headers=[(b"x-admin-token", raw)])
        assert r.status_code == 403, (raw, r.text)
        assert "X-Admin-Token" in r.json()["detail"]
    assert _five_xx(client) == 0


def test_non_ascii_configured_token_matches_its_utf8_bytes(run_dir, tmp_path) -> None:
    app = create_app(run_dir, sqlite_url(tmp_path / "r.sqlite"), admin_token="clé-secrète")
    with TestClient(app) as c:
        assert (
            c.post("/admin/reload", json={}, headers=[(b"x-admin-token", "clé-secrète".encode())]).status_code
            == 200
        )
        assert (
            c.post("/admin/reload", json={}, headers=[(b"x-admin-token", b"cle-secrete")]).status_code == 403
        )


@pytest.mark.parametrize(
    "run",
    ["a" * 300, "/tmp/" + "b" * 300 + "/run", "x/" * 2100, "bad\x00path", "/etc/passwd", "", "/"],
)
def test_reload_path_limits_are_a_4xx_before_use(client, run) -> None:
    r = client.post("/admin/reload", json={"run": run}, headers={"X-Admin-Token": TOKEN})
    assert 400 <= r.status_code < 500, r.text
    assert "\n" not in r.json()["detail"]
    assert client.get("/health").json()["model"] == "mf"  # the old run keeps serving
    assert _five_xx(client) == 0


def test_oversized_bodies_are_413_declared_or_chunked(client) -> None:
    def chunks():
        for _ in range(2 * 1024):
            yield b"x" * 1024

    for url in ("/recommendations", "/predict", "/profiles/abc/ratings/m1"):
        method = "PUT" if url.startswith("/profiles") else "POST"
        r = client.request(method, url, content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413, (url, r.status_code, r.text)
        assert "larger than" in r.json()["detail"]
    r = client.post(
        "/recommendations", content=b"x" * (MAX_BODY + 1), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413

    def small():
        yield b'{"ratings": {"m1": 4},'
        yield b' "n": 3}'

    r = client.post("/recommendations", content=small(), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text  # a chunked body under the limit is read as usual
    assert len(r.json()["items"]) == 3


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("put", "/profiles/{p}/ratings/m1", {"rating": True}, "rating"),
        ("put", "/profiles/{p}/ratings/m1", {"rating": "4"}, "rating"),
        ("post", "/predict", {"pairs": [{"user": True, "movie": "m1"}]}, "pairs.0.user"),
        ("post", "/predict", {"pairs": [{"user": 100, "movie": False}]}, "pairs.0.movie"),
        ("post", "/predict", {"pairs": [{"user": 100.5, "movie": "m1"}]}, "pairs.0.user"),
        ("post", "/recommendations", {"ratings": {"m1": True}}, "ratings.m1"),
        ("post", "/recommendations", {"ratings": {"m1": 4}, "n": True}, "n"),
    ],
)
def test_request_bodies_are_strictly_typed(client, method, url, body, field) -> None:
    profile = client.post("/profiles").json()["id"]
    r = client.request(method.upper(), url.format(p=profile), json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(f"{field}:")
    assert client.get(f"/profiles/{profile}").json()["ratings"] == []


def test_integral_json_numbers_are_ids(client) -> None:
    a = client.post("/predict", json={"pairs": [{"user": 100, "movie": "m1"}]})
    b = client.post("/predict", json={"pairs": [{"user": 100.0, "movie": "m1"}]})
    assert a.status_code == b.status_code == 200
    assert a.json() == b.json()


def test_out_of_scale_rating_message_shows_the_value_as_given(client) -> None:
    profile = client.post("/profiles").json()["id"]
    r = client.put(f"/profiles/{profile}/ratings/m1", json={"rating": 5.0000001})
    assert r.status_code == 422
    assert r.json()["detail"] == "rating 5.0000001 is outside the rating scale 1..5"
    r = client.post("/recommendations", json={"ratings": {"m1": 0.9999999}})
    assert "rating 0.9999999 is outside" in r.json()["detail"]
    assert client.put(f"/profiles/{profile}/ratings/m1", json={"rating": 5}).status_code == 200


def test_every_server_error_is_counted_in_metrics(client, app) -> None:
    assert _five_xx(client) == 0

    def broken() -> dict:
        raise RuntimeError("boom")

    app.state.served.health = broken
    for _ in range(3):
        assert client.get("/health").status_code == 500
    metrics = client.get("/metrics").json()
    assert metrics["status"]["5xx"] == 3
    assert metrics["routes"]["GET /health"]["requests"] == 3


def test_openapi_documents_errors_and_the_rating_range(client) -> None:
    doc = client.get("/openapi.json").json()
    shapes = doc["components"]["schemas"]
    assert "HTTPValidationError" not in shapes
    assert shapes["ErrorBody"]["properties"]["detail"]["type"] == "string"
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            codes = set(op["responses"])
            assert {"413", "422"} <= codes, (method, path)
            for code in codes - {"200", "201"}:
                ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorBody"), (method, path, code)
            if "{" in path:
                assert "404" in codes, (method, path)
    assert "403" in doc["paths"]["/admin/reload"]["post"]["responses"]
    rating = shapes["RatingBody"]["properties"]["rating"]
    assert (rating["minimum"], rating["maximum"]) == (1.0, 5.0)
    ratings = shapes["NewUserRequest"]["properties"]["ratings"]["additionalProperties"]
    assert (ratings["minimum"], ratings["maximum"]) == (1.0, 5.0)


@pytest.mark.parametrize(
    "spelling",
    [
        "{id}.0",
        "%20{id}",
        "{id}%20",
        "0{id}",
        "+{id}",
        "{id}%00",
        "{id}e0",
        "{id}_0",
        "%EF%BC%91{id}",
        "{id}%0A",
    ],
)
def test_ids_in_paths_must_match_a_catalogue_id_exactly(client, run_dir, spelling) -> None:
    """Issue 23: ``/movies/1e3`` answered movie 1000 and ``/movies/1%00`` movie 1. An id names a
    movie or user only when its text is the catalogue's id exactly; anything else is a 404 with
    the JSON body, never another entry."""
    rec = Recommender.load(run_dir)
    user = int(rec.users.ids[0])
    r = client.get(f"/users/{spelling.format(id=user)}/recommendations")
    assert r.status_code == 404, (spelling, r.text)
    assert r.json()["detail"].startswith("unknown user id")
    assert client.get(f"/users/{spelling.format(id=user)}/ratings").status_code == 404
    r = client.post("/predict", json={"pairs": [{"user": spelling.format(id=user), "movie": "m1"}]})
    assert r.status_code in (404, 422), r.text
    for movie in (spelling.format(id="m1"), spelling.format(id="1")):
        r = client.get(f"/movies/{movie}")
        assert r.status_code == 404, (movie, r.text)
        assert r.json()["detail"].startswith("unknown movie id")
        assert client.get(f"/movies/{movie}/similar").status_code == 404
    profile = client.post("/profiles").json()["id"]
    assert client.put(f"/profiles/{profile}/ratings/m1", json={"rating": 4}).status_code == 200
    r = client.put(f"/profiles/{profile}/ratings/{spelling.format(id='m1')}", json={"rating": 2})
    assert r.status_code == 404, r.text
    assert client.delete(f"/profiles/{profile}/ratings/{spelling.format(id='m1')}").status_code == 404
    assert [x["rating"] for x in client.get(f"/profiles/{profile}").json()["ratings"]] == [4.0]


def test_a_numeric_catalogue_id_is_its_digits_only(tmp_path) -> None:
    """With integer movie ids, ``/movies/1e3`` is not movie 1000 and ``/movies/1%00`` not movie 1;
    a JSON integer in a body is the id itself."""
    frame = pd.DataFrame(
        {
            "user": np.repeat(np.arange(1, 21), 5),
            "item": np.tile([1, 2, 10, 1000, 7], 20),
            "rating": np.tile([1.0, 2.0, 3.0, 4.0, 5.0], 20),
        }
    )
    path = tmp_path / "run"
    Recommender.train("bias", Dataset.from_frame(frame, name="ints")).save(str(path))
    with TestClient(create_app(str(path), sqlite_url(tmp_path / "r.sqlite"))) as c:
        assert c.get("/movies/1000").json()["movie_id"] == 1000
        for odd in ("1e3", "1000.0", "1%00", "01", "%201", "1_000", "%EF%BC%91", "0x3e8", "1%2E0"):
            r = c.get(f"/movies/{odd}")
            assert r.status_code == 404, (odd, r.text)
            assert r.json() == {"detail": r.json()["detail"]}
        r = c.post("/recommendations", json={"ratings": {"1e3": 5}})
        assert r.status_code == 404, r.text
        r = c.post("/recommendations", json={"ratings": {"1000": 5}})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "run",
    ["a" * 255, "é" * 255, "/tmp/" + "b" * 255 + "/run", "x/" * 2000, "missing/run", "\U0001f4a5" * 100],
)
def test_a_reload_path_valid_by_the_schema_is_never_refused_by_validation(client, app, run) -> None:
    """Issue 23: a reload path valid by the OpenAPI schema was a 422 (validation counted bytes per
    component, which the schema did not say). Now the schema states the rule (a pattern) and a
    path it accepts reaches the handler: 403 without the token, and with it a clear 422 from
    loading (nothing there), never a validation error."""
    import re

    schema = app.openapi()["components"]["schemas"]["ReloadRequest"]["properties"]["run"]
    pattern = next(s for s in schema.get("anyOf", [schema]) if s.get("type") == "string")
    assert re.fullmatch(pattern["pattern"], run)
    assert pattern["minLength"] <= len(run) <= pattern["maxLength"]
    r = client.post("/admin/reload", json={"run": run})
    assert r.status_code == 403, r.text
    r = client.post("/admin/reload", json={"run": run}, headers={"X-Admin-Token": "wrong"})
    assert r.status_code == 403, r.text
    r = client.post("/admin/reload", json={"run": run}, headers={"X-Admin-Token": TOKEN})
    assert r.status_code == 422, r.text
    assert not r.json()["detail"].startswith("run: String should match")
    for invalid in (run + "\x00", "c" * 256):  # outside the schema: refused by validation
        assert not re.fullmatch(pattern["pattern"], invalid)
        r = client.post("/admin/reload", json={"run": invalid})
        assert r.status_code == 422, r.text


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/profiles/abc/ratings/m1", {"PUT", "DELETE", "OPTIONS"}),
        ("/profiles/abc", {"GET", "OPTIONS"}),
        ("/users/100/recommendations", {"GET", "OPTIONS"}),
        ("/recommendations", {"POST", "OPTIONS"}),
        ("/admin/reload", {"POST", "OPTIONS"}),
        ("/static/app.js", {"GET", "HEAD", "OPTIONS"}),
    ],
)
def test_options_and_405_list_every_method_of_the_url(client, path, allowed) -> None:
    """Issue 23: OPTIONS on a rating's URL said ``Allow: PUT`` (the first route of the path), though
    DELETE works there too. The Allow list is every route's methods, on OPTIONS (204) and on
    a 405 (with the JSON body)."""
    r = client.options(path)
    assert r.status_code == 204, r.text
    assert set(r.headers["allow"].split(", ")) == allowed
    wrong = next(m for m in ("PATCH", "GET", "POST") if m not in allowed)
    r = client.request(wrong, path)
    assert r.status_code == 405, r.text
    assert set(r.headers["allow"].split(", ")) == allowed
    assert r.json() == {"detail": "Method Not Allowed"}
    assert client.options("/no/such/route").status_code == 404


def test_a_bug_is_a_500_with_the_json_body(run_dir, tmp_path, monkeypatch) -> None:
    """Every error answer carries the documented body, a server error included (Starlette's own
    is plain text)."""
    from reelrec.service import handlers

    app = create_app(run_dir, sqlite_url(tmp_path / "r.sqlite"))
    monkeypatch.setattr(handlers, "movie", lambda *_: 1 / 0)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/movies/m1")
        assert r.status_code == 500
        assert r.json() == {"detail": "internal server error"}


def _serve_in_thread(app, options):
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, **options, log_level="critical", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server, thread, sock.getsockname()[1]


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_a_request_the_http_parser_cannot_read_gets_the_json_body(app, parser) -> None:
    """Issue 23: a 100,000-character URL got uvicorn's plain-text 400 (``Invalid HTTP request
    received.``). The service's protocols answer the parser's errors with the JSON body too."""
    import http.client
    import json
    import socket

    from reelrec.service.protocols import server_options

    if parser == "httptools":
        pytest.importorskip("httptools")
    server, thread, port = _serve_in_thread(app, server_options(parser))
    try:
        requests = [
            b"GET /movies/" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /movies?query=" + b"%41" * 40_000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GARBAGE\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\nConnection: close\r\n\r\n",
            b"GET /movies/nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade, close\r\n\r\n",
        ]
        for raw in requests:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(raw)
                answer = b""
                while chunk := s.recv(65536):
                    answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            status = int(head.split(b" ")[1])
            assert 400 <= status < 500, head
            assert b"content-type: application/json" in head.lower(), head
            assert set(json.loads(body)) == {"detail"}, body
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/health")
        assert conn.getresponse().status == 200  # the server goes on
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_refused_rating_and_the_scale_are_shown_exactly(tmp_path) -> None:
    """Issue 23 (smaller): the refusal of 1000000.01 showed "1000000". The refused value and the
    scale's ends are printed exactly, never rounded to 7 digits or to ``1e+06``."""
    frame = pd.DataFrame(
        {
            "user": np.repeat(np.arange(1, 21), 3),
            "item": np.tile([1, 2, 3], 20),
            "rating": np.tile([1.0, 500000.0, 1000000.0], 20),
        }
    )
    path = tmp_path / "run"
    Recommender.train("bias", Dataset.from_frame(frame, name="wide")).save(str(path))
    with TestClient(create_app(str(path), sqlite_url(tmp_path / "r.sqlite"))) as c:
        pid = c.post("/profiles").json()["id"]
        for given in ("1000000.01", "1000000.5", "0.999999999"):
            body = '{"rating": ' + given + "}"
            r = c.put(
                f"/profiles/{pid}/ratings/1", content=body, headers={"content-type": "application/json"}
            )
            assert r.status_code == 422, r.text
            assert r.json()["detail"] == f"rating {given} is outside the rating scale 1..1000000.0"
        ok = c.put(f"/profiles/{pid}/ratings/1", json={"rating": 1000000})
        assert ok.status_code == 200, ok.text
