"""promptfoo's config format, written: tests, providers and prompts as `promptfoo eval` reads them."""

from __future__ import annotations

from typing import Any

import yaml

from prompting.providers import ProviderSpec
from prompting.suite_cases import SuiteCase


def promptfoo_test(case: SuiteCase) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if case.description:
        out["description"] = case.description
    if case.vars:
        out["vars"] = case.vars
    if case.assertions:
        out["assert"] = case.assertions
    if case.threshold is not None:
        out["threshold"] = case.threshold
    if case.tags:
        out["tags"] = case.tags
    return out


def to_promptfoo_yaml(
    description: str,
    prompts: list[str],
    providers: list[ProviderSpec],
    cases: list[SuiteCase],
    workbench: dict[str, Any] | None = None,
) -> str:
    """A promptfooconfig.yaml; providers carry the NAME of their key variable, never a key."""
    provider_entries = []
    for spec in providers:
        if spec.kind == "local":
            provider_entries.append(
                {"id": f"local:{spec.model}", "config": {"quant": spec.quant, **spec.params}}
            )
        else:
            provider_entries.append(
                {
                    "id": f"openai:chat:{spec.model}",
                    "config": {"apiBaseUrl": spec.base_url, "apiKeyEnvar": spec.api_key_env, **spec.params},
                }
            )
    data: dict[str, Any] = {
        "description": description,
        "prompts": prompts,
        "providers": provider_entries,
        "tests": [promptfoo_test(c) for c in cases],
    }
    if workbench:
        data["workbench"] = workbench
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
