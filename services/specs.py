"""Stored rows to the prompting core's specs and back: versions -> Prompt, provider configurations ->
ProviderSpec, test cases -> CaseSpec, finished cells -> result rows."""

from __future__ import annotations

from typing import Any

from prompting.guardrails import Guardrails
from prompting.providers import ProviderSpec
from prompting.runner import CaseSpec, CellResult
from prompting.strategies import Prompt
from prompting.templates import Template


def prompt_of(version) -> Prompt:
    template = Template.from_source(version.source, name=version.name)
    guardrails = Guardrails.from_dict(version.guardrails) if version.guardrails else None
    drop = tuple(version.options.get("drop_sections", ()))
    return Prompt(template, dict(version.variables), version.delimiter, guardrails, drop)


def spec_of(config) -> ProviderSpec:
    return ProviderSpec(
        label=config.label,
        kind=config.kind,
        model=config.model,
        base_url=config.base_url,
        quant=config.quant,
        api_key_env=config.api_key_env,
        params=dict(config.params),
    )


def effective_assertions(case) -> list[dict[str, Any]]:
    """A case's assertions, plus `equals expected` when the case has an expected value not already asserted."""
    assertions = list(case.assertions)
    expected = getattr(case, "expected", None)
    if expected not in (None, ""):
        wanted = {"type": "equals", "value": expected}
        if not any(a.get("type") == "equals" and a.get("value") == expected for a in assertions):
            assertions.append(wanted)
    return assertions


def case_of(case) -> CaseSpec:
    return CaseSpec(
        id=case.id,
        vars=dict(case.vars),
        assertions=effective_assertions(case),
        threshold=case.threshold,
        description=case.description,
    )


def save_provider(store, spec: ProviderSpec):
    return store.upsert_provider(
        spec.label,
        spec.kind,
        spec.model,
        base_url=spec.base_url,
        quant=spec.quant,
        api_key_env=spec.api_key_env,
        params=spec.params,
    )


def result_rows(run_id: str, result: CellResult) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A finished cell as a result row and its score rows."""
    cell, usage = result.cell, result.usage
    row = {
        "run_id": run_id,
        "case_id": cell.case_id,
        "version_id": cell.version_id,
        "provider_id": cell.provider_id,
        "repeat_index": cell.repeat_index,
        "messages": result.messages,
        "output": result.output,
        "answer": result.answer,
        "detail": result.detail,
        "logprobs": result.logprobs,
        "tokens_in": usage.tokens_in,
        "tokens_out": usage.tokens_out,
        "latency_ms": usage.latency_ms,
        "cost": usage.cost,
        "cached": result.cached,
        "error": result.error,
        "passed": result.passed,
        "score": result.score,
    }
    scores = [
        {
            "position": i,
            "type": a.type,
            "value": a.value,
            "weight": a.weight,
            "passed": a.passed,
            "score": a.score,
            "reason": a.reason,
            "turn": None if a.turn is None else str(a.turn),
        }
        for i, a in enumerate(result.assertions)
    ]
    return row, scores
