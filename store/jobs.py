"""The run queue: a run's planned cells as rows that workers claim (pending -> claimed -> done), and the workers
themselves with their heartbeats.

A claim is one UPDATE ... RETURNING. On PostgreSQL its subquery takes the rows FOR UPDATE SKIP LOCKED, so several
workers on one database share a run's cells without ever taking the same cell; SQLite serialises writers, which
gives the same guarantee on one machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, text, update
from sqlmodel import select

from store.db import StoreError
from store.models import ACTIVE_STATUSES as ACTIVE
from store.models import Result, Run, RunCell, Score, Worker, utcnow
from store.results import CellKey

# What an idle worker asks twice a second: one indexed probe, no ORM objects (the full `runnable` query built
# and ran through a session cost the idle worker about 1 % of a core).
_ANY_PENDING = text("SELECT 1 FROM run_cells WHERE state = 'pending' LIMIT 1")


class JobQueries:
    """Mixin of Store: the queue of cells and the workers that drain it."""

    def enqueue(self, run_id: str, cells: Iterable[CellKey]) -> int:
        """Queue a run: every planned cell gets a row (done when a result is stored, else pending), and the run
        becomes `queued`. Idempotent: resuming a run adds only the rows it lacks. Returns the pending count."""
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise StoreError(f"no run '{run_id}'")
            have = {
                tuple(r)
                for r in s.exec(
                    select(
                        RunCell.case_id, RunCell.version_id, RunCell.provider_id, RunCell.repeat_index
                    ).where(RunCell.run_id == run_id)
                )
            }
            stored = {
                tuple(r)
                for r in s.exec(
                    select(Result.case_id, Result.version_id, Result.provider_id, Result.repeat_index).where(
                        Result.run_id == run_id
                    )
                )
            }
            rows = [
                {
                    "run_id": run_id,
                    "case_id": c[0],
                    "version_id": c[1],
                    "provider_id": c[2],
                    "repeat_index": c[3],
                    "state": "done" if c in stored else "pending",
                }
                for c in cells
                if tuple(c) not in have
            ]
            if rows:
                s.execute(insert(RunCell), rows)
            run.status, run.finished_at = "queued", None
            s.flush()
            return s.exec(
                select(func.count())
                .select_from(RunCell)
                .where(RunCell.run_id == run_id, RunCell.state == "pending")
            ).one()

    def claim_cells(self, run_id: str, worker_id: str, limit: int = 1) -> list[tuple[int, CellKey]]:
        """Take up to `limit` pending cells of an active run for this worker: (cell row id, cell key) pairs."""
        pick = (
            select(RunCell.id)
            .join(Run, Run.id == RunCell.run_id)
            .where(RunCell.run_id == run_id, RunCell.state == "pending", Run.status.in_(ACTIVE))
            .order_by(RunCell.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=RunCell)
        )
        claim = (
            update(RunCell)
            .where(RunCell.id.in_(pick.scalar_subquery()))
            .values(state="claimed", worker_id=worker_id, claimed_at=utcnow())
            .returning(
                RunCell.id, RunCell.case_id, RunCell.version_id, RunCell.provider_id, RunCell.repeat_index
            )
        )
        with self.sql.begin() as conn:
            rows = conn.execute(claim).all()
        return sorted((r[0], (r[1], r[2], r[3], r[4])) for r in rows)

    def release_cells(self, *, worker_ids: Iterable[str] = (), cell_ids: Iterable[int] = ()) -> int:
        """Claimed cells back to pending (their worker died or stopped before finishing them)."""
        workers, cells = list(worker_ids), list(cell_ids)
        if not workers and not cells:
            return 0
        condition = RunCell.worker_id.in_(workers) if workers else RunCell.id.in_(cells)
        with self.sql.begin() as conn:
            query = (
                update(RunCell)
                .where(condition, RunCell.state == "claimed")
                .values(state="pending", worker_id=None, claimed_at=None)
            )
            return conn.execute(query).rowcount

    def cell_counts(self, run_id: str) -> dict[str, int]:
        with self.session() as s:
            rows = s.exec(
                select(RunCell.state, func.count()).where(RunCell.run_id == run_id).group_by(RunCell.state)
            )
            counts = {"pending": 0, "claimed": 0, "done": 0}
            counts.update({state: n for state, n in rows})
            return counts

    def any_pending(self) -> bool:
        """Whether any run has a cell waiting to be claimed (the cheap check before `runnable`)."""
        with self.sql.connect() as conn:
            return conn.execute(_ANY_PENDING).first() is not None

    def runnable(self, only_run: str | None = None) -> list[Run]:
        """Active runs with pending cells, oldest first."""
        with self.session() as s:
            has_pending = select(RunCell.run_id).where(RunCell.state == "pending").distinct()
            query = select(Run).where(Run.status.in_(ACTIVE), Run.id.in_(has_pending))
            if only_run:
                query = query.where(Run.id == only_run)
            return list(s.exec(query.order_by(Run.created_at, Run.id)))

    def active_runs(self) -> list[Run]:
        with self.session() as s:
            return list(s.exec(select(Run).where(Run.status.in_(ACTIVE)).order_by(Run.created_at)))

    def finish_if_done(self, run_id: str) -> bool:
        """Mark an active run completed once no cell is pending or claimed; True when it is (or was) complete."""
        with self.session() as s:
            run = s.get(Run, run_id)
            open_cells = s.exec(
                select(func.count())
                .select_from(RunCell)
                .where(RunCell.run_id == run_id, RunCell.state != "done")
            ).one()
            if open_cells:
                return False
            if run.status in ACTIVE:
                run.status, run.finished_at = "completed", utcnow()
            return True

    def reset_errored(self, run_id: str) -> int:
        """Forget a run's errored results and queue their cells again; returns how many."""
        with self.session() as s:
            errored = list(
                s.exec(
                    select(
                        Result.id, Result.case_id, Result.version_id, Result.provider_id, Result.repeat_index
                    ).where(Result.run_id == run_id, Result.error.is_not(None))
                )
            )
            if not errored:
                return 0
            ids = [r[0] for r in errored]
            s.exec(delete(Score).where(Score.result_id.in_(ids)))
            s.exec(delete(Result).where(Result.id.in_(ids)))
            for _, *key in errored:
                s.exec(
                    update(RunCell)
                    .where(
                        RunCell.run_id == run_id,
                        RunCell.case_id == key[0],
                        RunCell.version_id == key[1],
                        RunCell.provider_id == key[2],
                        RunCell.repeat_index == key[3],
                    )
                    .values(state="pending", worker_id=None)
                )
            return len(errored)

    # --- workers -----------------------------------------------------------------------------------------

    def register_worker(
        self, worker_id: str, host: str, pid: int, process_started: float, only_run: str | None = None
    ) -> None:
        with self.session() as s:
            s.add(
                Worker(id=worker_id, host=host, pid=pid, process_started=process_started, only_run=only_run)
            )

    def heartbeat(self, worker_id: str) -> None:
        with self.sql.begin() as conn:
            conn.execute(update(Worker).where(Worker.id == worker_id).values(heartbeat_at=utcnow()))

    def remove_workers(self, worker_ids: Iterable[str]) -> int:
        """Forget workers and put their claimed cells back in the queue; returns the cells released."""
        ids = list(worker_ids)
        if not ids:
            return 0
        released = self.release_cells(worker_ids=ids)
        self.release_optimizations(ids)
        with self.sql.begin() as conn:
            conn.execute(delete(Worker).where(Worker.id.in_(ids)))
        return released

    def list_workers(self) -> list[Worker]:
        with self.session() as s:
            return list(s.exec(select(Worker).order_by(Worker.started_at)))

    def stale_workers(self, older_than: timedelta) -> list[Worker]:
        cutoff: datetime = utcnow() - older_than
        with self.session() as s:
            return list(s.exec(select(Worker).where(Worker.heartbeat_at < cutoff)))
