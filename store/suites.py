"""Suites and their test cases; a suite and all its cases are written in one transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func
from sqlmodel import select

from store.db import StoreError, retry_write_race
from store.models import ProviderConfig, Suite, TestCase


class SuiteQueries:
    """Mixin of Store: suites, cases and provider configurations."""

    def save_suite(
        self,
        name: str,
        cases: list[dict[str, Any]],
        *,
        description: str = "",
        config: dict | None = None,
        replace: bool = False,
    ) -> Suite:
        """Create (or with `replace`, rewrite) a suite and all its cases in one transaction."""
        with self.session() as s:
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
                s.add(
                    TestCase(
                        suite_id=suite.id,
                        position=position,
                        description=case.get("description", ""),
                        vars=case.get("vars", {}),
                        expected=case.get("expected"),
                        assertions=case.get("assertions", []),
                        tags=case.get("tags", []),
                        threshold=case.get("threshold"),
                    )
                )
            return suite

    def list_suites(self) -> list[tuple[Suite, int]]:
        with self.session() as s:
            counts = dict(s.exec(select(TestCase.suite_id, func.count()).group_by(TestCase.suite_id)).all())
            return [(suite, counts.get(suite.id, 0)) for suite in s.exec(select(Suite).order_by(Suite.name))]

    def get_suite(self, ref: str | int) -> Suite:
        with self.session() as s:
            if isinstance(ref, int) or str(ref).isdigit():
                row = s.get(Suite, int(ref))
            else:
                row = s.exec(select(Suite).where(Suite.name == ref)).first()
            if row is None:
                raise StoreError(f"no suite '{ref}'")
            return row

    def case_contents(self, suite_id: int) -> list[tuple[int, int, str, dict]]:
        """(id, position, description, vars) of a suite's cases, without building row objects (statistics over
        large suites read only these)."""
        query = (
            select(TestCase.id, TestCase.position, TestCase.description, TestCase.vars)
            .where(TestCase.suite_id == suite_id)
            .order_by(TestCase.position)
        )
        with self.session() as s:
            return [tuple(row) for row in s.exec(query)]

    def suite_cases(self, suite_id: int) -> list[TestCase]:
        with self.session() as s:
            query = select(TestCase).where(TestCase.suite_id == suite_id).order_by(TestCase.position)
            return list(s.exec(query))

    # --- provider configurations ---------------------------------------------------------------------

    def upsert_provider(
        self,
        label: str,
        kind: str,
        model: str,
        *,
        base_url: str | None = None,
        quant: str | None = None,
        api_key_env: str | None = None,
        params: dict | None = None,
    ) -> ProviderConfig:
        if params and any("key" in k.lower() and k != "api_key_env" for k in params):
            raise StoreError(
                "provider parameters must not hold keys; name the environment variable in api_key_env"
            )

        def write() -> ProviderConfig:
            with self.session() as s:
                row = s.exec(select(ProviderConfig).where(ProviderConfig.label == label)).first()
                if row is None:
                    row = ProviderConfig(label=label, kind=kind, model=model)
                    s.add(row)
                row.kind, row.model, row.base_url, row.quant = kind, model, base_url, quant
                row.api_key_env, row.params = api_key_env, params or {}
                s.flush()
                return row

        return retry_write_race(write, f"saving provider '{label}'")

    def list_providers(self) -> list[ProviderConfig]:
        with self.session() as s:
            return list(s.exec(select(ProviderConfig).order_by(ProviderConfig.label)))

    def get_provider(self, provider_id: int) -> ProviderConfig:
        with self.session() as s:
            row = s.get(ProviderConfig, provider_id)
            if row is None:
                raise StoreError(f"no provider configuration with id {provider_id}")
            return row
