"""Exports of a stored version (or a library template): `.j2` with front matter, OpenAI messages, promptfoo YAML.

Shared by `workbench export` and the Export page. Secrets are never exported: providers carry the name of
their key's environment variable only.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Engine

from prompting.strategies import Prompt
from prompting.suites import SuiteCase, to_promptfoo_yaml
from prompting.templates import library_names, load
from store import queries
from store.runs import prompt_of, spec_of


def resolve_prompt(ref: str, engine: Engine | None = None) -> tuple[Prompt, str]:
    """(prompt, label) for a stored version (name, name@vN, id) or a library template name or .j2 path."""
    try:
        version = queries.get_version(ref, engine)
    except queries.StoreError:
        if ref not in library_names() and not ref.endswith(".j2"):
            raise
        template = load(ref)
        return Prompt(template), template.name
    return prompt_of(version), version.label


def export_j2(ref: str, engine: Engine | None = None) -> str:
    prompt, _ = resolve_prompt(ref, engine)
    source = prompt.template.source
    return source if source.endswith("\n") else source + "\n"


def export_openai(ref: str, values: dict[str, Any] | None = None, engine: Engine | None = None) -> str:
    prompt, _ = resolve_prompt(ref, engine)
    return json.dumps(prompt.render(values or {}), indent=2, ensure_ascii=False) + "\n"


def export_promptfoo(ref: str, suite_name: str | None = None, engine: Engine | None = None) -> str:
    prompt, label = resolve_prompt(ref, engine)
    cases, providers = [], []
    if suite_name:
        suite = queries.get_suite(suite_name, engine)
        cases = [SuiteCase(c.description, c.vars, c.assertions, c.threshold, c.tags)
                 for c in queries.suite_cases(suite.id, engine)]  # fmt: skip
        used = {pid for r in queries.list_runs(engine) if r.suite_id == suite.id for pid in r.provider_ids}
        providers = [spec_of(p) for p in queries.list_providers(engine) if p.id in used]
    workbench: dict[str, Any] = {"delimiter": prompt.delimiter}
    if prompt.guardrails:
        workbench["guardrails"] = prompt.guardrails.to_dict()
    return to_promptfoo_yaml(f"exported {label}", [prompt.template.source], providers, cases, workbench)
