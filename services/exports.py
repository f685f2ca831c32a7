"""Exports of a stored version (or a library template): `.j2` source, OpenAI messages, promptfoo YAML.

Shared by `workbench export` and the Export page. Secrets are never exported: providers carry the name of their
key's environment variable only.
"""

from __future__ import annotations

import json
from typing import Any

from prompting.promptfoo import to_promptfoo_yaml
from prompting.suite_cases import SuiteCase
from services.specs import effective_assertions, spec_of
from services.versions import resolve
from store import Store


def export_j2(store: Store, ref: str) -> str:
    prompt, _ = resolve(store, ref)
    source = prompt.template.source
    return source if source.endswith("\n") else source + "\n"


def export_openai(store: Store, ref: str, values: dict[str, Any] | None = None) -> str:
    prompt, _ = resolve(store, ref)
    return json.dumps(prompt.render(values or {}), indent=2, ensure_ascii=False) + "\n"


def export_promptfoo(store: Store, ref: str, suite_name: str | None = None) -> str:
    prompt, label = resolve(store, ref)
    cases, providers = [], []
    if suite_name:
        suite = store.get_suite(suite_name)
        cases = [SuiteCase(c.description, c.vars, effective_assertions(c), c.threshold, c.tags)
                 for c in store.suite_cases(suite.id)]  # fmt: skip
        used = {pid for r in store.list_runs() if r.suite_id == suite.id for pid in r.provider_ids}
        providers = [spec_of(p) for p in store.list_providers() if p.id in used]
    workbench: dict[str, Any] = {"delimiter": prompt.delimiter}
    if prompt.guardrails:
        workbench["guardrails"] = prompt.guardrails.to_dict()
    return to_promptfoo_yaml(f"exported {label}", [prompt.template.source], providers, cases, workbench)
