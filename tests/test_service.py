"""The REST API: every endpoint, every class of bad input, fold-in quality, reload, retrain."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import small_dataset
from reelrec._defaults import LIST_NOVELTY
from reelrec.data.dataset import Dataset
from reelrec.recommender import Recommender
from reelrec.service.app import create_app
from reelrec.service.store import RatingStore, default_store_url, sqlite_url
from reelrec.training import TrainConfig

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def small_mod():
    return small_dataset()


@pytest.fixture(scope="module")
def run_dir(small_mod, tmp_path_factory) -> str:
    rec = Recommender.train(
        "mf",
        small_mod,
        train_config=TrainConfig(epochs=5, batch_size=256),
        meta={"dataset": {"name": "small"}},
    )
    path = tmp_path_factory.mktemp("runs") / "mf"
    rec.save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def other_run(small_mod, tmp_path_factory) -> str:
    rec = Recommender.train("bias", small_mod, meta={"dataset": {"name": "small"}})
    path = tmp_path_factory.mktemp("runs") / "bias"
    rec.save(str(path))
    return str(path)


@pytest.fixture
def client(run_dir, tmp_path) -> TestClient:
    app = create_app(run_dir, sqlite_url(tmp_path / "ratings.sqlite"), admin_token=TOKEN)
    with TestClient(app) as c:
        yield c


def test_health_and_docs_list_every_endpoint(client, run_dir) -> None:
    h = client.get("/health").json()
    assert h["model"] == "mf"
    assert h["dataset"] == "small"
    assert h["schema_version"] == 1
    assert h["n_items"] == 30
    assert h["rating_scale"] == {"low": 1.0, "high": 5.0, "step": 1.0}
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {
        "/health",
        "/metrics",
        "/movies",
        "/genres",
        "/movies/{movie_id}",
        "/movies/{movie_id}/similar",
        "/users",
        "/users/{user_id}/recommendations",
        "/users/{user_id}/ratings",
        "/recommendations",
        "/predict",
        "/profiles",
        "/profiles/{profile_id}",
        "/profiles/{profile_id}/ratings/{movie_id}",
        "/profiles/{profile_id}/recommendations",
        "/admin/reload",
    } <= paths
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]


def test_movie_search_lookup_and_similar(client) -> None:
    r = client.get("/movies", params={"query": "MOVIE 1", "limit": 5}).json()
    assert r["total"] == 11  # Movie 1, Movie 10..19
    assert all("movie 1" in m["title"].lower() for m in r["movies"])
    counts = [m["n_ratings"] for m in r["movies"]]
    assert counts == sorted(counts, reverse=True)  # most-rated first
    drama = client.get("/movies", params={"genre": "Drama", "limit": 100}).json()
    assert drama["total"] == 15
    assert all("Drama" in m["genres"] for m in drama["movies"])
    page2 = client.get("/movies", params={"genre": "Drama", "limit": 5, "offset": 5}).json()
    assert [m["movie_id"] for m in page2["movies"]] == [m["movie_id"] for m in drama["movies"][5:10]]
    assert client.get("/genres").json() == ["Action", "Comedy", "Drama"]
    m = client.get("/movies/m3").json()
    assert m == {
        "movie_id": "m3",
        "title": "Movie 3",
        "year": 1993,
        "genres": ["Drama", "Comedy"],
        "n_ratings": m["n_ratings"],
    }
    sim = client.get("/movies/m3/similar", params={"n": 4}).json()
    assert len(sim) == 4
    assert "m3" not in [s["movie_id"] for s in sim]
    scores = [s["score"] for s in sim]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in scores)


def test_known_user_recommendations_exclude_rated_and_carry_reasons(client, small) -> None:
    user = int(small.users.ids[0])
    r = client.get(f"/users/{user}/recommendations", params={"n": 5}).json()
    rated = {x["movie_id"] for x in client.get(f"/users/{user}/ratings", params={"limit": 1000}).json()}
    assert r["personalised"]
    assert len(r["items"]) == 5
    ids = [x["movie_id"] for x in r["items"]]
    assert not set(ids) & rated
    rec = Recommender.load(client.app.state.served.run_dir)
    assert ids == [x.item_id for x in rec.recommend(user, n=5, novelty=LIST_NOVELTY)]
    plain = client.get(f"/users/{user}/recommendations", params={"n": 5, "novelty": 0}).json()["items"]
    assert [x["movie_id"] for x in plain] == [x.item_id for x in rec.recommend(user, n=5, novelty=0)]
    for item in r["items"]:
        assert item["because"] in rated
        assert item["reason"].startswith("because you rated Movie ")
    with_rated = client.get(
        f"/users/{user}/recommendations", params={"n": 30, "exclude_rated": "false"}
    ).json()
    assert rated & {x["movie_id"] for x in with_rated["items"]}
    ratings = client.get(f"/users/{user}/ratings", params={"limit": 3}).json()
    values = [x["rating"] for x in ratings]
    assert values == sorted(values, reverse=True)
    assert all(1 <= v <= 5 for v in values)
    users = client.get("/users", params={"limit": 3}).json()
    assert len(users) == 3
    assert users[0]["n_ratings"] >= users[-1]["n_ratings"]


def test_new_user_recommendations_and_popularity_fallback(client, small) -> None:
    r = client.post("/recommendations", json={"ratings": {"m1": 5, "m2": 1, "m4": 4}, "n": 5}).json()
    assert r["personalised"]
    assert len(r["items"]) == 5
    assert not {"m1", "m2", "m4"} & {x["movie_id"] for x in r["items"]}
    assert all(x["because"] in {"m1", "m4"} for x in r["items"])  # liked ones only, not the 1★
    empty = client.post("/recommendations", json={"ratings": {}, "n": 3}).json()
    assert not empty["personalised"]
    order = small.items.ids[np.argsort(-small.item_counts(), kind="stable")[:3]].tolist()
    assert [x["movie_id"] for x in empty["items"]] == order
    assert client.post("/recommendations", json={}).json()["items"]  # n defaults to 10


def test_predict_matches_the_library(client, small) -> None:
    pairs = [{"user": int(small.users.ids[k]), "movie": f"m{k}"} for k in range(5)]
    r = client.post("/predict", json={"pairs": pairs}).json()
    rec = Recommender.load(client.app.state.served.run_dir)
    expected = rec.predict([p["user"] for p in pairs], [p["movie"] for p in pairs])
    np.testing.assert_allclose([p["rating"] for p in r["predictions"]], expected, atol=1e-4)


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "message"),
    [
        ("get", "/movies/nope", None, 404, "unknown movie id 'nope'"),
        ("get", "/movies/nope/similar", None, 404, "unknown movie id"),
        ("get", "/movies/m1/similar?n=0", None, 422, "n: Input should be greater than or equal to 1"),
        ("get", "/movies/m1/similar?n=101", None, 422, "less than or equal to 100"),
        ("get", "/movies/m1/similar?n=abc", None, 422, "n: Input should be a valid integer"),
        ("get", "/movies?limit=0", None, 422, "limit"),
        ("get", "/movies?genre=Western", None, 404, "unknown genre 'Western'"),
        ("get", "/users/999999/recommendations", None, 404, "unknown user id '999999'"),
        ("get", "/users/100/recommendations?n=500", None, 422, "n:"),
        ("get", "/users/abc/ratings", None, 404, "unknown user id"),
        ("post", "/recommendations", {"ratings": {"m1": 6}}, 422, "outside the rating scale 1..5"),
        ("post", "/recommendations", {"ratings": {"m1": 0.5}}, 422, "outside the rating scale"),
        ("post", "/recommendations", {"ratings": {"zz": 4}}, 404, "unknown movie id 'zz'"),
        ("post", "/recommendations", {"ratings": {"m1": "x"}}, 422, "valid number"),
        ("post", "/recommendations", {"ratings": [1, 2]}, 422, "ratings"),
        ("post", "/recommendations", {"ratings": {"m1": 4}, "n": 0}, 422, "n:"),
        ("post", "/recommendations", {"ratings": {"m1": 4}, "extra": 1}, 422, "extra"),
        ("post", "/predict", {"pairs": []}, 422, "pairs"),
        ("post", "/predict", {"pairs": [{"user": 999999, "movie": "m1"}]}, 404, "unknown user id"),
        ("post", "/predict", {"pairs": [{"user": 100, "movie": "nope"}]}, 404, "unknown movie id"),
        ("get", "/profiles/bad%20id", None, 422, "profile_id"),
        ("get", "/profiles/unknownprofile", None, 404, "unknown profile"),
        ("get", "/profiles/unknownprofile/recommendations", None, 404, "unknown profile"),
        ("delete", "/profiles/unknownprofile/ratings/m1", None, 404, "has no rating"),
        ("post", "/admin/reload", {}, 403, "X-Admin-Token"),
    ],
)
def test_bad_input_is_a_clear_4xx(client, method, url, body, status, message) -> None:
    r = client.request(method.upper(), url, json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]


def test_bodies_malformed_and_oversized(client) -> None:
    r = client.post("/recommendations", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"] == "the request body is not valid JSON"
    big = b'{"ratings": {' + b",".join(b'"m1": 4' for _ in range(200_000)) + b"}}"
    r = client.post("/recommendations", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "larger than" in r.json()["detail"]
    too_many = {"pairs": [{"user": 100, "movie": "m1"}] * 10_001}
    r = client.post("/predict", json=too_many)
    assert r.status_code == 422
    assert "pairs" in r.json()["detail"]


def test_no_input_gives_a_500(client) -> None:
    """A sweep of odd inputs over every route: never a server error."""
    odd = ["", "%00", "..%2F..%2Fetc%2Fpasswd", "-1", "1e309", "m1", "100", "💥", "a" * 300]
    for value in odd:
        for url in (
            f"/movies/{value}",
            f"/movies/{value}/similar",
            f"/users/{value}/recommendations",
            f"/users/{value}/ratings",
            f"/profiles/{value}",
            f"/movies?query={value}",
            f"/movies?genre={value}",
        ):
            assert client.get(url).status_code < 500, url
        for body in (
            {"ratings": {value: 4}},
            {"ratings": {"m1": value}},
            {"pairs": [{"user": value, "movie": value}]},
        ):
            for url in ("/recommendations", "/predict"):
                assert client.post(url, json=body).status_code < 500, (url, body)
    assert client.get("/metrics").json()["status"].get("5xx", 0) == 0


def test_profiles_store_ratings_and_drive_recommendations(client, run_dir, tmp_path) -> None:
    pid = client.post("/profiles").json()["id"]
    assert client.get(f"/profiles/{pid}").json() == {"id": pid, "ratings": []}
    before = client.get(f"/profiles/{pid}/recommendations", params={"n": 3}).json()
    assert not before["personalised"]
    for movie, value in (("m1", 5), ("m4", 4), ("m7", 2)):
        r = client.put(f"/profiles/{pid}/ratings/{movie}", json={"rating": value})
        assert r.status_code == 200
    client.put(f"/profiles/{pid}/ratings/m7", json={"rating": 3})  # changing a rating replaces it
    got = {x["movie_id"]: x["rating"] for x in client.get(f"/profiles/{pid}").json()["ratings"]}
    assert got == {"m1": 5.0, "m4": 4.0, "m7": 3.0}
    recs = client.get(f"/profiles/{pid}/recommendations", params={"n": 5}).json()
    assert recs["personalised"]
    assert not {"m1", "m4", "m7"} & {x["movie_id"] for x in recs["items"]}
    same = client.post("/recommendations", json={"ratings": got, "n": 5}).json()
    assert [x["movie_id"] for x in recs["items"]] == [x["movie_id"] for x in same["items"]]
    assert client.delete(f"/profiles/{pid}/ratings/m7").status_code == 200
    assert "m7" not in {x["movie_id"] for x in client.get(f"/profiles/{pid}").json()["ratings"]}
    bad = client.put(f"/profiles/{pid}/ratings/m1", json={"rating": 7})
    assert bad.status_code == 422
    assert "outside the rating scale" in bad.json()["detail"]
    assert client.put(f"/profiles/{pid}/ratings/zz", json={"rating": 4}).status_code == 404
    assert client.put(f"/profiles/{pid}/ratings/m1", json={"stars": 4}).status_code == 422
    # the ratings live in the database, readable by a fresh connection
    store = RatingStore(sqlite_url(tmp_path / "ratings.sqlite"))
    assert store.get_ratings(pid) == {"m1": 5.0, "m4": 4.0}
    store.close()


def test_metrics_count_requests(client) -> None:
    for _ in range(3):
        client.get("/movies/m1")
    client.get("/movies/zz")
    m = client.get("/metrics").json()
    route = m["routes"]["GET /movies/{movie_id}"]
    assert route["requests"] == 4
    assert route["latency_ms"]["p99"] >= route["latency_ms"]["p50"] > 0
    assert m["status"]["4xx"] >= 1
    assert m["store"]["ratings"] == 0


def test_reload_switches_runs_and_needs_the_token(client, other_run, tmp_path) -> None:
    assert (
        client.post("/admin/reload", json={"run": other_run}, headers={"X-Admin-Token": "wrong"}).status_code
        == 403
    )
    r = client.post(
        "/admin/reload", json={"run": str(tmp_path / "missing")}, headers={"X-Admin-Token": TOKEN}
    )
    assert r.status_code == 422
    assert "not a run directory" in r.json()["detail"]
    assert client.get("/health").json()["model"] == "mf"  # a failed reload keeps the old run
    r = client.post("/admin/reload", json={"run": other_run}, headers={"X-Admin-Token": TOKEN})
    assert r.status_code == 200
    assert r.json()["model"] == "bias"
    assert client.get("/health").json()["model"] == "bias"
    r = client.get("/movies/m1/similar")  # the bias model has no embeddings
    assert r.status_code == 422
    assert "no movie embeddings" in r.json()["detail"]
    assert client.post("/recommendations", json={"ratings": {"m1": 5}}).json()["personalised"]


def test_reload_disabled_without_a_token(run_dir, tmp_path) -> None:
    with TestClient(create_app(run_dir, sqlite_url(tmp_path / "r.sqlite"))) as c:
        r = c.post("/admin/reload", json={}, headers={"X-Admin-Token": "x"})
        assert r.status_code == 403
        assert "disabled" in r.json()["detail"]


def test_default_store_sits_beside_the_run(run_dir) -> None:
    assert default_store_url(run_dir).endswith("/ratings.sqlite")
    assert default_store_url(run_dir).startswith("sqlite:///")


def test_store_refuses_memory_and_bad_urls(tmp_path) -> None:
    from reelrec.service.store import StoreError

    with pytest.raises(StoreError, match="in-memory"):
        RatingStore("sqlite://")
    with pytest.raises(StoreError, match="not a database URL"):
        RatingStore("not a url")
    with pytest.raises(StoreError, match="no database driver"):
        RatingStore("nosuchdb://user@host/db")
    store = RatingStore(sqlite_url(tmp_path / "s.sqlite"))
    with pytest.raises(StoreError, match="profile id"):
        store.set_rating("bad id!", "m1", 4)


def test_fold_in_quality_new_user_overlaps_known_user(planted, tmp_path) -> None:
    """A new user who rates a known user's training movies gets recommendations that overlap
    that user's own list."""
    ds, _ = planted
    cfg = TrainConfig(epochs=40, batch_size=1024, learning_rate=0.01, patience=0)
    rec = Recommender.train("mf", ds, model_params={"embedding_size": 8, "reg": 0.01}, train_config=cfg)
    rec.save(str(tmp_path / "run"))
    overlaps = []
    with TestClient(create_app(str(tmp_path / "run"), sqlite_url(tmp_path / "r.sqlite"))) as c:
        for u in range(0, 50, 5):
            uid = int(ds.users.ids[u])
            rated, ratings = rec.user_ratings(u)
            given = {str(int(ds.items.ids[i])): float(r) for i, r in zip(rated, ratings, strict=True)}
            new = c.post("/recommendations", json={"ratings": given, "n": 10}).json()["items"]
            known = c.get(f"/users/{uid}/recommendations", params={"n": 10}).json()["items"]
            overlaps.append(len({x["movie_id"] for x in new} & {x["movie_id"] for x in known}) / 10)
    assert np.mean(overlaps) >= 0.8


def test_ann_retrieval_matches_exact_serving(planted, tmp_path) -> None:
    """faiss HNSW lists (--ann) agree with exact full-catalogue scoring and never repeat a seen
    movie; the scores shown are the model's exact scores of the retrieved movies."""
    pytest.importorskip("faiss", reason="--ann needs faiss-cpu")
    ds, _ = planted
    cfg = TrainConfig(epochs=10, batch_size=1024, learning_rate=0.01, patience=0)
    rec = Recommender.train("mf", ds, model_params={"embedding_size": 8}, train_config=cfg)
    rec.save(str(tmp_path / "run"))
    store = sqlite_url(tmp_path / "r.sqlite")
    overlap_users, overlap_similar = [], []
    with (
        TestClient(create_app(str(tmp_path / "run"), store)) as exact,
        TestClient(create_app(str(tmp_path / "run"), store, ann=True)) as ann,
    ):
        for u in range(0, 60, 3):
            uid = int(ds.users.ids[u])
            knob = {"novelty": [0.0, LIST_NOVELTY, 0.3][u % 3]}  # any knob value, one index
            a = ann.get(f"/users/{uid}/recommendations", params=knob).json()["items"]
            e = exact.get(f"/users/{uid}/recommendations", params=knob).json()["items"]
            seen = set(ds.items.ids[rec.seen_items(u)].tolist())
            assert not seen & {x["movie_id"] for x in a}
            overlap_users.append(len({x["movie_id"] for x in a} & {x["movie_id"] for x in e}) / 10)
            if knob["novelty"] == 0:
                scores = [x["score"] for x in a]
                assert scores == sorted(scores, reverse=True)
            movie = int(ds.items.ids[u])
            sa = ann.get(f"/movies/{movie}/similar").json()
            se = exact.get(f"/movies/{movie}/similar").json()
            assert movie not in {x["movie_id"] for x in sa}
            overlap_similar.append(len({x["movie_id"] for x in sa} & {x["movie_id"] for x in se}) / 10)
    assert np.mean(overlap_users) >= 0.9
    assert np.mean(overlap_similar) >= 0.9


def test_sequence_model_reads_a_profile_in_the_order_it_was_rated(tmp_path) -> None:
    """seqlinear: a profile's (and a POSTed dict's) ratings count in the order they were made."""
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for u in range(80):  # users walk the cycle m0 -> m1 -> ... -> m11 -> m0
        start = int(rng.integers(0, 12))
        rows += [(u, f"m{(start + s) % 12}", 4.0, s) for s in range(int(rng.integers(3, 8)))]
    ds = Dataset.from_frame(pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]), name="cycle")
    rec = Recommender.train("seqlinear", ds, model_params={"alpha": 1.0, "reg": 1.0})
    rec.save(str(tmp_path / "seq"))
    app = create_app(str(tmp_path / "seq"), sqlite_url(tmp_path / "ratings.sqlite"))
    with TestClient(app) as c:
        pid = c.post("/profiles").json()["id"]
        params = {"n": 1, "novelty": 0}
        for movie in ("m3", "m8"):
            assert c.put(f"/profiles/{pid}/ratings/{movie}", json={"rating": 4}).status_code == 200
        assert c.get(f"/profiles/{pid}/recommendations", params=params).json()["items"][0]["movie_id"] == "m9"
        c.put(f"/profiles/{pid}/ratings/m3", json={"rating": 4})  # re-rating m3 makes it the latest
        assert c.get(f"/profiles/{pid}/recommendations", params=params).json()["items"][0]["movie_id"] == "m4"
        for first, last, expected in (("m3", "m8", "m9"), ("m8", "m3", "m4")):
            body = {"ratings": {first: 4, last: 4}, "n": 1, "novelty": 0}
            assert c.post("/recommendations", json=body).json()["items"][0]["movie_id"] == expected


def test_serve_and_retrain_refuse_an_unrelated_database_beside_the_run(run_dir, tmp_path, capsys) -> None:
    """Issue 23: ``reelrec serve`` added its tables to an unrelated ``ratings.sqlite`` beside the
    run and switched it to WAL. At the default place a database without reelrec's marker is
    refused in one line and left as it was; named with ``--store`` it is the user's choice."""
    import shutil
    import socket
    import sqlite3

    from reelrec.cli import main
    from reelrec.service.store import StoreError

    run = tmp_path / "runs" / "mf"
    shutil.copytree(run_dir, run)
    theirs = run.parent / "ratings.sqlite"
    con = sqlite3.connect(theirs)
    con.execute("CREATE TABLE reviews (user TEXT, movie TEXT, stars INTEGER)")
    con.execute("INSERT INTO reviews VALUES ('ann', 'Heat', 5)")
    con.commit()
    con.close()
    before = theirs.read_bytes()
    with pytest.raises(StoreError, match="not a reelrec ratings store"):
        create_app(run)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for workers in ("1", "2"):
        assert main(["serve", str(run), "--port", str(port), "--workers", workers]) != 0
        err = capsys.readouterr().err
        assert "not a reelrec ratings store" in err
        assert err.strip().count("\n") == 0, err
    assert main(["retrain", str(run), "--out", str(tmp_path / "again")]) != 0  # leaves the file too
    capsys.readouterr()
    assert theirs.read_bytes() == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["mf", "ratings.sqlite"]
    with TestClient(create_app(run, sqlite_url(theirs))) as c:  # named: reelrec's tables added
        pid = c.post("/profiles").json()["id"]
        assert c.put(f"/profiles/{pid}/ratings/m1", json={"rating": 4}).status_code == 200
    con = sqlite3.connect(theirs)
    assert con.execute("SELECT user, movie, stars FROM reviews").fetchall() == [("ann", "Heat", 5)]
    con.close()
