"""Query functions: every read and write the CLI and pages need, each in one transaction.

Write functions take plain values (or the prompting layer's specs) and return table rows; a failure inside one
rolls the whole write back.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from store.db import get_engine, session
from store.models import (
    CachedResponse,
    ProviderConfig,
    Result,
    Run,
    Score,
    Suite,
    TemplateVersion,
    TestCase,
    utcnow,
)


class StoreError(ValueError):
    """A lookup or write the store refuses; the message names what was asked for."""


def content_hash(
    source: str, variables: dict, delimiter: str, guardrails: dict | None, options: dict | None = None
) -> str:
    payload = json.dumps(
        [source, variables, delimiter, guardrails, options or {}], sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(payload.encode()).hexdigest()


# --- template versions -----------------------------------------------------------------------------------


def save_version(
    name: str,
    source: str,
    *,
    variables: dict | None = None,
    delimiter: str = "hash",
    guardrails: dict | None = None,
    note: str = "",
    library_ref: str | None = None,
    options: dict | None = None,
    engine: Engine | None = None,
) -> TemplateVersion:
    """A new immutable version; saving content identical to the latest version of `name` returns that one."""
    variables = variables or {}
    digest = content_hash(source, variables, delimiter, guardrails, options)
    with session(engine) as s:
        latest = s.exec(select(TemplateVersion).where(TemplateVersion.name == name)
                        .order_by(TemplateVersion.version.desc())).first()  # fmt: skip
        if latest is not None and latest.content_hash == digest:
            return latest
        row = TemplateVersion(name=name, version=(latest.version + 1) if latest else 1, source=source,
                              variables=variables, delimiter=delimiter, guardrails=guardrails, note=note,
                              library_ref=library_ref, options=options or {}, content_hash=digest)  # fmt: skip
        s.add(row)
        s.flush()
        return row


def list_versions(name: str | None = None, engine: Engine | None = None) -> list[TemplateVersion]:
    with session(engine) as s:
        query = select(TemplateVersion).order_by(TemplateVersion.name, TemplateVersion.version)
        if name:
            query = query.where(TemplateVersion.name == name)
        return list(s.exec(query))


def get_version(ref: str | int, engine: Engine | None = None) -> TemplateVersion:
    """By id, `name@vN`, or `name` (its latest version)."""
    with session(engine) as s:
        if isinstance(ref, int) or str(ref).isdigit():
            row = s.get(TemplateVersion, int(ref))
        elif "@v" in str(ref):
            name, _, number = str(ref).rpartition("@v")
            row = s.exec(
                select(TemplateVersion).where(
                    TemplateVersion.name == name, TemplateVersion.version == int(number)
                )
            ).first()
        else:
            row = s.exec(select(TemplateVersion).where(TemplateVersion.name == ref)
                         .order_by(TemplateVersion.version.desc())).first()  # fmt: skip
        if row is None:
            raise StoreError(f"no template version '{ref}'")
        return row


# --- suites and cases ------------------------------------------------------------------------------------


def save_suite(
    name: str,
    cases: list[dict[str, Any]],
    *,
    description: str = "",
    config: dict | None = None,
    replace: bool = False,
    engine: Engine | None = None,
) -> Suite:
    """Create (or with `replace`, rewrite) a suite and all its cases in one transaction."""
    with session(engine) as s:
        existing = s.exec(select(Suite).where(Suite.name == name)).first()
        if existing is not None and not replace:
            raise StoreError(f"a suite named '{name}' already exists")
        if existing is not None:
            s.exec(delete(TestCase).where(TestCase.suite_id == existing.id))
            existing.description, existing.config = description, config or {}
            suite = existing
        else:
            suite = Suite(name=name, description=description, config=config or {})
            s.add(suite)
        s.flush()
        for position, case in enumerate(cases):
            s.add(TestCase(suite_id=suite.id, position=position, description=case.get("description", ""),
                           vars=case.get("vars", {}), expected=case.get("expected"),
                           assertions=case.get("assertions", []), tags=case.get("tags", []),
                           threshold=case.get("threshold")))  # fmt: skip
        return suite


def list_suites(engine: Engine | None = None) -> list[tuple[Suite, int]]:
    with session(engine) as s:
        counts = dict(s.exec(select(TestCase.suite_id, func.count()).group_by(TestCase.suite_id)).all())
        return [(suite, counts.get(suite.id, 0)) for suite in s.exec(select(Suite).order_by(Suite.name))]


def get_suite(ref: str | int, engine: Engine | None = None) -> Suite:
    with session(engine) as s:
        row = (
            s.get(Suite, int(ref))
            if str(ref).isdigit()
            else s.exec(select(Suite).where(Suite.name == ref)).first()
        )
        if row is None:
            raise StoreError(f"no suite '{ref}'")
        return row


def suite_cases(suite_id: int, engine: Engine | None = None) -> list[TestCase]:
    with session(engine) as s:
        return list(s.exec(select(TestCase).where(TestCase.suite_id == suite_id).order_by(TestCase.position)))


# --- providers -------------------------------------------------------------------------------------------


def upsert_provider(
    label: str,
    kind: str,
    model: str,
    *,
    base_url: str | None = None,
    quant: str | None = None,
    api_key_env: str | None = None,
    params: dict | None = None,
    engine: Engine | None = None,
) -> ProviderConfig:
    if params and any("key" in k.lower() and k != "api_key_env" for k in params):
        raise StoreError(
            "provider parameters must not hold keys; name the environment variable in api_key_env"
        )
    with session(engine) as s:
        row = s.exec(select(ProviderConfig).where(ProviderConfig.label == label)).first()
        if row is None:
            row = ProviderConfig(label=label, kind=kind, model=model)
            s.add(row)
        row.kind, row.model, row.base_url, row.quant = kind, model, base_url, quant
        row.api_key_env, row.params = api_key_env, params or {}
        s.flush()
        return row


def list_providers(engine: Engine | None = None) -> list[ProviderConfig]:
    with session(engine) as s:
        return list(s.exec(select(ProviderConfig).order_by(ProviderConfig.label)))


# --- runs and results ------------------------------------------------------------------------------------


def new_run_id() -> str:
    return f"run-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def create_run(
    *,
    suite_id: int | None,
    version_ids: list[int],
    provider_ids: list[int],
    repeats: int = 1,
    params: dict | None = None,
    strategy: dict | None = None,
    description: str = "",
    run_id: str | None = None,
    engine: Engine | None = None,
) -> Run:
    with session(engine) as s:
        run = Run(id=run_id or new_run_id(), suite_id=suite_id, version_ids=version_ids, provider_ids=provider_ids,
                  repeats=repeats, params=params or {}, strategy=strategy or {"name": "single"},
                  description=description)  # fmt: skip
        s.add(run)
        s.flush()
        return run


def get_run(run_id: str, engine: Engine | None = None) -> Run:
    with session(engine) as s:
        run = s.get(Run, run_id)
        if run is None:
            raise StoreError(f"no run '{run_id}'")
        return run


def list_runs(engine: Engine | None = None) -> list[Run]:
    with session(engine) as s:
        return list(s.exec(select(Run).order_by(Run.created_at.desc())))


def set_run_status(run_id: str, status: str, engine: Engine | None = None) -> None:
    with session(engine) as s:
        run = s.get(Run, run_id)
        run.status = status
        run.finished_at = utcnow() if status != "running" else None


def finished_cells(run_id: str, engine: Engine | None = None) -> set[tuple[int, int, int, int]]:
    """(case, version, provider, repeat) of every stored result of a run, errored ones included."""
    with session(engine) as s:
        rows = s.exec(select(Result.case_id, Result.version_id, Result.provider_id, Result.repeat_index)
                      .where(Result.run_id == run_id))  # fmt: skip
        return {tuple(r) for r in rows}


def _row(model: type, values: dict[str, Any]) -> dict[str, Any]:
    """Every column of a table for a Core insert, with the model's defaults filled in, without building (and
    validating) the model object."""
    row = {}
    for name, info in model.model_fields.items():
        if name == "id":
            continue
        if name in values:
            row[name] = values[name]
        elif info.default_factory is not None:
            row[name] = info.default_factory()
        else:
            row[name] = info.default
    return row


def save_result(result: dict[str, Any], scores: list[dict[str, Any]], engine: Engine | None = None) -> int:
    """A result and its scores, committed together (or not at all); returns the result's id.

    Plain dicts and Core inserts, not ORM objects: this is the runner's hot path (one commit per finished
    cell), and it has to stay well under a millisecond."""
    engine = engine or get_engine()
    with engine.begin() as conn:
        result_id = conn.execute(insert(Result.__table__), _row(Result, result)).inserted_primary_key[0]
        if scores:
            conn.execute(
                insert(Score.__table__), [_row(Score, {**s, "result_id": result_id}) for s in scores]
            )
    return result_id


def delete_errored(run_id: str, engine: Engine | None = None) -> int:
    """Drop a run's errored results so a resume re-runs exactly those cells; returns how many."""
    with session(engine) as s:
        ids = list(s.exec(select(Result.id).where(Result.run_id == run_id, Result.error.is_not(None))))
        if ids:
            s.exec(delete(Score).where(Score.result_id.in_(ids)))
            s.exec(delete(Result).where(Result.id.in_(ids)))
        return len(ids)


def run_results(run_id: str, engine: Engine | None = None) -> list[tuple[Result, list[Score]]]:
    with session(engine) as s:
        results = list(
            s.exec(
                select(Result)
                .where(Result.run_id == run_id)
                .order_by(Result.case_id, Result.version_id, Result.provider_id, Result.repeat_index)
            )
        )
        ids = [r.id for r in results]
        scores: dict[int, list[Score]] = {i: [] for i in ids}
        if ids:
            for score in s.exec(select(Score).where(Score.result_id.in_(ids)).order_by(Score.position)):
                scores[score.result_id].append(score)
        return [(r, scores[r.id]) for r in results]


def count_results(run_id: str, engine: Engine | None = None) -> int:
    with session(engine) as s:
        return s.exec(select(func.count()).select_from(Result).where(Result.run_id == run_id)).one()


# --- response cache --------------------------------------------------------------------------------------


class ResponseCache:
    """The runner's cache, kept in the database: key -> response dict."""

    def __init__(self, engine: Engine | None = None):
        self.engine = engine

    def get(self, key: str) -> dict | None:
        with session(self.engine) as s:
            row = s.get(CachedResponse, key)
            return dict(row.response) if row else None

    def put(self, key: str, response: dict) -> None:
        """First write wins: concurrent cells may miss the same key together and both try to store it."""
        try:
            with session(self.engine) as s:
                if s.get(CachedResponse, key) is None:
                    s.add(CachedResponse(key=key, response=response))
        except IntegrityError:
            pass  # another cell stored this response between our read and our write
