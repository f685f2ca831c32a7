"""The database: one `Store` object bound to one database URL (SQLite in $WORKBENCH_HOME by default, WAL mode;
any SQLAlchemy URL by setting), migrated on first use.

`Store.session()` commits on success and rolls back on any error, so a partial write never reaches the database.
The query methods live in the mixins of store/versions.py, suites.py, results.py, jobs.py and reviews.py, and the
response cache in cache.py; this module holds the plumbing only.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, create_engine

from store.migrations import migrate

T = TypeVar("T")


class StoreError(ValueError):
    """A lookup or write the store refuses; the message names what was asked for."""


WRITE_RACE_ATTEMPTS = 5


def retry_write_race(write: Callable[[], T], what: str) -> T:
    """Run a read-then-insert `write` again when another process inserted the same unique key between our read
    and our insert (two `workbench run` processes importing zero_shot@v1 at once): the retry reads the winner."""
    for _attempt in range(WRITE_RACE_ATTEMPTS - 1):
        try:
            return write()
        except IntegrityError:
            continue
    try:
        return write()
    except IntegrityError as exc:
        raise StoreError(
            f"{what}: still conflicting after {WRITE_RACE_ATTEMPTS} attempts ({exc.orig})"
        ) from exc


def connect(url: str) -> SqlEngine:
    """A SQLAlchemy engine for `url`, migrated; SQLite files get WAL mode and foreign keys."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        sql = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(sql, "connect")
        def _pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
    else:
        sql = create_engine(url, pool_pre_ping=True)
    with _migration_lock(url), sql.begin() as conn:
        if (
            sql.dialect.name == "postgresql"
        ):  # processes starting together (UI, worker, CLI) migrate one at a time
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        migrate(conn)
    return sql


MIGRATION_LOCK_KEY = 4_711_2026  # any constant: the advisory lock that serialises migrations on PostgreSQL


@contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    """An exclusive file lock beside a SQLite database while it is migrated (SQLite's deferred transactions
    would let two new processes both create the same tables)."""
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        yield
        return
    path = Path(url.removeprefix("sqlite:///")).expanduser()
    with open(path.with_name(path.name + ".migrate-lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Database:
    """The connection half of a Store: the SQLAlchemy engine (named `sql`, so "engine" keeps meaning the
    inference engine everywhere else) and transactions."""

    def __init__(self, url: str):
        self.url = url
        self.sql = connect(url)

    @property
    def dialect(self) -> str:
        return self.sql.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.sql, expire_on_commit=False) as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def dispose(self) -> None:
        self.sql.dispose()


def redact_url(url: str) -> str:
    """A URL safe to print: any password replaced."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


_stores: dict[str, object] = {}
_stores_lock = threading.Lock()


def open_store(url: str | None = None):
    """One Store per URL per process (default: the settings' database URL), migrated on first use."""
    from settings import get_settings
    from store import Store

    url = url or get_settings().database_url
    with _stores_lock:
        if url not in _stores:
            _stores[url] = Store(url)
        return _stores[url]
