"""The response cache: request key -> response dict, first write wins. Each entry records its scope ("shared",
or "run:ID" for an entry only its own run may reuse; see prompting/runner.cache_scope)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from store.models import CachedResponse


class ResponseCache:
    """The runner's cache, kept in the store's database."""

    def __init__(self, store):
        self.store = store

    def get(self, key: str) -> dict | None:
        with self.store.session() as s:
            row = s.get(CachedResponse, key)
            return dict(row.response) if row else None

    def put(self, key: str, response: dict, scope: str = "shared") -> None:
        """First write wins: concurrent cells may miss the same key together and both try to store it."""
        try:
            with self.store.session() as s:
                if s.get(CachedResponse, key) is None:
                    s.add(CachedResponse(key=key, response=response, scope=scope))
        except IntegrityError:
            pass  # another cell stored this response between our read and our write

    def scopes(self) -> dict[str, int]:
        """Entries per scope (what a run left behind for its own resume, what every run may share)."""
        from sqlalchemy import func
        from sqlmodel import select

        with self.store.session() as s:
            rows = s.exec(select(CachedResponse.scope, func.count()).group_by(CachedResponse.scope)).all()
            return {scope: count for scope, count in rows}
