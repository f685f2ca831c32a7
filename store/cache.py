"""The response cache: request key -> response dict, first write wins."""

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

    def put(self, key: str, response: dict) -> None:
        """First write wins: concurrent cells may miss the same key together and both try to store it."""
        try:
            with self.store.session() as s:
                if s.get(CachedResponse, key) is None:
                    s.add(CachedResponse(key=key, response=response))
        except IntegrityError:
            pass  # another cell stored this response between our read and our write
