"""Suites: validate and import suite files, save cases edited in the UI. Suites are immutable like versions
(runs point at their cases): identical content is reused, changed content gets a new name."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prompting.guardrails import Guardrails
from prompting.suites import Suite as SuiteFile
from prompting.suites import load_suite
from services.specs import save_provider
from store import Store, StoreError


@dataclass
class ImportedSuite:
    suite_id: int
    name: str
    version_ids: list[int]
    provider_ids: list[int]
    cases: int


def load_file(path: str | Path, store: Store | None = None) -> SuiteFile:
    """Parse and validate a suite file completely (SuiteError names the file, line and field); with a store,
    prompts may name stored versions (NAME@vN, NAME@latest, NAME@LABEL)."""
    return load_suite(path, (lambda ref: stored_prompt(store, ref)) if store is not None else None)


def stored_prompt(store: Store, ref: str):
    """A stored version as a suite prompt: its template, bound values, delimiter and guardrails."""
    from prompting.suites import SuitePrompt
    from prompting.templates import Template

    name, _, which = ref.partition("@")
    version = store.get_version(name if which == "latest" else ref)
    guardrails = Guardrails.from_dict(version.guardrails) if version.guardrails else None
    return SuitePrompt(
        version.label,
        Template.from_source(version.source, name=version.name),
        f"stored:{version.label}",
        dict(version.variables),
        version.delimiter,
        guardrails,
        version_id=version.id,
    )


def import_suite(store: Store, suite: SuiteFile, name: str | None = None) -> ImportedSuite:
    """Store a validated suite file: its cases, one version per prompt, one configuration per provider."""
    cases = [c.to_dict() for c in suite.cases]
    config = {
        "strategy": suite.strategy,
        "delimiter": suite.delimiter,
        "params": suite.params,
        "repeat": suite.repeat,
        "max_concurrency": suite.max_concurrency,
        "judge": suite.judge,
    }
    if suite.simulator:  # only when set: a suite without one keeps the digest it had before simulators
        config["simulator"] = suite.simulator
    digest = hashlib.sha256(
        json.dumps([cases, config, suite.description], sort_keys=True, default=str).encode()
    ).hexdigest()
    stored = store_cases(store, name or suite.name, digest, cases, suite.description, config)
    versions = [p.version_id or _save_prompt(store, suite, p).id for p in suite.prompts]
    providers = [save_provider(store, spec).id for spec in suite.providers]
    return ImportedSuite(stored.id, stored.name, versions, providers, len(cases))


def _save_prompt(store: Store, suite: SuiteFile, prompt):
    """A suite's prompt as a version: what it bound (an exported version's values, delimiter and guardrails),
    else the suite's delimiter and guardrails."""
    bound = prompt.template.bound
    guardrails = prompt.guardrails or (
        Guardrails.from_dict(bound["guardrails"]) if bound.get("guardrails") else None
    )
    guardrails = guardrails or suite.guardrails
    values = {**(bound.get("values") or {}), **prompt.values}
    return store.save_version(
        prompt.label,
        prompt.template.source,
        variables=values,
        delimiter=prompt.delimiter or prompt.template.bound.get("delimiter") or suite.delimiter,
        guardrails=guardrails.to_dict() if guardrails else None,
        library_ref=prompt.library_ref,
        note=f"from {suite.name}",
        options={"params": prompt.params} if prompt.params else None,
    )


def import_file(store: Store, path: str | Path, name: str | None = None) -> ImportedSuite:
    return import_suite(store, load_file(path, store), name)


def store_cases(store: Store, base: str, digest: str, cases: list[dict], description: str, config: dict):
    """The stored suite with this content: reused when identical, else saved as `base` or `base-<hash>`."""
    for candidate in (base, f"{base}-{digest[:8]}"):
        try:
            existing = store.get_suite(candidate)
        except StoreError:
            return store.save_suite(
                candidate, cases, description=description, config={**config, "content_hash": digest}
            )
        if existing.config.get("content_hash") == digest:
            return existing
    raise StoreError(f"suite names '{base}' and '{base}-{digest[:8]}' are both taken by other content")


def save_cases(store: Store, name: str, cases: list[dict[str, Any]]):
    """A new suite from edited cases (suites are immutable: an edited suite is saved under a new name)."""
    if not name.strip():
        raise StoreError("give the suite a name")
    if not cases:
        raise StoreError("a suite needs at least one case")
    return store.save_suite(name.strip(), cases)


def override(
    suite: SuiteFile, path: Path, *, providers: tuple[str, ...] = (), strategy: str | None = None
) -> None:
    """Command-line overrides of a loaded suite, validated like the file itself."""
    from prompting.errors import PromptingError
    from prompting.providers import ProviderSpec
    from prompting.strategies import STRATEGIES
    from prompting.suites import SuiteError

    if providers:
        try:
            suite.providers = [ProviderSpec.parse(p) for p in providers]
        except PromptingError as exc:
            raise SuiteError("--provider", "", str(exc)) from None
    if not suite.providers:
        raise SuiteError(
            Path(path).name, "providers", "no providers: add some to the file or pass --provider"
        )
    if strategy:
        if strategy not in STRATEGIES:
            raise SuiteError(
                "--strategy", "", f"unknown strategy '{strategy}'; choose one of: {', '.join(STRATEGIES)}"
            )
        suite.strategy = {"name": strategy}


def names(store: Store) -> dict[str, int]:
    """Every suite's name and number of cases, by name."""
    return {suite.name: count for suite, count in store.list_suites()}


def recent_suite(store: Store) -> str | None:
    """The suite of the most recent run, else the newest suite: what a picker should offer first."""
    runs = store.list_runs()
    for run in runs:
        if run.suite_id:
            try:
                return store.get_suite(run.suite_id).name
            except StoreError:
                continue
    suites = [s for s, _ in store.list_suites()]
    return max(suites, key=lambda s: (s.created_at, s.id)).name if suites else None
