"""Optimisations as jobs: create, read, update their state, and the claim that lets one worker drive each.

A claim is one UPDATE ... RETURNING on a row whose owner is empty (or a worker that is gone, released by
`release_optimizations` when a dead worker is reaped), so two workers never drive the same optimisation.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import text, update
from sqlmodel import select

from store.db import StoreError
from store.models import Optimization, utcnow

ACTIVE_OPTIMIZATION = ("queued", "running")
_ANY_ACTIVE = text("SELECT 1 FROM optimizations WHERE status IN ('queued', 'running') LIMIT 1")


class OptimizationQueries:
    """Mixin of Store: optimisation jobs."""

    def create_optimization(self, **fields: Any) -> Optimization:
        with self.session() as s:
            row = Optimization(id=f"opt-{uuid.uuid4().hex[:8]}", **fields)
            s.add(row)
            s.flush()
            s.refresh(row)
            return row

    def get_optimization(self, optimization_id: str) -> Optimization:
        with self.session() as s:
            row = s.get(Optimization, optimization_id)
            if row is None:
                raise StoreError(f"no optimization '{optimization_id}'")
            return row

    def list_optimizations(self) -> list[Optimization]:
        """Every optimisation, newest first."""
        with self.session() as s:
            return list(s.exec(select(Optimization).order_by(Optimization.created_at.desc())))

    def active_optimizations(self) -> list[Optimization]:
        """Queued and running optimisations, oldest first (what the sidebar follows on every page)."""
        with self.session() as s:
            query = select(Optimization).where(Optimization.status.in_(ACTIVE_OPTIMIZATION))
            return list(s.exec(query.order_by(Optimization.created_at)))

    def update_optimization(
        self, optimization_id: str, *, only_if_active: bool = False, **fields: Any
    ) -> Optimization:
        """Set fields (state, phase, status, report, error); a final status stamps finished_at. With
        `only_if_active`, an optimisation cancelled meanwhile is left as it is (a worker's last step never
        overwrites a person's cancel)."""
        with self.session() as s:
            row = s.get(Optimization, optimization_id, with_for_update=True)
            if row is None:
                raise StoreError(f"no optimization '{optimization_id}'")
            if only_if_active and row.status not in ACTIVE_OPTIMIZATION:
                return row
            for key, value in fields.items():
                setattr(row, key, value)
            if "status" in fields:
                row.finished_at = None if fields["status"] in ACTIVE_OPTIMIZATION else utcnow()
            s.flush()
            s.refresh(row)
            return row

    def claim_optimization(self, worker_id: str) -> str | None:
        """Take the oldest active optimisation nobody drives; its id, or None."""
        pick = (
            select(Optimization.id)
            .where(Optimization.status.in_(ACTIVE_OPTIMIZATION), Optimization.owner.is_(None))
            .order_by(Optimization.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(Optimization)
            .where(Optimization.id.in_(pick.scalar_subquery()), Optimization.owner.is_(None))
            .values(owner=worker_id)
            .returning(Optimization.id)
        )
        with self.sql.begin() as conn:
            row = conn.execute(claim).first()
        return row[0] if row else None

    def any_active_optimization(self) -> bool:
        """The idle worker's cheap probe: is any optimisation waiting to be stepped?"""
        with self.sql.connect() as conn:
            return conn.execute(_ANY_ACTIVE).first() is not None

    def owned_optimizations(self, worker_id: str) -> list[str]:
        with self.session() as s:
            query = select(Optimization.id).where(
                Optimization.owner == worker_id, Optimization.status.in_(ACTIVE_OPTIMIZATION)
            )
            return list(s.exec(query.order_by(Optimization.created_at)))

    def release_optimizations(self, worker_ids: Iterable[str]) -> int:
        ids = list(worker_ids)
        if not ids:
            return 0
        with self.sql.begin() as conn:
            query = update(Optimization).where(Optimization.owner.in_(ids)).values(owner=None)
            return conn.execute(query).rowcount
