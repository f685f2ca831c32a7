"""Structured outputs from the workbench's side: a version's JSON schema travels as response_format to providers
that constrain decoding (the local engine by default, switchable), and assertions check tool calls."""

from __future__ import annotations

import json

from prompting.assertions import Context, evaluate
from prompting.guardrails import Guardrails
from prompting.providers import Capabilities, ProviderSpec
from prompting.runner import CaseSpec, ProviderHandle, Runner, VersionSpec
from prompting.strategies import Prompt
from prompting.templates import Template
from tests.fakes import FakeProvider

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def fake(kind: str, structured: bool = True, **params) -> FakeProvider:
    provider = FakeProvider(
        lambda m, p: '{"city": "Paris"}', capabilities=Capabilities(structured_output=structured)
    )
    provider.spec = ProviderSpec(label=f"{kind}:x", kind=kind, model="x", quant="int4", params=params)
    return provider


def run(provider: FakeProvider, version_params: dict | None = None) -> tuple[dict, dict]:
    prompt = Prompt(
        Template.from_source("Capital of {{ c }}?", name="q"), guardrails=Guardrails(json_schema=SCHEMA)
    )
    runner = Runner(
        [VersionSpec(1, prompt, "q", version_params or {})],
        [ProviderHandle(1, provider)],
        [CaseSpec(1, {"c": "France"}, [{"type": "is-json", "value": SCHEMA}])],
    )
    results = []
    runner.run(set(), results.append)
    return provider.calls[0]["params"], results[0].detail


def test_a_schema_travels_as_response_format_to_a_constraining_provider():
    params, detail = run(fake("local"))
    assert params["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": SCHEMA, "strict": True},
    }
    assert detail["constrained"] == "json_schema"


def test_the_switch_and_the_capability_decide():
    assert "response_format" not in run(fake("local", constrain=False))[0]
    assert "response_format" not in run(fake("remote"))[0]  # off by default for remote APIs
    assert "response_format" in run(fake("remote", constrain=True))[0]
    assert "response_format" not in run(fake("local", structured=False))[0]
    own = {"type": "json_object"}
    assert run(fake("local"), {"response_format": own})[0]["response_format"] == own  # a prompt's own wins


def test_tool_call_assertions():
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "weather", "arguments": json.dumps({"city": "Oslo"})},
    }
    ctx = Context(tools=[WEATHER], tool_calls=[call])
    assert evaluate({"type": "is-valid-openai-tools-call"}, "", ctx).passed
    assert evaluate({"type": "tool-call-f1", "value": "weather"}, "", ctx).score == 1.0
    bad = {**call, "function": {"name": "weather", "arguments": "{}"}}
    result = evaluate({"type": "is-valid-openai-tools-call"}, "", Context(tools=[WEATHER], tool_calls=[bad]))
    assert not result.passed and "'city' is a required property" in result.reason
    other = evaluate({"type": "tool-call-f1", "value": ["weather", "news"]}, "", ctx)
    assert abs(other.score - 2 / 3) < 1e-9 and not other.passed
    assert not evaluate({"type": "is-valid-openai-tools-call"}, "just text", Context(tools=[WEATHER])).passed
    # as promptfoo sees them: the output is the JSON list of calls
    assert evaluate(
        {"type": "is-valid-openai-tools-call"}, json.dumps([call]), Context(tools=[WEATHER])
    ).passed
