"""What a person typed, as an optimisation request: a stored suite or a suite file (checked before it is imported,
so a refused request writes nothing), the version and providers it names or defaults to."""

from __future__ import annotations

from typing import Any

from prompting.optimize import PARTS, OptimizeError, split_cases
from prompting.providers import ProviderSpec
from services.optimize import Budget, Request, check_settings, local_default
from services.specs import spec_of
from store import Store


def request_for(
    store: Store,
    suite: str,
    version: str | None,
    provider: str | None,
    proposer: str | None,
    **settings: Any,
) -> Request:
    """A request from what a person typed: SUITE a stored suite's name or a suite file (imported first; its
    first prompt and provider are the defaults), providers as `local:MODEL@METHOD` or a remote id."""
    from pathlib import Path

    from services.suites import import_suite, load_file

    default_version = default_provider = None
    if Path(suite).suffix in (".yaml", ".yml", ".json", ".jsonl", ".csv") and Path(suite).exists():
        loaded = load_file(suite, store)
        # what can be refused without the database is refused before the file is imported: nothing is written
        check_settings(
            settings.get("budget", Budget()), tuple(settings.get("parts", PARTS)), settings.get("keep", 1)
        )
        keyed = [(i, list(c.tags), str(i)) for i, c in enumerate(loaded.cases)]
        split_cases(keyed, 0, f"suite file {Path(suite).name}")  # only its size is checked here
        for spec in (provider, proposer):  # a provider that cannot be parsed is named before the import too
            if spec:
                ProviderSpec.parse(spec)
        imported = import_suite(store, loaded)
        suite = imported.name
        default_version = imported.version_ids[0] if imported.version_ids else None
        default_provider = (
            spec_of(store.get_provider(imported.provider_ids[0])) if imported.provider_ids else None
        )
    chosen = version or default_version
    if chosen is None:
        raise OptimizeError("name the version to start from: --version NAME@vN (or NAME@LABEL)")
    target = ProviderSpec.parse(provider) if provider else default_provider or local_default()
    return Request(suite, chosen, target, ProviderSpec.parse(proposer) if proposer else None, **settings)
