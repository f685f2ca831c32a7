"""The store: tables, queries and migrations, and nothing else (it imports neither prompting/ nor engine/).

`Store(url)` is bound to one database; its query methods come from the mixins below. `open_store()` returns the
process-wide Store for the configured URL.
"""

from store.cache import ResponseCache
from store.db import Database, StoreError, open_store, redact_url
from store.jobs import JobQueries
from store.optimizations import OptimizationQueries
from store.results import ResultQueries
from store.reviews import ReviewQueries
from store.suites import SuiteQueries
from store.versions import VersionQueries


class Store(
    Database, VersionQueries, SuiteQueries, ResultQueries, JobQueries, ReviewQueries, OptimizationQueries
):
    """A database with every query of the workbench."""

    def cache(self) -> ResponseCache:
        return ResponseCache(self)


__all__ = ["Store", "StoreError", "ResponseCache", "open_store", "redact_url"]
