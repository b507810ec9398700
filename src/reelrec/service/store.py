"""The ratings store: what people rate through the API or the web page, kept in a real database.

SQLite by default (one file, WAL journal, ``synchronous=FULL``: a write the API acknowledged is
on disk before the answer leaves, so it survives a killed process or a crash), PostgreSQL (or
any SQLAlchemy URL) through the same interface. Profiles are opaque ids chosen by the service
(the web page keeps one in a cookie), never MovieLens user ids. Movie ids are stored as text
(``str`` of the raw id) and mapped back through the run's vocabulary.

Tables::

    profiles(id TEXT PRIMARY KEY, created_at FLOAT)
    ratings(profile_id TEXT, item_id TEXT, rating FLOAT, updated_at FLOAT,
            PRIMARY KEY (profile_id, item_id))
    reelrec_store(key TEXT PRIMARY KEY, value TEXT)    -- the marker: ("kind", "reelrec ratings store")

Whose database: a store reelrec created carries the marker table. An existing database without
it (an unrelated ``ratings.sqlite`` beside the run, say) is refused, read-only and untouched,
unless the user named it (``--store``, ``explicit=True``); then reelrec adds its tables. A
database holding exactly reelrec's two tables of an older version is adopted.

Writes on SQLite take the write lock when their transaction begins (``BEGIN IMMEDIATE``), so the
busy timeout applies to them; a read transaction later upgraded to a write fails at once with
"database is locked" when another process wrote in between, whatever the timeout. A write or read
that still finds the database locked is retried with a bounded backoff, then answered as a
:class:`StoreError` (503), never a server error.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError, SQLAlchemyError

from reelrec.errors import ReelrecError

log = logging.getLogger(__name__)

PROFILE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: the marker row of a reelrec ratings store (table ``reelrec_store``)
MARKER = ("kind", "reelrec ratings store")
#: tries of one store operation that finds the database locked, and the longest pause between
WRITE_ATTEMPTS = 6
MAX_BACKOFF_S = 0.4
#: how long SQLite waits for another process's write lock before a try fails
BUSY_TIMEOUT_MS = 5000

T = TypeVar("T")

metadata = MetaData()
profiles = Table(
    "profiles",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
)
ratings = Table(
    "ratings",
    metadata,
    Column("profile_id", String(64), ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True),
    Column("item_id", String(255), primary_key=True),
    Column("rating", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
store_info = Table(
    "reelrec_store",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)
#: the tables (and columns) of a store made by reelrec before the marker existed
_LEGACY = {"profiles": {"id", "created_at"}, "ratings": {"profile_id", "item_id", "rating", "updated_at"}}


class StoreError(ReelrecError):
    """The ratings store cannot be opened or used."""


def sqlite_url(path: str | Path) -> str:
    """The SQLAlchemy URL of an SQLite file."""
    return f"sqlite:///{Path(path).resolve()}"


def default_store_url(run_dir: str | Path) -> str:
    """``ratings.sqlite`` beside the run directory, so a retrained run in the same folder shares it."""
    return sqlite_url(Path(run_dir).resolve().parent / "ratings.sqlite")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # transactions begin in _sqlite_begin, not in the driver
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_MS)}")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    """Begin a transaction: a write (execution option ``reelrec_write``) takes the write lock now,
    waiting up to the busy timeout, instead of upgrading a read lock later (which cannot wait)."""
    write = conn.get_execution_options().get("reelrec_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _locked(exc: OperationalError) -> bool:
    text = str(exc.orig if exc.orig is not None else exc).lower()
    return "locked" in text or "busy" in text


def _tables_of(conn: Any) -> dict[str, set[str]]:
    """``{table: column names}`` of an open database (SQLAlchemy connection)."""
    found = inspect(conn)
    return {t: {c["name"] for c in found.get_columns(t)} for t in found.get_table_names()}


def _sqlite_tables(path: Path) -> dict[str, set[str]]:
    """``{table: columns}`` of an existing SQLite file, read without changing it (read-only)."""
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the ratings store {path} ({exc})") from None
    try:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: {r[1] for r in con.execute(f'PRAGMA table_info("{n}")')} for n in names}
    except sqlite3.OperationalError as exc:  # locked past the timeout, unreadable, ...
        raise StoreError(f"cannot read the ratings store {path} ({exc})") from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not an SQLite database ({exc}); give another --store") from None
    finally:
        con.close()


def _ownership(tables: dict[str, set[str]]) -> str:
    """``"ours"`` (the marker), ``"legacy"`` (an older reelrec store), ``"empty"`` or ``"foreign"``."""
    if store_info.name in tables:
        return "ours"
    if not tables:
        return "empty"
    if set(tables) == set(_LEGACY) and all(tables[t] >= cols for t, cols in _LEGACY.items()):
        return "legacy"
    return "foreign"


class RatingStore:
    """Profiles and their ratings in an SQLAlchemy database (created on first use)."""

    def __init__(self, url: str, *, explicit: bool = True) -> None:
        """Open (creating its tables) the store at ``url``. ``explicit=False`` (the default
        location, not named by the user): an existing database that is not a reelrec store is
        refused untouched (see the module)."""
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise StoreError(
                f"--store {url!r} is not a database URL (e.g. sqlite:///ratings.sqlite)"
            ) from None
        self.url = url
        self.backend = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"future": True}
        if self.backend == "sqlite":
            database = parsed.database
            if not database or database == ":memory:":
                raise StoreError("an in-memory SQLite store would lose every rating; give a file path")
            path = Path(database)
            if path.exists():  # looked at read-only first: nothing is changed before the verdict
                self._check_owner(_sqlite_tables(path), str(path), explicit)
            path.parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(url, **kwargs)
        except (NoSuchModuleError, ImportError) as exc:
            raise StoreError(f"no database driver for {parsed.drivername!r} ({exc})") from None
        if self.backend == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        try:
            if self.backend != "sqlite":
                with self.engine.connect() as conn:
                    self._check_owner(_tables_of(conn), repr(parsed), explicit)
            self._retry(self._create)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise StoreError(f"cannot open the ratings store {parsed!r}: {exc.__class__.__name__}") from None
        except StoreError:
            self.engine.dispose()
            raise

    @staticmethod
    def _check_owner(tables: dict[str, set[str]], where: str, explicit: bool) -> None:
        kind = _ownership(tables)
        if kind in ("ours", "legacy"):
            return
        for table in metadata.sorted_tables:  # named: reelrec's tables go in beside the user's
            have = tables.get(table.name)
            if have is not None and not have >= {c.name for c in table.columns}:
                raise StoreError(
                    f"{where} already has a table {table.name!r} that is not reelrec's (columns "
                    f"{', '.join(sorted(have))}); give another --store"
                )
        if explicit:
            return
        what = (
            "an empty file"
            if kind == "empty"
            else f"a database with other tables ({', '.join(sorted(tables))})"
        )
        raise StoreError(
            f"{where} is {what}, not a reelrec ratings store; name it with --store to add reelrec's "
            "tables to it, or give another --store"
        )

    def _create(self) -> None:
        metadata.create_all(self.engine)
        with self._writing() as conn:
            if conn.execute(select(store_info.c.value).where(store_info.c.key == MARKER[0])).first() is None:
                conn.execute(insert(store_info).values(key=MARKER[0], value=MARKER[1]))

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A connection in a write transaction (on SQLite: the write lock taken as it begins),
        committed on leaving."""
        with self.engine.connect() as conn:
            conn.execution_options(reelrec_write=True)
            with conn.begin():
                yield conn

    def _retry(self, work: Callable[[], T]) -> T:
        """``work()``, tried again with a bounded, jittered backoff while the database is locked;
        a :class:`StoreError` (503) when it stays locked."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return work()
            except OperationalError as exc:
                if not _locked(exc):
                    raise
                if attempt == WRITE_ATTEMPTS - 1:
                    raise StoreError("the ratings store is busy (database locked); try again") from None
                log.info("ratings store locked; retrying (attempt %d of %d)", attempt + 2, WRITE_ATTEMPTS)
                time.sleep(min(MAX_BACKOFF_S, 0.025 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ profiles
    @staticmethod
    def check_profile_id(profile_id: str) -> str:
        if not isinstance(profile_id, str) or not PROFILE_ID.match(profile_id):
            raise StoreError("a profile id is 1-64 letters, digits, '_' or '-'")
        return profile_id

    def create_profile(self) -> str:
        """A new profile with a random, unguessable id."""
        pid = secrets.token_urlsafe(16)

        def work() -> None:
            with self._writing() as conn:
                conn.execute(insert(profiles).values(id=pid, created_at=time.time()))

        self._retry(work)
        return pid

    def has_profile(self, profile_id: str) -> bool:
        self.check_profile_id(profile_id)

        def work() -> bool:
            with self.engine.connect() as conn:
                found = conn.execute(select(profiles.c.id).where(profiles.c.id == profile_id)).first()
            return found is not None

        return self._retry(work)

    def _ensure_profile(self, conn: Any, profile_id: str) -> None:
        if conn.execute(select(profiles.c.id).where(profiles.c.id == profile_id)).first() is None:
            conn.execute(insert(profiles).values(id=profile_id, created_at=time.time()))

    # ------------------------------------------------------------------ ratings
    def set_rating(self, profile_id: str, item_id: Any, rating: float) -> None:
        """Insert or replace one rating; committed (and on disk) when this returns.

        Two writers (threads, or ``serve --workers`` processes) can both find the profile or
        the rating absent and both insert it (a server database; SQLite's writes hold the lock
        from their start): the loser's transaction fails on the primary key and is retried
        once, when the row exists and the update path applies."""
        self.check_profile_id(profile_id)
        key = str(item_id)

        def work() -> None:
            now = time.time()
            with self._writing() as conn:
                self._ensure_profile(conn, profile_id)
                done = conn.execute(
                    update(ratings)
                    .where(ratings.c.profile_id == profile_id, ratings.c.item_id == key)
                    .values(rating=float(rating), updated_at=now)
                )
                if done.rowcount == 0:
                    conn.execute(
                        insert(ratings).values(
                            profile_id=profile_id, item_id=key, rating=float(rating), updated_at=now
                        )
                    )

        try:
            self._retry(work)
        except IntegrityError:
            self._retry(work)

    def delete_rating(self, profile_id: str, item_id: Any) -> bool:
        """Remove one rating; ``False`` when there was none."""
        self.check_profile_id(profile_id)

        def work() -> bool:
            with self._writing() as conn:
                done = conn.execute(
                    delete(ratings).where(
                        ratings.c.profile_id == profile_id, ratings.c.item_id == str(item_id)
                    )
                )
            return done.rowcount > 0

        return self._retry(work)

    def get_ratings(self, profile_id: str) -> dict[str, float]:
        """``{item id (text): rating}`` of one profile, oldest first (a changed rating counts as new)."""
        self.check_profile_id(profile_id)

        def work() -> list[Any]:
            with self.engine.connect() as conn:
                return conn.execute(
                    select(ratings.c.item_id, ratings.c.rating)
                    .where(ratings.c.profile_id == profile_id)
                    .order_by(ratings.c.updated_at)
                ).all()

        return {item: float(r) for item, r in self._retry(work)}

    def all_ratings(self) -> pd.DataFrame:
        """Every stored rating: columns ``profile``, ``item`` (text), ``rating``, ``timestamp``."""

        def work() -> list[Any]:
            with self.engine.connect() as conn:
                return conn.execute(
                    select(ratings.c.profile_id, ratings.c.item_id, ratings.c.rating, ratings.c.updated_at)
                ).all()

        return pd.DataFrame(self._retry(work), columns=["profile", "item", "rating", "timestamp"])

    def counts(self) -> dict[str, int]:
        def work() -> dict[str, int]:
            with self.engine.connect() as conn:
                n_profiles = conn.execute(select(func.count()).select_from(profiles)).scalar_one()
                n_ratings = conn.execute(select(func.count()).select_from(ratings)).scalar_one()
            return {"profiles": int(n_profiles), "ratings": int(n_ratings)}

        return self._retry(work)
