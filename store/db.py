"""The database engine and sessions: SQLite in $WORKBENCH_HOME by default (WAL mode), any SQLAlchemy URL by setting.

`get_engine()` migrates the schema on first use; `session()` commits on success and rolls back on any error, so
a partial write never reaches the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from settings import get_settings
from store.migrations import migrate

_engines: dict[str, Engine] = {}


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    with engine.begin() as conn:
        migrate(conn)
    return engine


def get_engine(url: str | None = None) -> Engine:
    """One engine per URL per process (default: the settings' database URL), migrated on first use."""
    url = url or get_settings().database_url
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


@contextmanager
def session(engine: Engine | None = None) -> Iterator[Session]:
    with Session(engine or get_engine(), expire_on_commit=False) as s:
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise


def redact_url(url: str) -> str:
    """A URL safe to print: any password replaced."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"
