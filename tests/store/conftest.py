"""Store tests run on a temporary SQLite file, and on PostgreSQL where WORKBENCH_TEST_PG_URL points at one."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import text

from store import Store

PG_URL = os.environ.get("WORKBENCH_TEST_PG_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path / 'store.db'}")
        yield store
        store.dispose()
        return
    if not PG_URL:
        pytest.skip(
            "PostgreSQL not available: set WORKBENCH_TEST_PG_URL (.ci/run starts a server and sets it)"
        )
    from sqlalchemy import create_engine

    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"wb_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    store = Store(url)
    yield store
    store.dispose()
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()
