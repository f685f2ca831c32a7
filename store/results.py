"""Runs, results and scores. `save_result` is the runner's hot path: plain dicts and Core inserts, one commit per
finished cell, well under a millisecond."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, insert, update
from sqlmodel import select

from store.db import StoreError
from store.models import Result, Run, RunCell, Score, utcnow

CellKey = tuple[int, int, int, int]  # (case, version, provider, repeat)


def new_run_id() -> str:
    return f"run-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def plain_row(model: type, values: dict[str, Any]) -> dict[str, Any]:
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


class ResultQueries:
    """Mixin of Store: runs and their results."""

    def create_run(
        self,
        *,
        suite_id: int | None,
        version_ids: list[int],
        provider_ids: list[int],
        repeats: int = 1,
        params: dict | None = None,
        strategy: dict | None = None,
        description: str = "",
        run_id: str | None = None,
        status: str = "queued",
        options: dict | None = None,
    ) -> Run:
        with self.session() as s:
            run = Run(
                id=run_id or new_run_id(),
                suite_id=suite_id,
                version_ids=version_ids,
                provider_ids=provider_ids,
                repeats=repeats,
                params=params or {},
                strategy=strategy or {},
                description=description,
                status=status,
                options=options or {},
            )
            s.add(run)
            s.flush()
            return run

    def get_run(self, run_id: str) -> Run:
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise StoreError(f"no run '{run_id}'")
            return run

    def has_run(self, run_id: str) -> bool:
        with self.session() as s:
            return s.get(Run, run_id) is not None

    def list_runs(self) -> list[Run]:
        with self.session() as s:
            return list(s.exec(select(Run).order_by(Run.created_at.desc(), Run.id.desc())))

    def set_run_status(self, run_id: str, status: str) -> None:
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise StoreError(f"no run '{run_id}'")
            run.status = status
            run.finished_at = utcnow() if status not in ("running", "queued") else None

    def update_run_options(self, run_id: str, **values: Any) -> None:
        """Merge values into a run's options (what it measured: engine start-up, sweep measures)."""
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise StoreError(f"no run '{run_id}'")
            run.options = {**(run.options or {}), **values}

    def result_counts(self, run_id: str) -> tuple[int, int, int]:
        """(stored results, errored, passed) of a run, counted in the database."""
        with self.session() as s:
            errored = func.sum(case((Result.error.is_not(None), 1), else_=0))
            passed = func.sum(case(((Result.error.is_(None)) & (Result.passed.is_(True)), 1), else_=0))
            total, err, ok = s.exec(
                select(func.count(), errored, passed).where(Result.run_id == run_id)
            ).one()
            return total, int(err or 0), int(ok or 0)

    def finished_cells(self, run_id: str) -> set[CellKey]:
        """(case, version, provider, repeat) of every stored result of a run, errored ones included."""
        with self.session() as s:
            rows = s.exec(
                select(Result.case_id, Result.version_id, Result.provider_id, Result.repeat_index).where(
                    Result.run_id == run_id
                )
            )
            return {tuple(r) for r in rows}

    def save_result(
        self, result: dict[str, Any], scores: list[dict[str, Any]], cell_id: int | None = None
    ) -> int:
        """A result and its scores (and, for a queued cell, its `done` mark), committed together or not at all;
        returns the result's id."""
        with self.sql.begin() as conn:
            inserted = conn.execute(insert(Result.__table__), plain_row(Result, result))
            result_id = inserted.inserted_primary_key[0]
            if scores:
                rows = [plain_row(Score, {**s, "result_id": result_id}) for s in scores]
                conn.execute(insert(Score.__table__), rows)
            if cell_id is not None:
                conn.execute(update(RunCell).where(RunCell.id == cell_id).values(state="done"))
        return result_id

    def delete_errored(self, run_id: str) -> int:
        """Drop a run's errored results so a resume re-runs exactly those cells; returns how many."""
        with self.session() as s:
            ids = list(s.exec(select(Result.id).where(Result.run_id == run_id, Result.error.is_not(None))))
            if ids:
                s.exec(delete(Score).where(Score.result_id.in_(ids)))
                s.exec(delete(Result).where(Result.id.in_(ids)))
            return len(ids)

    def run_results(self, run_id: str) -> list[tuple[Result, list[Score]]]:
        with self.session() as s:
            query = (
                select(Result)
                .where(Result.run_id == run_id)
                .order_by(Result.case_id, Result.version_id, Result.provider_id, Result.repeat_index)
            )
            results = list(s.exec(query))
            ids = [r.id for r in results]
            scores: dict[int, list[Score]] = {i: [] for i in ids}
            for start in range(0, len(ids), 500):  # bounded IN lists
                chunk = ids[start : start + 500]
                for score in s.exec(select(Score).where(Score.result_id.in_(chunk)).order_by(Score.position)):
                    scores[score.result_id].append(score)
            return [(r, scores[r.id]) for r in results]

    def result_outcomes(
        self, run_id: str
    ) -> list[tuple[int, int, int, int, bool | None, float | None, bool]]:
        """(case, version, provider, repeat, passed, score, errored) of every result of a run: what statistics
        need, without outputs, messages or scores."""
        query = select(
            Result.case_id,
            Result.version_id,
            Result.provider_id,
            Result.repeat_index,
            Result.passed,
            Result.score,
            Result.error.is_not(None),
        ).where(Result.run_id == run_id)
        with self.session() as s:
            return [tuple(row) for row in s.exec(query)]

    def result_turns(self, run_id: str) -> list[tuple[int, int, int, int, dict[str, bool], bool]]:
        """(case, version, provider, repeat, per-turn verdicts, errored) of every result of a run: the verdicts
        are the runner's `detail["turns"]` (empty for a case that is not a judged conversation)."""
        query = select(
            Result.case_id,
            Result.version_id,
            Result.provider_id,
            Result.repeat_index,
            Result.detail,
            Result.error.is_not(None),
        ).where(Result.run_id == run_id)
        with self.session() as s:
            return [(c, v, p, r, (d or {}).get("turns") or {}, bool(e)) for c, v, p, r, d, e in s.exec(query)]

    def result_group_counts(self) -> dict[tuple[str, int, int], int]:
        """Stored results per (run, version, provider)."""
        query = select(Result.run_id, Result.version_id, Result.provider_id, func.count()).group_by(
            Result.run_id, Result.version_id, Result.provider_id
        )
        with self.session() as s:
            return {(r, v, p): n for r, v, p, n in s.exec(query)}

    def get_result(self, result_id: int) -> Result:
        with self.session() as s:
            row = s.get(Result, result_id)
            if row is None:
                raise StoreError(f"no result with id {result_id}")
            return row

    def count_results(self, run_id: str) -> int:
        with self.session() as s:
            return s.exec(select(func.count()).select_from(Result).where(Result.run_id == run_id)).one()
