"""promptfoo's config format, written so that `promptfoo eval` runs it: prompts as chat-message JSON with nunjucks
placeholders, providers as promptfoo ids (our engine as `openai:chat:MODEL@METHOD` at its base URL), tests with
promptfoo's assertion names. Keys of remote providers are named (`apiKeyEnvar`), never written. What promptfoo
cannot express stays under one `workbench:` key, which promptfoo ignores and `workbench import` reads back."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from prompting.providers import ProviderSpec
from prompting.suite_cases import SuiteCase

LOCAL_ONLY_KEYS = ("apiBaseUrl", "apiKeyRequired")
_INLINE_FLAGS = re.compile(r"^\(\?([aiLmsux]+)\)")


def provider_entry(spec: ProviderSpec, engine_url: str, params: dict[str, Any]) -> dict[str, Any]:
    """promptfoo's id and config for a provider; decoding parameters go into its config (promptfoo sends them)."""
    if spec.kind == "local":
        # the label lets `workbench import` recognise our engine again
        return {
            "id": f"openai:chat:{spec.model}@{spec.quant}",
            "label": spec.label,
            "config": {"apiBaseUrl": engine_url, "apiKeyRequired": False, **params, **spec.params},
        }
    return {
        "id": f"openai:chat:{spec.model}",
        "config": {"apiBaseUrl": spec.base_url, "apiKeyEnvar": spec.api_key_env, **params, **spec.params},
    }


def _js_regex(pattern: str) -> tuple[str, str]:
    """A Python pattern as a JavaScript one: inline flags become flags (always global, for matchAll)."""
    match = _INLINE_FLAGS.match(pattern)
    flags = "g" + "".join(f for f in (match.group(1) if match else "") if f in "ims")
    return (pattern[match.end() :] if match else pattern), flags


def answer_equals_js(expected: Any, pattern: str | None, tolerance: float | None) -> str:
    """promptfoo has no answer-equals: the same check as a javascript assertion (last match of the answer pattern,
    else the last line; numbers compared with a relative tolerance, text case-insensitively)."""
    source, flags = _js_regex(pattern or r"(?m)^(.*)$")
    return "\n".join(
        [
            f"const found = [...output.matchAll(new RegExp({json.dumps(source)}, {json.dumps(flags)}))];",
            "const last = found.length ? found[found.length - 1] : null;",
            "const answer = (last ? (last[1] ?? last[0]) : (output.trim().split('\\n').pop() || '')).trim();",
            f"const expected = {json.dumps(str(expected).strip())};",
            "const a = parseFloat(answer.replace(/[$,%]/g, '')), b = parseFloat(expected.replace(/[$,%]/g, ''));",
            "if (!isNaN(a) && !isNaN(b) && /^[-\\d.,eE\\s$%]+$/.test(expected))",
            f"  return Math.abs(a - b) <= {tolerance if tolerance is not None else 1e-6} * Math.max(1, Math.abs(b));",
            "return answer.replace(/\\.+$/, '').toLowerCase() === expected.replace(/\\.+$/, '').toLowerCase();",
        ]
    )


def assertion_entry(assertion: dict[str, Any], answer_pattern: str | None) -> dict[str, Any]:
    kind = str(assertion.get("type", ""))
    if kind.removeprefix("not-") != "answer-equals":
        return dict(assertion)
    entry = {
        "type": ("not-" if kind.startswith("not-") else "") + "javascript",
        "value": answer_equals_js(assertion.get("value"), answer_pattern, assertion.get("threshold")),
    }
    if "weight" in assertion:
        entry["weight"] = assertion["weight"]
    return entry


def test_entry(case: SuiteCase, answer_pattern: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if case.description:
        out["description"] = case.description
    if case.vars:
        out["vars"] = case.vars
    if case.assertions:
        out["assert"] = [assertion_entry(a, answer_pattern) for a in case.assertions]
    if case.threshold is not None:
        out["threshold"] = case.threshold
    if case.tags:
        out["metadata"] = {"tags": case.tags}
    return out


def config(
    description: str,
    prompts: list[str],
    providers: list[dict[str, Any]],
    tests: list[dict[str, Any]],
    *,
    repeat: int = 1,
    concurrency: int | None = None,
    workbench: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "description": description,
        "prompts": prompts,
        "providers": providers,
        "tests": tests,
    }
    options = {
        k: v for k, v in (("maxConcurrency", concurrency), ("repeat", repeat if repeat > 1 else None)) if v
    }
    if options:
        data["evaluateOptions"] = options
    if workbench:
        data["workbench"] = workbench
    return data


def to_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
