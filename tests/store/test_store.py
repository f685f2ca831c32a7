"""Tables, migrations and queries on a real database file (and PostgreSQL when available)."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError, StatementError

from store import queries
from store.migrations import MIGRATIONS, migrate


def test_migrations_are_recorded_once(db):
    with db.connect() as conn:
        names = [row[0] for row in conn.execute(text("SELECT name FROM schema_migrations ORDER BY name"))]
    assert names == [name for name, _ in MIGRATIONS]
    with db.begin() as conn:
        assert migrate(conn) == []
    tables = set(inspect(db).get_table_names())
    assert {
        "template_versions",
        "suites",
        "test_cases",
        "provider_configs",
        "runs",
        "results",
        "scores",
    } <= tables


def test_sqlite_runs_in_wal_mode(tmp_path):
    from store.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_default_database_lives_in_workbench_home(isolated_home):
    from store.db import get_engine

    engine = get_engine()
    assert str(isolated_home / "workbench.db") in str(engine.url)


def test_versions_are_immutable_and_numbered(db):
    v1 = queries.save_version("greet", "Hi {{ name }}", note="first", engine=db)
    same = queries.save_version("greet", "Hi {{ name }}", note="again", engine=db)
    v2 = queries.save_version(
        "greet", "Hello {{ name }}", delimiter="xml", guardrails={"task": "t"}, engine=db
    )
    assert (v1.version, same.id, v2.version) == (1, v1.id, 2)
    assert v1.content_hash != v2.content_hash
    assert queries.get_version("greet", engine=db).id == v2.id
    assert queries.get_version("greet@v1", engine=db).source == "Hi {{ name }}"
    assert [v.label for v in queries.list_versions("greet", engine=db)] == ["greet@v1", "greet@v2"]
    with pytest.raises(queries.StoreError, match="no template version 'greet@v9'"):
        queries.get_version("greet@v9", engine=db)


def test_suite_with_cases_is_written_atomically(db):
    cases = [
        {"description": "a", "vars": {"x": 1}, "assertions": [{"type": "equals", "value": "1"}]},
        {"description": "b", "vars": {"x": object()}},
    ]  # not JSON: the whole write must roll back
    with pytest.raises((TypeError, StatementError)):
        queries.save_suite("broken", cases, engine=db)
    assert queries.list_suites(engine=db) == []
    suite = queries.save_suite("ok", cases[:1], engine=db)
    [(stored, count)] = queries.list_suites(engine=db)
    assert stored.id == suite.id and count == 1
    case = queries.suite_cases(suite.id, engine=db)[0]
    assert (case.description, case.vars, case.assertions) == (
        "a",
        {"x": 1},
        [{"type": "equals", "value": "1"}],
    )
    with pytest.raises(queries.StoreError, match="a suite named 'ok' already exists"):
        queries.save_suite("ok", [], engine=db)


def test_provider_configurations_never_hold_secrets(db):
    row = queries.upsert_provider(
        "openai:chat:gpt-4o-mini",
        "remote",
        "gpt-4o-mini",
        api_key_env="OPENAI_API_KEY",
        base_url="https://api.openai.com/v1",
        params={"temperature": 0},
        engine=db,
    )
    assert row.api_key_env == "OPENAI_API_KEY"
    with pytest.raises(queries.StoreError, match="must not hold keys"):
        queries.upsert_provider("x", "remote", "m", params={"api_key": "sk-123"}, engine=db)


def _run_with_results(db):
    suite = queries.save_suite("s", [{"vars": {}}, {"vars": {}}], engine=db)
    version = queries.save_version("v", "x", engine=db)
    provider = queries.upsert_provider("p", "local", "m", quant="int4", engine=db)
    run = queries.create_run(
        suite_id=suite.id, version_ids=[version.id], provider_ids=[provider.id], engine=db
    )
    cases = queries.suite_cases(suite.id, engine=db)
    return run, cases, version, provider


def test_results_are_unique_per_cell_and_scores_commit_with_them(db):
    run, cases, version, provider = _run_with_results(db)
    cell = {"run_id": run.id, "case_id": cases[0].id, "version_id": version.id, "provider_id": provider.id}
    result_id = queries.save_result(
        {**cell, "output": "hi", "passed": True, "score": 1.0},
        [{"type": "equals", "passed": True, "score": 1.0, "reason": "ok"}],
        engine=db,
    )
    assert queries.finished_cells(run.id, engine=db) == {(cases[0].id, version.id, provider.id, 0)}
    with pytest.raises(IntegrityError):
        queries.save_result(cell, [], engine=db)
    with pytest.raises(IntegrityError):  # a score that cannot be stored takes its result with it
        queries.save_result(
            {**cell, "repeat_index": 1}, [{"type": "equals", "passed": None, "score": 1.0}], engine=db
        )
    [(stored, scores)] = queries.run_results(run.id, engine=db)
    assert stored.id == result_id and stored.output == "hi" and stored.messages == []
    assert [s.reason for s in scores] == ["ok"]


def test_retry_errored_deletes_only_errored_cells(db):
    run, cases, version, provider = _run_with_results(db)
    base = {"run_id": run.id, "version_id": version.id, "provider_id": provider.id}
    queries.save_result({**base, "case_id": cases[0].id, "passed": True}, [], engine=db)
    queries.save_result({**base, "case_id": cases[1].id, "error": "timeout"}, [], engine=db)
    assert queries.delete_errored(run.id, engine=db) == 1
    assert queries.finished_cells(run.id, engine=db) == {(cases[0].id, version.id, provider.id, 0)}


def test_response_cache(db):
    cache = queries.ResponseCache(db)
    assert cache.get("k") is None
    cache.put("k", {"texts": ["a"]})
    cache.put("k", {"texts": ["b"]})  # first write wins: a cached response is never rewritten
    assert cache.get("k") == {"texts": ["a"]}


def test_response_cache_tolerates_concurrent_writers_of_one_key(db):
    import threading

    cache = queries.ResponseCache(db)
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
