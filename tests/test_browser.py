"""End-to-end test of the web page in headless Chromium, driven by Selenium.

A small MF run is trained on synthetic data with titles, the real app is served by uvicorn on a
free loopback port (in a thread of this process) with a temporary SQLite store, and the page is
used the way a person would: search, rate, read the recommendations and their reasons, open a
movie's similar list, look at a known user. A screenshot goes to ``test-artifacts/browser.png``.

Needs Debian's ``chromium`` and ``chromium-driver`` (/usr/bin/chromium, /usr/bin/chromedriver);
Selenium Manager is never used, so nothing is downloaded. Without them the test is skipped, unless
``REELREC_REQUIRE_BROWSER=1`` (set by CI), when it fails instead.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from conftest import skip_or_fail, small_frame
from reelrec.data.dataset import Dataset
from reelrec.recommender import Recommender
from reelrec.training import TrainConfig

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
#: a title that would turn into markup if the page ever used innerHTML with API data
TRICKY_TITLE = '<b>Movie 7</b> & "Co"'
WAIT_S = 10.0


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not (p.is_file() and os.access(p, os.X_OK))]
    if not missing:
        return
    reason = f"{' and '.join(missing)} missing (apt-get install chromium chromium-driver)"
    skip_or_fail(
        reason,
        when="both are installed (CI installs them and requires this test)",
        required_by="REELREC_REQUIRE_BROWSER",
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A 2-epoch MF run on the `small` synthetic ratings, with titles, years and genres."""
    _require_browser()  # before training: a skipped test costs nothing
    info = pd.DataFrame(
        {
            "title": [TRICKY_TITLE if k == 7 else f"Movie {k}" for k in range(30)],
            "year": pd.array([1990 + k for k in range(30)], dtype="Int64"),
            "genres": ["Drama|Comedy" if k % 2 else "Action" for k in range(30)],
        },
        index=pd.Index([f"m{k}" for k in range(30)], name="item"),
    )
    data = Dataset.from_frame(small_frame(), name="small", item_info=info)
    rec = Recommender.train(
        "mf", data, train_config=TrainConfig(epochs=2, batch_size=64), seed=0, device="cpu"
    )
    path = tmp_path_factory.mktemp("browser") / "run"
    rec.save(str(path))
    return path


@pytest.fixture(scope="module")
def server(run_dir: Path) -> Iterator[str]:
    """The real app under uvicorn on 127.0.0.1 (a port the OS picked); yields its base URL."""
    import uvicorn

    from reelrec.service.app import create_app
    from reelrec.service.store import sqlite_url

    app = create_app(run_dir, sqlite_url(run_dir.parent / "ratings.sqlite"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not srv.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(WAIT_S)
        sock.close()


@pytest.fixture
def driver(tmp_path) -> Iterator[Any]:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver path: Selenium Manager (which would download drivers) is never run
    chrome = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    chrome.set_page_load_timeout(WAIT_S)
    try:
        yield chrome
    finally:
        chrome.quit()


# ---------------------------------------------------------------------- helpers
def wait_for(chrome: Any, script: str, what: str) -> Any:
    """Poll a JavaScript expression (evaluated in one go, so never on half-rendered lists)
    until it is truthy; returns its value."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(chrome, WAIT_S, poll_frequency=0.05).until(
            lambda d: d.execute_script(f"return ({script});")
        )
    except TimeoutException:
        status = chrome.execute_script("return document.getElementById('status').textContent")
        raise AssertionError(f"timed out waiting for {what}; status line: {status!r}") from None


def texts(chrome: Any, selector: str) -> list[str]:
    return chrome.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent);", selector
    )


def click(chrome: Any, selector: str) -> None:
    from selenium.webdriver.common.by import By

    chrome.find_element(By.CSS_SELECTOR, selector).click()


def screenshot(chrome: Any, name: str) -> None:
    """The whole page (the window is stretched to its height) into test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / name).unlink(missing_ok=True)
    height = chrome.execute_script("return document.documentElement.scrollHeight")
    chrome.set_window_size(1400, min(max(height, 900), 4000))
    chrome.execute_script("window.scrollTo(0, 0)")
    assert chrome.save_screenshot(str(ARTIFACTS / name))
    chrome.set_window_size(1400, 1100)


def wait_ready(chrome: Any) -> None:
    wait_for(chrome, "document.body.dataset.ready === 'true'", "the page to finish loading")


# ---------------------------------------------------------------------- the test
def test_page_search_rate_recommend_similar_and_users(server: str, driver: Any) -> None:
    started = time.monotonic()
    try:
        use_the_page(server, driver)
    except BaseException:
        screenshot(driver, "browser-failure.png")  # what the page showed when it went wrong
        raise
    assert time.monotonic() - started < 30


def use_the_page(server: str, chrome: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    chrome.get(f"{server}/")
    wait_ready(chrome)
    assert chrome.title.startswith("reelrec")
    assert chrome.find_element(By.CSS_SELECTOR, "a[href='/docs']")
    assert "Model mf" in chrome.find_element(By.ID, "run-info").text

    # a profile was created and kept in a one-year, SameSite=Lax cookie
    cookie = chrome.get_cookie("reelrec_profile")
    assert cookie is not None
    pid = cookie["value"]
    assert cookie.get("sameSite") == "Lax"
    assert cookie["expiry"] - time.time() > 360 * 24 * 3600
    assert httpx.get(f"{server}/profiles/{pid}").json()["ratings"] == []

    # before any rating: the popularity list, labelled as such
    assert chrome.find_element(By.ID, "recommendations").get_attribute("data-personalised") == "false"
    assert "not personalised" in chrome.find_element(By.ID, "recs-kind").text
    assert len(texts(chrome, "#recommendations li.movie")) == 10
    assert texts(chrome, "#genre option") == ["Any genre", "Action", "Comedy", "Drama"]

    # debounced title search, then the genre filter
    chrome.find_element(By.ID, "search").send_keys("movie 1")
    wanted = sorted(f"Movie {k} ({1990 + k})" for k in [1, *range(10, 20)])
    wait_for(
        chrome,
        "[...document.querySelectorAll('#results .title')].map((e) => e.textContent).sort().join('|') === "
        f"{'|'.join(wanted)!r}",
        "the search results for 'movie 1'",
    )
    Select(chrome.find_element(By.ID, "genre")).select_by_visible_text("Action")
    wait_for(chrome, "document.querySelectorAll('#results li.movie').length === 5", "the Action filter")
    assert sorted(texts(chrome, "#results .genres")) == ["Action"] * 5
    Select(chrome.find_element(By.ID, "genre")).select_by_index(0)
    wait_for(chrome, "document.querySelectorAll('#results li.movie').length === 11", "the filter removed")

    # rate three movies (and a fourth, removed again)
    for title, stars in [("Movie 12", 5), ("Movie 14", 4), ("Movie 13", 1), ("Movie 10", 3)]:
        noun = "star" if stars == 1 else "stars"
        click(chrome, f'#results button[aria-label="Rate {title} {stars} {noun}"]')
    wait_for(chrome, "document.querySelectorAll('#my-ratings li.movie').length === 4", "four ratings listed")
    click(chrome, '#my-ratings button[aria-label="Remove your rating for Movie 10"]')
    wait_for(
        chrome,
        "document.querySelectorAll('#my-ratings li.movie').length === 3 && "
        "document.getElementById('recs-kind').textContent.includes('your 3 ratings')",
        "the removed rating to disappear and the list to follow",
    )
    assert texts(chrome, "#my-ratings .title") == ["Movie 12 (2002)", "Movie 14 (2004)", "Movie 13 (2003)"]
    rated = chrome.find_element(By.CSS_SELECTOR, '#results li[data-movie-id="m12"]')
    assert rated.find_element(By.CSS_SELECTOR, ".current").text == "your rating: 5"
    pressed = rated.find_elements(By.CSS_SELECTOR, "button.star[aria-pressed='true']")
    assert [b.get_attribute("data-value") for b in pressed] == ["5"]

    # the recommendations are now personalised, with reasons naming the rated movies
    wait_for(
        chrome,
        "document.getElementById('recommendations').dataset.personalised === 'true' && "
        "document.getElementById('recommendations').getAttribute('aria-busy') === 'false'",
        "personalised recommendations",
    )
    reasons = texts(chrome, "#recommendations .reason")
    assert reasons
    assert all(r.startswith("because you rated Movie 1") for r in reasons), reasons
    assert all(s.startswith("predicted ") for s in texts(chrome, "#recommendations .score"))
    recommended = texts(chrome, "#recommendations .title")
    assert len(recommended) == 10
    assert not {"Movie 12 (2002)", "Movie 14 (2004)", "Movie 13 (2003)"} & set(recommended)

    # the ratings were stored
    stored = httpx.get(f"{server}/profiles/{pid}").json()
    assert {r["movie_id"]: r["rating"] for r in stored["ratings"]} == {"m12": 5.0, "m14": 4.0, "m13": 1.0}

    # a movie's details and similar movies (from the first recommendation)
    first = recommended[0]
    click(chrome, "#recommendations li.movie .title")
    wait_for(
        chrome,
        "document.getElementById('details').open && "
        "document.getElementById('similar').getAttribute('aria-busy') === 'false' && "
        "document.querySelectorAll('#similar li.movie').length === 10",
        "the similar movies",
    )
    assert chrome.find_element(By.ID, "details-title").text == first
    similar = texts(chrome, "#similar .title")
    assert first not in similar
    assert all(s.startswith("similarity ") for s in texts(chrome, "#similar .score"))
    screenshot(chrome, "browser-details.png")
    click(chrome, "#details-close")
    wait_for(chrome, "!document.getElementById('details').open", "the details to close")

    # an existing user's recommendations and top ratings
    top_user = httpx.get(f"{server}/users", params={"limit": 1}).json()[0]["user_id"]
    picker = Select(chrome.find_element(By.ID, "user-picker"))
    assert len(picker.options) == 1 + 40
    picker.select_by_value(str(top_user))
    wait_for(
        chrome,
        f"document.getElementById('user-recs').dataset.user === {str(top_user)!r}",
        "the known user's lists",
    )
    assert len(texts(chrome, "#user-recs li.movie")) == 10
    given = texts(chrome, "#user-ratings .given")
    api_ratings = httpx.get(f"{server}/users/{top_user}/ratings", params={"limit": 10}).json()
    assert given == [f"rated {r['rating']:g}★" for r in api_ratings]
    assert all(r.startswith("because they rated") for r in texts(chrome, "#user-recs .reason"))

    screenshot(chrome, "browser.png")

    # titles are text, never markup
    search = chrome.find_element(By.ID, "search")
    search.clear()
    search.send_keys("<b>")
    wait_for(chrome, "document.querySelectorAll('#results li.movie').length === 1", "the search for '<b>'")
    assert texts(chrome, "#results .title") == [f"{TRICKY_TITLE} (1997)"]
    assert not chrome.find_elements(By.CSS_SELECTOR, "#results b")

    # an API error ({"detail"}) reaches the status line
    chrome.execute_script(
        "const s = document.getElementById('genre'); s.add(new Option('Nope', 'Nope'));"
        "s.value = 'Nope'; s.dispatchEvent(new Event('change'));"
    )
    status = wait_for(
        chrome,
        "document.getElementById('status').dataset.kind === 'error' && "
        "document.getElementById('status').textContent",
        "the error in the status line",
    )
    assert status.startswith("Search failed: unknown genre 'Nope'"), status

    # the cookie brings the same profile back; an unknown one is replaced by a new profile
    chrome.refresh()
    wait_ready(chrome)
    assert chrome.get_cookie("reelrec_profile")["value"] == pid
    assert len(texts(chrome, "#my-ratings li.movie")) == 3
    assert chrome.find_element(By.ID, "recommendations").get_attribute("data-personalised") == "true"
    chrome.add_cookie({"name": "reelrec_profile", "value": "no-such-profile", "path": "/", "sameSite": "Lax"})
    chrome.refresh()
    wait_ready(chrome)
    fresh = chrome.get_cookie("reelrec_profile")["value"]
    assert fresh not in (pid, "no-such-profile")
    assert "not found" in chrome.find_element(By.ID, "status").text
    assert chrome.find_element(By.ID, "recommendations").get_attribute("data-personalised") == "false"
    assert httpx.get(f"{server}/profiles/{fresh}").json()["ratings"] == []

    # no script errors or blocked resources; only the failed requests made on purpose above
    problems = [
        e["message"]
        for e in chrome.get_log("browser")
        if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]
    ]
    assert not problems
