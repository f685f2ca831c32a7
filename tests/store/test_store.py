"""Tables, migrations and queries on a real database file (and PostgreSQL when available)."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError, StatementError

from store import StoreError
from store.migrations import MIGRATIONS, migrate


def test_migrations_are_recorded_once(db):
    with db.sql.connect() as conn:
        names = [row[0] for row in conn.execute(text("SELECT name FROM schema_migrations ORDER BY name"))]
    assert names == [name for name, _ in MIGRATIONS]
    with db.sql.begin() as conn:
        assert migrate(conn) == []
    tables = set(inspect(db.sql).get_table_names())
    assert {
        "template_versions",
        "suites",
        "test_cases",
        "provider_configs",
        "runs",
        "results",
        "scores",
    } <= tables


def test_a_database_from_before_cache_scopes_migrates(db):
    """m005: old cache keys (no scope) can never be hit again and are dropped; `use_cache` becomes a policy."""
    kept = db.create_run(suite_id=None, version_ids=[], provider_ids=[], options={"use_cache": True, "x": 1})
    fresh = db.create_run(suite_id=None, version_ids=[], provider_ids=[], options={"use_cache": False})
    with db.sql.begin() as conn:  # back to the schema and data of a database written before m005
        conn.execute(text("ALTER TABLE response_cache DROP COLUMN scope"))
        conn.execute(text("DELETE FROM schema_migrations WHERE name = 'm005_cache_scopes'"))
        conn.execute(
            text(
                "INSERT INTO response_cache (key, response, created_at) VALUES ('old', '{}', CURRENT_TIMESTAMP)"
            )
        )
    with db.sql.begin() as conn:
        assert migrate(conn) == ["m005_cache_scopes"]
    assert db.cache().get("old") is None and db.cache().scopes() == {}
    assert db.get_run(kept.id).options == {"cache": "reuse", "x": 1}
    assert db.get_run(fresh.id).options == {"cache": "fresh"}
    db.cache().put("new", {"texts": ["a"]}, "run:r1")
    assert db.cache().scopes() == {"run:r1": 1}


def test_sqlite_runs_in_wal_mode(tmp_path):
    from store import Store

    store = Store(f"sqlite:///{tmp_path / 'wal.db'}")
    with store.sql.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_default_database_lives_in_workbench_home(isolated_home):
    from store import open_store

    store = open_store()
    assert str(isolated_home / "workbench.db") in str(store.sql.url)


def test_versions_are_immutable_and_numbered(db):
    v1 = db.save_version("greet", "Hi {{ name }}", note="first")
    same = db.save_version("greet", "Hi {{ name }}", note="again")
    v2 = db.save_version("greet", "Hello {{ name }}", delimiter="xml", guardrails={"task": "t"})
    assert (v1.version, same.id, v2.version) == (1, v1.id, 2)
    assert v1.content_hash != v2.content_hash
    assert db.get_version("greet").id == v2.id
    assert db.get_version("greet@v1").source == "Hi {{ name }}"
    assert [v.label for v in db.list_versions("greet")] == ["greet@v1", "greet@v2"]
    with pytest.raises(StoreError, match="no template version 'greet@v9'"):
        db.get_version("greet@v9")


def test_suite_with_cases_is_written_atomically(db):
    cases = [
        {"description": "a", "vars": {"x": 1}, "assertions": [{"type": "equals", "value": "1"}]},
        {"description": "b", "vars": {"x": object()}},
    ]  # not JSON: the whole write must roll back
    with pytest.raises((TypeError, StatementError)):
        db.save_suite("broken", cases)
    assert db.list_suites() == []
    suite = db.save_suite("ok", cases[:1])
    [(stored, count)] = db.list_suites()
    assert stored.id == suite.id and count == 1
    case = db.suite_cases(suite.id)[0]
    assert (case.description, case.vars, case.assertions) == (
        "a",
        {"x": 1},
        [{"type": "equals", "value": "1"}],
    )
    with pytest.raises(StoreError, match="a suite named 'ok' already exists"):
        db.save_suite("ok", [])


def test_provider_configurations_never_hold_secrets(db):
    row = db.upsert_provider(
        "openai:chat:gpt-4o-mini",
        "remote",
        "gpt-4o-mini",
        api_key_env="OPENAI_API_KEY",
        base_url="https://api.openai.com/v1",
        params={"temperature": 0},
    )
    assert row.api_key_env == "OPENAI_API_KEY"
    with pytest.raises(StoreError, match="must not hold keys"):
        db.upsert_provider("x", "remote", "m", params={"api_key": "sk-123"})


def _run_with_results(db):
    suite = db.save_suite("s", [{"vars": {}}, {"vars": {}}])
    version = db.save_version("v", "x")
    provider = db.upsert_provider("p", "local", "m", quant="int4")
    run = db.create_run(suite_id=suite.id, version_ids=[version.id], provider_ids=[provider.id])
    cases = db.suite_cases(suite.id)
    return run, cases, version, provider


def test_results_are_unique_per_cell_and_scores_commit_with_them(db):
    run, cases, version, provider = _run_with_results(db)
    cell = {"run_id": run.id, "case_id": cases[0].id, "version_id": version.id, "provider_id": provider.id}
    result_id = db.save_result(
        {**cell, "output": "hi", "passed": True, "score": 1.0},
        [{"type": "equals", "passed": True, "score": 1.0, "reason": "ok"}],
    )
    assert db.finished_cells(run.id) == {(cases[0].id, version.id, provider.id, 0)}
    with pytest.raises(IntegrityError):
        db.save_result(cell, [])
    with pytest.raises(IntegrityError):  # a score that cannot be stored takes its result with it
        db.save_result({**cell, "repeat_index": 1}, [{"type": "equals", "passed": None, "score": 1.0}])
    [(stored, scores)] = db.run_results(run.id)
    assert stored.id == result_id and stored.output == "hi" and stored.messages == []
    assert [s.reason for s in scores] == ["ok"]


def test_retry_errored_deletes_only_errored_cells(db):
    run, cases, version, provider = _run_with_results(db)
    base = {"run_id": run.id, "version_id": version.id, "provider_id": provider.id}
    db.save_result({**base, "case_id": cases[0].id, "passed": True}, [])
    db.save_result({**base, "case_id": cases[1].id, "error": "timeout"}, [])
    assert db.delete_errored(run.id) == 1
    assert db.finished_cells(run.id) == {(cases[0].id, version.id, provider.id, 0)}


def test_response_cache(db):
    cache = db.cache()
    assert cache.get("k") is None
    cache.put("k", {"texts": ["a"]})
    cache.put("k", {"texts": ["b"]})  # first write wins: a cached response is never rewritten
    assert cache.get("k") == {"texts": ["a"]}


def test_response_cache_tolerates_concurrent_writers_of_one_key(db):
    import threading

    cache = db.cache()
    errors = []

    def put(i):
        try:
            cache.put("same", {"texts": [str(i)]})
        except Exception as exc:  # the runner would record this as a failed cell
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and cache.get("same")["texts"][0] in {str(i) for i in range(8)}


def test_processes_saving_the_same_version_at_once_agree_on_one_row(db):
    """Several `workbench run` processes importing the same template together (the CI failure: UNIQUE constraint
    on template_versions): each has its own connection; all get the one row, none fails."""
    import threading

    from store import Store

    stores = [Store(db.url) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    got, failures = [], []

    def save(store):
        barrier.wait()
        try:
            got.append(
                (store.save_version("race", "{{ x }}").id, store.upsert_provider("p@race", "local", "m").id)
            )
        except Exception as exc:  # noqa: BLE001 - the assertion below names any failure
            failures.append(repr(exc))

    threads = [threading.Thread(target=save, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and len(got) == len(stores) and len(set(got)) == 1
    assert [v.version for v in db.list_versions("race")] == [1]
    for store in stores:
        store.dispose()
