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
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from pathlib import Path
from typing import Any

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
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError

from reelrec.errors import ReelrecError

log = logging.getLogger(__name__)

PROFILE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

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


class StoreError(ReelrecError):
    """The ratings store cannot be opened or used."""


def sqlite_url(path: str | Path) -> str:
    """The SQLAlchemy URL of an SQLite file."""
    return f"sqlite:///{Path(path).resolve()}"


def default_store_url(run_dir: str | Path) -> str:
    """``ratings.sqlite`` beside the run directory, so a retrained run in the same folder shares it."""
    return sqlite_url(Path(run_dir).resolve().parent / "ratings.sqlite")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


class RatingStore:
    """Profiles and their ratings in an SQLAlchemy database (created on first use)."""

    def __init__(self, url: str) -> None:
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
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(url, **kwargs)
        except (NoSuchModuleError, ImportError) as exc:
            raise StoreError(f"no database driver for {parsed.drivername!r} ({exc})") from None
        if self.backend == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the ratings store {parsed!r}: {exc.__class__.__name__}") from None

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
        with self.engine.begin() as conn:
            conn.execute(insert(profiles).values(id=pid, created_at=time.time()))
        return pid

    def has_profile(self, profile_id: str) -> bool:
        self.check_profile_id(profile_id)
        with self.engine.connect() as conn:
            return conn.execute(select(profiles.c.id).where(profiles.c.id == profile_id)).first() is not None

    def _ensure_profile(self, conn: Any, profile_id: str) -> None:
        if conn.execute(select(profiles.c.id).where(profiles.c.id == profile_id)).first() is None:
            conn.execute(insert(profiles).values(id=profile_id, created_at=time.time()))

    # ------------------------------------------------------------------ ratings
    def set_rating(self, profile_id: str, item_id: Any, rating: float) -> None:
        """Insert or replace one rating; committed (and on disk) when this returns.

        Two writers (threads, or ``serve --workers`` processes) can both find the profile or
        the rating absent and both insert it; the loser's transaction fails on the primary key
        and is retried once, when the row exists and the update path applies."""
        self.check_profile_id(profile_id)
        key = str(item_id)
        for attempt in range(2):
            now = time.time()
            try:
                with self.engine.begin() as conn:
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
                return
            except IntegrityError:
                if attempt:
                    raise

    def delete_rating(self, profile_id: str, item_id: Any) -> bool:
        """Remove one rating; ``False`` when there was none."""
        self.check_profile_id(profile_id)
        with self.engine.begin() as conn:
            done = conn.execute(
                delete(ratings).where(ratings.c.profile_id == profile_id, ratings.c.item_id == str(item_id))
            )
        return done.rowcount > 0

    def get_ratings(self, profile_id: str) -> dict[str, float]:
        """``{item id (text): rating}`` of one profile, oldest first (a changed rating counts as new)."""
        self.check_profile_id(profile_id)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ratings.c.item_id, ratings.c.rating)
                .where(ratings.c.profile_id == profile_id)
                .order_by(ratings.c.updated_at)
            ).all()
        return {item: float(r) for item, r in rows}

    def all_ratings(self) -> pd.DataFrame:
        """Every stored rating: columns ``profile``, ``item`` (text), ``rating``, ``timestamp``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ratings.c.profile_id, ratings.c.item_id, ratings.c.rating, ratings.c.updated_at)
            ).all()
        return pd.DataFrame(rows, columns=["profile", "item", "rating", "timestamp"])

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            n_profiles = conn.execute(select(func.count()).select_from(profiles)).scalar_one()
            n_ratings = conn.execute(select(func.count()).select_from(ratings)).scalar_one()
        return {"profiles": int(n_profiles), "ratings": int(n_ratings)}
