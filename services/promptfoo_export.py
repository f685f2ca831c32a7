"""The promptfoo export: a config `promptfoo eval` runs as is, against our engine or the remote APIs a suite used.

The prompt is the template's chat messages with `{{ name }}` placeholders; a stored version's bound values become
the default vars. Strategies promptfoo cannot express (votes, trees, verbalizer scoring) are exported as their
single-call form and named in the warnings. Everything `workbench import` needs for an exact round trip (the
template source, its bound values and delimiter, our strategy and parameters) stays under `workbench:`.
"""

from __future__ import annotations

import json

from prompting import promptfoo
from prompting.placeholders import as_template, structural
from prompting.providers import ProviderSpec
from prompting.runner import effective_strategy
from prompting.suite_cases import SuiteCase
from services.exports import resolve
from services.specs import effective_assertions, spec_of
from settings import get_settings
from store import Store, StoreError


def example_case(prompt) -> SuiteCase:
    """With no suite: one test built from the variables' examples."""
    values = {
        v.name: v.example
        for v in prompt.template.variables
        if v.example is not None and not structural(v) and v.name not in prompt.variables
    }
    return SuiteCase(description="example", vars=values)


def suite_parts(
    store: Store, suite_name: str | None, prompt
) -> tuple[list[SuiteCase], list[ProviderSpec], dict]:
    if not suite_name:
        settings = get_settings()
        local = ProviderSpec.parse(f"local:{settings.default_model}@{settings.default_quant}")
        return [example_case(prompt)], [local], {}
    suite = store.get_suite(suite_name)
    cases = [
        SuiteCase(c.description, c.vars, effective_assertions(c), c.threshold, c.tags)
        for c in store.suite_cases(suite.id)
    ]
    used = {pid for r in store.list_runs() if r.suite_id == suite.id for pid in r.provider_ids}
    providers = [spec_of(p) for p in store.list_providers() if p.id in used]
    if not providers:
        settings = get_settings()
        providers = [ProviderSpec.parse(f"local:{settings.default_model}@{settings.default_quant}")]
    return cases, providers, dict(suite.config or {})


def served_models(engine_url: str, timeout: float = 2.0) -> list[str] | None:
    """The model ids the engine at `engine_url` serves (`/v1/models`); None when nothing answers there."""
    import httpx

    from services.engines import probe_client

    try:
        response = probe_client().get(f"{engine_url.rstrip('/')}/models", timeout=timeout)
        response.raise_for_status()
        return [m["id"] for m in response.json().get("data", [])]
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def serve_command(spec: ProviderSpec) -> str:
    return f"workbench serve --model {spec.model} --quant {spec.quant} --port PORT"


def served_providers(providers: list[ProviderSpec], engine_url: str) -> tuple[list[ProviderSpec], list[str]]:
    """Local providers are exported against the engine at `engine_url`, which serves one model and method: one it
    does not serve is left out (promptfoo would fail with "model does not exist"), named with the command that
    serves it. When every provider would be left out the export is refused; when no engine answers, all are kept
    with a warning (nothing to check against)."""
    local = [p for p in providers if p.kind == "local"]
    if not local:
        return providers, []
    served = served_models(engine_url)
    if served is None:
        names = ", ".join(p.label for p in local)
        return providers, [
            f"no engine answers at {engine_url} to check {names} against: promptfoo needs one "
            "serving each (`make run` serves the default)"
        ]
    missing = [p for p in local if p.model_id not in served]
    notes = [
        f"left out {p.label}: the engine at {engine_url} serves {', '.join(served)}. Serve it with "
        f"`{serve_command(p)}` and export with WORKBENCH_ENGINE_URL=http://127.0.0.1:PORT/v1"
        for p in missing
    ]
    kept = [p for p in providers if p not in missing]
    if not kept:
        raise StoreError("no provider of this export is served: " + "; ".join(notes))
    return kept, notes


def export_promptfoo(store: Store, ref: str, suite_name: str | None = None) -> tuple[str, list[str]]:
    """(promptfooconfig.yaml text, warnings to show)."""
    found = resolve(store, ref)
    prompt = found.prompt
    cases, providers, config = suite_parts(store, suite_name, prompt)
    engine_url = get_settings().engine_url
    providers, served_notes = served_providers(providers, engine_url)
    params = dict(config.get("params") or {})
    strategy = effective_strategy(config.get("strategy"), prompt.template)
    warnings = ([found.note] if found.note else []) + served_notes
    if strategy.get("name", "single") != "single":
        warnings.append(
            f"promptfoo cannot run the {strategy['name']} strategy: exported as a single call "
            "(the strategy is kept under the workbench key)"
        )
    exported = as_template(prompt)
    defaults = {v["name"]: v["default"] for v in exported.variables if v["default"] not in (None, "")}
    tests = [promptfoo.test_entry(c, prompt.template.answer_pattern) for c in cases]
    workbench = {
        "prompts": [
            {
                "label": found.label,
                "source": prompt.template.source,
                "delimiter": prompt.delimiter,
                "values": prompt.variables,
                "guardrails": prompt.guardrails.to_dict() if prompt.guardrails else None,
            }
        ],
        "strategy": strategy,
        "params": params,
    }
    data = promptfoo.config(
        f"exported {found.label}",
        [json.dumps(exported.messages, ensure_ascii=False)],
        [promptfoo.provider_entry(spec, engine_url, params) for spec in providers],
        tests,
        repeat=int(config.get("repeat") or 1),
        concurrency=config.get("max_concurrency"),
        workbench=workbench,
    )
    if defaults:  # a version's bound values fill its placeholders unless a test sets them
        data["defaultTest"] = {"vars": defaults}
    return promptfoo.to_yaml(data), warnings


def placeholder_names(messages: list[dict]) -> set[str]:
    from prompting.placeholders import PLACEHOLDER

    return {m.group(1) for message in messages for m in PLACEHOLDER.finditer(message["content"])}


__all__ = ["export_promptfoo", "placeholder_names"]
